"""``python -m shared.cli import FILE --format whatsapp-cloud``: a file of WhatsApp Business Platform
webhook bodies (one per line, as Meta sent them) into .eml mailboxes through ``main``, media from a
local Meta stand-in on loopback. Bodies come from tests/whatsapp_cloud_builders.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.cli.main import main
from shared.domain.webhook_auth import MAX_BODY_BYTES
from shared.local.meta_server import LocalMeta
from tests import builders
from tests import whatsapp_cloud_builders as wa
from tests.test_cli import Run, import_argv, jsonl, run_cli, snapshot, stored_mail

MEDIA_TOKEN = "local-meta-system-user-token"
BOB = "bob@contoso.example"  # the business number is Bob's (builders.MAPPING_CSV)
SECRET_TEXT = "my account is 12-34-56 87654321, tell nobody"
FAILED_ERROR = {"code": 131049, "title": "Meta chose not to deliver",
                "message": "sent to +12025550143 who is not engaged", "error_data": {"details": "ask 12025550143"}}


@pytest.fixture
def meta(monkeypatch):
    """LocalMeta on 127.0.0.1, and the app's WHATSAPP_* settings pointing at it (environment only)."""
    with LocalMeta(MEDIA_TOKEN) as server:
        server.add("media-1", wa.PICTURE, "image/jpeg")
        monkeypatch.setenv("WHATSAPP_GRAPH_BASE_URL", server.base_url)
        monkeypatch.setenv("WHATSAPP_ACCESS_TOKEN", MEDIA_TOKEN)
        monkeypatch.delenv("WHATSAPP_GRAPH_VERSION", raising=False)
        yield server


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    (tmp_path / "map.csv").write_text(builders.MAPPING_CSV, encoding="utf-8")
    (tmp_path / "users.txt").write_text("\n".join(builders.DIRECTORY) + "\n", encoding="utf-8")
    return tmp_path


def day_of_bodies() -> list[bytes]:
    """A file's lines: every kind the brief lists, in the order Meta might send them."""
    text = wa.inbound(wa.message("text", wa.text(SECRET_TEXT), n=1))
    broken = wa.message("text", wa.text("no time"), n=7)
    broken["timestamp"] = "yesterday"
    return [
        text,                                                                                    # 1
        wa.inbound(wa.message("image", wa.media("media-1", "image/jpeg", caption="the chart"), n=2)),  # 2
        wa.echoes(wa.echo("text", wa.text("Done: 100 filled."), n=3)),                           # 3
        text,                                                                                    # 4 redelivered
        wa.statuses(wa.status(3, "delivered"), wa.status(3, "read"),                             # 5
                    wa.status(4, "failed", errors=[FAILED_ERROR])),
        b"not json {" + SECRET_TEXT.encode() + b"}",                                             # 6
        wa.body(wa.entry(wa.change({"text": SECRET_TEXT}, field="feed")), object_="page"),       # 7
        b"   ",                                                                                  # 8 blank
        wa.inbound(wa.message("image", wa.media("media-gone", "image/jpeg", caption="expired"), n=5)),  # 9
        wa.inbound(wa.message("text", wa.text("fine"), n=6), broken),                            # 10
        wa.statuses(wa.status(3, "delivered")),                                                  # 11 redelivered
    ]


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def run_import(items: Path, inputs: Path, mailboxes: Path, report: Path) -> Run:
    return run_cli(import_argv(items, inputs, mailboxes, report, "--format", "whatsapp-cloud"), report)


def by_line(report: dict) -> dict[int, list[dict]]:
    entries: dict[int, list[dict]] = {}
    for entry in report["items"]:
        entries.setdefault(entry["line"], []).append(entry)
    return entries


