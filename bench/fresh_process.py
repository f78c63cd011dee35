"""Figures (e) and (f): a fresh Python process runs the registered items function once.

(e) cold start: the parent notes the time (CLOCK_MONOTONIC, which every process on the machine
    shares) just before it starts the interpreter; the child imports ``function_app`` and calls the
    function registered for the items queue with one record's queue message, as the host would on
    its first message. The figure is the wall time until the function has returned (the item
    written into the local Graph, the delivery record and the window's ledger updated); the local
    Graph's own arrival time of the create splits it further. Azurite, the local Graph and the
    local TeleMessage are already running; the Graph token is static (a managed identity adds one
    token request to a real cold start), and the Functions host's own start is not in it.
(f) peak memory: the same child archives a text record first (every import and connection the
    function makes is then in place), resets the kernel's high-water mark of its resident memory
    (``echo 5 > /proc/self/clear_refs``), and archives a record whose 100 MiB attachment is
    downloaded from the local TeleMessage, spooled to disk and uploaded to the local Graph through
    an upload session. The peak is ``VmHWM`` (/proc/self/status) at the end: the process's
    largest resident memory while that record was archived, baseline included. The baselines
    reported are its resident memory after ``import function_app`` and after the first record.

The repo's own modules are imported without cached bytecode (PYTHONDONTWRITEBYTECODE=1), as on a
Flex Consumption instance whose package is mounted read-only; installed packages come with theirs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.records import RecordSet, uniform
from bench.stack import REPO_ROOT, app_env, new_run_id, servers_for

MIB = 1024 * 1024

# The child: nothing before ``import function_app`` but the clock and what reads /proc.
CHILD = r"""
import time
started = time.monotonic()
import json, os

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024

import function_app
imported = time.monotonic()
rss_imported = status("VmRSS:")
from azure.functions.queue import QueueMessage
function = next(f for f in function_app.app.get_functions() if f.get_function_name() == "import_archive_item")
handle = function.get_user_function()
warmed = rss_warm = hwm_warm = None
reset = False
if os.environ.get("BENCH_WARMUP"):
    handle(QueueMessage(id="bench-warm-up", body=os.environ["BENCH_WARMUP"].encode(), dequeue_count=1))
    warmed = time.monotonic()
    rss_warm = status("VmRSS:")
    hwm_warm = status("VmHWM:")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident memory
        reset = True
    except OSError:
        pass
before_call = time.monotonic()
handle(QueueMessage(id="bench-fresh", body=os.environ["BENCH_ITEM"].encode(), dequeue_count=1))
done = time.monotonic()
print("BENCH-RESULT " + json.dumps({
    "started": started, "imported": imported, "warmed": warmed, "before_call": before_call, "done": done,
    "rss_imported": rss_imported, "rss_warm": rss_warm, "hwm_warm": hwm_warm, "hwm_reset": reset,
    "rss_end": status("VmRSS:"), "hwm": status("VmHWM:"),
}))
"""


def _run_child(env: dict[str, str], item: str, *, warm_up: str = "") -> tuple[float, dict[str, Any]]:
    child_env = {
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(REPO_ROOT), **env,
        "BENCH_ITEM": item, "BENCH_WARMUP": warm_up,
    }
    launched = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=REPO_ROOT, env=child_env, capture_output=True, text=True, timeout=600,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"the fresh process failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    return launched, json.loads(lines[-1].removeprefix("BENCH-RESULT "))


def _prepare(records: RecordSet, env: dict[str, str]) -> list[str]:
    """Claim checks stored as the listing would store them; the items' queue messages."""
    from datetime import UTC, datetime, timedelta

    from shared.composition import get_container
    from shared.domain.ledger import WindowInfo
    from shared.domain.records import record_key
    from shared.domain.tasks import ItemTask
    from shared.domain.window import Window
    from shared.local.demo import app_settings
    from shared.service.listing import serialise_item

    now = datetime.now(UTC)
    # A window id of the ledger's form: queue messages are held to it (each run has its own state container).
    window_id = WindowInfo(Window(now - timedelta(days=1), now), 1, now).window_id
    with app_settings(env):
        container = get_container()
        tasks = []
        for record in records.records:
            key = record_key(record["messageId"])
            reference = container.records.put(key, serialise_item(record))
            tasks.append(ItemTask(window_id=window_id, record_key=key,
                                  record_ref=reference, message_id=record["messageId"]).to_text())
    return tasks


