"""Which mailboxes a record goes to, by the documented precedence, per participant.

1. Custom mapping (if on): the participant's phone, normalised to E.164, looked up in the CSV.
2. If that yields no valid mailbox, and automatic mapping is on: the participant's email property.
3. If still none, and directory phone mapping is on: the Entra ID user whose ``mobilePhone`` or
   ``businessPhones`` is the participant's number (organisations with phones in Entra need no CSV).
A mailbox is valid only if the directory says the user exists and has a mailbox. A record goes
to every participant's mailbox that maps. When none does, the record goes to the catch-all mailbox
if one is configured (off by default, as the documented connector drops such records), else it is
poisoned ``no_mapping``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shared.domain.identifiers import is_mailbox_address
from shared.domain.ledger import MappingRule
from shared.domain.mapping_table import MappingTable
from shared.domain.phones import PhoneNumberError, normalize_participant_phone, normalize_phone
from shared.domain.records import ArchiveRecord, Participant
from shared.ports import MailboxDirectory, MappingSource, PhoneDirectory


@dataclass(frozen=True)
class MappedMailbox:
    address: str  # the mailbox's identity from the directory, lower-case
    rule: MappingRule


@dataclass(frozen=True)
class PhoneExplanation:
    """What ``mapping show PHONE`` prints: where a number's records go and why."""

    phone: str  # E.164, or the input when it is not a number
    mailbox: str | None
    rule: MappingRule | None
    notes: list[str] = field(default_factory=list[str])


class MailboxMapper:
    def __init__(
        self,
        directory: MailboxDirectory,
        mapping: MappingSource | None,
        *,
        custom_enabled: bool = True,
        auto_enabled: bool = True,
        default_region: str | None = None,
        phones: PhoneDirectory | None = None,
        catch_all: str | None = None,
    ) -> None:
        self._directory = directory
        self._mapping = mapping
        self._custom_enabled = custom_enabled and mapping is not None
        self._auto_enabled = auto_enabled
        self._region = default_region
        self._phones = phones
        self._catch_all = (catch_all or "").strip().lower() or None

    def map_record(self, record: ArchiveRecord) -> list[MappedMailbox]:
        return self.map_participants(record.participants)

    def map_participants(self, participants: Iterable[Participant]) -> list[MappedMailbox]:
        """The mailboxes of whoever took part (any source's participants, an EML's addresses too)."""
        table = self._mapping.current() if self._custom_enabled and self._mapping else None
        verdicts: dict[str, str | None] = {}  # one directory question per address per record

        def valid(address: str) -> str | None:
            if address not in verdicts:
                # A record's email property is the sender's word: only an address's grammar
                # reaches the directory (and so a Graph URL); anything else has no mailbox.
                verdicts[address] = self._directory.mailbox_identity(address) if is_mailbox_address(address) \
                    else None
            return verdicts[address]

        mapped: dict[str, MappedMailbox] = {}
        for participant in participants:
            choice = self._map_participant(participant, table, valid)
            if choice and choice.address not in mapped:
                mapped[choice.address] = choice
        if not mapped and self._catch_all and (identity := valid(self._catch_all)):
            return [MappedMailbox(identity, MappingRule.CATCH_ALL)]
        return list(mapped.values())

    def _map_participant(
        self, participant: Participant, table: MappingTable | None, valid: Callable[[str], str | None],
    ) -> MappedMailbox | None:
        phone = normalize_participant_phone(participant.phone, self._region)
        if table is not None:
            # A Business Platform number's id first: Meta keeps it when the display number changes form.
            entry = table.lookup_phone_number_id(participant.phone_number_id) if participant.phone_number_id else None
            if entry is None and phone:
                entry = table.lookup(phone)
            if entry is not None and (identity := valid(entry.email)):
                return MappedMailbox(identity, MappingRule.CSV)
        if self._auto_enabled:
            email = (participant.email or "").strip().lower()
            if email and (identity := valid(email)):
                return MappedMailbox(identity, MappingRule.EMAIL)
        if self._phones is not None and phone:
            user = self._phones.mailbox_for_phone(phone)
            if user and (identity := valid(user)):
                return MappedMailbox(identity, MappingRule.DIRECTORY_PHONE)
        return None

    def explain_phone(self, raw: str) -> PhoneExplanation:
        """Where records of a participant with this number (and no email property) would go."""
        try:
            phone = normalize_phone(raw, self._region)
        except PhoneNumberError as error:
            return PhoneExplanation(raw, None, None, [f"not a usable number: {error}"])
        notes: list[str] = []
        if not self._custom_enabled or self._mapping is None:  # custom_enabled says there is a mapping
            notes.append("custom mapping (CSV) is switched off")
        elif (entry := self._mapping.current().lookup(phone)) is None:
            notes.append("not in the mapping file")
        elif is_mailbox_address(entry.email) and (identity := self._directory.mailbox_identity(entry.email)):
            return PhoneExplanation(phone, identity, MappingRule.CSV, [f"mapping file line {entry.line}"])
        else:
            notes.append(f"the mapping file (line {entry.line}) names {entry.email}, which has no mailbox")
        notes.append(
            "a record's email property for this participant is tried next"
            if self._auto_enabled else "automatic mapping (email property) is switched off"
        )
        if self._phones is None:
            notes.append("directory phone mapping is switched off")
        elif (user := self._phones.mailbox_for_phone(phone)) is None:
            notes.append("no single Entra ID user has this number")
        elif is_mailbox_address(user) and (identity := self._directory.mailbox_identity(user)):
            return PhoneExplanation(phone, identity, MappingRule.DIRECTORY_PHONE, notes)
        else:
            notes.append(f"the Entra ID user with this number ({user}) has no mailbox")
        if self._catch_all:
            notes.append(f"a record no participant maps to goes to the catch-all mailbox {self._catch_all}")
        return PhoneExplanation(phone, None, None, notes)
