"""Daily transcript mode applies to chat exports (issue 17, point 7), through the registered
functions under the host runner over Azurite: a zipped export of a group chat over two local days
(in the sidecar's zone, which is also the transcripts' zone) uploaded to `chat-exports` becomes one
transcript item per chat and day in the custodian's mailbox and the mapped colleague's, its photo
attached byte-exact; the events delivered again, the same file uploaded again and a later export that
overlaps the first (after the days were composed, or before) put no record in a second transcript; and
the report beside each upload ends "done" with every message's outcome as its transcript archived it."""

from __future__ import annotations

import hashlib
import json
import re
from email import policy
from email.parser import BytesParser

import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from shared.composition import reset_container
from shared.domain.bidi import strip_isolates
from shared.local.host_runner.runner import HostRunner
from shared.local.telemessage_server import LocalTeleMessage
from shared.service import chat_export_intake
from tests.builders import chat_export_people
from tests.builders import chat_export_zip as export_zip
from tests.conftest import TEST_PASSWORD, fast_host_json

pytestmark = pytest.mark.integration

ZONE = "Europe/Berlin"  # the phone's zone (the sidecar's) and the transcripts' calendar
CUSTODIAN = "anna.weber@contoso.example"
COLLEAGUE = "carl.diaz@contoso.example"
PHOTO_NAME = "00000003-PHOTO-2026-11-20-23-50-30.jpg"
PHOTO = b"\xff\xd8\xff\xe0JFIF" + bytes(range(256)) * 40 + b"\xff\xd9"
NAME = "collections/case-9/WhatsApp Chat - Deal Room.zip"
LATER_NAME = "collections/case-9/later/WhatsApp Chat - Deal Room.zip"

# A group of four: the custodian, a colleague by number (mapped through the phone->email CSV) and two
# external people, over Friday 20 and Saturday 21 November 2026 on the phone's clock (Berlin, UTC+1):
# Dana's 00:20 on the 21st is 23:20 UTC on the 20th, so only the phone's calendar puts it on the 21st.
FIRST = (
    "[20.11.26, 09:00:00] Deal Room: \u200eMessages and calls are end-to-end encrypted.\r\n"
    "[20.11.26, 09:01:10] Anna Weber: Morning all, draft term sheet tonight\r\n"
    "[20.11.26, 09:02:00] \u202a+44\u00a07700\u00a0900123\u202c: I'll check the numbers\r\n"
    "[20.11.26, 18:30:00] Bob Client: Looking forward to it\r\n"
    "[20.11.26, 23:50:00] Anna Weber: Here it is\r\n"
    "[20.11.26, 23:50:30] Anna Weber: \u200e<attached: " + PHOTO_NAME + ">\r\n"
    "[21.11.26, 00:20:00] Dana Broker: Late one, thanks\r\nsee you Monday\r\n"
    "[21.11.26, 10:15:00] \u202a+44\u00a07700\u00a0900123\u202c: Numbers agree\r\n"
    "[21.11.26, 11:00:00] Bob Client: Signed\r\n"
)
DAY_ONE = ("Morning all", "check the numbers", "Looking forward", "Here it is")
DAY_TWO = ("Late one, thanks", "Numbers agree", "Signed")
# Exported again days later: the same lines (the phone writes them the same way) and one new day.
LATER = FIRST + "[24.11.26, 08:00:00] Anna Weber: Closing call at ten\r\n"




@pytest.fixture
def transcript_app(tmp_path, azurite, monkeypatch):
    mapping, directory = chat_export_people(tmp_path, custodian=CUSTODIAN, colleague=COLLEAGUE)
    # The timer's window lists TeleMessage as always: a local one with nothing to list.
    with LocalTeleMessage((), username="connector", password=TEST_PASSWORD) as telemessage:
        env = {
            "AzureWebJobsStorage": azurite.connection_string, "MAILBOX_WRITER": "eml",
            "EML_MAILBOX_DIR": str(tmp_path / "mail"), "DIRECTORY": "file", "DIRECTORY_FILE": str(directory),
            "MAPPING_FILE": str(mapping), "TELEMESSAGE_BASE_URL": telemessage.base_url,
            "TELEMESSAGE_USERNAME": "connector", "TELEMESSAGE_PASSWORD": TEST_PASSWORD,
            "ARCHIVE_SCHEDULE": "0 0 2 * * *",
            "CHAT_EXPORT_REPORT_DELAY_SECONDS": "0",
            "DAILY_TRANSCRIPTS": "true", "TRANSCRIPT_TIME_ZONE": ZONE, "TRANSCRIPT_DELAY_MINUTES": "0",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        # The report's checks 0 s apart (CHAT_EXPORT_REPORT_DELAY_SECONDS) take milliseconds each: more
        # of them, so that the report still waits longer than a day's composition (a transcript
        # dispatch rechecks after 5 s), as 288 checks minutes apart do in Azure.
        monkeypatch.setattr(chat_export_intake, "REPORT_CHECKS", 5_000)
        reset_container()
        blobs = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
            "chat-exports")
        blobs.create_container()
        runner = HostRunner(function_app.app, host_json=fast_host_json(tmp_path),
                            connection_settings={"AzureWebJobsStorage": azurite.connection_string}, settings=env,
                            workers=4)
        with runner:
            yield runner, blobs, tmp_path
        reset_container()


