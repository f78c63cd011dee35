"""WhatsApp Business Platform webhooks (Meta's Cloud API) as canonical archive records.

``parse_webhook`` is pure: a webhook body in, a ``WebhookBatch`` out, nothing read, written or
logged. Everything after it sees only canonical records (``ArchiveRecord``'s wire form, tagged
``source: "whatsapp-cloud"``), status evidence, notices and problems, never Meta's shapes.

Why it is built this way:
- Meta batches up to 1,000 updates in one POST and keeps nothing after 30 days, so every
  ``entry[]``, ``changes[]`` and item is walked, and each message-like object ends as exactly one
  record or one problem: a malformed part never hides the good parts next to it, and is never
  dropped (a problem keeps the raw fragment and names the JSON path at fault, never its value).
- Meta redelivers for days, so a record depends only on the body and the arrival time: its id is
  the wamid, the key every later step deduplicates on.
- Meta adds fields and types without notice: the raw message rides along on every record
  (``whatsappCloud``), an unknown type becomes an UNSUPPORTED record with the raw JSON attached,
  and parts of the body this module does not understand are returned as notices.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NoReturn, overload

from pydantic import ValidationError

from shared.domain.json_values import is_json_array, is_json_object
from shared.domain.records import MAX_EPOCH_MS, ArchiveRecord, record_key

SOURCE = "whatsapp-cloud"
SOURCE_TYPE = "WHATSAPP_BUSINESS_PLATFORM"
ENVELOPE_OBJECT = "whatsapp_business_account"
BODY = "$"  # the path of the body as a whole
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RAW_MESSAGE_FILE = "whatsapp-message.json"

# Meta's supported media types (its Media page), so generated file names do not depend on the
# host's mime.types, which differs between machines.
_EXTENSIONS = {
    "audio/aac": ".aac", "audio/amr": ".amr", "audio/mpeg": ".mp3", "audio/mp4": ".m4a", "audio/ogg": ".ogg",
    "audio/opus": ".opus", "video/mp4": ".mp4", "video/3gpp": ".3gp", "image/jpeg": ".jpg", "image/png": ".png",
    "image/webp": ".webp", "text/plain": ".txt", "application/pdf": ".pdf", "application/msword": ".doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.ms-powerpoint": ".ppt",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
}
_MEDIA_TYPES = {"image": "IMAGE", "video": "VIDEO", "audio": "AUDIO", "document": "DOCUMENT", "sticker": "STICKER"}
_SYSTEM_EVENTS = {"user_changed_number": "NUMBER_CHANGED", "user_changed_user_id": "USER_ID_CHANGED"}
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_DIGITS = re.compile(r"[0-9]+")
# Keys of a change's value this module reads; any other is returned as a notice.
_VALUE_KEYS = frozenset({
    "messaging_product", "metadata", "contacts", "messages", "message_echoes", "statuses", "history", "errors",
})
_CONTENT_KEYS = ("messages", "message_echoes", "statuses", "history")


# --- What a body becomes ------------------------------------------------------------------------

@dataclass(frozen=True)
class ParsedMessage:
    """One message-like object of the body as a canonical record."""

    path: str  # where it stood, e.g. entry[0].changes[1].value.messages[3]
    message_id: str  # the wamid: the record's messageId and X-Archive-Item-Id
    record: dict[str, Any]  # ArchiveRecord's wire form (camelCase), JSON-ready

    @property
    def key(self) -> str:
        return record_key(self.message_id)


@dataclass(frozen=True)
class StatusEvidence:
    """A delivery receipt for a message the business sent: evidence to keep and count, not an item
    (Meta's receipts carry no content)."""

    path: str
    message_id: str  # the wamid of the business's message
    status: str  # sent | delivered | read | failed | played, or whatever Meta adds
    timestamp: int  # ms since epoch, UTC
    business_phone: str | None  # E.164
    phone_number_id: str | None
    recipient_id: str | None  # the customer's wa_id, or a group id
    recipient_user_id: str | None = None
    recipient_type: str | None = None
    recipient_participant_id: str | None = None
    callback_data: str | None = None  # biz_opaque_callback_data, as the sender attached it
    errors: tuple[dict[str, Any], ...] = ()
    conversation: dict[str, Any] | None = None
    pricing: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict[str, Any])

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def key(self) -> tuple[str, str]:
        """What makes a receipt the same receipt again (Meta's idempotency key)."""
        return self.message_id, self.status


