"""The commands that work on a deployment's storage: the mapping file the functions read, and the
poison queues. Settings (``AzureWebJobsStorage`` or ``AzureWebJobsStorage__accountName``, the
container and blob names, the directory) come from the environment, as the function app reads them.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.cli import arguments


class AdminUsageError(Exception):
    """Unusable arguments or settings: exit code 2."""


def add_mapping_commands(mapping_commands) -> None:
    upload = mapping_commands.add_parser(
        "upload", help="check a mapping file, then store it where the functions read it",
        description="Checks the file as `mapping check` does and, only if it has no errors, stores it as the "
                    "mapping blob in the state container (MAPPING_BLOB). The file it replaces is kept under "
                    "history/. Running functions pick the new file up within a minute, without a redeploy. "
                    "Exit 0 stored, 1 not stored because of errors.",
    )
    upload.add_argument("file", type=Path, metavar="MAP.csv")
    upload.add_argument("--region", type=arguments.phone_region, default=None, metavar="CC",
                        help="region for national numbers (default: DEFAULT_PHONE_REGION)")
    upload.add_argument("--json", action="store_true", help="print the result as JSON")
    upload.set_defaults(handler=_mapping_upload)

    show = mapping_commands.add_parser(
        "show", help="which mailbox a phone number maps to, and by which rule",
        description="Applies the connector's precedence to one number with the current mapping blob and "
                    "directory: the CSV, then (for a record's participant) the email property, then the "
                    "directory's phone numbers when that rule is on. Exit 0 mapped, 1 not mapped.",
    )
    show.add_argument("phone", metavar="PHONE", type=arguments.phone_text,
                      help="any human format: +44 7700 900123, 0044…, tel:…")
    show.add_argument("--json", action="store_true", help="print the answer as JSON")
    show.set_defaults(handler=_mapping_show)


def add_poison_commands(commands) -> None:
    poison = commands.add_parser(
        "poison", help="list, show, replay and purge records that could not be archived",
        description="Works on the items-poison, listing-poison and transcripts-poison queues of the deployment "
                    "in AzureWebJobsStorage: the connector's own poison messages and the work the host moved "
                    "there after maxDequeueCount failed attempts. Listing receives every message and makes it "
                    "visible again at the end.",
    )
    actions = poison.add_subparsers(dest="poison_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every poison message, oldest failure first")
    listing.add_argument("--reason", type=arguments.poison_reason, help="only this reason, e.g. no_mapping")
    listing.add_argument("--queue", type=arguments.poison_queue, help="only this queue, e.g. items-poison")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_poison_list)

    show = actions.add_parser("show", help="one poison message, whole (always JSON)")
    show.add_argument("id", metavar="ID", type=arguments.message_id, help="the message id from `poison list`")
    show.add_argument("--json", action="store_true", help="accepted for symmetry: the output is JSON anyway")
    show.set_defaults(handler=_poison_show)

    replay = actions.add_parser(
        "replay", help="put poisoned work back on its queue (after fixing the cause)",
        description="Records go back to the items queue (imported once; still failing ones return to poison "
                    "with their reason and history); listing pages and transcript tasks to their queues.",
    )
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--reason", type=arguments.poison_reason, help="every message with this reason, e.g. no_mapping")
    which.add_argument("--message-id", type=arguments.message_id, help="one message, by the id from `poison list`")
    which.add_argument("--all", action="store_true", help="every replayable message")
    replay.add_argument("--dry-run", action="store_true", help="say what would be replayed, change nothing")
    replay.add_argument("--accept-manifest-mismatch", action="store_true",
                        help="an EML drop poisoned manifest_mismatch is imported although its manifest still does "
                             "not hold (never one unsafe to open); its report records the acceptance")
    replay.add_argument("--json", action="store_true", help="print JSON")
    replay.set_defaults(handler=_poison_replay)

    purge = actions.add_parser(
        "purge", help="delete poison messages whose last failure is older than N days",
        description="The records' claim-check blobs are kept (evidence); only the queue messages go.",
    )
    purge.add_argument("--older-than", type=arguments.number_between(0, 36500), required=True, metavar="DAYS")
    purge.add_argument("--dry-run", action="store_true", help="say what would be deleted, change nothing")
    purge.add_argument("--json", action="store_true", help="print JSON")
    purge.set_defaults(handler=_poison_purge)


def deployment_storage_set() -> bool:
    """Whether the environment names a deployment's storage (what `status`, `report` and `verify` read)."""
    from shared.settings import get_settings

    try:
        s = get_settings()  # a bad setting is a usage error
    except ValueError as error:
        raise AdminUsageError(f"settings: {error}") from None
    return bool(s.storage_connection or s.storage_account_name or s.storage_blob_service_uri)


