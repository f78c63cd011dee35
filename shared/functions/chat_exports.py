"""Event Grid blob trigger on `chat-exports`: a custodian's export and its sidecar become records."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from shared.composition import get_container
from shared.service.chat_export_intake import receive_upload
from shared.settings import CHAT_EXPORTS_CONTAINER, STORAGE_CONNECTION

bp = func.Blueprint()


# source=EVENT_GRID: Flex Consumption has no polling blob trigger; Event Grid delivers each
# BlobCreated to the host's blobs extension (the subscription is in both templates).
@bp.blob_trigger(arg_name="blob", path=CHAT_EXPORTS_CONTAINER + "/{name}", connection=STORAGE_CONNECTION,
                 source=func.BlobSource.EVENT_GRID)
def chat_export_blob(blob: func.InputStream) -> None:
    container = get_container()
    # The blob is read again by name through the checked adapter (streamed to a spool file): the
    # event says which blob, and the import needs both halves of the upload, not only this one.
    name = (blob.name or "").split("/", 1)[-1]
    receive_upload(
        name, uploads=container.chat_export_uploads, media_store=container.captured_media["whatsapp-chat-export"],
        records=container.records, items_queue=container.items_queue, report_queue=container.listing_queue,
        ledger=container.ledger, clock=lambda: datetime.now(UTC),
    )