@dataclass(frozen=True)
class WebhookProblem:
    """A part of the body that could not become a record: stored, reported, never dropped."""

    path: str  # the JSON path at fault, e.g. entry[0].changes[1].value.messages[3].timestamp
    item: str  # the message-like object (or part of the body) lost with it; "$" for the whole body
    reason: str  # what is wrong, never the value (it may be anyone's personal data)
    fragment: Any  # the item's raw JSON, kept
    message_id: str | None = None  # the wamid, when one could be read

    @property
    def detail(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class WebhookNotice:
    """A part of the body that is not a message, a receipt or a problem, kept as given: Meta's
    account-level errors, changes of fields not archived as items, keys this module does not know."""

    path: str
    kind: str  # platform-error | history-error | unknown-field | change
    value: Any


@dataclass(frozen=True)
class WebhookBatch:
    messages: tuple[ParsedMessage, ...] = ()
    statuses: tuple[StatusEvidence, ...] = ()
    problems: tuple[WebhookProblem, ...] = ()
    notices: tuple[WebhookNotice, ...] = ()

    @property
    def records(self) -> tuple[dict[str, Any], ...]:
        return tuple(m.record for m in self.messages)

    @property
    def status_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.status for s in self.statuses).items()))

    @property
    def failed_statuses(self) -> tuple[StatusEvidence, ...]:
        return tuple(s for s in self.statuses if s.failed)


def parse_webhook(raw: bytes | str, *, received_at: datetime) -> WebhookBatch:
    """Translate one webhook body; ``received_at`` (aware) is when it arrived: every record's
    archivedTime. Never raises for any body."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    parser = _Parser((received_at - _EPOCH) // timedelta(milliseconds=1))
    parser.body(raw)
    return WebhookBatch(
        tuple(parser.messages), tuple(parser.statuses), tuple(parser.problems), tuple(parser.notices),
    )


# --- Reading JSON with paths --------------------------------------------------------------------

class _Malformed(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


_Members = dict[str, object]  # a JSON object's members, as json.loads gives them


@dataclass(frozen=True)
class _At:
    """A JSON value and its path; a missing key reads as None (as JSON null does)."""

    value: object
    path: str

    def __getitem__(self, key: str) -> _At:
        value = self.value.get(key) if is_json_object(self.value) else None
        return _At(value, f"{self.path}.{key}" if self.path else key)

    def fail(self, reason: str) -> NoReturn:
        raise _Malformed(self.path, reason)

    def obj(self) -> _At | None:
        """An optional object."""
        return None if self.value is None else self.object()

    def members(self) -> _Members:
        """A required object's members."""
        if self.value is None:
            self.fail("missing")
        if not is_json_object(self.value):
            self.fail("not an object")
        return self.value

    def object(self) -> _At:
        """A required object."""
        self.members()
        return self

    def items(self) -> list[_At]:
        if self.value is None:
            return []
        if not is_json_array(self.value):
            self.fail("not an array")
        return [_At(v, f"{self.path}[{i}]") for i, v in enumerate(self.value)]

    def objects(self) -> list[_At]:
        return [item.object() for item in self.items()]

    @overload
    def text(self, *, required: Literal[True]) -> str: ...
    @overload
    def text(self, *, required: bool = False) -> str | None: ...

    def text(self, *, required: bool = False) -> str | None:
        if self.value is None:
            return self.fail("missing") if required else None
        if not isinstance(self.value, str):
            self.fail("not a string")
        return self.value

    def flag(self) -> bool:
        if self.value is None:
            return False
        if not isinstance(self.value, bool):
            self.fail("not true or false")
        return self.value

    def number(self, *, required: bool = False, low: float = -math.inf, high: float = math.inf) -> float | int | None:
        if self.value is None:
            return self.fail("missing") if required else None
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            self.fail("not a number")
        if not (math.isfinite(self.value) and low <= self.value <= high):
            self.fail(f"not a number from {low:g} to {high:g}")
        return self.value

    def integer(self) -> int | None:
        number = self.number()
        if number is not None and not isinstance(number, int):
            self.fail("not an integer")
        return number

    def epoch_ms(self) -> int:
        """Meta's Unix seconds (a string of digits; a JSON integer is taken too) as milliseconds."""
        value = self.value
        if isinstance(value, str) and _DIGITS.fullmatch(value) and len(value) <= 15:
            value = int(value)
        if value is None:
            self.fail("missing")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value * 1000 <= MAX_EPOCH_MS:
            self.fail("not a Unix time in seconds")
        return value * 1000

    @overload
    def identifier(self, *, required: Literal[True]) -> str: ...
    @overload
    def identifier(self, *, required: bool = False) -> str | None: ...

    def identifier(self, *, required: bool = False) -> str | None:
        """An id that becomes a record id or key: 1 to 256 characters with a UTF-8 form."""
        text = self.text(required=required)
        if text is None:
            return None
        if not 0 < len(text) <= 256 or not _has_utf8(text):
            self.fail("not an id of 1 to 256 characters")
        return text


