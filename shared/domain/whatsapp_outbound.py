"""What the business sends through the Cloud API, as the firm's sending application reports it.

Meta's webhooks never carry the content of a message the business sent through the API, only its
receipts (sent, delivered, read, failed). The only place that content exists is the send request
the firm's application POSTed to ``/{phone-number-id}/messages``, with the wamid Meta answered. So
that application posts both to ``whatsapp_outbound`` (shared/functions/whatsapp_outbound.py), and
this module turns the pair into the canonical record.

The send request's content object has the same shape as a Coexistence echo's (Meta's reference
says so of ``smb_message_echoes``), so the pair is read as an echo of the business number and goes
through ``parse_webhook``: one reading of every message type, one record model, and the record's
id is the wamid — the key later receipts join on.

Unlike Meta's webhook, this is the application's word, not Meta's: the record says so (its
provenance), only the firm's own numbers are taken, and the edge refuses (400, naming the field)
whatever would not become exactly one record, so that a 200 always means archived.
``check_outbound`` is that edge; ``parse_outbound`` reads a stored post and never raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from shared.domain.json_values import is_json_array, is_json_object
from shared.domain.whatsapp_cloud import BODY, ENVELOPE_OBJECT, WebhookBatch, WebhookProblem, parse_webhook

FIELD = "cloud_api_send"  # the label its records carry where a webhook's carry Meta's field name
MAX_OUTBOUND_BYTES = 3 * 1024 * 1024
MAX_DEPTH = 32  # no send request nests deeper; a deeper one is refused before anything reads it
# A send reported late is still archived (the application may have queued it while the connector
# was down, or replay its send log), but none from before the Business API existed (2018), nor one
# from the future: an application with a wrong clock must not file items years ahead.
SENT_AT_EARLIEST = datetime(2018, 1, 1, tzinfo=UTC)
SENT_AT_FUTURE = timedelta(minutes=5)
PROVENANCE = ("reported by the firm's sending application (whatsapp_outbound) with the id Meta returned; "
              "Meta's receipts for this id confirm the send")
# Meta's message ids: "wamid." and a base64 tail.
WAMID = re.compile(r"wamid\.[A-Za-z0-9_=+/-]{1,250}")
# What the Cloud API sends (its Messages reference); anything else is not a send request.
SendType = Literal[
    "audio", "contacts", "document", "image", "interactive", "location", "reaction", "sticker", "template",
    "text", "video",
]
SEND_TYPES: frozenset[str] = frozenset(get_args(SendType))
_PHONE_FORM = re.compile(r"\+?[0-9][0-9 ()-]{0,40}")
_ECHO_PATH = re.compile(r"^entry\[0\]\.changes\[0\]\.value\.message_echoes\[0\]\.?")


def _text_only(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("an ISO 8601 date and time with its zone, as a string")
    return value


_Wamid = Annotated[str, StringConstraints(pattern=rf"^{WAMID.pattern}$")]
_Digits = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,32}$")]
_DisplayNumber = Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 ()-]{0,40}$")]
_Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
_Moment = Annotated[AwareDatetime, BeforeValidator(_text_only)]


class OutboundRefused(ValueError):
    """The post cannot be archived as it is: ``parameter`` names the field, never its value."""

    def __init__(self, parameter: str, reason: str, status: int = 400) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter
        self.reason = reason
        self.status = status


class _Context(BaseModel):
    model_config = ConfigDict(extra="allow")
    message_id: _Id


class SendRequest(BaseModel):
    """The body of ``POST /{phone-number-id}/messages``: what the business sent, to whom."""

    model_config = ConfigDict(extra="allow")  # the content object, and whatever Meta adds
    messaging_product: Literal["whatsapp"] = "whatsapp"
    recipient_type: Literal["individual", "group"] = "individual"
    to: _Id | None = None
    recipient: _Id | None = None  # a business-scoped user id, where a send names no number
    type: SendType = "text"  # Meta's default: text
    context: _Context | None = None
    biz_opaque_callback_data: Annotated[str, StringConstraints(max_length=512)] | None = None

    def content(self) -> dict[str, object] | list[object]:
        value: object = (self.model_extra or {}).get(self.type)
        # Contacts are an array of cards; every other content is an object.
        if (self.type == "contacts" and is_json_array(value)) or (self.type != "contacts" and is_json_object(value)):
            return value
        shape = "an array" if self.type == "contacts" else "an object"
        raise OutboundRefused(f"request.{self.type}", f"missing, or not {shape} (the request's type names it)")


class _SentMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: _Wamid


class _SentContact(BaseModel):
    model_config = ConfigDict(extra="allow")
    input: str | None = None
    wa_id: _Digits | None = None
    user_id: _Id | None = None


class SendResponse(BaseModel):
    """Meta's answer to the send: the wamid, and the customer's WhatsApp id (which may differ from
    the number dialled, so it is the one archived)."""

    model_config = ConfigDict(extra="allow")
    messages: Annotated[list[_SentMessage], Field(max_length=1)] = []
    contacts: Annotated[list[_SentContact], Field(max_length=1)] = []


class OutboundSend(BaseModel):
    """One post to ``whatsapp_outbound``."""

    model_config = ConfigDict(extra="allow")
    wamid: _Wamid
    phone_number_id: _Digits  # the number the send went through: the firm's, checked against its list
    display_phone_number: _DisplayNumber | None = None
    sent_at: _Moment | None = None
    request: SendRequest
    response: SendResponse | None = None


def read_outbound(raw: bytes, *, received_at: datetime) -> OutboundSend:
    """The post, checked against its grammar; ``OutboundRefused`` names the first field at fault."""
    if len(raw) > MAX_OUTBOUND_BYTES:
        raise OutboundRefused("body", f"over {MAX_OUTBOUND_BYTES} bytes", 413)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise OutboundRefused("body", "not JSON") from None
    if not is_json_object(data):
        raise OutboundRefused("body", "not a JSON object")
    if _depth(data) > MAX_DEPTH:
        raise OutboundRefused("body", f"nested deeper than {MAX_DEPTH} levels")
    try:
        send = OutboundSend.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_input=False, include_url=False)[0]
        raise OutboundRefused(_field(first["loc"]), first["msg"]) from None
    request = send.request
    if not (request.to or request.recipient):
        raise OutboundRefused("request.to", "missing, and so is request.recipient")
    request.content()
    answered = send.response.messages if send.response else []
    if answered and answered[0].id != send.wamid:
        raise OutboundRefused("response.messages[0].id", "is not the wamid the post names")
    if send.sent_at and not SENT_AT_EARLIEST <= send.sent_at <= received_at + SENT_AT_FUTURE:
        raise OutboundRefused("sent_at", "before 2018, or later than the time it was posted")
    return send


def check_outbound(raw: bytes, *, received_at: datetime, numbers: Collection[str]) -> OutboundSend:
    """The edge: the post reads, names one of the firm's numbers and becomes exactly one record."""
    send = read_outbound(raw, received_at=received_at)
    if send.phone_number_id not in numbers:
        raise OutboundRefused("phone_number_id", "not one of the firm's numbers (WHATSAPP_PHONE_NUMBER_IDS)", 403)
    batch = _as_records(send, received_at)
    if batch.problems:
        problem = batch.problems[0]
        raise OutboundRefused(_ECHO_PATH.sub("request.", problem.path, count=1), problem.reason)
    if len(batch.messages) != 1:
        raise OutboundRefused("request", "does not read as one message")
    return send


