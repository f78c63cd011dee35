"""Sealing windows into the chain of evidence (shared/domain/manifest.py).

A window is sealed once it reconciles: its final admin report (JSON and CSV) is kept in the evidence
store, then its manifest, naming the reports and the previous link; then the chain's head moves to it
(an ETag-conditioned write: two sealers at once cannot both extend the same link), and last the
window is marked sealed at its summary digest. A window whose counts move afterwards (a replay, a
transcript composed later) is sealed again: a new link, the earlier one kept. Each step is durable
before the next starts, so a failure anywhere leaves at most evidence no link names yet, and the next
run seals the window again (``verify`` reports a manifest off the chain, so the gap is visible).

Memory stays flat: records are spooled in key order to disk (``SpooledSort``), the manifest and the
reports go to a temporary file to be hashed, then streamed to the store under that hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from shared.domain.evidence import parse_evidence_name
from shared.domain.ledger import WindowSummary
from shared.domain.manifest import Link, ManifestHead, ManifestRecord, manifest_lines, manifest_record
from shared.ports import ChainConflict, EvidenceChain, EvidenceStore, WindowLedger
from shared.service.reports import stream_report, summary_digest
from shared.service.spooled_sort import SpooledSort

log = logging.getLogger(__name__)

_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Sealed:
    window_id: str
    link: Link
    records: int


def seal_reconciled(
    ledger: WindowLedger, evidence: EvidenceStore, chain: EvidenceChain, summaries: Iterable[WindowSummary],
    now: datetime,
) -> list[Sealed]:
    """Seal every reconciled window among ``summaries`` whose counts were not sealed yet, oldest
    hand-off first (the chain's order is the order windows were finished in)."""
    sealed: list[Sealed] = []
    for summary in sorted(summaries, key=lambda s: s.info.window_id.rpartition(".")[2]):
        if not summary.reconciled:
            continue
        digest = summary_digest(summary)
        window_id = summary.info.window_id
        try:
            if chain.sealed_digest(window_id) == digest:
                continue
            sealed.append(seal_window(ledger, evidence, chain, summary, now, digest=digest))
        except ChainConflict:
            log.warning("window %s: the chain moved while it was sealed; the next run seals it", window_id)
        except Exception as error:  # one window's trouble must not stop the others'
            log.error("window %s not sealed (%s); the next run tries again", window_id, type(error).__name__)
    if sealed:
        log.info("evidence chain: %d window(s) sealed, head at link %d", len(sealed), sealed[-1].link.seq)
    return sealed


def seal_window(
    ledger: WindowLedger, evidence: EvidenceStore, chain: EvidenceChain, summary: WindowSummary, now: datetime,
    *, digest: str | None = None,
) -> Sealed:
    info = summary.info
    window_id = info.window_id
    digest = digest or summary_digest(summary)
    with stream_report(ledger, info, now, summary=summary) as report:
        reports = {
            "json": _keep_spooled(evidence, "admin-report", (part.encode("utf-8") for part in report.json_chunks())),
            "csv": _keep_spooled(evidence, "admin-report",
                                 _with_bom(part.encode("utf-8") for part in report.csv_chunks())),
        }
    previous, version = chain.head()
    head = ManifestHead(
        seq=previous.seq + 1 if previous else 1, window_id=window_id, sealed_at=now, summary_digest=digest,
        prev=previous, reports=reports,
    )
    records = _records_in_key_order(ledger, window_id)
    try:
        name = _keep_spooled(evidence, "manifest", manifest_lines(head, records.rows()))
    finally:
        records.close()
    link = Link(head.seq, name, parse_evidence_name(name)[1])
    chain.advance(link, version)
    chain.mark_sealed(window_id, link, digest)
    log.info("window %s sealed as link %d (%d records)", window_id, link.seq, records.count)
    return Sealed(window_id, link, records.count)


class _SortedRecords:
    def __init__(self, spool: SpooledSort) -> None:
        self._spool = spool
        self.count = spool.count

    def rows(self) -> Iterator[ManifestRecord]:
        for _, payload in self._spool:
            yield _record_from_json(json.loads(payload))

    def close(self) -> None:
        self._spool.close()


def _records_in_key_order(ledger: WindowLedger, window_id: str) -> _SortedRecords:
    spool = SpooledSort()
    try:
        for key, state in ledger.record_states(window_id):
            if state.listed and state.outcome is not None:
                spool.add(key, json.dumps(manifest_record(key, state.outcome).to_json(), ensure_ascii=False))
    except BaseException:
        spool.close()
        raise
    return _SortedRecords(spool)


def _record_from_json(data: object) -> ManifestRecord:
    return ManifestRecord.from_json(data, 0)


def _keep_spooled(evidence: EvidenceStore, kind: str, parts: Iterable[bytes]) -> str:
    """Bytes made in pieces, hashed in a temporary file, then kept under that hash."""
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as spool:
        for part in parts:
            digest.update(part)
            spool.write(part)
        spool.seek(0)
        return evidence.keep_stream(kind, digest.hexdigest(), _read_chunks(spool))


def _read_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(_CHUNK):
        yield chunk


def _with_bom(parts: Iterable[bytes]) -> Iterator[bytes]:
    """The CSV as the admin report's stored copy and `report --csv` give it: UTF-8 with a BOM, which
    Excel needs to read it as UTF-8."""
    yield b"\xef\xbb\xbf"
    yield from parts
