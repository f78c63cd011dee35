"""``demo --source whatsapp-cloud``: a day of WhatsApp Business Platform webhooks, delivered by a
local Meta over real HTTP on loopback, archived into .eml mailboxes, and reconciled.

What runs: Azurite; the local Meta (shared/local/meta_server.py) serving the day's media ids with
expiring links (one id already expired); the registered functions under the host runner, their
HTTP functions served by the HTTP front; Meta's webhook sender (shared/local/meta_webhooks.py)
delivering the day's bodies to ``/api/whatsapp/webhook`` signed with the app secret, redelivering
whatever got no 200, sometimes twice after a 200. Queues are pumped while Meta delivers (media is
captured at once, as in production) and drained after. When the app has ``whatsapp_outbound``, the
firm's API sends are posted to it as the firm's sending application would.

The report is per window of the UTC day of receipt; the demo exits 0 only if every such window
reconciles and every body was delivered. The app secret, verify token, access token and function
key are made for each run and never printed or logged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
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
from shared.local.meta_webhooks import Courier, DeliveryLog, Job, WebhookSender
from shared.local.whatsapp_traffic import WhatsAppDay, generate_whatsapp_day

log = logging.getLogger(__name__)

WEBHOOK_ROUTE = "/api/whatsapp/webhook"
OUTBOUND_ROUTE = "/api/whatsapp/outbound"
OUTBOUND_FUNCTION = "whatsapp_outbound"
# Meta's misfortunes, per body: its answer lost (a redelivery follows), or a second delivery after a 200.
LOST_ANSWER_RATE = 0.06
DUPLICATE_RATE = 0.06


def run_whatsapp_day(paths: DemoPaths, *, seed: int = 15, workers: int = 4) -> dict[str, Any]:
    """Deliver the day, archive it, and return the report (also used by the tests)."""
    from shared.local.azurite import Azurite
    from shared.local.meta_server import LocalMeta

    day = generate_whatsapp_day(day_anchor(paths), seed=seed)
    paths.mapping.write_text(day.mapping_csv(), encoding="utf-8")
    paths.directory.write_text("\n".join(day.directory()) + "\n", encoding="utf-8")
    secrets = {name: os.urandom(24).hex() for name in ("app_secret", "verify_token", "access_token", "function_key")}

    started = time.monotonic()
    run_started = datetime.now(UTC)
    with Azurite(location=paths.azurite) as azurite, LocalMeta(secrets["access_token"]) as meta:
        for media_id, media in day.media.items():
            meta.add(media_id, media.data, media.mime_type, sha256_base64=media.sha256_base64, expired=media.expired)
        env = {
            "AzureWebJobsStorage": azurite.connection_string,
            "WHATSAPP_APP_SECRET": secrets["app_secret"],
            "WHATSAPP_VERIFY_TOKEN": secrets["verify_token"],
            "WHATSAPP_ACCESS_TOKEN": secrets["access_token"],
            "WHATSAPP_GRAPH_BASE_URL": meta.base_url,
            "WHATSAPP_GRAPH_VERSION": meta.version,
            "WHATSAPP_PHONE_NUMBER_IDS": ",".join(b.phone_number_id for b in day.businesses),
            "MAILBOX_WRITER": "eml",
            "EML_MAILBOX_DIR": str(paths.mailboxes),
            "DIRECTORY": "file",
            "DIRECTORY_FILE": str(paths.directory),
            "DEFAULT_PHONE_REGION": "GB",
            "ARCHIVE_SCHEDULE": os.environ.get("ARCHIVE_SCHEDULE", "0 0 2 * * *"),
            # The TeleMessage pull is not run here; its client is built all the same, and never called.
            "TELEMESSAGE_BASE_URL": "http://127.0.0.1:9",
            "TELEMESSAGE_USERNAME": "unused",
        }
        with app_settings(env):
            from shared.composition import get_container

            container = get_container()
            container.mapping_blob.upload(paths.mapping.read_bytes())
            report = _deliver_and_drain(container, day, secrets, workers=workers)
            report.update(_reconcile(container, run_started, paths))
    report.update({
        "traffic": {
            "bodies": len(day.bodies), "malformed_bodies": len(day.malformed), "messages": len(day.archived),
            "api_sends": len(day.outbound), "media_ids": len(day.media), "expired_media_ids": len(day.expired_media),
            "receipts": dict(sorted(day.statuses.items())),
        },
        "mailbox_dir": str(paths.mailboxes),
        "eml_files": sum(1 for _ in paths.mailboxes.rglob("*.eml")) if paths.mailboxes.exists() else 0,
        "seconds": round(time.monotonic() - started, 1),
        "log": str(paths.log),
    })
    report["reconciled"] = bool(
        report["windows"] and all(w["reconciled"] for w in report["windows"]) and report["handshake"]
        and not report["deliveries"]["undelivered"]
        and (report["outbound"] is None or not report["outbound"]["undelivered"])
    )
    return report


def _deliver_and_drain(container, day: WhatsAppDay, secrets: dict[str, str], *, workers: int) -> dict[str, Any]:
    import function_app
    from shared.local.host_runner.runner import HostRunner
    from shared.local.http_front import HttpFront

    with HostRunner(
        function_app.app, host_json=REPO_ROOT / "host.json",
        connection_settings={"AzureWebJobsStorage": container.settings.storage_connection},
        settings=dict(os.environ), workers=workers,
    ) as runner, HttpFront(runner) as front, WebhookSender(
        front.url + WEBHOOK_ROUTE, secrets["app_secret"], seed=day.seed, duplicate_rate=DUPLICATE_RATE,
        lost_answer_rate=LOST_ANSWER_RATE, timeout=20.0,
    ) as meta:
        callback = meta.url
        handshake = meta.handshake(secrets["verify_token"], challenge=str(day.seed * 1_000_003))
        deliveries = _while_pumping(runner, lambda: meta.deliver(day.bodies))
        outbound = None
        if OUTBOUND_FUNCTION in runner.function_names:
            outbound = _while_pumping(runner, lambda: post_api_sends(day, front.url, secrets["function_key"]))
        else:
            log.warning("%s is not registered: the day's %d API sends are not archived", OUTBOUND_FUNCTION,
                        len(day.outbound))
        runner.drain(timeout=600)
        depths = container.queue_depths()
    evidence = seal_as_the_timer_would(container)
    return {
        "evidence": evidence,
        "callback": callback, "handshake": handshake, "deliveries": deliveries.summary(),
        "outbound": outbound.summary() if outbound is not None else None, "queues": depths,
    }


def post_api_sends(day: WhatsAppDay, base_url: str, function_key: str) -> DeliveryLog:
    """The hook for what the business sends through the Cloud API: each send posted to
    ``whatsapp_outbound`` as the firm's sending application would, retried until it is taken."""
    with Courier(backoff=0.05) as courier:
        return courier.post_all(
            Job(f"send-{n:03d}", base_url + OUTBOUND_ROUTE, json.dumps(send.payload()).encode(),
                {"Content-Type": "application/json", "x-functions-key": function_key})
            for n, send in enumerate(day.outbound, 1)
        )