def _container():
    from shared.composition import get_container

    try:
        container = get_container()  # reads the settings: a bad one is a usage error
    except ValueError as error:
        raise AdminUsageError(f"settings: {error}") from None
    if not deployment_storage_set():
        raise AdminUsageError(
            "set AzureWebJobsStorage (or AzureWebJobsStorage__accountName) to the deployment's storage"
        )
    return container


def _mapping_upload(args: argparse.Namespace) -> int:
    from shared.domain.mapping_table import parse_mapping

    if not args.file.is_file():
        raise AdminUsageError(f"mapping file {args.file} does not exist or is not a file")
    container = _container()
    if container.settings.mapping_file:
        raise AdminUsageError("MAPPING_FILE is set: the functions read that local file, not the blob")
    data = args.file.read_bytes()
    parsed = parse_mapping(data, args.region or container.settings.default_phone_region)
    for problem in parsed.problems:
        print(f"{args.file.name}: {problem}", file=sys.stderr if args.json else sys.stdout)
    result: dict[str, Any] = {
        "file": str(args.file), "rows": parsed.rows, "numbers": len(parsed.table),
        "errors": len(parsed.errors), "warnings": len(parsed.problems) - len(parsed.errors), "stored": False,
    }
    kept = None
    if parsed.ok:
        source = container.mapping_blob
        kept = source.upload(data)
        result.update(stored=True, location=source.location, previous_version=kept)
    if args.json:
        print(json.dumps(result, indent=2))
    elif result["stored"]:
        print(f"PASS: {parsed.rows} rows, {len(parsed.table)} numbers mapped; stored as {result['location']}")
        print(f"earlier version kept as {kept}" if kept else "no earlier version to keep (or the same file)")
        print("running functions use it within a minute; replay no_mapping records with: "
              "python -m shared.cli poison replay --reason no_mapping")
    else:
        print(f"FAIL: {result['errors']} errors; nothing stored (fix the lines above and upload again)")
    return 0 if parsed.ok else 1


def _mapping_show(args: argparse.Namespace) -> int:
    explanation = _container().mapper.explain_phone(args.phone)
    if args.json:
        print(json.dumps({
            "phone": explanation.phone, "mailbox": explanation.mailbox,
            "rule": explanation.rule.value if explanation.rule else None, "notes": explanation.notes,
        }, indent=2, ensure_ascii=False))
    elif explanation.mailbox:
        rule = explanation.rule.value if explanation.rule else "none"
        print(f"{explanation.phone} → {explanation.mailbox} (rule: {rule})")
        for note in explanation.notes:
            print(f"  {note}")
    else:
        print(f"{explanation.phone} → no mailbox by phone")
        for note in explanation.notes:
            print(f"  {note}")
    return 0 if explanation.mailbox else 1


def _poison_list(args: argparse.Namespace) -> int:
    from shared.service.poison import count_by_reason

    entries = _container().poison_queues().list(reason=args.reason, queue=args.queue)
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=2, ensure_ascii=False))
        return 0
    if not entries:
        print("no poison messages" + (f" with reason {args.reason}" if args.reason else ""))
        return 0
    print(f"{'ID':36}  {'QUEUE':18} {'REASON':18} {'ATTEMPTS':>8}  {'LAST FAILED (UTC)':24} RECORD")
    for entry in entries:
        data = entry.to_json()
        record = (data["record_key"] or "")[:16] or "(no record: message kept whole)"
        print(f"{entry.id:36}  {entry.queue:18} {data['reason']:18} {data['attempts']:>8}  "
              f"{data['last_failed_at']:24} {record}")
    counts = ", ".join(f"{reason} {n}" for reason, n in count_by_reason(entries).items())
    print(f"{len(entries)} message(s): {counts}")
    return 0


def _poison_show(args: argparse.Namespace) -> int:
    entry = _container().poison_queues().show(args.id)
    if entry is None:
        print(f"no poison message {args.id}", file=sys.stderr)
        return 1
    print(json.dumps(entry.to_json(), indent=2, ensure_ascii=False))
    return 0


