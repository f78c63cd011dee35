"""WhatsApp Business Platform webhook bodies for tests, built from the field tables of
/work/shared/reference/whatsapp-cloud-api.md (§1 envelope, §3 message types, §4 statuses, §5
Coexistence). Every number, id and name here is fictitious; valid by default, each part
overridable."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

# The business number is Bob's (tests.builders.MAPPING_CSV maps it to his mailbox): the employee.
BUSINESS = "447700900002"
PHONE_NUMBER_ID = "310000000000111"
WABA_ID = "420000000000222"
CUSTOMER = "12025550143"
CUSTOMER_NAME = "Carla Customer"
CUSTOMER_USER_ID = "US.CARLA0000000000143"
OTHER_CUSTOMER = "447700900777"

RECEIVED_AT = datetime(2026, 3, 2, 9, 30, 5, 250_000, tzinfo=UTC)
T0 = 1772443800  # 2026-03-02T09:30:00Z, in the seconds Meta sends

# SHA-256 of b"picture bytes", in both of the encodings Meta uses.
PICTURE = b"picture bytes"
PICTURE_SHA256_HEX = "13e36e28f099f854233d215cdf527df1a093998348a6a45ae5290fe412d676f7"
PICTURE_SHA256_BASE64 = "E+NuKPCZ+FQjPSFc31J98aCTmYNIpqRa5SkP5BLWdvc="


def wamid(n: int) -> str:
    """A message id in Meta's form: ``wamid.`` and a base64-like tail (opaque to the parser)."""
    return f"wamid.HBgLMTIwMjU1NTAxNDMVAgASGBQz{n:08d}AA=="


def body(*entries: dict[str, Any], object_: str = "whatsapp_business_account") -> bytes:
    return json.dumps({"object": object_, "entry": list(entries)}).encode()


def entry(*changes: dict[str, Any], waba_id: str = WABA_ID) -> dict[str, Any]:
    return {"id": waba_id, "changes": list(changes)}


def change(value: dict[str, Any], field: str = "messages") -> dict[str, Any]:
    return {"field": field, "value": value}


def metadata(display: str = BUSINESS, phone_number_id: str = PHONE_NUMBER_ID) -> dict[str, Any]:
    return {"display_phone_number": display, "phone_number_id": phone_number_id}


def contact(
    wa_id: str | None = CUSTOMER, name: str | None = CUSTOMER_NAME, *, user_id: str | None = None,
    username: str | None = None,
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
    *, messages: list[Any] | None = None, statuses: list[Any] | None = None, echoes: list[Any] | None = None,
    history: list[Any] | None = None, contacts: list[Any] | None = None, meta: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {"messaging_product": "whatsapp", "metadata": meta or metadata()}
    if contacts is None and messages is not None:
        contacts = [contact()]
    for key, items in (("contacts", contacts), ("messages", messages), ("statuses", statuses),
                       ("message_echoes", echoes), ("history", history)):
        if items is not None:
            data[key] = items
    data.update(extra)
    return data


def message(kind: str, content: Any, *, n: int = 1, sender: str | None = CUSTOMER, ts: int = T0,
            **extra: Any) -> dict[str, Any]:
    """An inbound message (§3): common keys, ``type``, and the object named after the type."""
    data: dict[str, Any] = {"id": wamid(n), "timestamp": str(ts + n), "type": kind}
    if sender is not None:
        data["from"] = sender
    if content is not None:
        data[kind] = content
    data.update(extra)
    return data


def echo(kind: str, content: Any, *, n: int = 1, to: str = CUSTOMER, **extra: Any) -> dict[str, Any]:
    """What the employee sent from the Business app (§5 smb_message_echoes)."""
    return {"from": BUSINESS, "to": to, "id": wamid(n), "timestamp": str(T0 + n), "type": kind, kind: content,
            **extra}


def status(n: int, state: str, *, recipient: str = CUSTOMER, **extra: Any) -> dict[str, Any]:
    return {"id": wamid(n), "status": state, "timestamp": str(T0 + n), "recipient_id": recipient, **extra}


def inbound(*messages: Any, contacts: list[Any] | None = None, **extra: Any) -> bytes:
    """One body, one entry, one ``messages`` change holding ``messages``."""
    return body(entry(change(value(messages=list(messages), contacts=contacts, **extra))))


def echoes(*items: Any, contacts: list[Any] | None = None) -> bytes:
    return body(entry(change(value(echoes=list(items), contacts=contacts or [contact()]),
                             field="smb_message_echoes")))


def statuses(*items: Any) -> bytes:
    return body(entry(change(value(statuses=list(items)))))


def history_chunk(*threads: dict[str, Any], phase: int = 1, chunk_order: int = 1) -> dict[str, Any]:
    return {"metadata": {"phase": phase, "chunk_order": chunk_order, "progress": 40}, "threads": list(threads)}


def thread(customer: str, *messages: dict[str, Any]) -> dict[str, Any]:
    return {"id": customer, "messages": list(messages)}


def history(*chunks: dict[str, Any]) -> bytes:
    return body(entry(change(value(history=list(chunks)), field="history")))


# --- Type objects, as §3 lists their fields ------------------------------------------------------

def text(words: str = "Please send the term sheet.") -> dict[str, Any]:
    return {"body": words}


def media(media_id: str, mime_type: str, *, sha256: str | None = PICTURE_SHA256_HEX, **extra: Any) -> dict[str, Any]:
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