def measure_cold_start(azurite: Any, *, runs: int, latency: float) -> dict[str, Any]:
    """(e): ``runs`` fresh processes, each with one text record for a mailbox of its own."""
    records = uniform(runs, runs, tag="cold")
    password = os.urandom(12).hex()
    with servers_for(records, latency=latency, password=password) as servers:
        env = app_env(storage=azurite.connection_string, graph_url=servers.graph_url,
                      telemessage_url=servers.telemessage_url, password=password, run_id=new_run_id())
        tasks = _prepare(records, env)
        samples = []
        for n, task in enumerate(tasks):
            launched, child = _run_child(env, task)
            creates = _creates(servers, records.mailboxes[n])
            samples.append({
                "interpreter_start_s": round(child["started"] - launched, 3),
                "import_function_app_s": round(child["imported"] - child["started"], 3),
                "create_reached_graph_s": round(creates[0] - launched, 3) if creates else None,
                "first_record_archived_s": round(child["done"] - launched, 3),
                "rss_after_import_mib": round(child["rss_imported"] / MIB, 1),
                "peak_rss_mib": round(child["hwm"] / MIB, 1),
            })
    ordered = sorted(samples, key=lambda s: s["first_record_archived_s"])
    return {"latency_seconds": latency, "runs": samples, "median": ordered[len(ordered) // 2]}


def _creates(servers: Any, mailbox: str) -> list[float]:
    """When the local Graph received ``mailbox``'s item creates (CLOCK_MONOTONIC)."""
    return [entry["at"] for entry in servers.graph("request_log")
            if entry["mailbox"] == mailbox and entry["operation"] == "item_create"]


def measure_peak_memory(azurite: Any, *, attachment_mib: int, latency: float) -> dict[str, Any]:
    """(f): a text record, then one with an ``attachment_mib`` MiB attachment, in a fresh process."""
    large = uniform(1, 1, attachment_bytes=attachment_mib * MIB, tag="memory")
    warm = uniform(1, 1, tag="memorywarm")
    records = RecordSet(warm.records + large.records, large.media, large.seed, large.mailboxes)
    password = os.urandom(12).hex()
    with servers_for(records, latency=latency, password=password) as servers:
        env = app_env(storage=azurite.connection_string, graph_url=servers.graph_url,
                      telemessage_url=servers.telemessage_url, password=password, run_id=new_run_id(),
                      max_item_mb=150)
        warm_task, task = _prepare(records, env)
        _, child = _run_child(env, task, warm_up=warm_task)
        counts = servers.graph("request_counts", records.mailboxes[0])
        stored = servers.graph("messages", records.mailboxes[0])
    attachments = [a for message in stored for a in message["attachments"]]
    peak = child["hwm"] if child["hwm_reset"] else None
    return {
        "attachment_mib": attachment_mib,
        "archived": len(stored) == 2 and [a["size"] for a in attachments] == [attachment_mib * MIB],
        "via": [a["via"] for a in attachments],
        "upload_chunks": counts.get("upload_chunk", 0),
        "seconds": round(child["done"] - child["before_call"], 2),
        "rss_after_import_mib": round(child["rss_imported"] / MIB, 1),
        "rss_after_first_record_mib": round(child["rss_warm"] / MIB, 1),
        "peak_rss_mib": round(peak / MIB, 1) if peak else None,
        "peak_above_first_record_mib": round((peak - child["rss_warm"]) / MIB, 1) if peak else None,
        "process_peak_rss_mib": round(max(child["hwm"], child["hwm_warm"]) / MIB, 1),
        "rss_end_mib": round(child["rss_end"] / MIB, 1),
    }
