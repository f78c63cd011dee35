"""What importing a record gives and takes: where the record came from (``RecordOrigin``), what became
of it (``ImportResult``), and the sink a mapped record goes to when it is not written at once
(``RecordSink``: daily transcript mode stages it for its day's transcript). A module of its own, so
that the importer and the transcript stager both depend on it and not on each other."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.domain.errors import PermanentError, PoisonReason
from shared.domain.ledger import MailboxResult, RecordOutcome
from shared.domain.records import ArchiveRecord
from shared.service.mapping import MappedMailbox


@dataclass(frozen=True)
class RecordOrigin:
    """Where a record being imported came from: the window that listed it and its claim check."""

    window_id: str
    record_ref: str
    # The key the record was listed under: a re-capture's own (``<key>.<digest>``) when the source
    # sent other bytes under an id stored before (shared.domain.recapture).
    record_key: str | None = None


@dataclass(frozen=True)
class ImportResult:
    outcome: RecordOutcome
    message_id: str | None
    mailboxes: tuple[MailboxResult, ...] = ()
    reason: PoisonReason | None = None
    detail: str | None = None
    partial: bool = False
    size_bytes: int = 0
    # Mapped mailboxes that could not take mail when written (no Exchange mailbox after all): not
    # part of the fan-out, but kept so the report shows which pairs were dropped and why.
    unavailable: tuple[str, ...] = ()
    source_user: str | None = None  # the sender's number, masked, for the admin report
    captured_at: datetime | None = None  # when TeleMessage captured the record (telemetry: latency)
    recapture_of: str | None = None  # the key of the record this one re-captures
    raw_sha256: str | None = None  # the imported bytes' SHA-256: the chain of evidence's link

    @classmethod
    def poisoned(cls, message_id: str | None, error: PermanentError) -> ImportResult:
        return cls(RecordOutcome.POISONED, message_id, reason=error.reason, detail=error.detail)


class RecordSink(Protocol):
    """Where a validated, mapped record goes instead of its mailboxes (daily transcript mode): it
    answers with the record's outcome (awaiting its transcript)."""

    def stage(self, record: ArchiveRecord, mapped: Sequence[MappedMailbox], origin: RecordOrigin) -> ImportResult:
        ...
