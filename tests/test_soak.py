"""The soak (bench/soak.py): its verdict catches what it exists to catch, and the short run with
every kind of fault archives each record once, loses none and reconciles."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from bench.soak import SoakOptions, expected_routing, reconcile, run_soak
from shared.domain.ledger import (
    MailboxResult,
    MappingRule,
    OutcomeEntry,
    PageEntry,
    RecordOutcome,
    WindowInfo,
    summarize,
)
from shared.domain.records import record_key
from shared.local.traffic.day import generate_day

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
MAX_ITEM_BYTES = 10 * 1024 * 1024
# Never served: the Graph client keeps itself within Exchange's 4 requests in flight per mailbox.
NOT_EXPECTED_TO_FIRE = {"graph_429_concurrency"}


def _a_perfect_run():
    """A day of traffic, a ledger and mailboxes exactly as a correct run would leave them."""
    traffic = generate_day(ANCHOR)
    routing = expected_routing(traffic)
    info = WindowInfo(traffic.window, 1, ANCHOR)
    keys = tuple(record_key(r["messageId"]) for r in traffic.records)
    outcomes = []
    items: Counter[tuple[str, str | None]] = Counter()
    for record in traffic.records:
        message_id = record["messageId"]
        key = record_key(message_id)
        mailboxes = sorted(routing[message_id])
        if not mailboxes or sum(a.get("size", 0) for a in record["attachments"]) > MAX_ITEM_BYTES:
            reason = "no_mapping" if not mailboxes else "too_big"
            outcomes.append(OutcomeEntry(key, message_id, RecordOutcome.POISONED, ANCHOR, reason=reason))
            continue
        results = tuple(MailboxResult(m, RecordOutcome.IMPORTED, MappingRule.CSV) for m in mailboxes)
        outcomes.append(OutcomeEntry(key, message_id, RecordOutcome.IMPORTED, ANCHOR, mailboxes=results))
        items.update((m, message_id) for m in mailboxes)
    summary = summarize(info, [PageEntry("slice", 0, keys, True)], outcomes)
    return traffic, summary, set(keys), items


def _verdict(traffic, summary, listed, items):
    return reconcile(traffic, summary, listed, items, corrupted=set(), host_poisoned=set(),
                     max_item_bytes=MAX_ITEM_BYTES)


def test_the_verdict_of_a_perfect_run_finds_nothing_wrong():
    report = _verdict(*_a_perfect_run())
    assert report["duplicates"] == report["lost"] == report["unexpected_poison"] == report["misrouted_items"] == 0
    assert report["archived_but_poison_expected"] == report["poisoned_with_items"] == 0
    assert report["window"]["reconciled"]
    assert report["poisoned_as_expected"] == {"no_mapping": report["window"]["poisoned"]["no_mapping"], "too_big": 1}


def test_the_verdict_counts_a_second_item_as_a_duplicate_and_a_missing_item_as_a_lost_record():
    traffic, summary, listed, items = _a_perfect_run()
    first, second = sorted(items)[:2]
    items[first] += 1
    del items[second]
    report = _verdict(traffic, summary, listed, items)
    assert (report["duplicates"], report["duplicated_pairs"]) == (1, 1)
    assert (report["lost"], report["lost_pairs"]) == (1, 1)


def test_the_verdict_counts_records_never_listed_or_without_an_outcome_as_lost():
    traffic, summary, listed, items = _a_perfect_run()
    keys = sorted(listed)
    unlisted, unaccounted = keys[0], keys[1]
    listed.discard(unlisted)
    del summary.records[unaccounted]
    report = _verdict(traffic, summary, listed, items)
    assert (report["not_listed"], report["unaccounted"], report["lost"]) == (1, 1, 2)


def test_the_verdict_flags_an_item_in_a_mailbox_the_record_does_not_belong_in():
    traffic, summary, listed, items = _a_perfect_run()
    _, message_id = next(iter(items))
    items[("it.helpdesk@contoso.example", message_id)] += 1  # a mailbox no participant maps to
    assert _verdict(traffic, summary, listed, items)["misrouted_items"] == 1


def test_the_verdict_flags_a_poisoned_record_that_left_an_item_behind():
    traffic, summary, listed, items = _a_perfect_run()
    too_big = next(r for r in traffic.records if sum(a.get("size", 0) for a in r["attachments"]) > MAX_ITEM_BYTES)
    mailbox = sorted(expected_routing(traffic)[too_big["messageId"]])[0]
    items[(mailbox, too_big["messageId"])] += 1
    assert _verdict(traffic, summary, listed, items)["poisoned_with_items"] == 1


@pytest.mark.integration
def test_a_short_soak_with_every_kind_of_fault_archives_each_record_once_and_loses_none(tmp_path):
    report = run_soak(SoakOptions(records=1400, state_dir=tmp_path / "soak"))

    window = report["window"]
    assert report["drain_error"] is None and report["fault_injector_errors"] == []
    assert report["duplicates"] == 0
    assert report["lost"] == 0
    assert window["reconciled"] and window["pending"] == 0 and window["listed"] == report["generated"]
    assert report["unexpected_poison"] == report["misrouted_items"] == report["poisoned_with_items"] == 0
    faults = report["faults"]
    corrupted_and_poisoned = faults["corrupt_claim_checks"] - report["corrupted_archived_from_relisted_copy"]
    assert window["poisoned"]["invalid_item"] == corrupted_and_poisoned
    assert [kind for kind, count in faults.items() if count == 0 and kind not in NOT_EXPECTED_TO_FIRE] == []
    assert report["passed"]
