"""A window's counters kept incrementally equal ``summarize`` over every entry, whatever the order of
listings and outcomes, their repeats and replays: the foundation for summaries that never read a
whole window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.ledger import (
    MailboxResult,
    MappingRule,
    OutcomeEntry,
    PageEntry,
    RecordOutcome,
    WindowInfo,
    summarize,
)
from shared.domain.tally import RecordState, Tally, change, contribution, summary_from_tally
from shared.domain.window import Window

T0 = datetime(2026, 11, 1, tzinfo=UTC)
INFO = WindowInfo(Window(T0, T0 + timedelta(hours=1)), 1, T0 + timedelta(hours=2))
KEYS = [f"{i:02x}" * 32 for i in range(6)]
MAILBOXES = ["a@contoso.example", "b@contoso.example", "c@contoso.example"]

mailbox_results = st.lists(
    st.builds(MailboxResult, st.sampled_from(MAILBOXES),
              st.sampled_from([RecordOutcome.IMPORTED, RecordOutcome.SKIPPED_DUPLICATE]), st.just(MappingRule.CSV)),
    max_size=3, unique_by=lambda m: m.mailbox,
)


@st.composite
def outcomes(draw):
    kind = draw(st.sampled_from(list(RecordOutcome)))
    at = T0 + timedelta(minutes=draw(st.integers(0, 30)))
    key = draw(st.sampled_from(KEYS))
    if kind is RecordOutcome.POISONED:
        return OutcomeEntry(key, None, kind, at, reason=draw(st.sampled_from(["no_mapping", "too_big", None])))
    if kind is RecordOutcome.AWAITING_TRANSCRIPT:
        return OutcomeEntry(key, None, kind, at)
    return OutcomeEntry(key, None, kind, at, mailboxes=tuple(draw(mailbox_results)), partial=draw(st.booleans()))


# An event is a page listing some records, or one outcome; a page may repeat (a re-listed page).
events = st.lists(st.one_of(
    st.lists(st.sampled_from(KEYS), min_size=1, max_size=3).map(lambda keys: ("page", tuple(keys))),
    outcomes().map(lambda entry: ("outcome", entry)),
), max_size=40)


def incremental(sequence) -> tuple[Tally, dict[str, RecordState]]:
    states: dict[str, RecordState] = {}
    tally = Tally()
    for kind, value in sequence:
        keys = value if kind == "page" else (value.record_key,)
        for key in keys:
            before = states.get(key, RecordState())
            after = before.with_listing() if kind == "page" else before.with_outcome(value)
            tally += change(before, after)
            states[key] = after
    return tally, states


@settings(max_examples=400, deadline=None)
@given(events)
def test_counters_kept_as_entries_arrive_equal_the_summary_of_every_entry(sequence):
    tally, states = incremental(sequence)
    pages = [PageEntry("s", i, value, True) for i, (kind, value) in enumerate(sequence) if kind == "page"]
    whole = summarize(INFO, pages, [value for kind, value in sequence if kind == "outcome"])
    kept = summary_from_tally(INFO, tally, slices_listed=whole.slices_listed)
    assert kept.to_json() == whole.to_json() and kept.daily == whole.daily
    # The counters are the sum of every record's contribution: no drift, however the changes came.
    assert tally == sum((contribution(state) for state in states.values()), Tally())


def test_a_repeated_entry_changes_nothing_and_an_outcome_before_its_listing_counts_once_listed():
    entry = OutcomeEntry(KEYS[0], "m", RecordOutcome.IMPORTED, T0,
                         mailboxes=(MailboxResult(MAILBOXES[0], RecordOutcome.IMPORTED, MappingRule.CSV),))
    unlisted = RecordState().with_outcome(entry)
    assert contribution(unlisted) == Tally()  # not listed in this window (yet): not counted
    listed = unlisted.with_listing()
    day = {"2026-11-01": {"records": 1, "imported": 1, "skipped_duplicates": 0}}
    assert change(unlisted, listed) == Tally(listed=1, fanout=1, imported=1, days=day) - Tally()
    assert change(listed, listed.with_outcome(entry)).is_zero and change(listed, listed.with_listing()).is_zero


def test_a_replay_that_archives_a_poisoned_record_moves_it_between_the_counts():
    poisoned = RecordState(listed=True).with_outcome(OutcomeEntry(KEYS[1], "m", RecordOutcome.POISONED, T0,
                                                                  reason="no_mapping"))
    archived = poisoned.with_outcome(OutcomeEntry(
        KEYS[1], "m", RecordOutcome.IMPORTED, T0 + timedelta(days=1),
        mailboxes=(MailboxResult(MAILBOXES[1], RecordOutcome.IMPORTED, MappingRule.CSV),)))
    assert change(poisoned, archived) == (
        Tally(fanout=1, imported=1, days={"2026-11-02": {"records": 1, "imported": 1}})
        - Tally(poisoned={"no_mapping": 1}, days={"2026-11-01": {"poisoned": 1}}))
    assert (contribution(poisoned) + change(poisoned, archived)) == contribution(archived)
    assert Tally.from_json(contribution(archived).to_json()) == contribution(archived)
