"""Sort more lines than memory should hold: sorted runs spilled to temporary files, merged lazily.

A window's report lists its records in time order, and a window can hold ten million of them; the
ledger hands them over in its own order (by shard and key). Holding them all to sort would make a
report's memory grow with the window. Runs of at most ``run_size`` lines are sorted in memory and
written to a temporary file; reading merges the runs, holding one line per run. The merged order
can be read more than once (the JSON and the CSV of one report), and the files go when the sorter
is closed.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Iterator
from typing import IO

RUN_SIZE = 20_000
# Runs open at once, at most: past this many, the runs are merged into one (a window of 10 million
# pairs makes 500 runs, and a process may hold about 1,024 open files).
MAX_RUNS = 128


class SpooledSort:
    """Pairs of (sort key, payload), both single-line strings, read back in key order.

    ``add`` after the first read is refused: a reader must not see half of a later write."""

    def __init__(self, run_size: int | None = None) -> None:
        run_size = RUN_SIZE if run_size is None else run_size
        if run_size < 1:
            raise ValueError("run_size must be at least 1")
        self._run_size = run_size
        self._buffer: list[tuple[str, str]] = []
        self._runs: list[IO[str]] = []
        self._sealed = False
        self._reading = False
        self._closed = False
        self.count = 0

    def add(self, key: str, payload: str) -> None:
        if self._sealed:
            raise RuntimeError("the sort has been read; nothing can be added")
        if "\n" in key or "\t" in key or "\n" in payload:
            raise ValueError("keys and payloads are single lines (a key without tabs)")
        self._buffer.append((key, payload))
        self.count += 1
        if len(self._buffer) >= self._run_size:
            self._spill()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        if self._closed:
            raise RuntimeError("the sort is closed")
        if self._reading:
            # The runs' files have one position each: two merges at once would steal lines.
            raise RuntimeError("the sort is being read already; read it to the end first")
        self._sealed = True
        if not self._runs:
            # Everything fitted in one run: no file, the buffer sorted in place once.
            self._buffer.sort()
            return iter(list(self._buffer))
        if self._buffer:
            self._spill()
        # Taken now, not at the first line read: two readers made before either reads must not pass.
        self._reading = True
        return self._merged()

    def _merged(self) -> Iterator[tuple[str, str]]:
        try:
            yield from heapq.merge(*(self._read(run) for run in self._runs))
        finally:
            self._reading = False

    def close(self) -> None:
        self._closed = True
        for run in self._runs:
            run.close()
        self._runs.clear()
        self._buffer.clear()

    def __enter__(self) -> SpooledSort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spill(self) -> None:
        self._buffer.sort()
        # Deleted on close, or by the system when the process dies; never under a name anyone chose.
        run = tempfile.TemporaryFile("w+", encoding="utf-8", newline="\n")
        run.writelines(f"{key}\t{payload}\n" for key, payload in self._buffer)
        self._buffer.clear()
        self._runs.append(run)
        if len(self._runs) >= MAX_RUNS:
            self._merge_runs()

    def _merge_runs(self) -> None:
        merged = tempfile.TemporaryFile("w+", encoding="utf-8", newline="\n")
        merged.writelines(f"{key}\t{payload}\n" for key, payload in heapq.merge(*(self._read(r) for r in self._runs)))
        for run in self._runs:
            run.close()
        self._runs = [merged]

    @staticmethod
    def _read(run: IO[str]) -> Iterator[tuple[str, str]]:
        run.seek(0)
        for line in run:
            key, _, payload = line.rstrip("\n").partition("\t")
            yield key, payload
