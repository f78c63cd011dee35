"""One window through the registered functions, every storage request counted (``python -m bench.scale``).

The stack is the benchmark's (bench/stack.py): Azurite, the local Graph and TeleMessage in a process
of their own, the functions of function_app.py under the host-like runner, 16 items in flight. Three
phases, as a day of production runs them, each with its storage requests (bench/scale_counting.py)
and this process's CPU:

1. the timer hands the window off; the listing function lists every page (claim checks, item messages,
   the ledger's pages);
2. the items function archives every record (claim check read, delivery record, Graph, the ledger's
   outcome);
3. the timer runs again, as the next day's run does: it hands the next (empty) window off, accounts
   the records the host moved to poison, and stores the window's report.

Storage requests: the whole process, the functions and the host runner's queue work (receive,
delete: the Functions host's part in Azure). The runner's own calls that production does not make
per record (queue creation, queue depths, receives that found nothing) are counted apart.

CPU: the process's, less what the host runner spends itself (``HostCpu``): in Azure the Functions
host, not the Python worker, polls and receives the messages, deletes or poisons them, writes the
output bindings and watches the queues' depths, so that work is measured apart (each thread's own
CPU clock, inside those calls and outside the function they invoke) and reported beside the
connector's figure, as is the request counting's own work.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.records import RecordSet
from bench.scale_counting import StorageCounts, azurite_ports, counting
from bench.stack import (
    ITEMS_FUNCTION,
    LISTING_FUNCTION,
    TIMER_FUNCTION,
    _host_json,
    app_env,
    cpu_seconds,
    new_run_id,
    servers_for,
)

PHASES = ("listing", "archiving", "timer")


class HostCpu:
    """The CPU the host runner spends on its own, apart from the functions it invokes.

    While inside, the runner's calls that stand for the Functions host (a pump's receive and its
    dispatch, a message's decoding, delete or poison, the output bindings, the queues' depths, a
    timer's invocation around the function) are timed on the calling thread's own CPU clock, less
    the function invocations they contain; ``harness`` is the time the request counter spends
    classifying requests (bench/scale_counting.py). Both are read per phase with ``snapshot``."""

    HOST_CALLS = ("pump_once", "_handle_message", "queue_depths", "run_timer", "drain")

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self.host = 0.0
        self.harness = 0.0
        self._saved: list[tuple[Any, str, Any]] = []

    def snapshot(self) -> tuple[float, float]:
        with self._lock:
            return self.host, self.harness

    def _timed(self, original: Any, kind: str) -> Any:
        local = self._local
        owner = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            stack = getattr(local, "stack", None)
            if stack is None:
                stack = local.stack = []
            frame = [kind, time.thread_time(), 0.0]  # kind, start, CPU of nested timed calls
            stack.append(frame)
            try:
                return original(*args, **kwargs)
            finally:
                stack.pop()
                spent = time.thread_time() - frame[1]
                if stack:
                    stack[-1][2] += spent
                own = spent - frame[2]
                if kind != "function":
                    with owner._lock:
                        if kind == "host":
                            owner.host += own
                        else:
                            owner.harness += own

        return wrapper

    def _patch(self, target: Any, name: str, kind: str) -> None:
        original = getattr(target, name)
        self._saved.append((target, name, original))
        setattr(target, name, self._timed(original, kind))

    def __enter__(self) -> HostCpu:
        from bench.scale_counting import _Counter
        from shared.local.host_runner.runner import HostRunner

        for name in self.HOST_CALLS:
            self._patch(HostRunner, name, "host")
        self._patch(HostRunner, "_invoke", "function")
        self._patch(HostRunner, "_write_outputs", "host")  # inside run_timer, after _invoke
        self._patch(_Counter, "record", "harness")
        return self

    def __exit__(self, *exc: object) -> None:
        for target, name, original in reversed(self._saved):
            setattr(target, name, original)
        self._saved.clear()


@dataclass
class CountedRun:
    stores: dict[str, str]  # the ledger, delivery records, claim checks: "table" or "blob", as the settings read
    records: int
    listed: int
    imported_pairs: int
    archived_records: int  # listed records with an outcome other than poisoned
    skipped: int
    poisoned: dict[str, int]
    reconciled: bool
    executions: int  # function invocations: the timer twice, listing pages, items
    graph_requests: int  # every request the local Graph answered for the mailboxes
    cpu: dict[str, float]  # phase -> this process's CPU seconds, less the host's part and the counting's
    host_cpu: dict[str, float]  # phase -> CPU seconds of the runner's own work (the Functions host's part)
    harness_cpu: dict[str, float]  # phase -> CPU seconds of counting the requests
    azurite_cpu: dict[str, float]
    counts: dict[str, StorageCounts]  # phase -> requests
    seconds: dict[str, float]

    @property
    def total(self) -> StorageCounts:
        total = StorageCounts()
        for phase in PHASES:
            part = self.counts[phase]
            total.kinds.update(part.kinds)
            total.entity_operations.update(part.entity_operations)
            total.appends.update(part.appends)
            total.largest_queue_message = max(total.largest_queue_message, part.largest_queue_message)
            total.largest_batch = max(total.largest_batch, part.largest_batch)
        return total

    def per_pair(self) -> dict[str, float]:
        pairs = max(1, self.imported_pairs)
        return {kind: count / pairs for kind, count in self.total.billed().items()}

    def cpu_seconds_total(self) -> float:
        return sum(self.cpu.values())


def run_counted(
    azurite: Any, records: RecordSet, *, store: str, latency: float, workers: int, pumps: int,
    state_dir: Path, timeout: float = 900.0,
) -> CountedRun:
    """``store``: "table" or "blob" for the ledger, the delivery records and the claim checks alike
    (a version without a setting for one of them keeps its own; ``CountedRun.stores`` says which)."""
    import function_app
    from bench.soak import drain_scaled_out
    from shared.composition import get_container
    from shared.local.demo import app_settings
    from shared.local.host_runner.functions import registered_functions
    from shared.local.host_runner.runner import HostRunner
    from shared.service.status import window_summary

    password = os.urandom(12).hex()
    run_id = new_run_id()
    with servers_for(records, latency=latency, password=password) as servers, \
            counting(azurite_ports(azurite)) as counter, HostCpu() as host_cpu:
        env = {**app_env(storage=azurite.connection_string, graph_url=servers.graph_url,
                         telemessage_url=servers.telemessage_url, password=password, run_id=run_id),
               "LEDGER_STORE": store, "DELIVERY_STORE": store, "RECORD_STORE": store,
               # Tables of the run's own, as its containers are: runs never meet.
               "LEDGER_TABLE": f"scale{run_id}", "DELIVERY_TABLE": f"scaled{run_id}",
               "RECORD_TABLE": f"scalec{run_id}",
               # A day's slice: at 2 M records a day an hourly slice lists 83,000 records, so what a
               # slice costs (its first page, its continuation) is nothing per record; a run of a few
               # hundred records in 25 hourly slices would charge each record a slice's cost.
               "SLICE_MINUTES": str(24 * 60)}
        with app_settings(env):
            container = get_container()
            settings = container.settings
            stores = {"ledger": settings.ledger_store,
                      "delivery_records": getattr(settings, "delivery_store", "blob"),
                      "claim_checks": getattr(settings, "record_store", "blob")}
            functions = registered_functions(function_app.app)

            def runner(names: set[str], batch: int) -> HostRunner:
                return HostRunner([f for f in functions if f.get_function_name() in names],
                                  host_json=_host_json(batch, state_dir),
                                  connection_settings={"AzureWebJobsStorage": azurite.connection_string},
                                  settings=dict(os.environ), workers=batch)

            # The tables exist before the first function runs, as a deployment creates them (the
            # templates do); not counted: no record pays for them.
            from azure.data.tables import TableServiceClient

            with TableServiceClient.from_connection_string(azurite.connection_string) as tables:
                for name in ("LEDGER_TABLE", "DELIVERY_TABLE", "RECORD_TABLE"):
                    tables.create_table_if_not_exists(env[name])
            listing = runner({TIMER_FUNCTION, LISTING_FUNCTION}, 16)
            per_pump = max(1, workers // pumps)
            items = [runner({ITEMS_FUNCTION}, per_pump) for _ in range(pumps)]
            marks: list[tuple[float, float, float, StorageCounts, tuple[float, float]]] = []

            def mark() -> None:
                marks.append((time.monotonic(), cpu_seconds(), cpu_seconds(azurite.pid), counter.snapshot(),
                              host_cpu.snapshot()))

            try:
                mark()
                listing.run_timer(TIMER_FUNCTION)
                listing.drain(timeout=timeout)
                mark()
                listed = container.items_queue.depth()
                drain_scaled_out(items, listing, timeout=timeout, poll_interval=0.25)
                mark()
                window_id = container.watermarks.read()[0].last_window_id
                listing.run_timer(TIMER_FUNCTION)
                mark()
            finally:
                for one in (listing, *items):
                    one.close()
            summary = window_summary(container.ledger, window_id).to_json()
            executions = 2 + sum(one.stats["invocations"] for one in (listing, *items))
        graph = sum(sum(Counter(servers.graph("request_counts", m)).values()) for m in records.mailboxes)
    phases = {phase: (marks[n], marks[n + 1]) for n, phase in enumerate(PHASES)}
    poisoned = sum(summary["poisoned"].values())
    archived = summary["listed"] - summary["pending"] - summary["awaiting_transcript"] - poisoned
    return CountedRun(
        stores=stores, records=len(records.records), listed=listed, imported_pairs=summary["imported"],
        archived_records=archived,
        skipped=summary["skipped_duplicates"], poisoned=summary["poisoned"], reconciled=summary["reconciled"],
        executions=executions, graph_requests=graph,
        cpu={p: round(b[1] - a[1] - (b[4][0] - a[4][0]) - (b[4][1] - a[4][1]), 3) for p, (a, b) in phases.items()},
        host_cpu={p: round(b[4][0] - a[4][0], 3) for p, (a, b) in phases.items()},
        harness_cpu={p: round(b[4][1] - a[4][1], 3) for p, (a, b) in phases.items()},
        azurite_cpu={p: round(b[2] - a[2], 3) for p, (a, b) in phases.items()},
        counts={p: b[3] - a[3] for p, (a, b) in phases.items()},
        seconds={p: round(b[0] - a[0], 2) for p, (a, b) in phases.items()},
    )
