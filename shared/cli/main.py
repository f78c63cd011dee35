"""``python -m shared.cli``: the administrator's tool.

    demo                       run one scheduled window on local infrastructure and print the report
    import ITEMS.jsonl ...     import a JSON Lines file of records (or of Meta's webhook bodies) into mailboxes
    import-chat-export FILE    import a custodian's WhatsApp "Export chat" (.zip or .txt) into mailboxes
    import-eml PATH ...        import a capture vendor's EML drops (.zip with its .mf manifest, .eml, folders)
    mapping check MAP.csv      check a phone → email mapping file, line by line
    mapping upload MAP.csv     check it, then store it where the functions read it
    mapping show PHONE         which mailbox a number maps to, and by which rule
    poison list|show|replay|purge   the records that could not be archived
    status                     recent windows: reconciled or not, and why not
    report                     a window's admin report (summary, JSON or CSV)
    backfill --from --to       archive a past range again, with a progress bar
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shared.cli import arguments
from shared.cli.admin import (
    AdminUsageError,
    add_ledger_command,
    add_mapping_commands,
    add_poison_commands,
    add_status_command,
)
from shared.cli.chat_exports import add_chat_export_command
from shared.cli.eml_drops import add_eml_command
from shared.cli.reports import add_report_commands
from shared.cli.verify import add_verify_command
from shared.cli.wiring import import_wiring
from shared.settings import MAX_ITEM_MB_CEILING

MAIN_EPILOG = """Against a deployment, set AzureWebJobsStorage__accountName (and sign in with `az login`: the
commands use your Entra ID identity) or AzureWebJobsStorage, plus the app's other settings.

a day's routine:
  status                               did every recent window reconcile? (exit 1 when one is overdue)
  report                               the latest window's admin report: totals and every failure
  poison list                          what could not be archived, by reason

when records went to poison because a number was not mapped:
  mapping check MAP.csv                check the corrected file, line by line
  mapping upload MAP.csv               store it (the old one is kept); functions use it within a minute
  mapping show "+44 7700 900123"       which mailbox that number reaches now, and by which rule
  poison replay --reason no_mapping    archive those records (once: duplicates are skipped)

after an outage, or to archive a range again:
  backfill --from 2026-11-01 --to 2026-11-07

Every command takes --json for scripts; `COMMAND --help` explains each one. Exit codes: 0 done,
1 the command ran and found a problem (overdue window, mapping errors, not found), 2 bad usage."""


IMPORT_FORMATS = ("telemessage", "whatsapp-cloud")


class UsageError(Exception):
    """Unusable arguments: exit code 2 with a clear message."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (UsageError, AdminUsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.cli",
        description="WhatsApp Archiver: archive TeleMessage WhatsApp records into Exchange Online mailboxes.",
        epilog=MAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run one archive window end to end on local infrastructure",
        description="Starts Azurite and a local TeleMessage on loopback, runs one scheduled window through "
                    "the registered functions with the local host runner, writes the mail as .eml files and "
                    "prints the report. State is kept in --state-dir, so a second run imports nothing new.",
    )
    demo.add_argument("--state-dir", type=Path, default=Path(".demo"), help="where state and mail go (.demo)")
    demo.add_argument("--source", choices=("telemessage", "whatsapp-cloud", "chat-export", "eml-drop"),
                      default="telemessage",
                      help="telemessage: one scheduled window of the local TeleMessage's day (default); "
                           "whatsapp-cloud: a day of WhatsApp Business Platform webhooks, signed and delivered "
                           "by a local Meta over loopback HTTP, then reconciled; chat-export: a custodian's "
                           "zipped \"Export chat\" uploaded to the chat-exports container and imported by the "
                           "blob trigger, its report beside the upload; eml-drop: a capture vendor's EML drops "
                           "(one ZIP whose manifest holds, one whose manifest does not) in the eml-drops "
                           "container, judged and archived by the blob trigger, a report beside each")
    demo.add_argument("--fresh", action="store_true", help="forget earlier demo runs first")
    demo.add_argument("--relist", action="store_true",
                      help="hand the demo's day of traffic off again (shows duplicates being skipped)")
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    demo.add_argument("--transcripts", action="store_true",
                      help="daily transcript mode: one item per chat per day (use with --fresh, so that the "
                           "demo's traffic is a whole finished day)")
    demo.add_argument("--graph", action="store_true",
                      help="archive into a real tenant through Microsoft Graph (GRAPH_* settings from the "
                           "environment) instead of .eml files")
    demo.add_argument("--mapping", type=Path, metavar="MAP.csv",
                      help="with --graph: map the demo's phone numbers to mailboxes of your tenant")
    demo.set_defaults(handler=_demo)

    imp = commands.add_parser(
        "import", help="import a JSON Lines file of records into .eml mailboxes",
        description="Runs each record (one per line, attachments inline) through validation, mapping, "
                    "rendering and the .eml writer. Exit 0 when the file was processed, whatever was poisoned. "
                    "With --format whatsapp-cloud each line is one WhatsApp Business Platform webhook body as "
                    "Meta sent it; media is fetched from WHATSAPP_GRAPH_BASE_URL with WHATSAPP_ACCESS_TOKEN "
                    "from the environment (exit 1 when Meta refuses the token: the run stops at that line).",
    )
    imp.add_argument("items", type=Path, metavar="ITEMS.jsonl")
    imp.add_argument("--format", choices=IMPORT_FORMATS, default=IMPORT_FORMATS[0],
                     help="telemessage: one canonical record a line (default); whatsapp-cloud: one webhook "
                          "body a line")
    imp.add_argument("--mapping", type=Path, required=True, metavar="MAP.csv", help="PhoneNumber,EmailAddress CSV")
    imp.add_argument("--directory", type=Path, metavar="USERS.txt",
                     help="addresses that have a mailbox, one per line (not with --graph)")
    imp.add_argument("--mailbox-dir", type=Path, metavar="DIR", help="where .eml mailboxes go (not with --graph)")
    imp.add_argument("--graph", action="store_true",
                     help="write through Microsoft Graph and check mailboxes in Entra ID, with the GRAPH_* "
                          "settings from the environment")
    imp.add_argument("--max-item-mb", type=float, default=10.0, metavar="N",
                     help=f"largest rendered item (default 10, at most {MAX_ITEM_MB_CEILING})")
    imp.add_argument("--report", type=Path, metavar="REPORT.json", help="write the JSON report here")
    imp.add_argument("--region", type=arguments.phone_region, default=None, metavar="CC",
                     help="region for national phone numbers, e.g. GB")
    imp.add_argument("--no-auto-mapping", action="store_true", help="do not map by the participant's email")
    imp.add_argument("--json", action="store_true", help="print the report as JSON instead of the counts")
    imp.set_defaults(handler=_import)

    mapping = commands.add_parser("mapping", help="work with the phone → email mapping file")
    mapping_commands = mapping.add_subparsers(dest="mapping_command", required=True, metavar="ACTION")
    check = mapping_commands.add_parser(
        "check", help="check a mapping file and report every problem with its line number",
        description="Exit code 0 when the file has no errors (warnings allowed), 1 otherwise.",
    )
    check.add_argument("file", type=Path, metavar="MAP.csv")
    check.add_argument("--region", type=arguments.phone_region, default=None, metavar="CC",
                       help="region for national numbers, e.g. GB")
    check.add_argument("--json", action="store_true", help="print the verdict and every problem as JSON")
    check.set_defaults(handler=_mapping_check)
    add_mapping_commands(mapping_commands)
    add_poison_commands(commands)
    add_status_command(commands)
    add_ledger_command(commands)
    add_report_commands(commands)
    add_chat_export_command(commands)
    add_eml_command(commands)
    add_verify_command(commands)
    return parser


