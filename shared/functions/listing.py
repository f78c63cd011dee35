"""Queue trigger on `listing`: a source's records to blobs, one item message each — one page of one
slice of a TeleMessage window, or one stored webhook body of a push source — and the follow-ups: a
webhook message's media to capture, a chat export's report to finish, a vendor's EML drop to judge
and hand off, and its report to finish."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import azure.functions as func

from shared.composition import get_container
from shared.domain.errors import PoisonReason, TransientError
from shared.domain.tasks import (
    ChatExportReportTask,
    EmlDropReportTask,
    EmlDropTask,
    MediaCaptureTask,
    PoisonMessage,
    TaskFormatError,
    WebhookBodyTask,
    read_listing_work,
)
from shared.service.chat_export_intake import finish_report
from shared.service.deferral import defer_on_retry_after
from shared.service.listing import list_slice_page
from shared.service.webhook_media import capture_media
from shared.service.webhook_records import split_webhook_body
from shared.settings import LISTING_QUEUE, STORAGE_CONNECTION

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.queue_trigger(arg_name="message", queue_name=LISTING_QUEUE, connection=STORAGE_CONNECTION)
def list_archive_slice(message: func.QueueMessage) -> None:
    container = get_container()
    body = message.get_body().decode("utf-8", errors="replace")
    try:
        task = read_listing_work(body)
    except TaskFormatError as error:
        # Retrying cannot repair a damaged task; keep it whole in the poison queue for a human.
        container.listing_poison_queue.send(PoisonMessage(
            reason=PoisonReason.INVALID_ITEM, detail=str(error), failed_at=datetime.now(UTC),
            attempts=message.dequeue_count or 1, original_message=body,
        ).model_dump(mode="json"))
        log.error("listing queue: message %s is not a listing task; moved to poison", message.id)
        return
    if isinstance(task, WebhookBodyTask):
        split_webhook_body(
            task, bodies=container.webhook_bodies, records=container.records, items_queue=container.items_queue,
            media_queue=container.listing_queue, poison_queue=container.items_poison_queue,
            ledger=container.ledger, clock=lambda: datetime.now(UTC),
        )
        return
    if isinstance(task, ChatExportReportTask):
        finish_report(task, uploads=container.chat_export_uploads, ledger=container.ledger,
                      report_queue=container.listing_queue, clock=lambda: datetime.now(UTC),
                      report_delay=container.settings.chat_export_report_delay_seconds)
        return
    if isinstance(task, EmlDropTask):
        from shared.service.eml_drop_intake import import_drop  # only when a drop comes (cold starts)

        import_drop(task, container.drop_stores, clock=lambda: datetime.now(UTC),
                    report_delay=container.settings.eml_drop_report_delay_seconds)
        return
    if isinstance(task, EmlDropReportTask):
        from shared.service.eml_drop_intake import finish_drop_report

        finish_drop_report(task, stores=container.drop_stores, clock=lambda: datetime.now(UTC),
                           report_delay=container.settings.eml_drop_report_delay_seconds)
        return
    if isinstance(task, MediaCaptureTask):
        capture_media(task, fetcher=container.meta_media, store=container.captured_media["whatsapp-cloud"],
                      items_queue=container.items_queue, clock=lambda: datetime.now(UTC))
        return
    try:
        list_slice_page(
            task,
            source=container.source,
            records=container.records,
            items_queue=container.items_queue,
            listing_queue=container.listing_queue,
            ledger=container.ledger,
            page_size=container.settings.telemessage_page_size,
            poison_queue=container.listing_poison_queue,
            evidence=container.evidence,
        )
    except TransientError as error:
        # A throttle longer than the host's few quick retries: the page waits on the queue, not in
        # a worker, as items do.
        delay = defer_on_retry_after(error, task, container.listing_queue)
        if delay is None:
            raise
        log.info("listing page %d of window %s handed back for %d s (the source asked to wait)", task.page,
                 task.window_id, delay)