def _while_pumping(runner, deliver) -> DeliveryLog:
    """Meta delivers from its own threads while the host works the queues, as in production:
    media is captured minutes after its webhook, not when the day is over."""
    done: dict[str, Any] = {}

    def run() -> None:
        try:
            done["log"] = deliver()
        except BaseException as error:  # handed to the caller's thread
            done["error"] = error

    thread = threading.Thread(target=run, name="meta-delivery", daemon=True)
    thread.start()
    while thread.is_alive():
        if runner.pump_once() == 0:
            thread.join(timeout=0.05)
    if "error" in done:
        raise done["error"]
    return done["log"]


def _reconcile(container, run_started: datetime, paths: DemoPaths) -> dict[str, Any]:
    """Every day window this run's bodies were accounted in: its summary, what this run wrote to
    it (a second run imports nothing and skips every message), and its admin report."""
    from shared.service.status import window_summary
    from shared.service.webhook_records import webhook_day

    windows, this_run, reports = [], Counter(), []
    day = run_started.date()
    while day <= datetime.now(UTC).date():
        window_id = webhook_day(datetime(day.year, day.month, day.day, tzinfo=UTC)).window_id
        day += timedelta(days=1)
        if container.ledger.window(window_id) is None:
            continue
        windows.append(window_summary(container.ledger, window_id).to_json())
        reports += write_admin_report(container, window_id, paths.reports)
        for entry in container.ledger.outcomes(window_id):
            if entry.at >= run_started:
                this_run.update(m.outcome.value for m in entry.mailboxes)
    return {"windows": windows, "this_run": dict(sorted(this_run.items())), "admin_report": reports}


def print_whatsapp_report(report: dict[str, Any]) -> None:
    traffic, sent = report["traffic"], report["deliveries"]
    print("WhatsApp Archiver demo — WhatsApp Business Platform webhooks (source whatsapp-cloud)")
    print(f"  Meta's day:           {traffic['bodies']} webhook bodies ({traffic['malformed_bodies']} malformed, "
          f"still signed), {traffic['messages']} messages, {traffic['api_sends']} API sends, "
          f"{traffic['media_ids']} media ids ({traffic['expired_media_ids']} expired)")
    print(f"  callback:             {report['callback']} (handshake "
          f"{'answered with the challenge' if report['handshake'] else 'FAILED'})")
    print(f"  bodies delivered:     {sent['delivered']} of {sent['bodies']} in {sent['attempts']} POSTs")
    print(f"  redelivered:          {sent['redelivered']} bodies ({sent['redeliveries']} redeliveries; "
          f"answers lost: {sent['answers_lost']})")
    print(f"  duplicates sent:      {sent['duplicates_sent']} (after a 200, as Meta does)")
    print("  answers:              " + ", ".join(f"{k}: {v}" for k, v in sent["answers"].items()))
    if sent["undelivered"]:
        print(f"  UNDELIVERED:          {', '.join(sent['undelivered'])}")
    outbound = report["outbound"]
    if outbound is None:
        print(f"  API sends:            {traffic['api_sends']} not posted: the app has no whatsapp_outbound "
              "(their receipts are counted all the same)")
    else:
        print(f"  API sends posted:     {outbound['delivered']} of {outbound['bodies']} to whatsapp_outbound")
    print("  receipts Meta sent:   " + ", ".join(f"{k} {v}" for k, v in traffic["receipts"].items()))
    for window in report["windows"]:
        print(f"  window (UTC day of receipt): {window['start']} → {window['end']}  [{window['window_id']}]")
        print_window_counts(window, indent="    ")
        if window.get("receipts"):
            print("    receipts counted:     " + ", ".join(f"{k} {v}" for k, v in window["receipts"].items()))
        print(f"    reconciled:           {'yes' if window['reconciled'] else 'NO'}")
    if not report["windows"]:
        print("  no window: nothing was accounted (see the log)")
    run = report["this_run"]
    print(f"  this run:             {run.get('imported', 0)} items written, "
          f"{run.get('skipped_duplicate', 0)} skipped as duplicates "
          "(a body sent again is split once: nothing of it is queued twice)")
    verdict = "yes" if report["reconciled"] else "NO — see the windows, undelivered bodies and the poison queues"
    print(f"  reconciled:           {verdict}")
    print_where(report)
