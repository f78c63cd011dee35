"""``demo --source chat-export``: a custodian's zipped "Export chat" uploaded to the `chat-exports`
container on Azurite, imported by the registered blob trigger, archived into .eml mailboxes, with the
report the connector writes beside the upload.

What runs: Azurite; the registered functions under the host runner; the upload itself, as a collector
would make it with `az storage blob upload` (the sidecar first, then the export), each BlobCreated event
handed to ``chat_export_blob`` as Event Grid and the host's blobs extension do. The export is made here
from invented people and words: an iOS group chat in German over two days before the demo's day, with a
custodian, a colleague named in the sidecar, a colleague shown only by number (found through the
mapping), an external client, a right-to-left name, photos and a voice note attached, one file the
chat names but the zip lacks, one file no line names, a multi-line message, an edited and a deleted
message, a location, a missed call and three identical "ok"s in one minute.

A second run uploads the same export again: nothing new is archived, every pair is a skipped duplicate.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import zipfile
from datetime import datetime, timedelta
from typing import Any

from shared.local.demo_kit import REPO_ROOT, DemoPaths, app_settings, day_anchor, print_where, seal_as_the_timer_would

log = logging.getLogger(__name__)

CUSTODIAN = "anna.weber@contoso.example"
COLLEAGUE = "carl.diaz@contoso.example"
DESK = "trading.desk@contoso.example"
DESK_NUMBER = "+447700900123"
CHAT_NAME = "Vertrieb EMEA"
EXPORT_NAME = f"collections/case-2026-117/WhatsApp Chat - {CHAT_NAME}.zip"
LRM, LRE, PDF, NNBSP, NBSP = "\u200e", "\u202a", "\u202c", "\u202f", "\u00a0"
FATIMA = "\u0641\u0627\u0637\u0645\u0629 \u0627\u0644\u0635\u0627\u0644\u062d"  # فاطمة الصالح


def _stamp(moment: datetime) -> str:
    return f"[{moment:%d.%m.%y, %H:%M:%S}]"


def make_export(anchor: datetime) -> tuple[bytes, dict[str, Any], dict[str, bytes]]:
    """(the zip's bytes, the sidecar, the media in it), for the two days before ``anchor``'s day."""
    day1 = (anchor - timedelta(days=2)).replace(hour=8, minute=55, second=0, microsecond=0, tzinfo=None)
    day2 = day1 + timedelta(days=1)
    desk = f"{LRE}+44{NBSP}7700{NBSP}900123{PDF}"
    photo1 = f"00000001-PHOTO-{day1 + timedelta(minutes=20):%Y-%m-%d-%H-%M-%S}.jpg"
    voice = f"00000002-AUDIO-{day1 + timedelta(minutes=41):%Y-%m-%d-%H-%M-%S}.opus"
    lost = f"00000003-PHOTO-{day2 + timedelta(minutes=5):%Y-%m-%d-%H-%M-%S}.jpg"
    stray = f"00000004-PHOTO-{day2 + timedelta(minutes=50):%Y-%m-%d-%H-%M-%S}.jpg"
    lines: list[tuple[timedelta, str, str]] = [
        (timedelta(0), CHAT_NAME, f"{LRM}Nachrichten und Anrufe sind Ende-zu-Ende-verschlüsselt."),
        (timedelta(minutes=1), "Anna Weber", f"{LRM}Anna Weber hat die Gruppe „{CHAT_NAME}“ erstellt."),
        (timedelta(minutes=5), "Anna Weber", "Guten Morgen zusammen. Die Konditionen für Q1:"),
        (timedelta(minutes=5), "", "- Staffel A: 2,1 %"),
        (timedelta(minutes=5), "", ""),
        (timedelta(minutes=5), "", "- Staffel B: 1,8 %"),
        (timedelta(minutes=9), "Bob Client", "Danke. Gilt das auch für Bestandsverträge?"),
        (timedelta(minutes=12), desk, "Ja, ab dem 1. des Monats."),
        (timedelta(minutes=20), "Bob Client", f"{LRM}<attached: {photo1}>"),
        (timedelta(minutes=22), FATIMA, "شكراً، سأرسل العقد اليوم"),
        (timedelta(minutes=30), "Carl Diaz", "Preis bestätigt: 98,50 <Diese Nachricht wurde bearbeitet.>"),
        (timedelta(minutes=33), "Bob Client", "ok"),
        (timedelta(minutes=33), "Bob Client", "ok"),
        (timedelta(minutes=33), "Bob Client", "ok"),
        (timedelta(minutes=41), "Anna Weber", f"{LRM}<attached: {voice}>"),
        (timedelta(minutes=44), "Bob Client", f"{LRM}Diese Nachricht wurde gelöscht."),
        (timedelta(minutes=50), desk, f"{LRM}Verpasster Sprachanruf"),
        (timedelta(days=1), "Bob Client", "Standort: https://maps.google.com/?q=52.520008,13.404954"),
        (timedelta(days=1, minutes=5), "Carl Diaz", f"{LRM}<attached: {lost}>"),
        (timedelta(days=1, minutes=7), "Anna Weber", "Abschluss morgen um 9:30."),
    ]
    text = []
    for offset, author, body in lines:
        if not author:
            text.append(body)  # a continuation line of the message before
            continue
        text.append(f"{_stamp(day1 + offset)} {author}: {body}")
    media = {
        photo1: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 24 + b"\xff\xd9",
        voice: b"OggS\x00\x02" + bytes(20) + b"\x13OpusHead\x01\x01" + bytes(reversed(range(256))) * 16,
        stray: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(0, 256, 3)) * 40 + b"\xff\xd9",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("_chat.txt", ("\r\n".join(text) + "\r\n").encode("utf-8"))
        for name, data in media.items():
            archive.writestr(name, data)
        archive.writestr(f"__MACOSX/._{photo1}", b"\x00\x05\x16\x07")
    sidecar = {
        "custodian": CUSTODIAN, "timeZone": "Europe/Berlin", "dateOrder": "dmy",
        "participants": {"Anna Weber": CUSTODIAN, "Carl Diaz": COLLEAGUE},
    }
    return buffer.getvalue(), sidecar, media


def run_chat_export(paths: DemoPaths, *, workers: int = 4) -> dict[str, Any]:
    """Upload, import, report (also used by the tests)."""
    from azure.storage.blob import BlobServiceClient

    import function_app
    from shared.local.azurite import Azurite
    from shared.local.host_runner.runner import HostRunner

    data, sidecar, media = make_export(day_anchor(paths))
    paths.mapping.write_text(f"PhoneNumber,EmailAddress\n{DESK_NUMBER},{DESK}\n", encoding="utf-8")
    paths.directory.write_text("\n".join((CUSTODIAN, COLLEAGUE, DESK)) + "\n", encoding="utf-8")
    started = time.monotonic()
    with Azurite(location=paths.azurite) as azurite:
        env = {
            "AzureWebJobsStorage": azurite.connection_string, "MAILBOX_WRITER": "eml",
            "EML_MAILBOX_DIR": str(paths.mailboxes), "DIRECTORY": "file", "DIRECTORY_FILE": str(paths.directory),
            "DEFAULT_PHONE_REGION": "GB", "CHAT_EXPORT_REPORT_DELAY_SECONDS": "0",
            "ARCHIVE_SCHEDULE": os.environ.get("ARCHIVE_SCHEDULE", "0 0 2 * * *"),
            # The TeleMessage pull is not run here; its client is built all the same, and never called.
            "TELEMESSAGE_BASE_URL": "http://127.0.0.1:9", "TELEMESSAGE_USERNAME": "unused",
        }
        with app_settings(env):
            from shared.composition import get_container
            from shared.settings import CHAT_EXPORTS_CONTAINER

            container = get_container()
            container.mapping_blob.upload(paths.mapping.read_bytes())
            uploads = BlobServiceClient.from_connection_string(azurite.connection_string) \
                .get_container_client(CHAT_EXPORTS_CONTAINER)
            if not uploads.exists():
                uploads.create_container()
            with HostRunner(
                function_app.app, host_json=REPO_ROOT / "host.json",
                connection_settings={"AzureWebJobsStorage": azurite.connection_string},
                settings=dict(os.environ), workers=workers,
            ) as runner:
                # As a collector would: the sidecar, then the export; Event Grid announces each.
                for name, body in ((EXPORT_NAME + ".json", json.dumps(sidecar).encode()), (EXPORT_NAME, data)):
                    uploads.upload_blob(name, body, overwrite=True)
                    runner.deliver_blob_created(name, "chat_export_blob")
                runner.drain(timeout=600)
                depths = container.queue_depths()
            evidence = seal_as_the_timer_would(container)
            report = json.loads(uploads.download_blob(EXPORT_NAME + ".report.json").readall())
    paths.reports.mkdir(parents=True, exist_ok=True)
    copy = paths.reports / "chat-export.report.json"
    copy.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return {
        "upload": f"{CHAT_EXPORTS_CONTAINER}/{EXPORT_NAME}", "export": report, "queues": depths,
        "media_in_zip": len(media), "mailbox_dir": str(paths.mailboxes),
        "eml_files": sum(1 for _ in paths.mailboxes.rglob("*.eml")) if paths.mailboxes.exists() else 0,
        "admin_report": [str(copy)], "evidence": evidence, "log": str(paths.log),
        "seconds": round(time.monotonic() - started, 1),
        "reconciled": report.get("status") == "done" and not report.get("pending"),
    }


def print_chat_export_report(result: dict[str, Any]) -> None:
    report = result["export"]
    print("WhatsApp Archiver demo — a custodian's chat export (source whatsapp-chat-export)")
    print(f"  uploaded:             {result['upload']} and its sidecar .json")
    print(f"  status:               {report.get('status')} (report beside the upload: {result['upload']}.report.json)")
    if report.get("status") == "refused":
        print(f"  refused:              {report.get('reason')}")
        print_where(result)
        return
    from shared.service.chat_export_import import summary_lines

    for label, value in summary_lines(report):
        print(f"  {label:<22}{value}")
    print(f"  {'window:':<22}{report['window']}")
    print(f"  pending:              {report.get('pending')}")
    print_where(result)
