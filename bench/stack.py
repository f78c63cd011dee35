"""The benchmark's local stack, built from the soak's and the demo's parts: Azurite from
node_modules (shared/local/azurite.py), the local Graph and TeleMessage in a process of their own
(bench/servers.py), app settings through shared.local.demo.app_settings, and the registered
functions of function_app.py under the host-like runner (shared/local/host_runner/).

``run_pipeline`` is one window end to end, timed in two phases: the timer and the listing
function until the items queue holds every record (listing and enqueueing, figure d), then the
items function until the queues are empty (archiving, figure b).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.records import RecordSet
from bench.servers import ServerProcess, TeleMessageFeed
from bench.settings import pinned_app_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
GRAPH_TOKEN = "bench-local-graph-token"  # only ever sent to the local Graph on loopback
USERNAME = "bench-connector"
TIMER_FUNCTION = "schedule_archive_window"
LISTING_FUNCTION = "list_archive_slice"
ITEMS_FUNCTION = "import_archive_item"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def app_env(
    *, storage: str, graph_url: str, telemessage_url: str, password: str, run_id: str, max_item_mb: int = 10,
) -> dict[str, str]:
    """Every setting a figure depends on, pinned; a run's own containers so runs never meet."""
    return {
        **pinned_app_settings(
            storage=storage, telemessage_url=telemessage_url, username=USERNAME, password=password,
            graph_url=graph_url, graph_token=GRAPH_TOKEN, max_item_mb=max_item_mb,
            custom_mapping=False,  # records map through the participant's e-mail property
        ),
        "RECORDS_CONTAINER": f"bench-{run_id}-records",
        "STATE_CONTAINER": f"bench-{run_id}-state",
        "GRAPH_UPLOAD_SESSIONS": "true",
    }


def new_run_id() -> str:
    return uuid.uuid4().hex[:10]


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU of a process (this one when None), from /proc."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@contextmanager
def servers_for(
    records: RecordSet, *, latency: float, password: str, graph_options: dict[str, Any] | None = None,
    extra_users: list[str] = (),
) -> Iterator[ServerProcess]:
    users = {address: True for address in [*records.mailboxes, *extra_users]}
    graph = {"users": users, "token": GRAPH_TOKEN, "latency_seconds": latency, "keep_attachment_bytes": 0,
             **(graph_options or {})}
    feed = TeleMessageFeed(records.records, records.media, records.seed, USERNAME, password)
    with ServerProcess(graph=graph, telemessage=feed) as servers:
        yield servers


def _host_json(batch_size: int, folder: Path) -> Path:
    """host.json with another queue batch size (the runner's batch is its concurrency)."""
    config = json.loads((REPO_ROOT / "host.json").read_text(encoding="utf-8"))
    config["extensions"]["queues"]["batchSize"] = batch_size
    path = folder / f"host.batch{batch_size}.json"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


@dataclass
class PipelineResult:
    records: int  # generated
    listed: int
    listing_seconds: float
    archive_seconds: float
    imported: int  # record × mailbox pairs imported
    imported_records: int
    skipped: int
    poisoned: dict[str, int]
    reconciled: bool
    pending: int
    mail_requests: dict[str, Counter[str]]  # mailbox -> operation -> count
    directory_requests: int
    throttled: int
    cpu: dict[str, float]  # seconds during the archive phase: connector, azurite, servers
    creates: list[tuple[float, str]]  # (CLOCK_MONOTONIC at the local Graph, mailbox) of each item create

    @property
    def listed_per_second(self) -> float:
        return self.listed / self.listing_seconds if self.listing_seconds else 0.0

    @property
    def archived_per_second(self) -> float:
        return self.imported / self.archive_seconds if self.archive_seconds else 0.0

    def requests_per_pair(self) -> float:
        total = sum(sum(c.values()) for c in self.mail_requests.values())
        return total / self.imported if self.imported else 0.0


def run_pipeline(
    azurite: Any, records: RecordSet, *, latency: float, workers: int, pumps: int, state_dir: Path,
    max_item_mb: int = 10, timeout: float = 900.0,
) -> PipelineResult:
    """One window of ``records`` through the timer, listing and items functions (see the module
    docstring). ``workers`` items run at once, as ``pumps`` host-runner instances taking
    ``workers / pumps`` messages per receive: while one waits for the slowest of its batch, the
    other keeps going, as the host's newBatchThreshold does."""
    import function_app
    from bench.soak import drain_scaled_out
    from shared.composition import get_container
    from shared.local.demo import app_settings
    from shared.local.host_runner.functions import registered_functions
    from shared.local.host_runner.runner import HostRunner
    from shared.service.status import window_summary

    password = os.urandom(12).hex()
    run_id = new_run_id()
    with servers_for(records, latency=latency, password=password) as servers:
        env = app_env(storage=azurite.connection_string, graph_url=servers.graph_url,
                      telemessage_url=servers.telemessage_url, password=password, run_id=run_id,
                      max_item_mb=max_item_mb)
        with app_settings(env):
            container = get_container()
            functions = registered_functions(function_app.app)

            def runner(names: set[str], batch: int, count: int) -> HostRunner:
                return HostRunner(
                    [f for f in functions if f.get_function_name() in names],
                    host_json=_host_json(batch, state_dir),
                    connection_settings={"AzureWebJobsStorage": azurite.connection_string},
                    settings=dict(os.environ), workers=count,
                )

            listing = runner({TIMER_FUNCTION, LISTING_FUNCTION}, 16, workers)
            per_pump = max(1, workers // pumps)
            items = [runner({ITEMS_FUNCTION}, per_pump, per_pump) for _ in range(pumps)]
            try:
                started = time.monotonic()
                listing.run_timer(TIMER_FUNCTION)
                listing.drain(timeout=timeout)
                listing_seconds = time.monotonic() - started
                listed = container.items_queue.depth()

                cpu_before = _cpu(azurite, servers)
                started = time.monotonic()
                drain_scaled_out(items, listing, timeout=timeout, poll_interval=0.25)
                archive_seconds = time.monotonic() - started
                cpu_after = _cpu(azurite, servers)
            finally:
                for one in (listing, *items):
                    one.close()
            watermark, _ = container.watermarks.read()
            summary = window_summary(container.ledger, watermark.last_window_id).to_json()
        mail_requests: dict[str, Counter[str]] = {}
        directory = 0
        for mailbox in records.mailboxes:
            counts = Counter(servers.graph("request_counts", mailbox))
            directory += sum(counts.pop(op, 0) for op in ("user_find", "user_get", "user_list"))
            mail_requests[mailbox] = counts
        throttled = servers.graph("total_throttled")
        creates = sorted((entry["at"], entry["mailbox"]) for entry in servers.graph("request_log")
                         if entry["operation"] == "item_create")
    imported_records = summary["imported"] if isinstance(summary["imported"], int) else 0
    return PipelineResult(
        records=len(records.records), listed=listed, listing_seconds=listing_seconds,
        archive_seconds=archive_seconds, imported=summary["imported"], imported_records=imported_records,
        skipped=summary["skipped_duplicates"], poisoned=summary["poisoned"], reconciled=summary["reconciled"],
        pending=summary["pending"], mail_requests=mail_requests, directory_requests=directory,
        throttled=throttled, cpu={k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_after}, creates=creates,
    )


def _cpu(azurite: Any, servers: ServerProcess) -> dict[str, float]:
    return {"connector": cpu_seconds(), "azurite": cpu_seconds(azurite.pid), "servers": cpu_seconds(servers.pid)}

