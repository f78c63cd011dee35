"""An archive record rendered as one archive email (first version).

Message text is data, never markup: it is escaped in HTML and never reaches a header with a
control character in it. What a participant or a chat says is isolated wherever it stands next to
our words, and phone numbers read left to right (shared/domain/bidi.py; docs/rendering.md, "Right
to left"). Every writer serialises the same RenderedItem, so the .eml and the Graph item say the
same thing.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import itertools
import mimetypes
import re
import unicodedata
from collections.abc import Mapping
from decimal import Decimal

from shared.domain.bidi import balanced, isolate, ltr, strip_isolates, to_html
from shared.domain.phones import normalize_participant_phone
from shared.domain.recapture import Recapture
from shared.domain.records import (
    ArchiveRecord,
    Attachment,
    ContactCard,
    InteractiveReply,
    Order,
    Participant,
    Referral,
    epoch_ms_to_datetime,
    record_key,
)
from shared.domain.rendered import AttachmentPayload, BytesPayload, MailAddress, RenderedAttachment, RenderedItem
from shared.domain.vcard import vcard
from shared.domain.window import isoformat_z

SYNTHETIC_DOMAIN = "whatsapp.invalid"
MAX_SUBJECT_LENGTH = 200
MAX_FILE_NAME_LENGTH = 150
MAX_NAME_LENGTH = 120

KIND_LABELS = {
    "TEXT": "message", "IMAGE": "image", "VIDEO": "video", "AUDIO": "audio",
    "VOICE_NOTE": "voice note", "DOCUMENT": "document", "STICKER": "sticker",
    "LOCATION": "location", "CONTACT": "contact card", "CALL": "call",
    "REACTION": "reaction", "SYSTEM": "group event",
    "INTERACTIVE": "interactive reply", "TEMPLATE_REPLY": "template button reply", "ORDER": "order",
    "TEMPLATE": "template message", "UNSUPPORTED": "unsupported message",
    "MEDIA_PLACEHOLDER": "media from the chat history",
}
_SYSTEM_EVENTS = {
    "GROUP_CREATED": "Group created", "PARTICIPANT_ADDED": "Participant added",
    "PARTICIPANT_REMOVED": "Participant removed", "PARTICIPANT_LEFT": "Participant left",
    "SUBJECT_CHANGED": "Group subject changed", "ICON_CHANGED": "Group icon changed",
    "SECURITY_CODE_CHANGED": "Security code changed", "NUMBER_CHANGED": "Phone number changed",
    "OTHER": "Other group event", "USER_ID_CHANGED": "WhatsApp user id changed",
}
SOURCE_LABELS = {
    "WHATSAPP_ARCHIVER": "WhatsApp Phone Archiver", "WHATSAPP_CLOUD_ARCHIVER": "WhatsApp Cloud Archiver",
    "WHATSAPP_BUSINESS_PLATFORM": "WhatsApp Business Platform (Meta webhook)",
    "WHATSAPP_CHAT_EXPORT": "WhatsApp chat export (the custodian's phone)",
}
_INTERACTIVE_FILES = {"nfm_reply": "flow-response.json", "template": "template.json"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SIMPLE_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_PATH_SEPARATOR = re.compile(r"[\\/]")
_RESERVED_IN_FILE_NAMES = re.compile(r'[<>:"|?*]')
_CONTENT_TYPE = re.compile(r"^[a-z0-9.+-]+/[a-z0-9.+-]+$")
# Parsing a number is most of what rendering a record costs, and each participant is read twice
# (their address, the chat's key) while the same few people recur record after record.
_normalized_phone = functools.lru_cache(maxsize=4096)(normalize_participant_phone)


def render(
    record: ArchiveRecord,
    media: Mapping[str, AttachmentPayload | bytes | None],
    *,
    default_region: str | None = None,
    replied_text: str | None = None,
    recapture: Recapture | None = None,
) -> RenderedItem:
    """Render ``record``; ``media`` maps attachment ids to their verified payloads (or bytes);
    None or absent: the media was never captured. ``replied_text``: the text of the record this one
    answers, when it is known. ``recapture``: the record is a later version of one archived before
    under the same id; the item takes the re-capture's own key and says so."""
    sender = participant_address(record.sender, default_region)
    recipients = tuple(participant_address(p, default_region) for p in record.recipients)
    attachments = rendered_attachments(record, media)
    chat = chat_label(record, recipients)
    subject = _subject(record, sender, chat)
    captured = isoformat_z(record.captured_at)
    facts = _facts(record, sender, recipients, chat, captured)
    if recapture is not None:
        facts.append(("Re-capture", recapture.note[0].upper() + recapture.note[1:]))
    content = content_lines(record, replied_text)
    listed = [attachment_facts(a) for a in attachments]  # the custody lines, in both bodies
    sent_at = record.sent_at
    key = recapture.key if recapture is not None else record_key(record.message_id)
    # Outlook threads on the topic exactly: the words items of this chat always had, no isolate.
    topic = single_line(strip_isolates(f"WhatsApp: {chat}"))
    return RenderedItem(
        # The id the mailbox finds the item by: a re-capture's must not find the earlier item.
        record_id=record.message_id if recapture is None else f"{record.message_id}#{recapture.key[-16:]}",
        record_key=key,
        subject=subject,
        sender=sender,
        recipients=recipients,
        sent_at=sent_at,
        received_at=sent_at,
        text_body=_text_body(facts, content, listed),
        html_body=_html_body(subject, facts, content, listed),
        attachments=attachments,
        message_id_header=f"<{key}@{SYNTHETIC_DOMAIN}>",
        conversation_topic=topic,
        extra_headers=(
            *_threading_headers(record, default_region),
            ("X-Archive-Item-Id", header_safe(record.message_id)),
            ("X-Archive-Source", record.source_type),
            ("X-Archive-Event", record.event),
            ("X-Archive-Message-Type", record.message_type),
            ("X-Archive-Captured-Time", captured),
            *((("X-Archive-Recapture-Of", recapture.of),) if recapture is not None else ()),
        ),
    )


