"""A window's manifest: one link of the chain of evidence, kept under WORM in the evidence store.

JSON Lines, written once when a window reconciles (again, as a new link, if its outcomes change
later: a replay, a transcript composed):

- the head: the window, when it was sealed, the digest of the counts it was sealed at, the admin
  report kept beside it (JSON and CSV, by evidence name) and the previous link (its sequence number,
  evidence name and SHA-256; none for the first);
- one line per record, in record-key order: its key and id, its outcome (and reason), the claim
  check it was imported from with the SHA-256 of its bytes, and per mailbox the item's id and the
  digest of what was written (shared/domain/item_digest.py);
- the end: how many records and mailbox items the manifest holds, so a cut file is seen.

The manifest's own name is its SHA-256 (``raw/manifest/<sha256>``): the next link names it, so any
change to a manifest, or its removal, breaks the chain where ``verify`` walks it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain import identifiers
from shared.domain.json_values import is_json_array, is_json_object
from shared.domain.ledger import OutcomeEntry, RecordOutcome
from shared.domain.window import isoformat_z, parse_iso

FORMAT = "whatsapp-archiver-manifest/1"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(ValueError):
    """A manifest that is not in this format: the line is named."""


@dataclass(frozen=True)
class Link:
    """Where a manifest is in the chain: what the next link names."""

    seq: int
    name: str  # its evidence name, raw/manifest/<sha256>
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "name": self.name, "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: object) -> Link:
        if not is_json_object(data) or not isinstance(seq := data.get("seq"), int) or seq < 1:
            raise ManifestError("a link needs seq (a positive whole number), name and sha256")
        sha = data.get("sha256")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha) or data.get("name") != f"raw/manifest/{sha}":
            raise ManifestError("a link's name must be raw/manifest/<its sha256>")
        return cls(seq, f"raw/manifest/{sha}", sha)


@dataclass(frozen=True)
class ManifestHead:
    seq: int
    window_id: str
    sealed_at: datetime
    summary_digest: str
    prev: Link | None
    reports: dict[str, str] = field(default_factory=dict[str, str])  # "json" / "csv" -> evidence name

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "seq": self.seq, "window_id": self.window_id,
            "sealed_at": isoformat_z(self.sealed_at), "summary_digest": self.summary_digest,
            "prev": self.prev.to_json() if self.prev else None, "reports": dict(sorted(self.reports.items())),
        }

    @classmethod
    def from_json(cls, data: object) -> ManifestHead:
        if not is_json_object(data) or data.get("format") != FORMAT:
            raise ManifestError(f"line 1: not a manifest head ({FORMAT})")
        try:
            window_id = identifiers.window_id(data.get("window_id"), "window_id")
            prev = Link.from_json(data["prev"]) if data.get("prev") is not None else None
            reports = data.get("reports") or dict[str, object]()
            if not is_json_object(reports):
                raise ManifestError("reports must name evidence")
            named = {k: v for k, v in reports.items() if isinstance(v, str)}
            if len(named) != len(reports):
                raise ManifestError("reports must name evidence")
            head = cls(_int(data["seq"]), window_id, parse_iso(_text(data["sealed_at"], "sealed_at")),
                       str(data["summary_digest"]), prev, named)
        except (KeyError, TypeError, ValueError, identifiers.InvalidIdentifier) as error:
            raise ManifestError(f"line 1: {error}") from None
        if prev is not None and prev.seq != head.seq - 1:
            raise ManifestError("line 1: the previous link's seq is not this one's less one")
        return head


@dataclass(frozen=True)
class ManifestItem:
    mailbox: str
    item_id: str
    item_sha256: str | None  # None: written before items had digests (kept by the ledger without one)
    outcome: str


@dataclass(frozen=True)
class ManifestRecord:
    record_key: str
    record_id: str | None
    outcome: str
    claim_check: str
    raw_sha256: str | None  # None: the claim check could not be read when the record was imported
    items: tuple[ManifestItem, ...] = ()
    reason: str | None = None

    @property
    def archived(self) -> bool:
        return self.outcome in (RecordOutcome.IMPORTED, RecordOutcome.SKIPPED_DUPLICATE)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "record_key": self.record_key, "record_id": self.record_id, "outcome": self.outcome,
            "claim_check": self.claim_check, "raw_sha256": self.raw_sha256,
        }
        if self.reason:
            data["reason"] = self.reason
        if self.items:
            data["items"] = [
                {"mailbox": i.mailbox, "item_id": i.item_id, "item_sha256": i.item_sha256, "outcome": i.outcome}
                for i in self.items
            ]
        return data

    @classmethod
    def from_json(cls, data: object, line: int) -> ManifestRecord:
        try:
            if not is_json_object(data):
                raise TypeError("a record line is a JSON object")
            key = identifiers.record_key(data["record_key"])
            raw = data.get("raw_sha256")
            if raw is not None and (not isinstance(raw, str) or not _SHA256.fullmatch(raw)):
                raise ManifestError(f"line {line}: raw_sha256 is not a SHA-256")
            claim_check = claim_check_name(key)
            if data["claim_check"] != claim_check:
                raise ManifestError(f"line {line}: claim_check is not the record's own")
            listed = data.get("items", [])
            if not is_json_array(listed) or not all(is_json_object(i) for i in listed):
                raise TypeError("items is a list of JSON objects")
            # A mailbox becomes part of a Graph URL or a folder name when verify reads the item back:
            # checked against its grammar here, whatever the manifest says.
            items = tuple(
                ManifestItem(identifiers.mailbox_address(str(i["mailbox"]), "mailbox"), str(i["item_id"]),
                             _item_sha256(i.get("item_sha256"), line), str(i["outcome"]))
                for i in listed if is_json_object(i)
            )
            return cls(key, _optional_text(data.get("record_id"), "record_id"), str(data["outcome"]), claim_check,
                       raw, items, _optional_text(data.get("reason"), "reason"))
        except ManifestError:
            raise
        except (KeyError, TypeError, ValueError, identifiers.InvalidIdentifier) as error:
            raise ManifestError(f"line {line}: {type(error).__name__} {error}") from None


def claim_check_name(record_key: str) -> str:
    """The claim check a record key is listed under (shared/adapters/azure_storage.py BlobRecordStore):
    a re-capture's key carries its variant, so its own copy is named."""
    return f"{record_key}.json"


