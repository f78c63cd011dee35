"""An uploaded export file, opened safely: a .txt, or a .zip holding the chat text and its media.

Why it is built this way:
- A zip is untrusted input. Its member names never become paths (nothing is extracted to disk by
  name); a name that climbs out of the archive (``..``, an absolute path, a drive, a backslash or a
  control character) is refused and reported, never read. The archive is bounded before a byte is
  inflated: members, total size, and each member's compression ratio (a zip bomb names the member
  and the limit it broke). A zip inside the zip is a file like any other: attached, never opened.
- Every member is hashed (SHA-256) as it is read once, before anything is imported; the media are
  then matched to the chat's lines by name and attached byte-exact with that hash.
- The chat text is found as the reference observes phones write it: ``_chat.txt`` (iOS), else the
  ``.txt`` whose name says chat or WhatsApp (Android), the shortest such name; ``__MACOSX/``
  entries (a re-zip on a Mac) are ignored.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MAX_MEMBERS = 100_000
MAX_TOTAL_BYTES = 8 * 1024**3  # 8 GiB inflated: far past any export WhatsApp writes (it caps media exports)
# WhatsApp exports at most some 100,000 messages (reference §9): a few tens of MiB of text. Parsing holds
# the text a few times over, so this bound keeps the parse inside a 2 GB Flex Consumption instance.
MAX_TRANSCRIPT_BYTES = 64 * 1024**2
MAX_RATIO = 200  # inflated ÷ compressed, for members over RATIO_FLOOR (media hardly compress; text ~10:1)
RATIO_FLOOR = 1024 * 1024
_CHUNK = 1024 * 1024
_UNSAFE_NAME = re.compile(r"(^/|^[A-Za-z]:|\\|[\x00-\x1f\x7f])")

_CHAT_NAME_PATTERNS = tuple(re.compile(p) for p in (
    r"^WhatsApp Chat - (?P<n>.+)$", r"^WhatsApp Chat with (?P<n>.+)$", r"^WhatsApp Chat mit (?P<n>.+)$",
    r"^Chat de WhatsApp con (?P<n>.+)$", r"^Conversa do WhatsApp com (?P<n>.+)$",
    r"^Discussion WhatsApp avec (?P<n>.+)$", r"^Chat WhatsApp con (?P<n>.+)$", r"^WhatsApp-chat met (?P<n>.+)$",
    r"^Чат WhatsApp с (?P<n>.+)$", r"^(?P<n>.+)とのWhatsAppチャット$", r"^(?P<n>.+)님과의 WhatsApp 대화$",
    r"^WhatsApp 与 (?P<n>.+) 的对话$", r"^(?P<n>.+) ile WhatsApp Sohbeti$",
))


class ExportFileError(ValueError):
    """The upload cannot be read as an export at all (the message says why and names the member)."""


@dataclass(frozen=True)
class ExportMember:
    name: str  # as the zip names it (matched against the chat's lines by its last part)
    size: int
    sha256: str
    info: zipfile.ZipInfo | None = field(default=None, compare=False, repr=False)  # the member itself


@dataclass
class ExportFile:
    """What the upload holds, hashed; the member bytes are read again from ``path`` on demand."""

    path: Path
    name: str  # the upload's own name (the chat's name is read from it)
    sha256: str
    transcript_name: str
    transcript: bytes
    transcript_sha256: str
    media: dict[str, ExportMember] = field(default_factory=dict[str, ExportMember])  # by file name
    # (member, why): not readable (encrypted)
    refused: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    # (member, kept as): unsafe or repeated names
    renamed: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    ignored: list[str] = field(default_factory=list[str])  # __MACOSX and folders
    is_zip: bool = False

    def open_member(self, name: str) -> Iterator[bytes]:
        """The member's bytes in chunks (from the zip, read again: never all in memory)."""
        member = self.media[name]
        with zipfile.ZipFile(self.path) as archive:
            # The member read and hashed before, by its entry: two entries may share a name.
            yield from _read(archive, member.info if member.info is not None else archive.getinfo(member.name))

    @property
    def chat_name(self) -> str:
        return chat_name_from_file(self.name)


def chat_name_from_file(name: str) -> str:
    """The chat's name as the phone put it in the file name (``WhatsApp Chat - Sales.zip``, and
    the localized Android forms), else the file's name without its extension."""
    stem = PurePosixPath(name.replace("\\", "/")).name
    for suffix in (".zip", ".txt"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    stem = " ".join(stem.replace("\u00a0", " ").split())
    # A browser or a file manager saving a second copy adds " (1)": the same chat all the same.
    stem = re.sub(r" \(\d{1,3}\)$", "", stem)
    for pattern in _CHAT_NAME_PATTERNS:
        if found := pattern.match(stem):
            return found.group("n").strip()
    return stem or "chat"


def open_export(path: Path, *, name: str | None = None) -> ExportFile:
    """Open ``path`` (a .zip or a .txt; ``name`` is the upload's name when ``path`` is a temporary
    copy). Raises ExportFileError for a file that is no export."""
    name = name or path.name
    digest = _file_sha256(path)
    if not zipfile.is_zipfile(path):
        if path.stat().st_size > MAX_TRANSCRIPT_BYTES:
            raise ExportFileError(f"the chat text is over {MAX_TRANSCRIPT_BYTES} bytes")
        data = path.read_bytes()
        if data[:2] == b"PK":
            raise ExportFileError("the file starts like a zip but is not a readable zip archive")
        return ExportFile(path, name, digest, name, data, digest)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise ExportFileError(f"not a readable zip archive ({error})") from None
    with archive:
        infos = archive.infolist()
        _check_bounds(infos)
        files, unsafe, refused, ignored = _members(infos)
        transcript_info = _transcript(files, refused)
        media: dict[str, ExportMember] = {}
        renamed: list[tuple[str, str]] = []
        transcript = b""
        transcript_sha = ""
        for info in [*files, *unsafe]:
            chunks = _read(archive, info)
            if info is transcript_info:
                transcript = b"".join(chunks)
                transcript_sha = hashlib.sha256(transcript).hexdigest()
                continue
            key = PurePosixPath(info.filename).name
            if info in unsafe or key in media:
                # Kept, never dropped: a member whose name no line can mean (it leaves the archive, or
                # another member has it) is archived under a name of its own, and the report says so.
                key = _kept_name(info, len(renamed) + 1)
                renamed.append((_shown(info.filename), key))
            member_digest = hashlib.sha256()
            for chunk in chunks:
                member_digest.update(chunk)
            media[key] = ExportMember(info.filename, info.file_size, member_digest.hexdigest(), info)
    return ExportFile(path, name, digest, transcript_info.filename, transcript, transcript_sha, media, refused,
                      renamed, ignored, True)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_bounds(infos: list[zipfile.ZipInfo]) -> None:
    if len(infos) > MAX_MEMBERS:
        raise ExportFileError(f"the zip has {len(infos)} members, over the limit of {MAX_MEMBERS}")
    total = sum(info.file_size for info in infos)
    if total > MAX_TOTAL_BYTES:
        raise ExportFileError(f"the zip inflates to {total} bytes, over the limit of {MAX_TOTAL_BYTES}")
    for info in infos:
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            ratio = info.file_size // max(info.compress_size, 1)
            raise ExportFileError(f"member {_shown(info.filename)} inflates {ratio}:1, over the limit of "
                                  f"{MAX_RATIO}:1 (a zip bomb?)")


def _members(infos: list[zipfile.ZipInfo]) \
        -> tuple[list[zipfile.ZipInfo], list[zipfile.ZipInfo], list[tuple[str, str]], list[str]]:
    """(files, files with unsafe names, refused, ignored). A name is never a path here: an unsafe one
    only decides that the member cannot be the chat text nor be named by a line."""
    files: list[zipfile.ZipInfo] = []
    unsafe: list[zipfile.ZipInfo] = []
    refused: list[tuple[str, str]] = []
    ignored: list[str] = []
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name).parts
        if info.is_dir() or name.startswith("__MACOSX/"):
            ignored.append(_shown(name))
        elif info.flag_bits & 0x1:
            refused.append((_shown(name), "the member is encrypted: not read (it stays in the uploaded file)"))
        elif _UNSAFE_NAME.search(name) or ".." in parts or not parts:
            unsafe.append(info)
        else:
            files.append(info)
    return files, unsafe, refused, ignored


def _kept_name(info: zipfile.ZipInfo, number: int) -> str:
    base = _UNSAFE_NAME.sub("_", PurePosixPath(info.filename.replace("\\", "/")).name).strip(". ") or "file"
    return f"member-{number}-{base}"[:150]


def _transcript(files: list[zipfile.ZipInfo], refused: list[tuple[str, str]]) -> zipfile.ZipInfo:
    by_name = [info for info in files if PurePosixPath(info.filename).name == "_chat.txt"]
    if not by_name:
        texts = [info for info in files if info.filename.lower().endswith(".txt")]
        named = [info for info in texts if re.search(r"chat|whatsapp", PurePosixPath(info.filename).name, re.I)]
        by_name = sorted(named, key=lambda info: (len(info.filename), info.filename)) or \
            (texts if len(texts) == 1 else [])
    if not by_name:
        if any(name.endswith(".txt") and "encrypted" in why for name, why in refused):
            raise ExportFileError("the zip's chat text is encrypted: export again without a password")
        raise ExportFileError("the zip holds no chat text (_chat.txt, or a .txt named like a WhatsApp chat)")
    chosen = by_name[0]
    if chosen.file_size > MAX_TRANSCRIPT_BYTES:
        raise ExportFileError(f"the chat text {_shown(chosen.filename)} is over {MAX_TRANSCRIPT_BYTES} bytes")
    return chosen


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The member's bytes, checked against its declared size as they come (zipfile checks the CRC)."""
    read = 0
    try:
        with archive.open(info) as handle:
            while chunk := handle.read(_CHUNK):
                read += len(chunk)
                if read > info.file_size:
                    raise ExportFileError(f"member {_shown(info.filename)} inflates past its declared size")
                yield chunk
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        raise ExportFileError(f"member {_shown(info.filename)} cannot be read ({type(error).__name__})") from None


def _shown(name: str) -> str:
    """A member name fit for a message: control characters escaped, length capped."""
    cleaned = "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in name)
    return cleaned[:200]
