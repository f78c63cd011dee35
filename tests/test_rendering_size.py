"""The item size check: ``RenderedItem.mime_size`` adds up the MIME skeleton from its parts instead
of building it, and must give the number building it gave, for every item. So the limit poisons
(too_big) exactly the items it poisoned before.

Before, the size was ``len(item._mime(with_attachments=False).as_bytes())`` (the skeleton: headers,
text and HTML parts) plus, for each attachment, its base64 size and an allowance for its part's
headers. ``built_size`` below is that definition, kept as the reference.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.domain.records import ArchiveRecord
from shared.domain.rendered import (
    BytesPayload,
    MailAddress,
    RenderedAttachment,
    RenderedItem,
    _encoded_word,
    _fitting_prefix,
    _skeleton_size,
    _text_body_size,
    base64_mime_size,
)
from shared.domain.rendering import render, single_line
from shared.local.traffic.day import generate_day
from tests.builders import ALICE, BOB, CUSTOMER, attachment, record

FREE = st.characters(exclude_categories=("Cs",))
free_text = st.text(FREE, max_size=300)
# Text that reaches each body encoding: short ASCII lines (7bit), short lines with other scripts
# (8bit), lines over 78 bytes that mostly need no escaping (quoted-printable) or mostly do (base64),
# line breaks of every kind, "=" and trailing blanks where quoted-printable breaks its lines.
PIECES = ["a", "word ", "=", " ", "\t", "é", "山田", "😀", "שלום", "\n", "\r\n", "\r", "\x0b", "\x0c", "\x85",
          "\u2028", "\x00", "x" * 77, "y" * 200, "=" * 30, "é" * 60, " \n", "\t\n", "<p>&amp;</p>"]
bodies = st.one_of(
    st.text(FREE, max_size=3000),
    st.lists(st.sampled_from(PIECES), max_size=120).map("".join),
    st.lists(st.text(FREE, max_size=120), max_size=40).map("\n".join),
)
single_lines = st.one_of(
    free_text.map(single_line),
    st.lists(st.sampled_from(["WhatsApp", "José", "😀", "山田太郎", "=?utf-8?q?x?=", '"q"', "x" * 90, "Ünïcödé" * 12]),
             max_size=20).map(" ".join),
)
ASCII_NAME = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200)
CONTENT_TYPE = st.from_regex(r"[a-z0-9.+-]{1,40}/[a-z0-9.+-]{1,60}", fullmatch=True)


def built_size(item: RenderedItem) -> int:
    """The size as it was measured before: the skeleton built and serialised, attachments added."""
    skeleton = len(item._mime(with_attachments=False).as_bytes())
    present = [a for a in item.attachments if not a.missing]
    return skeleton + sum(base64_mime_size(a.size) + 400 + 2 * len(a.file_name.encode()) for a in present)


def assert_same_size(item: RenderedItem) -> None:
    skeleton = _skeleton_size(item)
    assert skeleton is not None, "an item render() makes is measured without building it"
    assert skeleton == len(item._mime(with_attachments=False).as_bytes())
    assert item.mime_size() == built_size(item)


def rendered(text=None, *, name="Alice", group=None, file_names=(), data=b"", content_type="image/jpeg",
             message_type="TEXT", event="CREATED"):
    person = {**ALICE, "firstName": name, "lastName": None}
    attachments = [attachment(f"a{i}", data, fileName=n, contentType=content_type) for i, n in enumerate(file_names)]
    data_record = record("size-1", textContent=text, sender=person, owner=person, recipients=[BOB, CUSTOMER],
                         dialogGroupName=group, groupMessage=bool(group), messageType=message_type, event=event,
                         relatedMessageId="size-0" if event != "CREATED" else None, attachments=attachments)
    return render(ArchiveRecord.model_validate(data_record), {f"a{i}": data for i in range(len(file_names))})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=bodies, name=free_text, group=free_text, file_names=st.lists(free_text, max_size=3),
       data=st.binary(max_size=4096), message_type=st.sampled_from(["TEXT", "DOCUMENT", "IMAGE", "CONTACT"]),
       event=st.sampled_from(["CREATED", "EDITED", "DELETED"]))
@example(text="x" * 5000, name="😀" * 120, group="山" * 200, file_names=["é" * 150], data=b"\0" * 57,
         message_type="DOCUMENT", event="EDITED")
def test_any_record_rendered_measures_what_building_it_measured(text, name, group, file_names, data, message_type,
                                                                event):
    assert_same_size(rendered(text or None, name=name, group=group, file_names=file_names, data=data,
                              message_type=message_type, event=event))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_body=bodies, html_body=bodies, subject=single_lines, topic=single_lines,
       sender=single_lines, recipients=st.lists(single_lines, max_size=4))
def test_any_bodies_subject_and_names_measure_what_building_them_measured(text_body, html_body, subject, topic,
                                                                         sender, recipients):
    item = replace(
        rendered("text"), text_body=text_body, html_body=html_body, subject=subject, conversation_topic=topic,
        sender=MailAddress(sender, "s@whatsapp.invalid"),
        recipients=tuple(MailAddress(name, f"r{i}@contoso.example") for i, name in enumerate(recipients)),
    )
    assert_same_size(item)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=bodies, file_names=st.lists(ASCII_NAME, min_size=1, max_size=3), data=st.binary(max_size=6000),
       content_type=CONTENT_TYPE)
def test_with_attachments_the_size_is_never_less_than_the_whole_message(text, file_names, data, content_type):
    """The attachments are counted, not built: their base64 exactly, their part headers with an
    allowance that covers ASCII names and content types of up to 100 characters. (A long non-ASCII
    name, written percent-encoded, can take a few hundred bytes more; so it could before.)"""
    item = rendered(text or None, file_names=file_names, data=data, content_type=content_type,
                    message_type="DOCUMENT")
    assert_same_size(item)
    assert len(item.to_mime_bytes()) <= item.mime_size()


@pytest.mark.parametrize("seed", [7, 8])
def test_every_record_of_a_generated_day_measures_what_building_it_measured(seed):
    day = generate_day(datetime(2026, 11, 22, 12, 0, tzinfo=UTC), seed=seed)
    for data in day.records:
        record_ = ArchiveRecord.model_validate(data)
        media = {a.attachment_id: day.attachment_bytes(a.attachment_id) for a in record_.attachments}
        if sum(len(b or b"") for b in media.values()) > 1024 * 1024:
            continue  # the attachments are counted, never built: a large one adds nothing to check
        assert_same_size(render(record_, media, default_region="GB"))


def test_a_transcript_measures_what_building_it_measured():
    from tests.test_transcripts import DAY_START, UTC_ZONE, _part, chat_record

    part, entries = _part([
        chat_record(f"m-{i}", DAY_START + timedelta(minutes=i), textContent=f"line {i} שלום 😀 " * (i % 7 + 1))
        for i in range(40)
    ])
    from shared.domain.transcript_rendering import render_transcript

    assert_same_size(render_transcript(part, entries, zone=UTC_ZONE))


@pytest.mark.parametrize("change", [
    {"sent_at": datetime(2026, 1, 2, 3, 4, 5)},  # naive: the package writes -0000
    {"sent_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30)))},
    {"sent_at": datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)},
    {"message_id_header": "<short@example>"},
    {"message_id_header": "<" + "a" * 70 + "@example.org>"},
    {"extra_headers": (("Content-Language", "en"),)},  # moved into the first part by the package
    {"extra_headers": (("Thread-Index", "a b"), ("Keywords", "x"))},
    {"extra_headers": (("X-One", "1"), ("x-one", "2"))},
    {"sender": MailAddress("Zoë", "zoë@contoso.example")},  # the package refuses non-ASCII: it raises
    {"subject": "lone \udc80 surrogate"},
])
def test_a_shape_render_never_makes_is_measured_by_building_it(change):
    item = replace(rendered("text"), **change)
    assert _skeleton_size(item) is None
    try:
        expected = built_size(item)
    except (UnicodeEncodeError, ValueError) as error:
        with pytest.raises(type(error)):
            item.mime_size()
    else:
        assert item.mime_size() == expected


@settings(max_examples=500, deadline=None)
@given(text=st.text(FREE, min_size=1, max_size=200), limit=st.integers(min_value=0, max_value=75))
def test_the_longest_fitting_encoded_word_is_what_encoding_each_prefix_finds(text, limit):
    """The fold takes the longest prefix whose encoded word fits (one character at least), as it
    did when it encoded every prefix to measure it."""
    from email.charset import Charset

    utf8 = Charset("utf-8")
    end = 1
    while end < len(text) and len(utf8.header_encode(text[: end + 1])) <= limit:
        end += 1
    assert _fitting_prefix(text, limit) == end
    assert _encoded_word(text[:end].encode("utf-8")) == utf8.header_encode(text[:end])


@settings(max_examples=500, deadline=None)
@given(text=bodies)
def test_a_body_is_measured_as_the_package_encodes_and_writes_it(text):
    from email.message import EmailMessage
    from email.policy import SMTP

    part = EmailMessage(policy=SMTP)
    part.set_content(text, subtype="plain", charset="utf-8")
    written = part.as_bytes()
    head = written.index(b"\r\n\r\n") + 4
    cte, size = _text_body_size(text)
    assert part["Content-Transfer-Encoding"] == cte
    assert len(written) - head == size


def test_a_missing_attachment_adds_nothing_and_a_present_one_its_base64():
    item = rendered("text")
    base = item.mime_size()
    missing = RenderedAttachment("lost.jpg", "image/jpeg", 10, None, None)
    present = RenderedAttachment("here.jpg", "image/jpeg", 100, None, BytesPayload(random.Random(1).randbytes(100)))
    assert replace(item, attachments=(missing,)).mime_size() == base
    assert replace(item, attachments=(present,)).mime_size() == base + base64_mime_size(100) + 400 + 2 * 8
