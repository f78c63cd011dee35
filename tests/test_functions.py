"""Each registered function called directly (``.build().get_user_function()``), against Azurite,
the local TeleMessage and .eml mailboxes, as the Functions host would call it."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

import function_app
from shared.domain.errors import PoisonReason, TransientError
from shared.domain.ledger import RecordOutcome
from shared.domain.records import record_key
from shared.domain.tasks import ItemTask, ListingTask, read_poison_queue_message
from shared.domain.window import Window
from shared.functions import items, listing, schedule, status
from shared.local.host_runner.functions import registered_functions
from shared.local.host_runner.runner import HostRunner
from tests.builders import WINDOW_ID, record
from tests.conftest import fast_host_json

pytestmark = pytest.mark.integration


def receive_all(queue) -> list[str]:
    """Take every message off one of our queues (through its base64 policy), as text."""
    return [message.content for message in take_all(queue)]


def take_all(queue) -> list:
    taken = []
    while batch := list(queue.client.receive_messages(messages_per_page=32, max_messages=32)):
        for message in batch:
            taken.append(message)
            queue.client.delete_message(message)
    return taken


def queue_message(body: str, dequeue_count: int = 1) -> QueueMessage:
    return QueueMessage(id=str(uuid.uuid4()), body=body.encode(), dequeue_count=dequeue_count)


def poison_messages(container):
    return [read_poison_queue_message(m.content, inserted_at=m.inserted_on, dequeue_count=m.dequeue_count)
            for m in take_all(container.items_poison_queue)]


def test_function_app_registers_the_ten_functions_with_their_triggers():
    functions = {f.get_function_name(): f for f in registered_functions(function_app.app)}
    assert set(functions) == {
        "schedule_archive_window", "list_archive_slice", "import_archive_item", "compose_transcripts", "archive_status",
        "archive_report", "whatsapp_webhook", "whatsapp_outbound", "chat_export_blob", "eml_drop_blob",
    }
    chat_exports = json.loads(functions["chat_export_blob"].get_function_json())["bindings"][0]
    # Flex Consumption has no polling blob trigger: Event Grid must deliver the uploads.
    assert chat_exports["type"] == "blobTrigger" and chat_exports["source"] == "EventGrid"
    assert chat_exports["path"] == "chat-exports/{name}" and chat_exports["connection"] == "AzureWebJobsStorage"
    drops = json.loads(functions["eml_drop_blob"].get_function_json())["bindings"][0]
    # The vendor's drops are in the SFTP account, reached through a connection of its own.
    assert (drops["type"], drops["source"], drops["path"], drops["connection"]) == (
        "blobTrigger", "EventGrid", "eml-drops/{name}", "EmlDrops")
    outbound = json.loads(functions["whatsapp_outbound"].get_function_json())["bindings"][0]
    # The firm's own application posts here: a function key, unlike Meta's webhook.
    assert (outbound["authLevel"], outbound["methods"], outbound["route"]) == ("FUNCTION", ["POST"],
                                                                              "whatsapp/outbound")
    webhook = json.loads(functions["whatsapp_webhook"].get_function_json())["bindings"][0]
    # Meta cannot send a function key: the body's signature is the authentication.
    assert (webhook["authLevel"], webhook["methods"], webhook["route"]) == ("ANONYMOUS", ["GET", "POST"],
                                                                            "whatsapp/webhook")
    timer = json.loads(functions["schedule_archive_window"].get_function_json())["bindings"][0]
    assert timer["schedule"] == "%ARCHIVE_SCHEDULE%" and timer["runOnStartup"] is False
    queues = {name: json.loads(functions[name].get_function_json())["bindings"][0]["queueName"]
              for name in ("list_archive_slice", "import_archive_item", "compose_transcripts")}
    assert queues == {
        "list_archive_slice": "listing", "import_archive_item": "items", "compose_transcripts": "transcripts",
    }
    for name, route in (("archive_status", "status"), ("archive_report", "report")):
        http = json.loads(functions[name].get_function_json())["bindings"][0]
        assert http["authLevel"] == "FUNCTION" and http["methods"] == ["GET"] and http["route"] == route


def test_timer_hands_the_last_24_hours_off_as_hourly_slices_then_advances_the_watermark(local_app):
    container = local_app.container
    schedule.schedule_archive_window.build().get_user_function()(TimerRequest(past_due=True))
    tasks = [ListingTask.from_text(body) for body in receive_all(container.listing_queue)]
    assert len(tasks) == 24
    watermark, _ = container.watermarks.read()
    assert watermark.position == max(t.slice_end for t in tasks)
    assert watermark.position - min(t.slice_start for t in tasks) == timedelta(hours=24)
    # A second tick in the same minute finds nothing new and enqueues nothing.
    schedule.schedule_archive_window.build().get_user_function()(TimerRequest())
    assert receive_all(container.listing_queue) == []


def test_listing_stores_claim_checks_queues_one_item_per_record_then_the_next_page(local_app, traffic, monkeypatch):
    monkeypatch.setattr(local_app.container.settings, "telemessage_page_size", 25)
    container = local_app.container
    task = ListingTask.first_page(WINDOW_ID, traffic.window)
    listing.list_archive_slice.build().get_user_function()(queue_message(task.to_text()))

    item_tasks = [ItemTask.from_text(body) for body in receive_all(container.items_queue)]
    assert len(item_tasks) == 25
    first = json.loads(container.records.get(item_tasks[0].record_ref))
    assert first["messageId"] == item_tasks[0].message_id
    assert item_tasks[0].record_key == record_key(first["messageId"])
    [continuation] = [ListingTask.from_text(b) for b in receive_all(container.listing_queue)]
    assert continuation.page == 1 and continuation.page_token
    assert [p.page for p in container.ledger.pages(WINDOW_ID)] == [0]


def test_a_listing_page_the_source_throttles_for_long_waits_on_the_queue_not_in_a_worker(
    local_app, traffic, telemessage,
):
    container = local_app.container
    task = ListingTask.first_page(WINDOW_ID, traffic.window)
    telemessage.faults.fail_next("/api/v1/archive/items", 429, retry_after=120)
    # No exception: none of the host's few retries is spent on a two-minute throttle.
    listing.list_archive_slice.build().get_user_function()(queue_message(task.to_text()))

    assert receive_all(container.items_queue) == [] and container.ledger.pages(WINDOW_ID) == []
    # Handed back, invisible until the source's two minutes are over, counted as a deferral.
    assert container.listing_queue.client.get_queue_properties().approximate_message_count == 1
    assert receive_all(container.listing_queue) == []
    # A throttle that never ends is left to the host's retries and poison, after the deferrals run out.
    from shared.service.deferral import MAX_DEFERRALS

    telemessage.faults.fail_next("/api/v1/archive/items", 429, retry_after=120)
    worn = task.model_copy(update={"deferrals": MAX_DEFERRALS})
    with pytest.raises(TransientError):
        listing.list_archive_slice.build().get_user_function()(queue_message(worn.to_text()))


def put_record(container, data: dict | bytes, window_id: str = WINDOW_ID) -> ItemTask:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    # A record listed without an id is keyed by its bytes, as the listing does.
    key = record_key(data["messageId"]) if isinstance(data, dict) else "unidentified-" + hashlib.sha256(raw).hexdigest()
    ref = container.records.put(key, raw)
    return ItemTask(window_id=window_id, record_key=key, record_ref=ref,
                    message_id=data.get("messageId") if isinstance(data, dict) else None)


def test_import_writes_the_record_into_the_archive_folder_of_each_mapped_mailbox(local_app, traffic):
    container = local_app.container
    rec = traffic.record("csv_wins")
    task = put_record(container, rec)
    items.import_archive_item.build().get_user_function()(queue_message(task.to_text()))
    [outcome] = container.ledger.outcomes(WINDOW_ID)
    assert outcome.outcome is RecordOutcome.IMPORTED
    for result in outcome.mailboxes:
        folder = local_app.mailbox_dir / result.mailbox / "WhatsApp Archiver"
        assert len(list(folder.glob("*.eml"))) == 1
    # Delivered again (at least once): nothing new is written.
    items.import_archive_item.build().get_user_function()(queue_message(task.to_text(), dequeue_count=2))
    assert container.ledger.outcomes(WINDOW_ID)[1].outcome is RecordOutcome.SKIPPED_DUPLICATE
    assert sum(1 for _ in local_app.mailbox_dir.rglob("*.eml")) == len(outcome.mailboxes)


@pytest.mark.parametrize("case,reason", [
    ("unmapped", PoisonReason.NO_MAPPING),
    ("huge_attachment", PoisonReason.TOO_BIG),
    ("wrong_type", PoisonReason.INVALID_ITEM),
    ("not_json", PoisonReason.INVALID_ITEM),
])
def test_each_permanent_failure_goes_to_poison_at_once_with_its_reason_and_the_record_kept(
    local_app, traffic, case, reason,
):
    container = local_app.container
    if case == "wrong_type":
        data = {**record("bad-1"), "messageTime": "yesterday"}
    elif case == "not_json":
        data = b"\x00\xff not a record"
    else:
        data = traffic.record(case)
    task = put_record(container, data)
    items.import_archive_item.build().get_user_function()(queue_message(task.to_text()))

    [poison] = poison_messages(container)
    assert poison.reason is reason and poison.detail
    assert poison.record_ref == task.record_ref and poison.window_id == WINDOW_ID and poison.failed_at
    assert container.records.get(poison.record_ref)  # the payload is kept for replay
    replay = poison.item_task()  # the same record again, carrying its failure history
    assert replay == task.model_copy(update={"first_failed_at": poison.failed_at, "replays": 1})
    assert poison.first_failed_at == poison.failed_at
    [outcome] = container.ledger.outcomes(WINDOW_ID)
    assert (outcome.outcome, outcome.reason) == (RecordOutcome.POISONED, reason.value)
    assert not local_app.mailbox_dir.exists() or not any(local_app.mailbox_dir.rglob("*.eml"))


def test_status_returns_recent_windows_and_queue_depths_as_json(local_app):
    schedule.schedule_archive_window.build().get_user_function()(TimerRequest())
    request = func.HttpRequest("GET", "/api/status", params={}, body=b"")
    response = status.archive_status.build().get_user_function()(request)
    body = json.loads(response.get_body())
    assert response.status_code == 200 and response.mimetype == "application/json"
    [window] = body["windows"]
    for key in ("listed", "fanout", "imported", "skipped_duplicates", "poisoned", "pending", "reconciled"):
        assert key in window
    assert body["queues"]["listing"] == 24 and body["queues"]["items-poison"] == 0
    bad = status.archive_status.build().get_user_function()(
        func.HttpRequest("GET", "/api/status", params={"windows": "many"}, body=b""))
    assert bad.status_code == 400


def test_transient_failure_is_retried_by_the_runner_then_moved_to_poison_after_max_dequeue_count(
    local_app, traffic, telemessage, tmp_path,
):
    container = local_app.container
    rec = traffic.record("large_attachment")  # its media must be downloaded from TeleMessage
    task = put_record(container, rec)
    telemessage.faults.fail_next("/api/v1/archive/attachments/", 503, times=10_000)
    with HostRunner(function_app.app, host_json=fast_host_json(tmp_path, max_dequeue_count=3),
                    connection_settings={"AzureWebJobsStorage": local_app.env["AzureWebJobsStorage"]},
                    settings=local_app.env) as runner:
        runner.send_message("items", task.to_text())
        runner.drain(timeout=60)
        assert runner.stats["failed"] == 3 and runner.stats["poisoned"] == 1
    # The host moved it: no code of ours ran. The next timer run (or `status`) accounts it, once.
    from shared.service.poison import account_moved_items

    assert account_moved_items(container.poison_queues(), container.ledger) == 1
    assert account_moved_items(container.poison_queues(), container.ledger) == 0
    [outcome] = container.ledger.outcomes(WINDOW_ID)
    assert (outcome.record_key, outcome.outcome, outcome.reason) == (
        task.record_key, RecordOutcome.POISONED, "retries_exhausted")
    [poison] = poison_messages(container)  # still there, waiting for a replay
    assert poison.reason is PoisonReason.RETRIES_EXHAUSTED
    assert poison.item_task() == task.model_copy(update={"first_failed_at": poison.failed_at, "replays": 1})
    assert poison.attempts >= 1


def test_slices_and_window_ids_are_consistent(local_app):
    schedule.schedule_archive_window.build().get_user_function()(TimerRequest())
    [info] = local_app.container.ledger.recent_windows(5)
    tasks = [ListingTask.from_text(b) for b in receive_all(local_app.container.listing_queue)]
    assert {t.window_id for t in tasks} == {info.window_id}
    assert Window(min(t.slice_start for t in tasks), max(t.slice_end for t in tasks)) == info.window
