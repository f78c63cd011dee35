"""Attachment bytes for one import: decoded or downloaded once, verified, then read per mailbox.

A download is streamed through its SHA-256 into a spool file rather than straight into a
mailbox. Unverified bytes must never reach an evidence archive (a mismatch found after the item
was created would leave a corrupt item behind), and a record fanned out to several mailboxes is
downloaded once, not once per mailbox. Small payloads stay in memory; large ones live on local
disk for the duration of the import only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, TypeIs

from shared.domain.errors import PermanentError, PoisonReason, TransientError
from shared.domain.records import Attachment
from shared.domain.rendered import AttachmentPayload, BytesPayload, FilePayload
from shared.ports import AttachmentSource

IN_MEMORY_LIMIT = 1024 * 1024


class _SpoolsOwn:
    """payload(): no source given, the spool's own."""


_SPOOLS_OWN = _SpoolsOwn()


class _Closable(Protocol):
    def close(self) -> object: ...


def is_closable(stream: object) -> TypeIs[_Closable]:
    """A stream with a ``close`` (a generator, a download): closed when its reader is done."""
    return hasattr(stream, "close")


class MediaSpool(contextlib.AbstractContextManager["MediaSpool", None]):
    """Collects one record's attachment payloads; removes its spool files on exit."""

    def __init__(
        self,
        source: AttachmentSource | None,
        *,
        max_bytes: int,
        attempt: int = 1,
        corrupt_after_attempts: int = 3,
        spool_dir: str | None = None,
    ) -> None:
        self._source = source
        self._max_bytes = max_bytes
        self._attempt = attempt
        self._corrupt_after_attempts = corrupt_after_attempts
        self._spool_dir = spool_dir
        self._files: list[Path] = []

    def __exit__(self, *exc_info: object) -> None:
        for path in self._files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._files.clear()

    def payload(self, attachment: Attachment, *, source: AttachmentSource | None | _SpoolsOwn = _SPOOLS_OWN) \
            -> AttachmentPayload | None:
        """The verified payload, or None when the media was never captured. ``source`` overrides the
        spool's own for one record (a transcript mixes records of several sources)."""
        origin = self._source if isinstance(source, _SpoolsOwn) else source
        if attachment.content is not None:
            try:
                data = base64.b64decode(attachment.content, validate=True)
            except (binascii.Error, ValueError):
                raise PermanentError(
                    PoisonReason.INVALID_ITEM, f"attachment {attachment.attachment_id}: content is not base64"
                ) from None
            actual = hashlib.sha256(data).hexdigest()
            self._verify(attachment, actual, downloaded=False)
            return BytesPayload(data, actual)
        if origin is None:
            return None
        stream = origin.open_attachment(attachment.attachment_id)
        if stream is None:
            return None
        return self._spool(attachment, stream)

    def _spool(self, attachment: Attachment, stream: Iterator[bytes]) -> AttachmentPayload:
        digest = hashlib.sha256()
        buffer = bytearray()
        spool: BinaryIO | None = None
        path: Path | None = None
        size = 0
        try:
            with contextlib.closing(stream) if is_closable(stream) else contextlib.nullcontext():
                for chunk in stream:
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise PermanentError(
                            PoisonReason.TOO_BIG,
                            f"attachment {attachment.attachment_id} is larger than the item limit of "
                            f"{self._max_bytes}",
                        )
                    digest.update(chunk)
                    if spool is None and len(buffer) + len(chunk) <= IN_MEMORY_LIMIT:
                        buffer += chunk
                        continue
                    if spool is None:
                        descriptor, name = tempfile.mkstemp(prefix="wa-media-", dir=self._spool_dir)
                        path = Path(name)
                        self._files.append(path)
                        spool = os.fdopen(descriptor, "wb")
                        spool.write(buffer)
                        buffer = bytearray()
                    spool.write(chunk)
        finally:
            if spool is not None:
                spool.close()
        actual = digest.hexdigest()
        self._verify(attachment, actual, downloaded=True)
        # The digest travels with the payload: the item's digest (shared/domain/item_digest.py) reads
        # it instead of reading the bytes again.
        return FilePayload(path, size, actual) if path is not None else BytesPayload(bytes(buffer), actual)

    def _verify(self, attachment: Attachment, actual: str, *, downloaded: bool) -> None:
        if attachment.sha256 is None or actual == attachment.sha256:
            return
        detail = f"attachment {attachment.attachment_id}: SHA-256 of the bytes does not match the record"
        if downloaded and self._attempt < self._corrupt_after_attempts:
            # A download can be damaged in transit; only a mismatch that persists is corruption.
            raise TransientError(detail)
        raise PermanentError(PoisonReason.ATTACHMENT_CORRUPT, detail)
