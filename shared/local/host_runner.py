"""A small stand-in for the Azure Functions host: drives a FunctionApp's registered functions locally.

The real host cannot run on these machines, so end-to-end runs and fault tests use this runner over
Azurite. It reads the bindings from the app (`app.get_functions()`) and gives queue triggers the
semantics of the host's storage-queue extension (Microsoft.Azure.WebJobs.Extensions.Storage.Queues v5,
QueueProcessor / QueueListenerFactory / QueueServiceClientProvider):

- host.json `extensions.queues`: `messageEncoding` (base64 | none), `maxDequeueCount`, `visibilityTimeout`,
  `batchSize`;
- success: output queue bindings are written, then the trigger message is deleted;
- failure: at dequeue count >= maxDequeueCount the raw message goes to `<queue>-poison` and is deleted,
  otherwise it is released with `visibilityTimeout`;
- a message received with dequeue count > maxDequeueCount (after crashes) goes to poison uninvoked;
- a message that is not valid base64 under `messageEncoding: base64` goes to poison on its first receive,
  uninvoked (the extension's MessageDecodingFailed handler does exactly this);
- queues ending in `-poison`, or whose poison name would be too long, have no poison queue: a failing
  message is left invisible, as the host does.

Deliberately not emulated: polling back-off and newBatchThreshold (`pump_once`/`drain` are explicit),
visibility renewal for functions running longer than `visibility_timeout_on_crash`, HTTP auth levels,
timer schedules (`run_timer` is explicit) and singleton locks, and bindings other than queue output.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import concurrent.futures
import datetime as dt
import inspect
import json
import logging
import os
import re
import threading
import time
import urllib.parse
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import azure.functions as func
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError, ServiceRequestError
from azure.functions.queue import QueueMessage as _FullQueueMessage
from azure.functions.timer import TimerRequest as _FullTimerRequest
from azure.storage.queue import LinearRetry, QueueClient, QueueServiceClient, StorageErrorCode

__all__ = [
    "CrashHook",
    "DrainTimeout",
    "HostRunner",
    "HostRunnerError",
    "QueueOptions",
    "parse_timespan",
]

logger = logging.getLogger(__name__)

DEFAULT_CONNECTION = "AzureWebJobsStorage"
POISON_SUFFIX = "-poison"
_MAX_BATCH = 32  # Azure Storage returns at most 32 messages per receive
_QUEUE_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_SETTING_REF = re.compile(r"%([^%]+)%")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$")
_ROUTE_PARAM = re.compile(r"\{(\*{0,2})([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\?)?\}")
_SUPPORTED_BINDINGS = {"queueTrigger", "timerTrigger", "httpTrigger", "blobTrigger", "queue", "http"}

CrashHook = Callable[[str, func.QueueMessage], bool]
"""(function name, message) -> True to simulate the worker dying after the function ran, before the delete."""


class HostRunnerError(RuntimeError):
    pass


class DrainTimeout(HostRunnerError):
    def __init__(self, timeout: float, depths: Mapping[str, int]) -> None:
        self.depths = dict(depths)
        super().__init__(f"queues not drained within {timeout:.1f}s; approximate depths: {self.depths}")


# -- host.json ------------------------------------------------------------------------------------------


def parse_timespan(text: str) -> dt.timedelta:
    """Parse a .NET TimeSpan as host.json writes it: `[d.]hh:mm:ss[.fffffff]`."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        # .NET would read a bare "30" as 30 *days*: refuse rather than guess.
        raise HostRunnerError(f"not a TimeSpan of the form [d.]hh:mm:ss[.fffffff]: {text!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    return dt.timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0").ljust(7, "0")) // 10,
    )