def outbound_envelope(send: OutboundSend, received_at: datetime) -> dict[str, Any]:
    """The send read as an echo of the business number, in a webhook envelope of its own."""
    request = send.request
    contact = send.response.contacts[0] if send.response and send.response.contacts else None
    content = request.content()
    if request.type == "location" and is_json_object(content):
        content = _numeric_location(content)
    echo: dict[str, Any] = {
        "from": "".join(c for c in send.display_phone_number or "" if "0" <= c <= "9") or None,
        "id": send.wamid,
        "timestamp": str(int((send.sent_at or received_at).timestamp())),
        "type": request.type,
        request.type: content,
    }
    contacts: list[dict[str, Any]] = []
    if request.recipient_type == "group":
        # The group as the recipient: its id, named as a group so that it never reads as a person.
        echo.update(group_id=request.to or request.recipient, to_user_id=request.to or request.recipient)
        contacts.append({"user_id": echo["to_user_id"], "profile": {"name": "WhatsApp group"}})
    else:
        to = request.to
        if to and _PHONE_FORM.fullmatch(to):
            echo["to"] = "".join(c for c in to if "0" <= c <= "9")
        elif to:
            echo["to_user_id"] = to  # a business-scoped user id (CC.…), never read as a number
        if request.recipient:
            echo["to_user_id"] = request.recipient
        if contact and contact.wa_id:
            echo["to"] = contact.wa_id  # Meta's id for the customer, where it differs from the number dialled
        if contact:
            contacts.append(contact.model_dump(exclude_none=True, include={"wa_id", "user_id"}))
    if request.context:
        echo["context"] = {"id": request.context.message_id}
    metadata = {"display_phone_number": echo["from"], "phone_number_id": send.phone_number_id}
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {k: v for k, v in metadata.items() if v},
        "message_echoes": [{k: v for k, v in echo.items() if v is not None}],
    }
    if contacts:
        value["contacts"] = contacts
    return {"object": ENVELOPE_OBJECT, "entry": [{"id": FIELD, "changes": [{"field": FIELD, "value": value}]}]}


