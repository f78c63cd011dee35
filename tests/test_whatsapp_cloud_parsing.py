"""WhatsApp Business Platform webhook bodies become canonical archive records (issue 15): every
message type one record that validates and renders in a reviewer's words; echoes from the
employee; edits and revokes pointing at the original; statuses kept as evidence, not items;
anything malformed a problem naming its JSON path; unknown things kept; redelivery idempotent."""

from __future__ import annotations

import base64
import copy
import json
from datetime import timedelta
from email import message_from_bytes
from email.policy import default
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.bidi import isolate, ltr, strip_isolates
from shared.domain.records import ArchiveRecord, record_key
from shared.domain.rendered import RenderedItem
from shared.domain.rendering import render
from shared.domain.transcript_rendering import TranscriptEntry, render_transcript
from shared.domain.transcripts import Bucket, StagedRecord, TranscriptPart
from shared.domain.whatsapp_cloud import BODY, RAW_MESSAGE_FILE, WebhookBatch, parse_webhook
from shared.service.mapping import MailboxMapper
from tests import whatsapp_cloud_builders as wa
from tests.builders import DIRECTORY, MAPPING_CSV
from tests.builders import record as telemessage_record
from tests.fakes import SetDirectory, StaticMapping

EMPLOYEE = "+447700900002"
CUSTOMER = "+12025550143"
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse(raw: bytes) -> WebhookBatch:
    return parse_webhook(raw, received_at=wa.RECEIVED_AT)


def only_record(raw: bytes) -> dict[str, Any]:
    batch = parse(raw)
    assert not batch.problems, batch.problems
    assert len(batch.records) == 1, batch.records
    return batch.records[0]


def rendered(data: dict[str, Any], replied_text: str | None = None) -> RenderedItem:
    """As the importer renders: inline content decoded, media announced by id not yet fetched."""
    record = ArchiveRecord.model_validate(data)
    media = {a.attachment_id: base64.b64decode(a.content) if a.content else None for a in record.attachments}
    return render(record, media, default_region="GB", replied_text=replied_text)


# --- Every message type ---------------------------------------------------------------------------

TYPES: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    ("text", wa.message("text", wa.text()), "TEXT", ("WhatsApp message from", "Please send the term sheet.")),
    ("image", wa.message("image", wa.media("9001", "image/jpeg", caption="Signed page 3")), "IMAGE",
     ("WhatsApp image from", "Signed page 3", "image-9001.jpg (image/jpeg, size not declared", "MEDIA NOT CAPTURED")),
    ("video", wa.message("video", wa.media("9002", "video/mp4")), "VIDEO", ("WhatsApp video from", "video-9002.mp4")),
    ("audio", wa.message("audio", wa.media("9003", "audio/mpeg", voice=False)), "AUDIO",
     ("WhatsApp audio from", "audio-9003.mp3")),
    ("voice note", wa.message("audio", wa.media("9004", "audio/ogg; codecs=opus", voice=True)), "VOICE_NOTE",
     ("WhatsApp voice note from", "Type: voice note", "voice-note-9004.ogg (audio/ogg")),
    ("document", wa.message("document", wa.media("9005", "application/pdf", filename="Term sheet v2.pdf",
                                                  caption="As agreed")), "DOCUMENT",
     ("WhatsApp document from", "Term sheet v2.pdf (application/pdf", "As agreed")),
    ("sticker", wa.message("sticker", wa.media("9006", "image/webp", animated=False)), "STICKER",
     ("WhatsApp sticker from", "sticker-9006.webp")),
    ("location", wa.message("location", wa.location()), "LOCATION",
     ("Location: Head office", "Address: 1 Strand, London", "Coordinates: 51.507351, -0.127758")),
    ("contacts", wa.message("contacts", [wa.contact_card()]), "CONTACT",
     ("WhatsApp contact card from", "Contact card: Dana Broker – +44 7700 900888, dana@broker.example",
      "Dana Broker.vcf (text/vcard")),
    ("button reply", wa.message("interactive", wa.button_reply()), "INTERACTIVE",
     ("WhatsApp interactive reply from", "Tapped the reply button “Yes, confirm” (id confirm-yes)",
      "interactive.json (application/json")),
    ("list reply", wa.message("interactive", wa.list_reply()), "INTERACTIVE",
     ("Chose the list item “Tuesday 10:00” – Call with the desk (id slot-2)",)),
    ("flow reply", wa.message("interactive", wa.flow_reply()), "INTERACTIVE",
     ("Submitted the form “flow”", "The response JSON is attached.", "flow-response.json (application/json")),
    ("new interactive kind", wa.message("interactive", {"type": "call_permission_reply", "call_permission_reply": [
        {"response": "accept"}], "body": "not an object"}), "INTERACTIVE",
     ("Interactive message (call_permission_reply)", "interactive.json (application/json")),
    ("address reply", wa.message("interactive", wa.flow_reply("address_message", '{"city":"Leeds"}')), "INTERACTIVE",
     ("Submitted an address form",)),
    ("template button", wa.message("button", {"payload": "STOP-PROMOS", "text": "Stop promotions"},
                                   context={"from": wa.BUSINESS, "id": wa.wamid(90)}), "TEMPLATE_REPLY",
     ("WhatsApp template button reply from", "Tapped the template button “Stop promotions” (payload STOP-PROMOS)",
      f"In reply to record: {wa.wamid(90)}")),
    ("reaction", wa.message("reaction", {"message_id": wa.wamid(90), "emoji": "👍"}), "REACTION",
     (f"Reacted 👍 to message {wa.wamid(90)}",)),
    ("reaction removed", wa.message("reaction", {"message_id": wa.wamid(90)}), "REACTION",
     (f"Removed a reaction from {wa.wamid(90)}",)),
    ("order", wa.message("order", wa.order()), "ORDER",
     ("WhatsApp order from", "Order from catalogue cat-900, 2 item(s):", "- 2 × sku-1 at 12.5 EUR",
      "- 1 × sku-2 at 0.1 EUR", "Total: 25.1 EUR", "Deliver by Friday")),
    ("number change", wa.message("system", {"body": "Carla changed her number", "type": "user_changed_number",
                                            "wa_id": "12025550199"}), "SYSTEM",
     ("WhatsApp system message from", "System message: Phone number changed", "Carla changed her number")),
    ("user id change", wa.message("system", {"body": "User id changed", "type": "user_changed_user_id"}), "SYSTEM",
     ("System message: WhatsApp user id changed",)),
    ("unsupported", wa.message("unsupported", {"type": "poll"}, errors=[wa.meta_error()]), "UNSUPPORTED",
     ("WhatsApp unsupported message from", "did not deliver this message's content (type: poll)",
      "WhatsApp reported error 131051: Message type unknown", f"{RAW_MESSAGE_FILE} (application/json")),
    ("unknown type", wa.message("hologram", {"frames": 3}), "UNSUPPORTED",
     ("This message is of a kind the archive does not read yet (type: hologram).",
      "The message as received is attached as JSON.")),
    ("old unknown", wa.message("unknown", None, errors=[wa.meta_error()]), "UNSUPPORTED",
     ("did not deliver this message's content.",)),
]


