"""One contract for every claim-check store — the in-memory fake, the blob store and the table store,
the last two on Azurite: a record is written once, the same bytes again reuse it, other bytes under
the same key are kept beside the first as a re-capture, and nothing else is ever handed back. The
table store also reads the blobs an earlier release wrote, keeps large records in blobs named by
their hash, and refuses bytes that are not the ones it stored."""

from __future__ import annotations

import hashlib
import json

import pytest

from shared.domain.identifiers import InvalidIdentifier
from shared.ports import RecordMissing
from tests.fakes import MemoryRecordStore

KEY = "ab" * 32
RECORDS = "archive-records"


@pytest.fixture(params=["memory", "blob", "table"])
def store(request):
    if request.param == "memory":
        return MemoryRecordStore()
    azurite = request.getfixturevalue("azurite")
    from azure.storage.blob import BlobServiceClient

    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    if request.param == "blob":
        from shared.adapters.azure_storage import BlobRecordStore

        return BlobRecordStore(blobs, RECORDS)
    from shared.adapters.azure_tables import table_service
    from shared.adapters.table_records import TableRecordStore

    return TableRecordStore(table_service(azurite.connection_string), "archiverecords", blobs, RECORDS)


def raw(text: str) -> bytes:
    return json.dumps({"messageId": "m-1", "textContent": text}).encode()


def test_a_record_is_stored_once_and_read_back_byte_for_byte(store):
    body = raw("hello ✓")
    reference = store.put(KEY, body)
    assert reference == f"{KEY}.json"
    assert store.get(reference) == body
    assert store.put(KEY, body) == reference  # the same bytes again: the same record


def test_other_bytes_under_the_same_key_are_kept_beside_the_first(store):
    first, second = raw("Price is 100"), raw("Price is 90")
    assert store.put(KEY, first) == f"{KEY}.json"
    variant = store.put(KEY, second)
    assert variant == f"{KEY}.{hashlib.sha256(second).hexdigest()[:16]}.json"
    assert store.get(f"{KEY}.json") == first and store.get(variant) == second
    assert store.put(KEY, second) == variant and store.put(KEY, first) == f"{KEY}.json"


def test_a_record_never_stored_is_missing(store):
    with pytest.raises(RecordMissing):
        store.get(f"{'cd' * 32}.json")


def test_empty_and_binary_bytes_round_trip(store):
    for n, body in enumerate((b"", bytes(range(256)) * 3)):
        key = f"{n:064x}"
        assert store.get(store.put(key, body)) == body


@pytest.mark.integration
def test_the_table_store_splits_large_records_and_moves_the_largest_to_a_hashed_blob(azurite, monkeypatch):
    from azure.storage.blob import BlobServiceClient

    from shared.adapters import table_records
    from shared.adapters.azure_tables import table_service

    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    store = table_records.TableRecordStore(table_service(azurite.connection_string), "archiverecords", blobs,
                                           RECORDS)
    spread = bytes(range(256)) * 1000  # 256,000 bytes: five properties
    assert store.get(store.put("01" * 32, spread)) == spread
    monkeypatch.setattr(table_records, "MAX_INLINE", 1000)
    big = b"x" * 5000
    reference = store.put("02" * 32, big)
    assert store.get(reference) == big
    names = [b.name for b in blobs.get_container_client(RECORDS).list_blobs(name_starts_with="large/")]
    assert names == [f"large/{hashlib.sha256(big).hexdigest()}.json"]


@pytest.mark.integration
def test_the_table_store_reads_claim_checks_an_earlier_release_wrote_as_blobs(azurite):
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.azure_storage import BlobRecordStore
    from shared.adapters.azure_tables import table_service
    from shared.adapters.table_records import TableRecordStore

    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    before = BlobRecordStore(blobs, RECORDS).put("03" * 32, raw("queued before the switch"))
    store = TableRecordStore(table_service(azurite.connection_string), "archiverecords", blobs, RECORDS)
    assert store.get(before) == raw("queued before the switch")
    # Listed again after the switch: the same bytes are the blob's record; other bytes a re-capture of it.
    assert store.put("03" * 32, raw("queued before the switch")) == before
    changed = store.put("03" * 32, raw("sent again, changed"))
    assert changed != before and changed.startswith("03" * 32 + ".")
    assert store.get(changed) == raw("sent again, changed") and store.get(before) == raw("queued before the switch")


@pytest.mark.integration
def test_a_table_store_without_earlier_blobs_never_reads_them(azurite):
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.azure_tables import table_service
    from shared.adapters.table_records import TableRecordStore

    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    blobs.get_container_client(RECORDS).create_container()
    blobs.get_container_client(RECORDS).upload_blob("webhooks/2026-11-01/" + "e" * 64 + ".json", b"{}")
    store = TableRecordStore(table_service(azurite.connection_string), "archiverecords", blobs, RECORDS)
    assert store.put("05" * 32, raw("new")) == "05" * 32 + ".json"
    assert store._earlier_exist is False


@pytest.mark.integration
def test_the_table_store_refuses_bytes_that_are_not_the_ones_it_stored_and_references_out_of_grammar(azurite):
    from azure.data.tables import UpdateMode
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.azure_tables import table_service
    from shared.adapters.table_records import TableRecordStore, record_keys

    tables = table_service(azurite.connection_string)
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    store = TableRecordStore(tables, "archiverecords", blobs, RECORDS)
    reference = store.put("04" * 32, raw("original"))
    partition, row = record_keys(reference)
    tables.get_table_client("archiverecords").update_entity(
        {"PartitionKey": partition, "RowKey": row, "raw00": raw("altered")}, mode=UpdateMode.MERGE)
    with pytest.raises(RecordMissing):
        store.get(reference)
    for bad in ("../x.json", "04" * 32, "windows/x.json"):
        with pytest.raises(InvalidIdentifier):
            store.get(bad)
    with pytest.raises(InvalidIdentifier):
        store.put("not-a-key", b"{}")
