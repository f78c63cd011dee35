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
from pathlib import Path
from typing import Any

from shared.domain.eml_drop import DEFAULT_LIMITS, DropLimits, DropVerdict, check_drop, parse_drop_name, read_member
from shared.domain.eml_items import PHONE_IN_ADDRESS, EmlFacts, EmlInvalid, read_eml
from shared.domain.eml_rendering import render_eml
from shared.domain.errors import PermanentError, PoisonReason
from shared.domain.identifiers import recapture_of
from shared.domain.ledger import RecordOutcome
from shared.domain.phones import masked_number
from shared.domain.records import record_key
from shared.ports import MailboxWriter
from shared.service.batch_import import retrying
from shared.service.import_results import ImportResult
from shared.service.importing import write_everywhere
from shared.service.mapping import MailboxMapper

log = logging.getLogger(__name__)


class EmlImporter:
    """One EML's bytes → its mailbox results, or a poisoned result with the reason."""

    def __init__(self, mapper: MailboxMapper, writer: MailboxWriter, *, max_item_bytes: int,
                 default_region: str | None = None, phone_pattern: re.Pattern[str] = PHONE_IN_ADDRESS) -> None:
        self._mapper = mapper
        self._writer = writer
        self._max_item_bytes = max_item_bytes
        self._region = default_region
        self._phone_pattern = phone_pattern

    def import_eml(self, data: bytes, *, file_name: str, key: str | None = None) -> ImportResult:
        """``key``: the record key the EML was handed off under (the drop container's path), which is
        the key of its id; None reads it from the EML (``import-eml``)."""
        sha256 = hashlib.sha256(data).hexdigest()
        try:
            facts = read_eml(data, default_region=self._region, phone_pattern=self._phone_pattern)
        except EmlInvalid as error:
            return replace(ImportResult.poisoned(None, PermanentError(
                PoisonReason.INVALID_ITEM, f"{file_name}: {error}")), raw_sha256=sha256)
        # A key of ``<id's key>.<digest>``: other bytes of a message stored before, the same message.
        if key is not None and (recapture_of(key) or key) != record_key(facts.record_id):
            return replace(ImportResult.poisoned(facts.record_id, PermanentError(
                PoisonReason.INVALID_ITEM, f"{file_name}: its id is not the one it was handed off under")),
                raw_sha256=sha256)
        result = self._archive(data, facts, file_name)
        return replace(result, source_user=masked_number(facts.sender.phone, self._region), raw_sha256=sha256)

    def _archive(self, data: bytes, facts: EmlFacts, file_name: str) -> ImportResult:
        try:
            mapped = self._mapper.map_participants((facts.sender, *facts.recipients))
            if not mapped:
                raise PermanentError(PoisonReason.NO_MAPPING, "no participant maps to a mailbox that exists")
            item = render_eml(data, facts, file_name=file_name, default_region=self._region)
            size = item.mime_size()
            if size > self._max_item_bytes:
                raise PermanentError(PoisonReason.TOO_BIG,
                                     f"the item is {size} bytes, over the limit of {self._max_item_bytes}")
            results, unavailable = write_everywhere(self._writer, record_key(facts.record_id), mapped, item)
            if not results:
                raise PermanentError(PoisonReason.NO_MAPPING, "every mapped mailbox is unavailable")
        except PermanentError as error:
            return ImportResult.poisoned(facts.record_id, error)
        imported = any(r.outcome is RecordOutcome.IMPORTED for r in results)
        return ImportResult(
            RecordOutcome.IMPORTED if imported else RecordOutcome.SKIPPED_DUPLICATE, facts.record_id,
            tuple(results), size_bytes=size, unavailable=tuple(unavailable),
        )


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
            except (ValueError, zipfile.BadZipFile) as error:
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
