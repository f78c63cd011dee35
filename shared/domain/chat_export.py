"""WhatsApp's "Export chat" text, read as phones really write it: pure, bytes in, messages out.

The format is not specified by WhatsApp; it follows the phone's platform, region, clock and language
settings and changes between app versions (``../shared/reference/whatsapp-chat-export.md`` collects
what has been observed). So the reader is built on a few observations rather than a list of formats:

- A message starts with a timestamp header; every other line continues the message before it
  (blank lines too). The header is matched permissively — brackets or none, any of ``/ . -`` in the
  date, a connecting word (``à``, ``klo``), dots or colons in the time, a 12-hour marker in any
  spelling and on either side of the time, ``-``/en dash/``:``/``]`` before the author — on a copy
  of the line with bidi marks removed and the odd spaces (U+202F, U+00A0) made plain. The body is
  cut from the original line, so the archive keeps every character as the phone wrote it.
- The date's order is one per file, decided from all its dates (a 4-digit component is the year; a
  first or second component over 12 is the day; within one year the month never goes back). A file
  whose dates never decide it needs the operator's word (``date_order``), and the result says so.
- Nothing is dropped: lines before the first message are kept as a preamble, and a line shaped like
  a header that is no real date stays with the message before it; both are counted as unparsed.
- What a body is (a system notice, media attached or left out, a deleted or edited message, a poll,
  a location, a contact card, a missed call) is read from its shape and from WhatsApp's own phrases;
  iOS marks the text it generates with a leading LRM/RLM, which is the strongest sign there is.

Calendars other than the Gregorian one (Buddhist era years, Japanese era names) are refused rather
than guessed: converting them would be an interpretation an archive must not make silently.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Required, TypedDict

from shared.domain.records import CallType, DateOrder

DATE_ORDERS: tuple[DateOrder, ...] = ("dmy", "mdy", "ymd")

_MARKS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff\u061c")
_SPACES = frozenset("\u202f\u00a0\u2009\u2007\u2002\u2003")
_DIGITS = {**{chr(0x0660 + i): str(i) for i in range(10)}, **{chr(0x06F0 + i): str(i) for i in range(10)}}
_GENERATED = ("\u200e", "\u200f")

_AM = frozenset({"上午", "午前", "오전", "ص"})
_PM = frozenset({"下午", "午後", "오후", "م"})
_WORD_MARKERS = "上午|下午|午前|午後|오전|오후"
_TIME = (
    r"(?:(?P<{p}pre>" + _WORD_MARKERS + r")\s?)?"
    r"(?P<{p}h>\d{{1,2}})[:.](?P<{p}m>\d{{2}})(?:[:.](?P<{p}s>\d{{2}}))?\.?"
    r"(?:\s?(?P<{p}ampm>[AaPp]\.?\s?[Mm]\.?|ص|م|" + _WORD_MARKERS + r"))?"
)
_DATE = r"(?P<d1>\d{1,4})(?P<sep>[./-])\s?(?P<d2>\d{1,2})(?P=sep)\s?(?P<d3>\d{1,4})\.?"
# Date then time (every form but one), or time then date inside brackets (Vietnamese iOS).
_HEADER = re.compile(
    r"^(?P<open>\[)?\s?" + _DATE
    + r"(?:\s*,\s*|\s+)(?:(?:à|klo|um|kl\.)\s+)?" + _TIME.format(p="")
    + r"(?P<end>(?(open)\]\s?|(?:\s?[-\u2013\u2014]\s|:\s)))"
)
_HEADER_TIME_FIRST = re.compile(r"^\[\s?" + _TIME.format(p="") + r",\s*" + _DATE + r"\]\s?")
_ERA_HEADER = re.compile(r"^\[?\s?\d{1,2}/\d{1,2}/(?:\d{4}\s?BE|[MTSHR]\d{1,2}),?\s+\d{1,2}[:.]\d{2}")

_EDITED_PHRASES = (
    "This message was edited", "Diese Nachricht wurde bearbeitet.", "Diese Nachricht wurde bearbeitet",
    "Este mensaje fue editado", "Se editó este mensaje.", "Questo messaggio è stato modificato",
    "Esta mensagem foi editada", "Ce message a été modifié", "Dit bericht is bewerkt", "Сообщение изменено",
    "Bu mesaj düzenlendi", "Viestiä on muokattu",
)
_EDITED = re.compile(r"\s?[\u200e\u200f]?<(?:" + "|".join(map(re.escape, _EDITED_PHRASES)) + r")>\s*$")
_DELETED = frozenset(phrase.casefold() for phrase in (
    "This message was deleted", "You deleted this message", "This message was deleted by an admin",
    "This message was deleted by admin", "Diese Nachricht wurde gelöscht", "Du hast diese Nachricht gelöscht",
    "Se eliminó este mensaje", "Eliminaste este mensaje", "Este mensaje fue eliminado", "Данное сообщение удалено",
    "Вы удалили данное сообщение", "此訊息已刪除", "此消息已删除", "你删除了此消息", "Esta mensagem foi apagada",
    "Você apagou esta mensagem", "Ce message a été supprimé", "Vous avez supprimé ce message",
    "Questo messaggio è stato eliminato", "Hai eliminato questo messaggio", "Dit bericht is verwijderd",
    "Je hebt dit bericht verwijderd", "Bu mesaj silindi", "Tämä viesti poistettiin", "تم حذف هذه الرسالة",
    "הודעה זו נמחקה", "メッセージが削除されました", "삭제된 메시지입니다",
))
_MISSED_CALL_PHRASES: tuple[tuple[str, CallType], ...] = (
    ("Missed voice call", "VOICE"), ("Missed video call", "VIDEO"), ("Missed group voice call", "VOICE"),
    ("Missed group video call", "VIDEO"), ("Verpasster Sprachanruf", "VOICE"),
    ("Verpasster Videoanruf", "VIDEO"), ("Llamada perdida", "VOICE"), ("Llamada de voz perdida", "VOICE"),
    ("Videollamada perdida", "VIDEO"), ("Chamada de voz perdida", "VOICE"),
    ("Chamada de vídeo perdida", "VIDEO"), ("Appel vocal manqué", "VOICE"), ("Appel vidéo manqué", "VIDEO"),
    ("Chiamata vocale persa", "VOICE"), ("Videochiamata persa", "VIDEO"), ("Gemist spraakgesprek", "VOICE"),
    ("Gemist videogesprek", "VIDEO"), ("Пропущенный аудиозвонок", "VOICE"),
    ("Пропущенный видеозвонок", "VIDEO"), ("未接语音通话", "VOICE"), ("未接视频通话", "VIDEO"),
    ("未接語音通話", "VOICE"), ("未接視訊通話", "VIDEO"), ("부재중 전화", "VOICE"), ("부재중 음성 통화", "VOICE"),
    ("부재중 영상 통화", "VIDEO"), ("不在着信", "VOICE"), ("ビデオ通話の不在着信", "VIDEO"),
    ("مكالمة صوتية فائتة", "VOICE"), ("مكالمة فيديو فائتة", "VIDEO"), ("שיחה קולית שלא נענתה", "VOICE"),
    ("שיחת וידאו שלא נענתה", "VIDEO"),
)
_MISSED_CALLS: dict[str, CallType] = {phrase.casefold(): kind for phrase, kind in _MISSED_CALL_PHRASES}
_WAITING = frozenset(phrase.casefold().rstrip(".") for phrase in (
    "Waiting for this message", "Waiting for this message. This may take a while.",
    "Warten auf diese Nachricht", "Esperando el mensaje", "En attente de ce message",
))
_ATTACHED_WORDS = (
    "attached", "Anhang", "adjunto", "anexado", "pièce jointe", "allegato", "прикреплено", "المُرفق", "المرفق",
    "מצורף", "附件", "添付ファイル", "첨부됨", "liite", "bijgevoegd", "terlampir",
)
# Every pattern run on a body is linear in its length: a body is anyone's text, and a pattern that
# backtracks (a lazy group before optional spaces) lets one message of spaces hold a worker for minutes.
_IOS_ATTACHED = re.compile(
    r"<[ ]?(?:" + "|".join(map(re.escape, _ATTACHED_WORDS)) + r")[ ]?[:：](?P<name>[^<>\n]*)>"
)
_IOS_ATTACHED_TR = re.compile(r"<(?P<name>[^<>\n]*) eklendi>$")
_IOS_ATTACHED_OLD = re.compile(r"^(?P<name>\S+) <attached>$")
_ANDROID_ATTACHED = re.compile(
    r"^(?P<name>[^\n]+?) \((?:file attached|Datei angehängt|archivo adjunto|archivo adjuntado|arquivo anexado"
    r"|fichier joint|file allegato|bestand bijgevoegd|файл добавлен|dosya ekli|liitetiedosto|添付ファイル有り"
    r"|파일 첨부됨|文件附件|ملف مرفق|קובץ מצורף)\)$"
)
_IOS_OMITTED = tuple(phrase.casefold() for phrase in (
    "image omitted", "video omitted", "audio omitted", "sticker omitted", "GIF omitted", "Contact card omitted",
    "document omitted", "Bild weggelassen", "Video weggelassen", "Audio weggelassen", "Sticker weggelassen",
    "GIF weggelassen", "Dokument weggelassen", "Kontaktkarte weggelassen", "imagen omitida", "video omitido",
    "audio omitido", "sticker omitido", "documento omitido", "imagem ocultada", "vídeo ocultado", "image absente",
    "vidéo absente", "immagine omessa", "video omesso", "изображение отсутствует", "видео отсутствует",
    "照片已忽略", "视频已忽略", "画像は含まれていません", "이미지 생략됨", "görüntü dahil edilmedi", "ei kuvaa",
))
_WHOLE_TOKEN = re.compile(r"^<[^<>\n]{1,80}>$")
_LOCATION = re.compile(
    r"^(?P<label>[^\n:：]{1,200})[:：]\s*(?P<url>https://(?:maps\.google\.com|www\.google\.com/maps|maps\.apple\.com"
    r"|foursquare\.com)\S*)$"
)
_MAPS_URL = re.compile(r"^https://(?:maps\.google\.com|www\.google\.com/maps|maps\.apple\.com|foursquare\.com)\S*$")
_LATLON = re.compile(r"[?&](?:q|ll)=(-?\d{1,2}(?:\.\d+)?),(-?\d{1,3}(?:\.\d+)?)")
_LIVE_LOCATION = frozenset({"live location shared", "live-standort geteilt", "ubicación en tiempo real compartida"})
_POLL_OPTION = re.compile(r"^OPTION: ?(?P<text>.*)\((?P<votes>\d{1,9}) [Vv]otes?\)$")
_IOS_MEDIA_KIND = re.compile(r"^\d{8}-(?P<kind>PHOTO|VIDEO|AUDIO|GIF|STICKER)-")
_ANDROID_MEDIA_KIND = re.compile(r"^(?P<kind>IMG|VID|AUD|PTT|STK|GIF)-\d{8}-WA\d{4}")
_MEDIA_KINDS = {
    "PHOTO": "image", "IMG": "image", "VIDEO": "video", "VID": "video", "AUDIO": "audio", "AUD": "audio",
    "PTT": "voice_note", "GIF": "gif", "STICKER": "sticker", "STK": "sticker",
}
MAX_AUTHOR_LENGTH = 200
# An Android system line has no author, but may hold ": " ("… changed the group description to: Q1: …"):
# what comes before it reads as a group event, not as a name.
_SYSTEM_VERB = re.compile(
    r" (?:changed (?:the|this|their|his|her|your|to)|created group|added|removed|left|joined using|pinned|"
    r"deleted (?:the|this)|turned (?:on|off)|reset this|invited) ", re.IGNORECASE,
)


class ChatExportError(ValueError):
    """The file as a whole cannot be read as an export (the message says why, never its content)."""


class ExportEncodingError(ChatExportError):
    pass


class DateOrderUndecided(ChatExportError):
    pass


class DateOrderConflict(ChatExportError):
    pass


class UnsupportedCalendar(ChatExportError):
    pass


@dataclass(frozen=True)
class Poll:
    question: str
    options: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Location:
    url: str | None
    latitude: float | None
    longitude: float | None
    name: str | None  # a named place: the lines before the link (Android) or the label (iOS)


@dataclass(frozen=True)
class ExportMessage:
    index: int
    first_line: int  # 1-based physical lines, continuation lines included
    last_line: int
    raw: str  # the physical lines verbatim, joined with "\n"
    local_time: datetime  # naive: the phone's wall clock as printed
    author: str | None
    text: str
    kind: str  # text, system, media, deleted, poll, location, contact, call, placeholder
    generated: bool = False  # the body began with WhatsApp's LRM/RLM (iOS: text the app wrote)
    edited: bool = False
    media_file: str | None = None
    media_omitted: bool = False
    media_kind: str | None = None  # image, video, audio, voice_note, gif, sticker, document, contact
    caption: str | None = None
    poll: Poll | None = None
    location: Location | None = None
    call_type: CallType | None = None  # VOICE / VIDEO, for a missed call
    clock_note: str | None = None  # a 12-hour marker beside an hour over 12: the 24-hour number is trusted
    header: str = ""  # the timestamp as printed (evidence: the raw string the time was read from)


@dataclass(frozen=True)
class Preamble:
    first_line: int
    last_line: int
    raw: str


@dataclass(frozen=True)
class ParsedChat:
    lines: int
    date_order: DateOrder
    date_order_assumed: bool
    messages: tuple[ExportMessage, ...]
    preamble: Preamble | None = None
    unparsed_lines: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class _Header:
    line: int  # 0-based
    d: tuple[str, str, str]
    hour: int
    minute: int
    second: int
    marker: str | None
    body_start: int  # index into the original line
    printed: str
    shape: tuple[object, ...] = ()  # how the header is written: one per file (a pasted line differs)


def parse_chat(data: bytes, *, date_order: str | None = None) -> ParsedChat:
    """Read an export's text. Raises ChatExportError (a subclass saying which) when the file as a
    whole cannot be read; a single line never raises."""
    if date_order is not None and date_order not in DATE_ORDERS:
        raise ValueError(f"date_order must be one of {', '.join(DATE_ORDERS)}")
    lines = _lines(data)
    headers: dict[int, _Header] = {}
    era_lines = 0
    for number, line in enumerate(lines):
        header = _header(line, number)
        if header is not None:
            headers[number] = header
        elif _ERA_HEADER.match(_normalized(line)[0]):
            era_lines += 1
    if era_lines and era_lines >= len(headers):
        raise UnsupportedCalendar(
            "the file's dates use a non-Gregorian calendar (Buddhist era or Japanese era years): export again "
            "with the phone's calendar set to Gregorian, or convert the file as a separate, recorded step"
        )
    # WhatsApp writes one header shape per file: a line of another shape (a date and time pasted into a
    # message, a forwarded log) is text of the message it stands in, and must not decide the dates.
    shapes = Counter(header.shape for header in headers.values())
    foreign = 0
    if len(shapes) > 1:
        usual = max(shapes.items(), key=lambda item: item[1])[0]
        foreign = sum(count for shape, count in shapes.items() if shape != usual)
        headers = {number: header for number, header in headers.items() if header.shape == usual}
    order, assumed, order_note = _date_order(list(headers.values()), date_order)
    messages: list[ExportMessage] = []
    unparsed = 0
    preamble: Preamble | None = None
    current: tuple[_Header, datetime, list[str], int] | None = None  # header, time, lines, first line
    pending_pre: list[str] = []

    def close() -> None:
        if current is not None:
            header, moment, block, first = current
            messages.append(_message(len(messages), header, moment, block, first, lines))

    for number, line in enumerate(lines):
        header = headers.get(number)
        moment = _moment(header, order) if header is not None else None
        if header is not None and moment is not None:
            close()
            current = (header, moment, [line], number)
            continue
        if header is not None:  # shaped like a header, but no real date: kept where it stands
            unparsed += 1
        if current is None:
            if header is None:
                unparsed += 1
            pending_pre.append(line)
        else:
            current[2].append(line)
    close()
    if pending_pre:
        preamble = Preamble(1, len(pending_pre), "\n".join(pending_pre))
    notes: list[str] = []
    if assumed:
        notes.append(f"date order {order} assumed as given: the file's dates do not decide it")
    elif date_order is not None and date_order != order:
        # The dates themselves are the stronger evidence: a region setting remembered wrongly is common.
        notes.append(f"date order {order} read from the file's dates; the {date_order} given was not used")
    if order_note:
        notes.append(order_note)
    if foreign:
        notes.append(f"{foreign} line(s) shaped like a timestamp of another form than the file's own were read as "
                     "text of the message before them")
    return ParsedChat(len(lines), order, assumed, tuple(messages), preamble, unparsed, tuple(notes))


def _lines(data: bytes) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ExportEncodingError(f"line {line} is not UTF-8 (byte {error.start}): the file is refused whole, "
                                  "not repaired") from None
    text = text.removeprefix("\ufeff")
    if not text:
        return []
    parts = text.split("\n")
    if parts[-1] == "":
        parts.pop()
    return [part[:-1] if part.endswith("\r") else part for part in parts]


def _normalized(line: str) -> tuple[str, list[int]]:
    """The line with marks removed, odd spaces made plain and Arabic-Indic digits made ASCII, and for
    each character kept its position in the original line."""
    chars: list[str] = []
    positions: list[int] = []
    for position, char in enumerate(line):
        if char in _MARKS:
            continue
        if char in _SPACES:
            char = " "
        elif char in _DIGITS:
            char = _DIGITS[char]
        elif char == "\u060c":  # Arabic comma
            char = ","
        chars.append(char)
        positions.append(position)
    return "".join(chars), positions


def _header(line: str, number: int) -> _Header | None:
    if not line or (line[0] not in "[0123456789\u200e\u200f\ufeff\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068"
                    and not ("\u0660" <= line[0] <= "\u0669")):
        return None
    norm, positions = _normalized(line)
    match = _HEADER.match(norm) or _HEADER_TIME_FIRST.match(norm)
    if match is None:
        return None
    end = match.end()
    body_start = positions[end - 1] + 1 if end else 0
    marker = match.group("ampm") or match.group("pre")
    groups = match.groupdict()
    time_first = "end" not in groups
    end = groups.get("end") or ""
    end_kind = "]" if time_first or groups.get("open") else "-" if any(d in end for d in "-\u2013\u2014") else ":"
    d1, d3 = match.group("d1"), match.group("d3")
    shape = (
        time_first or bool(groups.get("open")), time_first, match.group("sep"), end_kind,
        "first" if len(d1) >= 3 else "last4" if len(d3) >= 3 else "last2",
        match.group("s") is not None, "after" if match.group("ampm") else "before" if match.group("pre") else None,
    )
    return _Header(
        line=number, d=(match.group("d1"), match.group("d2"), match.group("d3")), hour=int(match.group("h")),
        minute=int(match.group("m")), second=int(match.group("s") or 0), marker=marker, body_start=body_start,
        printed=line[:body_start].strip(), shape=shape,
    )


def _date_order(headers: list[_Header], hint: DateOrder | None) -> tuple[DateOrder, bool, str | None]:
    """(order, assumed, note). The file decides when its dates can; a handful of dates against the
    rest (a pasted line of the same shape) are outvoted and said so, never allowed to re-date it all."""
    if not headers:
        return hint or "dmy", hint is not None, None
    if any(len(h.d[0]) >= 3 for h in headers):
        return "ymd", False, None
    day_first = sum(1 for h in headers if int(h.d[0]) > 12)
    month_first = sum(1 for h in headers if int(h.d[1]) > 12)
    if not (day_first or month_first):
        # Within one year the month never goes back: the component that does is the day.
        for before, after in zip(headers, headers[1:], strict=False):
            if before.d[2] != after.d[2]:
                continue
            if int(after.d[0]) < int(before.d[0]) and int(after.d[1]) > int(before.d[1]):
                day_first += 1
            if int(after.d[1]) < int(before.d[1]) and int(after.d[0]) > int(before.d[0]):
                month_first += 1
    note = None
    if day_first and month_first:
        few, many = sorted((day_first, month_first))
        if few * 20 > many:
            raise DateOrderConflict("the file's dates contradict each other (both the first and the second "
                                    "component go past 12, or both go back within a year)")
        note = (f"{few} timestamp(s) contradict the date order of the other {many}: they were read as text "
                "of the message before them where their date cannot exist")
        day_first, month_first = (day_first, 0) if day_first > month_first else (0, month_first)
    decided: DateOrder | None = "dmy" if day_first else "mdy" if month_first else None
    if decided is None:
        if hint is None:
            raise DateOrderUndecided("the file's dates do not decide whether the day or the month comes first: "
                                     "give the date order (dmy, mdy or ymd) as the phone's region writes dates")
        return hint, True, None
    return decided, False, note


def _moment(header: _Header, order: str) -> datetime | None:
    a, b, c = (int(part) for part in header.d)
    year_digits = len(header.d[0] if order == "ymd" else header.d[2])
    year, month, day = (a, b, c) if order == "ymd" else (c, b, a) if order == "dmy" else (c, a, b)
    if year_digits <= 2:
        year += 2000
    elif year_digits == 3:
        return None
    hour = header.hour
    if header.marker is not None and hour <= 12:
        if header.marker in _AM or header.marker.lower().replace(".", "").replace(" ", "") == "am":
            hour = 0 if hour == 12 else hour
        else:
            hour = 12 if hour == 12 else hour + 12
    try:
        return datetime(year, month, day, hour, header.minute, header.second)
    except ValueError:
        return None


def _message(index: int, header: _Header, moment: datetime, block: list[str], first: int,
             lines: list[str]) -> ExportMessage:
    del lines
    rest = block[0][header.body_start:]
    author: str | None = None
    body = rest
    if not rest.startswith(_GENERATED):
        split = rest.find(": ")
        if split == -1 and rest.endswith(":") and len(block) > 1:
            split = len(rest) - 1
        if 0 < split:
            candidate = _clean_author(rest[:split])
            if candidate and len(candidate) <= MAX_AUTHOR_LENGTH and '"' not in candidate and "“" not in candidate \
                    and not (header.shape and header.shape[3] != "]" and _SYSTEM_VERB.search(candidate)):
                author = candidate
                body = rest[split + 2:]
    text = "\n".join([body, *block[1:]])
    generated = text.startswith(_GENERATED)
    if generated:
        text = text[1:]
    edited = False
    if (found := _EDITED.search(text)) is not None:
        edited = True
        text = text[:found.start()]
    clock_note = None
    if header.marker is not None and header.hour > 12:
        clock_note = f"the hour {header.hour} carries a 12-hour marker: read as a 24-hour time"
    fields = _classify(text, author=author, generated=generated)
    return ExportMessage(
        index=index, first_line=first + 1, last_line=first + len(block), raw="\n".join(block), local_time=moment,
        author=author, text=text, generated=generated, edited=edited, clock_note=clock_note, header=header.printed,
        **fields,
    )


class _Classified(TypedDict, total=False):
    """What a message's body says it is: ``ExportMessage``'s fields past the header."""

    kind: Required[str]
    media_file: str
    media_omitted: bool
    media_kind: str
    caption: str | None
    poll: Poll
    location: Location
    call_type: CallType


def _clean_author(value: str) -> str:
    return "".join(char for char in value if char not in _MARKS).strip()


def _bare(text: str) -> str:
    """A body as compared with WhatsApp's phrases: marks removed, spaces plain, outer space gone."""
    return " ".join(_normalized(text)[0].split())


