"""The create POST's body written directly (shared/adapters/graph_message_json.py) is, byte for byte,
what the SDK's Message models give through kiota's JSON writer (``build_message``, kept as the
reference), for every item: so a change to either can never let the two drift apart."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.adapters.graph_attachments import UploadSessionAttachments
from shared.adapters.graph_message import DEFAULT_ITEM_CLASS, build_message, create_body, id_property_id
from shared.adapters.graph_requests import json_post_request, request_configuration
from shared.domain.records import ArchiveRecord
from shared.domain.rendered import MailAddress, read_all
from shared.domain.rendering import render
from shared.local.traffic.day import generate_day
from tests.builders import ALICE, BOB, CUSTOMER, attachment, record

pytestmark = [
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]

ID_PROPERTY = id_property_id()
THREAD_INDEX = base64.b64encode(b"\x01" + bytes(range(1, 27))).decode("ascii")


def kiota_body(item, *, inline=(), item_class=DEFAULT_ITEM_CLASS, conversation=True):
    from kiota_serialization_json.json_serialization_writer import JsonSerializationWriter

    message, dropped = build_message(item, item_class=item_class, id_property=ID_PROPERTY, inline=list(inline),
                                     conversation=conversation)
    writer = JsonSerializationWriter()
    writer.write_object_value(None, message)
    return writer.get_serialized_content(), dropped


def assert_same_body(item, *, inline=(), item_class=DEFAULT_ITEM_CLASS, conversation=True):
    direct = create_body(item, item_class=item_class, id_property=ID_PROPERTY, inline=list(inline),
                         conversation=conversation)
    assert direct == kiota_body(item, inline=inline, item_class=item_class, conversation=conversation)


def inline_of(item):
    """The attachments that travel in the create, with their bytes, as the writer plans them."""
    plan = UploadSessionAttachments().plan(item)
    return [(a, read_all(a.payload)) for a in plan.inline]


@pytest.mark.parametrize("seed", [7, 8, 11])
def test_every_record_of_a_generated_day_has_the_body_the_models_give(seed):
    day = generate_day(datetime(2026, 11, 22, 12, 0, tzinfo=UTC), seed=seed)
    seen = {"attachments": 0, "headers": 0, "message_id": 0, "thread_index": 0, "non_ascii": 0}
    for data in day.records:
        record_ = ArchiveRecord.model_validate(data)
        media = {a.attachment_id: day.attachment_bytes(a.attachment_id) for a in record_.attachments}
        item = render(record_, media, default_region="GB")
        inline = inline_of(item)
        assert_same_body(item, inline=inline)
        seen["attachments"] += bool(inline)
        seen["headers"] += bool(item.extra_headers)
        seen["message_id"] += bool(item.message_id_header)
        seen["thread_index"] += any(n.lower() == "thread-index" for n, _ in item.extra_headers)
        seen["non_ascii"] += not (item.subject + item.html_body).isascii()
    assert all(seen.values()), seen  # the day reached every part of the body


def test_without_conversation_properties_and_with_another_item_class_too():
    day = generate_day(datetime(2026, 11, 22, 12, 0, tzinfo=UTC), seed=7)
    for data in day.records[:60]:
        record_ = ArchiveRecord.model_validate(data)
        media = {a.attachment_id: day.attachment_bytes(a.attachment_id) for a in record_.attachments}
        item = render(record_, media, default_region="GB")
        assert_same_body(item, inline=inline_of(item), item_class="IPM.Note.WhatsApp", conversation=False)


FREE = st.characters()  # lone surrogates too: both escape them the same way
text = st.text(FREE, max_size=200)
HEADER_NAME = st.from_regex(r"[xX]-[!-9;-~]{1,30}", fullmatch=True)
headers = st.lists(
    st.one_of(
        st.tuples(HEADER_NAME, text),
        st.tuples(st.sampled_from(["Thread-Index", "thread-index"]), st.sampled_from([THREAD_INDEX, "nope", ""])),
        st.tuples(st.sampled_from(["Bad Name", "Subject", "X-"]), text),
        st.tuples(HEADER_NAME, st.text(st.sampled_from("ab \r\n"), min_size=990, max_size=1010)),
    ),
    max_size=8,
)
address = st.builds(MailAddress, text, st.text(FREE, max_size=60))
attachments = st.lists(st.tuples(text, st.from_regex(r"[a-z]{1,10}/[a-z0-9.+-]{1,20}", fullmatch=True),
                                 st.binary(max_size=300)), max_size=3)


def base_item(file_names=(), data=b"", content_type="application/pdf"):
    files = [attachment(f"a{i}", data, fileName=n or "f", contentType=content_type)
             for i, n in enumerate(file_names)]
    data_record = record("json-1", textContent="hello", sender=ALICE, owner=ALICE, recipients=[BOB, CUSTOMER],
                         messageType="DOCUMENT" if files else "TEXT", attachments=files)
    return render(ArchiveRecord.model_validate(data_record), {f"a{i}": data for i in range(len(file_names))})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=text, html=text, topic=text, message_id=st.one_of(st.just(""), text), sender=address,
       recipients=st.lists(address, max_size=4), extra=headers, files=attachments,
       sent=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)),
       record_id=text, conversation=st.booleans())
@example(subject="", html="", topic="", message_id="", sender=MailAddress("", ""), recipients=[], extra=[],
         files=[], sent=datetime(2026, 1, 1), record_id="", conversation=True)
def test_any_item_has_the_body_the_models_give(subject, html, topic, message_id, sender, recipients, extra, files,
                                               sent, record_id, conversation):
    item = replace(
        base_item(), subject=subject, html_body=html, conversation_topic=topic, message_id_header=message_id,
        sender=sender, recipients=tuple(recipients), extra_headers=tuple(extra), record_id=record_id,
        sent_at=sent, received_at=sent + timedelta(microseconds=1500),
    )
    inline = [(replace(base_item(["x"]).attachments[0], file_name=name, content_type=ctype), data)
              for name, ctype, data in files]
    assert_same_body(item, inline=inline, conversation=conversation)


def test_the_request_is_the_one_the_sdk_builder_makes():
    from shared.adapters.graph_client import build_graph_client

    client = build_graph_client(base_url="http://127.0.0.1:9/v1.0", access_token="t")
    messages = client.users.by_user_id("alice@contoso.example").mail_folders.by_mail_folder_id("F1").messages
    item = base_item(["report.pdf"], b"%PDF-1.7 \xff", "application/pdf")
    inline = inline_of(item)
    assert inline
    body, _ = create_body(item, item_class=DEFAULT_ITEM_CLASS, id_property=ID_PROPERTY, inline=inline)
    message, _ = build_message(item, item_class=DEFAULT_ITEM_CLASS, id_property=ID_PROPERTY, inline=inline)
    direct = json_post_request(messages, body, request_configuration(prefer_immutable=True))
    sdk = messages.to_post_request_information(message, request_configuration(prefer_immutable=True))
    assert direct.content == sdk.content
    assert direct.url == sdk.url
    assert direct.http_method == sdk.http_method
    assert dict(direct.headers.get_all()) == dict(sdk.headers.get_all())
    assert json.loads(body)["attachments"][0]["name"] == "report.pdf"
