"""The commands that read and extend the archive's record: ``report`` (the admin report of a
window, live from the ledger) and ``backfill`` (hand a past range off again and follow it)."""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.cli import arguments
from shared.cli.admin import AdminUsageError, _container

REPORT_EPILOG = """examples:
  python -m shared.cli report                          the latest window, as a summary and its failures
  python -m shared.cli report --window 20261122T020000Z-20261123T020000Z.20261123T020000123Z --csv > day.csv
  python -m shared.cli report --since 2026-11-01 --json  every window since 1 November, for scripts

Each row is one record in one mailbox: record id, outcome (imported, partially_imported,
skipped_duplicate, failed, mailbox_unavailable, awaiting_transcript, pending), source user (the
sender's number, masked), Microsoft 365 user, mapping rule, reason. Every timer run also stores the
recent windows' reports in the state container (reports/<window id>.json and .csv), kept for
REPORT_RETENTION_DAYS."""

BACKFILL_EPILOG = """examples:
  python -m shared.cli backfill --from 2026-11-01 --to 2026-11-07     1 to 7 November, whole days (UTC)
  python -m shared.cli backfill --from 2026-11-03T09:00Z --to 2026-11-03T12:00Z --no-wait

A date-only --to includes that whole day; a time is exclusive. The range is cut into windows of at
most MAX_WINDOW_DAYS and SLICE_MINUTES slices, queued for the deployed functions, exactly as the timer
does, but the watermark is not moved. Records archived before are skipped as duplicates, so a
backfill is safe to repeat. Exit 0 when every backfill window reconciled, 1 when --timeout passed
first (the work goes on in the deployment: follow it with `status`)."""


