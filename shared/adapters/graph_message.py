"""What the create request of an archive item says: the MAPI properties that make it a read,
non-draft archive item with the original times, our record id and the chat's conversation, the
internet headers Graph accepts, and the body (``create_body``, written directly by
graph_message_json.py; ``build_message``, the SDK's models, is the reference it is held to).
docs/graph.md ("The item") has each property and why it is set.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

from shared.adapters.graph_message_json import create_message_json
from shared.domain.rendered import RenderedAttachment, RenderedItem

DEFAULT_ITEM_CLASS = "IPM.Note.WhatsAppArchiver"

# Fixed for the life of the archive: items written under another GUID are invisible to the
# idempotency lookup and would be archived twice.
ID_PROPERTY_GUID = "6aefd327-d14f-432e-a74c-bd982a9fae40"
ID_PROPERTY_NAME = "WhatsAppArchiverItemId"

PROP_MESSAGE_FLAGS = "Integer 0x0E07"
PROP_CLIENT_SUBMIT_TIME = "SystemTime 0x0039"
PROP_DELIVERY_TIME = "SystemTime 0x0E06"
PROP_MESSAGE_CLASS = "String 0x001A"
PROP_CONVERSATION_TOPIC = "String 0x0070"  # PidTagConversationTopic
PROP_CONVERSATION_INDEX = "Binary 0x0071"  # PidTagConversationIndex, base64 in Graph's JSON
PROP_CONVERSATION_INDEX_TRACKING = "Boolean 0x3016"  # PidTagConversationIndexTracking
THREAD_INDEX_HEADER = "Thread-Index"
# [MS-OXOMSG] 2.2.1.3: 1 reserved byte (0x01), 5 bytes of FILETIME, the 16-byte conversation GUID.
CONVERSATION_INDEX_HEADER_BYTES = 22
MSGFLAG_READ = "1"  # read; without MSGFLAG_UNSENT (8) the item is not a draft


# Graph takes at most 5 custom internet headers on a message, all named x-/X-, and refuses an
# empty collection; longer values than a header line are dropped rather than cut, so a stored
# header never says something the record did not.
MAX_INTERNET_HEADERS = 5
MAX_HEADER_VALUE_CHARS = 998
_HEADER_NAME = re.compile(r"^[xX]-[!-9;-~]+$")


def id_property_id(guid: str = ID_PROPERTY_GUID) -> str:
    return f"String {{{guid}}} Name {ID_PROPERTY_NAME}"


def mapi_time(value: datetime) -> str:
    """ISO-8601 UTC as Graph's SystemTime extended properties take it (milliseconds kept)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # the rendered model's times are UTC by contract
    value = value.astimezone(UTC)
    millis = value.microsecond // 1000
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def select_internet_headers(headers: tuple[tuple[str, str], ...]) -> tuple[list[tuple[str, str]], int]:
    """The headers Graph will accept, in the item's order, and how many were left out."""
    kept: list[tuple[str, str]] = []
    for name, value in headers:
        clean = " ".join(value.splitlines()).strip()
        if not _HEADER_NAME.match(name) or len(clean) > MAX_HEADER_VALUE_CHARS:
            continue
        if len(kept) == MAX_INTERNET_HEADERS:
            break
        kept.append((name, clean))
    return kept, len(headers) - len(kept)


def conversation_index(headers: tuple[tuple[str, str], ...]) -> bytes | None:
    """The bytes of the item's ``Thread-Index`` header when they make a conversation index Exchange
    derives the conversation id from (at least 22 bytes, first byte 0x01); else None."""
    value = next((v for n, v in headers if n.lower() == THREAD_INDEX_HEADER.lower()), None)
    if value is None:
        return None
    try:
        index = base64.b64decode("".join(value.split()), validate=True)
    except ValueError:
        return None
    if len(index) < CONVERSATION_INDEX_HEADER_BYTES or index[0] != 0x01:
        return None
    return index


def conversation_properties(item: RenderedItem) -> list[tuple[str, str]]:
    """PidTagConversationTopic / PidTagConversationIndex (+ tracking) for the create request."""
    properties: list[tuple[str, str]] = []
    if item.conversation_topic:
        properties.append((PROP_CONVERSATION_TOPIC, item.conversation_topic))
    index = conversation_index(item.extra_headers)
    if index is not None:
        properties.append((PROP_CONVERSATION_INDEX, base64.b64encode(index).decode("ascii")))
        properties.append((PROP_CONVERSATION_INDEX_TRACKING, "true"))
    return properties


