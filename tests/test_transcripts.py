"""Daily transcript mode over in-memory fakes: one item per chat, day and mailbox, every record in
exactly one transcript, re-runs and crashes never duplicating one, and every record accounted for."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from zoneinfo import ZoneInfo

import mailparser
import pytest

from shared.domain.bidi import isolate, strip_isolates
from shared.domain.errors import TransientError
from shared.domain.ledger import summarize
from shared.domain.records import ArchiveRecord
from shared.domain.tasks import ListingTask, TranscriptsDueTask, TranscriptTask
from shared.domain.transcript_rendering import TranscriptEntry, render_transcript
from shared.domain.transcripts import Bucket, StagedRecord, TranscriptPart, day_window, transcript_day
from shared.domain.window import Watermark
from shared.service.importing import ItemImporter
from shared.service.listing import list_slice_page
from shared.service.mapping import MailboxMapper
from shared.service.processing import process_item_message
from shared.service.scheduling import SchedulePolicy, schedule_window
from shared.service.transcripts import (
    DuePolicy,
    TranscriptComposer,
    TranscriptStager,
    dispatch_due_transcripts,
    process_transcript_message,
)
from tests.builders import ALICE, BOB, CUSTOMER, DIRECTORY, MAPPING_CSV, attachment, record
from tests.fakes import (
    MemoryLedger,
    MemoryMailboxes,
    MemoryQueue,
    MemoryRecordStore,
    MemorySource,
    MemoryTranscriptStore,
    MemoryWatermarkStore,
    SetDirectory,
    StaticMapping,
)

UTC_ZONE = ZoneInfo("UTC")
DAY = date(2026, 11, 21)
DAY_START = datetime(2026, 11, 21, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def chat_record(message_id: str, sent: datetime, *, group: str | None = "deal-team", **overrides):
    fields = {"messageTime": ms(sent), "archivedTime": ms(sent) + 2_000, "recipients": [BOB, CUSTOMER]}
    if group:
        fields.update(groupMessage=True, dialogGroupId=group, dialogGroupName="Deal team")
    fields.update(overrides)
    return record(message_id, **fields)


class Rig:
    """The whole connector over fakes, draining queues as the host would."""

    def __init__(self, *, max_bytes: int = 10 * 1024 * 1024, zone: ZoneInfo = UTC_ZONE, boxes=None, media=None):
        self.marks = MemoryWatermarkStore(Watermark(DAY_START - timedelta(days=1)))
        self.ledger, self.records = MemoryLedger(), MemoryRecordStore()
        self.store = MemoryTranscriptStore()
        self.listing, self.items = MemoryQueue("listing"), MemoryQueue("items")
        self.transcripts, self.poison = MemoryQueue("transcripts"), MemoryQueue("items-poison")
        self.boxes = boxes or MemoryMailboxes()
        self.zone, self.max_bytes = zone, max_bytes
        self.media = media or {}
        self.source_records: list = []
        mapper = MailboxMapper(SetDirectory(*DIRECTORY), StaticMapping(MAPPING_CSV))
        self.source = MemorySource(self.source_records, self.media)
        self.importer = ItemImporter(
            mapper, self.boxes, self.source, max_item_bytes=max_bytes,
            transcripts=TranscriptStager(self.store, zone=zone),
        )
        self.policy = DuePolicy(zone=zone, recheck=timedelta(minutes=5), max_wait=timedelta(hours=6))

    def composer(self, writer=None) -> TranscriptComposer:
        return TranscriptComposer(
            self.store, self.records, writer or self.boxes, self.source, self.ledger, self.poison,
            zone=self.zone, max_item_bytes=self.max_bytes,
        )

    def run_window(self, now: datetime, *, compose: bool = True):
        info = schedule_window(
            now, watermarks=self.marks, listing_queue=self.listing, ledger=self.ledger,
            policy=SchedulePolicy(slice_length=timedelta(hours=6), transcript_delay=timedelta(minutes=30)),
            transcripts_queue=self.transcripts,
        )
        while self.listing.messages:
            task = ListingTask.model_validate(self.listing.messages.pop(0))
            list_slice_page(task, source=self.source, records=self.records, items_queue=self.items,
                            listing_queue=self.listing, ledger=self.ledger, page_size=50)
        while self.items.messages:
            process_item_message(json.dumps(self.items.messages.pop(0)), dequeue_count=1, records=self.records,
                                 importer=self.importer, poison_queue=self.poison, ledger=self.ledger)
        if compose:
            self.drain_transcripts(now + timedelta(minutes=30))
        return info

    def drain_transcripts(self, now: datetime) -> None:
        while self.transcripts.messages:
            body = json.dumps(self.transcripts.messages.pop(0))
            process_transcript_message(
                body, dequeue_count=1, composer=self.composer, ledger=self.ledger, store=self.store,
                queue=self.transcripts, poison_queue=self.poison, policy=self.policy, clock=lambda: now,
            )

    def summary(self, info):
        wid = info.window_id
        return summarize(self.ledger.window(wid), self.ledger.pages(wid), self.ledger.outcomes(wid))

    def rewind(self, position: datetime) -> None:
        self.marks.advance(Watermark(position), self.marks.version)


def texts(boxes: MemoryMailboxes, mailbox: str) -> list[str]:
    return [item.text_body for item in boxes.items[mailbox].values()]


def test_each_chat_day_becomes_one_item_per_mailbox_with_its_records_in_order():
    rig = Rig()
    rig.source_records += [
        chat_record("g-2", DAY_START + timedelta(hours=9, minutes=5), textContent="second"),
        chat_record("g-1", DAY_START + timedelta(hours=9), textContent="first"),
        chat_record("g-3", DAY_START + timedelta(days=1, hours=8), textContent="next day"),
        chat_record("d-1", DAY_START + timedelta(hours=10), group=None, recipients=[CUSTOMER], textContent="1:1"),
    ]
    info = rig.run_window(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    summary = rig.summary(info)
    assert summary.reconciled and summary.listed == 4 and summary.awaiting_transcript == 0
    # Alice is in every chat; Bob only in the group: 3 chat-days for Alice, 2 for Bob.
    assert len(rig.boxes.items["alice@contoso.example"]) == 3
    assert len(rig.boxes.items["bob@contoso.example"]) == 2
    assert (summary.fanout, summary.imported) == (7, 7)
    first_day = next(
        item for item in rig.boxes.items["bob@contoso.example"].values() if "2026-11-21" in item.subject
    )
    assert strip_isolates(first_day.subject).startswith(
        "WhatsApp transcript 2026-11-21 (UTC), 2 records: Deal team (group)")
    body = first_day.text_body
    assert body.index("first") < body.index("second") and "next day" not in body
    assert first_day.sent_at == DAY_START + timedelta(hours=9)
    assert first_day.received_at == DAY_START + timedelta(hours=9, minutes=5)


def test_re_listing_the_day_does_not_duplicate_the_transcript():
    rig = Rig()
    rig.source_records += [chat_record(f"g-{i}", DAY_START + timedelta(hours=i)) for i in range(1, 5)]
    first = rig.run_window(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    writes = rig.boxes.writes
    rig.rewind(first.window.start)
    again = rig.run_window(datetime(2026, 11, 23, 3, 0, tzinfo=UTC))
    summary = rig.summary(again)
    assert summary.reconciled and summary.imported == 0 and summary.skipped_duplicates == summary.fanout == 8
    assert rig.boxes.writes == writes  # not even attempted: the records are known to be in a transcript
    assert all(len(items) == 1 for items in rig.boxes.items.values())


def test_a_day_not_yet_over_waits_and_its_window_reconciles_once_the_day_is_composed():
    rig = Rig()
    rig.source_records.append(chat_record("late-evening", DAY_START + timedelta(hours=23, minutes=50)))
    # The window ends at 23:55 (settle 0 in this rig): the day is not over yet.
    first = rig.run_window(DAY_START + timedelta(hours=23, minutes=55))
    pending = rig.summary(first)
    assert pending.awaiting_transcript == 1 and not pending.reconciled
    assert not rig.boxes.items
    rig.run_window(DAY_START + timedelta(days=1, hours=2))
    done = rig.summary(first)
    assert done.reconciled and done.imported == 2 and done.awaiting_transcript == 0


def test_a_record_captured_after_its_day_was_composed_goes_into_part_two():
    rig = Rig()
    rig.source_records.append(chat_record("on-time", DAY_START + timedelta(hours=9)))
    rig.run_window(datetime(2026, 11, 22, 2, 0, tzinfo=UTC))
    # Sent on the 21st, but the phone was offline: captured a day later.
    rig.source_records.append(chat_record(
        "captured-late", DAY_START + timedelta(hours=11), archivedTime=ms(datetime(2026, 11, 22, 20, 0, tzinfo=UTC)),
    ))
    second = rig.run_window(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    assert rig.summary(second).reconciled
    subjects = [item.subject for item in rig.boxes.items["bob@contoso.example"].values()]
    assert subjects == [
        f"WhatsApp transcript 2026-11-21 (UTC), 1 record: {isolate('Deal team')} (group)",
        f"WhatsApp transcript 2026-11-21 (UTC), 1 record, part 2: {isolate('Deal team')} (group)",
    ]
    parts = rig.store.parts(Bucket(DAY, next(iter(rig.store.part_manifests))[0].chat_id))
    assert [len(p.records) for p in parts] == [1, 1] and all(p.completed for p in parts)


class CrashAfterFirstWrite:
    """Writes into the mailbox, then dies before the composer learns it (a killed worker)."""

    def __init__(self, boxes: MemoryMailboxes) -> None:
        self.boxes, self.crashed = boxes, False

    def write(self, mailbox, item, *, check_existing=True):
        outcome = self.boxes.write(mailbox, item, check_existing=check_existing)
        if not self.crashed:
            self.crashed = True
            raise TransientError("worker killed after the write")
        return outcome


def test_a_crash_mid_part_resumes_the_same_part_and_no_mailbox_gets_two_copies():
    rig = Rig()
    rig.source_records += [chat_record(f"g-{i}", DAY_START + timedelta(hours=i)) for i in range(1, 4)]
    info = rig.run_window(datetime(2026, 11, 23, 2, 0, tzinfo=UTC), compose=False)
    now = datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
    dispatch_due_transcripts(
        TranscriptsDueTask.model_validate(rig.transcripts.messages.pop(0)), ledger=rig.ledger, store=rig.store,
        queue=rig.transcripts, policy=rig.policy, now=now,
    )
    bucket = Bucket.parse(TranscriptTask.model_validate(rig.transcripts.messages.pop(0)).bucket)
    # A record re-listed meanwhile must not sneak into a second part either.
    with pytest.raises(TransientError):
        rig.composer(CrashAfterFirstWrite(rig.boxes)).compose(bucket)
    assert not rig.summary(info).reconciled
    report = rig.composer().compose(bucket, attempt=2)
    assert report.parts_written == 1 and report.records_transcribed == 3
    assert {m: len(items) for m, items in rig.boxes.items.items()} == {
        "alice@contoso.example": 1, "bob@contoso.example": 1,
    }
    summary = rig.summary(info)
    assert summary.reconciled and summary.fanout == 6
    assert [p.number for p in rig.store.parts(bucket)] == [1]


def test_a_day_too_big_for_one_item_is_split_into_parts_each_within_the_limit():
    photo = bytes(range(256)) * 400  # 100 KiB
    rig = Rig(max_bytes=400 * 1024)
    rig.source_records += [
        chat_record(f"p-{i}", DAY_START + timedelta(hours=1, minutes=i), messageType="IMAGE",
                    attachments=[attachment(f"a{i}", photo)])
        for i in range(8)
    ]
    info = rig.run_window(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    summary = rig.summary(info)
    assert summary.reconciled and summary.imported == 16
    items = list(rig.boxes.items["bob@contoso.example"].values())
    assert len(items) >= 3
    assert all(item.mime_size() <= 400 * 1024 for item in items)
    files = sorted(a.content for item in items for a in item.attachments)
    assert files == [photo] * 8  # each photo in exactly one part, byte-exact


def test_a_record_whose_media_is_corrupt_is_poisoned_and_the_rest_of_the_day_is_transcribed():
    good, bad = b"good bytes", b"bad bytes"
    rig = Rig(media={"bad": b"tampered"})
    rig.source_records += [
        chat_record("ok", DAY_START + timedelta(hours=1), messageType="IMAGE",
                    attachments=[attachment("good", good)]),
        chat_record("corrupt", DAY_START + timedelta(hours=2), messageType="IMAGE",
                    attachments=[attachment("bad", bad, inline=False)]),
    ]
    now = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    info = rig.run_window(now, compose=False)
    # Attempt 1 sees a mismatch as a transfer error: nothing written yet, the task is retried.
    with pytest.raises(TransientError):
        rig.drain_transcripts(now + timedelta(minutes=30))
    assert not rig.boxes.items
    bucket = rig.store.staged_buckets()[0]
    rig.composer().compose(bucket, attempt=3)
    summary = rig.summary(info)
    assert summary.reconciled and summary.poisoned == {"attachment_corrupt": 1} and summary.imported == 2
    (item,) = rig.boxes.items["bob@contoso.example"].values()
    assert "1 record" in item.subject and [a.content for a in item.attachments] == [good]
    assert rig.poison.messages[-1]["record_ref"] and rig.poison.messages[-1]["reason"] == "attachment_corrupt"


def test_dispatch_waits_for_unstaged_records_but_not_forever():
    rig = Rig()
    rig.source_records.append(chat_record("g-1", DAY_START + timedelta(hours=1)))
    now = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    schedule_window(
        now, watermarks=rig.marks, listing_queue=rig.listing, ledger=rig.ledger,
        policy=SchedulePolicy(slice_length=timedelta(hours=6), transcript_delay=timedelta(minutes=30)),
        transcripts_queue=rig.transcripts,
    )
    assert rig.transcripts.delays == [1800]
    due = TranscriptsDueTask.model_validate(rig.transcripts.messages.pop(0))
    # Nothing listed yet: the window is not settled, so the task comes back in five minutes.
    assert dispatch_due_transcripts(due, ledger=rig.ledger, store=rig.store, queue=rig.transcripts,
                                    policy=rig.policy, now=now + timedelta(minutes=30)) is None
    assert rig.transcripts.delays[-1] == 300 and rig.transcripts.messages[-1]["deferrals"] == 1
    # Six hours on, it dispatches whatever is staged rather than hold the day back.
    assert dispatch_due_transcripts(due, ledger=rig.ledger, store=rig.store, queue=rig.transcripts,
                                    policy=rig.policy, now=now + timedelta(hours=7)) == []


def test_a_foreign_message_on_the_transcripts_queue_is_poisoned_with_its_body():
    rig = Rig()
    process_transcript_message(
        '{"kind": "something else"}', dequeue_count=1, composer=rig.composer, ledger=rig.ledger,
        store=rig.store, queue=rig.transcripts, poison_queue=rig.poison, policy=rig.policy,
    )
    assert rig.poison.messages[0]["original_message"] == '{"kind": "something else"}'


def test_transcript_days_follow_the_configured_time_zone_including_daylight_saving():
    new_york = ZoneInfo("America/New_York")
    evening = ArchiveRecord.model_validate(chat_record("x", datetime(2026, 11, 22, 3, 30, tzinfo=UTC)))
    assert transcript_day(evening, new_york) == date(2026, 11, 21)
    assert transcript_day(evening, UTC_ZONE) == date(2026, 11, 22)
    assert day_window(date(2026, 11, 1), new_york).duration == timedelta(hours=25)  # clocks go back
    assert day_window(date(2026, 3, 8), new_york).duration == timedelta(hours=23)


def _part(records: list[dict]) -> tuple[TranscriptPart, list[TranscriptEntry]]:
    parsed = [ArchiveRecord.model_validate(r) for r in records]
    staged = tuple(
        StagedRecord(f"k{i}", f"k{i}.json", "w", r.message_id, r.message_time, (), 0) for i, r in enumerate(parsed)
    )
    part = TranscriptPart(Bucket(DAY, "0" * 32), 1, staged)
    media = {}
    for r in parsed:
        for a in r.attachments:
            media[a.attachment_id] = None if a.attachment_id == "lost" else (b"%s bytes" % a.attachment_id.encode())
    return part, [TranscriptEntry(r, media) for r in parsed]


def test_a_one_to_one_transcripts_thread_topic_names_the_chat_without_isolates():
    part, entries = _part([chat_record("d-1", DAY_START + timedelta(hours=10), group=None, recipients=[CUSTOMER])])
    item = render_transcript(part, entries, zone=UTC_ZONE)
    assert item.conversation_topic == "WhatsApp: Carla Customer (+12025550143)"


def test_a_transcript_reads_back_with_both_mail_parsers():
    part, entries = _part([
        chat_record("m-1", DAY_START + timedelta(hours=8), textContent="שלום <b>bold</b> 👋"),
        chat_record("m-2", DAY_START + timedelta(hours=8, minutes=1), event="EDITED", relatedMessageId="m-1",
                    textContent="edited text", sender=BOB, owner=BOB, recipients=[ALICE, CUSTOMER]),
        chat_record("m-3", DAY_START + timedelta(hours=8, minutes=2), messageType="IMAGE", textContent=None,
                    attachments=[attachment("pic", b"pic bytes", inline=False, fileName="photo.jpg"),
                                 attachment("lost", b"never", inline=False, fileName="lost.jpg")]),
        chat_record("m-4", DAY_START + timedelta(hours=9), event="DELETED", relatedMessageId="m-1",
                    deletion={"scope": "FOR_EVERYONE", "deletedTime": ms(DAY_START + timedelta(hours=9))},
                    textContent=None),
    ])
    item = render_transcript(part, entries, zone=UTC_ZONE)
    raw = item.to_mime_bytes()
    message = message_from_bytes(raw, policy=default)
    assert message["Subject"] == (
        "WhatsApp transcript 2026-11-21 (UTC), 4 records, includes DELETED and EDITED: "
        f"{isolate('Deal team')} (group)"
    )
    assert message["From"].addresses[0].username.startswith("chat-")
    to = {a.username + "@" + a.domain for a in message["To"].addresses}
    assert to == {"alice@contoso.example", "+447700900002@whatsapp.invalid", "+12025550143@whatsapp.invalid"}
    assert message["X-Archive-Item-Id"] == part.item_id and message["X-Archive-Record-Count"] == "4"
    text = message.get_body(("plain",)).get_content()
    order = [text.index(f"Record id: m-{i}") for i in range(1, 5)]
    assert order == sorted(order)
    assert "EDITED message from Bob Jones" in strip_isolates(text) and "The message m-1 was edited. New text:" in text
    assert "DELETED message from" in text and "deleted for everyone at 2026-11-21T09:00:00.000Z" in text
    assert "MEDIA NOT CAPTURED" in text and "003-photo.jpg" in text
    html = message.get_body(("html",)).get_content()
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold" not in html
    files = {p.get_filename(): p.get_content() for p in message.iter_attachments()}
    assert files == {"003-photo.jpg": b"pic bytes"}

    parsed = mailparser.parse_from_bytes(raw)
    assert parsed.subject.replace(" ", "") == message["Subject"].replace(" ", "")
    assert "שלום" in parsed.text_plain[0] and "👋" in parsed.text_plain[0]
    assert [a["filename"] for a in parsed.attachments] == ["003-photo.jpg"]


def test_a_transcript_day_verifies_item_by_item_and_a_transcript_edited_later_is_named(tmp_path):
    from shared.adapters.local_files import EmlItemReader, EmlMailbox
    from shared.service.evidence_chain import seal_reconciled
    from shared.service.status import recent_summaries
    from shared.service.verify import FindingKind, verify
    from tests.fakes import MemoryEvidenceChain, MemoryEvidenceStore

    boxes = EmlMailbox(tmp_path / "mail")
    rig = Rig(boxes=boxes)
    rig.source_records += [
        chat_record("g-1", DAY_START + timedelta(hours=9), textContent="first"),
        chat_record("g-2", DAY_START + timedelta(hours=9, minutes=5), textContent="second"),
    ]
    now = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    info = rig.run_window(now)
    evidence, chain = MemoryEvidenceStore(), MemoryEvidenceChain()
    [sealed] = seal_reconciled(rig.ledger, evidence, chain, recent_summaries(rig.ledger, 5), now)
    assert sealed.window_id == info.window_id
    reader = EmlItemReader(boxes)
    result = verify(evidence, chain, rig.records, reader=reader)
    assert result.ok and result.claim_checks == 2
    assert result.items_checked == 2  # one transcript each for Alice and Bob, read once for its two records
    [bob] = list((tmp_path / "mail" / "bob@contoso.example").rglob("*.eml"))
    bob.write_bytes(bob.read_bytes().replace(b"second", b"secont"))
    findings = verify(evidence, chain, rig.records, reader=reader).findings
    assert [(f.kind, f.mailbox) for f in findings] == [(FindingKind.ITEM_ALTERED, "bob@contoso.example")]
