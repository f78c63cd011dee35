"""Which mailboxes a record goes to, by the documented precedence, per participant.

1. Custom mapping (if on): the participant's phone, normalised to E.164, looked up in the CSV.
2. If that yields no valid mailbox, and automatic mapping is on: the participant's email property.
A mailbox is valid only if the directory says the user exists and has a mailbox. A record goes
to every participant's mailbox that maps; none → the record is poisoned ``no_mapping``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.domain.ledger import MappingRule
from shared.domain.mapping_table import MappingTable
from shared.domain.phones import normalize_participant_phone
from shared.domain.records import ArchiveRecord, Participant
from shared.ports import MailboxDirectory, MappingSource


@dataclass(frozen=True)
class MappedMailbox:
    address: str  # the mailbox's identity from the directory, lower-case
    rule: MappingRule


class MailboxMapper:
    def __init__(
        self,
        directory: MailboxDirectory,
        mapping: MappingSource | None,
        *,
        custom_enabled: bool = True,
        auto_enabled: bool = True,
        default_region: str | None = None,
    ) -> None:
        self._directory = directory
        self._mapping = mapping
        self._custom_enabled = custom_enabled and mapping is not None
        self._auto_enabled = auto_enabled
        self._region = default_region

    def map_record(self, record: ArchiveRecord) -> list[MappedMailbox]:
        table = self._mapping.current() if self._custom_enabled and self._mapping else None
        verdicts: dict[str, str | None] = {}  # one directory question per address per record

        def valid(address: str) -> str | None:
            if address not in verdicts:
                verdicts[address] = self._directory.mailbox_identity(address)
            return verdicts[address]

        mapped: dict[str, MappedMailbox] = {}
        for participant in record.participants:
            choice = self._map_participant(participant, table, valid)
            if choice and choice.address not in mapped:
                mapped[choice.address] = choice
        return list(mapped.values())

    def _map_participant(
        self, participant: Participant, table: MappingTable | None, valid: Callable[[str], str | None],
    ) -> MappedMailbox | None:
        if table is not None:
            phone = normalize_participant_phone(participant.phone, self._region)
            entry = table.lookup(phone) if phone else None
            if entry is not None and (identity := valid(entry.email)):
                return MappedMailbox(identity, MappingRule.CSV)
        if self._auto_enabled:
            email = (participant.email or "").strip().lower()
            if email and (identity := valid(email)):
                return MappedMailbox(identity, MappingRule.EMAIL)
        return None
