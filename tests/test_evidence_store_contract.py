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


def test_a_piece_streams_back_whole_and_a_missing_one_says_so(store):
    data = bytes(range(256)) * 300
    name = store.keep("manifest", data)
    assert b"".join(store.stream(name)) == data
    with pytest.raises(RecordMissing):
        b"".join(store.stream("raw/manifest/" + "1" * 64))
    with pytest.raises(EvidenceNameError):
        b"".join(store.stream("raw/manifest/../x"))


def test_names_of_a_kind_are_listed_and_no_others(store):
    kept = sorted(store.keep("manifest", bytes([n])) for n in range(3))
    report = store.keep("admin-report", b"report")
    listed = set(store.names("manifest"))  # other tests may have kept manifests in the same container
    assert set(kept) <= listed and report not in listed
    assert all(name.startswith("raw/manifest/") for name in listed)


class TestTheChainsHead:
    """The chain's head and seals, in memory and in the state container on Azurite alike."""

    @pytest.fixture(params=["memory", "blob"])
    def chain(self, request):
        from shared.adapters.evidence_blobs import BlobEvidenceChain
        from tests.fakes import MemoryEvidenceChain

        if request.param == "memory":
            return MemoryEvidenceChain()
        azurite = request.getfixturevalue("azurite")
        return BlobEvidenceChain(BlobServiceClient.from_connection_string(azurite.connection_string),
                                 "chain-contract")

    def test_the_head_moves_only_from_the_version_read(self, chain):
        from shared.domain.manifest import Link
        from shared.ports import ChainConflict

        first = Link(1, "raw/manifest/" + "a" * 64, "a" * 64)
        second = Link(2, "raw/manifest/" + "b" * 64, "b" * 64)
        assert chain.head() == (None, None)
        chain.advance(first, None)
        with pytest.raises(ChainConflict):
            chain.advance(second, None)  # someone else began the chain
        link, version = chain.head()
        assert link == first
        chain.advance(second, version)
        with pytest.raises(ChainConflict):
            chain.advance(second, version)  # the head moved since that version
        assert chain.head()[0] == second

    def test_each_windows_last_seal_is_kept(self, chain):
        from shared.domain.manifest import Link

        window = "20251121T020000Z-20251122T020000Z.20251122T020000123Z"
        link = Link(1, "raw/manifest/" + "c" * 64, "c" * 64)
        assert chain.sealed_digest(window) is None
        chain.mark_sealed(window, link, "d" * 64)
        assert chain.sealed_digest(window) == "d" * 64
        assert list(chain.sealed_links()) == [(window, link)]
