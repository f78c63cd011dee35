"""Archives rendered items into Exchange Online mailboxes through Microsoft Graph.

Each record becomes one complete, non-draft item in the mailbox's "WhatsApp Archiver" folder
(under msgfolderroot), created by a single JSON POST that carries everything at once: once an
item is not a draft its body, sender and recipients are read-only. The MAPI properties set at
creation make it an archive item rather than a draft:

- ``Integer 0x0E07`` (PidTagMessageFlags) = 1: read, not unsent, so never a draft;
- ``SystemTime 0x0039`` / ``0x0E06`` (client submit / delivery time): the original times, so
  eDiscovery date filters, retention ages and hold ranges use them and not the import time;
- ``String 0x001A`` (PidTagMessageClass): the configurable item class;
- ``String {ID_PROPERTY_GUID} Name WhatsAppArchiverItemId``: the TeleMessage record id, which
  makes writes idempotent and ties each item back to its record (chain of custody).

Cost in Graph requests, per record and mailbox (all count against the per-app, per-mailbox
budget of 10,000 requests per 10 minutes and 4 concurrent requests):

- first record for a mailbox in this process: +1 folder lookup (+1 folder create the very first
  time the folder is needed; +1 lookup again if another worker won the creation race);
- every record: 1 lookup by the id property + 1 create = **2 requests**;
- a record already archived: 1 lookup (+1 attachment listing when it has attachments sent after
  the create, to finish an earlier attempt that was cut short);
- attachments too big for the create request: +1 POST each below ~3 MB, or for larger ones
  +1 createUploadSession + ceil(size / 3,276,800) chunk PUTs (the PUTs go to the upload URL).

A later issue may keep an idempotency record in storage to spare most lookups.

Attachments: see ``UploadSessionAttachments`` and the swappable ``AttachmentStrategy``. Upload
sessions are used here on items that are already non-drafts; every documented upload-session
example is on a draft and nothing documents either way whether a non-draft accepts them.

Logs carry record keys, hashed mailbox names and counts, never subjects, bodies, names or
addresses: this is regulated content.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.adapters.graph_client import (
    USER_NOT_FOUND_CODES,
    acquire_graph_loop,
    graph_failure,
    is_loopback_url,
    mailbox_ref,
    parse_retry_after,
    release_graph_loop,
    translate_common,
)
from shared.domain.errors import (
    ArchiveError,
    ConfigurationError,
    MailboxUnavailable,
    PermanentError,
    PoisonReason,
    TransientError,
)
from shared.domain.rendered import RenderedAttachment, RenderedItem
from shared.ports import WriteOutcome

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

DEFAULT_ITEM_CLASS = "IPM.Note.WhatsAppArchiver"
DEFAULT_FOLDER_NAME = "WhatsApp Archiver"
# Fixed for the life of the archive: items written under another GUID are invisible to the
# idempotency lookup and would be archived twice.
ID_PROPERTY_GUID = "6aefd327-d14f-432e-a74c-bd982a9fae40"
ID_PROPERTY_NAME = "WhatsAppArchiverItemId"

PROP_MESSAGE_FLAGS = "Integer 0x0E07"
PROP_CLIENT_SUBMIT_TIME = "SystemTime 0x0039"
PROP_DELIVERY_TIME = "SystemTime 0x0E06"
PROP_MESSAGE_CLASS = "String 0x001A"
MSGFLAG_READ = "1"  # read; without MSGFLAG_UNSENT (8) the item is not a draft

PREFER_IMMUTABLE_ID = 'IdType="ImmutableId"'

# Graph takes at most 5 custom internet headers on a message, all named x-/X-, and refuses an
# empty collection; longer values than a header line are dropped rather than cut, so a stored
# header never says something the record did not.
MAX_INTERNET_HEADERS = 5
MAX_HEADER_VALUE_CHARS = 998
_HEADER_NAME = re.compile(r"^[xX]-[!-9;-~]+$")

# Request size: Graph refuses requests over 4 MB. The margin covers the JSON around the parts we
# measure (property names, recipients, headers) and HTTP framing.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
REQUEST_MARGIN_BYTES = 64 * 1024
# Upload-session chunks must be multiples of 320 KiB and at most 4 MB: 10 x 320 KiB.
UPLOAD_CHUNK_BYTES = 3_276_800
# Attachments above this size cannot travel base64-encoded in one request under 4 MB, so they
# go through an upload session (whose documented minimum is 3 MB: this is above it).
SINGLE_REQUEST_ATTACHMENT_LIMIT = (MAX_REQUEST_BYTES - REQUEST_MARGIN_BYTES) * 3 // 4
# Exchange Online's upper bound for a message (tenants default to 35 MB and may raise it).
MAX_MESSAGE_BYTES = 150 * 1024 * 1024


def id_property_id(guid: str = ID_PROPERTY_GUID) -> str:
    return f"String {{{guid}}} Name {ID_PROPERTY_NAME}"


def mapi_time(value: datetime) -> str:
    """ISO-8601 UTC as Graph's SystemTime extended properties take it (milliseconds kept)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # the rendered model's times are UTC by contract
    value = value.astimezone(UTC)
    millis = value.microsecond // 1000
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def odata_string(value: str) -> str:
    """An OData string literal: single quotes doubled, wrapped in single quotes."""
    return "'" + value.replace("'", "''") + "'"


