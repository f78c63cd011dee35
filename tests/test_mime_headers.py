"""The headers a reviewer reads — Subject, Thread-Topic, From / To names, X-Archive-* — read back
exactly, in Python's ``email`` (policy.default) and in ``mail-parser``, and stay within RFC 2047:
every encoded word at most 75 characters, every line holding one at most 76, headers 7-bit.

Each subject below read back wrongly when the email package folded it (CPython 3.13.0)."""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default

import mailparser
import pytest

from shared.domain.rendered import MailAddress, RenderedItem

WHEN = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)
ITEM = RenderedItem(
    record_id="wamid.1",
    record_key="k" * 64,
    subject="WhatsApp message from Alice (+447700900001) to Bob",
    sender=MailAddress("Alice (+447700900001)", "447700900001@whatsapp.invalid"),
    recipients=(MailAddress("Bob (+447700900002)", "447700900002@whatsapp.invalid"),),
    sent_at=WHEN,
    received_at=WHEN,
    text_body="Hello",
    html_body="<p>Hello</p>",
    message_id_header="<k@whatsapp.invalid>",
    conversation_topic="WhatsApp: Bob",
    extra_headers=(("X-Archive-Item-Id", "wamid.1"),),
)
ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")

SUBJECTS = [
    # The folder encoded the space before a non-ASCII word as its own word after a fold: two spaces.
    "WhatsApp message from 山田太郎 (+447700900123) to Família",
    "WhatsApp message from Ana 😀 (+447700900123) to קבוצה משפחתית",
    "EDITED – WhatsApp message from Família Silva 👨‍👩‍👧 (+447700900123) to Board – Q3 planning 📈",
    "ylongwordwithoutspacesverylongwordwithoutspaceswordword: ü",
    # mail-parser dropped the space between an encoded word and the plain text after it.
    "DELETED – WhatsApp image from Zoë (+447700900123) to Family group",
    "WhatsApp message from שלום עליכם (+972501234567) to קבוצה משפחתית גדולה מאוד עם שם ארוך מאוד מאוד",
    # A first word too long for the first line was folded straight after "Subject:": a leading space.
    "ngwordwithoutspacesverylongwordwithoutspacesverylongwordwithoutspaces-",
    # Long ASCII: mail-parser kept the line breaks of a folded plain header.
    "WhatsApp message from Alice Smith (+447700900001) to The Quarterly Planning Committee of the Board",
    # Text that looks like an encoded word is text: it was written raw, and readers decoded it.
    "WhatsApp message from =?utf-8?q?Mallory?= to x",
    "Words longer than a line: " + "Donaudampfschifffahrtsgesellschaftskapitänswitwe" * 3 + " 東京 " + "x" * 90,
    "東京の友達グループとても長い名前のグループですよね本当に東京の友達グループとても長い名前のグループですよね本当に",
    "مرحبا بكم في مجموعة العائلة الكبيرة – رسالة من محمد علي (+966500000000) إلى الجميع 🌙",
    "Ünïcödé", "", "x", "a_b=c?d", "Tab-free; (comment) \"quoted\" <angle> \\ back",
]


def read_back(item: RenderedItem) -> tuple[bytes, object, object]:
    raw = item.to_mime_bytes()
    return raw, message_from_bytes(raw, policy=default), mailparser.parse_from_bytes(raw)


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def assert_within_rfc_2047(raw: bytes) -> None:
    head = header_block(raw)
    assert head.isascii()
    for line in head.split(b"\r\n"):
        words = ENCODED_WORD.findall(line)
        assert all(len(word) <= 75 for word in words), line
        assert len(line) <= (76 if words else 78), line
    assert b"?==?" not in head  # encoded words never glued together


@pytest.mark.parametrize("subject", SUBJECTS)
def test_subject_and_topic_read_back_exactly_in_both_parsers(subject):
    item = replace(ITEM, subject=subject, conversation_topic=f"WhatsApp: {subject}"[:200].rstrip())
    raw, stdlib, other = read_back(item)
    assert stdlib["Subject"] == other.subject == item.subject
    assert stdlib["Thread-Topic"] == other.headers["Thread-Topic"] == item.conversation_topic
    assert not stdlib.defects and not stdlib["Subject"].defects
    assert_within_rfc_2047(raw)


def test_short_ascii_headers_stay_as_they_are():
    head = header_block(ITEM.to_mime_bytes()).decode()
    assert "Subject: WhatsApp message from Alice (+447700900001) to Bob\r\n" in head
    assert "Thread-Topic: WhatsApp: Bob\r\n" in head
    assert "From: Alice \"(+447700900001)\" <447700900001@whatsapp.invalid>\r\n" in head