def upload(runner, blobs, name: str, data: bytes) -> None:
    blobs.upload_blob(name, data, overwrite=True)
    runner.deliver_blob_created(name, "chat_export_blob")


def sidecar() -> bytes:
    return json.dumps({"custodian": CUSTODIAN, "timeZone": ZONE, "dateOrder": "dmy",
                       "participants": {"Anna Weber": CUSTODIAN}}).encode()


def compose(runner) -> None:
    """The timer's run: its window's transcript dispatch composes every staged chat-day that is over."""
    runner.run_timer("schedule_archive_window")
    runner.drain(timeout=120)


def report_of(blobs, name: str) -> dict:
    return json.loads(blobs.download_blob(name + ".report.json").readall())


def archived(folder) -> dict[str, object]:
    """X-Archive-Item-Id -> message, for every item in a mailbox folder."""
    items = [BytesParser(policy=policy.default).parsebytes(p.read_bytes()) for p in sorted(folder.rglob("*.eml"))]
    by_id = {str(item["X-Archive-Item-Id"]): item for item in items}
    assert len(by_id) == len(items)  # no item twice
    return by_id


def day_of(item) -> str:
    day, zone = str(item["X-Archive-Transcript-Day"]).split(" ")
    assert zone == ZONE
    return day


def text_of(item) -> str:
    return item.get_body(("plain",)).get_content().replace("\r\n", "\n")


def record_ids(items) -> list[str]:
    """The record ids a mailbox's transcripts hold, one per record written in them."""
    return [found for item in items for found in re.findall(r"^Record id: (\S+)", text_of(item), re.MULTILINE)]


def mail_files(tmp) -> dict:
    return {path: path.read_bytes() for path in (tmp / "mail").rglob("*.eml")}