def select_internet_headers(headers: tuple[tuple[str, str], ...]) -> tuple[list[tuple[str, str]], int]:
    """The headers Graph will accept, in the item's order, and how many were left out."""
    kept: list[tuple[str, str]] = []
    for name, value in headers:
        clean = " ".join(value.splitlines()).strip()
        if not _HEADER_NAME.match(name) or len(clean) > MAX_HEADER_VALUE_CHARS:
            continue
        if len(kept) == MAX_INTERNET_HEADERS:
            break
        kept.append((name, clean))
    return kept, len(headers) - len(kept)


# ---------------------------------------------------------------------------------------------
# Attachments


@dataclass(frozen=True)
class AttachmentPlan:
    inline: tuple[RenderedAttachment, ...]  # inside the create POST
    after_create: tuple[RenderedAttachment, ...]  # added to the created item, one by one
    missing: int  # not captured: not sent, the body already says so


class AttachmentStrategy(Protocol):
    """Decides how each attachment reaches the item, and adds those that miss the create."""

    def plan(self, item: RenderedItem) -> AttachmentPlan: ...

    async def attach(
        self, client: Any, mailbox: str, message_id: str, attachment: RenderedAttachment
    ) -> None: ...

    async def aclose(self) -> None: ...


class UploadSessionAttachments:
    """Inline while the create request stays under 4 MB, the rest added to the created item.

    The smallest attachments go inline first (fewest extra requests). One that does not fit is
    then posted on its own (``POST .../messages/{id}/attachments``) when it fits a 4 MB request,
    else uploaded through ``createUploadSession`` and plain httpx PUTs of at most 3,276,800 bytes
    with ``Content-Range`` and no Authorization header (the upload URL carries its own token, so
    it is never logged). The SDK's LargeFileUploadTask is avoided: it is known to misbehave with
    Outlook items.

    Undocumented ground: both routes add attachments to an item that is already a non-draft.
    Microsoft documents upload sessions only with drafts; nothing says a non-draft refuses them,
    nothing proves it accepts them. Keep this class swappable (``GraphMailbox(attachments=...)``).
    """

    def __init__(
        self,
        *,
        chunk_bytes: int = UPLOAD_CHUNK_BYTES,
        chunk_retries: int = 2,
        retry_max_wait_seconds: float = 5.0,
        timeout_seconds: float = 120.0,
    ) -> None:
        if chunk_bytes <= 0 or chunk_bytes > MAX_REQUEST_BYTES or chunk_bytes % (320 * 1024):
            raise ConfigurationError("upload chunks must be a multiple of 320 KiB and at most 4 MB")
        self.chunk_bytes = chunk_bytes
        self.chunk_retries = chunk_retries
        self.retry_max_wait_seconds = retry_max_wait_seconds
        self.timeout_seconds = timeout_seconds
        self._http: httpx.AsyncClient | None = None

    def plan(self, item: RenderedItem) -> AttachmentPlan:
        present = [a for a in item.attachments if a.content is not None]
        total = sum(len(a.content or b"") for a in present)
        if any(len(a.content or b"") > MAX_MESSAGE_BYTES for a in present) or total > MAX_MESSAGE_BYTES:
            raise PermanentError(
                PoisonReason.TOO_BIG, f"{total} bytes of attachments exceed Exchange's message size limit"
            )
        budget = MAX_REQUEST_BYTES - REQUEST_MARGIN_BYTES - _create_request_estimate(item)
        inline_ids: set[int] = set()
        for attachment in sorted(present, key=lambda a: len(a.content or b"")):
            cost = _inline_cost(attachment)
            if cost > budget:
                break
            budget -= cost
            inline_ids.add(id(attachment))
        return AttachmentPlan(
            inline=tuple(a for a in present if id(a) in inline_ids),
            after_create=tuple(a for a in present if id(a) not in inline_ids),
            missing=len(item.attachments) - len(present),
        )

    async def attach(
        self, client: Any, mailbox: str, message_id: str, attachment: RenderedAttachment
    ) -> None:
        data = attachment.content or b""
        if len(data) <= SINGLE_REQUEST_ATTACHMENT_LIMIT:
            await self._post_attachment(client, mailbox, message_id, attachment)
        else:
            await self._upload(client, mailbox, message_id, attachment)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _post_attachment(
        self, client: Any, mailbox: str, message_id: str, attachment: RenderedAttachment
    ) -> None:
        builder = client.users.by_user_id(mailbox).messages.by_message_id(message_id).attachments
        await graph_call(
            "attachment_add", mailbox, builder.post(file_attachment(attachment)), item_level=True
        )

    async def _upload(
        self, client: Any, mailbox: str, message_id: str, attachment: RenderedAttachment
    ) -> None:
        from msgraph.generated.models.attachment_item import AttachmentItem
        from msgraph.generated.models.attachment_type import AttachmentType
        from msgraph.generated.users.item.messages.item.attachments.create_upload_session.create_upload_session_post_request_body import (  # noqa: E501
            CreateUploadSessionPostRequestBody,
        )

        data = attachment.content or b""
        body = CreateUploadSessionPostRequestBody(
            attachment_item=AttachmentItem(
                attachment_type=AttachmentType.File,
                name=attachment.file_name,
                size=len(data),
                content_type=attachment.content_type,
            )
        )
        builder = client.users.by_user_id(mailbox).messages.by_message_id(message_id).attachments
        session = await graph_call(
            "upload_session_create", mailbox, builder.create_upload_session.post(body), item_level=True
        )
        upload_url = getattr(session, "upload_url", None)
        if not upload_url:
            raise TransientError("graph returned an upload session without an upload URL")
        if not (upload_url.startswith("https://") or is_loopback_url(upload_url)):
            raise ConfigurationError("graph returned a non-https upload URL")
        http = self._client()
        view = memoryview(data)
        for start in range(0, len(data), self.chunk_bytes):
            end = min(start + self.chunk_bytes, len(data)) - 1
            await self._put_chunk(http, upload_url, view[start : end + 1], start, end, len(data))

    async def _put_chunk(
        self, http: httpx.AsyncClient, url: str, chunk: memoryview, start: int, end: int, total: int
    ) -> None:
        import httpx

        headers = {
            "Content-Range": f"bytes {start}-{end}/{total}",
            "Content-Type": "application/octet-stream",
        }
        retry_after: float | None = None
        for attempt in range(self.chunk_retries + 1):
            last_try = attempt == self.chunk_retries
            try:
                response = await http.put(url, content=bytes(chunk), headers=headers)
            except httpx.TransportError as exc:
                if last_try:
                    raise TransientError(f"upload chunk failed: {type(exc).__name__}") from None
                await asyncio.sleep(0.5 * 2**attempt)
                continue
            if response.status_code in (200, 201, 202):
                return
            if response.status_code == 413:
                raise PermanentError(PoisonReason.TOO_BIG, "upload chunk refused with 413")
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            retryable = response.status_code == 429 or response.status_code >= 500
            wait = 0.5 * 2**attempt if retry_after is None else retry_after
            if not retryable or last_try or wait > self.retry_max_wait_seconds:
                # An expired or confused session cannot be resumed here; the caller removes the
                # item and the next attempt starts the record again.
                raise TransientError(
                    f"upload chunk refused with {response.status_code}", retry_after=retry_after
                )
            await asyncio.sleep(wait)

    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._http is None:
            # Separate from the Graph client on purpose: no auth middleware, so no bearer token
            # can reach the upload host, and no retry handler resending octet streams.
            self._http = httpx.AsyncClient(timeout=self.timeout_seconds, follow_redirects=False)
        return self._http


