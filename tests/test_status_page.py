"""The status page: the HTML next to the status JSON. The renderer escapes what it shows, loads nothing,
marks overdue windows and draws a bar group per day; the endpoint serves HTML only to whoever asks for it;
and a real demo window's page renders in headless Chromium (Debian's ``chromium``), which fetches nothing
but the page, with a screenshot kept under test-artifacts/."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from shared.domain.ledger import MailboxResult, MappingRule, OutcomeEntry, PageEntry, RecordOutcome, WindowInfo
from shared.domain.window import Window
from shared.functions import status as status_function
from shared.functions.status import json_link, prefers_html
from shared.service.status import build_status
from shared.service.status_page import render_status_page
from tests.browser import PageServer, png_size_and_pixels, require_chromium, run_chromium
from tests.conftest import REPO_ROOT
from tests.fakes import MemoryLedger

HANDED_OFF = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
ARTIFACTS = REPO_ROOT / "test-artifacts"
SCREENSHOT = ARTIFACTS / "status-page.png"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CHROME_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


def _imported(key: str, at: datetime, *mailboxes: tuple[str, RecordOutcome]) -> OutcomeEntry:
    return OutcomeEntry(key, f"m-{key}", RecordOutcome.IMPORTED, at,
                        mailboxes=tuple(MailboxResult(box, outcome, MappingRule.CSV) for box, outcome in mailboxes))


def ledger_over_three_days() -> tuple[MemoryLedger, str]:
    """One window whose records finished on 23 and 25 November (none on the 24th)."""
    ledger = MemoryLedger()
    info = WindowInfo(Window(HANDED_OFF - timedelta(days=1), HANDED_OFF), 1, HANDED_OFF)
    ledger.open_window(info)
    ledger.record_page(info.window_id, PageEntry("s1", 0, ("a", "b", "c", "d"), True))
    day1, day3 = HANDED_OFF + timedelta(minutes=5), HANDED_OFF + timedelta(days=2, hours=1)
    ledger.record_outcome(info.window_id, _imported(
        "a", day1, ("x@example.com", RecordOutcome.IMPORTED), ("y@example.com", RecordOutcome.SKIPPED_DUPLICATE)))
    ledger.record_outcome(info.window_id, OutcomeEntry("b", "m-b", RecordOutcome.POISONED, day1, reason="no_mapping"))
    ledger.record_outcome(info.window_id, OutcomeEntry("c", "m-c", RecordOutcome.POISONED, day3, reason="too_big"))
    ledger.record_outcome(info.window_id, _imported("d", day3, ("x@example.com", RecordOutcome.IMPORTED)))
    return ledger, info.window_id


def hostile_status() -> dict:
    """A status whose every text field tries to break out of the page."""
    script = "<script>alert('x')</script>"
    return {
        "windows": [{
            "window_id": f"w{script}", "start": "2026-11-22T02:00:00.000Z", "end": script,
            "scheduled_at": "2026-11-23T02:00:00.000Z", "slice_count": 1, "listed": 3, "fanout": 2, "imported": 1,
            "skipped_duplicates": 0, "partially_imported": 0, "poisoned": {f"r{script}": 1}, "pending": 1,
            "awaiting_transcript": 0, "slices_listed": 1, "listing_complete": True, "reconciled": False,
            "problems": [f"1 listed record(s) {script}", "\"quoted\" & <b>bold</b>"], "overdue": True,
        }],
        "queues": {f"q{script}": 2},
        "unreconciled_windows": [f"w{script}"],
        "overdue_windows": [f"w{script}"],
        "poisoned_by_reason": {f"r{script}": 1},
        "daily_volume": [{"date": f"2026-11-23{script}", "records": 1, "imported": 1, "skipped_duplicates": 0,
                          "poisoned": 1}],
        "overdue_after_hours": 6.0,
        "generated_at": script,
    }


# -- the status data behind the page ------------------------------------------------------------------------------


def test_status_adds_poison_by_reason_daily_volume_with_empty_days_and_generated_at():
    ledger, _ = ledger_over_three_days()
    now = HANDED_OFF + timedelta(days=3)
    status = build_status(ledger, {"items": 0}, limit=5, now=now)
    assert status["poisoned_by_reason"] == {"no_mapping": 1, "too_big": 1}
    assert status["daily_volume"] == [
        {"date": "2026-11-23", "records": 1, "imported": 1, "skipped_duplicates": 1, "poisoned": 1},
        {"date": "2026-11-24", "records": 0, "imported": 0, "skipped_duplicates": 0, "poisoned": 0},
        {"date": "2026-11-25", "records": 1, "imported": 1, "skipped_duplicates": 0, "poisoned": 1},
    ]
    assert status["generated_at"] == "2026-11-26T02:00:00.000Z"
    # The existing contract is untouched.
    assert {"windows", "queues", "unreconciled_windows", "overdue_windows"} <= set(status)
    assert status["windows"][0]["reconciled"] and status["unreconciled_windows"] == []


# -- the renderer -----------------------------------------------------------------------------------------------------


def test_renderer_escapes_hostile_window_ids_problems_reasons_and_queue_names():
    page = render_status_page(hostile_status(), json_href="?format=json&code=<k>")
    assert "<script" not in page.lower()
    assert "<b>bold" not in page
    assert page.count("&lt;script&gt;") >= 8  # id, end, problem, reason ×2, queue, date, generated-at
    assert "&quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert 'href="?format=json&amp;code=&lt;k&gt;"' in page


def test_renderer_marks_overdue_windows_and_says_so_in_the_headline():
    page = render_status_page(hostile_status(), json_href="?format=json")
    assert re.search(r'<section class="verdict bad"[^>]*>.*?<h2>1 window OVERDUE</h2>', page, re.S)
    row = re.search(r'<tr class="bad"[^>]*data-overdue="yes"[^>]*>(.*?)</tr>', page, re.S)
    assert row and '<span class="badge bad">OVERDUE</span>' in row.group(1)


def test_renderer_headline_for_reconciled_in_progress_and_empty_statuses():
    ledger, window_id = ledger_over_three_days()
    reconciled = render_status_page(build_status(ledger, {}, limit=5, now=HANDED_OFF), json_href="?format=json")
    assert '<section class="verdict ok"' in reconciled and "The recent window is reconciled" in reconciled
    assert "2 records poisoned" in reconciled
    ledger.record_page(window_id, PageEntry("s1", 1, ("late",), True))
    in_progress = build_status(ledger, {}, limit=5, now=HANDED_OFF + timedelta(hours=1))
    page = render_status_page(in_progress, json_href="?format=json")
    assert '<section class="verdict warn"' in page and "1 window not reconciled yet" in page
    assert 'data-overdue="no"' in page and "OVERDUE" not in page
    empty = render_status_page(build_status(MemoryLedger(), {}, limit=5), json_href="?format=json")
    assert '<section class="verdict none"' in empty and "No windows yet" in empty


def test_rendered_page_references_no_external_resource_and_has_no_script():
    ledger, _ = ledger_over_three_days()
    for status in (build_status(ledger, {"items": 3}, limit=5, now=HANDED_OFF), hostile_status()):
        page = render_status_page(status, json_href="?format=json&code=abc")
        lowered = page.lower()
        assert "http://" not in lowered and "https://" not in lowered
        assert "@import" not in lowered and "<script" not in lowered
        assert not re.search(r"\burl\(\s*(?!['\"]?data:)", lowered)
        references = re.findall(r"\b(?:src|href|xlink:href|action|srcset|poster|data)\s*=\s*\"([^\"]*)\"", lowered)
        assert references, "the page links to its JSON"
        for reference in references:
            assert not reference.startswith("//"), reference
            assert reference.startswith(("?", "data:")), reference
        assert "<link rel=\"icon\" href=\"data:,\">" in page  # so a browser does not fetch /favicon.ico


def test_chart_has_one_bar_group_per_day_with_the_days_values():
    ledger, _ = ledger_over_three_days()
    status = build_status(ledger, {}, limit=5, now=HANDED_OFF + timedelta(days=3))
    page = render_status_page(status, json_href="?format=json")
    svg = re.search(r"<svg class=\"chart\".*?</svg>", page, re.S).group(0)
    groups = re.findall(r'<g class="day" data-date="([^"]+)" data-archived="(\d+)" data-poisoned="(\d+)">', svg)
    assert groups == [("2026-11-23", "1", "1"), ("2026-11-24", "0", "0"), ("2026-11-25", "1", "1")]
    assert 'role="img"' in svg and '<title id="chart-title">Daily volume</title>' in svg and "<desc" in svg
    assert svg.count('<rect class="archived"') == 2 + 1  # two days with bars, and the legend's swatch
    assert svg.count('<rect class="poisoned"') == 2 + 1


# -- content negotiation --------------------------------------------------------------------------------------------


def test_accept_header_prefers_html_only_when_it_ranks_html_above_json():
    assert prefers_html(CHROME_ACCEPT)
    assert prefers_html("text/html")
    for accept in (None, "", "*/*", "application/json", "application/json, text/html",
                   "text/html;q=0.5, application/json", "text/html;q=0"):
        assert not prefers_html(accept), accept


def test_json_link_keeps_the_function_key_and_window_count():
    assert json_link({"code": "k/y+=", "windows": "3", "format": "html"}) == "?format=json&code=k%2Fy%2B%3D&windows=3"
    assert json_link({}) == "?format=json"


def call_status(params: dict[str, str], headers: dict[str, str] | None = None) -> func.HttpResponse:
    request = func.HttpRequest("GET", "/api/status", params=params, headers=headers or {}, body=b"")
    return status_function.archive_status.build().get_user_function()(request)


@pytest.mark.integration
def test_status_serves_html_to_browsers_json_by_default_and_format_json_wins(local_app):
    from shared.functions import schedule
    from shared.functions.status import HTML_HEADERS

    schedule.schedule_archive_window.build().get_user_function()(TimerRequest())
    default = call_status({})
    assert default.mimetype == "application/json" and "Content-Security-Policy" not in default.headers
    assert default.headers["Vary"] == "Accept"
    body = json.loads(default.get_body())
    assert {"windows", "queues", "unreconciled_windows", "overdue_windows"} <= set(body)
    assert body["queues"]["listing"] == 24

    html = call_status({"code": "the-key"}, {"Accept": CHROME_ACCEPT})
    assert html.status_code == 200 and html.mimetype == "text/html" and html.charset == "utf-8"
    assert html.headers["Content-Security-Policy"] == CSP
    assert html.headers["X-Content-Type-Options"] == "nosniff" and html.headers["Cache-Control"] == "no-store"
    assert dict(html.headers) == HTML_HEADERS
    page = html.get_body().decode()
    assert page.startswith("<!doctype html>") and 'href="?format=json&amp;code=the-key"' in page

    assert call_status({"format": "html"}).mimetype == "text/html"
    forced = call_status({"format": "json"}, {"Accept": CHROME_ACCEPT})
    assert forced.mimetype == "application/json" and json.loads(forced.get_body())["queues"]["listing"] == 24
    assert call_status({}, {"Accept": "*/*"}).mimetype == "application/json"
    bad = call_status({"format": "xml"})
    assert bad.status_code == 400
    assert json.loads(bad.get_body()) == {"error": "format must be json or html", "parameter": "format"}


# -- in a real browser ------------------------------------------------------------------------------------------------


@pytest.fixture
def chromium() -> str:
    return require_chromium()


def cell(row: str, column: str) -> str:
    found = re.search(rf'<td[^>]*data-col="{column}"[^>]*>(?:<span>)?([^<]*)<', row)
    assert found, column
    return found.group(1)


@pytest.mark.integration
def test_status_page_of_a_demo_window_renders_in_headless_chromium_fetching_nothing_else(
    chromium, local_app, tmp_path,
):
    import function_app
    from shared.local.host_runner.runner import HostRunner
    from shared.service.reports import with_rows
    from shared.service.status import window_summary

    with HostRunner(function_app.app, host_json=REPO_ROOT / "host.json",
                    connection_settings={"AzureWebJobsStorage": local_app.env["AzureWebJobsStorage"]},
                    settings=local_app.env, workers=4) as runner:
        runner.run_timer("schedule_archive_window")
        runner.drain(timeout=300)
        response = runner.call_http("archive_status", params={"format": "html", "code": "demo-key"})
    watermark, _ = local_app.container.watermarks.read()
    ledger = local_app.container.ledger
    summary = with_rows(ledger, window_summary(ledger, watermark.last_window_id))
    assert summary.reconciled and summary.poisoned.get("no_mapping", 0) >= 1
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CSP

    headers = {"Content-Type": f"{response.mimetype}; charset={response.charset}", **dict(response.headers)}
    with PageServer("/api/status?format=html&code=demo-key", response.get_body(), headers) as server:
        dom = run_chromium(chromium, tmp_path / "profile-dom", "--dump-dom", server.url).stdout.decode()
        assert server.requests == ["/api/status?format=html&code=demo-key"], "chromium fetched more than the page"

        window_id = summary.info.window_id
        row = re.search(rf'<tr class="ok" data-window="{re.escape(window_id)}"[^>]*>(.*?)</tr>', dom, re.S)
        assert row, "the demo window's row"
        assert cell(row.group(1), "listed") == f"{summary.listed:,}"
        assert cell(row.group(1), "imported") == f"{summary.imported:,}"
        assert cell(row.group(1), "poisoned") == f"{sum(summary.poisoned.values()):,}"
        assert "The recent window is reconciled" in dom
        no_mapping = re.search(r'<tr data-reason="no_mapping">.*?<td class="num">([^<]*)</td>', dom, re.S)
        assert no_mapping and no_mapping.group(1) == f"{summary.poisoned['no_mapping']:,}"
        today = datetime.now(UTC).date().isoformat()
        archived_today = sum(1 for entry in summary.records.values()
                             if entry.outcome in (RecordOutcome.IMPORTED, RecordOutcome.SKIPPED_DUPLICATE)
                             and entry.at.date().isoformat() == today)
        bar = re.search(rf'<g class="day" data-date="{today}" data-archived="(\d+)"[^>]*>(.*?)</g>', dom, re.S)
        assert bar and int(bar.group(1)) == archived_today > 0
        assert '<rect class="archived"' in bar.group(2)
        assert 'href="?format=json&amp;code=demo-key"' in dom
        assert "<script" not in dom.lower()

        ARTIFACTS.mkdir(exist_ok=True)
        SCREENSHOT.unlink(missing_ok=True)
        run_chromium(chromium, tmp_path / "profile-shot", f"--screenshot={SCREENSHOT}", server.url)
        assert server.requests == ["/api/status?format=html&code=demo-key"] * 2, "chromium fetched more than the page"

    data = SCREENSHOT.read_bytes()
    width, height, pixels = png_size_and_pixels(data)
    assert (width, height) == (1280, 1600)
    assert len(data) > 40_000, "the screenshot is nearly empty"
    assert len(set(pixels)) > 64, "the screenshot is blank"
