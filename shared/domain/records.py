"""The TeleMessage archive record, validated as the schema says.

The models mirror ``telemessage-item.schema.json`` field by field (camelCase on the wire,
snake_case in Python). Unknown fields are kept, never rejected: the vendor adds fields over
time and a compliance archive must not lose what it was given. Validation is strict (no
"123" for an integer, no 1 for a boolean) because a record that does not match the contract
is poisoned as ``invalid_item`` with its payload kept, not silently coerced.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

# Year 9999-12-31T23:59:59.999Z: the schema only says "minimum 0", but a larger value cannot be
# a real time and would make datetime arithmetic fail far from the validation that should catch it.
MAX_EPOCH_MS = 253_402_300_799_999

EpochMillis = Annotated[int, Field(ge=0, le=MAX_EPOCH_MS)]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

SourceType = Literal["WHATSAPP_ARCHIVER", "WHATSAPP_CLOUD_ARCHIVER"]
RecordEvent = Literal["CREATED", "EDITED", "DELETED"]
MessageType = Literal[
    "TEXT", "IMAGE", "VIDEO", "AUDIO", "VOICE_NOTE", "DOCUMENT",
    "STICKER", "LOCATION", "CONTACT", "CALL", "REACTION", "SYSTEM",
]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        strict=True,
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
    )


class Participant(_Model):
    phone: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    display_name: str | None = None

    @property
    def name(self) -> str | None:
        """The person's name as a reviewer would read it, or None when the record has none."""
        full = " ".join(part for part in (self.first_name, self.last_name) if part and part.strip())
        return full.strip() or (self.display_name or "").strip() or None


class Attachment(_Model):
    attachment_id: Annotated[str, StringConstraints(min_length=1)]
    file_name: str
    content_type: str | None = None
    size: Annotated[int, Field(ge=0)]
    sha256: Sha256Hex | None = None
    content: str | None = None  # base64; only present for small files


class Deletion(_Model):
    scope: Literal["FOR_ME", "FOR_EVERYONE"] | None = None
    deleted_time: EpochMillis | None = None


class CallInfo(_Model):
    call_type: Literal["VOICE", "VIDEO"] | None = None
    result: Literal["ANSWERED", "MISSED", "REJECTED", "CANCELLED", "FAILED"] | None = None
    start_time: EpochMillis | None = None
    end_time: EpochMillis | None = None
    duration_seconds: Annotated[int, Field(ge=0)] | None = None


class LocationInfo(_Model):
    latitude: Annotated[float, Field(ge=-90, le=90)] | None = None
    longitude: Annotated[float, Field(ge=-180, le=180)] | None = None
    name: str | None = None
    address: str | None = None


class ContactCard(_Model):
    display_name: str | None = None
    phones: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    organization: str | None = None


class Reaction(_Model):
    emoji: str | None = None  # "" means the reaction was removed


class SystemEvent(_Model):
    event_type: Literal[
        "GROUP_CREATED", "PARTICIPANT_ADDED", "PARTICIPANT_REMOVED", "PARTICIPANT_LEFT",
        "SUBJECT_CHANGED", "ICON_CHANGED", "SECURITY_CODE_CHANGED", "NUMBER_CHANGED", "OTHER",
    ] | None = None
    description: str | None = None


class ArchiveRecord(_Model):
    message_id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    source_type: SourceType
    event: RecordEvent = "CREATED"
    message_type: MessageType
    message_time: EpochMillis
    archived_time: EpochMillis
    direction: Literal["INCOMING", "OUTGOING"] | None = None
    owner: Participant
    sender: Participant
    recipients: Annotated[list[Participant], Field(min_length=1, max_length=1024)]
    group_message: bool = False
    dialog_group_id: str | None = None
    dialog_group_name: str | None = None
    text_content: str | None = None
    reply_to_message_id: str | None = None
    related_message_id: str | None = None
    forwarded: bool = False
    deletion: Deletion | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    call: CallInfo | None = None
    location: LocationInfo | None = None
    contacts: list[ContactCard] = Field(default_factory=list)
    reaction: Reaction | None = None
    system: SystemEvent | None = None

    @property
    def participants(self) -> tuple[Participant, ...]:
        return (self.sender, *self.recipients)

    @property
    def sent_at(self) -> datetime:
        return epoch_ms_to_datetime(self.message_time)

    @property
    def captured_at(self) -> datetime:
        return epoch_ms_to_datetime(self.archived_time)


def epoch_ms_to_datetime(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def record_key(message_id: str) -> str:
    """A stable, storage-safe key for a record: message ids are free text up to 256 characters."""
    return hashlib.sha256(message_id.encode("utf-8")).hexdigest()
