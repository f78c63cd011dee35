"""Every storage request this process sends, counted by kind (``python -m bench.scale``).

The Azure SDKs (blob, queue, table) send every request through azure-core's ``RequestsTransport``;
``counting(ports)`` wraps its ``send`` for the duration, so nothing in the adapters changes and
nothing is guessed. Each request is classified as Azure bills it (``../shared/reference/azure-costs.md``,
Standard GPv2):

- blob **write**: Put Blob (an append blob's creation included), Put Block, Put Block List, Append Block,
  Copy Blob; **read**: Get Blob; **list**: Create Container, List Blobs (priced as writes, $0.05 per
  10,000; reported apart and summed into ``blob_other`` as the contract asks); **other**: lease,
  properties, metadata, tags, HEAD; **free**: Delete Blob, Delete Container.
- queue: put, receive (those that returned messages; the empty ones are the host's polling and
  counted apart), delete, update, and the harness's own calls (queue creation, depth).
- table: one transaction per request, an entity-group transaction (``$batch``) included; writes are
  every request but reads and queries.

A failed request (409, 412) is billed like any other once it is authenticated, so it is counted.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# What each kind costs at list price, USD per operation (azure-costs.md: East US, GPv2, LRS, Hot).
PRICE_PER_OPERATION = {
    "blob_write": 0.05 / 10_000,
    "blob_read": 0.004 / 10_000,
    "blob_other": 0.004 / 10_000,
    "blob_list": 0.05 / 10_000,  # list and create container: the write price
    "queue": 0.004 / 10_000,
    "table": 0.00036 / 10_000,
}
_BATCH_PART = re.compile(rb"Content-Type: application/http", re.IGNORECASE)
_PARTITION_IN_URL = re.compile(r"PartitionKey='([^']*)'")
_PARTITION_IN_JSON = re.compile(r'"PartitionKey":\s*"([^"]*)"')


@dataclass
class StorageCounts:
    """Requests by kind (``blob_write``, ``queue_put``, ``table_batch`` …, see ``classify``), the
    entity operations per table partition class, the largest queue message and table batch seen,
    and Append Blocks per blob."""

    kinds: Counter[str] = field(default_factory=Counter)
    entity_operations: Counter[str] = field(default_factory=Counter)  # partition class -> entities read/written
    appends: Counter[str] = field(default_factory=Counter)  # blob path -> Append Block requests
    largest_queue_message: int = 0  # bytes of the message text as sent
    largest_batch: int = 0  # operations in one entity-group transaction

    def copy(self) -> StorageCounts:
        return StorageCounts(Counter(self.kinds), Counter(self.entity_operations), Counter(self.appends),
                             self.largest_queue_message, self.largest_batch)

    def __sub__(self, other: StorageCounts) -> StorageCounts:
        return StorageCounts(self.kinds - other.kinds, self.entity_operations - other.entity_operations,
                             self.appends - other.appends, self.largest_queue_message, self.largest_batch)

    def billed(self) -> dict[str, int]:
        """The contract's five kinds (list and create container inside ``blob_other``), plus the
        list operations apart and the table writes (the part of ``table`` that writes)."""
        k = self.kinds
        blob_list = k["blob_list"]
        return {
            "blob_write": k["blob_write"],
            "blob_read": k["blob_read"],
            "blob_other": k["blob_other"] + blob_list,
            "queue": k["queue_put"] + k["queue_receive"] + k["queue_delete"] + k["queue_update"],
            "table": k["table_read"] + k["table_write"],
            "blob_list": blob_list,
            "table_write": k["table_write"],
            "queue_put": k["queue_put"],
        }


class _Counter:
    def __init__(self, ports: Mapping[int, str]) -> None:
        self.ports = dict(ports)  # port -> "blob" | "queue" | "table"
        self.counts = StorageCounts()
        self.lock = threading.Lock()

    def snapshot(self) -> StorageCounts:
        with self.lock:
            return self.counts.copy()

    def record(self, request: Any, response: Any) -> None:
        url = urllib.parse.urlsplit(request.url)
        service = self.ports.get(url.port or 0)
        if service is None:
            return
        query = {k.lower(): v for k, v in urllib.parse.parse_qsl(url.query, keep_blank_values=True)}
        kind = classify(service, request.method.upper(), url.path, query, request.headers)
        body = _body(request)
        with self.lock:
            c = self.counts
            if kind == "queue_receive" and not _has_messages(response):
                kind = "queue_receive_empty"
            c.kinds[kind] += 1
            if kind == "blob_write" and query.get("comp") == "appendblock":
                c.appends[url.path] += 1
            if kind == "queue_put":
                c.largest_queue_message = max(c.largest_queue_message, _message_bytes(body))
            if service == "table":
                partition, entities = _entities(url, body)
                if partition is not None:
                    c.entity_operations[partition_class(partition)] += entities
                if url.path.endswith("$batch"):
                    c.largest_batch = max(c.largest_batch, entities)


def classify(service: str, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    comp, restype = query.get("comp", ""), query.get("restype", "")
    if service == "blob":
        if method == "DELETE":
            return "blob_free"
        if comp == "list" or restype == "container" and method == "PUT" and not comp:
            return "blob_list"
        if method == "PUT" and comp in ("", "block", "blocklist", "appendblock", "seal"):
            return "blob_write"
        if method == "GET" and not comp and not restype:
            return "blob_read"
        return "blob_other"
    if service == "queue":
        segments = [s for s in path.split("/") if s]  # account, queue, messages, id
        if len(segments) >= 3 and segments[2] == "messages":
            if method == "POST":
                return "queue_put"
            if method == "GET":
                return "queue_peek" if query.get("peekonly", "").lower() == "true" else "queue_receive"
            if method == "DELETE":
                return "queue_delete" if len(segments) >= 4 else "queue_clear"
            if method == "PUT":
                return "queue_update"
        if method == "PUT" and not comp:
            return "queue_create"
        if comp == "metadata":
            return "queue_depth"
        return "queue_other"
    if method == "POST" and path.rstrip("/").endswith("/Tables"):
        return "table_create"
    return "table_read" if method == "GET" else "table_write"


def partition_class(partition: str) -> str:
    """The table ledger's partitions by role: ``shard`` (``<window>~rNN``), ``pages``, ``receipts``, ``window``."""
    if partition == "window":
        return "window"
    tail = partition.rsplit("~", 1)[-1]
    if re.fullmatch(r"r\d\d", tail):
        return "shard"
    return tail if tail in ("pages", "receipts") else "other"


