"""The archive folder chain of a mailbox: "WhatsApp Archiver", then "WhatsApp Archiver 2", "3"...
under msgfolderroot, each taking new items until it holds ``folder_items`` (Exchange keeps at most
1,000,000 items in a folder). docs/graph.md ("More than a million items: the folder chain") says
how the chain is found, counted and moved on, and what it costs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from shared.adapters.graph_errors import Meaning, Target, classify
from shared.adapters.graph_gate import MailboxGate, mailbox_ref
from shared.adapters.graph_json import string, values
from shared.adapters.graph_pacer import EXCHANGE_REQUEST_WINDOW_SECONDS, EXCHANGE_REQUESTS
from shared.adapters.graph_requests import odata_string, request_configuration
from shared.adapters.graph_session import GraphSession
from shared.domain.errors import TransientError

logger = logging.getLogger(__name__)

DEFAULT_FOLDER_NAME = "WhatsApp Archiver"
# Exchange Online saves no more items into a folder holding this many.
EXCHANGE_FOLDER_ITEM_LIMIT = 1_000_000
# Below the limit by what the app's whole per-mailbox budget (10,000 requests per 10 minutes) could
# add while one worker's count of the folder is stale: workers switch folders before Exchange must
# refuse anything.
DEFAULT_FOLDER_ITEMS = 990_000
# The fastest all workers together can fill one folder: every request of that budget a create.
FOLDER_GROWTH_PER_SECOND = EXCHANGE_REQUESTS / EXCHANGE_REQUEST_WINDOW_SECONDS
# Folders one write tries when each in turn proves full or deleted; more means something else is
# wrong, and the queue's retry is the better judge.
MAX_FOLDER_ATTEMPTS = 4


def archive_folder_name(base: str, number: int) -> str:
    """The name of the ``number``th folder of the archive chain: ``base``, ``base 2``, ``base 3``..."""
    if number < 1:
        raise ValueError("archive folders are numbered from 1")
    return base if number == 1 else f"{base} {number}"


class FolderGone(Exception):
    """The cached archive folder no longer exists (someone deleted it)."""


class _FolderExists(Exception):
    """Another worker created the archive folder between our lookup and our create."""


class FolderFull(Exception):
    """Exchange refused the item for its folder's item count (``certain``), or with a quota error
    that is the folder's only if the folder's count says it is full; ``error`` is what it means
    otherwise."""

    def __init__(self, *, certain: bool, error: Exception) -> None:
        super().__init__("archive folder full")
        self.certain = certain
        self.error = error


@dataclass
class ArchiveFolder:
    """The folder of a mailbox's chain this process puts new items in."""

    id: str
    number: int  # 1 for "WhatsApp Archiver", n for "WhatsApp Archiver n"
    items: int  # its totalItemCount when read, plus the items this process created there since
    read_at: float  # when that count was read (the writer's clock)
    full: bool = False  # Exchange refused an item there for the folder's sake


