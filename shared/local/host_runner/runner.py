"""``HostRunner``: dispatches an app's queue, timer, blob (Event Grid) and HTTP triggers with the
semantics of the Azure Functions host and its storage-queue extension (docs/local-stack.md)."""

from __future__ import annotations

import base64
import binascii
import collections
import concurrent.futures
import datetime as dt
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import azure.functions as func
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError
from azure.functions.queue import QueueMessage as _FullQueueMessage
from azure.functions.timer import TimerRequest as _FullTimerRequest
from azure.storage.queue import QueueClient, StorageErrorCode

from shared.local.host_runner.errors import DrainTimeout, HostRunnerError
from shared.local.host_runner.functions import (
    DEFAULT_CONNECTION,
    FunctionReader,
    FunctionSpec,
    QueueRef,
    registered_functions,
)
from shared.local.host_runner.host_json import QueueOptions, read_route_prefix
from shared.local.host_runner.routes import fill_route, match_route, parameter_count
from shared.local.host_runner.storage import QueueStorage, poison_name
from shared.local.host_runner.worker import Out, invoke, output_bodies

logger = logging.getLogger(__name__)

CrashHook = Callable[[str, func.QueueMessage], bool]
"""(function name, message) -> True to simulate the worker dying after the function ran, before the delete."""


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
        self.route_prefix = read_route_prefix(self.host_json)
        self.visibility_timeout_on_crash = visibility_timeout_on_crash
        self.workers = workers
        self.crash_after_function = crash_after_function
        self.poll_interval = poll_interval
        self.stats: collections.Counter[str] = collections.Counter()
        self._storage = QueueStorage(connection_settings, client_kwargs or {})
        self._reader = FunctionReader(dict(connection_settings), dict(settings or {}))
        self._stats_lock = threading.Lock()
        self._timer_last: dict[str, dt.datetime] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

        self._specs: dict[str, FunctionSpec] = {}
        for function in registered_functions(app):
            spec = self._reader.read(function)
            self._specs[spec.name] = spec
        for ref in self._trigger_refs():
            self._storage.ensure_queue(ref)

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
        self._storage.close()

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
            if spec.route is not None and match_route(spec.route, path, self.route_prefix) is not None
        ]
        if not matches:
            return None
        spec = min(matches, key=lambda s: parameter_count(s.route or ""))
        return spec.name, spec.methods

    def timer_schedule(self, function_name: str) -> str:
        schedule = self._spec(function_name, "timerTrigger").schedule
        assert schedule is not None
        return schedule

    def queue_client(self, queue_name: str, *, connection: str = DEFAULT_CONNECTION) -> QueueClient:
        """A plain-text client (no encode/decode policy) for `queue_name`, e.g. to inspect poison queues."""
        return self._storage.client(QueueRef(connection, queue_name))

    def queue_depths(self) -> dict[str, int]:
        """Approximate message count (visible and invisible) of every trigger queue."""
        return {
            ref.queue: self._storage.client(ref).get_queue_properties().approximate_message_count or 0
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
        ref = QueueRef(connection, queue_name)
        self._storage.ensure_queue(ref)
        return self._storage.client(ref).send_message(self.encode(body)).id

    def pump_once(self) -> int:
        """One receive per queue-triggered function, then dispatch; returns how many messages were handled."""
        handled = 0
        for spec in self._specs.values():
            if spec.queue is None:
                continue
            client = self._storage.client(spec.queue)
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

    # -- timer, blob and HTTP ----------------------------------------------------------------------------

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
        container = self._reader.resolve(spec.name, str(spec.trigger["path"])).split("/", 1)[0]
        conn = self._storage.connection_string(spec.trigger.get("connection") or DEFAULT_CONNECTION)
        blob = BlobServiceClient.from_connection_string(conn, **self._storage.client_kwargs).get_blob_client(
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
            url = f"http://localhost/{fill_route(spec.route, route_params or {}, self.route_prefix)}"
        split = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        query.update(params or {})
        if route_params is None:
            route_params = match_route(spec.route, split.path, self.route_prefix) or {}
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
        response = result if spec.http_output == "$return" else outs.get(spec.http_output or "", Out()).get()
        if isinstance(response, func.HttpResponse):
            return response
        if response is None:
            return func.HttpResponse(status_code=204)
        if isinstance(response, (str, bytes)):
            return func.HttpResponse(response)
        logger.error("HTTP function %s returned %s, not an HttpResponse", spec.name, type(response).__name__)
        return func.HttpResponse(status_code=500)

    # -- the app's functions -----------------------------------------------------------------------------

    def _spec(self, function_name: str | None, trigger_type: str) -> FunctionSpec:
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

    def _trigger_refs(self) -> list[QueueRef]:
        return list(dict.fromkeys(s.queue for s in self._specs.values() if s.queue is not None))

    # -- one queue message -------------------------------------------------------------------------------

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _decode(self, content: str) -> bytes:
        if self.options.message_encoding == "none":
            return content.encode("utf-8")
        # .NET's Convert.FromBase64String skips whitespace and rejects any other non-alphabet character.
        return base64.b64decode("".join(content.split()), validate=True)

    def _handle_message(self, spec: FunctionSpec, client: QueueClient, raw: Any) -> None:
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
            if poison_name(spec.queue.queue) is None:
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

    def _poison(self, spec: FunctionSpec, client: QueueClient, raw: Any) -> None:
        assert spec.queue is not None
        poison = poison_name(spec.queue.queue)
        if poison is None:
            return
        ref = QueueRef(spec.queue.connection, poison)
        self._storage.ensure_queue(ref)
        # Raw text, so the poison copy keeps the original encoding byte for byte.
        self._storage.client(ref).send_message(raw.content)
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
            if getattr(exc, "error_code", None) == StorageErrorCode.POP_RECEIPT_MISMATCH:
                logger.debug("%s of message %s skipped: pop receipt mismatch", what, message_id)
                return
            raise

    # -- invocation and outputs (bench/scale_pipeline.py times these by name) ----------------------------

    def _invoke(self, spec: FunctionSpec, trigger_value: Any) -> tuple[Any, dict[str, Out]]:
        return invoke(spec, trigger_value)

    def _write_outputs(self, spec: FunctionSpec, result: Any, outs: Mapping[str, Out]) -> None:
        for arg, ref in spec.queue_outputs:
            value = result if arg == "$return" else outs[arg].get()
            bodies = list(output_bodies(value))
            if not bodies:
                continue
            self._storage.ensure_queue(ref)
            client = self._storage.client(ref)
            for data in bodies:
                client.send_message(self.encode(data))