@pytest.mark.parametrize(("kind", "item", "message_type", "phrases"), TYPES, ids=[t[0] for t in TYPES])
def test_every_message_type_becomes_one_record_that_validates_and_renders_in_a_reviewers_words(
    kind, item, message_type, phrases,
):
    data = only_record(wa.inbound(item))
    record = ArchiveRecord.model_validate(data)
    assert record.message_type == message_type
    assert (record.source, record.source_type, record.message_id) == ("whatsapp-cloud", "WHATSAPP_BUSINESS_PLATFORM",
                                                                     item["id"])
    assert record.message_time == int(item["timestamp"]) * 1000
    assert record.captured_at == wa.RECEIVED_AT.replace(microsecond=250_000)
    item_ = rendered(data)
    text, subject = strip_isolates(item_.text_body), strip_isolates(item_.subject)
    for phrase in phrases:
        assert phrase in text or phrase in subject, (phrase, subject, text)
    mail = message_from_bytes(item_.to_mime_bytes(), policy=default)
    assert mail["X-Archive-Item-Id"] == item["id"]
    assert mail["X-Archive-Source"] == "WHATSAPP_BUSINESS_PLATFORM"
    assert "Source: WhatsApp Business Platform (Meta webhook)" in item_.text_body


def test_inbound_messages_go_from_the_customer_to_the_business_number_which_owns_them():
    record = ArchiveRecord.model_validate(only_record(wa.inbound(wa.message("text", wa.text()))))
    assert record.direction == "INCOMING"
    assert (record.owner.phone, record.owner.phone_number_id) == (EMPLOYEE, wa.PHONE_NUMBER_ID)
    assert record.sender.phone == CUSTOMER and record.sender.display_name == wa.CUSTOMER_NAME
    assert record.sender.wa_id == wa.CUSTOMER
    assert [r.phone for r in record.recipients] == [EMPLOYEE]
    item = rendered(record.model_dump(by_alias=True))
    assert item.sender.display_name == f"{isolate(wa.CUSTOMER_NAME)} ({ltr(CUSTOMER)})"


def test_the_business_is_known_by_its_phone_number_id_when_the_display_number_is_missing():
    raw = wa.body(wa.entry(wa.change(wa.value(messages=[wa.message("text", wa.text())],
                                              meta={"phone_number_id": wa.PHONE_NUMBER_ID}))))
    record = ArchiveRecord.model_validate(only_record(raw))
    assert record.owner.phone is None and record.owner.phone_number_id == wa.PHONE_NUMBER_ID
    assert f"number id {wa.PHONE_NUMBER_ID}" in rendered(record.model_dump(by_alias=True)).recipients[0].display_name


