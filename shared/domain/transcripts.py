"""Daily transcripts: one archive item per chat, per day, per mailbox, holding that day's records.

The unit of exactly-once here is the *part*: a frozen list of records of one chat and one day.
A part is written down (its manifest) before anything reaches a mailbox, so a crash or a second
worker re-renders the same part, under the same item id, and the mailbox writer skips it. Records
that arrive after a day's part was composed (captured late, replayed from poison) form the next
part of that day; a record in a part's transcript is never put in another (one dropped from a
part, poisoned, is not in its transcript: replayed, it goes into the next part).

A record can be listed by several windows before its day is composed (a re-list, a retried run):
each window stages its own copy, and the copies merge into one staged record that names every
window. The transcript holds the record once; the first window to list it (in hand-off order)
accounts it as the transcript's outcome, every later one as a skipped duplicate, as a later window
of the non-transcript path finds the item in the mailbox already.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.domain.ledger import MappingRule, handoff_order
from shared.domain.records import ArchiveRecord, epoch_ms_to_datetime
from shared.domain.window import Window

# Bytes per record in a part besides its attachments: the facts block in two bodies, generously.
RECORD_OVERHEAD_BYTES = 4096


def chat_id(chat_key: str) -> str:
    """A storage- and header-safe id for a chat (chat keys hold phone numbers: never in blob names)."""
    return hashlib.sha256(chat_key.encode("utf-8")).hexdigest()[:32]


def transcript_day(record: ArchiveRecord, zone: ZoneInfo) -> date:
    """The calendar day, in the transcript's time zone, on which the record was sent."""
    return record.sent_at.astimezone(zone).date()


def day_window(day: date, zone: ZoneInfo) -> Window:
    """The day as a UTC range; 23 or 25 hours long on daylight-saving days."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return Window(start.astimezone(UTC), end.astimezone(UTC))


@dataclass(frozen=True)
class StagedMailbox:
    address: str
    rule: MappingRule


@dataclass(frozen=True)
class StagedRecord:
    """A record validated and mapped, waiting for its day's transcript. The record itself stays in
    its claim-check blob; this says where, which windows account for it, and where it goes.

    ``window_id`` is the first window that listed the record (it accounts for the transcript's
    outcome); ``relisted_by`` the later windows that listed it before its day was composed (each
    accounts for it as a skipped duplicate). A store keeps one copy per window; ``merge_staged``
    folds them."""

    record_key: str
    record_ref: str
    window_id: str
    message_id: str
    message_time: int  # epoch ms: orders the transcript
    mailboxes: tuple[StagedMailbox, ...]
    estimated_bytes: int  # of this record in a rendered transcript, for splitting parts
    relisted_by: tuple[str, ...] = ()  # later windows, in hand-off order

    @property
    def window_ids(self) -> tuple[str, ...]:
        """Every window that listed the record, the one accounting for the transcript first."""
        return (self.window_id, *self.relisted_by)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "record_key": self.record_key,
            "record_ref": self.record_ref,
            "window_id": self.window_id,
            "message_id": self.message_id,
            "message_time": self.message_time,
            "mailboxes": [{"address": m.address, "rule": m.rule.value} for m in self.mailboxes],
            "estimated_bytes": self.estimated_bytes,
        }
        if self.relisted_by:  # a record listed once is stored as it always was
            data["relisted_by"] = list(self.relisted_by)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StagedRecord:
        return cls(
            record_key=data["record_key"],
            record_ref=data["record_ref"],
            window_id=data["window_id"],
            message_id=data["message_id"],
            message_time=int(data["message_time"]),
            mailboxes=tuple(StagedMailbox(m["address"], MappingRule(m["rule"])) for m in data["mailboxes"]),
            estimated_bytes=int(data["estimated_bytes"]),
            relisted_by=tuple(str(w) for w in data.get("relisted_by", ())),
        )


def merge_staged(records: Iterable[StagedRecord]) -> list[StagedRecord]:
    """One staged record per record key from the copies the windows that listed it staged.

    The windows are ordered by hand-off: the first accounts for the transcript's outcome. The
    mailboxes are the union of every copy's (a mapping may have changed between two listings),
    each with the rule of the first window that mapped it."""
    copies: dict[str, list[StagedRecord]] = {}
    for record in records:
        copies.setdefault(record.record_key, []).append(record)
    merged: list[StagedRecord] = []
    for group in copies.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        group.sort(key=lambda r: handoff_order(r.window_id))
        windows = sorted({w for r in group for w in r.window_ids}, key=handoff_order)
        mailboxes: dict[str, StagedMailbox] = {}
        for record in group:
            for mailbox in record.mailboxes:
                mailboxes.setdefault(mailbox.address, mailbox)
        merged.append(replace(
            group[0], window_id=windows[0], relisted_by=tuple(windows[1:]), mailboxes=tuple(mailboxes.values()),
        ))
    return merged


@dataclass(frozen=True)
class Bucket:
    """All transcripts of one chat on one day."""

    day: date
    chat_id: str

    @property
    def name(self) -> str:
        return f"{self.day.isoformat()}/{self.chat_id}"

    @classmethod
    def parse(cls, name: str) -> Bucket:
        day, _, chat = name.partition("/")
        return cls(date.fromisoformat(day), chat)


@dataclass(frozen=True)
class Dropped:
    reason: str  # a PoisonReason value
    detail: str


@dataclass(frozen=True)
class TranscriptPart:
    """The manifest of one part: written once before any mailbox write, then only annotated.

    ``dropped``: records of the part that could not be rendered (poisoned with a reason), fixed
    before the first write so every attempt renders the same item. ``sealed``: a write may have
    happened; from then on the record set can no longer change. ``completed``: every mailbox has
    it and every record is accounted for in its window.
    """

    bucket: Bucket
    number: int  # 1, 2, ... in the order the parts were composed
    records: tuple[StagedRecord, ...]
    dropped: dict[str, Dropped] = field(default_factory=dict[str, Dropped])
    sealed: bool = False
    completed: bool = False

    @property
    def item_id(self) -> str:
        """The archive item id shared by this part's copies in every mailbox."""
        return f"transcript:{self.bucket.day.isoformat()}:{self.bucket.chat_id}:part{self.number}"

    @property
    def kept(self) -> tuple[StagedRecord, ...]:
        return tuple(r for r in self.records if r.record_key not in self.dropped)

    def mailboxes(self) -> list[str]:
        seen: dict[str, None] = {}
        for record in self.kept:
            for mailbox in record.mailboxes:
                seen.setdefault(mailbox.address)
        return list(seen)

    def records_for(self, mailbox: str) -> tuple[StagedRecord, ...]:
        return tuple(r for r in self.kept if any(m.address == mailbox for m in r.mailboxes))

    def with_dropped(self, dropped: dict[str, Dropped]) -> TranscriptPart:
        return replace(self, dropped={**self.dropped, **dropped})

    def to_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket.name,
            "number": self.number,
            "records": [r.to_json() for r in self.records],
            "dropped": {key: {"reason": d.reason, "detail": d.detail} for key, d in self.dropped.items()},
            "sealed": self.sealed,
            "completed": self.completed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TranscriptPart:
        return cls(
            bucket=Bucket.parse(data["bucket"]),
            number=int(data["number"]),
            records=tuple(StagedRecord.from_json(r) for r in data["records"]),
            dropped={key: Dropped(d["reason"], d["detail"]) for key, d in data.get("dropped", {}).items()},
            sealed=bool(data.get("sealed", False)),
            completed=bool(data.get("completed", False)),
        )


