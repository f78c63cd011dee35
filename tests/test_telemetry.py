"""Telemetry: the contract's metrics and spans are recorded where outcomes are known, and nothing a
demo run exports to Application Insights, or logs, names a person, a number, a mailbox or a text."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import phonenumbers
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shared import telemetry
from shared.domain.errors import TransientError
from shared.domain.records import ArchiveRecord, record_key
from shared.domain.rendering import render
from shared.domain.tasks import ItemTask, ListingTask
from shared.local.traffic.day import TrafficDay, generate_day
from shared.service.importing import ItemImporter
from shared.service.listing import list_slice_page
from shared.service.mapping import MailboxMapper
from shared.service.processing import process_item_message
from shared.service.scheduling import schedule_window
from tests.builders import BASE_TIME, BOB, CUSTOMER, DIRECTORY, MAPPING_CSV, WINDOW_ID, attachment, record
from tests.conftest import REPO_ROOT
from tests.fakes import (
    MemoryLedger,
    MemoryMailboxes,
    MemoryQueue,
    MemoryRecordStore,
    MemorySource,
    MemoryWatermarkStore,
    SetDirectory,
    StaticMapping,
)

ALICE_BOX, BOB_BOX = "alice@contoso.example", "bob@contoso.example"
CAPTURED = datetime.fromtimestamp((BASE_TIME + 5_000) / 1000, UTC)  # the builders' archivedTime


# -- in-memory OpenTelemetry -------------------------------------------------------------------


@dataclass
class Recorded:
    reader: InMemoryMetricReader
    exporter: InMemorySpanExporter

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics if scope.scope.name == telemetry.NAME
            for metric in scope.metrics if metric.name == name
            for point in metric.data.data_points
        ]

    def total(self, name: str) -> float:
        return sum(p.value for p in self.points(name))

    def by(self, name: str, key: str) -> dict[Any, float]:
        totals: dict[Any, float] = {}
        for point in self.points(name):
            totals[point.attributes.get(key)] = totals.get(point.attributes.get(key), 0) + point.value
        return totals

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_providers(meters, tracers)
    try:
        yield Recorded(reader, exporter)
    finally:
        telemetry.use_providers()
        meters.shutdown()
        tracers.shutdown()


def importer(mailboxes=None, source=None, max_bytes: int = 10 * 1024 * 1024) -> ItemImporter:
    mapper = MailboxMapper(SetDirectory(*DIRECTORY), StaticMapping(MAPPING_CSV))
    return ItemImporter(mapper, mailboxes or MemoryMailboxes(), source, max_item_bytes=max_bytes)


def process(body: str, imp: ItemImporter, records: MemoryRecordStore, **kw: Any):
    return process_item_message(
        body, dequeue_count=1, records=records, importer=imp, poison_queue=MemoryQueue("items-poison"),
        ledger=MemoryLedger(), **kw,
    )


def queued(records: MemoryRecordStore, rec: dict[str, Any], window_id: str = WINDOW_ID) -> str:
    ref = records.put(record_key(rec["messageId"]), json.dumps(rec).encode())
    return ItemTask(
        window_id=window_id, record_key=record_key(rec["messageId"]), record_ref=ref, message_id=rec["messageId"],
    ).to_text()


class Throttled(MemoryMailboxes):
    def __init__(self, retry_after: float | None) -> None:
        super().__init__()
        self.retry_after = retry_after

    def write(self, mailbox, item, *, check_existing=True):
        raise TransientError(f"429 on {mailbox}", retry_after=self.retry_after)


# -- metrics and spans where the outcomes are known ---------------------------------------------


def test_an_imported_record_counts_once_with_its_items_by_rule_bytes_and_capture_to_archive_latency(
    recorded, caplog,
):
    records, boxes = MemoryRecordStore(), MemoryMailboxes()
    body = queued(records, record("m1", recipients=[BOB, CUSTOMER]))  # Alice by e-mail, Bob by the CSV
    with caplog.at_level(logging.INFO, logger="shared"):
        result = process(body, importer(boxes), records, clock=lambda: CAPTURED + timedelta(seconds=90))

    assert recorded.by(telemetry.RECORDS_IMPORTED, telemetry.PARTIAL) == {"false": 1}
    assert recorded.by(telemetry.ITEMS_WRITTEN, telemetry.RULE) == {"email": 1, "csv": 1}
    assert recorded.total(telemetry.BYTES_ARCHIVED) == 2 * result.size_bytes > 0
    (latency,) = recorded.points(telemetry.ARCHIVE_LATENCY)
    assert (latency.count, latency.sum) == (1, 90.0)

    (span,) = recorded.spans(telemetry.SPAN_ARCHIVE_RECORD)
    hashes = f"{telemetry.mailbox_hash(ALICE_BOX)},{telemetry.mailbox_hash(BOB_BOX)}"
    assert span.kind is SpanKind.CONSUMER and span.status.status_code is StatusCode.UNSET
    assert {k: v for k, v in span.attributes.items() if k != "archiver.attempt"} == {
        telemetry.WINDOW_ID: WINDOW_ID, telemetry.RECORD_ID: "m1", telemetry.RECORD_KEY: record_key("m1"),
        telemetry.OUTCOME: "imported", telemetry.MAILBOX_HASH: hashes,
    }
    (line,) = [r for r in caplog.records if r.getMessage().endswith("imported in 2 mailbox(es)")]
    assert getattr(line, telemetry.RECORD_ID) == "m1" and getattr(line, telemetry.MAILBOX_HASH) == hashes

    # The same record again: a duplicate everywhere, counted as skipped and nothing else.
    process(body, importer(boxes), records)
    assert recorded.total(telemetry.RECORDS_SKIPPED) == 1
    assert recorded.total(telemetry.RECORDS_IMPORTED) == 1 and recorded.total(telemetry.ITEMS_WRITTEN) == 2
    assert recorded.points(telemetry.ARCHIVE_LATENCY)[0].count == 1
    assert [s.attributes[telemetry.OUTCOME] for s in recorded.spans(telemetry.SPAN_ARCHIVE_RECORD)] == [
        "imported", "skipped_duplicate",
    ]


def test_a_record_whose_media_was_never_captured_counts_as_a_partial_import(recorded):
    records = MemoryRecordStore()
    rec = record("m2", messageType="IMAGE", attachments=[attachment("gone", b"abc", inline=False)])
    process(queued(records, rec), importer(source=MemorySource([], {})), records)
    assert recorded.by(telemetry.RECORDS_IMPORTED, telemetry.PARTIAL) == {"true": 1}


def test_poisoned_records_are_counted_by_reason_and_their_spans_say_why(recorded):
    records = MemoryRecordStore()
    imp = importer(max_bytes=200_000)
    unmapped = record("nobody", sender=CUSTOMER, owner={"phone": "+15550000"}, recipients=[CUSTOMER])
    process(queued(records, unmapped), imp, records)
    process(queued(records, record("huge", textContent="y" * 300_000)), imp, records)
    missing = ItemTask(window_id=WINDOW_ID, record_key=record_key("gone"), record_ref=f"{record_key('gone')}.json",
                       message_id="gone")
    process(missing.to_text(), imp, records)
    process("not an item task", imp, records)

    assert recorded.by(telemetry.RECORDS_POISONED, telemetry.REASON) == {
        "no_mapping": 1, "too_big": 1, "invalid_item": 2,
    }
    assert recorded.total(telemetry.RECORDS_IMPORTED) == 0
    spans = recorded.spans(telemetry.SPAN_ARCHIVE_RECORD)
    assert [(s.attributes[telemetry.OUTCOME], s.attributes[telemetry.REASON]) for s in spans] == [
        ("poisoned", "no_mapping"), ("poisoned", "too_big"), ("poisoned", "invalid_item"),
        ("poisoned", "invalid_item"),
    ]
    assert spans[0].attributes[telemetry.RECORD_ID] == "nobody" and telemetry.MAILBOX_HASH not in spans[0].attributes


def test_a_transient_failure_fails_the_span_with_the_error_type_only_and_counts_no_outcome(recorded):
    records = MemoryRecordStore()
    body = queued(records, record("m3"))
    with pytest.raises(TransientError):
        process(body, importer(Throttled(None)), records)
    assert process(body, importer(Throttled(120)), records, retry_queue=MemoryQueue("items")) is None

    failed, deferred = recorded.spans(telemetry.SPAN_ARCHIVE_RECORD)
    assert failed.status.status_code is StatusCode.ERROR and failed.status.description == "TransientError"
    assert failed.attributes[telemetry.OUTCOME] == "retry" and not failed.events  # no message, no address
    assert deferred.attributes[telemetry.OUTCOME] == "deferred" and deferred.status.status_code is StatusCode.UNSET
    for name in (telemetry.RECORDS_IMPORTED, telemetry.RECORDS_SKIPPED, telemetry.RECORDS_POISONED):
        assert recorded.total(name) == 0


def test_listing_counts_the_records_each_page_hands_off_in_its_window(recorded):
    now = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    captured = int((now - timedelta(hours=3)).timestamp() * 1000)
    source = MemorySource([record(f"l{i}", archivedTime=captured + i) for i in range(5)])
    ledger, listing, items = MemoryLedger(), MemoryQueue("listing"), MemoryQueue("items")
    info = schedule_window(now, watermarks=MemoryWatermarkStore(), listing_queue=listing, ledger=ledger)
    while listing.messages:
        list_slice_page(ListingTask.model_validate(listing.messages.pop(0)), source=source,
                        records=MemoryRecordStore(), items_queue=items, listing_queue=listing, ledger=ledger,
                        page_size=2)

    assert recorded.by(telemetry.RECORDS_LISTED, telemetry.WINDOW_ID) == {info.window_id: 5}
    pages = recorded.spans(telemetry.SPAN_LIST_PAGE)
    assert {s.attributes[telemetry.WINDOW_ID] for s in pages} == {info.window_id}
    assert sum(s.attributes["archiver.records"] for s in pages) == 5
    assert sorted(s.attributes["archiver.records"] for s in pages if s.attributes["archiver.records"]) == [1, 2, 2]


def test_transcripts_count_their_records_when_composed_and_poison_what_cannot_be_rendered(recorded):
    from tests.test_transcripts import DAY_START, Rig, chat_record

    rig = Rig(media={"bad": b"tampered"})
    rig.source_records += [
        chat_record("ok", DAY_START + timedelta(hours=1), messageType="IMAGE",
                    attachments=[attachment("good", b"good bytes")]),
        chat_record("corrupt", DAY_START + timedelta(hours=2), messageType="IMAGE",
                    attachments=[attachment("bad", b"bad bytes", inline=False)]),
    ]
    now = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    rig.run_window(now, compose=False)
    assert recorded.total(telemetry.RECORDS_IMPORTED) == 0  # staged, not archived yet
    with pytest.raises(TransientError):
        rig.drain_transcripts(now + timedelta(minutes=30))
    rig.composer().compose(rig.store.staged_buckets()[0], attempt=3)

    assert recorded.by(telemetry.RECORDS_IMPORTED, telemetry.PARTIAL) == {"false": 1}
    assert recorded.by(telemetry.ITEMS_WRITTEN, telemetry.RULE) == {"email": 1, "csv": 1}
    assert recorded.by(telemetry.RECORDS_POISONED, telemetry.REASON) == {"attachment_corrupt": 1}
    written = [item for box in rig.boxes.items.values() for item in box.values()]
    assert recorded.total(telemetry.BYTES_ARCHIVED) == sum(item.mime_size() for item in written)
    assert recorded.points(telemetry.ARCHIVE_LATENCY)[0].count == 1
    retried, composed = recorded.spans(telemetry.SPAN_COMPOSE_TRANSCRIPT)
    assert retried.status.description == "TransientError" and retried.attributes[telemetry.OUTCOME] == "retry"
    assert composed.attributes[telemetry.OUTCOME] == "composed"
    assert composed.attributes["archiver.records_transcribed"] == 1
    assert composed.attributes["archiver.records_poisoned"] == 1


def test_graph_throttling_responses_are_counted_by_status(recorded):
    from shared.adapters.graph_client import build_graph_client
    from shared.adapters.graph_mailbox import GraphMailbox
    from shared.local.graph_stand_in.server import LocalGraph

    item = render(ArchiveRecord.model_validate(record("throttled")), {})
    with LocalGraph({ALICE_BOX: True}, token="t") as graph:
        graph.fail_next(503, path_contains="/childFolders", method="GET")
        graph.fail_next(429, retry_after=0.1, path_contains="/messages", method="POST")
        mailbox = GraphMailbox(build_graph_client(base_url=graph.base_url, access_token="t"))
        try:
            mailbox.write(ALICE_BOX, item)
        finally:
            mailbox.close()
    assert recorded.by(telemetry.GRAPH_THROTTLED, telemetry.HTTP_STATUS) == {503: 1, 429: 1}


def test_mailbox_hash_is_the_first_16_hex_digits_of_the_sha256_of_the_lower_cased_address():
    expected = hashlib.sha256(b"alice@contoso.example").hexdigest()[:16]
    assert telemetry.mailbox_hash("Alice@Contoso.example") == expected
    assert telemetry.dimensions(mailboxes=["a@x.example", "A@x.example"]) == {
        telemetry.MAILBOX_HASH: telemetry.mailbox_hash("a@x.example"),
    }


def test_only_the_archivers_own_spans_are_recorded_never_those_of_the_graph_sdk():
    exporter = InMemorySpanExporter()
    provider = telemetry.archiver_tracer_provider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    kiota = provider.get_tracer("com.microsoft.com:microsoft-kiota-http-httpx")
    with kiota.start_as_current_span("GET", attributes={"url.full": "https://graph/users/alice@contoso.example"}):
        pass
    with provider.get_tracer(telemetry.NAME).start_as_current_span(telemetry.SPAN_ARCHIVE_RECORD):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == [telemetry.SPAN_ARCHIVE_RECORD]
    provider.shutdown()


def test_keyless_ingestion_uses_the_managed_identity_the_authentication_string_names(monkeypatch):
    import azure.identity

    made: list[dict[str, Any]] = []
    monkeypatch.setattr(azure.identity, "ManagedIdentityCredential", lambda **kw: made.append(kw) or kw)
    setting = telemetry.AUTHENTICATION_STRING_SETTING
    assert telemetry.aad_credential({}) is None
    assert telemetry.aad_credential({setting: "Authorization=AAD;ClientId=1111"}) == {"client_id": "1111"}
    assert telemetry.aad_credential({setting: "authorization=aad", "AZURE_CLIENT_ID": "2222"}) == {"client_id": "2222"}
    assert telemetry.aad_credential({setting: "Authorization=AAD"}) == {}
    assert len(made) == 3


def test_without_a_connection_string_the_app_imports_no_telemetry_sdk():
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLICATIONINSIGHTS_")}
    code = (
        "import sys, function_app\n"
        "from shared import telemetry\n"
        "assert telemetry.configure_from_environment() is False\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry', 'azure.monitor'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, check=True, timeout=60)


# -- the proof: nothing personal leaves the process ----------------------------------------------


MIN_TEXT = 8  # shorter texts ("ok", "Noted.") match ordinary words and would prove nothing


def personal_data(traffic: TrafficDay) -> dict[str, set[str]]:
    """Every phone number (E.164, digits only, national, as captured and as typed in the CSV),
    name, e-mail / mailbox address, message text, caption, location, contact card and file name of
    the generated day, by kind."""
    found: dict[str, set[str]] = {"phone": set(), "name": set(), "address": set(), "text": set()}

    def phone(raw: str | None) -> None:
        if not raw:
            return
        found["phone"].add(raw)
        try:
            number = phonenumbers.parse(raw, "GB")
        except phonenumbers.NumberParseException:
            return
        for style in (phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.NATIONAL,
                      phonenumbers.PhoneNumberFormat.INTERNATIONAL):
            text = phonenumbers.format_number(number, style)
            found["phone"].update({text, re.sub(r"\D", "", text)})

    def address(raw: str | None) -> None:
        if raw:
            found["address"].update({raw.lower(), quote(raw.lower(), safe="")})

    def text(raw: Any) -> None:
        if isinstance(raw, str) and len(raw.strip()) >= MIN_TEXT:
            found["text"].add(raw.strip())

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str):
            if key in ("phone", "phones"):
                phone(value)
            elif key in ("email", "emails"):
                address(value)
            elif key in ("firstName", "lastName", "displayName"):
                found["name"].add(value)
            elif key in ("textContent", "dialogGroupName", "description", "name", "address", "organization",
                         "fileName"):
                text(value)

    for person in traffic.people:
        for raw in (person.phone, person.captured_phone, person.csv_phone):
            phone(raw)
        for raw in (person.email, person.csv_email):
            address(raw)
        found["name"].update(n for n in (person.first_name, person.last_name, person.display_name, person.name) if n)
    for mailbox in traffic.directory():
        address(mailbox)
    for rec in traffic.records:
        walk(rec)
    found["phone"] = {p for p in found["phone"] if len(re.sub(r"\D", "", p)) >= 7}
    return found


def leaks(documents: list[tuple[str, str]], needles: dict[str, set[str]]) -> list[str]:
    """``kind 'needle' in where`` for each personal datum found in the documents."""
    everything = "\n\x00".join(text for _, text in documents)
    lowered = everything.lower()
    found: list[str] = []
    for kind, values in needles.items():
        for needle in sorted(values):
            if kind == "address":
                hit = needle in lowered
            elif kind == "phone":
                digits = needle.isdigit()
                hit = needle in everything and (not digits or re.search(rf"(?<!\d){needle}(?!\d)", everything))
            elif kind == "name":  # whole words: "Chen" is not in "Kitchen"
                hit = needle in everything and re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", everything)
            else:
                hit = needle in everything
            if hit:
                where = next((w for w, t in documents if needle.lower() in t.lower()), "?")
                found.append(f"{kind} {needle!r} in {where}")
    return found


@pytest.mark.integration
def test_a_demo_run_exports_its_telemetry_to_application_insights_without_any_personal_data(tmp_path):
    out = tmp_path / "probe"
    # A subprocess: configure_azure_monitor sets OpenTelemetry's global providers, once per process.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_"))}
    run = subprocess.run(
        [sys.executable, "-m", "tests.telemetry_probe", str(out)], cwd=REPO_ROOT, env=env, capture_output=True,
        text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    envelopes = json.loads((out / "envelopes.json").read_text())
    logs = json.loads((out / "logs.json").read_text())
    reports = json.loads((out / "reports.json").read_text())
    anchors = json.loads((out / "anchors.json").read_text())

    # Only loopback was used (statsbeat, OneSettings, live metrics and IMDS stayed off).
    assert json.loads((out / "connections.json").read_text()) == []

    # Nothing personal, in any field of any envelope or in any log line.
    needles: dict[str, set[str]] = {}
    for anchor in anchors.values():
        for kind, values in personal_data(generate_day(datetime.fromisoformat(anchor))).items():
            needles.setdefault(kind, set()).update(values)
    assert len(needles["phone"]) > 40 and len(needles["name"]) > 20 and len(needles["address"]) > 20
    assert len(needles["text"]) > 60
    documents = [(f"envelope {i} ({e.get('name')})", json.dumps(e, ensure_ascii=False))
                 for i, e in enumerate(envelopes)]
    documents += [(f"log line {i} ({line['logger']})", json.dumps(line, ensure_ascii=False))
                  for i, line in enumerate(logs)]
    found = leaks(documents, needles)
    assert not found, "personal data left the process:\n" + "\n".join(found[:20])

    # ... and the telemetry did arrive, with the numbers the windows' own reports give.
    windows = [reports[k]["window"] for k in ("eml", "graph")]
    assert all(w["reconciled"] for w in windows)
    listed = sum(w["listed"] for w in windows)
    poisoned = sum(sum(w["poisoned"].values()) for w in windows)
    skipped_records = 0  # fresh state: every record is new
    requests = [e["data"]["baseData"] for e in envelopes if e["data"]["baseType"] == "RequestData"]
    archived = [r for r in requests if r["name"] == telemetry.SPAN_ARCHIVE_RECORD]
    assert len(archived) == listed and all(r["properties"].get(telemetry.OUTCOME) for r in archived)
    assert sum(r["properties"][telemetry.OUTCOME] == "imported" for r in archived) == listed - poisoned
    ids = (telemetry.WINDOW_ID, telemetry.RECORD_ID, telemetry.RECORD_KEY)
    assert all(r["properties"].get(key) for r in archived for key in ids)
    known = telemetry.mailbox_hash("amelia.hughes@contoso.example")
    assert any(known in r["properties"].get(telemetry.MAILBOX_HASH, "") for r in archived)
    assert sum(r["name"] == telemetry.SPAN_LIST_PAGE for r in requests) >= sum(w["slice_count"] for w in windows)
    assert not [e for e in envelopes if e["data"]["baseType"] == "RemoteDependencyData"]  # no SDK's spans

    metrics: dict[str, float] = {}
    counts: dict[str, int] = {}
    by_reason: dict[str, float] = {}
    for e in envelopes:
        if e["data"]["baseType"] != "MetricData":
            continue
        for m in e["data"]["baseData"]["metrics"]:
            metrics[m["name"]] = metrics.get(m["name"], 0) + m["value"]
            counts[m["name"]] = counts.get(m["name"], 0) + m.get("count", 1)
            if m["name"] == telemetry.RECORDS_POISONED:
                reason = e["data"]["baseData"]["properties"][telemetry.REASON]
                by_reason[reason] = by_reason.get(reason, 0) + m["value"]
    assert metrics[telemetry.RECORDS_LISTED] == listed
    assert metrics[telemetry.RECORDS_IMPORTED] == listed - poisoned - skipped_records
    assert metrics.get(telemetry.RECORDS_SKIPPED, 0) == skipped_records
    assert metrics[telemetry.ITEMS_WRITTEN] == sum(w["imported"] for w in windows)
    expected_reasons: dict[str, float] = {}
    for w in windows:
        for reason, n in w["poisoned"].items():
            expected_reasons[reason] = expected_reasons.get(reason, 0) + n
    assert by_reason == expected_reasons
    assert counts[telemetry.ARCHIVE_LATENCY] == listed - poisoned and metrics[telemetry.ARCHIVE_LATENCY] > 0
    assert metrics[telemetry.BYTES_ARCHIVED] > 1_000_000
    assert metrics[telemetry.GRAPH_THROTTLED] >= 5  # the 429s and 503s the probe injected

    messages = [e["data"]["baseData"] for e in envelopes if e["data"]["baseType"] == "MessageData"]
    assert all(m["properties"]["logger_name"].startswith("shared.") for m in messages)
    assert any(m["properties"].get(telemetry.RECORD_ID) and "imported in" in m["message"] for m in messages)
