"""In-memory implementations of shared.ports with real behaviour (not mocks): they store, version,
append and refuse exactly as the Azure adapters do, so service tests exercise real semantics."""

from __future__ import annotations

import copy
import hashlib
import itertools
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.errors import TransientError
from shared.domain.identifiers import webhook_body_ref
from shared.domain.ledger import OutcomeEntry, PageEntry, WindowInfo, handoff_order
from shared.domain.mapping_table import MappingTable, parse_mapping
from shared.domain.rendered import RenderedItem
from shared.domain.tally import ReadsFromEntries
from shared.domain.window import Watermark, Window
from shared.ports import BlobStamp, ListingPage, RecordMissing, WatermarkConflict, WriteOutcome


class MemoryRecordStore:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, record_key: str, raw: bytes) -> str:
        # As the blob store: written once; other bytes under the same key are kept beside the first.
        name = f"{record_key}.json"
        if self.blobs.setdefault(name, bytes(raw)) == raw:
            return name
        variant = f"{record_key}.{hashlib.sha256(raw).hexdigest()[:16]}.json"
        self.blobs.setdefault(variant, bytes(raw))
        return variant

    def get(self, reference: str) -> bytes:
        try:
            return self.blobs[reference]
        except KeyError:
            raise RecordMissing(reference) from None


class MemoryQueue:
    def __init__(self, name: str = "queue", *, fail_after: int | None = None) -> None:
        self.name = name
        self.messages: list[dict[str, Any]] = []
        self.delays: list[int] = []
        self._fail_after = fail_after

    def send(self, payload: dict[str, Any], *, delay_seconds: int = 0) -> None:
        if self._fail_after is not None and len(self.messages) >= self._fail_after:
            raise ConnectionError("queue unavailable (injected)")
        self.messages.append(copy.deepcopy(payload))
        self.delays.append(delay_seconds)

    def depth(self) -> int:
        return len(self.messages)


class MemoryWatermarkStore:
    def __init__(self, watermark: Watermark | None = None) -> None:
        self._watermark = watermark
        self._version = itertools.count(1)
        self.version: str | None = str(next(self._version)) if watermark else None

    def read(self) -> tuple[Watermark | None, str | None]:
        return self._watermark, self.version

    def advance(self, watermark: Watermark, expected_version: str | None) -> None:
        if expected_version != self.version:
            raise WatermarkConflict("changed since read")
        self._watermark = watermark
        self.version = str(next(self._version))

    @property
    def watermark(self) -> Watermark | None:
        return self._watermark


class MemoryLedger(ReadsFromEntries):
    def __init__(self) -> None:
        self.windows: dict[str, WindowInfo] = {}
        self.page_entries: dict[str, list[PageEntry]] = defaultdict(list)
        self.outcome_entries: dict[str, list[OutcomeEntry]] = defaultdict(list)
        self.listed: set[tuple[str, str, int]] = set()

    def open_window(self, info: WindowInfo) -> None:
        self.windows[info.window_id] = info

    def window(self, window_id: str) -> WindowInfo | None:
        return self.windows.get(window_id)

    def record_page(self, window_id: str, entry: PageEntry) -> None:
        self.page_entries[window_id].append(entry)

    def page_listed(self, window_id: str, slice_id: str, page: int) -> bool:
        return (window_id, slice_id, page) in self.listed

    def mark_page_listed(self, window_id: str, slice_id: str, page: int) -> None:
        self.listed.add((window_id, slice_id, page))

    def record_outcome(self, window_id: str, entry: OutcomeEntry) -> None:
        self.outcome_entries[window_id].append(entry)

    def recent_windows(self, limit: int) -> list[WindowInfo]:
        return [self.windows[k] for k in sorted(self.windows, key=handoff_order, reverse=True)[:limit]]

    def pages(self, window_id: str) -> list[PageEntry]:
        return list(self.page_entries[window_id])

    def outcomes(self, window_id: str) -> list[OutcomeEntry]:
        return list(self.outcome_entries[window_id])



