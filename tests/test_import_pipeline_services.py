"""The service layer end to end over in-memory fakes: every outcome accounted for."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.bidi import strip_isolates
from shared.domain.errors import PoisonReason, TransientError
from shared.domain.ledger import RecordOutcome, summarize
from shared.domain.records import record_key
from shared.domain.tasks import ItemTask, ListingTask
from shared.domain.window import Watermark
from shared.service.importing import ItemImporter
from shared.service.listing import list_slice_page
from shared.service.mapping import MailboxMapper
from shared.service.processing import process_item_message
from shared.service.scheduling import SchedulePolicy, schedule_window
from tests.builders import BOB, CUSTOMER, DIRECTORY, MAPPING_CSV, WINDOW_ID, attachment, record
from tests.fakes import (
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


def importer(mailboxes=None, source=None, max_bytes=10 * 1024 * 1024, directory=DIRECTORY):
    mapper = MailboxMapper(SetDirectory(*directory), StaticMapping(MAPPING_CSV))
    return ItemImporter(mapper, mailboxes or MemoryMailboxes(), source, max_item_bytes=max_bytes)


def raw(rec):
    return json.dumps(rec).encode()


def test_record_goes_to_every_mapped_mailbox_once():
    boxes = MemoryMailboxes()
    result = importer(boxes).import_raw(raw(record(recipients=[BOB, CUSTOMER])))
    assert result.outcome is RecordOutcome.IMPORTED
    assert set(boxes.items) == {"alice@contoso.example", "bob@contoso.example"}
    again = importer(boxes).import_raw(raw(record(recipients=[BOB, CUSTOMER])))
    assert again.outcome is RecordOutcome.SKIPPED_DUPLICATE
    assert {m.outcome for m in again.mailboxes} == {RecordOutcome.SKIPPED_DUPLICATE}
    assert sum(len(v) for v in boxes.items.values()) == 2


def test_no_mapped_participant_poisons_as_no_mapping():
    rec = record(sender=CUSTOMER, owner={"phone": "+447700900099"}, recipients=[{"phone": "+447700900099"}])
    result = importer().import_raw(raw(rec))
    assert (result.outcome, result.reason) == (RecordOutcome.POISONED, PoisonReason.NO_MAPPING)


def test_invalid_record_poisons_as_invalid_item_naming_the_field_not_the_value():
    result = importer().import_raw(raw(record(messageTime="yesterday", textContent="secret text")))
    assert result.reason is PoisonReason.INVALID_ITEM
    assert "messageTime" in result.detail and "yesterday" not in result.detail


@pytest.mark.parametrize("payload", [b"not json", b"\xff\xfe\x00", b"[]", b'{"messageId": 5}'])
def test_garbage_poisons_as_invalid_item(payload):
    assert importer().import_raw(payload).reason is PoisonReason.INVALID_ITEM


def test_item_over_the_size_limit_poisons_as_too_big_without_downloading():
    source = MemorySource([], {"big": b"x" * 2_000_000})
    rec = record(messageType="VIDEO", attachments=[attachment("big", b"x" * 2_000_000, inline=False)])
    result = importer(source=source, max_bytes=1_000_000).import_raw(raw(rec))
    assert result.reason is PoisonReason.TOO_BIG
    assert source.downloads == 0


def test_rendered_size_is_checked_too():
    rec = record(textContent="y" * 600_000)
    assert importer(max_bytes=700_000).import_raw(raw(rec)).reason is PoisonReason.TOO_BIG


def test_downloaded_media_mismatch_is_transient_then_corrupt():
    data = b"real bytes"
    source = MemorySource([], {"a": b"damaged"})
    rec = record(messageType="IMAGE", attachments=[attachment("a", data, inline=False)])
    with pytest.raises(TransientError):
        importer(source=source).import_raw(raw(rec), attempt=1)
    assert importer(source=source).import_raw(raw(rec), attempt=3).reason is PoisonReason.ATTACHMENT_CORRUPT


def test_inline_content_that_is_not_base64_is_invalid():
    rec = record(messageType="IMAGE", attachments=[{**attachment("a", b"x"), "content": "***"}])
    assert importer().import_raw(raw(rec)).reason is PoisonReason.INVALID_ITEM


def test_media_never_captured_is_archived_as_partial():
    rec = record(messageType="IMAGE", attachments=[attachment("gone", b"abc", inline=False)])
    result = importer(source=MemorySource([], {})).import_raw(raw(rec))
    assert result.outcome is RecordOutcome.IMPORTED and result.partial


def test_unavailable_mailbox_is_not_retried_and_others_still_get_the_record():
    boxes = MemoryMailboxes(unavailable={"bob@contoso.example"})
    result = importer(boxes).import_raw(raw(record(recipients=[BOB])))
    assert [m.mailbox for m in result.mailboxes] == ["alice@contoso.example"]
    assert result.unavailable == ("bob@contoso.example",)
    only_bob = MemoryMailboxes(unavailable={"bob@contoso.example"})
    rec = record(sender=BOB, owner=BOB, recipients=[CUSTOMER])
    assert importer(only_bob).import_raw(raw(rec)).reason is PoisonReason.NO_MAPPING


def test_schedule_enqueues_every_slice_then_advances_the_watermark():
    marks, queue, ledger = MemoryWatermarkStore(), MemoryQueue("listing"), MemoryLedger()
    info = schedule_window(NOW, watermarks=marks, listing_queue=queue, ledger=ledger)
    assert len(queue.messages) == 24
    assert marks.watermark == Watermark(info.window.end, info.window_id)
    assert schedule_window(NOW, watermarks=marks, listing_queue=queue, ledger=ledger) is None


def test_watermark_does_not_move_when_the_hand_off_fails():
    marks, ledger = MemoryWatermarkStore(), MemoryLedger()
    with pytest.raises(ConnectionError):
        schedule_window(NOW, watermarks=marks, listing_queue=MemoryQueue(fail_after=5), ledger=ledger)
    assert marks.watermark is None
    queue = MemoryQueue()
    info = schedule_window(NOW + timedelta(minutes=1), watermarks=marks, listing_queue=queue, ledger=ledger)
    assert info.window.start == NOW - timedelta(hours=23, minutes=59)


def test_after_an_outage_one_run_catches_up_in_bounded_slices():
    marks = MemoryWatermarkStore(Watermark(NOW - timedelta(days=3)))
    queue = MemoryQueue()
    info = schedule_window(NOW, watermarks=marks, listing_queue=queue, ledger=MemoryLedger(),
                           policy=SchedulePolicy(slice_length=timedelta(hours=1)))
    assert info.window.duration == timedelta(days=3) and len(queue.messages) == 72


def run_everything(source, boxes, *, page_size=2):
    """Schedule, then drain listing and items queues through the services, like the host would."""
    marks, ledger, records = MemoryWatermarkStore(), MemoryLedger(), MemoryRecordStore()
    listing, items, poison = MemoryQueue("listing"), MemoryQueue("items"), MemoryQueue("items-poison")
    info = schedule_window(NOW, watermarks=marks, listing_queue=listing, ledger=ledger)
    while listing.messages:
        task = ListingTask.model_validate(listing.messages.pop(0))
        list_slice_page(task, source=source, records=records, items_queue=items, listing_queue=listing,
                        ledger=ledger, page_size=page_size)
    imp = importer(boxes, source)
    while items.messages:
        process_item_message(json.dumps(items.messages.pop(0)), dequeue_count=1, records=records, importer=imp,
                             poison_queue=poison, ledger=ledger)
    wid = info.window_id
    return summarize(ledger.window(wid), ledger.pages(wid), ledger.outcomes(wid)), poison


def test_a_window_reconciles_with_every_record_accounted_for():
    t = int((NOW - timedelta(hours=3)).timestamp() * 1000)
    records = [
        record(f"m{i}", archivedTime=t + i, recipients=[BOB, CUSTOMER]) for i in range(5)
    ] + [
        record("nobody", archivedTime=t + 10, sender=CUSTOMER, owner={"phone": "+15550000"}, recipients=[CUSTOMER]),
        {"archivedTime": t + 11, "garbage": True},  # no messageId at all: still accounted for
    ]
    boxes = MemoryMailboxes()
    summary, poison = run_everything(MemorySource(records), boxes)
    assert summary.listed == 7 and summary.reconciled
    assert (summary.fanout, summary.imported, summary.skipped_duplicates) == (10, 10, 0)
    assert summary.poisoned == {"no_mapping": 1, "invalid_item": 1}
    assert len(poison.messages) == 2 and all(m["record_ref"] for m in poison.messages)


def test_items_enqueued_twice_are_imported_once():
    boxes, records, ledger = MemoryMailboxes(), MemoryRecordStore(), MemoryLedger()
    ref = records.put(record_key("m1"), raw(record("m1")))
    task = ItemTask(window_id=WINDOW_ID, record_key=record_key("m1"), record_ref=ref, message_id="m1")
    for _ in range(2):
        process_item_message(task.to_text(), dequeue_count=1, records=records, importer=importer(boxes),
                             poison_queue=MemoryQueue(), ledger=ledger)
    assert sum(len(v) for v in boxes.items.values()) == 1
    outcomes = [e.outcome for e in ledger.outcomes(WINDOW_ID)]
    assert outcomes == [RecordOutcome.IMPORTED, RecordOutcome.SKIPPED_DUPLICATE]


def test_a_queue_message_that_is_not_ours_is_poisoned_with_its_body_kept():
    poison = MemoryQueue()
    process_item_message("hello", dequeue_count=1, records=MemoryRecordStore(), importer=importer(),
                         poison_queue=poison, ledger=MemoryLedger())
    assert poison.messages[0]["original_message"] == "hello"
    assert poison.messages[0]["reason"] == "invalid_item"


def test_base64_inline_attachment_round_trip_reaches_the_mailbox():
    data = bytes(range(256)) * 10
    boxes = MemoryMailboxes()
    importer(boxes).import_raw(raw(record(messageType="DOCUMENT", attachments=[attachment("d", data)])))
    item = boxes.items["alice@contoso.example"]["msg-1"]
    assert item.attachments[0].content == data


def test_poison_message_for_a_huge_foreign_message_still_fits_on_a_queue():
    poison = MemoryQueue()
    process_item_message("x" * 200_000, dequeue_count=1, records=MemoryRecordStore(), importer=importer(),
                         poison_queue=poison, ledger=MemoryLedger())
    from shared.domain.tasks import PoisonMessage

    assert len(PoisonMessage.model_validate(poison.messages[0]).to_text().encode()) < 48 * 1024


def test_a_failed_hand_off_leaves_no_window_in_the_ledger():
    ledger = MemoryLedger()
    with pytest.raises(ConnectionError):
        schedule_window(NOW, watermarks=MemoryWatermarkStore(), listing_queue=MemoryQueue(fail_after=3), ledger=ledger)
    assert ledger.windows == {}


class ThrottledMailboxes(MemoryMailboxes):
    def __init__(self, retry_after: float | None) -> None:
        super().__init__()
        self.retry_after = retry_after

    def write(self, mailbox, item, *, check_existing=True):
        raise TransientError("429 from the mailbox", retry_after=self.retry_after)


def test_a_long_retry_after_hands_the_message_back_with_that_delay():
    records, retry = MemoryRecordStore(), MemoryQueue("items")
    ref = records.put(record_key("m1"), raw(record("m1")))
    task = ItemTask(window_id=WINDOW_ID, record_key=record_key("m1"), record_ref=ref, message_id="m1")
    ledger = MemoryLedger()
    result = process_item_message(task.to_text(), dequeue_count=1, records=records,
                                  importer=importer(ThrottledMailboxes(120.5)), poison_queue=MemoryQueue(),
                                  ledger=ledger, retry_queue=retry)
    assert result is None and ledger.outcomes(WINDOW_ID) == []
    assert retry.delays == [121] and retry.messages[0]["deferrals"] == 1


def test_transient_errors_without_retry_after_or_past_the_deferral_cap_go_to_the_host():
    from shared.service.processing import MAX_DEFERRALS

    records = MemoryRecordStore()
    ref = records.put(record_key("m1"), raw(record("m1")))
    for mailboxes, deferrals in ((ThrottledMailboxes(None), 0), (ThrottledMailboxes(60), MAX_DEFERRALS)):
        task = ItemTask(window_id=WINDOW_ID, record_key=record_key("m1"), record_ref=ref, deferrals=deferrals)
        with pytest.raises(TransientError):
            process_item_message(task.to_text(), dequeue_count=1, records=records, importer=importer(mailboxes),
                                 poison_queue=MemoryQueue(), ledger=MemoryLedger(), retry_queue=MemoryQueue())


def test_the_container_builds_each_adapter_once_under_concurrent_first_use(monkeypatch, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from shared.composition import get_container, reset_container

    directory = tmp_path / "users.txt"
    directory.write_text("alice@contoso.example\n")
    mapping = tmp_path / "map.csv"
    mapping.write_text(MAPPING_CSV)
    for key, value in {"DIRECTORY": "file", "DIRECTORY_FILE": str(directory), "MAILBOX_WRITER": "eml",
                       "EML_MAILBOX_DIR": str(tmp_path / "mail"), "MAPPING_FILE": str(mapping)}.items():
        monkeypatch.setenv(key, value)
    reset_container()
    try:
        with ThreadPoolExecutor(16) as pool:
            built = list(pool.map(lambda _: (get_container(), get_container().mapper), range(64)))
        assert len({id(c) for c, _ in built}) == 1 and len({id(m) for _, m in built}) == 1
    finally:
        reset_container()


def test_a_reply_quotes_the_text_of_the_record_it_answers_when_it_was_listed():
    records, boxes = MemoryRecordStore(), MemoryMailboxes()
    records.put(record_key("q-1"), raw(record("q-1", textContent="Can you confirm the trade?")))
    mapper = MailboxMapper(SetDirectory(*DIRECTORY), StaticMapping(MAPPING_CSV))
    imp = ItemImporter(mapper, boxes, None, max_item_bytes=10 * 1024 * 1024, records=records)
    imp.import_raw(raw(record("a-1", textContent="Confirmed.", replyToMessageId="q-1")))
    imp.import_raw(raw(record("a-2", textContent="And this?", replyToMessageId="never-listed")))
    answered = boxes.items["alice@contoso.example"]
    assert "In reply to: “Can you confirm the trade?”" in strip_isolates(answered["a-1"].text_body)
    assert "In reply to record: q-1" in answered["a-1"].text_body
    assert "In reply to:" not in answered["a-2"].text_body  # unknown parent: the id alone
    assert "In reply to record: never-listed" in answered["a-2"].text_body
