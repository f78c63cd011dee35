"""Figures (h) and (i): the WhatsApp Business Platform webhook, over real HTTP.

Meta POSTs each delivery to ``/api/whatsapp/webhook`` and waits for a 200; it asks for a median
under 250 ms and fewer than 1% over a second when deliveries come concurrently. The app answers
once the body is stored and handed to the listing queue; splitting it into records, capturing its
media and archiving happen behind the queues.

The stack: Azurite, the registered ``whatsapp_webhook`` function under the host runner, served on
loopback by shared/local/http_front.py; the local Graph and the local Meta (media) in a process of
their own (bench/servers.py). Meta's side — the load — runs in a child process too
(``client_main``): one asyncio loop holding ``concurrency`` keep-alive connections, each sending
its next delivery as soon as the last is answered, so that what is timed is the app's answer, not
a hundred client threads taking turns at the measuring process's GIL.

(h) acknowledgement latency: ``deliveries`` signed bodies, a realistic mix (``webhook_bodies``), at
    ``concurrency`` in flight, after a warm-up round; each latency is taken by the client from the
    request's first byte written to the answer's last byte read.
(i) records per second end to end: ``bodies`` signed bodies delivered, then the host runner drains
    the listing queue (bodies split into records, media captured from the local Meta) and the items
    queue (records archived through the local Graph, as in figure b) until the day window
    reconciles.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.servers import MediaSpec, MetaFeed, ServerProcess
from bench.stack import GRAPH_TOKEN, ITEMS_FUNCTION, LISTING_FUNCTION, _host_json, app_env, cpu_seconds, new_run_id

REPO_ROOT = Path(__file__).resolve().parents[1]
WEBHOOK_FUNCTION = "whatsapp_webhook"
WEBHOOK_PATH = "/api/whatsapp/webhook"
SIGNATURE_HEADER = "X-Hub-Signature-256"
DOMAIN = "bench.example"
SEED = 15
UNUSED_URL = "http://127.0.0.1:9"  # the TeleMessage path and (for h) Graph: configured, never called

# Per 100 bodies, a business number's day as its webhook sees it: inbound texts most, then receipts
# (up to three per message the business sends), echoes of what the employee typed in the app, media,
# and the rarer types, so that body sizes and the split's work are those of real traffic.
MIX = (
    ("text", 34), ("statuses", 22), ("batch", 5), ("echo", 8), ("image", 7), ("voice", 5), ("document", 3),
    ("sticker", 2), ("location", 2), ("contacts", 2), ("interactive", 3), ("button", 1), ("reaction", 4),
    ("order", 1), ("unsupported", 1),
)
MEDIA = {  # kind -> (type object, mime type, bytes)
    "image": ("image", "image/jpeg", 180_000),
    "voice": ("audio", "audio/ogg; codecs=opus", 24_000),
    "document": ("document", "application/pdf", 240_000),
    "sticker": ("sticker", "image/webp", 18_000),
}
WORDS = ("buy", "sell", "the", "bond", "at", "market", "close", "confirm", "please", "term", "sheet", "call",
         "me", "about", "Friday's", "order", "limit", "price", "€", "réglé", "déjà", "ok 👍", "thanks")


@dataclass
class WebhookTraffic:
    bodies: list[bytes]  # as Meta puts them on the wire (non-ASCII escaped)
    records: int  # messages and echoes: each becomes one archived record
    statuses: int
    media: MediaSpec
    numbers: dict[str, str]  # business number (digits) -> its employee's mailbox
    kinds: dict[str, int]


def business_numbers(count: int) -> dict[str, str]:
    return {f"4477009{n:05d}": f"webhook{n:03d}@{DOMAIN}" for n in range(1, count + 1)}


def webhook_bodies(count: int, *, numbers: int = 10, seed: int = SEED, tag: str = "") -> WebhookTraffic:
    """``count`` webhook bodies of the ``MIX``, each from one of ``numbers`` business numbers, message
    ids unique to ``tag``; the media they name (made from ``seed``, as bench/servers.py serves them)."""
    from shared.local import whatsapp_bodies as wa
    from shared.local.traffic.media import media_bytes as _media_bytes

    rng = random.Random(f"{seed}:{tag}")
    businesses = business_numbers(numbers)
    numbers_in_turn = list(businesses)
    kinds = [kind for kind, weight in MIX for _ in range(weight)]
    now = int(time.time())
    serial = iter(range(1, 1 << 30))
    media: MediaSpec = {}
    bodies: list[bytes] = []
    records = statuses = 0
    tally: dict[str, int] = {}

    def wamid() -> str:
        return "wamid." + base64.b64encode(f"bench{tag}:{next(serial):09d}".encode()).decode()

    def words(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).capitalize() + "."

    def customer() -> tuple[str, dict[str, Any]]:
        number = f"1202555{rng.randrange(10_000):04d}"
        return number, wa.contact(number, f"Client {number[-4:]}")

    def media_object(kind: str) -> dict[str, Any]:
        _, mime, size = MEDIA[kind]
        media_id = f"{seed}{next(serial):012d}"
        media[media_id] = (size, mime, True)
        digest = hashlib.sha256(_media_bytes(seed, media_id, size, mime)).hexdigest()
        extra: dict[str, Any] = {"voice": True} if kind == "voice" else {}
        if kind == "image":
            extra["caption"] = words(2, 8)
        if kind == "document":
            extra["filename"] = f"term-sheet-{media_id[-4:]}.pdf"
        return wa.media(media_id, mime, sha256=digest, **extra)

    def inbound(kind: str, sender: str, at: int) -> dict[str, Any]:
        if kind in MEDIA:
            return wa.message(MEDIA[kind][0], media_object(kind), message_id=wamid(), at=at, sender=sender)
        content: dict[str, Any] = {
            "text": lambda: wa.text(words(3, 30)), "location": wa.location, "contacts": lambda: [wa.contact_card()],
            "interactive": lambda: rng.choice((wa.button_reply, wa.list_reply, wa.flow_reply))(),
            "button": lambda: {"payload": "confirm-trade", "text": "Confirm"},
            "reaction": lambda: {"message_id": wamid(), "emoji": rng.choice(("👍", "✅", "🙏"))},
            "order": wa.order, "unsupported": lambda: {"type": "poll"},
        }[kind]()
        extra: dict[str, Any] = {"errors": [wa.meta_error()]} if kind == "unsupported" else {}
        return wa.message(kind, content, message_id=wamid(), at=at, sender=sender, **extra)

    for n in range(count):
        kind = rng.choice(kinds)
        tally[kind] = tally.get(kind, 0) + 1
        business = numbers_in_turn[n % numbers]
        meta = wa.metadata(business, f"31000000{business[-5:]}")
        at = now - rng.randrange(60)
        if kind == "statuses":
            number, _ = customer()
            items = [wa.status(wamid(), state, at=at, recipient=number)
                     for state in rng.sample(("sent", "delivered", "read"), rng.randint(1, 3))]
            change = wa.change(wa.value(meta, statuses=items))
            statuses += len(items)
        elif kind == "echo":
            number, card = customer()
            echo = wa.echo("text", wa.text(words(3, 25)), message_id=wamid(), at=at, business=business, to=number)
            change = wa.change(wa.value(meta, echoes=[echo], contacts=[card]), field="smb_message_echoes")
            records += 1
        else:
            senders = [customer() for _ in range(rng.randint(2, 4) if kind == "batch" else 1)]
            messages = [inbound("text" if kind == "batch" else kind, number, at) for number, _ in senders]
            change = wa.change(wa.value(meta, messages=messages, contacts=[card for _, card in senders]))
            records += len(messages)
        bodies.append(wa.meta_json(wa.envelope(wa.entry(change, waba_id="42000000000" + business[-4:]))))
    return WebhookTraffic(bodies, records, statuses, media, businesses, tally)


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


# -- the stack ------------------------------------------------------------------------------------------


@dataclass
class WebhookStack:
    front: Any  # HttpFront
    container: Any
    runner: Any  # the webhook function's HostRunner
    secret: str
    state_dir: Path
    servers: ServerProcess | None
    env: dict[str, str]


@contextmanager
def webhook_stack(
    azurite: Any, state_dir: Path, *, traffic: WebhookTraffic, latency: float | None = None,
) -> Iterator[WebhookStack]:
    """The webhook served over loopback; with ``latency``, also the local Graph (that latency per
    request) holding the traffic's mailboxes and the local Meta serving its media."""
    import function_app
    from shared.composition import get_container
    from shared.local.demo import app_settings
    from shared.local.host_runner.functions import registered_functions
    from shared.local.host_runner.runner import HostRunner
    from shared.local.http_front import HttpFront

    secret = os.urandom(24).hex()  # never printed: it exists only for this run
    meta_token = os.urandom(16).hex()
    run_id = new_run_id()
    mapping = state_dir / f"webhook-mapping-{run_id}.csv"
    mapping.write_text("PhoneNumber,EmailAddress\n" + "".join(
        f"+{number},{address}\n" for number, address in traffic.numbers.items()), encoding="utf-8")
    servers = None
    if latency is not None:
        servers = ServerProcess(
            graph={"users": dict.fromkeys(traffic.numbers.values(), True), "token": GRAPH_TOKEN,
                   "latency_seconds": latency, "keep_attachment_bytes": 0},
            meta=MetaFeed(meta_token, traffic.media, SEED),
        ).start()
    try:
        env = {
            **app_env(storage=azurite.connection_string, graph_url=servers.graph_url if servers else UNUSED_URL,
                      telemessage_url=UNUSED_URL, password="unused", run_id=run_id),
            "MAPPING_FILE": str(mapping), "CUSTOM_MAPPING_ENABLED": "true",
            "WHATSAPP_APP_SECRET": secret, "WHATSAPP_VERIFY_TOKEN": os.urandom(16).hex(),
            "WHATSAPP_GRAPH_BASE_URL": servers.meta_url if servers else UNUSED_URL,
            "WHATSAPP_ACCESS_TOKEN": meta_token,
        }
        with app_settings(env):
            functions = [f for f in registered_functions(function_app.app)
                         if f.get_function_name() == WEBHOOK_FUNCTION]
            runner = HostRunner(functions, host_json=REPO_ROOT / "host.json",
                                connection_settings={"AzureWebJobsStorage": azurite.connection_string},
                                settings=dict(os.environ))
            with runner, HttpFront(runner) as front:
                yield WebhookStack(front, get_container(), runner, secret, state_dir, servers, env)
    finally:
        if servers is not None:
            servers.stop()


