"""A parsed chat export becomes canonical records: who wrote each line, when, and its id.

Why it is built this way:
- **Once only.** A record's id is derived from the chat (the custodian and the chat's name), the
  author, the instant to the minute (Android exports have no seconds; iOS ones do), the text, and
  the line's occurrence among identical lines of that minute — so the same export imported again,
  or a later export of the same chat overlapping the first, yields the same ids for the same lines
  (the importer then skips them as duplicates), while two "ok"s in one minute stay two records.
  A line that changed between exports (deleted, edited, media left out in one export and attached
  in the other) has another text, so it is another record: both versions are kept, never merged.
- **Time.** The export shows the phone's wall clock and no zone; the operator names the zone. A
  time the clocks skipped (spring forward) is read with the offset before the change; a time they
  showed twice (fall back) is read as the first occurrence unless the file's order says the second
  has begun. Either way the record says so (``export.time_note``). Messages keep the file's order.
- **People.** The custodian is always a participant (the owner of the phone, and so of every
  chat), by email. An author becomes an employee by the participants table (name as the chat shows
  it → email) or, shown as a number, through the phone → email mapping like any other source;
  everyone else is an external participant shown by name.
- **Nothing dropped.** Lines before the first message become one "unparsed text" record; files in
  the zip that no line names become records of their own.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from shared.domain.chat_export import ExportMessage, ParsedChat
from shared.domain.records import (
    ArchiveRecord,
    Attachment,
    CallInfo,
    Deletion,
    ExportOrigin,
    LocationInfo,
    MessageType,
    Participant,
    SystemEvent,
)

SOURCE = "whatsapp-chat-export"
SOURCE_TYPE = "WHATSAPP_CHAT_EXPORT"
ID_PREFIX = "wa-export"
MAX_RECIPIENTS = 1024  # the record's limit: a larger chat keeps its first 1,024 people and says so

_MARKS = re.compile(r"[\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\u061c]")
_PHONE_AUTHOR = re.compile(r"^\+?[\d\s\u00a0\u202f().-]{7,24}$")
_KIND_TYPES: dict[str, MessageType] = {
    "image": "IMAGE", "video": "VIDEO", "gif": "VIDEO", "audio": "AUDIO", "voice_note": "VOICE_NOTE",
    "sticker": "STICKER", "document": "DOCUMENT", "contact": "CONTACT",
}
_IOS_FILE_TIME = re.compile(r"^\d{8}-[A-Z]+-(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})")
_ANDROID_FILE_DAY = re.compile(r"^[A-Z]{3}-(\d{4})(\d{2})(\d{2})-WA\d{4}")
_CONTENT_TYPES = {
    ".opus": "audio/ogg", ".webp": "image/webp", ".vcf": "text/vcard", ".m4a": "audio/mp4", ".aac": "audio/aac",
}


@dataclass(frozen=True)
class MediaFile:
    """A file of the export's zip, stored where the importer reads attachments (``attachment_id``)."""

    name: str
    attachment_id: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ExportContext:
    custodian: str  # the employee whose phone it was, by email (lower case)
    time_zone: str  # IANA
    chat_name: str
    file_name: str
    file_sha256: str
    captured_at: datetime  # when the export was imported: the records' capture time
    participants: Mapping[str, str] = field(default_factory=dict[str, str])  # author as the chat shows it → email
    custodian_names: frozenset[str] = frozenset()  # author strings that are the custodian
    transcript_sha256: str | None = None
    media: Mapping[str, MediaFile] = field(default_factory=dict[str, MediaFile])  # zip member name → stored file
    date_order_assumed: bool = False


@dataclass(frozen=True)
class ExportRecord:
    record: ArchiveRecord
    first_line: int
    last_line: int
    kind: str
    notes: tuple[str, ...] = ()  # what the report says beside the item: "<code>: why" (media missing, a DST time)


