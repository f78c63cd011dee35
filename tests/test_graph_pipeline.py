"""The Graph writer inside the whole pipeline: racing workers and throttling storms still leave
exactly one item per record and mailbox, and every record is accounted for."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from azure.storage.blob import BlobServiceClient

from shared.adapters.azure_deliveries import BlobDeliveryRecords
from shared.adapters.graph_client import build_graph_client
from shared.adapters.graph_mailbox import GraphMailbox
from shared.adapters.graph_message import ID_PROPERTY_GUID
from shared.composition import reset_container
from shared.domain.records import ArchiveRecord
from shared.domain.rendering import render
from shared.local.demo import DemoPaths, run_window
from shared.local.graph_stand_in.server import LocalGraph
from shared.local.graph_stand_in.store import extended_property
from shared.local.traffic.day import generate_day
from shared.service.delivery import OnceOnlyMailbox
from tests.builders import record

pytestmark = pytest.mark.integration
TOKEN = "local-graph-token"
ID_PROPERTY = f"String {{{ID_PROPERTY_GUID}}} Name WhatsAppArchiverItemId"


def archived_pairs(graph: LocalGraph, users) -> list[tuple[str, str]]:
    return [(address, extended_property(m, ID_PROPERTY)) for address in users for m in graph.messages(address)]


def test_two_workers_racing_on_one_record_through_graph_leave_one_item(azurite):
    item = render(ArchiveRecord.model_validate(record("race-graph")), {})
    with LocalGraph({"alice@contoso.example": True}, token=TOKEN, latency_seconds=0.2) as graph:
        def worker() -> str:
            # Separate Graph and storage clients per worker, as two function instances would have.
            client = build_graph_client(base_url=graph.base_url, access_token=TOKEN)
            storage = BlobServiceClient.from_connection_string(azurite.connection_string)
            mailbox = GraphMailbox(client)
            writer = OnceOnlyMailbox(mailbox, BlobDeliveryRecords(storage, "archive-state"))
            try:
                return writer.write("alice@contoso.example", item).value
            finally:
                mailbox.close()

        with ThreadPoolExecutor(2) as pool:
            outcomes = sorted(f.result() for f in [pool.submit(worker) for _ in range(2)])
        assert outcomes == ["imported", "skipped_duplicate"]
        assert archived_pairs(graph, ["alice@contoso.example"]) == [("alice@contoso.example", "race-graph")]


def test_a_throttling_storm_ends_with_every_record_written_once(tmp_path, monkeypatch):
    paths = DemoPaths(tmp_path / "demo")
    paths.root.mkdir()
    users = {address: True for address in generate_day(datetime(2026, 1, 1, tzinfo=UTC)).directory()}
    # Far below Exchange's real budget, so that the storm really throttles: 15 requests per second
    # per mailbox, and bursts of 503/429 on creates on top.
    with LocalGraph(users, token=TOKEN, rate_limit=(15, 1.0)) as graph:
        graph.fail_next(503, times=25, path_contains="/messages")
        graph.fail_next(429, times=25, retry_after=2, path_contains="/messages")
        monkeypatch.setenv("GRAPH_BASE_URL", graph.base_url)
        monkeypatch.setenv("GRAPH_ACCESS_TOKEN", TOKEN)
        reset_container()
        try:
            window = run_window(paths, graph=True, workers=8)["window"]
        finally:
            reset_container()
        storm_left = graph.pending_faults()
        pairs = archived_pairs(graph, users)
    # The storm really happened: all 50 scripted 503s and 429s were served. (Whether the rate rule
    # throttles as well depends on the machine's speed: the writer's pacer keeps below it.)
    assert storm_left == 0
    assert window["reconciled"] and window["pending"] == 0
    assert len(pairs) == len(set(pairs)) == window["imported"] == window["fanout"]


def test_daily_transcripts_through_graph_are_written_once_per_mailbox_even_when_the_day_is_listed_again(
    tmp_path, monkeypatch,
):
    paths = DemoPaths(tmp_path / "demo")
    paths.root.mkdir()
    users = {address: True for address in generate_day(datetime(2026, 1, 1, tzinfo=UTC)).directory()}
    with LocalGraph(users, token=TOKEN) as graph:
        monkeypatch.setenv("GRAPH_BASE_URL", graph.base_url)
        monkeypatch.setenv("GRAPH_ACCESS_TOKEN", TOKEN)
        reset_container()
        try:
            window = run_window(paths, graph=True, transcripts=True)["window"]
            items = archived_pairs(graph, users)
            again = run_window(paths, graph=True, transcripts=True, relist=True)["window"]
            after = archived_pairs(graph, users)
        finally:
            reset_container()
    assert window["reconciled"] and window["imported"] == window["fanout"] > len(items) > 0
    assert all(item_id.startswith("transcript:") for _, item_id in items)
    assert len(items) == len(set(items))
    assert again["reconciled"] and again["imported"] == 0 and sorted(after) == sorted(items)
