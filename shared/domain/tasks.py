"""The queue messages, typed. Each is small JSON: bodies live in blobs (claim check).

A queue message holds at most 64 KB (about 48 KB of payload after base64), so records never
travel on a queue; only their reference does.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.domain import identifiers
from shared.domain.errors import PoisonReason
from shared.domain.json_values import is_json_object
from shared.domain.window import Window

MAX_QUEUE_PAYLOAD = 48 * 1024

# A queue message is input like any other: its ids become blob names, so they are held to their
# grammar here, and a message breaking it is "not one of ours" (kept whole in poison), never a read.
WindowId = Annotated[str, AfterValidator(identifiers.window_id)]
RecordKey = Annotated[str, AfterValidator(identifiers.record_key)]
RecordRef = Annotated[str, AfterValidator(identifiers.record_ref)]
SourceQueue = Literal["listing", "transcripts"]  # where work the host moved to poison came from
# What a claim check holds: a record (JSON, every source's but one), or a vendor's EML as it came.
RecordFormat = Literal["record", "eml"]
MAX_FILE_LABEL = 1024


def _bucket(value: str) -> str:
    if not identifiers.is_bucket(value):
        raise ValueError("not a transcript bucket (<YYYY-MM-DD>/<32 hex digits>)")
    return value


def _file_label(value: str | None) -> str | None:
    # Where an EML came from ("<drop>/<member>"): shown in a header and in reports, never a path read.
    # Names may hold marks and other format characters (a vendor's Hebrew file name); never a control.
    if value is not None and (not value or len(value) > MAX_FILE_LABEL
                              or any(unicodedata.category(c) == "Cc" for c in value)):
        raise ValueError(f"not a file label (1 to {MAX_FILE_LABEL} characters, no control character)")
    return value


def file_label(*parts: str) -> str:
    """A label for a file inside a drop, joined and held to the label's length (middle elided)."""
    label = "/".join(parts)
    if len(label) <= MAX_FILE_LABEL:
        return label
    keep = (MAX_FILE_LABEL - 1) // 2
    return label[:keep] + "…" + label[-keep:]


FileLabel = Annotated[str | None, AfterValidator(_file_label)]


class TaskFormatError(ValueError):
    """A queue message that is not one of ours (or is damaged)."""


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_text(self) -> str:
        text = self.model_dump_json()
        if len(text.encode()) > MAX_QUEUE_PAYLOAD:
            raise ValueError(f"{type(self).__name__} is {len(text.encode())} bytes, over the queue limit")
        return text

    @classmethod
    def from_text(cls, text: str | bytes) -> Any:
        try:
            return cls.model_validate_json(text)
        except ValidationError as error:
            fields = ", ".join(".".join(map(str, e["loc"])) or "(message)" for e in error.errors())
            raise TaskFormatError(f"not a {cls.__name__}: problems at {fields}") from None


SEEN_TOKENS = 32
# 100,000 pages of 200 records: 20 million records in one slice of a window, far past any tenant.
MAX_PAGES_PER_SLICE = 100_000


def token_digest(page_token: str) -> str:
    return hashlib.sha256(page_token.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class ListingTask(_Message):
    """List one page of one slice of a window."""

    kind: str = Field(default="listing", pattern="^listing$")
    window_id: WindowId
    slice_start: datetime
    slice_end: datetime
    page: int = Field(default=0, ge=0)
    page_token: str | None = None
    deferrals: int = Field(default=0, ge=0)  # times handed back to wait out the source's Retry-After
    # Digests of the page tokens this slice has followed (the latest few): a token seen again is a
    # loop in the source's paging, which would otherwise list the same pages for ever.
    seen_tokens: Annotated[list[Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]],
                           Field(max_length=SEEN_TOKENS)] = []

    def deferred(self) -> ListingTask:
        return self.model_copy(update={"deferrals": self.deferrals + 1})

    def loops_back(self, page_token: str) -> bool:
        """Whether the source's next token is one this slice has followed already (or the page
        count is past anything a real slice has)."""
        seen = {*self.seen_tokens, *([token_digest(self.page_token)] if self.page_token else [])}
        return token_digest(page_token) in seen or self.page >= MAX_PAGES_PER_SLICE

    @classmethod
    def first_page(cls, window_id: str, slice_: Window) -> ListingTask:
        return cls(window_id=window_id, slice_start=slice_.start, slice_end=slice_.end)

    @property
    def slice(self) -> Window:
        return Window(self.slice_start, self.slice_end)

    def next_page(self, page_token: str) -> ListingTask:
        seen = [*self.seen_tokens, token_digest(self.page_token)] if self.page_token else list(self.seen_tokens)
        return self.model_copy(update={
            "page": self.page + 1, "page_token": page_token, "deferrals": 0, "seen_tokens": seen[-SEEN_TOKENS:],
        })


