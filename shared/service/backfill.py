"""Backfill: hand a past range of capture time off again, as windows of their own, without
touching the watermark. Records already archived are skipped as duplicates; anything the
scheduled windows missed (a mapping fixed later, a TeleMessage outage, a new mailbox) is archived.
The work is done by the function app, as for a scheduled window; the CLI follows it in the ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain.ledger import WindowInfo
from shared.domain.window import Window
from shared.ports import WindowLedger, WorkQueue
from shared.service.scheduling import SchedulePolicy, hand_off

log = logging.getLogger(__name__)


class BackfillRangeError(ValueError):
    """A range that cannot be backfilled, said in words."""


def backfill_windows(start: datetime, end: datetime, *, now: datetime, policy: SchedulePolicy) -> list[Window]:
    """The range cut into windows no longer than MAX_WINDOW_DAYS, as the timer would cut it."""
    if end <= start:
        raise BackfillRangeError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    settled = now - policy.settle
    if end > settled:
        raise BackfillRangeError(
            f"--to ({end.isoformat()}) is later than the capture time that has settled ({settled.isoformat()}): "
            "TeleMessage may still be indexing records there; the timer lists it when it has settled"
        )
    windows: list[Window] = []
    cursor = start
    while cursor < end:
        stop = min(cursor + policy.max_window, end)
        windows.append(Window(cursor, stop))
        cursor = stop
    return windows


def start_backfill(
    windows: Sequence[Window], now: datetime, *, listing_queue: WorkQueue, ledger: WindowLedger,
    policy: SchedulePolicy, transcripts_queue: WorkQueue | None = None,
) -> list[WindowInfo]:
    infos: list[WindowInfo] = []
    for window in windows:
        infos.append(hand_off(window, now, listing_queue=listing_queue, ledger=ledger, policy=policy,
                              transcripts_queue=transcripts_queue))
        log.info("backfill window %s handed off as %d listing slices", infos[-1].window_id, infos[-1].slice_count)
        now += timedelta(milliseconds=1)  # each window its own id, even within one millisecond
    return infos


@dataclass(frozen=True)
class BackfillProgress:
    slices: int
    slices_listed: int
    listed: int
    accounted: int  # listed records with an outcome (imported, skipped or poisoned)
    imported: int
    skipped_duplicates: int
    poisoned: int
    windows: int
    windows_reconciled: int

    @property
    def done(self) -> bool:
        return self.windows_reconciled == self.windows

    def to_json(self) -> dict[str, int | bool]:
        return {**self.__dict__, "done": self.done}


def backfill_progress(ledger: WindowLedger, infos: Sequence[WindowInfo]) -> BackfillProgress:
    totals = dict(slices=0, slices_listed=0, listed=0, accounted=0, imported=0, skipped_duplicates=0,
                  poisoned=0, windows_reconciled=0)
    for info in infos:
        summary = ledger.summary(info.window_id)
        if summary is None:
            continue
        totals["slices"] += info.slice_count
        totals["slices_listed"] += min(summary.slices_listed, info.slice_count)
        totals["listed"] += summary.listed
        totals["accounted"] += summary.listed - summary.pending - summary.awaiting_transcript
        totals["imported"] += summary.imported
        totals["skipped_duplicates"] += summary.skipped_duplicates
        totals["poisoned"] += sum(summary.poisoned.values())
        totals["windows_reconciled"] += summary.reconciled
    return BackfillProgress(windows=len(infos), **totals)
