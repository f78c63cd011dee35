"""``import-eml PATH...``: a capture vendor's EML drops (a .zip with its .mf manifest, an .eml, or a
folder of them) into the mailboxes of the people in each EML."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from shared.cli import arguments
from shared.cli.wiring import import_wiring
from shared.settings import MAX_ITEM_MB_CEILING

DESCRIPTION = """Archives a capture vendor's EML files as they are (subject, bodies, attachments byte for byte,
original Date, parties, Message-ID and threading) into the mailbox of every employee in From, To, Cc or Bcc —
mapped by the phone → email CSV, then the address, only real mailboxes — once: the id is the Message-ID (else
the EML's SHA-256), so a drop delivered twice adds nothing. A ZIP is judged whole first: members named outside
the archive, nested archives and bombs refuse it; a .mf manifest (Capture Mobile) must hold — Count equal to
the EMLs, every listed name present and not empty, nothing unlisted — or nothing in the ZIP is imported
(--accept-manifest-mismatch imports it anyway, and the report says so). Exit 0 when every ZIP was judged and
its EMLs processed (whatever was poisoned), 1 when a ZIP was refused or its manifest did not hold, 2 for bad
usage."""


class EmlUsageError(Exception):
    """Unusable arguments: exit code 2."""


def add_eml_command(commands: Any) -> None:
    command = commands.add_parser(
        "import-eml", help="import a capture vendor's EML drops (.zip with .mf manifest, .eml, or a folder)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="a .zip, an .eml, or a folder of them")
    arguments.add_delivery_arguments(command, item="item")
    command.add_argument("--mapping", type=Path, metavar="CSV",
                         help="the phone → email mapping (PhoneNumber,EmailAddress)")
    command.add_argument("--phone-pattern", type=_pattern, default=None, metavar="REGEX",
                         help="where a vendor writes phone numbers in addresses (default: a run of 7 to 15 digits, "
                              "with an optional +, in the local part or the display name)")
    command.add_argument("--accept-manifest-mismatch", action="store_true",
                         help="import a ZIP whose manifest does not hold (never one that is unsafe to open)")
    command.set_defaults(handler=run_import_eml)


def _pattern(value: str) -> re.Pattern[str]:
    if not 0 < len(value) <= 200:
        raise argparse.ArgumentTypeError("a regular expression of 1 to 200 characters")
    try:
        return re.compile(value)
    except re.error as error:
        raise argparse.ArgumentTypeError(f"not a regular expression: {error}") from None


def _inputs(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".zip", ".eml"))
        elif path.is_file() and path.suffix.lower() in (".zip", ".eml"):
            found.append(path)
        else:
            raise EmlUsageError(f"{path} is not a .zip, an .eml or a folder of them")
    return found


def run_import_eml(args: argparse.Namespace) -> int:
    from shared.domain.eml_items import PHONE_IN_ADDRESS
    from shared.service.eml_import import EmlImporter, import_files, import_zip

    try:
        inputs = _inputs(args.paths)
        if args.mapping is not None and not args.mapping.is_file():
            raise EmlUsageError(f"mapping file {args.mapping} does not exist or is not a file")
        if (problem := arguments.delivery_problem(args)) is not None:
            raise EmlUsageError(problem)
        if not 0 < args.max_item_mb <= MAX_ITEM_MB_CEILING:
            raise EmlUsageError(f"--max-item-mb must be more than 0 and at most {MAX_ITEM_MB_CEILING}")
        if args.report is not None and not args.report.parent.is_dir():
            raise EmlUsageError(f"report folder {args.report.parent} does not exist")
        wiring = import_wiring(args, mapping=args.mapping)
    except (EmlUsageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    importer = EmlImporter(wiring.mapper, wiring.writer, max_item_bytes=int(args.max_item_mb * 1024 * 1024),
                           default_region=args.region, phone_pattern=args.phone_pattern or PHONE_IN_ADDRESS)
    reports = [
        import_zip(path, importer, accept_mismatch=args.accept_manifest_mismatch) if path.suffix.lower() == ".zip"
        else import_files(iter([path]), importer, label=path.name)
        for path in inputs
    ]
    documents = [r.to_json() for r in reports]
    if args.report:
        args.report.write_text(json.dumps(documents, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(documents, indent=2, ensure_ascii=False))
    else:
        for document in documents:
            print(f"{document['file']}: manifest {document['manifest']} ({document['verdict']}); "
                  f"{document['records_from_source']} EML(s): {document['imported']} imported, "
                  f"{document['skipped_duplicates']} skipped as duplicates, {document['failed']} poisoned "
                  f"{document['failed_by_reason'] or ''}".rstrip())
    refused = any(r.manifest in ("refused", "mismatch") for r in reports)
    return 1 if refused else 0
