"""Reports stream: rows spooled in sorted runs on disk and read back in the report's order, so a
window's size never sets the memory a report takes (the figure is bench.scale's peak_rss_mib)."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.ledger import MailboxResult, MappingRule, OutcomeEntry, PageEntry, RecordOutcome, WindowInfo
from shared.domain.report import CSV_COLUMNS, report_csv, window_report
from shared.domain.window import Window
from shared.service import spooled_sort
from shared.service.reports import stream_report, with_rows
from shared.service.spooled_sort import SpooledSort
from shared.service.status import problems
from tests.fakes import MemoryLedger

HANDED_OFF = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def test_a_spooled_sort_spills_runs_and_merges_them_in_order_as_often_as_read():
    rng = random.Random(7)
    pairs = [(f"{rng.randrange(10**6):07d}", f"payload {n}") for n in range(1000)]
    with SpooledSort(run_size=64) as spool:
        for key, payload in pairs:
            spool.add(key, payload)
        assert len(spool._runs) == 1000 // 64  # runs on disk, the rest still in memory
        first, second = list(spool), list(spool)
    assert first == second == sorted(pairs)


def test_a_spooled_sort_merges_its_runs_before_it_holds_too_many_files(monkeypatch):
    monkeypatch.setattr(spooled_sort, "MAX_RUNS", 4)
    rng = random.Random(3)
    pairs = [(f"{rng.randrange(10**6):07d}", f"p{n}") for n in range(500)]
    with SpooledSort(run_size=10) as spool:
        for key, payload in pairs:
            spool.add(key, payload)
            assert len(spool._runs) < 4
        assert list(spool) == sorted(pairs) == list(spool)


def test_a_spooled_sort_refuses_a_second_reader_mid_merge_and_writes_after_reading():
    spool = SpooledSort(run_size=2)
    for key in "dcba":
        spool.add(key, key.upper())
    reader = iter(spool)
    with pytest.raises(RuntimeError):
        iter(spool)  # a second reader made before the first has read a line
    assert next(reader) == ("a", "A")
    with pytest.raises(RuntimeError):
        iter(spool)
    assert [k for k, _ in reader] == ["b", "c", "d"]
    assert [k for k, _ in spool] == ["a", "b", "c", "d"]  # once the first read ended, again
    with pytest.raises(RuntimeError):
        spool.add("e", "E")
    spool.close()
    with pytest.raises(RuntimeError):
        iter(spool)  # closed: its runs are gone


@pytest.mark.parametrize("bad", [("a\tb", "x"), ("a\nb", "x"), ("a", "x\ny")])
def test_a_spooled_sort_takes_single_lines_only(bad):
    with pytest.raises(ValueError):
        SpooledSort().add(*bad)


def a_window_in_random_order(ledger: MemoryLedger, records: int) -> str:
    """Outcomes recorded out of time order, with every kind of row: imported, skipped, partial with an
    unavailable mailbox, poisoned, awaiting a transcript, pending; times that tie."""
    info = WindowInfo(Window(HANDED_OFF - timedelta(days=1), HANDED_OFF), 1, HANDED_OFF)
    ledger.open_window(info)
    keys = [f"{n:040x}" for n in range(records)]
    ledger.record_page(info.window_id, PageEntry("s1", 0, tuple(keys), True))
    rng = random.Random(11)
    for number, key in enumerate(keys):
        if number % 9 == 0:
            continue  # pending
        at = HANDED_OFF + timedelta(seconds=rng.randrange(50), microseconds=rng.choice((0, 250_000)))
        kind = number % 5
        if kind == 0:
            entry = OutcomeEntry(key, f"m-{number}", RecordOutcome.POISONED, at, reason="invalid_item",
                                 detail="text: too long")
        elif kind == 1:
            entry = OutcomeEntry(key, f"m-{number}", RecordOutcome.AWAITING_TRANSCRIPT, at)
        else:
            entry = OutcomeEntry(
                key, f"m-{number}", RecordOutcome.IMPORTED, at,
                (MailboxResult("ann@contoso.example", RecordOutcome.IMPORTED, MappingRule.CSV),
                 MailboxResult("bob@contoso.example", RecordOutcome.SKIPPED_DUPLICATE, MappingRule.EMAIL)),
                partial=kind == 3, unavailable=("gone@contoso.example",) if kind == 4 else (),
                source_user="+44*******123",
            )
        ledger.record_outcome(info.window_id, entry)
    return info.window_id


def test_a_streamed_report_spilled_to_disk_equals_the_report_held_whole(monkeypatch):
    monkeypatch.setattr(spooled_sort, "RUN_SIZE", 37)
    ledger = MemoryLedger()
    window_id = a_window_in_random_order(ledger, 500)
    info = ledger.window(window_id)
    whole = window_report(with_rows(ledger, ledger.summary(window_id)),
                          problems=problems(ledger.summary(window_id)), generated_at=HANDED_OFF)
    with stream_report(ledger, info, HANDED_OFF) as streamed:
        assert len(streamed._rows._runs) > 10  # it did spill
        assert streamed.row_count == len(whole.rows)
        assert json.loads("".join(streamed.json_chunks())) == whole.to_json()
        assert "".join(streamed.csv_chunks()) == report_csv([whole])
        assert streamed.head.totals["mailbox_unavailable"] == whole.totals["mailbox_unavailable"] > 0


def test_rows_are_in_time_order_then_key_and_pending_last():
    ledger = MemoryLedger()
    window_id = a_window_in_random_order(ledger, 200)
    with stream_report(ledger, ledger.window(window_id), HANDED_OFF) as streamed:
        rows = list(csv.DictReader(io.StringIO("".join(streamed.csv_chunks()))))
    assert list(rows[0]) == list(CSV_COLUMNS)
    pending_from = next(i for i, row in enumerate(rows) if row["outcome"] == "pending")
    timed = rows[:pending_from]
    assert all(row["outcome"] != "pending" for row in timed)
    assert all(row["outcome"] == "pending" for row in rows[pending_from:])
    order = [(datetime.fromisoformat(row["at"].replace("Z", "+00:00")), row["record_key"]) for row in timed]
    assert order == sorted(order)
    pending = [row["record_key"] for row in rows[pending_from:]]
    assert pending == sorted(pending)


def test_an_empty_window_streams_valid_json_and_a_csv_header():
    ledger = MemoryLedger()
    info = WindowInfo(Window(HANDED_OFF - timedelta(days=1), HANDED_OFF), 1, HANDED_OFF)
    ledger.open_window(info)
    with stream_report(ledger, info, HANDED_OFF) as streamed:
        assert json.loads("".join(streamed.json_chunks()))["rows"] == []
        assert "".join(streamed.csv_chunks()) == ",".join(CSV_COLUMNS) + "\r\n"


def test_an_export_that_fails_part_way_leaves_no_truncated_file(tmp_path):
    import argparse

    from shared.cli.reports import _emit_parts

    out = tmp_path / "day.csv"

    def parts():
        yield "window_id,record_id\r\n"
        raise OSError("storage went away")

    with pytest.raises(OSError):
        _emit_parts(argparse.Namespace(output=out), parts())
    assert list(tmp_path.iterdir()) == []
    assert _emit_parts(argparse.Namespace(output=out), iter(["a,b\r\n"])) == 0
    assert out.read_bytes() == b"a,b\r\n" and list(tmp_path.iterdir()) == [out]
