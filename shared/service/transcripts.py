"""Daily transcript mode: stage each record, then compose one item per chat, day and mailbox.

Flow. The items function validates, maps and size-checks a record as always, then *stages* it
(``TranscriptStager``) instead of writing it; the window's ledger notes it as awaiting its
transcript. After a window's hand-off the timer queues a ``TranscriptsDueTask``; once the window's
records are all staged (or after a bounded wait) it queues one ``TranscriptTask`` per chat-day
that is over. ``TranscriptComposer`` turns a chat-day's staged records into parts and each part
into one item per mailbox, then accounts every record in each window that listed it: the first
(in hand-off order) with the transcript's outcome, any later one that listed it before the day was
composed as a skipped duplicate, as it would find the item on the non-transcript path.

Exactly once. A part's manifest is stored before anything is written and fixes its records; the
item id is the part's, so a retry or a second worker re-renders the same item and the mailbox
writer skips it. A record that is already in a part (a re-listed day) is a skipped duplicate; one
dropped from its part (poisoned) and replayed goes into the day's next part.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from shared import telemetry
from shared.domain.errors import MailboxUnavailable, PermanentError, PoisonReason, TransientError
from shared.domain.item_digest import item_digest
from shared.domain.json_values import is_json_object
from shared.domain.ledger import MailboxResult, OutcomeEntry, RecordOutcome
from shared.domain.records import ArchiveRecord, parse_record, record_key
from shared.domain.rendered import base64_mime_size
from shared.domain.rendering import chat_key
from shared.domain.tasks import PoisonMessage, TaskFormatError, TranscriptsDueTask, TranscriptTask
from shared.domain.transcript_rendering import TranscriptEntry, render_transcript
from shared.domain.transcripts import (
    RECORD_OVERHEAD_BYTES,
    Bucket,
    Dropped,
    StagedMailbox,
    StagedRecord,
    TranscriptPart,
    chat_id,
    is_day_over,
    plan_parts,
    transcript_day,
)
from shared.ports import (
    CLAIM_CHECK_UNREADABLE,
    ArchiveSource,
    AttachmentSource,
    MailboxWriter,
    RecordMissing,
    RecordStore,
    TranscriptStore,
    WindowLedger,
    WorkQueue,
    WriteOutcome,
)
from shared.service.import_results import ImportResult, RecordOrigin
from shared.service.mapping import MappedMailbox
from shared.service.media import MediaSpool
from shared.service.replies import replied_text

log = logging.getLogger(__name__)

# Rendered transcripts are kept this far below the item limit; the estimate is conservative but
# the facts block grows with participants.
PART_FILL = 0.85


class TranscriptStager:
    def __init__(self, store: TranscriptStore, *, zone: ZoneInfo, default_region: str | None = None) -> None:
        self._store = store
        self._zone = zone
        self._region = default_region

    def stage(self, record: ArchiveRecord, mapped: Sequence[MappedMailbox], origin: RecordOrigin) -> ImportResult:

        key = record_key(record.message_id)
        if self._store.transcribed_in(key) is not None:
            # Already in a written transcript part: a re-listed day. Never transcribed twice.
            return ImportResult(
                RecordOutcome.SKIPPED_DUPLICATE, record.message_id,
                tuple(MailboxResult(m.address, RecordOutcome.SKIPPED_DUPLICATE, m.rule) for m in mapped),
            )
        bucket = Bucket(transcript_day(record, self._zone), chat_id(chat_key(record, self._region)))
        self._store.stage(bucket, StagedRecord(
            record_key=key,
            record_ref=origin.record_ref,
            window_id=origin.window_id,
            message_id=record.message_id,
            message_time=record.message_time,
            mailboxes=tuple(StagedMailbox(m.address, m.rule) for m in mapped),
            estimated_bytes=estimate_bytes(record),
        ))
        return ImportResult(RecordOutcome.AWAITING_TRANSCRIPT, record.message_id)


def estimate_bytes(record: ArchiveRecord) -> int:
    """A record's share of a rendered transcript: its media base64-encoded, its text in two bodies
    (HTML escaping and quoted-printable can triple it), and the facts around it."""
    media = sum(base64_mime_size(a.size) + 600 for a in record.attachments)
    text = len((record.text_content or "").encode("utf-8")) * 6
    return media + text + RECORD_OVERHEAD_BYTES + 1024 * len(record.contacts)


@dataclass(frozen=True)
class ComposeReport:
    parts_written: int = 0
    records_transcribed: int = 0
    records_skipped: int = 0
    records_poisoned: int = 0


class TranscriptComposer:
    def __init__(
        self,
        store: TranscriptStore,
        records: RecordStore,
        writer: MailboxWriter,
        source: ArchiveSource | None,
        ledger: WindowLedger,
        poison_queue: WorkQueue,
        *,
        zone: ZoneInfo,
        max_item_bytes: int,
        default_region: str | None = None,
        spool_dir: str | None = None,
        corrupt_after_attempts: int = 3,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        media_sources: Mapping[str, AttachmentSource] | None = None,
    ) -> None:
        self._store = store
        self._records = records
        self._writer = writer
        self._source = source
        # A chat-day can hold records of several sources: each one's media from its own place.
        self._media_sources: dict[str, AttachmentSource | None] = {"telemessage": source, **(media_sources or {})}
        self._ledger = ledger
        self._poison = poison_queue
        self._zone = zone
        self._max_item_bytes = max_item_bytes
        self._region = default_region
        self._spool_dir = spool_dir
        self._corrupt_after_attempts = corrupt_after_attempts
        self._clock = clock

    def compose(self, bucket: Bucket, *, attempt: int = 1) -> ComposeReport:
        """Write every staged record of ``bucket`` into a transcript part, finishing any part an
        earlier attempt left half done first. Raises TransientError to be retried."""
        with telemetry.span(telemetry.SPAN_COMPOSE_TRANSCRIPT, transcript=bucket.name, attempt=attempt) as span:
            try:
                totals = self._compose(bucket, attempt)
            except Exception:
                span.set(outcome="retry")
                raise
            span.set(
                outcome="composed", parts_written=totals.parts_written, records_transcribed=totals.records_transcribed,
                records_skipped=totals.records_skipped, records_poisoned=totals.records_poisoned,
            )
            return totals

    def _compose(self, bucket: Bucket, attempt: int) -> ComposeReport:
        totals = ComposeReport()
        while True:
            parts = self._store.parts(bucket)
            unfinished = [part for part in parts if not part.completed]
            for part in unfinished:
                totals = _add(totals, self._finish(part, attempt))
            if unfinished:  # finishing may have dropped records: plan against what the parts hold now
                parts = self._store.parts(bucket)
            staged = self._store.staged(bucket)
            budget = int(self._max_item_bytes * PART_FILL)
            new_parts, repeats = plan_parts(bucket, staged, parts, max_bytes=budget)
            if repeats:
                self._account_repeats(bucket, repeats)
                totals = _add(totals, ComposeReport(records_skipped=len(repeats)))
            if not new_parts:
                return totals
            # One part at a time: the loop above finishes it, and a part that had to shrink leaves
            # its other records staged for the next one.
            if not self._store.create_part(new_parts[0]):
                raise TransientError(f"transcript {new_parts[0].item_id} is being composed by another worker")

    def _finish(self, part: TranscriptPart, attempt: int) -> ComposeReport:
        with MediaSpool(
            self._source, max_bytes=self._max_item_bytes, attempt=attempt,
            corrupt_after_attempts=self._corrupt_after_attempts, spool_dir=self._spool_dir,
        ) as spool:
            entries, part = self._prepare(part, spool)
            if not part.sealed:
                part = self._fit(part, entries)
                part = replace(part, sealed=True)
                self._store.update_part(part)
            self._poison_dropped(part)
            results: dict[str, list[MailboxResult]] = {r.record_key: [] for r in part.kept}
            unavailable: dict[str, list[str]] = {r.record_key: [] for r in part.kept}
            written = 0
            for mailbox in part.mailboxes():
                mine = part.records_for(mailbox)
                item = self._render(part, mine, entries)
                try:
                    outcome = self._writer.write(mailbox, item)
                except MailboxUnavailable as error:
                    log.warning(
                        "transcript %s: a mapped mailbox is unavailable (%s)", part.item_id, error.code,
                        extra=telemetry.dimensions(mailboxes=[mailbox]),
                    )
                    for record in mine:
                        unavailable[record.record_key].append(mailbox)
                    continue
                written += outcome is WriteOutcome.IMPORTED
                digest = item_digest(item)  # each mailbox's transcript holds only its own records
                if outcome is WriteOutcome.IMPORTED:
                    telemetry.count_bytes(item.mime_size())
                state = RecordOutcome.IMPORTED if outcome is WriteOutcome.IMPORTED else RecordOutcome.SKIPPED_DUPLICATE
                for record in mine:
                    rule = next(m.rule for m in record.mailboxes if m.address == mailbox)
                    results[record.record_key].append(MailboxResult(mailbox, state, rule, item.record_id, digest))
        self._store.mark_transcribed([r.record_key for r in part.kept], part.item_id)
        now = self._clock()
        poisoned = 0
        for record in part.kept:
            if not results[record.record_key]:
                poisoned += 1
                self._poison_record(record, PoisonReason.NO_MAPPING, "every mapped mailbox is unavailable")
                continue
            entry = entries[record.record_key]
            partial = any(
                entry.media.get(a.attachment_id) is None for a in entry.record.attachments
            )
            any_imported = any(r.outcome is RecordOutcome.IMPORTED for r in results[record.record_key])
            outcome = RecordOutcome.IMPORTED if any_imported else RecordOutcome.SKIPPED_DUPLICATE
            self._ledger.record_outcome(record.window_id, OutcomeEntry(
                record_key=record.record_key, message_id=record.message_id,
                outcome=outcome,
                at=now, mailboxes=tuple(results[record.record_key]), partial=partial,
                unavailable=tuple(unavailable[record.record_key]), raw_sha256=entry.raw_sha256,
            ))
            telemetry.account_record(
                outcome, partial=partial,
                written_rules=[r.rule for r in results[record.record_key] if r.outcome is RecordOutcome.IMPORTED],
                captured_at=entry.record.captured_at, archived_at=now,
            )
            # Later windows that listed it too find it in the transcript: a skipped duplicate each.
            skipped = tuple(
                replace(r, outcome=RecordOutcome.SKIPPED_DUPLICATE) for r in results[record.record_key]
            )
            for window in record.relisted_by:
                self._ledger.record_outcome(window, OutcomeEntry(
                    record_key=record.record_key, message_id=record.message_id,
                    outcome=RecordOutcome.SKIPPED_DUPLICATE, at=now, mailboxes=skipped, partial=partial,
                    unavailable=tuple(unavailable[record.record_key]), raw_sha256=entry.raw_sha256,
                ))
                telemetry.account_record(RecordOutcome.SKIPPED_DUPLICATE)
        self._store.unstage(part.bucket, part.records)
        self._store.update_part(replace(part, completed=True))
        log.info(
            "transcript %s: %d record(s), written to %d mailbox(es)", part.item_id, len(part.kept), written,
            extra=telemetry.dimensions(
                outcome="composed", mailboxes=part.mailboxes(), transcript=part.item_id, records=len(part.kept),
            ),
        )
        return ComposeReport(
            parts_written=1, records_transcribed=len(part.kept) - poisoned,
            records_poisoned=poisoned + len(part.dropped),
        )

    def _prepare(self, part: TranscriptPart, spool: MediaSpool) -> tuple[dict[str, TranscriptEntry], TranscriptPart]:
        """Load every kept record and its media. A record that cannot be rendered is dropped with
        its reason while the part is unsealed; once sealed, the part can no longer change."""
        entries: dict[str, TranscriptEntry] = {}
        dropped: dict[str, Dropped] = {}
        for staged in part.kept:
            try:
                entries[staged.record_key] = self._entry(staged, spool)
            except PermanentError as error:
                dropped[staged.record_key] = Dropped(error.reason.value, error.detail)
        if dropped:
            if part.sealed:
                raise TransientError(
                    f"transcript {part.item_id}: {len(dropped)} record(s) of a sealed part cannot be rendered now"
                )
            part = part.with_dropped(dropped)
        return entries, part

    def _entry(self, staged: StagedRecord, spool: MediaSpool) -> TranscriptEntry:

        try:
            raw = self._records.get(staged.record_ref)
        except RecordMissing:
            raise PermanentError(PoisonReason.INVALID_ITEM, CLAIM_CHECK_UNREADABLE) from None
        record = parse_record(raw)
        origin = self._media_sources.get(record.source)
        media = {a.attachment_id: spool.payload(a, source=origin) for a in record.attachments}
        return TranscriptEntry(record, media, replied_text(self._records, record), hashlib.sha256(raw).hexdigest())

    def _fit(self, part: TranscriptPart, entries: dict[str, TranscriptEntry]) -> TranscriptPart:
        """Shrink an unsealed part until every mailbox's item is within the limit. Records taken
        out stay staged and go into the next part; a single record over the limit is dropped."""
        while part.kept:
            sizes = [self._render(part, part.records_for(m), entries).mime_size() for m in part.mailboxes()]
            if max(sizes, default=0) <= self._max_item_bytes:
                return part
            kept = part.kept
            if len(kept) == 1:
                part = part.with_dropped({kept[0].record_key: Dropped(
                    PoisonReason.TOO_BIG.value,
                    f"rendered in a transcript it is {max(sizes)} bytes, over the limit of {self._max_item_bytes}",
                )})
                continue
            keep = {r.record_key for r in kept[: len(kept) // 2]}
            part = replace(part, records=tuple(
                r for r in part.records if r.record_key in keep or r.record_key in part.dropped
            ))
            self._store.update_part(part)
        return part

    def _render(self, part: TranscriptPart, records: Sequence[StagedRecord], entries: dict[str, TranscriptEntry]):
        return render_transcript(
            part, [entries[r.record_key] for r in records], zone=self._zone, default_region=self._region,
        )

    def _poison_dropped(self, part: TranscriptPart) -> None:
        for record in part.records:
            dropped = part.dropped.get(record.record_key)
            if dropped is not None:
                self._poison_record(record, PoisonReason(dropped.reason), dropped.detail)

    def _poison_record(self, record: StagedRecord, reason: PoisonReason, detail: str) -> None:
        """Poisoned in every window that listed it, each with its own poison message to replay (a
        record listed twice and poisoned on the non-transcript path is poisoned in both windows)."""
        now = self._clock()
        for window in record.window_ids:
            self._poison.send(PoisonMessage(
                reason=reason, detail=detail, window_id=window, record_key=record.record_key,
                record_ref=record.record_ref, message_id=record.message_id, failed_at=now,
            ).model_dump(mode="json"))
            self._ledger.record_outcome(window, OutcomeEntry(
                record_key=record.record_key, message_id=record.message_id, outcome=RecordOutcome.POISONED,
                at=now, reason=reason.value, detail=detail,
            ))
            log.warning(
                "record %s poisoned while composing its transcript: %s", record.record_key[:16], reason,
                extra=telemetry.dimensions(
                    window_id=window, record_id=record.message_id, record_key=record.record_key,
                    outcome=RecordOutcome.POISONED, reason=reason,
                ),
            )
            telemetry.account_record(RecordOutcome.POISONED, reason=reason)

    def _account_repeats(self, bucket: Bucket, repeats: list[StagedRecord]) -> None:
        now = self._clock()
        for record in repeats:
            for window in record.window_ids:
                telemetry.account_record(RecordOutcome.SKIPPED_DUPLICATE)
                self._ledger.record_outcome(window, OutcomeEntry(
                    record_key=record.record_key, message_id=record.message_id,
                    outcome=RecordOutcome.SKIPPED_DUPLICATE, at=now,
                    mailboxes=tuple(
                        MailboxResult(m.address, RecordOutcome.SKIPPED_DUPLICATE, m.rule) for m in record.mailboxes
                    ),
                ))
        self._store.unstage(bucket, repeats)


@dataclass(frozen=True)
class DuePolicy:
    zone: ZoneInfo
    recheck: timedelta = timedelta(minutes=5)
    max_wait: timedelta = timedelta(hours=6)


def dispatch_due_transcripts(
    task: TranscriptsDueTask,
    *,
    ledger: WindowLedger,
    store: TranscriptStore,
    queue: WorkQueue,
    policy: DuePolicy,
    now: datetime,
) -> list[Bucket] | None:
    """Queue one TranscriptTask per chat-day that is over, once the window's records are all
    staged. Returns the buckets queued, or None when the task was deferred to check again later.

    Waiting is bounded: records stuck elsewhere (retried, poisoned by the host) must not hold a
    whole day back; whatever is staged after this compose goes into a later part of its day."""
    summary = ledger.summary(task.window_id)
    ready = summary is not None and summary.listing_complete and summary.pending == 0
    if not ready and now - task.handed_off_at < policy.max_wait:
        queue.send(task.deferred().model_dump(mode="json"), delay_seconds=int(policy.recheck.total_seconds()))
        return None
    due = [b for b in store.staged_buckets() if is_day_over(b.day, policy.zone, task.window_end)]
    for bucket in due:
        queue.send(TranscriptTask(bucket=bucket.name).model_dump(mode="json"))
    log.info(
        "window %s: %d chat-day transcript(s) queued", task.window_id, len(due),
        extra=telemetry.dimensions(window_id=task.window_id, transcripts=len(due)),
    )
    return due


def process_transcript_message(
    body: str,
    *,
    dequeue_count: int,
    composer: Callable[[], TranscriptComposer],
    ledger: WindowLedger,
    store: TranscriptStore,
    queue: WorkQueue,
    poison_queue: WorkQueue,
    policy: DuePolicy,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    kind = _kind(body)
    try:
        if kind == "transcripts_due":
            dispatch_due_transcripts(
                TranscriptsDueTask.from_text(body), ledger=ledger, store=store, queue=queue, policy=policy,
                now=clock(),
            )
            return
        if kind == "transcript":
            task = TranscriptTask.from_text(body)
            composer().compose(Bucket.parse(task.bucket), attempt=dequeue_count)
            return
        raise TaskFormatError("not a transcript task")
    except TaskFormatError as error:
        poison_queue.send(PoisonMessage(
            reason=PoisonReason.INVALID_ITEM, detail=str(error), failed_at=clock(),
            attempts=dequeue_count, original_message=body,
        ).model_dump(mode="json"))
        log.warning(
            "transcripts queue: a message that is not a transcript task was poisoned",
            extra=telemetry.dimensions(outcome=RecordOutcome.POISONED, reason=PoisonReason.INVALID_ITEM),
        )


def _kind(body: str) -> str | None:
    try:
        value: object = json.loads(body)
    except ValueError:
        return None
    kind = value.get("kind") if is_json_object(value) else None
    return kind if isinstance(kind, str) else None  # only ever compared with the task kinds


def _add(a: ComposeReport, b: ComposeReport) -> ComposeReport:
    return ComposeReport(
        a.parts_written + b.parts_written, a.records_transcribed + b.records_transcribed,
        a.records_skipped + b.records_skipped, a.records_poisoned + b.records_poisoned,
    )
