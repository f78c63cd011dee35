"""File attachments on the Graph stand-in: posted with the item or alone, or uploaded in an upload
session (``createUploadSession``, then ``PUT /upload/{token}`` chunks), kept with their sha256 and
size and, up to ``keep_bytes``, their bytes."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.local.graph_stand_in.errors import GraphHTTPError, json_body
from shared.local.graph_stand_in.store import GraphStore

MAX_UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024
# Graph documents "3 MB" as the smallest upload session; read as decimal megabytes by default.
UPLOAD_SESSION_MIN_BYTES = 3_000_000
KEEP_ATTACHMENT_BYTES = 8 * 1024 * 1024
MAX_ATTACHMENT_BYTES = 150 * 1024 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def file_attachment(payload: dict[str, Any], via: str, keep_bytes: int) -> dict[str, Any]:
    """A ``#microsoft.graph.fileAttachment`` as stored; ``via`` says how it came."""
    if payload.get("@odata.type") != "#microsoft.graph.fileAttachment":
        raise GraphHTTPError(400, "ErrorInvalidRequest", "Only file attachments are served.")
    try:
        content = base64.b64decode(payload.get("contentBytes") or "", validate=True)
    except ValueError:
        raise GraphHTTPError(400, "ErrorInvalidRequest", "contentBytes is not base64.") from None
    return {
        "id": "att-" + secrets.token_hex(8),
        "name": payload.get("name"),
        "contentType": payload.get("contentType"),
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "content": content if len(content) <= keep_bytes else None,
        "via": via,
        "isInline": bool(payload.get("isInline")),
    }


def attachment_json(attachment: dict[str, Any]) -> dict[str, Any]:
    return {k: attachment[k] for k in ("id", "name", "contentType", "size")}


@dataclass
class UploadSession:
    mailbox: str
    message_id: str
    name: str
    content_type: str
    size: int
    keep_bytes: bool
    received: int = 0
    digest: Any = field(default_factory=hashlib.sha256)
    content: bytearray = field(default_factory=bytearray)
    chunks: list[int] = field(default_factory=list)


class UploadSessions:
    """Open upload sessions by token. ``min_bytes``: the smallest attachment a session takes;
    ``refuse_on_non_drafts``: refuse sessions on items that are not drafts (Graph leaves it
    undocumented; accepted and recorded on the item by default)."""

    def __init__(
        self,
        lock: threading.RLock,
        store: GraphStore,
        root_url: Callable[[], str],
        *,
        min_bytes: int,
        refuse_on_non_drafts: bool,
        keep_bytes: int,
    ) -> None:
        self._lock = lock
        self._store = store
        self._root_url = root_url
        self.min_bytes = min_bytes
        self.refuse_on_non_drafts = refuse_on_non_drafts
        self.keep_bytes = keep_bytes
        self._sessions: dict[str, UploadSession] = {}

    def mailbox_of(self, token: str) -> str:
        """The mailbox an upload PUT counts against."""
        with self._lock:
            session = self._sessions.get(token)
        return session.mailbox if session else "(unknown)"

    def create(self, upn: str, message: dict[str, Any], body: bytes) -> tuple[int, Any, dict[str, str]]:
        """``POST .../attachments/createUploadSession`` (lock held)."""
        item = json_body(body).get("AttachmentItem") or {}
        size = item.get("size")
        if item.get("attachmentType") != "file" or not item.get("name") or not isinstance(size, int):
            raise GraphHTTPError(400, "ErrorInvalidRequest", "AttachmentItem needs a type, name and size.")
        if size < self.min_bytes:
            raise GraphHTTPError(
                400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize", "The attachment is too small."
            )
        if size > MAX_ATTACHMENT_BYTES:
            raise GraphHTTPError(400, "ErrorAttachmentSizeExceeded", "The attachment is too large.")
        if self.refuse_on_non_drafts and not message["isDraft"]:
            raise GraphHTTPError(400, "ErrorInvalidOperation", "Upload sessions are only supported on drafts.")
        token = secrets.token_urlsafe(16)
        self._sessions[token] = UploadSession(
            upn, message["id"], str(item["name"]), str(item.get("contentType") or ""), size,
            keep_bytes=size <= self.keep_bytes,
        )
        message.setdefault("uploadSessionsWhileNonDraft", 0)
        if not message["isDraft"]:
            message["uploadSessionsWhileNonDraft"] += 1
        return 201, {
            "uploadUrl": f"{self._root_url()}/upload/{token}",
            "expirationDateTime": (datetime.now(UTC) + timedelta(minutes=15)).isoformat(),
            "nextExpectedRanges": ["0-"],
        }, {}

    def chunk(self, token: str, headers: Any, body: bytes) -> tuple[int, Any, dict[str, str]]:
        """``PUT /upload/{token}``: one chunk, in order; the last one stores the attachment."""
        if headers.get("Authorization") is not None:
            raise GraphHTTPError(401, "InvalidAuthenticationToken", "Upload URLs take no Authorization.")
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                raise GraphHTTPError(404, "ErrorItemNotFound", "The upload session does not exist.")
            match = _CONTENT_RANGE.match(headers.get("Content-Range") or "")
            if not match:
                raise GraphHTTPError(400, "InvalidContentRange", "Content-Range is missing or malformed.")
            start, end, total = (int(g) for g in match.groups())
            if len(body) > MAX_UPLOAD_CHUNK_BYTES:
                raise GraphHTTPError(413, "RequestBodyTooLarge", "Upload chunks are limited to 4 MB.")
            if total != session.size or start != session.received or end - start + 1 != len(body):
                raise GraphHTTPError(416, "InvalidRange", f"Expected bytes {session.received}-.")
            session.received += len(body)
            session.digest.update(body)
            if session.keep_bytes:
                session.content.extend(body)
            session.chunks.append(len(body))
            if session.received < session.size:
                return 200, {
                    "expirationDateTime": (datetime.now(UTC) + timedelta(minutes=15)).isoformat(),
                    "nextExpectedRanges": [f"{session.received}-"],
                }, {}
            del self._sessions[token]
            box = self._store.mailboxes.get(session.mailbox)
            message = box.messages.get(session.message_id) if box else None
            if message is None:
                raise GraphHTTPError(404, "ErrorItemNotFound", "The message no longer exists.")
            attachment = {
                "id": "att-" + secrets.token_hex(8),
                "name": session.name,
                "contentType": session.content_type,
                "size": session.size,
                "sha256": session.digest.hexdigest(),
                "content": bytes(session.content) if session.keep_bytes else None,
                "via": "upload_session",
                "chunks": list(session.chunks),
            }
            message["attachments"].append(attachment)
            return 201, None, {"Location": f"{self._root_url()}/v1.0/attachments/{attachment['id']}"}
