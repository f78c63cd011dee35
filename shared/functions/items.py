"""Queue trigger on `items`: import one record into every mapped mailbox, or poison it with a reason."""

from __future__ import annotations

import azure.functions as func

from shared.composition import get_container
from shared.service.processing import process_item_message
from shared.settings import ITEMS_QUEUE, STORAGE_CONNECTION

bp = func.Blueprint()


@bp.queue_trigger(arg_name="message", queue_name=ITEMS_QUEUE, connection=STORAGE_CONNECTION)
def import_archive_item(message: func.QueueMessage) -> None:
    container = get_container()
    process_item_message(
        message.get_body().decode("utf-8", errors="replace"),
        dequeue_count=message.dequeue_count or 1,
        records=container.records,
        importer=container.importer,
        poison_queue=container.items_poison_queue,
        ledger=container.ledger,
        retry_queue=container.items_queue,
        eml_importer=lambda: container.eml_importer,
    )
