"""A re-capture: the source sent a record again under an id archived before, with other bytes.

The first item stays as it was archived (it is evidence); the new bytes are archived as an item of
their own, under the key ``<id's key>.<16 hex digits of the new bytes' SHA-256>``, saying which of
the record's fields differ from the earlier version. Counted apart from first captures in the
window's counts and report, so a source that rewrites what it sent is seen, never silently dropped
as a duplicate.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from shared.domain.identifiers import recapture_of
from shared.domain.json_values import is_json_object

# At most this many differing field names are listed; the rest are counted.
MAX_FIELDS_NAMED = 12


@dataclass(frozen=True)
class Recapture:
    key: str  # the re-capture's own record key
    of: str  # the key of the record archived before under the same id
    differs: tuple[str, ...]  # the source's top-level fields whose values differ; empty if unknown

    @property
    def note(self) -> str:
        if not self.differs:
            return "re-capture of a record archived before under the same id (the earlier version could not be read)"
        named = ", ".join(self.differs[:MAX_FIELDS_NAMED])
        more = len(self.differs) - MAX_FIELDS_NAMED
        return (f"re-capture of a record archived before under the same id; differs in: {named}"
                + (f" and {more} more field(s)" if more > 0 else ""))


def recapture(key: str, before: bytes | None, after: bytes) -> Recapture | None:
    """The re-capture ``key`` stands for (None when it is a first capture), comparing the bytes
    archived before with these."""
    of = recapture_of(key)
    if of is None:
        return None
    return Recapture(key, of, differing_fields(before, after) if before is not None else ())


def differing_fields(before: bytes, after: bytes) -> tuple[str, ...]:
    """The top-level fields of two JSON records whose values differ (added, removed or changed),
    by name, sorted; ``("record",)`` when either is not a JSON object. Names only: a field's value
    can be personal data, and the two items are both in the mailbox to compare."""
    try:
        old, new = json.loads(before), json.loads(after)
    except (ValueError, RecursionError):
        return ("record",)
    if not is_json_object(old) or not is_json_object(new):
        return ("record",)
    names = sorted(set(old) | set(new), key=str)
    # A field's name is the source's text too: one line, no controls, before it reaches an item.
    return tuple(_CONTROL.sub(" ", str(name))[:64] for name in names
                 if old.get(name, _ABSENT) != new.get(name, _ABSENT))


_ABSENT = object()
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
