"""WhatsApp Business Platform webhook bodies as Meta sends them, built from the field tables of
/work/shared/reference/whatsapp-cloud-api.md (§1 envelope, §3 message types, §4 statuses, §5
Coexistence). The local Meta's day of traffic (``whatsapp_traffic``) and the tests build theirs with
these. Every number, id and name in the defaults is fictitious.

The builders return JSON-ready objects; ``meta_json`` gives the bytes Meta puts on the wire.
"""

from __future__ import annotations

import json
from typing import Any

ENVELOPE_OBJECT = "whatsapp_business_account"


def meta_json(data: Any, *, escape_non_ascii: bool = True) -> bytes:
    """The body's bytes as Meta sends them: compact, non-ASCII written as ``\\u00e9`` (lower-case
    hex, surrogate pairs above U+FFFF), which is also the form Meta signs. ``escape_non_ascii=False``
    gives the raw UTF-8 form some proxies deliver; its escaped form is the first one, character for
    character, because JSON escapes everything else the same way in both."""
    return json.dumps(data, ensure_ascii=escape_non_ascii, separators=(",", ":")).encode("utf-8")


# --- The envelope (§1) ---------------------------------------------------------------------------

def envelope(*entries: Any, object_: str = ENVELOPE_OBJECT) -> dict[str, Any]:
    return {"object": object_, "entry": list(entries)}


def entry(*changes: dict[str, Any], waba_id: str) -> dict[str, Any]:
    return {"id": waba_id, "changes": list(changes)}


def change(value: dict[str, Any], field: str = "messages") -> dict[str, Any]:
    return {"field": field, "value": value}


def metadata(display: str, phone_number_id: str) -> dict[str, Any]:
    return {"display_phone_number": display, "phone_number_id": phone_number_id}


def contact(
    wa_id: str | None, name: str | None, *, user_id: str | None = None, username: str | None = None,
) -> dict[str, Any]:
    profile: dict[str, Any] = {}
    if name is not None:
        profile["name"] = name
    if username is not None:
        profile["username"] = username
    data: dict[str, Any] = {"profile": profile}
    if wa_id is not None:
        data["wa_id"] = wa_id
    if user_id is not None:
        data["user_id"] = user_id
    return data


def value(
    meta: dict[str, Any], *, messages: list[Any] | None = None, statuses: list[Any] | None = None,
    echoes: list[Any] | None = None, history: list[Any] | None = None, contacts: list[Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {"messaging_product": "whatsapp", "metadata": meta}
    for key, items in (("contacts", contacts), ("messages", messages), ("statuses", statuses),
                       ("message_echoes", echoes), ("history", history)):
        if items is not None:
            data[key] = items
    data.update(extra)
    return data


def message(kind: str, content: Any, *, message_id: str, at: int, sender: str | None,
            **extra: Any) -> dict[str, Any]:
    """An inbound message (§3): common keys, ``type``, and the object named after the type; ``at`` is
    Unix seconds, and ``extra`` may replace any key (a test's malformed one)."""
    data: dict[str, Any] = {"id": message_id, "timestamp": str(at), "type": kind}
    if sender is not None:
        data["from"] = sender
    if content is not None:
        data[kind] = content
    data.update(extra)
    return data


def echo(kind: str, content: Any, *, message_id: str, at: int, business: str, to: str,
         **extra: Any) -> dict[str, Any]:
    """What the employee sent from the Business app (§5 smb_message_echoes)."""
    return {"from": business, "to": to, "id": message_id, "timestamp": str(at), "type": kind, kind: content,
            **extra}


def status(message_id: str, state: str, *, at: int, recipient: str, **extra: Any) -> dict[str, Any]:
    """A delivery receipt (§4) for a message the business sent."""
    return {"id": message_id, "status": state, "timestamp": str(at), "recipient_id": recipient, **extra}


def history_chunk(*threads: dict[str, Any], phase: int = 1, chunk_order: int = 1,
                  progress: int = 40) -> dict[str, Any]:
    return {"metadata": {"phase": phase, "chunk_order": chunk_order, "progress": progress}, "threads": list(threads)}


def thread(customer: str, *messages: dict[str, Any]) -> dict[str, Any]:
    return {"id": customer, "messages": list(messages)}


# --- Type objects, as §3 lists their fields ------------------------------------------------------

def text(words: str = "Please send the term sheet.") -> dict[str, Any]:
    return {"body": words}


def media(media_id: str, mime_type: str, *, sha256: str | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"id": media_id, "mime_type": mime_type, **extra}
    if sha256 is not None:
        data["sha256"] = sha256
    return data


def location(**extra: Any) -> dict[str, Any]:
    return {"latitude": 51.507351, "longitude": -0.127758, "name": "Head office", "address": "1 Strand, London",
            **extra}


def contact_card() -> dict[str, Any]:
    return {
        "name": {"formatted_name": "Dana Broker", "first_name": "Dana", "last_name": "Broker"},
        "phones": [{"phone": "+44 7700 900888", "wa_id": "447700900888", "type": "WORK"}],
        "emails": [{"email": "dana@broker.example", "type": "WORK"}],
        "org": {"company": "Broker & Co", "title": "Partner"},
    }


def button_reply(reply_id: str = "confirm-yes", title: str = "Yes, confirm") -> dict[str, Any]:
    return {"type": "button_reply", "button_reply": {"id": reply_id, "title": title}}


def list_reply() -> dict[str, Any]:
    return {"type": "list_reply",
            "list_reply": {"id": "slot-2", "title": "Tuesday 10:00", "description": "Call with the desk"}}


FLOW_RESPONSE = '{"flow_token":"tok-77","risk_profile":"balanced","consent":true}'


def flow_reply(name: str = "flow", response_json: str = FLOW_RESPONSE) -> dict[str, Any]:
    return {"type": "nfm_reply", "nfm_reply": {"name": name, "body": "Sent", "response_json": response_json}}


def order() -> dict[str, Any]:
    return {"catalog_id": "cat-900", "text": "Deliver by Friday", "product_items": [
        {"product_retailer_id": "sku-1", "quantity": 2, "item_price": 12.5, "currency": "EUR"},
        {"product_retailer_id": "sku-2", "quantity": 1, "item_price": 0.1, "currency": "EUR"},
    ]}


def referral() -> dict[str, Any]:
    return {
        "source_url": "https://fb.example/ad/123", "source_id": "ad-123", "source_type": "ad",
        "body": "Open an account in minutes", "headline": "Spring offer", "media_type": "image",
        "image_url": "https://fb.example/ad/123.jpg", "ctwa_clid": "clid-abc",
        "welcome_message": {"text": "Hi! How can we help?"},
    }


def meta_error(code: int = 131051, title: str = "Message type unknown") -> dict[str, Any]:
    return {"code": code, "title": title, "message": title,
            "error_data": {"details": "Message type is currently not supported."}}
