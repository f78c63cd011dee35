"""A drop in the EML drop container (``eml-drops``, the SFTP account) becomes records on the items queue.

Why it is built this way:
- **Judged whole, once, from a queue.** The blob trigger only queues the drop's name and ETag
  (``receive_drop``); the listing function judges it (``import_drop``). A replay from poison sends
  the same task, so a drop delivered by the vendor and a drop replayed by an operator take one path,
  under the listing queue's retries.
- **Evidence first.** The drop is copied into the evidence store (WORM; the SFTP account cannot
  have it) before it is judged, so a drop refused or poisoned is kept as it came. Each EML is kept
  there too (``raw/eml/<sha256>``, the SHA-256 its item carries in ``X-Archive-Eml-Sha256``), and as
  its record's claim check in the record store, which ``verify`` hashes.
- **Nothing from a ZIP that does not hold.** An unsafe ZIP (members outside it, nested archives,
  bombs) is never imported: poisoned ``invalid_item``, not replayable (the vendor delivers again). A
  ZIP whose manifest does not hold is imported not at all and poisoned ``manifest_mismatch``:
  replayable once the vendor has delivered again, or with the operator's explicit acceptance
  (``poison replay --accept-manifest-mismatch``), which the report records.
- **Accounted like every source.** A drop handed off is a window of its own over the UTC day it was
  taken in, its EMLs the one slice, written in pages after their item tasks are queued. An EML that
  cannot even be unpacked is accounted in that window as poisoned, its bytes kept in the ZIP.
- **A report beside the drop** (``NAME.report.json``, the one thing the app may write there): the
  verdict at once, then every EML's outcome once they have one, in the shape of ``import-eml``'s.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
import zipfile
from collections.abc import Buffer, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, cast

from shared import telemetry
from shared.domain.eml_drop import DEFAULT_LIMITS, DropLimits, check_drop, read_member
from shared.domain.eml_items import eml_record_id
from shared.domain.errors import PoisonReason
from shared.domain.identifiers import UnsafeBlobName, check_blob_name, stored_record_key
from shared.domain.json_values import is_json_array, is_json_object
from shared.domain.ledger import OutcomeEntry, PageEntry, RecordOutcome, WindowInfo
from shared.domain.records import record_key
from shared.domain.tasks import EmlDropReportTask, EmlDropTask, ItemTask, PoisonMessage, file_label
from shared.domain.window import isoformat_z
from shared.ports import ChatExportUploads, EvidenceStore, RecordMissing, RecordStore, WindowLedger, WorkQueue

# One schedule and one naming for every upload's report: a chat export's and a drop's alike.
from shared.service.chat_export_intake import (
    FIRST_REPORT_DELAY,
    LATER_CHECKS,
    MAX_REPORT_BYTES,
    REPORT_CHECKS,
    REPORT_SUFFIX,
)
from shared.service.eml_import import drop_facts, drop_totals, manifest_state
from shared.service.webhook_records import webhook_day

log = logging.getLogger(__name__)

DROP_SUFFIXES = (".zip", ".eml")
# Spooled to the instance's local disk: a Capture Mobile ZIP is a day's or an hour's messages.
MAX_DROP_BYTES = 4 * 1024**3
PAGE_SIZE = 100
# A page's EMLs are held in memory until they are handed off: a page closes at 100 EMLs or at this many
# bytes, whichever comes first (a drop of videos must not hold gigabytes at once).
PAGE_BYTES = 256 * 1024 * 1024
STATE_PREFIX = "eml-drops/"
HANDED_OFF = ("handed_off", "importing", "done", "pending_records")
_CHUNK = 4 * 1024 * 1024
_WRITERS = 16


def receive_drop(name: str, *, drops: ChatExportUploads, listing_queue: WorkQueue,
                 clock: Callable[[], datetime]) -> EmlDropTask | None:
    """One BlobCreated event: the drop queued to be judged, or None for our own report, a name that
    is not a safe blob name, or a blob gone already. Storage errors propagate (the host retries)."""
    try:
        check_blob_name(name)
    except UnsafeBlobName as error:
        log.warning("eml drop refused: its name %s", error)
        return None
    if name.endswith(REPORT_SUFFIX):
        return None
    stamp = drops.stamp(name)
    if stamp is None:
        log.warning("eml drop: the blob is gone before it was queued")
        return None
    task = EmlDropTask(drop_name=name, etag=stamp.etag)
    listing_queue.send(task.model_dump(mode="json"))
    log.info("eml drop queued (received %s)", isoformat_z(clock()))
    return task


@dataclass(frozen=True)
class DropStores:
    """Where a drop's records, evidence, work, poison and accounting go."""

    drops: ChatExportUploads  # the vendor's container: read, and the vendor's view of each report written
    state: ChatExportUploads  # the app's own copy of each report (the vendor may write in its container)
    records: RecordStore
    evidence: EvidenceStore
    items_queue: WorkQueue
    report_queue: WorkQueue
    poison_queue: WorkQueue
    ledger: WindowLedger