def _readable(path: Path, what: str) -> Path:
    if not path.is_file():
        raise UsageError(f"{what} {path} does not exist or is not a file")
    return path


def _import(args: argparse.Namespace) -> int:
    from shared.domain.mapping_table import parse_mapping

    items = _readable(args.items, "items file")
    mapping_path = _readable(args.mapping, "mapping file")
    if (problem := arguments.delivery_problem(args)) is not None:
        raise UsageError(problem)
    if not 0 < args.max_item_mb <= MAX_ITEM_MB_CEILING:
        raise UsageError(f"--max-item-mb must be more than 0 and at most {MAX_ITEM_MB_CEILING}")
    parsed = parse_mapping(mapping_path.read_bytes(), args.region)
    if args.report is not None and not args.report.parent.is_dir():
        raise UsageError(f"report folder {args.report.parent} does not exist")
    if parsed.rows == 0 and parsed.errors:  # empty file, or no recognisable header anywhere
        raise UsageError(f"mapping file {mapping_path} is unusable: {parsed.problems[0]}")
    # Meta's settings are checked before anything is written: a bad one is a usage error.
    meta_media = _meta_media() if args.format == "whatsapp-cloud" else None
    for problem in parsed.problems:
        print(f"mapping {mapping_path.name}: {problem} (row not used)", file=sys.stderr)

    try:
        wiring = import_wiring(args, mapping=mapping_path, auto_mapping=not args.no_auto_mapping)
    except ValueError as error:
        raise UsageError(str(error)) from None
    mapper, writer = wiring.mapper, wiring.writer
    if args.format == "whatsapp-cloud":
        report = _import_webhooks(items, args, mapper, writer, meta_media)
    else:
        from shared.service.batch_import import import_lines

        with items.open("rb") as handle:
            report = import_lines(handle, _importer(args, mapper, writer)).to_json()
    if args.report:
        args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        _print_counts(report, where=args.mailbox_dir or "Exchange Online (Microsoft Graph)")
    if "stopped" in report:
        print(f"error: stopped at line {report['stopped']['line']}: {report['stopped']['error']}; the lines "
              "before it are archived, run the file again once the setting is fixed", file=sys.stderr)
        return 1
    return 0


def _importer(args: argparse.Namespace, mapper, writer, media_sources=None):
    from shared.service.importing import ItemImporter

    return ItemImporter(
        mapper, writer, None, max_item_bytes=int(args.max_item_mb * 1024 * 1024), default_region=args.region,
        media_sources=media_sources,
    )


