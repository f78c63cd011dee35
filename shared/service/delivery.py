"""Exactly one item per record and mailbox, whatever the queue delivers.

Delivery is at least once: the same record arrives twice (a retried listing page, a re-listed
window) and sometimes to two workers at the same moment. A writer's own "is it there already?"
lookup cannot close that race, and costs a Graph request against the mailbox's budget every time.
So each (mailbox, record) pair has a delivery record in storage, held exclusively while writing:

- done      → skipped as a duplicate, without asking the mailbox at all;
- new       → written with no lookup (1 Graph request for a text record);
- in doubt  → an earlier attempt died mid-write and may have created the item: the writer looks
              it up first, then creates it only if absent.
"""

from __future__ import annotations

from shared.domain.rendered import RenderedItem
from shared.ports import DeliveryRecords, DeliveryState, MailboxWriter, WriteOutcome


class OnceOnlyMailbox:
    """A MailboxWriter that makes any writer exactly-once per (mailbox, record)."""

    def __init__(self, writer: MailboxWriter, deliveries: DeliveryRecords) -> None:
        self._writer = writer
        self._deliveries = deliveries

    def write(self, mailbox: str, item: RenderedItem, *, check_existing: bool = True) -> WriteOutcome:
        # ``check_existing`` is the caller's default; the delivery record knows better whether an
        # earlier attempt can have written the item, so it decides.
        with self._deliveries.claim(mailbox.lower(), item.record_key) as claim:
            if claim.state is DeliveryState.DONE:
                return WriteOutcome.SKIPPED_DUPLICATE
            claim.begin()
            outcome = self._writer.write(mailbox, item, check_existing=claim.state is DeliveryState.IN_DOUBT)
            claim.finish(outcome)
            return outcome
