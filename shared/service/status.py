"""What the status endpoint and the CLI show: recent windows, reconciled or not, and queue depths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.domain.ledger import WindowSummary, summarize
from shared.ports import WindowLedger


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


def build_status(ledger: WindowLedger, queue_depths: Mapping[str, int], *, limit: int) -> dict[str, Any]:
    summaries = recent_summaries(ledger, limit)
    return {
        "windows": [s.to_json() for s in summaries],
        "queues": dict(queue_depths),
        "unreconciled_windows": [s.info.window_id for s in summaries if not s.reconciled],
    }
