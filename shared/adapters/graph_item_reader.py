"""Reads archived items back out of Exchange Online through Graph, for ``verify --online``: a
record's items found by the id property the writer set, over the whole mailbox (more than one is a
duplicate, reported), each digested from its MIME as shared/domain/item_digest.py says. Requests go
through the writer's gate and pacer (``GraphSession``). docs/graph.md ("Reading items back") has
the requests and their cost.

Logs carry hashed mailbox names, record keys and counts; never ids, subjects or content.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from shared.adapters.graph_errors import Meaning, Target, classify
from shared.adapters.graph_gate import MailboxGate, mailbox_ref, process_mailbox_gate
from shared.adapters.graph_json import odata_error_mapping, string, values
from shared.adapters.graph_loop import acquire_graph_loop, release_graph_loop
from shared.adapters.graph_message import id_property_id
from shared.adapters.graph_pacer import MailboxPacer
from shared.adapters.graph_requests import odata_string, request_configuration
from shared.adapters.graph_session import GraphSession
from shared.adapters.urls import checked_graph_link
from shared.domain.errors import PermanentError, TransientError
from shared.domain.item_digest import UnreadableItem, mime_content
from shared.ports import ReadBackItem

logger = logging.getLogger(__name__)

# Items of one record asked for per page, and pages read at most: one item is the rule, a few a
# duplicate to report; past this many the list is a duplicate anyway and is not read further.
LOOKUP_PAGE_SIZE = 10
MAX_LOOKUP_PAGES = 5


class GraphItemReader:
    """``ItemReader`` on Microsoft Graph. Synchronous; safe to call from several threads.

    ``client``: what ``build_graph_client`` returns (the writer's own client may be shared: the
    loop is leased as GraphMailbox leases it, and ``close()`` gives it back). ``id_property``: the
    extended property the writer sets (``GraphMailbox.id_property``; by default the archive's
    fixed one).
    """

    def __init__(
        self,
        client: Any,
        *,
        id_property: str = id_property_id(),
        gate: MailboxGate | None = None,
        pacer: MailboxPacer | None = None,
    ) -> None:
        self.id_property = id_property
        self._client = client
        self._graph = GraphSession(client, gate or process_mailbox_gate(), pacer)
        self._loop = acquire_graph_loop(client)
        self._closed = False

    def find(self, mailbox: str, record_key: str, item_id: str) -> list[ReadBackItem]:
        if self._closed:
            raise RuntimeError("GraphItemReader is closed")
        return self._loop.run(self._find(mailbox, record_key, item_id))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            release_graph_loop(self._client)

    def __enter__(self) -> GraphItemReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _find(self, mailbox: str, record_key: str, item_id: str) -> list[ReadBackItem]:
        items = []
        for message_id in await self._item_ids(mailbox, record_key, item_id):
            item = await self._read(mailbox, message_id, item_id)
            if item is not None:
                items.append(item)
        if len(items) > 1:
            logger.warning("graph read-back %s mailbox=%s: %d items", record_key, mailbox_ref(mailbox), len(items))
        return items

    async def _item_ids(self, mailbox: str, record_key: str, item_id: str) -> list[str]:
        """The ids of the record's items, in Graph's order, each once."""
        from msgraph.generated.users.item.messages.messages_request_builder import MessagesRequestBuilder

        query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
            filter=(
                "singleValueExtendedProperties/Any(ep: ep/id eq "
                f"{odata_string(self.id_property)} and ep/value eq {odata_string(item_id)})"
            ),
            select=["id"],
            top=LOOKUP_PAGE_SIZE,
        )
        builder = self._client.users.by_user_id(mailbox).messages
        request = builder.to_get_request_information(request_configuration(query, prefer_immutable=True))
        ids: list[str] = []
        followed: set[str] = set()
        for _ in range(MAX_LOOKUP_PAGES):
            page = await self._graph.call("item_lookup", mailbox, lambda request=request: self._graph.raw(request))
            for message in values(page):
                message_id = string(message, "id")
                if message_id and message_id not in ids:
                    ids.append(message_id)
            link = string(page, "@odata.nextLink")
            if link is None:
                return ids
            if link in followed:
                raise TransientError("graph item lookup returned a page link already followed")
            followed.add(link)
            try:
                link = checked_graph_link(link, self._graph.base_url)
            except PermanentError as refused:  # verify has no record to poison: it reports the mailbox
                raise TransientError(refused.detail) from None
            request = builder.with_url(link).to_get_request_information(request_configuration(prefer_immutable=True))
        logger.warning("graph read-back %s mailbox=%s: more than %d pages of items, the rest not read",
                       record_key, mailbox_ref(mailbox), MAX_LOOKUP_PAGES)
        return ids

    async def _read(self, mailbox: str, message_id: str, item_id: str) -> ReadBackItem | None:
        """The item's digest from its MIME; None when it was deleted since it was listed."""
        builder = self._client.users.by_user_id(mailbox).messages.by_message_id(message_id).content
        request = builder.to_get_request_information(request_configuration(prefer_immutable=True))
        adapter = self._client.request_adapter
        try:
            raw = await self._graph.send(
                mailbox, lambda: adapter.send_primitive_async(request, "bytes", odata_error_mapping())
            )
        except Exception as exc:
            verdict = classify(exc, "item_read", mailbox, Target.ITEM_CONTENT)
            if verdict.meaning is Meaning.GONE:
                return None
            error = verdict.error
            if isinstance(error, PermanentError):  # this item refused (a 400...), not the mailbox
                return ReadBackItem(message_id, None, f"unreadable: {error.detail}")
            raise error from None
        if not isinstance(raw, bytes) or not raw:
            return ReadBackItem(message_id, None, "unreadable: empty answer")
        try:
            # Off the loop: an item can be tens of megabytes of MIME, and the loop serves the writer too.
            digest = (await asyncio.to_thread(mime_content, raw, item_id)).digest()
        except UnreadableItem as error:
            return ReadBackItem(message_id, None, f"unreadable: {error}")
        return ReadBackItem(message_id, digest)
