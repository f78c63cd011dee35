"""A window's counts kept as its records are listed and their outcomes arrive, so that status,
reports and the timer read a handful of counters instead of every outcome of the window.

Why it is exact: a record's contribution to the counts depends only on its state — listed or not,
and its outcomes folded so far (``merge_outcomes``, the rule ``summarize`` folds by). Each page
entry or outcome changes one record's state; the window's counters change by the difference of
that record's contribution before and after. A store that writes the record's new state and the
counters' change together, atomically, with a compare-and-swap on both, keeps the counters equal to
``summarize`` over every entry so far — whatever the repeats (a repeat leaves the state, so the
change is zero) and however many workers write at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC
from typing import Any

from shared.domain.ledger import (
    OutcomeEntry,
    PageEntry,
    RecordOutcome,
    WindowInfo,
    WindowSummary,
    fold_outcomes,
    merge_outcomes,
    summarize,
)


@dataclass(frozen=True)
class RecordState:
    """One record of a window as the ledger knows it."""

    listed: bool = False
    outcome: OutcomeEntry | None = None  # every outcome so far, folded

    def with_listing(self) -> RecordState:
        return self if self.listed else replace(self, listed=True)

    def with_outcome(self, entry: OutcomeEntry) -> RecordState:
        folded = entry if self.outcome is None else merge_outcomes(self.outcome, entry)
        return replace(self, outcome=folded)


@dataclass(frozen=True)
class Tally:
    """Counts of records (and record × mailbox pairs), additive: a shard's, a window's."""

    listed: int = 0
    pending: int = 0  # listed, no outcome yet
    fanout: int = 0
    imported: int = 0
    skipped_duplicates: int = 0
    partially_imported: int = 0
    awaiting_transcript: int = 0
    recaptured: int = 0
    poisoned: Mapping[str, int] = field(default_factory=dict[str, int])
    # Per UTC day of the outcome (ISO date): records, imported, skipped_duplicates, poisoned — the
    # status page's daily volume, kept like every other count.
    days: Mapping[str, Mapping[str, int]] = field(default_factory=dict[str, Mapping[str, int]])

    def __post_init__(self) -> None:
        # Zero counts are dropped, so two tallies of the same counts compare equal however made.
        object.__setattr__(self, "poisoned", {k: v for k, v in sorted(self.poisoned.items()) if v})
        object.__setattr__(self, "days", _combine_days(self.days, {}, 1))

    def __add__(self, other: Tally) -> Tally:
        return self._combine(other, 1)

    def __sub__(self, other: Tally) -> Tally:
        return self._combine(other, -1)

    def _combine(self, other: Tally, sign: int) -> Tally:
        poisoned = Counter(self.poisoned)
        for reason, count in other.poisoned.items():
            poisoned[reason] += sign * count
        return Tally(
            listed=self.listed + sign * other.listed,
            pending=self.pending + sign * other.pending,
            fanout=self.fanout + sign * other.fanout,
            imported=self.imported + sign * other.imported,
            skipped_duplicates=self.skipped_duplicates + sign * other.skipped_duplicates,
            partially_imported=self.partially_imported + sign * other.partially_imported,
            awaiting_transcript=self.awaiting_transcript + sign * other.awaiting_transcript,
            recaptured=self.recaptured + sign * other.recaptured,
            poisoned={reason: count for reason, count in sorted(poisoned.items()) if count},
            days=_combine_days(self.days, other.days, sign),
        )

    @property
    def is_zero(self) -> bool:
        return self == Tally()

    def to_json(self) -> dict[str, Any]:
        return {
            "listed": self.listed, "pending": self.pending, "fanout": self.fanout, "imported": self.imported,
            "skipped_duplicates": self.skipped_duplicates, "partially_imported": self.partially_imported,
            "awaiting_transcript": self.awaiting_transcript, "recaptured": self.recaptured,
            "poisoned": dict(sorted(self.poisoned.items())),
            "days": {day: dict(counts) for day, counts in sorted(self.days.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tally:
        return cls(
            listed=int(data.get("listed", 0)), pending=int(data.get("pending", 0)),
            fanout=int(data.get("fanout", 0)), imported=int(data.get("imported", 0)),
            skipped_duplicates=int(data.get("skipped_duplicates", 0)),
            partially_imported=int(data.get("partially_imported", 0)),
            awaiting_transcript=int(data.get("awaiting_transcript", 0)),
            recaptured=int(data.get("recaptured", 0)),
            poisoned={str(k): int(v) for k, v in sorted(dict(data.get("poisoned", {})).items()) if int(v)},
            days={str(day): {str(k): int(v) for k, v in counts.items()}
                  for day, counts in sorted(dict(data.get("days", {})).items())},
        )


def contribution(state: RecordState) -> Tally:
    """What one record adds to its window's counts (``summarize``'s rules: an outcome counts only
    for a record that was listed)."""
    if not state.listed:
        return Tally()
    entry = state.outcome
    if entry is None:
        return Tally(listed=1, pending=1)
    day = entry.at.astimezone(UTC).date().isoformat()
    if entry.outcome is RecordOutcome.POISONED:
        return Tally(listed=1, poisoned={entry.reason or "unknown": 1}, days={day: {"poisoned": 1}})
    if entry.outcome is RecordOutcome.AWAITING_TRANSCRIPT:
        return Tally(listed=1, awaiting_transcript=1)
    imported = sum(m.outcome is RecordOutcome.IMPORTED for m in entry.mailboxes)
    skipped = sum(m.outcome is RecordOutcome.SKIPPED_DUPLICATE for m in entry.mailboxes)
    return Tally(
        listed=1, fanout=len(entry.mailboxes), imported=imported, skipped_duplicates=skipped,
        partially_imported=int(entry.partial), recaptured=int(entry.recapture_of is not None and imported > 0),
        days={day: {"records": 1, "imported": imported, "skipped_duplicates": skipped}},
    )


def _combine_days(a: Mapping[str, Mapping[str, int]], b: Mapping[str, Mapping[str, int]],
                  sign: int) -> dict[str, dict[str, int]]:
    days: dict[str, Counter[str]] = {day: Counter(counts) for day, counts in a.items()}
    for day, counts in b.items():
        into = days.setdefault(day, Counter())
        for name, count in counts.items():
            into[name] += sign * count
    cleaned = {day: {k: v for k, v in sorted(c.items()) if v} for day, c in sorted(days.items())}
    return {day: counts for day, counts in cleaned.items() if counts}


def change(before: RecordState, after: RecordState) -> Tally:
    """How the window's counters move when one record goes from ``before`` to ``after``."""
    return contribution(after) - contribution(before)