def _body(request: Any) -> bytes:
    data = getattr(request, "data", None)
    if data is None:
        data = getattr(request, "body", None)
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    return bytes(data) if isinstance(data, bytes | bytearray) else b""


def _entities(url: urllib.parse.SplitResult, body: bytes) -> tuple[str | None, int]:
    """The partition a table request works on, and how many entities it reads or writes (a batch:
    its operations; a point read or a single write: one; a query: one, what it returned is not
    known here)."""
    if url.path.endswith("$batch"):
        text = body.decode("utf-8", "replace")
        found = _PARTITION_IN_JSON.search(text) or _PARTITION_IN_URL.search(urllib.parse.unquote(text))
        return (found.group(1) if found else None), len(_BATCH_PART.findall(body))
    found = _PARTITION_IN_URL.search(urllib.parse.unquote(url.path))
    if found:
        return found.group(1).replace("''", "'"), 1
    found = _PARTITION_IN_JSON.search(body.decode("utf-8", "replace"))
    return (found.group(1), 1) if found else (None, 0)


def _message_bytes(body: bytes) -> int:
    start, end = body.find(b"<MessageText>"), body.find(b"</MessageText>")
    return end - start - len(b"<MessageText>") if 0 <= start < end else len(body)


def _has_messages(response: Any) -> bool:
    try:
        return b"<QueueMessage>" in response.internal_response.content
    except Exception:  # a response of another shape: count it as a receive
        return True


@contextmanager
def counting(ports: Mapping[int, str]) -> Iterator[_Counter]:
    """Count every request to ``ports`` (port -> service) sent through azure-core while inside."""
    from azure.core.pipeline.transport import RequestsTransport

    counter = _Counter(ports)
    original = RequestsTransport.send

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        response = original(self, request, **kwargs)
        counter.record(request, response)
        return response

    RequestsTransport.send = send
    try:
        yield counter
    finally:
        RequestsTransport.send = original


def azurite_ports(azurite: Any) -> dict[int, str]:
    return {azurite.blob_port: "blob", azurite.queue_port: "queue", azurite.table_port: "table"}