@dataclass(frozen=True)
class ExportRecords:
    """What an export becomes: the counts at once, the records one at a time (``iter_records``). A
    record is a validated model of some kilobytes: 100,000 of them at once would hold most of an
    instance's memory, so the import takes each in turn and lets it go."""

    count: int
    media_attached: int
    media_missing: tuple[tuple[int, str], ...]  # (line, file name) a line names but the zip lacks
    media_unreferenced: tuple[str, ...]
    group: bool
    chat_id: str
    make: Callable[[], Iterator[ExportRecord]] = field(repr=False, compare=False)

    def iter_records(self) -> Iterator[ExportRecord]:
        return self.make()

    @property
    def records(self) -> tuple[ExportRecord, ...]:
        """All of them at once: for inspection and small exports."""
        return tuple(self.make())


def normalized_name(value: str) -> str:
    """An author or chat name as compared: marks removed, spaces plain, case folded, NFC."""
    text = unicodedata.normalize("NFC", _MARKS.sub("", value)).replace("\u00a0", " ").replace("\u202f", " ")
    return " ".join(text.split()).casefold()


def chat_id(custodian: str, chat_name: str) -> str:
    return hashlib.sha256(f"chat-export\0{custodian.lower()}\0{normalized_name(chat_name)}".encode()).hexdigest()[:32]


def build_records(parsed: ParsedChat, context: ExportContext) -> ExportRecords:
    zone = ZoneInfo(context.time_zone)
    chat = chat_id(context.custodian, context.chat_name)
    captured_ms = _ms(context.captured_at)
    authors = [m.author for m in parsed.messages if m.author is not None]
    chat_key = normalized_name(context.chat_name)
    # iOS signs a group's notices with the group's name; in a 1:1 chat the chat is named after the other
    # person, who signs notices too but also writes. An author named like the chat who wrote nothing
    # but WhatsApp's notices is the group itself, not a person.
    chat_named = [m for m in parsed.messages if m.author is not None and normalized_name(m.author) == chat_key]
    notices_only = bool(chat_named) and all(m.generated and m.kind == "system" for m in chat_named)
    writers = {normalized_name(a) for a in authors} - {chat_key} if notices_only else {
        normalized_name(a) for a in authors}
    custodian_keys = {normalized_name(n) for n in context.custodian_names} | {
        normalized_name(k) for k, v in context.participants.items() if v.strip().lower() == context.custodian}
    others = writers - custodian_keys
    group = len(others) >= 2 or (notices_only and len(others) >= 1)
    people = _People(context, group_name=context.chat_name if notices_only and group else None)
    for author in authors:
        people.participant(author)
    seen: Counter[tuple[str, str, str]] = Counter()
    referenced: set[str] = set()
    missing: list[tuple[int, str]] = []
    previous: datetime | None = None
    keyed: list[tuple[ExportMessage, datetime, str | None, tuple[str, str, str], int]] = []
    for message in parsed.messages:
        instant, time_note = resolve_local_time(message.local_time, zone, previous)
        previous = instant
        author_key = normalized_name(message.author) if message.author is not None else ""
        # The minute the line was written in: its instant, except in an hour the clocks repeated, where
        # two exports may resolve one wall-clock time to two instants (one cut inside the hour cannot
        # tell which pass it is in): there the wall clock itself, in the zone.
        if time_note and time_note.startswith("time_ambiguous"):
            minute = f"local:{message.local_time.replace(second=0).isoformat()}@{zone.key}"
        else:
            minute = instant.replace(second=0, microsecond=0).isoformat()
        text_key = _text_key(message.text)
        if message.media_file is not None:
            # A line naming a file is another record with the file than without it (a text-only
            # export read before the zip): the media must never be skipped as already archived.
            stored_file = context.media.get(message.media_file)
            text_key += "\0media:" + (stored_file.sha256 if stored_file is not None else "missing")
            if stored_file is not None:
                referenced.add(message.media_file)
            else:
                missing.append((message.first_line, message.media_file))
        key = (author_key, minute, text_key)
        keyed.append((message, instant, time_note, key, seen[key]))
        seen[key] += 1
    edge_minutes: set[str] = {keyed[0][3][1], keyed[-1][3][1]} if keyed else set()
    unreferenced = tuple(sorted(name for name in context.media if name not in referenced))
    last_time = previous or context.captured_at
    attached = sum(1 for message, *_ in keyed if message.media_file in referenced)

    def make() -> Iterator[ExportRecord]:
        if parsed.preamble is not None:
            yield _preamble_record(parsed, context, people, chat, group, captured_ms)
        for message, instant, time_note, key, occurrence in keyed:
            yield _message_record(message, instant, time_note, key, occurrence, repeated=seen[key],
                                  at_edge=key[1] in edge_minutes, context=context, parsed=parsed, people=people,
                                  chat=chat, group=group, captured_ms=captured_ms)
        for name in unreferenced:
            yield _unreferenced_record(context.media[name], context, parsed, people, chat, group, captured_ms,
                                       zone, last_time)

    count = len(keyed) + (parsed.preamble is not None) + len(unreferenced)
    return ExportRecords(count, attached, tuple(missing), unreferenced, group, chat, make)