def _create_request_estimate(item: RenderedItem) -> int:
    """Bytes of the create request apart from its attachments (JSON-escaped as kiota sends it)."""
    fields = [item.subject, item.html_body, item.record_id, item.message_id_header]
    fields += [r.display_name + r.address for r in (item.sender, *item.recipients)]
    fields += [name + value for name, value in item.extra_headers]
    escaped = sum(len(json.dumps(text)) for text in fields)
    return escaped + 2048 + 160 * (len(item.recipients) + len(item.extra_headers))


def _inline_cost(attachment: RenderedAttachment) -> int:
    encoded = 4 * math.ceil(len(attachment.content or b"") / 3)
    return encoded + len(json.dumps(attachment.file_name)) + len(attachment.content_type) + 160


def file_attachment(attachment: RenderedAttachment) -> Any:
    from msgraph.generated.models.file_attachment import FileAttachment

    return FileAttachment(
        odata_type="#microsoft.graph.fileAttachment",
        name=attachment.file_name,
        content_type=attachment.content_type,
        content_bytes=attachment.content,
        is_inline=False,
    )


# ---------------------------------------------------------------------------------------------
# Calling Graph


class _FolderGone(Exception):
    """The cached archive folder no longer exists (someone deleted it)."""


class _FolderExists(Exception):
    """Another worker created the archive folder between our lookup and our create."""


