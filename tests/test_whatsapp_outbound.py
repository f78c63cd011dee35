"""What the business sends through the Cloud API: the firm's application posts each send to
``whatsapp_outbound``; it is archived as the employee's message, its id the wamid, and Meta's later
receipts for it are counted in the day's window, a failed one reported against it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.domain.bidi import strip_isolates
from shared.domain.ledger import (
    MailboxResult,
    MappingRule,
    OutcomeEntry,
    PageEntry,
    Receipt,
    RecordOutcome,
    summarize,
)
from shared.domain.records import ArchiveRecord, record_key
from shared.domain.rendering import render
from shared.domain.report import RowOutcome, window_report
from shared.domain.whatsapp_outbound import OutboundRefused, check_outbound, parse_outbound, read_outbound
from shared.service.webhook_intake import business_numbers, receive_outbound
from shared.service.webhook_records import webhook_day
from tests import whatsapp_cloud_builders as wa
from tests.fakes import MemoryQueue, MemoryWebhookBodyStore

SENT_AT = "2026-03-02T09:31:07.125Z"
NUMBERS = frozenset({wa.PHONE_NUMBER_ID})


def send(n: int = 11, **overrides):
    """A post as the firm's sending application makes it: Meta's request and response, and the wamid."""
    post = {
        "wamid": wa.wamid(n),
        "phone_number_id": wa.PHONE_NUMBER_ID,
        "display_phone_number": wa.BUSINESS,
        "sent_at": SENT_AT,
        "request": {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+1 202-555-0143",
                    "type": "text", "text": {"body": "Your order is booked."}},
        "response": {"messaging_product": "whatsapp", "contacts": [{"input": "+1 202-555-0143", "wa_id": wa.CUSTOMER}],
                     "messages": [{"id": wa.wamid(n)}]},
    }
    post.update(overrides)
    return post


def encoded(post) -> bytes:
    return json.dumps(post).encode()


# --- The record -----------------------------------------------------------------------------------

def test_a_send_becomes_the_employees_outgoing_message_with_the_wamid_as_its_id():
    [message] = parse_outbound(encoded(send()), received_at=wa.RECEIVED_AT).messages
    record = ArchiveRecord.model_validate(message.record)
    assert message.message_id == wa.wamid(11) and message.key == record_key(wa.wamid(11))
    assert record.direction == "OUTGOING" and record.source == "whatsapp-cloud"
    assert record.sender.phone == f"+{wa.BUSINESS}" and record.sender.phone_number_id == wa.PHONE_NUMBER_ID
    # The customer as Meta knows them (the response's wa_id), not the number as dialled.
    assert [(r.phone, r.wa_id) for r in record.recipients] == [(f"+{wa.CUSTOMER}", wa.CUSTOMER)]
    assert record.text_content == "Your order is booked."
    assert record.message_time == int(datetime(2026, 3, 2, 9, 31, 7, 125_000, tzinfo=UTC).timestamp() * 1000)
    assert message.record["whatsappCloud"]["sendRequest"]["request"]["to"] == "+1 202-555-0143"


def test_a_reply_a_media_send_and_a_group_send_keep_what_the_request_says():
    reply = send(12, request={"to": wa.CUSTOMER, "type": "image", "context": {"message_id": wa.wamid(3)},
                              "image": {"id": "778899", "caption": "the chart"}}, response=None)
    [message] = parse_outbound(encoded(reply), received_at=wa.RECEIVED_AT).messages
    record = ArchiveRecord.model_validate(message.record)
    assert record.reply_to_message_id == wa.wamid(3)
    assert [a.media_id for a in record.attachments] == ["778899"]  # captured from Meta like inbound media
    group = send(13, request={"recipient_type": "group", "to": "GROUP.desk-7", "type": "text",
                              "text": {"body": "Desk update"}}, response=None)
    [message] = parse_outbound(encoded(group), received_at=wa.RECEIVED_AT).messages
    assert message.record["dialogGroupId"] == "GROUP.desk-7" and message.record["groupMessage"] is True


@pytest.mark.parametrize(("change", "parameter"), [
    ({"wamid": "../../mapping/mapping.csv"}, "wamid"),
    ({"wamid": None}, "wamid"),
    ({"request": "text"}, "request"),
    ({"request": {"type": "text", "text": {"body": "x"}}}, "request.to"),
    ({"request": {"to": wa.CUSTOMER, "type": "image"}}, "request.image"),
    ({"request": {"to": wa.CUSTOMER, "type": "contacts", "contacts": {"name": "x"}}}, "request.contacts"),
    ({"request": {"to": wa.CUSTOMER, "type": "Text!", "text": {}}}, "request.type"),
    # Not a send: a revoke, an edit or a system message is never the application's to report.
    ({"request": {"to": wa.CUSTOMER, "type": "revoke", "revoke": {"original_message_id": "wamid.X"}}},
     "request.type"),
    ({"request": {"to": wa.CUSTOMER, "type": "id", "id": {}}}, "request.type"),
    ({"request": {"messaging_product": "sms", "to": wa.CUSTOMER, "text": {"body": "x"}}},
     "request.messaging_product"),
    ({"phone_number_id": None}, "phone_number_id"),
    ({"phone_number_id": "31/../0"}, "phone_number_id"),
    ({"sent_at": "2026-03-02T09:31:07"}, "sent_at"),  # no zone: which moment it was cannot be known
    ({"sent_at": 1772443867}, "sent_at"),  # a bare number: seconds or milliseconds?
    ({"sent_at": "2017-12-31T23:59:59Z"}, "sent_at"),
    ({"sent_at": "9999-01-01T00:00:00Z"}, "sent_at"),
    ({"response": {"messages": [{"id": wa.wamid(99)}]}}, "response.messages[0].id"),
    ({"request": {"to": wa.CUSTOMER, "text": {"wrong": "no body"}}}, "request.text.body"),
    ({"request": {"to": wa.CUSTOMER, "type": "location", "location": {"latitude": 1e999, "longitude": 0}}},
     "request.location.latitude"),
    ({"request": {"to": wa.CUSTOMER, "text": {"body": "x", "deep": json.loads("[" * 40 + "]" * 40)}}}, "body"),
])
def test_a_post_that_cannot_be_archived_is_refused_naming_the_field_and_never_its_value(change, parameter):
    post = send(**change)
    with pytest.raises(OutboundRefused) as refused:
        check_outbound(encoded(post), received_at=wa.RECEIVED_AT, numbers=NUMBERS)
    assert refused.value.parameter == parameter and refused.value.status == 400
    assert "mapping.csv" not in str(refused.value) and "202-555" not in str(refused.value)
    # A stored body that reads so (the edge refuses it, so only an older version could have stored
    # it) becomes a problem, never a crash.
    batch = parse_outbound(encoded(post), received_at=wa.RECEIVED_AT)
    assert len(batch.problems) == 1 and not batch.messages


def test_a_send_through_a_number_that_is_not_the_firms_is_forbidden():
    with pytest.raises(OutboundRefused) as refused:
        check_outbound(encoded(send(phone_number_id="999")), received_at=wa.RECEIVED_AT, numbers=NUMBERS)
    assert (refused.value.status, refused.value.parameter) == (403, "phone_number_id")
    assert business_numbers(" 310000000000111, 42 ,,") == frozenset({"310000000000111", "42"})


def test_every_kind_of_send_the_api_takes_becomes_one_record():
    sends = {
        "contacts": {"type": "contacts", "contacts": [{"name": {"formatted_name": "Desk"}, "phones": [
            {"phone": "+447700900999", "type": "WORK"}]}]},
        "location": {"type": "location", "location": {"latitude": "51.5072", "longitude": "-0.1276", "name": "HQ"}},
        "template": {"type": "template", "template": {"name": "order_confirmation", "language": {"code": "en_GB"},
                     "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-1043"}, {
                         "type": "currency", "currency": {"fallback_value": "£1,250.00", "code": "GBP",
                                                          "amount_1000": 1250000}}]}]}},
        "interactive": {"type": "interactive", "interactive": {"type": "button", "body": {"text": "Confirm?"},
                        "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}}},
        "reaction": {"type": "reaction", "reaction": {"message_id": wa.wamid(3), "emoji": "\U0001f44d"}},
        "document": {"type": "document", "document": {"id": "5566", "filename": "terms.pdf"}},
    }
    kinds = {}
    for n, (name, request) in enumerate(sends.items(), start=30):
        post = send(n, request={"to": wa.CUSTOMER, **request}, response=None)
        check_outbound(encoded(post), received_at=wa.RECEIVED_AT, numbers=NUMBERS)
        [message] = parse_outbound(encoded(post), received_at=wa.RECEIVED_AT).messages
        kinds[name] = ArchiveRecord.model_validate(message.record)
    assert {name: r.message_type for name, r in kinds.items()} == {
        "contacts": "CONTACT", "location": "LOCATION", "template": "TEMPLATE", "interactive": "INTERACTIVE",
        "reaction": "REACTION", "document": "DOCUMENT"}
    assert kinds["location"].location.latitude == 51.5072
    text = strip_isolates(render(kinds["template"], {}).text_body)
    assert "Sent the message template “order_confirmation” (language en_GB)" in text
    assert "body: A-1043 | £1,250.00" in text and "template message" in text
    assert "Provenance: reported by the firm's sending application" in text


def test_a_business_scoped_user_id_is_never_read_as_a_number_and_a_group_never_as_a_person():
    bsuid = send(40, request={"to": "US.13491208655302741918", "text": {"body": "Hi"}}, response=None)
    [message] = parse_outbound(encoded(bsuid), received_at=wa.RECEIVED_AT).messages
    [recipient] = ArchiveRecord.model_validate(message.record).recipients
    assert recipient.phone is None and recipient.user_id == "US.13491208655302741918"
    group = send(41, request={"recipient_type": "group", "to": "GROUP.desk-7", "text": {"body": "Update"}},
                 response=None)
    [message] = parse_outbound(encoded(group), received_at=wa.RECEIVED_AT).messages
    [recipient] = ArchiveRecord.model_validate(message.record).recipients
    assert recipient.phone is None and recipient.display_name == "WhatsApp group"


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1]", b"{\"wamid\": ", b"[" * 100_000])
def test_a_body_that_is_not_a_json_object_is_refused(raw):
    with pytest.raises(OutboundRefused) as refused:
        read_outbound(raw, received_at=wa.RECEIVED_AT)
    assert refused.value.parameter == "body"


# --- The edge ---------------------------------------------------------------------------------------

def test_a_send_is_stored_and_handed_off_before_the_200_and_a_refused_one_leaves_nothing():
    store, queue = MemoryWebhookBodyStore(), MemoryQueue("listing")
    unset = receive_outbound(encoded(send()), numbers=frozenset(), store=store, handoff=queue,
                             clock=lambda: wa.RECEIVED_AT)
    assert unset.status == 503 and not store.bodies  # no numbers configured: it takes nothing
    answer = receive_outbound(encoded(send()), numbers=NUMBERS, store=store, handoff=queue,
                              clock=lambda: wa.RECEIVED_AT)
    assert (answer.status, answer.body) == (200, {"messageId": wa.wamid(11), "stored": True})
    [name] = store.bodies
    assert name.startswith("outbound/2026-03-02/") and store.metadata[name]["kind"] == "outbound_send"
    [task] = queue.messages
    assert task["body_ref"] == name and task["kind"] == "webhook_body"

    refused = receive_outbound(encoded(send(wamid="nope")), numbers=NUMBERS, store=store, handoff=queue,
                               clock=lambda: wa.RECEIVED_AT)
    assert refused.status == 400 and refused.body["parameter"] == "wamid"
    too_big = receive_outbound(b" " * (3 * 1024 * 1024 + 1), numbers=NUMBERS, store=store, handoff=queue,
                               clock=lambda: wa.RECEIVED_AT)
    assert too_big.status == 413
    assert len(store.bodies) == 1 and len(queue.messages) == 1


# --- Receipts in the window ------------------------------------------------------------------------

def receipt(n: int, status: str, *errors: str) -> Receipt:
    return Receipt(wa.wamid(n), status, wa.RECEIVED_AT, "+120*****143", errors)


def test_receipts_are_counted_once_however_often_they_come_and_a_failed_one_is_reported_against_its_message():
    info = webhook_day(wa.RECEIVED_AT)
    archived = OutcomeEntry(record_key(wa.wamid(11)), wa.wamid(11), RecordOutcome.IMPORTED, wa.RECEIVED_AT,
                            mailboxes=(MailboxResult("bob@contoso.example", RecordOutcome.IMPORTED, MappingRule.CSV),))
    pages = [
        PageEntry("outbound-1", 0, (record_key(wa.wamid(11)),), True),
        PageEntry("webhook-a", 0, (), True, (receipt(11, "sent"), receipt(12, "sent"))),
        # Meta's redelivery in another body, and the failure of a message archived on another day.
        PageEntry("webhook-b", 0, (), True, (receipt(11, "sent"), receipt(11, "delivered"),
                                             receipt(12, "failed", "131049 This message was not delivered"))),
        PageEntry("webhook-b", 0, (), True, (receipt(11, "sent"), receipt(11, "delivered"),
                                             receipt(12, "failed", "131049 This message was not delivered"))),
        PageEntry("webhook-c", 0, (), True, (receipt(11, "failed", "131026 Message undeliverable"),)),
    ]
    summary = summarize(info, pages, [archived])
    assert summary.receipts == {"sent": 2, "delivered": 1, "failed": 2}
    assert summary.reconciled  # receipts are evidence, not records: they never hold a window open
    assert summary.to_json()["receipts"] == {"delivered": 1, "failed": 2, "sent": 2}

    report = window_report(summary, problems=(), generated_at=wa.RECEIVED_AT)
    assert report.totals["delivery_receipts"] == {"delivered": 1, "failed": 2, "sent": 2}
    assert report.totals["delivery_failed"] == 2
    failed = {row.record_id: row for row in report.rows if row.outcome is RowOutcome.DELIVERY_FAILED}
    assert set(failed) == {wa.wamid(11), wa.wamid(12)}
    # Joined by wamid: the record key is the message's; the mailbox is named where this window archived it.
    assert failed[wa.wamid(11)].record_key == record_key(wa.wamid(11))
    assert failed[wa.wamid(11)].microsoft_365_user == "bob@contoso.example"
    assert "131026" in failed[wa.wamid(11)].detail and failed[wa.wamid(12)].microsoft_365_user is None
    assert failed[wa.wamid(12)].source_user == "+120*****143"


def test_a_window_without_receipts_reads_as_it_always_did():
    info = webhook_day(wa.RECEIVED_AT)
    summary = summarize(info, [PageEntry("s", 0, (), True)], [])
    assert "receipts" not in summary.to_json()
    report = window_report(summary, problems=(), generated_at=wa.RECEIVED_AT)
    assert "delivery_receipts" not in report.totals
    entry = PageEntry("s", 0, ("k",), True)
    assert entry.to_json() == {"slice": "s", "page": 0, "records": ["k"], "last": True}
    with_receipts = PageEntry("s", 0, ("k",), True, (receipt(1, "read"),))
    assert PageEntry.from_json(json.loads(json.dumps(with_receipts.to_json()))) == with_receipts


def test_a_source_that_raises_leaves_its_body_accounted_as_a_problem_not_a_retry_loop(monkeypatch):
    from shared.domain.ledger import summarize as fold
    from shared.domain.tasks import WebhookBodyTask
    from shared.service import webhook_records
    from tests.fakes import MemoryLedger, MemoryRecordStore

    def broken(raw, *, received_at):
        raise ValueError("a bug that quotes +12025550143")

    monkeypatch.setitem(webhook_records.PUSH_SOURCES, "outbound", broken)
    store, ledger, poison = MemoryWebhookBodyStore(), MemoryLedger(), MemoryQueue("items-poison")
    receive_outbound(encoded(send()), numbers=NUMBERS, store=store, handoff=MemoryQueue("listing"),
                     clock=lambda: wa.RECEIVED_AT)
    [name] = store.bodies
    task = WebhookBodyTask(body_ref=name, source="whatsapp-cloud", received_at=wa.RECEIVED_AT)
    webhook_records.split_webhook_body(
        task, bodies=store, records=MemoryRecordStore(), items_queue=MemoryQueue("items"),
        media_queue=MemoryQueue("listing"), poison_queue=poison, ledger=ledger, clock=lambda: wa.RECEIVED_AT)
    [info] = ledger.recent_windows(1)
    summary = fold(info, ledger.pages(info.window_id), ledger.outcomes(info.window_id))
    assert summary.poisoned == {"invalid_item": 1} and summary.reconciled
    [message] = poison.messages
    assert message["detail"] == "$: could not be read (ValueError)" and store.split_done(name)
