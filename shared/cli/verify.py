"""``verify``: check the chain of evidence of a deployment, or of the demo's state.

Against a deployment when its storage is set in the environment (AzureWebJobsStorage, as for
``status`` and ``report``) and no --state-dir is given; otherwise against the demo's state directory,
whose Azurite it starts on loopback as ``demo`` does. Exit 0 when everything holds, 1 on any finding.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.cli import arguments
from shared.cli.admin import AdminUsageError, _container, deployment_storage_set

EPILOG = """\
findings (each names its window, and its record and mailbox where it has them):
  manifest_missing      a link of the chain names a manifest the evidence store does not hold
  manifest_altered      a manifest does not hash to its name
  manifest_unreadable   a manifest is cut short or not in the format
  chain_broken          a manifest does not name the link before it as it should
  manifest_off_chain    a manifest is kept, and no link from the chain's head reaches it
  window_not_sealed     the --window asked for has no manifest (yet)
  report_missing/altered     the final admin report kept with the manifest
  claim_check_missing/altered  a record's captured bytes are gone, or not those imported
  item_missing          (--online) the mailbox holds no item of the record
  item_duplicated       (--online) it holds more than one
  item_altered          (--online) the item's content is not what was written
  item_unreadable, mailbox_unreadable  (--online) the read-back failed

docs/evidence.md explains what is kept where, and what to do about each finding."""


def add_verify_command(commands) -> None:
    verify = commands.add_parser(
        "verify", help="check the chain of evidence: manifests, claim checks, and (--online) the mailboxes",
        description="Offline: recompute every manifest's, admin report's and claim check's hash from storage "
                    "and walk the chain of manifests from its head. Online: read each item back from its "
                    "mailbox (Graph, or the .eml folders) and check it is there once with the content written. "
                    "Exit 0 when all holds, 1 on any finding.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = verify.add_mutually_exclusive_group()
    which.add_argument("--window", metavar="ID", type=arguments.window_id,
                       help="check this window's records (the chain is always walked whole)")
    which.add_argument("--since", metavar="DATE", type=arguments.moment,
                       help="check the windows whose capture time ends after DATE (YYYY-MM-DD or ISO 8601, UTC)")
    verify.add_argument("--online", action="store_true", help="also read the items back from the mailboxes")
    verify.add_argument("--sample", type=arguments.number_between(1, 10_000_000, whole=True), metavar="N",
                        help="with --online: read back N records of each window, chosen at random")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help="verify the demo's state in DIR (default .demo when no deployment storage is set)")
    verify.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    from shared.service.verify import Scope, verify

    if args.sample is not None and not args.online:
        raise AdminUsageError("--sample reads items back: use it with --online")
    scope = Scope(window_id=args.window, since=args.since)
    with _where(args.state_dir) as container:
        reader = container.item_reader if args.online else None
        result = verify(container.evidence, container.evidence_chain, container.records, scope=scope,
                        reader=reader, sample=args.sample)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        _print(result)
    return 0 if result.ok else 1


@contextmanager
def _where(state_dir: Path | None) -> Iterator:
    if state_dir is None and deployment_storage_set():
        yield _container()
        return
    from shared.composition import get_container
    from shared.local.azurite import Azurite
    from shared.local.demo_kit import DemoPaths, app_settings

    paths = DemoPaths((state_dir or Path(".demo")).resolve())
    if not paths.azurite.is_dir():
        raise AdminUsageError(f"no demo state in {paths.root}: run `python -m shared.cli demo` first, or set "
                              "AzureWebJobsStorage to verify a deployment")
    with Azurite(location=paths.azurite) as azurite, app_settings({
        "AzureWebJobsStorage": azurite.connection_string, "MAILBOX_WRITER": "eml",
        "EML_MAILBOX_DIR": str(paths.mailboxes), "DIRECTORY": "file", "DIRECTORY_FILE": str(paths.directory),
    }):
        yield get_container()  # app_settings gives it a container of its own and forgets it after


def _print(result) -> None:
    head = result.head
    print(f"chain: {result.manifests} manifest(s) kept, {result.links_walked} link(s) walked from the head"
          + (f" (link {head.seq})" if head else " (nothing sealed yet)"))
    unhashed = (f", {result.not_hashed_at_import} without a hash from import (claim check unreadable then, "
                "or accounted after the host gave up on it)") if result.not_hashed_at_import else ""
    print(f"windows checked: {len(result.windows)}; records {result.records}, claim checks hashed "
          f"{result.claim_checks}{unhashed}")
    if result.online:
        sampled = f" (a sample of {result.sampled} record(s) per window)" if result.sampled else ""
        print(f"items read back: {result.items_checked}{sampled}"
              + (f"; {result.items_without_digest} written before digests were kept"
                 if result.items_without_digest else ""))
    for finding in result.findings:
        print(f"! {finding.line()}")
    if result.ok:
        print("verified: everything holds")
    else:
        print(f"{len(result.findings)} finding(s)", file=sys.stderr)