def test_a_file_of_webhook_bodies_is_archived_once_per_message_with_wamids_and_media(inputs, tmp_path, meta):
    items = write_lines(tmp_path / "bodies.jsonl", day_of_bodies())
    mailboxes = tmp_path / "mail"
    first = run_import(items, inputs, mailboxes, tmp_path / "first.json")

    assert first.code == 0, first.stderr
    report = first.report
    assert report["format"] == "whatsapp-cloud" and report["bodies"] == 10  # the blank line is no body
    entries = by_line(report)
    assert sorted(entries) == [1, 2, 3, 4, 6, 7, 9, 10]  # statuses are not items
    # Each message listed with its wamid as messageId, and where it stood in its body.
    archived = {n: entries[n][0] for n in (1, 2, 3, 9)}
    assert {n: e["messageId"] for n, e in archived.items()} == {1: wa.wamid(1), 2: wa.wamid(2), 3: wa.wamid(3),
                                                                   9: wa.wamid(5)}
    assert all(e["outcome"] == "imported" and e["mailboxes"] == [BOB] for e in archived.values())
    assert archived[1]["path"] == "entry[0].changes[0].value.messages[0]"
    assert archived[3]["path"] == "entry[0].changes[0].value.message_echoes[0]"
    # Meta's redelivery: archived once, the repeat counted as a skipped duplicate.
    [again] = entries[4]
    assert (again["messageId"], again["outcome"]) == (wa.wamid(1), "skipped_duplicate")
    assert again["mailbox_outcomes"] == {BOB: {"outcome": "skipped_duplicate", "rule": "csv"}}
    # Bad lines and the malformed message: poisoned invalid_item with their line and JSON path.
    [not_json] = entries[6]
    [not_whatsapp] = entries[7]
    assert (not_json["outcome"], not_json["reason"], not_json["path"]) == ("poisoned", "invalid_item", "$")
    assert "not JSON" in not_json["detail"]
    assert (not_whatsapp["reason"], not_whatsapp["path"]) == ("invalid_item", "object")
    assert "whatsapp_business_account" in not_whatsapp["detail"]
    fine, malformed = entries[10]
    assert (fine["messageId"], fine["outcome"]) == (wa.wamid(6), "imported")
    assert (malformed["messageId"], malformed["reason"]) == (wa.wamid(7), "invalid_item")
    assert malformed["path"] == "entry[0].changes[0].value.messages[1].timestamp"
    assert malformed["detail"].startswith("entry[0].changes[0].value.messages[1].timestamp: ")
    # Counts: records and record x mailbox pairs, as the TeleMessage import counts them.
    assert report["listed"] == 9 and report["fanout"] == 6
    assert (report["imported"], report["skipped_duplicates"]) == (5, 1)
    assert report["poisoned"] == {"invalid_item": 3}
    # Expired media: archived all the same, saying so, and counted partial.
    assert archived[9].get("partial") is True and report["partially_imported"] == 1
    assert report["media"] == {"captured": 1, "not_captured": 1}
    # Receipts: counted once per wamid and status, the failed one listed with Meta's code and title.
    assert report["statuses"] == {
        "counts": {"delivered": 1, "failed": 1, "read": 1}, "repeated": 1,
        "failed": [{"line": 5, "path": "entry[0].changes[0].value.statuses[2]", "messageId": wa.wamid(4),
                    "errors": [{"code": 131049, "title": "Meta chose not to deliver"}]}],
    }
    assert "failed: " + wa.wamid(4) in first.stdout and "131049" in first.stdout

    mail = stored_mail(mailboxes)
    assert set(mail) == {(BOB, wa.wamid(n)) for n in (1, 2, 3, 5, 6)}
    [picture] = list(mail[BOB, wa.wamid(2)].iter_attachments())
    assert picture.get_content() == wa.PICTURE
    assert "MEDIA NOT CAPTURED" in mail[BOB, wa.wamid(5)].get_body(("plain",)).get_content()
    assert list(mail[BOB, wa.wamid(5)].iter_attachments()) == []
    # The token went to the stand-in's lookup and its own download link: one of each for media-1,
    # one lookup for the id it no longer has.
    assert {r.authorization for r in meta.requests} == {f"Bearer {MEDIA_TOKEN}"}
    assert sorted(r.path for r in meta.requests if not r.path.startswith("/download/")) == [
        "/v26.0/media-1", "/v26.0/media-gone"]
    assert len(meta.downloads()) == 1

    # Nothing of the messages, the customer's number or the token in the report or on the console.
    report_text = (tmp_path / "first.json").read_text(encoding="utf-8")
    for text in (report_text, first.stdout, first.stderr):
        for secret in (SECRET_TEXT, "87654321", wa.CUSTOMER, wa.CUSTOMER_NAME, MEDIA_TOKEN, "no time", "not engaged"):
            assert secret not in text


