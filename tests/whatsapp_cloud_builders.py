"""WhatsApp Business Platform webhook bodies for tests: the shared builders
(shared/local/whatsapp_bodies.py) with the tests' people as defaults. Every number, id and name here
is fictitious; valid by default, each part overridable."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shared.local import whatsapp_bodies as wb
from shared.local.whatsapp_bodies import (
    FLOW_RESPONSE,
    button_reply,
    change,
    contact_card,
    flow_reply,
    list_reply,
    location,
    meta_error,
    order,
    referral,
    text,
    thread,
)

__all__ = [
    "BUSINESS", "CUSTOMER", "CUSTOMER_NAME", "CUSTOMER_USER_ID", "FLOW_RESPONSE", "OTHER_CUSTOMER", "PHONE_NUMBER_ID",
    "PICTURE", "PICTURE_SHA256_BASE64", "PICTURE_SHA256_HEX", "RECEIVED_AT", "T0", "WABA_ID", "body", "button_reply",
    "change", "contact", "contact_card", "echo", "echoes", "entry", "flow_reply", "history", "history_chunk",
    "inbound", "list_reply", "location", "media", "message", "meta_error", "metadata", "order", "referral", "status",
    "statuses", "text", "thread", "value", "wamid",
]

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


def body(*entries: Any, object_: str = wb.ENVELOPE_OBJECT) -> bytes:
    return json.dumps(wb.envelope(*entries, object_=object_)).encode()


def entry(*changes: dict[str, Any], waba_id: str = WABA_ID) -> dict[str, Any]:
    return wb.entry(*changes, waba_id=waba_id)


def metadata(display: str = BUSINESS, phone_number_id: str = PHONE_NUMBER_ID) -> dict[str, Any]:
    return wb.metadata(display, phone_number_id)


def contact(
    wa_id: str | None = CUSTOMER, name: str | None = CUSTOMER_NAME, *, user_id: str | None = None,
    username: str | None = None,
) -> dict[str, Any]:
    return wb.contact(wa_id, name, user_id=user_id, username=username)


def value(
    *, messages: list[Any] | None = None, statuses: list[Any] | None = None, echoes: list[Any] | None = None,
    history: list[Any] | None = None, contacts: list[Any] | None = None, meta: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    if contacts is None and messages is not None:
        contacts = [contact()]
    return wb.value(meta or metadata(), messages=messages, statuses=statuses, echoes=echoes, history=history,
                    contacts=contacts, **extra)


def message(kind: str, content: Any, *, n: int = 1, sender: str | None = CUSTOMER, ts: int = T0,
            **extra: Any) -> dict[str, Any]:
    return wb.message(kind, content, message_id=wamid(n), at=ts + n, sender=sender, **extra)


def echo(kind: str, content: Any, *, n: int = 1, to: str = CUSTOMER, **extra: Any) -> dict[str, Any]:
    return wb.echo(kind, content, message_id=wamid(n), at=T0 + n, business=BUSINESS, to=to, **extra)


def status(n: int, state: str, *, recipient: str = CUSTOMER, **extra: Any) -> dict[str, Any]:
    return wb.status(wamid(n), state, at=T0 + n, recipient=recipient, **extra)


def inbound(*messages: Any, contacts: list[Any] | None = None, **extra: Any) -> bytes:
    """One body, one entry, one ``messages`` change holding ``messages``."""
    return body(entry(change(value(messages=list(messages), contacts=contacts, **extra))))


def echoes(*items: Any, contacts: list[Any] | None = None) -> bytes:
    return body(entry(change(value(echoes=list(items), contacts=contacts or [contact()]),
                             field="smb_message_echoes")))


def statuses(*items: Any) -> bytes:
    return body(entry(change(value(statuses=list(items)))))


def history_chunk(*threads: dict[str, Any], phase: int = 1, chunk_order: int = 1) -> dict[str, Any]:
    return wb.history_chunk(*threads, phase=phase, chunk_order=chunk_order)


def history(*chunks: dict[str, Any]) -> bytes:
    return body(entry(change(value(history=list(chunks)), field="history")))


def media(media_id: str, mime_type: str, *, sha256: str | None = PICTURE_SHA256_HEX, **extra: Any) -> dict[str, Any]:
    return wb.media(media_id, mime_type, sha256=sha256, **extra)
