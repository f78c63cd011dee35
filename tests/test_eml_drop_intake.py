"""A vendor's drop in the eml-drops container, as the blob trigger and the listing and items functions
take it: a ZIP whose manifest holds is kept as evidence, handed off as one window and imported once
into the right mailboxes, with a report beside it finished with every EML's outcome; the same drop
delivered again adds nothing; a manifest that does not hold imports nothing and is poisoned
``manifest_mismatch``, replayable once with the operator's acceptance; an unsafe ZIP is refused and
never replayable; an EML that cannot be read is poisoned naming its file, its bytes kept — over
in-memory stores with the adapters' behaviour."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime

import pytest

from shared.domain.eml_drop import DropLimits
from shared.domain.errors import PoisonReason
from shared.domain.ledger import RecordOutcome
from shared.domain.records import record_key
from shared.domain.tasks import EmlDropReportTask, EmlDropTask, ItemTask, PoisonMessage
from shared.service import eml_drop_intake as intake
from shared.service.eml_import import EmlImporter
from shared.service.importing import ItemImporter
from shared.service.mapping import MailboxMapper
from shared.service.poison import PoisonQueues
from shared.service.processing import process_item_message
from tests.fakes import (
    MemoryChatExportUploads,
    MemoryEvidenceStore,
    MemoryInspectableQueue,
    MemoryLedger,
    MemoryMailboxes,
    MemoryQueue,
    MemoryRecordStore,
    SetDirectory,
    StaticMapping,
)
from tests.test_cli_import_eml import ALICE, BOB, ZIP_NAME, manifest, vendor_eml

DROP = f"capture/{ZIP_NAME}"


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def good_drop() -> bytes:
    emls = {f"msg-{n}.eml": vendor_eml(n) for n in (1, 2, 3)}
    return zip_bytes({**emls, "batch.mf": manifest(3, *emls)})


class Stack:
    def __init__(self) -> None:
        self.drops = MemoryChatExportUploads()
        self.state = MemoryChatExportUploads()
        self.records = MemoryRecordStore()
        self.evidence = MemoryEvidenceStore()
        self.items = MemoryQueue("items")
        self.listing = MemoryQueue("listing")
        self.poison = MemoryInspectableQueue("listing-poison")
        self.items_poison = MemoryQueue("items-poison")
        self.ledger = MemoryLedger()
        self.mailboxes = MemoryMailboxes()
        self.now = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)
        mapper = MailboxMapper(SetDirectory(ALICE, BOB),
                               StaticMapping(f"PhoneNumber,EmailAddress\n+44 7700 900002,{BOB}\n", "GB"),
                               default_region="GB")
        self.eml_importer = EmlImporter(mapper, self.mailboxes, max_item_bytes=10 * 1024 * 1024,
                                        default_region="GB", records=self.records)
        self.rewire()

    def rewire(self) -> None:
        self.stores = intake.DropStores(drops=self.drops, state=self.state, records=self.records,
                                        evidence=self.evidence, items_queue=self.items, report_queue=self.listing,
                                        poison_queue=self.poison, ledger=self.ledger)

    def deliver(self, data: bytes, name: str = DROP) -> dict | None:
        """The vendor's upload, its event, and the listing function's run of the queued task."""
        self.drops.upload(name, data)
        task = intake.receive_drop(name, drops=self.drops, listing_queue=self.listing, clock=lambda: self.now)
        assert task is not None
        return self.judge(EmlDropTask.model_validate(self.listing.messages.pop()))

    def judge(self, task: EmlDropTask) -> dict | None:
        return intake.import_drop(task, self.stores, clock=lambda: self.now, report_delay=60)

    def import_items(self) -> list:
        results = []
        while self.items.messages:
            body = json.dumps(self.items.messages.pop(0))
            results.append(process_item_message(
                body, dequeue_count=1, records=self.records, importer=_no_records_importer(),
                poison_queue=self.items_poison, ledger=self.ledger, eml_importer=lambda: self.eml_importer,
                clock=lambda: self.now))
        return results

    def finish_report(self, name: str = DROP) -> dict | None:
        reports = [m for m in self.listing.messages if m.get("kind") == "eml_drop_report"]
        self.listing.messages = [m for m in self.listing.messages if m.get("kind") != "eml_drop_report"]
        report = None
        for message in reports:
            report = intake.finish_drop_report(EmlDropReportTask.model_validate(message), stores=self.stores,
                                               clock=lambda: self.now)
        return report

    def report(self, name: str = DROP) -> dict:
        """What the vendor's login reads beside its drop."""
        return json.loads(self.drops.blobs[name + ".report.json"])

    def poisoned(self) -> list[PoisonMessage]:
        return [PoisonMessage.from_text(m["text"]) for m in self.poison.stored.values()]