def test_a_second_run_of_the_same_file_archives_nothing_new(inputs, tmp_path, meta):
    items = write_lines(tmp_path / "bodies.jsonl", day_of_bodies())
    mailboxes = tmp_path / "mail"
    first = run_import(items, inputs, mailboxes, tmp_path / "first.json")
    files = snapshot(mailboxes)
    meta.media.clear()  # a week later: Meta has none of the media any more

    second = run_import(items, inputs, mailboxes, tmp_path / "second.json")

    assert second.code == 0, second.stderr
    report = second.report
    assert report["imported"] == 0 and report["skipped_duplicates"] == report["fanout"] == 6
    assert report["partially_imported"] == 0  # nothing was written, so nothing was written without media
    assert snapshot(mailboxes) == files
    assert [(e["line"], e["outcome"]) for e in report["items"]] == [
        (e["line"], "skipped_duplicate" if e["outcome"] == "imported" else e["outcome"])
        for e in first.report["items"]]


def test_without_an_access_token_media_is_not_fetched_and_the_records_are_archived_as_partial(
    inputs, tmp_path, meta, monkeypatch,
):
    monkeypatch.delenv("WHATSAPP_ACCESS_TOKEN")
    items = write_lines(tmp_path / "bodies.jsonl", [
        wa.inbound(wa.message("image", wa.media("media-1", "image/jpeg", caption="the chart"), n=2))])

    run = run_import(items, inputs, tmp_path / "mail", tmp_path / "report.json")

    assert run.code == 0, run.stderr
    assert "WHATSAPP_ACCESS_TOKEN is not set" in run.stderr and "media cannot be fetched" in run.stderr
    [entry] = run.report["items"]
    assert (entry["messageId"], entry["outcome"], entry.get("partial")) == (wa.wamid(2), "imported", True)
    assert run.report["media"]["not_captured"] == 1 and "WHATSAPP_ACCESS_TOKEN" in run.report["media"]["note"]
    assert meta.requests == []
    assert set(stored_mail(tmp_path / "mail")) == {(BOB, wa.wamid(2))}


def test_a_token_meta_refuses_stops_the_run_at_its_line_with_exit_1_and_the_report_so_far(
    inputs, tmp_path, meta, monkeypatch,
):
    monkeypatch.setenv("WHATSAPP_ACCESS_TOKEN", "an-expired-token")
    items = write_lines(tmp_path / "bodies.jsonl", [
        wa.inbound(wa.message("text", wa.text("hello"), n=1)),
        wa.inbound(wa.message("image", wa.media("media-1", "image/jpeg"), n=2)),
        wa.inbound(wa.message("text", wa.text("later"), n=3)),
    ])

    run = run_import(items, inputs, tmp_path / "mail", tmp_path / "report.json")

    assert run.code == 1
    assert "stopped at line 2" in run.stderr and "refused the access token" in run.stderr
    assert "an-expired-token" not in run.stderr + run.stdout + (tmp_path / "report.json").read_text()
    assert run.report["stopped"]["line"] == 2
    assert [e["messageId"] for e in run.report["items"]] == [wa.wamid(1)]
    # Nothing of the media message was archived without its media: a run with the right token does it.
    assert set(stored_mail(tmp_path / "mail")) == {(BOB, wa.wamid(1))}