def import_drop(task: EmlDropTask, stores: DropStores, *, clock: Callable[[], datetime],
                limits: DropLimits = DEFAULT_LIMITS, spool_dir: str | None = None,
                report_delay: int = FIRST_REPORT_DELAY) -> dict[str, Any] | None:
    """Judge one drop and hand its EMLs off, or refuse it with a reason. Returns the report written
    beside it (None when there is nothing to do). Storage and queue errors propagate: the task is
    retried, and every step repeats safely (the same window, the same keys, nothing kept twice)."""
    name = task.drop_name
    base = PurePosixPath(name).name
    if not base.lower().endswith(DROP_SUFFIXES):
        log.info("eml drop: a blob that is neither a .zip nor an .eml is left alone")
        return _write(stores, name, {"status": "ignored", "file": base, "at": isoformat_z(clock()),
                                     "reason": "not a .zip or an .eml: nothing to import"})
    stamp = stores.drops.stamp(name)
    if stamp is None:
        log.warning("eml drop: the blob is gone before it was judged")
        return None
    if stamp.etag != task.etag and not task.replays:
        log.info("eml drop: replaced since it was queued; the new upload's event imports it")
        return None
    stamps = {"etag": stamp.etag}
    earlier = _earlier_report(stores.state, name, stamps)
    status = earlier.get("status")
    if status in HANDED_OFF or (status == "refused" and not task.replays):
        # Event Grid delivers at least once: this upload was handed off before (by its own event, or by a
        # replay: a stale poison message replayed later hands nothing off twice), or it was refused and
        # poisoned before (only a replay judges it again).
        log.info("eml drop: judged before (%s), nothing to do", status)
        return None
    is_zip = base.lower().endswith(".zip")
    largest = MAX_DROP_BYTES if is_zip else limits.max_member_bytes
    if stamp.size > largest:
        return _refuse(task, stores, "drop_too_big", f"the drop is {stamp.size} bytes, over {largest}",
                       clock, stamps, base)
    # The operator accepted the mismatch of the bytes that were refused, not of whatever is there now.
    accept = task.accept_mismatch and stamp.etag == task.etag
    now = clock()
    began = earlier.get("captured")
    # A task run again after failing part-way finishes in the window it began, with the same keys.
    captured = (datetime.fromisoformat(began.replace("Z", "+00:00"))
                if earlier.get("status") == "handing_off" and isinstance(began, str) else now)
    with tempfile.TemporaryDirectory(prefix="wa-eml-drop-", dir=spool_dir) as folder:
        local = Path(folder) / "drop"
        try:
            with _HashingFile(local) as handle:
                # Only the bytes stamped above: a drop replaced meanwhile is judged by its own event.
                stores.drops.download_to(name, handle, etag=stamp.etag)
        except RecordMissing:
            log.warning("eml drop: the blob is gone or replaced before it was read")
            return None
        sha256 = handle.sha256
        kept = stores.evidence.keep_stream("eml-drop" if is_zip else "eml", sha256, _chunks(local),
                                           {"source": "eml-drop"})
        if not is_zip:
            data = local.read_bytes()
            return _hand_off(task, stores, [(base, data)], facts={
                "file": base, "drop": None, "manifest": "absent", "verdict": "no manifest", "emls_listed": 1,
                "sha256": sha256, "evidence": kept, **stamps,
            }, now=now, captured=captured, report_delay=report_delay, zip_sha256=None)
        try:
            archive = zipfile.ZipFile(local)
        except (zipfile.BadZipFile, OSError) as error:
            return _refuse(task, stores, "not_a_zip", f"not a readable ZIP ({error})", clock,
                           {**stamps, "sha256": sha256, "evidence": kept}, base)
        with archive:
            verdict = check_drop(archive, limits)
            state = manifest_state(verdict, accept)
            facts: dict[str, Any] = {"file": base, "drop": drop_facts(base), "manifest": state,
                                     "verdict": verdict.describe(), "emls_listed": len(verdict.emls),
                                     "sha256": sha256, "evidence": kept, **stamps}
            if task.accept_mismatch and not accept:
                facts["acceptance_not_applied"] = "the drop was replaced since it was refused: judged afresh"
            if state == "refused":
                return _refuse(task, stores, "unsafe_zip", verdict.describe(), clock, facts, base)
            if state == "mismatch":
                return _poison_mismatch(task, stores, facts, clock)
            if state == "mismatch accepted":
                facts["accepted_by"] = "poison replay --accept-manifest-mismatch"
            members = _members(archive, verdict.emls, base, limits.max_member_bytes)
            return _hand_off(task, stores, members, facts=facts, now=now, captured=captured,
                             report_delay=report_delay, zip_sha256=sha256)


