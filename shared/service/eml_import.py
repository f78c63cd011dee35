"""``import-eml``: a vendor's EML drop — a ZIP with or without a ``.mf`` manifest, a single .eml, or a
folder of them — judged, then each EML archived once into the mailboxes of the people in it.

A ZIP is judged whole before anything in it is imported (shared/domain/eml_drop.py): one that is
unsafe to open is never imported; one whose manifest does not hold is imported only when the operator
accepts the mismatch, and the report says so. Each EML is then read (its id, time and parties),
mapped as any source's participants are, and written as it is (shared/domain/eml_rendering.py); one
that cannot be read is poisoned ``invalid_item`` naming its file and the reason.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from email.errors import HeaderParseError
from pathlib import Path
from typing import Any

from shared.domain.eml_drop import DEFAULT_LIMITS, DropLimits, DropVerdict, check_drop, parse_drop_name, read_member
from shared.domain.eml_items import PHONE_IN_ADDRESS, EmlFacts, EmlInvalid, read_eml
from shared.domain.eml_rendering import render_eml
from shared.domain.errors import PermanentError, PoisonReason
from shared.domain.identifiers import recapture_of
from shared.domain.item_digest import item_digest
from shared.domain.ledger import RecordOutcome
from shared.domain.phones import masked_number
from shared.domain.records import record_key
from shared.domain.rendered import RenderedItem
from shared.ports import MailboxWriter, RecordMissing, RecordStore
from shared.service.batch_import import retrying
from shared.service.import_results import ImportResult
from shared.service.importing import write_everywhere
from shared.service.mapping import MailboxMapper

log = logging.getLogger(__name__)


class EmlImporter:
    """One EML's bytes → its mailbox results, or a poisoned result with the reason."""

    def __init__(self, mapper: MailboxMapper, writer: MailboxWriter, *, max_item_bytes: int,
                 default_region: str | None = None, phone_pattern: re.Pattern[str] = PHONE_IN_ADDRESS,
                 records: RecordStore | None = None) -> None:
        """``records``: the claim checks, where the first EML stored under a Message-ID is read back
        when other bytes come under the same id (the drop container's path)."""
        self._mapper = mapper
        self._writer = writer
        self._max_item_bytes = max_item_bytes
        self._region = default_region
        self._phone_pattern = phone_pattern
        self._records = records

    def import_eml(self, data: bytes, *, file_name: str, key: str | None = None) -> ImportResult:
        """``key``: the record key the EML was handed off under (the drop container's path): its id's
        key, or ``<id's key>.<digest>`` for other bytes under an id stored before. None: read from the
        EML (``import-eml``)."""
        sha256 = hashlib.sha256(data).hexdigest()
        if len(data) > self._max_item_bytes:
            return replace(ImportResult.poisoned(None, PermanentError(
                PoisonReason.TOO_BIG, f"{file_name}: the EML is {len(data)} bytes, over the limit of "
                                      f"{self._max_item_bytes}")), raw_sha256=sha256)
        # Only reading and rendering are judged here: what the mapper or a mailbox raises keeps its own
        # meaning (a transient error is retried, never taken for a broken EML).
        try:
            facts = read_eml(data, default_region=self._region, phone_pattern=self._phone_pattern)
            if key is not None and (recapture_of(key) or key) != record_key(facts.record_id):
                raise EmlInvalid("its id is not the one it was handed off under")
            item, earlier = self._render(data, facts, file_name, key)
            size = item.mime_size()
        except EmlInvalid as error:
            return replace(ImportResult.poisoned(None, PermanentError(
                PoisonReason.INVALID_ITEM, f"{file_name}: {error}")), raw_sha256=sha256)
        except (UnicodeError, LookupError, ValueError, HeaderParseError) as error:
            # What the email package could not take (a header no encoder carries, a charset it does not
            # know): this EML is unreadable as it stands; its bytes stay as its claim check.
            return replace(ImportResult.poisoned(None, PermanentError(
                PoisonReason.INVALID_ITEM, f"{file_name}: the EML cannot be rendered ({type(error).__name__})")),
                raw_sha256=sha256)
        result = self._archive(item, facts, size, earlier)
        return replace(result, source_user=masked_number(facts.sender.phone, self._region), raw_sha256=sha256)

    def _render(self, data: bytes, facts: EmlFacts, file_name: str,
                key: str | None) -> tuple[RenderedItem, str | None]:
        """The item, and the key of the record it re-captures (None for a first capture)."""
        item = render_eml(data, facts, file_name=file_name, default_region=self._region)
        earlier = recapture_of(key) if key is not None else None
        if earlier is None or key is None or self._same_as_first(item, earlier, file_name):
            return item, None  # a first capture, or the same message written anew: the first one's item
        # Other content under a Message-ID archived before (a vendor's corrected EML): an item of its
        # own, never skipped as the first one's duplicate, saying which it re-captures.
        return replace(item, record_key=key, record_id=f"{facts.record_id}#{key[-16:]}",
                       extra_headers=(*item.extra_headers, ("X-Archive-Recapture-Of", earlier))), earlier

    def _archive(self, item: RenderedItem, facts: EmlFacts, size: int, earlier: str | None) -> ImportResult:
        try:
            mapped = self._mapper.map_participants((facts.sender, *facts.recipients))
            if not mapped:
                raise PermanentError(PoisonReason.NO_MAPPING, "no participant maps to a mailbox that exists")
            if size > self._max_item_bytes:
                raise PermanentError(PoisonReason.TOO_BIG,
                                     f"the item is {size} bytes, over the limit of {self._max_item_bytes}")
            results, unavailable = write_everywhere(self._writer, item.record_key, mapped, item)
            if not results:
                raise PermanentError(PoisonReason.NO_MAPPING, "every mapped mailbox is unavailable")
        except PermanentError as error:
            return ImportResult.poisoned(facts.record_id, error)
        imported = any(r.outcome is RecordOutcome.IMPORTED for r in results)
        return ImportResult(
            RecordOutcome.IMPORTED if imported else RecordOutcome.SKIPPED_DUPLICATE, facts.record_id,
            tuple(results), size_bytes=size, unavailable=tuple(unavailable),
            detail="re-capture of an EML archived before under the same Message-ID" if earlier else None,
            recapture_of=earlier,
        )

    def _same_as_first(self, item: RenderedItem, earlier: str, file_name: str) -> bool:
        """Whether the first EML stored under this id makes the same item, its file's name and hash
        aside; unknown (no store, unreadable) counts as not the same: archived, never dropped."""
        if self._records is None:
            return False
        try:
            first = self._records.get(f"{earlier}.json")
            facts = read_eml(first, default_region=self._region, phone_pattern=self._phone_pattern)
            before = render_eml(first, facts, file_name=file_name, default_region=self._region)
        except (RecordMissing, EmlInvalid, UnicodeError, LookupError, ValueError, HeaderParseError):
            return False
        return _content_digest(before) == _content_digest(item)


