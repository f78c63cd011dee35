"""Event Grid blob trigger on `eml-drops`: a capture vendor's drop (a ZIP with its manifest, or an
.eml) becomes work on the listing queue, where it is judged and handed off as records."""

# No `from __future__ import annotations` here: the Python worker reads the trigger parameter's
# annotation itself to give it an SDK client instead of the blob's bytes.
from datetime import UTC, datetime

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_types

from shared.composition import get_container
from shared.settings import EML_DROPS_CONNECTION, EML_DROPS_CONTAINER

bp = func.Blueprint()


# The drop account is the SFTP account (EmlDrops__blobServiceUri), not host storage: the vendor's
# local user writes there and nowhere else. The parameter is a BlobClient (an SDK-type binding), so
# the host hands over a reference, never the ZIP's bytes. Only the name is used: the drop is queued
# as a task, and the listing function judges it (the same path a replay from poison takes).
@bp.blob_trigger(arg_name="client", path=EML_DROPS_CONTAINER + "/{name}", connection=EML_DROPS_CONNECTION,
                 source=func.BlobSource.EVENT_GRID)
def eml_drop_blob(client: blob_types.BlobClient) -> None:
    # Imported here, not with the app: every cold start of any function imports the whole registry,
    # and the drop path (ZIP checks, EML parsing) is needed only when a vendor delivers.
    from shared.service.eml_drop_intake import receive_drop

    container = get_container()
    receive_drop(client.blob_name, drops=container.eml_drops, listing_queue=container.listing_queue,
                 clock=lambda: datetime.now(UTC))
