"""The canonical archive record, validated as the schema says.

The models mirror ``telemessage-item.schema.json`` field by field (camelCase on the wire,
snake_case in Python), extended with the facts the WhatsApp Business Platform delivers that
TeleMessage's shape has no field for (interactive replies, orders, ad referrals, Meta's errors,
business-scoped user ids). Every record says which source produced it (``source``); TeleMessage
records, which never carry the new fields, validate and render exactly as before.

Unknown fields are kept, never rejected: vendors add fields over time and a compliance archive
must not lose what it was given. Validation is strict (no "123" for an integer, no 1 for a
boolean) because a record that does not match the contract is poisoned as ``invalid_item`` with
its payload kept, not silently coerced.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

from shared.domain.errors import PermanentError, PoisonReason

# Year 9999-12-31T23:59:59.999Z: the schema only says "minimum 0", but a larger value cannot be
# a real time and would make datetime arithmetic fail far from the validation that should catch it.
MAX_EPOCH_MS = 253_402_300_799_999

EpochMillis = Annotated[int, Field(ge=0, le=MAX_EPOCH_MS)]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

# WHATSAPP_CLOUD_ARCHIVER is TeleMessage's capture product of that name, not Meta's webhooks.
SourceType = Literal[
    "WHATSAPP_ARCHIVER", "WHATSAPP_CLOUD_ARCHIVER", "WHATSAPP_BUSINESS_PLATFORM", "WHATSAPP_CHAT_EXPORT",
]
Source = Literal["telemessage", "whatsapp-cloud", "whatsapp-chat-export"]
RecordEvent = Literal["CREATED", "EDITED", "DELETED"]
MessageType = Literal[
    "TEXT", "IMAGE", "VIDEO", "AUDIO", "VOICE_NOTE", "DOCUMENT",
    "STICKER", "LOCATION", "CONTACT", "CALL", "REACTION", "SYSTEM",
    # Business Platform only:
    "INTERACTIVE", "TEMPLATE_REPLY", "ORDER", "UNSUPPORTED", "MEDIA_PLACEHOLDER", "TEMPLATE",
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
    # Business Platform identities: a customer may have no phone at all (a username user), and
    # the business number's stable key is its Graph id, not its display digits.
    wa_id: str | None = None
    user_id: str | None = None
    username: str | None = None
    phone_number_id: str | None = None

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
    # Meta announces media by id and sends no size: the bytes are fetched later by that id, and
    # until then the size is not a fact (size_known False, size 0).
    media_id: str | None = None
    media_url: str | None = None
    size_known: bool = True


class Deletion(_Model):
    scope: Literal["FOR_ME", "FOR_EVERYONE"] | None = None
    deleted_time: EpochMillis | None = None


CallType = Literal["VOICE", "VIDEO"]
DateOrder = Literal["dmy", "mdy", "ymd"]  # how a chat export writes its dates (day, month, year first)


class CallInfo(_Model):
    call_type: CallType | None = None
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
    phones: list[str] = Field(default_factory=list[str])
    emails: list[str] = Field(default_factory=list[str])
    organization: str | None = None


class Reaction(_Model):
    emoji: str | None = None  # "" means the reaction was removed


class SystemEvent(_Model):
    event_type: Literal[
        "GROUP_CREATED", "PARTICIPANT_ADDED", "PARTICIPANT_REMOVED", "PARTICIPANT_LEFT",
        "SUBJECT_CHANGED", "ICON_CHANGED", "SECURITY_CODE_CHANGED", "NUMBER_CHANGED", "OTHER",
        "USER_ID_CHANGED",
    ] | None = None
    description: str | None = None


class InteractiveReply(_Model):
    """A tap or a form: a reply button, a list row, a Flow or address form, a template button, or
    (sent by the business) the interactive message itself."""

    kind: str | None = None  # as Meta names it: button_reply, list_reply, nfm_reply, template_button...
    reply_id: str | None = None
    title: str | None = None
    description: str | None = None
    flow_name: str | None = None
    body: str | None = None
    payload_json: str | None = None  # the JSON behind it, exactly (a Flow's response_json)


class OrderItem(_Model):
    product_retailer_id: str | None = None
    quantity: Annotated[float, Field(ge=0)] | None = None
    item_price: float | None = None
    currency: str | None = None


class Order(_Model):
    catalog_id: str | None = None
    text: str | None = None
    items: list[OrderItem] = Field(default_factory=list[OrderItem])


class Referral(_Model):
    """The ad or post a customer tapped to start the chat (Click-to-WhatsApp)."""

    source_url: str | None = None
    source_id: str | None = None
    source_type: str | None = None
    headline: str | None = None
    body: str | None = None
    media_type: str | None = None
    image_url: str | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None
    ctwa_clid: str | None = None
    welcome_text: str | None = None


class ReferredProduct(_Model):
    catalog_id: str | None = None
    product_retailer_id: str | None = None


class PlatformError(_Model):
    """An error the platform reported with a message (why its content could not be delivered)."""

    code: int | None = None
    title: str | None = None
    message: str | None = None
    details: str | None = None
    href: str | None = None


class ExportOrigin(_Model):
    """Where in a custodian's "Export chat" file a record was read, and how its time was read: the
    export carries the phone's wall clock and no zone, so the zone is the operator's word."""

    file_name: Annotated[str, StringConstraints(max_length=500)]
    file_sha256: Sha256Hex  # the export as uploaded (the .zip, or the .txt)
    transcript_sha256: Sha256Hex | None = None  # the chat text inside a .zip
    first_line: Annotated[int, Field(ge=0)]  # 0 for a media file no line names
    last_line: Annotated[int, Field(ge=0)]
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    local_time: str | None = None  # the timestamp as printed in the file
    time_note: str | None = None  # a DST gap or repeat, or a clock marker that did not fit
    date_order: DateOrder | None = None
    date_order_assumed: bool = False
    author_as_printed: str | None = None
    occurrence: Annotated[int, Field(ge=0)] = 0  # among identical lines of the same minute
    chat_name: str | None = None
    edited: bool = False  # the export marked the text as edited (only the final text is exported)
    raw: str | None = None  # the lines verbatim


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
    attachments: list[Attachment] = Field(default_factory=list[Attachment])
    call: CallInfo | None = None
    location: LocationInfo | None = None
    contacts: list[ContactCard] = Field(default_factory=list[ContactCard])
    reaction: Reaction | None = None
    system: SystemEvent | None = None
    source: Source = "telemessage"
    frequently_forwarded: bool = False
    interactive: InteractiveReply | None = None
    order: Order | None = None
    referral: Referral | None = None
    referred_product: ReferredProduct | None = None
    platform_errors: list[PlatformError] = Field(default_factory=list[PlatformError])
    unsupported_type: str | None = None  # what the platform could not deliver, by its own name
    # Whose word the content is, where it is not the platform's own delivery (a send the firm's
    # application reported): shown to the reviewer beside the source.
    provenance: Annotated[str, StringConstraints(max_length=500)] | None = None
    export: ExportOrigin | None = None  # a record read from a custodian's chat export

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


def parse_record(raw: bytes | str) -> ArchiveRecord:
    """Validate a record; a PermanentError(invalid_item) names what is wrong, never the values."""
    try:
        return ArchiveRecord.model_validate_json(raw)
    except ValidationError as error:
        problems = [
            f"{'.'.join(map(str, e['loc'])) or '(record)'}: {e['msg']}"
            for e in error.errors(include_input=False, include_url=False)[:10]
        ]
        more = error.error_count() - len(problems)
        detail = "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
        raise PermanentError(PoisonReason.INVALID_ITEM, detail[:2000]) from None
