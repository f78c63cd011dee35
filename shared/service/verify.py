"""``verify``: recompute the chain of evidence and say, finding by finding, what does not hold.

Offline, from storage alone:

1. every manifest the evidence store holds hashes to its own name and is in the manifest format;
2. the chain, walked from its head, links each manifest to the one before it (sequence numbers one
   apart, the previous link's name and SHA-256 as the next one states them) down to the first, and
   reaches every manifest kept (one it does not reach was cut off: the head was moved back, or a
   link is missing);
3. for each window checked, its latest manifest's admin reports are kept and hash to their names,
   and every record's claim check is there and hashes to the SHA-256 the manifest recorded when the
   record was imported.

Online, item by item: each mailbox item the manifest lists is read back (Graph, or the .eml folders)
and must be there exactly once, with the digest recorded when it was written
(shared/domain/item_digest.py).

Every finding names its window and, where there is one, its record and mailbox. Findings are facts
about storage, never content: ids, keys, mailboxes and hashes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

from shared.domain.errors import MailboxUnavailable, TransientError
from shared.domain.evidence import parse_evidence_name
from shared.domain.ledger import handoff_order
from shared.domain.manifest import Link, ManifestError, ManifestHead, ManifestItem, ManifestRecord, open_manifest
from shared.domain.window import parse_iso
from shared.ports import EvidenceChain, EvidenceStore, ItemReader, RecordMissing, RecordStore

_READERS = 16  # claim checks and items read at once: storage and Graph both serve this many well
_BATCH = 2_000  # records of a manifest in memory at once


class FindingKind(StrEnum):
    MANIFEST_MISSING = "manifest_missing"  # a link names a manifest the evidence store does not hold
    MANIFEST_ALTERED = "manifest_altered"  # its bytes do not hash to its name
    MANIFEST_UNREADABLE = "manifest_unreadable"  # not a manifest (cut short, not the format)
    CHAIN_BROKEN = "chain_broken"  # a manifest does not name the link before it as it should
    MANIFEST_OFF_CHAIN = "manifest_off_chain"  # kept, but no link of the chain reaches it
    WINDOW_NOT_SEALED = "window_not_sealed"  # asked for by --window, and not in the chain
    REPORT_MISSING = "report_missing"
    REPORT_ALTERED = "report_altered"
    CLAIM_CHECK_MISSING = "claim_check_missing"
    CLAIM_CHECK_ALTERED = "claim_check_altered"
    ITEM_MISSING = "item_missing"  # the manifest lists an item the mailbox does not hold
    ITEM_DUPLICATED = "item_duplicated"  # the mailbox holds the record's item more than once
    ITEM_ALTERED = "item_altered"  # the item's content is not what was written
    ITEM_UNREADABLE = "item_unreadable"
    MAILBOX_UNREADABLE = "mailbox_unreadable"


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    window_id: str | None
    detail: str
    record_key: str | None = None
    record_id: str | None = None
    mailbox: str | None = None
    link: int | None = None  # the chain's sequence number concerned

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind.value}

    def line(self) -> str:
        where = [f"window {self.window_id or '(unknown)'}"]
        if self.link is not None:
            where.append(f"link {self.link}")
        if self.record_key:
            where.append(f"record {self.record_id or '(no id)'} [{self.record_key[:16]}]")
        if self.mailbox:
            where.append(f"mailbox {self.mailbox}")
        return f"{self.kind.value}: {', '.join(where)}: {self.detail}"


class _Where(TypedDict):
    """Where a finding is: ``Finding``'s own keyword arguments."""

    window_id: str | None
    record_key: str | None
    record_id: str | None
    mailbox: NotRequired[str | None]


