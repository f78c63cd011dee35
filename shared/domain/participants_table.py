"""``--participants NAMES.csv``: a chat's people as the export shows them → their work email.

Exports show a saved contact by the name on the custodian's phone, so only the custodian (or
whoever collects the export) can say which names are employees. Each row is checked against its
grammar (an address a mailbox can have; a name of printable text) and a bad row is named by its
line, never used; a name given twice with two addresses is an error, since a record must never go
to a guess.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from shared.domain.chat_export_records import normalized_name
from shared.domain.identifiers import is_mailbox_address

MAX_NAME = 200
MAX_ROWS = 100_000


@dataclass(frozen=True)
class ParticipantsTable:
    names: dict[str, str] = field(default_factory=dict[str, str])  # name as written → email (lower case)
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_participants(data: bytes) -> ParticipantsTable:
    """Rows of ``name,email``; a first row ``Name,Email`` (any case) is a header."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return ParticipantsTable(problems=(f"line {line}: not UTF-8",))
    rows: list[tuple[str, list[str]]] = []
    for number, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if number > MAX_ROWS:
            return _checked(rows, extra=(f"more than {MAX_ROWS} rows: the rest is not read",))
        if number == 1 and [c.strip().lower() for c in row[:2]] == ["name", "email"]:
            continue
        rows.append((f"line {number}", row))
    return _checked(rows)


def check_participants(pairs: dict[str, str]) -> ParticipantsTable:
    """The same rules for a sidecar's ``participants`` object (entries named by their position)."""
    return _checked([(f"participant {n}", [name, email]) for n, (name, email) in enumerate(pairs.items(), 1)])


def _checked(rows: list[tuple[str, list[str]]], extra: tuple[str, ...] = ()) -> ParticipantsTable:
    names: dict[str, str] = {}
    seen: dict[str, tuple[str, str]] = {}
    problems: list[str] = []
    for where, row in rows:
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            problems.append(f"{where}: expected 2 columns (name,email), found {len(row)}")
            continue
        name, email = row[0].strip(), row[1].strip().lower()
        if not name or len(name) > MAX_NAME or not name.isprintable():
            problems.append(f"{where}: the name is empty, over {MAX_NAME} characters or not printable")
            continue
        if not is_mailbox_address(email):
            problems.append(f"{where}: the email is not an address a mailbox can have")
            continue
        key = normalized_name(name)
        if key in seen and seen[key][0] != email:
            problems.append(f"{where}: the name is also at {seen[key][1]} with another email")
            continue
        seen[key] = (email, where)
        names[name] = email
    return ParticipantsTable(names, tuple(problems) + extra)
