"""Attachment bytes are verified before anything is written, and large ones never sit in memory."""

import hashlib
import tracemalloc

import pytest

from shared.domain.errors import PermanentError, PoisonReason, TransientError
from shared.domain.records import ArchiveRecord, Attachment
from shared.domain.rendered import FilePayload
from shared.domain.rendering import render
from shared.service.media import MediaSpool
from tests.builders import attachment, record
from tests.fakes import MemorySource

MB = 1024 * 1024


class ChunkedSource:
    """Serves a large deterministic attachment in 64 KiB chunks without ever building it whole."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.chunk = bytes(range(256)) * 256

    def digest(self) -> str:
        h = hashlib.sha256()
        for part in self._chunks():
            h.update(part)
        return h.hexdigest()

    def _chunks(self):
        left = self.size
        while left:
            part = self.chunk[: min(left, len(self.chunk))]
            left -= len(part)
            yield part

    def open_attachment(self, attachment_id):
        return self._chunks()


def big_attachment(source: ChunkedSource) -> Attachment:
    return Attachment.model_validate({
        "attachmentId": "big", "fileName": "big.mp4", "contentType": "video/mp4",
        "size": source.size, "sha256": source.digest(),
    })


def test_large_download_is_spooled_to_disk_verified_and_removed_afterwards():
    source = ChunkedSource(30 * MB)
    meta = big_attachment(source)
    tracemalloc.start()
    with MediaSpool(source, max_bytes=100 * MB) as spool:
        payload = spool.payload(meta)
        _, peak = tracemalloc.get_traced_memory()
        assert isinstance(payload, FilePayload) and payload.size == 30 * MB
        with payload.open() as reader:
            assert hashlib.sha256(reader.read()).hexdigest() == meta.sha256
        path = payload.path
    tracemalloc.stop()
    assert peak < 4 * MB  # the download streamed through; it was never held whole
    assert not path.exists()


def test_mismatching_download_is_transient_at_first_and_corrupt_when_it_persists():
    source = MemorySource([], {"a": b"damaged in transit"})
    meta = Attachment.model_validate(attachment("a", b"the real bytes", inline=False))
    with MediaSpool(source, max_bytes=MB, attempt=1) as spool, pytest.raises(TransientError):
        spool.payload(meta)
    with MediaSpool(source, max_bytes=MB, attempt=3) as spool, pytest.raises(PermanentError) as error:
        spool.payload(meta)
    assert error.value.reason is PoisonReason.ATTACHMENT_CORRUPT


def test_download_larger_than_the_item_limit_stops_early_as_too_big():
    source = ChunkedSource(5 * MB)
    with MediaSpool(source, max_bytes=MB) as spool, pytest.raises(PermanentError) as error:
        spool.payload(big_attachment(source))
    assert error.value.reason is PoisonReason.TOO_BIG


def test_computed_mime_size_matches_the_built_message():
    data = bytes(range(256)) * 4000
    rec = ArchiveRecord.model_validate(record(messageType="DOCUMENT", attachments=[attachment("d", data)],
                                              textContent="ünïcödé " * 50))
    item = render(rec, {"d": data})
    actual = len(item.to_mime_bytes())
    assert actual <= item.mime_size() <= actual + 1024