class ItemTask(_Message):
    """Import one record, stored at ``record_ref``."""

    kind: str = Field(default="item", pattern="^item$")
    window_id: WindowId
    record_key: RecordKey
    record_ref: RecordRef
    message_id: str | None = None
    # Times this item was handed back to the queue to wait out a throttle (Retry-After).
    deferrals: int = Field(default=0, ge=0)
    # Set on a replay from poison: when the record first failed, and how often it was replayed,
    # so a record that fails again keeps its history.
    first_failed_at: datetime | None = None
    replays: int = Field(default=0, ge=0)
    # A vendor's EML is imported as it is (shared/service/eml_import.py), not read as a record.
    format: RecordFormat = "record"
    file: FileLabel = None

    def deferred(self) -> ItemTask:
        return self.model_copy(update={"deferrals": self.deferrals + 1})


class WebhookBodyTask(_Message):
    """Turn one stored webhook body into records: handed off by the webhook once the body is stored."""

    kind: str = Field(default="webhook_body", pattern="^webhook_body$")
    body_ref: Annotated[str, AfterValidator(identifiers.webhook_body_ref)]
    source: str = Field(pattern="^whatsapp-cloud$")
    received_at: datetime


def _upload_name(value: str) -> str:
    identifiers.check_blob_name(value)
    return value


class ChatExportReportTask(_Message):
    """Write an imported chat export's report again once its records have their outcomes: the
    upload's first report says what was handed off; this one, what became of it."""

    kind: str = Field(default="chat_export_report", pattern="^chat_export_report$")
    export_name: Annotated[str, AfterValidator(_upload_name)]
    window_id: WindowId
    export_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    checks: int = Field(default=0, ge=0)


class EmlDropTask(_Message):
    """Judge one drop in the EML drop container and hand its EMLs off (or poison it whole): queued by
    the blob trigger, and sent again by a replay from poison (``accept_mismatch`` set when the
    operator accepts a manifest that does not hold)."""

    kind: str = Field(default="eml_drop", pattern="^eml_drop$")
    drop_name: Annotated[str, AfterValidator(_upload_name)]
    etag: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
    accept_mismatch: bool = False
    replays: int = Field(default=0, ge=0)


class EmlDropReportTask(_Message):
    """Write a drop's report again once its EMLs have their outcomes (as ``ChatExportReportTask``)."""

    kind: str = Field(default="eml_drop_report", pattern="^eml_drop_report$")
    drop_name: Annotated[str, AfterValidator(_upload_name)]
    window_id: WindowId
    drop_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    checks: int = Field(default=0, ge=0)


MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # Meta's media ids: digits, in practice
MediaId = Annotated[str, Field(pattern=rf"^{MEDIA_ID.pattern}$")]
MAX_MEDIA_PER_CAPTURE = 64


def capturable_media_ids(record: dict[str, Any]) -> list[str]:
    """The media ids of a record (its wire form) to fetch from Meta: only ids of Meta's form, at most
    ``MAX_MEDIA_PER_CAPTURE``. Any other is archived as not captured: one odd id must not hold back
    the message, nor one message hold a capture for long."""
    attachments: Iterable[object] = record.get("attachments", [])
    return [media_id for a in attachments if is_json_object(a)
            and isinstance(media_id := a.get("mediaId"), str) and MEDIA_ID.fullmatch(media_id)][:MAX_MEDIA_PER_CAPTURE]


