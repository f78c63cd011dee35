"""Daily transcript mode: a record listed by several windows (a re-list, a retried run) is
transcribed once, and every window that listed it reconciles — the first one to list it shows it
imported by the transcript, every later one a skipped duplicate, as the non-transcript path does
when a later window finds the item in the mailbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.ledger import MappingRule, RecordOutcome
from shared.domain.transcripts import Bucket, StagedMailbox, StagedRecord, TranscriptPart, merge_staged, plan_parts
from tests.fakes import MemoryTranscriptStore
from tests.test_transcripts import DAY, DAY_START, Rig, chat_record

LATE = DAY_START + timedelta(hours=23, minutes=50)


def outcome_in(rig: Rig, info) -> RecordOutcome:
    (entry,) = rig.summary(info).records.values()
    return entry.outcome


def test_a_record_re_listed_before_its_day_is_composed_reconciles_both_windows():
    rig = Rig()
    rig.source_records.append(chat_record("late-evening", LATE, textContent="good night"))
    # The window ends at 23:55: the day is not over, the record waits for its transcript.
    first = rig.run_window(DAY_START + timedelta(hours=23, minutes=55))
    assert rig.summary(first).awaiting_transcript == 1
    # Listed again (a re-run of the same range) before the day is composed.
    rig.rewind(first.window.start)
    second = rig.run_window(DAY_START + timedelta(days=1, hours=2))

    one, two = rig.summary(first), rig.summary(second)
    assert one.reconciled and one.awaiting_transcript == 0 and one.imported == one.fanout == 2
    assert two.reconciled and two.awaiting_transcript == 0
    assert two.imported == 0 and two.skipped_duplicates == two.fanout == 2
    assert outcome_in(rig, first) is RecordOutcome.IMPORTED
    assert outcome_in(rig, second) is RecordOutcome.SKIPPED_DUPLICATE
    # One transcript per mailbox, the record in it once.
    for mailbox in ("alice@contoso.example", "bob@contoso.example"):
        (item,) = rig.boxes.items[mailbox].values()
        assert item.text_body.count("good night") == 1
    assert not rig.store.staged_buckets()


def test_a_record_listed_by_three_windows_before_its_day_is_composed_reconciles_all_three():
    rig = Rig()
    rig.source_records.append(chat_record("late-evening", LATE, textContent="good night"))
    first = rig.run_window(DAY_START + timedelta(hours=23, minutes=55))
    rig.rewind(first.window.start)
    second = rig.run_window(DAY_START + timedelta(hours=23, minutes=58))
    assert rig.summary(second).awaiting_transcript == 1
    rig.rewind(first.window.start)
    third = rig.run_window(DAY_START + timedelta(days=1, hours=2))

    summaries = [rig.summary(info) for info in (first, second, third)]
    assert all(s.reconciled and s.awaiting_transcript == 0 and s.pending == 0 for s in summaries)
    assert [outcome_in(rig, info) for info in (first, second, third)] == [
        RecordOutcome.IMPORTED, RecordOutcome.SKIPPED_DUPLICATE, RecordOutcome.SKIPPED_DUPLICATE,
    ]
    assert [s.imported for s in summaries] == [2, 0, 0]
    assert all(len(items) == 1 for items in rig.boxes.items.values())
    assert rig.boxes.writes == 2


def test_a_re_list_after_the_day_was_composed_is_a_skipped_duplicate_and_the_first_window_stays_reconciled():
    rig = Rig()
    rig.source_records += [chat_record(f"g-{i}", DAY_START + timedelta(hours=i)) for i in range(1, 4)]
    first = rig.run_window(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    before = rig.summary(first)
    assert before.reconciled and before.imported == 6
    writes = rig.boxes.writes
    rig.rewind(first.window.start)
    again = rig.run_window(datetime(2026, 11, 23, 3, 0, tzinfo=UTC))

    after, relisted = rig.summary(first), rig.summary(again)
    assert after.reconciled and (after.imported, after.skipped_duplicates) == (6, 0)
    assert relisted.reconciled and relisted.imported == 0 and relisted.skipped_duplicates == relisted.fanout == 6
    assert rig.boxes.writes == writes
    assert not rig.store.staged_buckets()


def test_a_re_list_staged_while_its_day_is_being_composed_is_accounted_in_its_own_window():
    """The part was planned with the first window's copy; the second window's copy arrives while the
    part is being written. Unstaging the part must not take the second copy with it."""
    rig = Rig()
    rig.source_records.append(chat_record("late-evening", LATE))
    first = rig.run_window(DAY_START + timedelta(hours=23, minutes=55))
    rig.rewind(first.window.start)
    second = rig.run_window(DAY_START + timedelta(hours=23, minutes=58), compose=False)
    (bucket,) = rig.store.staged_buckets()
    # Keep only the first window's copy for the plan, and put the second back during the first write.
    late_copies = [r for r in rig.store.staged(bucket) if r.window_id == second.window_id]
    rig.store.unstage(bucket, late_copies)

    class StagesDuringWrite:
        def __init__(self) -> None:
            self.staged = False

        def write(self, mailbox, item):
            if not self.staged:
                self.staged = True
                for copy in late_copies:
                    rig.store.stage(bucket, copy)
            return rig.boxes.write(mailbox, item)

    report = rig.composer(StagesDuringWrite()).compose(bucket)

    assert report.records_transcribed == 1 and report.records_skipped == 1
    assert outcome_in(rig, first) is RecordOutcome.IMPORTED
    assert outcome_in(rig, second) is RecordOutcome.SKIPPED_DUPLICATE
    assert rig.summary(first).reconciled and rig.summary(second).awaiting_transcript == 0
    assert rig.boxes.writes == 2 and not rig.store.staged_buckets()


def staged(key: str, window: str, *mailboxes: str, time: int = 1) -> StagedRecord:
    return StagedRecord(
        record_key=key, record_ref=f"{key}.json", window_id=window, message_id=f"m-{key}", message_time=time,
        mailboxes=tuple(StagedMailbox(m, MappingRule.CSV) for m in mailboxes), estimated_bytes=100,
    )


W1 = "20261121T000000Z-20261121T235500Z.20261121T235500000Z"
W2 = "20261121T000000Z-20261121T235800Z.20261121T235800000Z"
W3 = "20261121T000000Z-20261122T020000Z.20261122T020000000Z"


def test_staging_the_same_record_twice_keeps_one_record_with_every_window_that_listed_it():
    bucket = Bucket(DAY, "c" * 32)
    store = MemoryTranscriptStore()
    for window in (W3, W1, W1, W2):  # redelivered once; staged out of hand-off order
        store.stage(bucket, staged("k1", window, "a@x.example"))
    store.stage(bucket, staged("k1", W2, "a@x.example", "b@x.example"))  # mapped anew at the re-list
    store.stage(bucket, staged("k2", W2, "a@x.example", time=2))

    merged = merge_staged(store.staged(bucket))
    assert [r.record_key for r in merged] == ["k1", "k2"]
    k1 = merged[0]
    assert k1.window_id == W1 and k1.relisted_by == (W2, W3) and k1.window_ids == (W1, W2, W3)
    assert [m.address for m in k1.mailboxes] == ["a@x.example", "b@x.example"]

    parts, repeats = plan_parts(bucket, store.staged(bucket), [], max_bytes=10_000)
    (part,) = parts
    assert [r.record_key for r in part.records] == ["k1", "k2"] and not repeats
    # The part's manifest keeps every window, and reads back.
    assert TranscriptPart.from_json(part.to_json()) == part
    # Once in a part, a copy staged again is a repeat: never in a second part.
    store.stage(bucket, staged("k1", W3, "a@x.example"))
    again, repeats = plan_parts(bucket, store.staged(bucket), [part], max_bytes=10_000)
    assert not again and sorted(r.record_key for r in repeats) == ["k1", "k2"]
    assert next(r for r in repeats if r.record_key == "k1").window_ids == (W1, W2, W3)


def test_a_staged_record_written_before_windows_were_kept_reads_back():
    old = {
        "record_key": "k1", "record_ref": "k1.json", "window_id": W1, "message_id": "m-k1", "message_time": 1,
        "mailboxes": [{"address": "a@x.example", "rule": "csv"}], "estimated_bytes": 100,
    }
    record = StagedRecord.from_json(old)
    assert record.window_ids == (W1,) and record.relisted_by == ()
    assert record.to_json() == old  # a record listed once is stored as it always was


@pytest.fixture(params=["memory", "blob"])
def store(request):
    if request.param == "memory":
        return MemoryTranscriptStore()
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.azure_transcripts import BlobTranscriptStore

    azurite = request.getfixturevalue("azurite")
    return BlobTranscriptStore(BlobServiceClient.from_connection_string(azurite.connection_string), "archive-state")


def test_a_store_keeps_each_windows_copy_and_unstages_only_the_windows_it_is_given(store):
    bucket = Bucket(DAY, "c" * 32)
    store.stage(bucket, staged("k1", W1, "a@x.example"))
    store.stage(bucket, staged("k1", W1, "a@x.example"))  # the same window again (a redelivery)
    store.stage(bucket, staged("k1", W2, "a@x.example"))
    assert sorted(r.window_id for r in store.staged(bucket)) == [W1, W2]
    (planned,) = merge_staged(store.staged(bucket))
    assert planned.window_ids == (W1, W2)
    part = TranscriptPart(bucket, 1, (planned,))
    assert store.create_part(part) and store.parts(bucket) == [part]

    store.stage(bucket, staged("k1", W3, "a@x.example"))  # a re-list while the part is written
    store.unstage(bucket, [planned])
    assert [r.window_ids for r in store.staged(bucket)] == [(W3,)]
    assert store.staged_buckets() == [bucket]
    store.unstage(bucket, merge_staged(store.staged(bucket)))
    assert store.staged(bucket) == [] and store.staged_buckets() == []


def test_a_record_staged_by_an_earlier_release_is_read_merged_and_unstaged(azurite):
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.azure_transcripts import BlobTranscriptStore

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    store = BlobTranscriptStore(service, "archive-state")
    bucket = Bucket(DAY, "d" * 32)
    store.stage(bucket, staged("k1", W2, "a@x.example"))
    old = staged("k1", W1, "a@x.example")
    service.get_container_client("archive-state").upload_blob(  # the single copy an earlier release wrote
        f"transcripts/staged/{bucket.name}/k1.json", json.dumps(old.to_json()),
    )
    assert store.staged_buckets() == [bucket]
    (merged,) = merge_staged(store.staged(bucket))
    assert merged.window_ids == (W1, W2)
    store.unstage(bucket, [merged])
    assert store.staged(bucket) == [] and store.staged_buckets() == []


def test_a_record_poisoned_out_of_its_part_and_replayed_is_transcribed_in_the_next_part():
    """A record dropped from a part was never in its transcript: replayed (the media fixed), it goes
    into the day's next part, never counted as a duplicate of a transcript that does not hold it."""
    from shared.domain.tasks import PoisonMessage
    from shared.service.processing import process_item_message
    from tests.builders import attachment

    bad = b"bad bytes"
    rig = Rig(media={"bad": b"tampered"})
    rig.source_records += [
        chat_record("ok", DAY_START + timedelta(hours=1), textContent="hello"),
        chat_record("corrupt", DAY_START + timedelta(hours=2), messageType="IMAGE",
                    attachments=[attachment("bad", bad, inline=False)]),
    ]
    info = rig.run_window(datetime(2026, 11, 23, 2, 0, tzinfo=UTC), compose=False)
    (bucket,) = rig.store.staged_buckets()
    rig.composer().compose(bucket, attempt=3)
    assert rig.summary(info).poisoned == {"attachment_corrupt": 1}

    rig.media["bad"] = bad  # the source serves the right bytes now
    (poisoned,) = [PoisonMessage.model_validate(m) for m in rig.poison.messages]
    process_item_message(poisoned.item_task().model_dump_json(), dequeue_count=1, records=rig.records,
                         importer=rig.importer, poison_queue=rig.poison, ledger=rig.ledger)
    report = rig.composer().compose(bucket)

    assert (report.parts_written, report.records_transcribed, report.records_skipped) == (1, 1, 0)
    summary = rig.summary(info)
    assert summary.reconciled and summary.poisoned == {} and summary.imported == summary.fanout == 4
    assert [len(items) for items in rig.boxes.items.values()] == [2, 2]  # part 1 and part 2 of the day
    assert not rig.store.staged_buckets()
