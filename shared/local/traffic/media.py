"""Attachment media of the generated day: kinds, sizes, and bytes made on demand from the seed and
the attachment id (so a 12 MB video costs nothing until someone downloads it)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

# Small files travel inline (base64 in the record); anything larger only by attachmentId.
INLINE_LIMIT = 48 * 1024
HUGE_ATTACHMENT_SIZE = 12 * 1024 * 1024
LARGE_ATTACHMENT_SIZE = 5 * 1024 * 1024

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

KINDS = {
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
class Media:
    size: int
    content_type: str
    captured: bool


def media_bytes(seed: int, attachment_id: str, size: int, content_type: str) -> bytes:
    digest = hashlib.sha256(f"{seed}\x00{attachment_id}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:16], "big"))
    magic = MEDIA_MAGIC.get(content_type, b"")[:size]
    return magic + rng.randbytes(size - len(magic))