def parse_outbound(raw: bytes, *, received_at: datetime) -> WebhookBatch:
    """A stored post as records, like ``parse_webhook``: never raises; what cannot become a
    record is a problem with the field at fault and the body kept. (The firm's list of numbers is
    the edge's to check: a post stored was taken.)"""
    try:
        send = read_outbound(raw, received_at=received_at)
        return _as_records(send, received_at)
    except OutboundRefused as refused:
        return _whole_body_problem(raw, refused.parameter, refused.reason)
    except Exception as error:  # a stored post must end as a record or a problem, never a crash
        return _whole_body_problem(raw, BODY, f"could not be read ({type(error).__name__})")


def _as_records(send: OutboundSend, received_at: datetime) -> WebhookBatch:
    envelope = outbound_envelope(send, received_at)
    batch = parse_webhook(json.dumps(envelope).encode(), received_at=received_at)
    for message in batch.messages:
        # The record keeps the firm's own post (and its callback data), not the envelope made of it,
        # the send's time to the millisecond (an echo's timestamp has whole seconds), and whose word it is.
        message.record["whatsappCloud"]["sendRequest"] = send.model_dump(mode="json", exclude_none=True)
        message.record["provenance"] = PROVENANCE
        if send.sent_at:
            message.record["messageTime"] = int(send.sent_at.timestamp() * 1000)
    return batch


def _whole_body_problem(raw: bytes, parameter: str, reason: str) -> WebhookBatch:
    try:
        fragment: object = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        fragment = raw.decode("utf-8", "replace")
    wamid = fragment.get("wamid") if is_json_object(fragment) else None
    return WebhookBatch(problems=(WebhookProblem(
        parameter, BODY, reason, fragment, wamid if isinstance(wamid, str) and WAMID.fullmatch(wamid) else None,
    ),))


def _numeric_location(content: dict[str, object]) -> dict[str, object]:
    """The send API takes coordinates as strings too; the record wants numbers."""
    located = dict(content)
    for key in ("latitude", "longitude"):
        value = located.get(key)
        if isinstance(value, str):
            try:
                located[key] = float(value)
            except ValueError:
                pass  # left as it is: the reading says which field is not a number
    return located


def _field(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _depth(value: object) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        children: Iterable[object] = node.values() if is_json_object(node) else node if is_json_array(node) else ()
        stack.extend((child, level + 1) for child in children if is_json_object(child) or is_json_array(child))
    return deepest
