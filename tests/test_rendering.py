from email import message_from_bytes
from email.policy import default
from email.utils import parsedate_to_datetime

from shared.domain.bidi import isolate, ltr, strip_isolates
from shared.domain.records import ArchiveRecord
from shared.domain.rendering import render, sanitize_file_name
from tests.builders import ALICE, BASE_TIME, CUSTOMER, attachment, record


def rendered(rec, media=None):
    return render(ArchiveRecord.model_validate(rec), media or {})


def parse(item):
    return message_from_bytes(item.to_mime_bytes(), policy=default)


def test_eml_carries_the_original_time_ids_and_participants():
    msg = parse(rendered(record("id-42")))
    assert parsedate_to_datetime(msg["Date"]).timestamp() == BASE_TIME / 1000
    assert msg["X-Archive-Item-Id"] == "id-42"
    assert "alice@contoso.example" in msg["From"]
    assert "+12025550143@whatsapp.invalid" in msg["To"]
    assert msg["Subject"].startswith(f"WhatsApp message from {isolate('Alice Smith')} ({ltr('+447700900001')})")


def test_message_text_is_escaped_in_html_and_never_reaches_a_header():
    text = "<script>alert(1)</script> & <b>bold</b>\r\nBcc: victim@example.com"
    item = rendered(record(textContent=text, dialogGroupName="Deal\r\nBcc: x@example.com", groupMessage=True))
    msg = parse(item)
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert msg["Bcc"] is None
    assert "\n" not in msg["Subject"] and "\r" not in item.subject
    assert text.replace("\r\n", "\n").split("\n")[0] in msg.get_body(("plain",)).get_content()


def test_people_without_email_get_a_stable_synthetic_address():
    first = rendered(record(recipients=[CUSTOMER]))
    second = rendered(record("other", recipients=[{**CUSTOMER, "phone": "+1 (202) 555-0143"}]))
    assert first.recipients[0].address == second.recipients[0].address == "+12025550143@whatsapp.invalid"


def test_attachments_carry_bytes_and_a_safe_file_name():
    data = b"\xff\xd8 jpeg bytes"
    photo = attachment("a1", data, fileName="../../etc/pass\x07wd.jpg")
    item = rendered(record(messageType="IMAGE", attachments=[photo]), {"a1": data})
    msg = parse(item)
    parts = list(msg.iter_attachments())
    assert len(parts) == 1
    assert parts[0].get_filename() == "pass wd.jpg"
    assert parts[0].get_content() == data


def test_missing_media_is_said_and_the_item_is_partial():
    item = rendered(record(messageType="VIDEO", attachments=[attachment("v1", b"x" * 10, inline=False)]), {"v1": None})
    assert item.partially_imported
    assert "MEDIA NOT CAPTURED" in item.text_body
    assert list(parse(item).iter_attachments()) == []


def test_deleted_and_edited_records_are_flagged_in_subject():
    deleted = rendered(record("d1", event="DELETED", relatedMessageId="m0",
                              deletion={"scope": "FOR_EVERYONE", "deletedTime": BASE_TIME}))
    edited = rendered(record("e1", event="EDITED", relatedMessageId="m0", textContent="new text"))
    assert deleted.subject.startswith("DELETED – ") and "for everyone" in deleted.text_body
    assert edited.subject.startswith("EDITED – ") and "new text" in edited.text_body


def test_missed_call_subject_and_details():
    item = rendered(record(messageType="CALL", textContent=None, sender=CUSTOMER, recipients=[ALICE],
                           call={"callType": "VOICE", "result": "MISSED", "startTime": BASE_TIME}))
    assert "WhatsApp call (missed) from Carla Customer" in strip_isolates(item.subject)
    assert "Voice call, outgoing, missed" in item.text_body


def test_thread_topic_names_the_chat_exactly_as_before_without_isolates():
    # Outlook threads on Thread-Topic exactly: no isolate, and no space where one was taken out.
    direct = rendered(record(sender=ALICE, recipients=[CUSTOMER]))
    group = rendered(record(groupMessage=True, dialogGroupName="Deal team"))
    assert direct.conversation_topic == "WhatsApp: Carla Customer (+12025550143)"
    assert group.conversation_topic == "WhatsApp: Deal team (group)"