@dataclass
class Sent:
    latencies: list[float]  # seconds, in the order answered
    statuses: dict[str, int]  # HTTP status -> count
    seconds: float  # first request written to last answer read


def deliver(stack: WebhookStack, bodies: list[bytes], *, concurrency: int) -> Sent:
    """Send ``bodies`` as Meta would (signed), ``concurrency`` at a time, from a child process."""
    deliveries = stack.state_dir / f"deliveries-{os.getpid()}-{time.monotonic_ns()}.jsonl"
    with deliveries.open("w", encoding="ascii") as out:
        for body in bodies:
            out.write(json.dumps({"body": base64.b64encode(body).decode(), "signature": signature(body, stack.secret)})
                      + "\n")
    order = {"port": stack.front.port, "path": WEBHOOK_PATH, "file": str(deliveries), "concurrency": concurrency}
    try:
        completed = subprocess.run(
            [sys.executable, "-c", "from bench.webhook import client_main; client_main()"],
            input=json.dumps(order), capture_output=True, text=True, cwd=REPO_ROOT, timeout=900,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
    finally:
        deliveries.unlink(missing_ok=True)
    if completed.returncode != 0:
        raise RuntimeError(f"the webhook client failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout)
    return Sent(result["latencies"], result["statuses"], result["seconds"])


def client_main() -> None:
    """The child's side of ``deliver``: reads its order on stdin, prints the latencies as JSON."""
    order = json.loads(sys.stdin.read())
    with open(order["file"], encoding="ascii") as lines:
        deliveries = [json.loads(line) for line in lines]
    latencies, statuses, seconds = asyncio.run(_send_all(order, deliveries))
    json.dump({"latencies": latencies, "statuses": statuses, "seconds": seconds}, sys.stdout)


async def _send_all(
    order: dict[str, Any], deliveries: list[dict[str, str]],
) -> tuple[list[float], dict[str, int], float]:
    port, path = order["port"], order["path"]
    requests = [
        (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: facebookexternalua\r\n"
         f"Content-Type: application/json\r\n{SIGNATURE_HEADER}: {d['signature']}\r\n"
         f"Content-Length: {len(body := base64.b64decode(d['body']))}\r\n\r\n").encode("ascii") + body
        for d in deliveries
    ]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    async def connection() -> None:
        reader = writer = None
        while not queue.empty():
            request = queue.get_nowait()
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0]) if "content-length:" in head else 0
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            status = head.split(" ", 2)[1]
            statuses[status] = statuses.get(status, 0) + 1
            if "connection: close" in head:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(min(order["concurrency"], len(requests)))))
    return latencies, statuses, time.perf_counter() - started


