"""List one page of one slice: store each record as a claim-check blob and queue its import."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from shared import telemetry
from shared.domain.errors import PoisonReason
from shared.domain.identifiers import stored_record_key
from shared.domain.json_values import is_json_object
from shared.domain.ledger import PageEntry
from shared.domain.records import record_key
from shared.domain.tasks import ItemTask, ListingTask, PoisonMessage
from shared.ports import ArchiveSource, EvidenceStore, RecordStore, WindowLedger, WorkQueue

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
    poison_queue: WorkQueue | None = None,
    evidence: EvidenceStore | None = None,
) -> PageResult:
    """Order matters for "nothing lost": blob, then its queue message, then the page's ledger entry,
    then the continuation, then the page's "listed" mark. A failure anywhere raises, the task is
    retried, and the repeats are absorbed downstream (blobs are overwritten with the same bytes;
    imports are idempotent); once marked, a page run again does nothing, so it never sends a second
    continuation (which would fork the rest of its slice)."""
    with telemetry.span(
        telemetry.SPAN_LIST_PAGE, window_id=task.window_id, slice=task.slice.id, page=task.page,
    ) as span:
        if ledger.page_listed(task.window_id, task.slice.id, task.page):
            log.info("window %s slice %s page %d: listed before, nothing to do", task.window_id, task.slice.id,
                     task.page)
            span.set(outcome="listed_before")
            return PageResult(0, False)
        page = source.list_page(task.slice, task.page_token, page_size)
        keys: list[str] = []
        bodies = [serialise_item(raw) for raw in page.items]
        if evidence is not None and bodies:
            # The page's records as listed, one JSON line each (compact JSON holds no raw newline), under
            # WORM retention before any of their work is handed off: one write per page, not per record
            # (a write per record would double the storage writes a record costs; docs/scale.md).
            evidence.keep("telemessage-page", b"\n".join(bodies) + b"\n",
                          {"window": task.window_id, "page": str(task.page)})
        for raw, body in zip(page.items, bodies, strict=True):
            message_id = _message_id(raw)
            key = record_key(message_id) if message_id else "unidentified-" + hashlib.sha256(body).hexdigest()
            reference = records.put(key, body)
            # Other bytes under an id stored before: a re-capture, listed and archived as a record
            # of its own (shared.domain.recapture), never skipped as the earlier one's duplicate.
            key = stored_record_key(reference)
            items_queue.send(ItemTask(
                window_id=task.window_id, record_key=key, record_ref=reference, message_id=message_id,
            ).model_dump(mode="json"))
            keys.append(key)
        last = not page.next_page_token
        ledger.record_page(task.window_id, PageEntry(task.slice.id, task.page, tuple(keys), last))
        if page.next_page_token:
            continuation = task.next_page(page.next_page_token)
            if task.loops_back(page.next_page_token):
                _poison_loop(task, continuation, poison_queue)
            else:
                listing_queue.send(continuation.model_dump(mode="json"))
        ledger.mark_page_listed(task.window_id, task.slice.id, task.page)
        span.set(outcome="listed", records=len(keys), last_page=last)
        telemetry.count_listed(len(keys), window_id=task.window_id)
        log.info(
            "window %s slice %s page %d: %d records handed off", task.window_id, task.slice.id, task.page, len(keys),
            extra=telemetry.dimensions(
                window_id=task.window_id, outcome="listed", slice=task.slice.id, page=task.page, records=len(keys),
            ),
        )
    return PageResult(len(keys), not last)


def _poison_loop(task: ListingTask, continuation: ListingTask, poison_queue: WorkQueue | None) -> None:
    """The continuation kept in poison with its reason, never followed: the slice stays unfinished,
    so its window is flagged overdue, and a replay (once the source pages properly) resumes it."""
    detail = (f"slice {task.slice.id} page {continuation.page}: the source handed back a page token this slice "
              "had followed already (or paged past any real slice); following it would list the same pages "
              "for ever")
    log.error("window %s: %s", task.window_id, detail)
    if poison_queue is None:
        return
    now = datetime.now(UTC)
    poison_queue.send(PoisonMessage(
        reason=PoisonReason.PAGE_TOKEN_LOOP, detail=detail, window_id=task.window_id, failed_at=now,
        first_failed_at=now, original_message=continuation.to_text(), source_queue="listing",
    ).model_dump(mode="json"))


def _message_id(raw: object) -> str | None:
    """The record's id when it has a usable one; a record without one is still stored and queued,
    to be poisoned as invalid_item with its payload kept rather than dropped here."""
    if is_json_object(raw):
        value = raw.get("messageId")
        if isinstance(value, str) and 0 < len(value) <= 256 and _is_utf8(value):
            return value
    return None


def _is_utf8(text: str) -> bool:
    # A "\\ud800" escape in the source's JSON parses to a lone surrogate: no UTF-8 form, so no key.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def serialise_item(raw: object) -> bytes:
    """The item as compact UTF-8 JSON, exactly the value the source sent, whatever it is.

    Two things the plain ``json.dumps(...).encode()`` cannot store, and which must not stall the
    page (one bad record would hold back every good record listed with it):
    - text with lone surrogates (a "\\ud800" escape in the source's JSON): kept as \\u escapes;
    - nesting deeper than Python's recursion limit: written out without recursion.
    Either way the blob parses back to the same value, and import poisons it as invalid_item.
    """
    for ensure_ascii in (False, True):
        try:
            text = json.dumps(raw, ensure_ascii=ensure_ascii, separators=(",", ":"))
        except RecursionError:
            text = _dumps_without_recursion(raw, ensure_ascii=ensure_ascii)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            continue  # lone surrogates: the ASCII form escapes them
    raise AssertionError("ASCII JSON always encodes")  # pragma: no cover


@dataclass
class _Open:
    """A container being written: its remaining (key, child) pairs (no key in an array), its closing
    bracket, its id, and whether the next child is its first."""

    children: Iterator[tuple[object, object]]
    closing: str
    ident: int
    first: bool = True


def _dumps_without_recursion(value: object, *, ensure_ascii: bool) -> str:
    """``json.dumps(value, separators=(",", ":"))`` with an explicit stack instead of recursion."""
    parts: list[str] = []
    open_containers: set[int] = set()
    stack: list[_Open] = []

    def begin(item: object) -> None:
        ident = id(item)
        children: Iterator[tuple[object, object]]
        if isinstance(item, dict):
            # isinstance proves a dict: its keys and values are read as objects.
            children, opening, closing = iter(cast("dict[object, object]", item).items()), "{", "}"
        elif isinstance(item, list | tuple):
            # isinstance proves a list or a tuple: its children are read as objects.
            children = ((None, child) for child in cast("list[object] | tuple[object, ...]", item))
            opening, closing = "[", "]"
        else:
            parts.append(json.dumps(item, ensure_ascii=ensure_ascii))
            return
        if ident in open_containers:
            raise ValueError("Circular reference detected")
        open_containers.add(ident)
        parts.append(opening)
        stack.append(_Open(children, closing, ident))

    begin(value)
    while stack:
        frame = stack[-1]
        pair = next(frame.children, None)
        if pair is None:
            parts.append(frame.closing)
            open_containers.discard(frame.ident)
            stack.pop()
            continue
        if not frame.first:
            parts.append(",")
        frame.first = False
        key, child = pair
        if frame.closing == "}":
            parts.append(json.dumps(_object_key(key), ensure_ascii=ensure_ascii) + ":")
        begin(child)
    return "".join(parts)


def _object_key(key: object) -> str:
    """An object key as json.dumps writes it (only text keys come from parsed JSON)."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
