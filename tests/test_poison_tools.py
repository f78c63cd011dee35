"""Poison queues as a tool, over a fake with Azure's receive semantics: every kind of poison message
is listed, replays send work back before deleting, foreign messages are never lost, purge ages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.errors import PoisonReason
from shared.domain.records import record_key
from shared.domain.tasks import ItemTask, ListingTask, PoisonMessage
from shared.service.poison import PoisonQueues, reason_selector
from tests.builders import WINDOW_ID
from tests.fakes import MemoryInspectableQueue, MemoryQueue

KEY_B = record_key("b")

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def poison(reason: PoisonReason, name: str, *, failed_at: datetime, first: datetime | None = None) -> str:
    key = record_key(name)
    return PoisonMessage(
        reason=reason, detail="why", window_id=WINDOW_ID, record_key=key, record_ref=f"{key}.json",
        message_id=f"m-{name}",
        failed_at=failed_at, first_failed_at=first, attempts=1,
    ).to_text()


@pytest.fixture
def setup():
    items_poison = MemoryInspectableQueue("items-poison")
    listing_poison = MemoryInspectableQueue("listing-poison")
    targets = {"items": MemoryQueue("items"), "listing": MemoryQueue("listing"), "transcripts": MemoryQueue()}
    tools = PoisonQueues([items_poison, listing_poison], targets, clock=lambda: NOW)
    return items_poison, listing_poison, targets, tools


def test_every_kind_of_poison_message_is_listed_oldest_first_and_left_visible(setup):
    items_poison, listing_poison, _, tools = setup
    items_poison.put(poison(PoisonReason.NO_MAPPING, "a", failed_at=NOW - timedelta(hours=1)))
    items_poison.put(ItemTask(window_id=WINDOW_ID, record_key=KEY_B, record_ref=f"{KEY_B}.json").to_text(),
                     inserted_at=NOW - timedelta(hours=3))
    items_poison.put("not json at all", inserted_at=NOW - timedelta(hours=2))
    listing_poison.put(ListingTask(window_id=WINDOW_ID, slice_start=NOW - timedelta(hours=5),
                                   slice_end=NOW - timedelta(hours=4)).to_text(), inserted_at=NOW - timedelta(hours=4))
    entries = tools.list()
    assert [(e.queue, e.message.reason.value) for e in entries] == [
        ("listing-poison", "retries_exhausted"), ("items-poison", "retries_exhausted"),
        ("items-poison", "invalid_item"), ("items-poison", "no_mapping"),
    ]
    assert [e.replayable for e in entries] == [True, True, False, True]
    assert entries[2].message.original_message == "not json at all"
    assert items_poison.visible == 3 and listing_poison.visible == 1  # released at the end of the scan
    assert [e.message.record_key for e in tools.list(reason="no_mapping")] == [record_key("a")]


def test_replay_sends_the_work_back_with_its_history_then_deletes_the_poison_message(setup):
    items_poison, listing_poison, targets, tools = setup
    first = NOW - timedelta(days=2)
    items_poison.put(poison(PoisonReason.NO_MAPPING, "a", failed_at=NOW - timedelta(hours=1), first=first))
    items_poison.put(poison(PoisonReason.TOO_BIG, "b", failed_at=NOW))
    listing_task = ListingTask(window_id=WINDOW_ID, slice_start=NOW - timedelta(hours=5), slice_end=NOW)
    listing_poison.put(listing_task.to_text())
    report = tools.replay(reason_selector("no_mapping"))
    assert [e.message.record_key for e in report.replayed] == [record_key("a")]
    (sent,) = targets["items"].messages
    task = ItemTask.model_validate(sent)
    assert (task.record_key, task.first_failed_at, task.replays) == (record_key("a"), first, 1)
    assert len(items_poison.stored) == 1 and items_poison.visible == 1  # b stays, visible again

    tools.replay(lambda e: e.queue == "listing-poison")
    assert ListingTask.model_validate(targets["listing"].messages[0]) == listing_task
    assert not listing_poison.stored


def test_a_replay_that_cannot_send_keeps_the_poison_message(setup):
    items_poison, _, targets, tools = setup
    items_poison.put(poison(PoisonReason.NO_MAPPING, "a", failed_at=NOW))
    targets["items"] = MemoryQueue("items", fail_after=0)
    tools = PoisonQueues([items_poison], targets, clock=lambda: NOW)
    with pytest.raises(ConnectionError):
        tools.replay(reason_selector("no_mapping"))
    assert len(items_poison.stored) == 1 and items_poison.visible == 1


def test_foreign_messages_are_reported_not_replayable_and_kept(setup):
    items_poison, _, targets, tools = setup
    items_poison.put(json.dumps({"hello": "world"}))
    report = tools.replay(lambda e: True)
    assert not report.replayed and len(report.not_replayable) == 1
    assert len(items_poison.stored) == 1 and not targets["items"].messages


def test_dry_run_changes_nothing(setup):
    items_poison, _, targets, tools = setup
    items_poison.put(poison(PoisonReason.NO_MAPPING, "a", failed_at=NOW - timedelta(days=40)))
    assert len(tools.replay(lambda e: True, dry_run=True).replayed) == 1
    assert len(tools.purge(timedelta(days=30), dry_run=True)) == 1
    assert len(items_poison.stored) == 1 and not targets["items"].messages


def test_purge_deletes_only_messages_whose_last_failure_is_older_than_the_cutoff(setup):
    items_poison, _, _, tools = setup
    items_poison.put(poison(PoisonReason.NO_MAPPING, "old", failed_at=NOW - timedelta(days=31)))
    items_poison.put(poison(PoisonReason.NO_MAPPING, "new", failed_at=NOW - timedelta(days=29)))
    purged = tools.purge(timedelta(days=30))
    assert [e.message.record_key for e in purged] == [record_key("old")]
    assert [e.message.record_key for e in tools.list()] == [record_key("new")]


def test_a_long_scan_that_sees_a_message_again_lists_it_once(setup):
    items_poison, _, _, _ = setup
    items_poison.put(poison(PoisonReason.NO_MAPPING, "a", failed_at=NOW))

    class Reappearing(MemoryInspectableQueue):
        """Its messages become visible again after each receive (a scan slower than the timeout)."""

        def receive(self, max_messages, *, visibility_timeout):
            got = super().receive(max_messages, visibility_timeout=visibility_timeout)
            for m in self.stored.values():
                m["hidden"] = False
            return got

    queue = Reappearing("items-poison")
    queue.stored = items_poison.stored
    entries = PoisonQueues([queue], {}, clock=lambda: NOW).list()
    assert len(entries) == 1


@pytest.mark.integration
def test_storage_queue_reads_what_the_host_moved_even_when_it_is_not_base64(azurite):
    from azure.storage.queue import QueueServiceClient

    from shared.adapters.azure_storage import StorageQueue

    service = QueueServiceClient.from_connection_string(azurite.connection_string)
    queue = StorageQueue(service, "items-poison")
    queue.send({"kind": "item", "window_id": WINDOW_ID, "record_key": KEY_B, "record_ref": f"{KEY_B}.json"})
    service.get_queue_client("items-poison").send_message("{not base64: moved as it came}")
    tools = PoisonQueues([queue], {"items": StorageQueue(service, "items")})
    entries = tools.list()
    assert sorted(e.message.reason.value for e in entries) == ["invalid_item", "retries_exhausted"]
    assert any(e.message.original_message == "{not base64: moved as it came}" for e in entries)
    assert len(tools.list()) == 2  # released: a second scan sees them all again
    assert len(tools.replay(reason_selector("retries_exhausted")).replayed) == 1
    assert [e.message.reason.value for e in tools.list()] == ["invalid_item"]


def test_a_record_poisoned_twice_after_a_crash_is_replayed_once_and_both_copies_go(setup):
    items_poison, _, targets, tools = setup
    items_poison.put(poison(PoisonReason.NO_MAPPING, "a", failed_at=NOW - timedelta(minutes=1)))
    items_poison.put(poison(PoisonReason.NO_MAPPING, "a", failed_at=NOW))
    report = tools.replay(reason_selector("no_mapping"))
    assert len(report.replayed) == 1 and len(targets["items"].messages) == 1
    assert not items_poison.stored


@pytest.mark.parametrize("forged", [
    {"source_queue": "../../x"},
    {"source_queue": "items"},
])
def test_a_poison_message_naming_a_queue_that_is_not_a_source_is_not_ours_and_kept(setup, forged):
    items_poison, _, targets, tools = setup
    listing = ListingTask(window_id=WINDOW_ID, slice_start=NOW - timedelta(hours=5), slice_end=NOW)
    message = PoisonMessage(reason=PoisonReason.RETRIES_EXHAUSTED, detail="moved", failed_at=NOW,
                            original_message=listing.to_text(), source_queue="listing")
    items_poison.put(json.dumps({**message.model_dump(mode="json"), **forged}))
    [entry] = tools.list()
    assert entry.message.reason is PoisonReason.INVALID_ITEM and not entry.replayable
    report = tools.replay(lambda e: True)
    assert report.replayed == [] and len(tools.list()) == 1 and all(not q.messages for q in targets.values())


def test_moved_work_goes_back_only_when_it_still_reads_as_its_queues_message(setup):
    items_poison, _, targets, tools = setup
    for original in ('{"kind": "listing", "window_id": "../x"}', "not json", '{"kind": "transcript", "bucket": "x"}'):
        items_poison.put(PoisonMessage(reason=PoisonReason.RETRIES_EXHAUSTED, detail="moved", failed_at=NOW,
                                       original_message=original, source_queue="listing").to_text())
    assert [e.replayable for e in tools.list()] == [False, False, False]
    assert tools.replay(lambda e: True).replayed == [] and not targets["listing"].messages


def test_a_moved_media_capture_is_accounted_in_its_window_and_replayed_as_a_capture(setup):
    from shared.domain.ledger import RecordOutcome
    from shared.domain.tasks import ItemTask, MediaCaptureTask
    from shared.service.poison import account_moved_items
    from tests.fakes import MemoryLedger

    items_poison, _, targets, tools = setup
    item = ItemTask(window_id=WINDOW_ID, record_key=KEY_B, record_ref=f"{KEY_B}.json", message_id="wamid.b")
    capture = MediaCaptureTask(item=item, media_ids=["1001"])
    items_poison.put(capture.to_text(), inserted_at=NOW)
    ledger = MemoryLedger()
    assert account_moved_items(tools, ledger, now=NOW) == 1
    [outcome] = ledger.outcomes(WINDOW_ID)
    assert (outcome.record_key, outcome.outcome, outcome.reason) == (KEY_B, RecordOutcome.POISONED,
                                                                     "retries_exhausted")
    assert len(tools.replay(lambda e: True).replayed) == 1
    assert targets["listing"].messages == [capture.model_dump(mode="json")] and not targets["items"].messages


def test_work_the_host_moved_is_adopted_as_our_own_poison_message_and_still_replays(setup):
    items_poison, listing_poison, targets, tools = setup
    item = ItemTask(window_id=WINDOW_ID, record_key=KEY_B, record_ref=f"{KEY_B}.json", message_id="m-b")
    listing = ListingTask(window_id=WINDOW_ID, slice_start=NOW - timedelta(hours=5), slice_end=NOW)
    items_poison.put(item.to_text(), inserted_at=NOW - timedelta(days=6))
    items_poison.put("not json at all", inserted_at=NOW - timedelta(days=6))
    items_poison.put(poison(PoisonReason.NO_MAPPING, "a", failed_at=NOW))
    listing_poison.put(listing.to_text(), inserted_at=NOW - timedelta(days=6))

    adopted = tools.adopt_moved()
    assert sorted(e.message.reason.value for e in adopted) == ["invalid_item", "retries_exhausted",
                                                                "retries_exhausted"]
    # Every message left is the connector's own now (the host's copies, with their 7-day life, are gone).
    for queue in (items_poison, listing_poison):
        assert all(json.loads(m["text"])["kind"] == "poison" for m in queue.stored.values())
    assert len(items_poison.stored) == 3 and len(listing_poison.stored) == 1
    assert tools.adopt_moved() == []  # adopted once
    foreign = next(e for e in tools.list() if e.message.reason is PoisonReason.INVALID_ITEM)
    assert foreign.message.original_message == "not json at all" and not foreign.replayable
    report = tools.replay(reason_selector("retries_exhausted"))
    assert len(report.replayed) == 2
    assert targets["items"].messages[0]["record_key"] == KEY_B
    assert targets["listing"].messages == [listing.model_dump(mode="json")]


@pytest.mark.integration
def test_an_adopted_message_never_expires_on_the_storage_queue(azurite):
    from azure.storage.queue import QueueServiceClient

    from shared.adapters.azure_storage import StorageQueue

    service = QueueServiceClient.from_connection_string(azurite.connection_string)
    queue = StorageQueue(service, "items-poison")
    queue.client  # noqa: B018 - created
    item = ItemTask(window_id=WINDOW_ID, record_key=KEY_B, record_ref=f"{KEY_B}.json")
    # As the host moves it: base64 text, the queue's default time to live (7 days).
    import base64

    service.get_queue_client("items-poison").send_message(base64.b64encode(item.to_text().encode()).decode())
    [before] = service.get_queue_client("items-poison").peek_messages()
    assert (before.expires_on - before.inserted_on) <= timedelta(days=7)
    [adopted] = PoisonQueues([queue], {}).adopt_moved()
    [after] = service.get_queue_client("items-poison").peek_messages()
    assert after.expires_on.year >= 9999 and adopted.message.record_key == KEY_B


def test_a_moved_message_too_long_to_keep_whole_is_never_adopted_so_never_cut(setup):
    items_poison, _, _, tools = setup
    huge = "x" * 40_000  # a foreign message: a poison message keeps about 16 KB of it
    items_poison.put(huge, inserted_at=NOW - timedelta(days=6))
    assert tools.adopt_moved() == []
    [stored] = items_poison.stored.values()
    assert stored["text"] == huge