def _members(archive: zipfile.ZipFile, infos: tuple[zipfile.ZipInfo, ...], base: str,
             limit: int) -> Iterator[tuple[str, bytes | str]]:
    """Each EML's label and bytes, or the reason it could not be unpacked."""
    for info in infos:
        label = file_label(base, info.filename)
        try:
            yield label, read_member(archive, info, limit)
        except (ValueError, zipfile.BadZipFile, OSError, NotImplementedError) as error:
            yield label, f"cannot be unpacked ({error})"


def _hand_off(
    task: EmlDropTask, stores: DropStores, members: Iterator[tuple[str, bytes | str]] | list[tuple[str, bytes | str]],
    *, facts: dict[str, Any], now: datetime, captured: datetime, report_delay: int, zip_sha256: str | None,
) -> dict[str, Any]:
    info = WindowInfo(webhook_day(captured).window, 1, captured)
    window_id = info.window_id
    name = task.drop_name
    _write(stores, name, {"status": "handing_off", **facts, "window": window_id,
                          "captured": isoformat_z(info.scheduled_at), "at": isoformat_z(now)})
    if stores.ledger.window(window_id) is None:
        stores.ledger.open_window(info)
    slice_id = f"eml-drop-{facts['sha256'][:32]}"
    items: list[dict[str, Any]] = []
    first_of: dict[str, str] = {}  # an EML's SHA-256 -> the first member with those bytes
    page = _Page()
    number = listed = 0
    earlier_pages = _EarlierPages(stores.ledger, window_id)

    def flush(emls: _Page, at: int, *, last: bool) -> None:
        _hand_off_page(stores, window_id, slice_id, at, emls, last=last, now=now, zip_sha256=zip_sha256,
                       earlier_pages=earlier_pages)

    for label, content in members:
        if isinstance(content, str):
            key = record_key(f"eml-member:{facts['sha256']}:{label}")
            row: dict[str, Any] = {"file": label, "record_id": None, "record_key": key,
                                   "outcome": RecordOutcome.POISONED.value, "reason": PoisonReason.INVALID_ITEM.value,
                                   "detail": f"{label}: {content}", "mailboxes": []}
        else:
            digest = hashlib.sha256(content).hexdigest()
            record_id = eml_record_id(content)
            key = record_key(record_id)
            if digest in first_of:
                # The same bytes twice in one drop: one EML to the archive, the second named (it is in
                # the drop kept as evidence).
                items.append({"file": label, "record_id": record_id, "outcome": RecordOutcome.SKIPPED_DUPLICATE.value,
                              "reason": None, "detail": f"the same EML as {first_of[digest]}", "mailboxes": [],
                              "in_drop": True})
                continue
            first_of[digest] = label
            if page.holds_id(key):
                # Other bytes under an id this page holds already: the first is stored before this one, so
                # which of them is the re-capture does not depend on the order writes finish in.
                flush(page, number, last=False)
                number += 1
                page = _Page()
            row = {"file": label, "record_id": record_id, "outcome": "queued", "reason": None, "detail": None,
                   "mailboxes": []}
        items.append(row)
        page.add(_Handed(key, label, content, row["record_id"], row))
        listed += 1
        if page.full:
            flush(page, number, last=False)
            number += 1
            page = _Page()
    flush(page, number, last=True)
    telemetry.count_listed(listed, window_id=window_id)
    # The task that finishes the report first: a failure after it leaves a task that waits for the report,
    # never a report that no task finishes.
    stores.report_queue.send(EmlDropReportTask(drop_name=name, window_id=window_id, drop_sha256=facts["sha256"])
                             .model_dump(mode="json"), delay_seconds=report_delay)
    report = {"status": "handed_off", **facts, "window": window_id, "captured": isoformat_z(info.scheduled_at),
              "at": isoformat_z(now), **drop_totals(items), "pending": sum(i["outcome"] == "queued" for i in items),
              "items": items}
    _write(stores, name, report)
    log.info("eml drop %s: %d EML(s) handed off to window %s", facts["sha256"][:16], len(items), window_id)
    return report


