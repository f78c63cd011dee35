"""Local stand-ins: a mailbox writer producing RFC 5322 .eml files, a directory file, a mapping file.

Layout of the EML writer: ``<dir>/<mailbox address, lower-case>/<folder>/<one file per record>.eml``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from shared.domain.mapping_table import MappingTable, parse_mapping
from shared.domain.phones import try_normalize_phone
from shared.domain.rendered import RenderedItem
from shared.ports import WriteOutcome

_SAFE_MAILBOX = re.compile(r"^[a-z0-9.!#$%&'*+=?^_`{|}~@-]+$")


class EmlMailbox:
    """Idempotent by construction: the file name derives from the record, and the file appears
    atomically (hard link of a complete temporary file), so a second write of the same record, even
    concurrent, finds it there and counts as a skipped duplicate."""

    def __init__(self, root: Path | str, folder_name: str = "WhatsApp Archiver") -> None:
        self._root = Path(root)
        self._folder = folder_name

    def path_for(self, mailbox: str, item: RenderedItem) -> Path:
        address = mailbox.strip().lower()
        if not _SAFE_MAILBOX.match(address) or address.startswith("."):
            raise ValueError("mailbox address is not safe as a folder name")
        stamp = item.sent_at.strftime("%Y%m%dT%H%M%S%fZ")
        return self._root / address / self._folder / f"{stamp}-{item.record_key[:24]}.eml"

    def write(self, mailbox: str, item: RenderedItem, *, check_existing: bool = True) -> WriteOutcome:
        target = self.path_for(mailbox, item)
        if target.exists():
            return WriteOutcome.SKIPPED_DUPLICATE
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(item.to_mime_bytes())
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, target)
            except FileExistsError:
                return WriteOutcome.SKIPPED_DUPLICATE
        finally:
            os.unlink(temporary)
        return WriteOutcome.IMPORTED


class FileDirectory:
    """The local stand-in for Entra ID: one user per line, ``address[, phone, ...]`` (``#`` starts a
    comment). An address listed has a mailbox; its phones answer directory phone mapping."""

    def __init__(self, path: Path | str, *, default_region: str | None = None) -> None:
        self._addresses: set[str] = set()
        owners: dict[str, set[str]] = {}
        for line in Path(path).read_text(encoding="utf-8-sig").splitlines():
            fields = [f.strip() for f in line.split("#", 1)[0].split(",")]
            if not fields[0]:
                continue
            address = fields[0].lower()
            self._addresses.add(address)
            for raw in fields[1:]:
                if phone := try_normalize_phone(raw, default_region):
                    owners.setdefault(phone, set()).add(address)
        # A number two users share is ambiguous: it maps to nobody.
        self._phones = {phone: next(iter(users)) for phone, users in owners.items() if len(users) == 1}

    def has_mailbox(self, address: str) -> bool:
        return address.strip().lower() in self._addresses

    def mailbox_identity(self, address: str) -> str | None:
        key = address.strip().lower()
        return key if key in self._addresses else None

    def mailbox_for_phone(self, e164: str) -> str | None:
        return self._phones.get(e164)

    def __len__(self) -> int:
        return len(self._addresses)


class FileMappingSource:
    """A mapping CSV on disk, re-read when its modification time changes."""

    def __init__(self, path: Path | str, *, default_region: str | None = None) -> None:
        self._path = Path(path)
        self._region = default_region
        self._stamp: float | None = None
        self._table = MappingTable()

    def current(self) -> MappingTable:
        stamp = self._path.stat().st_mtime
        if stamp != self._stamp:
            self._table = parse_mapping(self._path.read_bytes(), self._region).table
            self._stamp = stamp
        return self._table
