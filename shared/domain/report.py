"""The admin report of one window: what the documented connector's admin log shows, and more.

Per window: records from the source, records after fan-out (record × mailbox), imported,
partially imported (archived, some media never captured), skipped duplicates, failed (poisoned)
by reason, still pending or awaiting their transcript, and for a push source its delivery receipts
by status; then one row per record and mailbox with the record id, the source user (masked), the
Microsoft 365 user, the mapping rule and, for failures, the reason; and one row per message the
business sent that WhatsApp failed to deliver. Built from the window's ledger, so it is complete the moment the window
reconciles, not days later.

The report is for administrators: it names mailboxes, and shows senders' numbers only masked.
It never holds message content.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from shared.domain.ledger import OutcomeEntry, Receipt, RecordOutcome, WindowSummary
from shared.domain.records import record_key
from shared.domain.window import isoformat_z

REPORT_VERSION = 1


class RowOutcome(StrEnum):
    IMPORTED = "imported"
    PARTIALLY_IMPORTED = "partially_imported"  # archived without media that was never captured
    SKIPPED_DUPLICATE = "skipped_duplicate"
    FAILED = "failed"  # poisoned: kept intact with its reason, replayable
    MAILBOX_UNAVAILABLE = "mailbox_unavailable"  # mapped, but the mailbox could not take mail
    AWAITING_TRANSCRIPT = "awaiting_transcript"
    PENDING = "pending"  # listed, no outcome yet
    # A message the business sent that WhatsApp could not deliver (a failed receipt): the archive
    # holds the message, but the firm should know it never reached the customer.
    DELIVERY_FAILED = "delivery_failed"
    # Imported, as a re-capture: the source sent other bytes under an id archived before; the row's
    # detail names the fields that differ. Counted in ``imported`` and apart, in ``recaptured``.
    RECAPTURED = "recaptured"


CSV_COLUMNS = (
    "window_id", "record_id", "record_key", "outcome", "source_user", "microsoft_365_user",
    "mapping_rule", "reason", "detail", "at",
)


@dataclass(frozen=True)
class ReportRow:
    window_id: str
    record_id: str | None  # the source's message id (None when the record could not be read at all)
    record_key: str
    outcome: RowOutcome
    source_user: str | None  # the sender's number, masked
    microsoft_365_user: str | None
    mapping_rule: str | None
    reason: str | None
    detail: str | None
    at: str | None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome.value}


@dataclass(frozen=True)
class ReportHead:
    """Everything in a window's report but its rows: small whatever the window's size."""

    window: dict[str, Any]  # the window's id, capture range and hand-off time
    generated_at: datetime
    reconciled: bool
    problems: tuple[str, ...]
    totals: dict[str, Any]

    @property
    def window_id(self) -> str:
        return self.window["window_id"]

    def to_json(self) -> dict[str, Any]:
        return {
            "report_version": REPORT_VERSION,
            **self.window,
            "generated_at": isoformat_z(self.generated_at),
            "reconciled": self.reconciled,
            "problems": list(self.problems),
            "totals": self.totals,
        }


@dataclass(frozen=True)
class WindowReport:
    """A report held whole in memory: for windows known to be small (the demo, tests, the CLI's
    terminal view). Stored reports and exports stream (``shared/service/reports.py``)."""

    window: dict[str, Any]
    generated_at: datetime
    reconciled: bool
    problems: tuple[str, ...]
    totals: dict[str, Any]
    rows: tuple[ReportRow, ...]

    @property
    def window_id(self) -> str:
        return self.window["window_id"]

    @property
    def head(self) -> ReportHead:
        return ReportHead(self.window, self.generated_at, self.reconciled, self.problems, self.totals)

    def failures(self) -> list[ReportRow]:
        return [r for r in self.rows if r.outcome in FAILURE_OUTCOMES]

    def to_json(self) -> dict[str, Any]:
        return {**self.head.to_json(), "rows": [row.to_json() for row in self.rows]}


FAILURE_OUTCOMES = frozenset({RowOutcome.FAILED, RowOutcome.MAILBOX_UNAVAILABLE})


def record_rows(window_id: str, key: str, entry: OutcomeEntry) -> list[ReportRow]:
    """The rows of one record with an outcome: one per mailbox, or one for the whole record."""
    row = functools.partial(ReportRow, window_id=window_id, record_id=entry.message_id, record_key=key,
                            source_user=entry.source_user, at=isoformat_z(entry.at))
    if entry.outcome is RecordOutcome.POISONED:
        return [row(outcome=RowOutcome.FAILED, microsoft_365_user=None, mapping_rule=None,
                    reason=entry.reason or "unknown", detail=entry.detail)]
    if entry.outcome is RecordOutcome.AWAITING_TRANSCRIPT:
        return [row(outcome=RowOutcome.AWAITING_TRANSCRIPT, microsoft_365_user=None, mapping_rule=None,
                    reason=None, detail=None)]
    rows: list[ReportRow] = []
    for result in entry.mailboxes:
        if result.outcome is RecordOutcome.SKIPPED_DUPLICATE:
            outcome = RowOutcome.SKIPPED_DUPLICATE
        elif entry.recapture_of is not None:
            outcome = RowOutcome.RECAPTURED
        else:
            outcome = RowOutcome.PARTIALLY_IMPORTED if entry.partial else RowOutcome.IMPORTED
        details = [*(("media never captured",) if entry.partial else ()),
                   *((entry.detail or "re-capture",) if entry.recapture_of is not None else ())]
        rows.append(row(outcome=outcome, microsoft_365_user=result.mailbox,
                        mapping_rule=result.rule.value, reason=None, detail="; ".join(details) or None))
    for mailbox in entry.unavailable:
        rows.append(row(outcome=RowOutcome.MAILBOX_UNAVAILABLE, microsoft_365_user=mailbox,
                        mapping_rule=None, reason="mailbox_unavailable",
                        detail="mapped, but the mailbox could not take mail"))
    return rows


def record_order(key: str, entry: OutcomeEntry) -> str:
    """A text that sorts records as the report lists them: by outcome time, then key; pending
    records (``pending_order``) after every record with an outcome."""
    return "0|" + entry.at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%f") + "|" + key


def pending_order(key: str) -> str:
    return "1|" + key


def pending_row(window_id: str, key: str) -> ReportRow:
    return ReportRow(window_id, None, key, RowOutcome.PENDING, None, None, None, None, None, None)


def receipt_row(window_id: str, receipt: Receipt, archived: OutcomeEntry | None) -> ReportRow:
    """A message the business sent that WhatsApp failed to deliver. The row joins the receipt to its
    message by wamid: the record key is the wamid's, whichever window (or day) archived the message;
    the mailboxes are named when this window did (``archived``)."""
    mailboxes = ", ".join(m.mailbox for m in archived.mailboxes) if archived else None
    errors = "; ".join(receipt.errors) or "no error given"
    return ReportRow(
        window_id, receipt.message_id, record_key(receipt.message_id), RowOutcome.DELIVERY_FAILED,
        receipt.recipient, mailboxes or None, None, "delivery_failed",
        f"WhatsApp could not deliver the message: {errors}"[:2000], isoformat_z(receipt.at),
    )


def report_head(
    summary: WindowSummary, *, mailbox_unavailable: int, problems: Sequence[str], generated_at: datetime,
) -> ReportHead:
    poisoned = dict(sorted(summary.poisoned.items()))
    totals = {
        "records_from_source": summary.listed,
        "records_after_fanout": summary.fanout,
        "imported": summary.imported,
        "partially_imported": summary.partially_imported,
        "skipped_duplicates": summary.skipped_duplicates,
        "failed": sum(poisoned.values()),
        "failed_by_reason": poisoned,
        "mailbox_unavailable": mailbox_unavailable,
        "pending": summary.pending,
        "awaiting_transcript": summary.awaiting_transcript,
        # Records archived as re-captures (imported, counted in ``imported`` by their pairs too).
        "recaptured": summary.recaptured,
    }
    if summary.receipts:
        totals["delivery_receipts"] = dict(sorted(summary.receipts.items()))
        totals["delivery_failed"] = len(summary.failed_receipts)
    return ReportHead(
        window=summary.info.to_json(), generated_at=generated_at, reconciled=summary.reconciled,
        problems=tuple(problems), totals=totals,
    )


def window_report(summary: WindowSummary, *, problems: Sequence[str], generated_at: datetime) -> WindowReport:
    """The report of a summary that holds its records (``records``, ``pending_keys``), in memory."""
    window_id = summary.info.window_id
    ordered = sorted(summary.records.items(), key=lambda item: record_order(*item))
    rows = [row for key, entry in ordered for row in record_rows(window_id, key, entry)]
    rows += [pending_row(window_id, key) for key in sorted(summary.pending_keys)]
    rows += [receipt_row(window_id, receipt, summary.records.get(record_key(receipt.message_id)))
             for receipt in summary.failed_receipts]
    unavailable = sum(row.outcome is RowOutcome.MAILBOX_UNAVAILABLE for row in rows)
    head = report_head(summary, mailbox_unavailable=unavailable, problems=problems, generated_at=generated_at)
    return WindowReport(head.window, head.generated_at, head.reconciled, head.problems, head.totals, tuple(rows))


def row_from_json(data: dict[str, Any]) -> ReportRow:
    return ReportRow(**{**data, "outcome": RowOutcome(data["outcome"])})


def report_json_chunks(head: ReportHead, rows: Iterable[ReportRow]) -> Iterator[str]:
    """The report as JSON text, in pieces: the head as ``json.dumps(indent=1)`` writes it, then the
    rows one a line, so a window of millions never has to be one string."""
    opening = json.dumps(head.to_json(), indent=1, ensure_ascii=False)
    yield opening[: -len("\n}")] + ',\n "rows": ['
    separator = "\n  "
    wrote = False
    for row in rows:
        yield separator + json.dumps(row.to_json(), ensure_ascii=False)
        separator, wrote = ",\n  ", True
    yield ("\n ]" if wrote else "]") + "\n}"


# Spreadsheet programs run a cell that starts with one of these as a formula (CSV injection,
# OWASP); the cell is prefixed with an apostrophe, which Excel shows as text and does not display.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def report_csv(reports: Iterable[WindowReport]) -> str:
    """One row per record and mailbox, every window in one table (``window_id`` says which)."""
    return "".join(report_csv_chunks(row for report in reports for row in report.rows))


CSV_ROWS_PER_CHUNK = 1000


def report_csv_chunks(rows: Iterable[ReportRow], *, header: bool = True) -> Iterator[str]:
    """The CSV in pieces of up to ``CSV_ROWS_PER_CHUNK`` rows (the column names first)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    waiting = 0
    for row in rows:
        data = row.to_json()
        writer.writerow([_cell(data[column]) for column in CSV_COLUMNS])
        waiting += 1
        if waiting >= CSV_ROWS_PER_CHUNK:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            waiting = 0
    if out.tell():
        yield out.getvalue()