def test_an_export_in_transcript_mode_is_one_transcript_per_chat_day_and_mailbox_and_never_twice(transcript_app):
    runner, blobs, tmp = transcript_app
    data = export_zip(tmp / "first.zip", FIRST, {PHOTO_NAME: PHOTO})
    upload(runner, blobs, NAME + ".json", sidecar())
    upload(runner, blobs, NAME, data)
    runner.drain(timeout=120)
    compose(runner)

    report = report_of(blobs, NAME)
    ids = sorted(item["messageId"] for item in report["items"])
    assert len(ids) == 9  # the group's notice and the eight messages
    for mailbox in (CUSTODIAN, COLLEAGUE):
        items = archived(tmp / "mail" / mailbox)
        days = {day_of(item): item for item in items.values()}
        assert len(items) == 2 and sorted(days) == ["2026-11-20", "2026-11-21"], mailbox
        assert len({key.rsplit(":", 2)[1] for key in items}) == 1  # one chat
        assert all(key.startswith("transcript:") and key.endswith(":part1") for key in items)
        assert all(str(item["X-Archive-Message-Type"]) == "TRANSCRIPT" for item in items.values())
        assert "Deal Room (group)" in strip_isolates(str(days["2026-11-20"]["Subject"]))
        assert "(Europe/Berlin)" in str(days["2026-11-20"]["Subject"])
        # Every record in exactly one transcript: the notice and five messages on the 20th; Dana's
        # (23:20 UTC on the 20th) and two more on the 21st.
        assert sorted(record_ids(items.values())) == ids, mailbox
        assert [str(days[day]["X-Archive-Record-Count"]) for day in sorted(days)] == ["6", "3"]
        one, two = text_of(days["2026-11-20"]), text_of(days["2026-11-21"])
        assert all(line in one and line not in two for line in DAY_ONE), mailbox
        assert all(line in two and line not in one for line in DAY_TWO), mailbox
        assert "Late one, thanks\nsee you Monday" in two  # a message's second line stays with it
        assert not list(days["2026-11-21"].iter_attachments())
        [photo] = list(days["2026-11-20"].iter_attachments())
        assert photo.get_filename().endswith(PHOTO_NAME) and photo.get_payload(decode=True) == PHOTO  # byte-exact
        assert hashlib.sha256(PHOTO).hexdigest() in one
    first_mail = mail_files(tmp)

    # The report beside the upload: every message archived, by its transcript, in both mailboxes.
    assert report["sha256"] == hashlib.sha256(data).hexdigest() and report["group"] is True
    assert report["media_attached"] == 1 and report["media_missing"] == 0
    assert [item["outcome"] for item in report["items"]] == ["imported"] * 9
    assert all(sorted(item["mailboxes"]) == [CUSTODIAN, COLLEAGUE] for item in report["items"])
    assert (report["imported"], report["skipped_duplicates"]) == (18, 0)
    assert (report["messages_new"], report["messages_already_archived"]) == (9, 0)
    assert report["status"] == "done" and report["pending"] == 0

    # Event Grid delivers at least once: both halves' events again start nothing.
    runner.deliver_blob_created(NAME + ".json", "chat_export_blob")
    runner.deliver_blob_created(NAME, "chat_export_blob")
    runner.drain(timeout=120)
    compose(runner)
    assert mail_files(tmp) == first_mail
    assert report_of(blobs, NAME) == report

    # The same file uploaded again imports again: every record is found in its transcript.
    upload(runner, blobs, NAME, data)
    runner.drain(timeout=120)
    compose(runner)
    assert mail_files(tmp) == first_mail
    again = report_of(blobs, NAME)
    assert again["window"] != report["window"]
    assert again["status"] == "done" and again["pending"] == 0
    assert [item["outcome"] for item in again["items"]] == ["skipped_duplicate"] * 9
    assert (again["imported"], again["skipped_duplicates"]) == (0, 18)
    assert (again["messages_new"], again["messages_already_archived"]) == (0, 9)

    # A later export of the same chat: only its new day becomes a transcript.
    upload(runner, blobs, LATER_NAME + ".json", sidecar())
    upload(runner, blobs, LATER_NAME, export_zip(tmp / "later.zip", LATER, {PHOTO_NAME: PHOTO}))
    runner.drain(timeout=120)
    compose(runner)
    later = report_of(blobs, LATER_NAME)
    # The shared messages have the same ids in both exports; the new one is the tenth.
    assert len(later["items"]) == 10 and set(ids) < {item["messageId"] for item in later["items"]}
    for mailbox in (CUSTODIAN, COLLEAGUE):
        items = archived(tmp / "mail" / mailbox)
        assert sorted(day_of(item) for item in items.values()) == ["2026-11-20", "2026-11-21", "2026-11-24"]
        [new] = [item for item in items.values() if day_of(item) == "2026-11-24"]
        assert str(new["X-Archive-Record-Count"]) == "1" and "Closing call at ten" in text_of(new)
        assert not list(new.iter_attachments())
        assert sorted(record_ids(items.values())) == sorted(item["messageId"] for item in later["items"])
    assert all(mail_files(tmp)[path] == content for path, content in first_mail.items())  # never rewritten
    assert later["status"] == "done" and later["pending"] == 0
    assert (later["messages_new"], later["messages_already_archived"]) == (1, 9)
    assert (later["imported"], later["skipped_duplicates"]) == (2, 18)


def test_two_overlapping_exports_staged_before_their_days_are_composed_make_one_transcript_per_day(transcript_app):
    """Both exports handed off before any transcript is composed: every shared message is staged by
    both imports, and still written once; the first import shows it imported, the later one as
    already archived."""
    runner, blobs, tmp = transcript_app
    upload(runner, blobs, NAME + ".json", sidecar())
    upload(runner, blobs, NAME, export_zip(tmp / "first.zip", FIRST, {PHOTO_NAME: PHOTO}))
    upload(runner, blobs, LATER_NAME + ".json", sidecar())
    upload(runner, blobs, LATER_NAME, export_zip(tmp / "later.zip", LATER, {PHOTO_NAME: PHOTO}))
    runner.drain(timeout=120)
    compose(runner)

    first, later = report_of(blobs, NAME), report_of(blobs, LATER_NAME)
    for mailbox in (CUSTODIAN, COLLEAGUE):
        items = archived(tmp / "mail" / mailbox)
        assert sorted(day_of(item) for item in items.values()) == ["2026-11-20", "2026-11-21", "2026-11-24"]
        assert all(key.endswith(":part1") for key in items), mailbox
        assert sorted(record_ids(items.values())) == sorted(item["messageId"] for item in later["items"])
        photos = [part.get_payload(decode=True) for item in items.values() for part in item.iter_attachments()]
        assert photos == [PHOTO]
    assert first["status"] == later["status"] == "done" and first["pending"] == later["pending"] == 0
    assert (first["messages_new"], first["messages_already_archived"], first["imported"]) == (9, 0, 18)
    assert (later["messages_new"], later["messages_already_archived"]) == (1, 9)
    assert (later["imported"], later["skipped_duplicates"]) == (2, 18)
