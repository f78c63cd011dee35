"""A vendor's EML drop checked before anything in it is imported: the ZIP's own name, its members
(no path outside the archive, no nested archive, no bomb) and, when it carries one, its manifest.

Capture Mobile (TeleMessage) delivers ZIPs named ``YYYYMMDD0000-TeleMessage_<file#>_<TimeZipped>.zip``
holding EML files and a ``.mf`` manifest whose ``Count:`` must equal the number of EMLs, every
listed name present and not empty (docs/sources.md, "Vendor EML drops"). The manifest's layout as
we model it: ``Key: value`` lines (``Count:`` required), and every other non-empty line a listed
file name. A ZIP without a ``.mf`` (another vendor's) is checked for safety only.

Nothing here reads a member's bytes: the checks use the central directory, whose sizes a crafted
archive can misstate, so ``read_member`` enforces the same limits while it reads.
"""

from __future__ import annotations

import re
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

TELEMESSAGE_ZIP = re.compile(
    r"^(?P<day>\d{8})0000-TeleMessage_(?P<number>\d{1,9})_(?P<zipped>[0-9A-Za-z-]{1,40})\.zip$"
)
_ARCHIVE_SUFFIXES = (".zip", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".cab", ".jar")
_UNSAFE_CHARACTERS = re.compile(r"[\\:]")
_HEADER_LINE = re.compile(r"^(?P<key>[A-Za-z][A-Za-z0-9 _-]{0,40}):\s*(?P<value>.*)$")


@dataclass(frozen=True)
class DropLimits:
    """Bounds on what one ZIP may unpack to, each named in the error that enforces it."""

    max_members: int = 100_000
    max_member_bytes: int = 150 * 1024 * 1024  # Graph's largest item; an EML bigger cannot be archived whole
    max_total_bytes: int = 8 * 1024 * 1024 * 1024
    max_ratio: int = 200  # uncompressed / compressed, for members over ratio_floor_bytes
    ratio_floor_bytes: int = 1024 * 1024
    max_manifest_bytes: int = 16 * 1024 * 1024


DEFAULT_LIMITS = DropLimits()


class DropProblem(StrEnum):
    UNSAFE_MEMBER_NAME = "unsafe_member_name"
    NESTED_ARCHIVE = "nested_archive"
    TOO_MANY_MEMBERS = "too_many_members"
    MEMBER_TOO_BIG = "member_too_big"
    TOO_BIG_IN_ALL = "too_big_in_all"
    COMPRESSION_RATIO = "compression_ratio"
    ENCRYPTED_MEMBER = "encrypted_member"
    UNSUPPORTED_COMPRESSION = "unsupported_compression"
    MANIFESTS = "more_than_one_manifest"
    MANIFEST_UNREADABLE = "manifest_unreadable"
    COUNT_MISSING = "count_missing"
    COUNT_MISMATCH = "count_mismatch"
    LISTED_TWICE = "listed_twice"
    LISTED_MISSING = "listed_missing"
    LISTED_EMPTY = "listed_empty"
    NOT_LISTED = "not_listed"


# Problems that make the ZIP unsafe to open at all: never imported, not even with an accepted mismatch.
UNSAFE = frozenset({
    DropProblem.UNSAFE_MEMBER_NAME, DropProblem.NESTED_ARCHIVE, DropProblem.TOO_MANY_MEMBERS,
    DropProblem.MEMBER_TOO_BIG, DropProblem.TOO_BIG_IN_ALL, DropProblem.COMPRESSION_RATIO,
    DropProblem.ENCRYPTED_MEMBER, DropProblem.UNSUPPORTED_COMPRESSION,
})
# What Python's zipfile unpacks; Deflate64 (Windows Explorer's for large files), PPMd and others it
# cannot, so a member packed so is named before anything is imported rather than failing mid-way.
_READABLE_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})


@dataclass(frozen=True)
class Finding:
    problem: DropProblem
    detail: str  # names the member or the figure; never a member's content

    def __str__(self) -> str:
        return f"{self.problem}: {self.detail}"


