"""`demo --graph` and `import --graph`: the same pipeline into Exchange through Graph settings from the
environment, here pointed at the local Graph-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.cli.main import main
from shared.composition import reset_container
from shared.local.demo import DemoPaths, run_window
from shared.local.graph_stand_in.server import LocalGraph
from shared.local.traffic.day import generate_day

pytestmark = pytest.mark.integration
TOKEN = "local-graph-token"


@pytest.fixture
def graph_env(monkeypatch):
    def use(graph: LocalGraph) -> None:
        monkeypatch.setenv("GRAPH_BASE_URL", graph.base_url)
        monkeypatch.setenv("GRAPH_ACCESS_TOKEN", TOKEN)
        reset_container()

    yield use
    reset_container()


def stored_items(graph: LocalGraph, users) -> int:
    return sum(len(graph.messages(address)) for address in users)


def test_demo_with_graph_archives_every_pair_once_and_a_relist_writes_nothing(tmp_path, graph_env):
    paths = DemoPaths(tmp_path / "demo")
    paths.root.mkdir()
    traffic_users = generate_day(datetime(2026, 1, 1, tzinfo=UTC)).directory()
    users = {address: True for address in traffic_users}
    with LocalGraph(users, token=TOKEN) as graph:
        graph_env(graph)
        first = run_window(paths, graph=True)["window"]
        assert first["reconciled"] and first["imported"] == first["fanout"] > 0
        assert stored_items(graph, users) == first["imported"]
        again = run_window(paths, graph=True, relist=True)["window"]
        assert again["imported"] == 0 and again["skipped_duplicates"] == first["fanout"]
        assert stored_items(graph, users) == first["imported"]
        assert not paths.mailboxes.exists()  # nothing went to .eml files


def test_import_with_graph_writes_into_the_tenant_and_a_second_run_skips(tmp_path, graph_env, capsys):


    traffic = generate_day(datetime(2026, 11, 22, tzinfo=UTC))
    items = tmp_path / "items.jsonl"
    traffic.write_jsonl(items)
    mapping = tmp_path / "map.csv"
    mapping.write_text(traffic.mapping_csv(), encoding="utf-8")
    users = {address: True for address in traffic.directory()}
    with LocalGraph(users, token=TOKEN) as graph:
        graph_env(graph)
        args = ["import", str(items), "--mapping", str(mapping), "--graph", "--region", "GB"]
        assert main([*args, "--report", str(tmp_path / "first.json")]) == 0
        first = json.loads((tmp_path / "first.json").read_text())
        assert first["imported"] == first["fanout"] == stored_items(graph, users) > 0
        assert main([*args, "--report", str(tmp_path / "second.json")]) == 0
        second = json.loads((tmp_path / "second.json").read_text())
        assert second["imported"] == 0 and second["skipped_duplicates"] == first["fanout"]
        assert stored_items(graph, users) == first["imported"]
    assert "Exchange Online" in capsys.readouterr().out


def test_import_with_graph_refuses_local_mailbox_options(tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    items.write_text("{}\n")
    mapping = tmp_path / "map.csv"
    mapping.write_text("PhoneNumber,EmailAddress\n")
    code = main(["import", str(items), "--mapping", str(mapping), "--graph", "--mailbox-dir", str(tmp_path)])
    assert code == 2 and "--graph" in capsys.readouterr().err
