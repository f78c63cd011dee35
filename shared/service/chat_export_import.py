"""``import-chat-export``: a custodian's export file, read, its media stored, its records archived.

The same steps serve the command line (records imported here, one by one) and the function app
(records handed to the items queue, as every source's are): ``prepare_export`` reads the file,
stores each media file once (content-addressed, where the importer reads this source's
attachments) and builds the records; the caller decides where they go. The report has the
custodian's view of the file — lines, messages, system lines, unparsed lines, media attached,
missing and unreferenced — and one item per record, with the admin log's counts of pairs.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain.chat_export import ParsedChat, parse_chat
from shared.domain.chat_export_records import (
    SOURCE,
    ExportContext,
    ExportRecord,
    ExportRecords,
    MediaFile,
    build_records,
)
from shared.domain.errors import TransientError
from shared.domain.ledger import RecordOutcome
from shared.domain.records import record_key
from shared.ports import CapturedMediaStore
from shared.service.batch_import import BatchReport, import_with_retries
from shared.service.chat_export_files import ExportFile
from shared.service.import_results import ImportResult
from shared.service.importing import ItemImporter
from shared.service.listing import serialise_item

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ChatExportOptions:
    custodian: str  # email
    time_zone: str  # IANA
    date_order: str | None = None
    participants: Mapping[str, str] = field(default_factory=dict[str, str])  # name as the chat shows it → email
    custodian_names: frozenset[str] = frozenset()
    chat_name: str | None = None  # else read from the file's name


@dataclass(frozen=True)
class PreparedExport:
    export: ExportFile
    parsed: ParsedChat
    built: ExportRecords
    options: ChatExportOptions
    chat_name: str


def media_attachment_id(sha256: str) -> str:
    """Where a media file is stored: by its content, so the same photo in two exports is kept once."""
    return f"export-{sha256}"


def prepare_export(
    export: ExportFile, options: ChatExportOptions, *, media_store: CapturedMediaStore, captured_at: datetime,
) -> PreparedExport:
    """Raises ChatExportError when the text cannot be read as an export (no record is made then)."""
    parsed = parse_chat(export.transcript, date_order=options.date_order)
    media: dict[str, MediaFile] = {}
    for name, member in export.media.items():
        attachment_id = media_attachment_id(member.sha256)
        if not media_store.has(attachment_id):
            _, digest = media_store.put(attachment_id, export.open_member(name), {
                "source": SOURCE, "sha256": member.sha256, "export_sha256": export.sha256,
            })
            if digest != member.sha256:  # the zip changed under us: never attach bytes other than hashed
                raise TransientError(f"media file {attachment_id} read back with another SHA-256")
        media[name] = MediaFile(name, attachment_id, member.size, member.sha256)
    chat_name = options.chat_name or export.chat_name
    context = ExportContext(
        custodian=options.custodian.lower(), time_zone=options.time_zone, chat_name=chat_name,
        file_name=export.name, file_sha256=export.sha256, captured_at=captured_at,
        participants=options.participants, custodian_names=options.custodian_names,
        transcript_sha256=export.transcript_sha256 if export.is_zip else None, media=media,
    )
    built = build_records(parsed, context)
    log.info("chat export %s: %d line(s), %d record(s), %d media attached, %d missing, %d unreferenced",
             export.sha256[:16], parsed.lines, built.count, built.media_attached, len(built.media_missing),
             len(built.media_unreferenced))
    return PreparedExport(export, parsed, built, options, chat_name)


def record_bytes(item: ExportRecord) -> bytes:
    """The record as its claim check holds it: the canonical JSON, camelCase, without empty fields."""
    return serialise_item(item.record.model_dump(mode="json", by_alias=True, exclude_none=True))


@dataclass
class ChatExportReport:
    prepared: PreparedExport
    batch: BatchReport = field(default_factory=BatchReport)
    stopped: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return export_report(self.prepared, self.batch.to_json(), stopped=self.stopped)


def export_report(
    prepared: PreparedExport, batch: Mapping[str, Any], *, stopped: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report of one export: the file's own counts, then the admin log's (pairs), then items."""
    parsed, built, export = prepared.parsed, prepared.built, prepared.export
    kinds = Counter(message.kind for message in parsed.messages)
    report: dict[str, Any] = {
        "file": export.name,
        "sha256": export.sha256,
        "transcript": export.transcript_name if export.is_zip else None,
        "chat": prepared.chat_name,
        "chatId": built.chat_id,
        "chatNameFrom": "given" if prepared.options.chat_name else "file name",
        "custodian": prepared.options.custodian,
        "timeZone": prepared.options.time_zone,
        "dateOrder": parsed.date_order,
        "dateOrderAssumed": parsed.date_order_assumed,
        "group": built.group,
        "lines": parsed.lines,
        "messages": len(parsed.messages) - kinds["system"],
        "system": kinds["system"],
        "unparsed": parsed.unparsed_lines,
        "kinds": dict(sorted(kinds.items())),
        "records": built.count,
        "fanout": batch["fanout"],
        "imported": batch["imported"],
        "skipped_duplicates": batch["skipped_duplicates"],
        "partially_imported": batch["partially_imported"],
        "poisoned": batch["poisoned"],
        "messages_new": sum(1 for i in batch["items"] if i["outcome"] == RecordOutcome.IMPORTED),
        "messages_already_archived": sum(1 for i in batch["items"] if i["outcome"] == RecordOutcome.SKIPPED_DUPLICATE),
        "media_attached": built.media_attached,
        "media_missing": len(built.media_missing),
        "media_unreferenced": len(built.media_unreferenced),
        "media_missing_files": [{"line": line, "file": name} for line, name in built.media_missing],
        "media_unreferenced_files": list(built.media_unreferenced),
        "refused_members": [{"member": name, "why": why} for name, why in export.refused],
        "renamed_members": [{"member": name, "kept_as": kept} for name, kept in export.renamed],
        "ignored_members": list(export.ignored),
        "notes": list(parsed.notes) + ([] if prepared.options.chat_name else [
            "the chat's name was read from the file's name: records of one chat share ids only under one name, "
            "so give the chat's name (--chat-name, sidecar chatName) if the file was renamed"]),
        "items": list(batch["items"]),
    }
    if parsed.messages:
        report["first_message_line"] = parsed.messages[0].first_line
        report["last_message_line"] = parsed.messages[-1].last_line
    if stopped:
        report["stopped"] = stopped
    return report


