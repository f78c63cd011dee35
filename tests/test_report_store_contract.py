"""Contract of the admin report store (ReportStore), held by the in-memory fake and the blob adapter on
Azurite alike: both forms are stored from pieces of text and read back (the CSV with a UTF-8 BOM, for
Excel), with their sizes and the summary digest saved beside them; a save replaces the earlier
report, and one that breaks off while the CSV is read leaves the earlier report whole; only window
ids are listed as stored; a deleted report is gone in both forms."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.ledger import WindowInfo
from shared.domain.window import Window
from tests.fakes import MemoryReportStore

HANDED_OFF = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
BOM = "\ufeff".encode()


def _window(days_later: int) -> str:
    at = HANDED_OFF + timedelta(days=days_later)
    return WindowInfo(Window(at - timedelta(days=1), at), 1, at).window_id


W1, W2 = _window(0), _window(1)


@pytest.fixture(params=["memory", "blob"])
def reports(request):
    if request.param == "memory":
        return MemoryReportStore()
    from shared.adapters.azure_storage import BlobReportStore

    return BlobReportStore(request.getfixturevalue("azurite_blobs"), f"state-{uuid.uuid4().hex[:12]}")


def test_no_report_is_stored_before_one_is_saved(reports):
    assert reports.stored() == []
    assert reports.load(W1, "json") is None and reports.load(W1, "csv") is None
    assert reports.stored_size(W1, "json") is None and reports.summary_digest(W1) is None


def test_both_forms_are_stored_from_pieces_and_read_back_with_their_sizes(reports):
    reports.save(W1, iter(['{"window": ', '"w1", "rows": ["Grüße"]}']), iter(["a,b\r\n", "", "1,ü\r\n"]))
    json_bytes = '{"window": "w1", "rows": ["Grüße"]}'.encode()
    csv_bytes = BOM + "a,b\r\n1,ü\r\n".encode()
    assert reports.load(W1, "json") == json_bytes and reports.load(W1, "csv") == csv_bytes
    assert reports.stored_size(W1, "json") == len(json_bytes) and reports.stored_size(W1, "csv") == len(csv_bytes)
    assert reports.stored() == [W1]


def test_the_summary_digest_is_kept_with_the_report_and_only_while_it_is_given(reports):
    reports.save(W1, ["{}"], ["a\r\n"], summary_digest="sha256:" + "a" * 64)
    assert reports.summary_digest(W1) == "sha256:" + "a" * 64
    reports.save(W1, ["{}"], ["a\r\n"], summary_digest="sha256:" + "b" * 64)
    assert reports.summary_digest(W1) == "sha256:" + "b" * 64
    reports.save(W1, ["{}"], ["a\r\n"])  # made without one: no digest vouches for it
    assert reports.summary_digest(W1) is None


def test_a_save_replaces_the_earlier_report(reports):
    reports.save(W1, ['{"v": 1, "long": "' + "x" * 1000 + '"}'], ["v\r\n1\r\n"])
    reports.save(W1, ['{"v": 2}'], ["v\r\n2\r\n"])
    assert reports.load(W1, "json") == b'{"v": 2}' and reports.load(W1, "csv") == BOM + b"v\r\n2\r\n"
    assert reports.stored_size(W1, "json") == len(b'{"v": 2}')


def test_a_save_that_breaks_off_leaves_the_earlier_report_whole(reports):
    reports.save(W1, ['{"v": 1}'], ["v\r\n1\r\n"], summary_digest="d1")

    def broken() -> Iterator[str]:
        yield "v\r\n"
        raise ConnectionError("the ledger went away while the report was read")

    with pytest.raises(ConnectionError):
        reports.save(W1, ['{"v": 2}'], broken(), summary_digest="d2")
    assert reports.load(W1, "json") == b'{"v": 1}' and reports.load(W1, "csv") == BOM + b"v\r\n1\r\n"
    assert reports.summary_digest(W1) == "d1"


def test_only_window_ids_are_listed_as_stored_in_order(reports):
    reports.save(W2, ["{}"], [""])
    reports.save(W1, ["{}"], [""])
    if isinstance(reports, MemoryReportStore):
        reports.blobs["not-a-window.json"] = b"{}"
    else:
        reports._container.get().upload_blob("reports/not-a-window.json", b"{}")  # anyone with a data role
    assert reports.stored() == [W1, W2]


def test_a_deleted_report_is_gone_in_both_forms_and_deleting_none_is_fine(reports):
    reports.save(W1, ["{}"], ["a\r\n"], summary_digest="d1")
    reports.save(W2, ["{}"], ["b\r\n"])
    reports.delete(W1)
    reports.delete(W1)
    assert reports.load(W1, "json") is None and reports.load(W1, "csv") is None
    assert reports.summary_digest(W1) is None and reports.stored() == [W2]
