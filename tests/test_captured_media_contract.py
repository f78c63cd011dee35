"""Contract of the captured-media store (CapturedMediaStore), held by the in-memory fake, the run's
media files (batch imports) and the blob adapter on Azurite alike: media captured is read back byte
for byte with its size and SHA-256; media never captured is None, not an error; a new capture of the
same id replaces the old whole; a capture that breaks off leaves nothing that reads as captured; and
each source's media is its own."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from tests.fakes import MemoryCapturedMedia

MEDIA_ID = "1234567890123456"
LARGE = bytes(range(256)) * 5000  # 1.28 MB: several chunks on the way in and out


@pytest.fixture(params=["memory", "files", "blob"])
def store(request):
    if request.param == "memory":
        yield MemoryCapturedMedia()
    elif request.param == "files":
        from shared.service.webhook_batch_import import CapturedMediaFiles

        with CapturedMediaFiles() as files:
            yield files
    else:
        yield _blob_store(request, "whatsapp-cloud")


def _blob_store(request, source: str):
    from shared.adapters.azure_storage import BlobCapturedMedia

    blobs = request.getfixturevalue("azurite_blobs")
    return BlobCapturedMedia(blobs, "archive-records", source)


def _pieces(data: bytes, size: int = 100_000) -> Iterator[bytes]:
    yield from (data[i: i + size] for i in range(0, len(data), size))


def _read(store, media_id: str) -> bytes | None:
    chunks = store.open_attachment(media_id)
    return None if chunks is None else b"".join(chunks)


def test_media_captured_is_read_back_byte_for_byte_with_its_size_and_digest(store):
    assert store.put(MEDIA_ID, _pieces(LARGE), {"mime_type": "image/jpeg"}) == (
        len(LARGE), hashlib.sha256(LARGE).hexdigest())
    assert store.has(MEDIA_ID)
    assert _read(store, MEDIA_ID) == LARGE


def test_media_never_captured_is_none_not_an_error(store):
    assert not store.has("never-captured")
    assert store.open_attachment("never-captured") is None


def test_empty_media_is_captured_as_empty(store):
    assert store.put(MEDIA_ID, iter([]), {}) == (0, hashlib.sha256(b"").hexdigest())
    assert store.has(MEDIA_ID) and _read(store, MEDIA_ID) == b""


def test_a_new_capture_of_the_same_id_replaces_the_old_whole(store):
    store.put(MEDIA_ID, _pieces(LARGE), {})
    store.put(MEDIA_ID, iter([b"smaller"]), {})
    assert _read(store, MEDIA_ID) == b"smaller"


def test_a_capture_that_breaks_off_leaves_nothing_that_reads_as_captured(store):
    def broken() -> Iterator[bytes]:
        yield LARGE
        raise ConnectionError("the download broke off")

    with pytest.raises(ConnectionError):
        store.put(MEDIA_ID, broken(), {})
    assert not store.has(MEDIA_ID) and store.open_attachment(MEDIA_ID) is None


def test_ids_that_differ_only_in_case_or_punctuation_are_different_media(store):
    store.put("Abc/../1", iter([b"one"]), {})
    store.put("abc/../1", iter([b"two"]), {})
    assert _read(store, "Abc/../1") == b"one" and _read(store, "abc/../1") == b"two"


@pytest.mark.integration
def test_each_sources_media_is_its_own(request):
    cloud, export = _blob_store(request, "whatsapp-cloud"), _blob_store(request, "whatsapp-chat-export")
    cloud.put(MEDIA_ID, iter([b"cloud"]), {})
    assert not export.has(MEDIA_ID) and export.open_attachment(MEDIA_ID) is None
    export.put(MEDIA_ID, iter([b"export"]), {})
    assert _read(cloud, MEDIA_ID) == b"cloud" and _read(export, MEDIA_ID) == b"export"
