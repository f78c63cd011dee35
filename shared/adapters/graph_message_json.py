"""The Graph create request's body, written as JSON directly.

Building the SDK's ``Message`` models (kiota's backing store) and serialising them with kiota's JSON
writer cost about 1.1 ms per record, two thirds of rendering's CPU (bench figure (a)). This writes
the same bytes directly: the keys in the order kiota's ``serialize`` methods write them (each
model's parent first, then its own fields alphabetically), a field left out where the models would
hold None, punctuation and string escapes as ``json.dumps`` writes them with kiota's defaults.
tests/test_graph_message_json.py holds the two byte for byte over generated days and arbitrary
items, so a change on either side shows there.

The inline attachments' base64 is spliced in as it is: it is the bulk of the body (tens of KiB a
record on the realistic mix) and needs no escaping (its alphabet is ``A-Z a-z 0-9 + / =``), yet
``json.dumps`` of a dict scanned it character by character, and the string was encoded to bytes
once more — about two thirds of the body's CPU (bench figure (a)). The fields are written without
a dict in between, each string by the encoder's own function.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.domain.rendered import MailAddress, RenderedAttachment, RenderedItem


# Each value as ``json.dumps`` writes a string with its defaults (ensure_ascii): the encoder's own
# function, so the escapes are its escapes. The punctuation is json.dumps' default ", " and ": ".
_string = encode_basestring_ascii


def _recipient(address: MailAddress) -> str:
    # The models are given ``name=display_name or None``: kiota omits None, so an empty name is absent.
    if address.display_name:
        return '{"emailAddress": {"address": ' + _string(address.address) + ', "name": ' + _string(
            address.display_name) + "}}"
    return '{"emailAddress": {"address": ' + _string(address.address) + "}}"


def _keyed_value(key: str, name: str, value: str) -> str:
    """An internetMessageHeader ({"name", "value"}) or a singleValueLegacyExtendedProperty ({"id", "value"})."""
    return '{"' + key + '": ' + _string(name) + ', "value": ' + _string(value) + "}"


def _attachment_json(attachment: RenderedAttachment, data: bytes) -> list[bytes]:
    """One fileAttachment, its bytes' base64 spliced in as it is."""
    head = ('{"@odata.type": "#microsoft.graph.fileAttachment", "contentType": ' + _string(attachment.content_type)
            + ', "isInline": false, "name": ' + _string(attachment.file_name) + ', "contentBytes": "')
    return [head.encode("ascii"), base64.b64encode(data), b'"}']


def create_message_json(
    item: RenderedItem,
    *,
    properties: Sequence[tuple[str, str]],
    headers: Sequence[tuple[str, str]],
    inline: Sequence[tuple[RenderedAttachment, bytes]] = (),
) -> bytes:
    """The create POST's body: ``properties`` the single-value extended properties, ``headers`` the
    internet headers Graph accepts (none: the field is left out, as an empty one is refused),
    ``inline`` the attachments that travel in it with their bytes."""
    parts: list[bytes] = [b'{"@odata.type": "#microsoft.graph.message", ']
    if inline:
        parts.append(b'"attachments": [')
        for index, (attachment, data) in enumerate(inline):
            if index:
                parts.append(b", ")
            parts += _attachment_json(attachment, data)
        parts.append(b"], ")
    rest = ['"body": {"content": ', _string(item.html_body), ', "contentType": "html"}, "from": ',
            _recipient(item.sender)]
    if headers:
        rest += [', "internetMessageHeaders": [', ", ".join(_keyed_value("name", *header) for header in headers), "]"]
    if item.message_id_header:
        rest += [', "internetMessageId": ', _string(item.message_id_header)]
    rest += [
        ', "sender": ', _recipient(item.sender),
        ', "singleValueExtendedProperties": [',
        ", ".join(_keyed_value("id", *prop) for prop in properties),
        '], "subject": ', _string(item.subject),
        ', "toRecipients": [', ", ".join(_recipient(r) for r in item.recipients), "]}",
    ]
    parts.append("".join(rest).encode("ascii"))
    return b"".join(parts)