def _message_record(
    message: ExportMessage, instant: datetime, time_note: str | None, key: tuple[str, str, str], occurrence: int,
    *, repeated: int, at_edge: bool, context: ExportContext, parsed: ParsedChat, people: _People, chat: str,
    group: bool, captured_ms: int,
) -> ExportRecord:
    notes = [note for note in (time_note, message.clock_note) if note]
    if repeated > 1 and at_edge:
        # An export is cut at its ends (WhatsApp keeps the most recent messages): identical lines in a
        # minute the cut may have split are matched to another export's by their position in the minute.
        notes.append(f"repeated_at_edge: {repeated} identical lines in the file's first or last minute; "
                     "an export of the same chat cut inside that minute counts them differently")
    digest = hashlib.sha256("\0".join((chat, *key, str(occurrence))).encode()).hexdigest()
    attachments: list[Attachment] = []
    if message.media_file is not None:
        stored = context.media.get(message.media_file)
        if stored is not None:
            attachments.append(_attachment(stored))
        else:
            notes.append(f"media_missing: the line names {message.media_file}, which the export does not hold")
    sender = people.participant(message.author) if message.author is not None else people.system
    record = ArchiveRecord(
        message_id=f"{ID_PREFIX}:{chat[:16]}:{digest[:32]}",
        source_type=SOURCE_TYPE, source=SOURCE,
        event="DELETED" if message.kind == "deleted" else "CREATED",
        message_type=_message_type(message),
        message_time=_ms(instant), archived_time=captured_ms,
        direction="OUTGOING" if sender.email == context.custodian else "INCOMING",
        owner=people.custodian, sender=sender,
        recipients=people.recipients_of(sender, context.chat_name, group),
        group_message=group,
        dialog_group_id=f"export-{chat}" if group else None,
        dialog_group_name=context.chat_name if group else None,
        # A system line's text is its description; a media line's, its caption.
        text_content=message.caption if message.media_file is not None
        else None if message.kind == "system" else message.text,
        deletion=Deletion() if message.kind == "deleted" else None,
        attachments=attachments,
        call=CallInfo(call_type=message.call_type, result="MISSED") if message.kind == "call" else None,
        location=LocationInfo(
            latitude=message.location.latitude, longitude=message.location.longitude, name=message.location.name,
        ) if message.location is not None else None,
        system=SystemEvent(event_type="OTHER", description=message.text) if message.kind == "system" else None,
        unsupported_type="exported as a placeholder (view-once, not yet received or unsupported)"
        if message.kind == "placeholder" else None,
        export=_origin(context, parsed, message.first_line, message.last_line, message.raw,
                       local_time=message.header,
                       time_note="; ".join(n for n in (time_note, message.clock_note) if n) or None,
                       author=message.author, occurrence=occurrence, edited=message.edited),
    )
    return ExportRecord(record, message.first_line, message.last_line, message.kind, tuple(notes))


def resolve_local_time(local: datetime, zone: ZoneInfo, previous: datetime | None) -> tuple[datetime, str | None]:
    """The instant a wall-clock time stands for, and a note when the zone's clocks made it doubtful."""
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) != local:
        offset = local.replace(tzinfo=zone, fold=0).utcoffset() or timedelta()
        return first, (f"time_nonexistent: {local.isoformat(sep=' ')} does not exist in {zone.key} (the clocks "
                       f"went forward); read with the offset before the change, {_offset(offset)}")
    if first == second:
        return first, None
    # Repeated hour: the earlier instant, unless the file has already passed it.
    chosen, which = (second, "second") if previous is not None and previous > first else (first, "first")
    offset = chosen.astimezone(zone).utcoffset() or timedelta()
    return chosen, (f"time_ambiguous: {local.isoformat(sep=' ')} occurs twice in {zone.key} (the clocks went back);"
                    f" read as the {which} occurrence, {_offset(offset)}, by the file's order")


