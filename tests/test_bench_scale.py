"""``python -m bench.scale`` still runs and emits every figure of its contract (issue 16, item 7).

A small run (``--quick --json``) in a fresh process, as ``make scale`` runs the real one. No timing
is asserted (a shared machine makes them noise); what is: every field is there with a value in its
range, the counts that do not depend on the load (a claim check written and an item message put for
every record; the ledger's transactions within Azure's limits), the dollars add up, and the request
classifier bills as azure-costs.md says.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scale_counting import classify

REPO_ROOT = Path(__file__).resolve().parents[1]
KINDS = ("blob_write", "blob_read", "blob_other", "queue", "table")
LIMITS = (
    "table_partition_entities_per_second", "table_account_transactions_per_second", "account_requests_per_second",
    "queue_messages_per_second", "table_batch_operations", "table_entity_bytes", "table_property_bytes",
    "table_entity_properties", "queue_message_bytes", "appends_per_append_blob",
)


@pytest.fixture(scope="module")
def quick_run() -> dict:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--quick", "--json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads(completed.stdout)


@pytest.mark.integration
def test_every_field_of_the_contract_is_measured(quick_run):
    for name in ("outcomes_per_window", "limits", "peak_rss_mib", "storage_ops_per_pair",
                 "usd_per_million_pairs", "cpu_ms_per_record"):
        assert quick_run.get(name) is not None, name
    assert quick_run["missing"] == [] and quick_run["errors"] == {}
    window = quick_run["outcomes_per_window"]
    assert 1_000 <= window["written"] <= window["stands_for"] and window["write_rate_per_second"] > 0
    assert set(quick_run["peak_rss_mib"]) == {"status", "report", "timer"}
    assert all(0 <= mib < 1024 for mib in quick_run["peak_rss_mib"].values())
    assert 0 < quick_run["cpu_ms_per_record"] < 10_000


@pytest.mark.integration
def test_the_operations_per_pair_are_counted_by_kind(quick_run):
    ops = quick_run["storage_ops_per_pair"]
    assert set(ops) == set(KINDS) and all(isinstance(v, int | float) and v >= 0 for v in ops.values())
    # Every record has its item message put, received (in a batch) and deleted, and its outcome in
    # the table ledger (two point reads and a transaction): none of these can be missing.
    assert ops["queue"] >= 2 and ops["table"] >= 3
    detail = quick_run["storage_ops_per_pair_detail"]
    assert detail["reconciled"] and detail["archived_pairs"] > 0 and detail["stores"]["ledger"] == "table"
    assert detail["requests_per_pair"]["queue_put"] >= 1 and detail["requests_per_pair"]["queue_delete"] >= 1
    assert quick_run["billable_writes_per_pair"] >= ops["blob_write"] + 1


@pytest.mark.integration
def test_the_dollars_add_up(quick_run):
    cost = quick_run["usd_per_million_pairs"]
    parts = sum(cost["storage"].values()) + sum(cost["functions"].values())
    assert cost["total"] > 0 and math.isclose(cost["total"], parts, abs_tol=0.02)
    # At list price: $0.05 per 10,000 blob writes, $0.004 per 10,000 queue operations.
    ops = quick_run["storage_ops_per_pair"]
    assert math.isclose(cost["storage"]["blob_write"], ops["blob_write"] * 5, abs_tol=0.01)
    assert math.isclose(cost["storage"]["queue"], ops["queue"] * 0.4, abs_tol=0.01)


@pytest.mark.integration
def test_the_limits_are_the_ledgers_and_within_azures(quick_run):
    limits = quick_run["limits"]
    assert set(limits) == set(LIMITS)
    for name, figure in limits.items():
        assert isinstance(figure["used"], int) and figure["used"] >= 0 and figure["limit"] > 0, name
    # The adapter's shapes at their largest, whatever the load, within what Azure takes: a
    # transaction's operations, a string property, an entity, a queue message; no append blob
    # written on the table ledger.
    for name in ("table_batch_operations", "table_property_bytes", "table_entity_bytes", "table_entity_properties",
                 "queue_message_bytes"):
        assert 1 < limits[name]["used"] <= limits[name]["limit"], name
    assert limits["appends_per_append_blob"]["used"] == 0
    assert quick_run["shapes"]["same_shape"]


def test_requests_are_billed_as_azure_bills_them():
    def kind(service: str, method: str, path: str, **query: str) -> str:
        return classify(service, method, path, query, {})

    assert kind("blob", "PUT", "/devstoreaccount1/c/b") == "blob_write"  # Put Blob
    assert kind("blob", "PUT", "/devstoreaccount1/c/b", comp="appendblock") == "blob_write"
    assert kind("blob", "PUT", "/devstoreaccount1/c/b", comp="block", blockid="x") == "blob_write"
    assert kind("blob", "GET", "/devstoreaccount1/c/b") == "blob_read"
    assert kind("blob", "PUT", "/devstoreaccount1/c/b", comp="lease") == "blob_other"
    assert kind("blob", "HEAD", "/devstoreaccount1/c/b") == "blob_other"
    assert kind("blob", "PUT", "/devstoreaccount1/c", restype="container") == "blob_list"
    assert kind("blob", "GET", "/devstoreaccount1/c", restype="container", comp="list") == "blob_list"
    assert kind("blob", "DELETE", "/devstoreaccount1/c/b") == "blob_free"
    assert kind("queue", "POST", "/devstoreaccount1/q/messages") == "queue_put"
    assert kind("queue", "GET", "/devstoreaccount1/q/messages") == "queue_receive"
    assert kind("queue", "DELETE", "/devstoreaccount1/q/messages/id", popreceipt="r") == "queue_delete"
    assert kind("queue", "GET", "/devstoreaccount1/q", comp="metadata") == "queue_depth"
    assert kind("table", "POST", "/devstoreaccount1/$batch") == "table_write"
    assert kind("table", "GET", "/devstoreaccount1/t(PartitionKey='a',RowKey='b')") == "table_read"
