"""Contract of the chat-export uploads container (ChatExportUploads), held by the in-memory fake and
the blob adapter on Azurite alike: an upload's stamp (size, ETag without quotes, last write) and
none for a blob that is not there; a new upload changes the ETag; small blobs read whole up to a
limit and refused over it; large ones streamed into a file (pinned to an ETag: that version or
nothing); the connector's report written beside an
export, replaced by the next, never touching the export; names outside the blob grammar refused
before anything is asked of storage."""

from __future__ import annotations

import io
import uuid
from datetime import UTC

import pytest

from shared.domain.identifiers import UnsafeBlobName
from shared.ports import RecordMissing
from tests.fakes import MemoryChatExportUploads

EXPORT = "custodian-a/WhatsApp Chat with Anna.zip"
SIDECAR = EXPORT + ".json"
REPORT = EXPORT + ".report.json"


@pytest.fixture(params=["memory", "blob"])
def uploads(request):
    if request.param == "memory":
        return MemoryChatExportUploads()
    from shared.adapters.azure_storage import BlobChatExportUploads

    return BlobChatExportUploads(request.getfixturevalue("azurite_blobs"), f"exports-{uuid.uuid4().hex[:12]}")


def _upload(uploads, name: str, data: bytes) -> None:
    """A custodian's upload (the connector never writes an export: only its report)."""
    if isinstance(uploads, MemoryChatExportUploads):
        uploads.upload(name, data)
    else:
        uploads._container.get().upload_blob(name, data, overwrite=True)


def test_an_upload_has_a_stamp_and_a_blob_that_is_not_there_has_none(uploads):
    assert uploads.stamp(EXPORT) is None
    _upload(uploads, EXPORT, b"PK\x03\x04 an export")
    stamp = uploads.stamp(EXPORT)
    assert stamp is not None and stamp.size == len(b"PK\x03\x04 an export")
    assert stamp.etag and '"' not in stamp.etag
    assert stamp.modified.tzinfo is not None and stamp.modified.utcoffset() == UTC.utcoffset(None)
    assert uploads.stamp(EXPORT) == stamp  # read again, unchanged


def test_a_new_upload_of_the_same_name_changes_the_etag(uploads):
    _upload(uploads, SIDECAR, b'{"custodianNames": []}')
    first = uploads.stamp(SIDECAR)
    _upload(uploads, SIDECAR, b'{"custodianNames": ["Anna"]}')
    second = uploads.stamp(SIDECAR)
    assert first is not None and second is not None
    assert second.etag != first.etag and second.modified >= first.modified and second.size == 28


def test_a_small_blob_is_read_whole_up_to_the_limit_and_refused_over_it(uploads):
    _upload(uploads, SIDECAR, b"x" * 100)
    assert uploads.read_small(SIDECAR, 100) == b"x" * 100
    with pytest.raises(ValueError, match="over 99 bytes"):
        uploads.read_small(SIDECAR, 99)
    with pytest.raises(RecordMissing):
        uploads.read_small("custodian-a/absent.json", 100)


def test_a_large_blob_is_streamed_into_a_file_and_its_size_returned(uploads):
    data = bytes(range(256)) * 20_000  # 5 MB
    _upload(uploads, EXPORT, data)
    target = io.BytesIO()
    assert uploads.download_to(EXPORT, target) == len(data)
    assert target.getvalue() == data
    with pytest.raises(RecordMissing):
        uploads.download_to("custodian-a/absent.zip", io.BytesIO())


def test_a_download_pinned_to_an_etag_reads_that_version_or_nothing(uploads):
    _upload(uploads, EXPORT, b"first version")
    first = uploads.stamp(EXPORT)
    assert first is not None
    target = io.BytesIO()
    assert uploads.download_to(EXPORT, target, etag=first.etag) == len(b"first version")
    assert target.getvalue() == b"first version"
    _upload(uploads, EXPORT, b"replaced by the vendor")
    with pytest.raises(RecordMissing):  # replaced since it was stamped: not read as if it were the same
        uploads.download_to(EXPORT, io.BytesIO(), etag=first.etag)


def test_the_report_is_written_beside_the_export_and_replaced_by_the_next(uploads):
    _upload(uploads, EXPORT, b"the export")
    before = uploads.stamp(EXPORT)
    uploads.put_report(REPORT, b'{"status": "importing"}')
    uploads.put_report(REPORT, b'{"status": "imported"}')
    assert uploads.read_small(REPORT, 1000) == b'{"status": "imported"}'
    report = uploads.stamp(REPORT)
    assert report is not None and report.size == len(b'{"status": "imported"}')
    assert uploads.stamp(EXPORT) == before and uploads.read_small(EXPORT, 1000) == b"the export"


def test_names_outside_the_blob_grammar_are_refused(uploads):
    for bad in ("", "../state/watermark.json", "a/./b.zip", "/abs.zip", "a\\b.zip", "a/%2e%2e/b"):
        with pytest.raises(UnsafeBlobName):
            uploads.stamp(bad)
        with pytest.raises(UnsafeBlobName):
            uploads.read_small(bad, 100)
        with pytest.raises(UnsafeBlobName):
            uploads.download_to(bad, io.BytesIO())
        with pytest.raises(UnsafeBlobName):
            uploads.put_report(bad, b"{}")
