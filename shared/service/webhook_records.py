"""A stored webhook body becomes records on the items queue, like a listed page does.

Accounting: a push source has no windows of capture time, so its records are accounted in one
window per UTC day of receipt (``webhook_day``), each body being one finished "slice" of it. The
day window's hand-off time is the last millisecond of the day: no TeleMessage window can have that
id (their hand-off is never before their end), and the window counts as overdue only once the day
is over and six hours have passed with records still unaccounted.

Each message becomes a claim check and an item task exactly as listing makes them, so import,
mapping, rendering, poison and replay are the TeleMessage path's own. Each part of the body that
could not become a record is poisoned at once with the JSON path at fault and its fragment kept.
The page entry is written last, once every record's work is durably queued; then a marker beside
the body says it was split, so a body Meta sends again costs one read and queues nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, time, timedelta

from shared import telemetry
from shared.domain.errors import PoisonReason
from shared.domain.json_values import is_json_object
from shared.domain.ledger import OutcomeEntry, PageEntry, Receipt, RecordOutcome, WindowInfo
from shared.domain.phones import masked_number
from shared.domain.records import record_key
from shared.domain.tasks import ItemTask, MediaCaptureTask, PoisonMessage, WebhookBodyTask, capturable_media_ids
from shared.domain.whatsapp_cloud import BODY, StatusEvidence, WebhookBatch, WebhookProblem, parse_webhook
from shared.domain.whatsapp_outbound import parse_outbound
from shared.domain.window import Window
from shared.ports import PushSource, RecordStore, WebhookBodyStore, WindowLedger, WorkQueue
from shared.service.listing import serialise_item

log = logging.getLogger(__name__)


# The folder a body is stored under says who wrote it, and so which source reads it (the body
# reference's grammar admits only these folders).
PUSH_SOURCES: Mapping[str, PushSource] = {"webhooks": parse_webhook, "outbound": parse_outbound}


def webhook_day(received_at: datetime) -> WindowInfo:
    """The accounting window of the UTC day a webhook body arrived on."""
    day = received_at.astimezone(UTC).date()
    start = datetime.combine(day, time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    return WindowInfo(Window(start, end), 1, end - timedelta(milliseconds=1))


def split_webhook_body(
    task: WebhookBodyTask, *, bodies: WebhookBodyStore, records: RecordStore, items_queue: WorkQueue,
    media_queue: WorkQueue, poison_queue: WorkQueue, ledger: WindowLedger, clock: Callable[[], datetime],
) -> None:
    """Errors from storage and queues propagate (the host retries the task; every step repeats
    safely: claim checks are written once, item tasks are deduplicated at import)."""
    if bodies.split_done(task.body_ref):
        # Meta sent the same bytes again (or the task came back after its work was done): every
        # record of it is on its way already, and its problems are poisoned once, not per delivery.
        log.info("webhook body %s: split before, nothing to do", task.body_ref.rsplit("/", 1)[-1][:16])
        return
    raw = bodies.get(task.body_ref)
    try:
        batch = PUSH_SOURCES[task.body_ref.split("/", 1)[0]](raw, received_at=task.received_at)
    except Exception as error:  # a source that breaks its promise never to raise
        # Retrying would fail the same way and leave the body in no window: it is accounted as a
        # problem of the whole body instead, kept, with the kind of failure (never its message).
        log.error("webhook body %s could not be read (%s)", task.body_ref.rsplit("/", 1)[-1][:16],
                  type(error).__name__)
        batch = WebhookBatch(problems=(WebhookProblem(
            BODY, BODY, f"could not be read ({type(error).__name__})", raw.decode("utf-8", "replace"),
        ),))
    info = webhook_day(task.received_at)
    window_id = info.window_id
    if ledger.window(window_id) is None:
        ledger.open_window(info)
    keys: list[str] = []
    for message in batch.messages:
        reference = records.put(message.key, serialise_item(message.record))
        item = ItemTask(
            window_id=window_id, record_key=message.key, record_ref=reference, message_id=message.message_id,
        )
        media_ids = capturable_media_ids(message.record)
        # Media first (its ids expire), then the record goes on to import: the capture task hands it on.
        work = MediaCaptureTask(item=item, media_ids=media_ids) if media_ids else item
        (media_queue if media_ids else items_queue).send(work.model_dump(mode="json"))
        keys.append(message.key)
    for problem in batch.problems:
        keys.append(_poison(problem, window_id, records=records, poison_queue=poison_queue, ledger=ledger,
                            now=clock()))
    body_hash = task.body_ref.rsplit("/", 1)[-1].removesuffix(".json")
    receipts = tuple(_receipt(status) for status in batch.statuses)
    ledger.record_page(window_id, PageEntry(f"webhook-{body_hash[:32]}", 0, tuple(keys), True, receipts))
    bodies.mark_split(task.body_ref)
    telemetry.count_listed(len(keys), window_id=window_id)
    log.info(
        "webhook body %s: %d record(s), %d problem(s), %d status(es) (%d failed), %d notice(s)",
        body_hash[:16], len(batch.messages), len(batch.problems), len(receipts),
        sum(receipt.failed for receipt in receipts), len(batch.notices),
    )


def _receipt(status: StatusEvidence) -> Receipt:
    """What the window keeps of a receipt: no pricing, no conversation, the customer masked; the
    whole receipt stays in the stored body."""
    recipient = status.recipient_id
    if recipient and status.recipient_type != "group":
        recipient = masked_number("+" + recipient if recipient.isdigit() else recipient)
    errors = tuple(
        " ".join(str(part) for part in (error.get("code"), error.get("title")) if part is not None)[:200]
        for error in status.errors if is_json_object(error)  # Meta's JSON: any shape may come
    )
    return Receipt(status.message_id, status.status[:64], datetime.fromtimestamp(status.timestamp / 1000, UTC),
                   recipient, errors)


def _poison(
    problem: WebhookProblem, window_id: str, *, records: RecordStore, poison_queue: WorkQueue,
    ledger: WindowLedger, now: datetime,
) -> str:
    """The fragment kept as a claim check, a poison message naming the path at fault, the outcome
    in the ledger: the same three a record poisoned at import leaves."""
    fragment = serialise_item(problem.fragment)
    key = record_key(problem.message_id) if problem.message_id else \
        "unidentified-" + hashlib.sha256(fragment).hexdigest()
    reference = records.put(key, fragment)
    poison_queue.send(PoisonMessage(
        reason=PoisonReason.INVALID_ITEM, detail=problem.detail[:2000], window_id=window_id, record_key=key,
        record_ref=reference, message_id=problem.message_id, failed_at=now, first_failed_at=now,
    ).model_dump(mode="json"))
    ledger.record_outcome(window_id, OutcomeEntry(
        record_key=key, message_id=problem.message_id, outcome=RecordOutcome.POISONED, at=now,
        reason=PoisonReason.INVALID_ITEM.value, detail=problem.detail[:2000],
        # The chain of evidence checks the claim check under the record's own key: only when it is that one.
        raw_sha256=hashlib.sha256(fragment).hexdigest() if reference == f"{key}.json" else None,
    ))
    telemetry.account_record(RecordOutcome.POISONED, reason=PoisonReason.INVALID_ITEM)
    log.warning("webhook: a part of a body could not become a record (%s); poisoned with its fragment",
                problem.path, extra=telemetry.dimensions(outcome=RecordOutcome.POISONED,
                                                         reason=PoisonReason.INVALID_ITEM))
    return key

