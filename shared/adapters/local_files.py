"""Local stand-ins: a mailbox writer producing RFC 5322 .eml files, a directory file, a mapping file.

Layout of the EML writer: ``<dir>/<mailbox address, lower-case>/<folder>/<one file per record>.eml``,
where ``<folder>`` is the archive folder chain the Graph writer keeps in a mailbox: "WhatsApp
Archiver", then "WhatsApp Archiver 2", ... once a folder holds ``folder_items`` files.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.adapters.graph_folders import DEFAULT_FOLDER_ITEMS, archive_folder_name
from shared.domain.item_digest import UnreadableItem, mime_content
from shared.domain.mapping_table import MappingTable, parse_mapping
from shared.domain.phones import try_normalize_phone
from shared.domain.rendered import RenderedItem
from shared.ports import ReadBackItem, WriteOutcome

try:
    import fcntl
except ImportError:  # Windows: one process at a time per mailbox directory is the caller's job
    fcntl = None  # type: ignore[assignment]

_SAFE_MAILBOX = re.compile(r"^[a-z0-9.!#$%&'*+=?^_`{|}~@-]+$")


class EmlMailbox:
    """Idempotent by construction: the file name derives from the record, and the file appears
    atomically (hard link of a complete temporary file) after a look through every folder of the
    mailbox's chain, both under an exclusive lock on the mailbox's directory (between threads, and
    between processes through ``flock``), so a second write of the same record, even concurrent,
    finds it there and counts as a skipped duplicate, whichever folder it went to.

    Folders fill as Exchange's do, with ``folder_items`` (990,000, the Graph writer's switch point;
    tests scale it down) where Exchange has 1,000,000. A folder's count is read from the disk when
    this writer first meets it and again whenever its modification time says another process wrote
    there (every write stamps it, see ``_stamp``); this writer's own files are counted as it writes
    them, so a folder is never listed once per write.
    """

    def __init__(
        self, root: Path | str, folder_name: str = "WhatsApp Archiver", *, folder_items: int = DEFAULT_FOLDER_ITEMS
    ) -> None:
        if folder_items < 1:
            raise ValueError("folder_items must be at least 1")
        self._root = Path(root)
        self._folder = folder_name
        self._folder_items = folder_items
        self._lock = threading.Lock()
        # folder path -> (.eml files in it, its st_mtime_ns when they were counted)
        self._counts: dict[Path, tuple[int, int]] = {}

    def mailbox_dir(self, mailbox: str) -> Path:
        address = mailbox.strip().lower()
        if not _SAFE_MAILBOX.match(address) or address.startswith("."):
            raise ValueError("mailbox address is not safe as a folder name")
        return self._root / address

    @staticmethod
    def file_name(item: RenderedItem) -> str:
        stamp = item.sent_at.strftime("%Y%m%dT%H%M%S%fZ")
        # A re-capture (``<key>.<digest>``) keeps the time of the item it re-captures: its digest
        # tells the two files apart. A first capture's name is as it always was.
        key, _, variant = item.record_key.partition(".")
        return f"{stamp}-{key[:24]}{'-' + variant if variant else ''}.eml"

    def find(self, mailbox: str, item: RenderedItem) -> Path | None:
        """Where the record's file is, in whichever folder of the chain; None when not written."""
        return self._find(self.mailbox_dir(mailbox), self.file_name(item))

    def write(self, mailbox: str, item: RenderedItem, *, check_existing: bool = True) -> WriteOutcome:
        home = self.mailbox_dir(mailbox)
        name = self.file_name(item)
        if self._find(home, name) is not None:
            return WriteOutcome.SKIPPED_DUPLICATE
        home.mkdir(parents=True, exist_ok=True)
        # Written next to the folders, not in one: which folder takes it is decided under the lock.
        fd, temporary = tempfile.mkstemp(dir=home, prefix=".incoming-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(item.to_mime_bytes())
                handle.flush()
                os.fsync(handle.fileno())
            with self._exclusive(home):
                if self._find(home, name) is not None:
                    return WriteOutcome.SKIPPED_DUPLICATE
                folder = self._folder_with_room(home)
                try:
                    os.link(temporary, folder / name)
                except FileExistsError:
                    return WriteOutcome.SKIPPED_DUPLICATE
                items, _ = self._counts[folder]
                self._counts[folder] = (items + 1, self._stamp(folder))
        finally:
            os.unlink(temporary)
        return WriteOutcome.IMPORTED

    def files_of(self, mailbox: str, record_key: str) -> list[Path]:
        """Every file of this record in the mailbox, whichever folder of the chain holds it: more
        than one is a duplicate ``verify`` reports. A folder is listed once per reader and mailbox."""
        home = self.mailbox_dir(mailbox)
        if not home.is_dir():
            return []
        key, _, variant = record_key.partition(".")
        suffix = f"-{key[:24]}{'-' + variant if variant else ''}.eml"
        found = []
        for _, folder in self._chain(home):
            with os.scandir(folder) as entries:
                found += [Path(e.path) for e in entries if e.name.endswith(suffix) and not e.name.startswith(".")]
        return found

    def _chain(self, home: Path) -> list[tuple[int, Path]]:
        """The mailbox's archive folders on disk, numbered, in the chain's order."""
        found: list[tuple[int, Path]] = []
        prefix = self._folder + " "
        with os.scandir(home) as entries:
            for entry in entries:
                if entry.name == self._folder:
                    number = 1
                elif entry.name.startswith(prefix) and entry.name[len(prefix):].isdigit():
                    number = int(entry.name[len(prefix):])
                else:
                    continue
                if entry.is_dir() and entry.name == archive_folder_name(self._folder, max(number, 1)):
                    found.append((number, Path(entry.path)))
        return sorted(found)

    def _find(self, home: Path, name: str) -> Path | None:
        if not home.is_dir():
            return None
        for _, folder in self._chain(home):
            if (folder / name).exists():
                return folder / name
        return None

    def _folder_with_room(self, home: Path) -> Path:
        """The last folder of the chain while it has room, else the next one, created (hold the lock)."""
        chain = self._chain(home)
        number = chain[-1][0] if chain else 1
        while True:
            folder = home / archive_folder_name(self._folder, number)
            folder.mkdir(exist_ok=True)
            if self._items(folder) < self._folder_items:
                return folder
            number += 1

    def _items(self, folder: Path) -> int:
        stamp = folder.stat().st_mtime_ns
        known = self._counts.get(folder)
        if known is not None and known[1] == stamp:
            return known[0]
        with os.scandir(folder) as entries:
            items = sum(1 for e in entries if e.name.endswith(".eml") and not e.name.startswith("."))
        self._counts[folder] = (items, stamp)
        return items

    @staticmethod
    def _stamp(folder: Path) -> int:
        """Sets the folder's modification time to a fine-grained now and returns it: a file system
        that keeps coarse times would give two processes' writes in one clock tick the same time,
        and the one that wrote first would miss the other's file in its count."""
        stamp = time.time_ns()
        os.utime(folder, ns=(folder.stat().st_atime_ns, stamp))
        return stamp

    @contextmanager
    def _exclusive(self, home: Path) -> Iterator[None]:
        with self._lock:
            if fcntl is None:
                yield
                return
            fd = os.open(home, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock


class EmlItemReader:
    """Reads archived items back from the .eml folders for ``verify --online``: each file of the
    record, with the digest of what it holds (shared/domain/item_digest.py)."""

    def __init__(self, mailboxes: EmlMailbox) -> None:
        self._mailboxes = mailboxes

    def find(self, mailbox: str, record_key: str, item_id: str) -> list[ReadBackItem]:
        items = []
        paths = self._mailboxes.files_of(mailbox, record_key)
        own_key = hashlib.sha256(item_id.encode("utf-8")).hexdigest()
        if own_key != record_key.partition(".")[0]:
            # An item of its own id: a daily transcript, named by its part's id, holds many records.
            paths += self._mailboxes.files_of(mailbox, own_key)
        for path in paths:
            try:
                digest = mime_content(path.read_bytes(), item_id).digest()
            except (OSError, UnreadableItem) as error:
                items.append(ReadBackItem(path.name, None, f"unreadable: {type(error).__name__}"))
                continue
            items.append(ReadBackItem(path.name, digest))
        return items


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
    """A mapping CSV on disk, re-read when its modification time changes. No file is an empty
    mapping, as no blob is for the blob source: nothing maps by CSV, nothing fails."""

    def __init__(self, path: Path | str, *, default_region: str | None = None) -> None:
        self._path = Path(path)
        self._region = default_region
        self._stamp: float | None = None
        self._table = MappingTable()

    def current(self) -> MappingTable:
        try:
            stamp = self._path.stat().st_mtime
        except FileNotFoundError:
            self._table, self._stamp = MappingTable(), None
            return self._table
        if stamp != self._stamp:
            self._table = parse_mapping(self._path.read_bytes(), self._region).table
            self._stamp = stamp
        return self._table
