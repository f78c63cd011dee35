"""Whole windows through the registered functions and the local host runner, over Azurite, with the
local TeleMessage as the source: every record accounted for, original dates kept, re-runs idempotent."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default
from email.utils import parsedate_to_datetime

import pytest

import function_app
from shared.adapters.graph_message import ID_PROPERTY_GUID
from shared.domain.ledger import RecordOutcome
from shared.local.demo import DemoPaths, run_window
from shared.local.graph_stand_in.server import LocalGraph
from shared.local.graph_stand_in.store import extended_property
from shared.local.host_runner.runner import HostRunner
from shared.local.traffic.day import generate_day
from shared.service.reports import with_rows
from shared.service.status import window_summary
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration


def test_demo_window_accounts_for_every_record_and_reruns_import_nothing_new(tmp_path):
    paths = DemoPaths(tmp_path / "demo")
    paths.root.mkdir()
    first = run_window(paths)
    window = first["window"]
    assert window["reconciled"] and window["pending"] == 0
    assert window["listed"] == first["generated"]
    assert window["fanout"] == window["imported"] + window["skipped_duplicates"]
    assert window["poisoned"].get("no_mapping", 0) >= 1 and window["poisoned"].get("too_big") == 1
    assert window["partially_imported"] >= 1
    assert first["eml_files"] == window["imported"]
    assert first["queues"]["items-poison"] == sum(window["poisoned"].values())

    # Every .eml parses and carries its record's original send time.
    traffic = generate_day(_anchor(paths))
    sent = {r["messageId"]: r["messageTime"] for r in traffic.records}
    files = list(paths.mailboxes.rglob("*.eml"))
    for path in files:
        message = message_from_bytes(path.read_bytes(), policy=default)
        assert path.parent.name == "WhatsApp Archiver"
        assert parsedate_to_datetime(message["Date"]).timestamp() == sent[message["X-Archive-Item-Id"]] // 1000

    second = run_window(paths)
    # Nothing new was captured. (If a minute boundary passed since the first run, the second run
    # lists the one new, empty minute of capture time; either way nothing is imported.)
    assert second["window"] is None or (second["window"]["listed"] == 0 and second["window"]["reconciled"])
    assert second["eml_files"] == len(files)

    again = run_window(paths, relist=True)["window"]
    assert again["reconciled"] and again["imported"] == 0
    assert again["skipped_duplicates"] == window["fanout"]
    assert sum(1 for _ in paths.mailboxes.rglob("*.eml")) == len(files)


def _anchor(paths: DemoPaths):
    import json
    from datetime import datetime

    return datetime.fromisoformat(json.loads(paths.state.read_text())["anchor"])


def test_graph_writer_archives_the_window_into_the_local_graph_once_per_record_and_mailbox(
    local_app, traffic, monkeypatch,
):
    users = {address: True for address in traffic.directory()}
    with LocalGraph(users, token="local-graph-token") as graph:
        for key, value in {
            "MAILBOX_WRITER": "graph", "DIRECTORY": "graph",
            "GRAPH_BASE_URL": graph.base_url, "GRAPH_ACCESS_TOKEN": "local-graph-token",
        }.items():
            monkeypatch.setenv(key, value)
        from shared.composition import get_container, reset_container

        reset_container()
        container = get_container()
        env = {**local_app.env, "MAILBOX_WRITER": "graph"}
        with HostRunner(function_app.app, host_json=REPO_ROOT / "host.json",
                        connection_settings={"AzureWebJobsStorage": env["AzureWebJobsStorage"]},
                        settings=env, workers=4) as runner:
            runner.run_timer("schedule_archive_window")
            runner.drain(timeout=300)
        watermark, _ = container.watermarks.read()
        summary = with_rows(container.ledger, window_summary(container.ledger, watermark.last_window_id))
        assert summary.reconciled and summary.listed == len(traffic.records)

        id_property = f"String {{{ID_PROPERTY_GUID}}} Name WhatsAppArchiverItemId"
        archived = {
            (address, extended_property(message, id_property))
            for address in users for message in graph.messages(address)
        }
        stored = [message for address in users for message in graph.messages(address)]
        assert len(stored) == len(archived) == summary.imported  # one item per record and mailbox
        expected = {
            (m.mailbox, entry.message_id)
            for entry in summary.records.values() if entry.outcome is not RecordOutcome.POISONED
            for m in entry.mailboxes
        }
        assert archived == expected
        assert not any(message["isDraft"] for message in stored)
        reset_container()


def test_daily_transcript_demo_puts_every_pair_in_exactly_one_transcript_and_a_relist_adds_none(tmp_path):
    paths = DemoPaths(tmp_path / "demo")
    paths.root.mkdir()
    first = run_window(paths, transcripts=True)
    window = first["window"]
    assert window["reconciled"] and window["awaiting_transcript"] == 0
    assert window["listed"] == first["generated"] and window["imported"] == window["fanout"]
    files = list(paths.mailboxes.rglob("*.eml"))
    assert 0 < len(files) < window["imported"] / 5  # one per chat, day and mailbox
    # Every imported record × mailbox pair is in exactly one transcript of that mailbox.
    pairs: list[tuple[str, str]] = []
    for path in files:
        message = message_from_bytes(path.read_bytes(), policy=default)
        assert message["X-Archive-Message-Type"] == "TRANSCRIPT"
        text = message.get_body(("plain",)).get_content()
        ids = [line.removeprefix("Record id: ") for line in text.splitlines() if line.startswith("Record id: ")]
        assert len(ids) == int(message["X-Archive-Record-Count"])
        pairs += [(path.parent.parent.name, record_id) for record_id in ids]
    assert len(pairs) == len(set(pairs)) == window["imported"]

    again = run_window(paths, relist=True, transcripts=True)["window"]
    assert again["reconciled"] and again["imported"] == 0 and again["skipped_duplicates"] == window["fanout"]
    assert sorted(paths.mailboxes.rglob("*.eml")) == sorted(files)
