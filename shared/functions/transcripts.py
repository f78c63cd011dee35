"""Queue trigger on `transcripts` (daily transcript mode): dispatch the days that are over, or
compose one chat-day's transcript into every mapped mailbox."""

from __future__ import annotations

import azure.functions as func

from shared.composition import get_container
from shared.service.transcripts import process_transcript_message
from shared.settings import STORAGE_CONNECTION, TRANSCRIPTS_QUEUE

bp = func.Blueprint()


@bp.queue_trigger(arg_name="message", queue_name=TRANSCRIPTS_QUEUE, connection=STORAGE_CONNECTION)
def compose_transcripts(message: func.QueueMessage) -> None:
    container = get_container()
    process_transcript_message(
        message.get_body().decode("utf-8", errors="replace"),
        dequeue_count=message.dequeue_count or 1,
        composer=lambda: container.transcript_composer,
        ledger=container.ledger,
        store=container.transcript_store,
        queue=container.transcripts_queue,
        poison_queue=container.transcripts_poison_queue,
        policy=container.transcript_due_policy,
    )
