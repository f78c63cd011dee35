"""An upload to chat-exports, as the blob trigger hands it over: which event imports (one upload, one
import, whatever order Event Grid delivers in), what a bad sidecar or file leaves behind (a report
naming the field, nothing imported, no name in the logs), and the report finished once every record has
its outcome — over in-memory stores with the adapters' behaviour."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from datetime import UTC, datetime

import pytest

from shared.domain.ledger import OutcomeEntry, RecordOutcome
from shared.domain.tasks import ChatExportReportTask, ItemTask
from shared.service import chat_export_intake as intake
from shared.service.webhook_batch_import import CapturedMediaFiles
from tests.fakes import MemoryChatExportUploads, MemoryLedger, MemoryQueue, MemoryRecordStore

CUSTODIAN = "anna.weber@contoso.example"
CHAT = ("[13.03.26, 09:00:00] Anna Weber: Guten Morgen\r\n"
        "[13.03.26, 09:01:00] \u202a+44\u00a07700\u00a0900123\u202c: Preis?\r\n"
        "[13.03.26, 09:02:00] Bob Client: \u200e<attached: 00000001-PHOTO-2026-03-13-09-02-00.jpg>\r\n")
PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(200))
NAME = "case-7/WhatsApp Chat - Sales Desk.zip"


def export_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("_chat.txt", CHAT.encode())
        archive.writestr("00000001-PHOTO-2026-03-13-09-02-00.jpg", PHOTO)
    return buffer.getvalue()


def sidecar(**changes) -> bytes:
    return json.dumps({"custodian": CUSTODIAN, "timeZone": "Europe/Berlin",
                       "participants": {"Anna Weber": CUSTODIAN}, **changes}).encode()


class Stack:
    def __init__(self, media_store) -> None:
        self.uploads = MemoryChatExportUploads()
        self.records = MemoryRecordStore()
        self.items = MemoryQueue("items")
        self.listing = MemoryQueue("listing")
        self.ledger = MemoryLedger()
        self.media = media_store
        self.now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

    def event(self, name: str):
        return intake.receive_upload(
            name, uploads=self.uploads, media_store=self.media, records=self.records, items_queue=self.items,
            report_queue=self.listing, ledger=self.ledger, clock=lambda: self.now,
        )

    def report(self) -> dict:
        return json.loads(self.uploads.blobs[NAME + ".report.json"])


@pytest.fixture
def stack():
    with CapturedMediaFiles() as media:
        yield Stack(media)


def test_the_later_halfs_event_imports_and_the_earlier_ones_late_delivery_starts_nothing(stack):
    stack.uploads.upload(NAME, export_bytes())
    assert stack.event(NAME)["status"] == "waiting"
    stack.uploads.upload(NAME + ".json", sidecar())
    # Event Grid may deliver the export's event again, late: the sidecar is the later upload.
    assert stack.event(NAME) is None and not stack.items.messages
    report = stack.event(NAME + ".json")
    assert report["status"] == "handed_off" and len(stack.items.messages) == 3
    # The same event again: handed off before, nothing queued twice.
    assert stack.event(NAME + ".json") is None and len(stack.items.messages) == 3
    # A corrected sidecar is another upload: imported again (its records are duplicates at import).
    stack.uploads.upload(NAME + ".json", sidecar(custodianNames=["Anna Weber"]))
    assert stack.event(NAME + ".json")["status"] == "handed_off" and len(stack.items.messages) == 6


def test_both_halves_in_one_second_are_imported_by_whichever_event_comes_after_both(stack):
    stack.uploads.upload(NAME + ".json", sidecar())
    stack.uploads.upload(NAME, export_bytes(), seconds_later=0)  # storage keeps the time to the second
    assert stack.event(NAME)["status"] == "handed_off"
    assert stack.event(NAME + ".json") is None  # found the first's report: one import


def test_a_sidecar_naming_one_person_twice_is_refused_without_their_name_in_the_report_or_the_log(stack, caplog):
    stack.uploads.upload(NAME, export_bytes())
    stack.uploads.upload(NAME + ".json", sidecar(participants={
        "Bob Jones +44 7700 900123": "bob@contoso.example", "BOB  JONES +44 7700 900123": "rob@contoso.example"}))
    with caplog.at_level(logging.INFO):
        report = stack.event(NAME + ".json")
    assert report["status"] == "refused" and report["code"] == "sidecar_invalid"
    assert "participants" in report["reason"]
    text = json.dumps(report) + caplog.text
    assert "Bob" not in text and "BOB" not in text and "7700" not in text
    assert not stack.items.messages and not stack.records.blobs


@pytest.mark.parametrize(("changes", "field"), [
    ({"timeZone": "Europe/../../etc"}, "timeZone"), ({"custodian": "anna"}, "custodian"),
    ({"dateOrder": "dym"}, "dateOrder"), ({"chatName": "Desk\u202e"}, "chatName"),
    ({"custodianNames": ["\u0000"]}, "custodianNames"), ({"extra": 1}, "extra"),
])
def test_each_sidecar_field_is_checked_and_named(stack, changes, field):
    stack.uploads.upload(NAME, export_bytes())
    stack.uploads.upload(NAME + ".json", sidecar(**changes))
    report = stack.event(NAME + ".json")
    assert report["status"] == "refused" and field in report["reason"]


def test_an_export_over_the_size_limit_is_refused_before_it_is_read(stack, monkeypatch):
    monkeypatch.setattr(intake, "MAX_EXPORT_BYTES", 100)
    stack.uploads.upload(NAME, export_bytes())
    stack.uploads.upload(NAME + ".json", sidecar())
    report = stack.event(NAME + ".json")
    assert report["code"] == "export_too_big" and "100" in report["reason"]


def test_a_zip_whose_member_breaks_the_bounds_is_refused_and_only_its_code_is_logged(stack, caplog):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("_chat.txt", CHAT.encode())
        archive.writestr("John Smith +44 7700 900123.vcf", bytes(4 * 1024 * 1024))
    stack.uploads.upload(NAME, buffer.getvalue())
    stack.uploads.upload(NAME + ".json", sidecar())
    with caplog.at_level(logging.INFO):
        report = stack.event(NAME + ".json")
    assert report["code"] == "ExportFileError" and "inflates" in report["reason"]
    assert "John" not in caplog.text and "7700" not in caplog.text


def test_names_that_are_no_blob_names_and_our_own_reports_start_nothing(stack):
    assert stack.event("a/../b.zip") is None
    assert stack.event(NAME + ".report.json") is None
    assert not stack.uploads.blobs


def test_the_report_is_finished_when_every_record_has_its_outcome_and_only_by_its_own_import(stack):
    stack.uploads.upload(NAME + ".json", sidecar(dateOrder="dmy"))
    stack.uploads.upload(NAME, export_bytes())
    first = stack.event(NAME)
    [task] = [ChatExportReportTask.model_validate(m) for m in stack.listing.messages]
    items = [ItemTask.model_validate(m) for m in stack.items.messages]

    def finish(task):
        return intake.finish_report(task, uploads=stack.uploads, ledger=stack.ledger, report_queue=stack.listing,
                                    clock=lambda: stack.now)

    # Nothing imported yet: the report says so and the check comes back later.
    assert finish(task)["status"] == "importing" and stack.listing.delays[-1] == 5 * intake.FIRST_REPORT_DELAY
    for n, item in enumerate(items):
        outcome = RecordOutcome.IMPORTED if n else RecordOutcome.SKIPPED_DUPLICATE
        stack.ledger.record_outcome(item.window_id, OutcomeEntry(item.record_key, item.message_id, outcome, stack.now))
    done = finish(task)
    assert done["status"] == "done" and done["pending"] == 0
    assert (done["messages_new"], done["messages_already_archived"]) == (2, 1)
    # A task of an earlier import of the same file (another window) leaves this report alone.
    stale = task.model_copy(update={"window_id": "20261130T000000Z-20261201T000000Z.20261130T100000000Z"})
    assert finish(stale) is None and stack.report()["window"] == first["window"]


def test_an_import_that_fails_part_way_is_finished_by_the_retry_in_the_same_window(stack):
    stack.uploads.upload(NAME + ".json", sidecar())
    stack.uploads.upload(NAME, export_bytes())
    stack.items = MemoryQueue("items", fail_after=1)  # storage gives way after the first record
    with pytest.raises(ConnectionError):
        stack.event(NAME)
    stack.now = stack.now.replace(minute=7)  # the host retries the event minutes later
    stack.items = MemoryQueue("items")
    report = stack.event(NAME)
    # One window for the upload: the record handed off before the failure is found again, and the
    # window's one slice is whole, so it can reconcile.
    [window] = stack.ledger.recent_windows(5)
    assert report["window"] == window.window_id
    pages = stack.ledger.pages(window.window_id)
    assert pages[-1].last and {k for p in pages for k in p.record_keys} == {
        ItemTask.model_validate(m).record_key for m in stack.items.messages}
