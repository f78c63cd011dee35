"""One contract for every window ledger — the in-memory fake, the append-blob ledger and the table
ledger, the last two on Azurite — so that none promises what another does not do: the same entries,
in any order and repeated, give the same summary and record states; a page is marked listed once;
receipts are counted once; recent windows come by hand-off. The table ledger also keeps its counters
exact under concurrent writers and holds entries far past a single property's size."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.ledger import (
    MailboxResult,
    MappingRule,
    OutcomeEntry,
    PageEntry,
    Receipt,
    RecordOutcome,
    WindowInfo,
    summarize,
)
from shared.domain.tally import states_of
from shared.domain.window import Window
from tests.fakes import MemoryLedger

T0 = datetime(2026, 11, 1, tzinfo=UTC)
INFO = WindowInfo(Window(T0, T0 + timedelta(hours=2)), 2, T0 + timedelta(hours=3))
WID = INFO.window_id


def key(n: int) -> str:
    return f"{n:064x}"


def imported(n: int, *mailboxes: str, at: int = 0, outcome=RecordOutcome.IMPORTED, partial=False) -> OutcomeEntry:
    return OutcomeEntry(key(n), f"m-{n}", RecordOutcome.IMPORTED, T0 + timedelta(minutes=at), partial=partial,
                        mailboxes=tuple(MailboxResult(m, outcome, MappingRule.CSV) for m in mailboxes))


def poisoned(n: int, reason: str, at: int = 0) -> OutcomeEntry:
    return OutcomeEntry(key(n), f"m-{n}", RecordOutcome.POISONED, T0 + timedelta(minutes=at), reason=reason,
                        detail="why")


@pytest.fixture(params=["memory", "blob", "table", "table-after-blobs"])
def ledger(request):
    if request.param == "memory":
        return MemoryLedger()
    azurite = request.getfixturevalue("azurite")
    if request.param == "blob":
        from azure.storage.blob import BlobServiceClient

        from shared.adapters.azure_storage import BlobWindowLedger

        return BlobWindowLedger(BlobServiceClient.from_connection_string(azurite.connection_string), "archive-state")
    from shared.adapters.azure_tables import TableWindowLedger, table_service

    table = TableWindowLedger(table_service(azurite.connection_string), "archiveledger")
    if request.param == "table":
        return table
    # The default deployment's ledger: the table, with windows of an earlier version in the blobs.
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.azure_storage import BlobWindowLedger
    from shared.adapters.ledger_upgrade import TableLedgerAfterBlobs

    return TableLedgerAfterBlobs(
        table, BlobWindowLedger(BlobServiceClient.from_connection_string(azurite.connection_string), "archive-state"))


def entries():
    """Two slices; outcomes before their listing, repeats, a poisoning replayed into an import."""
    return [
        ("outcome", imported(1, "a@x.example", at=1)),  # processed before its page was recorded
        ("page", PageEntry("s1", 0, (key(1), key(2), key(3)), False)),
        ("outcome", imported(2, "a@x.example", "b@x.example", at=2, partial=True)),
        ("outcome", poisoned(3, "no_mapping", at=3)),
        ("page", PageEntry("s1", 1, (key(4),), True)),
        ("page", PageEntry("s1", 1, (key(4),), True)),  # a page recorded twice
        ("outcome", imported(2, "a@x.example", at=4, outcome=RecordOutcome.SKIPPED_DUPLICATE)),  # redelivered
        ("outcome", imported(3, "c@x.example", at=50)),  # the replay after a mapping fix
        ("page", PageEntry("s2", 0, (key(5), key(1)), True)),  # key 1 re-listed by an overlapping slice
        ("outcome", OutcomeEntry(key(9), None, RecordOutcome.POISONED, T0, reason="invalid_item")),  # never listed
    ]


def apply(ledger, sequence):
    for kind, value in sequence:
        (ledger.record_page if kind == "page" else ledger.record_outcome)(WID, value)


def test_the_same_entries_give_the_same_summary_and_states_in_every_ledger(ledger):
    ledger.open_window(INFO)
    sequence = entries()
    apply(ledger, sequence)
    pages = [v for k, v in sequence if k == "page"]
    outcomes = [v for k, v in sequence if k == "outcome"]
    expected = summarize(INFO, pages, outcomes)
    got = ledger.summary(WID)
    assert got.to_json() == expected.to_json()
    assert (got.listed, got.pending, got.imported, got.poisoned, got.slices_listed) == (5, 2, 4, {}, 2)
    assert dict(ledger.record_states(WID)) == states_of(pages, outcomes)
    assert ledger.record_state(WID, key(3)).outcome.mailboxes[0].mailbox == "c@x.example"
    assert not ledger.record_state(WID, key(77)).listed
    assert len(ledger.outcomes(WID)) == len(outcomes)  # each outcome kept as it came: the evidence


def test_a_page_is_marked_listed_once_and_windows_come_latest_hand_off_first(ledger):
    backfill = WindowInfo(Window(T0 - timedelta(days=40), T0 - timedelta(days=39)), 1, T0 + timedelta(hours=5))
    for info in (INFO, backfill):
        ledger.open_window(info)
    assert [w.window_id for w in ledger.recent_windows(2)] == [backfill.window_id, WID]
    assert ledger.window(WID) == INFO and ledger.window("20261101T000000Z-20261101T010000Z.20261101T020000000Z") \
        is None
    assert not ledger.page_listed(WID, "s1", 0)
    ledger.mark_page_listed(WID, "s1", 0)
    ledger.mark_page_listed(WID, "s1", 0)
    assert ledger.page_listed(WID, "s1", 0) and not ledger.page_listed(WID, "s1", 1)


def test_a_page_whose_records_all_fall_in_one_shard_is_listed_whole_and_read_back_page_by_page(ledger, monkeypatch):
    """Past one entity-group transaction (100 operations) and past one query page: 250 records of one
    shard (their keys share their last hex digits), the read pages scaled down to 7 records."""
    from shared.adapters import azure_tables

    monkeypatch.setattr(azure_tables, "STATES_PER_PAGE", 7)
    ledger.open_window(INFO)
    keys = tuple(f"{n:062x}ab" for n in range(250))
    ledger.record_page(WID, PageEntry("s1", 0, keys, True))
    for n, k in enumerate(keys[:130]):
        ledger.record_outcome(WID, OutcomeEntry(k, f"m-{n}", RecordOutcome.IMPORTED, T0, mailboxes=(
            MailboxResult("a@x.example", RecordOutcome.IMPORTED, MappingRule.CSV),)))
    summary = ledger.summary(WID)
    assert (summary.listed, summary.imported, summary.pending) == (250, 130, 120)
    states = dict(ledger.record_states(WID))
    assert set(states) == set(keys) and sum(s.outcome is not None for s in states.values()) == 130


def test_receipts_are_counted_once_however_often_they_come(ledger):
    ledger.open_window(INFO)
    failed = Receipt("wamid.A/b+c==", "failed", T0, "+44*****123", ("131049 Not delivered",))
    for body in range(3):
        ledger.record_page(WID, PageEntry(f"webhook-{body}", 0, (), True, (
            Receipt("wamid.A/b+c==", "sent", T0), failed)))
    summary = ledger.summary(WID)
    assert summary.receipts == {"sent": 1, "failed": 1} and summary.failed_receipts == (failed,)
    assert summary.slices_listed == 3


@pytest.mark.integration
def test_the_table_ledgers_counters_stay_exact_under_concurrent_writers(azurite):
    from shared.adapters.azure_tables import TableWindowLedger, table_service

    ledger = TableWindowLedger(table_service(azurite.connection_string), "contended")
    ledger.open_window(INFO)
    # 40 records, all in one shard (keys ending alike), each written by several workers at once.
    keys = [f"{n:062x}00" for n in range(40)]
    ledger.record_page(WID, PageEntry("s1", 0, tuple(keys[:20]), True))
    work = [(k, OutcomeEntry(k, None, RecordOutcome.IMPORTED, T0, mailboxes=(
        MailboxResult("a@x.example", RecordOutcome.IMPORTED, MappingRule.CSV),))) for k in keys] * 3
    random.Random(7).shuffle(work)
    errors = []

    def worker(chunk):
        try:
            for _, entry in chunk:
                ledger.record_outcome(WID, entry)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(work[i::8],)) for i in range(8)]
    threads += [threading.Thread(target=ledger.record_page, args=(WID, PageEntry("s2", 0, tuple(keys[20:]), True)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    summary = ledger.summary(WID)
    assert (summary.listed, summary.imported, summary.fanout, summary.pending) == (40, 40, 40, 0)


@pytest.mark.integration
def test_the_table_ledger_holds_entries_larger_than_one_property(azurite):
    from shared.adapters.azure_tables import TableWindowLedger, table_service

    ledger = TableWindowLedger(table_service(azurite.connection_string), "bigentries")
    ledger.open_window(INFO)
    keys = tuple(key(n) for n in range(1000))  # a webhook body of 1,000 messages: 66 KB of keys
    ledger.record_page(WID, PageEntry("webhook-x", 0, keys, True))
    mailboxes = tuple(MailboxResult(f"user{n:04d}@contoso.example", RecordOutcome.IMPORTED, MappingRule.CSV)
                      for n in range(1024))  # a record for 1,024 mailboxes: its state is over 64 KiB
    ledger.record_outcome(WID, OutcomeEntry(keys[0], "m", RecordOutcome.IMPORTED, T0, mailboxes=mailboxes))
    assert ledger.pages(WID)[0].record_keys == keys
    assert len(ledger.record_state(WID, keys[0]).outcome.mailboxes) == 1024
    assert ledger.summary(WID).fanout == 1024 and ledger.summary(WID).pending == 999


def test_a_storage_failure_while_a_window_is_read_record_by_record_is_transient():
    """record_states reads as it is iterated: a 503 on a later page must reach the caller as the
    TransientError every other storage call raises (the host retries), not as the SDK's error."""
    from azure.core.exceptions import HttpResponseError

    from shared.adapters.azure_storage import transient_storage_errors
    from shared.domain.errors import TransientError

    @transient_storage_errors
    def pages():
        yield "first page"
        failure = HttpResponseError("service busy")
        failure.status_code = 503
        raise failure

    reading = pages()
    assert next(reading) == "first page"
    with pytest.raises(TransientError):
        next(reading)
