"""The soak: a day of about 20,000 records through the local stack with faults injected all the
way, then proof that nothing was archived twice and nothing was lost.

    python -m bench.soak                   # about 20,000 records, every kind of fault
    python -m bench.soak --records 1500    # the short run (tests/test_soak.py runs it)
    python -m bench.soak --no-faults       # the same load with nothing broken: a baseline

The stack is the demo's (Azurite from node_modules, the local TeleMessage, the registered
functions under HostRunner) writing through the Graph writer into the local Graph, which also
serves the directory. Listing pages are taken while the items backlog is short (see
ITEMS_BACKLOG_LIMIT). One window is handed off and drained while this goes wrong:

- Graph: bursts of 429 on item creates (with a Retry-After short enough to wait out inline, and
  one long enough to hand the item back to the queue) and of 503 (before the create, and after
  it: the item exists but the writer never hears so); every mailbox rate-limited.
- TeleMessage: 5xx answers and dropped connections on listing pages, attachment downloads cut
  off mid-body, every token expired during the listing and again mid-run.
- Workers dying after the function ran and before the queue message was deleted.
- Azurite restarted once, its data kept on disk as Azure Storage keeps it.
- Claim-check blobs overwritten with garbage between listing and import: those records must end
  poisoned ``invalid_item``, which accounts for them.

The verdict comes from three sources that must agree: the window's reconciliation from the
ledger (``window_summary``), the items actually in the local Graph's mailboxes, and the traffic
generator's own idea of where each record belongs. The exit status is 0 only when no item is
duplicated or in a mailbox it does not belong in, no record is lost, the window reconciles, and
every poisoned record was poisoned for the reason the traffic or an injected fault calls for.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.storage.blob import BlobServiceClient

import function_app
from bench.settings import SETTLE_MINUTES, pinned_app_settings
from shared.adapters.graph_message import id_property_id
from shared.composition import get_container
from shared.domain.ledger import OutcomeEntry, RecordOutcome, WindowSummary
from shared.domain.records import record_key
from shared.local.azurite import Azurite
from shared.local.demo import app_settings
from shared.local.graph_stand_in.server import LocalGraph
from shared.local.graph_stand_in.store import extended_property
from shared.local.host_runner.errors import DrainTimeout
from shared.local.host_runner.functions import registered_functions
from shared.local.host_runner.runner import HostRunner
from shared.local.telemessage_server import ATTACHMENTS_PREFIX, ITEMS_PATH, Faults, LocalTeleMessage
from shared.local.traffic.day import TrafficDay, generate_day
from shared.service.reports import with_rows
from shared.service.status import window_summary
from shared.settings import ITEMS_QUEUE

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECORDS = 20_000
SOAK_USERNAME = "soak-connector"
GRAPH_TOKEN = "soak-local-graph-token"  # only ever sent to the local Graph on loopback
MAX_ITEM_MB = 10
# Workers that die right after the function ran come back this soon (the host's 10 minutes would
# stall the run); every other message is settled long before this lapses.
CRASH_REDELIVERY_SECONDS = 2
INJECTOR_TICK_SECONDS = 0.05
ITEMS_FUNCTION = "import_archive_item"
LISTING_FUNCTION = "list_archive_slice"
# Azurite's queues get slower in proportion to their depth (a receive and a delete take 5 ms with
# 100 messages waiting, 150 ms with 16,000); Azure Storage's do not. Left alone, the listing would
# queue the whole day before most imports start, and the emulator, not the connector, would set
# the pace. So a listing page is taken only while the items backlog is under this.
ITEMS_BACKLOG_LIMIT = 600
TIMER_FUNCTION = "schedule_archive_window"
_PROBE_ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
ID_PROPERTY = id_property_id()  # the record id the Graph writer puts on every item

log = logging.getLogger(__name__)


# -- what to run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakOptions:
    records: int = DEFAULT_RECORDS  # approximate: the traffic generator's scale is picked to match
    seed: int = 7
    # Host instances (HostRunners) pumping the queues side by side. More than one makes them
    # competing consumers: a message whose function outlasts CRASH_REDELIVERY_SECONDS is taken by
    # another instance meanwhile, the race the delivery records exist for. One is the default:
    # the run is bound by Azurite, not by the workers, so a second instance gains little.
    instances: int = 1
    workers: int = 8  # per instance
    faults: bool = True
    state_dir: Path | None = None  # Azurite's data and the log; a temporary directory when None
    drain_timeout: float = 3 * 3600.0
    # Requests per mailbox per second the local Graph admits before answering 429. Exchange's own
    # budget is about 16 (10,000 per 10 minutes), but the local stack runs at a fraction of a real
    # deployment's pace, so a lower limit is what makes the busiest mailboxes meet it.
    graph_rate_limit: int = 12
    graph_latency: float = 0.0  # seconds added to every Graph request
    crash_fraction: float = 0.03  # of import messages, on their first delivery
    restart_at_progress: float = 0.4  # Azurite restarts when this fraction of the records is done


# -- the traffic and where it belongs ---------------------------------------------------------------


def scale_for(records: int, seed: int = 7) -> int:
    """The traffic scale whose day holds about ``records`` records: the scale multiplies the
    everyday chatter, the showcase records come once."""
    at_one = len(generate_day(_PROBE_ANCHOR, seed=seed, scale=1).records)
    per_scale = (len(generate_day(_PROBE_ANCHOR, seed=seed, scale=5).records) - at_one) / 4
    return max(1, 1 + round((records - at_one) / per_scale))


def expected_routing(traffic: TrafficDay) -> dict[str, frozenset[str]]:
    """messageId -> the mailboxes the traffic generator says the record belongs in (lower case):
    every participant's mailbox by the documented precedence. Empty: nobody maps (no_mapping)."""
    people = {}
    for person in traffic.people:
        people[person.phone] = person
        if person.captured_phone:
            people[person.captured_phone] = person
    routing = {}
    for record in traffic.records:
        participants = [record["sender"], *record["recipients"]]
        mailboxes = {traffic.expected_mailbox(people[p["phone"]]) for p in participants}
        routing[record["messageId"]] = frozenset(m.lower() for m in mailboxes if m)
    return routing