@dataclass
class Verification:
    online: bool
    head: Link | None = None
    manifests: int = 0
    links_walked: int = 0
    heads_only: int = 0  # manifests outside a --window / --since scope: head line read, not hashed
    unlinked_drafts: int = 0  # manifests of a seal that stopped before its link; the same counts are linked
    windows: list[str] = field(default_factory=list[str])
    records: int = 0
    claim_checks: int = 0
    not_hashed_at_import: int = 0  # claim checks unreadable when imported: nothing to compare
    items_checked: int = 0
    items_without_digest: int = 0  # written before digests were recorded
    sampled: int | None = None
    # Each window checked: its latest link, the manifest's and the final reports' evidence names
    # (what an auditor downloads from the evidence container).
    seals: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    findings: list[Finding] = field(default_factory=list[Finding])

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "online": self.online, "head": self.head.to_json() if self.head else None,
            "manifests": self.manifests, "links_walked": self.links_walked,
            "unlinked_drafts": self.unlinked_drafts, "heads_only": self.heads_only, "windows": self.windows,
            "records": self.records, "claim_checks": self.claim_checks,
            "not_hashed_at_import": self.not_hashed_at_import, "items_checked": self.items_checked,
            "items_without_digest": self.items_without_digest, "sampled": self.sampled, "seals": self.seals,
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass(frozen=True)
class Scope:
    """Which windows' records are checked (the chain is always walked whole)."""

    window_id: str | None = None
    since: datetime | None = None

    @property
    def whole(self) -> bool:
        return self.window_id is None and self.since is None

    def includes(self, head: ManifestHead) -> bool:
        if self.window_id is not None:
            return head.window_id == self.window_id
        if self.since is not None:
            return _window_end(head.window_id) > self.since
        return True


def verify(
    evidence: EvidenceStore, chain: EvidenceChain, records: RecordStore, *, scope: Scope = Scope(),
    reader: ItemReader | None = None, sample: int | None = None, rng: random.Random | None = None,
) -> Verification:
    result = Verification(online=reader is not None, sampled=sample)
    heads, damaged = _read_heads(evidence, result, scope)
    latest = _walk(chain, heads, damaged, result)
    for name, head in latest:
        if not scope.includes(head):
            continue
        result.windows.append(head.window_id)
        result.seals.append({"window_id": head.window_id, "link": head.seq, "manifest": name,
                             "sealed_at": head.to_json()["sealed_at"], "reports": dict(head.reports)})
        _check_window(evidence, records, name, head, result, reader, sample, rng or random.SystemRandom())
    if scope.window_id is not None and scope.window_id not in result.windows:
        result.findings.append(Finding(FindingKind.WINDOW_NOT_SEALED, scope.window_id,
                                       "no manifest of the chain is this window's (not reconciled, or not sealed "
                                       "yet: the timer seals a window on its next run after it reconciles)"))
    return result


def _read_heads(
    evidence: EvidenceStore, result: Verification, scope: Scope,
) -> tuple[dict[str, ManifestHead], set[str]]:
    """Every manifest kept, its head kept, and the names of those that are damaged (reported here
    already). A manifest of a window in scope is read through: hashed against its name, every line
    checked. Outside a --window or --since scope only its head line is read, enough to walk the
    chain through it: years of history are not read again for one day's check (a full run does)."""
    heads: dict[str, ManifestHead] = {}
    damaged: set[str] = set()
    for name in evidence.names("manifest"):
        result.manifests += 1
        reading = _HashedLines(evidence.stream(name))
        problem = head = None
        try:
            head, records = open_manifest(reading)
            if not scope.whole and not scope.includes(head):
                reading.close()
                result.heads_only += 1
                heads[name] = head
                continue
            for _ in records:
                pass
        except ManifestError as error:
            problem = str(error)
        except RecordMissing:
            continue  # gone between the listing and the read: the walk reports it if a link names it
        reading.drain()
        window = head.window_id if head is not None else reading.first_window()
        if reading.sha256() != parse_evidence_name(name)[1]:
            result.findings.append(Finding(FindingKind.MANIFEST_ALTERED, window,
                                           f"{name} does not hash to its name: its bytes were changed"))
            damaged.add(name)
        elif problem is not None or head is None:
            result.findings.append(Finding(FindingKind.MANIFEST_UNREADABLE, window, f"{name}: {problem}"))
            damaged.add(name)
        else:
            heads[name] = head
    return heads, damaged