def _no_records_importer() -> ItemImporter:
    class Refuse:
        def import_raw(self, *args, **kwargs):
            raise AssertionError("an EML task must not be read as a record")

    return Refuse()  # type: ignore[return-value]


@pytest.fixture
def stack() -> Stack:
    return Stack()


def test_a_drop_whose_manifest_holds_is_kept_handed_off_and_imported_once_with_its_report(stack):
    data = good_drop()
    report = stack.deliver(data)
    assert report is not None and report["status"] == "handed_off" and report["manifest"] == "holds"
    assert report["drop"] == {"day": "2026-12-04", "number": 1, "zipped": "20261205013000"}
    assert report["pending"] == 3 and [i["file"] for i in report["items"]] == [
        f"{ZIP_NAME}/msg-{n}.eml" for n in (1, 2, 3)]
    # Evidence before anything else: the ZIP as it came, and each EML under its own SHA-256.
    assert any(name.startswith("raw/eml-drop/") for name in stack.evidence.blobs)
    assert sum(name.startswith("raw/eml/") for name in stack.evidence.blobs) == 3
    tasks = [ItemTask.model_validate(m) for m in stack.items.messages]
    assert {t.format for t in tasks} == {"eml"} and tasks[0].file == f"{ZIP_NAME}/msg-1.eml"
    assert stack.records.get(tasks[0].record_ref) == vendor_eml(1)  # the claim check is the EML's bytes

    results = stack.import_items()
    assert [r.outcome for r in results] == [RecordOutcome.IMPORTED] * 3
    # Alice by her address, Bob by his number through the CSV; the unmapped sender nowhere.
    assert len(stack.mailboxes.items[ALICE]) == 3 and len(stack.mailboxes.items[BOB]) == 3
    finished = stack.finish_report()
    assert finished is not None and finished["status"] == "done"
    assert (finished["imported"], finished["pairs_imported"], finished["pending"]) == (3, 6, 0)
    assert finished["items"][1]["mailboxes"][0]["outcome"] == "imported"
    # Beside the drop, the vendor reads what became of each EML, not which mailboxes took it.
    beside = stack.report()
    assert beside == intake.for_vendor(finished) and beside["items"][1]["mailboxes"] == 2
    assert ALICE not in json.dumps(beside) and BOB not in json.dumps(beside)

    (info,) = stack.ledger.recent_windows(5)
    window = stack.ledger.summary(info.window_id)
    assert window is not None and window.reconciled
    assert (window.listed, window.fanout, window.imported) == (3, 6, 6)  # imported: mailbox pairs


def test_the_same_drop_delivered_again_adds_nothing(stack):
    stack.deliver(good_drop())
    stack.import_items()
    # Event Grid delivers at least once: the same event again queues nothing.
    assert intake.receive_drop(DROP, drops=stack.drops, listing_queue=stack.listing, clock=lambda: stack.now)
    assert stack.judge(EmlDropTask.model_validate(stack.listing.messages.pop())) is None
    assert not stack.items.messages
    # The vendor uploads it again (a new blob, the same EMLs): every EML is a duplicate.
    stack.now = stack.now.replace(hour=3)
    report = stack.deliver(good_drop())
    assert report is not None and report["status"] == "handed_off"
    results = stack.import_items()
    assert [r.outcome for r in results] == [RecordOutcome.SKIPPED_DUPLICATE] * 3
    assert len(stack.mailboxes.items[ALICE]) == 3
    # The vendor wrote the EML with a photo anew (a new MIME boundary): other bytes, the same message. It is
    # listed under its own claim check (<key>.<digest>), so each record's claim check hashes to what was
    # imported, and the report still finds its outcome.
    window = report["window"]
    states = dict(stack.ledger.record_states(window))
    assert sum("." in key for key in states) == 1
    for key, state in states.items():
        assert state.outcome is not None
        assert hashlib.sha256(stack.records.get(f"{key}.json")).hexdigest() == state.outcome.raw_sha256
    finished = stack.finish_report()
    assert finished is not None and finished["status"] == "done" and finished["skipped_duplicates"] == 3