def _content_digest(item: RenderedItem) -> tuple[str, str, tuple[str, ...]]:
    """What makes two EMLs under one Message-ID the same message: the item's content digest (subject,
    time, body text, attachments), its sender and its recipients (a correction may add one)."""
    own = {"X-Archive-Eml-File", "X-Archive-Eml-Sha256"}
    digest = item_digest(replace(item, extra_headers=tuple(h for h in item.extra_headers if h[0] not in own)))
    return digest, item.sender.address, tuple(sorted(r.address for r in item.recipients))


@dataclass
class DropReport:
    """One drop's report, in the admin report's shape: totals, then one row per EML."""

    file: str
    verdict: str  # "manifest holds", "no manifest", or the findings
    manifest: str  # holds | absent | mismatch | mismatch accepted | refused
    items: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    listed: int = 0

    def add(self, file_name: str, result: ImportResult) -> None:
        self.items.append({
            "file": file_name, "record_id": result.message_id, "outcome": result.outcome.value,
            "reason": result.reason.value if result.reason else None, "detail": result.detail,
            "source_user": result.source_user, "raw_sha256": result.raw_sha256,
            "mailboxes": [{"mailbox": m.mailbox, "outcome": m.outcome.value, "rule": m.rule.value}
                          for m in result.mailboxes],
        })

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file, "drop": drop_facts(self.file), "manifest": self.manifest, "verdict": self.verdict,
            "emls_listed": self.listed, **drop_totals(self.items), "items": self.items,
        }