def test_long_subjects_are_shortened_cleanly():
    item = rendered(record(groupMessage=True, dialogGroupName="word " * 100))
    assert len(item.subject) <= 200 and strip_isolates(item.subject).endswith("…")


def test_empty_or_hidden_file_names_get_a_generated_one():
    assert sanitize_file_name("", "application/pdf", 0) == "attachment-1.pdf"
    assert sanitize_file_name("...", None, 2) == "attachment-3.bin"


def test_contact_cards_are_listed_and_attached_as_vcf_with_text_escaped():
    card = {"displayName": "Dana; Ops, Team\nLead", "phones": ["+447700900123"], "emails": ["dana@example.com"],
            "organization": "Contoso"}
    item = rendered(record(messageType="CONTACT", textContent=None, contacts=[card]))
    msg = parse(item)
    [part] = list(msg.iter_attachments())
    assert part.get_content_type() == "text/vcard" and part.get_filename() == "Dana; Ops, Team Lead.vcf"
    text = part.get_content()
    assert "FN:Dana\\; Ops\\, Team\\nLead" in text and "TEL:+447700900123" in text
    assert text.startswith("BEGIN:VCARD") and text.rstrip().endswith("END:VCARD")
    assert (f"Contact card: {isolate('Dana; Ops, Team\nLead')} – {ltr('+447700900123')}, dana@example.com"
            in item.text_body)
    assert "generated from the shared contact card" in item.text_body
    assert not item.partially_imported


def test_long_vcard_lines_fold_at_75_octets_without_splitting_characters():
    from shared.domain.records import ContactCard
    from shared.domain.vcard import vcard

    data = vcard(ContactCard.model_validate({"displayName": "ü" * 100}))
    assert all(len(line) <= 75 for line in data.split(b"\r\n"))
    assert data.decode("utf-8")  # still valid UTF-8 after folding


def test_records_of_one_chat_thread_together_and_replies_point_at_their_parent():
    import base64

    first = parse(rendered(record("c1", dialogGroupId="g-1", groupMessage=True)))
    second = parse(rendered(record("c2", dialogGroupId="g-1", groupMessage=True, replyToMessageId="c1")))
    other = parse(rendered(record("c3", dialogGroupId="g-2", groupMessage=True)))
    root = first["References"]
    assert root.startswith("<chat-") and second["References"].split()[0] == root
    assert second["In-Reply-To"] == first["Message-ID"]  # the reply points at the record it answers
    assert other["References"] != root
    index = [base64.b64decode(m["Thread-Index"]) for m in (first, second, other)]
    assert all(len(i) == 22 for i in index)
    assert index[0][6:] == index[1][6:] != index[2][6:]  # same conversation GUID within a chat


def test_one_to_one_chats_thread_by_the_two_people_whichever_way_the_message_goes():
    out = parse(rendered(record("d1", sender=ALICE, recipients=[CUSTOMER])))
    back = parse(rendered(record("d2", sender={**CUSTOMER, "phone": "12025550143"}, recipients=[ALICE])))
    assert out["References"] == back["References"]


def test_system_events_read_as_words_a_reviewer_understands():
    item = rendered(record(messageType="SYSTEM", textContent=None, groupMessage=True, dialogGroupName="Deal team",
                           system={"eventType": "PARTICIPANT_ADDED", "description": "Bob was added"}))
    assert "Group event: Participant added" in item.text_body and "Bob was added" in item.text_body
    assert strip_isolates(item.subject).startswith("WhatsApp group event from Alice Smith")


def test_a_huge_participant_name_is_capped_in_headers_and_renders_quickly():
    import time

    from shared.domain.records import ArchiveRecord
    from tests.builders import ALICE, record

    giant = {**ALICE, "firstName": "Ωmega " * 100_000}
    started = time.perf_counter()
    item = render(ArchiveRecord.model_validate(record(sender=giant)), {})
    item.to_mime_bytes()
    name, _, phone = item.sender.display_name.rpartition(" ")
    assert len(strip_isolates(name)) <= 120 and strip_isolates(name).endswith("…")
    assert phone == f"({ltr('+447700900001')})"
    assert time.perf_counter() - started < 30  # a guard against hanging, not a benchmark