def _has_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape
        return False
    return True


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    """Only what the body said: absent facts are left out, not written as null."""
    return {k: v for k, v in data.items() if v is not None and v != []}


def _json_text(value: Any) -> str:
    # ASCII: a lone surrogate in Meta's JSON stays an escape instead of making the text unencodable.
    try:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    except (RecursionError, ValueError):
        return json.dumps(repr(value))


# --- The envelope -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Change:
    """What every item of one change shares."""

    field: Any
    waba_id: Any
    value: _At
    owner: dict[str, Any] | _Malformed
    contacts: list[_At] | _Malformed


class _Parser:
    def __init__(self, archived_time: int) -> None:
        self.archived_time = archived_time
        self.messages: list[ParsedMessage] = []
        self.statuses: list[StatusEvidence] = []
        self.problems: list[WebhookProblem] = []
        self.notices: list[WebhookNotice] = []

    def problem(self, error: _Malformed, item: _At) -> None:
        message_id = item.value.get("id") if is_json_object(item.value) else None
        self.problems.append(WebhookProblem(
            error.path, item.path or BODY, error.reason, item.value,
            message_id if isinstance(message_id, str) and _has_utf8(message_id) else None,
        ))

    def body(self, raw: bytes | str) -> None:
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
            fragment = {"bodyBase64": base64.b64encode(data).decode("ascii")}
            self.problems.append(WebhookProblem(BODY, BODY, "the body is not JSON", fragment))
            return
        root = _At(body, "")
        try:
            root.object()
            if root["object"].text(required=True) != ENVELOPE_OBJECT:
                root["object"].fail(f"not {ENVELOPE_OBJECT}")
            if root["entry"].value is None:
                root["entry"].fail("missing")
            entries = root["entry"].items()
        except _Malformed as error:
            whole = not error.path  # the body itself is not an object
            self.problems.append(WebhookProblem(
                BODY if whole else error.path, BODY, "the body is not a JSON object" if whole else error.reason, body,
            ))
            return
        self.unknown_keys(root, {"object", "entry"})
        for entry in entries:
            self.guarded(entry, self.entry)

    def guarded(self, node: _At, step: Callable[[_At], None]) -> None:
        try:
            step(node)
        except _Malformed as error:
            self.problem(error, node)
        except RecursionError:
            self.problem(_Malformed(node.path, "nested too deeply to read"), node)

    def keep(self, errors: _At, kind: str) -> None:
        """Meta's errors, each kept as it came; in whatever shape, they never cost a message."""
        if isinstance(errors.value, list):
            self.notices.extend(WebhookNotice(e.path, kind, e.value) for e in errors.items())
        elif errors.value is not None:
            self.notices.append(WebhookNotice(errors.path, kind, errors.value))

    def unknown_keys(self, node: _At, known: set[str] | frozenset[str]) -> None:
        members = node.members()
        for key in members:
            if key not in known:
                self.notices.append(WebhookNotice(node[key].path, "unknown-field", members[key]))

    def entry(self, entry: _At) -> None:
        entry.object()
        changes = entry["changes"]
        if changes.value is None:
            changes.fail("missing")
        self.unknown_keys(entry, {"id", "time", "changes"})
        for change in changes.items():
            self.guarded(change, lambda node: self.change(node, entry["id"].value))

    def change(self, node: _At, waba_id: Any) -> None:
        node.object()
        self.unknown_keys(node, {"field", "value"})
        # Only a label on the records: in whatever shape, it is kept and never costs a message.
        field_name = node["field"].value
        value = node["value"].object()
        self.keep(value["errors"], "platform-error")
        if not any(value.members().get(key) is not None for key in _CONTENT_KEYS):
            if value.members().get("errors") is None:
                self.notices.append(WebhookNotice(value.path, "change", {"field": field_name, "value": value.value}))
            return
        self.unknown_keys(value, _VALUE_KEYS)
        change = _Change(field_name, waba_id, value, _attempt(_business, value), _attempt(_contacts, value))
        for key, direction in (("messages", "INCOMING"), ("message_echoes", "OUTGOING")):
            self.each(value[key], lambda item, d=direction: self.message(item, change, d))
        self.each(value["statuses"], lambda item: self.status(item, change))
        self.each(value["history"], lambda chunk: self.history(chunk, change))

    def each(self, array: _At, step: Callable[[_At], None]) -> None:
        """Every element, each on its own: a bad element never takes its neighbours with it."""
        try:
            items = array.items()
        except _Malformed as error:
            self.problem(error, array)
            return
        for item in items:
            self.guarded(item, step)

    def history(self, chunk: _At, change: _Change) -> None:
        chunk.object()
        self.keep(chunk["errors"], "history-error")
        for thread in chunk["threads"].items():
            self.guarded(thread, lambda node: self.each(
                node.object()["messages"],
                lambda item: self.message(item, change, None, thread=node, chunk=chunk),
            ))

    def status(self, node: _At, change: _Change) -> None:
        node.object()
        owner = change.owner if isinstance(change.owner, dict) else {}
        errors = tuple(error.members() for error in node["errors"].items())
        conversation, pricing = node["conversation"].obj(), node["pricing"].obj()
        self.statuses.append(StatusEvidence(
            path=node.path,
            message_id=node["id"].identifier(required=True),
            status=node["status"].text(required=True),
            timestamp=node["timestamp"].epoch_ms(),
            business_phone=owner.get("phone"),
            phone_number_id=owner.get("phoneNumberId"),
            recipient_id=node["recipient_id"].text(),
            recipient_user_id=node["recipient_user_id"].text(),
            recipient_type=node["recipient_type"].text(),
            recipient_participant_id=node["recipient_participant_id"].text(),
            callback_data=node["biz_opaque_callback_data"].text(),
            errors=errors,
            conversation=conversation.members() if conversation else None,
            pricing=pricing.members() if pricing else None,
            raw=node.members(),
        ))

    def message(
        self, node: _At, change: _Change, direction: str | None, *, thread: _At | None = None,
        chunk: _At | None = None,
    ) -> None:
        node.object()
        message_id = node["id"].identifier(required=True)
        time = node["timestamp"].epoch_ms()
        type_name = node["type"].text(required=True)
        if isinstance(change.owner, _Malformed):
            raise change.owner
        if isinstance(change.contacts, _Malformed):
            raise change.contacts
        owner, contacts = change.owner, change.contacts
        if direction is None:  # history: the business's own messages are in it too
            business = _digits(owner.get("phone"))
            direction = "OUTGOING" if business and _digits(node["from"].text()) == business else "INCOMING"
        if direction == "INCOMING":
            customer, contact = _customer(node, node["from"], node["from_user_id"], contacts, thread)
            sender, recipients = customer, [dict(owner)]
        else:
            customer, contact = _customer(node, node["to"], node["to_user_id"], contacts, thread)
            sender, recipients = dict(owner), [customer]
        record: dict[str, Any] = {
            "messageId": message_id,
            "source": SOURCE,
            "sourceType": SOURCE_TYPE,
            "event": "CREATED",
            "messageTime": time,
            "archivedTime": self.archived_time,
            "direction": direction,
            "owner": owner,
            "sender": sender,
            "recipients": recipients,
        }
        group_id = node["group_id"].identifier()
        if group_id:
            record.update(groupMessage=True, dialogGroupId=group_id)
        record.update(_content(node, type_name))
        if record.get("messageType") == "MEDIA_PLACEHOLDER":
            # Meta sends the file later as a message of its own with the same wamid; an archive keeps
            # both (an item is never replaced), so the placeholder takes an id of its own, pointing
            # at the wamid the file will come with.
            message_id = f"{message_id}:media_placeholder"
            record.update(messageId=message_id, relatedMessageId=node["id"].value)
        if record["event"] == "DELETED":
            record["deletion"] = {"scope": "FOR_EVERYONE", "deletedTime": time}
        record.update(_context(node["context"]))
        record.update(_compact({
            "referral": _referral(node["referral"]),
            "platformErrors": [_platform_error(e) for e in node["errors"].objects()],
        }))
        record["whatsappCloud"] = _compact({
            "field": change.field,
            "wabaId": change.waba_id,
            "metadata": change.value.members().get("metadata"),
            "contact": contact.value if contact else None,
            "thread": thread.members().get("id") if thread else None,
            "historyChunk": chunk.members().get("metadata") if chunk else None,
            "message": node.value,
        })
        try:
            ArchiveRecord.model_validate(record)
        except ValidationError as error:
            first = error.errors(include_input=False, include_url=False)[0]
            location = ".".join(map(str, first["loc"])) or "(record)"
            node.fail(f"the record made from it breaks the record model at {location}: {first['msg']}")
        self.messages.append(ParsedMessage(node.path, message_id, record))


