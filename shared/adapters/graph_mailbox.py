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
  makes writes idempotent and ties each item back to its record (chain of custody);
- ``String 0x0070`` (PidTagConversationTopic) = the chat's topic, ``Binary 0x0071``
  (PidTagConversationIndex) = the 22 bytes of the item's ``Thread-Index`` header (its last 16 are
  the chat's GUID) and ``Boolean 0x3016`` (PidTagConversationIndexTracking) = true: a chat's
  records form one conversation in Outlook and OWA, as the .eml's threading headers make them do.
  [MS-OXOMSG] 2.2.1.2: with tracking true and an index of at least 22 bytes starting 0x01, the
  conversation id is the index's GUID; otherwise it is an MD5 of the upper-cased topic (two chats
  of the same name would then share a conversation). Graph refuses ``References`` /
  ``In-Reply-To`` / ``Thread-Index`` as internet headers (x- headers only), so these properties
  are how the Graph item carries its threading.

Past Exchange's folder limit (1,000,000 items per folder): the archive folder is a chain, "WhatsApp
Archiver", then "WhatsApp Archiver 2", "WhatsApp Archiver 3"... all under msgfolderroot. New items
go to the first folder of the chain holding fewer than ``folder_items`` (990,000 by default); a
full one is never written again. Each process learns a folder's ``totalItemCount`` when it finds
the folder and then counts its own creates; it reads the count again (1 request) only when, at the
fastest rate the app's per-mailbox budget lets all workers together create items, the folder could
have reached ``folder_items`` since the last read. The 10,000 items of margin are what that budget
adds in 10 minutes. Should Exchange still refuse an item for the folder's sake
(``ErrorMessagePerFolderCountReceiveQuotaExceeded``, which Graph answers with a 500; or
``ErrorQuotaExceeded`` when the folder's count shows it is full), the item goes to the next folder
in the same write. A continuation folder is found or created as the first one is: several workers
creating it at once end with one folder (``ErrorFolderExists`` means another won: look again).

Idempotency: ``write(..., check_existing=True)`` first looks the record up by that property and
answers SKIPPED_DUPLICATE (after adding attachments an interrupted attempt left out) when it is
there. The lookup searches the whole mailbox (``GET /users/{id}/messages?$filter=...``, one request
however many folders the chain has), so an item written into an earlier folder of the chain, or
moved elsewhere by someone, is still found. ``check_existing=False`` skips the lookup: only for a
caller whose own idempotency record proves that no earlier attempt exists. Any failed attempt (a
TransientError after the create POST went out, a 503/504 on the create itself) may have left an
item behind, so every later attempt of the same record must use ``check_existing=True``. Within one
writer, writes of the same record to the same mailbox run one after the other; across writers
(processes) nothing here stops two first attempts from both creating the item: the service layer's
lease does that.

Cost in Graph requests per record and mailbox, folder id already cached; measured against
``shared/local/graph_server.py`` by counting the requests it received for the mailbox (upload PUTs
included), see ``test_requests_per_record_match_the_documented_cost``:

=====================================  ======================  =====================
record                                 check_existing=False    check_existing=True
=====================================  ======================  =====================
text only                              1 (create)              2 (lookup + create)
one 1 MB attachment (inline)           1                       2
one 20 MiB attachment (upload session) 9 (create + session     10
                                       + 7 chunk PUTs)
=====================================  ======================  =====================

In general: 1 create (+1 lookup when checking) + per attachment that misses the create: 1 POST
below 3 MB, or 1 createUploadSession + ceil(size / 3,276,800) PUTs. The first record for a mailbox
in a process adds 1 folder lookup per folder of the chain up to the first with room (+1 folder
create the very first time, +1 lookup again when another worker won the creation race). A folder's
count is read again at most once per (items left below ``folder_items``) / 16.7 seconds per
process: for a folder far from its limit hardly ever (an empty one: after 16 hours), near it now
and then; moving on to the next folder costs a count read, a find and a create, once per folder and
process. A record found already archived costs the lookup only (+1 attachment listing when it has
attachments added after the create). All of these count against the per-app, per-mailbox budget:
10,000 requests per 10 minutes, 4 concurrent requests and 150 MB of uploads per 5 minutes.
``MailboxGate`` keeps this process within the concurrency, ``MailboxPacer`` (graph_pacer.py) within
the rate and the uploads: every request takes a gate slot, then its pacing turn, then goes out; a
turn further away than the pacer's ``max_wait_seconds`` (and an item whose attachments cannot all
be uploaded by then) raises ``TransientError(retry_after=...)`` before any request, so the queue
waits instead of a worker.

Attachments: ``UploadSessionAttachments`` (the default, swappable ``AttachmentStrategy``) puts
attachments under 3 MB inline while the create request stays under 4 MB, and uploads the others
after the create, streaming them from ``payload.open()`` one chunk at a time: a large attachment
is never held in memory whole.

Open point (undocumented): every Microsoft example of an attachment upload session is on a draft;
here the item is a non-draft (it must be: draft state is fixed at creation). If Graph refuses the
session on a non-draft, the fallback is: remove the incomplete item and raise
``PermanentError(TOO_BIG, "upload session refused ...")`` so the record goes to the poison queue
with a reason an operator can replay once another strategy is configured, never a silently
incomplete item; later records needing a session are refused before any request for an hour.
Alternatives considered and rejected: create a draft and flip it (draft state cannot change),
the beta ``importMime`` (beta, extra permission, same 4 MB request limit), archiving without the
attachment (the read-only body could not say so). Graph's national-cloud table for
``attachment: createUploadSession`` marks it unavailable in US Government L4/L5: there, configure
``UploadSessionAttachments(upload_sessions=False)``, which refuses such records up front.

Logs carry record keys, hashed mailbox names and counts, never subjects, bodies, names or
addresses: this is regulated content.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Protocol

from shared import telemetry
from shared.adapters.graph_client import (
    THROTTLING_STATUSES,
    TOO_LARGE_CODES,
    USER_NOT_FOUND_CODES,
    MailboxGate,
    acquire_graph_loop,
    checked_graph_link,
    checked_upload_url,
    graph_client_info,
    graph_failure,
    graph_retry_policy,
    mailbox_ref,
    process_mailbox_gate,
    release_graph_loop,
    translate_common,
)
from shared.adapters.graph_json import send_json, string, values
from shared.adapters.graph_message_json import create_message_json
from shared.adapters.graph_pacer import (
    EXCHANGE_REQUEST_WINDOW_SECONDS,
    EXCHANGE_REQUESTS,
    MailboxPacer,
    PacingDeferred,
    process_mailbox_pacer,
)
from shared.adapters.retry_policy import SERVER_ERRORS, RetryPolicy
from shared.domain.errors import (
    ArchiveError,
    ConfigurationError,
    MailboxUnavailable,
    PermanentError,
    PoisonReason,
    TransientError,
)
from shared.domain.rendered import RenderedAttachment, RenderedItem, read_all
from shared.ports import WriteOutcome

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