def kind_label(record: ArchiveRecord) -> str:
    """What the record is, in a reviewer's words."""
    if record.message_type == "SYSTEM" and record.source != "telemessage":
        # TeleMessage's system records are group events; the Business Platform's are about a
        # customer's account (a new number or user id).
        return "system message"
    if record.message_type == "INTERACTIVE" and record.direction == "OUTGOING":
        return "interactive message"
    return KIND_LABELS[record.message_type]


def chat_key(record: ArchiveRecord, default_region: str | None = None) -> str:
    """The same for every record of one chat: the group's id, or for a 1:1 chat both people."""
    if record.dialog_group_id:
        return f"group:{record.dialog_group_id}"
    people = sorted({
        _normalized_phone(p.phone, default_region) or (p.email or "").lower()
        or (f"user:{p.user_id}" if p.user_id else "") or (p.name or "")
        for p in record.participants
    })
    return "direct:" + "|".join(people)


def _threading_headers(record: ArchiveRecord, default_region: str | None) -> tuple[tuple[str, str], ...]:
    return threading_headers(chat_key(record, default_region), record.message_time, record.reply_to_message_id)


def threading_headers(
    chat: str, message_time: int, reply_to_message_id: str | None = None,
) -> tuple[tuple[str, str], ...]:
    """Mail clients group a chat's items: every item refers to the same synthetic root message
    (References / In-Reply-To), a reply also to the record it answers, and Outlook's Thread-Index
    carries a GUID derived from the chat (Outlook groups conversations on it)."""
    digest = hashlib.sha256(chat.encode("utf-8")).digest()
    root = f"<chat-{digest[:16].hex()}@{SYNTHETIC_DOMAIN}>"
    references = [root]
    parent = root
    if reply_to_message_id:
        parent = f"<{record_key(reply_to_message_id)}@{SYNTHETIC_DOMAIN}>"
        references.append(parent)
    # Thread-Index: 1 reserved byte, the top 5 bytes of the FILETIME, then the conversation GUID.
    filetime = (message_time + 11_644_473_600_000) * 10_000
    index = b"\x01" + ((filetime >> 16) & 0xFF_FFFF_FFFF).to_bytes(5, "big") + digest[:16]
    return (
        ("References", " ".join(references)),
        ("In-Reply-To", parent),
        ("Thread-Index", base64.b64encode(index).decode("ascii")),
    )