def _classify(text: str, *, author: str | None, generated: bool) -> _Classified:
    first, _, rest = text.partition("\n")
    bare = _bare(text)
    folded = bare.casefold().rstrip(".。")
    if author is None:
        return {"kind": "system"}
    plain_first = _bare(first)
    if (found := _IOS_ATTACHED.search(plain_first)) or (found := _IOS_ATTACHED_TR.search(plain_first)) \
            or (found := _IOS_ATTACHED_OLD.match(plain_first)):
        name = found.group("name").strip()
        if name:
            return _attached(name, rest or None)
    if (found := _ANDROID_ATTACHED.match(_bare(first))) is not None:
        return _attached(found.group("name").strip(), rest or None)
    if "\n" not in bare and _WHOLE_TOKEN.match(bare):
        return {"kind": "media", "media_omitted": True}
    if "\n" not in bare and (generated or bare.endswith(("omitted", "weggelassen"))) \
            and any(folded.endswith(phrase) for phrase in _IOS_OMITTED):
        kind = _omitted_kind(folded)
        return {"kind": "contact" if kind == "contact" else "media", "media_omitted": True, "media_kind": kind}
    if folded in _DELETED:
        return {"kind": "deleted"}
    if (call := _MISSED_CALLS.get(folded)) is not None:
        return {"kind": "call", "call_type": call}
    if bare == "null" or folded in _WAITING:
        return {"kind": "placeholder"}
    if (poll := _poll(text)) is not None:
        return {"kind": "poll", "poll": poll}
    if (location := _location(text)) is not None:
        return {"kind": "location", "location": location}
    if generated:
        return {"kind": "system"}
    return {"kind": "text"}


