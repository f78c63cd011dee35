"""The Graph create request's body, written as JSON directly.

Building the SDK's ``Message`` models (kiota's backing store) and serialising them with kiota's JSON
writer cost about 1.1 ms per record, two thirds of rendering's CPU (bench figure (a)). This writes
the same bytes from a dict: the keys in the order kiota's ``serialize`` methods write them (each
model's parent first, then its own fields alphabetically), a field left out where the models would
hold None, and ``json.dumps`` with kiota's defaults. tests/test_graph_message_json.py holds the two
byte for byte over generated days and arbitrary items, so a change on either side shows there.

The inline attachments' base64 is spliced into the bytes rather than passed through ``json.dumps``:
it is the bulk of the body (tens of KiB a record on the realistic mix) and needs no escaping (its
alphabet is ``A-Z a-z 0-9 + / =``), yet the encoder scanned it character by character, then the
string was encoded to bytes once more — about two thirds of the body's CPU (bench figure (a)).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.domain.rendered import MailAddress, RenderedAttachment, RenderedItem


def _recipient(address: MailAddress) -> dict[str, Any]:
    # The models are given ``name=display_name or None``: kiota omits None, so an empty name is absent.
    email: dict[str, Any] = {"address": address.address}
    if address.display_name:
        email["name"] = address.display_name
    return {"emailAddress": email}


# ``json.dumps`` with its defaults (ensure_ascii, ", " and ": ") writes these pieces so.
_MESSAGE_HEAD = b'{"@odata.type": "#microsoft.graph.message", '
_ATTACHMENT_HEAD = b'{"@odata.type": "#microsoft.graph.fileAttachment", "contentType": '


def _attachment_json(attachment: RenderedAttachment, data: bytes) -> list[bytes]:
    """One fileAttachment as ``json.dumps`` writes it, its bytes' base64 spliced in as it is."""
    return [
        _ATTACHMENT_HEAD, json.dumps(attachment.content_type).encode("ascii"),
        b', "isInline": false, "name": ', json.dumps(attachment.file_name).encode("ascii"),
        b', "contentBytes": "', base64.b64encode(data), b'"}',
    ]


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
    # Every key after "@odata.type" and "attachments", through json.dumps (ASCII out: ensure_ascii).
    body: dict[str, Any] = {"body": {"content": item.html_body, "contentType": "html"}}
    body["from"] = _recipient(item.sender)
    if headers:
        body["internetMessageHeaders"] = [{"name": name, "value": value} for name, value in headers]
    if item.message_id_header:
        body["internetMessageId"] = item.message_id_header
    body["sender"] = _recipient(item.sender)
    body["singleValueExtendedProperties"] = [{"id": prop_id, "value": value} for prop_id, value in properties]
    body["subject"] = item.subject
    body["toRecipients"] = [_recipient(r) for r in item.recipients]
    rest = json.dumps(body).encode("ascii")  # "{...}": its opening brace is _MESSAGE_HEAD's
    if not inline:
        return _MESSAGE_HEAD + rest[1:]
    parts = [_MESSAGE_HEAD, b'"attachments": [']
    for index, (attachment, data) in enumerate(inline):
        if index:
            parts.append(b", ")
        parts += _attachment_json(attachment, data)
    parts += [b"], ", rest[1:]]
    return b"".join(parts)