def test_a_wrong_manifest_imports_nothing_is_poisoned_and_a_replay_accepting_it_imports_once(stack):
    emls = {f"msg-{n}.eml": vendor_eml(n) for n in (1, 2)}
    report = stack.deliver(zip_bytes({**emls, "batch.mf": manifest(3, *emls, "msg-3.eml")}))
    assert report is not None and report["status"] == "refused" and report["code"] == "manifest_mismatch"
    assert "count_mismatch" in report["verdict"] and "listed_missing" in report["verdict"]
    assert not stack.items.messages and not stack.mailboxes.items
    assert any(name.startswith("raw/eml-drop/") for name in stack.evidence.blobs)  # kept as it came
    (poison,) = stack.poisoned()
    assert poison.reason is PoisonReason.MANIFEST_MISMATCH and "count_mismatch" in poison.detail
    # Event Grid delivers the same event again: judged before, not poisoned twice.
    assert intake.receive_drop(DROP, drops=stack.drops, listing_queue=stack.listing, clock=lambda: stack.now)
    assert stack.judge(EmlDropTask.model_validate(stack.listing.messages.pop())) is None
    assert len(stack.poisoned()) == 1

    queues = PoisonQueues([stack.poison], {"listing": stack.listing, "items": stack.items})
    # Replayed without acceptance (the vendor has not delivered again): judged again, poisoned again.
    assert len(queues.replay(lambda e: True).replayed) == 1
    assert stack.judge(EmlDropTask.model_validate(stack.listing.messages.pop()))["status"] == "refused"
    (again,) = stack.poisoned()
    assert again.replays == 1
    # The operator accepts the mismatch: imported once, and the report says who accepted what.
    queues.replay(lambda e: True, accept_mismatch=True)
    task = EmlDropTask.model_validate(stack.listing.messages.pop())
    assert task.accept_mismatch and task.replays == 2
    accepted = stack.judge(task)
    assert accepted is not None and accepted["manifest"] == "mismatch accepted"
    assert accepted["accepted_by"].startswith("poison replay --accept-manifest-mismatch")
    assert [r.outcome for r in stack.import_items()] == [RecordOutcome.IMPORTED] * 2
    assert not stack.poisoned()


def test_an_unsafe_zip_is_refused_kept_and_never_replayable(stack):
    report = stack.deliver(zip_bytes({"../escape.eml": vendor_eml(1), "msg-2.eml": vendor_eml(2)}))
    assert report is not None and report["status"] == "refused" and report["code"] == "unsafe_zip"
    assert "unsafe_member_name" in report["verdict"]
    assert not stack.items.messages and any(n.startswith("raw/eml-drop/") for n in stack.evidence.blobs)
    queues = PoisonQueues([stack.poison], {"listing": stack.listing, "items": stack.items})
    (entry,) = queues.list()
    assert entry.message.reason is PoisonReason.INVALID_ITEM and not entry.replayable
    replay = queues.replay(lambda e: True, accept_mismatch=True)
    assert [e.id for e in replay.not_replayable] == [entry.id] and not replay.replayed
    assert not stack.listing.messages


def test_an_eml_that_cannot_be_read_is_poisoned_naming_its_file_with_its_bytes_kept(stack):
    broken = b"this is not a message\r\n\r\njust text"
    emls = {"msg-1.eml": vendor_eml(1), "broken.eml": broken}
    stack.deliver(zip_bytes({**emls, "batch.mf": manifest(2, *emls)}))
    results = stack.import_items()
    assert [r.outcome for r in results] == [RecordOutcome.IMPORTED, RecordOutcome.POISONED]
    (poison,) = [PoisonMessage.model_validate(m) for m in stack.items_poison.messages]
    assert poison.reason is PoisonReason.INVALID_ITEM and poison.detail.startswith(f"{ZIP_NAME}/broken.eml: ")
    assert poison.record_format == "eml" and poison.file == f"{ZIP_NAME}/broken.eml"
    assert stack.records.get(poison.record_ref) == broken
    # A replay of it is imported as an EML again, not read as a record.
    replayed = poison.item_task()
    assert replayed is not None and replayed.format == "eml"
    finished = stack.finish_report()
    assert finished is not None and finished["failed_by_reason"] == {"invalid_item": 1}


