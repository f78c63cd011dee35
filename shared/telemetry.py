"""Telemetry: OpenTelemetry traces, metrics and log dimensions, exported to Application Insights.

Nothing is exported unless ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set: the instruments below
use the OpenTelemetry API, which is a no-op until an SDK is configured, and ``opentelemetry`` itself
is imported only on first use (``azure.monitor.opentelemetry`` only by
``configure_from_environment``, when the setting is there), so the local demo, the tests and the
cold start pay nothing for it.

No personal data. Spans, metrics and log dimensions carry ids (the TeleMessage messageId, the
record key, the window id), outcomes, reasons, counts, sizes and times; a mailbox only as
``mailbox_hash`` (callers pass the address, this module hashes it). Phone numbers, names,
addresses and message text never go in. Spans of other libraries are never recorded: the Graph
SDK (kiota) traces every request with its URL, ``/users/{address}/...``, and Graph's error
messages can quote an address, so the tracer provider configured here hands every tracer but
ours a no-op tracer, and every auto-instrumentation of the distro (azure_sdk, httpx, requests,
urllib, urllib3, ...) stays off. tests/test_telemetry.py proves it on what a demo run exports.

The names below are a contract: KQL queries and docs/telemetry.md are written against them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.trace import Span, TracerProvider

log = logging.getLogger(__name__)

# Meter and tracer name.
NAME = "whatsapp_archiver"

CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_STRING_SETTING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
# Only this package's loggers are exported (the Azure SDKs log request URLs).
EXPORTED_LOGGER = "shared"

# Metric instruments.
RECORDS_LISTED = "archiver.records.listed"
RECORDS_IMPORTED = "archiver.records.imported"
RECORDS_SKIPPED = "archiver.records.skipped"
RECORDS_POISONED = "archiver.records.poisoned"
ITEMS_WRITTEN = "archiver.items.written"
BYTES_ARCHIVED = "archiver.bytes.archived"
GRAPH_THROTTLED = "archiver.graph.throttled"
ARCHIVE_LATENCY = "archiver.archive.latency"
WEBHOOK_DELIVERIES = "archiver.webhook.deliveries"

# Span names.
SPAN_ARCHIVE_RECORD = "archive_record"
SPAN_LIST_PAGE = "list_page"
SPAN_COMPOSE_TRANSCRIPT = "compose_transcript"

# Attribute keys (span attributes, metric attributes, log ``extra=`` dimensions).
WINDOW_ID = "archiver.window_id"
RECORD_ID = "archiver.record_id"
RECORD_KEY = "archiver.record_key"
OUTCOME = "archiver.outcome"
REASON = "archiver.reason"
MAILBOX_HASH = "archiver.mailbox_hash"
PARTIAL = "archiver.partial"
RULE = "archiver.rule"
HTTP_STATUS = "http.response.status_code"

# Every auto-instrumentation azure-monitor-opentelemetry 1.8.11 would switch on. Off: their spans
# carry request URLs (Graph's name the mailbox; blob URLs name records) and add nothing our own
# spans do not say.
_INSTRUMENTATIONS = (
    "azure_sdk", "django", "fastapi", "flask", "httpx", "httpx2", "psycopg2", "requests", "urllib", "urllib3",
)


def mailbox_hash(address: str) -> str:
    """A mailbox as telemetry names it: the first 16 hex digits of the SHA-256 of the lower-cased
    address. An administrator computes it for a known mailbox to find its records."""
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()[:16]


def dimensions(
    *,
    window_id: str | None = None,
    record_id: str | None = None,
    record_key: str | None = None,
    outcome: object = None,
    reason: object = None,
    mailboxes: Iterable[str] | None = None,
    **other: object,
) -> dict[str, Any]:
    """The contract's attributes for a span or a log line's ``extra=``; None values left out.
    ``mailboxes`` are addresses: only their hashes come out (comma-joined)."""
    values: dict[str, Any] = {
        WINDOW_ID: window_id, RECORD_ID: record_id, RECORD_KEY: record_key,
        OUTCOME: _text(outcome), REASON: _text(reason),
    }
    if mailboxes is not None:
        hashes = list(dict.fromkeys(mailbox_hash(m) for m in mailboxes))
        values[MAILBOX_HASH] = ",".join(hashes) if hashes else None
    for key, value in other.items():
        values[f"archiver.{key}"] = value
    return {key: value for key, value in values.items() if value is not None}


def _text(value: object) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


# ---------------------------------------------------------------------------------------------
# Instruments, created on first use from the configured (or injected) providers.


class _Instruments:
    def __init__(self, meter_provider: MeterProvider | None) -> None:
        from opentelemetry import metrics

        meter = (meter_provider or metrics.get_meter_provider()).get_meter(NAME)
        self.listed = meter.create_counter(
            RECORDS_LISTED, unit="{record}", description="records handed off by listing")
        self.imported = meter.create_counter(
            RECORDS_IMPORTED, unit="{record}", description="records imported into at least one mailbox")
        self.skipped = meter.create_counter(
            RECORDS_SKIPPED, unit="{record}", description="records skipped as duplicates in every mailbox")
        self.poisoned = meter.create_counter(
            RECORDS_POISONED, unit="{record}", description="records poisoned, by reason")
        self.written = meter.create_counter(
            ITEMS_WRITTEN, unit="{item}", description="record x mailbox pairs written, by mapping rule")
        self.bytes = meter.create_counter(
            BYTES_ARCHIVED, unit="By", description="rendered item bytes written (size x mailboxes)")
        self.throttled = meter.create_counter(
            GRAPH_THROTTLED, unit="{response}", description="Graph responses 429, 503 and 504")
        self.webhook = meter.create_counter(
            WEBHOOK_DELIVERIES, unit="{request}",
            description="webhook requests by outcome: accepted, or why refused (signature, size, configuration)")
        self.latency = meter.create_histogram(
            ARCHIVE_LATENCY, unit="s", description="capture time of a record to the moment it was archived")


_lock = threading.Lock()
_meter_provider: MeterProvider | None = None
_tracer_provider: TracerProvider | None = None
_instruments: _Instruments | None = None
_tracer: Any = None
_configured: bool | None = None  # once configure_from_environment has tried: did it work


def use_providers(meter_provider: MeterProvider | None = None, tracer_provider: TracerProvider | None = None) -> None:
    """Record into these providers instead of the global ones (tests); None: the global ones."""
    global _meter_provider, _tracer_provider, _instruments, _tracer
    with _lock:
        _meter_provider, _tracer_provider = meter_provider, tracer_provider
        _instruments, _tracer = None, None


def _get_instruments() -> _Instruments:
    global _instruments
    instruments = _instruments
    if instruments is None:
        with _lock:
            if _instruments is None:
                _instruments = _Instruments(_meter_provider)
            instruments = _instruments
    return instruments


def _get_tracer() -> Any:
    global _tracer
    tracer = _tracer
    if tracer is None:
        from opentelemetry import trace

        with _lock:
            if _tracer is None:
                _tracer = (_tracer_provider or trace.get_tracer_provider()).get_tracer(NAME)
            tracer = _tracer
    return tracer


# ---------------------------------------------------------------------------------------------
# What the service layer records.


def count_listed(records: int, *, window_id: str) -> None:
    if records:
        _get_instruments().listed.add(records, {WINDOW_ID: window_id})


def account_record(
    outcome: object,
    *,
    reason: object = None,
    partial: bool = False,
    written_rules: Iterable[object] = (),
    size_bytes: int = 0,
    captured_at: datetime | None = None,
    archived_at: datetime | None = None,
) -> None:
    """One record's outcome: imported (with the rules of the mailboxes it was written to, its
    rendered size and its capture time), skipped as a duplicate, or poisoned with a reason.
    Other outcomes (awaiting its transcript) count when they become one of these."""
    instruments = _get_instruments()
    state = _text(outcome)
    if state == "imported":
        instruments.imported.add(1, {PARTIAL: "true" if partial else "false"})
        rules = [_text(rule) or "unknown" for rule in written_rules]
        for rule in rules:
            instruments.written.add(1, {RULE: rule})
        if size_bytes and rules:
            instruments.bytes.add(size_bytes * len(rules))
        if captured_at is not None and archived_at is not None:
            instruments.latency.record(max(0.0, (archived_at - captured_at).total_seconds()))
    elif state == "skipped_duplicate":
        instruments.skipped.add(1)
    elif state == "poisoned":
        instruments.poisoned.add(1, {REASON: _text(reason) or "unknown"})


def count_bytes(size_bytes: int) -> None:
    if size_bytes > 0:
        _get_instruments().bytes.add(size_bytes)


def count_webhook(outcome: str) -> None:
    _get_instruments().webhook.add(1, {OUTCOME: outcome})


def count_graph_throttled(status: int) -> None:
    _get_instruments().throttled.add(1, {HTTP_STATUS: int(status)})


class SpanHandle:
    """The current span of a ``span(...)`` block; ``set`` takes the same arguments as ``dimensions``."""

    def __init__(self, span: Span) -> None:
        self._span = span

    def set(self, **values: Any) -> None:
        attributes = dimensions(**values)
        if attributes:
            self._span.set_attributes(attributes)


@contextmanager
def span(name: str, **values: Any) -> Iterator[SpanHandle]:
    """A span of ours (kind CONSUMER: in Application Insights a request named ``name``).

    An exception is recorded as an error status with the exception's type only: its message can
    quote what it failed on (the Azure and Graph SDKs put URLs and addresses in theirs)."""
    from opentelemetry.trace import SpanKind, Status, StatusCode

    with _get_tracer().start_as_current_span(
        name, kind=SpanKind.CONSUMER, attributes=dimensions(**values),
        record_exception=False, set_status_on_exception=False,
    ) as current:
        try:
            yield SpanHandle(current)
        except BaseException as error:
            current.set_status(Status(StatusCode.ERROR, type(error).__name__))
            current.set_attribute("error.type", type(error).__name__)
            raise


# ---------------------------------------------------------------------------------------------
# Export to Application Insights.


def configure_from_environment(environ: Mapping[str, str] | None = None, **options: Any) -> bool:
    """Export to Application Insights when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set; once
    per process (later calls return at once). Returns whether telemetry is exported.

    ``options`` go to ``configure_azure_monitor`` and the trace exporter (tests pass
    ``disable_offline_storage=True``). A failure here is logged, never raised: the functions must
    load without their telemetry rather than not at all."""
    global _configured
    env = os.environ if environ is None else environ
    connection = (env.get(CONNECTION_STRING_SETTING) or "").strip()
    if not connection:
        return False
    with _lock:
        if _configured is None:
            try:
                _configure(connection, env, options)
                _configured = True
            except Exception as error:  # telemetry must never stop the functions loading
                log.warning("telemetry: Application Insights export not configured (%s)", type(error).__name__)
                _configured = False
        return _configured


def _configure(connection: str, env: Mapping[str, str], options: dict[str, Any]) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor

    common: dict[str, Any] = {"connection_string": connection, **options}
    credential = aad_credential(env)
    if credential is not None:
        common["credential"] = credential
    tracing = (os.environ.get("OTEL_TRACES_EXPORTER") or "").strip().lower() != "none"
    # The distro's own tracing would record every library's spans (kiota's carry Graph URLs, which
    # name mailboxes); it is switched off for its call and ours is set up below instead. (1.8.11
    # ignores a disable_tracing argument: OTEL_TRACES_EXPORTER=none is its switch.)
    saved = os.environ.get("OTEL_TRACES_EXPORTER")
    os.environ["OTEL_TRACES_EXPORTER"] = "none"
    try:
        configure_azure_monitor(
            **common,
            logger_name=EXPORTED_LOGGER,
            enable_live_metrics=False,  # live metrics streams sample documents of every span and log
            instrumentation_options={name: {"enabled": False} for name in _INSTRUMENTATIONS},
        )
    finally:
        if saved is None:
            os.environ.pop("OTEL_TRACES_EXPORTER", None)
        else:
            os.environ["OTEL_TRACES_EXPORTER"] = saved
    if tracing:
        _configure_tracing(common)


def _configure_tracing(exporter_options: dict[str, Any]) -> None:
    from azure.monitor.opentelemetry.exporter import AzureMonitorTraceExporter
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = archiver_tracer_provider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(AzureMonitorTraceExporter(**exporter_options)))
    trace.set_tracer_provider(provider)


def archiver_tracer_provider(**kwargs: Any) -> SdkTracerProvider:
    """An SDK tracer provider that records the archiver's spans only: any other instrumentation
    scope (kiota, msgraph, azure-core) gets a no-op tracer, so its spans are never even built.
    The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: every span)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    class ArchiverTracerProvider(SdkTracerProvider):
        def get_tracer(self, instrumenting_module_name: str, *args: Any, **kw: Any) -> Any:
            if instrumenting_module_name != NAME:
                return trace.NoOpTracer()
            return super().get_tracer(instrumenting_module_name, *args, **kw)

    return ArchiverTracerProvider(**kwargs)


def aad_credential(env: Mapping[str, str]) -> Any:
    """A managed identity credential for keyless ingestion when
    ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` is ``Authorization=AAD`` (user-assigned: its
    ``ClientId=...``, else ``AZURE_CLIENT_ID``); None otherwise (the connection string's key)."""
    pairs: dict[str, str] = {}
    for part in (env.get(AUTHENTICATION_STRING_SETTING) or "").split(";"):
        key, _, value = part.partition("=")
        if key.strip():
            pairs[key.strip().lower()] = value.strip()
    if pairs.get("authorization", "").upper() != "AAD":
        return None
    from azure.identity import ManagedIdentityCredential

    client_id = pairs.get("clientid") or (env.get("AZURE_CLIENT_ID") or "").strip() or None
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
