"""Every capture path keeps what it captured in the evidence store before handing the work on: the
page of records as listed, the webhook body and the firm's reported send as they arrived (a forged body leaves
nothing), a custodian's upload, its sidecar and every file in it. Over in-memory stores with the
adapters' behaviour; the end-to-end tests show the blob adapter wired in by the functions."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

from shared.domain.ledger import WindowInfo
from shared.domain.tasks import ListingTask
from shared.domain.window import Window
from shared.ports import ListingPage
from shared.service import chat_export_intake as intake
from shared.service.listing import list_slice_page, serialise_item
from shared.service.webhook_batch_import import CapturedMediaFiles
from shared.service.webhook_intake import WebhookRequest, receive_webhook
from tests.builders import record
from tests.fakes import (
    MemoryChatExportUploads,
    MemoryEvidenceStore,
    MemoryLedger,
    MemoryQueue,
    MemoryRecordStore,
    MemoryWebhookBodyStore,
)
from tests.test_webhook_intake import BODY, SECRET, signed

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_signed_webhook_body_is_kept_as_it_arrived_and_a_forged_one_leaves_nothing():
    evidence = MemoryEvidenceStore()
    queue = MemoryQueue("listing")

    def post(headers):
        return receive_webhook(WebhookRequest("POST", {}, headers, BODY), verify_token="vt", app_secrets=(SECRET,),
                               store=MemoryWebhookBodyStore(), handoff=queue, clock=lambda: NOW, evidence=evidence)

    assert post({"X-Hub-Signature-256": "sha256=" + "0" * 64}).status == 401
    assert evidence.blobs == {}
    assert post(signed(BODY)).status == 200
    assert evidence.blobs == {f"raw/webhook-body/{sha(BODY)}": BODY}
    post(signed(BODY))  # Meta delivers again: kept once
    assert evidence.writes == 1


def test_each_record_listed_is_kept_before_its_work_is_handed_off():
    start = datetime(2026, 11, 20, tzinfo=UTC)
    info = WindowInfo(Window(start, start + timedelta(hours=1)), 1, start + timedelta(hours=2))
    items = [record(f"m-{n}") for n in range(3)]

    class Source:
        def list_page(self, window, page_token, page_size):
            return ListingPage(items, None)

        def open_attachment(self, attachment_id):
            return None

    evidence, ledger = MemoryEvidenceStore(), MemoryLedger()
    ledger.open_window(info)
    list_slice_page(ListingTask.first_page(info.window_id, info.window), source=Source(), records=MemoryRecordStore(),
                    items_queue=MemoryQueue("items"), listing_queue=MemoryQueue("listing"), ledger=ledger,
                    page_size=10, evidence=evidence)
    # One write for the page: its records as listed, a line each, each line hashing to its record's claim check.
    page = b"\n".join(serialise_item(item) for item in items) + b"\n"
    assert evidence.blobs == {f"raw/telemessage-page/{sha(page)}": page}
    assert [line for line in page.split(b"\n") if line] == [serialise_item(item) for item in items]


def test_an_uploaded_export_its_sidecar_and_every_file_in_it_are_kept_before_the_import():
    photo, stray = b"\xff\xd8photo", b"\xff\xd8stray"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("_chat.txt", "[13.03.26, 09:00:00] Anna: \u200e<attached: 00000001-PHOTO-x.jpg>\r\n")
        archive.writestr("00000001-PHOTO-x.jpg", photo)
        archive.writestr("../outside.jpg", stray)  # kept under a name of its own, and as evidence
    upload = buffer.getvalue()
    sidecar = json.dumps({"custodian": "anna@contoso.example", "timeZone": "Europe/Berlin"}).encode()
    uploads, evidence = MemoryChatExportUploads(), MemoryEvidenceStore()
    uploads.upload("x.zip", upload)
    uploads.upload("x.zip.json", sidecar)
    with CapturedMediaFiles() as media:
        report = intake.receive_upload(
            "x.zip.json", uploads=uploads, media_store=media, records=MemoryRecordStore(),
            items_queue=MemoryQueue("items"), report_queue=MemoryQueue("listing"), ledger=MemoryLedger(),
            clock=lambda: NOW, evidence=evidence)
    assert report["status"] == "handed_off"
    assert evidence.blobs == {
        f"raw/chat-export/{sha(upload)}": upload, f"raw/chat-export-sidecar/{sha(sidecar)}": sidecar,
        f"raw/media/{sha(photo)}": photo, f"raw/media/{sha(stray)}": stray,
    }