class StaticMapping:
    def __init__(self, csv_text: str = "PhoneNumber,EmailAddress\n", region: str | None = None) -> None:
        self.table: MappingTable = parse_mapping(csv_text, region).table

    def current(self) -> MappingTable:
        return self.table


class SetDirectory:
    def __init__(self, *addresses: str) -> None:
        self.addresses = {a.lower() for a in addresses}
        self.questions = 0

    def has_mailbox(self, address: str) -> bool:
        self.questions += 1
        return address.lower() in self.addresses

    def mailbox_identity(self, address: str) -> str | None:
        return address.lower() if self.has_mailbox(address) else None


class MemoryMailboxes:
    """A mailbox writer keyed on (mailbox, record id), like the extended-property lookup in Graph."""

    def __init__(self, *, unavailable: set[str] | None = None) -> None:
        self.items: dict[str, dict[str, RenderedItem]] = defaultdict(dict)
        self.unavailable = unavailable or set()
        self.writes = 0

    def write(self, mailbox: str, item: RenderedItem, *, check_existing: bool = True) -> WriteOutcome:
        from shared.domain.errors import MailboxUnavailable

        self.writes += 1
        if mailbox in self.unavailable:
            raise MailboxUnavailable(mailbox, "MailboxNotEnabledForRESTAPI")
        if item.record_id in self.items[mailbox]:
            return WriteOutcome.SKIPPED_DUPLICATE
        self.items[mailbox][item.record_id] = item
        return WriteOutcome.IMPORTED


class MemorySource:
    """Pages over a list of raw records (already in capture order), serving attachment bytes."""

    def __init__(self, records: list[Any], media: dict[str, bytes] | None = None) -> None:
        self.records = records
        self.media = media or {}
        self.downloads = 0

    def list_page(self, window: Window, page_token: str | None, page_size: int) -> ListingPage:
        inside = [r for r in self.records if not isinstance(r, dict) or "archivedTime" not in r
                  or window.start.timestamp() * 1000 <= r["archivedTime"] < window.end.timestamp() * 1000]
        offset = int(page_token or 0)
        page = inside[offset: offset + page_size]
        more = offset + page_size < len(inside)
        return ListingPage(page, str(offset + page_size) if more else None)

    def open_attachment(self, attachment_id: str) -> Iterator[bytes] | None:
        self.downloads += 1
        data = self.media.get(attachment_id)
        if data is None:
            return None
        return iter([data[i: i + 65536] for i in range(0, len(data), 65536)] or [b""])


class MemoryDeliveryRecords:
    """Delivery records with a real per-key lock, like the blob lease."""

    def __init__(self, wait_seconds: float = 5.0) -> None:
        import threading

        self.states: dict[tuple[str, str], str] = {}
        self._locks: dict[tuple[str, str], Any] = defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self._wait = wait_seconds

    def claim(self, mailbox: str, record_key: str):
        from contextlib import contextmanager

        from shared.domain.errors import TransientError
        from shared.ports import DeliveryState

        key = (mailbox, record_key)
        states = self.states
        mapping = {"new": DeliveryState.NEW, "writing": DeliveryState.IN_DOUBT, "done": DeliveryState.DONE}

        class Claim:
            def __init__(self) -> None:
                self.state = mapping[states.get(key, "new")]

            def begin(self) -> None:
                states[key] = "writing"

            def finish(self, outcome) -> None:
                states[key] = "done"

        @contextmanager
        def held():
            with self._guard:
                lock = self._locks[key]
            if not lock.acquire(timeout=self._wait):
                raise TransientError("held by another worker", retry_after=30)
            try:
                yield Claim()
            finally:
                lock.release()

        return held()


