"""``python -m bench.scale`` (``make scale``): the connector at a bank's volume (issue 16, item 7).

    python -m bench.scale                # the full run: a few minutes
    python -m bench.scale --json         # one JSON object (the fields below)
    python -m bench.scale --quick        # small counts, well under a minute (CI: tests/test_bench_scale.py)

Over Azurite, with the real adapters, the ledger, the delivery records and the claim checks on
tables (``LEDGER_STORE``, ``DELIVERY_STORE``, ``RECORD_STORE`` = ``table``):

- ``storage_ops_per_pair``: one window of the realistic mix through the registered functions (the
  benchmark's stack: bench/stack.py), every storage request counted by kind (bench/scale_counting.py,
  bench/scale_pipeline.py) and divided by the archived pairs (record × mailbox); the same with every
  store on blobs, as earlier versions kept them, for comparison (``on_blobs``; not with --quick).
  ``billable_writes_per_pair``: blob writes + table write transactions + queue puts (goal: at most 2).
- ``cpu_ms_per_record``: this process's CPU per archived text record, listing, archiving and the
  next timer run together (Azurite and the local Graph run in processes of their own; goal 8 ms),
  less the host runner's own work (receives, deletes, output bindings, queue depths: the Functions
  host's part in Azure, ``host_cpu_ms_per_record``) and the request counting's
  (``harness_cpu_ms_per_record``), both reported beside it.
- ``usd_per_million_pairs``: those operations at list prices (../shared/reference/azure-costs.md)
  and Functions Flex execution (goal: at most $3).
- ``peak_rss_mib``: status, report and the timer, each in a fresh process, over a synthetic window
  (bench/scale_window.py, bench/scale_memory.py). The window stands for 2,000,000 outcomes; Azurite
  on this machine takes a few hundred records a second and about 5 KB of its memory for each, so the
  number written is what a few minutes allow (``--write-seconds``), measured at two sizes and
  extrapolated linearly to 2,000,000, labelled as extrapolated.
- ``limits``: each Azure limit the storage shape touches, ``{"used", "limit"}`` at the design point
  (10,000,000 outcomes in a 31-day window; a 31-day backfill at 2,000,000 records a day drained in
  one day), from the counts above, the adapter's constants and its entities at their largest.

Exit status 0 when every figure was measured, 1 when one could not be.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DESIGN_OUTCOMES = 10_000_000  # outcomes in one window the ledger must hold (issue 16)
RECORDS_PER_DAY = 2_000_000
BACKFILL_DRAIN_SECONDS = 86_400  # a 31-day backfill drained in one day (docs/scale.md)
TARGET_OUTCOMES = 2_000_000  # the window status, report and the timer are measured against
# Azure's limits (../shared/reference/azure-costs.md, section 5)
PARTITION_ENTITIES_PER_SECOND = 2_000
ACCOUNT_REQUESTS_PER_SECOND = 20_000  # 40,000 in the largest regions; 20,000 elsewhere
QUEUE_MESSAGES_PER_SECOND = 2_000
BATCH_OPERATIONS = 100
ENTITY_BYTES = 1024 * 1024
PROPERTY_BYTES = 64 * 1024
ENTITY_PROPERTIES = 255
QUEUE_MESSAGE_BYTES = 64 * 1024
APPENDS_PER_BLOB = 50_000
# Functions Flex Consumption, on demand (azure-costs.md, section 4)
FLEX_GB_SECOND = 0.000026
FLEX_INSTANCE_GB = 2
FLEX_PER_EXECUTION = 0.40 / 1_000_000
GOALS = {"billable_writes_per_pair": 2, "usd_per_million_pairs": 3.0, "cpu_ms_per_record": 8.0,
         "peak_rss_mib": 100}


@dataclass(frozen=True)
class Plan:
    mix_records: int = 600  # the realistic mix, for the operations per pair
    mix_mailboxes: int = 50
    text_records: int = 400  # text only, for the CPU per record
    text_mailboxes: int = 10
    blobs_too: bool = True  # the same with every store on blobs, for comparison
    latency: float = 0.05
    workers: int = 16
    pumps: int = 2  # two host instances of 8: a receive per 8 messages, as the host's newBatchThreshold
    target: int = TARGET_OUTCOMES
    write_seconds: float = 240.0  # how long the synthetic window may take to write
    min_outcomes: int = 12_800
    writer_threads: int = 4


QUICK = Plan(mix_records=30, mix_mailboxes=2, text_records=20, text_mailboxes=2, blobs_too=False, latency=0.01,
             target=2_400, write_seconds=5.0, min_outcomes=2_400)


def _log_to(path: Path) -> None:
    logging.basicConfig(filename=path, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)
    logging.getLogger("azure").setLevel(logging.WARNING)


def run(plan: Plan, state_dir: Path, progress: Any) -> dict[str, Any]:
    from bench.records import realistic, uniform
    from bench.scale_pipeline import run_counted
    from shared.local.azurite import Azurite

    results: dict[str, Any] = {"errors": {}}

    def step(name: str, action: Any) -> Any:
        progress(f"{name} …")
        started = time.monotonic()
        try:
            value = action()
        except Exception:
            results["errors"][name] = traceback.format_exc(limit=8)
            logging.getLogger("bench.scale").exception("%s failed", name)
            value = None
        progress(f"{name}: {time.monotonic() - started:.0f} s")
        return value

    def pipeline(records: Any, store: str) -> Any:
        return run_counted(azurite, records, store=store, latency=plan.latency, workers=plan.workers,
                           pumps=plan.pumps, state_dir=state_dir)

    with Azurite() as azurite:
        mix = step("operations per pair, realistic mix, on tables",
                   lambda: pipeline(realistic(plan.mix_records, plan.mix_mailboxes), "table"))
        blob = step("operations per pair, realistic mix, on blobs",
                    lambda: pipeline(realistic(plan.mix_records, plan.mix_mailboxes), "blob")) \
            if plan.blobs_too else None
        text = step("CPU per text record",
                    lambda: pipeline(uniform(plan.text_records, plan.text_mailboxes, tag="scaletext"), "table"))
        shapes = step("the ledger's largest entities and batches", lambda: _shapes(azurite))
        memory = step("peak memory over a synthetic window", lambda: _memory(azurite, plan, progress))
    results.update(_figures(plan, mix, blob, text, shapes, memory))
    return results


def _shapes(azurite: Any) -> dict[str, Any]:
    from bench.scale_counting import azurite_ports, counting
    from bench.scale_window import design_entities, entity_size, key_for, same_shape
    from shared.adapters.azure_tables import SHARDS, TableWindowLedger, _shard, table_service
    from shared.domain.ledger import PageEntry
    from shared.settings import Settings

    page_max = next(m.le for m in Settings.model_fields["telemessage_page_size"].metadata if hasattr(m, "le"))
    days = Settings.model_fields["max_window_days"].default
    ledger = TableWindowLedger(table_service(azurite.connection_string), "scaleshapes")
    now = datetime.now(UTC)
    with counting(azurite_ports(azurite)) as counter:
        # The adapter's largest transaction: a page whose every record falls in one shard.
        probe = now - timedelta(hours=1)
        from bench.scale_window import synthetic_window

        info = synthetic_window(probe)
        ledger.open_window(info)
        one_shard = [k for k in (key_for(n) for n in range(page_max * SHARDS))
                     if _shard(info.window_id, k) == _shard(info.window_id, key_for(0))][:page_max]
        ledger.record_page(info.window_id, PageEntry("probe", 0, tuple(one_shard), False))
        largest_batch = counter.snapshot().largest_batch
    sizes = [entity_size(e) for e in design_entities(ledger, now, page_size=page_max, days=days)]
    return {
        "largest_batch": largest_batch, "page_size_max": page_max, "window_days": days,
        "entity_bytes": max(s[0] for s in sizes), "property_bytes": max(s[1] for s in sizes),
        "properties": max(s[2] for s in sizes), "same_shape": same_shape(ledger, now + timedelta(hours=1)),
    }


def _memory(azurite: Any, plan: Plan, progress: Any) -> dict[str, Any]:
    from bench.scale_memory import COMMANDS, measure
    from bench.scale_window import BLOCK, WindowWriter, synthetic_window
    from bench.stack import app_env
    from shared.adapters.azure_tables import TableWindowLedger, table_service

    table = "scalewindow"
    ledger = TableWindowLedger(table_service(azurite.connection_string), table)
    writer = WindowWriter(ledger, synthetic_window(datetime.now(UTC) - timedelta(minutes=20)),
                          threads=plan.writer_threads)
    # The rate first: a first part of the window, timed.
    first = min(plan.target, max(plan.min_outcomes // 4, min(BLOCK, plan.target // 4)))
    seconds = writer.write(first)
    rate = first / seconds
    affordable = int(rate * plan.write_seconds) // BLOCK * BLOCK
    total = min(plan.target, max(plan.min_outcomes, affordable))
    small = max(first, total // 4)
    if small > first:
        seconds += writer.write(small - first)
    env = {**app_env(storage=azurite.connection_string, graph_url="http://127.0.0.1:9",
                     telemessage_url="http://127.0.0.1:9", password=os.urandom(12).hex(), run_id="scalememory"),
           "LEDGER_STORE": "table", "LEDGER_TABLE": table}
    sizes: dict[int, dict[str, Any]] = {}
    for stage, count in (("smaller", small), ("larger", total)):
        if writer.written < count:
            progress(f"  writing the window to {count:,} outcomes ({rate:.0f} a second) …")
            seconds += writer.write(count - writer.written)
        summary = ledger.summary(writer.window_id)
        if summary is None or summary.listed != count or not summary.reconciled:
            raise RuntimeError(f"the synthetic window does not hold {count} reconciled records")
        progress(f"  {stage} window, {count:,} outcomes: status, report, timer …")
        sizes[count] = {command: measure(command, env, writer.window_id) for command in COMMANDS}
    return {"written": total, "smaller": small, "write_rate_per_second": round(writer.written / seconds, 1),
            "write_seconds": round(seconds, 1), "by_size": sizes, "window_id": writer.window_id}


def _figures(plan: Plan, mix: Any, blob: Any, text: Any, shapes: Any, memory: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if memory:
        out.update(_peak_memory(plan, memory))
    if mix:
        per_pair = mix.per_pair()
        out["storage_ops_per_pair"] = {k: round(per_pair[k], 3)
                                       for k in ("blob_write", "blob_read", "blob_other", "queue", "table")}
        out["storage_ops_per_pair_detail"] = _detail(mix)
        out["billable_writes_per_pair"] = round(per_pair["blob_write"] + per_pair["table_write"]
                                                + per_pair["queue_put"], 3)
        out["billable_writes_per_pair_by_kind"] = {
            "blob_write": round(per_pair["blob_write"], 3), "table_write": round(per_pair["table_write"], 3),
            "queue_put": round(per_pair["queue_put"], 3)}
        out["graph_requests_per_pair"] = round(mix.graph_requests / max(1, mix.imported_pairs), 3)
        out["usd_per_million_pairs"] = _cost(mix)
    if blob:
        per_pair = blob.per_pair()
        out["on_blobs"] = {
            "storage_ops_per_pair": {k: round(per_pair[k], 3)
                                     for k in ("blob_write", "blob_read", "blob_other", "queue", "table")},
            "billable_writes_per_pair": round(per_pair["blob_write"] + per_pair["table_write"]
                                              + per_pair["queue_put"], 3),
            "usd_per_million_pairs": _cost(blob),
            "detail": _detail(blob),
            "appends_per_append_blob_at_design_point": _appends_at_design(blob),
        }
    if text:
        records = max(1, text.archived_records)
        out["cpu_ms_per_record"] = round(1000 * text.cpu_seconds_total() / records, 2)
        out["cpu_ms_per_record_by_phase"] = {p: round(1000 * s / records, 2) for p, s in text.cpu.items()}
        # Left out of the figure, reported apart: the host runner's own work (in Azure the Functions
        # host's, outside the Python worker) and the request counting's.
        out["host_cpu_ms_per_record"] = round(1000 * sum(text.host_cpu.values()) / records, 2)
        out["harness_cpu_ms_per_record"] = round(1000 * sum(text.harness_cpu.values()) / records, 2)
        out["azurite_cpu_ms_per_record"] = round(1000 * sum(text.azurite_cpu.values()) / records, 2)
        out["text_run"] = {"records": text.records, "archived": text.archived_records,
                           "reconciled": text.reconciled, "seconds": text.seconds}
    if mix and shapes:
        out["limits"] = _limits(mix, shapes)
        out["shapes"] = shapes
    return out


def _detail(run: Any) -> dict[str, Any]:
    pairs = max(1, run.imported_pairs)
    total = run.total
    return {
        "stores": run.stores, "records": run.records, "archived_records": run.archived_records,
        "archived_pairs": run.imported_pairs,
        "poisoned": run.poisoned, "reconciled": run.reconciled, "executions": run.executions,
        "requests_per_pair": {k: round(v / pairs, 3) for k, v in sorted(total.kinds.items())},
        "by_phase_per_pair": {phase: {k: round(v / pairs, 3) for k, v in counts.billed().items()}
                              for phase, counts in run.counts.items()},
        "cpu_ms_per_pair": round(1000 * run.cpu_seconds_total() / pairs, 2),
        "azurite_cpu_ms_per_pair": round(1000 * sum(run.azurite_cpu.values()) / pairs, 2),
        "seconds": run.seconds,
    }


def _cost(run: Any) -> dict[str, Any]:
    from bench.scale_counting import PRICE_PER_OPERATION

    pairs = max(1, run.imported_pairs)
    per_pair = run.per_pair()
    million = 1_000_000
    storage = {
        "blob_write": per_pair["blob_write"] * PRICE_PER_OPERATION["blob_write"] * million,
        "blob_read": per_pair["blob_read"] * PRICE_PER_OPERATION["blob_read"] * million,
        "blob_other": (per_pair["blob_other"] - per_pair["blob_list"]) * PRICE_PER_OPERATION["blob_other"] * million,
        "blob_list": per_pair["blob_list"] * PRICE_PER_OPERATION["blob_list"] * million,
        "queue": per_pair["queue"] * PRICE_PER_OPERATION["queue"] * million,
        "table": per_pair["table"] * PRICE_PER_OPERATION["table"] * million,
    }
    cpu_seconds_per_pair = run.cpu_seconds_total() / pairs
    functions = {
        "compute": FLEX_INSTANCE_GB * cpu_seconds_per_pair * FLEX_GB_SECOND * million,
        "executions": run.executions / pairs * FLEX_PER_EXECUTION * million,
    }
    total = sum(storage.values()) + sum(functions.values())
    return {
        "total": round(total, 2),
        "storage": {k: round(v, 3) for k, v in storage.items()},
        "functions": {k: round(v, 3) for k, v in functions.items()},
        "assumptions": {"cpu_ms_per_pair": round(1000 * cpu_seconds_per_pair, 2), "instance_gb": FLEX_INSTANCE_GB,
                        "executions_per_pair": round(run.executions / pairs, 3)},
    }


def _appends_at_design(run: Any) -> dict[str, int]:
    most = max(run.total.appends.values(), default=0)
    return {"used": round(most / max(1, run.records) * DESIGN_OUTCOMES), "limit": APPENDS_PER_BLOB,
            "measured_most_per_blob": most}


def _limits(mix: Any, shapes: dict[str, Any]) -> dict[str, dict[str, int]]:
    from shared.adapters.azure_tables import SHARDS

    records = max(1, mix.archived_records + sum(mix.poisoned.values()))
    # What each record costs: listing and archiving. The timer's reads are the window's, once a day.
    total = mix.counts["listing"].copy()
    for part in ("kinds", "entity_operations", "appends"):
        getattr(total, part).update(getattr(mix.counts["archiving"], part))
    total.largest_queue_message = max(total.largest_queue_message, mix.total.largest_queue_message)
    rate = shapes["window_days"] * RECORDS_PER_DAY / BACKFILL_DRAIN_SECONDS  # records a second
    billed = total.billed()
    requests = sum(v for k, v in total.kinds.items()
                   if k not in ("queue_receive_empty", "queue_depth", "queue_create", "table_create"))
    return {
        "table_partition_entities_per_second": {
            "used": round(rate * total.entity_operations["shard"] / records / SHARDS),
            "limit": PARTITION_ENTITIES_PER_SECOND},
        "table_account_transactions_per_second": {"used": round(rate * billed["table"] / records),
                                                  "limit": ACCOUNT_REQUESTS_PER_SECOND},
        "account_requests_per_second": {"used": round(rate * requests / records), "limit": ACCOUNT_REQUESTS_PER_SECOND},
        "queue_messages_per_second": {"used": round(rate * billed["queue_put"] / records),
                                      "limit": QUEUE_MESSAGES_PER_SECOND},
        "table_batch_operations": {"used": shapes["largest_batch"], "limit": BATCH_OPERATIONS},
        "table_entity_bytes": {"used": shapes["entity_bytes"], "limit": ENTITY_BYTES},
        "table_property_bytes": {"used": shapes["property_bytes"], "limit": PROPERTY_BYTES},
        "table_entity_properties": {"used": shapes["properties"], "limit": ENTITY_PROPERTIES},
        "queue_message_bytes": {"used": total.largest_queue_message, "limit": QUEUE_MESSAGE_BYTES},
        "appends_per_append_blob": {k: v for k, v in _appends_at_design(mix).items() if k != "measured_most_per_blob"},
    }


def _peak_memory(plan: Plan, memory: dict[str, Any]) -> dict[str, Any]:
    small, large = memory["smaller"], memory["written"]
    by_size = memory["by_size"]
    scaled = large < plan.target
    peaks, slopes = {}, {}
    for command in by_size[large]:
        at_large = by_size[large][command]["peak_above_baseline_mib"]
        at_small = by_size[small][command]["peak_above_baseline_mib"] if small != large else at_large
        slope = max(0.0, (at_large - at_small) / (large - small)) if large > small else 0.0
        slopes[command] = round(slope * 1_000_000, 2)  # MiB per million outcomes
        peaks[command] = round(at_large + slope * (plan.target - large), 1) if scaled else at_large
    return {
        "outcomes_per_window": {"written": large, "stands_for": plan.target, "scaled": scaled,
                                "write_rate_per_second": memory["write_rate_per_second"],
                                "write_seconds": memory["write_seconds"]},
        "peak_rss_mib": peaks,
        "peak_rss_basis": (f"extrapolated linearly to {plan.target:,} outcomes from windows of {small:,} and "
                           f"{large:,}" if scaled else f"measured over {large:,} outcomes"),
        "peak_rss_mib_per_million_outcomes": slopes,
        "peak_rss_measured": {str(size): figures for size, figures in by_size.items()},
    }


# --- output ---------------------------------------------------------------------------------------
FIELDS = ("outcomes_per_window", "limits", "peak_rss_mib", "storage_ops_per_pair", "usd_per_million_pairs",
          "cpu_ms_per_record")


def print_table(results: dict[str, Any], seconds: float) -> None:
    def line(label: str, value: Any, goal: str = "") -> None:
        print(f"  {label:<46} {value!s:<34} {goal}")

    print(f"\nbench.scale — {seconds:.0f} s\n")
    if window := results.get("outcomes_per_window"):
        line("synthetic window (outcomes written)", f"{window['written']:,}",
             f"stands for {window['stands_for']:,}" + (" (scaled)" if window["scaled"] else ""))
        line("  written at", f"{window['write_rate_per_second']:,} outcomes/s")
    if peaks := results.get("peak_rss_mib"):
        for command, mib in peaks.items():
            line(f"peak RSS above baseline: {command}", f"{mib} MiB", f"goal ≤ {GOALS['peak_rss_mib']} MB")
        print(f"    ({results['peak_rss_basis']})")
    if ops := results.get("storage_ops_per_pair"):
        for kind, value in ops.items():
            line(f"storage operations per pair: {kind}", value)
        line("billable writes per pair", results["billable_writes_per_pair"],
             f"goal ≤ {GOALS['billable_writes_per_pair']}")
        if by_kind := results.get("billable_writes_per_pair_by_kind"):
            line("  blob writes / table writes / queue puts", " / ".join(str(v) for v in by_kind.values()))
        line("Graph requests per pair", results["graph_requests_per_pair"])
    if cost := results.get("usd_per_million_pairs"):
        line("USD per million pairs", f"${cost['total']:.2f}", f"goal ≤ ${GOALS['usd_per_million_pairs']:.2f}")
        for group in ("storage", "functions"):
            for kind, usd in cost[group].items():
                line(f"  {group}: {kind}", f"${usd:.3f}")
    if "cpu_ms_per_record" in results:
        line("connector CPU per text record", f"{results['cpu_ms_per_record']} ms",
             f"goal ≤ {GOALS['cpu_ms_per_record']:g} ms")
        line("  apart: the host runner's own / the counting's", f"{results.get('host_cpu_ms_per_record')} / "
             f"{results.get('harness_cpu_ms_per_record')} ms")
    if blob := results.get("on_blobs"):
        line("on blobs: billable writes per pair", blob["billable_writes_per_pair"])
        line("on blobs: USD per million pairs", f"${blob['usd_per_million_pairs']['total']:.2f}")
    if limits := results.get("limits"):
        print("\n  Azure limits at the design point (10 M outcomes, 31-day backfill drained in a day):")
        for name, figure in limits.items():
            share = figure["used"] / figure["limit"] if figure["limit"] else 0
            line(f"  {name}", f"{figure['used']:,} of {figure['limit']:,}", f"{share:.1%}")
    for name, error in results.get("errors", {}).items():
        print(f"\n  {name} could not be measured:\n{error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts: well under a minute (CI)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--write-seconds", type=float, metavar="SECONDS",
                        help="how long the synthetic window may take to write (240)")
    parser.add_argument("--outcomes", type=int, metavar="N", help="the window the memory figures stand for (2000000)")
    parser.add_argument("--log", type=Path, metavar="FILE", help="the functions' log (default: a temporary file)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    if args.write_seconds is not None:
        plan = replace(plan, write_seconds=args.write_seconds)
    if args.outcomes is not None:
        plan = replace(plan, target=args.outcomes)

    from bench.report import machine

    info = machine()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="whatsapp-archiver-scale-") as temporary:
        state_dir = Path(temporary)
        _log_to(args.log or state_dir / "scale.log")

        def progress(message: str) -> None:
            if not args.json:
                print(f"  {message}", file=sys.stderr, flush=True)

        results = run(plan, state_dir, progress)
    seconds = time.monotonic() - started
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    missing = [name for name in FIELDS if name not in results]
    if args.json:
        print(json.dumps({**{name: results.get(name) for name in FIELDS}, **results, "machine": info,
                          "plan": asdict(plan), "seconds": round(seconds, 1), "missing": missing}, indent=2))
    else:
        print_table(results, seconds)
    return 1 if missing or results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
