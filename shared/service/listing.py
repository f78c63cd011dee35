"""List one page of one slice: store each record as a claim-check blob and queue its import."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from shared.domain.ledger import PageEntry
from shared.domain.records import record_key
from shared.domain.tasks import ItemTask, ListingTask
from shared.ports import ArchiveSource, RecordStore, WindowLedger, WorkQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageResult:
    records: int
    has_more: bool


def list_slice_page(
    task: ListingTask,
    *,
    source: ArchiveSource,
    records: RecordStore,
    items_queue: WorkQueue,
    listing_queue: WorkQueue,
    ledger: WindowLedger,
    page_size: int,
) -> PageResult:
    """Order matters for "nothing lost": blob, then its queue message, then the page's ledger entry,
    then the continuation. A failure anywhere raises, the task is retried, and the repeats are
    absorbed downstream (blobs are overwritten with the same bytes; imports are idempotent)."""
    page = source.list_page(task.slice, task.page_token, page_size)
    keys: list[str] = []
    for raw in page.items:
        body = json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        message_id = _message_id(raw)
        key = record_key(message_id) if message_id else "unidentified-" + hashlib.sha256(body).hexdigest()
        reference = records.put(key, body)
        items_queue.send(ItemTask(
            window_id=task.window_id, record_key=key, record_ref=reference, message_id=message_id,
        ).model_dump(mode="json"))
        keys.append(key)
    last = not page.next_page_token
    ledger.record_page(task.window_id, PageEntry(task.slice.id, task.page, tuple(keys), last))
    if page.next_page_token:
        listing_queue.send(task.next_page(page.next_page_token).model_dump(mode="json"))
    log.info("window %s slice %s page %d: %d records handed off", task.window_id, task.slice.id, task.page, len(keys))
    return PageResult(len(keys), not last)


def _message_id(raw: object) -> str | None:
    """The record's id when it has a usable one; a record without one is still stored and queued,
    to be poisoned as invalid_item with its payload kept rather than dropped here."""
    if isinstance(raw, dict):
        value = raw.get("messageId")
        if isinstance(value, str) and 0 < len(value) <= 256:
            return value
    return None
