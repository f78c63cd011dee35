"""Contract of the daily transcripts' state (TranscriptStore), held by the in-memory fake and the blob
adapter on Azurite alike: a staged record is kept once per window that listed it (the same window
again replaces its own copy); buckets with staged records are listed in name order; unstaging
removes only the named windows' copies; a part is created once and then only replaced whole; the
parts come back in number order; and which part transcribed a record is remembered."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from shared.domain.ledger import MappingRule, WindowInfo
from shared.domain.transcripts import Bucket, Dropped, StagedMailbox, StagedRecord, TranscriptPart
from shared.domain.window import Window
from tests.fakes import MemoryTranscriptStore

HANDED_OFF = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
DAY = date(2026, 11, 22)
CHAT = "c" * 32
BUCKET = Bucket(DAY, CHAT)
OTHER_BUCKET = Bucket(DAY, "d" * 32)


def _window(hours_later: int) -> str:
    at = HANDED_OFF + timedelta(hours=hours_later)
    return WindowInfo(Window(at - timedelta(days=1), at), 1, at).window_id


W1, W2, W3 = _window(0), _window(1), _window(2)


def staged(n: int, window_id: str = W1, *, relisted_by: tuple[str, ...] = (), to: str = "ann@contoso.example"):
    key = f"{n:064x}"
    return StagedRecord(
        record_key=key, record_ref=f"{key}.json", window_id=window_id, message_id=f"m-{n}",
        message_time=1_763_800_000_000 + n, mailboxes=(StagedMailbox(to, MappingRule.CSV),),
        estimated_bytes=400 + n, relisted_by=relisted_by,
    )


def copies(store, bucket: Bucket = BUCKET) -> set[tuple[str, str]]:
    return {(r.record_key, r.window_id) for r in store.staged(bucket)}


@pytest.fixture(params=["memory", "blob"])
def store(request):
    if request.param == "memory":
        return MemoryTranscriptStore()
    from shared.adapters.azure_transcripts import BlobTranscriptStore

    blobs = request.getfixturevalue("azurite_blobs")
    return BlobTranscriptStore(blobs, f"state-{uuid.uuid4().hex[:12]}")


def test_nothing_is_staged_before_a_record_is(store):
    assert store.staged_buckets() == [] and store.staged(BUCKET) == [] and store.parts(BUCKET) == []


def test_a_staged_record_is_read_back_as_it_was_staged(store):
    record = staged(1)
    store.stage(BUCKET, record)
    assert store.staged(BUCKET) == [record]


def test_a_record_is_kept_once_per_window_that_listed_it(store):
    store.stage(BUCKET, staged(1, W1, relisted_by=(W2,)))
    store.stage(BUCKET, staged(1, W1, to="bob@contoso.example"))  # the same window again: its own copy replaced
    by_window = {r.window_id: r for r in store.staged(BUCKET)}
    assert set(by_window) == {W1, W2}
    assert by_window[W1].mailboxes[0].address == "bob@contoso.example"
    assert by_window[W2].mailboxes[0].address == "ann@contoso.example"
    assert all(r.relisted_by == () for r in by_window.values())  # each copy speaks for its window


def test_buckets_with_staged_records_are_listed_in_name_order(store):
    store.stage(OTHER_BUCKET, staged(2))
    store.stage(BUCKET, staged(1))
    later = Bucket(DAY + timedelta(days=1), CHAT)
    store.stage(later, staged(3))
    assert store.staged_buckets() == [BUCKET, OTHER_BUCKET, later]
    store.unstage(OTHER_BUCKET, [staged(2)])
    assert store.staged_buckets() == [BUCKET, later]


def test_unstaging_removes_only_the_named_windows_copies(store):
    store.stage(BUCKET, staged(1, W1, relisted_by=(W2,)))
    store.stage(BUCKET, staged(2, W1))
    store.stage(BUCKET, staged(1, W3))  # staged meanwhile: not yet accounted
    store.unstage(BUCKET, [staged(1, W1, relisted_by=(W2,)), staged(2, W1)])
    assert copies(store) == {(f"{1:064x}", W3)}
    store.unstage(BUCKET, [staged(9, W1)])  # never staged: nothing happens


def test_a_part_is_created_once_then_only_replaced_whole(store):
    part = TranscriptPart(BUCKET, 1, (staged(1), staged(2)))
    assert store.create_part(part)
    assert not store.create_part(replace(part, records=(staged(3),)))  # another composer was first
    assert store.parts(BUCKET) == [part]
    annotated = replace(part.with_dropped({f"{2:064x}": Dropped("too_big", "over the limit")}), sealed=True)
    store.update_part(annotated)
    store.update_part(replace(annotated, completed=True))
    [stored] = store.parts(BUCKET)
    assert stored == replace(annotated, completed=True) and stored.kept == (staged(1),)


def test_parts_come_back_in_number_order_and_per_bucket(store):
    for number in (3, 1, 10, 2):
        assert store.create_part(TranscriptPart(BUCKET, number, (staged(number),)))
    store.create_part(TranscriptPart(OTHER_BUCKET, 1, (staged(99),)))
    assert [p.number for p in store.parts(BUCKET)] == [1, 2, 3, 10]
    assert [p.records[0].record_key for p in store.parts(OTHER_BUCKET)] == [f"{99:064x}"]


def test_the_part_that_transcribed_a_record_is_remembered(store):
    part = TranscriptPart(BUCKET, 1, (staged(1), staged(2)))
    assert store.transcribed_in(f"{1:064x}") is None
    store.mark_transcribed([f"{1:064x}", f"{2:064x}"], part.item_id)
    assert store.transcribed_in(f"{1:064x}") == part.item_id
    assert store.transcribed_in(f"{2:064x}") == part.item_id
    assert store.transcribed_in(f"{3:064x}") is None