def test_customers_carry_their_user_id_and_username_and_a_username_user_without_a_number_is_still_shown():
    with_number = wa.message("text", wa.text(), from_user_id=wa.CUSTOMER_USER_ID)
    record = ArchiveRecord.model_validate(only_record(wa.inbound(
        with_number, contacts=[wa.contact(user_id=wa.CUSTOMER_USER_ID, username="carla.c")])))
    assert (record.sender.user_id, record.sender.username) == (wa.CUSTOMER_USER_ID, "carla.c")

    no_number = wa.message("text", wa.text(), sender=None, from_user_id=wa.CUSTOMER_USER_ID)
    data = only_record(wa.inbound(no_number, contacts=[wa.contact(None, "Carla", user_id=wa.CUSTOMER_USER_ID,
                                                                  username="carla.c")]))
    record = ArchiveRecord.model_validate(data)
    assert record.sender.phone is None and record.sender.user_id == wa.CUSTOMER_USER_ID
    sender = rendered(data).sender
    assert sender.display_name == f"{isolate('Carla')} ({isolate(f'@carla.c, user id {wa.CUSTOMER_USER_ID}')})"
    assert sender.address.endswith("@whatsapp.invalid")
    assert rendered(data).sender == rendered(only_record(wa.inbound(
        wa.message("text", wa.text("again"), n=2, sender=None, from_user_id=wa.CUSTOMER_USER_ID),
        contacts=[wa.contact(None, "Carla", user_id=wa.CUSTOMER_USER_ID, username="carla.c")]))).sender


def test_the_business_number_maps_to_the_employee_through_the_phone_csv_and_customers_stay_external():
    record = ArchiveRecord.model_validate(only_record(wa.inbound(wa.message("text", wa.text()))))
    mapper = MailboxMapper(SetDirectory(*DIRECTORY), StaticMapping(MAPPING_CSV))
    assert [m.address for m in mapper.map_record(record)] == ["bob@contoso.example"]


def test_each_message_finds_its_own_customer_among_the_changes_contacts():
    raw = wa.inbound(
        wa.message("text", wa.text("one"), n=1),
        wa.message("text", wa.text("two"), n=2, sender=wa.OTHER_CUSTOMER),
        contacts=[wa.contact(), wa.contact(wa.OTHER_CUSTOMER, "Olu Other")],
    )
    names = [ArchiveRecord.model_validate(r).sender.display_name for r in parse(raw).records]
    assert names == [wa.CUSTOMER_NAME, "Olu Other"]


# --- Media ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("digest", [wa.PICTURE_SHA256_HEX, wa.PICTURE_SHA256_HEX.upper(), wa.PICTURE_SHA256_BASE64,
                                    wa.PICTURE_SHA256_BASE64.rstrip("=").replace("+", "-").replace("/", "_")])
def test_media_is_announced_by_id_without_bytes_and_metas_sha256_is_normalised_to_hex(digest):
    image = wa.media("9001", "image/jpeg", sha256=digest, url="https://lookaside.fbsbx.com/x?mid=9001")
    record = ArchiveRecord.model_validate(only_record(wa.inbound(wa.message("image", image))))
    (attachment,) = record.attachments
    assert attachment.sha256 == wa.PICTURE_SHA256_HEX
    assert (attachment.attachment_id, attachment.media_id, attachment.content) == ("9001", "9001", None)
    assert (attachment.size, attachment.size_known, attachment.content_type) == (0, False, "image/jpeg")
    assert attachment.media_url == "https://lookaside.fbsbx.com/x?mid=9001"
    # Once fetched, the bytes are checked against Meta's digest and attached.
    item = render(record, {"9001": wa.PICTURE})
    assert item.attachments[0].content == wa.PICTURE and not item.partially_imported


def test_a_digest_in_neither_encoding_costs_only_the_check_and_is_kept_as_reported():
    image = wa.media("9001", "image/jpeg", sha256="not-a-digest")
    record = ArchiveRecord.model_validate(only_record(wa.inbound(wa.message("image", image))))
    assert record.attachments[0].sha256 is None
    assert record.attachments[0].model_extra["reportedSha256"] == "not-a-digest"


def test_a_document_keeps_its_file_name_and_media_without_one_gets_a_stable_generated_name():
    named = wa.message("document", wa.media("77", "application/pdf", filename="../Q3 results.pdf"))
    unnamed = wa.message("document", wa.media("78", "application/vnd.ms-excel"), n=2)
    strange = wa.message("image", wa.media("79", "image/x-new"), n=3)
    records = [ArchiveRecord.model_validate(r) for r in parse(wa.inbound(named, unnamed, strange)).records]
    assert [r.attachments[0].file_name for r in records] == ["../Q3 results.pdf", "document-78.xls", "image-79.bin"]
    assert rendered(records[0].model_dump(by_alias=True)).attachments[0].file_name == "Q3 results.pdf"


def test_media_meta_could_not_deliver_is_archived_with_its_error_and_no_attachment():
    image = {"mime_type": "image/jpeg", "caption": "Too big"}
    data = only_record(wa.inbound(wa.message("image", image, errors=[wa.meta_error(131052, "Media download error")])))
    record = ArchiveRecord.model_validate(data)
    assert record.attachments == [] and record.platform_errors[0].code == 131052
    assert "WhatsApp reported error 131052: Media download error" in rendered(data).text_body


def test_a_shared_contact_is_attached_as_a_vcard():
    item = rendered(only_record(wa.inbound(wa.message("contacts", [wa.contact_card()]))))
    (card,) = item.attachments
    assert card.content_type == "text/vcard" and b"FN:Dana Broker" in card.content
    assert b"ORG:Broker & Co" in card.content and b"TEL:+44 7700 900888" in card.content


