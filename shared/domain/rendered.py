"""The rendered archive item: one model that feeds every mailbox writer.

The .eml writer serialises it as RFC 5322 MIME, the Graph writer as a JSON message; both read
the same fields, so what a reviewer sees is the same whichever writer archived it.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import BinaryIO, Protocol


class AttachmentPayload(Protocol):
    """An attachment's bytes, verified, readable as often as needed without holding them all.

    Writers stream large payloads (``open()`` gives a fresh reader at offset 0) and read small
    ones whole; an item fanned out to several mailboxes reads its payload once per mailbox.
    """

    @property
    def size(self) -> int: ...

    def open(self) -> BinaryIO: ...


@dataclass(frozen=True)
class BytesPayload:
    """A small payload held in memory (inline content, tests)."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)


@dataclass(frozen=True)
class FilePayload:
    """A large payload on local disk (the media spool keeps verified downloads there)."""

    path: Path
    size: int

    def open(self) -> BinaryIO:
        return self.path.open("rb")


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
    declared_size: int
    declared_sha256: str | None
    payload: AttachmentPayload | None  # None: the media was not captured
    generated: bool = False  # made by the connector (a contact card's .vcf), not captured media

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
    record_id: str  # TeleMessage messageId, exactly as received
    record_key: str  # sha256 of record_id: storage- and header-safe
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
        skeleton = len(self._mime(with_attachments=False).as_bytes())
        per_part = 400  # boundary, Content-Type / -Disposition / -Transfer-Encoding with the name
        present = [a for a in self.attachments if not a.missing]
        return skeleton + sum(base64_mime_size(a.size) + per_part + 2 * len(a.file_name.encode()) for a in present)

    def to_mime(self) -> EmailMessage:
        return self._mime(with_attachments=True)

    def _mime(self, *, with_attachments: bool) -> EmailMessage:
        message = EmailMessage(policy=SMTP)
        message["Subject"] = self.subject
        message["From"] = self.sender.header_value()
        message["To"] = ", ".join(r.header_value() for r in self.recipients)
        message["Date"] = format_datetime(self.sent_at)
        if self.message_id_header:
            message["Message-ID"] = self.message_id_header
        if self.conversation_topic:
            message["Thread-Topic"] = self.conversation_topic
        for name, value in self.extra_headers:
            message[name] = value
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
