"""``import-chat-export FILE``: a custodian's WhatsApp "Export chat" (.zip or .txt) into mailboxes."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from shared.cli import arguments
from shared.cli.wiring import import_wiring
from shared.settings import MAX_ITEM_MB_CEILING

DESCRIPTION = """Reads a WhatsApp "Export chat" file exactly as the phone wrote it (a .txt, or a .zip holding the chat
text and its media), turns every message into a record (source: WhatsApp chat export) and archives it into the
custodian's mailbox and every other employee's in the chat, once: importing the same export again, or a later
export of the same chat that overlaps it, writes nothing twice. Exit 0 when the file was processed (whatever was
poisoned), 1 when the file cannot be read as an export, 2 for bad usage (also when its dates do not say whether
the day or the month comes first: give --date-order)."""


class ChatExportUsageError(Exception):
    """Unusable arguments: exit code 2."""


def add_chat_export_command(commands) -> None:
    command = commands.add_parser(
        "import-chat-export", help="import a custodian's WhatsApp \"Export chat\" file (.zip or .txt)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("file", type=Path, metavar="FILE", help="the export: a .zip (chat text and media) or a .txt")
    command.add_argument("--custodian", required=True, type=_mailbox, metavar="EMAIL",
                         help="the employee whose phone it was: every record goes to their mailbox")
    command.add_argument("--time-zone", required=True, type=_zone, metavar="ZONE",
                         help="the phone's IANA time zone when it exported (e.g. Europe/London): exports carry "
                              "wall-clock times and no zone")
    command.add_argument("--date-order", type=arguments.choice_of(("dmy", "mdy", "ymd")), metavar="dmy|mdy|ymd",
                         help="how the phone's region writes dates; needed only when the file's dates do not "
                              "decide it")
    command.add_argument("--participants", type=Path, metavar="CSV",
                         help="name,email rows: the chat's employees as the export shows their names")
    command.add_argument("--mapping", type=Path, metavar="CSV",
                         help="the phone → email mapping (PhoneNumber,EmailAddress), for authors shown as numbers")
    command.add_argument("--custodian-name", action="append", default=[], metavar="NAME",
                         help="the name the custodian's own lines carry (repeatable; also any --participants row "
                              "with the custodian's email)")
    command.add_argument("--chat-name", metavar="NAME", help="the chat's name (default: read from the file's name)")
    arguments.add_delivery_arguments(command)
    command.set_defaults(handler=run_import_chat_export)


def _mailbox(value: str) -> str:
    from shared.domain.identifiers import is_mailbox_address

    if not is_mailbox_address(value.strip()):
        raise argparse.ArgumentTypeError("not an address a mailbox can have")
    return value.strip().lower()


def _zone(value: str) -> str:
    # Checked against the zone database's own list: the name never becomes a path of its own.
    if len(value) > 64 or value not in _zones():
        raise argparse.ArgumentTypeError("not an IANA time zone name (e.g. Europe/London, America/New_York)")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError("not an IANA time zone this machine knows") from None
    return value


def _zones() -> set[str]:
    return available_timezones() | {"UTC"}


def _readable(path: Path | None, what: str) -> Path | None:
    if path is not None and not path.is_file():
        raise ChatExportUsageError(f"{what} {path} does not exist or is not a file")
    return path


def run_import_chat_export(args: argparse.Namespace) -> int:
    from shared.domain.chat_export import ChatExportError, DateOrderUndecided
    from shared.domain.mapping_table import parse_mapping
    from shared.domain.participants_table import parse_participants
    from shared.service.chat_export_files import ExportFileError, open_export
    from shared.service.chat_export_import import ChatExportOptions, import_prepared, prepare_export
    from shared.service.importing import ItemImporter
    from shared.service.webhook_batch_import import CapturedMediaFiles

    try:
        _readable(args.file, "export file")
        _readable(args.participants, "participants file")
        _readable(args.mapping, "mapping file")
        if (problem := arguments.delivery_problem(args)) is not None:
            raise ChatExportUsageError(problem)
        if not 0 < args.max_item_mb <= MAX_ITEM_MB_CEILING:
            raise ChatExportUsageError(f"--max-item-mb must be more than 0 and at most {MAX_ITEM_MB_CEILING}")
        if args.report is not None and not args.report.parent.is_dir():
            raise ChatExportUsageError(f"report folder {args.report.parent} does not exist")
        if args.chat_name is not None and not (0 < len(args.chat_name.strip()) <= 200 and args.chat_name.isprintable()):
            raise ChatExportUsageError("--chat-name must be printable text of 1 to 200 characters")
    except ChatExportUsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    participants: dict[str, str] = {}
    if args.participants is not None:
        table = parse_participants(args.participants.read_bytes())
        for problem in table.problems:
            print(f"participants {args.participants.name}: {problem} (row not used)", file=sys.stderr)
        participants = table.names
    if args.mapping is not None:
        parsed_mapping = parse_mapping(args.mapping.read_bytes(), args.region)
        for problem in parsed_mapping.problems:
            print(f"mapping {args.mapping.name}: {problem} (row not used)", file=sys.stderr)
    try:
        export = open_export(args.file)
    except ExportFileError as error:
        print(f"error: {args.file.name}: {error}", file=sys.stderr)
        return 1
    try:
        wiring = import_wiring(args, mapping=args.mapping)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    mapper, writer = wiring.mapper, wiring.writer
    options = ChatExportOptions(
        custodian=args.custodian, time_zone=args.time_zone, date_order=args.date_order, participants=participants,
        custodian_names=frozenset(args.custodian_name), chat_name=args.chat_name.strip() if args.chat_name else None,
    )
    with CapturedMediaFiles() as media_store:
        try:
            prepared = prepare_export(export, options, media_store=media_store, captured_at=datetime.now(UTC))
        except DateOrderUndecided as error:
            print(f"error: {args.file.name}: {error} (--date-order)", file=sys.stderr)
            return 2
        except (ChatExportError, ExportFileError) as error:
            print(f"error: {args.file.name}: {error}", file=sys.stderr)
            return 1
        importer = ItemImporter(mapper, writer, None, max_item_bytes=int(args.max_item_mb * 1024 * 1024),
                                default_region=args.region, media_sources={"whatsapp-chat-export": media_store})
        report = import_prepared(prepared, importer).to_json()
    if args.report:
        args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print_export_counts(report, where=args.mailbox_dir or "Exchange Online (Microsoft Graph)")
    return 0


def print_export_counts(report: dict, *, where: Path | str) -> None:
    from shared.service.chat_export_import import summary_lines

    print(f"{'export:':<22}{report['file']}")
    for label, value in summary_lines(report):
        print(f"{label:<22}{value}")
    print(f"{'mailboxes:':<22}{where}")