def _attached(name: str, caption: str | None) -> _Classified:
    kind = _media_kind(name)
    return {
        "kind": "contact" if kind == "contact" else "media", "media_file": name, "media_kind": kind,
        "caption": caption,
    }


def _media_kind(name: str) -> str:
    if name.lower().endswith(".vcf"):
        return "contact"
    found = _IOS_MEDIA_KIND.match(name) or _ANDROID_MEDIA_KIND.match(name)
    return _MEDIA_KINDS[found.group("kind")] if found else "document"


def _omitted_kind(folded: str) -> str:
    for needle, kind in (("image", "image"), ("bild", "image"), ("imagen", "image"), ("imagem", "image"),
                         ("immagine", "image"), ("video", "video"), ("vídeo", "video"), ("audio", "audio"),
                         ("sticker", "sticker"), ("gif", "gif"), ("contact", "contact"), ("kontakt", "contact"),
                         ("document", "document"), ("dokument", "document")):
        if needle in folded:
            return kind
    return "image"


def _poll(text: str) -> Poll | None:
    lines = text.split("\n")
    if len(lines) < 3 or _bare(lines[0]) != "POLL:":
        return None
    options: list[tuple[str, int]] = []
    for line in lines[2:]:
        found = _POLL_OPTION.match(_bare(line))
        if found is None:
            return None
        options.append((found.group("text").strip(), int(found.group("votes"))))
    return Poll(lines[1].strip(), tuple(options))


