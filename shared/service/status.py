"""What the status endpoint and the CLI show: recent windows, reconciled or not (and why not),
and queue depths. A window still unreconciled long after its hand-off is *overdue*: something is
stuck or lost, and it is flagged loudly (an ERROR log line per window at every timer run, a
non-zero exit from ``status``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.ledger import WindowSummary, summarize
from shared.ports import WindowLedger

log = logging.getLogger(__name__)

# A day's window normally reconciles within minutes; throttling and retries can stretch that to
# hours. Past this, waiting longer will not fix it: a human must look.
RECONCILE_GRACE = timedelta(hours=6)


def window_summary(ledger: WindowLedger, window_id: str) -> WindowSummary:
    info = ledger.window(window_id)
    if info is None:
        raise LookupError(f"no window {window_id}")
    return summarize(info, ledger.pages(window_id), ledger.outcomes(window_id))


def recent_summaries(ledger: WindowLedger, limit: int) -> list[WindowSummary]:
    return [
        summarize(info, ledger.pages(info.window_id), ledger.outcomes(info.window_id))
        for info in ledger.recent_windows(limit)
    ]


def problems(summary: WindowSummary) -> list[str]:
    """Why a window does not reconcile, in words an operator can act on."""
    found = []
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
    windows = []
    for summary in summaries:
        windows.append({
            **summary.to_json(), "problems": problems(summary), "overdue": is_overdue(summary, now, grace),
        })
    return {
        "windows": windows,
        "queues": dict(queue_depths),
        "unreconciled_windows": [s.info.window_id for s in summaries if not s.reconciled],
        "overdue_windows": [s.info.window_id for s in summaries if is_overdue(s, now, grace)],
    }


def flag_overdue_windows(
    ledger: WindowLedger, now: datetime, *, limit: int, grace: timedelta = RECONCILE_GRACE,
) -> list[WindowSummary]:
    """Log an ERROR for every recent window that should have reconciled by now and has not."""
    overdue = [s for s in recent_summaries(ledger, limit) if is_overdue(s, now, grace)]
    for summary in overdue:
        log.error(
            "window %s DOES NOT RECONCILE %s after its hand-off: %s",
            summary.info.window_id, now - summary.info.scheduled_at, "; ".join(problems(summary)),
        )
    return overdue
