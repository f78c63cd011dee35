"""The table ledger of a deployment whose earlier version kept windows in append blobs.

New windows open in the table. A window handed off before the switch stays where it began: its
pages, outcomes, counts and report keep going to and coming from the append blobs until it
reconciles, so a switch in the middle of a window neither splits it between two stores nor leaves
it unwatched. ``recent_windows`` lists both, by hand-off. ``ledger-migrate`` can copy the finished
blob windows into the table afterwards (then the table's copy is the one read). A deployment that
never had blob windows (asked once per process) reads nothing from the blobs but that one listing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from shared.domain.ledger import handoff_order

if TYPE_CHECKING:
    from shared.domain.ledger import OutcomeEntry, PageEntry, WindowInfo, WindowSummary
    from shared.domain.tally import RecordState
    from shared.ports import WindowLedger


class TableLedgerAfterBlobs:
    """``WindowLedger``: the table's, and the append blobs' for the windows that began there."""

    def __init__(self, table: WindowLedger, blob: WindowLedger) -> None:
        self._table = table
        self._blob = blob
        self._home: dict[str, WindowLedger] = {}
        self._lock = threading.Lock()
        self._blob_windows: bool | None = None

    def open_window(self, info: WindowInfo) -> None:
        self._table.open_window(info)
        with self._lock:
            self._home[info.window_id] = self._table

    def window(self, window_id: str) -> WindowInfo | None:
        return self._for(window_id).window(window_id)

    def recent_windows(self, limit: int) -> list[WindowInfo]:
        newest = {info.window_id: info for info in self._table.recent_windows(limit)}
        if self._any_blob_windows():
            for info in self._blob.recent_windows(limit):
                newest.setdefault(info.window_id, info)
        ordered = sorted(newest, key=handoff_order, reverse=True)[:limit]
        return [newest[window_id] for window_id in ordered]

    def record_page(self, window_id: str, entry: PageEntry) -> None:
        self._for(window_id).record_page(window_id, entry)

    def page_listed(self, window_id: str, slice_id: str, page: int) -> bool:
        return self._for(window_id).page_listed(window_id, slice_id, page)

    def mark_page_listed(self, window_id: str, slice_id: str, page: int) -> None:
        self._for(window_id).mark_page_listed(window_id, slice_id, page)

    def record_outcome(self, window_id: str, entry: OutcomeEntry) -> None:
        self._for(window_id).record_outcome(window_id, entry)

    def summary(self, window_id: str) -> WindowSummary | None:
        return self._for(window_id).summary(window_id)

    def record_states(self, window_id: str) -> Iterator[tuple[str, RecordState]]:
        return self._for(window_id).record_states(window_id)

    def record_state(self, window_id: str, record_key: str) -> RecordState:
        return self._for(window_id).record_state(window_id, record_key)

    def records_with_outcome(self, window_id: str, record_keys: Iterable[str]) -> set[str]:
        return self._for(window_id).records_with_outcome(window_id, record_keys)

    def pages(self, window_id: str) -> list[PageEntry]:
        return self._for(window_id).pages(window_id)

    def outcomes(self, window_id: str) -> list[OutcomeEntry]:
        return self._for(window_id).outcomes(window_id)

    def _for(self, window_id: str) -> WindowLedger:
        with self._lock:
            home = self._home.get(window_id)
        if home is not None:
            return home
        if self._table.window(window_id) is not None:
            # In the table for good (opened there, or copied by ledger-migrate): remembered.
            with self._lock:
                self._home[window_id] = self._table
            return self._table
        if self._any_blob_windows() and self._blob.window(window_id) is not None:
            # Not remembered: once ledger-migrate has copied it, every process writes the table's
            # copy from its next call, so no outcome goes to a copy nobody reads.
            return self._blob
        return self._table  # no such window (yet): it may open in a moment

    def _any_blob_windows(self) -> bool:
        if self._blob_windows is None:
            self._blob_windows = bool(self._blob.recent_windows(1))
        return self._blob_windows
