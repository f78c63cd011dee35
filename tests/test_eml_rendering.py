"""A vendor's EML becomes the archive item as it is: subject, both bodies, attachments byte-exact,
original time, parties, Message-ID and threading, with the EML's file name and SHA-256 added in fixed
headers. Read back with both mail parsers."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP, default

import mailparser

from shared.domain.bidi import strip_isolates
from shared.domain.eml_items import read_eml
from shared.domain.eml_rendering import EML_SOURCE, render_eml

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40


def vendor_eml() -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"] = '"Fatima Al-Saleh" <+447700900201@capture.example>'
    message["To"] = "Alice Smith <alice@contoso.example>"
    message["Cc"] = "12025550143@capture.example"
    message["Subject"] = "WhatsApp chat: Delivery"
    message["Date"] = "Fri, 04 Dec 2026 09:00:00 +0100"
    message["Message-ID"] = "<m-42@capture.example>"
    message["In-Reply-To"] = "<m-41@capture.example>"
    message["References"] = "<m-40@capture.example> <m-41@capture.example>"
    message["X-Vendor-Secret-Header"] = "kept in the claim check only"
    message.set_content("Has the shipment arrived?\n")
    message.add_alternative("<p>Has the shipment <b>arrived</b>?</p>", subtype="html")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="../invoice.pdf")
    return message.as_bytes()


def test_an_eml_is_archived_as_it_is_and_reads_back_in_both_parsers():
    data = vendor_eml()
    facts = read_eml(data, default_region="GB")
    item = render_eml(data, facts, file_name="202612040000-TeleMessage_1_0130.zip/m-42.eml", default_region="GB")
    raw = item.to_mime_bytes()
    stdlib = message_from_bytes(raw, policy=default)
    other = mailparser.parse_from_bytes(raw)

    assert stdlib["Subject"] == other.subject == "WhatsApp chat: Delivery"
    assert stdlib["Message-ID"] == "<m-42@capture.example>"
    assert stdlib["In-Reply-To"] == "<m-41@capture.example>"
    assert stdlib["References"] == "<m-40@capture.example> <m-41@capture.example>"
    assert item.sent_at == datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    assert stdlib["From"].addresses[0].addr_spec == "+447700900201@capture.example"
    assert strip_isolates(other.from_[0][0]) == "Fatima Al-Saleh (+447700900201)"
    assert [a for _, a in other.to] == ["alice@contoso.example", "12025550143@capture.example"]
    assert item.text_body == "Has the shipment arrived?\n"
    assert stdlib.get_body(("plain",)).get_content().replace("\r\n", "\n") == item.text_body
    assert "<b>arrived</b>" in stdlib.get_body(("html",)).get_content()
    [attachment] = list(stdlib.iter_attachments())
    assert attachment.get_payload(decode=True) == PDF and attachment.get_filename() == "invoice.pdf"
    assert stdlib["X-Archive-Item-Id"] == "<m-42@capture.example>"
    assert stdlib["X-Archive-Source"] == EML_SOURCE
    assert stdlib["X-Archive-Eml-Sha256"] == hashlib.sha256(data).hexdigest()
    assert stdlib["X-Vendor-Secret-Header"] is None  # the vendor's own headers stay in the claim check


def test_an_eml_without_a_message_id_is_known_by_its_hash():
    data = vendor_eml().replace(b"Message-ID: <m-42@capture.example>\r\n", b"")
    facts = read_eml(data)
    assert facts.message_id is None
    item = render_eml(data, facts, file_name="m.eml")
    assert item.record_id == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert item.message_id_header.endswith("@whatsapp.invalid>")


def short_eml(message_id: str, text: str, *, html: str | None = None) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"] = "+447700900201@capture.example"
    message["To"] = "alice@contoso.example"
    message["Subject"] = "WhatsApp"
    message["Date"] = "Fri, 04 Dec 2026 09:00:00 +0000"
    message["Message-ID"] = f"<{message_id}@capture.example>"
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message.as_bytes()


def test_an_html_part_that_shows_no_text_gets_the_text_part_so_graph_and_verify_see_it():
    from shared.domain.item_digest import mime_content, rendered_content

    data = short_eml("photo-1", "Photo: sunset.jpg\nSent from the beach\n",
                     html='<html><body><img src="cid:sunset"></body></html>')
    item = render_eml(data, read_eml(data), file_name="d.zip/p.eml")
    # Graph keeps the HTML body only: the text is in it, before </body>, its lines kept.
    assert '<img src="cid:sunset">' in item.html_body and "Photo: sunset.jpg\nSent from the beach" in item.html_body
    assert item.html_body.index("<pre") < item.html_body.lower().index("</body>")
    # What verify reads back is what was written: the same content, both sides reading the HTML.
    assert mime_content(item.to_mime_bytes(), item.record_id) == rendered_content(item)


def test_a_plain_text_eml_reads_back_with_its_text_in_the_digest():
    from shared.domain.item_digest import item_digest, mime_content, rendered_content

    data = short_eml("text-1", "The price is 98.50\n")
    item = render_eml(data, read_eml(data), file_name="d.zip/t.eml")
    assert mime_content(item.to_mime_bytes(), item.record_id) == rendered_content(item)
    altered = data.replace(b"98.50", b"99.50")
    assert item_digest(render_eml(altered, read_eml(altered), file_name="d.zip/t.eml")) != item_digest(item)
