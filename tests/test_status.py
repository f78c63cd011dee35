"""Reconciliation per window as operators see it: why a window does not reconcile, and a loud flag
(ERROR log, non-zero exit) once it is overdue."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.ledger import OutcomeEntry, PageEntry, RecordOutcome, WindowInfo
from shared.domain.window import Window
from shared.service.status import build_status, flag_overdue_windows
from tests.fakes import MemoryLedger

HANDED_OFF = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def ledger_with_one_pending_record() -> tuple[MemoryLedger, str]:
    ledger = MemoryLedger()
    info = WindowInfo(Window(HANDED_OFF - timedelta(days=1), HANDED_OFF), 2, HANDED_OFF)
    ledger.open_window(info)
    ledger.record_page(info.window_id, PageEntry("s1", 0, ("a", "b"), True))
    poisoned = OutcomeEntry("a", "m-a", RecordOutcome.POISONED, HANDED_OFF, reason="too_big")
    ledger.record_outcome(info.window_id, poisoned)
    return ledger, info.window_id


def test_a_window_in_progress_says_why_it_does_not_reconcile_yet():
    ledger, window_id = ledger_with_one_pending_record()
    status = build_status(ledger, {"items": 1}, limit=5, now=HANDED_OFF + timedelta(minutes=10))
    (window,) = status["windows"]
    assert not window["reconciled"] and not window["overdue"]
    assert window["problems"] == [
        "listing incomplete: 1 of 2 slices finished (see the listing queue and listing-poison)",
        "1 listed record(s) without an outcome (see the items queue and items-poison)",
    ]
    assert status["unreconciled_windows"] == [window_id] and status["overdue_windows"] == []


def test_an_overdue_window_is_flagged_with_an_error_per_window(caplog):
    ledger, window_id = ledger_with_one_pending_record()
    with caplog.at_level(logging.ERROR):
        overdue = flag_overdue_windows(ledger, HANDED_OFF + timedelta(hours=7), limit=5)
    assert [s.info.window_id for s in overdue] == [window_id]
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"window {window_id} DOES NOT RECONCILE" in line and "1 listed record(s) without an outcome" in line
    assert build_status(ledger, {}, limit=5, now=HANDED_OFF + timedelta(hours=7))["overdue_windows"] == [window_id]


@pytest.mark.integration
def test_status_command_shows_a_reconciled_window_and_exits_0(local_app, capsys):
    import function_app
    from shared.cli.main import main
    from shared.composition import reset_container
    from shared.local.host_runner.runner import HostRunner
    from tests.conftest import REPO_ROOT

    with HostRunner(function_app.app, host_json=REPO_ROOT / "host.json",
                    connection_settings={"AzureWebJobsStorage": local_app.env["AzureWebJobsStorage"]},
                    settings=local_app.env, workers=4) as runner:
        runner.run_timer("schedule_archive_window")
        runner.drain(timeout=300)
    reset_container()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("  reconciled")
    assert "listed 324" in out and "poisoned 11 (no_mapping 10, too_big 1)" in out


@pytest.mark.parametrize("kind", ["memory", "blob"])
def test_a_backfill_handed_off_last_is_the_latest_window_and_is_watched_like_the_others(kind, request, caplog):
    from shared.service.reports import latest_report

    if kind == "memory":
        ledger = MemoryLedger()
    else:
        from azure.storage.blob import BlobServiceClient

        from shared.adapters.azure_storage import BlobWindowLedger

        azurite = request.getfixturevalue("azurite")
        ledger = BlobWindowLedger(BlobServiceClient.from_connection_string(azurite.connection_string),
                                  "archive-state")
    daily = WindowInfo(Window(HANDED_OFF - timedelta(days=1), HANDED_OFF), 1, HANDED_OFF)
    # Last month, handed off an hour after today's window: its capture range is older than everything.
    backfill = WindowInfo(Window(HANDED_OFF - timedelta(days=40), HANDED_OFF - timedelta(days=39)), 1,
                          HANDED_OFF + timedelta(hours=1))
    for info in (daily, backfill):
        ledger.open_window(info)
    ledger.record_page(backfill.window_id, PageEntry("s1", 0, ("a",), True))  # "a" never imported

    assert [w.window_id for w in ledger.recent_windows(1)] == [backfill.window_id]
    assert latest_report(ledger, HANDED_OFF + timedelta(hours=2)).window_id == backfill.window_id
    with caplog.at_level(logging.ERROR):
        flagged = flag_overdue_windows(ledger, HANDED_OFF + timedelta(hours=8), limit=1)
    assert [s.info.window_id for s in flagged] == [backfill.window_id]