class _Page:
    def __init__(self) -> None:
        self.emls: list[_Handed] = []
        self.bytes = 0
        self._ids: set[str] = set()

    def add(self, eml: _Handed) -> None:
        self.emls.append(eml)
        self._ids.add(eml.key)
        self.bytes += len(eml.content) if isinstance(eml.content, bytes) else 0

    def holds_id(self, key: str) -> bool:
        return key in self._ids

    @property
    def full(self) -> bool:
        return len(self.emls) >= PAGE_SIZE or self.bytes >= PAGE_BYTES


@dataclass(frozen=True)
class _Handed:
    key: str
    label: str
    content: bytes | str  # the EML's bytes, or why they cannot be read
    record_id: str | None
    row: dict[str, Any]  # its line in the report, which learns the key it is listed under

class _EarlierPages:
    """The pages an earlier run of the task wrote, read from the ledger once, when first asked for."""

    def __init__(self, ledger: WindowLedger, window_id: str) -> None:
        self._ledger, self._window_id = ledger, window_id
        self._pages: dict[tuple[str, int], PageEntry] | None = None

    def get(self, slice_id: str, number: int) -> PageEntry | None:
        if self._pages is None:
            self._pages = {(e.slice_id, e.page): e for e in self._ledger.pages(self._window_id)}
        return self._pages.get((slice_id, number))


def _hand_off_page(stores: DropStores, window_id: str, slice_id: str, number: int, page: _Page, *,
                   last: bool, now: datetime, zip_sha256: str | None, earlier_pages: _EarlierPages) -> None:
    """One page of a drop's EMLs handed off, then its keys written to the ledger, then the page marked:
    a hand-off retried after a time-out (a drop of 100,000 EMLs) resumes after the pages it finished."""
    if stores.ledger.page_listed(window_id, slice_id, number):
        # Handed off by an earlier run of this task: each row learns its key from the ledger's page (a
        # re-capture's key holds the digest of bytes stored then).
        listed = earlier_pages.get(slice_id, number)
        if listed is not None and len(listed.record_keys) == len(page.emls):
            for eml, key in zip(page.emls, listed.record_keys, strict=True):
                eml.row["record_key"] = key
        return

    def hand_off_one(eml: _Handed) -> str:
        if isinstance(eml.content, str):
            _unpack_failure(stores, window_id, eml.key, eml.label, eml.content, now)
            return eml.key
        reference = stores.records.put(eml.key, eml.content)
        # Other bytes under a Message-ID stored before (a vendor that writes the EML anew, with new MIME
        # boundaries, when it delivers again): kept beside the first as ``<key>.<digest>``, and listed
        # under that key, so the claim check the ledger names is the one this EML was imported from.
        # It is still the same message: its item is the first one's (shared/service/eml_import.py).
        key = stored_record_key(reference)
        if zip_sha256 is not None:
            stores.evidence.keep("eml", eml.content, {"drop_sha256": zip_sha256})
        task = ItemTask(window_id=window_id, record_key=key, record_ref=reference, message_id=eml.record_id,
                        format="eml", file=eml.label)
        stores.items_queue.send(task.model_dump(mode="json"))
        return key

    # Three storage round trips an EML, none depending on another EML's: a page's go in parallel (a
    # drop of 100,000 EMLs one at a time is hours). Any failure propagates once the page is done, and
    # the page is then neither written to the ledger nor marked: the retry hands it off again.
    with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
        keys = tuple(pool.map(hand_off_one, page.emls))
    for eml, key in zip(page.emls, keys, strict=True):
        eml.row["record_key"] = key
    stores.ledger.record_page(window_id, PageEntry(slice_id, number, keys, last))
    stores.ledger.mark_page_listed(window_id, slice_id, number)