def test_graph_settings_that_are_not_metas_are_a_usage_error_before_anything_is_written(
    inputs, tmp_path, meta, monkeypatch, capsys,
):
    monkeypatch.setenv("WHATSAPP_GRAPH_BASE_URL", "https://graph.example.net")
    items = write_lines(tmp_path / "bodies.jsonl", [wa.inbound(wa.message("text", wa.text("hi"), n=1))])
    code = main(import_argv(items, inputs, tmp_path / "mail", tmp_path / "r.json", "--format", "whatsapp-cloud"))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "WHATSAPP_GRAPH_BASE_URL" in err
    assert not (tmp_path / "mail").exists() and not (tmp_path / "r.json").exists()


def test_a_line_over_3_mb_is_poisoned_naming_its_line_and_the_next_line_is_read(inputs, tmp_path, meta):
    huge = b'{"object":"whatsapp_business_account","entry":[],"pad":"' + b"x" * MAX_BODY_BYTES + b'"}'
    items = write_lines(tmp_path / "bodies.jsonl", [huge, wa.inbound(wa.message("text", wa.text("hi"), n=1))])

    run = run_import(items, inputs, tmp_path / "mail", tmp_path / "report.json")

    assert run.code == 0, run.stderr
    too_long, good = run.report["items"]
    assert (too_long["line"], too_long["reason"], too_long["messageId"]) == (1, "invalid_item", None)
    assert "longer than" in too_long["detail"]
    assert (good["line"], good["messageId"], good["outcome"]) == (2, wa.wamid(1), "imported")


def test_the_default_format_is_telemessage_and_reads_records_as_before(inputs, tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_bytes(jsonl(builders.record("m1")))
    default = run_cli(import_argv(items, inputs, tmp_path / "a", tmp_path / "a.json"), tmp_path / "a.json")
    explicit = run_cli(import_argv(items, inputs, tmp_path / "b", tmp_path / "b.json", "--format", "telemessage"),
                       tmp_path / "b.json")
    assert default.code == explicit.code == 0
    assert default.report == explicit.report and "format" not in default.report
    assert default.report["items"][0]["messageId"] == "m1"


@pytest.mark.integration
def test_with_graph_the_items_id_property_is_the_wamid(inputs, tmp_path, meta, monkeypatch):
    from shared.adapters.graph_message import id_property_id
    from shared.composition import reset_container
    from shared.local.graph_stand_in.server import LocalGraph
    from shared.local.graph_stand_in.store import normalize_property_id

    items = write_lines(tmp_path / "bodies.jsonl", [
        wa.inbound(wa.message("image", wa.media("media-1", "image/jpeg"), n=2)),
        wa.echoes(wa.echo("text", wa.text("Done."), n=3)),
    ])
    with LocalGraph({BOB: True}, token="local-graph-token") as graph:
        monkeypatch.setenv("GRAPH_BASE_URL", graph.base_url)
        monkeypatch.setenv("GRAPH_ACCESS_TOKEN", "local-graph-token")
        reset_container()
        try:
            argv = ["import", str(items), "--mapping", str(inputs / "map.csv"), "--graph", "--format", "whatsapp-cloud"]
            assert main([*argv, "--report", str(tmp_path / "r.json")]) == 0
            stored = graph.messages(BOB)
        finally:
            reset_container()
    key = normalize_property_id(id_property_id())
    assert sorted(m["extendedProperties"][key] for m in stored) == [wa.wamid(2), wa.wamid(3)]
    headers = [{h["name"]: h["value"] for h in m["internetMessageHeaders"]} for m in stored]
    assert sorted(h.get("X-Archive-Item-Id") for h in headers) == [wa.wamid(2), wa.wamid(3)]
    report = json.loads((tmp_path / "r.json").read_text())
    assert [e["messageId"] for e in report["items"]] == [wa.wamid(2), wa.wamid(3)]
