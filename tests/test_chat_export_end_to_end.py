"""Chat exports uploaded to the `chat-exports` container, through the registered functions under the
host runner over Azurite (Event Grid's BlobCreated delivered as the host's blobs extension does), into
.eml mailboxes: a zipped export with media is archived once per message and mailbox with its media
byte-exact, a later overlapping export adds only what is new, and a bad sidecar imports nothing and
says why beside the upload."""

from __future__ import annotations

import hashlib
import json
from email import policy
from email.parser import BytesParser

import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from shared.composition import reset_container
from shared.local.host_runner.runner import HostRunner
from shared.service import chat_export_intake
from tests.builders import chat_export_people
from tests.builders import chat_export_zip as export_zip
from tests.conftest import fast_host_json

pytestmark = pytest.mark.integration

CUSTODIAN = "anna.weber@contoso.example"
COLLEAGUE = "carl.diaz@contoso.example"
PHOTO = b"\xff\xd8\xff\xe0JFIF" + bytes(range(256)) * 40
VOICE = b"OggS\x00\x02" + bytes(reversed(range(256))) * 12

FIRST = (
    "[01.03.26, 09:00:00] Sales Desk: \u200eMessages and calls are end-to-end encrypted.\r\n"
    "[01.03.26, 09:01:10] Anna Weber: Guten Morgen\r\n"
    "[01.03.26, 09:01:40] Anna Weber: \u200e<attached: 00000001-PHOTO-2026-03-01-09-01-40.jpg>\r\n"
    "[01.03.26, 09:02:00] \u202a+44\u00a07700\u00a0900123\u202c: ok\r\nsecond line\r\n"
    "[01.03.26, 09:02:05] Bob Client: ok\r\n"
    "[01.03.26, 09:02:05] Bob Client: ok\r\n"
)
LATER = FIRST + (
    "[02.03.26, 10:00:00] Bob Client: \u200e<attached: 00000002-AUDIO-2026-03-02-10-00-00.opus>\r\n"
    "[13.03.26, 10:00:00] Anna Weber: Preis bestätigt\r\n"
)




@pytest.fixture
def exports_app(tmp_path, azurite, monkeypatch):
    mapping, directory = chat_export_people(tmp_path, custodian=CUSTODIAN, colleague=COLLEAGUE)
    env = {
        "AzureWebJobsStorage": azurite.connection_string, "MAILBOX_WRITER": "eml",
        "EML_MAILBOX_DIR": str(tmp_path / "mail"), "DIRECTORY": "file", "DIRECTORY_FILE": str(directory),
        "MAPPING_FILE": str(mapping), "TELEMESSAGE_BASE_URL": "http://127.0.0.1:9",
        "TELEMESSAGE_USERNAME": "unused", "ARCHIVE_SCHEDULE": "0 0 2 * * *",
        "CHAT_EXPORT_REPORT_DELAY_SECONDS": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_container()
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("chat-exports")
    blobs.create_container()
    runner = HostRunner(function_app.app, host_json=fast_host_json(tmp_path),
                        connection_settings={"AzureWebJobsStorage": azurite.connection_string}, settings=env, workers=4)
    with runner:
        yield runner, blobs, tmp_path
    reset_container()


def upload(runner, blobs, name: str, data: bytes) -> None:
    blobs.upload_blob(name, data, overwrite=True)
    runner.deliver_blob_created(name, "chat_export_blob")


def sidecar(**extra) -> bytes:
    return json.dumps({"custodian": CUSTODIAN, "timeZone": "Europe/Berlin",
                       "dateOrder": "dmy", "participants": {"Anna Weber": CUSTODIAN}, **extra}).encode()


def report_of(blobs, name: str) -> dict:
    return json.loads(blobs.download_blob(name + ".report.json").readall())


def archived(folder) -> list:
    return [BytesParser(policy=policy.default).parsebytes(p.read_bytes()) for p in sorted(folder.rglob("*.eml"))]


def test_a_zipped_export_with_media_is_archived_once_per_message_and_mailbox_and_its_report_lands_beside_it(
        exports_app, azurite):
    runner, blobs, tmp = exports_app
    name = "collections/case-7/WhatsApp Chat - Sales Desk.zip"
    data = export_zip(tmp / "first.zip", FIRST, {"00000001-PHOTO-2026-03-01-09-01-40.jpg": PHOTO}, macosx=True)
    # The export first: it waits for its sidecar, and says so beside itself.
    upload(runner, blobs, name, data)
    assert report_of(blobs, name)["status"] == "waiting"
    upload(runner, blobs, name + ".json", sidecar())
    runner.drain(timeout=120)

    report = report_of(blobs, name)
    assert report["status"] == "done" and report["pending"] == 0
    assert report["sha256"] == hashlib.sha256(data).hexdigest()
    assert (report["lines"], report["messages"], report["system"], report["unparsed"]) == (7, 5, 1, 0)
    assert report["media_attached"] == 1 and report["media_missing"] == 0 and report["media_unreferenced"] == 0
    assert report["imported"] == 12 and report["skipped_duplicates"] == 0  # 6 records x 2 mailboxes
    assert all(item["outcome"] == "imported" for item in report["items"])
    assert all(sorted(item["mailboxes"]) == sorted([CUSTODIAN, COLLEAGUE]) for item in report["items"])

    items = archived(tmp / "mail" / CUSTODIAN)
    assert len(items) == 6
    assert {str(item["X-Archive-Item-Id"]) for item in items} == {i["messageId"] for i in report["items"]}
    [photo] = [part for item in items for part in item.iter_attachments()
               if part.get_filename() == "00000001-PHOTO-2026-03-01-09-01-40.jpg"]
    assert photo.get_payload(decode=True) == PHOTO  # byte-exact
    oks = [item for item in items if "] Bob Client: ok" in item.get_body(("plain",)).get_content()]
    assert len(oks) == 2  # two identical lines in one minute stay two records

    # The upload as it was is evidence: under its SHA-256 in the WORM container, with the photo.
    evidence = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        "archive-evidence")
    kept = {blob.name for blob in evidence.list_blobs(name_starts_with="raw/")}
    assert {f"raw/chat-export/{hashlib.sha256(data).hexdigest()}", f"raw/media/{hashlib.sha256(PHOTO).hexdigest()}",
            } <= kept
    # Event Grid delivers at least once: the same event again (or the older half's event, late) finds the
    # upload handed off already and starts nothing.
    runner.deliver_blob_created(name + ".json", "chat_export_blob")
    runner.deliver_blob_created(name, "chat_export_blob")
    runner.drain(timeout=120)
    assert len(archived(tmp / "mail" / CUSTODIAN)) == 6
    assert report_of(blobs, name) == report


