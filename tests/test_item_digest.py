"""The item digest: the same from the rendered item as from its MIME read back, and different as soon
as anything a reviewer reads changes."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.item_digest import ItemContent, UnreadableItem, item_digest, mime_content, visible_text
from shared.domain.records import ArchiveRecord
from shared.domain.rendering import render
from tests.builders import attachment, record

PHOTO = b"\xff\xd8\xff" + bytes(range(256)) * 40


def _item(**overrides):
    rec = ArchiveRecord.model_validate(record(
        "msg-digest", textContent="Price agreed: £1,200 — مرحبا\nsecond line",
        attachments=[attachment("photo", PHOTO, inline=False)], **overrides,
    ))
    return render(rec, {"photo": PHOTO})


def _read_back(raw: bytes, record_id: str = "msg-digest") -> str:
    return mime_content(raw, record_id).digest()


def test_the_digest_of_an_item_is_recomputed_from_its_mime_read_back():
    item = _item()
    assert _read_back(item.to_mime_bytes()) == item_digest(item)


def test_mime_made_again_with_other_boundaries_and_an_exchange_style_head_reads_the_same():
    item = _item()
    message = message_from_bytes(item.to_mime_bytes(), policy=policy.default)
    html = message.get_body(preferencelist=("html",))
    rewritten = html.get_content().replace(
        "<head>", '<head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"><style>p{}</style>')
    html.set_content(rewritten.replace("</p>", "</p>\r\n"), subtype="html", charset="utf-8")
    assert _read_back(message.as_bytes()) == item_digest(item)


@pytest.mark.parametrize("change", ["body", "subject", "date", "attachment", "record id"])
def test_any_change_a_reviewer_would_see_changes_the_digest(change):
    item = _item()
    message = message_from_bytes(item.to_mime_bytes(), policy=policy.default)
    record_id = "msg-digest"
    if change == "body":
        html = message.get_body(preferencelist=("html",))
        html.set_content(html.get_content().replace("£1,200", "£1,800"), subtype="html", charset="utf-8")
    elif change == "subject":
        message.replace_header("Subject", str(message["Subject"]) + " (edited)")
    elif change == "date":
        message.replace_header("Date", "Sat, 22 Nov 2025 08:26:41 +0000")
    elif change == "attachment":
        part = next(message.iter_attachments())
        part.set_content(PHOTO[:-1] + b"\x00", maintype="image", subtype="jpeg", filename="photo.jpg")
    else:
        record_id = "msg-other"
    assert _read_back(message.as_bytes(), record_id) != item_digest(item)


def test_visible_text_skips_the_head_and_reads_entities_and_breaks_as_a_reader_does():
    html = "<html><head><title>T</title><style>b{}</style></head><body>a&amp;b<br>c\n\n  d</body></html>"
    assert visible_text(html) == "a&b c d"


def test_mime_that_cannot_be_taken_apart_is_named_unreadable():
    with pytest.raises(UnreadableItem):
        mime_content(b"Subject: no date\r\n\r\nhello", "x")


def test_the_digest_is_over_content_not_attachment_order():
    one = ItemContent("r", "s", _item().sent_at, "b", (("a.jpg", "1" * 64), ("b.jpg", "2" * 64)))
    two = ItemContent("r", "s", _item().sent_at, "b", (("b.jpg", "2" * 64), ("a.jpg", "1" * 64)))
    assert one.digest() == two.digest()


# --- the one-pass reading of plain markup: html.parser's reading, at a fraction of its cost --------------

def _parser_reading(html: str) -> str:
    from shared.domain.item_digest import _VisibleText, normal_text

    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    return normal_text("".join(parser.parts))


_FRAGMENTS = [
    "<p>", "</p>", "<br>", "<br/>", "<BR />", "<td dir=\"ltr\">", "</td>", "<bdi>", "</bdi>", "<head>", "</head>",
    "<title>", "</title>", "<style>", "</style>", "<script>", "</script>", "<style/>", "<head/>", "<!DOCTYPE html>",
    "<!-- note -->", "<![CDATA[x]]>", "<?xml?>", "<a title=\"x>y\">", "<a title='it's'>", "< 5", "a > b", "&amp;",
    "&lt;", "&#x41;", "&nbsp;", "&copy", "&unknown;", "text", " ", "\n", "مرحبا", "\u2068Anna\u2069", "\"", "'",
    "<div\nclass=\"x\">", "</div >", "<img src=\"cid:a\">", "<p", ">", "</", "<1>", "<a\x00b>",
]


@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=30))
@settings(max_examples=1500, deadline=None)
def test_the_one_pass_reading_is_the_parsers_whenever_it_answers(fragments):
    from shared.domain.item_digest import _plain_markup_text, normal_text

    html = "".join(fragments)
    fast = _plain_markup_text(html)
    if fast is not None:
        assert normal_text(fast) == _parser_reading(html), html
    assert visible_text(html) == _parser_reading(html)


def test_every_item_of_a_realistic_day_is_read_in_one_pass_and_as_the_parser_reads_it():
    import json

    from bench.records import realistic
    from shared.domain.item_digest import _plain_markup_text
    from shared.domain.records import parse_record

    records = realistic(300, 1).records
    for raw in records:
        html = render(parse_record(json.dumps(raw).encode()), {}, default_region="GB").html_body
        assert _plain_markup_text(html) is not None  # the write path's own HTML never needs the parser
        assert visible_text(html) == _parser_reading(html)
