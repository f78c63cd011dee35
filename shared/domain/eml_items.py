"""What a vendor's EML says about itself: its id, its time, its threading and who took part.

The id is the Message-ID when the EML has one, else the SHA-256 of its bytes, so the same EML
delivered twice is the same record. Participants come from From, To, Cc and Bcc: an address, and a
phone number wherever the vendor puts one — a local part such as ``+447700900123@vendor.example``
or a number in the display name — read by a pattern the operator can replace (``PHONE_IN_ADDRESS``
by default). Mapping then treats them as it treats any source's participants: the phone→email CSV
first, then the address, only real mailboxes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

from shared.domain.phones import normalize_participant_phone
from shared.domain.records import Participant

# A phone number as a vendor writes it into an address: the whole local part (``+447700900123``,
# ``447700900123``) or a run in the display name (``Alice Smith +44 7700 900123``).
PHONE_IN_ADDRESS = re.compile(r"(?<![\w+])\+?\d[\d ().-]{5,22}\d(?!\w)")
# ASCII only, as RFC 5322 writes one: a Message-ID of other characters cannot go into the item's own
# header, so such an EML is known by its bytes' hash instead (the same EML, the same id, still).
_MESSAGE_ID = re.compile(r"^<?([\x21-\x3b\x3d\x3f-\x7e]{1,900})>?$")
_ADDRESS_HEADERS = ("from", "to", "cc", "bcc")


class EmlInvalid(ValueError):
    """An EML that cannot be archived as it stands; the reason names what is missing or broken."""


@dataclass(frozen=True)
class EmlFacts:
    record_id: str  # "<Message-ID>" as written, or "sha256:<hex>" without one
    sha256: str
    subject: str
    sent_at: datetime
    sender: Participant
    recipients: tuple[Participant, ...]
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]


def read_eml(data: bytes, *, default_region: str | None = None,
             phone_pattern: re.Pattern[str] = PHONE_IN_ADDRESS) -> EmlFacts:
    """The facts of one EML, or EmlInvalid naming why it cannot be archived."""
    if not data.strip():
        raise EmlInvalid("the file is empty")
    message = BytesParser(policy=policy.default).parsebytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    senders = _participants(message, "from", default_region, phone_pattern)
    if not senders:
        raise EmlInvalid("no From address could be read")
    recipients = tuple(p for name in _ADDRESS_HEADERS[1:]
                       for p in _participants(message, name, default_region, phone_pattern))
    sent_at = _date(message)
    message_id = _message_id(message.get("message-id"))
    return EmlFacts(
        record_id=_record_id(message_id, sha256),
        sha256=sha256,
        subject=unescaped(str(message.get("subject") or "")),
        sent_at=sent_at,
        sender=senders[0],
        recipients=recipients,
        message_id=message_id,
        in_reply_to=_message_id(message.get("in-reply-to")),
        references=tuple(filter(None, map(_message_id, str(message.get("references") or "").split()))),
    )


def eml_record_id(data: bytes) -> str:
    """The id ``read_eml`` gives this EML, read from its headers alone and never refused: the record's
    key is needed to hand an EML off (and to account for it) before it is read whole."""
    try:
        message = BytesParser(policy=policy.default).parsebytes(data, headersonly=True)
        message_id = _message_id(message.get("message-id"))
    except (TypeError, ValueError, LookupError, IndexError):
        message_id = None
    return _record_id(message_id, hashlib.sha256(data).hexdigest())


def _record_id(message_id: str | None, sha256: str) -> str:
    # The one rule both readers follow: the key an EML is handed off under is the key it is written under.
    return f"<{message_id}>" if message_id else f"sha256:{sha256}"


def _date(message: EmailMessage) -> datetime:
    raw = message.get("date")
    if raw is None:
        raise EmlInvalid("no Date header: the original time is unknown")
    try:
        sent = parsedate_to_datetime(str(raw))
    except (TypeError, ValueError) as error:
        raise EmlInvalid(f"the Date header cannot be read ({error})") from None
    if sent.tzinfo is None:
        raise EmlInvalid("the Date header has no time zone: the original time is ambiguous")
    return sent.astimezone(UTC)


def _message_id(value: object) -> str | None:
    if value is None:
        return None
    found = _MESSAGE_ID.match(str(value).strip())
    return found.group(1) if found else None


def _participants(message: EmailMessage, header: str, region: str | None,
                  pattern: re.Pattern[str]) -> list[Participant]:
    try:
        # The email package parses a header when it is fetched, and a malformed address list can
        # raise there: the EML is then unreadable, not a crash that stops the rest of its drop.
        values = message.get_all(header) or []
        addresses: list[Address] = [a for value in values for a in getattr(value, "addresses", ())]
    except (IndexError, ValueError, TypeError, AttributeError) as error:
        raise EmlInvalid(f"the {header.capitalize()} header cannot be read ({type(error).__name__})") from None
    return [_participant(address, region, pattern) for address in addresses]


def unescaped(text: str) -> str:
    """Header text as the EML wrote it. The email package reads raw 8-bit header bytes (UTF-8 names,
    as RFC 6532 mail has them) as lone surrogates, which no encoder takes; they are UTF-8 again here,
    anything that is not UTF-8 replaced."""
    if not any("\udc80" <= c <= "\udcff" for c in text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _participant(address: Address, region: str | None, pattern: re.Pattern[str]) -> Participant:
    username, domain = unescaped(address.username), unescaped(address.domain)
    email = f"{username}@{_ascii_domain(domain)}" if username and domain else None
    name = unescaped(address.display_name) or None
    phone = None
    for text in (username, name):
        found = pattern.search(text or "")
        if found and (phone := normalize_participant_phone(found.group(), region)):
            break
    return Participant(phone=phone, email=email, display_name=name)


def _ascii_domain(domain: str) -> str:
    """An internationalised domain in the form the directory knows (IDNA, ``xn--``); as written when
    it has no such form (the address then maps to no mailbox, and the item shows it as a name)."""
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain
