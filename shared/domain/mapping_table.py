"""The custom phone → email mapping file, parsed as administrators really write it.

The documented format is a CSV with the header ``PhoneNumber,EmailAddress``. People produce it
from Excel and LibreOffice, so the parser also takes common header variants, a BOM, UTF-16,
semicolons or tabs, quotes and blank lines — and reports every problem with its line number rather than
failing on the first.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field
from enum import StrEnum

from email_validator import EmailNotValidError, validate_email

from shared.domain.identifiers import is_mailbox_address
from shared.domain.phones import PhoneNumberError, normalize_phone

PHONE_HEADERS = {"phonenumber", "phone", "mobile", "mobilephone", "mobilenumber", "phoneno"}
EMAIL_HEADERS = {"emailaddress", "email", "mail", "userprincipalname", "upn", "e-mail", "emailadress"}


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based line of the file; 0 for the file as a whole
    severity: Severity
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}: {self.severity}: {self.message}"


# A WhatsApp Business Platform number by its Graph id (``metadata.phone_number_id``), the key Meta
# keeps when the display number is re-formatted: written ``phone_number_id:<digits>`` in the phone
# column, so that the documented two-column file stays the only format.
PHONE_NUMBER_ID_PREFIX = "phone_number_id:"
_PHONE_NUMBER_ID = re.compile(r"phone_number_id:([0-9]{1,32})", re.IGNORECASE)


@dataclass(frozen=True)
class MappingEntry:
    phone: str  # E.164, or phone_number_id:<digits>
    email: str  # lower-case
    line: int


@dataclass(frozen=True)
class MappingTable:
    """E.164 phone (or a Business Platform number's id) → mailbox address. Built only from rows
    without errors."""

    entries: dict[str, MappingEntry] = field(default_factory=dict[str, MappingEntry])

    def lookup(self, e164: str) -> MappingEntry | None:
        return self.entries.get(e164)

    def lookup_phone_number_id(self, phone_number_id: str) -> MappingEntry | None:
        return self.entries.get(PHONE_NUMBER_ID_PREFIX + phone_number_id)

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(frozen=True)
class ParsedMapping:
    table: MappingTable
    problems: tuple[Problem, ...]
    rows: int

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.ERROR)

    @property
    def ok(self) -> bool:
        return not self.errors


def decode_mapping_bytes(data: bytes) -> str:
    """UTF-8 with or without BOM, or UTF-16 as Excel's "Unicode Text" saves it."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):].decode("utf-8")
    if len(data) >= 4 and data[1] == 0 and data[3] == 0:
        return data.decode("utf-16-le")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Excel on Windows saves "CSV" in the ANSI code page.
        return data.decode("cp1252")


def parse_mapping(data: bytes | str, default_region: str | None = None) -> ParsedMapping:
    text = decode_mapping_bytes(data) if isinstance(data, bytes) else data.lstrip("\ufeff")
    problems: list[Problem] = []
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return ParsedMapping(MappingTable(), (Problem(0, Severity.ERROR, "the file is empty"),), 0)

    delimiter = _delimiter(lines[first])
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    columns: tuple[int, int] | None = None  # (phone, email), once the header row is read
    entries: dict[str, MappingEntry] = {}
    seen_rows: dict[tuple[str, str], int] = {}
    # A phone mapped to two addresses is ambiguous: using either would risk sending a record to
    # the wrong person, a privacy incident. Neither row is used until the file is fixed.
    conflicted: set[str] = set()
    rows = 0
    for row in reader:
        line = reader.line_num
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if columns is None:
            header = _header_columns(cells)
            if isinstance(header, str):
                return ParsedMapping(MappingTable(), (Problem(line, Severity.ERROR, header),), 0)
            columns = header
            continue
        phone_col, email_col = columns
        rows += 1
        raw_phone = cells[phone_col] if phone_col < len(cells) else ""
        raw_email = cells[email_col] if email_col < len(cells) else ""
        row_errors: list[str] = []
        try:
            phone = _key(raw_phone, default_region)
        except PhoneNumberError as error:
            phone = None
            row_errors.append(f"phone number: {error}")
        email = _normalize_email(raw_email, row_errors)
        for message in row_errors:
            problems.append(Problem(line, Severity.ERROR, message))
        if phone is None or email is None:
            continue
        if (phone, email) in seen_rows:
            problems.append(Problem(
                line, Severity.WARNING, f"repeats line {seen_rows[(phone, email)]} (same phone and address)"
            ))
            continue
        seen_rows[(phone, email)] = line
        existing = entries.get(phone)
        if existing is not None:
            problems.append(Problem(
                line, Severity.ERROR,
                f"this phone number is already mapped to another address on line {existing.line}: "
                "one phone must map to one mailbox",
            ))
            conflicted.add(phone)
            continue
        entries[phone] = MappingEntry(phone, email, line)
    if columns is None:
        problems.append(Problem(0, Severity.ERROR, "no header row"))
    entries = {phone: entry for phone, entry in entries.items() if phone not in conflicted}
    return ParsedMapping(MappingTable(entries), tuple(sorted(problems, key=lambda p: p.line)), rows)


def _key(raw: str, default_region: str | None) -> str:
    if raw.lower().startswith(PHONE_NUMBER_ID_PREFIX):
        if not (match := _PHONE_NUMBER_ID.fullmatch(raw.replace(" ", ""))):
            raise PhoneNumberError("a phone_number_id is phone_number_id: and up to 32 digits")
        return PHONE_NUMBER_ID_PREFIX + match.group(1)
    return normalize_phone(raw, default_region)


def _delimiter(header_line: str) -> str:
    """Comma, or what Excel and LibreOffice write instead: semicolons in many locales, tabs in
    Excel's "Unicode Text"."""
    return max((",", ";", "\t"), key=header_line.count)


def _header_columns(cells: list[str]) -> tuple[int, int] | str:
    """The (phone, email) column indexes of a header row, or what is wrong with it."""
    keys = [cell.lower().replace(" ", "").replace("_", "") for cell in cells]
    phone_col = next((i for i, key in enumerate(keys) if key in PHONE_HEADERS), None)
    email_col = next((i for i, key in enumerate(keys) if key in EMAIL_HEADERS), None)
    if phone_col is None or email_col is None:
        return (
            "the first row must be the header PhoneNumber,EmailAddress "
            f"(found {len(cells)} column(s) without a recognisable "
            f"{'phone' if phone_col is None else 'email'} column)"
        )
    return phone_col, email_col


def _normalize_email(raw: str, errors: list[str]) -> str | None:
    if not raw:
        errors.append("the email address is empty")
        return None
    try:
        result = validate_email(raw, check_deliverability=False)
    except EmailNotValidError as error:
        errors.append(f"email address is not valid: {error}")
        return None
    address = result.normalized.lower()
    # RFC 5322 allows "/", "?" or "%" in a local part; no Exchange mailbox has them, and the
    # connector never sends such an address to the directory: say so here, not as no_mapping later.
    if not is_mailbox_address(address):
        errors.append("email address cannot be a mailbox's (it holds / \\ ? % or another character "
                      "mailbox addresses never have)")
        return None
    return address
