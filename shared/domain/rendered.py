"""The rendered archive item: one model that feeds every mailbox writer.

The .eml writer serialises it as RFC 5322 MIME, the Graph writer as a JSON message; both read
the same fields, so what a reviewer sees is the same whichever writer archived it.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import base64mime, quoprimime
from email.headerregistry import Address, AddressHeader, BaseHeader, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol


class AttachmentPayload(Protocol):
    """An attachment's bytes, verified, readable as often as needed without holding them all.

    Writers stream large payloads (``open()`` gives a fresh reader at offset 0) and read small
    ones whole; an item fanned out to several mailboxes reads its payload once per mailbox.
    """

    @property
    def size(self) -> int: ...

    def open(self) -> BinaryIO: ...

    def digest(self) -> str:
        """The bytes' SHA-256 (hex): the one the payload was made with when its maker hashed it (the
        media spool hashes as it stores), else read and hashed now."""
        ...


@dataclass(frozen=True)
class BytesPayload:
    """A small payload held in memory (inline content, tests)."""

    data: bytes
    sha256: str | None = None  # known when the maker hashed the bytes already

    @property
    def size(self) -> int:
        return len(self.data)

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)

    def digest(self) -> str:
        return self.sha256 or hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class FilePayload:
    """A large payload on local disk (the media spool keeps verified downloads there)."""

    path: Path
    size: int
    sha256: str | None = None  # known when the maker hashed the bytes already

    def open(self) -> BinaryIO:
        return self.path.open("rb")

    def digest(self) -> str:
        if self.sha256 is not None:
            return self.sha256
        digest = hashlib.sha256()
        with self.open() as reader:
            while chunk := reader.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()


def read_all(payload: AttachmentPayload) -> bytes:
    with payload.open() as reader:
        return reader.read()


def base64_mime_size(size: int) -> int:
    """Bytes a payload of ``size`` takes in MIME: base64, in lines of 76 characters plus CRLF."""
    encoded = 4 * math.ceil(size / 3)
    return encoded + 2 * math.ceil(encoded / 76)


@dataclass(frozen=True)
class MailAddress:
    display_name: str
    address: str

    def header_value(self) -> str:
        local, _, domain = self.address.rpartition("@")
        return str(Address(display_name=self.display_name, username=local, domain=domain))


@dataclass(frozen=True)
class RenderedAttachment:
    file_name: str  # already sanitised: no path, no control characters, never empty
    content_type: str  # "type/subtype"
    declared_size: int | None  # None: the source did not say (media announced by id only)
    declared_sha256: str | None
    payload: AttachmentPayload | None  # None: the media was not captured
    generated: bool = False  # made by the connector (a contact card's .vcf), not captured media
    generated_from: str = "the shared contact card"

    @property
    def missing(self) -> bool:
        return self.payload is None

    @property
    def size(self) -> int:
        return self.payload.size if self.payload is not None else 0

    @property
    def content(self) -> bytes | None:
        """All the bytes at once: for small payloads and the .eml writer only."""
        return read_all(self.payload) if self.payload is not None else None


@dataclass(frozen=True)
class RenderedItem:
    # The source's message id, exactly as received; a re-capture's is ``<id>#<16 hex digits>`` so the
    # mailbox finds each version by its own id.
    record_id: str
    record_key: str  # sha256 of the message id (``.<digest>`` for a re-capture): storage- and header-safe
    subject: str  # single line, no control characters
    sender: MailAddress
    recipients: tuple[MailAddress, ...]
    sent_at: datetime  # original send time, UTC
    received_at: datetime  # original delivery time, UTC
    text_body: str
    html_body: str
    attachments: tuple[RenderedAttachment, ...] = ()
    message_id_header: str = ""  # "<...>" stable per record
    conversation_topic: str = ""
    extra_headers: tuple[tuple[str, str], ...] = field(default=())

    @property
    def partially_imported(self) -> bool:
        """True when some media was not captured: archived anyway, reported as partial."""
        return any(attachment.missing for attachment in self.attachments)

    def mime_size(self) -> int:
        """The size of ``to_mime_bytes()`` without building it (large attachments stay on disk):
        exact for the bodies and headers, base64 arithmetic plus part headers for attachments."""
        skeleton = _skeleton_size(self)
        if skeleton is None:  # a shape render() never makes: measure it the long way
            skeleton = len(self._mime(with_attachments=False).as_bytes())
        per_part = 400  # boundary, Content-Type / -Disposition / -Transfer-Encoding with the name
        present = [a for a in self.attachments if not a.missing]
        return skeleton + sum(base64_mime_size(a.size) + per_part + 2 * len(a.file_name.encode()) for a in present)

    def to_mime(self) -> EmailMessage:
        return self._mime(with_attachments=True)

    def _mime(self, *, with_attachments: bool) -> EmailMessage:
        message = EmailMessage(policy=SMTP)
        # Text a reviewer reads is encoded by _ExactText / _ExactMailboxes, never by the email
        # package's folder: see _ExactText for why.
        message["Subject"] = _ExactText("Subject", self.subject)
        message["From"] = _ExactMailboxes("From", [self.sender])
        message["To"] = _ExactMailboxes("To", self.recipients)
        message["Date"] = format_datetime(self.sent_at)
        if self.message_id_header:
            message["Message-ID"] = self.message_id_header
        if self.conversation_topic:
            message["Thread-Topic"] = _ExactText("Thread-Topic", self.conversation_topic)
        for name, value in self.extra_headers:
            message[name] = _extra_header(name, value)
        message.set_content(self.text_body, subtype="plain", charset="utf-8")
        message.add_alternative(self.html_body, subtype="html", charset="utf-8")
        for attachment in self.attachments if with_attachments else ():
            if attachment.missing:
                continue
            maintype, _, subtype = attachment.content_type.partition("/")
            message.add_attachment(
                attachment.content,
                maintype=maintype,
                subtype=subtype or "octet-stream",
                filename=attachment.file_name,
            )
        return message

    def to_mime_bytes(self) -> bytes:
        return self.to_mime().as_bytes()


# --- Exact headers ------------------------------------------------------------------------------
#
# Why not let the email package fold these headers: its folder (``_refold_parse_tree`` /
# ``_fold_as_ew``, CPython 3.13.0) changes the text. Where a non-ASCII word follows a fold it
# encodes the separating space as an encoded word of its own, glued to the next one
# ("to\r\n =?utf-8?q?_?==?utf-8?q?Fam=C3=ADlia?="): the folding space and the encoded space read
# back as two (gh-144156 and relatives). It also folds straight after "Subject:" (a leading
# space), loses a space it moves between two encoded words, and writes text that looks like an
# encoded word ("=?…?=") as it is, so readers decode it. And mail-parser (through
# ``email.header.decode_header``) drops the space between an encoded word and plain text after it.
# So these headers are header objects with their own ``fold()`` — the policy's documented hook:
# a value with a ``name`` is folded by its header object — built on the standard library's RFC 2047
# encoder (``Charset("utf-8").header_encode``: the shorter of Q and B, per word) and a small
# layout whose rule is simple enough to be exact: unstructured text is written as it is when it is
# short, plain ASCII, else entirely as encoded words of whole characters with the spaces inside
# them, so only the folding whitespace between encoded words — which every RFC 2047 reader ignores
# (§6.2) — separates them. Encoded words are at most 75 characters, lines holding them at most 76
# (RFC 2047 §2), all 7-bit. (``email.header.Header`` encodes alike, but a string set on an
# EmailMessage is parsed and refolded by the policy, and it knows nothing of display names.)

_MAX_ENCODED_WORD = 75
_MAX_ENCODED_LINE = 76
_MIN_ROOM = 20  # the longest encoded word of a single character: one emoji in base64
_MAX_PLAIN_WORD = 900  # a longer ASCII word is encoded too: a line is never over 998 (RFC 5322 §2.1.1)
# RFC 5322 atext: a display-name word made of these needs no quoting.
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")


def _plain_ascii(text: str) -> bool:
    """Printable ASCII that no reader can take for an encoded word."""
    return text.isascii() and text.isprintable() and "=?" not in text


# Bytes whose Q encoding is one character (a space becomes "_"); every other byte takes three.
_Q_PLAIN = bytes(octet for octet in range(256) if quoprimime.header_length(bytes([octet])) == 1)
_ENCODED_WORD_CHROME = len("=?utf-8?q??=")


def _encoded_word_length(data: bytes) -> int:
    """``len(Charset("utf-8").header_encode(...))`` of ``data``: the shorter of B (4 characters per 3 bytes
    or part of them) and Q, plus the chrome."""
    q_length = len(data) + 2 * len(data.translate(None, _Q_PLAIN))
    return _ENCODED_WORD_CHROME + min(4 * -(-len(data) // 3), q_length)


def _encoded_word(data: bytes) -> str:
    """``Charset("utf-8").header_encode``'s choice, B only when strictly shorter, without its per-byte
    Python loop that measures Q."""
    if 4 * -(-len(data) // 3) < len(data) + 2 * len(data.translate(None, _Q_PLAIN)):
        return base64mime.header_encode(data, "utf-8")
    return quoprimime.header_encode(data, "utf-8")


def _fitting_prefix(text: str, limit: int) -> int:
    """How many characters of ``text`` (one at least) make an encoded word of at most ``limit``:
    a binary search, as the length only grows with the prefix."""
    # k characters encode to at least k characters: more than limit - chrome never fit.
    low, high = 1, min(len(text), limit - _ENCODED_WORD_CHROME) + 1
    if high - low > 1 and _encoded_word_length(text[: high - 1].encode("utf-8")) <= limit:
        return high - 1
    while high - low > 1:
        middle = (low + high) // 2
        if _encoded_word_length(text[:middle].encode("utf-8")) <= limit:
            low = middle
        else:
            high = middle
    return low


class _HeaderLines:
    """A header's tokens, one space (folding whitespace) apart, on lines of at most 76 characters.
    A token is never split. In unstructured text the first token shares the line with the header
    name (a fold there would read as a leading space); in an address list, where the space around
    tokens means nothing, it may go to the next line."""

    def __init__(self, name: str, *, structured: bool = False) -> None:
        self._lines = [f"{name}:"]
        self._empty = not structured  # True: nothing may be folded onto the next line yet

    def room(self) -> int:
        return _MAX_ENCODED_LINE - len(self._lines[-1]) - 1

    def add(self, token: str) -> None:
        if not self._empty and len(token) > self.room():
            self._lines.append("")
        self._lines[-1] += " " + token
        self._empty = False

    def add_encoded(self, text: str, *, few_words: bool = False) -> None:
        """``text`` as encoded words: whole characters each, spaces inside, none over 75.
        ``few_words``: start on a fresh line rather than split where one more word would do."""
        while text:
            room = self.room()
            if not self._empty:
                wanted = (
                    min(_encoded_word_length(text.encode("utf-8")), _MAX_ENCODED_WORD) if few_words else _MIN_ROOM
                )
                if room < wanted:
                    self._lines.append("")
                    room = self.room()
            limit = min(room, _MAX_ENCODED_WORD)
            end = _fitting_prefix(text, limit)
            self.add(_encoded_word(text[:end].encode("utf-8")))
            text = text[end:]

    def folded(self, linesep: str) -> str:
        return linesep.join(self._lines) + linesep


def _fold_text(name: str, value: str, policy: Policy) -> str:
    max_length = policy.max_line_length or 78
    if not value:
        return f"{name}:{policy.linesep}"
    if _plain_ascii(value) and value == value.strip(" ") and len(name) + 2 + len(value) <= max_length:
        return f"{name}: {value}{policy.linesep}"
    lines = _HeaderLines(name)
    lines.add_encoded(value)
    return lines.folded(policy.linesep)


def _add_phrase(lines: _HeaderLines, display_name: str) -> None:
    """A display name as RFC 5322 phrase words: plain ASCII words as atoms or quoted strings, each
    run of other words as one encoded text (spaces inside), so no two encoded words stand apart
    by a real space — readers drop the space between adjacent encoded words. (Python 3.13.0's
    parser keeps it in a display name, gh-128110: a run longer than one encoded word reads back
    there with a space at each word boundary; RFC 2047 readers, mail-parser among them, read it
    exactly.)"""
    words = display_name.split(" ")
    if display_name != " ".join(display_name.split()):
        lines.add_encoded(display_name, few_words=True)
        return
    run: list[str] = []
    for word in [*words, None]:  # None: the end, to write the last run
        if word is not None and not (_plain_ascii(word) and len(word) <= _MAX_PLAIN_WORD):
            run.append(word)
            continue
        if run:
            lines.add_encoded(" ".join(run), few_words=True)
            run = []
        if word is None:
            break
        if all(c in _ATEXT for c in word):
            lines.add(word)
        else:
            lines.add('"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"')


def _fold_mailboxes(name: str, addresses: tuple[Address, ...], policy: Policy) -> str:
    lines = _HeaderLines(name, structured=True)
    for index, address in enumerate(addresses):
        separator = "," if index < len(addresses) - 1 else ""
        if address.display_name:
            _add_phrase(lines, address.display_name)
            lines.add(f"<{address.addr_spec}>{separator}")
        else:
            lines.add(f"{address.addr_spec}{separator}")
    return lines.folded(policy.linesep)


class _Named(Protocol):
    """A header, as the folding mixins see the class they are mixed into (``BaseHeader``)."""

    @property
    def name(self) -> str: ...


class _NamedMailboxes(_Named, Protocol):
    @property
    def addresses(self) -> tuple[Address, ...]: ...


class _ExactTextFolding:
    # A mixin, so that a copied header (BaseHeader.__reduce__ rebuilds from the bases) keeps it.
    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        kwds["parse_tree"] = UnstructuredHeader.value_parser(value)
        kwds["decoded"] = value  # literally: "=?…?=" in the text is text, not an encoded word

    def fold(self: _Named, *, policy: Policy) -> str:
        return _fold_text(self.name, str(self), policy)


class _ExactText(_ExactTextFolding, UnstructuredHeader, BaseHeader):
    """An unstructured header (Subject, Thread-Topic, X-…) that reads back exactly as given."""


def _fold_message_ids(name: str, value: str, policy: Policy) -> str:
    lines = _HeaderLines(name)
    for message_id in value.split():
        lines.add(message_id)
    return lines.folded(policy.linesep)


class _MessageIdsFolding(_ExactTextFolding):
    def fold(self: _Named, *, policy: Policy) -> str:
        return _fold_message_ids(self.name, str(self), policy)


class _MessageIds(_MessageIdsFolding, UnstructuredHeader, BaseHeader):
    """References / In-Reply-To: message ids as they are, folded only between them. (The email
    package takes these headers for text and writes an id longer than a line — ours are 84
    characters — as encoded words, which RFC 2047 §5 forbids in an id and mail clients do not
    decode: replies would not thread.)"""


def _extra_header(name: str, value: str) -> str:
    key = name.lower()
    if key in ("references", "in-reply-to"):
        return _MessageIds(name, value)
    if key.startswith("x-"):  # X-Archive-*: the record id, exactly, for chain of custody
        return _ExactText(name, value)
    return value  # Thread-Index: short base64


class _ExactMailboxesFolding:
    def fold(self: _NamedMailboxes, *, policy: Policy) -> str:
        return _fold_mailboxes(self.name, self.addresses, policy)


class _ExactMailboxes(_ExactMailboxesFolding, AddressHeader, BaseHeader):
    """From / To whose display names read back exactly as given."""

    def __new__(cls, name: str, value: Iterable[MailAddress]) -> _ExactMailboxes:
        return super().__new__(cls, name, list(_addresses(value)))

    def init(self, name: str, **kwds: Any) -> None:
        # As AddressHeader's own (``init(*args, **kw)``): typeshed gives it a ``groups`` keyword that
        # BaseHeader.init lacks, and BaseHeader.__new__ passes whatever AddressHeader.parse made.
        super().init(name, **kwds)


# --- The size of the MIME skeleton, without building it ----------------------------------------
#
# Building the message with the email package to measure it cost more than everything else the
# connector does for a record (header objects are parsed on every assignment, then folded again
# by the generator). The size is the sum of the parts, each measured as the package writes it:
# our own headers through the same fold functions, the few it folds itself (Date, Message-ID,
# Thread-Index) in the one shape render() gives them, the bodies through the encoding choice of
# ``email.contentmanager.set_text_content`` (with its own quoted-printable encoder), and the
# multipart frame the generator writes around them. Anything else takes the long way, so the
# number is the same either way; tests/test_rendering_size.py compares the two.

_CRLF = len(SMTP.linesep)
_MAX_LINE = SMTP.max_line_length or 78  # SMTP's is 78, as _fold_text assumes
# The generator's boundary: 15 "=", a 19-digit random number, "==" (email.generator._make_boundary;
# it grows only if a body held that very line, a chance of one in 2**63).
_BOUNDARY = 15 + len(repr(2**63 - 2)) + 2
_MULTIPART_HEADERS = (
    len("MIME-Version: 1.0") + _CRLF
    + len("Content-Type: multipart/alternative;") + _CRLF + len(' boundary=""') + _BOUNDARY + _CRLF
)
# The frame: "--B" before the first part, "--B" between the parts, "--B--" at the end.
_MULTIPART_FRAME = (2 + _BOUNDARY + _CRLF) + (_CRLF + 2 + _BOUNDARY + _CRLF) + (_CRLF + 2 + _BOUNDARY + 2 + _CRLF)
_PLAIN_PART_HEADERS = len('Content-Type: text/plain; charset="utf-8"') + _CRLF
# The HTML part is made by add_alternative as a message of its own: it has a MIME-Version too.
_HTML_PART_HEADERS = len('Content-Type: text/html; charset="utf-8"') + _CRLF + len("MIME-Version: 1.0") + _CRLF
_DATE_HEADER = len("Date: Fri, 04 Dec 2026 19:06:24 +0000") + _CRLF
# A message id longer than a line that the package cannot fold: it writes it on the header's line.
_LONG_MESSAGE_ID = re.compile(r"<[0-9a-f]{64}@[a-z0-9]+(?:[.-][a-z0-9]+)*>")
_SHORT_TOKEN = re.compile(r"[A-Za-z0-9+/=]+")
_HEADERS_WE_SET = frozenset({"subject", "from", "to", "date", "message-id", "thread-topic", "mime-version"})


def _skeleton_size(item: RenderedItem) -> int | None:
    """``len(item._mime(with_attachments=False).as_bytes())``, or None for a shape this does
    not measure (the caller builds the message then)."""
    try:
        headers = _headers_size(item)
        if headers is None:
            return None
        plain_cte, plain = _text_body_size(item.text_body)
        html_cte, html = _text_body_size(item.html_body)
    except UnicodeEncodeError:  # a lone surrogate: let the email package say what it makes of it
        return None
    parts = (
        _PLAIN_PART_HEADERS + _cte_header_size(plain_cte) + _CRLF + plain
        + _HTML_PART_HEADERS + _cte_header_size(html_cte) + _CRLF + html
    )
    return headers + _MULTIPART_HEADERS + _CRLF + _MULTIPART_FRAME + parts


def _headers_size(item: RenderedItem) -> int | None:
    # The package parses Date and writes it again: "Fri, 04 Dec 2026 19:06:24 +0000" again for a
    # UTC time of a four-digit year (a naive one says -0000, an offset its own zone).
    if item.sent_at.utcoffset() != timedelta(0) or item.sent_at.year < 1000:
        return None
    # The headers the same people and chats give again record after record, measured once.
    measured = [
        _folded_text_size("Subject", item.subject),
        _folded_mailboxes_size("From", (item.sender,)),
        _folded_mailboxes_size("To", item.recipients),
    ]
    if item.conversation_topic:
        measured.append(_folded_text_size("Thread-Topic", item.conversation_topic))
    if not all(ascii_ for _, ascii_ in measured):  # the package would fail to write it
        return None
    size = _DATE_HEADER + sum(length for length, _ in measured)
    if item.message_id_header:
        if not _LONG_MESSAGE_ID.fullmatch(item.message_id_header):
            return None
        size += len("Message-ID: ") + len(item.message_id_header) + _CRLF
    folded: list[str] = []
    names: set[str] = set()
    for name, value in item.extra_headers:
        key = name.lower()
        if key in names or key in _HEADERS_WE_SET or key.startswith("content-"):
            return None  # refused, or moved into the first part by make_alternative
        names.add(key)
        if key in ("references", "in-reply-to"):
            folded.append(_fold_message_ids(name, value, SMTP))
        elif key.startswith("x-"):
            folded.append(_fold_text(name, value, SMTP))
        elif key == "thread-index" and _SHORT_TOKEN.fullmatch(value) and len(name) + 2 + len(value) <= _MAX_LINE:
            size += len(name) + 2 + len(value) + _CRLF
        else:
            return None
    text = "".join(folded)
    if not text.isascii():  # the package would fail to write it
        return None
    return size + len(text)


# Folding a display name or a subject of other scripts into encoded words is most of what the
# headers cost, and the same people (From, To), chats (Thread-Topic) and kinds of message between
# them (Subject) recur record after record: each is measured once (its length, and whether it is
# all ASCII), in caches bounded as rendering's number cache is. A value of one record never
# reaches another's item: only the length of exactly the same header is reused. Longer values than
# render() makes of a name or a subject are measured each time, never held.
_CACHED_UP_TO = 1000  # characters of a header's value


def _measure_text(name: str, value: str) -> tuple[int, bool]:
    text = _fold_text(name, value, SMTP)
    return len(text), text.isascii()


def _measure_mailboxes(name: str, mailboxes: tuple[MailAddress, ...]) -> tuple[int, bool]:
    text = _fold_mailboxes(name, _addresses(mailboxes), SMTP)
    return len(text), text.isascii()


_measure_text_cached = functools.lru_cache(maxsize=4096)(_measure_text)
_measure_mailboxes_cached = functools.lru_cache(maxsize=4096)(_measure_mailboxes)


def _folded_text_size(name: str, value: str) -> tuple[int, bool]:
    """The length of ``_fold_text(name, value, SMTP)``, and whether it is all ASCII."""
    if len(value) > _CACHED_UP_TO:
        return _measure_text(name, value)
    return _measure_text_cached(name, value)


def _folded_mailboxes_size(name: str, mailboxes: tuple[MailAddress, ...]) -> tuple[int, bool]:
    """The length of ``_fold_mailboxes(name, _addresses(mailboxes), SMTP)``, and whether it is all ASCII."""
    if sum(len(m.display_name) + len(m.address) for m in mailboxes) > _CACHED_UP_TO:
        return _measure_mailboxes(name, mailboxes)
    return _measure_mailboxes_cached(name, mailboxes)


def _addresses(mailboxes: Iterable[MailAddress]) -> tuple[Address, ...]:
    """The mailboxes as the email package's addresses (a line break in one fails here)."""
    addresses: list[Address] = []
    for mailbox in mailboxes:
        local, _, domain = mailbox.address.rpartition("@")
        addresses.append(Address(display_name=mailbox.display_name, username=local, domain=domain))
    return tuple(addresses)