def test_a_flow_reply_attaches_metas_response_json_exactly():
    data = only_record(wa.inbound(wa.message("interactive", wa.flow_reply())))
    assert data["interactive"]["payloadJson"] == wa.FLOW_RESPONSE
    (attachment,) = rendered(data).attachments
    assert attachment.file_name == "flow-response.json" and attachment.content == wa.FLOW_RESPONSE.encode()
    assert "generated from the interactive reply" in rendered(data).text_body


def test_unsupported_and_unknown_types_keep_the_raw_message_as_an_inline_json_attachment():
    item = wa.message("unsupported", {"type": "edit"}, errors=[wa.meta_error()])
    data = only_record(wa.inbound(item))
    (attachment,) = ArchiveRecord.model_validate(data).attachments
    assert attachment.file_name == RAW_MESSAGE_FILE and attachment.content_type == "application/json"
    assert json.loads(base64.b64decode(attachment.content)) == item
    assert data["unsupportedType"] == "edit"
    assert rendered(data).attachments[0].content == base64.b64decode(attachment.content)


# --- Context: replies, forwards, ads, groups -------------------------------------------------------

def test_a_reply_points_at_the_quoted_message_and_quotes_it_when_it_is_archived():
    item = wa.message("text", wa.text("Yes"), context={"from": wa.BUSINESS, "id": wa.wamid(50)})
    data = only_record(wa.inbound(item))
    assert data["replyToMessageId"] == wa.wamid(50)
    body = rendered(data, replied_text="Here is the term sheet").text_body
    assert "In reply to: “Here is the term sheet”" in strip_isolates(body)


@pytest.mark.parametrize(("context", "fact"), [({"forwarded": True}, "Forwarded: yes"),
                                               ({"frequently_forwarded": True}, "Forwarded: many times")])
def test_forwarded_flags_are_shown(context, fact):
    data = only_record(wa.inbound(wa.message("image", wa.media("9001", "image/jpeg"), context=context)))
    assert ArchiveRecord.model_validate(data).forwarded
    assert fact in rendered(data).text_body


def test_an_ad_referral_and_a_catalogue_question_are_shown():
    item = wa.message("text", wa.text("Is this still available?"), referral=wa.referral(),
                      context={"from": wa.BUSINESS, "id": wa.wamid(60),
                               "referred_product": {"catalog_id": "cat-900", "product_retailer_id": "sku-1"}})
    data = only_record(wa.inbound(item))
    assert data["referral"]["ctwaClid"] == "clid-abc" and data["referral"]["welcomeText"] == "Hi! How can we help?"
    body = strip_isolates(rendered(data).text_body)
    for phrase in ("Started from a Click-to-WhatsApp ad: “Spring offer”", "Open an account in minutes",
                   "Ad link: https://fb.example/ad/123", "Ad id: ad-123", "Asked about catalogue item sku-1 "
                   "(catalogue cat-900)"):
        assert phrase in body


def test_a_group_message_carries_the_group_id():
    data = only_record(wa.inbound(wa.message("text", wa.text(), group_id="GRP.4401")))
    record = ArchiveRecord.model_validate(data)
    assert record.group_message and record.dialog_group_id == "GRP.4401"
    assert "Chat id: GRP.4401" in rendered(data).text_body


# --- Coexistence ----------------------------------------------------------------------------------

def test_echoes_are_what_the_employee_sent_from_the_business_app():
    data = only_record(wa.echoes(wa.echo("text", wa.text("Sent from my phone app"))))
    record = ArchiveRecord.model_validate(data)
    assert record.direction == "OUTGOING"
    assert record.sender.phone == EMPLOYEE and record.owner.phone == EMPLOYEE
    assert [r.phone for r in record.recipients] == [CUSTOMER]
    assert record.recipients[0].display_name == wa.CUSTOMER_NAME
    item = rendered(data)
    assert item.subject.startswith(
        f"WhatsApp message from ({ltr(EMPLOYEE)}) to {isolate(wa.CUSTOMER_NAME)} ({ltr(CUSTOMER)})")
    assert data["whatsappCloud"]["field"] == "smb_message_echoes"


