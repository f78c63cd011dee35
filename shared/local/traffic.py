"""A deterministic "realistic day of WhatsApp traffic", as TeleMessage would archive it.

The demo, the local TeleMessage server and the tests all feed on this. It is built to hit every
awkward corner the connector must survive (every message type and event, late deliveries,
right-to-left text, literal markup, hostile file names, an attachment over the item size limit,
media that was never captured, people who map through e-mail, through the CSV, through both or
not at all) while still reading like a day at a small trading desk.

Same anchor and seed give byte-identical output. Attachment bytes are derived from the seed and
the attachment id on demand, so a 12 MB video costs nothing until someone downloads it.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.domain.window import Window, utc

SOURCE_TYPES = ("WHATSAPP_ARCHIVER", "WHATSAPP_CLOUD_ARCHIVER")
# Small files travel inline (base64 in the record); anything larger only by attachmentId.
INLINE_LIMIT = 48 * 1024
HUGE_ATTACHMENT_SIZE = 12 * 1024 * 1024
LARGE_ATTACHMENT_SIZE = 5 * 1024 * 1024
DOMAIN = "contoso.example"

_SECOND = 1000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_FILLER_PER_SCALE = 260

# Leading bytes of each format so that a downloaded "image" at least smells like one to a viewer.
MEDIA_MAGIC = {
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "image/webp": b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    "video/mp4": b"\x00\x00\x00\x18ftypmp42",
    "audio/mpeg": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "audio/ogg; codecs=opus": b"OggS\x00\x02\x00\x00",
    "application/pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": b"PK\x03\x04\x14\x00\x06\x00",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": b"PK\x03\x04\x14\x00\x06\x00",
}

_KINDS = {
    # kind: (content type, WhatsApp file-name prefix, extension)
    "jpeg": ("image/jpeg", "IMG", "jpg"),
    "sticker": ("image/webp", "STK", "webp"),
    "mp4": ("video/mp4", "VID", "mp4"),
    "mp3": ("audio/mpeg", "AUD", "mp3"),
    "opus": ("audio/ogg; codecs=opus", "PTT", "opus"),
    "pdf": ("application/pdf", "DOC", "pdf"),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "DOC", "xlsx"),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "DOC", "docx"),
}


@dataclass(frozen=True)
class Person:
    """Someone on the roster, with everything the mapping logic may (or may not) find about them."""

    key: str
    phone: str  # canonical E.164
    employee: bool
    first_name: str | None = None
    last_name: str | None = None
    display_name: str | None = None
    email: str | None = None  # the "User's Email address" property TeleMessage sends
    captured_phone: str | None = None  # the number as TeleMessage captured it, when not E.164
    csv_phone: str | None = None  # the number as a person typed it into the mapping CSV
    csv_email: str | None = None
    source_type: str | None = None  # employees: which capture product their phone uses

    @property
    def name(self) -> str:
        full = " ".join(part for part in (self.first_name, self.last_name) if part)
        return full or self.display_name or self.phone

    def participant(self) -> dict[str, Any]:
        """The participant object as TeleMessage sends it (a fresh dict every time)."""
        value: dict[str, Any] = {"phone": self.captured_phone or self.phone}
        # Employees without the property simply lack the key; externals carry an explicit null.
        if self.email is not None or not self.employee:
            value["email"] = self.email
        value["firstName"] = self.first_name
        value["lastName"] = self.last_name
        if self.display_name is not None:
            value["displayName"] = self.display_name
        return value


def _roster() -> tuple[Person, ...]:
    def mail(local: str) -> str:
        return f"{local}@{DOMAIN}"

    return (
        # Mapped automatically through the e-mail property.
        Person("amelia", "+447700900101", True, "Amelia", "Hughes", email=mail("amelia.hughes"),
               source_type="WHATSAPP_ARCHIVER"),
        Person("jose", "+447700900102", True, "José", "Núñez", email=mail("jose.nunez"),
               csv_phone="+44 7700 900102", csv_email=mail("jose.nunez"),
               source_type="WHATSAPP_CLOUD_ARCHIVER"),
        Person("priya", "+12025550110", True, "Priya", "Raman", email=mail("priya.raman"),
               source_type="WHATSAPP_ARCHIVER"),
        # Mapped only through the CSV: no e-mail property at all.
        Person("siobhan", "+447700900123", True, "Siobhán", "Ní Bhriain",
               csv_phone="+44 (0)7700 900123", csv_email=mail("siobhan.nibhriain"),
               source_type="WHATSAPP_CLOUD_ARCHIVER"),
        Person("lukasz", "+447700900124", True, "Łukasz", "Wiśniewski",
               csv_phone="0044 7700 900124", csv_email="Lukasz.Wisniewski@Contoso.example",
               source_type="WHATSAPP_ARCHIVER"),
        Person("ayse", "+447700900125", True, "Ayşe", "Yılmaz", captured_phone="+44 7700 900125",
               csv_phone="07700-900-125", csv_email=mail("ayse.yilmaz"),
               source_type="WHATSAPP_CLOUD_ARCHIVER"),
        # An e-mail property whose address has no mailbox, and a CSV row that must win over it.
        Person("marcus", "+447700900126", True, "Marcus", "Webb", email=mail("m.webb"),
               csv_phone="+44 7700 900 126", csv_email=mail("marcus.webb"),
               source_type="WHATSAPP_CLOUD_ARCHIVER"),
        Person("danielle", "+12025550143", True, "Danielle", "O'Connor",
               csv_phone="001 (202) 555-0143", csv_email=mail("danielle.oconnor"),
               source_type="WHATSAPP_CLOUD_ARCHIVER"),
        # Nobody can map these two: no property and no CSV row; a CSV row whose mailbox is gone.
        Person("henrik", "+447700900127", True, "Henrik", "Løvås", source_type="WHATSAPP_ARCHIVER"),
        Person("olivia", "+447700900128", True, "Olivia", "Grant",
               csv_phone="+447700900128", csv_email=mail("olivia.grant"),
               source_type="WHATSAPP_CLOUD_ARCHIVER"),
        # Customers and counterparties: phone, no e-mail.
        Person("fatima", "+447700900201", False, "فاطمة", "الصالح", display_name="Fatima Al-Saleh",
               captured_phone="447700900201"),
        Person("yael", "+447700900202", False, "יעל", "כהן", captured_phone="+44 7700 900202"),
        Person("bjorn", "+447700900203", False, "Björn", "Svensson"),
        Person("zoe", "+447700900204", False, "Zoë", "Ångström"),
        Person("chen", "+12025550177", False, display_name="陈静 Chen Jing"),
        Person("kwame", "+12025550191", False, "Kwame", "Mensah", display_name="Kwame (Mensah Logistics)"),
        Person("unnamed", "+12025550188", False),
    )


# Mailboxes that exist in the tenant, spelled as the tenant spells them (lower case; the CSV's
# mixed-case spelling must still match). m.webb and olivia.grant deliberately have none.
_MAILBOXES = tuple(
    f"{local}@{DOMAIN}"
    for local in (
        "amelia.hughes", "jose.nunez", "priya.raman", "siobhan.nibhriain", "lukasz.wisniewski",
        "ayse.yilmaz", "marcus.webb", "danielle.oconnor", "compliance", "it.helpdesk",
    )
)


@dataclass(frozen=True)
class _Media:
    size: int
    content_type: str
    captured: bool


@dataclass
class TrafficDay:
    """One generated day: the records, their attachment bytes, the people, the mapping inputs."""

    anchor: datetime
    seed: int
    records: list[dict[str, Any]]
    people: tuple[Person, ...]
    labels: dict[str, str]  # a name for each showcase record -> its messageId
    _media: dict[str, _Media] = field(repr=False)

    @property
    def window(self) -> Window:
        """A capture-time window that holds every record of the day."""
        return Window(self.anchor - timedelta(hours=24), self.anchor)

    def attachment_bytes(self, attachment_id: str) -> bytes | None:
        """The attachment's bytes, or None for media never captured (or an id this day never used)."""
        media = self._media.get(attachment_id)
        if media is None or not media.captured:
            return None
        return _media_bytes(self.seed, attachment_id, media.size, media.content_type)

    def attachment_ids(self) -> list[str]:
        return list(self._media)

    def person(self, key: str) -> Person:
        for person in self.people:
            if person.key == key:
                return person
        raise KeyError(key)

    def record(self, label: str) -> dict[str, Any]:
        message_id = self.labels[label]
        return next(r for r in self.records if r["messageId"] == message_id)

    def mapping_csv(self) -> str:
        """The custom user-mapping CSV an administrator would upload, numbers typed by hand."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["PhoneNumber", "EmailAddress"])
        for person in self.people:
            if person.csv_phone is not None:
                writer.writerow([person.csv_phone, person.csv_email])
        return buffer.getvalue()

    def directory(self) -> list[str]:
        """Addresses that have an Exchange Online mailbox."""
        return sorted(_MAILBOXES)

    def expected_mailbox(self, person: Person) -> str | None:
        """Where a correct mapping sends this person's records: the CSV first, then the property."""
        mailboxes = {address.lower(): address for address in self.directory()}
        for address in (person.csv_email, person.email):
            if address and address.lower() in mailboxes:
                return mailboxes[address.lower()]
        return None

    def write_jsonl(self, path: str | Path, *, inline_all: bool = True) -> int:
        return write_jsonl(path, self.records, self.attachment_bytes, inline_all=inline_all)