def over_item_limit(record: Mapping[str, Any], max_item_bytes: int) -> bool:
    """Attachments that alone exceed the item size limit: such a record must be poisoned too_big."""
    return sum(int(a.get("size") or 0) for a in record.get("attachments") or ()) > max_item_bytes


# -- fault injection ------------------------------------------------------------------------------


class FaultCountingGraph(LocalGraph):
    """The local Graph, counting the scripted failures (``fail_next``) it actually served: a
    burst armed near the end of the run may never be met by a request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.served_faults: Counter[tuple[int, float | None, bool]] = Counter()
        self._served_lock = threading.Lock()
        # The stdlib server prints a traceback to stderr whenever a client hangs up between
        # requests; the local TeleMessage logs that at debug level, and so does this.
        self._server.handle_error = lambda request, client_address: log.debug(
            "local Graph: a connection from %s ended with an error", client_address, exc_info=True,
        )

    def _take_fault(self, method: str, path: str) -> Any:
        fault = super()._take_fault(method, path)
        if fault is not None:
            with self._served_lock:
                self.served_faults[(fault.status, fault.retry_after, fault.after_execution)] += 1
        return fault


@dataclass(frozen=True)
class GraphBurst:
    name: str
    status: int
    retry_after: float | None = None
    after_execution: bool = False

    @property
    def key(self) -> tuple[int, float | None, bool]:
        return (self.status, self.retry_after, self.after_execution)


GRAPH_BURSTS = (
    GraphBurst("graph_429_waited_inline", 429, retry_after=1),
    GraphBurst("graph_503_before_create", 503),
    # Over the Graph client's 5 s inline limit: the item goes back to the queue to wait.
    GraphBurst("graph_429_handed_back_to_queue", 429, retry_after=8),
    # The item is created but the writer sees a 503: the case that tempts a duplicate.
    GraphBurst("graph_503_after_create", 503, after_execution=True),
)
# Item creates (POST .../mailFolders/{folder}/messages): attachment and folder requests differ.
GRAPH_CREATE_PATH = "/mailFolders/"


class WorkerCrashes:
    """HostRunner's ``crash_after_function`` hook: for a fraction of import messages the worker
    "dies" after the function ran and before the queue delete, on their first delivery only, so
    every crash is followed by a redelivery that must find the work already done."""

    def __init__(self, fraction: float) -> None:
        self._per_10k = round(fraction * 10_000)
        self._lock = threading.Lock()
        self.crashes = 0

    def __call__(self, function_name: str, message: func.QueueMessage) -> bool:
        if function_name != ITEMS_FUNCTION or (message.dequeue_count or 0) > 1:
            return False
        if zlib.crc32((message.id or "").encode()) % 10_000 >= self._per_10k:
            return False
        with self._lock:
            self.crashes += 1
        return True


class CorruptingRecordStore:
    """Wraps the functions' claim-check store. The chosen records' claim checks are overwritten with
    garbage right after listing stored them, before their import message can be read: a damaged
    blob or entity (or a careless hand in the storage account) as the importer meets it. Each is
    corrupted once; a re-listed copy stored beside it later is left alone. ``overwrite`` writes the
    garbage where the store keeps the reference's bytes."""

    def __init__(self, store: Any, overwrite: Callable[[str, bytes], None], targets: set[str]) -> None:
        self._store = store
        self._overwrite = overwrite
        self._targets = targets
        self._lock = threading.Lock()
        self.corrupted: set[str] = set()

    def put(self, record_key: str, raw: bytes) -> str:
        reference = self._store.put(record_key, raw)
        with self._lock:
            chosen = record_key in self._targets and record_key not in self.corrupted
        if chosen:
            garbage = b"\x00\xff not a record " + hashlib.sha256(raw).digest()
            self._overwrite(reference, garbage)
            with self._lock:
                self.corrupted.add(record_key)
        return reference

    def get(self, reference: str) -> bytes:
        return self._store.get(reference)