def test_the_same_eml_twice_in_a_drop_is_one_message_and_the_second_is_named(stack):
    emls = {"a.eml": vendor_eml(1), "b.eml": vendor_eml(1)}
    report = stack.deliver(zip_bytes({**emls, "batch.mf": manifest(2, *emls)}))
    assert report is not None and len(stack.items.messages) == 1
    assert report["items"][1]["detail"] == f"the same EML as {ZIP_NAME}/a.eml"
    stack.import_items()
    finished = stack.finish_report()
    assert finished is not None and finished["status"] == "done"
    assert (finished["imported"], finished["skipped_duplicates"]) == (1, 1)


def test_two_emls_of_one_message_id_with_other_content_in_a_drop_are_both_archived(stack):
    corrected = vendor_eml(1).replace(b"Message number 1", b"Message number 1, corrected")
    emls = {"a.eml": vendor_eml(1), "b.eml": corrected}
    report = stack.deliver(zip_bytes({**emls, "batch.mf": manifest(2, *emls)}))
    assert report is not None and len(stack.items.messages) == 2
    # The first stored before the second (a page of its own), whatever order writes finish in.
    first, second = (ItemTask.model_validate(m) for m in stack.items.messages)
    assert "." not in first.record_key and second.record_key.startswith(first.record_key + ".")
    assert [r.outcome for r in stack.import_items()] == [RecordOutcome.IMPORTED] * 2
    finished = stack.finish_report()
    assert finished is not None and finished["status"] == "done" and finished["imported"] == 2
    (info,) = stack.ledger.recent_windows(5)
    window = stack.ledger.summary(info.window_id)
    assert window is not None and window.reconciled and window.listed == 2


def test_a_loose_eml_is_a_drop_of_one(stack):
    report = stack.deliver(vendor_eml(7), name="capture/one.eml")
    assert report is not None and report["manifest"] == "absent" and len(stack.items.messages) == 1
    assert [r.outcome for r in stack.import_items()] == [RecordOutcome.IMPORTED]
    (info,) = stack.ledger.recent_windows(5)
    (page,) = stack.ledger.pages(info.window_id)
    assert page.record_keys == (record_key("<wa-7@capture.example>"),) and page.last
    assert any(name.startswith("raw/eml/") for name in stack.evidence.blobs)


def test_our_own_reports_and_unsafe_names_start_nothing(stack):
    stack.drops.upload(DROP + ".report.json", b"{}")
    assert intake.receive_drop(DROP + ".report.json", drops=stack.drops, listing_queue=stack.listing,
                               clock=lambda: stack.now) is None
    assert intake.receive_drop("capture/../x.zip", drops=stack.drops, listing_queue=stack.listing,
                               clock=lambda: stack.now) is None
    assert not stack.listing.messages


def test_member_names_with_marks_or_past_the_label_length_still_hand_off(stack):
    # A Hebrew file name with a right-to-left mark, and a name that makes "<drop>/<member>" longer than
    # a task's file label may be: neither may hold the drop back.
    long_name = "x" * 1000 + ".eml"
    emls = {"\u200fשלום.eml": vendor_eml(1), long_name: vendor_eml(3)}
    report = stack.deliver(zip_bytes({**emls, "batch.mf": manifest(2, *emls)}))
    assert report is not None and report["status"] == "handed_off"
    files = [ItemTask.model_validate(m).file for m in stack.items.messages]
    assert files[0] == f"{ZIP_NAME}/\u200fשלום.eml"
    assert files[1] is not None and len(files[1]) == 1023 and "…" in files[1] and files[1].endswith(".eml")
    assert [r.outcome for r in stack.import_items()] == [RecordOutcome.IMPORTED] * 2