async def graph_call[T](
    operation: str, mailbox: str, awaitable: Awaitable[T], *, item_level: bool = False
) -> T:
    """Awaits one SDK call and maps its failure to the error taxonomy.

    ``item_level``: the call addresses an existing item; a 404 there means the item is gone
    (the next attempt starts over), not that the user is.
    """
    try:
        return await awaitable
    except ArchiveError:
        raise
    except Exception as exc:
        failure = graph_failure(exc)
        if failure is not None and failure.status == 404 and failure.code in USER_NOT_FOUND_CODES:
            if not item_level:
                raise MailboxUnavailable(mailbox, failure.code) from None
            raise TransientError(failure.describe(operation)) from None
        translated = translate_common(exc, mailbox=mailbox, operation=operation)
        if translated is None:
            raise
        # "from None": Graph's own message can quote the address; the taxonomy error does not.
        raise translated from None


def _request_configuration(query: Any = None, *, prefer_immutable: bool = False) -> Any:
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    config = RequestConfiguration(query_parameters=query)
    if prefer_immutable:
        config.headers.add("Prefer", PREFER_IMMUTABLE_ID)
    return config


# ---------------------------------------------------------------------------------------------
# The writer


class GraphMailbox:
    """``MailboxWriter`` on Microsoft Graph. Synchronous; safe to call from several threads.

    The SDK calls run on the event loop shared by the client's adapters (see graph_client);
    ``close()`` gives it back. Folder ids are cached per mailbox for the adapter's life.
    """

    def __init__(
        self,
        client: Any,
        *,
        item_class: str = DEFAULT_ITEM_CLASS,
        folder_name: str = DEFAULT_FOLDER_NAME,
        id_property_guid: str = ID_PROPERTY_GUID,
        attachments: AttachmentStrategy | None = None,
        max_concurrent_writes_per_mailbox: int = 4,
    ) -> None:
        if not item_class or not item_class.isprintable() or not item_class.upper().startswith("IPM."):
            raise ConfigurationError("item_class must be a printable message class starting with IPM.")
        if not folder_name.strip() or not folder_name.isprintable():
            raise ConfigurationError("folder_name must be a non-empty printable name")
        try:
            guid = str(uuid.UUID(id_property_guid))
        except ValueError:
            raise ConfigurationError("id_property_guid is not a GUID") from None
        if max_concurrent_writes_per_mailbox < 1:
            raise ConfigurationError("max_concurrent_writes_per_mailbox must be at least 1")
        self.item_class = item_class
        self.folder_name = folder_name
        self.id_property = id_property_id(guid)
        self._client = client
        self._attachments: AttachmentStrategy = attachments or UploadSessionAttachments()
        self._max_concurrent = max_concurrent_writes_per_mailbox
        # Touched only on the loop thread, so plain dicts suffice.
        self._folder_ids: dict[str, str] = {}
        self._folder_locks: dict[str, asyncio.Lock] = {}
        self._mailbox_slots: dict[str, asyncio.Semaphore] = {}
        self._loop = acquire_graph_loop(client)
        self._closed = False

    def write(self, mailbox: str, item: RenderedItem) -> WriteOutcome:
        if self._closed:
            raise RuntimeError("GraphMailbox is closed")
        return self._loop.run(self._write(mailbox, item))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        release_graph_loop(self._client, self._attachments.aclose())

    def __enter__(self) -> GraphMailbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one write -----------------------------------------------------------------------------

    async def _write(self, mailbox: str, item: RenderedItem) -> WriteOutcome:
        plan = self._attachments.plan(item)  # refuses oversized items before any request
        async with self._slot(mailbox):
            for attempt in (1, 2):
                folder_id = await self._folder_id(mailbox)
                try:
                    return await self._write_in_folder(mailbox, folder_id, item, plan)
                except _FolderGone:
                    self._forget_folder(mailbox, folder_id)
                    if attempt == 2:
                        raise TransientError("archive folder vanished twice during one write") from None
        raise AssertionError("unreachable")

    async def _write_in_folder(
        self, mailbox: str, folder_id: str, item: RenderedItem, plan: AttachmentPlan
    ) -> WriteOutcome:
        ref = mailbox_ref(mailbox)
        existing = await self._find_item(mailbox, folder_id, item.record_id)
        if existing is not None:
            if plan.after_create:
                added = await self._complete_attachments(mailbox, existing, plan)
                if added:
                    logger.info(
                        "graph write %s mailbox=%s: completed earlier import, %d attachment(s) added",
                        item.record_key, ref, added,
                    )
                    return WriteOutcome.IMPORTED
            logger.info("graph write %s mailbox=%s: duplicate, skipped", item.record_key, ref)
            return WriteOutcome.SKIPPED_DUPLICATE

        message_id = await self._create_item(mailbox, folder_id, item, plan)
        if plan.after_create:
            try:
                for attachment in plan.after_create:
                    await self._attachments.attach(self._client, mailbox, message_id, attachment)
            except Exception:
                await self._discard(mailbox, message_id, item.record_key)
                raise
        logger.info(
            "graph write %s mailbox=%s: imported, attachments inline=%d added=%d missing=%d",
            item.record_key, ref, len(plan.inline), len(plan.after_create), plan.missing,
        )
        return WriteOutcome.IMPORTED

    def _slot(self, mailbox: str) -> asyncio.Semaphore:
        key = mailbox.strip().lower()
        slot = self._mailbox_slots.get(key)
        if slot is None:
            slot = self._mailbox_slots[key] = asyncio.Semaphore(self._max_concurrent)
        return slot

    # -- the archive folder -----------------------------------------------------------------------

    async def _folder_id(self, mailbox: str) -> str:
        key = mailbox.strip().lower()
        cached = self._folder_ids.get(key)
        if cached:
            return cached
        lock = self._folder_locks.setdefault(key, asyncio.Lock())
        async with lock:  # one lookup per mailbox in this process, however many writes wait
            cached = self._folder_ids.get(key)
            if cached:
                return cached
            folder_id = await self._find_folder(mailbox)
            if folder_id is None:
                try:
                    folder_id = await self._create_folder(mailbox)
                except _FolderExists:
                    folder_id = await self._find_folder(mailbox)
                    if folder_id is None:
                        raise TransientError("archive folder exists but cannot be found yet") from None
            self._folder_ids[key] = folder_id
            return folder_id

    def _forget_folder(self, mailbox: str, folder_id: str) -> None:
        key = mailbox.strip().lower()
        if self._folder_ids.get(key) == folder_id:
            del self._folder_ids[key]

    def _root_children(self, mailbox: str) -> Any:
        folders = self._client.users.by_user_id(mailbox).mail_folders
        return folders.by_mail_folder_id("msgfolderroot").child_folders

    async def _find_folder(self, mailbox: str) -> str | None:
        from msgraph.generated.users.item.mail_folders.item.child_folders import (
            child_folders_request_builder as child_folders,
        )

        query = child_folders.ChildFoldersRequestBuilder.ChildFoldersRequestBuilderGetQueryParameters(
            filter=f"displayName eq {odata_string(self.folder_name)}",
            include_hidden_folders="true",
            select=["id", "displayName"],
        )
        page = await graph_call(
            "folder_find", mailbox, self._root_children(mailbox).get(_request_configuration(query))
        )
        for folder in (page.value if page is not None else None) or []:
            if folder.id and (folder.display_name or "").casefold() == self.folder_name.casefold():
                return str(folder.id)
        return None

    async def _create_folder(self, mailbox: str) -> str:
        from msgraph.generated.models.mail_folder import MailFolder

        try:
            folder = await self._root_children(mailbox).post(MailFolder(display_name=self.folder_name))
        except Exception as exc:
            failure = graph_failure(exc)
            if failure is not None and failure.code == "ErrorFolderExists":
                raise _FolderExists() from None
            await graph_call("folder_create", mailbox, _reraise(exc))
            raise
        if folder is None or not folder.id:
            raise TransientError("graph created the archive folder without returning its id")
        logger.info("graph archive folder created in mailbox=%s", mailbox_ref(mailbox))
        return str(folder.id)

    # -- items ----------------------------------------------------------------------------------

    def _folder_messages(self, mailbox: str, folder_id: str) -> Any:
        return self._client.users.by_user_id(mailbox).mail_folders.by_mail_folder_id(folder_id).messages

    async def _find_item(self, mailbox: str, folder_id: str, record_id: str) -> str | None:
        from msgraph.generated.users.item.mail_folders.item.messages.messages_request_builder import (
            MessagesRequestBuilder,
        )

        query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
            filter=(
                "singleValueExtendedProperties/Any(ep: ep/id eq "
                f"{odata_string(self.id_property)} and ep/value eq {odata_string(record_id)})"
            ),
            select=["id"],
            top=1,
        )
        request = self._folder_messages(mailbox, folder_id).get(
            _request_configuration(query, prefer_immutable=True)
        )
        page = await self._folder_call("item_lookup", mailbox, request)
        for message in (page.value if page is not None else None) or []:
            if message.id:
                return str(message.id)
        return None

    async def _create_item(
        self, mailbox: str, folder_id: str, item: RenderedItem, plan: AttachmentPlan
    ) -> str:
        message, dropped_headers = build_message(
            item, item_class=self.item_class, id_property=self.id_property, inline=plan.inline
        )
        if dropped_headers:
            logger.info("graph write %s: %d header(s) not accepted by Graph left out",
                        item.record_key, dropped_headers)
        request = self._folder_messages(mailbox, folder_id).post(
            message, _request_configuration(prefer_immutable=True)
        )
        created = await self._folder_call("item_create", mailbox, request, poison_bad_request=True)
        if created is None or not created.id:
            raise TransientError("graph created the item without returning its id")
        if created.is_draft:
            # The item exists and will be found as a duplicate; say so loudly instead of hiding it.
            logger.error("graph write %s mailbox=%s: item was stored as a draft",
                         item.record_key, mailbox_ref(mailbox))
        return str(created.id)

    async def _folder_call[R](
        self, operation: str, mailbox: str, awaitable: Awaitable[R], *, poison_bad_request: bool = False
    ) -> R:
        """A call inside the archive folder: a missing folder is ours to recreate, not an error."""
        try:
            return await awaitable
        except Exception as exc:
            failure = graph_failure(exc)
            if failure is not None:
                if failure.status == 404 and failure.code in ("ErrorItemNotFound", "ErrorInvalidIdMalformed"):
                    raise _FolderGone() from None
                if poison_bad_request and failure.status in (400, 413):
                    size_codes = ("ErrorMessageSizeExceeded", "RequestEntityTooLarge", "RequestBodyTooLarge")
                    reason = (
                        PoisonReason.TOO_BIG
                        if failure.status == 413 or failure.code in size_codes
                        else PoisonReason.INVALID_ITEM
                    )
                    raise PermanentError(reason, failure.describe(operation)) from None
            return await graph_call(operation, mailbox, _reraise(exc))

    async def _complete_attachments(self, mailbox: str, message_id: str, plan: AttachmentPlan) -> int:
        """Adds the after-create attachments an earlier, interrupted attempt did not add."""
        from msgraph.generated.users.item.messages.item.attachments.attachments_request_builder import (
            AttachmentsRequestBuilder,
        )

        builder = self._client.users.by_user_id(mailbox).messages.by_message_id(message_id).attachments
        query = AttachmentsRequestBuilder.AttachmentsRequestBuilderGetQueryParameters(select=["name"])
        present: Counter[str] = Counter()
        page = await graph_call(
            "attachment_list", mailbox, builder.get(_request_configuration(query)), item_level=True
        )
        while page is not None:
            present.update(a.name or "" for a in page.value or [])
            if not page.odata_next_link:
                break
            page = await graph_call(
                "attachment_list", mailbox, builder.with_url(page.odata_next_link).get(), item_level=True
            )
        for attachment in plan.inline:
            present[attachment.file_name] -= 1
        added = 0
        for attachment in plan.after_create:
            if present[attachment.file_name] > 0:
                present[attachment.file_name] -= 1
                continue
            await self._attachments.attach(self._client, mailbox, message_id, attachment)
            added += 1
        return added

    async def _discard(self, mailbox: str, message_id: str, record_key: str) -> None:
        """Removes an item whose attachments could not all be added, so the retry starts clean.

        If this fails too, the retry finds the item and adds what is missing.
        """
        builder = self._client.users.by_user_id(mailbox).messages.by_message_id(message_id)
        try:
            await builder.permanent_delete.post()
        except Exception as exc:
            failure = graph_failure(exc)
            logger.warning(
                "graph write %s mailbox=%s: incomplete item not removed (%s); the retry completes it",
                record_key, mailbox_ref(mailbox),
                failure.describe("item_discard") if failure else type(exc).__name__,
            )


