"""The records the benchmark archives.

- ``realistic``: a day of shared/local/traffic/'s traffic (texts, photos, voice notes, documents,
  calls, reactions, edits, deletes, the showcase corner cases), with each record's chat owner
  re-addressed to one of ``mailboxes`` benchmark mailboxes in turn, so that one run spreads the same
  realistic mix evenly over 1 or 50 mailboxes. Every other participant is an outsider (no e-mail,
  no mapping): each record belongs in exactly one mailbox, found through the e-mail property.
- ``uniform``: copies of one kind of record (text only, or text with one attachment of a given
  size, downloaded from the local TeleMessage by id), for the per-record request counts and the
  memory figure.

Attachment bytes are not held here: a ``MediaSpec`` names them and the local TeleMessage makes
them on demand (bench/servers.py), exactly as the traffic generator would.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.servers import MediaSpec

DOMAIN = "bench.example"
SEED = 7


def mailbox_addresses(count: int) -> list[str]:
    return [f"employee{n:03d}@{DOMAIN}" for n in range(1, count + 1)]


@dataclass
class RecordSet:
    records: list[dict[str, Any]]
    media: MediaSpec
    seed: int
    mailboxes: list[str]  # every mailbox the records belong in

    @property
    def text_only(self) -> int:
        return sum(1 for r in self.records if not r.get("attachments"))


def realistic(count: int, mailboxes: int, *, anchor: datetime | None = None, seed: int = SEED) -> RecordSet:
    """About ``count`` records of a realistic day, spread over ``mailboxes`` mailboxes."""
    from bench.soak import scale_for
    from shared.local.traffic.day import generate_day

    anchor = anchor or default_anchor()
    traffic = generate_day(anchor, seed=seed, scale=scale_for(count, seed))
    addresses = mailbox_addresses(mailboxes)
    records = []
    for n, original in enumerate(traffic.records[:count] if len(traffic.records) > count else traffic.records):
        records.append(_readdressed(original, addresses[n % mailboxes]))
    used = {a["attachmentId"] for r in records for a in r.get("attachments") or ()}
    media: MediaSpec = {}
    for attachment_id in used:
        entry = traffic._media.get(attachment_id)
        if entry is not None:
            media[attachment_id] = (entry.size, entry.content_type, entry.captured)
    return RecordSet(records, media, seed, addresses)


def uniform(
    count: int, mailboxes: int, *, attachment_bytes: int = 0, anchor: datetime | None = None, seed: int = SEED,
    tag: str = "text",
) -> RecordSet:
    """``count`` text records (each with one attachment of ``attachment_bytes`` when given), the
    n-th for mailbox n mod ``mailboxes``, captured a minute apart before ``anchor``."""
    from shared.local.traffic.media import media_bytes as _media_bytes

    anchor = anchor or default_anchor()
    addresses = mailbox_addresses(mailboxes)
    records, media = [], {}
    last = int((anchor - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1)) - 60_000
    for n in range(count):
        archived = last - (count - n) * 1000
        record = _text_record(f"BENCH{tag.upper()}{n:06d}", addresses[n % mailboxes], archived)
        if attachment_bytes:
            attachment_id = f"att_bench_{tag}_{n:06d}"
            content_type = "video/mp4"
            data = _media_bytes(seed, attachment_id, attachment_bytes, content_type)
            record["messageType"] = "VIDEO"
            record["attachments"] = [{
                "attachmentId": attachment_id,
                "fileName": f"VID-BENCH-{n:06d}.mp4",
                "contentType": content_type,
                "size": attachment_bytes,
                "sha256": hashlib.sha256(data).hexdigest(),
            }]
            del data
            media[attachment_id] = (attachment_bytes, content_type, True)
        records.append(record)
    return RecordSet(records, media, seed, addresses[: min(count, mailboxes)])


def default_anchor(settle_minutes: int = 15) -> datetime:
    """The end of the benchmark's day of capture time: just before the newest a window may list."""
    return (datetime.now(UTC) - timedelta(minutes=settle_minutes)).replace(second=0, microsecond=0)


def _readdressed(record: dict[str, Any], mailbox: str) -> dict[str, Any]:
    record = copy.deepcopy(record)
    owner = record.get("owner") or {}
    owner_phone = owner.get("phone")
    for participant in [record.get("owner"), record.get("sender"), *(record.get("recipients") or [])]:
        if not isinstance(participant, dict):
            continue
        participant["email"] = mailbox if participant.get("phone") == owner_phone else None
    return record


def _text_record(message_id: str, mailbox: str, archived: int) -> dict[str, Any]:
    employee = {"phone": "+447700900555", "email": mailbox, "firstName": "Bench", "lastName": "Employee"}
    client = {"phone": "+12025550999", "email": None, "firstName": "Carla", "lastName": "Customer"}
    return {
        "messageId": message_id,
        "sourceType": "WHATSAPP_CLOUD_ARCHIVER",
        "event": "CREATED",
        "messageType": "TEXT",
        "messageTime": archived - 2000,
        "archivedTime": archived,
        "direction": "OUTGOING",
        "owner": dict(employee),
        "sender": dict(employee),
        "recipients": [dict(client)],
        "groupMessage": False,
        "dialogGroupId": None,
        "dialogGroupName": None,
        "textContent": "Confirming the 10:30 call about the revised term sheet; the numbers are in the deck.",
        "replyToMessageId": None,
        "relatedMessageId": None,
        "forwarded": False,
        "attachments": [],
    }