def test_a_hand_off_that_failed_part_way_resumes_after_the_pages_it_finished(stack):
    emls = {f"m-{n}.eml": vendor_eml(n % 50).replace(b"wa-", f"wa-{n}-".encode()) for n in range(250)}
    data = zip_bytes({**emls, "batch.mf": manifest(250, *emls)})
    stack.items = MemoryQueue("items", fail_after=150)  # the queue fails in the second page
    stack.rewire()
    stack.drops.upload(DROP, data)
    task = intake.receive_drop(DROP, drops=stack.drops, listing_queue=stack.listing, clock=lambda: stack.now)
    assert task is not None
    with pytest.raises(ConnectionError):
        stack.judge(task)
    assert stack.report()["status"] == "handing_off"
    # The task again (the queue's retry): the same window, page 0 not handed off twice.
    first_run = stack.items.messages
    stack.items = MemoryQueue("items")
    stack.rewire()
    report = stack.judge(task)
    assert report is not None and report["status"] == "handed_off"
    assert len(stack.items.messages) == 150 and len(first_run) == 150
    (info,) = stack.ledger.recent_windows(5)
    pages = stack.ledger.pages(info.window_id)
    assert sorted(p.page for p in pages) == [0, 1, 2] and sum(len(p.record_keys) for p in pages) == 250
    keys = {m["record_key"] for m in first_run[:100] + stack.items.messages}
    assert len(keys) == 250  # every EML handed off, each once past the pages' boundary


def test_a_corrected_eml_under_a_message_id_archived_before_is_an_item_of_its_own(stack):
    stack.deliver(good_drop())
    stack.import_items()
    corrected = vendor_eml(1).replace(b"Message number 1", b"Message number 1 (corrected by the vendor)")
    stack.now = stack.now.replace(hour=4)
    emls = {"msg-1.eml": corrected}
    stack.deliver(zip_bytes({**emls, "batch.mf": manifest(1, *emls)}), name="capture/resend.zip")
    (result,) = stack.import_items()
    assert result.outcome is RecordOutcome.IMPORTED and result.recapture_of == record_key("<wa-1@capture.example>")
    items = [i for i in stack.mailboxes.items[ALICE].values() if i.record_id.startswith("<wa-1@capture.example>")]
    assert len(items) == 2  # the first version kept, the corrected one beside it
    recaptured = next(i for i in items if "#" in i.record_id)
    assert dict(recaptured.extra_headers)["X-Archive-Recapture-Of"] == record_key("<wa-1@capture.example>")
    assert "corrected by the vendor" in recaptured.text_body


def test_a_report_forged_beside_the_drop_neither_stops_its_import_nor_its_report(stack):
    # The vendor's login may write in its container: what the app decides by is its own copy.
    stack.drops.upload(DROP, good_drop())
    task = intake.receive_drop(DROP, drops=stack.drops, listing_queue=stack.listing, clock=lambda: stack.now)
    assert task is not None
    stack.drops.put_report(DROP + ".report.json", json.dumps({"status": "handed_off", "etag": task.etag}).encode())
    report = stack.judge(EmlDropTask.model_validate(stack.listing.messages.pop()))
    assert report is not None and report["status"] == "handed_off" and len(stack.items.messages) == 3
    stack.import_items()
    stack.drops.put_report(DROP + ".report.json", b'{"status": "done"}')
    finished = stack.finish_report()
    assert finished is not None and finished["status"] == "done" and stack.report()["status"] == "done"


def test_the_report_task_waits_while_the_hand_off_is_unfinished(stack):
    stack.items = MemoryQueue("items", fail_after=1)
    stack.rewire()
    stack.drops.upload(DROP, good_drop())
    task = intake.receive_drop(DROP, drops=stack.drops, listing_queue=stack.listing, clock=lambda: stack.now)
    assert task is not None
    with pytest.raises(ConnectionError):
        stack.judge(task)
    beside = stack.report()
    waiting = EmlDropReportTask(drop_name=DROP, window_id=beside["window"], drop_sha256=beside["sha256"])
    assert intake.finish_drop_report(waiting, stores=stack.stores, clock=lambda: stack.now) is None
    (again,) = [m for m in stack.listing.messages if m.get("kind") == "eml_drop_report"]
    assert again["checks"] == 1  # it comes back later, and the report stays the hand-off's


def test_acceptance_covers_the_refused_bytes_only(stack):
    emls = {"msg-1.eml": vendor_eml(1)}
    stack.deliver(zip_bytes({**emls, "batch.mf": manifest(2, *emls)}))
    queues = PoisonQueues([stack.poison], {"listing": stack.listing, "items": stack.items})
    # The vendor replaces the drop (still wrong) before the operator's replay reaches it.
    stack.drops.upload(DROP, zip_bytes({**emls, "batch.mf": manifest(3, *emls)}))
    queues.replay(lambda e: True, accept_mismatch=True)
    report = stack.judge(EmlDropTask.model_validate(stack.listing.messages.pop()))
    assert report is not None and report["status"] == "refused" and "acceptance_not_applied" in report
    assert not stack.items.messages


