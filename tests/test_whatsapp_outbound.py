"""What the business sends through the Cloud API: the firm's application posts each send to
``whatsapp_outbound``; it is archived as the employee's message, its id the wamid, and Meta's later
receipts for it are counted in the day's window, a failed one reported against it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

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
from shared.domain.report import RowOutcome, window_report
from shared.domain.whatsapp_outbound import OutboundRefused, parse_outbound, read_outbound
from shared.service.webhook_intake import receive_outbound
from shared.service.webhook_records import webhook_day
from tests import whatsapp_cloud_builders as wa
from tests.fakes import MemoryQueue, MemoryWebhookBodyStore

SENT_AT = "2026-03-02T09:31:07.125Z"


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
    ({"request": {"to": wa.CUSTOMER, "type": "Text!", "text": {}}}, "request.type"),
    ({"request": {"messaging_product": "sms", "to": wa.CUSTOMER, "text": {"body": "x"}}},
     "request.messaging_product"),
    ({"phone_number_id": None, "display_phone_number": None}, "display_phone_number"),
    ({"phone_number_id": "31/../0"}, "phone_number_id"),
    ({"sent_at": "2026-03-02T09:31:07"}, "sent_at"),  # no zone: which moment it was cannot be known
    ({"sent_at": "1970-01-01T00:00:00Z"}, "sent_at"),
    ({"response": {"messages": [{"id": wa.wamid(99)}]}}, "response.messages[0].id"),
])
def test_a_post_that_cannot_be_archived_is_refused_naming_the_field_and_never_its_value(change, parameter):
    post = send(**change)
    with pytest.raises(OutboundRefused) as refused:
        read_outbound(encoded(post))
    assert refused.value.parameter == parameter
    assert "mapping.csv" not in str(refused.value) and "202-555" not in str(refused.value)
    # A stored body that reads so (it never is: the edge refuses it) becomes a problem, not a crash.
    [problem] = parse_outbound(encoded(post), received_at=wa.RECEIVED_AT).problems
    assert problem.path == refused.value.parameter


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1]", b"{\"wamid\": ", b"[" * 100_000])
def test_a_body_that_is_not_a_json_object_is_refused(raw):
    with pytest.raises(OutboundRefused) as refused:
        read_outbound(raw)
    assert refused.value.parameter == "body"


# --- The edge ---------------------------------------------------------------------------------------

def test_a_send_is_stored_and_handed_off_before_the_200_and_a_refused_one_leaves_nothing():
    store, queue = MemoryWebhookBodyStore(), MemoryQueue("listing")
    answer = receive_outbound(encoded(send()), store=store, handoff=queue, clock=lambda: wa.RECEIVED_AT)
    assert (answer.status, answer.body) == (200, {"messageId": wa.wamid(11), "stored": True})
    [name] = store.bodies
    assert name.startswith("outbound/2026-03-02/") and store.metadata[name]["kind"] == "outbound_send"
    [task] = queue.messages
    assert task["body_ref"] == name and task["kind"] == "webhook_body"

    refused = receive_outbound(encoded(send(wamid="nope")), store=store, handoff=queue, clock=lambda: wa.RECEIVED_AT)
    assert refused.status == 400 and refused.body["parameter"] == "wamid"
    too_big = receive_outbound(b" " * (3 * 1024 * 1024 + 1), store=store, handoff=queue,
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
