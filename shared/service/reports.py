"""Admin reports: built from the window ledger on demand, and kept in storage for
REPORT_RETENTION_DAYS so the record of what happened outlives the ledger's day-to-day use.

Every timer run rewrites the reports of the recent windows (a window's report is final once it
reconciles; until then it shows what is pending and why) and deletes the reports of windows handed
off longer ago than the retention. The storage lifecycle rule the templates deploy does the same,
as a backstop.

A report streams: its rows are spooled from the ledger's record states into sorted runs on disk
(``SpooledSort``) and read back in order for the JSON and the CSV, which go to storage in blocks,
so a window of millions of records takes the memory of one run, not of the window (docs/scale.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from shared.domain.ledger import OutcomeEntry, WindowInfo, WindowSummary, summarize
from shared.domain.records import record_key
from shared.domain.report import (
    REPORT_VERSION,
    ReportHead,
    ReportRow,
    RowOutcome,
    WindowReport,
    pending_order,
    pending_row,
    receipt_row,
    record_order,
    record_rows,
    report_csv_chunks,
    report_head,
    report_json_chunks,
    row_from_json,
    window_report,
)
from shared.ports import ReportStore, WindowLedger
from shared.service.spooled_sort import SpooledSort
from shared.service.status import problems, recent_summaries

log = logging.getLogger(__name__)

# Windows the ledger is searched through for --since (a daily timer makes one a day).
MAX_WINDOWS_SEARCHED = 3660


def report_for(ledger: WindowLedger, info: WindowInfo, now: datetime) -> WindowReport:
    """The report held whole: for small windows and the terminal. Exports stream (``stream_report``)."""
    with stream_report(ledger, info, now) as streamed:
        return streamed.whole()


def with_rows(ledger: WindowLedger, summary: WindowSummary) -> WindowSummary:
    """The summary with its records' outcomes and pending keys, read from the ledger's record states,
    in memory (for tests and the soak's checks; reports stream)."""
    records: dict[str, OutcomeEntry] = {}
    pending: list[str] = []
    for key, state in ledger.record_states(summary.info.window_id):
        if not state.listed:
            continue
        if state.outcome is None:
            pending.append(key)
        else:
            records[key] = state.outcome
    return replace(summary, records=records, pending_keys=tuple(sorted(pending)))


def report_of(summary: WindowSummary, now: datetime) -> WindowReport:
    return window_report(summary, problems=problems(summary), generated_at=now)


class StreamedReport:
    """A window's report whose rows wait, sorted, in temporary files: the JSON and the CSV are read
    from them in pieces, as often as needed, so memory stays flat however many records the window
    holds. Close it (it is a context manager) to delete the files."""

    def __init__(self, head: ReportHead, rows: SpooledSort, tail: tuple[ReportRow, ...]) -> None:
        self.head = head
        self._rows = rows
        self._tail = tail

    @property
    def row_count(self) -> int:
        return self._rows.count + len(self._tail)

    def rows(self) -> Iterator[ReportRow]:
        for _, payload in self._rows:
            yield row_from_json(json.loads(payload))
        yield from self._tail

    def json_chunks(self) -> Iterator[str]:
        return report_json_chunks(self.head, self.rows())

    def csv_chunks(self, *, header: bool = True) -> Iterator[str]:
        return report_csv_chunks(self.rows(), header=header)

    def whole(self) -> WindowReport:
        head = self.head
        return WindowReport(head.window, head.generated_at, head.reconciled, head.problems, head.totals,
                            tuple(self.rows()))

    def close(self) -> None:
        self._rows.close()

    def __enter__(self) -> StreamedReport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream_report(
    ledger: WindowLedger, info: WindowInfo, now: datetime, *, summary: WindowSummary | None = None,
) -> StreamedReport:
    """One pass over the window's record states (the ledger streams them), each record's rows spooled
    under its place in the report's order; the counts come from the summary the ledger keeps."""
    window_id = info.window_id
    if summary is None:
        summary = ledger.summary(window_id) or summarize(info, [], [])
    spool = SpooledSort()
    try:
        unavailable = 0
        for key, state in ledger.record_states(window_id):
            if not state.listed:
                continue
            if state.outcome is None:
                spool.add(pending_order(key), json.dumps(pending_row(window_id, key).to_json(), ensure_ascii=False))
                continue
            order = record_order(key, state.outcome)
            for index, row in enumerate(record_rows(window_id, key, state.outcome)):
                unavailable += row.outcome is RowOutcome.MAILBOX_UNAVAILABLE
                spool.add(f"{order}|{index:06d}", json.dumps(row.to_json(), ensure_ascii=False))
        tail = tuple(
            receipt_row(window_id, receipt, ledger.record_state(window_id, record_key(receipt.message_id)).outcome)
            for receipt in summary.failed_receipts
        )
    except BaseException:
        spool.close()
        raise
    head = report_head(summary, mailbox_unavailable=unavailable, problems=problems(summary), generated_at=now)
    return StreamedReport(head, spool, tail)


def streamed_report_by_id(ledger: WindowLedger, window_id: str, now: datetime) -> StreamedReport:
    info = ledger.window(window_id)
    if info is None:
        raise LookupError(f"no window {window_id}")
    return stream_report(ledger, info, now)


def window_report_by_id(ledger: WindowLedger, window_id: str, now: datetime) -> WindowReport:
    with streamed_report_by_id(ledger, window_id, now) as streamed:
        return streamed.whole()


def windows_since(ledger: WindowLedger, since: datetime) -> list[WindowInfo]:
    """Every window whose capture range ends after ``since``, oldest first."""
    infos = [info for info in ledger.recent_windows(MAX_WINDOWS_SEARCHED) if info.window.end > since]
    return list(reversed(infos))


def reports_since(ledger: WindowLedger, since: datetime, now: datetime) -> list[WindowReport]:
    return [report_for(ledger, info, now) for info in windows_since(ledger, since)]


def latest_window(ledger: WindowLedger) -> WindowInfo | None:
    infos = ledger.recent_windows(1)
    return infos[0] if infos else None


def latest_report(ledger: WindowLedger, now: datetime) -> WindowReport | None:
    info = latest_window(ledger)
    return report_for(ledger, info, now) if info else None


@dataclass(frozen=True)
class Published:
    written: tuple[str, ...]
    purged: tuple[str, ...]


def publish_reports(
    ledger: WindowLedger, store: ReportStore, now: datetime, *, limit: int, retention: timedelta,
    summaries: list[WindowSummary] | None = None,
) -> Published:
    """Store the recent windows' reports (JSON and CSV), then delete those past the retention.
    ``summaries``: the recent windows' summaries when the caller has read them already."""
    if summaries is None:
        summaries = recent_summaries(ledger, limit)
    written: list[str] = []
    for summary in summaries:
        info = summary.info
        if now - info.scheduled_at > retention:
            continue
        # A window whose counts have not moved since its report was stored is not read again: a
        # report of millions of records takes minutes, and the timer passes every recent window.
        digest = summary_digest(summary)
        try:
            if store.summary_digest(info.window_id) == digest:
                continue
            with stream_report(ledger, info, now, summary=summary) as report:
                store.save(info.window_id, report.json_chunks(), report.csv_chunks(), summary_digest=digest)
        except Exception as error:  # one window's trouble (storage, a full disk) must not stop the rest
            log.error("admin report of window %s not stored (%s); the next run tries again",
                      info.window_id, type(error).__name__)
            continue
        written.append(info.window_id)
    purged: list[str] = []
    for window_id in store.stored():
        handed_off = handed_off_at(window_id)
        if handed_off is not None and now - handed_off > retention:
            store.delete(window_id)
            purged.append(window_id)
    if written or purged:
        log.info("admin reports: %d written, %d past the retention deleted", len(written), len(purged))
    return Published(tuple(written), tuple(purged))


def summary_digest(summary: WindowSummary) -> str:
    """What a report is made from, in counts: the window's summary, its failed receipts, and the
    report's version. Any outcome that changes (a replay, a late record) moves a count."""
    counts = {**summary.to_json(), "failed_receipts": [r.key for r in summary.failed_receipts],
              "daily": summary.daily, "report_version": REPORT_VERSION}
    return hashlib.sha256(json.dumps(counts, sort_keys=True, default=str).encode()).hexdigest()


def handed_off_at(window_id: str) -> datetime | None:
    """The hand-off time a window id ends with (``<start>-<end>.<YYYYmmddTHHMMSSmmm>Z``)."""
    stamp = window_id.rpartition(".")[2]
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