def participant_address(participant: Participant, default_region: str | None = None) -> MailAddress:
    """The person as a mail address: their own when they have one, else a stable synthetic one."""
    fields = (participant.phone, participant.name, participant.email, participant.username, participant.user_id,
              participant.phone_number_id, default_region)
    if sum(map(len, filter(None, fields))) > _CACHED_UP_TO:
        return _participant_address(*fields)
    return _cached_participant_address(*fields)


def _participant_address(
    raw_phone: str | None, name: str | None, raw_email: str | None, username: str | None, user_id: str | None,
    phone_number_id: str | None, default_region: str | None,
) -> MailAddress:
    phone = _normalized_phone(raw_phone, default_region)
    # A name is a label, not evidence (the claim check keeps it whole): capped, so a megabyte of
    # "name" cannot make header folding crawl.
    cleaned = shorten(single_line(name), MAX_NAME_LENGTH) if name else ""
    # The name is isolated and the number forced left to right, so an Arabic or Hebrew name cannot
    # pull the brackets and the "+" into its run, whatever direction the reader's screen has.
    label_parts = [isolate(cleaned)] if cleaned else []
    platform_ids = _platform_ids(username, user_id, phone_number_id)
    if phone:
        label_parts.append(f"({ltr(phone)})")
    elif raw_phone:
        label_parts.append(f"({ltr(single_line(raw_phone))})")
    elif platform_ids:
        label_parts.append(f"({isolate(shorten(single_line(', '.join(platform_ids)), MAX_NAME_LENGTH))})")
    email = (raw_email or "").strip()
    if email and _SIMPLE_ADDRESS.match(email):
        address = email.lower()
    elif phone:
        address = f"{phone}@{SYNTHETIC_DOMAIN}"
    else:
        # No usable phone or address: a stable address derived from what the record says of them.
        seed = "|".join(str(v or "") for v in (raw_phone, raw_email, name, *platform_ids))
        address = f"unknown-{hashlib.sha256(seed.encode()).hexdigest()[:16]}@{SYNTHETIC_DOMAIN}"
    display = " ".join(label_parts) or address
    return MailAddress(display_name=display, address=address)


# The same few people recur record after record: each one's address is made once, from exactly
# the fields it is made of (one person's never stands for another's), in a bounded cache; a
# participant longer than people are is made each time, never held.
_CACHED_UP_TO = 1000  # characters of a participant's fields
_cached_participant_address = functools.lru_cache(maxsize=4096)(_participant_address)


def _platform_ids(username: str | None, user_id: str | None, phone_number_id: str | None) -> list[str]:
    """Who a participant without a phone is: a username user has only Meta's ids; a business
    number may be known by its Graph id alone."""
    ids: list[str] = []
    if username:
        ids.append(f"@{username}")
    if user_id:
        ids.append(f"user id {user_id}")
    if phone_number_id:
        ids.append(f"number id {phone_number_id}")
    return ids


def single_line(text: str) -> str:
    """Text fit for a header: control and bidi-override characters removed, whitespace folded."""
    cleaned = _CONTROL.sub(" ", unicodedata.normalize("NFC", text))
    return " ".join(cleaned.split())


def folded(text: str, limit: int) -> str:
    """A header made of parts already single_line'd and isolated: whitespace folded, shortened at a
    word, and whatever isolate the cut left open closed again."""
    return balanced(shorten(" ".join(text.split()), limit))


def header_safe(value: str) -> str:
    """Exact ids in headers: printable characters kept, anything else escaped visibly."""
    if value.isprintable():  # the usual id: nothing to escape
        return value
    return "".join(c if c.isprintable() and c not in "\r\n" else f"\\x{ord(c):02x}" for c in value)


def shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def sanitize_file_name(name: str, content_type: str | None, index: int) -> str:
    """A phone's file name made safe: no path, no control characters, never empty or hidden."""
    base = _PATH_SEPARATOR.split(name or "")[-1]
    base = single_line(base).strip(" .")
    base = _RESERVED_IN_FILE_NAMES.sub("_", base)
    if not base:
        extension = mimetypes.guess_extension(content_type or "") or ".bin"
        base = f"attachment-{index + 1}{extension}"
    if len(base) > MAX_FILE_NAME_LENGTH:
        stem, dot, extension = base.rpartition(".")
        if dot and len(extension) <= 10:
            base = stem[: MAX_FILE_NAME_LENGTH - len(extension) - 1] + "." + extension
        else:
            base = base[:MAX_FILE_NAME_LENGTH]
    return base


def _attachment(attachment: Attachment, content: AttachmentPayload | bytes | None, index: int) -> RenderedAttachment:
    content_type = (attachment.content_type or "").strip().lower()
    if not _CONTENT_TYPE.match(content_type):
        content_type = mimetypes.guess_type(attachment.file_name or "")[0] or "application/octet-stream"
    return RenderedAttachment(
        file_name=sanitize_file_name(attachment.file_name, content_type, index),
        content_type=content_type,
        declared_size=attachment.size if attachment.size_known else None,
        declared_sha256=attachment.sha256,
        payload=BytesPayload(content) if isinstance(content, bytes) else content,
    )


def _contact_attachment(contact: ContactCard, index: int) -> RenderedAttachment:
    data = vcard(contact)
    stem = single_line(contact.display_name or "") or f"contact-{index + 1}"
    sha256 = hashlib.sha256(data).hexdigest()
    return RenderedAttachment(
        file_name=sanitize_file_name(f"{stem}.vcf", "text/vcard", index),
        content_type="text/vcard",
        declared_size=len(data),
        declared_sha256=sha256,
        payload=BytesPayload(data, sha256),
        generated=True,
    )


def _json_attachment(name: str, text: str, index: int, origin: str) -> RenderedAttachment:
    data = text.encode("utf-8", "surrogatepass")
    sha256 = hashlib.sha256(data).hexdigest()
    return RenderedAttachment(
        file_name=sanitize_file_name(name, "application/json", index),
        content_type="application/json",
        declared_size=len(data),
        declared_sha256=sha256,
        payload=BytesPayload(data, sha256),
        generated=True,
        generated_from=origin,
    )


def chat_label(record: ArchiveRecord, recipients: tuple[MailAddress, ...]) -> str:
    if record.group_message or record.dialog_group_name:
        name = single_line(record.dialog_group_name or record.dialog_group_id or "unnamed group")
        return f"{isolate(name)} (group)"
    return ", ".join(r.display_name for r in recipients)


def _subject(record: ArchiveRecord, sender: MailAddress, chat: str) -> str:
    kind = kind_label(record)
    if record.message_type == "CALL" and record.call:
        call_kind = "video call" if record.call.call_type == "VIDEO" else "call"
        result = single_line(record.call.result or "").lower()
        kind = f"{call_kind} ({result})" if result and result != "answered" else call_kind
    subject = f"WhatsApp {kind} from {sender.display_name} to {chat}"
    if record.event == "DELETED":
        subject = f"DELETED – {subject}"
    elif record.event == "EDITED":
        subject = f"EDITED – {subject}"
    return folded(subject, MAX_SUBJECT_LENGTH)


