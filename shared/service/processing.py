"""The items queue's job: one ItemTask in, one accounted outcome out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared import telemetry
from shared.domain.errors import PoisonReason, TransientError
from shared.domain.ledger import OutcomeEntry, RecordOutcome
from shared.domain.tasks import ItemTask, PoisonMessage, TaskFormatError
from shared.ports import CLAIM_CHECK_UNREADABLE, RecordMissing, RecordStore, WindowLedger, WorkQueue
from shared.service.deferral import MAX_DEFERRALS, defer_on_retry_after
from shared.service.import_results import ImportResult, RecordOrigin
from shared.service.importing import ItemImporter

if TYPE_CHECKING:
    from shared.service.eml_import import EmlImporter

log = logging.getLogger(__name__)

__all__ = ["MAX_DEFERRALS", "process_item_message"]


def process_item_message(
    body: str,
    *,
    dequeue_count: int,
    records: RecordStore,
    importer: ItemImporter,
    poison_queue: WorkQueue,
    ledger: WindowLedger,
    retry_queue: WorkQueue | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    eml_importer: Callable[[], EmlImporter] | None = None,
) -> ImportResult | None:
    """Returns the result when the record is accounted for (imported, skipped, or poisoned with the
    poison message durably queued), or None when it was handed back to ``retry_queue`` to wait out
    a throttle. Raises on other transient trouble, leaving the message to the host's retries.
    ``eml_importer`` gives the importer of a vendor's EMLs, asked for only when an EML task comes (a
    deployment without drops never builds it)."""
    with telemetry.span(telemetry.SPAN_ARCHIVE_RECORD, attempt=dequeue_count) as span:
        try:
            result = _process(
                body, span, dequeue_count=dequeue_count, records=records, importer=importer,
                poison_queue=poison_queue, ledger=ledger, retry_queue=retry_queue, clock=clock,
                eml_importer=eml_importer,
            )
        except Exception:
            span.set(outcome="retry")
            raise
        if result is not None:
            span.set(outcome=result.outcome, reason=result.reason)
        return result


def _process(
    body: str,
    span: telemetry.SpanHandle,
    *,
    dequeue_count: int,
    records: RecordStore,
    importer: ItemImporter,
    poison_queue: WorkQueue,
    ledger: WindowLedger,
    retry_queue: WorkQueue | None,
    clock: Callable[[], datetime],
    eml_importer: Callable[[], EmlImporter] | None = None,
) -> ImportResult | None:
    try:
        task = ItemTask.from_text(body)
    except TaskFormatError as error:
        poison = PoisonMessage(
            reason=PoisonReason.INVALID_ITEM, detail=str(error), failed_at=clock(),
            attempts=dequeue_count, original_message=body,
        )
        poison_queue.send(poison.model_dump(mode="json"))
        log.warning(
            "items queue: a message that is not an item task was poisoned",
            extra=telemetry.dimensions(outcome=RecordOutcome.POISONED, reason=poison.reason),
        )
        telemetry.account_record(RecordOutcome.POISONED, reason=poison.reason)
        return ImportResult(RecordOutcome.POISONED, None, reason=poison.reason, detail=poison.detail)

    # A vendor's Message-ID may hold a phone number or an address: EMLs are logged by their key alone.
    ids = {"window_id": task.window_id, "record_id": task.message_id if task.format == "record" else None,
           "record_key": task.record_key}
    span.set(**ids)
    try:
        raw = records.get(task.record_ref)
    except RecordMissing:
        result = ImportResult(
            RecordOutcome.POISONED, task.message_id, reason=PoisonReason.INVALID_ITEM,
            detail=CLAIM_CHECK_UNREADABLE,
        )
    else:
        try:
            if task.format == "eml":
                if eml_importer is None:
                    raise ValueError("an EML item task needs the EML importer")
                # Written under the task's key, whatever the EML says: the key its drop was accounted under.
                result = eml_importer().import_eml(raw, file_name=task.file or task.record_key, key=task.record_key)
            else:
                result = importer.import_raw(
                    raw, attempt=dequeue_count, origin=RecordOrigin(task.window_id, task.record_ref, task.record_key),
                )
        except TransientError as error:
            delay = defer_on_retry_after(error, task, retry_queue)
            if delay is None:
                log.info(
                    "record %s: transient failure on attempt %d, left to the host's retries",
                    task.record_key[:16], dequeue_count, extra=telemetry.dimensions(**ids, outcome="retry"),
                )
                raise
            span.set(outcome="deferred")
            log.info(
                "record %s handed back to the queue for %d s (throttled)", task.record_key[:16], delay,
                extra=telemetry.dimensions(**ids, outcome="deferred"),
            )
            return None

    now = clock()
    mailboxes = [m.mailbox for m in result.mailboxes]
    span.set(mailboxes=mailboxes)
    dims = telemetry.dimensions(**ids, outcome=result.outcome, reason=result.reason, mailboxes=mailboxes)
    if result.outcome is RecordOutcome.POISONED:
        if result.reason is None:  # every poisoned result names its reason; a poison message needs one
            raise ValueError(f"record {task.record_key[:16]}: poisoned without a reason")
        poison_queue.send(PoisonMessage(
            reason=result.reason, detail=result.detail or "", window_id=task.window_id,
            record_key=task.record_key, record_ref=task.record_ref, message_id=task.message_id,
            failed_at=now, first_failed_at=task.first_failed_at or now, attempts=dequeue_count,
            replays=task.replays, record_format=task.format, file=task.file,
        ).model_dump(mode="json"))
        log.warning("record %s poisoned: %s", task.record_key[:16], result.reason, extra=dims)
    else:
        log.info(
            "record %s %s in %d mailbox(es)", task.record_key[:16], result.outcome, len(result.mailboxes),
            extra=dims,
        )
    ledger.record_outcome(task.window_id, OutcomeEntry(
        record_key=task.record_key, message_id=task.message_id, outcome=result.outcome, at=now,
        mailboxes=result.mailboxes, reason=result.reason, detail=result.detail, partial=result.partial,
        unavailable=result.unavailable, source_user=result.source_user, recapture_of=result.recapture_of,
        raw_sha256=result.raw_sha256,
    ))
    telemetry.account_record(
        result.outcome, reason=result.reason, partial=result.partial,
        written_rules=[m.rule for m in result.mailboxes if m.outcome is RecordOutcome.IMPORTED],
        size_bytes=result.size_bytes, captured_at=result.captured_at, archived_at=now,
    )
    return result