def _location(text: str) -> Location | None:
    lines = [_bare(line) for line in text.split("\n")]
    if len(lines) == 1 and lines[0].casefold() in _LIVE_LOCATION:
        return Location(None, None, None, None)
    if len(lines) == 1 and (found := _LOCATION.match(lines[0])) is not None:
        url = found.group("url")
        label = found.group("label").strip()
        generic = label.casefold() in {"location", "standort", "ubicación", "localização", "locatie",
                                       "местоположение", "位置", "posizione", "position", "konum", "sijainti"}
        return Location(url, *_latlon(url), None if generic else label)
    if len(lines) >= 2 and _MAPS_URL.match(lines[-1]) and (found := _LOCATION.match(lines[-1])) is None:
        url = lines[-1]
        return Location(url, *_latlon(url), "\n".join(lines[:-1]).strip() or None)
    if len(lines) >= 2 and (found := _LOCATION.match(lines[-1])) is not None:
        url = found.group("url")
        return Location(url, *_latlon(url), "\n".join(lines[:-1]).strip() or None)
    return None


def _latlon(url: str) -> tuple[float | None, float | None]:
    found = _LATLON.search(url)
    if found is None:
        return None, None
    latitude, longitude = float(found.group(1)), float(found.group(2))
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None, None
    return latitude, longitude