@dataclass(frozen=True)
class DropName:
    """What a Capture Mobile ZIP's name says: the day it was made, its sequence number, when zipped."""

    day: date
    number: int
    zipped: str


@dataclass(frozen=True)
class Manifest:
    count: int | None
    names: tuple[str, ...]
    headers: dict[str, str] = field(default_factory=dict[str, str])


@dataclass(frozen=True)
class DropVerdict:
    """``emls``: the EML members to import, in archive order. ``manifest``: None when the ZIP has none."""

    findings: tuple[Finding, ...]
    emls: tuple[zipfile.ZipInfo, ...]
    manifest: Manifest | None

    @property
    def safe(self) -> bool:
        return not any(f.problem in UNSAFE for f in self.findings)

    @property
    def manifest_holds(self) -> bool:
        return self.safe and not self.findings

    def describe(self) -> str:
        if self.findings:
            return "; ".join(map(str, self.findings))
        return "manifest holds" if self.manifest is not None else "no manifest"


def parse_drop_name(name: str) -> DropName | None:
    """A TeleMessage ZIP's name, or None for a name in another vendor's shape (or none at all)."""
    found = TELEMESSAGE_ZIP.match(name)
    if found is None:
        return None
    try:
        day = date(int(found["day"][:4]), int(found["day"][4:6]), int(found["day"][6:]))
    except ValueError:
        return None
    return DropName(day, int(found["number"]), found["zipped"])


def parse_manifest(text: str) -> Manifest:
    """``Key: value`` lines, ``Count:`` among them; every other non-empty line a listed file name."""
    headers: dict[str, str] = {}
    names: list[str] = []
    # Lines end at a line feed only (a CR before it dropped; CR alone where the text has no line feed):
    # str.splitlines would also split at characters a listed name may hold, and a manifest that holds
    # would seem not to.
    for raw in text.split("\n" if "\n" in text else "\r"):
        line = raw.removesuffix("\r").strip(" \t").lstrip("\ufeff")
        if not line:
            continue
        header = _HEADER_LINE.match(line)
        if header is not None and not line.lower().endswith(".eml"):
            headers[header["key"].strip().lower()] = header["value"].strip()
        else:
            names.append(line)
    count_text = headers.get("count", "")
    count = int(count_text) if count_text.isdigit() else None
    return Manifest(count, tuple(names), headers)


def member_name_problem(name: str) -> str | None:
    """Why a member's name could reach outside the folder it is unpacked into, or None."""
    if not name or len(name) > 1024:
        return "empty or longer than 1,024 characters"
    if _UNSAFE_CHARACTERS.search(name) or any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        # C0, DEL and C1 controls and the line separators: a name holding one would be one name to the
        # ZIP and another to a manifest line, a log or a header.
        return "a control character, a line separator, a backslash or a drive colon"
    if name.startswith("/"):
        return "an absolute path"
    if any(part in ("..", ".") for part in name.rstrip("/").split("/")):
        return "a '.' or '..' path segment"
    return None


def check_drop(archive: zipfile.ZipFile, limits: DropLimits = DEFAULT_LIMITS) -> DropVerdict:
    """Every finding about ``archive``, from its central directory and its manifest (if any)."""
    infos = archive.infolist()
    findings: list[Finding] = []
    if len(infos) > limits.max_members:
        return DropVerdict((Finding(DropProblem.TOO_MANY_MEMBERS, f"{len(infos)} members, over {limits.max_members}"),),
                           (), None)
    files = [info for info in infos if not info.is_dir()]
    findings += _safety(files, limits)
    manifests = [info for info in files if info.filename.lower().endswith(".mf")]
    emls = tuple(info for info in files if info.filename.lower().endswith(".eml"))
    if not _all_safe(findings):
        return DropVerdict(tuple(findings), emls, None)
    if len(manifests) > 1:
        findings.append(Finding(DropProblem.MANIFESTS, ", ".join(i.filename for i in manifests)))
        return DropVerdict(tuple(findings), emls, None)
    if not manifests:
        return DropVerdict(tuple(findings), emls, None)
    try:
        text = read_member(archive, manifests[0], limits.max_manifest_bytes).decode("utf-8-sig")
    except (UnicodeDecodeError, MemberTooBig, zipfile.BadZipFile) as error:
        findings.append(Finding(DropProblem.MANIFEST_UNREADABLE, f"{manifests[0].filename}: {error}"))
        return DropVerdict(tuple(findings), emls, None)
    manifest = parse_manifest(text)
    findings += _manifest_findings(manifest, emls)
    return DropVerdict(tuple(findings), emls, manifest)


