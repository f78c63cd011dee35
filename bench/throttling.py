"""Figure (g): how close the Graph writer gets to Exchange's per-mailbox limits without tripping them.

The local Graph enforces Exchange's limits for one mailbox: 4 requests in flight, a sliding window
of requests and one of uploaded bytes (request bodies). Ten minutes are too long for a benchmark,
so the windows are scaled down and the rates kept: 10,000 requests per 600 s become 500 per 30 s
(16.7 a second either way), 150 MB per 300 s become 7.5 MB per 15 s (0.5 MB a second). Its 429s
carry Retry-After in whole seconds, as Graph's do.

The writer under test is the production ``GraphMailbox`` (its process-wide gate, a ``MailboxPacer``
with the same scaled limits, the SDK client with its bounded retries), driven by ``workers``
threads that each archive records into the one mailbox for the whole period, as a host instance
with a busy mailbox would; a ``TransientError`` is waited out for its Retry-After and the record
written again (checked), as the queue would do it. The figure is the mail requests the local
Graph let through in whole windows from the start (the pacer's initial burst included) over what
the limit allows in them, the largest count in any window as a share of the window's limit, and
the 429s the limits sent.

``uploads``: the same with records that each carry a 200 KiB attachment inline, so that the upload
budget, not the request budget, is what binds.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from dataclasses import replace
from typing import Any

from bench.records import uniform
from bench.servers import ServerProcess
from bench.stack import GRAPH_TOKEN

SCALE = 0.05  # 600 s -> 30 s; 300 s -> 15 s


def _items(kind: str, count: int) -> list[Any]:
    """Rendered items to write: one record rendered by the real renderer, then given new ids."""
    import hashlib
    import json

    from shared.domain.records import parse_record
    from shared.domain.rendered import BytesPayload, RenderedAttachment
    from shared.domain.rendering import render

    template = render(parse_record(json.dumps(uniform(1, 1, tag=kind).records[0])), {}, default_region="GB")
    if kind == "uploads":
        data = os.urandom(200 * 1024)
        template = replace(template, attachments=(
            RenderedAttachment("photo.jpg", "image/jpeg", len(data), None, BytesPayload(data)),
        ))
    items = []
    for n in range(count):
        record_id = f"bench-{kind}-{n:06d}"
        items.append(replace(template, record_id=record_id, record_key=hashlib.sha256(record_id.encode()).hexdigest()))
    return items


def _most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def _most_bytes_in_window(sends: list[tuple[float, int]], window: float) -> int:
    sends = sorted(sends)
    best, start, held = 0, 0, 0
    for t, n in sends:
        held += n
        while sends[start][0] <= t - window:
            held -= sends[start][1]
            start += 1
        best = max(best, held)
    return best


def measure_throttling(
    *, seconds: float, workers: int, latency: float, kind: str = "text", paced: bool = True,
) -> dict[str, Any]:
    from shared.adapters.graph_client import build_graph_client
    from shared.adapters.graph_gate import MailboxGate
    from shared.adapters.graph_mailbox import GraphMailbox
    from shared.adapters.graph_pacer import EXCHANGE_LIMITS, MailboxPacer
    from shared.domain.errors import TransientError

    limits = EXCHANGE_LIMITS.scaled(SCALE)
    mailbox = "busy@bench.example"
    graph_options = {
        "users": {mailbox: True}, "token": GRAPH_TOKEN, "latency_seconds": latency, "keep_attachment_bytes": 0,
        "rate_limit": (limits.requests, limits.request_window_seconds),
        "upload_limit": (limits.upload_bytes, limits.upload_window_seconds),
    }
    items = _items(kind, 4000 if kind == "text" else 600)
    next_item = iter(items)
    lock = threading.Lock()
    outcomes = {"archived": 0, "transient": 0, "waited_seconds": 0.0}
    with ServerProcess(graph=graph_options) as servers:
        client = build_graph_client(base_url=servers.graph_url, access_token=GRAPH_TOKEN)
        pacer = MailboxPacer(limits) if paced else MailboxPacer.unlimited()
        writer = GraphMailbox(client, pacer=pacer, gate=MailboxGate())
        # The folder exists before the clock starts: this figure is about the steady state.
        writer.write(mailbox, items[0], check_existing=False)
        started = time.monotonic()
        deadline = started + seconds

        def work() -> None:
            while time.monotonic() < deadline:
                with lock:
                    item = next(next_item, None)
                if item is None:
                    return
                checked = False
                while time.monotonic() < deadline:
                    try:
                        writer.write(mailbox, item, check_existing=checked)
                    except TransientError as error:
                        wait = min(error.retry_after or 1.0, max(0.0, deadline - time.monotonic()))
                        with lock:
                            outcomes["transient"] += 1
                            outcomes["waited_seconds"] += wait
                        time.sleep(wait)
                        checked = True
                        continue
                    with lock:
                        outcomes["archived"] += 1
                    break

        threads = [threading.Thread(target=work, name=f"bench-throttle-{n}") for n in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ended = time.monotonic()
        writer.close()
        admitted = servers.graph("admitted_requests", mailbox)
        throttled = servers.graph("throttled_counts", mailbox)
        most_in_flight = servers.graph("max_concurrency", mailbox)
    admitted = [(t, n) for t, n in admitted if t >= started]
    request_windows = max(1, int(seconds // limits.request_window_seconds))
    upload_windows = max(1, int(seconds // limits.upload_window_seconds))
    request_period = request_windows * limits.request_window_seconds
    upload_period = upload_windows * limits.upload_window_seconds
    requests = sum(1 for t, _ in admitted if t < started + request_period)
    uploaded = sum(n for t, n in admitted if t < started + upload_period)
    return {
        "kind": kind,
        "paced": paced,
        "workers": workers,
        "latency_seconds": latency,
        "limits": {"requests": limits.requests, "request_window_seconds": limits.request_window_seconds,
                   "upload_bytes": limits.upload_bytes, "upload_window_seconds": limits.upload_window_seconds},
        "seconds": round(ended - started, 1),
        "request_windows": request_windows,
        "requests": requests,
        "requests_per_second": round(requests / request_period, 2),
        "request_rate_share": round(requests / (limits.requests * request_windows), 3),
        "upload_windows": upload_windows,
        "upload_bytes_per_second": round(uploaded / upload_period),
        "upload_rate_share": round(uploaded / (limits.upload_bytes * upload_windows), 3),
        "most_requests_in_a_window_share": round(
            _most_in_window([t for t, _ in admitted], limits.request_window_seconds) / limits.requests, 3),
        "most_bytes_in_a_window_share": round(
            _most_bytes_in_window(admitted, limits.upload_window_seconds) / limits.upload_bytes, 3),
        "throttled": dict(throttled),
        "throttled_total": sum(throttled.values()),
        "most_in_flight": most_in_flight,
        "archived": outcomes["archived"],
        "handed_back": outcomes["transient"],
        "pacer": vars(pacer.stats()),
    }
