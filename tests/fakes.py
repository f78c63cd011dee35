"""In-memory implementations of shared.ports with real behaviour (not mocks): they store, version,
append and refuse exactly as the Azure adapters do, so service tests exercise real semantics."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO

from shared.domain.errors import TransientError
from shared.domain.identifiers import check_blob_name, is_window_id, webhook_body_ref
from shared.domain.ledger import OutcomeEntry, PageEntry, WindowInfo, handoff_order
from shared.domain.mapping_table import MappingTable, parse_mapping
from shared.domain.rendered import RenderedItem
from shared.domain.tally import ReadsFromEntries
from shared.domain.tasks import MAX_QUEUE_PAYLOAD
from shared.domain.window import Watermark, Window
from shared.ports import (
    BlobStamp,
    ChainConflict,
    DeliveryClaim,
    DeliveryState,
    ListingPage,
    QueuedMessage,
    RecordMissing,
    WatermarkConflict,
    WriteOutcome,
)

if TYPE_CHECKING:
    from shared.domain.manifest import Link
    from shared.domain.transcripts import Bucket, StagedRecord, TranscriptPart


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
        # What a receiver gets is the JSON on the wire, refused as the queue adapter refuses it.
        self.messages.append(json.loads(_queue_text(payload)))
        self.delays.append(delay_seconds)

    def depth(self) -> int:
        return len(self.messages)


def _queue_text(payload: dict[str, Any]) -> str:
    # As StorageQueue.send: compact JSON (TypeError for what JSON cannot hold), held to the size limit.
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode()) > MAX_QUEUE_PAYLOAD:
        raise ValueError(f"queue message of {len(text.encode())} bytes is over the limit")
    return text


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
        self.states: dict[tuple[str, str], str] = {}
        self._locks: dict[tuple[str, str], Any] = defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self._wait = wait_seconds

    def claim(self, mailbox: str, record_key: str) -> AbstractContextManager[DeliveryClaim]:
        from contextlib import contextmanager

        key = (mailbox, record_key)
        states = self.states
        mapping = {"new": DeliveryState.NEW, "writing": DeliveryState.IN_DOUBT, "done": DeliveryState.DONE}

        class Claim:
            def __init__(self) -> None:
                self.state: DeliveryState = mapping[states.get(key, "new")]

            def begin(self) -> None:
                states[key] = "writing"

            def finish(self, outcome: WriteOutcome) -> None:
                states[key] = "done"

        @contextmanager
        def held() -> Iterator[DeliveryClaim]:
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
        # One copy per (record key, window), as the blob store keeps them.
        self.staged_records: dict[Bucket, dict[tuple[str, str], StagedRecord]] = defaultdict(dict)
        self.part_manifests: dict[tuple[Bucket, int], TranscriptPart] = {}
        self.transcribed: dict[str, str] = {}

    def stage(self, bucket: Bucket, record: StagedRecord) -> None:
        from dataclasses import replace

        for window in record.window_ids:
            self.staged_records[bucket][(record.record_key, window)] = replace(
                record, window_id=window, relisted_by=(),
            )

    def staged_buckets(self) -> list[Bucket]:
        return sorted((b for b, records in self.staged_records.items() if records), key=lambda b: b.name)

    def staged(self, bucket: Bucket) -> list[StagedRecord]:
        return list(self.staged_records[bucket].values())

    def unstage(self, bucket: Bucket, records: Iterable[StagedRecord]) -> None:
        for record in records:
            for window in record.window_ids:
                self.staged_records[bucket].pop((record.record_key, window), None)

    def parts(self, bucket: Bucket) -> list[TranscriptPart]:
        return [p for (b, _), p in sorted(self.part_manifests.items(), key=lambda kv: kv[0][1]) if b == bucket]

    def create_part(self, part: TranscriptPart) -> bool:
        key = (part.bucket, part.number)
        if key in self.part_manifests:
            return False
        self.part_manifests[key] = part
        return True

    def update_part(self, part: TranscriptPart) -> None:
        self.part_manifests[(part.bucket, part.number)] = part

    def transcribed_in(self, record_key: str) -> str | None:
        return self.transcribed.get(record_key)

    def mark_transcribed(self, record_keys: list[str], item_id: str) -> None:
        for key in record_keys:
            self.transcribed[key] = item_id


class MemoryInspectableQueue:
    """A queue with Azure's receive semantics: a received message hides for its visibility timeout
    (then comes back, with a new pop receipt and one more dequeue), until deleted or released; a
    message sent with a delay hides until it is due; a lapsed receipt deletes or releases nothing
    (the message is someone else's now). ``clock`` is the queue's time (real time by default)."""

    def __init__(self, name: str, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        import uuid

        self.name = name
        self._uuid = uuid
        self._now = clock
        # id -> {text, inserted_at, dequeue_count, visible_at, receipt}
        self.stored: dict[str, dict[str, Any]] = {}

    def put(self, text: str, *, inserted_at: datetime | None = None, delay_seconds: int = 0) -> str:
        """A message as it is on the wire (what the host moves to poison need not be our JSON)."""
        message_id = str(self._uuid.uuid4())
        now = self._now()
        self.stored[message_id] = {
            "text": text, "inserted_at": inserted_at or now, "dequeue_count": 0,
            "visible_at": now + timedelta(seconds=delay_seconds), "receipt": None,
        }
        return message_id

    def send(self, payload: dict[str, Any], *, delay_seconds: int = 0) -> None:
        self.put(_queue_text(payload), delay_seconds=delay_seconds)

    def receive(self, max_messages: int, *, visibility_timeout: int) -> list[QueuedMessage]:
        now = self._now()
        out: list[QueuedMessage] = []
        for message_id, m in self.stored.items():
            if m["visible_at"] > now or len(out) >= max_messages:
                continue
            m["visible_at"] = now + timedelta(seconds=visibility_timeout)
            m["receipt"] = str(self._uuid.uuid4())
            m["dequeue_count"] += 1
            out.append(QueuedMessage(message_id, m["receipt"], m["inserted_at"], m["dequeue_count"], m["text"]))
        return out

    def _held(self, message: QueuedMessage) -> dict[str, Any] | None:
        stored = self.stored.get(message.id)
        return stored if stored is not None and stored["receipt"] == message.pop_receipt else None

    def delete(self, message: QueuedMessage) -> None:
        if self._held(message) is not None:
            del self.stored[message.id]

    def release(self, message: QueuedMessage) -> None:
        stored = self._held(message)
        if stored is not None:
            stored["visible_at"] = self._now()

    def depth(self) -> int:
        return len(self.stored)  # as Azure's approximate count: hidden messages too

    @property
    def visible(self) -> int:
        now = self._now()
        return sum(m["visible_at"] <= now for m in self.stored.values())


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
    Blob storage reports them; every name is held to the blob adapter's grammar before anything."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.stamps: dict[str, BlobStamp] = {}
        self.clock = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def upload(self, name: str, data: bytes, *, seconds_later: int = 1) -> None:
        self.clock += timedelta(seconds=seconds_later)
        self._write(name, data)

    def _write(self, name: str, data: bytes) -> None:
        self.blobs[check_blob_name(name)] = bytes(data)
        self.stamps[name] = BlobStamp(len(data), hashlib.sha256(data + self.clock.isoformat().encode()).hexdigest(),
                                      self.clock)

    def _read(self, name: str) -> bytes:
        try:
            return self.blobs[check_blob_name(name)]
        except KeyError:
            raise RecordMissing(name) from None

    def stamp(self, name: str) -> BlobStamp | None:
        return self.stamps.get(check_blob_name(name))

    def read_small(self, name: str, limit: int) -> bytes:
        data = self._read(name)
        if len(data) > limit:
            raise ValueError(f"over {limit} bytes")
        return data

    def download_to(self, name: str, target: BinaryIO, *, etag: str | None = None) -> int:
        data = self._read(name)
        if etag is not None and self.stamps[name].etag != etag:
            raise RecordMissing(name)  # replaced since: the blob adapter's If-Match answers 412
        return target.write(data)

    def put_report(self, name: str, raw: bytes) -> None:
        self._write(name, raw)  # a blob like any other: it has its own stamp (no import reads it)


class MemoryCapturedMedia:
    """A push source's captured media by id, as the blob adapter keeps it: replaced whole by a new
    capture, and a capture that breaks off leaves nothing that reads as captured."""

    def __init__(self) -> None:
        self.media: dict[str, bytes] = {}
        self.metadata: dict[str, dict[str, str]] = {}

    def has(self, media_id: str) -> bool:
        return media_id in self.media

    def put(self, media_id: str, chunks: Iterator[bytes], metadata: dict[str, str]) -> tuple[int, str]:
        data = b"".join(chunks)  # an error while reading leaves the earlier state untouched
        self.media[media_id], self.metadata[media_id] = data, dict(metadata)
        return len(data), hashlib.sha256(data).hexdigest()

    def open_attachment(self, media_id: str) -> Iterator[bytes] | None:
        data = self.media.get(media_id)
        if data is None:
            return None
        return iter([data[i: i + 65536] for i in range(0, len(data), 65536)])


class MemoryReportStore:
    """Admin reports as the blob store keeps them: the CSV with a UTF-8 BOM (for Excel), the summary
    digest on the JSON, each form replaced only once its new copy is whole; only window ids listed."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.digests: dict[str, str] = {}

    def save(self, window_id: str, json_parts: Iterable[str], csv_parts: Iterable[str], *,
             summary_digest: str = "") -> None:
        csv_text = "\ufeff" + "".join(csv_parts)  # the CSV first, then the JSON, as the blob store
        self.blobs[f"{window_id}.csv"] = csv_text.encode("utf-8")
        self.blobs[f"{window_id}.json"] = "".join(json_parts).encode("utf-8")
        if summary_digest:
            self.digests[window_id] = summary_digest
        else:
            self.digests.pop(window_id, None)

    def stored_size(self, window_id: str, fmt: str) -> int | None:
        blob = self.blobs.get(f"{window_id}.{fmt}")
        return None if blob is None else len(blob)

    def summary_digest(self, window_id: str) -> str | None:
        return self.digests.get(window_id) if f"{window_id}.json" in self.blobs else None

    def load(self, window_id: str, fmt: str) -> bytes | None:
        return self.blobs.get(f"{window_id}.{fmt}")

    def stored(self) -> list[str]:
        return sorted({n.rsplit(".", 1)[0] for n in self.blobs if is_window_id(n.rsplit(".", 1)[0])})

    def delete(self, window_id: str) -> None:
        for fmt in ("json", "csv"):
            self.blobs.pop(f"{window_id}.{fmt}", None)
        self.digests.pop(window_id, None)


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

    def keep_stream(self, kind: str, sha256: str, chunks: Iterator[bytes],
                    metadata: dict[str, str] | None = None) -> str:
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

    def stream(self, name: str) -> Iterator[bytes]:
        data = self.read(name)
        for start in range(0, len(data), 4096):  # in pieces, as a download comes
            yield data[start:start + 4096]

    def names(self, kind: str) -> Iterator[str]:
        from shared.domain.evidence import evidence_name

        prefix = evidence_name(kind, "0" * 64)[:-64]
        yield from sorted(name for name in self.blobs if name.startswith(prefix))


class MemoryEvidenceChain:
    """The chain's head with a version that changes on every advance, as a blob's ETag does."""

    def __init__(self) -> None:
        self.link: Link | None = None
        self.version = 0
        self.sealed: dict[str, tuple[Link, str]] = {}

    def head(self) -> tuple[Link | None, str | None]:
        return (self.link, str(self.version)) if self.link is not None else (None, None)

    def advance(self, link: Link, expected_version: str | None) -> None:
        current = str(self.version) if self.link is not None else None
        if expected_version != current:
            raise ChainConflict("the chain's head moved since it was read")
        self.link = link
        self.version += 1

    def sealed_digest(self, window_id: str) -> str | None:
        found = self.sealed.get(window_id)
        return found[1] if found else None

    def mark_sealed(self, window_id: str, link: Link, summary_digest: str) -> None:
        self.sealed[window_id] = (link, summary_digest)

    def sealed_links(self) -> Iterator[tuple[str, Link]]:
        for window_id, (link, _) in sorted(self.sealed.items()):
            yield window_id, link


if TYPE_CHECKING:
    # Each fake is held to the port it stands in for: pyright checks this file (pyproject's
    # [tool.pyright] include, `make lint`), so a fake can no longer drift from its port unseen.
    from shared.ports import (
        ArchiveSource,
        CapturedMediaStore,
        ChatExportUploads,
        DeliveryRecords,
        EvidenceChain,
        EvidenceStore,
        InspectableQueue,
        MailboxDirectory,
        MailboxWriter,
        MappingSource,
        RecordStore,
        ReportStore,
        TranscriptStore,
        WatermarkStore,
        WebhookBodyStore,
        WindowLedger,
        WorkQueue,
    )

    _record_store: RecordStore = MemoryRecordStore()
    _work_queue: WorkQueue = MemoryQueue()
    _inspectable_queue: InspectableQueue = MemoryInspectableQueue("poison")
    _inspected_work_queue: WorkQueue = MemoryInspectableQueue("poison")
    _watermarks: WatermarkStore = MemoryWatermarkStore()
    _ledger: WindowLedger = MemoryLedger()
    _mapping: MappingSource = StaticMapping()
    _directory: MailboxDirectory = SetDirectory()
    _writer: MailboxWriter = MemoryMailboxes()
    _source: ArchiveSource = MemorySource([])
    _deliveries: DeliveryRecords = MemoryDeliveryRecords()
    _transcripts: TranscriptStore = MemoryTranscriptStore()
    _bodies: WebhookBodyStore = MemoryWebhookBodyStore()
    _uploads: ChatExportUploads = MemoryChatExportUploads()
    _captured_media: CapturedMediaStore = MemoryCapturedMedia()
    _reports: ReportStore = MemoryReportStore()
    _evidence: EvidenceStore = MemoryEvidenceStore()
    _chain: EvidenceChain = MemoryEvidenceChain()
