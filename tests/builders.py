"""Records for tests, valid by default, each field overridable."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

ALICE = {"phone": "+447700900001", "email": "alice@contoso.example", "firstName": "Alice", "lastName": "Smith"}
BOB = {"phone": "+447700900002", "firstName": "Bob", "lastName": "Jones"}  # CSV-mapped, no email property
CUSTOMER = {"phone": "+12025550143", "firstName": "Carla", "lastName": "Customer"}  # external

BASE_TIME = 1_763_800_000_000  # 2025-11-22T08:26:40Z
# A window id of the form WindowInfo.window_id writes (queue messages are held to it).
WINDOW_ID = "20251121T020000Z-20251122T020000Z.20251122T020000123Z"


def record(message_id: str = "msg-1", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "messageId": message_id,
        "sourceType": "WHATSAPP_ARCHIVER",
        "messageType": "TEXT",
        "messageTime": BASE_TIME,
        "archivedTime": BASE_TIME + 5_000,
        "direction": "OUTGOING",
        "owner": ALICE,
        "sender": ALICE,
        "recipients": [CUSTOMER],
        "textContent": "Hello",
    }
    data.update(overrides)
    return data


def attachment(attachment_id: str, content: bytes, *, inline: bool = True, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "attachmentId": attachment_id,
        "fileName": f"{attachment_id}.jpg",
        "contentType": "image/jpeg",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    if inline:
        data["content"] = base64.b64encode(content).decode()
    data.update(overrides)
    return data


MAPPING_CSV = "PhoneNumber,EmailAddress\n+44 7700 900002,bob@contoso.example\n"
DIRECTORY = ("alice@contoso.example", "bob@contoso.example")


def chat_export_zip(path, chat: str, media: dict[str, bytes], *, macosx: bool = False) -> bytes:
    """A zipped iOS "Export chat" (``_chat.txt`` and the media at the top level, as iOS shares it)."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("_chat.txt", chat.encode("utf-8"))
        for name, data in media.items():
            archive.writestr(name, data)
        if macosx:
            archive.writestr("__MACOSX/._chat.txt", b"resource fork")
    return path.read_bytes()


def chat_export_people(folder, *, custodian: str, colleague: str, number: str = "+447700900123"):
    """The mapping (the colleague by number) and the directory (both have mailboxes) for an export."""
    mapping = folder / "mapping.csv"
    mapping.write_text(f"PhoneNumber,EmailAddress\n{number},{colleague}\n", encoding="utf-8")
    directory = folder / "directory.txt"
    directory.write_text(f"{custodian}\n{colleague}\n", encoding="utf-8")
    return mapping, directory
