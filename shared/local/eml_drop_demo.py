"""``demo --source eml-drop``: a capture vendor's drops in the `eml-drops` container on Azurite, judged and
archived by the registered functions into .eml mailboxes, each with the report the connector writes
beside it.

What runs: Azurite; the registered functions under the host runner; two uploads as Capture Mobile would
make them over SFTP, each BlobCreated event handed to ``eml_drop_blob`` as Event Grid and the host's blobs
extension do. The EMLs are made here from invented people, in the vendor's style (the WhatsApp user's
number in the address's local part, an employee by address, one only by number through the mapping, a
right-to-left display name, a reply, a photo attached):

1. ``<day>0000-TeleMessage_1_<zipped>.zip``: five EMLs and a manifest that holds. Archived once into
   each employee's mailbox; the drop's window seals into the chain of evidence.
2. ``<day>0000-TeleMessage_2_<zipped>.zip``: two EMLs, and a manifest that lists a third the ZIP lacks.
   Nothing is imported; the report beside it says why, and the drop waits in ``listing-poison``
   (``manifest_mismatch``) until the vendor delivers it again or an operator replays it accepting the
   mismatch.

A second run uploads both again: nothing new is archived (the first drop's EMLs are skipped as duplicates).
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from shared.local.demo_kit import REPO_ROOT, DemoPaths, app_settings, day_anchor, print_where, seal_as_the_timer_would

TRADER = "dana.whitfield@contoso.example"
SALES = "owen.marsh@contoso.example"
DESK = "fx.desk@contoso.example"  # reached only by the number the vendor writes, through the mapping
DESK_NUMBER = "+447700900450"
CLIENT = "+447700900777"
ARABIC = "\u0644\u064a\u0644\u0649 \u062d\u062f\u0627\u062f"  # ليلى حداد
VENDOR_DOMAIN = "capture.example"


def _eml(n: int, sent: datetime, sender: str, to: list[str], subject: str, text: str, *,
         reply_to: int | None = None, photo: bytes | None = None) -> bytes:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = format_datetime(sent)
    message["Message-ID"] = f"<demo-{sent:%Y%m%d}-{n}@{VENDOR_DOMAIN}>"
    if reply_to is not None:
        message["In-Reply-To"] = f"<demo-{sent:%Y%m%d}-{reply_to}@{VENDOR_DOMAIN}>"
    message.set_content(text + "\n")
    if photo is not None:
        message.add_attachment(photo, maintype="image", subtype="jpeg", filename="IMG-0001.jpg")
    return message.as_bytes()


def make_drops(anchor: datetime) -> list[tuple[str, bytes, int]]:
    """[(the ZIP's name, its bytes, EMLs in it)]: one whose manifest holds, one whose manifest does not."""
    day = (anchor - timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    client = f'"{ARABIC}" <{CLIENT}@{VENDOR_DOMAIN}>'
    photo = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 24 + b"\xff\xd9"
    good = [
        _eml(1, day, client, [f"Dana Whitfield <{TRADER}>"], "WhatsApp: مرحبا", "Can you confirm the EUR/GBP quote?"),
        _eml(2, day + timedelta(minutes=2), f"Dana Whitfield <{TRADER}>", [client], "WhatsApp: Re: quote",
             "0.8541 for 2m, valid 10 minutes.", reply_to=1),
        _eml(3, day + timedelta(minutes=3), client, [f"Dana Whitfield <{TRADER}>"], "WhatsApp: photo",
             "Signed confirmation attached.", photo=photo),
        _eml(4, day + timedelta(minutes=9), f"Owen Marsh <{SALES}>", [f"{DESK_NUMBER}@{VENDOR_DOMAIN}"],
             "WhatsApp: desk", "Client confirmed, please book."),
        _eml(5, day + timedelta(minutes=11), f"{DESK_NUMBER}@{VENDOR_DOMAIN}", [f"Owen Marsh <{SALES}>"],
             "WhatsApp: Re: desk", "Booked, ref FX-20417.", reply_to=4),
    ]
    short = [
        _eml(6, day + timedelta(hours=3), client, [f"Dana Whitfield <{TRADER}>"], "WhatsApp: thanks", "Thank you."),
        _eml(7, day + timedelta(hours=3, minutes=1), f"Dana Whitfield <{TRADER}>", [client], "WhatsApp: Re: thanks",
             "Anytime."),
    ]
    zipped = f"{anchor:%Y%m%d}013000"
    drops = []
    for number, emls, listed in ((1, good, len(good)), (2, short, len(short) + 1)):
        names = [f"{day:%Y%m%d}-{number}-{i:04d}.eml" for i in range(1, len(emls) + 1)]
        manifest_names = names + [f"{day:%Y%m%d}-{number}-{len(emls) + 1:04d}.eml"][: listed - len(emls)]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in zip(names, emls, strict=True):
                archive.writestr(name, data)
            archive.writestr(f"TeleMessage_{number}.mf",
                             f"Count: {listed}\r\n" + "".join(f"{n}\r\n" for n in manifest_names))
        drops.append((f"{day:%Y%m%d}0000-TeleMessage_{number}_{zipped}.zip", buffer.getvalue(), len(emls)))
    return drops


def run_eml_drops(paths: DemoPaths, *, workers: int = 4) -> dict[str, Any]:
    """Upload both drops, import, report (also used by the tests)."""
    from azure.storage.blob import BlobServiceClient

    import function_app
    from shared.local.azurite import Azurite
    from shared.local.host_runner.runner import HostRunner
    from shared.settings import EML_DROPS_CONNECTION, EML_DROPS_CONTAINER

    drops = make_drops(day_anchor(paths))
    paths.mapping.write_text(f"PhoneNumber,EmailAddress\n{DESK_NUMBER},{DESK}\n", encoding="utf-8")
    paths.directory.write_text("\n".join((TRADER, SALES, DESK)) + "\n", encoding="utf-8")
    started = time.monotonic()
    with Azurite(location=paths.azurite) as azurite:
        env = {
            "AzureWebJobsStorage": azurite.connection_string, EML_DROPS_CONNECTION: azurite.connection_string,
            "MAILBOX_WRITER": "eml", "EML_MAILBOX_DIR": str(paths.mailboxes), "DIRECTORY": "file",
            "DIRECTORY_FILE": str(paths.directory), "DEFAULT_PHONE_REGION": "GB",
            "EML_DROP_REPORT_DELAY_SECONDS": "0",
            "ARCHIVE_SCHEDULE": os.environ.get("ARCHIVE_SCHEDULE", "0 0 2 * * *"),
        }
        with app_settings(env):
            from shared.composition import get_container

            container = get_container()
            container.mapping_blob.upload(paths.mapping.read_bytes())
            # In Azure the template creates the container (the vendor's SFTP home); here, the demo does.
            folder = BlobServiceClient.from_connection_string(azurite.connection_string) \
                .get_container_client(EML_DROPS_CONTAINER)
            if not folder.exists():
                folder.create_container()
            with HostRunner(
                function_app.app, host_json=REPO_ROOT / "host.json",
                connection_settings={"AzureWebJobsStorage": azurite.connection_string,
                                     EML_DROPS_CONNECTION: azurite.connection_string},
                settings=dict(os.environ), workers=workers,
            ) as runner:
                for name, data, _ in drops:  # as the vendor's SFTP put; Event Grid announces each
                    folder.upload_blob(name, data, overwrite=True)
                    runner.deliver_blob_created(name, "eml_drop_blob")
                runner.drain(timeout=600)
                depths = container.queue_depths()
            evidence = seal_as_the_timer_would(container)
            reports = [json.loads(folder.download_blob(name + ".report.json").readall()) for name, _, _ in drops]
    paths.reports.mkdir(parents=True, exist_ok=True)
    copies = []
    for (name, _, _), report in zip(drops, reports, strict=True):
        copy = paths.reports / f"{name}.report.json"
        copy.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        copies.append(str(copy))
    good, refused = reports
    return {
        "uploads": [f"{EML_DROPS_CONTAINER}/{name}" for name, _, _ in drops], "drops": reports,
        "queues": depths, "mailbox_dir": str(paths.mailboxes),
        "eml_files": sum(1 for _ in paths.mailboxes.rglob("*.eml")) if paths.mailboxes.exists() else 0,
        "admin_report": copies, "evidence": evidence, "log": str(paths.log),
        "seconds": round(time.monotonic() - started, 1),
        # The good drop has every EML's outcome; the other is refused, and waits in poison as it should.
        "reconciled": good.get("status") == "done" and not good.get("pending")
        and refused.get("code") == "manifest_mismatch",
    }


def print_eml_drop_report(result: dict[str, Any]) -> None:
    print("WhatsApp Archiver demo — a capture vendor's EML drops (source VENDOR_EML)")
    for upload, report in zip(result["uploads"], result["drops"], strict=True):
        print(f"  {upload}")
        print(f"    manifest:           {report.get('manifest')} ({report.get('verdict')})")
        print(f"    status:             {report.get('status')} (report beside the drop: {upload}.report.json)")
        if report.get("status") == "refused":
            print(f"    refused:            {report.get('code')}: nothing imported; waits in listing-poison")
            print("    then:               python -m shared.cli poison replay --reason manifest_mismatch "
                  "--accept-manifest-mismatch  (or the vendor delivers it again)")
            continue
        print(f"    EMLs:               {report.get('records_from_source')} — {report.get('imported')} new, "
              f"{report.get('skipped_duplicates')} already archived, {report.get('failed')} poisoned "
              f"{report.get('failed_by_reason') or ''}".rstrip())
        print(f"    mailbox pairs:      {report.get('pairs_imported')} imported, {report.get('pairs_skipped')} skipped")
        print(f"    window:             {report.get('window')}")
    print_where(result)