def test_a_later_export_of_the_same_chat_archives_only_the_messages_the_first_did_not_hold(exports_app):
    runner, blobs, tmp = exports_app
    first = "WhatsApp Chat - Sales Desk.zip"
    upload(runner, blobs, first + ".json", sidecar())
    upload(runner, blobs, first, export_zip(tmp / "a.zip", FIRST, {"00000001-PHOTO-2026-03-01-09-01-40.jpg": PHOTO}))
    runner.drain(timeout=120)
    later = "later/WhatsApp Chat - Sales Desk.zip"
    upload(runner, blobs, later + ".json", sidecar())
    upload(runner, blobs, later, export_zip(tmp / "b.zip", LATER, {
        "00000001-PHOTO-2026-03-01-09-01-40.jpg": PHOTO, "00000002-AUDIO-2026-03-02-10-00-00.opus": VOICE}))
    runner.drain(timeout=120)

    report = report_of(blobs, later)
    assert report["status"] == "done"
    assert report["messages_new"] == 2 and report["messages_already_archived"] == 6
    assert len(archived(tmp / "mail" / CUSTODIAN)) == 8


def test_a_sidecar_that_is_not_valid_imports_nothing_and_the_report_names_the_field(exports_app):
    runner, blobs, tmp = exports_app
    name = "WhatsApp Chat - Sales Desk.zip"
    upload(runner, blobs, name, export_zip(tmp / "c.zip", FIRST, {}))
    upload(runner, blobs, name + ".json", json.dumps({"custodian": CUSTODIAN, "timeZone": "Mars/Olympus"}).encode())
    runner.drain(timeout=60)
    report = report_of(blobs, name)
    assert report["status"] == "refused" and "timeZone" in report["reason"]
    assert not (tmp / "mail").exists() or not archived(tmp / "mail")
    # A corrected sidecar starts the import.
    upload(runner, blobs, name + ".json", sidecar())
    runner.drain(timeout=120)
    assert report_of(blobs, name)["status"] == "done"


def test_a_blob_name_that_leaves_its_folder_or_our_own_report_starts_nothing(exports_app):
    runner, blobs, tmp = exports_app
    upload(runner, blobs, "x.zip.report.json", b"{}")
    assert chat_export_intake.upload_halves("x.zip.report.json") is None
    with pytest.raises(ValueError):
        chat_export_intake.upload_halves("a/../b.zip")


def test_the_demo_uploads_an_export_that_reconciles_and_a_second_run_archives_nothing_new(tmp_path):
    from shared.local.chat_export_demo import run_chat_export
    from shared.local.demo import DemoPaths

    paths = DemoPaths(tmp_path / "demo", "chat-export")
    paths.root.mkdir(parents=True)
    first = run_chat_export(paths)
    assert first["reconciled"], first["export"].get("reason")
    export = first["export"]
    assert export["media_attached"] == 2 and export["media_missing"] == 1 and export["media_unreferenced"] == 1
    assert export["imported"] == export["fanout"] > 0 and export["poisoned"] == {}
    second = run_chat_export(paths)
    assert second["reconciled"] and second["export"]["imported"] == 0
    assert second["export"]["skipped_duplicates"] == export["fanout"]
    assert second["eml_files"] == first["eml_files"]
