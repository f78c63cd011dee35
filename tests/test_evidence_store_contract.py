"""The evidence store's contract, held by the in-memory fake and the blob adapter on Azurite alike: each
piece kept once under its SHA-256, never overwritten; streamed bytes kept only when they are the ones
announced; names outside ``raw/<kind>/<sha256>`` refused before any request."""

from __future__ import annotations

import hashlib

import pytest
from azure.storage.blob import BlobServiceClient

from shared.adapters import evidence_blobs
from shared.adapters.evidence_blobs import BlobEvidenceStore, EvidenceDigestMismatch
from shared.domain.evidence import EvidenceNameError
from shared.ports import RecordMissing
from tests.fakes import MemoryEvidenceStore


@pytest.fixture(params=["memory", "blob"])
def store(request):
    if request.param == "memory":
        return MemoryEvidenceStore()
    azurite = request.getfixturevalue("azurite")
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    return BlobEvidenceStore(service, "evidence-contract")


def test_a_piece_is_kept_once_under_its_digest_and_read_back_whole(store):
    raw = b'{"messageId": "m-1", "text": "hello"}'
    name = store.keep("telemessage-page", raw, {"window": "w1"})
    assert name == f"raw/telemessage-page/{hashlib.sha256(raw).hexdigest()}"
    assert store.keep("telemessage-page", raw) == name  # again: the same name, nothing rewritten
    assert store.read(name) == raw and store.exists(name)


def test_streamed_bytes_are_kept_only_when_they_are_the_ones_announced(store, monkeypatch):
    monkeypatch.setattr(evidence_blobs, "BLOCK_BYTES", 1024)  # several blocks
    data = bytes(range(256)) * 20
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(EvidenceDigestMismatch):
        store.keep_stream("chat-export", digest, iter([data[:3000], b"tampered"]))
    assert not store.exists(f"raw/chat-export/{digest}")
    name = store.keep_stream("chat-export", digest, iter([data[:3000], data[3000:]]))
    assert store.read(name) == data
    assert store.keep_stream("chat-export", digest, iter([data])) == name


def test_an_empty_piece_is_evidence_too(store):
    name = store.keep_stream("media", hashlib.sha256(b"").hexdigest(), iter([]))
    assert store.read(name) == b""


def test_names_outside_the_grammar_are_refused_and_missing_ones_say_so(store):
    with pytest.raises(EvidenceNameError):
        store.read("raw/telemessage-page/../../state/watermark.json")
    with pytest.raises(EvidenceNameError):
        store.keep("passwords", b"x")
    with pytest.raises(RecordMissing):
        store.read("raw/media/" + "0" * 64)