DEFAULT_ITEM_CLASS = "IPM.Note.WhatsAppArchiver"
DEFAULT_FOLDER_NAME = "WhatsApp Archiver"
# Exchange Online saves no more items into a folder holding this many.
EXCHANGE_FOLDER_ITEM_LIMIT = 1_000_000
# Below the limit by what the app's whole per-mailbox budget (10,000 requests per 10 minutes) could
# add while one worker's count of the folder is stale: workers switch folders before Exchange must
# refuse anything.
DEFAULT_FOLDER_ITEMS = 990_000
# The fastest all workers together can fill one folder: every request of that budget a create.
FOLDER_GROWTH_PER_SECOND = EXCHANGE_REQUESTS / EXCHANGE_REQUEST_WINDOW_SECONDS
# Exchange's refusal of an item because its folder is full (an EWS ResponseCode; Graph's OData
# layer answers it with a 500, which would otherwise read as a passing server error).
FOLDER_FULL_CODE = "ErrorMessagePerFolderCountReceiveQuotaExceeded"
# Also Exchange's answer for a full mailbox and for the named-property quota: a full folder only
# when the folder's own count says so.
QUOTA_EXCEEDED_CODE = "ErrorQuotaExceeded"
# Folders one write tries when each in turn proves full or deleted; more means something else is
# wrong, and the queue's retry is the better judge.
MAX_FOLDER_ATTEMPTS = 4
# Fixed for the life of the archive: items written under another GUID are invisible to the
# idempotency lookup and would be archived twice.
ID_PROPERTY_GUID = "6aefd327-d14f-432e-a74c-bd982a9fae40"
ID_PROPERTY_NAME = "WhatsAppArchiverItemId"

PROP_MESSAGE_FLAGS = "Integer 0x0E07"
PROP_CLIENT_SUBMIT_TIME = "SystemTime 0x0039"
PROP_DELIVERY_TIME = "SystemTime 0x0E06"
PROP_MESSAGE_CLASS = "String 0x001A"
PROP_CONVERSATION_TOPIC = "String 0x0070"  # PidTagConversationTopic
PROP_CONVERSATION_INDEX = "Binary 0x0071"  # PidTagConversationIndex, base64 in Graph's JSON
PROP_CONVERSATION_INDEX_TRACKING = "Boolean 0x3016"  # PidTagConversationIndexTracking
THREAD_INDEX_HEADER = "Thread-Index"
# [MS-OXOMSG] 2.2.1.3: 1 reserved byte (0x01), 5 bytes of FILETIME, the 16-byte conversation GUID.
CONVERSATION_INDEX_HEADER_BYTES = 22
MSGFLAG_READ = "1"  # read; without MSGFLAG_UNSENT (8) the item is not a draft

PREFER_IMMUTABLE_ID = 'IdType="ImmutableId"'

# Graph takes at most 5 custom internet headers on a message, all named x-/X-, and refuses an
# empty collection; longer values than a header line are dropped rather than cut, so a stored
# header never says something the record did not.
MAX_INTERNET_HEADERS = 5
MAX_HEADER_VALUE_CHARS = 998
_HEADER_NAME = re.compile(r"^[xX]-[!-9;-~]+$")

# Request size: Graph refuses requests over 4 MB (4 MiB, as measured in public reports). The
# margin covers the JSON around the parts we measure (property names, recipients, headers) and
# HTTP framing.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
REQUEST_MARGIN_BYTES = 64 * 1024
# Upload-session chunks: at most 4 MB each; 10 x 320 KiB is the customary safe size.
UPLOAD_CHUNK_BYTES = 3_276_800
# "3 MB to 150 MB: upload session; under 3 MB: POST". Read as decimal megabytes, the stricter
# reading for us: an attachment just under it still fits one POST (base64 4,000,000 bytes).
UPLOAD_SESSION_MIN_BYTES = 3_000_000
# The largest attachment that fits a POST of its own (base64 plus a little JSON) under 4 MiB.
SINGLE_POST_ATTACHMENT_LIMIT = (MAX_REQUEST_BYTES - REQUEST_MARGIN_BYTES) * 3 // 4
# Exchange Online's upper bound for a message (tenants default to 35 MB and may raise it).
MAX_MESSAGE_BYTES = 150 * 1024 * 1024
# How long a refused upload session makes the strategy refuse records that would need one.
SESSION_REFUSAL_MEMORY_SECONDS = 3600.0
SESSION_TOO_SMALL_CODE = "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"


def archive_folder_name(base: str, number: int) -> str:
    """The name of the ``number``th folder of the archive chain: ``base``, ``base 2``, ``base 3``..."""
    if number < 1:
        raise ValueError("archive folders are numbered from 1")
    return base if number == 1 else f"{base} {number}"


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


def conversation_index(headers: tuple[tuple[str, str], ...]) -> bytes | None:
    """The bytes of the item's ``Thread-Index`` header when they make a conversation index Exchange
    derives the conversation id from (at least 22 bytes, first byte 0x01); else None."""
    value = next((v for n, v in headers if n.lower() == THREAD_INDEX_HEADER.lower()), None)
    if value is None:
        return None
    try:
        index = base64.b64decode("".join(value.split()), validate=True)
    except ValueError:
        return None
    if len(index) < CONVERSATION_INDEX_HEADER_BYTES or index[0] != 0x01:
        return None
    return index


def conversation_properties(item: RenderedItem) -> list[tuple[str, str]]:
    """PidTagConversationTopic / PidTagConversationIndex (+ tracking) for the create request."""
    properties: list[tuple[str, str]] = []
    if item.conversation_topic:
        properties.append((PROP_CONVERSATION_TOPIC, item.conversation_topic))
    index = conversation_index(item.extra_headers)
    if index is not None:
        properties.append((PROP_CONVERSATION_INDEX, base64.b64encode(index).decode("ascii")))
        properties.append((PROP_CONVERSATION_INDEX_TRACKING, "true"))
    return properties


# ---------------------------------------------------------------------------------------------
# Calling Graph