def _all_safe(findings: Iterable[Finding]) -> bool:
    return not any(f.problem in UNSAFE for f in findings)


def _safety(files: list[zipfile.ZipInfo], limits: DropLimits) -> list[Finding]:
    findings: list[Finding] = []
    total = 0
    # Two members of one name: one of them is hidden by the other wherever the ZIP is unpacked.
    findings += [Finding(DropProblem.UNSAFE_MEMBER_NAME, f"{name!r}: {count} members of this name")
                 for name, count in Counter(info.filename for info in files).items() if count > 1]
    for info in files:
        name = info.filename
        why = member_name_problem(name)
        if why is not None:
            findings.append(Finding(DropProblem.UNSAFE_MEMBER_NAME, f"{name!r}: {why}"))
            continue
        if name.lower().endswith(_ARCHIVE_SUFFIXES):
            findings.append(Finding(DropProblem.NESTED_ARCHIVE, f"{name}: archives inside the drop are not opened"))
        if info.flag_bits & 0x1:
            findings.append(Finding(DropProblem.ENCRYPTED_MEMBER, f"{name}: encrypted"))
        if info.compress_type not in _READABLE_COMPRESSION:
            findings.append(Finding(DropProblem.UNSUPPORTED_COMPRESSION,
                                    f"{name}: compression method {info.compress_type} cannot be unpacked"))
        if info.file_size > limits.max_member_bytes:
            findings.append(Finding(DropProblem.MEMBER_TOO_BIG,
                                    f"{name}: {info.file_size} bytes, over {limits.max_member_bytes}"))
        if info.file_size > limits.ratio_floor_bytes and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            ratio = info.file_size // max(info.compress_size, 1)
            findings.append(Finding(DropProblem.COMPRESSION_RATIO, f"{name}: {ratio}:1, over {limits.max_ratio}:1"))
        total += info.file_size
    if total > limits.max_total_bytes:
        findings.append(Finding(DropProblem.TOO_BIG_IN_ALL, f"{total} bytes unpacked, over {limits.max_total_bytes}"))
    return findings


def _manifest_findings(manifest: Manifest, emls: tuple[zipfile.ZipInfo, ...]) -> list[Finding]:
    findings: list[Finding] = []
    by_name = {info.filename: info for info in emls}
    if manifest.count is None:
        findings.append(Finding(DropProblem.COUNT_MISSING, "the manifest has no numeric Count: line"))
    elif manifest.count != len(emls):
        findings.append(Finding(DropProblem.COUNT_MISMATCH,
                                f"Count: {manifest.count}, the ZIP holds {len(emls)} EML file(s)"))
    seen: set[str] = set()
    for name in manifest.names:
        if name in seen:
            findings.append(Finding(DropProblem.LISTED_TWICE, name))
            continue
        seen.add(name)
        info = by_name.get(name)
        if info is None:
            findings.append(Finding(DropProblem.LISTED_MISSING, name))
        elif info.file_size == 0:
            findings.append(Finding(DropProblem.LISTED_EMPTY, name))
    findings += [Finding(DropProblem.NOT_LISTED, name) for name in by_name if name not in seen]
    return findings


class MemberTooBig(ValueError):
    """A member unpacked to more than its limit (whatever the central directory claimed)."""


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """A member's bytes, refused past ``limit`` as they are unpacked: the bound holds even when the
    archive misstates the member's size."""
    chunks: list[bytes] = []
    size = 0
    with archive.open(info) as stream:
        while chunk := stream.read(1024 * 1024):
            size += len(chunk)
            if size > limit:
                raise MemberTooBig(f"{info.filename}: more than {limit} bytes unpacked")
            chunks.append(chunk)
    return b"".join(chunks)