def create_properties(
    item: RenderedItem, *, item_class: str, id_property: str, conversation: bool = True
) -> list[tuple[str, str]]:
    """The single-value extended properties of the create request, in the order they are sent."""
    return [
        (PROP_MESSAGE_FLAGS, MSGFLAG_READ),
        (PROP_CLIENT_SUBMIT_TIME, mapi_time(item.sent_at)),
        (PROP_DELIVERY_TIME, mapi_time(item.received_at)),
        (PROP_MESSAGE_CLASS, item_class),
        (id_property, item.record_id),
        *(conversation_properties(item) if conversation else ()),
    ]


def create_body(
    item: RenderedItem,
    *,
    item_class: str,
    id_property: str,
    inline: list[tuple[RenderedAttachment, bytes]] | tuple[()] = (),
    conversation: bool = True,
) -> tuple[bytes, int]:
    """The create POST's JSON body, and the number of headers left out: the bytes ``build_message``
    gives through kiota's JSON writer, written directly (graph_message_json.py says why)."""
    properties = create_properties(item, item_class=item_class, id_property=id_property, conversation=conversation)
    headers, dropped = select_internet_headers(item.extra_headers)
    return create_message_json(item, properties=properties, headers=headers, inline=inline), dropped


def build_message(
    item: RenderedItem,
    *,
    item_class: str,
    id_property: str,
    inline: list[tuple[RenderedAttachment, bytes]] | tuple[()] = (),
    conversation: bool = True,
) -> tuple[Any, int]:
    """The msgraph ``Message`` for one create POST, and the number of headers left out. The writer
    sends ``create_body`` instead; this stays the reference its bytes are held to.

    ``inline``: the attachments that travel in the create, each with its bytes (small ones only).
    ``conversation``: set the conversation properties (GRAPH_CONVERSATION_PROPERTIES=false turns
    them off, should a tenant refuse them).
    """
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.internet_message_header import InternetMessageHeader
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.message import Message
    from msgraph.generated.models.recipient import Recipient
    from msgraph.generated.models.single_value_legacy_extended_property import (
        SingleValueLegacyExtendedProperty,
    )

    def recipient(address: Any) -> Recipient:
        return Recipient(
            email_address=EmailAddress(name=address.display_name or None, address=address.address)
        )

    properties = create_properties(item, item_class=item_class, id_property=id_property, conversation=conversation)
    headers, dropped = select_internet_headers(item.extra_headers)
    message = Message(
        subject=item.subject,
        body=ItemBody(content_type=BodyType.Html, content=item.html_body),
        from_=recipient(item.sender),
        sender=recipient(item.sender),
        to_recipients=[recipient(r) for r in item.recipients],
        single_value_extended_properties=[
            SingleValueLegacyExtendedProperty(id=prop_id, value=value) for prop_id, value in properties
        ],
        # sentDateTime/receivedDateTime are ignored on create (and can cause a 400): the MAPI
        # times above carry the original times instead.
    )
    if item.message_id_header:
        message.internet_message_id = item.message_id_header
    if headers:  # an empty collection is refused
        message.internet_message_headers = [InternetMessageHeader(name=n, value=v) for n, v in headers]
    if inline:
        message.attachments = [file_attachment(a, data) for a, data in inline]
    return message, dropped


def create_request_estimate(item: RenderedItem) -> int:
    """Bytes of the create request apart from its attachments (JSON-escaped as kiota sends it)."""
    fields = [item.subject, item.html_body, item.record_id, item.message_id_header, item.conversation_topic]
    fields += [r.display_name + r.address for r in (item.sender, *item.recipients)]
    fields += [name + value for name, value in item.extra_headers]  # Thread-Index again as 0x0071
    escaped = sum(len(json.dumps(text)) for text in fields)
    return escaped + 2048 + 160 * (len(item.recipients) + len(item.extra_headers) + 3)


def file_attachment(attachment: RenderedAttachment, data: bytes) -> Any:
    from msgraph.generated.models.file_attachment import FileAttachment

    return FileAttachment(
        odata_type="#microsoft.graph.fileAttachment",
        name=attachment.file_name,
        content_type=attachment.content_type,
        content_bytes=data,
        is_inline=False,
    )
