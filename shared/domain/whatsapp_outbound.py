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

``read_outbound`` is the edge's check (a 400 names the field at fault, before anything is stored);
``parse_outbound`` reads a stored body and never raises.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from shared.domain.whatsapp_cloud import BODY, ENVELOPE_OBJECT, WebhookBatch, WebhookProblem, parse_webhook

FIELD = "cloud_api_send"  # the label its records carry where a webhook's carry Meta's field name
MAX_OUTBOUND_BYTES = 3 * 1024 * 1024
# Meta's message ids: "wamid." and a base64 tail.
WAMID = re.compile(r"wamid\.[A-Za-z0-9_=+/-]{1,250}")

_Wamid = Annotated[str, StringConstraints(pattern=rf"^{WAMID.pattern}$")]
_Digits = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,32}$")]
_DisplayNumber = Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 ()-]{0,40}$")]
_Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
_TypeName = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,64}$")]


class OutboundRefused(ValueError):
    """The post cannot be archived as it is: ``parameter`` names the field, never its value."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter
        self.reason = reason


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
    type: _TypeName = "text"  # Meta's default when a request names none
    context: _Context | None = None
    biz_opaque_callback_data: Annotated[str, StringConstraints(max_length=512)] | None = None

    def content(self) -> dict[str, Any]:
        value = (self.model_extra or {}).get(self.type)
        if not isinstance(value, dict):
            raise OutboundRefused(f"request.{self.type}", "missing, or not an object (the request's type names it)")
        return value


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
    phone_number_id: _Digits | None = None
    display_phone_number: _DisplayNumber | None = None
    sent_at: AwareDatetime | None = None
    request: SendRequest
    response: SendResponse | None = None


def read_outbound(raw: bytes) -> OutboundSend:
    """The post, checked against its grammar; ``OutboundRefused`` names the first field at fault."""
    if len(raw) > MAX_OUTBOUND_BYTES:
        raise OutboundRefused("body", f"over {MAX_OUTBOUND_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise OutboundRefused("body", "not JSON") from None
    if not isinstance(data, dict):
        raise OutboundRefused("body", "not a JSON object")
    try:
        send = OutboundSend.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_input=False, include_url=False)[0]
        raise OutboundRefused(".".join(map(str, first["loc"])) or "body", first["msg"]) from None
    if not (send.phone_number_id or send.display_phone_number):
        raise OutboundRefused("display_phone_number", "missing, and so is phone_number_id (the business number)")
    if not (send.request.to or send.request.recipient):
        raise OutboundRefused("request.to", "missing, and so is request.recipient")
    send.request.content()
    answered = send.response.messages if send.response else []
    if answered and answered[0].id != send.wamid:
        raise OutboundRefused("response.messages[0].id", "is not the wamid the post names")
    if send.sent_at and not datetime(2000, 1, 1, tzinfo=UTC) <= send.sent_at <= datetime(9999, 1, 1, tzinfo=UTC):
        raise OutboundRefused("sent_at", "not a time between 2000 and 9999")
    return send


def outbound_envelope(send: OutboundSend, received_at: datetime) -> dict[str, Any]:
    """The send read as an echo of the business number, in a webhook envelope of its own."""
    request = send.request
    contact = send.response.contacts[0] if send.response and send.response.contacts else None
    group = request.recipient_type == "group"
    to = request.to
    if to and not group:
        to = "".join(c for c in to if c.isdigit()) or to
    if contact and contact.wa_id and not group:
        to = contact.wa_id  # Meta's id for the customer, where it differs from the number dialled
    echo: dict[str, Any] = {
        "from": "".join(c for c in send.display_phone_number or "" if c.isdigit()) or None,
        "to": None if group else to,
        "to_user_id": request.recipient or (contact.user_id if contact else None),
        "id": send.wamid,
        "timestamp": str(int((send.sent_at or received_at).timestamp())),
        "type": request.type,
        request.type: request.content(),
    }
    if group:
        echo.update(group_id=request.to, to_user_id=request.to)
    if request.context:
        echo["context"] = {"id": request.context.message_id}
    metadata = {"display_phone_number": echo["from"], "phone_number_id": send.phone_number_id}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {k: v for k, v in metadata.items() if v},
        "message_echoes": [{k: v for k, v in echo.items() if v is not None}],
    }
    if contact and not group:
        value["contacts"] = [contact.model_dump(exclude_none=True)]
    return {"object": ENVELOPE_OBJECT, "entry": [{"id": FIELD, "changes": [{"field": FIELD, "value": value}]}]}


def parse_outbound(raw: bytes, *, received_at: datetime) -> WebhookBatch:
    """A stored post as records, like ``parse_webhook``: never raises; what cannot become a
    record is a problem with the field at fault and the body kept."""
    try:
        send = read_outbound(raw)
    except OutboundRefused as refused:
        try:
            fragment: Any = json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError):
            fragment = raw.decode("utf-8", "replace")
        wamid = fragment.get("wamid") if isinstance(fragment, dict) else None
        return WebhookBatch(problems=(WebhookProblem(
            refused.parameter, BODY, refused.reason, fragment,
            wamid if isinstance(wamid, str) and WAMID.fullmatch(wamid) else None,
        ),))
    envelope = outbound_envelope(send, received_at)
    batch = parse_webhook(json.dumps(envelope).encode(), received_at=received_at)
    for message in batch.messages:
        # The record keeps the firm's own post (and its callback data), not the envelope made of it,
        # and the send's time to the millisecond (an echo's timestamp has whole seconds).
        message.record["whatsappCloud"]["sendRequest"] = send.model_dump(mode="json", exclude_none=True)
        if send.sent_at:
            message.record["messageTime"] = int(send.sent_at.timestamp() * 1000)
    return batch