def write_jsonl(
    path: str | Path,
    records: Iterable[dict[str, Any]],
    attachment_bytes: Callable[[str], bytes | None],
    *,
    inline_all: bool = True,
) -> int:
    """Write one record per line; with ``inline_all`` every captured attachment's bytes go inline.

    Media that was never captured stays without ``content``, exactly as the API would give it.
    Returns the number of records written. Records are written one at a time so the 12 MB video
    is the most that is ever held in memory.
    """
    count = 0
    with Path(path).open("w", encoding="utf-8", newline="\n") as out:
        for record in records:
            if inline_all and record.get("attachments"):
                record = dict(record)
                attachments = []
                for attachment in record["attachments"]:
                    if attachment.get("content") is None:
                        data = attachment_bytes(attachment["attachmentId"])
                        if data is not None:
                            attachment = {**attachment, "content": base64.b64encode(data).decode("ascii")}
                    attachments.append(attachment)
                record["attachments"] = attachments
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            # Line separators are legal raw inside JSON strings but split lines for str.splitlines().
            line = line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
            out.write(line + "\n")
            count += 1
    return count


def _media_bytes(seed: int, attachment_id: str, size: int, content_type: str) -> bytes:
    digest = hashlib.sha256(f"{seed}\x00{attachment_id}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:16], "big"))
    magic = MEDIA_MAGIC.get(content_type, b"")[:size]
    return magic + rng.randbytes(size - len(magic))


@dataclass
class _Chat:
    owner: Person
    members: tuple[Person, ...]  # includes the owner
    group_id: str | None = None
    group_name: str | None = None

    @property
    def source_type(self) -> str:
        return str(self.owner.source_type)


class _Clock:
    """Ascending capture times for one scripted conversation, seconds to minutes apart."""

    def __init__(self, rng: random.Random, start: int, end: int) -> None:
        self._rng = rng
        self._now = start
        self._end = end

    def __call__(self, min_gap: int = 2 * _SECOND, max_gap: int = 4 * _MINUTE) -> int:
        self._now += self._rng.randint(min_gap, max_gap)
        if self._now >= self._end:
            raise AssertionError("scripted conversation ran past its time budget")
        return self._now


class _Builder:
    def __init__(self, anchor: datetime, seed: int, people: tuple[Person, ...]) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        anchor_us = (utc(anchor) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        # Rounded inwards, so an anchor with sub-millisecond digits still bounds every record.
        self.lo = -(-anchor_us // 1000) - _DAY + _MINUTE
        self.hi = anchor_us // 1000 - _MINUTE  # exclusive
        self.p = {person.key: person for person in people}
        self.records: list[dict[str, Any]] = []
        self.media: dict[str, _Media] = {}
        self.labels: dict[str, str] = {}
        self._ids: set[str] = set()
        self._file_counter = 0
        self._date_tag = (utc(anchor) - timedelta(hours=12)).strftime("%Y%m%d")

    # -- identifiers and times ---------------------------------------------------------------
    def message_id(self, source_type: str) -> str:
        while True:
            if source_type == "WHATSAPP_CLOUD_ARCHIVER":
                raw = self.rng.randbytes(24)
                candidate = "wamid." + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
            else:
                candidate = "3EB0" + self.rng.randbytes(8).hex().upper()
            if candidate not in self._ids:
                self._ids.add(candidate)
                return candidate

    def group_id(self) -> str:
        return f"120363{self.rng.randrange(10**11, 10**12)}@g.us"

    def clock(self, budget: int = 3 * _HOUR) -> _Clock:
        start = self.rng.randrange(self.lo, self.hi - budget)
        return _Clock(self.rng, start, self.hi)

    # -- records -----------------------------------------------------------------------------
    def record(
        self,
        chat: _Chat,
        sender: Person,
        archived: int,
        *,
        message_type: str = "TEXT",
        text: str | None = None,
        event: str = "CREATED",
        reply_to: dict[str, Any] | None = None,
        related: dict[str, Any] | str | None = None,
        forwarded: bool = False,
        attachments: Iterable[dict[str, Any]] = (),
        message_time: int | None = None,
        label: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        if message_time is None:
            message_time = archived - self.rng.randint(300, 9 * _SECOND)
        related_id = related["messageId"] if isinstance(related, dict) else related
        record: dict[str, Any] = {
            "messageId": self.message_id(chat.source_type),
            "sourceType": chat.source_type,
            "event": event,
            "messageType": message_type,
            "messageTime": message_time,
            "archivedTime": archived,
            "direction": "OUTGOING" if sender.key == chat.owner.key else "INCOMING",
            "owner": chat.owner.participant(),
            "sender": sender.participant(),
            "recipients": [m.participant() for m in chat.members if m.key != sender.key],
            "groupMessage": chat.group_id is not None,
            "dialogGroupId": chat.group_id,
            "dialogGroupName": chat.group_name,
            "textContent": text,
            "replyToMessageId": reply_to["messageId"] if reply_to else None,
            "relatedMessageId": related_id,
            "forwarded": forwarded,
            "attachments": list(attachments),
        }
        record.update(extra)
        self.records.append(record)
        if label is not None:
            self.labels[label] = record["messageId"]
        return record

    def attachment(
        self,
        kind: str,
        size: int,
        *,
        file_name: str | None = None,
        captured: bool = True,
    ) -> dict[str, Any]:
        content_type, prefix, extension = _KINDS[kind]
        attachment_id = "att_" + self.rng.randbytes(12).hex()
        if file_name is None:
            self._file_counter += 1
            file_name = f"{prefix}-{self._date_tag}-WA{self._file_counter:04d}.{extension}"
        data = _media_bytes(self.seed, attachment_id, size, content_type)
        meta: dict[str, Any] = {
            "attachmentId": attachment_id,
            "fileName": file_name,
            "contentType": content_type,
            "size": size,
            # WhatsApp's own media metadata carries the hash, so even uncaptured media has one.
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        if captured and size <= INLINE_LIMIT:
            meta["content"] = base64.b64encode(data).decode("ascii")
        self.media[attachment_id] = _Media(size, content_type, captured)
        return meta

    def small(self, kind: str, low: int = 3 * 1024, high: int = 45 * 1024, **kw: Any) -> dict[str, Any]:
        return self.attachment(kind, self.rng.randint(low, high), **kw)

    def call(self, chat: _Chat, caller: Person, archived: int, call_type: str, result: str,
             duration: int = 0, label: str | None = None) -> dict[str, Any]:
        ring = self.rng.randint(3, 25) * _SECOND
        start = archived - duration * _SECOND - ring - self.rng.randint(1, 4) * _SECOND
        end = start + ring + duration * _SECOND
        info = {
            "callType": call_type,
            "result": result,
            "startTime": start,
            "endTime": end,
            "durationSeconds": duration if result == "ANSWERED" else 0,
        }
        return self.record(chat, caller, archived, message_type="CALL", message_time=start,
                           call=info, label=label)

    def system(self, chat: _Chat, actor: Person, archived: int, event_type: str, description: str,
               label: str | None = None) -> dict[str, Any]:
        return self.record(chat, actor, archived, message_type="SYSTEM",
                           system={"eventType": event_type, "description": description}, label=label)

    def reaction(self, chat: _Chat, who: Person, archived: int, target: dict[str, Any], emoji: str,
                 label: str | None = None) -> dict[str, Any]:
        return self.record(chat, who, archived, message_type="REACTION", related=target,
                           reaction={"emoji": emoji}, label=label)

    def edit(self, chat: _Chat, original: dict[str, Any], archived: int, text: str,
             label: str | None = None) -> dict[str, Any]:
        sender = self.p[_key_of(self, original["sender"])]
        return self.record(chat, sender, archived, event="EDITED", message_type=original["messageType"],
                           related=original, text=text, label=label)

    def delete(self, chat: _Chat, original: dict[str, Any] | None, sender: Person, archived: int,
               scope: str, *, repeat_content: bool, related_id: str | None = None,
               label: str | None = None) -> dict[str, Any]:
        deleted_time = archived - self.rng.randint(500, 5 * _SECOND)
        return self.record(
            chat, sender, archived, event="DELETED",
            message_type=original["messageType"] if original else "TEXT",
            related=original["messageId"] if original else related_id,
            text=original["textContent"] if original and repeat_content else None,
            attachments=original["attachments"] if original and repeat_content else (),
            message_time=deleted_time,
            deletion={"scope": scope, "deletedTime": deleted_time},
            label=label,
        )


def _key_of(builder: _Builder, participant: dict[str, Any]) -> str:
    for person in builder.p.values():
        if participant.get("phone") in (person.phone, person.captured_phone):
            return person.key
    raise KeyError(participant.get("phone"))


_FILLER_TEXTS = (
    "Morning! Are we still on for 10:30?",
    "Can you send me the latest term sheet?",
    "Sent. Let me know if anything looks off.",
    "Price moved 3 bps since this morning, still want to proceed?",
    "Yes, go ahead at that level 👍",
    "Give me 5 min, on another call",
    "Confirmed. Booking now.",
    "Thanks!",
    "Can we push the meeting to Thursday?",
    "Client wants 2,500 units by end of month",
    "I'll check with compliance and come back to you",
    "👍🏽",
    "Running 10 mins late, sorry 🚆",
    "Do you have the invoice number?",
    "INV-2024-0457",
    "Perfect, thank you 🙏",
    "Lunch? 🍣",
    "Quote attached, valid until Friday",
    "Who's covering the desk this afternoon?",
    "Noted.",
    "Please call me when you're free",
    "Shipment left the warehouse at 14:05 📦",
    "Can you double-check the account number before we wire?",
    "Happy birthday!! 🎉🎂",
    "ok",
    "The order #4471 — الطلب جاهز للشحن",
    "תודה רבה! נדבר מחר",
    "Vielen Dank für die schnelle Rückmeldung",
    "5 < 7 and 9 > 3 & \"quotes\" 'too'",
    "Sending the family pic 👨‍👩‍👧 from the weekend",
    "Bid 101.25 / offer 101.40 for 5mm",
    "Let's take this offline",
    "See below\nLine two\r\nLine three",
)

_CAPTIONS = (
    "Whiteboard from today", "Delivery note", "Signed copy", "📸", None, None, "Screenshot of the quote",
)


def generate_day(anchor: datetime, *, seed: int = 7, scale: int = 1) -> TrafficDay:
    """A day of captured WhatsApp traffic whose archivedTimes fall in [anchor - 24h + 1 min, anchor - 1 min).

    ``scale`` multiplies the everyday chatter (for benchmarks); the showcase records that cover
    every corner case, including the single 12 MB attachment, appear exactly once.
    """
    if scale < 1:
        raise ValueError("scale must be at least 1")
    people = _roster()
    b = _Builder(anchor, seed, people)
    _showcase(b)
    _filler(b, scale)
    b.records.sort(key=lambda r: (r["archivedTime"], r["messageId"]))
    return TrafficDay(anchor=utc(anchor), seed=seed, records=b.records, people=people,
                      labels=b.labels, _media=b.media)


def _showcase(b: _Builder) -> None:
    p = b.p
    _customer_chat(b, p)
    _hebrew_chat(b, p)
    _project_group(b, p)
    _sales_group(b, p)
    _late_delivery(b, p)
    _unmapped(b, p)


def _customer_chat(b: _Builder, p: dict[str, Person]) -> None:
    amelia, fatima = p["amelia"], p["fatima"]
    chat = _Chat(amelia, (amelia, fatima))
    t = b.clock()
    hello = b.record(chat, fatima, t(), text="مرحبا أميليا، هل وصلت الشحنة؟ 📦", label="rtl_arabic")
    b.record(chat, amelia, t(), text="Yes — arrived this morning ✅", reply_to=hello, label="reply")
    photo = b.record(chat, fatima, t(), message_type="IMAGE", text="صورة الفاتورة",
                     attachments=[b.small("jpeg", 18 * 1024, 40 * 1024)], label="inline_image")
    b.reaction(chat, amelia, t(), photo, "❤️", label="reaction")
    b.reaction(chat, amelia, t(), photo, "", label="reaction_removed")
    b.record(chat, fatima, t(), message_type="DOCUMENT", text=None,
             attachments=[b.attachment("pdf", 640 * 1024 + 17, file_name="../../etc/x.pdf")],
             label="path_file_name")
    b.record(chat, fatima, t(), message_type="LOCATION",
             location={"latitude": 51.50330, "longitude": -0.11960, "name": "County Hall",
                       "address": "Westminster Bridge Rd, London SE1 7PB"}, label="location")
    original = b.record(chat, amelia, t(), text="Delivery on Tuesday at 9", label="edit_original")
    b.edit(chat, original, t(), "Delivery on Wednesday at 9 (Tuesday is a bank holiday)", label="edited")
    b.call(chat, fatima, t(5 * _MINUTE, 15 * _MINUTE), "VOICE", "ANSWERED", duration=312,
           label="call_answered")
    b.record(chat, amelia, t(),
             text="Summary:\r\n- 40 units\r\n- delivery Wednesday\nThanks, Amelia", label="crlf_text")
    b.system(chat, fatima, t(), "SECURITY_CODE_CHANGED",
             "Your security code with Fatima Al-Saleh changed", label="system_security_code")


def _hebrew_chat(b: _Builder, p: dict[str, Person]) -> None:
    jose, yael, kwame = p["jose"], p["yael"], p["kwame"]
    chat = _Chat(jose, (jose, yael))
    t = b.clock()
    b.record(chat, yael, t(), text="שלום חוסה, מתי הפגישה?", label="rtl_hebrew")
    b.record(chat, jose, t(), text="<script>alert(1)</script> — that is what the form showed me 🙃",
             label="script_text")
    b.record(chat, jose, t(), text="Tom &amp; Jerry Ltd <b>invoice</b> &lt;draft&gt;", label="entity_text")
    b.record(chat, yael, t(), message_type="VOICE_NOTE",
             attachments=[b.small("opus", 8 * 1024, 30 * 1024)], label="voice_note")
    b.record(chat, jose, t(), message_type="AUDIO", text="Recording of the call",
             attachments=[b.attachment("mp3", 1_843_200 + b.rng.randint(0, 999))], label="audio")
    b.call(chat, yael, t(), "VOICE", "MISSED", label="call_missed")
    b.call(chat, yael, t(), "VIDEO", "REJECTED", label="call_rejected")
    b.call(chat, jose, t(2 * _MINUTE, 10 * _MINUTE), "VIDEO", "ANSWERED", duration=95, label="video_call")
    b.call(chat, jose, t(), "VOICE", "CANCELLED", label="call_cancelled")
    b.record(chat, yael, t(), message_type="CONTACT",
             contacts=[{"displayName": kwame.display_name, "phones": ["+1 202-555-0191"],
                        "emails": ["kwame@mensah-logistics.example"], "organization": "Mensah Logistics"}],
             label="contact")
    b.record(chat, jose, t(), message_type="STICKER", attachments=[b.small("sticker", 8 * 1024, 30 * 1024)],
             label="sticker")
    regret = b.record(chat, yael, t(), text="My personal account is 12-34-56 / 87654321")
    b.delete(chat, regret, yael, t(), "FOR_EVERYONE", repeat_content=True, label="deleted_for_everyone")
    # The original was sent (and deleted) before this day's window: only the deletion is here.
    b.delete(chat, None, yael, t(), "FOR_EVERYONE", repeat_content=False,
             related_id="3EB0" + b.rng.randbytes(8).hex().upper(), label="deleted_unknown_original")


def _project_group(b: _Builder, p: dict[str, Person]) -> None:
    priya, amelia, siobhan, bjorn, unnamed = p["priya"], p["amelia"], p["siobhan"], p["bjorn"], p["unnamed"]
    members = (priya, amelia, siobhan, bjorn, unnamed)
    chat = _Chat(priya, members, b.group_id(), "Aurora")
    t = b.clock(5 * _HOUR)
    b.system(chat, priya, t(), "GROUP_CREATED", "Priya Raman created group \"Aurora\"",
             label="system_created")
    b.system(chat, priya, t(), "PARTICIPANT_ADDED", "Priya Raman added Björn Svensson",
             label="system_added")
    chat.group_name = "Project Aurora 🚀"
    b.system(chat, priya, t(), "SUBJECT_CHANGED",
             "Priya Raman changed the subject from \"Aurora\" to \"Project Aurora 🚀\"",
             label="system_subject")
    b.system(chat, siobhan, t(), "ICON_CHANGED", "Siobhán Ní Bhriain changed this group's icon",
             label="system_icon")
    kickoff = b.record(chat, priya, t(), text="Welcome all 👋 Kick-off notes to follow.", label="group_text")
    b.reaction(chat, bjorn, t(), kickoff, "👍", label="group_reaction")
    b.record(chat, siobhan, t(), message_type="IMAGE", text="Site photos",
             attachments=[b.small("jpeg"), b.small("jpeg")], label="album")
    b.record(chat, bjorn, t(), message_type="VIDEO", text="Walkthrough from the plant", forwarded=True,
             attachments=[b.attachment("mp4", LARGE_ATTACHMENT_SIZE + 4321)], label="large_attachment")
    b.record(chat, amelia, t(), message_type="VIDEO", text="Full drone footage (long!)",
             attachments=[b.attachment("mp4", HUGE_ATTACHMENT_SIZE)], label="huge_attachment")
    b.record(chat, siobhan, t(), message_type="DOCUMENT", text="Draft contract",
             attachments=[b.attachment("pdf", 210 * 1024 + 3, file_name="Contract\x1b[31m draft.pdf")],
             label="control_char_file_name")
    b.record(chat, bjorn, t(), message_type="DOCUMENT",
             attachments=[b.attachment("xlsx", 96 * 1024 + 11, file_name="")], label="empty_file_name")
    b.record(chat, unnamed, t(), message_type="IMAGE", text="photo of the meter",
             attachments=[b.attachment("jpeg", 734 * 1024 + 5, captured=False)], label="missing_media")
    quoted = b.record(chat, bjorn, t(), text="Budget is capped at €1.2m incl. VAT")
    b.record(chat, priya, t(), text="Noted — I'll reflect that in the plan", reply_to=quoted,
             label="group_reply")
    b.record(chat, siobhan, t(), text="FYI from the supplier: \"prices rise 4% from Q3\"", forwarded=True,
             label="forwarded_text")
    mine = b.record(chat, priya, t(), message_type="IMAGE", text="Wrong chat, sorry",
                    attachments=[b.small("jpeg")])
    b.delete(chat, mine, priya, t(), "FOR_ME", repeat_content=True, label="deleted_for_me_with_content")
    oops = b.record(chat, priya, t(), text="ignore")
    b.delete(chat, oops, priya, t(), "FOR_ME", repeat_content=False, label="deleted_for_me")
    b.system(chat, unnamed, t(), "PARTICIPANT_LEFT", "+1 202-555-0188 left", label="system_left")
    chat.members = (priya, amelia, siobhan, bjorn)
    b.system(chat, priya, t(), "PARTICIPANT_REMOVED", "Priya Raman removed Björn Svensson",
             label="system_removed")
    chat.members = (priya, amelia, siobhan)
    b.record(chat, amelia, t(), text="Big file is in the group, ping me if it does not open")


def _sales_group(b: _Builder, p: dict[str, Person]) -> None:
    marcus, lukasz, ayse, amelia, chen = p["marcus"], p["lukasz"], p["ayse"], p["amelia"], p["chen"]
    chat = _Chat(marcus, (marcus, lukasz, ayse, amelia, chen), b.group_id(), "فريق المبيعات – EMEA")
    t = b.clock()
    b.record(chat, marcus, t(), text="Targets for this week attached", label="csv_wins",
             attachments=[b.attachment("xlsx", 61 * 1024 + 7)])
    b.record(chat, lukasz, t(), text="Dzięki! Zaczynam od klientów w Gdańsku 🇵🇱")
    b.record(chat, ayse, t(), text="Teşekkürler, İstanbul ofisi hazır ✔️")
    typo = b.record(chat, chen, t(), text="我们下周二见 — meeting Tues 10am")
    b.edit(chat, typo, t(), "我们下周三见 — meeting Wed 10am")
    b.system(chat, chen, t(), "NUMBER_CHANGED", "陈静 Chen Jing changed their phone number to a new number")
    b.system(chat, ayse, t(), "OTHER", "Disappearing messages were turned off", label="system_other")
    b.record(chat, amelia, t(), message_type="DOCUMENT", text="Price list v7",
             attachments=[b.attachment("docx", 1_200_000 + b.rng.randint(0, 99_999))])


def _late_delivery(b: _Builder, p: dict[str, Person]) -> None:
    # Siobhán's phone was offline for days; when it reconnected TeleMessage captured the backlog
    # in one burst, several records in the very same millisecond.
    siobhan, zoe = p["siobhan"], p["zoe"]
    chat = _Chat(siobhan, (siobhan, zoe))
    burst = b.rng.randrange(b.lo + _HOUR, b.hi - _HOUR)
    backlog = [
        (zoe, "Are you around this week?"),
        (siobhan, "Travelling, signal is terrible 🏔️"),
        (zoe, "No rush, whenever you're back"),
        (siobhan, "Back Monday, will call"),
    ]
    sent = sorted(b.rng.randint(_DAY + _HOUR, 3 * _DAY - _HOUR) for _ in backlog)[::-1]
    for index, ((sender, text), late_by) in enumerate(zip(backlog, sent, strict=True)):
        archived = burst + (0 if index < 2 else index)
        b.record(chat, sender, archived, text=text, message_time=archived - late_by,
                 label="late_delivery" if index == 0 else None)


def _unmapped(b: _Builder, p: dict[str, Person]) -> None:
    henrik, olivia, kwame, unnamed = p["henrik"], p["olivia"], p["kwame"], p["unnamed"]
    chat = _Chat(henrik, (henrik, kwame))
    t = b.clock()
    b.record(chat, kwame, t(), text="Henrik, the trucks are at gate 4", label="unmapped")
    b.record(chat, henrik, t(), text="On my way")
    b.record(chat, kwame, t(), message_type="IMAGE", attachments=[b.small("jpeg")])
    chat = _Chat(olivia, (olivia, unnamed))
    t = b.clock()
    b.record(chat, unnamed, t(), text="Is this still Olivia's number?", label="csv_without_mailbox")
    b.record(chat, olivia, t(), text="Yes, but I'm leaving Friday — please use the desk line")


def _filler(b: _Builder, scale: int) -> None:
    p = b.p
    rates = _Chat(p["priya"], (p["priya"], p["danielle"], p["marcus"], p["kwame"]), b.group_id(),
                  "Desk – Rates 🇬🇧🇺🇸")
    chats = [
        (_Chat(p["amelia"], (p["amelia"], p["kwame"])), 14),
        (_Chat(p["amelia"], (p["amelia"], p["jose"])), 12),
        (_Chat(p["jose"], (p["jose"], p["zoe"])), 10),
        (_Chat(p["priya"], (p["priya"], p["unnamed"])), 8),
        (_Chat(p["siobhan"], (p["siobhan"], p["fatima"])), 9),
        (_Chat(p["lukasz"], (p["lukasz"], p["bjorn"])), 8),
        (_Chat(p["ayse"], (p["ayse"], p["chen"])), 8),
        (_Chat(p["marcus"], (p["marcus"], p["yael"])), 7),
        (_Chat(p["danielle"], (p["danielle"], p["kwame"])), 8),
        (rates, 14),
        (_Chat(p["henrik"], (p["henrik"], p["zoe"])), 2),
    ]
    total_weight = sum(weight for _, weight in chats)
    for chat, weight in chats:
        count = max(1, round(_FILLER_PER_SCALE * scale * weight / total_weight))
        _chatter(b, chat, count)


def _session_times(b: _Builder, count: int) -> list[int]:
    times: list[int] = []
    while len(times) < count:
        size = min(count - len(times), b.rng.randint(3, 20))
        t = b.clock(size * 5 * _MINUTE)
        times.extend(t(3 * _SECOND, 5 * _MINUTE) for _ in range(size))
    return sorted(times)


def _chatter(b: _Builder, chat: _Chat, count: int) -> None:
    rng = b.rng
    history: list[dict[str, Any]] = []
    for archived in _session_times(b, count):
        sender = rng.choice(chat.members)
        roll = rng.random()
        texts = [r for r in history if r["messageType"] == "TEXT" and r["event"] == "CREATED"]
        own_texts = [r for r in texts if r["sender"]["phone"] in (sender.phone, sender.captured_phone)]
        reactable = [r for r in history
                     if r["event"] == "CREATED" and r["messageType"] not in ("REACTION", "CALL")]
        if roll < 0.68 or (0.90 <= roll < 0.95 and not reactable):
            reply_to = rng.choice(history[-6:]) if history and rng.random() < 0.15 else None
            record = b.record(chat, sender, archived, text=rng.choice(_FILLER_TEXTS), reply_to=reply_to,
                              forwarded=rng.random() < 0.03)
        elif roll < 0.78:
            record = b.record(chat, sender, archived, message_type="IMAGE", text=rng.choice(_CAPTIONS),
                              attachments=[b.small("jpeg", 6 * 1024, 45 * 1024)])
        elif roll < 0.81:
            record = b.record(chat, sender, archived, message_type="IMAGE", text=rng.choice(_CAPTIONS),
                              attachments=[b.attachment("jpeg", rng.randint(60 * 1024, 900 * 1024))])
        elif roll < 0.84:
            kind = rng.choice(("pdf", "xlsx", "docx"))
            record = b.record(chat, sender, archived, message_type="DOCUMENT",
                              attachments=[b.attachment(kind, rng.randint(50 * 1024, 2 * 1024 * 1024))])
        elif roll < 0.88:
            record = b.record(chat, sender, archived, message_type="VOICE_NOTE",
                              attachments=[b.small("opus", 5 * 1024, 40 * 1024)])
        elif roll < 0.90:
            record = b.record(chat, sender, archived, message_type="STICKER",
                              attachments=[b.small("sticker", 8 * 1024, 30 * 1024)])
        elif roll < 0.95 and reactable:
            record = b.reaction(chat, sender, archived, rng.choice(reactable[-5:]),
                                rng.choice(("👍", "❤️", "😂", "🙏", "👍🏽")))
        elif roll < 0.97 and own_texts:
            original = own_texts[-1]
            record = b.edit(chat, original, archived, original["textContent"] + " ✏️")
        elif roll < 0.98 or not own_texts:
            other = rng.choice([m for m in chat.members if m.key != sender.key])
            record = b.call(chat, other if rng.random() < 0.5 else sender, archived, "VOICE", "ANSWERED",
                            duration=rng.randint(20, 900))
        else:
            record = b.delete(chat, own_texts[-1], sender, archived, "FOR_EVERYONE", repeat_content=True)
        history.append(record)


def iter_attachments(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every attachment object of every record, in record order."""
    for record in records:
        yield from record.get("attachments") or ()
