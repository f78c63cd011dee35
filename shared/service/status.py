"""What the status endpoint and the CLI show: recent windows, reconciled or not (and why not),
queue depths, poisoned records by reason and the daily volume. A window still unreconciled long after
its hand-off is *overdue*: something is stuck or lost, and it is flagged loudly (an ERROR log line per
window at every timer run, a non-zero exit from ``status``)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.domain.ledger import WindowSummary
from shared.domain.window import isoformat_z
from shared.ports import WindowLedger

log = logging.getLogger(__name__)

# A day's window normally reconciles within minutes; throttling and retries can stretch that to
# hours. Past this, waiting longer will not fix it: a human must look.
RECONCILE_GRACE = timedelta(hours=6)

# The daily volume lists every day between the first and the last with an outcome (days without
# one as zeros) when they span at most this many days; beyond that only the days with outcomes.
DAILY_VOLUME_MAX_SPAN_DAYS = 92


def window_summary(ledger: WindowLedger, window_id: str) -> WindowSummary:
    summary = ledger.summary(window_id)
    if summary is None:
        raise LookupError(f"no window {window_id}")
    return summary


def recent_summaries(ledger: WindowLedger, limit: int) -> list[WindowSummary]:
    summaries = (ledger.summary(info.window_id) for info in ledger.recent_windows(limit))
    return [summary for summary in summaries if summary is not None]


def problems(summary: WindowSummary) -> list[str]:
    """Why a window does not reconcile, in words an operator can act on."""
    found: list[str] = []
    if not summary.listing_complete:
        found.append(
            f"listing incomplete: {summary.slices_listed} of {summary.info.slice_count} slices finished "
            "(see the listing queue and listing-poison)"
        )
    if summary.pending:
        found.append(f"{summary.pending} listed record(s) without an outcome (see the items queue and items-poison)")
    if summary.awaiting_transcript:
        found.append(f"{summary.awaiting_transcript} record(s) awaiting their day's transcript")
    if summary.fanout != summary.imported + summary.skipped_duplicates:
        found.append("fan-out does not equal imported + skipped")
    return found


def is_overdue(summary: WindowSummary, now: datetime, grace: timedelta = RECONCILE_GRACE) -> bool:
    return not summary.reconciled and now - summary.info.scheduled_at > grace


def build_status(
    ledger: WindowLedger, queue_depths: Mapping[str, int], *, limit: int,
    now: datetime | None = None, grace: timedelta = RECONCILE_GRACE,
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    summaries = recent_summaries(ledger, limit)
    windows: list[dict[str, Any]] = []
    for summary in summaries:
        windows.append({
            **summary.to_json(), "problems": problems(summary), "overdue": is_overdue(summary, now, grace),
        })
    return {
        "windows": windows,
        "queues": dict(queue_depths),
        "unreconciled_windows": [s.info.window_id for s in summaries if not s.reconciled],
        "overdue_windows": [s.info.window_id for s in summaries if is_overdue(s, now, grace)],
        "poisoned_by_reason": poisoned_by_reason(summaries),
        "daily_volume": daily_volume(summaries),
        "overdue_after_hours": grace.total_seconds() / 3600,
        "generated_at": isoformat_z(now),
    }


def poisoned_by_reason(summaries: Iterable[WindowSummary]) -> dict[str, int]:
    """Poisoned records of the given windows, per reason (most first, then by name)."""
    total: Counter[str] = Counter()
    for summary in summaries:
        total.update(summary.poisoned)
    return dict(sorted(total.items(), key=lambda item: (-item[1], item[0])))


def daily_volume(summaries: Iterable[WindowSummary]) -> list[dict[str, Any]]:
    """Per UTC day on which outcomes were recorded (``OutcomeEntry.at``), oldest first: records archived
    (imported or skipped as duplicates), pairs imported and skipped, records poisoned. A record that two
    windows listed (a re-list) counts in each, as the windows count it."""
    days: dict[date, Counter[str]] = {}
    for summary in summaries:
        for day, counts in summary.daily.items():
            days.setdefault(date.fromisoformat(day), Counter()).update(counts)
    if days:
        first, last = min(days), max(days)
        if (last - first).days < DAILY_VOLUME_MAX_SPAN_DAYS:
            for offset in range((last - first).days + 1):
                days.setdefault(first + timedelta(days=offset), Counter())
    return [
        {
            "date": day.isoformat(),
            "records": counts["records"],
            "imported": counts["imported"],
            "skipped_duplicates": counts["skipped_duplicates"],
            "poisoned": counts["poisoned"],
        }
        for day, counts in sorted(days.items())
    ]


def flag_overdue_windows(
    ledger: WindowLedger, now: datetime, *, limit: int, grace: timedelta = RECONCILE_GRACE,
    summaries: list[WindowSummary] | None = None,
) -> list[WindowSummary]:
    """Log an ERROR for every recent window that should have reconciled by now and has not.
    ``summaries``: the recent windows' summaries when the caller has read them already."""
    if summaries is None:
        summaries = recent_summaries(ledger, limit)
    overdue = [s for s in summaries if is_overdue(s, now, grace)]
    for summary in overdue:
        log.error(
            "window %s DOES NOT RECONCILE %s after its hand-off: %s",
            summary.info.window_id, now - summary.info.scheduled_at, "; ".join(problems(summary)),
        )
    return overdue