class GraphSession:
    """One client, the per-mailbox gate and the per-mailbox pacer: every request goes through
    ``send`` or ``call`` (upload PUTs through ``gate`` and ``pace`` themselves).

    A request takes its gate slot first and its pacing turn second, so it goes out at the moment
    the pacer booked for it: were the order reversed, requests admitted on time could pile up
    behind a busy gate and leave together, over the rate. While the pacer holds a slot, the
    mailbox is rate-bound anyway, so the slot would not have been used sooner.

    The pacer's budgets are per Graph host and mailbox (Exchange's are per app and mailbox): two
    clients of one process on the same host share them, a test server on another port has its own.
    """

    def __init__(self, client: Any, gate: MailboxGate, pacer: MailboxPacer | None = None) -> None:
        self.client = client
        self.gate = gate
        self.pacer = pacer or process_mailbox_pacer()
        try:
            info = graph_client_info(client)
            self.base_url, self.cloud = info.base_url, info.cloud
        except (KeyError, TypeError):
            # A client built elsewhere (tests): one budget per mailbox; no page link is followed.
            self.base_url, self.cloud = "", "global"

    def budget_key(self, mailbox: str) -> str:
        return f"{self.base_url} {mailbox}" if self.base_url else mailbox

    async def pace(self, mailbox: str, *, upload_bytes: int = 0, may_defer: bool = True) -> None:
        """Waits for ``mailbox``'s next turn (hold a gate slot); a turn too far away is a
        TransientError carrying the wait, raised before anything is sent."""
        try:
            await self.pacer.admit(self.budget_key(mailbox), upload_bytes=upload_bytes, may_defer=may_defer)
        except PacingDeferred as deferred:
            raise TransientError(
                f"graph {deferred.what} budget of the mailbox used up for now", retry_after=deferred.wait,
            ) from None

    def upload_wait(self, mailbox: str, upload_bytes: int) -> float:
        """Seconds until ``upload_bytes`` could all be uploaded into ``mailbox`` (nothing booked)."""
        return self.pacer.upload_wait(self.budget_key(mailbox), upload_bytes)

    def throttled(self, mailbox: str, retry_after: float | None) -> None:
        """A 429 reached the writer: the rest of this process holds off that mailbox as long."""
        self.pacer.penalize(self.budget_key(mailbox), retry_after)

    async def raw(self, request: Any) -> Any:
        """Sends a kiota ``RequestInformation``; Graph's answer as plain JSON (graph_json.py says
        why every answer the writer reads goes this way, not through the SDK's models)."""
        return await send_json(self.client, request)

    async def send[R](
        self, mailbox: str, request: Callable[[], Awaitable[R]], *, upload_bytes: int = 0
    ) -> R:
        """Runs ``request()`` inside one of ``mailbox``'s slots, in its pacing turn; failures come
        back untranslated. ``upload_bytes``: the size of the request's body (POST), which counts
        against the mailbox's upload budget.

        ``request`` is a factory so that nothing is created (and left un-awaited) while waiting.
        """
        async with self.gate.slot(mailbox):
            await self.pace(mailbox, upload_bytes=upload_bytes)
            try:
                return await request()
            except Exception as exc:
                failure = graph_failure(exc)
                if failure is not None and failure.status == 429:
                    self.throttled(mailbox, failure.retry_after)
                raise

    async def call[R](
        self,
        operation: str,
        mailbox: str,
        request: Callable[[], Awaitable[R]],
        *,
        item_level: bool = False,
        upload_bytes: int = 0,
    ) -> R:
        """``send``, with failures mapped to the error taxonomy (see ``graph_error``)."""
        try:
            return await self.send(mailbox, request, upload_bytes=upload_bytes)
        except ArchiveError:
            raise
        except Exception as exc:
            raise graph_error(exc, operation, mailbox, item_level=item_level) from None


def graph_error(exc: Exception, operation: str, mailbox: str, *, item_level: bool = False) -> Exception:
    """The taxonomy error for a failed call (``exc`` itself when it is not a Graph failure).

    ``item_level``: the call addresses an existing item; a 404 there means the item is gone
    (the next attempt starts over), not that the user is. The result never carries Graph's own
    message, which can quote the address.
    """
    if isinstance(exc, ArchiveError):
        return exc
    failure = graph_failure(exc)
    if failure is not None and failure.status == 404 and item_level:
        # Whatever the code (Exchange says ErrorItemNotFound), the item is gone: start over.
        return TransientError(failure.describe(operation))
    if failure is not None and failure.status == 404 and failure.code in USER_NOT_FOUND_CODES:
        return MailboxUnavailable(mailbox, failure.code)
    return translate_common(exc, mailbox=mailbox, operation=operation) or exc


def _request_configuration(query: Any = None, *, prefer_immutable: bool = False) -> Any:
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    config = RequestConfiguration(query_parameters=query)
    if prefer_immutable:
        config.headers.add("Prefer", PREFER_IMMUTABLE_ID)
    return config


# ---------------------------------------------------------------------------------------------
# Attachments


@dataclass(frozen=True)
class AttachmentPlan:
    inline: tuple[RenderedAttachment, ...]  # inside the create POST
    after_create: tuple[RenderedAttachment, ...]  # added to the created item, one by one
    missing: int  # not captured: not sent, the body already says so


class AttachmentStrategy(Protocol):
    """Decides how each attachment reaches the item, and adds those that miss the create.

    One instance per writer: it may keep connections on the writer's event loop.
    """

    def plan(self, item: RenderedItem) -> AttachmentPlan:
        """Raises PermanentError for an item it can never deliver, before any request."""
        ...

    async def attach(
        self, graph: GraphSession, mailbox: str, message_id: str, attachment: RenderedAttachment
    ) -> None: ...

    async def aclose(self) -> None: ...