def percentile(values: list[float], share: float) -> float:
    """Nearest rank: the smallest value with at least ``share`` of the values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered), max(1, math.ceil(share * len(ordered)))) - 1]


# -- (h) ------------------------------------------------------------------------------------------------


def measure_acknowledgement(
    azurite: Any, *, deliveries: int, concurrency: int, one_at_a_time: int, state_dir: Path,
) -> dict[str, Any]:
    """(h): latencies of ``deliveries`` signed bodies at ``concurrency`` in flight, after a warm-up
    round of ``concurrency`` bodies (the first delivery builds the app's storage clients); then
    ``one_at_a_time`` more, one in flight: the service time, with no queueing in it."""
    traffic = webhook_bodies(concurrency + deliveries + one_at_a_time, tag=f"h{new_run_id()}")
    warm_up = traffic.bodies[:concurrency]
    measured = traffic.bodies[concurrency:concurrency + deliveries]
    alone = traffic.bodies[concurrency + deliveries:]
    with webhook_stack(azurite, state_dir, traffic=traffic) as stack:
        deliver(stack, warm_up, concurrency=concurrency)
        before = _cpu(azurite)
        sent = deliver(stack, measured, concurrency=concurrency)
        after = _cpu(azurite)
        single = deliver(stack, alone, concurrency=1)
        queued = stack.container.listing_queue.depth()
        # Nobody splits these bodies: left on the shared listing queue, they would be taken up by the
        # next figure's listing function, which cannot find them in its own run's container.
        stack.container.listing_queue.client.clear_messages()
    latencies = sent.latencies
    sizes = sorted(len(body) for body in measured)
    return {
        "deliveries": len(latencies),
        "concurrency": concurrency,
        "statuses": sent.statuses,
        "all_answered_200": sent.statuses == {"200": len(measured)} and single.statuses == {"200": len(alone)},
        "handed_off": queued,  # warm-up and measured bodies, each a task on the listing queue
        "sent": len(traffic.bodies),
        "p50_ms": round(1000 * percentile(latencies, 0.50), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "max_ms": round(1000 * max(latencies, default=0.0), 1),
        "mean_ms": round(1000 * sum(latencies) / max(1, len(latencies)), 1),
        "over_1s_share": round(sum(1 for x in latencies if x > 1.0) / max(1, len(latencies)), 4),
        "per_second": round(len(latencies) / sent.seconds, 1) if sent.seconds else 0.0,
        "seconds": round(sent.seconds, 2),
        "body_bytes_median": sizes[len(sizes) // 2] if sizes else 0,
        "body_bytes_max": sizes[-1] if sizes else 0,
        "kinds": traffic.kinds,
        **_cpu_per(before, after, len(latencies)),
        "one_at_a_time": {"deliveries": len(single.latencies),
                          "p50_ms": round(1000 * percentile(single.latencies, 0.50), 1),
                          "p99_ms": round(1000 * percentile(single.latencies, 0.99), 1)},
    }


def _cpu(azurite: Any) -> dict[str, float]:
    return {"connector": cpu_seconds(), "azurite": cpu_seconds(azurite.pid)}


def _cpu_per(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    return {f"{name}_cpu_ms_per_delivery": round(1000 * (after[name] - before[name]) / max(1, count), 2)
            for name in before}


# -- (i) ------------------------------------------------------------------------------------------------


def measure_webhook_throughput(
    azurite: Any, *, bodies: int, concurrency: int, latency: float, workers: int, pumps: int, state_dir: Path,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """(i): ``bodies`` delivered, then every record archived and the day window reconciled."""
    import function_app
    from bench.soak import drain_scaled_out
    from shared.local.host_runner.functions import registered_functions
    from shared.local.host_runner.runner import HostRunner
    from shared.service.status import recent_summaries

    traffic = webhook_bodies(bodies, tag=f"i{new_run_id()}")
    with webhook_stack(azurite, state_dir, traffic=traffic, latency=latency) as stack:
        functions = registered_functions(function_app.app)

        def runner(name: str, batch: int, count: int) -> HostRunner:
            return HostRunner([f for f in functions if f.get_function_name() == name],
                              host_json=_host_json(batch, state_dir),
                              connection_settings={"AzureWebJobsStorage": azurite.connection_string},
                              settings=dict(os.environ), workers=count)

        listing = runner(LISTING_FUNCTION, 16, workers)
        per_pump = max(1, workers // pumps)
        items = [runner(ITEMS_FUNCTION, per_pump, per_pump) for _ in range(pumps)]
        try:
            started = time.monotonic()
            sent = deliver(stack, traffic.bodies, concurrency=concurrency)
            delivered = time.monotonic()
            before = _cpu(azurite)
            drain_scaled_out(items, listing, timeout=timeout, poll_interval=0.1)
            drained = time.monotonic()
            after = _cpu(azurite)
            summaries = _reconciled(stack.container.ledger, recent_summaries, deadline=drained + 60)
            reconciled_at = time.monotonic()
        finally:
            for one in (listing, *items):
                one.close()
    listed = sum(s["listed"] for s in summaries)
    imported = sum(s["imported"] for s in summaries)
    poisoned = sum(sum(s["poisoned"].values()) for s in summaries)
    end_to_end = reconciled_at - started
    return {
        "bodies": len(traffic.bodies),
        "records_sent": traffic.records,
        "statuses_sent": traffic.statuses,
        "media": len(traffic.media),
        "kinds": traffic.kinds,
        "delivery_statuses": sent.statuses,
        "listed": listed,
        "imported": imported,
        "skipped": sum(s["skipped_duplicates"] for s in summaries),
        "poisoned": poisoned,
        "partially_imported": sum(s.get("partially_imported", 0) for s in summaries),
        "reconciled": bool(summaries) and all(s["reconciled"] for s in summaries),
        "windows": len(summaries),
        "latency_seconds": latency,
        "workers": workers,
        "concurrency": concurrency,
        "delivery_seconds": round(delivered - started, 2),
        "archive_seconds": round(drained - delivered, 2),
        "reconcile_seconds": round(reconciled_at - delivered, 2),
        "end_to_end_seconds": round(end_to_end, 2),
        "records_per_second": round(imported / end_to_end, 1) if end_to_end else 0.0,
        "archived_per_second": round(imported / (drained - delivered), 1) if drained > delivered else 0.0,
        "connector_cpu_ms_per_record": round(1000 * (after["connector"] - before["connector"]) / max(1, imported), 1),
        "azurite_cpu_ms_per_record": round(1000 * (after["azurite"] - before["azurite"]) / max(1, imported), 1),
    }


def _reconciled(ledger: Any, recent_summaries: Any, *, deadline: float) -> list[dict[str, Any]]:
    """The day windows' summaries once each reconciles (a run across midnight UTC has two), or as
    they are at ``deadline``."""
    from shared.service.webhook_records import webhook_day

    while True:
        # Only the webhooks' day windows: the other figures' windows share this storage, and recent
        # windows come by hand-off, not by kind.
        summaries = [summary.to_json() for summary in recent_summaries(ledger, 20)
                     if summary.info == webhook_day(summary.info.window.start)]
        if (summaries and all(s["reconciled"] for s in summaries)) or time.monotonic() >= deadline:
            return summaries
        time.sleep(0.2)