def drop_totals(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A drop report's totals from its rows (``import-eml``'s and the drop container's alike)."""
    outcomes = Counter(item["outcome"] for item in items)
    pairs = Counter(m["outcome"] for item in items for m in item["mailboxes"])
    failed = Counter(item["reason"] for item in items if item["outcome"] == RecordOutcome.POISONED.value)
    return {
        "records_from_source": len(items),
        "records_after_fanout": sum(pairs.values()),
        "imported": outcomes[RecordOutcome.IMPORTED.value],
        "skipped_duplicates": outcomes[RecordOutcome.SKIPPED_DUPLICATE.value],
        "failed": sum(failed.values()),
        "failed_by_reason": dict(sorted(failed.items())),
        "pairs_imported": pairs[RecordOutcome.IMPORTED.value],
        "pairs_skipped": pairs[RecordOutcome.SKIPPED_DUPLICATE.value],
    }


def import_zip(path: Path, importer: EmlImporter, *, accept_mismatch: bool = False,
               limits: DropLimits = DEFAULT_LIMITS, sleep: Callable[[float], None] = time.sleep) -> DropReport:
    """A ZIP judged whole, then (if it may be) each EML in it imported in archive order."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        return DropReport(path.name, f"not a readable ZIP ({error})", "refused")
    with archive:
        verdict = check_drop(archive, limits)
        report = DropReport(path.name, verdict.describe(), manifest_state(verdict, accept_mismatch),
                            listed=len(verdict.emls))
        if report.manifest in ("refused", "mismatch"):
            log.warning("eml drop %s: not imported (%s)", path.name, report.manifest)
            return report
        for info in verdict.emls:
            name = f"{path.name}/{info.filename}"
            try:
                data = read_member(archive, info, limits.max_member_bytes)
            except (ValueError, zipfile.BadZipFile, NotImplementedError) as error:
                report.add(name, ImportResult.poisoned(None, PermanentError(PoisonReason.INVALID_ITEM,
                                                                            f"{name}: {error}")))
                continue
            report.add(name, _import_one(importer, data, name, sleep))
    return report


def import_files(paths: Iterator[Path], importer: EmlImporter, *, label: str,
                 sleep: Callable[[float], None] = time.sleep) -> DropReport:
    """Loose .eml files (one, or a folder's): no manifest to hold them to."""
    report = DropReport(label, "no manifest", "absent")
    for path in paths:
        report.listed += 1
        report.add(path.name, _import_one(importer, path.read_bytes(), path.name, sleep))
    return report


def _import_one(importer: EmlImporter, data: bytes, name: str, sleep: Callable[[float], None]) -> ImportResult:
    # A throttled or unreachable mailbox waits and tries again, then is reported retries_exhausted:
    # never an exception that stops the drop with its other EMLs unaccounted.
    return retrying(lambda _attempt: importer.import_eml(data, file_name=name), message_id=None, label=name,
                    sleep=sleep)


def drop_facts(name: str) -> dict[str, Any] | None:
    """What a Capture Mobile ZIP's name says, for the report; None for another vendor's name."""
    parsed = parse_drop_name(name)
    return None if parsed is None else {"day": parsed.day.isoformat(), "number": parsed.number,
                                        "zipped": parsed.zipped}


def manifest_state(verdict: DropVerdict, accept_mismatch: bool) -> str:
    if not verdict.safe:
        return "refused"
    if verdict.manifest is None and not verdict.findings:
        return "absent"
    if verdict.manifest_holds:
        return "holds"
    return "mismatch accepted" if accept_mismatch else "mismatch"
