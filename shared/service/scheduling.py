"""The timer's job: hand the next capture-time window off as bounded listing work."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain.ledger import WindowInfo
from shared.domain.tasks import ListingTask, TranscriptsDueTask
from shared.domain.window import Watermark, Window, next_window
from shared.ports import WatermarkConflict, WatermarkStore, WindowLedger, WorkQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchedulePolicy:
    first_run_lookback: timedelta = timedelta(hours=24)
    max_window: timedelta = timedelta(days=31)
    slice_length: timedelta = timedelta(hours=1)
    settle: timedelta = timedelta(0)
    overlap: timedelta = timedelta(0)
    # Daily transcript mode: when, after the hand-off, to compose the days that are over.
    transcript_delay: timedelta | None = None


def schedule_window(
    now: datetime,
    *,
    watermarks: WatermarkStore,
    listing_queue: WorkQueue,
    ledger: WindowLedger,
    policy: SchedulePolicy = SchedulePolicy(),
    transcripts_queue: WorkQueue | None = None,
) -> WindowInfo | None:
    """Enqueue one listing task per slice of the next window, then advance the watermark.

    The watermark moves only after every slice is on the queue: if anything fails first, the
    next run hands the same capture time off again and idempotent import absorbs the repeats.
    Returns the window handed off, or None when nothing new was captured.
    """
    watermark, version = watermarks.read()
    window = next_window(
        watermark, now, first_run_lookback=policy.first_run_lookback, max_length=policy.max_window,
        settle=policy.settle, overlap=policy.overlap,
    )
    if window is None:
        log.info("no new capture time since the watermark; nothing to hand off")
        return None
    info = hand_off(window, now, listing_queue=listing_queue, ledger=ledger, policy=policy,
                    transcripts_queue=transcripts_queue)
    try:
        watermarks.advance(Watermark(window.end, info.window_id), version)
    except WatermarkConflict:
        # Another run advanced it first (two timers, or a manual backfill). What we enqueued
        # overlaps its work; idempotent import makes the overlap harmless.
        log.warning("window %s: the watermark moved under us; left as the other run set it", info.window_id)
        return info
    log.info("window %s handed off as %d listing slices", info.window_id, info.slice_count)
    return info


def hand_off(
    window: Window,
    now: datetime,
    *,
    listing_queue: WorkQueue,
    ledger: WindowLedger,
    policy: SchedulePolicy,
    transcripts_queue: WorkQueue | None = None,
) -> WindowInfo:
    """Queue one listing task per slice of ``window`` (and, in daily transcript mode, the task
    that composes its days), then open the window in the ledger. The watermark is the caller's."""
    slices = window.slices(policy.slice_length)
    info = WindowInfo(window, len(slices), now)
    for slice_ in slices:
        listing_queue.send(ListingTask.first_page(info.window_id, slice_).model_dump(mode="json"))
    if transcripts_queue is not None and policy.transcript_delay is not None:
        # Queued with the listing work, before the watermark moves: a window's transcripts can
        # never be forgotten by a run that fails half-way.
        transcripts_queue.send(
            TranscriptsDueTask(window_id=info.window_id, window_end=window.end, handed_off_at=now)
            .model_dump(mode="json"),
            delay_seconds=int(policy.transcript_delay.total_seconds()),
        )
    # Opened only once every slice is queued: a hand-off that fails half-way leaves no window that
    # could never reconcile; its slices' records are listed again by the next run and skipped there.
    ledger.open_window(info)
    return info
