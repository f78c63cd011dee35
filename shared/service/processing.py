"""The items queue's job: one ItemTask in, one accounted outcome out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from shared.domain.errors import PoisonReason
from shared.domain.ledger import OutcomeEntry, RecordOutcome
from shared.domain.tasks import ItemTask, PoisonMessage, TaskFormatError
from shared.ports import RecordMissing, RecordStore, WindowLedger, WorkQueue
from shared.service.importing import ImportResult, ItemImporter

log = logging.getLogger(__name__)


def process_item_message(
    body: str,
    *,
    dequeue_count: int,
    records: RecordStore,
    importer: ItemImporter,
    poison_queue: WorkQueue,
    ledger: WindowLedger,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ImportResult:
    """Returns normally when the record is accounted for (imported, skipped, or poisoned with the
    poison message durably queued). Raises on transient trouble, leaving the message to the host."""
    try:
        task = ItemTask.from_text(body)
    except TaskFormatError as error:
        poison = PoisonMessage(
            reason=PoisonReason.INVALID_ITEM, detail=str(error), failed_at=clock(),
            attempts=dequeue_count, original_message=body,
        )
        poison_queue.send(poison.model_dump(mode="json"))
        log.warning("items queue: a message that is not an item task was poisoned")
        return ImportResult(RecordOutcome.POISONED, None, reason=poison.reason, detail=poison.detail)

    try:
        raw = records.get(task.record_ref)
    except RecordMissing:
        result = ImportResult(
            RecordOutcome.POISONED, task.message_id, reason=PoisonReason.INVALID_ITEM,
            detail="the claim-check blob of this record is missing",
        )
    else:
        result = importer.import_raw(raw, attempt=dequeue_count)

    now = clock()
    if result.outcome is RecordOutcome.POISONED:
        poison_queue.send(PoisonMessage(
            reason=result.reason, detail=result.detail or "", window_id=task.window_id,
            record_key=task.record_key, record_ref=task.record_ref, message_id=task.message_id,
            failed_at=now, attempts=dequeue_count,
        ).model_dump(mode="json"))
        log.warning("record %s poisoned: %s", task.record_key[:16], result.reason)
    else:
        log.info(
            "record %s %s in %d mailbox(es)", task.record_key[:16], result.outcome, len(result.mailboxes)
        )
    ledger.record_outcome(task.window_id, OutcomeEntry(
        record_key=task.record_key, message_id=task.message_id, outcome=result.outcome, at=now,
        mailboxes=result.mailboxes, reason=result.reason, detail=result.detail, partial=result.partial,
        unavailable=result.unavailable,
    ))
    return result