def _poison_replay(args: argparse.Namespace) -> int:
    from shared.service.poison import reason_selector

    select = (lambda e: True) if args.all else reason_selector(args.reason, args.message_id)
    report = _container().poison_queues().replay(select, dry_run=args.dry_run,
                                                 accept_mismatch=args.accept_manifest_mismatch)
    if args.json:
        print(json.dumps({**report.to_json(), "dry_run": args.dry_run}, indent=2))
    else:
        verb = "would replay" if args.dry_run else "replayed"
        reasons = ", ".join(f"{k} {v}" for k, v in report.to_json()["by_reason"].items())
        print(f"{verb} {len(report.replayed)} message(s)" + (f" ({reasons})" if reasons else ""))
        for entry in report.not_replayable:
            print(f"not replayable (no record reference, kept): {entry.id} {entry.message.reason.value}")
    if args.message_id and not report.replayed and not report.not_replayable:
        print(f"no poison message {args.message_id}", file=sys.stderr)
        return 1
    return 0


def _poison_purge(args: argparse.Namespace) -> int:
    purged = _container().poison_queues().purge(timedelta(days=args.older_than), dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"purged": len(purged), "dry_run": args.dry_run, "ids": [e.id for e in purged]}, indent=2))
    else:
        print(f"{'would delete' if args.dry_run else 'deleted'} {len(purged)} poison message(s) "
              f"older than {args.older_than:g} days (claim-check blobs kept)")
    return 0


def add_status_command(commands) -> None:
    status = commands.add_parser(
        "status", help="recent windows: reconciled or not, and why not; queue depths",
        description="The same figures as the archive_status endpoint. A window reconciles when every slice was "
                    "listed and every listed record was imported, skipped as a duplicate or poisoned. Exit 0 when "
                    "no window is overdue (unreconciled more than 6 hours after its hand-off), 1 otherwise.",
    )
    status.add_argument("--windows", type=arguments.number_between(1, 366, whole=True), default=None, metavar="N",
                        help="how many recent windows (default STATUS_RECENT_WINDOWS)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from shared.service.poison import account_moved_items
    from shared.service.status import build_status

    container = _container()
    limit = args.windows or container.settings.status_recent_windows
    account_moved_items(container.poison_queues(), container.ledger)
    status = build_status(container.ledger, container.queue_depths(), limit=limit)
    if args.json:
        print(json.dumps(status, indent=2))
        return 1 if status["overdue_windows"] else 0
    if not status["windows"]:
        print("no windows yet: the timer has not handed any capture time off")
    for window in status["windows"]:
        poisoned = window["poisoned"]
        if window["reconciled"]:
            verdict = "reconciled"
        else:
            verdict = "NOT RECONCILED — OVERDUE" if window["overdue"] else "in progress"
        print(f"{window['window_id']}  {window['start']} → {window['end']}  {verdict}")
        print(f"  listed {window['listed']}, fan-out {window['fanout']}, imported {window['imported']}, "
              f"skipped {window['skipped_duplicates']}, partial {window['partially_imported']}, "
              f"poisoned {sum(poisoned.values())}"
              + (" (" + ", ".join(f"{k} {v}" for k, v in poisoned.items()) + ")" if poisoned else "")
              + f", pending {window['pending']}")
        for problem in window["problems"]:
            print(f"  ! {problem}")
    print("queues: " + ", ".join(f"{name} {depth}" for name, depth in status["queues"].items()))
    if status["overdue_windows"]:
        print(f"{len(status['overdue_windows'])} window(s) OVERDUE: not reconciled 6 hours after their hand-off")
        return 1
    return 0


def add_ledger_command(commands) -> None:
    migrate = commands.add_parser(
        "ledger-migrate", help="copy the windows of the append-blob ledger into the table ledger (after an upgrade)",
        description="Deployments before the table ledger kept windows in append blobs in the state container. "
                    "This copies the most recent N of them into the table ledger (LEDGER_TABLE), replaying every "
                    "page and outcome, so status, reports and the overdue alarm see them. Run it once after the "
                    "upgrade; the counts are exact however often it runs.",
    )
    migrate.add_argument("--windows", type=arguments.number_between(1, 100_000, whole=True), default=400,
                         metavar="N", help="how many recent windows (default 400)")
    migrate.add_argument("--json", action="store_true", help="print JSON")
    migrate.set_defaults(handler=_ledger_migrate)


def _ledger_migrate(args: argparse.Namespace) -> int:
    from shared.service.ledger_migration import copy_windows

    container = _container()
    if container.settings.ledger_store != "table":
        raise AdminUsageError("LEDGER_STORE is not table: there is no table ledger to copy into")
    done = copy_windows(container.blob_ledger, container.ledger, limit=int(args.windows))
    if args.json:
        print(json.dumps(done.__dict__))
    else:
        print(f"copied {done.windows} window(s), {done.pages} page(s), {done.outcomes} outcome(s) "
              f"into the table {container.settings.ledger_table}")
    return 0
