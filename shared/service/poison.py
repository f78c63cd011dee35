"""The poison queues as a tool: list, show, replay and purge what could not be archived.

Every poison queue is read the same way, whoever put the message there: our own poison messages
(reason, detail, attempts, first and last failure, the record's claim check), items the host moved
after ``maxDequeueCount`` failed attempts, listing pages and transcript tasks it moved, and foreign
messages (kept whole, never replayable).

Azure queues cannot be browsed past 32 messages without receiving them, so a scan receives every
message (hiding it for a while), and releases what it did not delete when it ends. A replay sends
the work back to its queue first and deletes the poison message only then: a crash in between
leaves a duplicate the idempotent import absorbs, never a lost record.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import telemetry
from shared.domain.errors import PoisonReason
from shared.domain.json_values import is_json_object
from shared.domain.ledger import OutcomeEntry, RecordOutcome
from shared.domain.tasks import PoisonMessage, read_poison_queue_message
from shared.domain.window import isoformat_z
from shared.ports import InspectableQueue, QueuedMessage, WindowLedger, WorkQueue
from shared.settings import ITEMS_QUEUE, LISTING_QUEUE

log = logging.getLogger(__name__)

SCAN_VISIBILITY_SECONDS = 300
_BATCH = 32


@dataclass(frozen=True)
class PoisonEntry:
    queue: str
    queued: QueuedMessage
    message: PoisonMessage

    @property
    def id(self) -> str:
        return self.queued.id

    @property
    def failed_at(self) -> datetime:
        return self.message.failed_at

    @property
    def replayable(self) -> bool:
        return self.message.item_task() is not None or self.message.moved_work() is not None

    def to_json(self) -> dict[str, Any]:
        m = self.message
        return {
            "id": self.id,
            "queue": self.queue,
            "reason": m.reason.value,
            "detail": m.detail,
            "record_key": m.record_key,
            "message_id": m.message_id,
            "window_id": m.window_id,
            "record_ref": m.record_ref,
            "attempts": m.attempts,
            "replays": m.replays,
            "first_failed_at": isoformat_z(m.first_failed_at or m.failed_at),
            "last_failed_at": isoformat_z(m.failed_at),
            "queued_at": isoformat_z(self.queued.inserted_at),
            "replayable": self.replayable,
            "original_message": m.original_message,
        }


@dataclass
class ReplayReport:
    replayed: list[PoisonEntry] = field(default_factory=list[PoisonEntry])
    not_replayable: list[PoisonEntry] = field(default_factory=list[PoisonEntry])

    def to_json(self) -> dict[str, Any]:
        return {
            "replayed": len(self.replayed),
            "not_replayable": len(self.not_replayable),
            "by_reason": count_by_reason(self.replayed),
            "ids": [e.id for e in self.replayed],
            "not_replayable_ids": [e.id for e in self.not_replayable],
        }


class PoisonQueues:
    def __init__(
        self,
        queues: Sequence[InspectableQueue],
        targets: Mapping[str, WorkQueue],
        *,
        visibility_seconds: int = SCAN_VISIBILITY_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``queues``: the poison queues; ``targets``: the work queues replays go to, by name."""
        self._queues = queues
        self._targets = targets
        self._visibility = visibility_seconds
        self._clock = clock

    @contextmanager
    def scan(self) -> Generator[_Tracked]:
        """Every message of every poison queue, oldest failure first. Messages not deleted inside
        the block are made visible again when it ends."""
        entries: dict[str, PoisonEntry] = {}
        handled: set[str] = set()
        queues = {queue.name: queue for queue in self._queues}
        try:
            for queue in self._queues:
                while True:
                    batch = queue.receive(_BATCH, visibility_timeout=self._visibility)
                    fresh = [m for m in batch if m.id not in entries]
                    for queued in batch:
                        # A message seen again (a very long scan) comes with a new pop receipt.
                        message = read_poison_queue_message(
                            queued.text, inserted_at=queued.inserted_at, dequeue_count=queued.dequeue_count,
                        )
                        entries[queued.id] = PoisonEntry(queue.name, queued, message)
                    if not fresh:
                        break
            ordered = sorted(entries.values(), key=lambda e: (e.failed_at, e.id))
            yield _Tracked(ordered, handled)
        finally:
            for entry in entries.values():
                if entry.id not in handled:
                    queues[entry.queue].release(entry.queued)

    def list(self, *, reason: str | None = None, queue: str | None = None) -> list[PoisonEntry]:
        with self.scan() as entries:
            return [e for e in entries if _matches(e, reason=reason, queue=queue)]

    def show(self, message_id: str) -> PoisonEntry | None:
        with self.scan() as entries:
            return next((e for e in entries if e.id == message_id), None)

    def replay(self, select: Callable[[PoisonEntry], bool], *, dry_run: bool = False,
               accept_mismatch: bool = False) -> ReplayReport:
        """``accept_mismatch``: EML drops poisoned ``manifest_mismatch`` go back accepting it (the
        operator's explicit decision, recorded in the drop's report)."""
        report = ReplayReport()
        sent: set[tuple[str, str, str]] = set()
        with self.scan() as entries:
            for entry in entries:
                if not select(entry):
                    continue
                if not entry.replayable:
                    report.not_replayable.append(entry)
                    continue
                # A worker that died between poisoning a record and completing its queue message
                # poisons it again on redelivery: the record is sent back once, its copies go.
                key = (entry.queue, entry.message.window_id or "", entry.message.record_key or entry.id)
                if not dry_run:
                    if key not in sent:
                        self._send_back(entry, accept_mismatch=accept_mismatch)
                    self._delete(entries, entry)
                if key not in sent:
                    report.replayed.append(entry)
                sent.add(key)
        log.info("poison replay: %d replayed, %d not replayable", len(report.replayed), len(report.not_replayable))
        return report

    def purge(self, older_than: timedelta, *, dry_run: bool = False) -> list[PoisonEntry]:
        cutoff = self._clock() - older_than
        purged: list[PoisonEntry] = []
        with self.scan() as entries:
            for entry in entries:
                if entry.failed_at < cutoff:
                    if not dry_run:
                        self._delete(entries, entry)
                    purged.append(entry)
        log.info("poison purge: %d message(s) older than %s removed", len(purged), older_than)
        return purged

    def adopt_moved(self) -> list[PoisonEntry]:
        """Work the host moved to a poison queue (and any foreign message) goes there with the
        queue's default time to live, 7 days: it is sent again as the connector's own poison message,
        which never expires, and the host's copy deleted. Send first, delete second: a crash between
        leaves a copy the next adoption (and a replay's de-duplication) absorbs, never a loss."""
        adopted: list[PoisonEntry] = []
        with self.scan() as entries:
            for entry in entries:
                if _is_own(entry.queued.text):
                    continue
                kept = entry.message.original_message
                if kept is not None and kept != entry.queued.text:
                    # Too long to keep whole inside a poison message: adopting it would delete the
                    # only full copy. It stays as the host left it (and is listed, and replayable).
                    log.warning("poison: message %s too long to adopt whole; left as the host moved it", entry.id)
                    continue
                queue = next(q for q in self._queues if q.name == entry.queue)
                queue.send(entry.message.model_dump(mode="json"))
                self._delete(entries, entry)
                adopted.append(entry)
        if adopted:
            log.warning("%d message(s) the host moved to poison kept as the connector's own (no expiry)",
                        len(adopted))
        return adopted

    def _send_back(self, entry: PoisonEntry, *, accept_mismatch: bool = False) -> None:
        # Acceptance is for a drop refused for its manifest, never for one the host gave up on.
        drop = entry.message.eml_drop(
            accept_mismatch=accept_mismatch and entry.message.reason is PoisonReason.MANIFEST_MISMATCH)
        if drop is not None:
            self._targets[LISTING_QUEUE].send(drop.model_dump(mode="json"))
            return
        task = entry.message.item_task()
        if task is not None:
            self._targets[ITEMS_QUEUE].send(task.model_dump(mode="json"))
            return
        work = entry.message.moved_work()
        if work is None or entry.message.source_queue is None:
            raise ValueError("not replayable")  # replay() checks replayable first
        self._targets[entry.message.source_queue].send(work)

    def _delete(self, entries: _Tracked, entry: PoisonEntry) -> None:
        queue = next(q for q in self._queues if q.name == entry.queue)
        queue.delete(entry.queued)
        entries.handled.add(entry.id)