def _facts(
    record: ArchiveRecord, sender: MailAddress, recipients: tuple[MailAddress, ...], chat: str, captured: str,
) -> list[tuple[str, str]]:
    facts = [
        ("Chat", chat),
    ]
    if record.dialog_group_id:
        facts.append(("Chat id", record.dialog_group_id))
    facts += [
        ("From", f"{sender.display_name} <{sender.address}>"),
        ("To", "; ".join(f"{r.display_name} <{r.address}>" for r in recipients)),
        ("Sent (UTC)", isoformat_z(record.sent_at)),
        ("Captured (UTC)", captured),
        ("Source", SOURCE_LABELS[record.source_type]),
        *((("Provenance", record.provenance),) if record.provenance else ()),
        *export_facts(record),
        ("Type", kind_label(record)),
        ("Event", record.event),
        ("Record id", record.message_id),
        *reference_facts(record),
    ]
    return facts


def export_facts(record: ArchiveRecord) -> list[tuple[str, str]]:
    """For a record read from a chat export: the zone its time was read in, the time as printed,
    and the file and lines it came from (the export has no zone: the time is the operator's word)."""
    origin = record.export
    if origin is None:
        return []
    facts = [("Time zone", f"{origin.time_zone} (the export's times were read as this zone's wall clock)")]
    if origin.local_time:
        facts.append(("Time as exported", origin.local_time + (
            f" (date order {origin.date_order}, assumed)" if origin.date_order_assumed else "")))
    if origin.time_note:
        facts.append(("Time note", origin.time_note))
    where = _line_span(origin.first_line, origin.last_line) if origin.first_line else "a file in the export"
    facts.append(("Export file", f"{isolate(origin.file_name)} (SHA-256 {origin.file_sha256}), {where}"))
    if origin.edited:
        facts.append(("Edited", "yes: the export holds only the final text"))
    return facts


def _line_span(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}–{last}"


def reference_facts(record: ArchiveRecord) -> list[tuple[str, str]]:
    """How the record relates to others: what it edits, deletes or reacts to, answers, forwards."""
    facts: list[tuple[str, str]] = []
    if record.related_message_id:
        facts.append(("Refers to record", record.related_message_id))
    if record.reply_to_message_id:
        facts.append(("In reply to record", record.reply_to_message_id))
    if record.frequently_forwarded:
        facts.append(("Forwarded", "many times"))
    elif record.forwarded:
        facts.append(("Forwarded", "yes"))
    return facts


def rendered_attachments(
    record: ArchiveRecord, media: Mapping[str, AttachmentPayload | bytes | None],
) -> tuple[RenderedAttachment, ...]:
    """The record's media (verified payloads, or missing), its contact cards as .vcf, then the JSON
    of an interactive reply (a Flow's answers are only readable there)."""
    attachments = tuple(_attachment(a, media.get(a.attachment_id), i) for i, a in enumerate(record.attachments))
    attachments += tuple(_contact_attachment(c, len(attachments) + i) for i, c in enumerate(record.contacts))
    interactive = record.interactive
    if interactive is not None and interactive.payload_json is not None:
        name = _INTERACTIVE_FILES.get(interactive.kind or "", "interactive.json")
        attachments += (_json_attachment(name, interactive.payload_json, len(attachments), "the interactive reply"),)
    return attachments


