"""Contracts of two small stores, each held by the in-memory fake and the blob adapter on Azurite
alike, so a fake can never promise what the adapter does not do:

- the watermark: read before any run is (None, None); it moves only from the version read, and a
  second writer that read the same version is refused;
- webhook bodies: kept once under their name (a redelivery changes nothing), read back whole, a
  missing one says so, names outside their grammar are refused before any request, and the "split"
  marker sits beside a body without touching it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from shared.domain.identifiers import InvalidIdentifier
from shared.domain.window import Watermark
from shared.ports import RecordMissing, WatermarkConflict
from tests.fakes import MemoryWatermarkStore, MemoryWebhookBodyStore

MOMENT = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
BODY = "webhooks/2026-11-23/" + "c" * 64 + ".json"


def _blobs(request) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(request.getfixturevalue("azurite").connection_string)


@pytest.fixture(params=["memory", "blob"])
def watermarks(request):
    if request.param == "memory":
        return MemoryWatermarkStore()
    from shared.adapters.azure_storage import BlobWatermarkStore

    # A container of its own per test: the watermark is one blob, and each test starts before any run.
    return BlobWatermarkStore(_blobs(request), f"watermark-{uuid.uuid4().hex[:16]}")


@pytest.fixture(params=["memory", "blob"])
def bodies(request):
    if request.param == "memory":
        return MemoryWebhookBodyStore()
    from shared.adapters.azure_storage import BlobWebhookBodyStore

    return BlobWebhookBodyStore(_blobs(request), "bodies-contract")


def test_before_any_run_there_is_no_watermark_and_no_version(watermarks):
    assert watermarks.read() == (None, None)


def test_the_watermark_moves_only_from_the_version_read(watermarks):
    first = Watermark(MOMENT, "w1")
    watermarks.advance(first, None)
    with pytest.raises(WatermarkConflict):
        watermarks.advance(Watermark(MOMENT + timedelta(hours=1), "w2"), None)  # a second first run
    read, version = watermarks.read()
    assert read is not None and read.position == MOMENT and read.last_window_id == "w1" and version
    watermarks.advance(Watermark(MOMENT + timedelta(days=1), "w2"), version)
    with pytest.raises(WatermarkConflict):
        watermarks.advance(Watermark(MOMENT + timedelta(days=2), "w3"), version)  # read before the move
    assert watermarks.read()[0].position == MOMENT + timedelta(days=1)


def test_a_body_is_kept_once_and_read_back_whole(bodies):
    raw = b'{"object":"whatsapp_business_account","entry":[]}'
    bodies.put(BODY, raw, {"received": "2026-11-23T02:00:00Z"})
    bodies.put(BODY, raw, {"received": "2026-11-23T02:05:00Z"})  # Meta delivered it again
    assert bodies.get(BODY) == raw


def test_a_missing_body_says_so_and_names_outside_the_grammar_are_refused(bodies):
    with pytest.raises(RecordMissing):
        bodies.get("webhooks/2026-11-23/" + "d" * 64 + ".json")
    for bad in ("webhooks/../state/watermark.json", "webhooks/2026-11-23/x.json", ""):
        with pytest.raises(InvalidIdentifier):
            bodies.get(bad)
        with pytest.raises(InvalidIdentifier):
            bodies.put(bad, b"{}", {})


def test_the_split_mark_sits_beside_the_body_and_leaves_it_as_it_arrived(bodies):
    raw = b'{"entry":[1]}'
    bodies.put(BODY, raw, {})
    assert not bodies.split_done(BODY)
    bodies.mark_split(BODY)
    assert bodies.split_done(BODY) and bodies.get(BODY) == raw
