"""Admin reports: built from the window ledger on demand, and kept in storage for
REPORT_RETENTION_DAYS so the record of what happened outlives the ledger's day-to-day use.

Every timer run rewrites the reports of the recent windows (a window's report is final once it
reconciles; until then it shows what is pending and why) and deletes the reports of windows handed
off longer ago than the retention. The storage lifecycle rule the templates deploy does the same,
as a backstop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from shared.domain.ledger import WindowInfo, WindowSummary, summarize
from shared.domain.report import WindowReport, report_csv, window_report
from shared.ports import ReportStore, WindowLedger
from shared.service.status import problems, recent_summaries

log = logging.getLogger(__name__)

# Windows the ledger is searched through for --since (a daily timer makes one a day).
MAX_WINDOWS_SEARCHED = 3660


def report_for(ledger: WindowLedger, info: WindowInfo, now: datetime) -> WindowReport:
    return report_of(with_rows(ledger, ledger.summary(info.window_id) or summarize(info, [], [])), now)


def with_rows(ledger: WindowLedger, summary: WindowSummary) -> WindowSummary:
    """The summary with its records' outcomes and pending keys, read from the ledger's record states:
    what the report's rows are made of. (It holds the window's records in memory; a report of a
    window of millions streams them instead — docs/scale.md.)"""
    records, pending = {}, []
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


def window_report_by_id(ledger: WindowLedger, window_id: str, now: datetime) -> WindowReport:
    info = ledger.window(window_id)
    if info is None:
        raise LookupError(f"no window {window_id}")
    return report_for(ledger, info, now)


def reports_since(ledger: WindowLedger, since: datetime, now: datetime) -> list[WindowReport]:
    """Every window whose capture range ends after ``since``, oldest first."""
    infos = [info for info in ledger.recent_windows(MAX_WINDOWS_SEARCHED) if info.window.end > since]
    return [report_for(ledger, info, now) for info in reversed(infos)]


def latest_report(ledger: WindowLedger, now: datetime) -> WindowReport | None:
    infos = ledger.recent_windows(1)
    return report_for(ledger, infos[0], now) if infos else None


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
    written = []
    for summary in summaries:
        info = summary.info
        if now - info.scheduled_at > retention:
            continue
        report = report_of(with_rows(ledger, summary), now)
        store.save(info.window_id, report.to_json(), report_csv([report]))
        written.append(info.window_id)
    purged = []
    for window_id in store.stored():
        handed_off = handed_off_at(window_id)
        if handed_off is not None and now - handed_off > retention:
            store.delete(window_id)
            purged.append(window_id)
    if written or purged:
        log.info("admin reports: %d written, %d past the retention deleted", len(written), len(purged))
    return Published(tuple(written), tuple(purged))


def handed_off_at(window_id: str) -> datetime | None:
    """The hand-off time a window id ends with (``<start>-<end>.<YYYYmmddTHHMMSSmmm>Z``)."""
    stamp = window_id.rpartition(".")[2]
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
