"""Timer: hand the next window off as listing work, then advance the watermark."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import azure.functions as func

from shared.composition import get_container
from shared.service.evidence_chain import seal_reconciled
from shared.service.poison import account_moved_items
from shared.service.reports import publish_reports
from shared.service.scheduling import schedule_window
from shared.service.status import flag_overdue_windows, recent_summaries

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(schedule="%ARCHIVE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def schedule_archive_window(timer: func.TimerRequest) -> None:
    if timer.past_due:
        # Missed runs are not replayed one by one; the window from the watermark covers them.
        log.info("timer is past due; the window from the watermark covers the missed time")
    container = get_container()
    now = datetime.now(UTC)
    schedule_window(
        now,
        watermarks=container.watermarks,
        listing_queue=container.listing_queue,
        ledger=container.ledger,
        policy=container.schedule_policy,
        transcripts_queue=container.transcripts_queue if container.settings.daily_transcripts else None,
    )
    # Records the host moved to poison after exhausted retries are accounted in their windows, so
    # those reconcile truthfully; windows that still do not, long after their hand-off, are flagged.
    account_moved_items(container.poison_queues(), container.ledger)
    limit = container.settings.status_recent_windows
    summaries = recent_summaries(container.ledger, limit)  # read once for both
    flag_overdue_windows(container.ledger, now, limit=limit, summaries=summaries)
    try:
        publish_reports(
            container.ledger, container.reports, now, limit=limit, summaries=summaries,
            retention=timedelta(days=container.settings.report_retention_days),
        )
    except Exception:
        # The hand-off above is done and durable; a report that failed to store is rebuilt from the
        # ledger by the next run (and `report` reads the ledger directly meanwhile).
        log.exception("admin reports were not stored this run; the next run stores them")
    # Windows finished since the last run become links of the chain of evidence (docs/evidence.md):
    # their final reports and manifests kept under WORM. One window's failure leaves it for the next run.
    seal_reconciled(container.ledger, container.evidence, container.evidence_chain, summaries, now)