def content_lines(record: ArchiveRecord, replied_text: str | None = None) -> list[str]:
    """What happened, as lines of plain text: the event, the call, place, cards, reaction, text."""
    lines: list[str] = []
    if record.reply_to_message_id and replied_text:
        lines.append(f"In reply to: “{isolate(shorten(replied_text, 300))}”")
    if record.event == "EDITED":
        lines.append(f"The message {record.related_message_id or '(unknown)'} was edited. New text:")
    if record.event == "DELETED":
        scope = {"FOR_EVERYONE": "for everyone", "FOR_ME": "for the sender only"}.get(
            record.deletion.scope if record.deletion and record.deletion.scope else "", "(scope unknown)"
        )
        when = (
            isoformat_z(epoch_ms_to_datetime(record.deletion.deleted_time))
            if record.deletion and record.deletion.deleted_time is not None else "(time unknown)"
        )
        lines.append(f"The message {record.related_message_id or '(unknown)'} was deleted {scope} at {when}.")
        if record.text_content:
            lines.append("Original content as captured:")
    if record.call:
        call = record.call
        direction = {"INCOMING": ", incoming", "OUTGOING": ", outgoing"}.get(record.direction or "", "")
        lines.append(
            f"{'Video' if call.call_type == 'VIDEO' else 'Voice'} call{direction}, "
            f"{(call.result or 'result unknown').lower()}"
        )
        if call.start_time is not None:
            lines.append(f"Started: {isoformat_z(epoch_ms_to_datetime(call.start_time))}")
        if call.end_time is not None:
            lines.append(f"Ended: {isoformat_z(epoch_ms_to_datetime(call.end_time))}")
        if call.duration_seconds is not None:
            lines.append(f"Duration: {call.duration_seconds} s")
    if record.location:
        loc = record.location
        if loc.name:
            lines.append(f"Location: {isolate(loc.name)}")
        if loc.address:
            lines.append(f"Address: {isolate(loc.address)}")
        if loc.latitude is not None and loc.longitude is not None:
            lines.append(f"Coordinates: {loc.latitude:.6f}, {loc.longitude:.6f}")
            lines.append(
                f"Map: https://www.openstreetmap.org/?mlat={loc.latitude:.6f}&mlon={loc.longitude:.6f}"
            )
    for contact in record.contacts:
        details = ", ".join([*map(ltr, contact.phones), *contact.emails])
        name = isolate(contact.display_name) if contact.display_name else "(no name)"
        lines.append(f"Contact card: {name}" + (f" – {details}" if details else ""))
    if record.reaction is not None:
        emoji = record.reaction.emoji
        target = record.related_message_id or "(unknown)"
        lines.append(f"Reacted {emoji} to message {target}" if emoji else f"Removed a reaction from {target}")
    if record.system:
        heading = "Group event" if record.source == "telemessage" else "System message"
        lines.append(f"{heading}: {_SYSTEM_EVENTS[record.system.event_type or 'OTHER']}")
        if record.system.description:
            lines.append(record.system.description)
    lines += _platform_lines(record)
    if record.text_content:
        lines.append(record.text_content)
    if record.export is not None and record.export.raw:
        # The lines exactly as the export holds them (marks, the edited marker, the time as printed): the
        # text above is read from them, this is what was read.
        lines += ["", f"As exported ({_line_span(record.export.first_line, record.export.last_line)} of the file):",
                  record.export.raw]
    return lines


def _platform_lines(record: ArchiveRecord) -> list[str]:
    """What only the Business Platform says: taps and forms, orders, ads, Meta's errors."""
    lines = _interactive_lines(record.interactive) if record.interactive else []
    if record.order:
        lines += _order_lines(record.order)
    if record.referred_product:
        product = record.referred_product
        lines.append(
            f"Asked about catalogue item {product.product_retailer_id or '(unknown)'} "
            f"(catalogue {product.catalog_id or 'unknown'})"
        )
    if record.referral:
        lines += _referral_lines(record.referral)
    if record.message_type == "UNSUPPORTED":
        what = f" (type: {record.unsupported_type})" if record.unsupported_type else ""
        # Meta explains what it withheld with an error; without one the type is merely new to us.
        lines.append(
            f"WhatsApp did not deliver this message's content{what}." if record.platform_errors
            else f"This message is of a kind the archive does not read yet{what}."
        )
        lines.append("The message as received is attached as JSON.")
    if record.message_type == "MEDIA_PLACEHOLDER":
        lines.append(
            "A media file was shared here (chat history import). WhatsApp sends the file itself only for the "
            "14 days before onboarding, as a separate message; when it does, the file is archived as its own "
            f"item, record {record.related_message_id or '(unknown)'}."
        )
    for error in record.platform_errors:
        said = " – ".join(part for part in (error.title, error.message, error.details) if part)
        code = f" {error.code}" if error.code is not None else ""
        lines.append(f"WhatsApp reported error{code}: {said or '(no description)'}")
    return lines


