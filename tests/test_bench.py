"""The benchmark (bench/): ``python -m bench`` still runs and prints every figure.

A tiny run of every figure (``--quick``) in a fresh process, as ``make bench`` runs the real one.
Nothing here asserts a timing (a shared CI machine makes them noise); only what is deterministic:
every figure was measured, the request counts per record, the large attachment archived whole
through an upload session, the limits respected by the writer, every webhook delivery answered 200
and every record of the webhook bodies archived.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> dict:
    state = tmp_path_factory.mktemp("bench")
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", "--state-dir", str(state)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads(completed.stdout)


@pytest.mark.integration
def test_every_figure_is_measured_and_printed_beside_its_budget(quick_run):
    rows = quick_run["rows"]
    assert {row["figure"] for row in rows} == {f"({c})" for c in "abcdefghi"}
    assert not quick_run["results"]["errors"]
    assert all(row["status"] in ("PASS", "MISS", "info") for row in rows)
    budgeted = {row["figure"] for row in rows if row["status"] in ("PASS", "MISS")}
    assert budgeted == {"(a)", "(b)", "(c)", "(e)", "(f)", "(g)", "(h)", "(i)"}
    assert quick_run["machine"]["cores"] >= 1 and quick_run["machine"]["python"].startswith("3.13")


@pytest.mark.integration
def test_the_request_counts_per_record_are_the_documented_ones(quick_run):
    counts = quick_run["results"]["c"]
    assert counts["reconciled"] and not counts["poisoned"]
    assert counts["text"]["per_record"] == 1.0  # one create, no lookup: the delivery record said "new"
    assert counts["1MiB"]["per_record"] == 1.0  # inline in the create
    assert counts["20MiB"]["per_record"] == 9.0  # create + upload session + 7 chunks of 3,276,800 bytes
    assert counts["text"]["requests"].get("item_lookup", 0) == 0


@pytest.mark.integration
def test_the_end_to_end_runs_reconcile_and_the_large_attachment_is_archived_whole(quick_run):
    results = quick_run["results"]
    for run in results["b"]["runs"].values():
        assert run["reconciled"] and run["archived_pairs"] > 0 and run["throttled"] == 0
    assert all(point["archived"] == point["records"] for point in results["b_scaling"]["points"])
    memory = results["f"]
    assert memory["archived"] and memory["via"] == ["upload_session"]
    assert memory["upload_chunks"] == -(-memory["attachment_mib"] * 1024 * 1024 // 3_276_800)
    assert results["e"]["median"]["first_record_archived_s"] > results["e"]["median"]["import_function_app_s"]


@pytest.mark.integration
def test_the_paced_writer_keeps_within_the_mailbox_limits(quick_run):
    for key in ("g", "g_uploads"):
        figure = quick_run["results"][key]
        assert figure["paced"] and figure["archived"] > 0
        assert figure["most_in_flight"] <= 4
        assert figure["most_requests_in_a_window_share"] <= 1.0
        assert figure["most_bytes_in_a_window_share"] <= 1.0


@pytest.mark.integration
def test_every_webhook_delivery_is_answered_200_and_every_record_it_carried_is_archived(quick_run):
    acknowledged = quick_run["results"]["h"]
    assert acknowledged["all_answered_200"] and acknowledged["deliveries"] == quick_run["plan"]["webhook_deliveries"]
    assert acknowledged["handed_off"] == acknowledged["sent"]  # each body stored and queued before its 200
    end_to_end = quick_run["results"]["i"]
    assert end_to_end["delivery_statuses"] == {"200": end_to_end["bodies"]}
    assert end_to_end["reconciled"] and end_to_end["listed"] == end_to_end["records_sent"] > 0
    assert end_to_end["imported"] == end_to_end["records_sent"] and not end_to_end["poisoned"]
    assert end_to_end["partially_imported"] == 0  # every media item was captured from the local Meta


def test_the_chat_export_benchmark_reads_each_size_whole_and_prints_its_figures():
    completed = subprocess.run(
        [sys.executable, "-m", "bench.chat_export", "--sizes", "500,1500", "--json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)
    assert [run["messages"] for run in result["runs"]] == [500, 1500]
    assert all(run["peak_over_baseline_mib"] > 0 and run["messages_per_s"] for run in result["runs"])
    assert result["text_bound_mib"] == 64 and result["extrapolated_peak_mib_at_text_bound"] > 0


def test_the_evidence_benchmark_seals_and_verifies_each_size_and_prints_its_figures():
    completed = subprocess.run(
        [sys.executable, "-m", "bench.evidence", "--sizes", "300", "--json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    [run] = json.loads(completed.stdout)["evidence"]
    assert run["records"] == 300 and run["manifest_bytes_per_record"] > 100
    assert run["seal_seconds"] > 0 and run["verify_offline_seconds"] > 0 and run["day_of_2m"]["manifest_mib"] > 0


def test_the_eml_drop_benchmark_hands_off_and_imports_each_size_and_prints_its_figures():
    completed = subprocess.run(
        [sys.executable, "-m", "bench.eml_drop", "--sizes", "120", "--json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    [run] = json.loads(completed.stdout)["eml_drop"]
    assert run["emls"] == 120 and run["imported_sample"] == 120
    assert run["hand_off_emls_per_s"] > 0 and run["import_emls_per_s"] > 0 and run["day_of_2m"]["hand_off_hours"] > 0
