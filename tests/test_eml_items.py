"""An EML's own facts: its id (Message-ID, else its SHA-256), its original time, its threading, and
its participants with the phone numbers vendors put in addresses and display names."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import pytest

from shared.domain.eml_items import EmlInvalid, read_eml


def eml(**headers: str) -> bytes:  # headers written as UTF-8 bytes, as RFC 6532 mail carries them
    base = {
        "From": '"Fatima Al-Saleh" <+447700900201@capture.example>',
        "To": "Alice Smith <alice@contoso.example>, 12025550143@capture.example",
        "Cc": '"Bob Jones +44 7700 900002" <bob.mobile@capture.example>',
        "Subject": "WhatsApp: chat with Fatima",
        "Date": "Fri, 04 Dec 2026 09:00:00 +0100",
        "Message-ID": "<abc.123@capture.example>",
    }
    base.update(headers)
    head = "".join(f"{k}: {v}\r\n" for k, v in base.items() if v)
    return (head + "\r\nHello\r\n").encode("utf-8")


def test_participants_carry_the_phone_numbers_vendors_write_into_addresses():
    facts = read_eml(eml(), default_region="GB")
    assert facts.sender.phone == "+447700900201" and facts.sender.email == "+447700900201@capture.example"
    assert [(p.phone, p.email) for p in facts.recipients] == [
        (None, "alice@contoso.example"),
        ("+12025550143", "12025550143@capture.example"),
        ("+447700900002", "bob.mobile@capture.example"),
    ]


def test_the_id_is_the_message_id_else_the_bytes_hash():
    assert read_eml(eml()).record_id == "<abc.123@capture.example>"
    data = eml(**{"Message-ID": ""})
    facts = read_eml(data)
    assert facts.record_id == f"sha256:{hashlib.sha256(data).hexdigest()}" and facts.message_id is None


def test_the_original_time_is_kept_in_utc():
    assert read_eml(eml()).sent_at == datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


def test_threading_headers_are_read():
    facts = read_eml(eml(**{"In-Reply-To": "<root@x>", "References": "<root@x> <mid@x>"}))
    assert facts.in_reply_to == "root@x" and facts.references == ("root@x", "mid@x")


@pytest.mark.parametrize(("headers", "reason"), [
    ({"Date": ""}, "no Date header"),
    ({"Date": "yesterday"}, "cannot be read"),
    ({"From": ""}, "no From address"),
])
def test_an_eml_that_cannot_be_archived_says_why(headers, reason):
    with pytest.raises(EmlInvalid, match=reason):
        read_eml(eml(**headers))


def test_an_empty_file_is_invalid():
    with pytest.raises(EmlInvalid, match="empty"):
        read_eml(b"  \r\n")


def test_the_phone_pattern_can_be_replaced():
    only_local_parts = re.compile(r"^\+?\d{7,15}$")
    facts = read_eml(eml(), default_region="GB", phone_pattern=only_local_parts)
    assert facts.recipients[2].phone is None  # the display name's number is no longer read
    assert facts.sender.phone == "+447700900201"


def test_raw_utf8_headers_read_as_the_vendor_wrote_them_and_the_item_renders():
    from shared.domain.eml_rendering import render_eml

    data = eml(From="Fätima Al-Sälèh <+447700900201@capture.example>", Subject="Grüße aus Zürich",
               To="Bob <bob@bücher.example>, Dana <דנה@capture.example>")
    facts = read_eml(data, default_region="GB")
    assert facts.sender.display_name == "Fätima Al-Sälèh" and facts.subject == "Grüße aus Zürich"
    # An internationalised domain in the form a directory knows; a local part no mailbox can have kept as text.
    assert [p.email for p in facts.recipients][:2] == ["bob@xn--bcher-kva.example", "דנה@capture.example"]
    item = render_eml(data, facts, file_name="drop.zip/1.eml", default_region="GB")
    assert item.mime_size() > 0 and "Fätima" in item.sender.display_name


def test_a_message_id_that_is_not_ascii_is_no_id_and_the_bytes_hash_stands_for_it():
    data = eml(**{"Message-ID": "<שלום@capture.example>", "In-Reply-To": "<קודם@capture.example>"})
    facts = read_eml(data)
    assert facts.message_id is None and facts.record_id == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert facts.in_reply_to is None
