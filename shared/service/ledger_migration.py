"""Windows of the append-blob ledger (earlier versions) copied into the table ledger, so that an
upgraded deployment still reports, watches and reconciles the windows it handed off before.

Each window is replayed through the target's own writes — the window, every page, every outcome —
so the target's counters come out exactly as if it had been there all along. Copying again is safe
for the counts (a repeat changes no state); each run adds another copy of each outcome's evidence
entity, so run it once after the upgrade (a window the blob ledger no longer has is left alone)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.ports import WindowLedger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migrated:
    windows: int
    pages: int
    outcomes: int


def copy_windows(source: WindowLedger, target: WindowLedger, *, limit: int) -> Migrated:
    windows = pages = outcomes = 0
    for info in source.recent_windows(limit):
        target.open_window(info)
        for page in source.pages(info.window_id):
            target.record_page(info.window_id, page)
            pages += 1
        for entry in source.outcomes(info.window_id):
            target.record_outcome(info.window_id, entry)
            outcomes += 1
        windows += 1
        log.info("ledger: window %s copied", info.window_id)
    return Migrated(windows, pages, outcomes)