def _unpack_failure(stores: DropStores, window_id: str, key: str, label: str, why: str,
                    now: datetime) -> None:
    # No bytes to keep as a claim check (the drop itself is kept): poisoned at once, and accounted; once,
    # when the page is handed off again after a failure.
    if stores.ledger.records_with_outcome(window_id, [key]):
        return
    detail = f"{label}: {why}"
    stores.poison_queue.send(PoisonMessage(reason=PoisonReason.INVALID_ITEM, detail=detail, window_id=window_id,
                                           record_key=key, failed_at=now, file=label).model_dump(mode="json"))
    stores.ledger.record_outcome(window_id, OutcomeEntry(record_key=key, message_id=None,
                                                         outcome=RecordOutcome.POISONED, at=now,
                                                         reason=PoisonReason.INVALID_ITEM.value, detail=detail))
    telemetry.account_record(RecordOutcome.POISONED, reason=PoisonReason.INVALID_ITEM)


def _poison_mismatch(task: EmlDropTask, stores: DropStores, facts: dict[str, Any],
                     clock: Callable[[], datetime]) -> dict[str, Any]:
    now = clock()
    # Replayable: the task as the trigger queued it goes back to the listing queue (a replay may add
    # the operator's acceptance; shared/service/poison.py).
    original = task.model_copy(update={"accept_mismatch": False}).to_text()
    stores.poison_queue.send(PoisonMessage(
        reason=PoisonReason.MANIFEST_MISMATCH, detail=f"{facts['file']}: {facts['verdict']}", failed_at=now,
        replays=task.replays, source_queue="listing", original_message=original,
    ).model_dump(mode="json"))
    telemetry.account_record(RecordOutcome.POISONED, reason=PoisonReason.MANIFEST_MISMATCH)
    log.warning("eml drop %s: manifest does not hold; nothing imported, poisoned", facts["sha256"][:16])
    return _write(stores, task.drop_name, {
        "status": "refused", "code": PoisonReason.MANIFEST_MISMATCH.value, **facts, "at": isoformat_z(now),
        "what_to_do": "ask the vendor to deliver the drop again, or replay it accepting the mismatch "
                      "(python -m shared.cli poison replay --reason manifest_mismatch --accept-manifest-mismatch)",
    })


def _refuse(task: EmlDropTask, stores: DropStores, code: str, why: str, clock: Callable[[], datetime],
            facts: Mapping[str, Any], base: str) -> dict[str, Any]:
    """A drop that can never be imported as it is: kept, poisoned (not replayable: the vendor delivers
    again), and the report says why."""
    now = clock()
    stores.poison_queue.send(PoisonMessage(reason=PoisonReason.INVALID_ITEM, detail=f"{base}: {code}: {why}",
                                           failed_at=now, replays=task.replays).model_dump(mode="json"))
    telemetry.account_record(RecordOutcome.POISONED, reason=PoisonReason.INVALID_ITEM)
    log.warning("eml drop refused (%s)", code)  # the code alone: the reason may name a member
    return _write(stores, task.drop_name, {"status": "refused", "code": code, "reason": why,
                                            "file": base, **facts, "at": isoformat_z(now)})


