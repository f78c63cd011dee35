"""Claim checks in Azure Table storage: each record's raw bytes in one entity, written once.

Why (docs/scale.md): a claim-check blob costs a blob write, $0.05 per 10,000, which is $5 per
million records on its own, more than the whole budget of $3 per million pairs leaves for it. An
entity insert is a table transaction, $0.00036 per 10,000. A record of TeleMessage or of the
WhatsApp Business Platform is a few kilobytes of JSON (media are stored apart), so it fits an
entity (1 MiB, binary properties of 64 KiB each) with room to spare.

The same contract as ``BlobRecordStore`` (tests/test_record_store_contract.py): written once; the
same bytes again reuse the entity; other bytes under the same key are kept beside the first under
``<key>.<16 hex of their SHA-256>.json`` and that reference is returned (a re-capture,
shared.domain.recapture). References keep the blob store's form, so tasks and poison messages
queued before a switch read on: an entity that is not there is looked for as a blob, where an
earlier release wrote it.

Entities: PartitionKey ``c<3 hex>`` (4,096 partitions by the SHA-256 of the reference, far under
each partition's 2,000 entities a second at a backfill's 720 records a second), RowKey the
reference; ``sha256``, ``size``, and the bytes in ``raw00``… of at most 63 KiB each. A record
over ``MAX_INLINE`` bytes (none of today's sources writes one) goes to a blob named by its SHA-256,
which the entity names (``blob``): content-addressed, so two writers never overwrite each other's.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared.adapters.azure_storage import BlobRecordStore, ensured_container, transient_storage_errors
from shared.adapters.azure_tables import ensured_table
from shared.domain.identifiers import is_record_ref
from shared.domain.identifiers import record_key as check_record_key
from shared.domain.identifiers import record_ref as check_record_ref
from shared.ports import RecordMissing

PART_BYTES = 63 * 1024  # a binary property holds 64 KiB
MAX_PARTS = 15  # 945 KiB of bytes, and the keys and counts, inside the entity's 1 MiB
MAX_INLINE = PART_BYTES * MAX_PARTS
LARGE_PREFIX = "large/"
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")


def record_keys(reference: str) -> tuple[str, str]:
    """(PartitionKey, RowKey) of a claim check; the reference is checked against its grammar first."""
    check_record_ref(reference)
    return "c" + hashlib.sha256(reference.encode("ascii")).hexdigest()[:3], reference


class TableRecordStore:
    """``RecordStore`` on one table, reading blobs written before the switch."""

    def __init__(self, tables: TableServiceClient, table: str, blobs: BlobServiceClient, container: str) -> None:
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError("a table name is a letter and 2 to 62 letters or digits")
        self._tables = tables
        self._name = table
        self._table: TableClient | None = None
        self._earlier = BlobRecordStore(blobs, container)
        self._container = ensured_container(blobs, container)
        self._earlier_exist: bool | None = None

    @transient_storage_errors
    def put(self, record_key: str, raw: bytes) -> str:
        check_record_key(record_key)
        raw = bytes(raw)
        digest = hashlib.sha256(raw).hexdigest()
        first = f"{record_key}.json"
        if self._earlier_claim_checks():
            # Stored as a blob before the switch: that is the first version, whatever the table has.
            try:
                earlier = self._earlier.get(first)
            except RecordMissing:
                earlier = None
            if earlier is not None:
                if earlier == raw:
                    return first
                variant = f"{record_key}.{digest[:16]}.json"
                self._create(variant, raw, digest)
                return variant
        if self._create(first, raw, digest) or self._digest(first) == digest:
            return first
        variant = f"{record_key}.{digest[:16]}.json"
        self._create(variant, raw, digest)  # False: the same variant, stored by an earlier listing
        return variant

    @transient_storage_errors
    def get(self, reference: str) -> bytes:
        partition, row = record_keys(reference)
        try:
            entity = self._client().get_entity(partition, row)
        except ResourceNotFoundError:
            return self._earlier.get(reference)  # raises RecordMissing when it is nowhere
        if entity.get("blob"):
            try:
                raw = self._container.get().download_blob(entity["blob"]).readall()
            except ResourceNotFoundError:
                raise RecordMissing(reference) from None
        else:
            raw = b"".join(bytes(entity[f"raw{n:02d}"]) for n in range(int(entity.get("parts", 0))))
        if hashlib.sha256(raw).hexdigest() != entity.get("sha256"):
            # Never hand on bytes that are not the ones stored: the import poisons a missing record.
            raise RecordMissing(reference)
        return raw

    # -- internals -------------------------------------------------------------------------------

    def _earlier_claim_checks(self) -> bool:
        """Whether an earlier version stored claim checks as blobs here (asked once per process).
        They sit at the container's top level, named by hex keys, which sort before every folder
        this container holds (``large/``, ``webhooks/``, ``outbound/``, media by source): the first
        names of a listing show them if there are any."""
        if self._earlier_exist is None:
            listing = self._container.get().walk_top_level(results_per_page=50)
            first_page = next(listing.by_page(), [])
            self._earlier_exist = any(
                is_record_ref(item.name) for item in first_page if not item.name.endswith("/"))
        return self._earlier_exist

    def _create(self, reference: str, raw: bytes, digest: str) -> bool:
        """True when this call stored it; False when the reference was there already."""
        partition, row = record_keys(reference)
        entity: dict[str, Any] = {"PartitionKey": partition, "RowKey": row, "sha256": digest, "size": len(raw)}
        if len(raw) > MAX_INLINE:
            name = f"{LARGE_PREFIX}{digest}.json"
            try:
                self._container.get().upload_blob(name, raw, overwrite=False)
            except ResourceExistsError:
                pass  # the same bytes: the name is their hash
            entity["blob"] = name
        else:
            parts = [raw[i: i + PART_BYTES] for i in range(0, len(raw), PART_BYTES)]
            entity["parts"] = len(parts)
            entity.update({f"raw{n:02d}": part for n, part in enumerate(parts)})
        try:
            self._client().create_entity(entity)
        except ResourceExistsError:
            return False
        return True

    def _digest(self, reference: str) -> str | None:
        partition, row = record_keys(reference)
        try:
            return self._client().get_entity(partition, row, select=["sha256"]).get("sha256")
        except ResourceNotFoundError:
            return None

    def _client(self) -> TableClient:
        if self._table is None:
            self._table = ensured_table(self._tables, self._name)
        return self._table
