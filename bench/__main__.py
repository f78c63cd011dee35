"""The benchmark: ``python -m bench`` (``make bench``) measures every figure of docs/benchmarks.md on
local infrastructure and prints each beside its budget.

    python -m bench                  # every figure, a few minutes
    python -m bench --only a,c       # a subset (figure letters)
    python -m bench --json           # the table and every measurement as JSON
    python -m bench --quick          # a tiny run of every figure (CI: the benchmark still works)

(a) rendering throughput on one core; (b) archived records per second end to end through Azurite
and the local Graph (set latency per request) for 1 and 50 mailboxes, and the growth with the
number of mailboxes; (c) Graph requests per record and mailbox; (d) listing and enqueueing
throughput; (e) cold start to the first record archived; (f) peak memory archiving a 100 MiB
attachment; (g) the share of Exchange's per-mailbox limits reached, and the 429s; (h) the
WhatsApp webhook's acknowledgement latency under 100 concurrent signed deliveries over HTTP; (i)
webhook records per second end to end, from delivery until the day window reconciles.

Exit status: 0 when every selected figure was measured (a MISS is a finding, not a failure; add
``--strict`` to fail on one), 1 when a figure could not be measured. The functions' logs go to a
file (``--log``), so the table stays readable.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIGURES = "abcdefghi"


@dataclass(frozen=True)
class Plan:
    records: int = 600  # (a), (b), (d): the realistic mix
    mailboxes: tuple[int, ...] = (1, 50)
    latency: float = 0.05
    workers: int = 16  # items in flight in one worker (the host's queue batch)
    pumps: int = 16  # consumers taking one message at a time: 16 in flight, none waiting on a batch
    # mailboxes -> text records for each: about ten seconds of steady state per point at 1 s
    scaling: tuple[tuple[int, int], ...] = ((1, 40), (2, 40), (4, 40), (8, 20))
    scaling_latency: float = 1.0
    text_records: int = 40
    small_records: int = 5
    large_records: int = 2
    cold_starts: int = 3
    memory_mib: int = 100
    throttle_seconds: float = 60.0  # two of the scaled 30 s windows
    upload_seconds: float = 30.0  # two of the scaled 15 s windows
    unpaced_seconds: float = 31.0
    rendering_rounds: int = 2
    webhook_deliveries: int = 3000  # (h), after a warm-up round of webhook_concurrency
    webhook_concurrency: int = 100  # (h) and (i): deliveries in flight, as Meta's load test asks
    webhook_one_at_a_time: int = 100  # (h): the service time, nothing queued
    webhook_bodies: int = 1000  # (i)


QUICK = Plan(
    records=60, mailboxes=(1, 3), latency=0.01, workers=8, scaling=((1, 12), (2, 8)), scaling_latency=0.1,
    text_records=6, small_records=2, large_records=1, cold_starts=1, memory_mib=10,
    throttle_seconds=4.0, upload_seconds=3.0, unpaced_seconds=0.0, rendering_rounds=1,
    webhook_deliveries=20, webhook_concurrency=10, webhook_one_at_a_time=5, webhook_bodies=20,
)


def _log_to(path: Path) -> None:
    logging.basicConfig(
        filename=path, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True,
    )
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run(selected: str, plan: Plan, state_dir: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    from bench import fresh_process, rendering, throttling, throughput, webhook
    from bench.records import realistic
    from shared.local.azurite import Azurite

    results: dict[str, Any] = {"errors": {}}

    def measure(figure: str, key: str, what: str, action: Callable[[], Any]) -> None:
        progress(f"({figure}) {what} …")
        started = time.monotonic()
        try:
            results[key] = action()
        except Exception:
            results["errors"][figure] = traceback.format_exc(limit=8)
            logging.getLogger("bench").exception("figure (%s) failed", figure)
        progress(f"({figure}) {what}: {time.monotonic() - started:.0f} s")

    if "a" in selected:
        measure("a", "a", "rendering", lambda: rendering.measure_rendering(
            realistic(plan.records, 1), rounds=plan.rendering_rounds))
    if set(selected) & set("bcdefhi"):
        with Azurite(location=state_dir / "azurite") as azurite:
            if set(selected) & set("bd"):
                measure("b", "b", f"end to end, {' and '.join(map(str, plan.mailboxes))} mailboxes",
                        lambda: throughput.measure_throughput(
                            azurite, records=plan.records, mailboxes=plan.mailboxes, latency=plan.latency,
                            workers=plan.workers, pumps=plan.pumps, state_dir=state_dir))
            if "b" in selected:
                measure("b", "b_scaling", "growth with mailboxes", lambda: throughput.measure_scaling(
                    azurite, records_per_mailbox=dict(plan.scaling), latency=plan.scaling_latency,
                    workers=plan.workers, pumps=plan.pumps, state_dir=state_dir))
            if "c" in selected:
                measure("c", "c", "Graph requests per record", lambda: throughput.measure_requests(
                    azurite, text=plan.text_records, small=plan.small_records, large=plan.large_records,
                    latency=plan.latency, workers=plan.workers, pumps=plan.pumps, state_dir=state_dir))
            if "e" in selected:
                measure("e", "e", "cold start", lambda: fresh_process.measure_cold_start(
                    azurite, runs=plan.cold_starts, latency=plan.latency))
            if "f" in selected:
                measure("f", "f", "peak memory", lambda: fresh_process.measure_peak_memory(
                    azurite, attachment_mib=plan.memory_mib, latency=plan.latency))
            if "h" in selected:
                measure("h", "h", f"webhook acknowledgement, {plan.webhook_concurrency} in flight",
                        lambda: webhook.measure_acknowledgement(
                            azurite, deliveries=plan.webhook_deliveries, concurrency=plan.webhook_concurrency,
                            one_at_a_time=plan.webhook_one_at_a_time, state_dir=state_dir))
            if "i" in selected:
                measure("i", "i", "webhook records end to end", lambda: webhook.measure_webhook_throughput(
                    azurite, bodies=plan.webhook_bodies, concurrency=plan.webhook_concurrency, latency=plan.latency,
                    workers=plan.workers, pumps=plan.pumps, state_dir=state_dir))
    if "g" in selected:
        measure("g", "g", "request limit", lambda: throttling.measure_throttling(
            seconds=plan.throttle_seconds, workers=plan.workers, latency=plan.latency))
        measure("g", "g_uploads", "upload limit", lambda: throttling.measure_throttling(
            seconds=plan.upload_seconds, workers=plan.workers, latency=plan.latency, kind="uploads"))
        if plan.unpaced_seconds:
            measure("g", "g_unpaced", "request limit without the pacer", lambda: throttling.measure_throttling(
                seconds=plan.unpaced_seconds, workers=plan.workers, latency=plan.latency, paced=False))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=FIGURES, metavar="LETTERS",
                        help=f"figures to measure, e.g. a,c or ceg (default: all of {FIGURES})")
    parser.add_argument("--quick", action="store_true", help="a tiny run of every figure (seconds, not minutes)")
    parser.add_argument("--json", action="store_true", help="print the table and every measurement as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a figure misses its budget")
    parser.add_argument("--latency", type=float, metavar="SECONDS", help="Graph latency per request (0.05)")
    parser.add_argument("--records", type=int, help="records of the realistic mix per run (600)")
    parser.add_argument("--workers", type=int, help="items in flight in the worker (16)")
    parser.add_argument("--scaling-latency", type=float, metavar="SECONDS",
                        help="Graph latency of the growth check (1.0: Graph, not the CPU, must be the bottleneck)")
    parser.add_argument("--state-dir", type=Path, metavar="DIR", help="Azurite's data and the log (default: temporary)")
    parser.add_argument("--log", type=Path, metavar="FILE", help="the functions' log (default: in the state directory)")
    args = parser.parse_args(argv)
    selected = "".join(sorted({c for c in args.only.lower() if c in FIGURES}))
    if not selected:
        parser.error(f"--only names no figure of {FIGURES}")
    plan = QUICK if args.quick else Plan()
    overrides = {k: v for k, v in (("latency", args.latency), ("records", args.records), ("workers", args.workers),
                                   ("scaling_latency", args.scaling_latency)) if v is not None}
    if overrides:
        plan = Plan(**{**plan.__dict__, **overrides})

    from bench.report import as_dicts, machine, print_table, rows_for

    info = machine()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="whatsapp-archiver-bench-") as temporary:
        state_dir = args.state_dir or Path(temporary)
        state_dir.mkdir(parents=True, exist_ok=True)
        log_path = args.log or state_dir / "bench.log"
        _log_to(log_path)
        quiet = args.json

        def progress(message: str) -> None:
            if not quiet:
                print(f"  {message}", file=sys.stderr, flush=True)

        results = run(selected, plan, state_dir, progress)
    seconds = time.monotonic() - started
    rows = [row for row in rows_for(results) if row.figure.strip("()") in selected]
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps({"machine": info, "plan": plan.__dict__, "seconds": round(seconds, 1),
                          "rows": as_dicts(rows), "results": results}, indent=2, default=str))
    else:
        print_table(rows, info, seconds)
        for figure, error in results["errors"].items():
            print(f"\n  ({figure}) could not be measured:\n{error}")
        if args.log or args.state_dir:
            print(f"  log: {log_path}")
    if any(row.status == "ERROR" for row in rows):
        return 1
    if args.strict and any(row.status == "MISS" for row in rows):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