def test_acceptance_is_never_given_to_a_drop_the_host_gave_up_on(stack):
    stack.drops.upload(DROP, good_drop())
    task = intake.receive_drop(DROP, drops=stack.drops, listing_queue=stack.listing, clock=lambda: stack.now)
    assert task is not None
    stack.poison.put(task.to_text())  # moved to listing-poison by the host after five failures
    queues = PoisonQueues([stack.poison], {"listing": stack.listing, "items": stack.items})
    queues.replay(lambda e: True, accept_mismatch=True)
    replayed = EmlDropTask.model_validate(stack.listing.messages[-1])
    assert not replayed.accept_mismatch


def test_a_page_closes_at_its_byte_bound_and_a_loose_eml_over_the_member_limit_is_refused(stack, monkeypatch):
    monkeypatch.setattr(intake, "PAGE_BYTES", 2000)
    emls = {f"msg-{n}.eml": vendor_eml(n) for n in (1, 2, 3)}  # msg-2 carries a 2 KB photo
    stack.deliver(zip_bytes({**emls, "batch.mf": manifest(3, *emls)}))
    (info,) = stack.ledger.recent_windows(5)
    assert [len(p.record_keys) for p in stack.ledger.pages(info.window_id)] == [2, 1]
    small = DropLimits(max_member_bytes=100)
    stack.drops.upload("capture/big.eml", vendor_eml(4))
    task = intake.receive_drop("capture/big.eml", drops=stack.drops, listing_queue=stack.listing,
                               clock=lambda: stack.now)
    assert task is not None
    report = intake.import_drop(task, stack.stores, clock=lambda: stack.now, limits=small)
    assert report is not None and report["code"] == "drop_too_big"


def test_a_stale_mismatch_replayed_after_the_vendor_delivered_again_hands_nothing_off_twice(stack):
    emls = {"msg-1.eml": vendor_eml(1)}
    stack.deliver(zip_bytes({**emls, "batch.mf": manifest(2, *emls)}))
    stack.deliver(zip_bytes({**emls, "batch.mf": manifest(1, *emls)}))  # the vendor's corrected delivery
    assert len(stack.items.messages) == 1
    queues = PoisonQueues([stack.poison], {"listing": stack.listing, "items": stack.items})
    queues.replay(lambda e: True, accept_mismatch=True)
    assert stack.judge(EmlDropTask.model_validate(stack.listing.messages.pop())) is None
    assert len(stack.items.messages) == 1 and len(stack.ledger.recent_windows(5)) == 1


def test_a_resumed_hand_off_gives_each_row_the_key_it_was_listed_under(stack):
    corrected = vendor_eml(1).replace(b"Message number 1", b"Message number 1, corrected")
    emls = {"a.eml": vendor_eml(1), "b.eml": corrected}
    stack.listing = MemoryQueue("listing", fail_after=1)  # the report task cannot be queued: the task fails
    stack.rewire()
    stack.drops.upload(DROP, zip_bytes({**emls, "batch.mf": manifest(2, *emls)}))
    task = intake.receive_drop(DROP, drops=stack.drops, listing_queue=stack.listing, clock=lambda: stack.now)
    assert task is not None
    with pytest.raises(ConnectionError):
        stack.judge(task)
    stack.listing = MemoryQueue("listing")
    stack.rewire()
    report = stack.judge(task)  # the retry: both pages were listed, their keys come from the ledger
    assert report is not None and report["items"][1]["record_key"].startswith(report["items"][0]["record_key"] + ".")
    assert [r.outcome for r in stack.import_items()] == [RecordOutcome.IMPORTED] * 2
    finished = stack.finish_report()
    assert finished is not None and finished["status"] == "done" and finished["imported"] == 2


def test_what_a_mailbox_raises_keeps_its_meaning_and_is_not_taken_for_a_broken_eml(stack):
    class Broken(MemoryMailboxes):
        def write(self, mailbox, item, *, check_existing=True):
            raise ValueError("a bug in a writer")

    importer = EmlImporter(MailboxMapper(SetDirectory(ALICE), StaticMapping()), Broken(),
                           max_item_bytes=10 * 1024 * 1024)
    with pytest.raises(ValueError, match="a bug in a writer"):
        importer.import_eml(vendor_eml(1), file_name="d.zip/1.eml")