class _HashedLines:
    """The lines of a stream of chunks, hashing every byte read (``drain`` reads what is left)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._digest = hashlib.sha256()
        self._first: bytes | None = None

    def __iter__(self) -> Iterator[bytes]:
        pending = b""
        for chunk in self._chunks:
            self._digest.update(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if self._first is None:
                    self._first = line
                yield line
        if pending:
            yield pending

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def drain(self) -> None:
        for chunk in self._chunks:
            self._digest.update(chunk)

    def sha256(self) -> str:
        return self._digest.hexdigest()

    def first_window(self) -> str | None:
        """The window a damaged manifest says it is, when its first line still reads."""
        if self._first is None:
            return None
        try:
            head, _ = open_manifest([self._first])
        except ManifestError:
            return None
        return head.window_id


def _walk(
    chain: EvidenceChain, heads: dict[str, ManifestHead], damaged: set[str], result: Verification,
) -> list[tuple[str, ManifestHead]]:
    """The chain from its head to its first link; each window's latest manifest, newest first."""
    link, _ = chain.head()
    result.head = link
    owners = {sealed.name: window_id for window_id, sealed in chain.sealed_links()}
    by_seq: dict[int, list[str]] = {}
    for name, head in heads.items():
        by_seq.setdefault(head.seq, []).append(name)
    reached: set[str] = set()
    latest: dict[str, tuple[str, ManifestHead]] = {}
    order: list[str] = []
    while link is not None:
        head = heads.get(link.name)
        if head is None:
            if link.name not in damaged:
                result.findings.append(Finding(
                    FindingKind.MANIFEST_MISSING, owners.get(link.name), link=link.seq,
                    detail=f"the chain names {link.name}, and the evidence store does not hold it",
                ))
            # Go on below the gap when one manifest kept has the sequence number before it: the
            # links further down are still checked (its own link cannot be, the manifest naming it
            # being the one missing).
            below = [n for n in by_seq.get(link.seq - 1, ()) if n not in reached]
            link = Link(link.seq - 1, below[0], parse_evidence_name(below[0])[1]) if len(below) == 1 else None
            continue
        reached.add(link.name)
        result.links_walked += 1
        if head.seq != link.seq:
            result.findings.append(Finding(FindingKind.CHAIN_BROKEN, head.window_id, link=link.seq,
                                           detail=f"{link.name} says it is link {head.seq}"))
        if head.window_id not in latest:
            latest[head.window_id] = (link.name, head)
            order.append(head.window_id)
        if head.prev is None and head.seq != 1:
            result.findings.append(Finding(FindingKind.CHAIN_BROKEN, head.window_id, link=head.seq,
                                           detail="names no link before it, and it is not the first"))
        if head.prev is not None and head.prev.name in reached:
            result.findings.append(Finding(FindingKind.CHAIN_BROKEN, head.window_id, link=head.seq,
                                           detail="names a link already walked: the chain loops"))
            break
        link = head.prev
    on_chain = {(heads[name].window_id, heads[name].summary_digest) for name in reached}
    for name, head in heads.items():
        if name in reached:
            continue
        if (head.window_id, head.summary_digest) in on_chain:
            # A seal that stopped between keeping its manifest and moving the head (storage failed, the
            # function timed out): the next run sealed the same counts again, and that one is linked.
            result.unlinked_drafts += 1
        else:
            result.findings.append(Finding(
                FindingKind.MANIFEST_OFF_CHAIN, head.window_id, link=head.seq,
                detail=f"{name} is kept, and no link of the chain from its head reaches it",
            ))
    return [latest[window_id] for window_id in sorted(order, key=handoff_order)]


