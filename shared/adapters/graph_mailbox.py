"""Archives rendered items into Exchange Online mailboxes through Microsoft Graph: ``GraphMailbox``,
the ``MailboxWriter`` on Graph.

Each record becomes one complete, non-draft item (graph_message.py), created by a single JSON POST
in the folder of the archive chain taking new items (graph_folders.py), its large attachments added
after the create (graph_attachments.py); ``write(..., check_existing=True)`` first looks the record
up by its id property over the whole mailbox, so a retried write never makes a second item.
docs/graph.md has the design: "Exactly once per record and mailbox" (idempotency, when the lookup
may be skipped), "What a record costs against the mailbox's budget" (measured by
``test_requests_per_record_match_the_documented_cost``), the folder chain and the attachments.

Logs carry record keys, hashed mailbox names and counts, never subjects, bodies, names or
addresses: this is regulated content.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from shared.adapters.graph_attachments import (
    AttachmentPlan,
    AttachmentStrategy,
    UploadSessionAttachments,
    create_upload_bytes,
    read_small,
)
from shared.adapters.graph_errors import Target, graph_failure
from shared.adapters.graph_folders import (
    DEFAULT_FOLDER_ITEMS,
    DEFAULT_FOLDER_NAME,
    EXCHANGE_FOLDER_ITEM_LIMIT,
    FOLDER_GROWTH_PER_SECOND,
    ArchiveFolderChain,
)
from shared.adapters.graph_gate import MailboxGate, mailbox_ref, process_mailbox_gate
from shared.adapters.graph_json import string, values
from shared.adapters.graph_loop import acquire_graph_loop, release_graph_loop
from shared.adapters.graph_message import DEFAULT_ITEM_CLASS, ID_PROPERTY_GUID, create_body, id_property_id
from shared.adapters.graph_pacer import MailboxPacer
from shared.adapters.graph_requests import json_post_request, odata_string, request_configuration
from shared.adapters.graph_session import GraphSession
from shared.adapters.urls import checked_graph_link
from shared.domain.errors import ConfigurationError, PermanentError, TransientError
from shared.domain.rendered import RenderedItem
from shared.ports import WriteOutcome

logger = logging.getLogger(__name__)


class GraphMailbox:
    """``MailboxWriter`` on Microsoft Graph. Synchronous; safe to call from several threads.

    The SDK calls run on the event loop shared by the client's adapters (graph_loop.py);
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
        self._graph = GraphSession(client, gate or process_mailbox_gate(), pacer)
        self._attachments: AttachmentStrategy = attachments or UploadSessionAttachments()
        self._folders = ArchiveFolderChain(
            self._graph, folder_name=folder_name, folder_items=folder_items,
            folder_growth_per_second=folder_growth_per_second, clock=clock,
        )
        # Touched only on the loop thread, so a plain dict suffices.
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
        """Creates the item in the folder of the chain taking new items (graph_folders.py)."""
        return await self._folders.add(mailbox, lambda folder_id: self._create_item(mailbox, folder_id, item, plan))

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
        total = create_upload_bytes(item, plan) + sum(a.size for a in plan.after_create)
        wait = self._graph.upload_wait(mailbox, total)
        if wait > self._graph.pacer.max_wait_seconds:
            raise TransientError("graph upload budget of the mailbox used up for now", retry_after=wait)

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
            request_configuration(query, prefer_immutable=True)
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
        request = json_post_request(messages, body, request_configuration(prefer_immutable=True))
        del body
        # Graph answers the create with the whole message, body included. Read as the SDK's
        # Message model that reply cost about a fifth of the connector's CPU per record (kiota
        # builds every field's deserializer table on each parse); only its id and isDraft matter.
        reply = await self._folders.call(
            "item_create",
            mailbox,
            lambda: self._graph.raw(request),
            target=Target.ITEM_CREATE,
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

    async def _complete_attachments(self, mailbox: str, message_id: str, plan: AttachmentPlan) -> int:
        """Adds the after-create attachments an earlier, interrupted attempt did not add."""
        from msgraph.generated.users.item.messages.item.attachments.attachments_request_builder import (
            AttachmentsRequestBuilder,
        )

        builder = self._client.users.by_user_id(mailbox).messages.by_message_id(message_id).attachments
        query = AttachmentsRequestBuilder.AttachmentsRequestBuilderGetQueryParameters(select=["name"])
        present: Counter[str] = Counter()
        request = builder.to_get_request_information(request_configuration(query))
        while True:
            page = await self._graph.call(
                "attachment_list", mailbox, lambda request=request: self._graph.raw(request), target=Target.ITEM
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


def _created_item(created: Any) -> tuple[str | None, bool]:
    """(id, isDraft) from the JSON of a create's answer; (None, False) when it has no id."""
    return string(created, "id"), isinstance(created, dict) and created.get("isDraft") is True