async def _reraise(exc: Exception) -> Any:
    raise exc


def build_message(
    item: RenderedItem, *, item_class: str, id_property: str, inline: tuple[RenderedAttachment, ...]
) -> tuple[Any, int]:
    """The msgraph ``Message`` for one create POST, and the number of headers left out."""
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.internet_message_header import InternetMessageHeader
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.message import Message
    from msgraph.generated.models.recipient import Recipient
    from msgraph.generated.models.single_value_legacy_extended_property import (
        SingleValueLegacyExtendedProperty,
    )

    def recipient(address: Any) -> Recipient:
        return Recipient(
            email_address=EmailAddress(name=address.display_name or None, address=address.address)
        )

    properties = [
        (PROP_MESSAGE_FLAGS, MSGFLAG_READ),
        (PROP_CLIENT_SUBMIT_TIME, mapi_time(item.sent_at)),
        (PROP_DELIVERY_TIME, mapi_time(item.received_at)),
        (PROP_MESSAGE_CLASS, item_class),
        (id_property, item.record_id),
    ]
    headers, dropped = select_internet_headers(item.extra_headers)
    message = Message(
        subject=item.subject,
        body=ItemBody(content_type=BodyType.Html, content=item.html_body),
        from_=recipient(item.sender),
        sender=recipient(item.sender),
        to_recipients=[recipient(r) for r in item.recipients],
        single_value_extended_properties=[
            SingleValueLegacyExtendedProperty(id=prop_id, value=value) for prop_id, value in properties
        ],
        # sentDateTime/receivedDateTime are ignored on create (and can cause a 400): the MAPI
        # times above carry the original times instead.
    )
    if item.message_id_header:
        message.internet_message_id = item.message_id_header
    if headers:  # an empty collection is refused
        message.internet_message_headers = [InternetMessageHeader(name=n, value=v) for n, v in headers]
    if inline:
        message.attachments = [file_attachment(a) for a in inline]
    return message, dropped
