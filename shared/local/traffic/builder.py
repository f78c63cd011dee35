"""Builds the generated day's records: TeleMessage's record shape, message ids, capture times,
attachments, calls, system events, reactions, edits and deletions."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.window import utc
from shared.local.traffic.media import INLINE_LIMIT, KINDS, Media, media_bytes
from shared.local.traffic.roster import Person

# Capture times are epoch milliseconds.
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@dataclass
class Chat:
    owner: Person
    members: tuple[Person, ...]  # includes the owner
    group_id: str | None = None
    group_name: str | None = None

    @property
    def source_type(self) -> str:
        return str(self.owner.source_type)


class Clock:
    """Ascending capture times for one scripted conversation, seconds to minutes apart."""

    def __init__(self, rng: random.Random, start: int, end: int) -> None:
        self._rng = rng
        self._now = start
        self._end = end

    def __call__(self, min_gap: int = 2 * SECOND, max_gap: int = 4 * MINUTE) -> int:
        self._now += self._rng.randint(min_gap, max_gap)
        if self._now >= self._end:
            raise AssertionError("scripted conversation ran past its time budget")
        return self._now


class RecordBuilder:
    def __init__(self, anchor: datetime, seed: int, people: tuple[Person, ...]) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        anchor_us = (utc(anchor) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        # Rounded inwards, so an anchor with sub-millisecond digits still bounds every record.
        self.lo = -(-anchor_us // 1000) - DAY + MINUTE
        self.hi = anchor_us // 1000 - MINUTE  # exclusive
        self.p = {person.key: person for person in people}
        self.records: list[dict[str, Any]] = []
        self.media: dict[str, Media] = {}
        self.labels: dict[str, str] = {}
        self._ids: set[str] = set()
        self._file_counter = 0
        self._date_tag = (utc(anchor) - timedelta(hours=12)).strftime("%Y%m%d")

    # -- identifiers and times ---------------------------------------------------------------
    def message_id(self, source_type: str) -> str:
        while True:
            if source_type == "WHATSAPP_CLOUD_ARCHIVER":
                raw = self.rng.randbytes(24)
                candidate = "wamid." + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
            else:
                candidate = "3EB0" + self.rng.randbytes(8).hex().upper()
            if candidate not in self._ids:
                self._ids.add(candidate)
                return candidate

    def group_id(self) -> str:
        return f"120363{self.rng.randrange(10**11, 10**12)}@g.us"

    def clock(self, budget: int = 3 * HOUR) -> Clock:
        start = self.rng.randrange(self.lo, self.hi - budget)
        return Clock(self.rng, start, self.hi)

    # -- records -----------------------------------------------------------------------------
    def record(
        self,
        chat: Chat,
        sender: Person,
        archived: int,
        *,
        message_type: str = "TEXT",
        text: str | None = None,
        event: str = "CREATED",
        reply_to: dict[str, Any] | None = None,
        related: dict[str, Any] | str | None = None,
        forwarded: bool = False,
        attachments: Iterable[dict[str, Any]] = (),
        message_time: int | None = None,
        label: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        if message_time is None:
            message_time = archived - self.rng.randint(300, 9 * SECOND)
        related_id = related["messageId"] if isinstance(related, dict) else related
        record: dict[str, Any] = {
            "messageId": self.message_id(chat.source_type),
            "sourceType": chat.source_type,
            "event": event,
            "messageType": message_type,
            "messageTime": message_time,
            "archivedTime": archived,
            "direction": "OUTGOING" if sender.key == chat.owner.key else "INCOMING",
            "owner": chat.owner.participant(),
            "sender": sender.participant(),
            "recipients": [m.participant() for m in chat.members if m.key != sender.key],
            "groupMessage": chat.group_id is not None,
            "dialogGroupId": chat.group_id,
            "dialogGroupName": chat.group_name,
            "textContent": text,
            "replyToMessageId": reply_to["messageId"] if reply_to else None,
            "relatedMessageId": related_id,
            "forwarded": forwarded,
            "attachments": list(attachments),
        }
        record.update(extra)
        self.records.append(record)
        if label is not None:
            self.labels[label] = record["messageId"]
        return record

    def attachment(
        self,
        kind: str,
        size: int,
        *,
        file_name: str | None = None,
        captured: bool = True,
    ) -> dict[str, Any]:
        content_type, prefix, extension = KINDS[kind]
        attachment_id = "att_" + self.rng.randbytes(12).hex()
        if file_name is None:
            self._file_counter += 1
            file_name = f"{prefix}-{self._date_tag}-WA{self._file_counter:04d}.{extension}"
        data = media_bytes(self.seed, attachment_id, size, content_type)
        meta: dict[str, Any] = {
            "attachmentId": attachment_id,
            "fileName": file_name,
            "contentType": content_type,
            "size": size,
            # WhatsApp's own media metadata carries the hash, so even uncaptured media has one.
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        if captured and size <= INLINE_LIMIT:
            meta["content"] = base64.b64encode(data).decode("ascii")
        self.media[attachment_id] = Media(size, content_type, captured)
        return meta

    def small(self, kind: str, low: int = 3 * 1024, high: int = 45 * 1024, **kw: Any) -> dict[str, Any]:
        return self.attachment(kind, self.rng.randint(low, high), **kw)

    def call(self, chat: Chat, caller: Person, archived: int, call_type: str, result: str,
             duration: int = 0, label: str | None = None) -> dict[str, Any]:
        ring = self.rng.randint(3, 25) * SECOND
        start = archived - duration * SECOND - ring - self.rng.randint(1, 4) * SECOND
        end = start + ring + duration * SECOND
        info = {
            "callType": call_type,
            "result": result,
            "startTime": start,
            "endTime": end,
            "durationSeconds": duration if result == "ANSWERED" else 0,
        }
        return self.record(chat, caller, archived, message_type="CALL", message_time=start,
                           call=info, label=label)

    def system(self, chat: Chat, actor: Person, archived: int, event_type: str, description: str,
               label: str | None = None) -> dict[str, Any]:
        return self.record(chat, actor, archived, message_type="SYSTEM",
                           system={"eventType": event_type, "description": description}, label=label)

    def reaction(self, chat: Chat, who: Person, archived: int, target: dict[str, Any], emoji: str,
                 label: str | None = None) -> dict[str, Any]:
        return self.record(chat, who, archived, message_type="REACTION", related=target,
                           reaction={"emoji": emoji}, label=label)

    def edit(self, chat: Chat, original: dict[str, Any], archived: int, text: str,
             label: str | None = None) -> dict[str, Any]:
        sender = self.p[_key_of(self, original["sender"])]
        return self.record(chat, sender, archived, event="EDITED", message_type=original["messageType"],
                           related=original, text=text, label=label)

    def delete(self, chat: Chat, original: dict[str, Any] | None, sender: Person, archived: int,
               scope: str, *, repeat_content: bool, related_id: str | None = None,
               label: str | None = None) -> dict[str, Any]:
        deleted_time = archived - self.rng.randint(500, 5 * SECOND)
        return self.record(
            chat, sender, archived, event="DELETED",
            message_type=original["messageType"] if original else "TEXT",
            related=original["messageId"] if original else related_id,
            text=original["textContent"] if original and repeat_content else None,
            attachments=original["attachments"] if original and repeat_content else (),
            message_time=deleted_time,
            deletion={"scope": scope, "deletedTime": deleted_time},
            label=label,
        )


def _key_of(builder: RecordBuilder, participant: dict[str, Any]) -> str:
    for person in builder.p.values():
        if participant.get("phone") in (person.phone, person.captured_phone):
            return person.key
    raise KeyError(participant.get("phone"))