def manifest_record(key: str, entry: OutcomeEntry) -> ManifestRecord:
    items = tuple(
        ManifestItem(m.mailbox, m.item_id or entry.message_id or "", m.item_sha256, m.outcome.value)
        for m in entry.mailboxes
    )
    reason = entry.reason if entry.outcome is RecordOutcome.POISONED else None
    return ManifestRecord(key, entry.message_id, entry.outcome.value, claim_check_name(key), entry.raw_sha256,
                          items, reason)


def manifest_lines(head: ManifestHead, records: Iterable[ManifestRecord]) -> Iterator[bytes]:
    """The manifest's bytes, a line at a time (records in the order given: the caller sorts)."""
    yield _line(head.to_json())
    count = items = 0
    for record in records:
        count += 1
        items += len(record.items)
        yield _line(record.to_json())
    yield _line({"end": True, "records": count, "items": items})


def read_manifest(lines: Iterable[bytes]) -> tuple[ManifestHead, list[ManifestRecord]]:
    """Head and records held whole: for small manifests and tests (``open_manifest`` streams)."""
    head, records = open_manifest(lines)
    return head, list(records)


def open_manifest(lines: Iterable[bytes]) -> tuple[ManifestHead, Iterator[ManifestRecord]]:
    """The head, checked, and the records one at a time, each checked as it is read; the iterator
    raises ManifestError naming the first line that is wrong (a cut file: no end line, or counts
    that differ), so a manifest of millions of records is read in the memory of one."""
    numbered = enumerate(lines, start=1)
    first = next(numbered, None)
    if first is None:
        raise ManifestError("the manifest is empty")
    head = ManifestHead.from_json(_json(*first))
    return head, _records(numbered)


def _records(numbered: Iterator[tuple[int, bytes]]) -> Iterator[ManifestRecord]:
    count = items = 0
    for number, raw in numbered:
        data = _json(number, raw)
        if is_json_object(data) and data.get("end") is True:
            if data.get("records") != count or data.get("items") != items:
                raise ManifestError(f"line {number}: the end line's counts are not the manifest's")
            if next(numbered, None) is not None:
                raise ManifestError(f"line {number + 1}: text after the end line")
            return
        record = ManifestRecord.from_json(data, number)
        count += 1
        items += len(record.items)
        yield record
    raise ManifestError("the manifest is cut short: no end line")


def _json(number: int, raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        raise ManifestError(f"line {number}: not JSON") from None


def _int(value: object) -> int:
    """``int()`` of a parsed JSON value: a number or a numeric text; TypeError (as ``int()``'s) for any
    other."""
    if isinstance(value, int | float | str):
        return int(value)
    raise TypeError(f"int() argument must be a string, a bytes-like object or a real number, "
                    f"not '{type(value).__name__}'")


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} is not text")
    return value


def _optional_text(value: object, name: str) -> str | None:
    return None if value is None else _text(value, name)


def _item_sha256(value: object, line: int) -> str | None:
    if value is not None and (not isinstance(value, str) or not _SHA256.fullmatch(value)):
        raise ManifestError(f"line {line}: an item_sha256 is not a SHA-256")
    return value


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n"