NO_MEDIA_TOKEN = ("WHATSAPP_ACCESS_TOKEN is not set: media cannot be fetched from Meta; messages with media are "
                  "archived saying their media could not be captured (partially imported)")


def _meta_media():
    """Meta's media client from the environment's WHATSAPP_* settings; None, said on stderr, without a token."""
    from pydantic import ValidationError

    from shared.composition import Container
    from shared.domain.errors import ConfigurationError
    from shared.domain.webhook_auth import unresolved_as_unset
    from shared.settings import Settings

    try:
        settings = Settings(directory="graph", mailbox_writer="graph")
    except ValidationError as error:
        names = ", ".join(".".join(map(str, e["loc"])) or "settings" for e in error.errors(include_input=False))
        raise UsageError(f"the environment's settings are not valid ({names})") from None
    if not unresolved_as_unset(settings.whatsapp_access_token.get_secret_value()):
        print(f"warning: {NO_MEDIA_TOKEN}", file=sys.stderr)
        return None
    try:
        return Container(settings).meta_media
    except ConfigurationError as error:
        raise UsageError(str(error)) from None


def _import_webhooks(items: Path, args: argparse.Namespace, mapper, writer, meta_media) -> dict:
    import contextlib
    from datetime import UTC, datetime

    from shared.domain.whatsapp_cloud import SOURCE
    from shared.service.webhook_batch_import import CapturedMediaFiles, import_webhook_lines

    with CapturedMediaFiles() as store, items.open("rb") as handle, \
            (meta_media or contextlib.nullcontext()):
        importer = _importer(args, mapper, writer, media_sources={SOURCE: store})
        return import_webhook_lines(
            handle, importer, store=store, fetcher=meta_media, received_at=datetime.now(UTC),
            media_note=None if meta_media else NO_MEDIA_TOKEN,
        ).to_json()


def _print_counts(report: dict, *, where: Path | str | None = None) -> None:
    if "bodies" in report:
        print(f"webhook bodies read:  {report['bodies']}")
    print(f"records listed:       {report['listed']}")
    print(f"fan-out (record x mailbox): {report['fanout']}")
    print(f"imported:             {report['imported']}")
    print(f"skipped duplicates:   {report['skipped_duplicates']}")
    if "partially_imported" in report:
        print(f"partially imported:   {report['partially_imported']} (media not captured)")
    poisoned = report["poisoned"]
    print(f"poisoned:             {sum(poisoned.values())}"
          + (" (" + ", ".join(f"{k} {v}" for k, v in poisoned.items()) + ")" if poisoned else ""))
    if "statuses" in report:
        statuses = report["statuses"]
        counts = ", ".join(f"{k} {v}" for k, v in statuses["counts"].items())
        print(f"statuses:             {sum(statuses['counts'].values())}" + (f" ({counts})" if counts else "")
              + (f", {statuses['repeated']} repeated" if statuses["repeated"] else ""))
        for failed in statuses["failed"]:
            codes = ", ".join(f"{e['code']} {e['title'] or ''}".strip() for e in failed["errors"]) or "no error given"
            print(f"  failed: {failed['messageId']} (line {failed['line']}): {codes}")
        media = report["media"]
        print(f"media:                {media['captured']} captured, {media['not_captured']} not captured")
    if where is not None:
        print(f"mailboxes:            {where}")


def _mapping_check(args: argparse.Namespace) -> int:
    from shared.domain.mapping_table import parse_mapping

    path = _readable(args.file, "mapping file")
    parsed = parse_mapping(path.read_bytes(), args.region)
    errors = len(parsed.errors)
    if args.json:
        print(json.dumps({
            "file": str(path), "ok": parsed.ok, "rows": parsed.rows, "numbers": len(parsed.table),
            "errors": errors, "warnings": len(parsed.problems) - errors,
            "problems": [{"line": p.line, "severity": p.severity.value, "message": p.message} for p in parsed.problems],
        }, indent=2, ensure_ascii=False))
        return 0 if parsed.ok else 1
    for problem in parsed.problems:
        print(f"{path.name}: {problem}")
    warnings = len(parsed.problems) - errors
    verdict = "PASS" if parsed.ok else "FAIL"
    print(f"{verdict}: {parsed.rows} rows, {len(parsed.table)} numbers mapped, {errors} errors, {warnings} warnings")
    return 0 if parsed.ok else 1


def _demo(args: argparse.Namespace) -> int:
    from shared.local.demo import run_demo

    if args.mapping and not args.graph:
        raise UsageError("--mapping goes with --graph (the local demo maps its own people)")
    if args.source != "telemessage" and (args.relist or args.transcripts or args.graph):
        raise UsageError("--relist, --transcripts and --graph go with --source telemessage")
    mapping = _readable(args.mapping, "mapping file") if args.mapping else None
    return run_demo(state_dir=args.state_dir, fresh=args.fresh, relist=args.relist, as_json=args.json,
                    graph=args.graph, transcripts=args.transcripts, mapping=mapping, source=args.source)