class MediaCaptureTask(_Message):
    """Fetch a webhook message's media from Meta now (its ids expire in 7 days, its links in
    minutes), then hand the record on to import as ``item`` says."""

    kind: str = Field(default="media_capture", pattern="^media_capture$")
    item: ItemTask
    media_ids: Annotated[list[MediaId], Field(min_length=1, max_length=MAX_MEDIA_PER_CAPTURE)]


class TranscriptsDueTask(_Message):
    """After a window's hand-off: once its records are staged, compose every day that is over."""

    kind: str = Field(default="transcripts_due", pattern="^transcripts_due$")
    window_id: WindowId
    window_end: datetime  # capture time handed off up to here: days ending before it are over
    handed_off_at: datetime
    deferrals: int = Field(default=0, ge=0)

    def deferred(self) -> TranscriptsDueTask:
        return self.model_copy(update={"deferrals": self.deferrals + 1})


class TranscriptTask(_Message):
    """Compose the transcripts of one chat on one day (a bucket: "<day>/<chat id>")."""

    kind: str = Field(default="transcript", pattern="^transcript$")
    bucket: Annotated[str, AfterValidator(_bucket)]


class PoisonMessage(_Message):
    """A record that cannot be imported as things stand, with why. Its blob is kept for replay."""

    kind: str = Field(default="poison", pattern="^poison$")
    reason: PoisonReason
    detail: str
    window_id: WindowId | None = None
    record_key: RecordKey | None = None
    record_ref: RecordRef | None = None
    message_id: str | None = None
    failed_at: datetime
    first_failed_at: datetime | None = None
    attempts: int = 1
    replays: int = 0
    # For work the host moved after exhausted retries (a listing page, a transcript task): the
    # queue it came from, so a replay can put it back there as it was.
    source_queue: SourceQueue | None = None
    # The queue message as received when it was not one of ours: kept so nothing is lost.
    original_message: str | None = None
    # An EML's claim check is imported as an EML: a replay must say so.
    record_format: RecordFormat = "record"
    file: FileLabel = None

    @field_validator("detail", "original_message")
    @classmethod
    def _fit_on_a_queue(cls, value: str | None) -> str | None:
        # A poison message must itself fit on a queue (48 KB of payload), or poisoning would fail
        # and the reason would be lost. Our own messages are small; anything longer is foreign.
        limit = MAX_QUEUE_PAYLOAD // 3
        if value is not None and len(value.encode()) > limit:
            return value.encode()[:limit].decode("utf-8", errors="ignore") + " …[truncated]"
        return value

    def moved_work(self) -> dict[str, Any] | None:
        """The work the host moved here, as it goes back on ``source_queue``: only when it still
        reads as that queue's own message (a damaged or forged one stays in poison, kept whole)."""
        if self.source_queue is None or self.original_message is None:
            return None
        try:
            kind = json.loads(self.original_message).get("kind")
        except (ValueError, AttributeError):
            return None
        if kind not in _MOVED_WORK or _MOVED_WORK[kind][1] != self.source_queue:
            return None
        try:
            return _MOVED_WORK[kind][0].from_text(self.original_message).model_dump(mode="json")
        except TaskFormatError:
            return None

    def item_task(self) -> ItemTask | None:
        """The work item to replay, when the record reference is known."""
        if not (self.window_id and self.record_key and self.record_ref):
            return None
        return ItemTask(
            window_id=self.window_id, record_key=self.record_key,
            record_ref=self.record_ref, message_id=self.message_id,
            first_failed_at=self.first_failed_at or self.failed_at, replays=self.replays + 1,
            format=self.record_format, file=self.file,
        )

    def eml_drop(self, *, accept_mismatch: bool = False) -> EmlDropTask | None:
        """The drop to judge again, when this is a drop poisoned whole (``manifest_mismatch``); with
        ``accept_mismatch`` a manifest that still does not hold is imported anyway."""
        if self.source_queue != "listing" or self.original_message is None:
            return None
        try:
            task = EmlDropTask.from_text(self.original_message)
        except TaskFormatError:
            return None
        return task.model_copy(update={"replays": task.replays + 1,
                                       "accept_mismatch": task.accept_mismatch or accept_mismatch})