class MemoryTranscriptStore:
    """Transcript state with the blob store's rules: parts created once, then overwritten whole."""

    def __init__(self) -> None:
        from shared.domain.transcripts import Bucket, StagedRecord, TranscriptPart

        # One copy per (record key, window), as the blob store keeps them.
        self.staged_records: dict[Bucket, dict[tuple[str, str], StagedRecord]] = defaultdict(dict)
        self.part_manifests: dict[tuple[Bucket, int], TranscriptPart] = {}
        self.transcribed: dict[str, str] = {}

    def stage(self, bucket, record) -> None:
        from dataclasses import replace

        for window in record.window_ids:
            self.staged_records[bucket][(record.record_key, window)] = replace(
                record, window_id=window, relisted_by=(),
            )

    def staged_buckets(self):
        return sorted((b for b, records in self.staged_records.items() if records), key=lambda b: b.name)

    def staged(self, bucket):
        return list(self.staged_records[bucket].values())

    def unstage(self, bucket, records) -> None:
        for record in records:
            for window in record.window_ids:
                self.staged_records[bucket].pop((record.record_key, window), None)

    def parts(self, bucket):
        return [p for (b, _), p in sorted(self.part_manifests.items(), key=lambda kv: kv[0][1]) if b == bucket]

    def create_part(self, part) -> bool:
        key = (part.bucket, part.number)
        if key in self.part_manifests:
            return False
        self.part_manifests[key] = part
        return True

    def update_part(self, part) -> None:
        self.part_manifests[(part.bucket, part.number)] = part

    def transcribed_in(self, record_key: str) -> str | None:
        return self.transcribed.get(record_key)

    def mark_transcribed(self, record_keys, item_id: str) -> None:
        for key in record_keys:
            self.transcribed[key] = item_id


class MemoryInspectableQueue:
    """A queue with Azure's receive semantics: received messages hide until deleted or released."""

    def __init__(self, name: str) -> None:
        import uuid
        from datetime import UTC, datetime

        self.name = name
        self._uuid = uuid
        self._now = lambda: datetime.now(UTC)
        self.stored: dict[str, dict[str, Any]] = {}  # id -> {text, inserted_at, dequeue_count, hidden, receipt}

    def put(self, text: str, *, inserted_at=None) -> str:
        message_id = str(self._uuid.uuid4())
        self.stored[message_id] = {
            "text": text, "inserted_at": inserted_at or self._now(), "dequeue_count": 0, "hidden": False,
            "receipt": None,
        }
        return message_id

    def send(self, payload: dict[str, Any], *, delay_seconds: int = 0) -> None:
        import json

        self.put(json.dumps(payload))

    def receive(self, max_messages: int, *, visibility_timeout: int):
        from shared.ports import QueuedMessage

        out = []
        for message_id, m in self.stored.items():
            if m["hidden"] or len(out) >= max_messages:
                continue
            m["hidden"], m["receipt"] = True, str(self._uuid.uuid4())
            m["dequeue_count"] += 1
            out.append(QueuedMessage(message_id, m["receipt"], m["inserted_at"], m["dequeue_count"], m["text"]))
        return out

    def delete(self, message) -> None:
        stored = self.stored.get(message.id)
        if stored is not None and stored["receipt"] == message.pop_receipt:
            del self.stored[message.id]

    def release(self, message) -> None:
        stored = self.stored.get(message.id)
        if stored is not None and stored["receipt"] == message.pop_receipt:
            stored["hidden"] = False

    @property
    def visible(self) -> int:
        return sum(not m["hidden"] for m in self.stored.values())


class MemoryWebhookBodyStore:
    """Webhook bodies by name, written once, as the blob adapter keeps them."""

    def __init__(self, *, fail: bool = False) -> None:
        self.bodies: dict[str, bytes] = {}
        self.metadata: dict[str, dict[str, str]] = {}
        self.split: set[str] = set()
        self._fail = fail

    def put(self, name: str, raw: bytes, metadata: dict[str, str]) -> None:
        webhook_body_ref(name, "name")  # as the blob adapter: the name is checked before anything
        if self._fail:
            raise TransientError("storage unreachable (injected)")
        self.bodies.setdefault(name, bytes(raw))
        self.metadata.setdefault(name, dict(metadata))

    def get(self, name: str) -> bytes:
        webhook_body_ref(name, "name")
        try:
            return self.bodies[name]
        except KeyError:
            raise RecordMissing(name) from None

    def split_done(self, name: str) -> bool:
        return webhook_body_ref(name, "name") in self.split

    def mark_split(self, name: str) -> None:
        self.split.add(webhook_body_ref(name, "name"))