def _ci_get(mapping: Mapping[str, Any], key: str) -> Any:
    # .NET configuration binding, which reads host.json, ignores key case.
    for k, v in mapping.items():
        if k.lower() == key.lower():
            return v
    return None


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the host's defaults."""

    message_encoding: Literal["base64", "none"] = "base64"
    max_dequeue_count: int = 5
    visibility_timeout: dt.timedelta = dt.timedelta(0)
    batch_size: int = 16

    @classmethod
    def from_host_json(cls, path: Path) -> QueueOptions:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        queues = _ci_get(_ci_get(document, "extensions") or {}, "queues") or {}
        defaults = cls()
        encoding = str(_ci_get(queues, "messageEncoding") or defaults.message_encoding).lower()
        if encoding not in ("base64", "none"):
            raise HostRunnerError(
                f"{path}: extensions.queues.messageEncoding must be base64 or none, not {encoding!r}"
            )
        max_dequeue = int(_ci_get(queues, "maxDequeueCount") or defaults.max_dequeue_count)
        if max_dequeue < 1:
            raise HostRunnerError(f"{path}: extensions.queues.maxDequeueCount must be at least 1")
        batch = int(_ci_get(queues, "batchSize") or defaults.batch_size)
        if not 1 <= batch <= _MAX_BATCH:
            raise HostRunnerError(f"{path}: extensions.queues.batchSize must be between 1 and {_MAX_BATCH}")
        visibility = _ci_get(queues, "visibilityTimeout")
        return cls(
            message_encoding="base64" if encoding == "base64" else "none",
            max_dequeue_count=max_dequeue,
            visibility_timeout=parse_timespan(visibility) if visibility else defaults.visibility_timeout,
            batch_size=batch,
        )


# -- what the worker would hand to a function -----------------------------------------------------------