_MOVED_WORK: dict[str, tuple[type[_Message], SourceQueue, str]] = {
    "listing": (ListingTask, "listing", "a listing page"),
    "webhook_body": (WebhookBodyTask, "listing", "a webhook body"),
    "media_capture": (MediaCaptureTask, "listing", "a webhook message's media capture"),
    "transcript": (TranscriptTask, "transcripts", "a chat-day transcript"),
    "transcripts_due": (TranscriptsDueTask, "transcripts", "the transcript dispatch of a window"),
    "eml_drop": (EmlDropTask, "listing", "a vendor's EML drop"),
    "eml_drop_report": (EmlDropReportTask, "listing", "an EML drop's report"),
    "chat_export_report": (ChatExportReportTask, "listing", "a chat export's report"),
}


type ListingWork = (ListingTask | WebhookBodyTask | MediaCaptureTask | ChatExportReportTask | EmlDropTask
                   | EmlDropReportTask)


def read_listing_work(text: str) -> ListingWork:
    """A message of the listing queue: a TeleMessage page, a stored webhook body, the media of a
    webhook message to capture, a chat export's report to finish, a vendor's EML drop to judge, or
    its report to finish."""
    try:
        kind = json.loads(text).get("kind")
    except (ValueError, AttributeError):
        kind = None
    if kind == "webhook_body":
        return WebhookBodyTask.from_text(text)
    if kind == "media_capture":
        return MediaCaptureTask.from_text(text)
    if kind == "chat_export_report":
        return ChatExportReportTask.from_text(text)
    if kind == "eml_drop":
        return EmlDropTask.from_text(text)
    if kind == "eml_drop_report":
        return EmlDropReportTask.from_text(text)
    return ListingTask.from_text(text)


def read_poison_queue_message(text: str, *, inserted_at: datetime, dequeue_count: int) -> PoisonMessage:
    """Our own poison message, or work the host moved to ``<queue>-poison`` after exhausted retries
    (an item, a listing page, a transcript task), or a message that is none of ours."""
    try:
        kind = json.loads(text).get("kind")
    except (ValueError, AttributeError):
        kind = None
    try:
        if kind == "poison":
            return PoisonMessage.from_text(text)
        if kind == "item":
            task = ItemTask.from_text(text)
            return PoisonMessage(
                reason=PoisonReason.RETRIES_EXHAUSTED,
                detail="the host gave up after maxDequeueCount failed attempts",
                window_id=task.window_id, record_key=task.record_key, record_ref=task.record_ref,
                message_id=task.message_id, failed_at=inserted_at, attempts=dequeue_count,
                first_failed_at=task.first_failed_at, replays=task.replays,
                record_format=task.format, file=task.file,
            )
        if kind in _MOVED_WORK:
            model, queue, what = _MOVED_WORK[kind]
            task = model.from_text(text)
            # A media capture carries its record: named here, the record is accounted in its window
            # (retries_exhausted), while a replay still sends the capture back, not the bare record
            # (no record_ref, so no item task is made of it).
            item = task.item if isinstance(task, MediaCaptureTask) else None
            return PoisonMessage(
                reason=PoisonReason.RETRIES_EXHAUSTED,
                detail=f"{what}: the host gave up after maxDequeueCount failed attempts",
                window_id=item.window_id if item else getattr(task, "window_id", None),
                record_key=item.record_key if item else None, message_id=item.message_id if item else None,
                failed_at=inserted_at, attempts=dequeue_count, original_message=text, source_queue=queue,
            )
    except TaskFormatError:
        pass
    return PoisonMessage(
        reason=PoisonReason.INVALID_ITEM, detail="not a message of this connector",
        failed_at=inserted_at, original_message=text,
    )
