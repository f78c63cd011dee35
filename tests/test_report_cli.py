"""`report` and `backfill` against a deployment's storage (Azurite), with the registered functions
run by the local host runner: what an administrator types, and what they get."""

from __future__ import annotations

import csv
import io
import json
import threading

import azure.functions as func
import pytest

import function_app
from shared.cli.main import main
from shared.composition import get_container, reset_container
from shared.domain.window import isoformat_z
from shared.functions import report as report_function
from shared.local.host_runner.runner import HostRunner
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

# A window id of the right form that no window has.
UNKNOWN_WINDOW = "20200101T000000Z-20200102T000000Z.20200102T000000000Z"


def _runner(local_app) -> HostRunner:
    return HostRunner(function_app.app, host_json=REPO_ROOT / "host.json",
                      connection_settings={"AzureWebJobsStorage": local_app.env["AzureWebJobsStorage"]},
                      settings=local_app.env, workers=4)


def test_report_shows_the_demo_windows_totals_and_failures_as_text_json_and_csv(local_app, tmp_path, capsys,
                                                                               monkeypatch):
    with _runner(local_app) as runner:
        runner.run_timer("schedule_archive_window")
        runner.drain(timeout=300)
        runner.run_timer("schedule_archive_window")  # the next run stores the finished window's report
        as_csv = runner.call_http("archive_report", params={"format": "csv"})
        as_json = runner.call_http("archive_report")
        missing = runner.call_http("archive_report", params={"window": UNKNOWN_WINDOW})
        not_an_id = runner.call_http("archive_report", params={"window": "no-such-window"})
    reset_container()
    ledger = get_container().ledger
    first = ledger.recent_windows(5)[-1]

    assert main(["report", "--window", first.window_id, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    totals = report["totals"]
    assert report["reconciled"] and totals["records_from_source"] == 324
    assert totals["records_after_fanout"] == totals["imported"] + totals["skipped_duplicates"]
    assert totals["failed_by_reason"] == {"no_mapping": 10, "too_big": 1}
    failed = [r for r in report["rows"] if r["outcome"] == "failed"]
    assert len(failed) == 11 and all(r["record_id"] and r["source_user"] for r in failed)
    assert all("*" in r["source_user"] for r in failed)  # masked, never the whole number
    archived = [r for r in report["rows"] if r["outcome"] in ("imported", "partially_imported")]
    assert len(archived) == totals["imported"] and all(r["microsoft_365_user"] for r in archived)
    assert {r["mapping_rule"] for r in archived} <= {"csv", "email"}

    # The timer stored it, JSON and CSV, under reports/ in the state container.
    stored = json.loads(get_container().reports.load(first.window_id, "json"))
    assert stored["totals"] == totals and stored["reconciled"]

    out = tmp_path / "day.csv"
    assert main(["report", "--window", first.window_id, "--csv", "--output", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == len(report["rows"])
    assert sum(r["outcome"] == "failed" for r in rows) == 11

    assert main(["report", "--window", first.window_id]) == 0
    text = capsys.readouterr().out
    assert "records from the source" in text and "324" in text and "11 failure(s)" in text
    assert "no_mapping" in text and "too_big" in text

    assert main(["report", "--since", first.window.start.date().isoformat(), "--json"]) == 0
    assert [r["window_id"] for r in json.loads(capsys.readouterr().out)][0] == first.window_id

    assert main(["report", "--window", UNKNOWN_WINDOW]) == 1
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--window", "no-such-window"])
    assert exit_.value.code == 2

    # The HTTP endpoint serves the latest window (the second run's, empty or a minute long) the same way.
    latest = json.loads(as_json.get_body())
    assert as_json.status_code == 200 and latest["window_id"] == ledger.recent_windows(1)[0].window_id
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    assert as_csv.get_body().decode().startswith("window_id,record_id,")
    assert "attachment" in as_csv.headers["Content-Disposition"]
    assert missing.status_code == 404
    assert not_an_id.status_code == 400 and json.loads(not_an_id.get_body())["parameter"] == "window"

    # A window with more rows than one HTTP response holds: its head over HTTP, the rows streamed elsewhere.
    monkeypatch.setattr(report_function, "HTTP_REPORT_MAX_ROWS", len(report["rows"]) - 1)
    call = report_function.archive_report.build().get_user_function()
    head = call(func.HttpRequest("GET", "/api/report", params={"window": first.window_id}, body=b""))
    body = json.loads(head.get_body())
    assert head.status_code == 200 and body["totals"] == totals and body["rows"] == []
    assert body["rows_omitted"] == len(report["rows"]) and "--csv" in body["rows_note"]
    as_csv = call(func.HttpRequest("GET", "/api/report", params={"window": first.window_id, "format": "csv"},
                                   body=b""))
    assert as_csv.status_code == 413 and "shared.cli report" in json.loads(as_csv.get_body())["error"]


def test_backfill_relists_a_past_range_follows_it_and_leaves_the_watermark(local_app, traffic, capsys):
    with _runner(local_app) as runner:
        runner.run_timer("schedule_archive_window")
        runner.drain(timeout=300)
        reset_container()
        watermark_before, _ = get_container().watermarks.read()
        capsys.readouterr()

        stop = threading.Event()

        def functions_app_at_work():
            while not stop.is_set():
                if runner.pump_once() == 0:
                    stop.wait(0.2)

        worker = threading.Thread(target=functions_app_at_work, daemon=True)
        worker.start()
        try:
            code = main(["backfill", "--from", isoformat_z(traffic.window.start), "--to",
                         isoformat_z(traffic.window.end), "--poll", "0.5", "--timeout", "300"])
        finally:
            stop.set()
            worker.join(timeout=60)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "handed off 1 backfill window(s), 24 listing slice(s)" in out
    assert "done: 1 of 1 window(s) reconciled; listed 324, imported 0" in out
    reset_container()
    assert get_container().watermarks.read()[0] == watermark_before


def test_backfill_refuses_a_range_that_has_not_settled(local_app, capsys):
    assert main(["backfill", "--from", "2026-01-01", "--to", "2999-01-01", "--no-wait"]) == 2
    assert "has settled" in capsys.readouterr().err
