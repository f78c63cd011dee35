"""What happened to every record of a window, and whether the window reconciles.

Listing appends one ``PageEntry`` per page it handed off (a push source: per body it split, with
the body's delivery receipts); importing appends one ``OutcomeEntry`` per record it finished
(imported, skipped as a duplicate, or poisoned). Delivery is at least
once, so entries repeat: ``summarize`` folds them idempotently. A window reconciles when every
slice's listing finished and every listed record has an outcome:

    listed records  = records imported or skipped + records poisoned
                      (+ records awaiting their day's transcript, in daily transcript mode)
    fan-out pairs   = pairs imported + pairs skipped as duplicates
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from shared.domain.window import Window, isoformat_z, parse_iso


class RecordOutcome(StrEnum):
    IMPORTED = "imported"
    SKIPPED_DUPLICATE = "skipped_duplicate"
    POISONED = "poisoned"
    # Daily transcript mode: validated and mapped, waiting for its day's transcript to be composed.
    AWAITING_TRANSCRIPT = "awaiting_transcript"


class MappingRule(StrEnum):
    CSV = "csv"  # the custom phone → email mapping file
    EMAIL = "email"  # the participant's email property (automatic mapping)
    DIRECTORY_PHONE = "directory_phone"  # an Entra ID user's mobilePhone / businessPhones
    CATCH_ALL = "catch_all"  # no participant mapped: the configured catch-all mailbox


@dataclass(frozen=True)
class WindowInfo:
    window: Window
    slice_count: int
    scheduled_at: datetime

    def __post_init__(self) -> None:
        # Stored to the millisecond (ISO 8601 in window.json); the id must survive that round trip.
        moment = self.scheduled_at
        object.__setattr__(self, "scheduled_at", moment.replace(microsecond=moment.microsecond // 1000 * 1000))

    @property
    def window_id(self) -> str:
        """Unique per hand-off: the capture range, then when it was handed off. The same range
        handed off twice (a manual re-list, a retried run) is accounted as two windows, so the
        second one shows its records as skipped duplicates rather than merging into the first."""
        moment = self.scheduled_at
        return f"{self.window.id}.{moment.strftime('%Y%m%dT%H%M%S')}{moment.microsecond // 1000:03d}Z"

    def to_json(self) -> dict[str, Any]:
        return {
            "window_id": self.window_id,
            "start": isoformat_z(self.window.start),
            "end": isoformat_z(self.window.end),
            "slice_count": self.slice_count,
            "scheduled_at": isoformat_z(self.scheduled_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WindowInfo:
        return cls(
            Window(parse_iso(data["start"]), parse_iso(data["end"])),
            int(data["slice_count"]),
            parse_iso(data["scheduled_at"]),
        )


def handoff_order(window_id: str) -> tuple[str, str]:
    """Sorts window ids by when they were handed off (the stamp after the last "."), then by range."""
    return window_id.rpartition(".")[2], window_id


@dataclass(frozen=True)
class Receipt:
    """A delivery receipt for a message the business sent (a WhatsApp status: sent, delivered,
    read, played, failed). Receipts carry no content: they are evidence, counted per window and,
    when failed, reported against the message they are about (``record_key`` of its wamid)."""

    message_id: str
    status: str
    at: datetime
    recipient: str | None = None  # the customer's number, masked (or a group id)
    errors: tuple[str, ...] = ()  # Meta's error codes and titles ("131049 …"), never its details

    @property
    def key(self) -> tuple[str, str]:
        """The same receipt again (Meta redelivers, and one body may repeat another's)."""
        return self.message_id, self.status

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def to_json(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "status": self.status, "at": isoformat_z(self.at),
                "recipient": self.recipient, "errors": list(self.errors)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Receipt:
        return cls(str(data["message_id"]), str(data["status"]), parse_iso(data["at"]), data.get("recipient"),
                   tuple(str(e) for e in data.get("errors", ())))


@dataclass(frozen=True)
class PageEntry:
    slice_id: str
    page: int
    record_keys: tuple[str, ...]
    last: bool
    receipts: tuple[Receipt, ...] = ()  # a push source's delivery receipts handed in with the page

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "slice": self.slice_id, "page": self.page, "records": list(self.record_keys), "last": self.last,
        }
        if self.receipts:
            data["receipts"] = [receipt.to_json() for receipt in self.receipts]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PageEntry:
        return cls(data["slice"], int(data["page"]), tuple(data["records"]), bool(data["last"]),
                   tuple(Receipt.from_json(r) for r in data.get("receipts", ())))


@dataclass(frozen=True)
class MailboxResult:
    mailbox: str
    outcome: RecordOutcome  # IMPORTED or SKIPPED_DUPLICATE
    rule: MappingRule
    # The chain of evidence (shared/service/evidence_chain.py): the id the item is found by in this
    # mailbox and the digest of what was written there (shared/domain/item_digest.py).
    item_id: str | None = None
    item_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"mailbox": self.mailbox, "outcome": self.outcome.value, "rule": self.rule.value}
        if self.item_sha256:
            data.update(item_id=self.item_id or "", item_sha256=self.item_sha256)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MailboxResult:
        return cls(data["mailbox"], RecordOutcome(data["outcome"]), MappingRule(data["rule"]),
                   data.get("item_id") or None, data.get("item_sha256") or None)


