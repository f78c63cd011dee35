"""Paging a source's slice: a page token the slice followed already is a loop, poisoned with its
reason instead of followed for ever; a page run again after it was handed off does nothing, so it
never forks the rest of its slice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.errors import PoisonReason
from shared.domain.ledger import WindowInfo, summarize
from shared.domain.tasks import ListingTask, PoisonMessage
from shared.domain.window import Window
from shared.ports import ListingPage
from shared.service.listing import list_slice_page
from tests.builders import record
from tests.fakes import MemoryLedger, MemoryQueue, MemoryRecordStore

START = datetime(2026, 11, 20, tzinfo=UTC)
INFO = WindowInfo(Window(START, START + timedelta(hours=1)), 1, START + timedelta(hours=2))


class ScriptedSource:
    """Answers each page token with the next token the script names (None: the last page)."""

    def __init__(self, script: dict[str | None, str | None]) -> None:
        self.script = script
        self.asked: list[str | None] = []

    def list_page(self, window, page_token, page_size):
        self.asked.append(page_token)
        return ListingPage([record(f"m-{len(self.asked)}")], self.script[page_token])

    def open_attachment(self, attachment_id):
        return None


class Rig:
    def __init__(self, script):
        self.source = ScriptedSource(script)
        self.ledger, self.records = MemoryLedger(), MemoryRecordStore()
        self.items, self.listing, self.poison = MemoryQueue("items"), MemoryQueue("listing"), MemoryQueue("poison")
        self.ledger.open_window(INFO)

    def run(self, task: ListingTask):
        return list_slice_page(task, source=self.source, records=self.records, items_queue=self.items,
                               listing_queue=self.listing, ledger=self.ledger, page_size=10,
                               poison_queue=self.poison)

    def drain(self, limit: int = 50) -> None:
        self.listing.messages.append(ListingTask.first_page(INFO.window_id, INFO.window).model_dump(mode="json"))
        for _ in range(limit):
            if not self.listing.messages:
                return
            self.run(ListingTask.model_validate(self.listing.messages.pop(0)))
        raise AssertionError("the slice never ended")

    def summary(self):
        return summarize(INFO, self.ledger.pages(INFO.window_id), self.ledger.outcomes(INFO.window_id))


@pytest.mark.parametrize("script", [
    {None: "A", "A": "A"},  # the same token again
    {None: "A", "A": "B", "B": "C", "C": "A"},  # a cycle
    {None: "A", "A": "B", "B": "A"},
])
def test_a_page_token_the_slice_followed_already_is_poisoned_not_followed(script):
    rig = Rig(script)
    rig.drain()
    assert len(rig.source.asked) == len(script)  # every page listed once, none twice
    [poisoned] = [PoisonMessage.model_validate(m) for m in rig.poison.messages]
    assert poisoned.reason is PoisonReason.PAGE_TOKEN_LOOP and poisoned.window_id == INFO.window_id
    assert "page token" in poisoned.detail and poisoned.source_queue == "listing"
    # The continuation is kept whole: a replay, once the source pages properly, resumes the slice.
    assert ListingTask.model_validate(poisoned.moved_work()).page == len(script)
    summary = rig.summary()
    assert summary.listed == len(script) and not summary.listing_complete and not summary.reconciled


def test_a_slice_that_pages_properly_is_never_taken_for_a_loop():
    script = {None: "t1", **{f"t{i}": f"t{i + 1}" for i in range(1, 40)}, "t40": None}
    rig = Rig(script)
    rig.drain(limit=60)
    assert not rig.poison.messages and rig.summary().listing_complete and rig.summary().listed == 41


def test_a_page_run_again_after_it_was_handed_off_does_nothing_and_never_forks_its_slice():
    rig = Rig({None: "A", "A": None})
    first = ListingTask.first_page(INFO.window_id, INFO.window)
    rig.run(first)
    assert rig.run(first).records == 0  # a redelivery, or a replay: listed before
    assert rig.source.asked == [None] and len(rig.items.messages) == 1 and len(rig.listing.messages) == 1


@pytest.mark.integration
def test_the_blob_ledger_marks_a_page_listed_once_per_window_slice_and_page(azurite):
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.azure_storage import BlobWindowLedger

    for ledger in (MemoryLedger(), BlobWindowLedger(BlobServiceClient.from_connection_string(
            azurite.connection_string), "archive-state")):
        ledger.open_window(INFO)
        slice_id = INFO.window.id
        assert not ledger.page_listed(INFO.window_id, slice_id, 0)
        ledger.mark_page_listed(INFO.window_id, slice_id, 0)
        ledger.mark_page_listed(INFO.window_id, slice_id, 0)
        assert ledger.page_listed(INFO.window_id, slice_id, 0)
        assert not ledger.page_listed(INFO.window_id, slice_id, 1)
        assert [w.window_id for w in ledger.recent_windows(5)] == [INFO.window_id]