def order_records(records: Iterable[StagedRecord]) -> list[StagedRecord]:
    """Transcript order: send time, then record id (stable when two share a millisecond)."""
    return sorted(records, key=lambda r: (r.message_time, r.message_id))


def plan_parts(
    bucket: Bucket, staged: Sequence[StagedRecord], existing: Sequence[TranscriptPart], *, max_bytes: int,
) -> tuple[list[TranscriptPart], list[StagedRecord]]:
    """New parts for the staged records no existing part holds, each under ``max_bytes``.

    Returns the new parts and the staged records that are already in a part (a re-listed day):
    those are duplicates, never transcribed twice. A record dropped from a part (poisoned) is not in
    its transcript: staged again (replayed, re-listed) it goes into a new part. Copies of one record
    staged by several windows are merged first (``merge_staged``).
    """
    staged = merge_staged(staged)
    in_parts = {r.record_key for part in existing for r in part.kept}
    fresh = [r for r in order_records(staged) if r.record_key not in in_parts]
    repeats = [r for r in staged if r.record_key in in_parts]
    number = max((p.number for p in existing), default=0)
    parts: list[TranscriptPart] = []
    current: list[StagedRecord] = []
    size = 0
    for record in fresh:
        if current and size + record.estimated_bytes > max_bytes:
            number += 1
            parts.append(TranscriptPart(bucket, number, tuple(current)))
            current, size = [], 0
        current.append(record)
        size += record.estimated_bytes
    if current:
        number += 1
        parts.append(TranscriptPart(bucket, number, tuple(current)))
    return parts, repeats


def is_day_over(day: date, zone: ZoneInfo, listed_until: datetime) -> bool:
    """True when everything captured up to the end of ``day`` has been handed off for listing."""
    return day_window(day, zone).end <= listed_until


def sent_at(record: StagedRecord) -> datetime:
    return epoch_ms_to_datetime(record.message_time)