class UploadSessionRefused(Exception):
    """Graph refused an attachment upload session on the (non-draft) item."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UploadSessionAttachments:
    """Inline while the create request stays under 4 MB; the others added after the create.

    Attachments under 3 MB go inline, smallest first, while the create request stays under 4 MB
    (their bytes are read whole: they are small). One that misses the create is posted on its own
    (``POST .../messages/{id}/attachments``) when it is under 3 MB, else uploaded through
    ``createUploadSession`` and plain httpx PUTs of at most ``chunk_bytes`` with ``Content-Range``
    and no Authorization header (the upload URL carries its own token, so it is never logged; it
    is used only on the cloud's Exchange hosts, see ``checked_upload_url``),
    read one chunk at a time from ``payload.open()``. The SDK's LargeFileUploadTask is avoided: it
    is known to misbehave with Outlook items.

    Should Graph's session minimum be larger than ours, an attachment it refuses as too small is
    posted on its own when that still fits a request. Should Graph refuse sessions on non-drafts,
    see the module docstring. ``upload_sessions=False`` (clouds without upload sessions) refuses
    records with an attachment that fits no single request, before anything is created.

    Memory, measured (``test_30mb_file_backed_attachment_streams_with_peak_memory_far_below_its_size``):
    a 30 MiB file-backed attachment archived with a tracemalloc peak of about 6.6 MiB above the
    baseline for the whole process, of which the writer's share is one 3.1 MiB chunk and one
    256 KiB send slice; the rest is LocalGraph's own copy of the chunk it is receiving.
    """

    def __init__(
        self,
        *,
        upload_sessions: bool = True,
        chunk_bytes: int = UPLOAD_CHUNK_BYTES,
        chunk_retries: int = 2,
        retry_max_wait_seconds: float = 5.0,
        timeout_seconds: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        if chunk_bytes <= 0 or chunk_bytes > MAX_REQUEST_BYTES or chunk_bytes % (320 * 1024):
            raise ConfigurationError("upload chunks must be a multiple of 320 KiB and at most 4 MB")
        self.upload_sessions = upload_sessions
        self.chunk_bytes = chunk_bytes
        # A chunk PUT is Graph's retry policy (``chunk_retries`` retries, no wait above
        # ``retry_max_wait_seconds`` slept) on any server error too: the upload host is not behind
        # kiota, and a chunk refused for good costs the whole item (the writer removes it).
        self.retry_policy = retry_policy or replace(
            graph_retry_policy(chunk_retries, retry_max_wait_seconds),
            retry_statuses=THROTTLING_STATUSES | SERVER_ERRORS,
        )
        self.timeout_seconds = timeout_seconds
        self._clock = clock
        self._sessions_refused_at: float | None = None
        self._http: httpx.AsyncClient | None = None

    # -- planning -----------------------------------------------------------------------------

    def plan(self, item: RenderedItem) -> AttachmentPlan:
        present = [a for a in item.attachments if not a.missing]
        total = sum(a.size for a in present)
        if total > MAX_MESSAGE_BYTES:
            raise PermanentError(
                PoisonReason.TOO_BIG, f"{total} bytes of attachments exceed Exchange's message size limit"
            )
        base = _create_request_estimate(item)
        if base > MAX_REQUEST_BYTES - REQUEST_MARGIN_BYTES:
            raise PermanentError(PoisonReason.TOO_BIG, f"the item without attachments takes {base} bytes of JSON")
        budget = MAX_REQUEST_BYTES - REQUEST_MARGIN_BYTES - base
        inline_ids: set[int] = set()
        for attachment in sorted(present, key=lambda a: a.size):
            cost = _inline_cost(attachment)
            if attachment.size >= UPLOAD_SESSION_MIN_BYTES or cost > budget:
                break
            budget -= cost
            inline_ids.add(id(attachment))
        after = tuple(a for a in present if id(a) not in inline_ids)
        needs_session = [a for a in after if a.size >= UPLOAD_SESSION_MIN_BYTES]
        if needs_session and not self._sessions_usable():
            why = "refused by Graph recently" if self.upload_sessions else "disabled"
            raise PermanentError(
                PoisonReason.TOO_BIG,
                f"{len(needs_session)} attachment(s) of 3 MB or more need an upload session, {why}",
            )
        return AttachmentPlan(
            inline=tuple(a for a in present if id(a) in inline_ids),
            after_create=after,
            missing=len(item.attachments) - len(present),
        )

    def _sessions_usable(self) -> bool:
        if not self.upload_sessions:
            return False
        refused = self._sessions_refused_at
        return refused is None or self._clock() - refused > SESSION_REFUSAL_MEMORY_SECONDS

    # -- adding after the create --------------------------------------------------------------

    async def attach(
        self, graph: GraphSession, mailbox: str, message_id: str, attachment: RenderedAttachment
    ) -> None:
        if attachment.size < UPLOAD_SESSION_MIN_BYTES:
            await self._post_attachment(graph, mailbox, message_id, attachment)
            return
        try:
            await self._upload(graph, mailbox, message_id, attachment)
        except _SessionTooSmall:
            if attachment.size > SINGLE_POST_ATTACHMENT_LIMIT:
                raise PermanentError(
                    PoisonReason.TOO_BIG,
                    f"an attachment of {attachment.size} bytes is below Graph's upload-session minimum "
                    "and above what one request carries",
                ) from None
            await self._post_attachment(graph, mailbox, message_id, attachment)
        except UploadSessionRefused as refused:
            self._sessions_refused_at = self._clock()
            logger.error("graph upload sessions refused on non-draft items (%s): large attachments "
                         "cannot be archived with this strategy", refused.detail)
            raise PermanentError(PoisonReason.TOO_BIG, f"upload session refused: {refused.detail}") from None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _post_attachment(
        self, graph: GraphSession, mailbox: str, message_id: str, attachment: RenderedAttachment
    ) -> None:
        data = await read_small(attachment)
        builder = graph.client.users.by_user_id(mailbox).messages.by_message_id(message_id).attachments
        request = builder.to_post_request_information(file_attachment(attachment, data))
        del data
        await graph.call(
            "attachment_add", mailbox, lambda: graph.raw(request), item_level=True,
            upload_bytes=len(request.content or b""),
        )

    async def _upload(
        self, graph: GraphSession, mailbox: str, message_id: str, attachment: RenderedAttachment
    ) -> None:
        from msgraph.generated.models.attachment_item import AttachmentItem
        from msgraph.generated.models.attachment_type import AttachmentType
        from msgraph.generated.users.item.messages.item.attachments.create_upload_session.create_upload_session_post_request_body import (  # noqa: E501
            CreateUploadSessionPostRequestBody,
        )

        assert attachment.payload is not None  # planned attachments are present
        total = attachment.size
        body = CreateUploadSessionPostRequestBody(
            attachment_item=AttachmentItem(
                attachment_type=AttachmentType.File,
                name=attachment.file_name,
                size=total,
                content_type=attachment.content_type,
            )
        )
        builder = graph.client.users.by_user_id(mailbox).messages.by_message_id(message_id).attachments
        try:
            request = builder.create_upload_session.to_post_request_information(body)
            session = await graph.send(mailbox, lambda: graph.raw(request))
        except ArchiveError:
            raise
        except Exception as exc:
            failure = graph_failure(exc)
            if failure is not None and failure.code == SESSION_TOO_SMALL_CODE:
                raise _SessionTooSmall() from None
            if failure is not None and _is_session_refusal(failure.status, failure.code, failure.too_large):
                raise UploadSessionRefused(failure.describe("upload_session_create")) from None
            raise graph_error(exc, "upload_session_create", mailbox, item_level=True) from None
        upload_url = string(session, "uploadUrl")
        if upload_url is None:
            raise TransientError("graph returned an upload session without an upload URL")
        upload_url = checked_upload_url(upload_url, graph.base_url, graph.cloud)

        http = self._client()
        reader = await asyncio.to_thread(attachment.payload.open)
        try:
            start = 0
            while start < total:
                size = min(self.chunk_bytes, total - start)
                chunk = await asyncio.to_thread(_read_exactly, reader, size)
                if len(chunk) != size:
                    raise PermanentError(PoisonReason.ATTACHMENT_CORRUPT, "payload shorter than its size")
                if start + size == total and await asyncio.to_thread(reader.read, 1):
                    raise PermanentError(PoisonReason.ATTACHMENT_CORRUPT, "payload longer than its size")
                await self._put_chunk(graph, mailbox, http, upload_url, chunk, start, total)
                start += size
                del chunk  # one chunk in memory at a time: drop it before reading the next
        finally:
            await asyncio.to_thread(reader.close)

    async def _put_chunk(
        self,
        graph: GraphSession,
        mailbox: str,
        http: httpx.AsyncClient,
        url: str,
        chunk: bytes,
        start: int,
        total: int,
    ) -> None:
        import httpx

        end = start + len(chunk) - 1
        headers = {
            "Content-Range": f"bytes {start}-{end}/{total}",
            "Content-Length": str(len(chunk)),
            "Content-Type": "application/octet-stream",
        }
        retry = self.retry_policy
        while True:
            body = _slices(chunk)
            try:
                async with graph.gate.slot(mailbox):
                    # Mid-upload the chunk waits for its turn however long: giving up here would
                    # throw away the chunks already sent, which counted against the budget too.
                    await graph.pace(mailbox, upload_bytes=len(chunk), may_defer=False)
                    # httpx sends any bytes-like slice; its annotation says bytes (no copy made here).
                    response = await http.put(url, content=body, headers=headers)  # pyright: ignore[reportArgumentType]
            except httpx.TransportError as exc:
                decision = retry.after_failure(method="PUT")
                if not decision.retry:
                    raise TransientError(f"upload chunk failed: {type(exc).__name__}") from None
                retry = decision.policy
                await asyncio.sleep(decision.wait)
                continue
            finally:
                await body.aclose()
            status = response.status_code
            if status in (200, 201, 202, 204):
                return
            code = _error_code(response)
            if status == 413 or code in TOO_LARGE_CODES:
                raise PermanentError(PoisonReason.TOO_BIG, f"upload chunk refused with {status} {code}")
            decision = retry.after_failure(
                method="PUT", status=status, retry_after_header=response.headers.get("Retry-After")
            )
            if status == 429:
                graph.throttled(mailbox, decision.retry_after)
            if status in THROTTLING_STATUSES:
                # Chunks go to the upload host outside kiota, whose retry handler counts the rest.
                telemetry.count_graph_throttled(status)
            if not decision.retry:
                # An expired or confused session is not resumed: the writer removes the item and
                # the next attempt starts the record again.
                raise TransientError(
                    f"upload chunk refused with {status} {code}", retry_after=decision.retry_after
                )
            retry = decision.policy
            await asyncio.sleep(decision.wait)

    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._http is None:
            # Separate from the Graph client on purpose: no auth middleware, so no bearer token
            # can reach the upload host, and no retry handler resending octet streams.
            self._http = httpx.AsyncClient(timeout=self.timeout_seconds, follow_redirects=False)
        return self._http


# Slices handed to httpx: h11 copies what it sends, so a slice, not the whole chunk, is copied at
# a time. The chunk is passed through a generator rather than as ``content=bytes`` because
# httpx's Response and its stream reference each other: a cycle that would keep every sent chunk
# alive until the garbage collector runs (measured: four 3 MB chunks at once).
_SEND_SLICE_BYTES = 256 * 1024


async def _slices(chunk: bytes) -> AsyncGenerator[memoryview]:
    view = memoryview(chunk)
    try:
        for offset in range(0, len(view), _SEND_SLICE_BYTES):
            yield view[offset : offset + _SEND_SLICE_BYTES]
    finally:
        view.release()


class _SessionTooSmall(Exception):
    """Graph's upload-session minimum is above this attachment's size."""


def _is_session_refusal(status: int | None, code: str, too_large: bool) -> bool:
    """A createUploadSession answer that says "not on this item", as opposed to a passing fault."""
    if status is None or status in THROTTLING_STATUSES or status >= 500 or too_large:
        return False
    if status == 404 or status == 401:
        return False  # the item is gone / the token: handled as such
    return status in (400, 403, 405, 409, 501)


def _error_code(response: Any) -> str:
    try:
        payload = response.json()
    except ValueError:
        return ""
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code) if isinstance(code, str) and code.isprintable() and len(code) < 100 else ""


def _read_exactly(reader: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at the end of the stream (raw files may return short reads)."""
    first = reader.read(size)
    if len(first) == size or not first:
        return first
    parts = [first]
    got = len(first)
    while got < size:
        more = reader.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


async def read_small(attachment: RenderedAttachment) -> bytes:
    """All the bytes of a small attachment (one that fits a single request), read off the event
    loop and size-checked. Large ones are only ever streamed."""
    if attachment.payload is None:
        raise ValueError("attachment not captured")
    if attachment.size > SINGLE_POST_ATTACHMENT_LIMIT:
        raise ValueError("only attachments that fit one request are read whole")
    data = await asyncio.to_thread(read_all, attachment.payload)
    if len(data) != attachment.size:
        raise PermanentError(PoisonReason.ATTACHMENT_CORRUPT, "payload size differs from what it declared")
    return data


def _create_request_estimate(item: RenderedItem) -> int:
    """Bytes of the create request apart from its attachments (JSON-escaped as kiota sends it)."""
    fields = [item.subject, item.html_body, item.record_id, item.message_id_header, item.conversation_topic]
    fields += [r.display_name + r.address for r in (item.sender, *item.recipients)]
    fields += [name + value for name, value in item.extra_headers]  # Thread-Index again as 0x0071
    escaped = sum(len(json.dumps(text)) for text in fields)
    return escaped + 2048 + 160 * (len(item.recipients) + len(item.extra_headers) + 3)


def _item_count(folder: Any) -> int:
    """A mailFolder's totalItemCount from its JSON; 0 when absent (Exchange's own refusal of a full
    folder then still moves the chain on)."""
    count = folder.get("totalItemCount") if isinstance(folder, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0


def _created_item(created: Any) -> tuple[str | None, bool]:
    """(id, isDraft) from the JSON of a create's answer; (None, False) when it has no id."""
    return string(created, "id"), isinstance(created, dict) and created.get("isDraft") is True


def _create_upload_bytes(item: RenderedItem, plan: AttachmentPlan) -> int:
    """About the size of the create request's body (a little more), before it is built."""
    return _create_request_estimate(item) + sum(_inline_cost(a) for a in plan.inline)


def _inline_cost(attachment: RenderedAttachment) -> int:
    encoded = 4 * math.ceil(attachment.size / 3)
    return encoded + len(json.dumps(attachment.file_name)) + len(attachment.content_type) + 160


def file_attachment(attachment: RenderedAttachment, data: bytes) -> Any:
    from msgraph.generated.models.file_attachment import FileAttachment

    return FileAttachment(
        odata_type="#microsoft.graph.fileAttachment",
        name=attachment.file_name,
        content_type=attachment.content_type,
        content_bytes=data,
        is_inline=False,
    )


# ---------------------------------------------------------------------------------------------
# The writer


class _FolderGone(Exception):
    """The cached archive folder no longer exists (someone deleted it)."""


class _FolderExists(Exception):
    """Another worker created the archive folder between our lookup and our create."""


class _FolderFull(Exception):
    """Exchange refused the item for its folder's item count (``certain``), or with a quota error
    that is the folder's only if the folder's count says it is full; ``error`` is what it means
    otherwise."""

    def __init__(self, *, certain: bool, error: Exception) -> None:
        super().__init__("archive folder full")
        self.certain = certain
        self.error = error


@dataclass
class _ArchiveFolder:
    """The folder of a mailbox's chain this process puts new items in."""

    id: str
    number: int  # 1 for "WhatsApp Archiver", n for "WhatsApp Archiver n"
    items: int  # its totalItemCount when read, plus the items this process created there since
    read_at: float  # when that count was read (the writer's clock)
    full: bool = False  # Exchange refused an item there for the folder's sake


class GraphMailbox:
    """``MailboxWriter`` on Microsoft Graph. Synchronous; safe to call from several threads.

    The SDK calls run on the event loop shared by the client's adapters (see graph_client);
    ``close()`` gives it back. The folder taking new items is cached per mailbox for the adapter's
    life. Every request passes ``gate`` (by default the process-wide one: at most 4 in flight per
    mailbox) and ``pacer`` (by default the process-wide one: Exchange's rate and upload budget per
    mailbox).

    ``folder_items``: how many items a folder of the archive chain takes before the next one is
    used (at most Exchange's 1,000,000). ``folder_growth_per_second``: the fastest all workers
    together can add items to one folder, which decides when a count read earlier may be stale
    (0: trust it and this process's own creates alone). Tests scale both down.
    """

    def __init__(
        self,
        client: Any,
        *,
        item_class: str = DEFAULT_ITEM_CLASS,
        folder_name: str = DEFAULT_FOLDER_NAME,
        id_property_guid: str = ID_PROPERTY_GUID,
        attachments: AttachmentStrategy | None = None,
        gate: MailboxGate | None = None,
        pacer: MailboxPacer | None = None,
        conversation_properties: bool = True,
        folder_items: int = DEFAULT_FOLDER_ITEMS,
        folder_growth_per_second: float = FOLDER_GROWTH_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not item_class or not item_class.isprintable() or not item_class.upper().startswith("IPM."):
            raise ConfigurationError("item_class must be a printable message class starting with IPM.")
        if not folder_name.strip() or not folder_name.isprintable():
            raise ConfigurationError("folder_name must be a non-empty printable name")
        if not 1 <= folder_items <= EXCHANGE_FOLDER_ITEM_LIMIT:
            raise ConfigurationError(f"folder_items must be between 1 and {EXCHANGE_FOLDER_ITEM_LIMIT:,}")
        if folder_growth_per_second < 0:
            raise ConfigurationError("folder_growth_per_second cannot be negative")
        try:
            guid = str(uuid.UUID(id_property_guid))
        except ValueError:
            raise ConfigurationError("id_property_guid is not a GUID") from None
        self.item_class = item_class
        self.folder_name = folder_name
        self.folder_items = folder_items
        self.folder_growth_per_second = folder_growth_per_second
        self.id_property = id_property_id(guid)
        self.conversation_properties = conversation_properties
        self._client = client
        self._clock = clock
        self._graph = GraphSession(client, gate or process_mailbox_gate(), pacer)
        self._attachments: AttachmentStrategy = attachments or UploadSessionAttachments()
        # Touched only on the loop thread, so plain dicts suffice.
        self._folders: dict[str, _ArchiveFolder] = {}
        self._folder_locks: dict[str, asyncio.Lock] = {}
        self._record_locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}
        self._loop = acquire_graph_loop(client)
        self._closed = False

    def write(self, mailbox: str, item: RenderedItem, *, check_existing: bool = True) -> WriteOutcome:
        if self._closed:
            raise RuntimeError("GraphMailbox is closed")
        return self._loop.run(self._write(mailbox, item, check_existing))

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

    async def _write(self, mailbox: str, item: RenderedItem, check_existing: bool) -> WriteOutcome:
        plan = self._attachments.plan(item)  # refuses undeliverable items before any request
        ref = mailbox_ref(mailbox)
        async with self._one_write_per_record(mailbox, item.record_id):
            if check_existing:
                existing = await self._find_item(mailbox, item.record_id)
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

            if plan.after_create:
                self._check_upload_budget(mailbox, item, plan)
            message_id = await self._create_in_chain(mailbox, item, plan)
            if plan.after_create:
                try:
                    for attachment in plan.after_create:
                        await self._attachments.attach(self._graph, mailbox, message_id, attachment)
                except Exception as failure:
                    removed = await self._discard(mailbox, message_id, item.record_key)
                    if not removed and isinstance(failure, PermanentError):
                        # Poisoning now would leave an incomplete item in an evidence archive. Retry
                        # instead: the checked retry finds the item and completes or removes it.
                        raise TransientError("an incomplete item could not be removed; retrying") from None
                    raise
            logger.info(
                "graph write %s mailbox=%s: imported, attachments inline=%d added=%d missing=%d checked=%s",
                item.record_key, ref, len(plan.inline), len(plan.after_create), plan.missing, check_existing,
            )
            return WriteOutcome.IMPORTED

    async def _create_in_chain(self, mailbox: str, item: RenderedItem, plan: AttachmentPlan) -> str:
        """Creates the item in the folder of the chain taking new items; a folder found deleted or
        full on the way is replaced by the next one, within this write."""
        for _ in range(MAX_FOLDER_ATTEMPTS):
            folder = await self._current_folder(mailbox)
            try:
                message_id = await self._create_item(mailbox, folder.id, item, plan)
            except _FolderGone:
                self._forget_folder(mailbox, folder)
            except _FolderFull as full:
                if not full.certain and not await self._holds_enough(mailbox, folder):
                    raise full.error from None
                self._mark_full(mailbox, folder)
            else:
                folder.items += 1
                return message_id
        raise TransientError("no archive folder took the item: each one tried was deleted or full")

    @asynccontextmanager
    async def _one_write_per_record(self, mailbox: str, record_id: str) -> AsyncIterator[None]:
        """Two threads of this process writing one record to one mailbox: the second one waits,
        then (checking) finds the first one's item instead of creating another."""
        key = (MailboxGate.key(mailbox), record_id)
        lock, users = self._record_locks.get(key) or (asyncio.Lock(), 0)
        self._record_locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._record_locks[key]
            if users <= 1:
                del self._record_locks[key]
            else:
                self._record_locks[key] = (lock, users - 1)

    def _check_upload_budget(self, mailbox: str, item: RenderedItem, plan: AttachmentPlan) -> None:
        """Refuses, before anything is created, an item whose uploads the mailbox's budget cannot
        take within the pacer's wait: half an item would only be removed and sent again later."""
        total = _create_upload_bytes(item, plan) + sum(a.size for a in plan.after_create)
        wait = self._graph.upload_wait(mailbox, total)
        if wait > self._graph.pacer.max_wait_seconds:
            raise TransientError("graph upload budget of the mailbox used up for now", retry_after=wait)

    # -- the archive folder chain ---------------------------------------------------------------

    def _may_be_full(self, folder: _ArchiveFolder) -> bool:
        if folder.full:
            return True
        elapsed = max(0.0, self._clock() - folder.read_at)
        return folder.items + self.folder_growth_per_second * elapsed >= self.folder_items

    async def _current_folder(self, mailbox: str) -> _ArchiveFolder:
        key = MailboxGate.key(mailbox)
        folder = self._folders.get(key)
        if folder is not None and not self._may_be_full(folder):
            return folder
        lock = self._folder_locks.setdefault(key, asyncio.Lock())
        async with lock:  # one lookup per mailbox in this writer, however many writes wait
            folder = self._folders.get(key)
            if folder is None:
                folder = await self._locate(mailbox, 1)
            elif self._may_be_full(folder):
                folder = await self._recount(mailbox, folder)
            self._folders[key] = folder
            return folder

    async def _recount(self, mailbox: str, folder: _ArchiveFolder) -> _ArchiveFolder:
        """``folder`` with its count read again, or the next folder of the chain when it is full."""
        if not folder.full:
            count = await self._folder_item_count(mailbox, folder.id)
            if count is None:  # deleted: find the chain again from its start
                return await self._locate(mailbox, 1)
            if count < self.folder_items:
                folder.items, folder.read_at = count, self._clock()
                return folder
        logger.info("graph archive folder %d of mailbox=%s is full: continuing in the next",
                    folder.number, mailbox_ref(mailbox))
        return await self._locate(mailbox, folder.number + 1)

    async def _locate(self, mailbox: str, number: int) -> _ArchiveFolder:
        """The first folder of the chain from ``number`` on with room, created when missing."""
        while True:
            name = archive_folder_name(self.folder_name, number)
            found = await self._find_folder(mailbox, name)
            if found is None:
                try:
                    created = await self._create_folder(mailbox, name)
                    return _ArchiveFolder(created, number, 0, self._clock())
                except _FolderExists:
                    found = await self._find_folder(mailbox, name)
                    if found is None:
                        raise TransientError("archive folder exists but cannot be found yet") from None
            folder_id, items = found
            if items < self.folder_items:
                return _ArchiveFolder(folder_id, number, items, self._clock())
            number += 1

    async def _holds_enough(self, mailbox: str, folder: _ArchiveFolder) -> bool:
        count = await self._folder_item_count(mailbox, folder.id)
        return count is not None and count >= self.folder_items

    def _mark_full(self, mailbox: str, folder: _ArchiveFolder) -> None:
        """Exchange refused an item in ``folder``: whatever its count said, the chain moves on (the
        next write to find it marked looks for the next folder)."""
        folder.full = True
        logger.warning("graph archive folder %d of mailbox=%s refused an item as full",
                       folder.number, mailbox_ref(mailbox))

    def _forget_folder(self, mailbox: str, folder: _ArchiveFolder) -> None:
        key = MailboxGate.key(mailbox)
        if self._folders.get(key) is folder:
            del self._folders[key]

    def _root_children(self, mailbox: str) -> Any:
        folders = self._client.users.by_user_id(mailbox).mail_folders
        return folders.by_mail_folder_id("msgfolderroot").child_folders

    async def _find_folder(self, mailbox: str, name: str) -> tuple[str, int] | None:
        """The id and item count of the folder called ``name`` under the mailbox root."""
        from msgraph.generated.users.item.mail_folders.item.child_folders import (
            child_folders_request_builder as child_folders,
        )

        query = child_folders.ChildFoldersRequestBuilder.ChildFoldersRequestBuilderGetQueryParameters(
            filter=f"displayName eq {odata_string(name)}",
            include_hidden_folders="true",
            select=["id", "displayName", "totalItemCount"],
        )
        request = self._root_children(mailbox).to_get_request_information(_request_configuration(query))
        page = await self._graph.call("folder_find", mailbox, lambda: self._graph.raw(request))
        for folder in values(page):
            folder_id, found = string(folder, "id"), string(folder, "displayName")
            if folder_id and found and found.casefold() == name.casefold():
                return folder_id, _item_count(folder)
        return None

    async def _folder_item_count(self, mailbox: str, folder_id: str) -> int | None:
        """The folder's totalItemCount now; None when the folder is gone."""
        from msgraph.generated.users.item.mail_folders.item.mail_folder_item_request_builder import (
            MailFolderItemRequestBuilder,
        )

        query = MailFolderItemRequestBuilder.MailFolderItemRequestBuilderGetQueryParameters(
            select=["id", "totalItemCount"],
        )
        builder = self._client.users.by_user_id(mailbox).mail_folders.by_mail_folder_id(folder_id)
        request = builder.to_get_request_information(_request_configuration(query))
        try:
            folder = await self._folder_call("folder_get", mailbox, lambda: self._graph.raw(request))
        except _FolderGone:
            return None
        return _item_count(folder)

    async def _create_folder(self, mailbox: str, name: str) -> str:
        from msgraph.generated.models.mail_folder import MailFolder

        request = self._root_children(mailbox).to_post_request_information(MailFolder(display_name=name))
        try:
            folder = await self._graph.send(mailbox, lambda: self._graph.raw(request))
        except Exception as exc:
            failure = graph_failure(exc)
            if failure is not None and failure.code == "ErrorFolderExists":  # seen as 409 and as 400
                raise _FolderExists() from None
            raise graph_error(exc, "folder_create", mailbox) from None
        folder_id = string(folder, "id")
        if folder_id is None:
            raise TransientError("graph created the archive folder without returning its id")
        logger.info("graph archive folder %r created in mailbox=%s", name, mailbox_ref(mailbox))
        return folder_id

    # -- items ----------------------------------------------------------------------------------

    def _folder_messages(self, mailbox: str, folder_id: str) -> Any:
        return self._client.users.by_user_id(mailbox).mail_folders.by_mail_folder_id(folder_id).messages

    async def _find_item(self, mailbox: str, record_id: str) -> str | None:
        """The item holding ``record_id``, wherever it is in the mailbox: every folder of the chain
        in one request, and an item someone moved out of it too."""
        from msgraph.generated.users.item.messages.messages_request_builder import MessagesRequestBuilder

        query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
            filter=(
                "singleValueExtendedProperties/Any(ep: ep/id eq "
                f"{odata_string(self.id_property)} and ep/value eq {odata_string(record_id)})"
            ),
            select=["id"],
            top=1,
        )
        request = self._client.users.by_user_id(mailbox).messages.to_get_request_information(
            _request_configuration(query, prefer_immutable=True)
        )
        page = await self._graph.call("item_lookup", mailbox, lambda: self._graph.raw(request))
        for message in values(page):
            if string(message, "id"):
                return string(message, "id")
        return None

    async def _create_item(
        self, mailbox: str, folder_id: str, item: RenderedItem, plan: AttachmentPlan
    ) -> str:
        inline = [(a, await read_small(a)) for a in plan.inline]
        body, dropped_headers = create_body(
            item, item_class=self.item_class, id_property=self.id_property, inline=inline,
            conversation=self.conversation_properties,
        )
        del inline
        if dropped_headers:
            logger.info("graph write %s: %d header(s) not accepted by Graph left out",
                        item.record_key, dropped_headers)
        messages = self._folder_messages(mailbox, folder_id)
        request = json_post_request(messages, body, _request_configuration(prefer_immutable=True))
        del body
        # Graph answers the create with the whole message, body included. Read as the SDK's
        # Message model that reply cost about a fifth of the connector's CPU per record (kiota
        # builds every field's deserializer table on each parse); only its id and isDraft matter.
        reply = await self._folder_call(
            "item_create",
            mailbox,
            lambda: self._graph.raw(request),
            poison_bad_request=True,
            adds_item=True,
            upload_bytes=len(request.content or b""),  # the serialised body, as Exchange counts it
        )
        created_id, is_draft = _created_item(reply)
        if not created_id:
            raise TransientError("graph created the item without returning its id")
        if is_draft:
            # The item exists and will be found as a duplicate; say so loudly instead of hiding it.
            logger.error("graph write %s mailbox=%s: item was stored as a draft",
                         item.record_key, mailbox_ref(mailbox))
        return created_id

    async def _folder_call[R](
        self,
        operation: str,
        mailbox: str,
        request: Callable[[], Awaitable[R]],
        *,
        poison_bad_request: bool = False,
        adds_item: bool = False,
        upload_bytes: int = 0,
    ) -> R:
        """A call inside the archive folder: a missing folder is ours to recreate, and (``adds_item``)
        a full one ours to replace by the next of the chain, not errors."""
        try:
            return await self._graph.send(mailbox, request, upload_bytes=upload_bytes)
        except Exception as exc:
            failure = graph_failure(exc)
            if failure is None:
                raise graph_error(exc, operation, mailbox) from None
            if failure.status == 404 and failure.code in ("ErrorItemNotFound", "ErrorInvalidIdMalformed"):
                raise _FolderGone() from None
            error = graph_error(exc, operation, mailbox)
            if poison_bad_request and failure.status in (400, 413):
                reason = PoisonReason.TOO_BIG if failure.too_large else PoisonReason.INVALID_ITEM
                error = PermanentError(reason, failure.describe(operation))
            if adds_item and failure.code in (FOLDER_FULL_CODE, QUOTA_EXCEEDED_CODE):
                raise _FolderFull(certain=failure.code == FOLDER_FULL_CODE, error=error) from None
            raise error from None

    async def _complete_attachments(self, mailbox: str, message_id: str, plan: AttachmentPlan) -> int:
        """Adds the after-create attachments an earlier, interrupted attempt did not add."""
        from msgraph.generated.users.item.messages.item.attachments.attachments_request_builder import (
            AttachmentsRequestBuilder,
        )

        builder = self._client.users.by_user_id(mailbox).messages.by_message_id(message_id).attachments
        query = AttachmentsRequestBuilder.AttachmentsRequestBuilderGetQueryParameters(select=["name"])
        present: Counter[str] = Counter()
        request = builder.to_get_request_information(_request_configuration(query))
        while True:
            page = await self._graph.call(
                "attachment_list", mailbox, lambda request=request: self._graph.raw(request), item_level=True
            )
            present.update(str(a.get("name") or "") for a in values(page))
            next_link = page.get("@odata.nextLink") if isinstance(page, dict) else None
            if not isinstance(next_link, str) or not next_link:
                break
            request = builder.with_url(checked_graph_link(next_link, self._graph.base_url)).to_get_request_information()
        for attachment in plan.inline:
            present[attachment.file_name] -= 1
        added = 0
        for attachment in plan.after_create:
            if present[attachment.file_name] > 0:
                present[attachment.file_name] -= 1
                continue
            await self._attachments.attach(self._graph, mailbox, message_id, attachment)
            added += 1
        return added

    async def _discard(self, mailbox: str, message_id: str, record_key: str) -> bool:
        """Removes an item whose attachments could not all be added, so the retry starts clean.

        If this fails too, the retry (which must check for the item) finds it and adds what is
        missing.
        """
        builder = self._client.users.by_user_id(mailbox).messages.by_message_id(message_id)
        try:
            await self._graph.send(mailbox, lambda: builder.permanent_delete.post())
        except Exception as exc:
            failure = graph_failure(exc)
            logger.warning(
                "graph write %s mailbox=%s: incomplete item not removed (%s); the retry completes it",
                record_key, mailbox_ref(mailbox),
                failure.describe("item_discard") if failure else type(exc).__name__,
            )
            return False
        return True


def create_properties(
    item: RenderedItem, *, item_class: str, id_property: str, conversation: bool = True
) -> list[tuple[str, str]]:
    """The single-value extended properties of the create request, in the order they are sent."""
    return [
        (PROP_MESSAGE_FLAGS, MSGFLAG_READ),
        (PROP_CLIENT_SUBMIT_TIME, mapi_time(item.sent_at)),
        (PROP_DELIVERY_TIME, mapi_time(item.received_at)),
        (PROP_MESSAGE_CLASS, item_class),
        (id_property, item.record_id),
        *(conversation_properties(item) if conversation else ()),
    ]


def create_body(
    item: RenderedItem,
    *,
    item_class: str,
    id_property: str,
    inline: list[tuple[RenderedAttachment, bytes]] | tuple[()] = (),
    conversation: bool = True,
) -> tuple[bytes, int]:
    """The create POST's JSON body, and the number of headers left out: the bytes ``build_message``
    gives through kiota's JSON writer, written directly (graph_message_json.py says why)."""
    properties = create_properties(item, item_class=item_class, id_property=id_property, conversation=conversation)
    headers, dropped = select_internet_headers(item.extra_headers)
    return create_message_json(item, properties=properties, headers=headers, inline=inline), dropped


def json_post_request(builder: Any, body: bytes, config: Any) -> Any:
    """The POST request ``builder.to_post_request_information`` makes, with a body already
    serialised: same URL, headers and content type."""
    from kiota_abstractions.method import Method
    from kiota_abstractions.request_information import RequestInformation

    request = RequestInformation(Method.POST, builder.url_template, builder.path_parameters)
    request.configure(config)
    request.headers.try_add("Accept", "application/json")
    request.set_stream_content(body, "application/json")
    return request


def build_message(
    item: RenderedItem,
    *,
    item_class: str,
    id_property: str,
    inline: list[tuple[RenderedAttachment, bytes]] | tuple[()] = (),
    conversation: bool = True,
) -> tuple[Any, int]:
    """The msgraph ``Message`` for one create POST, and the number of headers left out. The writer
    sends ``create_body`` instead; this stays the reference its bytes are held to.

    ``inline``: the attachments that travel in the create, each with its bytes (small ones only).
    ``conversation``: set the conversation properties (GRAPH_CONVERSATION_PROPERTIES=false turns
    them off, should a tenant refuse them).
    """
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

    properties = create_properties(item, item_class=item_class, id_property=id_property, conversation=conversation)
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
        message.attachments = [file_attachment(a, data) for a, data in inline]
    return message, dropped