class _Tracked(list[PoisonEntry]):
    """The scan's entries, plus the ids deleted meanwhile (not to be released at the end)."""

    def __init__(self, entries: list[PoisonEntry], handled: set[str]) -> None:
        super().__init__(entries)
        self.handled = handled


def _is_own(text: str) -> bool:
    try:
        data: object = json.loads(text)
    except ValueError:
        return False
    return is_json_object(data) and data.get("kind") == "poison"


def _matches(entry: PoisonEntry, *, reason: str | None, queue: str | None) -> bool:
    return (reason is None or entry.message.reason.value == reason) and (queue is None or entry.queue == queue)


def reason_selector(reason: str | None = None, message_id: str | None = None) -> Callable[[PoisonEntry], bool]:
    return lambda e: _matches(e, reason=reason, queue=None) and (message_id is None or e.id == message_id)


def count_by_reason(entries: Sequence[PoisonEntry]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.message.reason.value] = counts.get(entry.message.reason.value, 0) + 1
    return dict(sorted(counts.items()))


def account_moved_items(tools: PoisonQueues, ledger: WindowLedger, *, now: datetime | None = None) -> int:
    """Record, in their windows, the records the host moved to poison after exhausted retries.

    The host moves such a message without our code running, with a time to live of 7 days: it is
    adopted first (kept without expiry, ``adopt_moved``). Its window would show the record as
    pending for ever. Accounting it as poisoned (``retries_exhausted``) lets the window
    reconcile truthfully: the record is not archived, it waits in poison for a replay."""
    now = now or datetime.now(UTC)
    tools.adopt_moved()
    accounted = 0
    by_window: dict[str, list[tuple[str, PoisonEntry]]] = {}  # (record key, entry) by window
    for entry in tools.list(reason=PoisonReason.RETRIES_EXHAUSTED.value):
        window_id, key = entry.message.window_id, entry.message.record_key
        if key and window_id:
            by_window.setdefault(window_id, []).append((key, entry))
    for window_id, entries in by_window.items():
        known = ledger.records_with_outcome(window_id, [key for key, _ in entries])
        for key, entry in entries:
            if key in known:
                continue  # already has an outcome (this run, an earlier one, or a replay since)
            known.add(key)  # a record moved twice is accounted once
            ledger.record_outcome(window_id, OutcomeEntry(
                record_key=key, message_id=entry.message.message_id,
                outcome=RecordOutcome.POISONED, at=entry.failed_at, reason=entry.message.reason.value,
                detail=entry.message.detail,
            ))
            telemetry.account_record(RecordOutcome.POISONED, reason=PoisonReason.RETRIES_EXHAUSTED)
            accounted += 1
    if accounted:
        log.warning("%d record(s) the host moved to poison after exhausted retries accounted in their windows",
                    accounted)
    return accounted