def test_an_echoed_interactive_message_is_said_as_sent_with_its_json_attached():
    sent = {"type": "button", "body": {"text": "Shall we proceed?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}}
    data = only_record(wa.echoes(wa.echo("interactive", sent)))
    item = rendered(data)
    assert item.subject.startswith("WhatsApp interactive message from")
    assert "Interactive message (button)" in item.text_body and "Shall we proceed?" in item.text_body
    assert json.loads(item.attachments[0].content) == sent


def test_edits_and_revokes_are_records_of_their_own_pointing_at_the_original():
    original = wa.wamid(1)
    edit = wa.message("edit", {"original_message_id": original, "message": {"type": "text", "text": wa.text("Fixed")}},
                      n=2)
    revoke = wa.message("revoke", {"original_message_id": original}, n=3)
    edited, deleted = parse(wa.inbound(edit, revoke)).records
    assert (edited["messageId"], edited["event"], edited["relatedMessageId"]) == (wa.wamid(2), "EDITED", original)
    assert (deleted["messageId"], deleted["event"], deleted["relatedMessageId"]) == (wa.wamid(3), "DELETED", original)
    assert deleted["deletion"] == {"scope": "FOR_EVERYONE", "deletedTime": (wa.T0 + 3) * 1000}
    edited_item, deleted_item = rendered(edited), rendered(deleted)
    assert edited_item.subject.startswith("EDITED – WhatsApp message from")
    assert f"The message {original} was edited. New text:\nFixed" in edited_item.text_body
    assert deleted_item.subject.startswith("DELETED – WhatsApp message from")
    assert f"The message {original} was deleted for everyone at 2026-03-02T09:30:03.000Z." in deleted_item.text_body


def test_an_edited_caption_keeps_the_media_it_belongs_to():
    edit = wa.message("edit", {"original_message_id": wa.wamid(1), "message": {
        "type": "image", "image": wa.media("9001", "image/jpeg", caption="New caption")}}, n=2)
    record = ArchiveRecord.model_validate(only_record(wa.inbound(edit)))
    assert (record.event, record.message_type, record.text_content) == ("EDITED", "IMAGE", "New caption")
    assert record.attachments[0].media_id == "9001"


def test_an_employee_revoke_echo_is_from_the_employee():
    data = only_record(wa.echoes(wa.echo("revoke", {"original_message_id": wa.wamid(1)}, n=4)))
    record = ArchiveRecord.model_validate(data)
    assert (record.event, record.sender.phone, record.related_message_id) == ("DELETED", EMPLOYEE, wa.wamid(1))


def test_history_backfill_chunks_become_records_in_both_directions():
    from_customer = {"from": wa.CUSTOMER, "id": wa.wamid(11), "timestamp": str(wa.T0 - 86_400), "type": "text",
                     "text": wa.text("Old question"), "history_context": {"status": "READ"}}
    from_business = {"from": wa.BUSINESS, "to": wa.CUSTOMER, "id": wa.wamid(12), "timestamp": str(wa.T0 - 86_000),
                     "type": "text", "text": wa.text("Old answer"), "history_context": {"status": "DELIVERED"}}
    photo = {"from": wa.CUSTOMER, "id": wa.wamid(13), "timestamp": str(wa.T0 - 85_000), "type": "media_placeholder"}
    batch = parse(wa.history(wa.history_chunk(wa.thread(wa.CUSTOMER, from_customer, from_business, photo))))
    assert not batch.problems
    records = [ArchiveRecord.model_validate(r) for r in batch.records]
    assert [(r.direction, r.sender.phone, r.recipients[0].phone) for r in records] == [
        ("INCOMING", CUSTOMER, EMPLOYEE), ("OUTGOING", EMPLOYEE, CUSTOMER), ("INCOMING", CUSTOMER, EMPLOYEE)]
    assert records[2].message_type == "MEDIA_PLACEHOLDER"
    assert "WhatsApp sends the file itself only for the 14 days before onboarding" in rendered(
        batch.records[2]).text_body
    # The file comes later under the same wamid: the placeholder's own id keeps it from being taken
    # for a duplicate of the placeholder (and so never archived).
    assert records[2].message_id == f"{wa.wamid(13)}:media_placeholder"
    assert records[2].related_message_id == wa.wamid(13)
    asset = wa.inbound(wa.message("image", wa.media("hist-1", "image/jpeg"), n=13), contacts=[wa.contact()])
    [file] = parse(asset).messages
    assert file.message_id == wa.wamid(13) and file.key != batch.messages[2].key
    assert f"record {wa.wamid(13)}" in rendered(batch.records[2]).text_body
    assert batch.records[0]["whatsappCloud"]["historyChunk"] == {"phase": 1, "chunk_order": 1, "progress": 40}
    assert batch.messages[1].path == "entry[0].changes[0].value.history[0].threads[0].messages[1]"


def test_history_sharing_declined_is_a_notice():
    chunk = {"metadata": {"phase": 0, "chunk_order": 1, "progress": 100},
             "errors": [{"code": 2593109, "title": "History sharing declined"}]}
    batch = parse(wa.history(chunk))
    assert not batch.records and not batch.problems
    assert [(n.kind, n.value["code"]) for n in batch.notices] == [("history-error", 2593109)]


# --- Batching -------------------------------------------------------------------------------------

def test_many_entries_changes_and_messages_all_become_records_in_body_order():
    first = wa.change(wa.value(messages=[wa.message("text", wa.text(str(n)), n=n) for n in (1, 2, 3)]))
    second = wa.change(wa.value(messages=[wa.message("text", wa.text("4"), n=4)], statuses=[wa.status(90, "read")]))
    echoes = wa.change(wa.value(echoes=[wa.echo("text", wa.text("5"), n=5)], contacts=[wa.contact()]),
                       field="smb_message_echoes")
    other_number = wa.change(wa.value(messages=[wa.message("text", wa.text("6"), n=6)],
                                      meta=wa.metadata("447700900003", "310000000000999")))
    batch = parse(wa.body(wa.entry(first, second), wa.entry(echoes, other_number, waba_id="420000000000333")))
    assert [r["textContent"] for r in batch.records] == ["1", "2", "3", "4", "5", "6"]
    assert [m.path for m in batch.messages] == [
        "entry[0].changes[0].value.messages[0]", "entry[0].changes[0].value.messages[1]",
        "entry[0].changes[0].value.messages[2]", "entry[0].changes[1].value.messages[0]",
        "entry[1].changes[0].value.message_echoes[0]", "entry[1].changes[1].value.messages[0]"]
    assert batch.records[5]["owner"] == {"phone": "+447700900003", "phoneNumberId": "310000000000999"}
    assert batch.records[5]["whatsappCloud"]["wabaId"] == "420000000000333"
    assert batch.status_counts == {"read": 1}


# --- Statuses -------------------------------------------------------------------------------------

def test_statuses_are_evidence_counted_and_never_records():
    failed = wa.status(7, "failed", errors=[{"code": 131049, "title": "Not delivered to maintain ecosystem"}])
    priced = wa.status(5, "delivered", recipient_user_id=wa.CUSTOMER_USER_ID, biz_opaque_callback_data="rec-123",
                       pricing={"billable": False, "pricing_model": "PMP", "type": "free_customer_service",
                                "category": "service"},
                       conversation={"id": "conv-1", "origin": {"type": "service"}})
    batch = parse(wa.statuses(wa.status(5, "sent"), priced, wa.status(5, "read"), failed, wa.status(6, "played")))
    assert batch.records == () and batch.problems == ()
    assert batch.status_counts == {"delivered": 1, "failed": 1, "played": 1, "read": 1, "sent": 1}
    (failure,) = batch.failed_statuses
    assert (failure.message_id, failure.errors[0]["code"], failure.recipient_id) == (wa.wamid(7), 131049, wa.CUSTOMER)
    delivered = batch.statuses[1]
    assert delivered.pricing["pricing_model"] == "PMP" and delivered.conversation["id"] == "conv-1"
    assert (delivered.callback_data, delivered.recipient_user_id) == ("rec-123", wa.CUSTOMER_USER_ID)
    assert (delivered.business_phone, delivered.phone_number_id) == (EMPLOYEE, wa.PHONE_NUMBER_ID)
    assert delivered.timestamp == (wa.T0 + 5) * 1000 and delivered.key == (wa.wamid(5), "delivered")


# --- Malformed and unknown ------------------------------------------------------------------------

MALFORMED = [
    ("timestamp", lambda m: m.update(timestamp="yesterday"), "messages[0].timestamp", "not a Unix time in seconds"),
    ("timestamp missing", lambda m: m.pop("timestamp"), "messages[0].timestamp", "missing"),
    ("id", lambda m: m.pop("id"), "messages[0].id", "missing"),
    ("id too long", lambda m: m.update(id="w" * 257), "messages[0].id", "not an id of 1 to 256 characters"),
    ("type", lambda m: m.update(type=7), "messages[0].type", "not a string"),
    ("text body", lambda m: m.update(text={"body": 42}), "messages[0].text.body", "not a string"),
    ("text object", lambda m: m.update(text="hello"), "messages[0].text", "not an object"),
    ("latitude", lambda m: m.update(type="location", location=wa.location(latitude=123.0)),
     "messages[0].location.latitude", "not a number from -90 to 90"),
    ("reaction target", lambda m: m.update(type="reaction", reaction={"emoji": "👍"}),
     "messages[0].reaction.message_id", "missing"),
    ("contacts", lambda m: m.update(type="contacts", contacts={"name": {}}), "messages[0].contacts", "not an array"),
    ("forwarded", lambda m: m.update(context={"forwarded": "yes"}), "messages[0].context.forwarded",
     "not true or false"),
    ("customer", lambda m: m.pop("from"), "messages[0].from", "missing, and the customer has no user id either"),
    ("order quantity", lambda m: m.update(type="order", order={"product_items": [{"quantity": -1}]}),
     "messages[0].order.product_items[0].quantity", "not a number from 0 to inf"),
    ("edit in edit", lambda m: m.update(type="edit", edit={"original_message_id": "w", "message": {"type": "edit"}}),
     "messages[0].edit.message.type", "an edit can only hold a message, not another edit or revoke"),
]


@pytest.mark.parametrize(("field", "change", "path", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_field_makes_its_message_a_problem_naming_the_path_and_keeping_the_fragment(
    field, change, path, reason,
):
    broken = wa.message("text", wa.text())
    change(broken)
    good = wa.message("text", wa.text("still here"), n=2)
    # Two customers in the change, so a message without a sender cannot be given the only one.
    batch = parse(wa.inbound(broken, good, contacts=[wa.contact(), wa.contact(wa.OTHER_CUSTOMER, "Olu")]))
    (problem,) = batch.problems
    assert problem.path == f"entry[0].changes[0].value.{path}"
    assert problem.item == "entry[0].changes[0].value.messages[0]"
    assert problem.reason == reason
    assert problem.fragment == broken
    assert [r["textContent"] for r in batch.records] == ["still here"]  # the neighbour is not lost


def test_a_problem_never_says_the_value_it_could_not_read():
    secret = "Zq7-SECRET-value"
    batch = parse(wa.inbound(wa.message("text", {"body": {"x": secret}}), wa.message("text", wa.text(), n=2,
                                                                                    timestamp=secret)))
    assert len(batch.problems) == 2
    assert all(secret not in p.detail for p in batch.problems)
    assert batch.problems[0].message_id == wa.wamid(1)


@pytest.mark.parametrize(("meta", "path"), [
    (None, "entry[0].changes[0].value.metadata"),
    ({"display_phone_number": ""}, "entry[0].changes[0].value.metadata.display_phone_number"),
    ({"display_phone_number": 15550100100}, "entry[0].changes[0].value.metadata.display_phone_number"),
])
def test_without_a_business_number_every_message_of_the_change_is_a_problem_but_receipts_still_count(meta, path):
    value = wa.value(messages=[wa.message("text", wa.text(), n=n) for n in (1, 2)], statuses=[wa.status(3, "sent")])
    if meta is None:
        del value["metadata"]
    else:
        value["metadata"] = meta
    batch = parse(wa.body(wa.entry(wa.change(value))))
    assert [(p.path, p.item) for p in batch.problems] == [
        (path, f"entry[0].changes[0].value.messages[{n}]") for n in (0, 1)]
    assert batch.status_counts == {"sent": 1} and batch.statuses[0].business_phone is None


def test_containers_of_the_wrong_shape_are_problems_at_their_path():
    value = wa.value(messages={"not": "an array"}, statuses=["not an object"])
    batch = parse(wa.body(wa.entry(wa.change(value)), {"changes": "nope"}, "an entry"))
    assert [(p.path, p.reason) for p in batch.problems] == [
        ("entry[0].changes[0].value.messages", "not an array"),
        ("entry[0].changes[0].value.statuses[0]", "not an object"),
        ("entry[1].changes", "not an array"),
        ("entry[2]", "not an object"),
    ]


@pytest.mark.parametrize(("raw", "path", "reason"), [
    (b"", BODY, "the body is not JSON"),
    (b"\xff\xfe not utf-8", BODY, "the body is not JSON"),
    (b"[" * 100_000, BODY, "the body is not JSON"),
    (b"[]", BODY, "the body is not a JSON object"),
    (b"null", BODY, "the body is not a JSON object"),
    (b'{"object":"page","entry":[]}', "object", "not whatsapp_business_account"),
    (b'{"entry":[]}', "object", "missing"),
    (b'{"object":"whatsapp_business_account"}', "entry", "missing"),
    (b'{"object":"whatsapp_business_account","entry":{}}', "entry", "not an array"),
])
def test_a_body_that_is_not_a_whatsapp_envelope_is_one_problem_for_the_whole_body(raw, path, reason):
    batch = parse(raw)
    assert batch.records == () and batch.statuses == ()
    (problem,) = batch.problems
    assert (problem.path, problem.item, problem.reason) == (path, BODY, reason)
    if path == BODY and reason.endswith("not JSON"):
        assert base64.b64decode(problem.fragment["bodyBase64"]) == raw


def test_unknown_fields_are_kept_on_the_record_and_unknown_parts_of_the_body_as_notices():
    item = wa.message("text", wa.text(), futureFlag={"tier": 2}, group_metadata=None)
    item["text"]["preview_hint"] = "new"
    envelope = json.loads(wa.inbound(item, new_value_key=[1]))
    envelope["entry"][0]["changes"].append(wa.change({"state_sync": [{"type": "contact"}]}, field="smb_app_state_sync"))
    envelope["entry"][0]["changes"].append(wa.change({"errors": [{"code": 131000, "title": "Something"}]},
                                                     field="account_alerts"))
    envelope["trace"] = "t-1"
    batch = parse(json.dumps(envelope).encode())
    record = ArchiveRecord.model_validate(batch.records[0])
    kept = record.model_extra["whatsappCloud"]["message"]
    assert kept["futureFlag"] == {"tier": 2} and kept["text"]["preview_hint"] == "new"
    assert [(n.path, n.kind) for n in batch.notices] == [
        ("trace", "unknown-field"),
        ("entry[0].changes[0].value.new_value_key", "unknown-field"),
        ("entry[0].changes[1].value", "change"),
        ("entry[0].changes[2].value.errors[0]", "platform-error"),
    ]
    assert batch.notices[2].value["field"] == "smb_app_state_sync"


# --- Idempotency ----------------------------------------------------------------------------------

def everything() -> bytes:
    """A body with one of every message type, echoes, history and receipts."""
    messages = [{**item, "id": wa.wamid(n), "timestamp": str(wa.T0 + n)} for n, (_, item, _, _) in enumerate(TYPES)]
    return wa.body(wa.entry(
        wa.change(wa.value(messages=messages, statuses=[wa.status(99, "delivered")])),
        wa.change(wa.value(echoes=[wa.echo("text", wa.text("echo"), n=500)], contacts=[wa.contact()]),
                  field="smb_message_echoes"),
        wa.change(wa.value(history=[wa.history_chunk(wa.thread(wa.CUSTOMER, wa.message("text", wa.text(), n=600)))]),
                  field="history"),
    ))


def test_the_same_body_parsed_twice_gives_identical_records_keyed_by_wamid():
    raw = everything()
    first, second = parse(raw), parse(raw)
    assert first == second
    assert len(first.records) == len(TYPES) + 2 and not first.problems
    assert [m.key for m in first.messages] == [record_key(r["messageId"]) for r in first.records]
    assert all(r["messageId"].startswith("wamid.") for r in first.records)


def test_a_redelivery_differs_only_in_when_it_was_captured():
    raw = everything()
    first = parse(raw)
    later = parse_webhook(raw, received_at=wa.RECEIVED_AT + timedelta(days=3))
    assert [m.key for m in later.messages] == [m.key for m in first.messages]
    strip = [{k: v for k, v in r.items() if k != "archivedTime"} for r in first.records]
    assert strip == [{k: v for k, v in r.items() if k != "archivedTime"} for r in later.records]


def test_a_days_transcript_of_business_platform_records_says_each_in_a_reviewers_words():
    batch = parse(wa.inbound(
        wa.message("text", wa.text("Hello"), n=1),
        wa.message("audio", wa.media("9004", "audio/ogg", voice=True), n=2),
        wa.message("system", {"body": "Carla changed her number", "type": "user_changed_number"}, n=3),
        wa.message("interactive", wa.flow_reply(), n=4),
    ))
    records = [ArchiveRecord.model_validate(r) for r in batch.records]
    staged = tuple(StagedRecord(m.key, f"{m.key}.json", "w", r.message_id, r.message_time, (), 0)
                   for m, r in zip(batch.messages, records, strict=True))
    part = TranscriptPart(Bucket(records[0].sent_at.date(), "0" * 32), 1, staged)
    item = render_transcript(part, [TranscriptEntry(r, {}) for r in records], zone=ZoneInfo("UTC"))
    for phrase in (f"1. 09:30:01 message from {wa.CUSTOMER_NAME} ({CUSTOMER})", "2. 09:30:02 voice note from",
                   "3. 09:30:03 system message from", "System message: Phone number changed",
                   "4. 09:30:04 interactive reply from", "Submitted the form “flow”",
                   "Source: WhatsApp Business Platform (Meta webhook)"):
        assert phrase in strip_isolates(item.text_body), phrase
    assert [a.file_name for a in item.attachments] == ["002-voice-note-9004.ogg", "004-flow-response.json"]


def test_telemessage_records_are_tagged_telemessage_by_default():
    record = ArchiveRecord.model_validate(telemessage_record())
    assert record.source == "telemessage" and record.interactive is None and record.platform_errors == []


# --- Any body -------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=25,
)


@PROPERTY
@given(st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_any_body_never_raises_and_anything_but_an_envelope_is_one_problem(raw):
    batch = parse(raw)
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not (isinstance(value, dict) and value.get("object") == "whatsapp_business_account"):
        assert len(batch.problems) == 1 and batch.problems[0].item == BODY and batch.records == ()


def places(value: Any, at: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place inside a JSON value, as the keys and indexes that lead there."""
    found = [at] if at else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += places(child, (*at, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += places(child, (*at, index))
    return found


DELETE = object()


def replace(value: Any, at: tuple[str | int, ...], new: Any) -> Any:
    """``value`` with the thing ``at`` that place replaced by ``new``, or removed for DELETE."""
    value = copy.deepcopy(value)
    parent = value
    for step in at[:-1]:
        parent = parent[step]
    if new is DELETE:
        del parent[at[-1]]
    else:
        parent[at[-1]] = new
    return value


def message_like(body: Any) -> tuple[set[str], set[str]]:
    """The paths of every message-like object and every receipt of an envelope, found without the
    parser: what the parser must account for, each exactly once."""
    messages: set[str] = set()
    receipts: set[str] = set()

    def array(container: Any, key: str, at: str) -> list[tuple[str, Any]]:
        items = container.get(key) if isinstance(container, dict) else None
        return [(f"{at}.{key}[{i}]", item) for i, item in enumerate(items)] if isinstance(items, list) else []

    for entry_at, entry in array(body, "entry", "") if isinstance(body, dict) else []:
        for change_at, change in array(entry, "changes", entry_at):
            value = change.get("value") if isinstance(change, dict) else None
            at = f"{change_at}.value"
            messages.update(p for key in ("messages", "message_echoes") for p, _ in array(value, key, at))
            receipts.update(p for p, _ in array(value, "statuses", at))
            for chunk_at, chunk in array(value, "history", at):
                for thread_at, thread in array(chunk, "threads", chunk_at):
                    messages.update(p for p, _ in array(thread, "messages", thread_at))
    return {p.lstrip(".") for p in messages}, {p.lstrip(".") for p in receipts}


@PROPERTY
@given(data=st.data())
def test_whatever_is_broken_every_message_like_object_ends_as_one_record_or_one_problem(data):
    body = json.loads(everything())
    for _ in range(data.draw(st.integers(1, 3))):
        if not (inside := places(body)):
            break
        body = replace(body, data.draw(st.sampled_from(inside)), data.draw(st.just(DELETE) | JSON))
    batch = parse(json.dumps(body).encode())
    messages, receipts = message_like(body)
    if body.get("object") != "whatsapp_business_account" or not isinstance(body.get("entry"), list):
        assert len(batch.problems) == 1 and not batch.records
        return
    recorded = [m.path for m in batch.messages]
    counted = [s.path for s in batch.statuses]
    problems = [p.item for p in batch.problems]
    assert sorted(recorded + [p for p in problems if p in messages]) == sorted(messages)
    assert sorted(counted + [p for p in problems if p in receipts]) == sorted(receipts)
    for record in batch.records:
        ArchiveRecord.model_validate(record)
        json.dumps(record)