def _interactive_lines(reply: InteractiveReply) -> list[str]:
    quoted = f"“{isolate(reply.title)}”" if reply.title else "(no title)"
    reply_id = f" (id {reply.reply_id})" if reply.reply_id else ""
    if reply.kind == "button_reply":
        lines = [f"Tapped the reply button {quoted}{reply_id}"]
    elif reply.kind == "list_reply":
        described = f" – {isolate(reply.description)}" if reply.description else ""
        lines = [f"Chose the list item {quoted}{described}{reply_id}"]
    elif reply.kind == "template_button":
        lines = [f"Tapped the template button {quoted} (payload {reply.reply_id or 'none'})"]
    elif reply.kind == "template":
        language = f" (language {reply.description})" if reply.description else ""
        lines = [f"Sent the message template {quoted}{language}. WhatsApp showed its approved wording with "
                 "these values filled in:" if reply.body else f"Sent the message template {quoted}{language}."]
    elif reply.kind == "nfm_reply":
        form = ("an address form" if reply.flow_name == "address_message"
                else f"the form “{isolate(reply.flow_name or 'flow')}”")
        lines = [f"Submitted {form}"]
    else:
        lines = [f"Interactive message ({reply.kind or 'type unknown'})" + (f": {quoted}" if reply.title else "")]
    if reply.body:
        lines.append(reply.body)
    if reply.payload_json is not None:
        lines.append("The template as sent is attached as JSON." if reply.kind == "template"
                     else "The response JSON is attached.")
    return lines


def _order_lines(order: Order) -> list[str]:
    lines = [f"Order from catalogue {order.catalog_id or '(unknown)'}, {len(order.items)} item(s):"]
    totals: dict[str, Decimal] = {}
    for item in order.items:
        quantity = _number(item.quantity)
        price = _number(item.item_price)
        currency = item.currency or ""
        priced = f" at {price} {currency}".rstrip() if price is not None else ""
        lines.append(f"- {quantity if quantity is not None else '?'} × {item.product_retailer_id or '(no id)'}{priced}")
        if quantity is not None and price is not None:
            totals[currency] = totals.get(currency, Decimal(0)) + Decimal(quantity) * Decimal(price)
    lines += [f"Total: {total} {currency}".rstrip() for currency, total in sorted(totals.items())]
    return lines


def _number(value: float | None) -> str | None:
    """A quantity or price as written: 2, not 2.0; exact decimals, not binary fractions."""
    if value is None:
        return None
    return format(Decimal(repr(float(value))).normalize(), "f")


def _referral_lines(referral: Referral) -> list[str]:
    source = referral.source_type or "ad"
    lines = [f"Started from a Click-to-WhatsApp {source}"
             + (f": “{isolate(referral.headline)}”" if referral.headline else "")]
    lines += [text for text in (referral.body,) if text]
    for label, value in (
        ("Ad link", referral.source_url), ("Ad id", referral.source_id), ("Ad media", referral.image_url
         or referral.video_url), ("Welcome message", referral.welcome_text), ("Click id", referral.ctwa_clid),
    ):
        if value:
            lines.append(f"{label}: {value}")
    return lines


def attachment_facts(attachment: RenderedAttachment) -> str:
    if attachment.generated:
        state = f"generated from {attachment.generated_from}"
    else:
        state = "MEDIA NOT CAPTURED" if attachment.missing else "SHA-256 verified"
    size = f"{attachment.declared_size} bytes" if attachment.declared_size is not None else "size not declared"
    return (
        f"{isolate(attachment.file_name)} ({attachment.content_type}, {size}, "
        f"SHA-256 {attachment.declared_sha256 or 'not provided'}) – {state}"
    )