@dataclass(frozen=True)
class OutcomeEntry:
    record_key: str
    message_id: str | None
    outcome: RecordOutcome
    at: datetime
    mailboxes: tuple[MailboxResult, ...] = ()
    reason: str | None = None
    detail: str | None = None
    partial: bool = False  # archived, but some media was never captured
    unavailable: tuple[str, ...] = ()  # mapped mailboxes that could not take mail
    source_user: str | None = None  # the sender's phone number, masked (the admin report's "source user")
    recapture_of: str | None = None  # a re-capture: the key of the record archived before under its id
    raw_sha256: str | None = None  # the claim check's bytes as imported: the chain of evidence's link

    def to_json(self) -> dict[str, Any]:
        return {
            **({"recapture_of": self.recapture_of} if self.recapture_of else {}),
            **({"raw_sha256": self.raw_sha256} if self.raw_sha256 else {}),
            "record_key": self.record_key,
            "message_id": self.message_id,
            "outcome": self.outcome.value,
            "at": isoformat_z(self.at),
            "mailboxes": [m.to_json() for m in self.mailboxes],
            "reason": self.reason,
            "detail": self.detail,
            "partial": self.partial,
            "unavailable": list(self.unavailable),
            "source_user": self.source_user,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutcomeEntry:
        return cls(
            record_key=data["record_key"],
            message_id=data.get("message_id"),
            outcome=RecordOutcome(data["outcome"]),
            at=parse_iso(data["at"]),
            mailboxes=tuple(MailboxResult.from_json(m) for m in data.get("mailboxes", [])),
            reason=data.get("reason"),
            detail=data.get("detail"),
            partial=bool(data.get("partial", False)),
            unavailable=tuple(data.get("unavailable", ())),
            source_user=data.get("source_user"),
            recapture_of=data.get("recapture_of"),
            raw_sha256=data.get("raw_sha256"),
        )


@dataclass(frozen=True)
class WindowSummary:
    info: WindowInfo
    listed: int
    fanout: int
    imported: int
    skipped_duplicates: int
    partially_imported: int
    poisoned: dict[str, int]
    pending: int
    slices_listed: int
    awaiting_transcript: int = 0
    recaptured: int = 0  # archived records that re-capture one archived before under the same id
    records: dict[str, OutcomeEntry] = field(default_factory=dict[str, OutcomeEntry], repr=False)
    pending_keys: tuple[str, ...] = field(default=(), repr=False)  # listed, without an outcome yet
    receipts: dict[str, int] = field(default_factory=dict[str, int])  # delivery receipts by status, each once
    failed_receipts: tuple[Receipt, ...] = field(default=(), repr=False)
    # Per UTC day of the outcomes (ISO date): records, imported, skipped_duplicates, poisoned.
    daily: dict[str, dict[str, int]] = field(default_factory=dict[str, dict[str, int]], repr=False)

    @property
    def listing_complete(self) -> bool:
        return self.slices_listed >= self.info.slice_count

    @property
    def reconciled(self) -> bool:
        return (
            self.listing_complete
            and self.pending == 0
            and self.awaiting_transcript == 0
            and self.fanout == self.imported + self.skipped_duplicates
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **self.info.to_json(),
            "listed": self.listed,
            "fanout": self.fanout,
            "imported": self.imported,
            "skipped_duplicates": self.skipped_duplicates,
            "partially_imported": self.partially_imported,
            "poisoned": dict(sorted(self.poisoned.items())),
            "pending": self.pending,
            "awaiting_transcript": self.awaiting_transcript,
            "slices_listed": self.slices_listed,
            "listing_complete": self.listing_complete,
            "reconciled": self.reconciled,
            **({"recaptured": self.recaptured} if self.recaptured else {}),
            # Only a push source has receipts; a TeleMessage window's summary reads as it always did.
            **({"receipts": dict(sorted(self.receipts.items()))} if self.receipts else {}),
        }


_ARCHIVED = frozenset({RecordOutcome.IMPORTED, RecordOutcome.SKIPPED_DUPLICATE})


def fold_outcomes(entries: Iterable[OutcomeEntry]) -> dict[str, OutcomeEntry]:
    """One outcome per record from entries that repeat (retries, duplicates, replays).

    A successful outcome supersedes a poisoning (a replay after a fix) and a wait for a
    transcript; between successes the per-mailbox results merge, "imported" winning over "skipped"
    (a retry after a crash finds its own earlier write); between poisonings and waits for a
    transcript the latest one stands (a staged record can still be poisoned, a poisoned one replayed).
    """
    folded: dict[str, OutcomeEntry] = {}
    for entry in entries:
        previous = folded.get(entry.record_key)
        folded[entry.record_key] = entry if previous is None else merge_outcomes(previous, entry)
    return folded


def merge_outcomes(a: OutcomeEntry, b: OutcomeEntry) -> OutcomeEntry:
    """One record's two outcomes as one (``fold_outcomes``'s rule, b arriving after a)."""
    a_ok = a.outcome in _ARCHIVED
    b_ok = b.outcome in _ARCHIVED
    if a_ok != b_ok or not a_ok:
        if a_ok != b_ok:
            chosen = a if a_ok else b
        else:
            chosen = b if b.at >= a.at else a
        # Entries written later (a transcript's composition) may not know the sender.
        return chosen if chosen.source_user else replace(chosen, source_user=a.source_user or b.source_user)
    per_mailbox: dict[str, MailboxResult] = {}
    for result in (*a.mailboxes, *b.mailboxes):
        seen = per_mailbox.get(result.mailbox)
        upgrades = seen is not None and seen.outcome is RecordOutcome.SKIPPED_DUPLICATE
        if seen is None or (upgrades and result.outcome is RecordOutcome.IMPORTED):
            per_mailbox[result.mailbox] = result
    mailboxes = tuple(per_mailbox.values())
    any_imported = any(m.outcome is RecordOutcome.IMPORTED for m in mailboxes)
    return OutcomeEntry(
        record_key=a.record_key,
        message_id=a.message_id or b.message_id,
        outcome=RecordOutcome.IMPORTED if any_imported else RecordOutcome.SKIPPED_DUPLICATE,
        at=min(a.at, b.at),
        mailboxes=mailboxes,
        partial=a.partial or b.partial,
        unavailable=tuple(sorted(set(a.unavailable) | set(b.unavailable))),
        source_user=a.source_user or b.source_user,
        # A re-capture's note (the fields that differ) is what an archived entry's detail holds.
        detail=a.detail or b.detail,
        recapture_of=a.recapture_of or b.recapture_of,
        raw_sha256=a.raw_sha256 or b.raw_sha256,
    )


def summarize(info: WindowInfo, pages: Iterable[PageEntry], outcomes: Iterable[OutcomeEntry]) -> WindowSummary:
    listed_keys: set[str] = set()
    finished_slices: set[str] = set()
    receipts: dict[tuple[str, str], Receipt] = {}
    for page in pages:
        listed_keys.update(page.record_keys)
        if page.last:
            finished_slices.add(page.slice_id)
        for receipt in page.receipts:
            receipts.setdefault(receipt.key, receipt)
    folded = fold_outcomes(outcomes)
    fanout = imported = skipped = partial = awaiting = recaptured = 0
    poisoned: Counter[str] = Counter()
    daily: dict[str, Counter[str]] = {}
    for key in listed_keys:
        entry = folded.get(key)
        if entry is None:
            continue
        if entry.outcome is RecordOutcome.AWAITING_TRANSCRIPT:
            awaiting += 1
            continue
        day = daily.setdefault(entry.at.astimezone(UTC).date().isoformat(), Counter())
        if entry.outcome is RecordOutcome.POISONED:
            poisoned[entry.reason or "unknown"] += 1
            day["poisoned"] += 1
            continue
        pairs_imported = sum(m.outcome is RecordOutcome.IMPORTED for m in entry.mailboxes)
        pairs_skipped = sum(m.outcome is RecordOutcome.SKIPPED_DUPLICATE for m in entry.mailboxes)
        fanout += len(entry.mailboxes)
        imported += pairs_imported
        skipped += pairs_skipped
        partial += entry.partial
        recaptured += entry.recapture_of is not None and pairs_imported > 0
        day.update(records=1, imported=pairs_imported, skipped_duplicates=pairs_skipped)
    pending_keys = tuple(sorted(key for key in listed_keys if key not in folded))
    return WindowSummary(
        info=info,
        listed=len(listed_keys),
        fanout=fanout,
        imported=imported,
        skipped_duplicates=skipped,
        partially_imported=partial,
        poisoned=dict(poisoned),
        pending=len(pending_keys),
        slices_listed=len(finished_slices),
        awaiting_transcript=awaiting,
        recaptured=recaptured,
        records={key: entry for key, entry in folded.items() if key in listed_keys},
        pending_keys=pending_keys,
        receipts=dict(Counter(receipt.status for receipt in receipts.values())),
        failed_receipts=tuple(sorted((r for r in receipts.values() if r.failed), key=lambda r: (r.at, r.message_id))),
        daily={d: {k: v for k, v in sorted(c.items()) if v} for d, c in sorted(daily.items()) if +c},
    )