@dataclass
class PacedFaults:
    """Scripted TeleMessage faults on one path, armed one at a time, each ``every`` requests after
    the one that met the last, so the client's own retries absorb most of them and the run keeps
    moving. ``served`` recognises, in the request log, a request that shows a fault's effect (a
    fault can also meet a request it does not disturb, e.g. a 404 for media never captured)."""

    path: str
    arms: tuple[Callable[[Faults], None], ...]
    served: Callable[[Any], bool]
    every: int
    limit: int
    armed: int = 0
    seen_served: int = 0
    requests: int = 0
    next_at: int = 0

    def observe(self, request: Any) -> None:
        if request.path.startswith(self.path):
            self.requests += 1
            self.seen_served += self.served(request)

    def maybe_arm(self, faults: Faults) -> None:
        if self.armed >= self.limit or self.requests < self.next_at:
            return
        self.arms[self.armed % len(self.arms)](faults)
        self.armed += 1
        # The next request on the path takes this one; the next fault waits ``every`` more.
        self.next_at = self.requests + 1 + self.every


class FaultInjector:
    """A background thread that breaks things on a schedule driven by the run's progress (items
    finished / records generated), so a short and a long run see the same story."""

    def __init__(
        self, *, succeeded: Callable[[], int], graph: FaultCountingGraph, telemessage: LocalTeleMessage,
        azurite: Azurite, mailboxes: list[str], records: int, crashes: WorkerCrashes,
        corrupter: CorruptingRecordStore, restart_at: float,
    ) -> None:
        self._succeeded = succeeded  # functions finished so far, on every host instance
        self._graph = graph
        self._telemessage = telemessage
        self._azurite = azurite
        self._mailboxes = mailboxes
        self._records = records
        self.crashes = crashes
        self.corrupter = corrupter
        self._burst_size = max(4, records // 800)
        # Graph bursts from early on to about two thirds of the run: a 503 costs its item the
        # host's 30 s retry delay, which the remaining work then hides. The restart once; tokens
        # expired again when the listing is long over and only attachment downloads log in.
        self._checkpoints: list[tuple[float, Callable[[], None]]] = sorted(
            [(0.05 + 0.07 * i, self._graph_burst(GRAPH_BURSTS[i % len(GRAPH_BURSTS)])) for i in range(9)]
            + [(restart_at, self._restart_azurite), (0.5, self._expire_tokens)],
            key=lambda checkpoint: checkpoint[0],
        )
        self._listing = PacedFaults(
            ITEMS_PATH,
            arms=(
                lambda faults: faults.fail_next(ITEMS_PATH, 503),
                lambda faults: faults.drop_connection_next(ITEMS_PATH, after_bytes=None),
                lambda faults: faults.fail_next(ITEMS_PATH, 500),
                lambda faults: faults.drop_connection_next(ITEMS_PATH, after_bytes=None),
                lambda faults: faults.fail_next(ITEMS_PATH, 502),
            ),
            # Nothing else makes the local TeleMessage answer 5xx or hang up without an answer.
            served=lambda request: request.status is None or request.status >= 500,
            every=2,
            limit=max(5, records // 800),
        )
        self._attachments = PacedFaults(
            ATTACHMENTS_PREFIX,
            arms=(lambda faults: faults.drop_connection_next(ATTACHMENTS_PREFIX, after_bytes=32 * 1024),),
            # A cut download is resumed with a Range request; a first download never sends one.
            served=lambda request: request.range is not None,
            every=15,
            limit=max(3, records // 1000),
        )
        self._listing_expiry_at = 3  # listing requests, so that the expiry lands in the listing
        self._log_position = 0
        self.tokens_expired = 0
        self.azurite_restarts = 0
        self.azurite_restart_seconds = 0.0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-fault-injector", daemon=True)

    @contextmanager
    def running(self) -> Iterator[FaultInjector]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=120)
            self._telemessage.faults.clear()  # nothing left armed for the checks that follow

    @property
    def progress(self) -> float:
        return self._succeeded() / max(1, self._records)

    def _run(self) -> None:
        while not self._stop.wait(INJECTOR_TICK_SECONDS):
            try:
                self._tick()
            except Exception as error:  # reported with the result: an injector that died injects no more
                self.errors.append(f"{type(error).__name__}: {error}")
                log.exception("soak: the fault injector failed")
                return

    def _tick(self) -> None:
        requests = self._telemessage.requests
        while self._log_position < len(requests):
            request = requests[self._log_position]
            self._log_position += 1
            self._listing.observe(request)
            self._attachments.observe(request)
        self._listing.maybe_arm(self._telemessage.faults)
        self._attachments.maybe_arm(self._telemessage.faults)
        if self._listing_expiry_at is not None and self._listing.requests >= self._listing_expiry_at:
            self._listing_expiry_at = None
            self._expire_tokens()
        progress = self.progress
        while self._checkpoints and self._checkpoints[0][0] <= progress:
            _, action = self._checkpoints.pop(0)
            action()

    def _graph_burst(self, burst: GraphBurst) -> Callable[[], None]:
        def arm() -> None:
            self._graph.fail_next(
                burst.status, times=self._burst_size, retry_after=burst.retry_after,
                path_contains=GRAPH_CREATE_PATH, method="POST", after_execution=burst.after_execution,
            )
            log.info("soak: %d x %s armed at %.0f%%", self._burst_size, burst.name, 100 * self.progress)

        return arm

    def _expire_tokens(self) -> None:
        self._telemessage.expire_all_tokens()
        self.tokens_expired += 1
        log.info("soak: every TeleMessage token expired at %.0f%%", 100 * self.progress)

    def _restart_azurite(self) -> None:
        log.info("soak: restarting Azurite at %.0f%%", 100 * self.progress)
        started = time.monotonic()
        self._azurite.restart()
        self.azurite_restart_seconds = round(time.monotonic() - started, 2)
        self.azurite_restarts += 1
        log.info("soak: Azurite back after %.2f s", self.azurite_restart_seconds)

    def counts(self) -> dict[str, int]:
        """Each fault kind, as served (not merely armed)."""
        served = self._graph.served_faults
        counts = {burst.name: served.get(burst.key, 0) for burst in GRAPH_BURSTS}
        throttled: Counter[str] = Counter()
        for address in self._mailboxes:
            throttled.update(self._graph.throttled_counts(address))
        counts["graph_429_rate_limit"] = throttled.get("rate", 0)
        counts["graph_429_concurrency"] = throttled.get("concurrency", 0)
        statuses = Counter(r.status for r in self._telemessage.requests if r.path.startswith(self._listing.path))
        counts["telemessage_listing_5xx"] = sum(n for s, n in statuses.items() if s is not None and s >= 500)
        counts["telemessage_listing_dropped"] = statuses.get(None, 0)
        counts["telemessage_attachment_cut"] = self._attachments.seen_served
        counts["telemessage_tokens_expired"] = self.tokens_expired
        counts["telemessage_401_after_expiry"] = sum(1 for r in self._telemessage.requests if r.status == 401)
        counts["worker_crashes"] = self.crashes.crashes
        counts["azurite_restarts"] = self.azurite_restarts
        counts["corrupt_claim_checks"] = len(self.corrupter.corrupted)
        return counts


# -- the run -----------------------------------------------------------------------------------------


def _settings(*, storage: str, telemessage: str, password: str, graph: str) -> dict[str, str]:
    return pinned_app_settings(storage=storage, telemessage_url=telemessage, username=SOAK_USERNAME,
                               password=password, graph_url=graph, graph_token=GRAPH_TOKEN, max_item_mb=MAX_ITEM_MB)


def run_soak(options: SoakOptions) -> dict[str, Any]:
    """Run the soak and return the report (``report["passed"]`` is the verdict)."""
    if options.state_dir is not None:
        options.state_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(options.state_dir / "azurite", ignore_errors=True)  # every soak starts from empty storage
        return _run(options, options.state_dir)
    with tempfile.TemporaryDirectory(prefix="whatsapp-archiver-soak-") as temporary:
        return _run(options, Path(temporary))


def _run(options: SoakOptions, state_dir: Path) -> dict[str, Any]:
    scale = scale_for(options.records, options.seed)
    anchor = (datetime.now(UTC) - timedelta(minutes=SETTLE_MINUTES)).replace(second=0, microsecond=0)
    traffic = generate_day(anchor, seed=options.seed, scale=scale)
    users = {address: True for address in traffic.directory()}
    password = os.urandom(12).hex()  # never printed: the local server and the connector share it
    # Retry-After to the millisecond: a throttled request waits exactly as long as the window needs
    # instead of whole seconds (real Graph's unit), so throttling costs the local run less time.
    graph_limits: dict[str, Any] = (
        {"rate_limit": (options.graph_rate_limit, 1.0), "fractional_retry_after": True} if options.faults else {}
    )
    with Azurite(location=state_dir / "azurite") as azurite, \
            LocalTeleMessage(traffic, username=SOAK_USERNAME, password=password) as telemessage, \
            FaultCountingGraph(users, token=GRAPH_TOKEN, latency_seconds=options.graph_latency,
                        keep_attachment_bytes=0, **graph_limits) as graph:
        env = _settings(storage=azurite.connection_string, telemessage=telemessage.base_url,
                        password=password, graph=graph.base_url)
        with app_settings(env):
            outcome = _drive(options, traffic, state_dir, azurite=azurite, telemessage=telemessage, graph=graph)
        items = _archived_items(graph, traffic.directory())
    report = reconcile(
        traffic, outcome.summary, outcome.listed_keys, items, corrupted=outcome.corrupted,
        host_poisoned=outcome.host_poisoned, max_item_bytes=MAX_ITEM_MB * 1024 * 1024,
    )
    seconds = outcome.seconds
    report.update({
        "records_requested": options.records,
        "scale": scale,
        "seed": options.seed,
        "instances": options.instances,
        "workers": options.workers,
        "faults_enabled": options.faults,
        "faults": outcome.faults,
        "azurite_restart_seconds": outcome.azurite_restart_seconds,
        "fault_injector_errors": outcome.injector_errors,
        "drain_error": outcome.drain_error,
        "runner": outcome.runner_stats,
        "queues": outcome.queues,
        "poison_messages": outcome.poison_messages,
        "poison_messages_repeated": outcome.poison_repeats,
        "seconds": round(seconds, 1),
        "records_per_second": round(len(traffic.records) / seconds, 1) if seconds else None,
        "state_dir": str(state_dir),
    })
    report["passed"] = (
        report["duplicates"] == 0 and report["lost"] == 0 and bool(report["window"])
        and report["window"]["reconciled"] and report["unexpected_poison"] == 0
        and report["misrouted_items"] == 0 and report["archived_but_poison_expected"] == 0
        and report["poisoned_with_items"] == 0
        and outcome.drain_error is None and not outcome.injector_errors
    )
    return report


@dataclass
class _Outcome:
    summary: WindowSummary | None
    listed_keys: set[str]
    corrupted: set[str]
    host_poisoned: set[str]
    faults: dict[str, int]
    injector_errors: list[str]
    drain_error: str | None
    runner_stats: dict[str, int]
    queues: dict[str, int]
    seconds: float
    poison_messages: int  # in every poison queue
    poison_repeats: int  # messages beyond the first for one record: at-least-once delivery of poison
    azurite_restart_seconds: float | None


def _drive(
    options: SoakOptions, traffic: TrafficDay, state_dir: Path, *, azurite: Azurite, telemessage: LocalTeleMessage,
    graph: FaultCountingGraph,
) -> _Outcome:
    container = get_container()
    container.mapping_blob.upload(traffic.mapping_csv().encode("utf-8"))
    corrupted_targets = _corruption_targets(traffic) if options.faults else set()
    corrupter = CorruptingRecordStore(
        container.records, _claim_check_overwriter(container.settings, azurite.connection_string), corrupted_targets,
    )
    # The listing function stores claim checks through the container: it gets the wrapper.
    container.records = corrupter
    crashes = WorkerCrashes(options.crash_fraction if options.faults else 0.0)
    drain_error = None
    functions = registered_functions(function_app.app)
    runner_settings: dict[str, Any] = {
        "connection_settings": {"AzureWebJobsStorage": container.settings.storage_connection},
        "settings": dict(os.environ),
        "workers": options.workers,
    }
    started = time.monotonic()
    with ExitStack() as stack:
        runners = [
            stack.enter_context(HostRunner(
                [f for f in functions if f.get_function_name() != LISTING_FUNCTION],
                host_json=REPO_ROOT / "host.json",
                crash_after_function=crashes,
                visibility_timeout_on_crash=CRASH_REDELIVERY_SECONDS,
                **runner_settings,
            ))
            for _ in range(options.instances)
        ]
        listing_runner = stack.enter_context(HostRunner(
            [f for f in functions if f.get_function_name() == LISTING_FUNCTION],
            host_json=_one_page_at_a_time(REPO_ROOT / "host.json", state_dir),
            **runner_settings,
        ))
        injector = FaultInjector(
            succeeded=lambda: sum(runner.stats["succeeded"] for runner in runners), graph=graph,
            telemessage=telemessage, azurite=azurite, mailboxes=traffic.directory(), records=len(traffic.records),
            crashes=crashes, corrupter=corrupter, restart_at=options.restart_at_progress,
        ) if options.faults else None
        runners[0].run_timer(TIMER_FUNCTION)
        try:
            with injector.running() if injector else nullcontext():
                drain_scaled_out(runners, listing_runner, timeout=options.drain_timeout)
        except Exception as error:  # reported, not hidden: what broke is the finding
            drain_error = f"{type(error).__name__}: {error}"
            log.exception("soak: draining the queues failed")
        seconds = time.monotonic() - started
        runner_stats = dict(sum((runner.stats for runner in [*runners, listing_runner]), Counter()))
    queues = container.queue_depths()
    watermark, _ = container.watermarks.read()
    summary = None
    listed_keys: set[str] = set()
    if watermark is not None and watermark.last_window_id:
        summary = with_rows(container.ledger, window_summary(container.ledger, watermark.last_window_id))
        for page in container.ledger.pages(watermark.last_window_id):
            listed_keys.update(page.record_keys)
    poison_entries = container.poison_queues().list()
    host_poisoned = {
        entry.message.record_key for entry in poison_entries
        if entry.message.reason.value == "retries_exhausted" and entry.message.record_key
    }
    poison_per_record = Counter(entry.message.record_key for entry in poison_entries if entry.message.record_key)

    return _Outcome(
        summary=summary, listed_keys=listed_keys, corrupted=set(corrupter.corrupted),
        host_poisoned=host_poisoned, faults=injector.counts() if injector else {},
        injector_errors=injector.errors if injector else [], drain_error=drain_error, runner_stats=runner_stats,
        queues=queues, seconds=seconds, poison_messages=len(poison_entries),
        poison_repeats=sum(count - 1 for count in poison_per_record.values()),
        azurite_restart_seconds=injector.azurite_restart_seconds if injector and injector.azurite_restarts else None,
    )


def _one_page_at_a_time(host_json: Path, state_dir: Path) -> Path:
    """The repo's host.json, but a listing runner that takes one message (one page) per receive."""
    config = json.loads(host_json.read_text(encoding="utf-8"))
    config["extensions"]["queues"]["batchSize"] = 1
    path = state_dir / "host.listing.json"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def drain_scaled_out(
    runners: list[HostRunner], listing_runner: HostRunner, *, timeout: float, poll_interval: float = 0.05,
) -> None:
    """HostRunner.drain for a scaled-out host: each runner pumps on a thread of its own, as one
    instance of the host, while this thread takes a listing page whenever the items backlog is
    under ITEMS_BACKLOG_LIMIT. Done when every trigger queue is seen empty twice in a row (a
    message being processed still counts, so work in flight is waited for); the first error of
    any instance is raised."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def pump(runner: HostRunner) -> None:
        try:
            while not stop.is_set():
                if runner.pump_once() == 0:
                    stop.wait(poll_interval)
        except BaseException as error:
            errors.append(error)
            stop.set()

    threads = [
        threading.Thread(target=pump, args=(runner,), name=f"soak-host-instance-{number}", daemon=True)
        for number, runner in enumerate(runners, 1)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    idle_rounds = 0
    try:
        while idle_rounds < 2 and not stop.is_set():
            depths = {**runners[0].queue_depths(), **listing_runner.queue_depths()}
            listed = listing_runner.pump_once() if depths.get(ITEMS_QUEUE, 0) < ITEMS_BACKLOG_LIMIT else 0
            idle_rounds = 0 if listed or any(depths.values()) else idle_rounds + 1
            if time.monotonic() >= deadline:
                raise DrainTimeout(timeout, depths)
            if not listed:
                time.sleep(poll_interval)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]


def _claim_check_overwriter(settings: Any, connection_string: str) -> Callable[[str, bytes], None]:
    """Where the deployment's claim checks live, through clients of the soak's own."""
    if settings.record_store == "blob":
        records = BlobServiceClient.from_connection_string(connection_string).get_container_client(
            settings.records_container)
        return lambda reference, garbage: records.upload_blob(reference, garbage, overwrite=True)
    from azure.data.tables import TableServiceClient, UpdateMode

    from shared.adapters.table_records import record_keys

    table = TableServiceClient.from_connection_string(connection_string).get_table_client(settings.record_table)

    def overwrite(reference: str, garbage: bytes) -> None:
        partition, row = record_keys(reference)
        table.update_entity({"PartitionKey": partition, "RowKey": row, "parts": 1, "raw00": garbage},
                            mode=UpdateMode.MERGE)

    return overwrite


def _corruption_targets(traffic: TrafficDay) -> set[str]:
    """Everyday chatter records that should be imported, chosen by key: about one in 2,000."""
    showcase = set(traffic.labels.values())
    routing = expected_routing(traffic)
    candidates = sorted(
        record_key(r["messageId"]) for r in traffic.records
        if r["messageId"] not in showcase and routing[r["messageId"]]
    )
    return set(candidates[: max(3, len(traffic.records) // 2000)])


def _archived_items(graph: LocalGraph, mailboxes: list[str]) -> Counter[tuple[str, str | None]]:
    """(mailbox, record id) -> items in the local Graph carrying that record id."""
    return Counter(
        (address.lower(), extended_property(message, ID_PROPERTY))
        for address in mailboxes for message in graph.messages(address)
    )


# -- the verdict -------------------------------------------------------------------------------------


def reconcile(
    traffic: TrafficDay,
    summary: WindowSummary | None,
    listed_keys: set[str],
    items: Counter[tuple[str, str | None]],
    *,
    corrupted: set[str],
    host_poisoned: set[str],
    max_item_bytes: int,
) -> dict[str, Any]:
    """Ledger, mailboxes and the traffic generator against each other.

    Lost: a generated record that was never listed, or has no outcome and is in no poison queue,
    or is archived by the ledger but misses its item in a mailbox it belongs in. Duplicates:
    items beyond the first per (mailbox, record). Unexpected poison: a record poisoned for any
    reason but the ones the traffic and the injected corruption call for (or moved to poison by
    the host after exhausted retries: the faults injected are all transient)."""
    routing = expected_routing(traffic)
    outcomes: dict[str, OutcomeEntry] = summary.records if summary is not None else {}
    not_listed = lost_unaccounted = lost_records = lost_pairs = 0
    unexpected_poison: Counter[str] = Counter()
    archived_but_poison_expected = poisoned_with_items = 0
    poisoned_as_expected: Counter[str] = Counter()
    for record in traffic.records:
        message_id = record["messageId"]
        key = record_key(message_id)
        expected_reason = (
            "invalid_item" if key in corrupted
            else "too_big" if over_item_limit(record, max_item_bytes)
            else "no_mapping" if not routing[message_id]
            else None
        )
        if key not in listed_keys:
            not_listed += 1
            continue
        entry = outcomes.get(key)
        if entry is None:
            if key in host_poisoned:
                unexpected_poison["retries_exhausted"] += 1
            else:
                lost_unaccounted += 1
            continue
        if entry.outcome is RecordOutcome.POISONED:
            if entry.reason == expected_reason:
                poisoned_as_expected[entry.reason or "unknown"] += 1
            else:
                unexpected_poison[entry.reason or "unknown"] += 1
            # A poisoned record must have left nothing behind (no half-written item).
            poisoned_with_items += any(items[(mailbox, message_id)] for mailbox in routing[message_id])
            continue
        if expected_reason is not None and key not in corrupted:
            # A corrupted record archived from a copy listed again later is fine; anything else
            # that should have been poisoned but was archived is not.
            archived_but_poison_expected += 1
        missing = [mailbox for mailbox in routing[message_id] if items[(mailbox, message_id)] == 0]
        if missing:
            lost_records += 1
            lost_pairs += len(missing)
    known = {r["messageId"] for r in traffic.records}
    misrouted = sum(
        count for (mailbox, item_id), count in items.items()
        if item_id not in known or mailbox not in routing[item_id]
    )
    window = summary.to_json() if summary is not None else None
    return {
        "generated": len(traffic.records),
        "window": window,
        "not_listed": not_listed,
        "listed_unknown": len(listed_keys - {record_key(m) for m in known}),
        "items_in_mailboxes": sum(items.values()),
        "duplicates": sum(count - 1 for count in items.values() if count > 1),
        "duplicated_pairs": sum(1 for count in items.values() if count > 1),
        "lost": not_listed + lost_unaccounted + lost_records,
        "lost_pairs": lost_pairs,
        "unaccounted": lost_unaccounted,
        "misrouted_items": misrouted,
        "poisoned_as_expected": dict(sorted(poisoned_as_expected.items())),
        "unexpected_poison": sum(unexpected_poison.values()),
        "unexpected_poison_by_reason": dict(sorted(unexpected_poison.items())),
        "archived_but_poison_expected": archived_but_poison_expected,
        "poisoned_with_items": poisoned_with_items,
        "corrupted_archived_from_relisted_copy": sum(
            1 for key in corrupted
            if (entry := outcomes.get(key)) is not None and entry.outcome is not RecordOutcome.POISONED
        ),
    }


# -- the report --------------------------------------------------------------------------------------

_FAULT_LABELS = {
    "graph_429_waited_inline": "Graph 429 on create, Retry-After 1 s (waited inline)",
    "graph_429_handed_back_to_queue": "Graph 429 on create, Retry-After 8 s (back to the queue)",
    "graph_503_before_create": "Graph 503 on create, before it",
    "graph_503_after_create": "Graph 503 on create, after it (item exists)",
    "graph_429_rate_limit": "Graph 429 from the per-mailbox rate limit",
    "graph_429_concurrency": "Graph 429 from the 4-in-flight limit",
    "telemessage_listing_5xx": "TeleMessage 5xx on a listing page",
    "telemessage_listing_dropped": "TeleMessage connection dropped on a listing page",
    "telemessage_attachment_cut": "TeleMessage download cut mid-body (resumed)",
    "telemessage_tokens_expired": "TeleMessage: every token expired",
    "telemessage_401_after_expiry": "TeleMessage 401 on an expired token",
    "worker_crashes": "worker crashed between write and queue delete",
    "azurite_restarts": "Azurite restarted",
    "corrupt_claim_checks": "claim-check blob overwritten with garbage",
}


def print_report(report: dict[str, Any]) -> None:
    verdict = "PASS" if report["passed"] else "FAIL"
    print(f"WhatsApp Archiver soak: {verdict}")
    print(f"  records:              {report['generated']} generated (asked for {report['records_requested']}: "
          f"scale {report['scale']}, seed {report['seed']}), {report['instances']} host "
          f"instance{'s' if report['instances'] != 1 else ''} × {report['workers']} workers")
    print(f"  took:                 {report['seconds']} s ({report['records_per_second']} records/s)")
    if report["faults_enabled"]:
        print("  faults injected (served):")
        for name, count in report["faults"].items():
            note = f" (down {report['azurite_restart_seconds']} s)" if name == "azurite_restarts" and count else ""
            print(f"    {_FAULT_LABELS.get(name, name) + ':':<62}{count}{note}")
    else:
        print("  faults injected:      none (--no-faults)")
    window = report["window"]
    if window is None:
        print("  window:               none was handed off")
    else:
        poisoned = window["poisoned"]
        print(f"  window:               {window['start']} → {window['end']}  [{window['window_id']}]")
        print("  reconciliation (ledger):")
        print(f"    listed:             {window['listed']}")
        print(f"    fan-out:            {window['fanout']} (record × mailbox)")
        print(f"    imported:           {window['imported']}")
        print(f"    skipped duplicates: {window['skipped_duplicates']}")
        print(f"    poisoned:           {sum(poisoned.values())}"
              + (" (" + ", ".join(f"{k}: {v}" for k, v in poisoned.items()) + ")" if poisoned else ""))
        print(f"    pending:            {window['pending']}")
        print(f"    reconciled:         {'yes' if window['reconciled'] else 'NO'}")
    print("  checks (ledger × mailboxes × traffic):")
    print(f"    items in mailboxes: {report['items_in_mailboxes']}")
    print(f"    duplicates:         {report['duplicates']} (in {report['duplicated_pairs']} record × mailbox pairs)")
    print(f"    records lost:       {report['lost']} (not listed {report['not_listed']}, "
          f"unaccounted {report['unaccounted']}, missing items {report['lost_pairs']} pairs)")
    print(f"    unexpected poison:  {report['unexpected_poison']} {report['unexpected_poison_by_reason'] or ''}")
    print(f"    misrouted items:    {report['misrouted_items']}")
    print(f"    archived, though they should have been poisoned: {report['archived_but_poison_expected']}")
    print(f"    poisoned, yet with an item in a mailbox:         {report['poisoned_with_items']}")
    if report["corrupted_archived_from_relisted_copy"]:
        print(f"    corrupted but archived from a re-listed copy: {report['corrupted_archived_from_relisted_copy']}")
    print("  queues after:         " + ", ".join(f"{k} {v}" for k, v in report["queues"].items()))
    print(f"  poison messages:      {report['poison_messages']}"
          + (f" ({report['poison_messages_repeated']} repeat a record already poisoned: a redelivery after a crash)"
             if report["poison_messages_repeated"] else ""))
    if report["drain_error"]:
        print(f"  draining FAILED:      {report['drain_error']}")
    for error in report["fault_injector_errors"]:
        print(f"  fault injector FAILED: {error}")


def _log_to(path: Path) -> None:
    """The functions' logs (ids and counts only) go to a file, so the report stays readable."""
    logging.basicConfig(
        filename=path, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True,
    )
    # The storage SDK logs every HTTP request at INFO; its warnings are enough here.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Push a day of records through the local stack with faults injected; "
                    "fail on any duplicate or lost record.",
    )
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS, help="about this many (default %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="traffic generator seed (default %(default)s)")
    parser.add_argument("--instances", type=int, default=1,
                        help="host instances pumping the queues side by side (default %(default)s)")
    parser.add_argument("--workers", type=int, default=8, help="worker threads per instance (default %(default)s)")
    parser.add_argument("--no-faults", action="store_true", help="the same load with nothing broken")
    parser.add_argument("--graph-latency", type=float, default=0.0, metavar="SECONDS",
                        help="added to every local Graph request (default %(default)s)")
    parser.add_argument("--state-dir", type=Path, metavar="DIR",
                        help="keep Azurite's data and the log here (wiped first); default: a temporary "
                             "directory for the data, a temporary file for the log")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if min(args.records, args.instances, args.workers) < 1:
        parser.error("--records, --instances and --workers must be at least 1")
    options = SoakOptions(
        records=args.records, seed=args.seed, instances=args.instances, workers=args.workers,
        faults=not args.no_faults,
        graph_latency=args.graph_latency, state_dir=args.state_dir,
    )
    if args.state_dir is not None:
        shutil.rmtree(args.state_dir, ignore_errors=True)
        args.state_dir.mkdir(parents=True)
        log_path = args.state_dir / "soak.log"
    else:
        handle, name = tempfile.mkstemp(prefix="whatsapp-archiver-soak-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    _log_to(log_path)
    report = run_soak(options)
    report["log"] = str(log_path)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
        print(f"  log (ids and counts): {log_path}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