def _cte_header_size(cte: str) -> int:
    return len("Content-Transfer-Encoding: ") + len(cte) + _CRLF


def _text_body_size(text: str) -> tuple[str, int]:
    """The transfer encoding ``set_content(text, charset="utf-8")`` chooses under the SMTP policy,
    and the bytes the generator writes for the encoded body (every line ending as CRLF)."""
    lines = text.encode("utf-8").splitlines()
    if max(map(len, lines), default=0) <= _MAX_LINE:
        # As it is, each line ending written as CRLF (an empty text is one empty line).
        return ("7bit" if text.isascii() else "8bit"), sum(map(len, lines)) + _CRLF * max(1, len(lines))
    sniff = b"\r\n".join(lines[:10]) + b"\r\n"
    sniff_qp = _qp_body_size(sniff, _MAX_LINE)
    if sniff_qp[0] > len(binascii.b2a_base64(sniff)):
        data = len(b"\r\n".join(lines)) + _CRLF
        # Lines of 57 bytes, 76 characters each once encoded, each ending CRLF.
        return "base64", 4 * -(-data // 3) + _CRLF * -(-data // 57)
    # The encoded body's length and its line breaks, each to be written as CRLF.
    length, breaks = sniff_qp if len(lines) <= 10 else _qp_body_size(b"\n".join(lines) + b"\n", _MAX_LINE)
    return "quoted-printable", length + (_CRLF - 1) * breaks


# quoprimime.body_encode quotes with ``str.translate`` over a list of 256 strings: a Python-level
# lookup per character, most of the size check's time on an HTML body (one long line, an "=" in
# every attribute). Its length and line breaks depend only on where the quoted bytes are, not on
# their hex digits (never "=" nor a blank): each byte to be quoted becomes "=00" here, in two
# passes over the bytes.
# The bytes body_encode keeps as they are: those body_check passes, and line breaks.
_QP_KEEP = bytes(c for c in range(256) if not quoprimime.body_check(c) or c in b"\r\n")
_QP_MARK = bytes.maketrans(bytes(range(256)), bytes(c if c in _QP_KEEP else 0xFF for c in range(256)))
_EQUALS = ord("=")


def _qp_shape(data: bytes) -> bytes:
    """``data.decode("latin-1").translate(quoprimime._QUOPRI_BODY_ENCODE_MAP)`` with every quoted
    byte's hex digits as "00": the same length, "=", blanks and line breaks in the same places."""
    return data.translate(_QP_MARK).replace(b"\xff", b"=00")


def _qp_body_size(data: bytes, maxlinelen: int) -> tuple[int, int]:
    """The length of ``quoprimime.body_encode(data.decode("latin-1"), maxlinelen)`` (CPython 3.13)
    and the line breaks in it, without writing it: its line breaking step by step, each step
    adding one character to the line's (a soft "=", or an "=" written again at the next line's
    start), a blank at a line's end quoted in the room the module finds for it."""
    if not data:
        return 0, 0
    body = _qp_shape(data)  # only ASCII, its only line breaks CR and LF: bytes split as the text would
    maxlinelen1 = maxlinelen - 1
    length = breaks = pieces = 0
    for line in body.splitlines():
        start = 0
        laststart = len(line) - 1 - maxlinelen
        steps = 0
        while start <= laststart:
            stop = start + maxlinelen1
            if line[stop - 2] == _EQUALS:
                start = stop - 2
            elif line[stop - 1] == _EQUALS:
                start = stop - 1
            else:
                start = stop
            steps += 1
        pieces += steps + 1
        length += len(line) + steps
        if line and line[-1] in b" \t":
            room = start - laststart
            if room >= 3:  # "=20": two more
                length += 2
            elif room == 2:  # " =\n": two more, one a break
                length += 2
                breaks += 1
            else:  # "=\n=20": four more, one a break
                length += 4
                breaks += 1
    if body[-1] in b"\r\n":
        pieces += 1  # the empty line after the last break
    return length + pieces - 1, breaks + pieces - 1