class MemoryChatExportUploads:
    """The chat-exports container: blobs by name with an ETag and a last-write time to the second, as
    Blob storage reports them; names are held to the blob adapter's grammar."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.stamps: dict[str, BlobStamp] = {}
        self.clock = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def upload(self, name: str, data: bytes, *, seconds_later: int = 1) -> None:
        from shared.domain.identifiers import check_blob_name

        self.clock += timedelta(seconds=seconds_later)
        self.blobs[check_blob_name(name)] = bytes(data)
        self.stamps[name] = BlobStamp(len(data), hashlib.sha256(data + self.clock.isoformat().encode()).hexdigest(),
                                      self.clock)

    def stamp(self, name: str) -> BlobStamp | None:
        return self.stamps.get(name)

    def read_small(self, name: str, limit: int) -> bytes:
        if name not in self.blobs:
            raise RecordMissing(name)
        if len(self.blobs[name]) > limit:
            raise ValueError(f"over {limit} bytes")
        return self.blobs[name]

    def download_to(self, name: str, target) -> int:
        if name not in self.blobs:
            raise RecordMissing(name)
        return target.write(self.blobs[name])

    def put_report(self, name: str, raw: bytes) -> None:
        self.blobs[name] = bytes(raw)  # the connector's report: no event, no stamp an import reads


class MemoryEvidenceStore:
    """The evidence container as WORM keeps it: each piece once under its SHA-256, never changed."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.writes = 0

    def keep(self, kind: str, raw: bytes, metadata: dict[str, str] | None = None) -> str:
        from shared.domain.evidence import evidence_name

        name = evidence_name(kind, hashlib.sha256(raw).hexdigest())
        if name not in self.blobs:
            self.blobs[name] = bytes(raw)
            self.writes += 1
        return name

    def keep_stream(self, kind: str, sha256: str, chunks, metadata: dict[str, str] | None = None) -> str:
        from shared.adapters.evidence_blobs import EvidenceDigestMismatch
        from shared.domain.evidence import evidence_name

        name = evidence_name(kind, sha256)
        data = b"".join(chunks)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise EvidenceDigestMismatch(f"{kind}: the bytes streamed are not the ones announced; nothing was kept")
        if name not in self.blobs:
            self.blobs[name] = data
            self.writes += 1
        return name

    def read(self, name: str) -> bytes:
        from shared.domain.evidence import parse_evidence_name

        parse_evidence_name(name)
        if name not in self.blobs:
            raise RecordMissing(name)
        return self.blobs[name]

    def exists(self, name: str) -> bool:
        from shared.domain.evidence import parse_evidence_name

        parse_evidence_name(name)
        return name in self.blobs

    def stream(self, name: str):
        data = self.read(name)
        for start in range(0, len(data), 4096):  # in pieces, as a download comes
            yield data[start:start + 4096]

    def names(self, kind: str):
        from shared.domain.evidence import evidence_name

        prefix = evidence_name(kind, "0" * 64)[:-64]
        yield from sorted(name for name in self.blobs if name.startswith(prefix))


class MemoryEvidenceChain:
    """The chain's head with a version that changes on every advance, as a blob's ETag does."""

    def __init__(self) -> None:
        self.link = None
        self.version = 0
        self.sealed: dict[str, tuple[object, str]] = {}

    def head(self):
        return (self.link, str(self.version)) if self.link is not None else (None, None)

    def advance(self, link, expected_version) -> None:
        from shared.ports import ChainConflict

        current = str(self.version) if self.link is not None else None
        if expected_version != current:
            raise ChainConflict("the chain's head moved since it was read")
        self.link = link
        self.version += 1

    def sealed_digest(self, window_id: str):
        found = self.sealed.get(window_id)
        return found[1] if found else None

    def mark_sealed(self, window_id: str, link, summary_digest: str) -> None:
        self.sealed[window_id] = (link, summary_digest)

    def sealed_links(self):
        for window_id, (link, _) in sorted(self.sealed.items()):
            yield window_id, link