def _text_body(facts: list[tuple[str, str]], content: list[str], attachments: list[str]) -> str:
    """``attachments``: each attachment's custody line (``attachment_facts``)."""
    out = [f"{name}: {value}" for name, value in facts]
    out.append("")
    out.extend(content or ["(no text)"])
    if attachments:
        out.append("")
        out.append("Attachments:")
        out.extend(f"- {line}" for line in attachments)
    return "\n".join(out) + "\n"


def escape_all(texts: list[str]) -> list[str]:
    """``[html.escape(t) for t in texts]`` in one pass over them all: joined by a character escaping
    leaves alone (unless one of them holds it), escaped, split again."""
    joined = "\x00".join(texts)
    if joined.count("\x00") != len(texts) - 1:
        return [html.escape(text) for text in texts]
    return html.escape(joined).split("\x00")


# Facts whose whole value is an id, a time or a count: laid out left to right whatever the reader's
# screen does, with no character added (ids are searched exactly).
LTR_FACTS = frozenset({
    "Chat id", "Sent (UTC)", "Captured (UTC)", "Record id", "Refers to record", "In reply to record",
    "First (UTC)", "Last (UTC)", "Transcript id", "Part", "Records",
})
_ADDRESS = re.compile(r"&lt;([^\s&<>]+@[^\s&<>]+)&gt;")
_CONTENT_LINE = "<p dir=\"auto\" style=\"white-space:pre-wrap\">{}</p>"


def html_fact_rows(facts: list[tuple[str, str]], escaped: list[str]) -> str:
    """The facts as table rows; ``escaped``: their labels and values, HTML-escaped, in order. Isolates
    become elements, and an address in angle brackets is laid out left to right (as an element, so
    the address's text stays exactly what a search looks for)."""
    rows: list[str] = []
    for (label, _), name, value in zip(facts, escaped[0::2], escaped[1::2], strict=True):
        if label in LTR_FACTS:
            rows.append(f"<tr><th align=\"left\">{name}</th><td dir=\"ltr\">{value}</td></tr>")
        else:
            cell = _fact_cell(value) if len(value) <= _CACHED_UP_TO else _fact_cell.__wrapped__(value)
            rows.append(f"<tr><th align=\"left\">{name}</th><td>{cell}</td></tr>")
    return "".join(rows)


# The same people and chats recur record after record: a cell is converted once (bounded cache).
@functools.lru_cache(maxsize=4096)
def _fact_cell(escaped: str) -> str:
    return _ADDRESS.sub(r'&lt;<bdi dir="ltr">\1</bdi>&gt;', to_html(escaped))


def html_paragraphs(escaped: list[str]) -> str:
    """Content lines, HTML-escaped, as paragraphs that take their direction from their own text
    (an Arabic message reads right to left on its own lines)."""
    return "".join(_CONTENT_LINE.format(to_html(line)) for line in escaped)


def html_list_items(escaped: list[str]) -> str:
    return "".join(f"<li>{to_html(line)}</li>" for line in escaped)


def _html_body(subject: str, facts: list[tuple[str, str]], content: list[str], attachments: list[str]) -> str:
    """``attachments``: each attachment's custody line (``attachment_facts``)."""
    lines = content or ["(no text)"]
    escaped = escape_all([subject, *itertools.chain.from_iterable(facts), *lines, *attachments])
    cells_end = 1 + 2 * len(facts)
    lines_end = cells_end + len(lines)
    rows = html_fact_rows(facts, escaped[1:cells_end])
    body = html_paragraphs(escaped[cells_end:lines_end])
    listed = ""
    if attachments:
        listed = f"<h4>Attachments</h4><ul>{html_list_items(escaped[lines_end:])}</ul>"
    # The title keeps the subject's isolate characters: an element cannot stand in a title.
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
        f"<title>{escaped[0]}</title></head><body>"
        f"<table>{rows}</table><hr>{body}{listed}</body></html>"
    )
