"""Idempotency end to end over the service layer: listing twice, enqueuing twice, processing twice,
overlapping windows and two workers at once all leave exactly one item per record and mailbox, and
every window still reconciles."""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import UTC, datetime, timedelta

from shared.domain.ledger import summarize
from shared.domain.tasks import ListingTask
from shared.domain.window import Watermark
from shared.ports import WriteOutcome
from shared.service.delivery import OnceOnlyMailbox
from shared.service.importing import ItemImporter
from shared.service.listing import list_slice_page
from shared.service.mapping import MailboxMapper
from shared.service.processing import process_item_message
from shared.service.scheduling import SchedulePolicy, schedule_window
from tests.builders import BOB, CUSTOMER, DIRECTORY, MAPPING_CSV, record
from tests.fakes import (
    MemoryDeliveryRecords,
    MemoryLedger,
    MemoryMailboxes,
    MemoryQueue,
    MemoryRecordStore,
    MemorySource,
    MemoryWatermarkStore,
    SetDirectory,
    StaticMapping,
)

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


class SlowMailboxes(MemoryMailboxes):
    """Like Graph: looking for the item and creating it are separate requests with time between, so
    two unguarded workers holding the same record both find nothing and both create."""

    def __init__(self) -> None:
        super().__init__()
        self.creates: Counter[tuple[str, str]] = Counter()
        self._both_looked = threading.Barrier(2, timeout=0.5)

    def write(self, mailbox, item, *, check_existing=True):
        exists = check_existing and item.record_id in self.items[mailbox]
        with suppress(threading.BrokenBarrierError):
            self._both_looked.wait()
        if exists:
            return WriteOutcome.SKIPPED_DUPLICATE
        self.creates[(mailbox, item.record_id)] += 1
        self.items[mailbox][item.record_id] = item
        return WriteOutcome.IMPORTED


class WorkerCrash(Exception):
    pass


class CrashBeforeMark:
    def __init__(self, ledger):
        self._ledger = ledger

    def __getattr__(self, name):
        return getattr(self._ledger, name)

    def mark_page_listed(self, *args):
        raise WorkerCrash("killed before the page was marked listed")


class Stack:
    def __init__(self, source_records, *, writer=None, overlap=timedelta(0)):
        self.marks = MemoryWatermarkStore(Watermark(NOW - timedelta(hours=6)))
        self.ledger, self.records = MemoryLedger(), MemoryRecordStore()
        self.listing, self.items, self.poison = MemoryQueue("listing"), MemoryQueue("items"), MemoryQueue()
        self.source = MemorySource(source_records)
        self.boxes = writer or MemoryMailboxes()
        mapper = MailboxMapper(SetDirectory(*DIRECTORY), StaticMapping(MAPPING_CSV))
        self.importer = ItemImporter(mapper, self.boxes, self.source, max_item_bytes=10 * 1024 * 1024)
        self.policy = SchedulePolicy(slice_length=timedelta(hours=1), overlap=overlap)

    def schedule(self, now=NOW):
        return schedule_window(now, watermarks=self.marks, listing_queue=self.listing, ledger=self.ledger,
                               policy=self.policy)

    def list_all(self, *, twice=False):
        """``twice``: every page's first run dies after handing everything off but before its
        "listed" mark (the widest window a crash has), so the page runs again in full."""
        while self.listing.messages:
            task = ListingTask.model_validate(self.listing.messages.pop(0))
            if twice:
                with contextlib.suppress(WorkerCrash):
                    list_slice_page(task, source=self.source, records=self.records, items_queue=self.items,
                                    listing_queue=self.listing, ledger=CrashBeforeMark(self.ledger), page_size=3)
            list_slice_page(task, source=self.source, records=self.records, items_queue=self.items,
                            listing_queue=MemoryQueue() if twice else self.listing, ledger=self.ledger,
                            page_size=3)

    def process_all(self, *, twice=False):
        while self.items.messages:
            body = json.dumps(self.items.messages.pop(0))
            for _ in range(2 if twice else 1):
                process_item_message(body, dequeue_count=1, records=self.records, importer=self.importer,
                                     poison_queue=self.poison, ledger=self.ledger)

    def summary(self, info):
        wid = info.window_id
        return summarize(self.ledger.window(wid), self.ledger.pages(wid), self.ledger.outcomes(wid))

    def items_per_mailbox(self):
        return {m: len(items) for m, items in self.boxes.items.items()}


def records_in_window(count=7, *, start=NOW - timedelta(hours=5), every=timedelta(minutes=1)):
    first = int(start.timestamp() * 1000)
    step = int(every.total_seconds() * 1000)
    return [record(f"m{i}", archivedTime=first + i * step, recipients=[BOB, CUSTOMER]) for i in range(count)]


def test_listing_every_page_twice_and_processing_every_item_twice_leaves_one_item_each():
    stack = Stack(records_in_window())
    info = stack.schedule()
    stack.list_all(twice=True)
    assert len(stack.items.messages) == 14  # every record enqueued twice
    stack.process_all(twice=True)
    summary = stack.summary(info)
    assert summary.reconciled and summary.listed == 7
    assert (summary.fanout, summary.imported, summary.skipped_duplicates) == (14, 14, 0)
    assert stack.items_per_mailbox() == {"alice@contoso.example": 7, "bob@contoso.example": 7}


def test_an_overlapping_window_relists_the_margin_and_skips_it():
    # Captured 23:00 to 00:00 every ten minutes; the first window ends at 00:00.
    stack = Stack(records_in_window(start=NOW - timedelta(hours=3), every=timedelta(minutes=10)),
                  overlap=timedelta(hours=2))
    first = stack.schedule(NOW - timedelta(hours=2))
    stack.list_all()
    stack.process_all()
    second = stack.schedule(NOW)
    assert second.window.start == first.window.end - timedelta(hours=2)
    stack.list_all()
    stack.process_all()
    a, b = stack.summary(first), stack.summary(second)
    assert a.reconciled and b.reconciled
    assert a.listed == 6 and b.listed == 7  # the overlap lists the first six again
    assert (b.imported, b.skipped_duplicates) == (2, 12)
    assert stack.items_per_mailbox() == {"alice@contoso.example": 7, "bob@contoso.example": 7}


def race_one_record(writer, slow):
    stack = Stack(records_in_window(1), writer=writer)
    stack.boxes = slow
    info = stack.schedule()
    stack.list_all()
    body = json.dumps(stack.items.messages[0])

    def worker():
        return process_item_message(body, dequeue_count=1, records=stack.records, importer=stack.importer,
                                    poison_queue=stack.poison, ledger=stack.ledger)

    with ThreadPoolExecutor(2) as pool:
        results = [f.result() for f in [pool.submit(worker), pool.submit(worker)]]
    return stack, info, results


def test_two_workers_holding_the_same_record_at_once_write_it_once():
    slow = SlowMailboxes()
    stack, info, results = race_one_record(OnceOnlyMailbox(slow, MemoryDeliveryRecords(wait_seconds=5)), slow)
    assert all(r is not None for r in results)
    assert set(slow.creates.values()) == {1} and len(slow.creates) == 2
    summary = stack.summary(info)
    assert summary.reconciled and summary.imported == 2


def test_without_delivery_records_the_same_race_would_write_twice():
    # The control for the test above: the race is real, the delivery records are what stop it.
    slow = SlowMailboxes()
    race_one_record(slow, slow)
    assert set(slow.creates.values()) == {2}
