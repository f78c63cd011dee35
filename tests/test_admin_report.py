"""The admin report: per window, what the documented admin log shows and more, from the ledger;
JSON and CSV; stored for the retention and purged after it."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from shared.domain.ledger import MailboxResult, MappingRule, OutcomeEntry, PageEntry, RecordOutcome, WindowInfo
from shared.domain.report import CSV_COLUMNS, RowOutcome, report_csv
from shared.domain.window import Window
from shared.service.reports import handed_off_at, publish_reports, reports_since, window_report_by_id
from tests.fakes import MemoryLedger

HANDED_OFF = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
IMPORTED, SKIPPED, POISONED = RecordOutcome.IMPORTED, RecordOutcome.SKIPPED_DUPLICATE, RecordOutcome.POISONED


class MemoryReports:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.digests: dict[str, str] = {}

    def save(self, window_id, json_parts, csv_parts, *, summary_digest=""):
        self.blobs[f"{window_id}.csv"] = "".join(csv_parts).encode()
        self.blobs[f"{window_id}.json"] = "".join(json_parts).encode()
        self.digests[window_id] = summary_digest

    def stored_size(self, window_id, fmt):
        blob = self.blobs.get(f"{window_id}.{fmt}")
        return None if blob is None else len(blob)

    def summary_digest(self, window_id):
        return self.digests.get(window_id) or None

    def load(self, window_id, fmt):
        return self.blobs.get(f"{window_id}.{fmt}")

    def stored(self):
        return sorted({name.rsplit(".", 1)[0] for name in self.blobs})

    def delete(self, window_id):
        for fmt in ("json", "csv"):
            self.blobs.pop(f"{window_id}.{fmt}", None)


def a_day_of_outcomes(ledger: MemoryLedger, handed_off: datetime = HANDED_OFF) -> str:
    info = WindowInfo(Window(handed_off - timedelta(days=1), handed_off), 1, handed_off)
    ledger.open_window(info)
    ledger.record_page(info.window_id, PageEntry("s1", 0, ("k1", "k2", "k3", "k4", "k5"), True))
    at = handed_off + timedelta(minutes=5)
    both = (MailboxResult("ann@contoso.example", IMPORTED, MappingRule.CSV),
            MailboxResult("bob@contoso.example", SKIPPED, MappingRule.EMAIL))
    ledger.record_outcome(info.window_id, OutcomeEntry("k1", "m-1", IMPORTED, at, both, source_user="+44*******123"))
    ledger.record_outcome(info.window_id, OutcomeEntry(
        "k2", "m-2", IMPORTED, at, (MailboxResult("ann@contoso.example", IMPORTED, MappingRule.CSV),),
        partial=True, unavailable=("gone@contoso.example",), source_user="+44*******124"))
    ledger.record_outcome(info.window_id, OutcomeEntry(
        "k3", "m-3", POISONED, at, reason="no_mapping", detail="no participant maps to a mailbox that exists",
        source_user="+33*******555"))
    ledger.record_outcome(info.window_id, OutcomeEntry("k4", None, POISONED, at, reason="invalid_item",
                                                       detail="sender: Field required"))
    return info.window_id  # k5: listed, no outcome yet


def test_the_report_has_the_admin_logs_totals_and_a_row_per_record_and_mailbox():
    ledger = MemoryLedger()
    window_id = a_day_of_outcomes(ledger)
    report = window_report_by_id(ledger, window_id, HANDED_OFF + timedelta(hours=1))
    assert report.totals == {
        "records_from_source": 5, "records_after_fanout": 3, "imported": 2, "partially_imported": 1,
        "skipped_duplicates": 1, "failed": 2, "failed_by_reason": {"invalid_item": 1, "no_mapping": 1},
        "mailbox_unavailable": 1, "pending": 1, "awaiting_transcript": 0, "recaptured": 0,
    }
    assert not report.reconciled and report.problems == (
        "1 listed record(s) without an outcome (see the items queue and items-poison)",)
    rows = [(r.record_id, r.outcome, r.microsoft_365_user, r.mapping_rule, r.reason, r.source_user)
            for r in report.rows]
    assert rows == [
        ("m-1", RowOutcome.IMPORTED, "ann@contoso.example", "csv", None, "+44*******123"),
        ("m-1", RowOutcome.SKIPPED_DUPLICATE, "bob@contoso.example", "email", None, "+44*******123"),
        ("m-2", RowOutcome.PARTIALLY_IMPORTED, "ann@contoso.example", "csv", None, "+44*******124"),
        ("m-2", RowOutcome.MAILBOX_UNAVAILABLE, "gone@contoso.example", None, "mailbox_unavailable", "+44*******124"),
        ("m-3", RowOutcome.FAILED, None, None, "no_mapping", "+33*******555"),
        (None, RowOutcome.FAILED, None, None, "invalid_item", None),
        (None, RowOutcome.PENDING, None, None, None, None),
    ]
    assert [r.record_key for r in report.failures()] == ["k2", "k3", "k4"]


def test_the_csv_has_one_row_per_report_row_and_defuses_spreadsheet_formulas():
    ledger = MemoryLedger()
    report = window_report_by_id(ledger, a_day_of_outcomes(ledger), HANDED_OFF)
    text = report_csv([report])
    table = list(csv.DictReader(io.StringIO(text)))
    assert tuple(table[0]) == CSV_COLUMNS and len(table) == len(report.rows)
    # "+44…" would be run as a formula by Excel; the apostrophe makes it text.
    assert table[0]["source_user"] == "'+44*******123"
    assert table[0]["microsoft_365_user"] == "ann@contoso.example" and table[0]["outcome"] == "imported"
    assert table[5]["record_id"] == "" and table[5]["reason"] == "invalid_item"


def test_a_record_imported_after_a_replay_shows_once_as_imported_with_its_source_user():
    ledger = MemoryLedger()
    window_id = a_day_of_outcomes(ledger)
    later = HANDED_OFF + timedelta(hours=2)
    ledger.record_outcome(window_id, OutcomeEntry(
        "k3", "m-3", IMPORTED, later, (MailboxResult("cat@contoso.example", IMPORTED, MappingRule.CSV),)))
    report = window_report_by_id(ledger, window_id, later)
    (row,) = [r for r in report.rows if r.record_key == "k3"]
    assert (row.outcome, row.microsoft_365_user, row.source_user) == (RowOutcome.IMPORTED, "cat@contoso.example",
                                                                      "+33*******555")


def test_reports_are_stored_as_json_and_csv_and_deleted_after_the_retention():
    ledger, store = MemoryLedger(), MemoryReports()
    old = a_day_of_outcomes(ledger, HANDED_OFF - timedelta(days=100))
    recent = a_day_of_outcomes(ledger, HANDED_OFF)
    store.save(old, [json.dumps({"stale": True})], [""])  # written 100 days ago, when it was recent
    published = publish_reports(ledger, store, HANDED_OFF + timedelta(hours=1), limit=14,
                                retention=timedelta(days=90))
    assert published.written == (recent,) and published.purged == (old,)
    # The next run: the window's counts have not moved, so its report is not made again ...
    again = publish_reports(ledger, store, HANDED_OFF + timedelta(hours=2), limit=14, retention=timedelta(days=90))
    assert again.written == ()
    # ... until an outcome moves one (the pending record archived).
    ledger.record_outcome(recent, OutcomeEntry("k5", "m-5", IMPORTED, HANDED_OFF + timedelta(hours=2), (
        MailboxResult("ann@contoso.example", IMPORTED, MappingRule.CSV),)))
    moved = publish_reports(ledger, store, HANDED_OFF + timedelta(hours=3), limit=14, retention=timedelta(days=90))
    assert moved.written == (recent,) and json.loads(store.load(recent, "json"))["totals"]["pending"] == 0
    assert store.stored() == [recent]
    stored = json.loads(store.load(recent, "json"))
    assert stored["window_id"] == recent and stored["totals"]["failed"] == 2 and stored["report_version"] == 1
    assert store.load(recent, "csv").decode().startswith(",".join(CSV_COLUMNS))


def test_since_selects_the_windows_that_end_after_the_date_oldest_first():
    ledger = MemoryLedger()
    ids = [a_day_of_outcomes(ledger, HANDED_OFF - timedelta(days=d)) for d in (3, 2, 1, 0)]
    chosen = reports_since(ledger, HANDED_OFF - timedelta(days=2, hours=1), HANDED_OFF)
    assert [r.window_id for r in chosen] == ids[1:]


def test_the_hand_off_time_is_read_back_from_a_window_id():
    info = WindowInfo(Window(HANDED_OFF - timedelta(days=1), HANDED_OFF), 1, HANDED_OFF + timedelta(microseconds=7000))
    assert handed_off_at(info.window_id) == info.scheduled_at
    assert handed_off_at("not-a-window") is None
