"""The small interfaces the service layer depends on. Adapters implement them.

Keeping these as Protocols lets the service layer run against Azure (blob, queue, Graph), against
local stand-ins (Azurite, .eml files, a directory file) and against in-memory fakes in tests,
without importing any of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:
    # Only the signatures name these: every function module imports the ports, and none of them
    # should pay at cold start for the domain modules it does not use (the webhook parser, for one).
    from shared.domain.ledger import OutcomeEntry, PageEntry, WindowInfo, WindowSummary
    from shared.domain.manifest import Link
    from shared.domain.mapping_table import MappingTable
    from shared.domain.rendered import RenderedItem
    from shared.domain.tally import RecordState
    from shared.domain.transcripts import Bucket, StagedRecord, TranscriptPart
    from shared.domain.whatsapp_cloud import WebhookBatch
    from shared.domain.window import Watermark, Window


class WriteOutcome(StrEnum):
    IMPORTED = "imported"
    SKIPPED_DUPLICATE = "skipped_duplicate"


class MailboxWriter(Protocol):
    """Writes one rendered item into the archive folder of one mailbox, idempotently.

    Writing the same record to the same mailbox again changes nothing and returns
    SKIPPED_DUPLICATE. Raises TransientError (retry later) or MailboxUnavailable (this mailbox
    cannot take mail).
    """

    def write(self, mailbox: str, item: RenderedItem, *, check_existing: bool = True) -> WriteOutcome:
        """``check_existing=False`` skips the writer's own duplicate lookup: the caller knows from
        its idempotency record that no earlier attempt can have written this item."""
        ...


@dataclass(frozen=True)
class ReadBackItem:
    """An archived item as read back from a mailbox: where it was found (a file name, a Graph item
    id: never content) and the digest of what it holds (shared/domain/item_digest.py), or None and
    why when it could not be taken apart."""

    location: str
    digest: str | None
    problem: str | None = None


class ItemReader(Protocol):
    """Reads archived items back for ``verify --online``."""

    def find(self, mailbox: str, record_key: str, item_id: str) -> list[ReadBackItem]:
        """Every item of this record in the mailbox (found by ``item_id``, the id property the writer
        set; the .eml writer's file name carries ``record_key``). Raises TransientError or
        MailboxUnavailable when the mailbox cannot be read."""
        ...


class MailboxDirectory(Protocol):
    """Says whether an address belongs to a user that really has a mailbox, and which one."""

    def has_mailbox(self, address: str) -> bool: ...

    def mailbox_identity(self, address: str) -> str | None:
        """The one name of the mailbox this address reaches (lower-case), or None when there is
        none. A user's sign-in name and mail address differ in many tenants; keyed on the address
        as mapped, one mailbox would be archived into twice."""
        ...


class PhoneDirectory(Protocol):
    """Which directory user has a phone number (Entra ID ``mobilePhone`` / ``businessPhones``)."""

    def mailbox_for_phone(self, e164: str) -> str | None:
        """The identity (lower-case UPN) of the one user with this number, or None: no user, or
        several users share it (ambiguous: a record must never go to a guess)."""
        ...


@dataclass(frozen=True)
class ListingPage:
    items: list[Any]  # raw JSON values as the source sent them: validation happens at import
    next_page_token: str | None


class AttachmentSource(Protocol):
    """Where a record's media is read at import: the vendor's archive (TeleMessage serves its own),
    or the media a push source captured when its message arrived."""

    def open_attachment(self, attachment_id: str, /) -> Iterator[bytes] | None:
        """The attachment's bytes in chunks, or None when the media was never captured."""
        ...


class ArchiveSource(AttachmentSource, Protocol):
    """A pull source, the vendor's archive (TeleMessage): lists captured records window by window
    and serves attachment bytes. Its records are validated into the canonical model at import."""

    def list_page(self, window: Window, page_token: str | None, page_size: int) -> ListingPage: ...


class PushSource(Protocol):
    """A push source (Meta's webhooks; the sends the firm's application reports): one stored body
    in, the canonical records tagged with their source, delivery receipts and what could not become
    a record out. Pure, and it never raises: nothing after it knows the vendor's shapes."""

    def __call__(self, raw: bytes, *, received_at: datetime) -> WebhookBatch: ...


class RecordStore(Protocol):
    """Claim checks: each listed record's raw JSON, kept intact for import, replay and custody."""

    def put(self, record_key: str, raw: bytes) -> str:
        """Store (or overwrite with the same content) and return the reference to queue."""
        ...

    def get(self, reference: str) -> bytes:
        """The stored bytes; raises RecordMissing when there is no such record."""
        ...


class WebhookBodyStore(Protocol):
    """Each signed webhook body exactly as it arrived, stored before it is acknowledged: Meta keeps
    no copy it can send again once it has had a 200."""

    def put(self, name: str, raw: bytes, metadata: dict[str, str]) -> None:
        """Store under ``name`` (content-addressed, so a redelivery finds its bytes already there)."""
        ...

    def get(self, name: str) -> bytes:
        """The stored body; raises RecordMissing when there is none."""
        ...

    def split_done(self, name: str) -> bool:
        """Whether this body's records, problems and page entry were all handed on already."""
        ...

    def mark_split(self, name: str) -> None:
        """Note that they were (a marker beside the body: the body itself is never touched)."""
        ...


class MediaFetcher(Protocol):
    """A push source's media by id (Meta's Graph API): the bytes in chunks, or None when the
    source no longer has them."""

    def open_media(self, media_id: str) -> Iterator[bytes] | None: ...


class CapturedMediaStore(Protocol):
    """A push source's media as captured when its message arrived, read back at import through
    ``open_attachment`` (the ArchiveSource side)."""

    def has(self, media_id: str) -> bool: ...

    def put(self, media_id: str, chunks: Iterator[bytes], metadata: dict[str, str]) -> tuple[int, str]:
        """Stream the bytes in; (size, SHA-256 hex) of what was stored."""
        ...

    def open_attachment(self, media_id: str) -> Iterator[bytes] | None: ...


@dataclass(frozen=True)
class BlobStamp:
    size: int
    etag: str
    modified: datetime


class ChatExportUploads(Protocol):
    """The container custodians' exports are uploaded to (``chat-exports``): each export beside its
    sidecar ``FILE.json``, and the report the connector writes beside them (``FILE.report.json``)."""

    def stamp(self, name: str) -> BlobStamp | None:
        """The blob's size, ETag and last write, or None when there is no such blob."""
        ...

    def read_small(self, name: str, limit: int) -> bytes:
        """The blob's bytes, refusing (ValueError) one over ``limit``; RecordMissing when absent."""
        ...

    def download_to(self, name: str, target: BinaryIO, *, etag: str | None = None) -> int:
        """Stream the blob into ``target``; its size. RecordMissing when absent, or (with ``etag``)
        when it has been replaced since it had that ETag."""
        ...

    def put_report(self, name: str, raw: bytes) -> None:
        """Write (or replace) the report beside the export: the only thing the connector writes there."""
        ...


class EvidenceStore(Protocol):
    """The captured bytes as they arrived, kept under the evidence container's time-based retention
    (WORM): each piece once, named by its SHA-256 (``raw/<kind>/<sha256>``), never overwritten and
    never deleted; the app holds no right to do either there."""

    def keep(self, kind: str, raw: bytes, metadata: dict[str, str] | None = None) -> str:
        """Keep ``raw`` (or find it kept already); its evidence name."""
        ...

    def keep_stream(self, kind: str, sha256: str, chunks: Iterator[bytes],
                    metadata: dict[str, str] | None = None) -> str:
        """Keep bytes too large for memory whose SHA-256 is known: nothing is kept unless the bytes
        streamed have exactly that digest (under WORM a wrong blob could never be removed)."""
        ...

    def read(self, name: str) -> bytes:
        """The kept bytes; RecordMissing when there are none."""
        ...

    def stream(self, name: str) -> Iterator[bytes]:
        """The kept bytes in chunks (a manifest of millions of records is never held whole);
        RecordMissing when there are none."""
        ...

    def exists(self, name: str) -> bool: ...

    def names(self, kind: str) -> Iterator[str]:
        """Every evidence name of this kind, streamed (``verify`` looks for manifests off the chain)."""
        ...


class EvidenceChain(Protocol):
    """Where the chain of manifests ends, and which summary each window was sealed at: small mutable
    state beside the watermark. The manifests themselves are evidence (WORM); a head moved back or
    lost is found by ``verify``, which also lists every manifest kept."""

    def head(self) -> tuple[Link | None, str | None]:
        """The last link and a version tag to pass to ``advance`` ((None, None) before the first)."""
        ...

    def advance(self, link: Link, expected_version: str | None) -> None:
        """Make ``link`` the head only if nobody moved it since ``expected_version`` was read;
        ChainConflict otherwise."""
        ...

    def sealed_digest(self, window_id: str) -> str | None:
        """The summary digest the window's latest manifest was sealed at, or None."""
        ...

    def mark_sealed(self, window_id: str, link: Link, summary_digest: str) -> None: ...

    def sealed_links(self) -> Iterator[tuple[str, Link]]:
        """Each sealed window and its latest link: ``verify`` names the window of a link it cannot read."""
        ...


class ChainConflict(RuntimeError):
    pass


# What a record's poisoning says when its claim check cannot be read whole (gone, or bytes that do
# not match the hash stored with them).
CLAIM_CHECK_UNREADABLE = "the claim check of this record is missing or damaged"


class RecordMissing(LookupError):
    pass


class WorkQueue(Protocol):
    """A durable queue of JSON work items (base64 on the wire, as the Functions host expects)."""

    name: str

    def send(self, payload: dict[str, Any], *, delay_seconds: int = 0) -> None:
        """Enqueue; with a delay the message becomes visible only after that many seconds."""
        ...


@dataclass(frozen=True)
class QueuedMessage:
    """A message received from a queue: hidden from others until deleted or released."""

    id: str
    pop_receipt: str
    inserted_at: datetime
    dequeue_count: int
    text: str


class InspectableQueue(Protocol):
    """A queue an operator works through by hand (the poison queues): receive, then delete or
    release each message. Received messages stay hidden for ``visibility_timeout`` seconds, then
    come back (a new pop receipt, one more dequeue). A lapsed receipt deletes or releases nothing:
    the message belongs to whoever received it after."""

    name: str

    def receive(self, max_messages: int, *, visibility_timeout: int) -> list[QueuedMessage]: ...

    def delete(self, message: QueuedMessage) -> None: ...

    def release(self, message: QueuedMessage) -> None:
        """Make a received message visible again at once."""
        ...

    def send(self, payload: dict[str, Any], *, delay_seconds: int = 0) -> None:
        """Put a message on it that never expires (the connector's own poison messages)."""
        ...


class ConnectorQueue(WorkQueue, InspectableQueue, Protocol):
    """One of the connector's own queues, as the composition root hands it out: work goes on it
    (``send``), an operator works through it by hand (the poison tools move messages between the
    queues), and ``status`` reports how many messages it holds."""

    def depth(self) -> int:
        """About how many messages the queue holds, hidden ones included (0 before it exists)."""
        ...


class WatermarkStore(Protocol):
    """The connector's watermark, updated with optimistic concurrency."""

    def read(self) -> tuple[Watermark | None, str | None]:
        """The watermark and a version tag to pass to ``advance`` (None, None on the first run)."""
        ...

    def advance(self, watermark: Watermark, expected_version: str | None) -> None:
        """Store ``watermark`` only if nobody changed it since ``expected_version`` was read;
        raises WatermarkConflict otherwise."""
        ...


class WatermarkConflict(RuntimeError):
    pass


class WindowLedger(Protocol):
    """Per-window accounting: what listing handed off and how each record ended."""

    def open_window(self, info: WindowInfo) -> None: ...

    def window(self, window_id: str) -> WindowInfo | None: ...

    def record_page(self, window_id: str, entry: PageEntry) -> None: ...

    def page_listed(self, window_id: str, slice_id: str, page: int) -> bool:
        """Whether this page's records and its continuation were all handed off already."""
        ...

    def mark_page_listed(self, window_id: str, slice_id: str, page: int) -> None: ...

    def record_outcome(self, window_id: str, entry: OutcomeEntry) -> None: ...

    def recent_windows(self, limit: int) -> list[WindowInfo]:
        """The latest hand-offs first (``handoff_order``): a backfill of last month handed off today
        is as recent as today's window, watched and reported like it."""
        ...

    def summary(self, window_id: str) -> WindowSummary | None:
        """The window's counts (no rows): constant memory in the table ledger, whatever the size."""
        ...

    def record_states(self, window_id: str) -> Iterator[tuple[str, RecordState]]:
        """Every record the window knows (listed, or with an outcome), streamed."""
        ...

    def record_state(self, window_id: str, record_key: str) -> RecordState: ...

    def records_with_outcome(self, window_id: str, record_keys: Iterable[str]) -> set[str]:
        """Which of these records have an outcome: point reads, or one read of the window."""
        ...

    def pages(self, window_id: str) -> list[PageEntry]:
        """Every page entry, in memory: for inspection and tests, not for a window of millions."""
        ...

    def outcomes(self, window_id: str) -> list[OutcomeEntry]:
        """Every outcome as it came, in memory: for inspection and tests."""
        ...


class MappingSource(Protocol):
    """The current custom mapping table (re-read when the file changes)."""

    def current(self) -> MappingTable: ...


class DeliveryState(StrEnum):
    NEW = "new"  # nobody has started writing this record into this mailbox
    IN_DOUBT = "in_doubt"  # an earlier attempt started and never finished: it may have written
    DONE = "done"


class DeliveryClaim(Protocol):
    state: DeliveryState

    def begin(self) -> None:
        """Durably note that a write is starting (before the write itself)."""
        ...

    def finish(self, outcome: WriteOutcome) -> None:
        """Durably note that the item is in the mailbox."""
        ...


class DeliveryRecords(Protocol):
    """One record per (mailbox, record): the idempotency record that spares duplicate lookups and
    serialises workers that hold the same record at the same moment."""

    def claim(self, mailbox: str, record_key: str) -> AbstractContextManager[DeliveryClaim]:
        """Exclusive across processes while held. Raises TransientError when another worker keeps
        it past a short wait (the message comes back later and finds the item done)."""
        ...


class TranscriptStore(Protocol):
    """Daily transcript mode's state: records staged per chat and day, and the parts composed.

    Parts are the exactly-once unit: ``create_part`` succeeds once per (bucket, number); a part's
    manifest is then only annotated (dropped records, sealed, completed).

    A record staged by several windows (a re-list before its day is composed) is kept as one copy
    per window: ``staged`` returns every copy (``merge_staged`` folds them) and ``unstage`` removes
    only the copies of the windows named, so a copy staged meanwhile stays to be accounted."""

    def stage(self, bucket: Bucket, record: StagedRecord) -> None:
        """Keep the record's copy for each of its windows (the same window again replaces its own)."""
        ...

    def staged_buckets(self) -> list[Bucket]:
        """Every bucket holding at least one staged record."""
        ...

    def staged(self, bucket: Bucket) -> list[StagedRecord]: ...

    def unstage(self, bucket: Bucket, records: Iterable[StagedRecord]) -> None:
        """Remove each record's copies staged by its ``window_ids``, and no other window's."""
        ...

    def parts(self, bucket: Bucket) -> list[TranscriptPart]:
        """The bucket's parts, in number order."""
        ...

    def create_part(self, part: TranscriptPart) -> bool:
        """Store a new part's manifest; False when a part with that number exists already."""
        ...

    def update_part(self, part: TranscriptPart) -> None: ...

    def transcribed_in(self, record_key: str) -> str | None:
        """The item id of the part holding this record once that part is written, else None."""
        ...

    def mark_transcribed(self, record_keys: list[str], item_id: str) -> None: ...


class ReportStore(Protocol):
    """Each window's admin report, as JSON and as CSV, kept for the retention setting."""

    def save(self, window_id: str, json_parts: Iterable[str], csv_parts: Iterable[str], *,
             summary_digest: str = "") -> None:
        """Store both forms, each given as pieces of text read once in order (a report of millions of
        rows is never one string); each replaces its earlier copy only when whole. ``summary_digest``
        is kept with them: what the window's counts were when the report was made."""
        ...

    def stored_size(self, window_id: str, fmt: str) -> int | None:
        """The stored report's size in bytes, or None when there is none."""
        ...

    def summary_digest(self, window_id: str) -> str | None:
        """The digest saved with the stored report, or None when there is none."""
        ...

    def load(self, window_id: str, fmt: str) -> bytes | None:
        """The stored report in ``fmt`` ("json" or "csv"), or None when there is none."""
        ...

    def stored(self) -> list[str]:
        """The window ids with a stored report."""
        ...

    def delete(self, window_id: str) -> None: ...