def _attempt[T](step: Callable[[_At], T], node: _At) -> T | _Malformed:
    """A fact every item of a change needs, or why it cannot be read: an item fails with it only
    when it needs it (receipts still count without the business number)."""
    try:
        return step(node)
    except _Malformed as error:
        return error


# --- Who ----------------------------------------------------------------------------------------

def _digits(text: str | None) -> str:
    return "".join(c for c in text or "" if "0" <= c <= "9")


def _business(value: _At) -> dict[str, Any]:
    """The business number, the employee's: E.164 from the display digits, its Graph id kept as
    the key that survives a re-formatted display number."""
    metadata = value["metadata"].object()
    assert metadata is not None
    display = metadata["display_phone_number"].text()
    number_id = metadata["phone_number_id"].identifier()
    digits = _digits(display)
    if not digits and not number_id:
        metadata["display_phone_number"].fail("missing, and so is phone_number_id")
    return _compact({"phone": f"+{digits}" if digits else None, "phoneNumberId": number_id})


def _contacts(value: _At) -> list[_At]:
    return value["contacts"].objects()


def _customer(
    message: _At, wa_id_at: _At, user_id_at: _At, contacts: list[_At], thread: _At | None,
) -> tuple[dict[str, Any], _At | None]:
    """The customer, an external participant: their number (from wa_id), profile name, and Meta's
    business-scoped user id and username (a username user may have no number at all)."""
    wa_id = wa_id_at.text()
    user_id = user_id_at.text()
    if wa_id is None and user_id is None and thread is not None:
        wa_id = thread["id"].text()
    contact = next(
        (c for c in contacts if (wa_id and c["wa_id"].value == wa_id) or (user_id and c["user_id"].value == user_id)),
        None,
    )
    if contact is None and wa_id is None and user_id is None and len(contacts) == 1:
        contact = contacts[0]  # the only person this change is about
    if contact is not None:
        wa_id = wa_id or contact["wa_id"].text()
        user_id = user_id or contact["user_id"].text()
    if wa_id is None and user_id is None:
        wa_id_at.fail("missing, and the customer has no user id either")
    profile = contact["profile"].obj() if contact else None
    return _compact({
        "phone": f"+{wa_id}" if wa_id and _DIGITS.fullmatch(wa_id) else None,
        "displayName": profile["name"].text() if profile else None,
        "waId": wa_id,
        "userId": user_id,
        "username": profile["username"].text() if profile else None,
    }), contact


