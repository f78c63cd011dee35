"""The demo: one scheduled window through the real functions, on local infrastructure.

Azurite (from node_modules) and the local TeleMessage start on free loopback ports; the functions
registered in function_app.py run under the local host runner; mail lands as .eml files. State
(Azurite's data, the watermark, the mailboxes) stays in the state directory, so a second run
finds nothing new, and ``--relist`` hands the whole day off again to show duplicates skipped.

``source="whatsapp-cloud"`` runs a day of WhatsApp Business Platform webhooks instead
(shared/local/whatsapp_demo.py), in the same state directory; ``"chat-export"`` a custodian's export
(shared/local/chat_export_demo.py) and ``"eml-drop"`` a capture vendor's EML drops
(shared/local/eml_drop_demo.py).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.local.demo_kit import (
    REPO_ROOT,
    DemoPaths,
    app_settings,
    day_anchor,
    print_where,
    print_window_counts,
    seal_as_the_timer_would,
    write_admin_report,
)

DEMO_USERNAME = "demo-connector"
_OTHER_SOURCES = {
    "whatsapp-cloud": ("shared.local.whatsapp_demo", "run_whatsapp_day", "print_whatsapp_report"),
    "chat-export": ("shared.local.chat_export_demo", "run_chat_export", "print_chat_export_report"),
    "eml-drop": ("shared.local.eml_drop_demo", "run_eml_drops", "print_eml_drop_report"),
}


def _log_to(path: Path) -> None:
    """The functions' logs (ids and counts only) go to a file, so the report stays readable."""
    logging.basicConfig(
        filename=path, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True,
    )
    # The storage SDK logs every HTTP request at INFO; its warnings are enough here.
    logging.getLogger("azure").setLevel(logging.WARNING)


def run_demo(
    *, state_dir: Path, fresh: bool = False, relist: bool = False, as_json: bool = False,
    graph: bool = False, mapping: Path | None = None, transcripts: bool = False, source: str = "telemessage",
) -> int:
    paths = DemoPaths(state_dir.resolve(), source)
    if fresh and paths.root.exists():
        shutil.rmtree(paths.root)
    paths.root.mkdir(parents=True, exist_ok=True)
    _log_to(paths.log)
    if source in _OTHER_SOURCES:
        # The other sources' demos, imported only when asked for: (module, its run, its printer).
        module, run, show = _OTHER_SOURCES[source]
        demo = importlib.import_module(module)
        result = getattr(demo, run)(paths)
        if as_json:
            print(json.dumps(result, indent=2, ensure_ascii=False))
        else:
            getattr(demo, show)(result)
        return 0 if result["reconciled"] else 1
    report = run_window(paths, relist=relist, graph=graph, mapping=mapping, transcripts=transcripts)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0 if report["window"] is None or report["window"]["reconciled"] else 1