def import_prepared(
    prepared: PreparedExport, importer: ItemImporter, *, sleep: Callable[[float], None] = time.sleep,
) -> ChatExportReport:
    """Each record through the importer, as the items queue would: mapping, rendering, writing once.
    A record still failing after three attempts is ``retries_exhausted`` and a later run tries it."""
    report = ChatExportReport(prepared)
    for item in prepared.built.iter_records():
        result = _import_one(item, importer, sleep)
        entry = report.batch.add(item.first_line, result, item.record.message_id)
        entry.update(item_facts(item))
    return report


def item_facts(item: ExportRecord) -> dict[str, Any]:
    """What the report says of a record beyond its outcome: where it was in the file, what it is, and
    what it is flagged for (``flags``: the codes, ``notes``: the sentences); ``reason`` stays the
    poison reason alone."""
    return {
        "lines": [item.first_line, item.last_line], "kind": item.kind,
        "flags": [note.split(":", 1)[0] for note in item.notes], "notes": list(item.notes),
    }


def _import_one(item: ExportRecord, importer: ItemImporter, sleep: Callable[[float], None]) -> ImportResult:
    return import_with_retries(importer, record_bytes(item), message_id=item.record.message_id,
                               label=record_key(item.record.message_id)[:16], sleep=sleep)


def summary_lines(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """An export's report as (label, value) lines, for the command line and the demo alike."""
    poisoned = report["poisoned"]
    flagged = Counter(flag for item in report["items"] for flag in item.get("flags", []))
    lines = [
        ("chat:", f"{report['chat']} [{report['chatId']}], {report['timeZone']}, dates {report['dateOrder']}"
                  + (" (assumed)" if report["dateOrderAssumed"] else "")),
        ("lines:", f"{report['lines']} ({report['messages']} messages, {report['system']} system, "
                   f"{report['unparsed']} unparsed)"),
        ("records:", f"{report['records']} (fan-out {report['fanout']} record × mailbox pairs)"),
        ("imported:", f"{report['imported']} pairs ({report['messages_new']} new records)"),
        ("skipped duplicates:", f"{report['skipped_duplicates']} pairs ({report['messages_already_archived']} "
                                "records archived before)"),
        ("poisoned:", f"{sum(poisoned.values())}"
                      + (" (" + ", ".join(f"{k} {v}" for k, v in poisoned.items()) + ")" if poisoned else "")),
        ("media:", f"{report['media_attached']} attached, {report['media_missing']} missing, "
                   f"{report['media_unreferenced']} unreferenced (archived as items of their own)"),
    ]
    if flagged:
        lines.append(("flagged items:", ", ".join(f"{k} {v}" for k, v in sorted(flagged.items()))))
    lines += [("note:", note) for note in report["notes"]]
    return lines
