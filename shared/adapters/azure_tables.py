"""The window ledger in Azure Table storage: no limit a bank reaches, and summaries in constant memory.

Why tables (docs/scale.md): no cap on entities (append blobs take 50,000 appends), 140 times
cheaper per transaction than a blob write, and an entity-group transaction writes up to 100
entities of one partition atomically, each with a compare-and-swap. That last property is what
keeps a window's counters exact: a record's folded state and its shard's counters live in one
partition and change together (``shared.domain.tally``).

Entities (PartitionKey, RowKey):
- ``window``, window id: the window.
- ``<window>~r<NN>`` (64 shards by the record key's last hex digits):
  - record key: listed or not, and its outcomes so far, folded (``kind`` record);
  - ``<record key>~o~<at>~<nonce>``: each outcome as it came (``kind`` outcome): the evidence of
    repeats and replays;
  - ``~tally``: the shard's counters.
- ``<window>~pages``: ``<slice>~<page>`` per page handed off (its record keys), ``…~m`` once its
  continuation is sent, ``~counts`` the count of finished slices.
- ``<window>~receipts``: one entity per (wamid, status), the failed ones read by the report, and
  ``~counts`` the receipts by status.

Every write that moves a counter is a transaction with the counter's ETag; a writer that loses
the race (412, or 409 on a create) reads again and retries. A repeat moves no counter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from shared.adapters.azure_storage import transient_storage_errors
from shared.adapters.table_batch import submit_transaction
from shared.domain.errors import ConfigurationError, TransientError
from shared.domain.identifiers import is_window_id
from shared.domain.ledger import (
    OutcomeEntry,
    PageEntry,
    Receipt,
    WindowInfo,
    WindowSummary,
    handoff_order,
)
from shared.domain.tally import RecordState, Tally, change, summary_from_tally

logger = logging.getLogger(__name__)

SHARDS = 64
TALLY = "~tally"
COUNTS = "~counts"
WINDOWS = "window"
_CHUNK = 30_000  # characters per string property: Azure takes 64 KiB, in UTF-16
# Record entities per query page when a window is read whole (reports). Measured over Azurite
# (peak RSS above baseline while reading every record of a window): pages of 1,000, the service's
# most, grew with the window (9.7 MiB at 12,800 records, 28.9 at 51,200); pages of 100 stayed flat
# (3.6 and 2.9). Ten times the requests, $0.0007 for a 2,000,000-record window's report.
STATES_PER_PAGE = 100
_ATTEMPTS = 20  # compare-and-swap rounds before the host's retry takes over
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
# Point reads of one write run side by side (a record and its shard's counters; a page's records),
# on threads made at the first write, not at import.
_point_reads: ThreadPoolExecutor | None = None
_point_reads_lock = threading.Lock()


def _readers() -> ThreadPoolExecutor:
    global _point_reads
    with _point_reads_lock:
        if _point_reads is None:
            _point_reads = ThreadPoolExecutor(8, thread_name_prefix="ledger-read")
        return _point_reads


class TableWindowLedger:
    """``WindowLedger`` on one table; ``summary`` and ``record_states`` read in constant memory."""

    def __init__(self, service: TableServiceClient, table: str) -> None:
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError("a table name is a letter and 2 to 62 letters or digits")
        self._service = service
        self._name = table
        self._table: TableClient | None = None

    # -- windows ---------------------------------------------------------------------------------

    @transient_storage_errors
    def open_window(self, info: WindowInfo) -> None:
        self._client().upsert_entity({"PartitionKey": WINDOWS, "RowKey": info.window_id,
                                      "info": json.dumps(info.to_json())})

    @transient_storage_errors
    def window(self, window_id: str) -> WindowInfo | None:
        entity = self._get(WINDOWS, window_id)
        return WindowInfo.from_json(json.loads(entity["info"])) if entity else None

    @transient_storage_errors
    def recent_windows(self, limit: int) -> list[WindowInfo]:
        ids = [e["RowKey"] for e in self._client().query_entities(
            "PartitionKey eq @pk", parameters={"pk": WINDOWS}, select=["RowKey"])]
        newest = sorted((i for i in ids if is_window_id(i)), key=handoff_order, reverse=True)[:limit]
        return [info for info in (self.window(i) for i in newest) if info is not None]

    # -- listing ---------------------------------------------------------------------------------

    @transient_storage_errors
    def record_page(self, window_id: str, entry: PageEntry) -> None:
        pages = f"{window_id}~pages"
        page = {"PartitionKey": pages, "RowKey": f"{entry.slice_id}~{entry.page:06d}", "kind": "page",
                "last": entry.last, **_chunks("keys", list(entry.record_keys))}
        if entry.receipts:
            page.update(_chunks("receipts", [r.to_json() for r in entry.receipts]))
        # The page once, and a finished slice counted once: the create fails for a page seen before.
        self._counted(pages, COUNTS, page, lambda counts: {**counts, "slices": counts.get("slices", 0) + 1}
                      if entry.last else counts)
        for receipt in {r.key: r for r in entry.receipts}.values():
            self._record_receipt(window_id, receipt)
        by_shard: dict[str, list[str]] = {}
        for key in dict.fromkeys(entry.record_keys):
            by_shard.setdefault(_shard(window_id, key), []).append(key)
        for partition, keys in by_shard.items():
            for start in range(0, len(keys), 90):  # a transaction holds 100 operations
                self._list_records(partition, keys[start:start + 90])

    @transient_storage_errors
    def page_listed(self, window_id: str, slice_id: str, page: int) -> bool:
        return self._get(f"{window_id}~pages", f"{slice_id}~{page:06d}~m") is not None

    @transient_storage_errors
    def mark_page_listed(self, window_id: str, slice_id: str, page: int) -> None:
        self._client().upsert_entity({"PartitionKey": f"{window_id}~pages",
                                      "RowKey": f"{slice_id}~{page:06d}~m", "kind": "mark"})

    # -- outcomes --------------------------------------------------------------------------------

    @transient_storage_errors
    def record_outcome(self, window_id: str, entry: OutcomeEntry) -> None:
        partition = _shard(window_id, entry.record_key)
        raw = {"PartitionKey": partition, "kind": "outcome", **_chunks("entry", entry.to_json())}
        for _ in range(_ATTEMPTS):
            found = self._get_rows(partition, [entry.record_key, TALLY])
            record, tally = found.get(entry.record_key), found.get(TALLY)
            before = _state(record)
            after = before.with_outcome(entry)
            operations = [("create", {**raw, "RowKey": f"{entry.record_key}~o~{_nonce()}"}),
                          _write_record(partition, entry.record_key, after, record)]
            operations += _write_tally(partition, tally, change(before, after))
            if self._submit(operations):
                return
        raise TransientError(f"ledger: record {entry.record_key[:16]} contended {_ATTEMPTS} times")

    # -- reading ---------------------------------------------------------------------------------

    @transient_storage_errors
    def summary(self, window_id: str) -> WindowSummary | None:
        """From the 64 shards' counters and the pages' count: constant memory, whatever the size."""
        info = self.window(window_id)
        if info is None:
            return None
        tallies = list(_readers().map(lambda n: self._get(f"{window_id}~r{n:02d}", TALLY), range(SHARDS)))
        tally = sum((Tally.from_json(_json(t, "tally")) for t in tallies if t), Tally())
        pages = _json(self._get(f"{window_id}~pages", COUNTS), "counts") or {}
        receipts = _json(self._get(f"{window_id}~receipts", COUNTS), "counts") or {}
        failed = [Receipt.from_json(_json(e, "receipt")) for e in self._client().query_entities(
            "PartitionKey eq @pk and status eq 'failed'", parameters={"pk": f"{window_id}~receipts"})]
        summary = summary_from_tally(info, tally, slices_listed=int(pages.get("slices", 0)), receipts=receipts)
        return _with_failed_receipts(summary, failed)

    @transient_storage_errors
    def record_states(self, window_id: str) -> Iterator[tuple[str, RecordState]]:
        """Every record of the window with its state, a page of entities at a time."""
        for n in range(SHARDS):
            for entity in self._client().query_entities(
                    "PartitionKey eq @pk and kind eq 'record'", parameters={"pk": f"{window_id}~r{n:02d}"},
                    results_per_page=STATES_PER_PAGE):
                yield entity["RowKey"], _state(entity)

    @transient_storage_errors
    def record_state(self, window_id: str, record_key: str) -> RecordState:
        return _state(self._get(_shard(window_id, record_key), record_key))

    @transient_storage_errors
    def records_with_outcome(self, window_id: str, record_keys: Iterable[str]) -> set[str]:
        keys = list(dict.fromkeys(record_keys))
        states = _readers().map(lambda key: (key, self.record_state(window_id, key)), keys)
        return {key for key, state in states if state.outcome is not None}

    @transient_storage_errors
    def pages(self, window_id: str) -> list[PageEntry]:
        """Every page entry (for inspection and tests: a window's pages, not its records)."""
        return [
            PageEntry(e["RowKey"].rsplit("~", 1)[0], int(e["RowKey"].rsplit("~", 1)[1]),
                      tuple(_json(e, "keys") or ()), bool(e["last"]),
                      tuple(Receipt.from_json(r) for r in _json(e, "receipts") or ()))
            for e in self._client().query_entities("PartitionKey eq @pk and kind eq 'page'",
                                                   parameters={"pk": f"{window_id}~pages"})
        ]

    @transient_storage_errors
    def outcomes(self, window_id: str) -> list[OutcomeEntry]:
        """Every outcome as it came (for inspection and tests; a window's worth in memory)."""
        entries = []
        for n in range(SHARDS):
            entries += [OutcomeEntry.from_json(_json(e, "entry")) for e in self._client().query_entities(
                "PartitionKey eq @pk and kind eq 'outcome'", parameters={"pk": f"{window_id}~r{n:02d}"})]
        return sorted(entries, key=lambda e: e.at)

    # -- internals -------------------------------------------------------------------------------

    def _client(self) -> TableClient:
        if self._table is None:
            self._table = ensured_table(self._service, self._name)
        return self._table

    def _get(self, partition: str, row: str) -> Any:
        try:
            return self._client().get_entity(partition, row)
        except ResourceNotFoundError:
            return None

    def _get_rows(self, partition: str, rows: list[str]) -> dict[str, Any]:
        """Several entities of one partition by point reads, side by side. (A filter of RowKeys
        joined by "or" would be one request, but the service answers it with a partition scan.)"""
        # The first row read on this thread, the others on the readers' threads meanwhile.
        others = _readers().map(lambda row: (row, self._get(partition, row)), rows[1:]) if len(rows) > 1 else ()
        found = [(rows[0], self._get(partition, rows[0])), *others]
        return {row: entity for row, entity in found if entity is not None}

    def _submit(self, operations: list[tuple[Any, ...]]) -> bool:
        """True when written; False when another writer got there first (read again, retry)."""
        try:
            submit_transaction(self._client(), operations)
        except TableTransactionError as error:
            if error.status_code in (409, 412):
                return False
            raise
        except (ResourceExistsError, HttpResponseError) as error:
            if getattr(error, "status_code", None) in (409, 412):
                return False
            raise
        return True

    def _list_records(self, partition: str, keys: list[str]) -> None:
        # A page's records are new to the ledger but for a page run again or an outcome recorded
        # first: write them as new, reading only the shard's counters. The creates fail, and write
        # nothing, if any of them exists; then each record is read, as below.
        tally = self._get(partition, TALLY)
        fresh = RecordState().with_listing()
        moved = Tally()
        operations: list[tuple[Any, ...]] = []
        for key in keys:
            moved += change(RecordState(), fresh)
            operations.append(_write_record(partition, key, fresh, None))
        if operations and self._submit(operations + _write_tally(partition, tally, moved)):
            return
        for _ in range(_ATTEMPTS):
            found = self._get_rows(partition, [*keys, TALLY])
            tally = found.get(TALLY)
            records = {key: found.get(key) for key in keys}
            moved = Tally()
            operations: list[tuple[Any, ...]] = []
            for key, record in records.items():
                before = _state(record)
                after = before.with_listing()
                if after != before:
                    moved += change(before, after)
                    operations.append(_write_record(partition, key, after, record))
            if not operations:
                return
            if self._submit(operations + _write_tally(partition, tally, moved)):
                return
        raise TransientError(f"ledger: partition {partition} contended {_ATTEMPTS} times")

    def _record_receipt(self, window_id: str, receipt: Receipt) -> None:
        partition = f"{window_id}~receipts"
        row = hashlib.sha256(f"{receipt.message_id}\n{receipt.status}".encode("utf-8", "surrogatepass")).hexdigest()
        entity = {"PartitionKey": partition, "RowKey": row, "status": receipt.status[:64],
                  **_chunks("receipt", receipt.to_json())}
        self._counted(partition, COUNTS, entity, lambda counts: {
            **counts, receipt.status: counts.get(receipt.status, 0) + 1})

    def _counted(self, partition: str, row: str, create: dict[str, Any],
                 update: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Create ``create`` and move the counter entity ``row`` of the same partition by ``update``,
        atomically; nothing at all when ``create`` exists already (a page or a receipt again)."""
        for _ in range(_ATTEMPTS):
            counter = self._get(partition, row)
            counts = _json(counter, "counts") or {}
            updated = update(dict(counts))
            writes: list[tuple[Any, ...]] = [("create", create)]
            if updated != counts:
                writes.append(_replace({"PartitionKey": partition, "RowKey": row, "kind": "counts",
                                        **_chunks("counts", updated)}, counter))
            if self._submit(writes):
                return
            if self._get(partition, create["RowKey"]) is not None:
                return  # written before: counted then
        raise TransientError(f"ledger: counter {partition} contended {_ATTEMPTS} times")


def ensured_table(service: TableServiceClient, name: str) -> TableClient:
    """The table's client, the table created if it is missing. Read first: a deployment creates
    the table and grants a role on that table only, which may not cover creating tables; only a
    local run on empty storage needs to create it."""
    client = service.get_table_client(name)
    try:
        client.get_entity("~", "~probe")
    except ResourceNotFoundError as error:
        if getattr(error, "error_code", None) == "TableNotFound":
            try:
                client.create_table()
            except ResourceExistsError:
                pass
    return client


def table_service(connection_string: str, account_name: str = "", client_id: str = "",
                  table_service_uri: str = "", blob_service_uri: str = "") -> TableServiceClient:
    if connection_string:
        return TableServiceClient.from_connection_string(connection_string)
    if not table_service_uri and blob_service_uri:
        # A sovereign cloud names its blob endpoint; the table endpoint is the same account's.
        table_service_uri = blob_service_uri.replace(".blob.", ".table.", 1)
    if not account_name and not table_service_uri:
        raise ConfigurationError("set AzureWebJobsStorage, or AzureWebJobsStorage__accountName "
                                 "(or __tableServiceUri)")
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    credential = ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
    return TableServiceClient(table_service_uri or f"https://{account_name}.table.core.windows.net",
                              credential=credential)


def _shard(window_id: str, record_key: str) -> str:
    tail = record_key[-2:]
    try:
        number = int(tail, 16) % SHARDS
    except ValueError:
        number = int(hashlib.sha256(record_key.encode()).hexdigest()[:2], 16) % SHARDS
    return f"{window_id}~r{number:02d}"


def _state(entity: Any) -> RecordState:
    if not entity:
        return RecordState()
    outcome = _json(entity, "state")
    return RecordState(bool(entity.get("listed")), OutcomeEntry.from_json(outcome) if outcome else None)


def _write_record(partition: str, key: str, state: RecordState, existing: Any) -> tuple[Any, ...]:
    entity = {"PartitionKey": partition, "RowKey": key, "kind": "record", "listed": state.listed,
              "outcome": state.outcome.outcome.value if state.outcome else "",
              **_chunks("state", state.outcome.to_json() if state.outcome else None)}
    return _replace(entity, existing)


def _write_tally(partition: str, existing: Any, moved: Tally) -> list[tuple[Any, ...]]:
    if moved.is_zero:
        return []
    current = Tally.from_json(_json(existing, "tally") or {})
    return [_replace({"PartitionKey": partition, "RowKey": TALLY, "kind": "tally",
                      **_chunks("tally", (current + moved).to_json())}, existing)]


def _replace(entity: dict[str, Any], existing: Any) -> tuple[Any, ...]:
    """Create when there was none (fails if another writer created it), else replace if unchanged."""
    if not existing:
        return ("create", entity)
    return ("update", entity, {"mode": UpdateMode.REPLACE, "etag": existing.metadata["etag"],
                               "match_condition": MatchConditions.IfNotModified})


def _chunks(name: str, value: Any) -> dict[str, str]:
    """A JSON value across as many string properties as it needs (each at most 64 KiB)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    parts = [text[i:i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
    return {f"{name}_{i}": part for i, part in enumerate(parts)}


def _json(entity: Any, name: str) -> Any:
    if not entity:
        return None
    parts, i = [], 0
    while (part := entity.get(f"{name}_{i}")) is not None:
        parts.append(part)
        i += 1
    return json.loads("".join(parts)) if parts else None


def _nonce() -> str:
    return os.urandom(6).hex()


def _with_failed_receipts(summary: WindowSummary, failed: list[Receipt]) -> WindowSummary:
    from dataclasses import replace

    return replace(summary, failed_receipts=tuple(sorted(failed, key=lambda r: (r.at, r.message_id))))