def run_window(
    paths: DemoPaths, *, relist: bool = False, workers: int = 4, graph: bool = False, mapping: Path | None = None,
    transcripts: bool = False,
) -> dict[str, Any]:
    """Run one window and return the report (also used by the end-to-end tests).

    ``graph=True`` archives into a real tenant: Graph settings (GRAPH_CLOUD, credentials, ...) come
    from the environment, the directory is Graph, and ``mapping`` should map the generated people's
    phone numbers to test mailboxes of that tenant.
    """
    from shared.local.traffic.day import generate_day

    anchor = day_anchor(paths, midnight=transcripts)
    traffic = generate_day(anchor)
    mapping_text = mapping.read_text(encoding="utf-8-sig") if mapping else traffic.mapping_csv()
    paths.mapping.write_text(mapping_text, encoding="utf-8")
    paths.directory.write_text("\n".join(traffic.directory()) + "\n", encoding="utf-8")
    password = os.urandom(12).hex()  # never printed: the local server and the connector share it

    from shared.local.azurite import Azurite
    from shared.local.telemessage_server import LocalTeleMessage

    started = time.monotonic()
    with Azurite(location=paths.azurite) as azurite, \
            LocalTeleMessage(traffic, username=DEMO_USERNAME, password=password) as telemessage:
        env = {
            "AzureWebJobsStorage": azurite.connection_string,
            "TELEMESSAGE_BASE_URL": telemessage.base_url,
            "TELEMESSAGE_USERNAME": DEMO_USERNAME,
            "TELEMESSAGE_PASSWORD": password,
            "MAILBOX_WRITER": "graph" if graph else "eml",
            "EML_MAILBOX_DIR": str(paths.mailboxes),
            "DIRECTORY": "graph" if graph else "file",
            "DIRECTORY_FILE": str(paths.directory),
            "DEFAULT_PHONE_REGION": "GB",
            "ARCHIVE_SCHEDULE": os.environ.get("ARCHIVE_SCHEDULE", "0 0 2 * * *"),
        }
        if transcripts:
            # Daily transcripts, composed as soon as the window's records are staged. The first
            # window reaches back two days so that it holds the whole (finished) day of traffic.
            env.update({
                "DAILY_TRANSCRIPTS": "true", "TRANSCRIPT_DELAY_MINUTES": "0", "FIRST_RUN_LOOKBACK_HOURS": "48",
            })
        with app_settings(env):
            from shared.composition import get_container

            container = get_container()
            # The functions read the mapping where production does: the blob in the state container.
            container.mapping_blob.upload(paths.mapping.read_bytes())
            if relist:
                _rewind_to(container, traffic.window.start)
            report = _drive(container, workers=workers, reports_dir=paths.reports)
    report["generated"] = len(traffic.records)
    report["mailbox_dir"] = str(paths.mailboxes)
    report["eml_files"] = sum(1 for _ in paths.mailboxes.rglob("*.eml")) if paths.mailboxes.exists() else 0
    report["seconds"] = round(time.monotonic() - started, 1)
    report["log"] = str(paths.log)
    return report


def _drive(container, *, workers: int, reports_dir: Path) -> dict[str, Any]:
    import function_app
    from shared.local.host_runner.runner import HostRunner
    from shared.service.status import window_summary

    before, _ = container.watermarks.read()
    with HostRunner(
        function_app.app,
        host_json=REPO_ROOT / "host.json",
        connection_settings={"AzureWebJobsStorage": container.settings.storage_connection},
        settings=dict(os.environ),
        workers=workers,
    ) as runner:
        runner.run_timer("schedule_archive_window")
        runner.drain(timeout=600)
        depths = container.queue_depths()
    evidence = seal_as_the_timer_would(container)
    after, _ = container.watermarks.read()
    window = None
    report_files = []
    if after is not None and after != before and after.last_window_id:
        window = window_summary(container.ledger, after.last_window_id).to_json()
        report_files = write_admin_report(container, after.last_window_id, reports_dir)
    return {"window": window, "queues": depths, "admin_report": report_files, "evidence": evidence}


def _rewind_to(container, position: datetime) -> None:
    """Move the watermark back so the next window covers the demo's whole day again. (Not "the last
    window": a later run may have handed off an empty minute since.)"""
    from shared.domain.window import Watermark

    _, version = container.watermarks.read()
    container.watermarks.advance(Watermark(position, None), version)


def print_report(report: dict[str, Any]) -> None:
    window = report["window"]
    print("WhatsApp Archiver demo")
    if window is None:
        print("  no new capture time since the last run: nothing to list, nothing imported.")
        print(f"  mail (.eml):          {report['mailbox_dir']} ({report['eml_files']} files)")
        print("  run with --relist to hand the day off again, or --fresh to start over")
        return
    print(f"  window (capture time, UTC): {window['start']} → {window['end']}  [{window['window_id']}]")
    print(f"  records in the local TeleMessage: {report['generated']}")
    print_window_counts(window)
    if window.get("awaiting_transcript"):
        print(f"  awaiting transcript:  {window['awaiting_transcript']} (their day is not over yet)")
    verdict = "yes" if window["reconciled"] else "NO — see pending and the poison queues"
    print(f"  reconciled:           {verdict} (listed = imported or skipped + poisoned; "
          "fan-out = imported + skipped)")
    print_where(report)


