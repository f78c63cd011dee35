"""A deterministic "realistic day of WhatsApp traffic", as TeleMessage would archive it: the demo,
the local TeleMessage server and the tests all feed on it (docs/local-stack.md). Same anchor and
seed give byte-identical output."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shared.domain.window import Window, utc
from shared.local.traffic.builder import RecordBuilder
from shared.local.traffic.chatter import filler
from shared.local.traffic.media import Media, media_bytes
from shared.local.traffic.roster import MAILBOXES, Person, roster
from shared.local.traffic.showcase import showcase


@dataclass
class TrafficDay:
    """One generated day: the records, their attachment bytes, the people, the mapping inputs."""

    anchor: datetime
    seed: int
    records: list[dict[str, Any]]
    people: tuple[Person, ...]
    labels: dict[str, str]  # a name for each showcase record -> its messageId
    _media: dict[str, Media] = field(repr=False)

    @property
    def window(self) -> Window:
        """A capture-time window that holds every record of the day."""
        return Window(self.anchor - timedelta(hours=24), self.anchor)

    def attachment_bytes(self, attachment_id: str) -> bytes | None:
        """The attachment's bytes, or None for media never captured (or an id this day never used)."""
        media = self._media.get(attachment_id)
        if media is None or not media.captured:
            return None
        return media_bytes(self.seed, attachment_id, media.size, media.content_type)

    def attachment_ids(self) -> list[str]:
        return list(self._media)

    def person(self, key: str) -> Person:
        for person in self.people:
            if person.key == key:
                return person
        raise KeyError(key)

    def record(self, label: str) -> dict[str, Any]:
        message_id = self.labels[label]
        return next(r for r in self.records if r["messageId"] == message_id)

    def mapping_csv(self) -> str:
        """The custom user-mapping CSV an administrator would upload, numbers typed by hand."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["PhoneNumber", "EmailAddress"])
        for person in self.people:
            if person.csv_phone is not None:
                writer.writerow([person.csv_phone, person.csv_email])
        return buffer.getvalue()

    def directory(self) -> list[str]:
        """Addresses that have an Exchange Online mailbox."""
        return sorted(MAILBOXES)

    def expected_mailbox(self, person: Person) -> str | None:
        """Where a correct mapping sends this person's records: the CSV first, then the property."""
        mailboxes = {address.lower(): address for address in self.directory()}
        for address in (person.csv_email, person.email):
            if address and address.lower() in mailboxes:
                return mailboxes[address.lower()]
        return None

    def write_jsonl(self, path: str | Path, *, inline_all: bool = True) -> int:
        return write_jsonl(path, self.records, self.attachment_bytes, inline_all=inline_all)


def write_jsonl(
    path: str | Path,
    records: Iterable[dict[str, Any]],
    attachment_bytes: Callable[[str], bytes | None],
    *,
    inline_all: bool = True,
) -> int:
    """Write one record per line; with ``inline_all`` every captured attachment's bytes go inline.

    Media that was never captured stays without ``content``, exactly as the API would give it.
    Returns the number of records written. Records are written one at a time so the 12 MB video
    is the most that is ever held in memory.
    """
    count = 0
    with Path(path).open("w", encoding="utf-8", newline="\n") as out:
        for record in records:
            if inline_all and record.get("attachments"):
                record = dict(record)
                attachments = []
                for attachment in record["attachments"]:
                    if attachment.get("content") is None:
                        data = attachment_bytes(attachment["attachmentId"])
                        if data is not None:
                            attachment = {**attachment, "content": base64.b64encode(data).decode("ascii")}
                    attachments.append(attachment)
                record["attachments"] = attachments
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            # Line separators are legal raw inside JSON strings but split lines for str.splitlines().
            line = line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
            out.write(line + "\n")
            count += 1
    return count


def generate_day(anchor: datetime, *, seed: int = 7, scale: int = 1) -> TrafficDay:
    """A day of captured WhatsApp traffic whose archivedTimes fall in [anchor - 24h + 1 min, anchor - 1 min).

    ``scale`` multiplies the everyday chatter (for benchmarks); the showcase records that cover
    every corner case, including the single 12 MB attachment, appear exactly once.
    """
    if scale < 1:
        raise ValueError("scale must be at least 1")
    people = roster()
    b = RecordBuilder(anchor, seed, people)
    showcase(b)
    filler(b, scale)
    b.records.sort(key=lambda r: (r["archivedTime"], r["messageId"]))
    return TrafficDay(anchor=utc(anchor), seed=seed, records=b.records, people=people,
                      labels=b.labels, _media=b.media)


def iter_attachments(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every attachment object of every record, in record order."""
    for record in records:
        yield from record.get("attachments") or ()
