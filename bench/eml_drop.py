"""``python -m bench.eml_drop``: how fast a vendor's EML drop is judged, handed off and imported.

    python -m bench.eml_drop                  # drops of 1,000 and 5,000 EMLs
    python -m bench.eml_drop --sizes 200      # any sizes (tests/test_bench.py runs a small one)
    python -m bench.eml_drop --json

For each size: a Capture Mobile-style ZIP of that many EMLs (a text message from a vendor-style phone
address to two employees, one in ten with a 40 KB attachment) with its manifest, uploaded to the
``eml-drops`` container on Azurite. Then, with the real adapters: ``import_drop`` judges it (the
manifest checked, the ZIP and every EML kept in the evidence container), hands it off (claim checks
in the record table, item tasks on the queue, ledger pages); and the first tasks are imported with the
EML importer into ``.eml`` mailboxes (the same code the items function runs; Graph's own pace is
measured by ``python -m bench``'s (b)). The figures: seconds and EMLs per second for the hand-off
(each EML a claim check, an evidence copy and a queue message; a ledger write per page), and the
import rate; extrapolated to a day of 2,000,000 EMLs. Azurite on
one machine is slower than Azure Storage: the figures are an upper bound for the code's own cost.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

DAY = 2_000_000
IMPORTED_SAMPLE = 200
EMPLOYEES = ("dana.whitfield@contoso.example", "owen.marsh@contoso.example")


def vendor_eml(n: int) -> bytes:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = f'"+44 7700 9{n % 100000:05d}" <+4477009{n % 100000:05d}@capture.example>'
    message["To"] = ", ".join(EMPLOYEES)
    message["Subject"] = f"WhatsApp: Desk chat message {n}"
    message["Date"] = f"Fri, 04 Dec 2026 {9 + n // 3600 % 12:02d}:{n // 60 % 60:02d}:{n % 60:02d} +0000"
    message["Message-ID"] = f"<bench-{n}@capture.example>"
    message.set_content(f"Price confirmed for order {n}; settle T+1.\n")
    if n % 10 == 0:
        message.add_attachment(bytes(range(256)) * 160, maintype="application", subtype="pdf",
                               filename=f"confirm-{n}.pdf")
    return message.as_bytes()


def drop_zip(size: int) -> bytes:
    buffer = io.BytesIO()
    names = [f"{n:06d}.eml" for n in range(size)]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for n, name in enumerate(names):
            archive.writestr(name, vendor_eml(n))
        archive.writestr("batch.mf", f"Count: {size}\r\n" + "".join(f"{name}\r\n" for name in names))
    return buffer.getvalue()


def measure(size: int) -> dict[str, Any]:
    from azure.storage.blob import BlobServiceClient

    from shared.composition import get_container, reset_container
    from shared.domain.tasks import EmlDropTask
    from shared.local.azurite import Azurite
    from shared.service.eml_drop_intake import import_drop, receive_drop
    from shared.service.processing import process_item_message

    data = drop_zip(size)
    with Azurite() as azurite, tempfile.TemporaryDirectory(prefix="bench-eml-") as folder:
        root = Path(folder)
        (root / "users.txt").write_text("\n".join(EMPLOYEES) + "\n", encoding="utf-8")
        env = {"AzureWebJobsStorage": azurite.connection_string, "EmlDrops": azurite.connection_string,
               "MAILBOX_WRITER": "eml", "EML_MAILBOX_DIR": str(root / "mail"), "DIRECTORY": "file",
               "DIRECTORY_FILE": str(root / "users.txt"), "MAPPING_FILE": str(root / "none.csv"),
               "DEFAULT_PHONE_REGION": "GB",
               # Never called (no TeleMessage record here), but the items function's importer is built with it.
               "TELEMESSAGE_BASE_URL": "http://127.0.0.1:9", "TELEMESSAGE_USERNAME": "unused"}
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        reset_container()
        try:
            container = get_container()
            drops = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
                "eml-drops")
            drops.create_container()
            name = "202612040000-TeleMessage_1_20261205013000.zip"
            drops.upload_blob(name, data)
            receive_drop(name, drops=container.eml_drops, listing_queue=container.listing_queue,
                         clock=lambda: datetime.now(UTC))
            task = EmlDropTask.model_validate_json(container.listing_queue.receive(1, visibility_timeout=60)[0].text)
            started = time.perf_counter()
            report = import_drop(task, container.drop_stores, clock=lambda: datetime.now(UTC), report_delay=0)
            hand_off = time.perf_counter() - started
            assert report is not None and report["status"] == "handed_off", report
            sample = min(IMPORTED_SAMPLE, size)
            messages = container.items_queue.receive(32, visibility_timeout=300)
            taken: list[str] = []
            while len(taken) < sample and messages:
                taken += [m.text for m in messages]
                messages = container.items_queue.receive(32, visibility_timeout=300)
            taken = taken[:sample]
            started = time.perf_counter()
            outcomes = [process_item_message(text, dequeue_count=1, records=container.records,
                                             importer=container.importer, poison_queue=container.items_poison_queue,
                                             ledger=container.ledger, eml_importer=lambda: container.eml_importer)
                        for text in taken]
            imported = time.perf_counter() - started
            assert all(o is not None and o.outcome.value == "imported" for o in outcomes)
        finally:
            reset_container()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return {
        "emls": size, "zip_mib": round(len(data) / 1024**2, 2), "hand_off_seconds": round(hand_off, 2),
        "hand_off_emls_per_s": round(size / hand_off, 1),
        "imported_sample": len(taken), "import_emls_per_s": round(len(taken) / imported, 1),
        "day_of_2m": {"hand_off_hours": round(DAY / (size / hand_off) / 3600, 1)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eml_drop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000", help="EMLs per drop, comma-separated")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or any(not 0 < s <= 100_000 for s in sizes):
        parser.error("--sizes: 1 to 100,000 EMLs each")
    runs = [measure(size) for size in sizes]
    if args.json:
        print(json.dumps({"eml_drop": runs}, indent=2))
        return 0
    for run in runs:
        print(f"{run['emls']:>7} EMLs ({run['zip_mib']} MiB ZIP): hand-off {run['hand_off_seconds']} s "
              f"({run['hand_off_emls_per_s']} EML/s); "
              f"import {run['import_emls_per_s']} EML/s into .eml mailboxes ({run['imported_sample']} taken); "
              f"a day of 2,000,000 EMLs in one drop's hand-off: {run['day_of_2m']['hand_off_hours']} h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