def _check_window(
    evidence: EvidenceStore, records: RecordStore, name: str, head: ManifestHead, result: Verification,
    reader: ItemReader | None, sample: int | None, rng: random.Random,
) -> None:
    window_id = head.window_id
    for fmt, report in sorted(head.reports.items()):
        # Hashed as it streams: a report of millions of rows is never held whole.
        digest = hashlib.sha256()
        try:
            for chunk in evidence.stream(report):
                digest.update(chunk)
        except RecordMissing:
            result.findings.append(Finding(FindingKind.REPORT_MISSING, window_id, f"the {fmt} admin report {report}"))
            continue
        except ValueError:
            result.findings.append(Finding(FindingKind.REPORT_MISSING, window_id, f"the {fmt} report's name is wrong"))
            continue
        if digest.hexdigest() != parse_evidence_name(report)[1]:
            result.findings.append(Finding(FindingKind.REPORT_ALTERED, window_id,
                                           f"the {fmt} admin report {report} does not hash to its name"))
    _, rows = open_manifest(_HashedLines(evidence.stream(name)))
    picked: list[ManifestRecord] = []  # the sample (reservoir), when one is asked for
    seen_archived = 0
    for batch in _batches(rows, _BATCH):
        result.records += len(batch)
        hashed = [row for row in batch if row.raw_sha256 is not None]
        result.not_hashed_at_import += len(batch) - len(hashed)
        for finding in _parallel(lambda row: _check_claim_check(records, window_id, row), hashed):
            result.claim_checks += 1
            if finding is not None:
                result.findings.append(finding)
        if reader is None:
            continue
        archived = [row for row in batch if row.archived and row.items]
        if sample is None:
            _check_items(reader, window_id, archived, result)
            continue
        for row in archived:  # Algorithm R: each archived record equally likely, in one pass
            seen_archived += 1
            if len(picked) < sample:
                picked.append(row)
            elif (slot := rng.randrange(seen_archived)) < sample:
                picked[slot] = row
    if reader is not None and sample is not None:
        _check_items(reader, window_id, picked, result)


def _check_items(reader: ItemReader, window_id: str, rows: list[ManifestRecord], result: Verification) -> None:
    pairs = [(row, item) for row in rows for item in row.items]
    result.items_without_digest += sum(1 for _, item in pairs if item.item_sha256 is None)
    # One read per item: a daily transcript is one item holding many records, each listing it.
    checkable: dict[tuple[str, str, str], tuple[ManifestRecord, ManifestItem]] = {}
    for row, item in pairs:
        if item.item_sha256 is not None:
            checkable.setdefault((item.mailbox, item.item_id, item.item_sha256), (row, item))
    for findings in _parallel(lambda pair: _check_item(reader, window_id, *pair), checkable.values()):
        result.items_checked += 1
        result.findings.extend(findings)


def _batches[T](items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_claim_check(records: RecordStore, window_id: str, row: ManifestRecord) -> Finding | None:
    ids: _Where = {"window_id": window_id, "record_key": row.record_key, "record_id": row.record_id}
    try:
        raw = records.get(row.claim_check)
    except RecordMissing:
        return Finding(FindingKind.CLAIM_CHECK_MISSING, detail=f"the claim check {row.claim_check} is gone", **ids)
    if hashlib.sha256(raw).hexdigest() != row.raw_sha256:
        return Finding(FindingKind.CLAIM_CHECK_ALTERED, **ids,
                       detail=f"the claim check {row.claim_check} does not hash to what was imported")
    return None


def _check_item(reader: ItemReader, window_id: str, row: ManifestRecord, item: ManifestItem) -> list[Finding]:
    ids: _Where = {"window_id": window_id, "record_key": row.record_key, "record_id": row.record_id,
           "mailbox": item.mailbox}
    try:
        found = reader.find(item.mailbox, row.record_key, item.item_id)
    except (TransientError, MailboxUnavailable) as error:
        return [Finding(FindingKind.MAILBOX_UNREADABLE, detail=f"the mailbox could not be read ({error})", **ids)]
    if not found:
        return [Finding(FindingKind.ITEM_MISSING, detail="the mailbox holds no item of this record", **ids)]
    findings: list[Finding] = []
    if len(found) > 1:
        where = ", ".join(f.location for f in found)
        findings.append(Finding(FindingKind.ITEM_DUPLICATED, detail=f"{len(found)} items: {where}", **ids))
    for copy in found:
        if copy.digest is None:
            findings.append(Finding(FindingKind.ITEM_UNREADABLE, detail=f"{copy.location}: {copy.problem}", **ids))
        elif copy.digest != item.item_sha256:
            findings.append(Finding(FindingKind.ITEM_ALTERED, **ids,
                                    detail=f"{copy.location}: its content is not what was written"))
    return findings


def _parallel[T, R](check: Callable[[T], R], inputs: Iterable[T]) -> Iterator[R]:
    with ThreadPoolExecutor(max_workers=_READERS) as pool:
        yield from pool.map(check, inputs)


def _window_end(window_id: str) -> datetime:
    stamp = window_id.partition("-")[2].partition(".")[0]
    return parse_iso(f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z")
