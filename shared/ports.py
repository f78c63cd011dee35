"""The small interfaces the service layer depends on. Adapters implement them.

Keeping these as Protocols lets the service layer run against Azure (blob, queue, Graph), against
local stand-ins (Azurite, .eml files, a directory file) and against in-memory fakes in tests,
without importing any of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from shared.domain.rendered import RenderedItem
from shared.domain.window import Window


class WriteOutcome(StrEnum):
    IMPORTED = "imported"
    SKIPPED_DUPLICATE = "skipped_duplicate"


class MailboxWriter(Protocol):
    """Writes one rendered item into the archive folder of one mailbox, idempotently.

    Writing the same record to the same mailbox again changes nothing and returns
    SKIPPED_DUPLICATE. Raises TransientError (retry later) or MailboxUnavailable (this mailbox
    cannot take mail).
    """

    def write(self, mailbox: str, item: RenderedItem) -> WriteOutcome: ...


class MailboxDirectory(Protocol):
    """Says whether an address belongs to a user that really has a mailbox."""

    def has_mailbox(self, address: str) -> bool: ...


@dataclass(frozen=True)
class ListingPage:
    items: list[Any]  # raw JSON values as the source sent them: validation happens at import
    next_page_token: str | None


class ArchiveSource(Protocol):
    """The vendor's archive (TeleMessage): lists captured records and serves attachment bytes."""

    def list_page(self, window: Window, page_token: str | None, page_size: int) -> ListingPage: ...

    def open_attachment(self, attachment_id: str) -> Iterator[bytes] | None:
        """The attachment's bytes in chunks, or None when the media was never captured."""
        ...
