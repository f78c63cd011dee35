"""Import one record: validate, map, fetch media, render, check size, write to every mailbox.

The outcome is returned, never swallowed: imported (into at least one mailbox), skipped as a
duplicate everywhere, or poisoned with a reason. Transient trouble raises TransientError so the
queue delivers the message again; every write is idempotent, so a retry after partial progress
finishes the job without duplicating anything.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import replace

from shared.domain.errors import MailboxUnavailable, PermanentError, PoisonReason
from shared.domain.identifiers import recapture_of
from shared.domain.item_digest import item_digest
from shared.domain.ledger import MailboxResult, RecordOutcome
from shared.domain.phones import masked_number
from shared.domain.recapture import Recapture, recapture
from shared.domain.records import ArchiveRecord, parse_record, record_key
from shared.domain.rendered import RenderedItem, base64_mime_size
from shared.domain.rendering import render
from shared.ports import ArchiveSource, AttachmentSource, MailboxWriter, RecordMissing, RecordStore, WriteOutcome
from shared.service.import_results import ImportResult, RecordOrigin, RecordSink
from shared.service.mapping import MailboxMapper, MappedMailbox
from shared.service.media import MediaSpool
from shared.service.replies import replied_text

log = logging.getLogger(__name__)

class ItemImporter:
    def __init__(
        self,
        mapper: MailboxMapper,
        writer: MailboxWriter,
        source: ArchiveSource | None,
        *,
        max_item_bytes: int,
        default_region: str | None = None,
        corrupt_after_attempts: int = 3,
        spool_dir: str | None = None,
        records: RecordStore | None = None,
        transcripts: RecordSink | None = None,
        media_sources: Mapping[str, AttachmentSource] | None = None,
    ) -> None:
        self._mapper = mapper
        self._writer = writer
        self._source = source
        self._max_item_bytes = max_item_bytes
        self._region = default_region
        self._corrupt_after_attempts = corrupt_after_attempts
        self._spool_dir = spool_dir
        self._records = records
        self._transcripts = transcripts
        # Where each source's media is read at import: TeleMessage serves its own attachments;
        # a push source's media was captured into storage when the message arrived.
        self._media_sources: dict[str, AttachmentSource | None] = {"telemessage": source, **(media_sources or {})}

    def import_raw(self, raw: bytes | str, *, attempt: int = 1, origin: RecordOrigin | None = None) -> ImportResult:
        # A queue message's text may hold lone surrogates (invalid, poisoned below): hashed as they are.
        raw_sha256 = hashlib.sha256(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw).hexdigest()
        try:
            record = parse_record(raw)
        except PermanentError as error:
            return replace(ImportResult.poisoned(None, error), raw_sha256=raw_sha256)
        try:
            again = self._recapture(raw, origin)
            result = self.import_record(record, attempt=attempt, origin=origin, recapture=again)
        except PermanentError as error:
            result = ImportResult.poisoned(record.message_id, error)
        return replace(
            result, source_user=masked_number(record.sender.phone, self._region), captured_at=record.captured_at,
            raw_sha256=raw_sha256,
        )

    def import_record(
        self, record: ArchiveRecord, *, attempt: int = 1, origin: RecordOrigin | None = None,
        recapture: Recapture | None = None,
    ) -> ImportResult:
        key = recapture.key if recapture is not None else record_key(record.message_id)
        mapped = self._mapper.map_record(record)
        if not mapped:
            raise PermanentError(PoisonReason.NO_MAPPING, "no participant maps to a mailbox that exists")
        self._precheck_size(record)
        # A re-capture is archived as an item of its own even in transcript mode: the day's
        # transcript holds the version first captured, and the change must stand out.
        if self._transcripts is not None and recapture is None:
            if origin is None:
                raise ValueError("daily transcript mode imports records from the items queue only")
            return self._transcripts.stage(record, mapped, origin)
        # Each source's media from its own place: Meta's media ids never reach the TeleMessage client.
        media_source = self._media_sources.get(record.source)
        with MediaSpool(
            media_source, max_bytes=self._max_item_bytes, attempt=attempt,
            corrupt_after_attempts=self._corrupt_after_attempts, spool_dir=self._spool_dir,
        ) as spool:
            media = {a.attachment_id: spool.payload(a) for a in record.attachments}
            item = render(record, media, default_region=self._region, replied_text=self._replied_text(record),
                          recapture=recapture)
            size = item.mime_size()
            if size > self._max_item_bytes:
                raise PermanentError(
                    PoisonReason.TOO_BIG, f"rendered item is {size} bytes, over the limit of {self._max_item_bytes}"
                )
            results, unavailable = write_everywhere(self._writer, key, mapped, item)
        if not results:
            raise PermanentError(PoisonReason.NO_MAPPING, "every mapped mailbox is unavailable")
        any_imported = any(r.outcome is RecordOutcome.IMPORTED for r in results)
        return ImportResult(
            RecordOutcome.IMPORTED if any_imported else RecordOutcome.SKIPPED_DUPLICATE,
            record.message_id,
            tuple(results),
            partial=item.partially_imported,
            size_bytes=size,
            unavailable=tuple(unavailable),
            detail=recapture.note if recapture is not None else None,
            recapture_of=recapture.of if recapture is not None else None,
        )

    def _recapture(self, raw: bytes | str, origin: RecordOrigin | None) -> Recapture | None:
        """What a re-capture changes, read against the version stored first under the same id."""
        if origin is None or origin.record_key is None or recapture_of(origin.record_key) is None:
            return None
        after = raw.encode("utf-8") if isinstance(raw, str) else raw
        before = None
        if self._records is not None:
            try:
                before = self._records.get(f"{recapture_of(origin.record_key)}.json")
            except RecordMissing:
                before = None  # said on the item: the earlier version could not be read
        found = recapture(origin.record_key, before, after)
        if found is not None and before is not None and not found.differs:
            # Other bytes, the same record (keys in another order, 1.0 for 1): not a re-capture.
            # Archived under the id's own key, so the first item is found and it is a duplicate.
            return None
        return found

    def _replied_text(self, record: ArchiveRecord) -> str | None:
        return replied_text(self._records, record) if self._records else None

    def _precheck_size(self, record: ArchiveRecord) -> None:
        declared = sum(a.size for a in record.attachments)
        estimate = sum(base64_mime_size(a.size) for a in record.attachments) + len(record.text_content or "")
        if estimate > self._max_item_bytes:
            raise PermanentError(
                PoisonReason.TOO_BIG,
                f"attachments declare {declared} bytes, over the item limit of {self._max_item_bytes} once encoded",
            )


def write_everywhere(
    writer: MailboxWriter, key: str, mapped: list[MappedMailbox], item: RenderedItem,
) -> tuple[list[MailboxResult], list[str]]:
    """``item`` written into every mapped mailbox, once each: the mailbox results, and the mapped
    mailboxes that turned out unable to take mail."""
    results: list[MailboxResult] = []
    unavailable: list[str] = []
    digest = item_digest(item)  # one item, the same in every mailbox
    for mailbox in mapped:
        try:
            outcome = writer.write(mailbox.address, item)
        except MailboxUnavailable as error:
            # The directory said yes but the mailbox cannot take mail: for mapping it is not a
            # valid mailbox. Retrying would loop forever.
            log.warning("record %s: a mapped mailbox is unavailable (%s)", key[:16], error.code)
            unavailable.append(mailbox.address)
            continue
        imported = outcome is WriteOutcome.IMPORTED
        # A duplicate is an item written before, perhaps by an earlier version whose rendering
        # differs (isolates, a new fact): its digest is unknown, and claiming this one's would make
        # verify report an untouched item as altered. The write that created it recorded its own.
        results.append(MailboxResult(
            mailbox.address,
            RecordOutcome.IMPORTED if imported else RecordOutcome.SKIPPED_DUPLICATE,
            mailbox.rule, item.record_id, digest if imported else None,
        ))
    return results, unavailable