def _offset(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _text_key(text: str) -> str:
    """The text as compared across exports: marks and odd spaces do not make another message."""
    plain = unicodedata.normalize("NFC", _MARKS.sub("", text))
    return "\n".join(" ".join(line.split()) for line in plain.split("\n"))


_OTHER_TYPES: dict[str, MessageType] = {
    "system": "SYSTEM", "location": "LOCATION", "call": "CALL", "placeholder": "UNSUPPORTED",
}


def _message_type(message: ExportMessage) -> MessageType:
    if message.kind in ("media", "contact"):
        return _KIND_TYPES.get(message.media_kind or "document", "DOCUMENT")
    return _OTHER_TYPES.get(message.kind, "TEXT")


def _attachment(stored: MediaFile) -> Attachment:
    return Attachment(
        attachment_id=stored.attachment_id, file_name=stored.name, content_type=content_type(stored.name),
        size=stored.size, sha256=stored.sha256,
    )


def content_type(name: str) -> str:
    suffix = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _origin(context: ExportContext, parsed: ParsedChat, first: int, last: int, raw: str | None, *,
            local_time: str | None = None, time_note: str | None = None, author: str | None = None,
            occurrence: int = 0, edited: bool = False) -> ExportOrigin:
    return ExportOrigin(
        file_name=context.file_name[:500], file_sha256=context.file_sha256,
        transcript_sha256=context.transcript_sha256, first_line=first, last_line=last,
        time_zone=context.time_zone, local_time=local_time, time_note=time_note, date_order=parsed.date_order,
        date_order_assumed=parsed.date_order_assumed, author_as_printed=author, occurrence=occurrence,
        chat_name=context.chat_name, edited=edited, raw=raw,
    )


def _preamble_record(parsed: ParsedChat, context: ExportContext, people: _People, chat: str, group: bool,
                     captured_ms: int) -> ExportRecord:
    preamble = parsed.preamble
    assert preamble is not None
    digest = hashlib.sha256(f"{chat}\0preamble\0{_text_key(preamble.raw)}".encode()).hexdigest()
    first_time = _ms(resolve_local_time(parsed.messages[0].local_time, ZoneInfo(context.time_zone), None)[0]) \
        if parsed.messages else captured_ms
    record = ArchiveRecord(
        message_id=f"{ID_PREFIX}:{chat[:16]}:unparsed:{digest[:32]}", source_type=SOURCE_TYPE, source=SOURCE,
        message_type="SYSTEM", message_time=first_time, archived_time=captured_ms, owner=people.custodian,
        sender=people.system, recipients=people.recipients_of(people.system, context.chat_name, group),
        group_message=group, dialog_group_id=f"export-{chat}" if group else None,
        dialog_group_name=context.chat_name if group else None, text_content=preamble.raw,
        system=SystemEvent(event_type="OTHER", description="unparsed text: lines before the first message that "
                                                           "could not be read as a message, kept verbatim"),
        export=_origin(context, parsed, preamble.first_line, preamble.last_line, preamble.raw),
    )
    return ExportRecord(record, preamble.first_line, preamble.last_line, "unparsed",
                        ("unparsed: text before the first message, kept as its own record",))


def _unreferenced_record(stored: MediaFile, context: ExportContext, parsed: ParsedChat, people: _People,
                         chat: str, group: bool,
                         captured_ms: int, zone: ZoneInfo, last_time: datetime) -> ExportRecord:
    moment = _file_time(stored.name, zone) or last_time
    kind = {"PHOTO": "image", "IMG": "image", "VIDEO": "video", "VID": "video", "AUDIO": "audio", "AUD": "audio",
            "PTT": "voice_note", "STICKER": "sticker", "STK": "sticker", "GIF": "gif"}
    token = re.match(r"^(?:\d{8}-)?([A-Z]+)-", stored.name)
    media_kind = "contact" if stored.name.lower().endswith(".vcf") else kind.get(token.group(1) if token else "",
                                                                                  "document")
    # The name with the bytes: two files of the same content under two names are two items.
    digest = hashlib.sha256(f"{stored.name}\0{stored.sha256}".encode()).hexdigest()
    record = ArchiveRecord(
        message_id=f"{ID_PREFIX}:{chat[:16]}:file:{digest[:32]}", source_type=SOURCE_TYPE, source=SOURCE,
        message_type=_KIND_TYPES[media_kind], message_time=_ms(moment), archived_time=captured_ms,
        owner=people.custodian, sender=people.unknown_sender,
        recipients=people.recipients_of(people.unknown_sender, context.chat_name, group), group_message=group,
        dialog_group_id=f"export-{chat}" if group else None,
        dialog_group_name=context.chat_name if group else None,
        text_content="A file in the export that no line of the chat names (kept so that nothing is dropped).",
        attachments=[_attachment(stored)],
        export=_origin(context, parsed, 0, 0, None),
    )
    return ExportRecord(record, 0, 0, "media_unreferenced",
                        (f"media_unreferenced: {stored.name} is in the export but no line names it",))


def _file_time(name: str, zone: ZoneInfo) -> datetime | None:
    """The time a media file's name carries (iOS: to the second; Android: the day it was stored)."""
    try:
        if found := _IOS_FILE_TIME.match(name):
            parts = [int(p) for p in found.groups()]
            return datetime(*parts, tzinfo=zone).astimezone(UTC)
        if found := _ANDROID_FILE_DAY.match(name):
            year, month, day = (int(p) for p in found.groups())
            return datetime(year, month, day, tzinfo=zone).astimezone(UTC)
    except ValueError:
        return None
    return None


class _People:
    """The chat's participants, each made once: the custodian, employees by name or number, externals."""

    def __init__(self, context: ExportContext, *, group_name: str | None = None) -> None:
        self._context = context
        self._group = normalized_name(group_name) if group_name else None
        self._names = {normalized_name(k): v.strip().lower() for k, v in context.participants.items()}
        self._custodian_names = {normalized_name(n) for n in context.custodian_names}
        self._custodian_names |= {k for k, v in self._names.items() if v == context.custodian}
        self.custodian = Participant(email=context.custodian)
        self.system = Participant(display_name="WhatsApp (system message in the export)")
        self.unknown_sender = Participant(display_name="Unknown sender (file in the export)")
        self._by_key: dict[str, Participant] = {}
        self._order: list[str] = []

    def key(self, author: str) -> str:
        return "custodian" if self.is_custodian(author) else normalized_name(author)

    def is_group(self, author: str) -> bool:
        return self._group is not None and normalized_name(author) == self._group

    def is_custodian(self, author: str) -> bool:
        return normalized_name(author) in self._custodian_names

    def participant(self, author: str) -> Participant:
        key = self.key(author)
        known = self._by_key.get(key)
        if known is not None:
            return known
        if key == "custodian":
            made = Participant(email=self._context.custodian, display_name=author)
        elif self.is_group(author):
            made = Participant(display_name=f"{author} (the group, as its notices are signed)")
            self._by_key[key] = made
            return made
        elif (email := self._names.get(key)) is not None:
            made = Participant(email=email, display_name=author)
        elif _PHONE_AUTHOR.match(author) and sum(c.isdigit() for c in author) >= 7:
            digits = "".join(c for c in author if c.isdigit())
            made = Participant(phone=("+" if author.lstrip().startswith("+") else "") + digits)
        else:
            made = Participant(display_name=author)
        self._by_key[key] = made
        if key != "custodian":
            self._order.append(key)
        return made

    def recipients_of(self, sender: Participant, chat_name: str, group: bool) -> list[Participant]:
        everyone = [self._by_key[key] for key in self._order]
        people = [self.custodian, *everyone]
        recipients = [p for p in people if p is not sender and not (p.email and p.email == sender.email)]
        if not group and len(everyone) == 0 and chat_name:
            # A 1:1 chat whose other person never wrote: the chat is named after them.
            recipients.append(Participant(display_name=chat_name))
        if not recipients:
            recipients = [Participant(display_name=chat_name or "the chat")]
        return recipients[:MAX_RECIPIENTS]
