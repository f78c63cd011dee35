"""A webhook message's media, captured as soon as the message is split out of its body.

Meta's media ids in webhooks expire after seven days and its download links after minutes: the
bytes are fetched now and kept in storage (the source's captured media), and only then is the
record handed on to import, which reads them from there. Media Meta no longer has is not an error:
the record goes on without it, and import archives it saying its media could not be captured
(counted as partially imported). A capture already done (a retried task) is not fetched again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from shared.domain.tasks import MediaCaptureTask
from shared.domain.window import isoformat_z
from shared.ports import CapturedMediaStore, MediaFetcher, WorkQueue

log = logging.getLogger(__name__)


def capture_media(
    task: MediaCaptureTask, *, fetcher: MediaFetcher, store: CapturedMediaStore, items_queue: WorkQueue,
    clock: Callable[[], datetime],
) -> None:
    """Errors propagate (the host retries the task; what was captured stays captured)."""
    gone = 0
    for media_id in task.media_ids:
        if store.has(media_id):
            continue  # captured by an earlier attempt of this task
        chunks = fetcher.open_media(media_id)
        if chunks is None:
            gone += 1
            continue
        size, _ = store.put(media_id, chunks, {"captured_at": isoformat_z(clock())})
        log.info("record %s: media captured (%d bytes)", task.item.record_key[:16], size)
    items_queue.send(task.item.model_dump(mode="json"))
    if gone:
        log.warning("record %s: %d media item(s) Meta no longer has; archived without them",
                    task.item.record_key[:16], gone)