# --- What ---------------------------------------------------------------------------------------

def _content(message: _At, type_name: str) -> dict[str, Any]:
    """The type-specific part of a record, from the value named after the type (an object, but
    an array for contacts, and nothing needed for a history placeholder)."""
    payload = message[type_name]
    if type_name in _MEDIA_TYPES:
        return _media(message, payload.object(), type_name)
    reader = _READERS.get(type_name)
    if reader is None:
        return _unsupported(message, type_name)
    return reader(payload if type_name in ("contacts", "media_placeholder") else payload.object())


def _text(payload: _At) -> dict[str, Any]:
    return {"messageType": "TEXT", "textContent": payload["body"].text(required=True)}


def _media(message: _At, payload: _At, type_name: str) -> dict[str, Any]:
    voice = type_name == "audio" and payload["voice"].flag()
    stem = "voice-note" if voice else type_name
    result: dict[str, Any] = {
        "messageType": "VOICE_NOTE" if voice else _MEDIA_TYPES[type_name],
        "textContent": payload["caption"].text(),
    }
    media_id = payload["id"].identifier()
    link = payload["link"].text()  # what an echo of a send request may carry instead of an id
    if media_id is not None:
        ident = media_id
    elif link is not None:
        ident = "link-" + hashlib.sha256(link.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    else:
        if message["errors"].items():
            return _compact(result)  # Meta could not take the file and says why (errors[])
        payload["id"].fail("missing")
    mime = (payload["mime_type"].text() or "").split(";")[0].strip().lower() or None
    generated = f"{stem}-{ident}{_EXTENSIONS.get(mime or '', '.bin')}"
    reported = payload["sha256"].text()
    sha256 = _sha256_hex(reported)
    result["attachments"] = [_compact({
        "attachmentId": ident,
        "fileName": payload["filename"].text() or generated,
        "contentType": mime,
        "size": 0,
        "sizeKnown": False,
        "sha256": sha256,
        # A digest in neither encoding costs only the check, not the message: the media GET that
        # fetches the bytes reports its own digest.
        "reportedSha256": reported if reported is not None and sha256 is None else None,
        "mediaId": media_id,
        "mediaUrl": payload["url"].text() or link,
    })]
    return _compact(result)


def _sha256_hex(text: str | None) -> str | None:
    """Meta's digest as lower-case hex (its samples show hex in some places, base64 in others),
    or None when it is neither."""
    if text is None:
        return None
    if _HEX_SHA256.fullmatch(text):
        return text.lower()
    standard = text.strip().replace("-", "+").replace("_", "/")
    try:
        digest = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest.hex() if len(digest) == 32 else None


def _location(payload: _At) -> dict[str, Any]:
    return {"messageType": "LOCATION", "location": _compact({
        "latitude": payload["latitude"].number(required=True, low=-90, high=90),
        "longitude": payload["longitude"].number(required=True, low=-180, high=180),
        "name": payload["name"].text(),
        "address": payload["address"].text(),
        "url": payload["url"].text(),
    })}


def _contact_cards(payload: _At) -> dict[str, Any]:
    cards = payload.objects()
    if not cards:
        payload.fail("missing or empty")
    return {"messageType": "CONTACT", "contacts": [_card(card) for card in cards]}


def _card(card: _At) -> dict[str, Any]:
    name = card["name"].obj()
    parts = [name[key].text() for key in ("prefix", "first_name", "middle_name", "last_name", "suffix")] if name \
        else []
    display = (name["formatted_name"].text() if name else None) or " ".join(p for p in parts if p) or None
    org = card["org"].obj()
    return _compact({
        "displayName": display,
        "phones": [p for p in (phone["phone"].text() or phone["wa_id"].text() for phone in card["phones"].objects())
                   if p],
        "emails": [e for e in (email["email"].text() for email in card["emails"].objects()) if e],
        "organization": org["company"].text() if org else None,
    })


def _interactive(payload: _At) -> dict[str, Any]:
    kind = payload["type"].text()
    reply = payload[kind].obj() if kind in ("nfm_reply", "button_reply", "list_reply") else None
    if kind == "nfm_reply" and reply is not None:
        details = {
            "flowName": reply["name"].text(),
            "body": reply["body"].text(),
            # Meta's own JSON string, exactly: the answers a reviewer must be able to read.
            "payloadJson": reply["response_json"].text(),
        }
    elif kind in ("button_reply", "list_reply") and reply is not None:
        details = {
            "replyId": reply["id"].text(),
            "title": reply["title"].text(),
            "description": reply["description"].text(),
            "payloadJson": _json_text(payload.value),
        }
    else:
        # An interactive message the business sent (an echo), or a kind Meta added since: its
        # shape is not known here, so the text is taken only where it is plainly there; the JSON
        # attached keeps all of it.
        body = payload.members().get("body")
        words = body.get("text") if is_json_object(body) else None
        details = {"body": words if isinstance(words, str) else None, "payloadJson": _json_text(payload.value)}
    return {"messageType": "INTERACTIVE", "interactive": _compact({"kind": kind, **details})}


def _template(payload: _At) -> dict[str, Any]:
    """A template the business sent (an echo, or a send its application reported). The approved
    wording lives with Meta, not in the message: what is archived is the template's name and
    language and every value filled into it, with the template object attached as JSON."""
    language = payload["language"].obj()
    filled: list[str] = []
    for component in payload["components"].objects():
        values = [_parameter_text(parameter) for parameter in component["parameters"].objects()]
        if values:
            filled.append(f"{component['type'].text() or 'component'}: " + " | ".join(values))
    return {"messageType": "TEMPLATE", "interactive": _compact({
        "kind": "template",
        "title": payload["name"].text(required=True),
        "description": language["code"].text() if language else None,
        "body": "\n".join(filled) or None,
        "payloadJson": _json_text(payload.value),
    })}


def _parameter_text(parameter: _At) -> str:
    kind = parameter["type"].text() or "value"
    value = parameter.members().get(kind)
    if isinstance(value, str):
        return value
    if is_json_object(value) and isinstance(fallback := value.get("fallback_value"), str):
        return fallback  # currency and date_time say what the customer saw here
    return f"({kind})"


def _template_button(payload: _At) -> dict[str, Any]:
    return {"messageType": "TEMPLATE_REPLY", "interactive": _compact({
        "kind": "template_button", "replyId": payload["payload"].text(), "title": payload["text"].text(),
    })}


def _reaction(payload: _At) -> dict[str, Any]:
    return {
        "messageType": "REACTION",
        "relatedMessageId": payload["message_id"].identifier(required=True),
        # Meta leaves the emoji out when a reaction is removed; the record model says "".
        "reaction": {"emoji": payload["emoji"].text() or ""},
    }


def _order(payload: _At) -> dict[str, Any]:
    items = [_compact({
        "productRetailerId": item["product_retailer_id"].text(),
        "quantity": item["quantity"].number(low=0),
        "itemPrice": item["item_price"].number(),
        "currency": item["currency"].text(),
    }) for item in payload["product_items"].objects()]
    order = _compact({"catalogId": payload["catalog_id"].text(), "text": payload["text"].text(), "items": items})
    return _compact({"messageType": "ORDER", "order": order, "textContent": order.get("text")})


def _system(payload: _At) -> dict[str, Any]:
    kind = payload["type"].text()
    return {"messageType": "SYSTEM", "system": _compact({
        "eventType": _SYSTEM_EVENTS.get(kind or "", "OTHER"),
        "description": payload["body"].text(),
        "platformType": kind,
    })}


def _edit(payload: _At) -> dict[str, Any]:
    """A Coexistence edit: a record of its own (its own wamid) pointing at the original, which
    stays archived as it was."""
    original = payload["original_message_id"].identifier(required=True)
    inner = payload["message"].object()
    inner_type = inner["type"].text(required=True)
    if inner_type in ("edit", "revoke"):
        inner["type"].fail("an edit can only hold a message, not another edit or revoke")
    edited = _content(inner, inner_type)
    return {**edited, **_context(inner["context"]), "event": "EDITED", "relatedMessageId": original}


def _revoke(payload: _At) -> dict[str, Any]:
    # A revoke does not say what it deletes: TEXT reads as "message", the kind-neutral word.
    return {
        "messageType": "TEXT", "event": "DELETED",
        "relatedMessageId": payload["original_message_id"].identifier(required=True),
    }


def _media_placeholder(_payload: _At) -> dict[str, Any]:
    return {"messageType": "MEDIA_PLACEHOLDER"}


def _unsupported(message: _At, type_name: str) -> dict[str, Any]:
    """A type Meta could not deliver (``unsupported``, ``unknown`` on older versions) or one this
    module does not know: archived with the message attached as Meta sent it."""
    payload = message[type_name].value
    reported = payload.get("type") if is_json_object(payload) else None
    named = type_name if type_name not in ("unsupported", "unknown") else None
    data = _json_text(message.value).encode("ascii")
    return _compact({
        "messageType": "UNSUPPORTED",
        "unsupportedType": reported if isinstance(reported, str) and reported else named,
        "attachments": [{
            "attachmentId": RAW_MESSAGE_FILE,
            "fileName": RAW_MESSAGE_FILE,
            "contentType": "application/json",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "content": base64.b64encode(data).decode("ascii"),
        }],
    })


_READERS: dict[str, Callable[[_At], dict[str, Any]]] = {
    "text": _text,
    "location": _location,
    "contacts": _contact_cards,
    "interactive": _interactive,
    "button": _template_button,
    "template": _template,
    "reaction": _reaction,
    "order": _order,
    "system": _system,
    "edit": _edit,
    "revoke": _revoke,
    "media_placeholder": _media_placeholder,
}


# --- Around the content -------------------------------------------------------------------------

def _context(node: _At) -> dict[str, Any]:
    """A reply (the quoted wamid), a forward, a catalogue item asked about."""
    context = node.obj()
    if context is None:
        return {}
    frequently = context["frequently_forwarded"].flag()
    product = context["referred_product"].obj()
    return _compact({
        "replyToMessageId": context["id"].identifier(),
        "forwarded": context["forwarded"].flag() or frequently or None,
        "frequentlyForwarded": frequently or None,
        "referredProduct": _compact({
            "catalogId": product["catalog_id"].text(),
            "productRetailerId": product["product_retailer_id"].text(),
        }) if product else None,
    })


def _referral(node: _At) -> dict[str, Any] | None:
    referral = node.obj()
    if referral is None:
        return None
    welcome = referral["welcome_message"].obj()
    read = {key: referral[key].text() for key in (
        "source_url", "source_id", "source_type", "headline", "body", "media_type", "image_url", "video_url",
        "thumbnail_url", "ctwa_clid",
    )}
    read["welcome_text"] = welcome["text"].text() if welcome else None
    return _compact({_camel(key): value for key, value in read.items()})


def _platform_error(error: _At) -> dict[str, Any]:
    data = error["error_data"].obj()
    return _compact({
        "code": error["code"].integer(),
        "title": error["title"].text(),
        "message": error["message"].text(),
        "details": data["details"].text() if data else None,
        "href": error["href"].text(),
    })


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)