class _Out(func.Out[Any]):
    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class _Context(func.Context):
    def __init__(self, function_name: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._local = threading.local()
        self._local.invocation_id = self._invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return os.getcwd()

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


def _call_user_function(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    result = fn(**kwargs)
    if not inspect.isawaitable(result):
        return result

    async def wait() -> Any:
        return await result

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    # Called from inside an event loop (an async test): asyncio.run would refuse, so use a private one.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, wait()).result()


# -- registered functions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _QueueRef:
    connection: str  # the *name* of the connection setting
    queue: str


@dataclass
class _Spec:
    name: str
    fn: Callable[..., Any]
    trigger_type: str
    trigger_arg: str
    trigger: dict[str, Any]
    queue: _QueueRef | None = None
    schedule: str | None = None
    route: str | None = None
    methods: tuple[str, ...] | None = None
    queue_outputs: list[tuple[str, _QueueRef]] = field(default_factory=list)
    http_output: str | None = None
    out_args: list[str] = field(default_factory=list)
    wants_context: bool = False


# get_functions() may be called only once per app; keep its result so several runners can share an app.
_FUNCTIONS_BY_APP: weakref.WeakKeyDictionary[Any, list[func.Function]] = weakref.WeakKeyDictionary()
_FUNCTIONS_LOCK = threading.Lock()


def registered_functions(app: func.FunctionApp | Sequence[func.Function]) -> list[func.Function]:
    """The app's functions; safe to call more than once (the app's own get_functions() is not)."""
    if not isinstance(app, func.FunctionApp):
        return list(app)
    with _FUNCTIONS_LOCK:
        if app not in _FUNCTIONS_BY_APP:
            _FUNCTIONS_BY_APP[app] = list(app.get_functions())
        return _FUNCTIONS_BY_APP[app]


# -- the runner -----------------------------------------------------------------------------------------


class HostRunner:
    """Drive an app's queue, timer and HTTP functions with host-like semantics.

    `visibility_timeout_on_crash` is the invisibility a received message gets (the host uses 10 minutes):
    it only matters when processing is cut short, e.g. through `crash_after_function`.
    `workers=1` processes each received batch in order on the calling thread (deterministic);
    more workers process a batch in a thread pool, like the host's parallel batch.
    """

    def __init__(
        self,
        app: func.FunctionApp | Sequence[func.Function],
        *,
        host_json: Path,
        connection_settings: Mapping[str, str],
        settings: Mapping[str, str] | None = None,
        visibility_timeout_on_crash: int = 600,
        workers: int = 1,
        crash_after_function: CrashHook | None = None,
        poll_interval: float = 0.05,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if visibility_timeout_on_crash < 1:
            raise HostRunnerError("visibility_timeout_on_crash must be at least 1 second (a storage limit)")
        if workers < 1:
            raise HostRunnerError("workers must be at least 1")
        self.options = QueueOptions.from_host_json(host_json)
        self.host_json = Path(host_json)
        self.route_prefix = self._read_route_prefix(self.host_json)
        self.visibility_timeout_on_crash = visibility_timeout_on_crash
        self.workers = workers
        self.crash_after_function = crash_after_function
        self.poll_interval = poll_interval
        self.stats: collections.Counter[str] = collections.Counter()
        self._connection_settings = dict(connection_settings)
        self._settings = dict(settings or {})
        self._client_kwargs = dict(client_kwargs or {})
        # Storage's default back-off (15 s and up) would stall a local run across an Azurite restart.
        self._client_kwargs.setdefault(
            "retry_policy", LinearRetry(backoff=0.5, retry_total=5, random_jitter_range=0)
        )
        self._services: dict[str, QueueServiceClient] = {}
        self._clients: dict[_QueueRef, QueueClient] = {}
        self._created: set[_QueueRef] = set()
        self._lock = threading.Lock()
        self._create_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._timer_last: dict[str, dt.datetime] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

        self._specs: dict[str, _Spec] = {}
        for function in registered_functions(app):
            spec = self._read_function(function)
            self._specs[spec.name] = spec
        for ref in self._trigger_refs():
            self._ensure_queue(ref)

    # -- context manager ---------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for client in self._clients.values():
            client.close()
        for service in self._services.values():
            service.close()
        self._clients.clear()
        self._services.clear()

    # -- introspection -----------------------------------------------------------------------------------

    @property
    def function_names(self) -> list[str]:
        return list(self._specs)

    @property
    def trigger_queues(self) -> list[str]:
        """Resolved names of all queues some function triggers on."""
        return [ref.queue for ref in self._trigger_refs()]

    def http_function_at(self, path: str) -> tuple[str, tuple[str, ...] | None] | None:
        """The HTTP function whose route (under host.json's route prefix) matches the URL path `path`,
        and the methods it accepts (None: any); None when no route matches. A route with fewer
        parameters wins, as a literal segment outranks a parameter in the host's routing."""
        matches = [
            spec for spec in self._specs.values()
            if spec.route is not None and self._match_route(spec.route, path) is not None
        ]
        if not matches:
            return None
        spec = min(matches, key=lambda s: len(_ROUTE_PARAM.findall(s.route or "")))
        return spec.name, spec.methods

    def timer_schedule(self, function_name: str) -> str:
        schedule = self._spec(function_name, "timerTrigger").schedule
        assert schedule is not None
        return schedule

    def queue_client(self, queue_name: str, *, connection: str = DEFAULT_CONNECTION) -> QueueClient:
        """A plain-text client (no encode/decode policy) for `queue_name`, e.g. to inspect poison queues."""
        return self._client(_QueueRef(connection, queue_name))

    def queue_depths(self) -> dict[str, int]:
        """Approximate message count (visible and invisible) of every trigger queue."""
        return {
            ref.queue: self._client(ref).get_queue_properties().approximate_message_count
            for ref in self._trigger_refs()
        }

    # -- queue messages ----------------------------------------------------------------------------------

    def encode(self, body: str | bytes) -> str:
        """Message text as the host expects it under host.json's messageEncoding."""
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        if self.options.message_encoding == "base64":
            return base64.b64encode(data).decode("ascii")
        return data.decode("utf-8")

    def send_message(
        self, queue_name: str, body: str | bytes, *, connection: str = DEFAULT_CONNECTION
    ) -> str:
        """Enqueue `body` encoded per host.json (what a correct producer does); returns the message id."""
        ref = _QueueRef(connection, queue_name)
        self._ensure_queue(ref)
        return self._client(ref).send_message(self.encode(body)).id

    def pump_once(self) -> int:
        """One receive per queue-triggered function, then dispatch; returns how many messages were handled."""
        handled = 0
        for spec in self._specs.values():
            if spec.queue is None:
                continue
            client = self._client(spec.queue)
            pages = client.receive_messages(
                messages_per_page=self.options.batch_size, visibility_timeout=self.visibility_timeout_on_crash
            ).by_page()
            batch = list(next(pages, []))
            if not batch:
                continue
            handled += len(batch)
            if self.workers == 1 or len(batch) == 1:
                for raw in batch:
                    self._handle_message(spec, client, raw)
            else:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        max_workers=self.workers, thread_name_prefix="host-runner"
                    )
                futures = [self._pool.submit(self._handle_message, spec, client, raw) for raw in batch]
                for future in futures:
                    future.result()
        return handled

    def drain(self, timeout: float = 30.0, idle_rounds: int = 2) -> int:
        """Pump until every trigger queue is empty (seen empty `idle_rounds` times in a row); returns messages
        handled. Invisible messages count as not empty, so a simulated crash is waited out."""
        deadline = time.monotonic() + timeout
        handled = 0
        idle = 0
        while True:
            n = self.pump_once()
            handled += n
            if n == 0:
                depths = self.queue_depths()
                if not any(depths.values()):
                    idle += 1
                    if idle >= idle_rounds:
                        return handled
                else:
                    idle = 0
            else:
                idle = 0
            if time.monotonic() >= deadline:
                raise DrainTimeout(timeout, self.queue_depths())
            if n == 0:
                time.sleep(self.poll_interval)

    # -- timer and HTTP ----------------------------------------------------------------------------------

    def run_timer(self, function_name: str | None = None, past_due: bool = False) -> Any:
        """Invoke a timer-triggered function once, now; exceptions propagate. Returns its return value."""
        spec = self._spec(function_name, "timerTrigger")
        now = dt.datetime.now(dt.UTC)
        last = self._timer_last.get(spec.name)
        status = {} if last is None else {"Last": last.isoformat(), "LastUpdated": last.isoformat()}
        timer = _FullTimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True})
        result, outs = self._invoke(spec, timer)
        self._write_outputs(spec, result, outs)
        self._timer_last[spec.name] = now
        return result

    def deliver_blob_created(self, blob_name: str, function_name: str | None = None) -> Any:
        """What Event Grid and the host's blobs extension do with a BlobCreated event for a blob
        trigger whose source is EventGrid: read the blob named in the trigger's container, invoke the
        function with it. Exceptions propagate (the host answers Event Grid with an error, and Event
        Grid delivers again). Returns the function's return value."""
        import typing

        from azure.functions.blob import InputStream
        from azure.storage.blob import BlobServiceClient

        spec = self._spec(function_name, "blobTrigger")
        container = self._resolve(spec.name, str(spec.trigger["path"])).split("/", 1)[0]
        connection = spec.trigger.get("connection") or DEFAULT_CONNECTION
        conn = self._connection_settings.get(connection)
        if conn is None:
            raise HostRunnerError(f"connection {connection!r} is not in connection_settings")
        blob = BlobServiceClient.from_connection_string(conn, **self._client_kwargs).get_blob_client(
            container, blob_name)
        wanted = typing.get_type_hints(spec.fn).get(spec.trigger_arg)
        if getattr(wanted, "__module__", "").startswith("azurefunctions.extensions.bindings.blob"):
            # An SDK-type binding (azurefunctions-extensions-bindings-blob): the worker hands over a
            # client for the blob, never its bytes.
            stream: Any = blob
        else:
            data = blob.download_blob().readall()
            stream = InputStream(data=data, name=f"{container}/{blob_name}", uri=blob.url, length=len(data))
        result, outs = self._invoke(spec, stream)
        self._write_outputs(spec, result, outs)
        return result

    def call_http(
        self,
        function_name: str,
        method: str = "GET",
        url: str | None = None,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | str = b"",
        route_params: Mapping[str, str] | None = None,
    ) -> func.HttpResponse:
        """Invoke an HTTP-triggered function. As in the host, an exception becomes a 500 response (logged)."""
        spec = self._spec(function_name, "httpTrigger")
        method = method.upper()
        if spec.methods is not None and method not in spec.methods:
            raise HostRunnerError(f"{spec.name} accepts {list(spec.methods)}, not {method}")
        assert spec.route is not None
        if url is None:
            url = f"http://localhost/{self._fill_route(spec.route, route_params or {})}"
        split = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        query.update(params or {})
        if route_params is None:
            route_params = self._match_route(spec.route, split.path) or {}
        request = func.HttpRequest(
            method,
            url,
            headers=dict(headers or {}),
            params=query,
            route_params=dict(route_params),
            body=body.encode("utf-8") if isinstance(body, str) else bytes(body),
        )
        try:
            result, outs = self._invoke(spec, request)
            self._write_outputs(spec, result, outs)
        except Exception:
            logger.exception("HTTP function %s raised", spec.name)
            return func.HttpResponse(status_code=500)
        response = result if spec.http_output == "$return" else outs.get(spec.http_output or "", _Out()).get()
        if isinstance(response, func.HttpResponse):
            return response
        if response is None:
            return func.HttpResponse(status_code=204)
        if isinstance(response, (str, bytes)):
            return func.HttpResponse(response)
        logger.error("HTTP function %s returned %s, not an HttpResponse", spec.name, type(response).__name__)
        return func.HttpResponse(status_code=500)

    # -- reading the app ---------------------------------------------------------------------------------

    def _read_function(self, function: func.Function) -> _Spec:
        name = function.get_function_name()
        bindings = json.loads(function.get_function_json())["bindings"]
        unsupported = sorted({b["type"] for b in bindings} - _SUPPORTED_BINDINGS)
        if unsupported:
            raise HostRunnerError(
                f"function {name} uses bindings {unsupported} that HostRunner does not emulate "
                "(add them in shared/local/host_runner.py)"
            )
        triggers = [b for b in bindings if b["type"].endswith("Trigger")]
        if len(triggers) != 1:
            raise HostRunnerError(f"function {name} must have exactly one trigger, has {len(triggers)}")
        trigger = triggers[0]
        user_function = function.get_user_function()
        spec = _Spec(
            name=name,
            fn=user_function,
            trigger_type=trigger["type"],
            trigger_arg=trigger["name"],
            trigger=trigger,
            wants_context="context" in inspect.signature(user_function).parameters,
        )
        if spec.trigger_type == "queueTrigger":
            spec.queue = self._queue_ref(name, trigger)
        elif spec.trigger_type == "timerTrigger":
            spec.schedule = self._resolve(name, str(trigger["schedule"]))
        elif spec.trigger_type == "blobTrigger":
            if str(trigger.get("source", "")).lower() != "eventgrid":
                # Flex Consumption has no polling blob trigger: an app that relies on one fails here.
                raise HostRunnerError(f"function {name}: a blob trigger must have source EventGrid")
        else:
            spec.route = str(trigger.get("route") or name)
            methods = trigger.get("methods")
            spec.methods = tuple(str(m).upper() for m in methods) if methods else None
        for binding in bindings:
            if binding is trigger or binding.get("direction") != "OUT":
                continue
            arg = binding["name"]
            if arg != "$return":
                spec.out_args.append(arg)
            if binding["type"] == "queue":
                spec.queue_outputs.append((arg, self._queue_ref(name, binding)))
            else:
                spec.http_output = arg
        return spec

    def _queue_ref(self, function_name: str, binding: Mapping[str, Any]) -> _QueueRef:
        # Like the host: resolve %SETTING% references, then lower-case ("coerce here to be nice").
        queue = self._resolve(function_name, str(binding["queueName"])).lower()
        if not _QUEUE_NAME.match(queue):
            raise HostRunnerError(f"function {function_name}: {queue!r} is not a valid queue name")
        connection = binding.get("connection") or DEFAULT_CONNECTION
        if connection not in self._connection_settings:
            raise HostRunnerError(
                f"function {function_name}: connection {connection!r} is not in connection_settings"
            )
        return _QueueRef(connection, queue)

    def _resolve(self, function_name: str, text: str) -> str:
        def lookup(match: re.Match[str]) -> str:
            key = match.group(1)
            value = self._settings.get(key, os.environ.get(key))
            if value is None:
                raise HostRunnerError(f"function {function_name}: app setting {key!r} is not defined")
            return value

        return _SETTING_REF.sub(lookup, text)

    @staticmethod
    def _read_route_prefix(host_json: Path) -> str:
        document = json.loads(host_json.read_text(encoding="utf-8"))
        http = _ci_get(_ci_get(document, "extensions") or {}, "http") or {}
        prefix = _ci_get(http, "routePrefix")
        return "api" if prefix is None else str(prefix).strip("/")

    def _spec(self, function_name: str | None, trigger_type: str) -> _Spec:
        candidates = [s for s in self._specs.values() if s.trigger_type == trigger_type]
        if function_name is None:
            if len(candidates) != 1:
                raise HostRunnerError(
                    f"{len(candidates)} {trigger_type} functions ({[s.name for s in candidates]}): name one"
                )
            return candidates[0]
        spec = self._specs.get(function_name)
        if spec is None or spec.trigger_type != trigger_type:
            raise HostRunnerError(
                f"no {trigger_type} function named {function_name!r}; have {[s.name for s in candidates]}"
            )
        return spec

    def _trigger_refs(self) -> list[_QueueRef]:
        return list(dict.fromkeys(s.queue for s in self._specs.values() if s.queue is not None))

    # -- storage -----------------------------------------------------------------------------------------

    def _client(self, ref: _QueueRef) -> QueueClient:
        with self._lock:
            client = self._clients.get(ref)
            if client is None:
                conn = self._connection_settings.get(ref.connection)
                if conn is None:
                    raise HostRunnerError(f"connection {ref.connection!r} is not in connection_settings")
                service = self._services.get(conn)
                if service is None:
                    service = QueueServiceClient.from_connection_string(conn, **self._client_kwargs)
                    self._services[conn] = service
                # No message policies: the runner sees and writes the raw text, and decodes it itself.
                client = self._clients[ref] = service.get_queue_client(ref.queue)
            return client

    def _ensure_queue(self, ref: _QueueRef) -> None:
        if ref in self._created:
            return
        # HTTP functions are called from many threads at once (shared/local/http_front.py): without
        # the lock each of them would create the same queue again on its first output.
        with self._create_lock:
            if ref in self._created:
                return
            try:
                self._client(ref).create_queue()
            except ResourceExistsError:
                pass
            self._created.add(ref)

    @staticmethod
    def _poison_name(queue: str) -> str | None:
        # As QueueListenerFactory.CreatePoisonQueueReference: none for poison queues or over-long names.
        if queue.endswith(POISON_SUFFIX) or not _QUEUE_NAME.match(queue + POISON_SUFFIX):
            return None
        return queue + POISON_SUFFIX

    # -- one message -------------------------------------------------------------------------------------

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _decode(self, content: str) -> bytes:
        if self.options.message_encoding == "none":
            return content.encode("utf-8")
        # .NET's Convert.FromBase64String skips whitespace and rejects any other non-alphabet character.
        return base64.b64decode("".join(content.split()), validate=True)

    def _handle_message(self, spec: _Spec, client: QueueClient, raw: Any) -> None:
        assert spec.queue is not None
        max_dequeue = self.options.max_dequeue_count
        dequeue_count = int(raw.dequeue_count or 0)
        if dequeue_count > max_dequeue:
            logger.warning(
                "function %s: message %s dequeued %d times (> maxDequeueCount %d) unfinished; poisoning",
                spec.name,
                raw.id,
                dequeue_count,
                max_dequeue,
            )
            self._poison(spec, client, raw)
            return
        try:
            body = self._decode(raw.content or "")
        except (binascii.Error, ValueError):
            logger.warning(
                "function %s: message %s is not base64 (messageEncoding is base64); poisoning uninvoked",
                spec.name,
                raw.id,
            )
            self._count("decode_failed")
            self._poison(spec, client, raw)
            return
        message = _FullQueueMessage(
            id=raw.id,
            body=body,
            dequeue_count=dequeue_count,
            insertion_time=raw.inserted_on,
            expiration_time=raw.expires_on,
            time_next_visible=raw.next_visible_on,
            pop_receipt=raw.pop_receipt,
        )
        self._count("invocations")
        try:
            result, outs = self._invoke(spec, message)
            self._write_outputs(spec, result, outs)
        except Exception as exc:
            self._count("failed")
            # Type only: exception messages and bodies may carry personal data.
            logger.warning(
                "function %s failed on message %s (dequeue count %d of %d): %s",
                spec.name,
                raw.id,
                dequeue_count,
                max_dequeue,
                type(exc).__name__,
            )
            logger.debug("function %s traceback", spec.name, exc_info=exc)
            if self._poison_name(spec.queue.queue) is None:
                return  # the host leaves it invisible rather than spin on it
            if dequeue_count >= max_dequeue:
                self._poison(spec, client, raw)
            else:
                self._release(client, raw)
            return
        if self.crash_after_function is not None and self.crash_after_function(spec.name, message):
            self._count("crashed")
            logger.info("function %s: simulated crash after message %s; not deleting it", spec.name, raw.id)
            return
        self._count("succeeded")
        self._settle(lambda: client.delete_message(raw.id, raw.pop_receipt), raw.id, "delete")

    def _poison(self, spec: _Spec, client: QueueClient, raw: Any) -> None:
        assert spec.queue is not None
        poison = self._poison_name(spec.queue.queue)
        if poison is None:
            return
        ref = _QueueRef(spec.queue.connection, poison)
        self._ensure_queue(ref)
        # Raw text, so the poison copy keeps the original encoding byte for byte.
        self._client(ref).send_message(raw.content)
        self._count("poisoned")
        logger.warning("function %s: message %s moved to %s", spec.name, raw.id, poison)
        self._settle(lambda: client.delete_message(raw.id, raw.pop_receipt), raw.id, "delete")

    def _release(self, client: QueueClient, raw: Any) -> None:
        seconds = int(self.options.visibility_timeout.total_seconds())
        self._settle(
            lambda: client.update_message(raw.id, pop_receipt=raw.pop_receipt, visibility_timeout=seconds),
            raw.id,
            "release",
        )

    @staticmethod
    def _settle(operation: Callable[[], Any], message_id: str, what: str) -> None:
        # As the host: a lost pop receipt (another consumer holds the message) or a gone message is no error.
        # Nor is storage out of reach: the message was received invisibly, so a release or a delete that
        # cannot be made leaves it to come back when its visibility ends — at-least-once, as in Azure.
        try:
            operation()
        except ServiceRequestError as exc:
            logger.warning("%s of message %s not made (%s): it comes back when its visibility ends", what,
                           message_id, type(exc).__name__)
        except ResourceNotFoundError:
            logger.debug("%s of message %s skipped: message or queue gone", what, message_id)
        except HttpResponseError as exc:
            if exc.error_code == StorageErrorCode.POP_RECEIPT_MISMATCH:
                logger.debug("%s of message %s skipped: pop receipt mismatch", what, message_id)
                return
            raise

    # -- invocation and outputs --------------------------------------------------------------------------

    def _invoke(self, spec: _Spec, trigger_value: Any) -> tuple[Any, dict[str, _Out]]:
        outs = {arg: _Out() for arg in spec.out_args}
        kwargs: dict[str, Any] = {spec.trigger_arg: trigger_value, **outs}
        if spec.wants_context:
            kwargs["context"] = _Context(spec.name)
        return _call_user_function(spec.fn, kwargs), outs

    def _write_outputs(self, spec: _Spec, result: Any, outs: Mapping[str, _Out]) -> None:
        for arg, ref in spec.queue_outputs:
            value = result if arg == "$return" else outs[arg].get()
            bodies = list(_output_bodies(value))
            if not bodies:
                continue
            self._ensure_queue(ref)
            client = self._client(ref)
            for data in bodies:
                client.send_message(self.encode(data))

    # -- HTTP routes -------------------------------------------------------------------------------------

    def _fill_route(self, route: str, route_params: Mapping[str, str]) -> str:
        def value(match: re.Match[str]) -> str:
            name, optional = match.group(2), match.group(3)
            if name in route_params:
                return urllib.parse.quote(str(route_params[name]), safe="/" if match.group(1) else "")
            if optional:
                return ""
            raise HostRunnerError(f"route {route!r} needs route_params[{name!r}]")

        path = _ROUTE_PARAM.sub(value, route).rstrip("/")
        return f"{self.route_prefix}/{path}" if self.route_prefix else path

    def _match_route(self, route: str, path: str) -> dict[str, str] | None:
        pattern, pos = "", 0
        for match in _ROUTE_PARAM.finditer(route):
            literal = route[pos : match.start()]
            catch_all, name, optional = match.groups()
            part = f"(?P<{name}>{'.+' if catch_all else '[^/]+'})"
            if optional and literal.endswith("/"):
                pattern += re.escape(literal[:-1]) + f"(?:/{part})?"
            else:
                pattern += re.escape(literal) + (f"{part}?" if optional else part)
            pos = match.end()
        pattern += re.escape(route[pos:])
        prefix = re.escape(self.route_prefix) + "/" if self.route_prefix else ""
        found = re.fullmatch(f"/?{prefix}{pattern}/?", path)
        if found is None:
            return None
        return {k: urllib.parse.unquote(v) for k, v in found.groupdict().items() if v is not None}


def _output_bodies(value: Any) -> Iterable[bytes]:
    """What a queue output binding accepts from Python: str, bytes, QueueMessage, or a list of them."""
    if value is None:
        return
    if isinstance(value, str):
        yield value.encode("utf-8")
    elif isinstance(value, (bytes, bytearray)):
        yield bytes(value)
    elif isinstance(value, func.QueueMessage):
        yield value.get_body()
    elif isinstance(value, Iterable) and not isinstance(value, Mapping):
        for item in value:
            if isinstance(item, (str, bytes, bytearray, func.QueueMessage)):
                yield from _output_bodies(item)
            else:
                raise TypeError(
                    f"queue output list item must be str, bytes or QueueMessage, not {type(item)}"
                )
    else:
        raise TypeError(f"queue output must be str, bytes, QueueMessage or a list of them, not {type(value)}")
