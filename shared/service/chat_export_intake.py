"""An export uploaded to the ``chat-exports`` container becomes records on the items queue.

Why it is built this way:
- **Two halves, either order.** A custodian uploads ``FILE`` (.zip or .txt) and a sidecar
  ``FILE.json`` (custodian, timeZone, optional dateOrder, participants). Event Grid announces each
  blob; whichever arrives second finds the other and starts the import. A half alone waits (the
  report says so); the connector never guesses a custodian or a zone.
- **Accounted like every source.** Each import is a window of its own over the UTC day it was
  taken in (handed off at that moment, so two imports are two windows and the second shows what the
  first archived as skipped duplicates), the export being its one slice, written in pages of
  ``PAGE_SIZE`` record keys after their item tasks are queued (so a page never promises work that
  was not handed off). From there, import, mapping, rendering, poison and replay are the
  TeleMessage path's own, and daily transcript mode applies as to every record of the items queue.
- **A report beside the export.** ``FILE.report.json`` is written at once (what was read, what was
  handed off, or why nothing was), then again by a report task on the listing queue once every
  record has its outcome (first checked ``CHAT_EXPORT_REPORT_DELAY_SECONDS`` after the hand-off, then
  every five times as long, for at most ``REPORT_CHECKS`` checks, after which it says which records
  are still pending).
- **Refused, never lost.** A sidecar that is not valid, a text that is no export, a zip that breaks
  its bounds: nothing is imported, the upload stays where it is (it is the evidence), and the report
  names the field or the reason. Uploading a corrected sidecar starts the import again. Importing
  the same export twice archives nothing twice (the records' ids are deterministic).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared import telemetry
from shared.domain.chat_export import DATE_ORDERS, ChatExportError
from shared.domain.identifiers import UnsafeBlobName, check_blob_name, is_mailbox_address
from shared.domain.json_values import is_json_array, is_json_object
from shared.domain.ledger import PageEntry, RecordOutcome, WindowInfo
from shared.domain.participants_table import check_participants
from shared.domain.records import record_key
from shared.domain.tasks import ChatExportReportTask, ItemTask, TranscriptsDueTask
from shared.ports import (
    CapturedMediaStore,
    ChatExportUploads,
    EvidenceStore,
    RecordMissing,
    RecordStore,
    WindowLedger,
    WorkQueue,
)
from shared.service.chat_export_files import ExportFile, ExportFileError, open_export
from shared.service.chat_export_import import (
    ChatExportOptions,
    ExportRecord,
    PreparedExport,
    export_report,
    item_facts,
    prepare_export,
    record_bytes,
)
from shared.service.webhook_records import webhook_day

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"
REPORT_SUFFIX = ".report.json"
MAX_REPORT_BYTES = 512 * 1024**2
HANDED_OFF = ("handed_off", "importing", "awaiting_transcript", "done", "pending_records")
MAX_SIDECAR_BYTES = 256 * 1024
# The upload is spooled to the instance's local disk and read from there: a bound far above what a
# phone exports (WhatsApp caps an export with media by message count and e-mail sizes) and within
# what a Flex Consumption instance can hold.
MAX_EXPORT_BYTES = 2 * 1024**3
PAGE_SIZE = 100
FIRST_REPORT_DELAY = 60  # seconds from the hand-off to the first check (CHAT_EXPORT_REPORT_DELAY_SECONDS)
LATER_CHECKS = 5  # later checks wait this many times as long
REPORT_CHECKS = 288  # a day of checks: an export's records are imported in minutes, or something is wrong


class ChatExportSidecar(BaseModel):
    """``FILE.json``: what only the people collecting the export know."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    custodian: str
    timeZone: str
    dateOrder: str | None = None
    participants: dict[str, str] = Field(default_factory=dict, max_length=10_000)
    custodianNames: list[str] = Field(default_factory=list, max_length=20)
    chatName: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("custodian")
    @classmethod
    def _custodian(cls, value: str) -> str:
        if not is_mailbox_address(value.strip()):
            raise ValueError("not an address a mailbox can have")
        return value.strip().lower()

    @field_validator("timeZone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if len(value) > 64 or value not in (available_timezones() | {"UTC"}):
            raise ValueError("not an IANA time zone name")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a time zone this host knows") from None
        return value

    @field_validator("dateOrder")
    @classmethod
    def _order(cls, value: str | None) -> str | None:
        if value is not None and value not in DATE_ORDERS:
            raise ValueError(f"one of {', '.join(DATE_ORDERS)}")
        return value

    @field_validator("participants")
    @classmethod
    def _participants(cls, value: dict[str, str]) -> dict[str, str]:
        # The participants file's rules exactly: one name (as compared: case, spaces and marks aside)
        # with two addresses is refused, never "the last one wins".
        checked = check_participants(value)
        if checked.problems:
            raise ValueError("; ".join(checked.problems[:5]))
        return checked.names

    @field_validator("custodianNames")
    @classmethod
    def _custodian_names(cls, value: list[str]) -> list[str]:
        if any(not (0 < len(name.strip()) <= 200 and name.isprintable()) for name in value):
            raise ValueError("a name is empty, over 200 characters or not printable")
        return value

    @field_validator("chatName")
    @classmethod
    def _chat_name(cls, value: str | None) -> str | None:
        if value is not None and not (value.strip() and value.isprintable()):
            raise ValueError("not printable text")
        return value.strip() if value is not None else None

    def options(self) -> ChatExportOptions:
        return ChatExportOptions(
            custodian=self.custodian, time_zone=self.timeZone, date_order=self.dateOrder,
            participants=self.participants, custodian_names=frozenset(self.custodianNames), chat_name=self.chatName,
        )


def upload_halves(name: str) -> tuple[str, str] | None:
    """(export, sidecar) for an uploaded blob's name, or None for a blob that is neither (our own
    reports). Raises UnsafeBlobName for a name that is no safe blob name."""
    check_blob_name(name)
    if name.endswith(REPORT_SUFFIX):
        return None
    if name.endswith(SIDECAR_SUFFIX):
        export = name[: -len(SIDECAR_SUFFIX)]
        return (export, name) if export and not export.endswith("/") else None
    return name, name + SIDECAR_SUFFIX


def receive_upload(
    name: str, *, uploads: ChatExportUploads, media_store: CapturedMediaStore, records: RecordStore,
    items_queue: WorkQueue, report_queue: WorkQueue, ledger: WindowLedger, clock: Callable[[], datetime],
    spool_dir: str | None = None, report_delay: int = FIRST_REPORT_DELAY,
    transcripts_queue: WorkQueue | None = None, transcript_delay: int = 0, evidence: EvidenceStore | None = None,
) -> dict[str, Any] | None:
    """Handle one blob-created event. Returns the report written beside the export (None when the
    blob is our own report). Storage and queue errors propagate: the host retries the event, and
    every step repeats safely."""
    try:
        halves = upload_halves(name)
    except UnsafeBlobName as error:
        log.warning("chat export upload refused: %s", error)
        return None
    if halves is None:
        return None
    export_name, sidecar_name = halves
    export_stamp, sidecar_stamp = uploads.stamp(export_name), uploads.stamp(sidecar_name)
    if export_stamp is None or sidecar_stamp is None:
        which = "the sidecar FILE.json" if sidecar_stamp is None else "the export FILE"
        log.info("chat export upload: waiting for %s", "the sidecar" if sidecar_stamp is None else "the export")
        return _write(uploads, export_name, {"status": "waiting", "file": _base(export_name),
                                             "waiting_for": which, "at": _iso(clock())})
    # Both halves' events may find both halves: the event of the later upload imports, so one upload is
    # one import, and re-uploading either half imports again. Storage keeps the time to the second: on a
    # tie both events go on (the earlier one may have found its other half missing), and the second
    # finds the first's report below, or at worst imports again, which archives nothing twice.
    if sidecar_stamp.modified != export_stamp.modified \
            and (name == sidecar_name) != (sidecar_stamp.modified > export_stamp.modified):
        log.info("chat export upload: the other half's event imports it")
        return None
    stamps = {"export_etag": export_stamp.etag, "sidecar_etag": sidecar_stamp.etag}
    earlier = _earlier_report(uploads, export_name, stamps)
    if earlier.get("status") in HANDED_OFF:
        # Event Grid delivers at least once: the same upload was handed off before.
        log.info("chat export upload: handed off before, nothing to do")
        return None
    try:
        sidecar_bytes = uploads.read_small(sidecar_name, MAX_SIDECAR_BYTES)
        sidecar = ChatExportSidecar.model_validate_json(sidecar_bytes)
    except ValidationError as error:
        # The top-level field only: a participants key is a person's name, kept out of logs and reports.
        fields = sorted({str(e["loc"][0]) if e["loc"] else "(sidecar)" for e in error.errors(include_input=False)})
        return _refuse(uploads, export_name, "sidecar_invalid", f"the sidecar is not valid at: {', '.join(fields)}",
                       clock, stamps)
    except ValueError:
        return _refuse(uploads, export_name, "sidecar_too_big", f"the sidecar is over {MAX_SIDECAR_BYTES} bytes",
                       clock, stamps)
    if export_stamp.size > MAX_EXPORT_BYTES:
        return _refuse(uploads, export_name, "export_too_big",
                       f"the export is {export_stamp.size} bytes, over the limit of {MAX_EXPORT_BYTES}", clock, stamps)
    now = clock()
    # An event run again after a failure part-way finishes the import it started, in the same window and
    # with the same capture time (so the same bytes): the records already handed off are found again, not
    # left in a window whose slice never closes. The report beside the upload says which import began.
    began = earlier.get("captured")
    if earlier.get("status") == "handing_off" and isinstance(began, str):
        captured = datetime.fromisoformat(began.replace("Z", "+00:00"))
    else:
        captured = now
    with tempfile.TemporaryDirectory(prefix="wa-export-", dir=spool_dir) as folder:
        local = Path(folder) / "upload"
        try:
            with local.open("wb") as handle:
                uploads.download_to(export_name, handle)
        except RecordMissing:
            return _refuse(uploads, export_name, "export_gone", "the export disappeared before it was read", clock,
                           stamps)
        try:
            export = open_export(local, name=_base(export_name))
            if evidence is not None:
                _keep_evidence(evidence, export, sidecar_bytes)
            prepared = prepare_export(export, sidecar.options(), media_store=media_store, captured_at=captured)
        except (ExportFileError, ChatExportError) as error:
            return _refuse(uploads, export_name, type(error).__name__, str(error), clock, stamps)
        return _hand_off(export_name, prepared, records=records, items_queue=items_queue,
                         report_queue=report_queue, ledger=ledger, uploads=uploads, now=now, captured=captured,
                         stamps=stamps,
                         report_delay=report_delay, transcripts_queue=transcripts_queue,
                         transcript_delay=transcript_delay)


def _keep_evidence(evidence: EvidenceStore, export: ExportFile, sidecar: bytes) -> None:
    """The upload as it was, and every file in it, under WORM retention before anything is imported:
    the export file streamed from the local copy, checked against the digest computed when it was read."""
    def chunks() -> Iterator[bytes]:
        with export.path.open("rb") as handle:
            while chunk := handle.read(4 * 1024 * 1024):
                yield chunk

    evidence.keep_stream("chat-export", export.sha256, chunks(), {"file": "export"})
    evidence.keep("chat-export-sidecar", sidecar)
    if export.is_zip:
        for name, member in export.media.items():
            evidence.keep_stream("media", member.sha256, export.open_member(name), {"export_sha256": export.sha256})


def _earlier_report(uploads: ChatExportUploads, export_name: str, stamps: dict[str, str]) -> dict[str, object]:
    """The report beside the upload when it is of this very upload (the same halves), else empty."""
    try:
        report: object = json.loads(uploads.read_small(export_name_report(export_name), MAX_REPORT_BYTES))
    except (RecordMissing, ValueError):
        return {}
    if not is_json_object(report) or any(report.get(key) != value for key, value in stamps.items()):
        return {}
    return report


def _hand_off(
    export_name: str, prepared: PreparedExport, *, records: RecordStore, items_queue: WorkQueue,
    report_queue: WorkQueue, ledger: WindowLedger, uploads: ChatExportUploads, now: datetime, captured: datetime,
    stamps: dict[str, str], report_delay: int, transcripts_queue: WorkQueue | None = None, transcript_delay: int = 0,
) -> dict[str, Any]:
    # A window of its own per import, over the day it was taken in: its report is this export's alone
    # (a later export of the same chat shows the overlap as skipped duplicates), and `status` and
    # `report --window` show it like any window.
    info = WindowInfo(webhook_day(captured).window, 1, captured)
    window_id = info.window_id
    _write(uploads, export_name, {"status": "handing_off", "file": _base(export_name), "window": window_id,
                                  "captured": _iso(info.scheduled_at), "at": _iso(now), **stamps})
    if ledger.window(window_id) is None:
        ledger.open_window(info)
    slice_id = f"chat-export-{prepared.export.sha256[:32]}"
    items: list[dict[str, Any]] = []
    page: list[str] = []
    pages = 0
    total = prepared.built.count
    for position, item in enumerate(prepared.built.iter_records(), start=1):
        key = record_key(item.record.message_id)
        reference = records.put(key, record_bytes(item))
        items_queue.send(ItemTask(window_id=window_id, record_key=key, record_ref=reference,
                                  message_id=item.record.message_id).model_dump(mode="json"))
        page.append(key)
        items.append(_queued_item(item))
        if len(page) == PAGE_SIZE or position == total:
            ledger.record_page(window_id, PageEntry(slice_id, pages, tuple(page), position == total))
            pages += 1
            page = []
    if not total:
        ledger.record_page(window_id, PageEntry(slice_id, 0, (), True))
    telemetry.count_listed(total, window_id=window_id)
    if transcripts_queue is not None:
        # Daily transcript mode: compose the export's days that are over once its records are staged,
        # as a scheduled window does, instead of waiting for the timer's next window.
        transcripts_queue.send(TranscriptsDueTask(window_id=window_id, window_end=now, handed_off_at=now)
                               .model_dump(mode="json"), delay_seconds=transcript_delay)
    report = export_report(prepared, _pending_batch(items))
    report.update({"status": "handed_off", "window": window_id, "at": _iso(now), **stamps})
    _write(uploads, export_name, report)
    report_queue.send(ChatExportReportTask(export_name=export_name, window_id=window_id,
                                           export_sha256=prepared.export.sha256).model_dump(mode="json"),
                      delay_seconds=report_delay)
    log.info("chat export %s: %d record(s) handed off to window %s in %d page(s)",
             prepared.export.sha256[:16], total, window_id, pages)
    return report


def finish_report(
    task: ChatExportReportTask, *, uploads: ChatExportUploads, ledger: WindowLedger, report_queue: WorkQueue,
    clock: Callable[[], datetime], report_delay: int = FIRST_REPORT_DELAY,
) -> dict[str, object] | None:
    """Write the export's report again with every record's outcome; come back later while some
    record has none. A report that is gone or is of another upload (replaced since) is left alone."""
    report_name = export_name_report(task.export_name)
    try:
        report: object = json.loads(uploads.read_small(report_name, MAX_REPORT_BYTES))
    except (RecordMissing, ValueError):
        log.warning("chat export report task: the report to finish is missing or unreadable")
        return None
    if not is_json_object(report) or report.get("sha256") != task.export_sha256 \
            or report.get("window") != task.window_id:
        return None  # the upload was replaced or imported again since: that import's task finishes it
    items = _objects(report.get("items", []))
    pending = awaiting = 0
    # The export's window is its own: one pass over the window's states (pages of 100) rather than a
    # point read per record, for every check of an export of 100,000 messages.
    outcomes = {key: state.outcome for key, state in ledger.record_states(task.window_id)}
    for item in items:
        message_id = item["messageId"]
        if not isinstance(message_id, str):
            raise TypeError("a report item's messageId is not a string")
        outcome = outcomes.get(record_key(message_id))
        if outcome is None:
            pending += 1
            continue
        if outcome.outcome is RecordOutcome.AWAITING_TRANSCRIPT:
            # Staged for its day's transcript: no mailbox yet; its outcome comes when the day is composed.
            awaiting += 1
            item["outcome"] = outcome.outcome.value
            continue
        item["outcome"] = outcome.outcome.value
        item["mailboxes"] = [m.mailbox for m in outcome.mailboxes]
        item["mailbox_outcomes"] = {m.mailbox: {"outcome": m.outcome.value, "rule": m.rule.value}
                                    for m in outcome.mailboxes}
        if outcome.reason:
            item["reason"] = outcome.reason
            item["detail"] = outcome.detail
        if outcome.partial:
            item["partial"] = True
    pairs: list[dict[str, object]] = []
    for item in items:
        by_mailbox = item.get("mailbox_outcomes", {})
        if not is_json_object(by_mailbox):
            raise TypeError("a report item's mailbox_outcomes is not an object")
        pairs += _objects(list(by_mailbox.values()))
    poisoned: dict[str, int] = {}
    for item in items:
        if item["outcome"] == RecordOutcome.POISONED:
            reason = item["reason"]
            # A key as the report's JSON writes it (a null reason is "null"): the connector writes a str.
            key = reason if isinstance(reason, str) else json.dumps(reason)
            poisoned[key] = poisoned.get(key, 0) + 1
    report.update({
        "fanout": len(pairs),
        "imported": sum(p["outcome"] == RecordOutcome.IMPORTED for p in pairs),
        "skipped_duplicates": sum(p["outcome"] == RecordOutcome.SKIPPED_DUPLICATE for p in pairs),
        "partially_imported": sum(bool(i.get("partial")) for i in items),
        "poisoned": dict(sorted(poisoned.items())),
        "messages_new": sum(i["outcome"] == RecordOutcome.IMPORTED for i in items),
        "messages_already_archived": sum(i["outcome"] == RecordOutcome.SKIPPED_DUPLICATE for i in items),
        "pending": pending, "awaiting_transcript": awaiting, "at": _iso(clock()),
    })
    if (pending or awaiting) and task.checks + 1 < REPORT_CHECKS:
        report["status"] = "importing" if pending else "awaiting_transcript"
        uploads.put_report(report_name, _json(report))
        report_queue.send(task.model_copy(update={"checks": task.checks + 1}).model_dump(mode="json"),
                          delay_seconds=report_delay * LATER_CHECKS)
        return report
    # Records without an outcome are the connector's to explain; staged ones only wait for their day.
    report["status"] = "pending_records" if pending else "awaiting_transcript" if awaiting else "done"
    uploads.put_report(report_name, _json(report))
    log.info("chat export %s: report finished, %d record(s) without an outcome, %d awaiting a transcript",
             task.export_sha256[:16], pending, awaiting)
    return report


def export_name_report(export_name: str) -> str:
    return export_name + REPORT_SUFFIX


def _objects(values: object) -> list[dict[str, object]]:
    """A list of JSON objects read back from a report this module wrote. Any other shape raises, as
    reading it as one would: the task is retried, then poisoned, and the report is not rewritten."""
    if not is_json_array(values):
        raise TypeError("not a list of objects in the report")
    objects = [value for value in values if is_json_object(value)]
    if len(objects) != len(values):
        raise TypeError("not a list of objects in the report")
    return objects


def _queued_item(item: ExportRecord) -> dict[str, Any]:
    return {"line": item.first_line, "messageId": item.record.message_id, "outcome": "queued", "mailboxes": [],
            "reason": None, **item_facts(item)}


def _pending_batch(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"fanout": None, "imported": None, "skipped_duplicates": None, "partially_imported": None,
            "poisoned": {}, "items": items}


def _refuse(uploads: ChatExportUploads, export_name: str, code: str, why: str, clock: Callable[[], datetime],
            stamps: dict[str, str]) -> dict[str, Any]:
    # The code alone in the log: the reason may name a zip member (a person's name, a number).
    log.warning("chat export upload refused (%s)", code)
    return _write(uploads, export_name, {"status": "refused", "file": _base(export_name), "code": code,
                                         "reason": why, "at": _iso(clock()), **stamps})


def _write(uploads: ChatExportUploads, export_name: str, report: dict[str, Any]) -> dict[str, Any]:
    uploads.put_report(export_name_report(export_name), _json(report))
    return report


def _json(report: Mapping[str, object]) -> bytes:
    return (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _base(name: str) -> str:
    return PurePosixPath(name).name


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
