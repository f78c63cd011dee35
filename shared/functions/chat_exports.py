"""Event Grid blob trigger on `chat-exports`: a custodian's export and its sidecar become records."""

# No `from __future__ import annotations` here: the Python worker reads the trigger parameter's
# annotation itself to give it an SDK client instead of the blob's bytes.
from datetime import UTC, datetime

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_types

from shared.composition import get_container
from shared.service.chat_export_intake import receive_upload
from shared.settings import CHAT_EXPORTS_CONTAINER, STORAGE_CONNECTION

bp = func.Blueprint()


# source=EVENT_GRID: Flex Consumption has no polling blob trigger; Event Grid delivers each
# BlobCreated to the host's blobs extension (the subscription is in both templates). The parameter
# is a BlobClient (an SDK-type binding), so the host hands over a reference, not the blob's bytes:
# an export with its media can be larger than the instance's memory. Only the blob's name is used;
# the import reads both halves of the upload through the checked adapter, streamed to local disk.
@bp.blob_trigger(arg_name="client", path=CHAT_EXPORTS_CONTAINER + "/{name}", connection=STORAGE_CONNECTION,
                 source=func.BlobSource.EVENT_GRID)
def chat_export_blob(client: blob_types.BlobClient) -> None:
    container = get_container()
    receive_upload(
        client.blob_name, uploads=container.chat_export_uploads,
        media_store=container.captured_media["whatsapp-chat-export"], records=container.records,
        items_queue=container.items_queue, report_queue=container.listing_queue, ledger=container.ledger,
        clock=lambda: datetime.now(UTC), report_delay=container.settings.chat_export_report_delay_seconds,
        transcripts_queue=container.transcripts_queue if container.settings.daily_transcripts else None,
        evidence=container.evidence,
        transcript_delay=container.settings.transcript_delay_minutes * 60,
    )