@pytest.mark.parametrize("name", [
    "José Núñez (+447700900123)", "שלום עליכם (+972501234567)", "山田太郎 (+81312345678)",
    "Família Silva 👨‍👩‍👧 (+351912345678)", 'Smith, John "JJ" \\o/ (+44)', "=?utf-8?q?Mallory?=",
    "María José Rodríguez Fernández (+34600000000)", "O'Brien", "a.b@example.com", "Zoë",
])
def test_display_names_read_back_exactly_in_both_parsers(name):
    item = replace(ITEM, sender=MailAddress(name, "s@whatsapp.invalid"),
                   recipients=(MailAddress("Bob", "b@whatsapp.invalid"), MailAddress(name, "c@whatsapp.invalid")))
    raw, stdlib, other = read_back(item)
    assert stdlib["From"].addresses[0].display_name == other.from_[0][0] == name
    assert [a.display_name for a in stdlib["To"].addresses] == [n for n, _ in other.to] == ["Bob", name]
    assert [a.addr_spec for a in stdlib["To"].addresses] == [a for _, a in other.to] == [
        "b@whatsapp.invalid", "c@whatsapp.invalid"]
    assert_within_rfc_2047(raw)


def test_a_display_name_longer_than_one_encoded_word_reads_back_exactly_in_mail_parser():
    # More than one encoded word: RFC 2047 readers join them (mail-parser, mail clients). Python
    # 3.13.0 keeps the folding space between them in a display name (gh-128110), so it is not
    # compared here.
    name = "東京の友達グループとても長い名前のグループですよね本当に東京の友達 (+81312345678)"
    item = replace(ITEM, sender=MailAddress(name, "s@whatsapp.invalid"))
    raw, stdlib, other = read_back(item)
    assert other.from_[0] == (name, "s@whatsapp.invalid")
    assert stdlib["From"].addresses[0].addr_spec == "s@whatsapp.invalid"
    assert_within_rfc_2047(raw)


def test_many_recipients_fold_between_addresses():
    people = tuple(MailAddress(f"Person {i} Ünïcode (+4477009{i:05d})", f"p{i}@whatsapp.invalid") for i in range(40))
    raw, stdlib, other = read_back(replace(ITEM, recipients=people))
    assert [(a.display_name, a.addr_spec) for a in stdlib["To"].addresses] == [
        (p.display_name, p.address) for p in people] == list(other.to)
    assert_within_rfc_2047(raw)


def test_no_recipients_and_empty_subject_stay_empty():
    raw, stdlib, _ = read_back(replace(ITEM, subject="", recipients=()))
    assert stdlib["Subject"] == "" and stdlib["To"] == ""
    assert b"\r\nTo:\r\n" in raw and raw.startswith(b"Subject:\r\n")


def test_x_archive_headers_are_exact_and_message_ids_are_never_encoded():
    record_id = "  wamid.=?utf-8?q?x?= — id with spaces "
    root, parent = "<chat-" + "a" * 32 + "@whatsapp.invalid>", "<" + "b" * 64 + "@whatsapp.invalid>"
    item = replace(ITEM, extra_headers=(
        ("References", f"{root} {parent}"), ("In-Reply-To", parent), ("X-Archive-Item-Id", record_id),
    ))
    raw, stdlib, _ = read_back(item)
    assert stdlib["X-Archive-Item-Id"] == record_id
    # An id longer than a line was written as encoded words, which mail clients do not decode in
    # an id (RFC 2047 §5): replies did not thread. Now verbatim, folded only between ids.
    head = header_block(raw).decode()
    assert f"\r\nReferences: {root}\r\n {parent}\r\n" in head
    assert f"\r\nIn-Reply-To: {parent}\r\n" in head
    assert stdlib["References"] == f"{root} {parent}" and stdlib["In-Reply-To"] == parent


def test_the_built_message_holds_the_exact_values_and_copies_keep_the_encoding():
    subject = SUBJECTS[0]
    message = replace(ITEM, subject=subject).to_mime()
    assert message["Subject"] == subject
    assert message["From"].addresses[0].display_name == ITEM.sender.display_name
    duplicate = copy.deepcopy(message)
    assert header_block(duplicate.as_bytes()).split(b"\r\nContent-Type")[0] == header_block(
        message.as_bytes()).split(b"\r\nContent-Type")[0]
    assert message_from_bytes(duplicate.as_bytes(), policy=default)["Subject"] == subject
