"""Figures (b), (c) and (d): windows end to end through Azurite, the local TeleMessage and the local
Graph (with a set latency per request), under the host-like runner.

(b) archived records per second for 1 and for 50 mailboxes, the realistic mix; then the scaling
    check: text records at a Graph latency long enough that Graph, not this machine's CPU, is the
    bottleneck, for 1, 2, 4 and 8 mailboxes. Exchange lets 4 requests per mailbox run at once, so
    with ``workers`` items in flight the ceiling is min(4 x mailboxes, workers) / latency: growth
    should be linear up to workers / 4 mailboxes and flat after.
(c) Graph requests per archived record and mailbox, counted by the local Graph: text only, with a
    1 MiB attachment (inline), with a 20 MiB attachment (upload session); each kind in a mailbox of
    its own, so the per-mailbox lookups (folder find and create, the directory's mailbox probe) are
    shown apart from what each record costs.
(d) listing and enqueueing: records per second from the timer's hand-off until every record's
    claim check is stored and its import message queued.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from bench.records import RecordSet, realistic, uniform
from bench.stack import PipelineResult, run_pipeline

ITEM_OPERATIONS = ("item_create", "item_lookup", "attachment_add", "upload_session_create", "upload_chunk")
LOOKUP_OPERATIONS = ("folder_find", "folder_create", "mailbox_probe")
MAX_CONCURRENT_PER_MAILBOX = 4


def _summary(result: PipelineResult) -> dict[str, Any]:
    total: Counter[str] = Counter()
    for counts in result.mail_requests.values():
        total.update(counts)
    return {
        "records": result.records,
        "listed": result.listed,
        "archived_pairs": result.imported,
        "poisoned": result.poisoned,
        "reconciled": result.reconciled,
        "archive_seconds": round(result.archive_seconds, 2),
        "archived_per_second": round(result.archived_per_second, 1),
        "listing_seconds": round(result.listing_seconds, 2),
        "listed_per_second": round(result.listed_per_second, 1),
        "mail_requests": dict(total),
        "mail_requests_per_archived_pair": round(result.requests_per_pair(), 3),
        "directory_requests": result.directory_requests,
        "throttled": result.throttled,
        "cpu_seconds": result.cpu,
        "connector_cpu_ms_per_pair": round(1000 * result.cpu["connector"] / max(1, result.imported), 1),
        "azurite_cpu_ms_per_pair": round(1000 * result.cpu["azurite"] / max(1, result.imported), 1),
    }


def measure_throughput(
    azurite: Any, *, records: int, mailboxes: tuple[int, ...], latency: float, workers: int, pumps: int,
    state_dir: Path,
) -> dict[str, Any]:
    """(b) and (d): one window per mailbox count, same realistic mix."""
    runs = {}
    for count in mailboxes:
        result = run_pipeline(azurite, realistic(records, count), latency=latency, workers=workers, pumps=pumps,
                              state_dir=state_dir)
        runs[str(count)] = _summary(result)
    return {"latency_seconds": latency, "workers": workers, "runs": runs}


def steady_rate(creates: list[tuple[float, str]], mailboxes: int) -> float:
    """Item creates per second once every mailbox has had its first (its directory entry and
    archive folder are then known to the worker), up to the 90th percentile of the run's creates
    (the tail, where the last records trickle in, is not the steady state)."""
    if len(creates) < 3:
        return 0.0
    firsts: dict[str, float] = {}
    for at, mailbox in creates:
        firsts.setdefault(mailbox, at)
    start = max(firsts.values()) if len(firsts) >= mailboxes else creates[0][0]
    end = creates[max(0, int(len(creates) * 0.9) - 1)][0]
    # Creates come in groups (a mailbox's 4 slots free up together), so counting between two of
    # them depends on where the groups fall: the rate is the least-squares slope of the running
    # count over time instead.
    points = [(at, n) for n, (at, _) in enumerate(creates) if start <= at <= end]
    if len(points) < 3 or end <= start:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_n = sum(n for _, n in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (n - mean_n) for t, n in points) / spread if spread else 0.0


def measure_scaling(
    azurite: Any, *, records_per_mailbox: dict[int, int], latency: float, workers: int, pumps: int,
    state_dir: Path,
) -> dict[str, Any]:
    """(b), the budget: text records, ``records_per_mailbox[m]`` for each of m mailboxes, at a
    Graph latency that makes Graph (4 requests in flight per mailbox), not this machine's CPU, the
    bottleneck; the steady rate of item creates (``steady_rate``) for each m."""
    base = None
    points = []
    for count, per_mailbox in records_per_mailbox.items():
        records = uniform(count * per_mailbox, count, tag=f"scale{count}")
        result = run_pipeline(azurite, records, latency=latency, workers=workers, pumps=pumps, state_dir=state_dir)
        rate = steady_rate(result.creates, count)
        base = base or rate
        in_flight = min(MAX_CONCURRENT_PER_MAILBOX * count, workers)
        points.append({
            "mailboxes": count,
            "records": len(records.records),
            "archived": result.imported,
            "steady_per_second": round(rate, 2),
            "whole_run_per_second": round(result.archived_per_second, 2),
            "growth": round(rate / base, 2) if base else 0.0,
            "ideal_growth": round(in_flight / min(MAX_CONCURRENT_PER_MAILBOX, workers), 2),
            "graph_ceiling_per_second": round(in_flight / latency, 1),
            "connector_cpu_ms_per_pair": round(1000 * result.cpu["connector"] / max(1, result.imported), 1),
        })
    worst = min((p["growth"] / p["ideal_growth"] for p in points), default=0.0)
    return {"latency_seconds": latency, "workers": workers, "points": points, "worst_share_of_ideal": round(worst, 2)}


def measure_requests(
    azurite: Any, *, text: int, small: int, large: int, latency: float, workers: int, pumps: int, state_dir: Path,
) -> dict[str, Any]:
    """(c): three kinds of record, each kind in its own mailbox, one window."""
    kinds = {
        "text": uniform(text, 1, tag="text"),
        "1MiB": uniform(small, 1, attachment_bytes=1024 * 1024, tag="onemib"),
        "20MiB": uniform(large, 1, attachment_bytes=20 * 1024 * 1024, tag="twentymib"),
    }
    addresses = {kind: f"requests-{kind.lower()}@bench.example" for kind in kinds}
    merged = RecordSet([], {}, kinds["text"].seed, list(addresses.values()))
    for kind, records in kinds.items():
        for record in records.records:
            for participant in (record["owner"], record["sender"]):
                participant["email"] = addresses[kind]
        merged.records.extend(records.records)
        merged.media.update(records.media)
    merged.records.sort(key=lambda r: r["archivedTime"])
    result = run_pipeline(azurite, merged, latency=latency, workers=workers, pumps=pumps, state_dir=state_dir,
                          max_item_mb=30)
    figures: dict[str, Any] = {"reconciled": result.reconciled, "poisoned": result.poisoned}
    for kind, records in kinds.items():
        counts = result.mail_requests[addresses[kind]]
        count = len(records.records)
        per_record = sum(counts.get(op, 0) for op in ITEM_OPERATIONS) / count
        lookups = sum(counts.get(op, 0) for op in LOOKUP_OPERATIONS)
        figures[kind] = {
            "records": count,
            "requests": dict(counts),
            "per_record": round(per_record, 3),
            "mailbox_lookups": lookups,
            "amortised_over_run": round((per_record * count + lookups) / count, 3),
        }
    return figures