def summary_from_tally(info: WindowInfo, tally: Tally, *, slices_listed: int,
                       receipts: Mapping[str, int] | None = None) -> WindowSummary:
    """The window's summary from its counters: what status and the timer need, in constant memory
    (no per-record rows; a report streams those from the store)."""
    return WindowSummary(
        info=info, listed=tally.listed, fanout=tally.fanout, imported=tally.imported,
        skipped_duplicates=tally.skipped_duplicates, partially_imported=tally.partially_imported,
        poisoned=dict(tally.poisoned), pending=tally.pending, slices_listed=slices_listed,
        awaiting_transcript=tally.awaiting_transcript, recaptured=tally.recaptured, receipts=dict(receipts or {}),
        daily={day: dict(counts) for day, counts in tally.days.items()},
    )


def states_of(pages: Iterable[PageEntry], outcomes: Iterable[OutcomeEntry]) -> dict[str, RecordState]:
    """Every record's state from a window's entries (the stores that keep entries, not states)."""
    states: dict[str, RecordState] = {}
    for page in pages:
        for key in page.record_keys:
            states[key] = states.get(key, RecordState()).with_listing()
    for entry in outcomes:
        states[entry.record_key] = states.get(entry.record_key, RecordState()).with_outcome(entry)
    return states


class ReadsFromEntries:
    """The reads of a ledger that keeps entries (pages, outcomes) rather than record states: each
    derived by reading the whole window (memory grows with it; the table ledger keeps states and
    counters instead). A ledger provides ``window``, ``pages`` and ``outcomes``."""

    def window(self, window_id: str) -> WindowInfo | None:
        raise NotImplementedError

    def pages(self, window_id: str) -> list[PageEntry]:
        raise NotImplementedError

    def outcomes(self, window_id: str) -> list[OutcomeEntry]:
        raise NotImplementedError

    def summary(self, window_id: str) -> WindowSummary | None:
        info = self.window(window_id)
        return None if info is None else summarize(info, self.pages(window_id), self.outcomes(window_id))

    def record_states(self, window_id: str) -> Iterator[tuple[str, RecordState]]:
        yield from states_of(self.pages(window_id), self.outcomes(window_id)).items()

    def record_state(self, window_id: str, record_key: str) -> RecordState:
        return states_of(self.pages(window_id), self.outcomes(window_id)).get(record_key, RecordState())

    def records_with_outcome(self, window_id: str, record_keys: Iterable[str]) -> set[str]:
        folded = fold_outcomes(self.outcomes(window_id))  # one read of the window, whatever the keys
        return {key for key in record_keys if key in folded}