def add_report_commands(commands) -> None:
    report = commands.add_parser(
        "report", help="the admin report of a window: totals, and every record's outcome per mailbox",
        description="Builds the admin report from the window ledger, so it is complete as soon as the window "
                    "reconciles. Without options: the latest window.",
        epilog=REPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = report.add_mutually_exclusive_group()
    which.add_argument("--window", metavar="ID", type=arguments.window_id, help="one window, by the id `status` shows")
    which.add_argument("--since", metavar="DATE", type=arguments.moment,
                       help="every window whose capture time ends after DATE (YYYY-MM-DD or ISO 8601, UTC)")
    shape = report.add_mutually_exclusive_group()
    shape.add_argument("--csv", action="store_true", help="CSV, one row per record and mailbox (Excel-safe)")
    shape.add_argument("--json", action="store_true", help="JSON, the same as the stored report")
    report.add_argument("--output", type=Path, metavar="FILE", help="write to FILE instead of the terminal")
    report.set_defaults(handler=_report)

    backfill = commands.add_parser(
        "backfill", help="archive a past range of capture time again, with a progress bar",
        description="Hands the range off to the deployment's listing queue as backfill windows and follows "
                    "them in the ledger with a progress bar and an ETA until they reconcile.",
        epilog=BACKFILL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backfill.add_argument("--from", dest="start", required=True, type=arguments.moment, metavar="DATE",
                          help="start of capture time, inclusive (YYYY-MM-DD or ISO 8601; UTC unless an offset)")
    backfill.add_argument("--to", dest="end", required=True, type=lambda v: arguments.moment(v, end_of_day=True),
                          metavar="DATE", help="end of capture time (a date includes that whole day)")
    backfill.add_argument("--no-wait", action="store_true", help="hand off and return; follow with `status`")
    backfill.add_argument("--timeout", type=arguments.number_between(0, 31 * 86400), default=6 * 3600,
                          metavar="SECONDS",
                          help="stop following after this long (default 6 hours); the work goes on")
    backfill.add_argument("--poll", type=arguments.number_between(0.01, 3600), default=2.0, metavar="SECONDS",
                          help=argparse.SUPPRESS)
    backfill.add_argument("--json", action="store_true", help="no progress bar; print the result as JSON")
    backfill.set_defaults(handler=_backfill)


# --- report ---------------------------------------------------------------------------------------
def _report(args: argparse.Namespace) -> int:
    from shared.service.reports import latest_window, windows_since

    container = _container()
    ledger = container.ledger
    now = datetime.now(UTC)
    if args.window:
        info = ledger.window(args.window)
        if info is None:
            return _stored_report(container, args)
        infos = [info]
    elif args.since:
        infos = windows_since(ledger, args.since)
    else:
        latest = latest_window(ledger)
        infos = [latest] if latest else []
    if args.csv or args.json:
        # Streamed window by window: a window of millions of rows is never held whole.
        return _emit_parts(args, _export_parts(ledger, infos, now, as_csv=args.csv, as_list=bool(args.since)))
    if not infos:
        return _emit(args, "no windows" + (f" since {args.since.isoformat()}" if args.since else "") + "\n")
    return _emit(args, _render([_terminal_view(ledger, info, now) for info in infos]))


def _export_parts(ledger, infos, now: datetime, *, as_csv: bool, as_list: bool) -> Iterator[str]:
    from shared.service.reports import stream_report

    if not as_csv and not as_list:
        if not infos:
            yield "null\n"
            return
        with stream_report(ledger, infos[0], now) as report:
            yield from report.json_chunks()
        yield "\n"
        return
    if not as_csv:
        yield "["
    for number, info in enumerate(infos):
        with stream_report(ledger, info, now) as report:
            if as_csv:
                yield from report.csv_chunks(header=number == 0)
            else:
                yield ("\n" if number == 0 else ",\n")
                yield from report.json_chunks()
    if as_csv and not infos:
        yield from _csv_header()
    if not as_csv:
        yield "\n]\n" if infos else "]\n"


def _csv_header() -> Iterator[str]:
    from shared.domain.report import report_csv_chunks

    return report_csv_chunks(())


# The terminal shows a window's totals and its failures; more failures than this are counted, and
# the rest are in the CSV.
TERMINAL_FAILURES = 200


def _terminal_view(ledger, info, now: datetime) -> dict[str, Any]:
    from shared.domain.report import RowOutcome
    from shared.service.reports import stream_report

    shown = (RowOutcome.FAILED, RowOutcome.MAILBOX_UNAVAILABLE, RowOutcome.DELIVERY_FAILED)
    with stream_report(ledger, info, now) as report:
        failures, more = [], 0
        for row in report.rows():
            if row.outcome in shown:
                if len(failures) < TERMINAL_FAILURES:
                    failures.append(row.to_json())
                else:
                    more += 1
        return {**report.head.to_json(), "rows": failures, "failures_not_shown": more}


def _stored_report(container, args: argparse.Namespace) -> int:
    """A window no longer in the ledger may still have its stored report (within the retention)."""
    stored = container.reports.load(args.window, "csv" if args.csv else "json")
    if stored is None:
        print(f"no window {args.window} in the ledger, and no stored report for it", file=sys.stderr)
        return 1
    text = stored.decode("utf-8-sig")
    if args.csv or args.json:
        return _emit(args, text)
    return _emit(args, _render([json.loads(text)]))


def _emit(args: argparse.Namespace, text: str) -> int:
    return _emit_parts(args, [text])


def _emit_parts(args: argparse.Namespace, parts: Iterable[str]) -> int:
    if args.output:
        # Written beside, then renamed: a read that fails part-way leaves no truncated report.
        partial = args.output.with_name(args.output.name + ".part")
        try:
            with partial.open("w", encoding="utf-8", newline="") as out:
                out.writelines(parts)
            partial.replace(args.output)
        finally:
            partial.unlink(missing_ok=True)
        print(f"written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.writelines(parts)
    return 0


def _render(reports: list[dict[str, Any]]) -> str:
    from rich.console import Console
    from rich.table import Table

    # Rendered into memory; _emit writes the text to a file or stdout.
    console = Console(record=True, width=max(100, min(200, _terminal_width())), file=io.StringIO())
    for data in reports:
        totals = data["totals"]
        verdict = "[green]reconciled[/]" if data["reconciled"] else "[bold red]NOT RECONCILED[/]"
        console.print(f"[bold]Window {data['window_id']}[/]  {data['start']} → {data['end']}  {verdict}")
        summary = Table(show_header=False, box=None, padding=(0, 2))
        failed = totals["failed"]
        by_reason = ", ".join(f"{k} {v}" for k, v in totals["failed_by_reason"].items())
        for label, value in (
            ("records from the source", totals["records_from_source"]),
            ("after fan-out (record × mailbox)", totals["records_after_fanout"]),
            ("imported", totals["imported"]),
            ("partially imported (media never captured)", totals["partially_imported"]),
            ("skipped duplicates", totals["skipped_duplicates"]),
            ("failed (poisoned, kept, replayable)", f"{failed}" + (f" ({by_reason})" if by_reason else "")),
            ("mapped mailbox unavailable", totals["mailbox_unavailable"]),
            ("pending", totals["pending"]),
            ("awaiting transcript", totals["awaiting_transcript"]),
        ):
            summary.add_row(label, str(value))
        if receipts := totals.get("delivery_receipts"):
            summary.add_row("delivery receipts (WhatsApp statuses)", ", ".join(f"{k} {v}" for k, v in receipts.items()))
            summary.add_row("sent messages not delivered", str(totals.get("delivery_failed", 0)))
        console.print(summary)
        for problem in data["problems"]:
            console.print(f"  [red]![/] {problem}")
        failures = [r for r in data["rows"] if r["outcome"] in ("failed", "mailbox_unavailable", "delivery_failed")]
        if failures:
            table = Table(title=f"{len(failures)} failure(s)", title_justify="left")
            for column in ("record id", "source user", "Microsoft 365 user", "reason", "detail"):
                table.add_column(column, overflow="fold")
            for row in failures:
                table.add_row(row["record_id"] or f"(key {row['record_key'][:16]})", row["source_user"] or "",
                              row["microsoft_365_user"] or "", row["reason"] or "", row["detail"] or "")
            console.print(table)
        if data.get("failures_not_shown"):
            console.print(f"  … and {data['failures_not_shown']} more failure(s): see --csv")
        console.print()
    return console.export_text()


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((120, 40)).columns


# --- backfill -------------------------------------------------------------------------------------
def _backfill(args: argparse.Namespace) -> int:
    from shared.service.backfill import BackfillRangeError, backfill_windows, start_backfill

    container = _container()
    now = datetime.now(UTC)
    policy = container.schedule_policy
    try:
        windows = backfill_windows(args.start, args.end, now=now, policy=policy)
    except BackfillRangeError as error:
        raise AdminUsageError(str(error)) from None
    infos = start_backfill(
        windows, now, listing_queue=container.listing_queue, ledger=container.ledger, policy=policy,
        transcripts_queue=container.transcripts_queue if container.settings.daily_transcripts else None,
    )
    ids = [info.window_id for info in infos]
    if not args.json:
        slices = sum(info.slice_count for info in infos)
        print(f"handed off {len(infos)} backfill window(s), {slices} listing slice(s): " + ", ".join(ids))
    if args.no_wait:
        if args.json:
            print(json.dumps({"windows": ids, "followed": False}, indent=2))
        return 0
    progress = _follow(container, infos, timeout=args.timeout, poll=args.poll, quiet=args.json)
    if args.json:
        print(json.dumps({"windows": ids, "followed": True, **progress.to_json()}, indent=2))
    else:
        print(f"{'done' if progress.done else 'NOT DONE'}: {progress.windows_reconciled} of {progress.windows} "
              f"window(s) reconciled; listed {progress.listed}, imported {progress.imported}, skipped "
              f"{progress.skipped_duplicates}, poisoned {progress.poisoned}")
        if progress.poisoned:
            print("see them with: python -m shared.cli report --window <id>  or  poison list")
        if not progress.done:
            print("the work goes on in the deployment; follow it with: python -m shared.cli status")
    return 0 if progress.done else 1


def _follow(container, infos, *, timeout: float, poll: float, quiet: bool):
    """Poll the ledger until every window reconciles (or the timeout), showing progress."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from shared.service.backfill import backfill_progress

    deadline = time.monotonic() + timeout
    columns = (TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, disable=quiet, transient=False) as bar:
        slices = bar.add_task("listing slices", total=sum(info.slice_count for info in infos))
        records = bar.add_task("records archived", total=None)
        while True:
            state = backfill_progress(container.ledger, infos)
            bar.update(slices, completed=state.slices_listed)
            # The total grows while listing runs; the ETA settles once the listing is done.
            bar.update(records, completed=state.accounted, total=max(state.listed, 1))
            if state.done or time.monotonic() >= deadline:
                return state
            time.sleep(poll)
