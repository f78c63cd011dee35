"""Synchronous import of a JSON Lines file through the same validation, mapping, rendering and
writing as the queue function, with a report in the shape of the connector's admin log."""

from __future__ import annotations

import codecs
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from shared.domain.errors import PoisonReason, TransientError
from shared.domain.json_values import is_json_object
from shared.domain.ledger import RecordOutcome
from shared.service.import_results import ImportResult
from shared.service.importing import ItemImporter

log = logging.getLogger(__name__)

IMPORT_ATTEMPTS = 3  # as often as the items queue tries a record before it is poisoned


def _nothing() -> None:
    return None


def import_with_retries(
    importer: ItemImporter, raw: bytes, *, message_id: str | None, label: str, sleep: Callable[[float], None],
    before: Callable[[], None] = _nothing, after_failure: Callable[[], None] = _nothing,
) -> ImportResult:
    """One record of a file import, tried as the items queue would try it: a TransientError waits (the
    throttle's Retry-After, at most 30 s) and tries again; still failing after ``IMPORT_ATTEMPTS`` it is
    ``retries_exhausted`` and not written (a later run of the file tries it again). ``before`` runs ahead
    of each attempt and ``after_failure`` after a failed one (a source's media fetched, or forgotten)."""
    return retrying(lambda attempt: importer.import_raw(raw, attempt=attempt), message_id=message_id, label=label,
                    sleep=sleep, before=before, after_failure=after_failure)


def retrying(
    attempt_import: Callable[[int], ImportResult], *, message_id: str | None, label: str,
    sleep: Callable[[float], None], before: Callable[[], None] = _nothing, after_failure: Callable[[], None] = _nothing,
) -> ImportResult:
    """``attempt_import(attempt)`` under the file imports' one retry rule (``import_with_retries``):
    for any source's importer, a record of a file or an EML of a drop."""
    attempt = 1
    while True:
        try:
            before()
            result = attempt_import(attempt)
        except TransientError as error:
            after_failure()
            if attempt >= IMPORT_ATTEMPTS:
                log.warning("record %s: still failing after %d attempts (%s)", label, attempt, error)
                return ImportResult(RecordOutcome.POISONED, message_id,
                                    reason=PoisonReason.RETRIES_EXHAUSTED, detail=str(error)[:2000])
            sleep(min(error.retry_after or 1.0, 30.0))
            attempt += 1
            continue
        if result.outcome is RecordOutcome.SKIPPED_DUPLICATE:
            # Nothing was written: the item already in the mailbox says what it captured.
            result = replace(result, partial=False)
        return result


@dataclass
class BatchReport:
    """``listed`` and ``poisoned`` count records; ``fanout``, ``imported`` and ``skipped_duplicates``
    count record × mailbox pairs, as the documented connector's admin log does."""

    items: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])

    def add(self, line: int, result: ImportResult, message_id: str | None) -> dict[str, Any]:
        """The entry added, for a caller that knows more about where the record stood."""
        entry: dict[str, Any] = {
            "line": line,
            "messageId": message_id,
            "outcome": result.outcome.value,
            "mailboxes": [m.mailbox for m in result.mailboxes],
            "reason": result.reason.value if result.reason else None,
        }
        if result.mailboxes:
            entry["mailbox_outcomes"] = {m.mailbox: {"outcome": m.outcome.value, "rule": m.rule.value}
                                         for m in result.mailboxes}
        if result.detail:
            entry["detail"] = result.detail
        if result.partial:
            entry["partial"] = True
        if result.unavailable:
            entry["unavailable_mailboxes"] = list(result.unavailable)
        self.items.append(entry)
        return entry

    def to_json(self) -> dict[str, Any]:
        pairs = [o for item in self.items for o in item.get("mailbox_outcomes", {}).values()]
        poisoned = Counter(i["reason"] for i in self.items if i["outcome"] == RecordOutcome.POISONED)
        return {
            "listed": len(self.items),
            "fanout": len(pairs),
            "imported": sum(p["outcome"] == RecordOutcome.IMPORTED for p in pairs),
            "skipped_duplicates": sum(p["outcome"] == RecordOutcome.SKIPPED_DUPLICATE for p in pairs),
            "partially_imported": sum(bool(i.get("partial")) for i in self.items),
            "poisoned": dict(sorted(poisoned.items())),
            "items": self.items,
        }


def import_lines(lines: Iterable[bytes], importer: ItemImporter) -> BatchReport:
    """Every non-blank line becomes exactly one report entry; nothing here raises for bad input."""
    report = BatchReport()
    for number, line in enumerate(lines, start=1):
        if number == 1:
            line = line.removeprefix(codecs.BOM_UTF8)  # Notepad and PowerShell write one
        if not line.strip():
            continue
        result = importer.import_raw(line)
        report.add(number, result, result.message_id or _loose_message_id(line))
    return report


def _loose_message_id(line: bytes) -> str | None:
    """The id of a record that failed validation, when the line still says it, for the report."""
    try:
        value: object = json.loads(line)
    except ValueError:
        return None
    message_id = value.get("messageId") if is_json_object(value) else None
    return message_id if isinstance(message_id, str) else None