def finish_drop_report(task: EmlDropReportTask, *, stores: DropStores, clock: Callable[[], datetime],
                       report_delay: int = FIRST_REPORT_DELAY) -> dict[str, Any] | None:
    """Write the drop's report again with every EML's outcome; come back later while some has none.
    Read from the app's own copy (the vendor can write in its container); a report that is gone or is
    of another delivery (replaced since) is left alone."""
    report = _read_state(stores.state, task.drop_name)
    if report is None:
        log.warning("eml drop report task: the report to finish is missing or unreadable")
        return None
    if report.get("sha256") != task.drop_sha256 or report.get("window") != task.window_id:
        return None
    if report.get("status") == "handing_off":  # the hand-off is still going (or will be retried)
        if task.checks + 1 < REPORT_CHECKS:
            stores.report_queue.send(task.model_copy(update={"checks": task.checks + 1}).model_dump(mode="json"),
                                     delay_seconds=report_delay * LATER_CHECKS)
        return None
    items = report.get("items")
    if not is_json_array(items):
        raise TypeError("the report's items are not a list of objects")
    outcomes = {key: state.outcome for key, state in stores.ledger.record_states(task.window_id)}
    rows: list[dict[str, Any]] = []
    for item in items:
        if not is_json_object(item):
            raise TypeError("the report's items are not a list of objects")
        row: dict[str, Any] = dict(item)
        key = row.get("record_key")
        record_id = row.get("record_id")
        if not isinstance(key, str) and isinstance(record_id, str):
            key = record_key(record_id)  # a page handed off by an earlier run of the task
        outcome = outcomes.get(key) if isinstance(key, str) and not row.get("in_drop") else None
        if outcome is not None:
            row.update({"outcome": outcome.outcome.value, "reason": outcome.reason, "detail": outcome.detail,
                        "mailboxes": [{"mailbox": m.mailbox, "outcome": m.outcome.value, "rule": m.rule.value}
                                      for m in outcome.mailboxes]})
        rows.append(row)
    pending = sum(row["outcome"] == "queued" for row in rows)
    report = {**report, **drop_totals(rows), "pending": pending, "items": rows, "at": isoformat_z(clock())}
    if pending and task.checks + 1 < REPORT_CHECKS:
        report["status"] = "importing"
        _write(stores, task.drop_name, report)
        stores.report_queue.send(task.model_copy(update={"checks": task.checks + 1}).model_dump(mode="json"),
                                 delay_seconds=report_delay * LATER_CHECKS)
        return report
    report["status"] = "pending_records" if pending else "done"
    _write(stores, task.drop_name, report)
    log.info("eml drop %s: report finished, %d EML(s) without an outcome", task.drop_sha256[:16], pending)
    return report


def _state_name(drop_name: str) -> str:
    # Fixed length whatever the drop's name (a blob name may be 1,024 characters already).
    return f"{STATE_PREFIX}{hashlib.sha256(drop_name.encode('utf-8')).hexdigest()}{REPORT_SUFFIX}"


def _read_state(state: ChatExportUploads, drop_name: str) -> dict[str, object] | None:
    try:
        report: object = json.loads(state.read_small(_state_name(drop_name), MAX_REPORT_BYTES))
    except (RecordMissing, ValueError):
        return None
    return report if is_json_object(report) else None


def _earlier_report(state: ChatExportUploads, name: str, stamps: dict[str, str]) -> dict[str, object]:
    report = _read_state(state, name)
    if report is None or any(report.get(key) != value for key, value in stamps.items()):
        return {}
    return report


class _HashingFile(io.FileIO):
    """The spooled drop, hashed as it is written: a drop of gigabytes is not read again to hash it.
    The download writes it in order, once (the adapter downloads with one connection)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "wb")
        self._digest = hashlib.sha256()

    def write(self, data: Buffer, /) -> int:
        self._digest.update(data)
        return super().write(data)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _write(stores: DropStores, name: str, report: dict[str, Any]) -> dict[str, Any]:
    """The report in full in the app's own copy, then the vendor's view of it beside the drop."""
    stores.state.put_report(_state_name(name), _json(report))
    stores.drops.put_report(name + REPORT_SUFFIX, _json(for_vendor(report)))
    return report


def for_vendor(report: dict[str, Any]) -> dict[str, Any]:
    """What the vendor's login may read beside its drop: what became of each EML, never which of the
    firm's mailboxes took it or by which mapping rule (that is in the window's admin report)."""
    rows = report.get("items")
    if not isinstance(rows, list):
        return report
    view: list[dict[str, Any]] = []
    for row in cast(list[dict[str, Any]], rows):
        mailboxes = row.get("mailboxes")
        view.append({
            "file": row.get("file"), "record_id": row.get("record_id"), "outcome": row.get("outcome"),
            "reason": row.get("reason"),
            # Why an EML of theirs could not be read, or which of theirs it repeats; nothing else.
            "detail": row.get("detail") if row.get("reason") == PoisonReason.INVALID_ITEM.value
            or row.get("in_drop") else None,
            "mailboxes": len(cast(list[object], mailboxes)) if isinstance(mailboxes, list) else 0,
        })
    return {**report, "items": view}


def _json(report: Mapping[str, Any]) -> bytes:
    return (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