class ArchiveFolderChain:
    """Which folder of each mailbox's chain takes new items, for one writer (cached per mailbox for
    its life). Touched only on the writer's loop thread.

    ``folder_items``: how many items a folder takes before the next one is used.
    ``folder_growth_per_second``: the fastest all workers together can add items to one folder,
    which decides when a count read earlier may be stale (0: trust it and this process's own
    creates alone).
    """

    def __init__(
        self,
        graph: GraphSession,
        *,
        folder_name: str,
        folder_items: int,
        folder_growth_per_second: float,
        clock: Callable[[], float],
    ) -> None:
        self.folder_name = folder_name
        self.folder_items = folder_items
        self.folder_growth_per_second = folder_growth_per_second
        self._graph = graph
        self._client = graph.client
        self._clock = clock
        self._folders: dict[str, ArchiveFolder] = {}
        self._folder_locks: dict[str, asyncio.Lock] = {}

    async def add(self, mailbox: str, create: Callable[[str], Awaitable[str]]) -> str:
        """``create(folder_id)`` in the folder of the chain taking new items: the id it returns.
        ``create`` makes its request through ``call`` (``Target.ITEM_CREATE``); a folder found
        deleted or full on the way is replaced by the next one, within this call."""
        for _ in range(MAX_FOLDER_ATTEMPTS):
            folder = await self._current_folder(mailbox)
            try:
                message_id = await create(folder.id)
            except FolderGone:
                self._forget_folder(mailbox, folder)
            except FolderFull as full:
                if not full.certain and not await self._holds_enough(mailbox, folder):
                    raise full.error from None
                self._mark_full(mailbox, folder)
            else:
                folder.items += 1
                return message_id
        raise TransientError("no archive folder took the item: each one tried was deleted or full")

    async def call[R](
        self,
        operation: str,
        mailbox: str,
        request: Callable[[], Awaitable[R]],
        *,
        target: Target = Target.FOLDER,
        upload_bytes: int = 0,
    ) -> R:
        """A call inside the archive folder: a missing folder is ours to recreate (``FolderGone``),
        and on the create (``Target.ITEM_CREATE``) a full one ours to replace by the next of the
        chain (``FolderFull``), not errors."""
        try:
            return await self._graph.send(mailbox, request, upload_bytes=upload_bytes)
        except Exception as exc:
            verdict = classify(exc, operation, mailbox, target)
            if verdict.meaning is Meaning.GONE:
                raise FolderGone() from None
            if verdict.meaning in (Meaning.FOLDER_FULL, Meaning.MAYBE_FOLDER_FULL):
                raise FolderFull(certain=verdict.meaning is Meaning.FOLDER_FULL, error=verdict.error) from None
            raise verdict.error from None

    # -- which folder ---------------------------------------------------------------------------

    def _may_be_full(self, folder: ArchiveFolder) -> bool:
        if folder.full:
            return True
        elapsed = max(0.0, self._clock() - folder.read_at)
        return folder.items + self.folder_growth_per_second * elapsed >= self.folder_items

    async def _current_folder(self, mailbox: str) -> ArchiveFolder:
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

    async def _recount(self, mailbox: str, folder: ArchiveFolder) -> ArchiveFolder:
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

    async def _locate(self, mailbox: str, number: int) -> ArchiveFolder:
        """The first folder of the chain from ``number`` on with room, created when missing."""
        while True:
            name = archive_folder_name(self.folder_name, number)
            found = await self._find_folder(mailbox, name)
            if found is None:
                try:
                    created = await self._create_folder(mailbox, name)
                    return ArchiveFolder(created, number, 0, self._clock())
                except _FolderExists:
                    found = await self._find_folder(mailbox, name)
                    if found is None:
                        raise TransientError("archive folder exists but cannot be found yet") from None
            folder_id, items = found
            if items < self.folder_items:
                return ArchiveFolder(folder_id, number, items, self._clock())
            number += 1

    async def _holds_enough(self, mailbox: str, folder: ArchiveFolder) -> bool:
        count = await self._folder_item_count(mailbox, folder.id)
        return count is not None and count >= self.folder_items

    def _mark_full(self, mailbox: str, folder: ArchiveFolder) -> None:
        """Exchange refused an item in ``folder``: whatever its count said, the chain moves on (the
        next write to find it marked looks for the next folder)."""
        folder.full = True
        logger.warning("graph archive folder %d of mailbox=%s refused an item as full",
                       folder.number, mailbox_ref(mailbox))

    def _forget_folder(self, mailbox: str, folder: ArchiveFolder) -> None:
        key = MailboxGate.key(mailbox)
        if self._folders.get(key) is folder:
            del self._folders[key]

    # -- requests -------------------------------------------------------------------------------

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
        request = self._root_children(mailbox).to_get_request_information(request_configuration(query))
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
        request = builder.to_get_request_information(request_configuration(query))
        try:
            folder = await self.call("folder_get", mailbox, lambda: self._graph.raw(request))
        except FolderGone:
            return None
        return _item_count(folder)

    async def _create_folder(self, mailbox: str, name: str) -> str:
        from msgraph.generated.models.mail_folder import MailFolder

        request = self._root_children(mailbox).to_post_request_information(MailFolder(display_name=name))
        try:
            folder = await self._graph.send(mailbox, lambda: self._graph.raw(request))
        except Exception as exc:
            verdict = classify(exc, "folder_create", mailbox, Target.FOLDER_CREATE)
            if verdict.meaning is Meaning.FOLDER_EXISTS:
                raise _FolderExists() from None
            raise verdict.error from None
        folder_id = string(folder, "id")
        if folder_id is None:
            raise TransientError("graph created the archive folder without returning its id")
        logger.info("graph archive folder %r created in mailbox=%s", name, mailbox_ref(mailbox))
        return folder_id


def _item_count(folder: Any) -> int:
    """A mailFolder's totalItemCount from its JSON; 0 when absent (Exchange's own refusal of a full
    folder then still moves the chain on)."""
    count = folder.get("totalItemCount") if isinstance(folder, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0
