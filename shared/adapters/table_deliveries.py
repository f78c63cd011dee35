"""Delivery records in Azure Table storage: one entity per (mailbox, record), held by compare-and-swap.

Why (docs/scale.md, section 2): the blob delivery record costs a create, a lease, a write and a
release per archived pair, about two blob writes at $0.05 per 10,000, the bill's largest line. A
table transaction costs $0.00036 per 10,000, and an entity's ETag gives the exclusive hold a blob
lease gives: a write conditional on the ETag fails once anyone else has written the entity.

The entity:
- PartitionKey ``<sha256(mailbox, lower-cased)>~<shard>``. The address is hashed because keys
  travel in request URLs, which storage SDKs log; the entity holds no address at all. The shard is
  the record key's last hex digit (16 of them): a catch-all mailbox taking a 31-day backfill drained
  in a day gets about 720 pairs a second, 1,440 writes, too near the 2,000 entities a second one
  partition is meant to take; spread over 16 partitions it is 90.
- RowKey the record key (64 hex digits, ``unidentified-`` before some), or ``~`` and its SHA-256
  when a key holds anything outside letters, digits, ``-``, ``_`` and ``.`` (a RowKey must not hold
  ``/ \\ # ?`` or control characters; no record key does today).
- ``state``: ``writing`` or ``done`` (``new`` again only when a claim ends without beginning);
  ``holder``, a token per claim, and ``hold_until``, when the hold lapses unless renewed;
  ``outcome`` and ``finished_at`` once done.

A claim inserts the entity as ``writing`` and held (the port's ``begin`` is then already durable:
nothing happens between the two in ``OnceOnlyMailbox``); a pair delivered for the first time costs
that insert and the merge that says ``done``: **two table transactions, and no read**. An entity
that exists is read: ``done`` is a duplicate (no hold needed: nothing writes after done); a live
hold is waited for, as the blob adapter waits for a lease, then given back as TransientError; a
lapsed or released hold is taken over by a write conditional on the ETag read (a loser of that race
reads again). A hold lapsed in ``writing`` is in doubt: its holder died or stalled mid-write.

While the write runs the hold is renewed in the background (an ETag-conditional merge every third
of the hold), as the blob lease is. ``finish`` is conditional on the latest ETag too, so it fails
when anyone else has taken the record meanwhile, and succeeds when nobody has (then nothing else
can have written the item). A claim that ends without ``finish`` releases its hold at once, leaving
``writing`` (in doubt, the next claim looks first) or, if it never began, the state it found.

The one difference from the blob adapter: a worker that dies after its claim and before ``begin``
leaves ``writing`` (in doubt: one lookup more) where the blob adapter leaves ``new``; saying
"writing" in the insert is what spares a third transaction on every pair.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.adapters.azure_storage import transient_storage_errors
from shared.adapters.azure_tables import _TABLE_NAME
from shared.domain.errors import TransientError
from shared.ports import DeliveryState, WriteOutcome

logger = logging.getLogger(__name__)

HOLD_SECONDS = 60.0
SHARDS = "0123456789abcdef"
_SAFE_ROW_KEY = re.compile(r"[A-Za-z0-9_.-]{1,512}")
_STATES = {"new": DeliveryState.NEW, "writing": DeliveryState.IN_DOUBT, "done": DeliveryState.DONE}
_HELD_BY_ANOTHER = "another worker holds this record for this mailbox"


def delivery_keys(mailbox: str, record_key: str) -> tuple[str, str]:
    """(PartitionKey, RowKey) of a pair: no address in clear, nothing a key may not hold."""
    address = hashlib.sha256(mailbox.strip().lower().encode("utf-8")).hexdigest()
    if _SAFE_ROW_KEY.fullmatch(record_key):
        row = record_key
    else:
        row = "~" + hashlib.sha256(record_key.encode("utf-8", "surrogatepass")).hexdigest()
    shard = row[-1] if row[-1] in SHARDS else SHARDS[int(hashlib.sha256(row.encode()).hexdigest()[-1], 16)]
    return f"{address}~{shard}", row


def _now() -> datetime:
    return datetime.now(UTC)


def _conflict(error: HttpResponseError) -> bool:
    return error.status_code in (404, 409, 412)


class _HoldKeeper:
    """Renews the hold while a write runs, as ``azure_deliveries._LeaseKeeper`` renews the lease: a
    failed renewal is retried every couple of seconds until shortly before the hold would lapse. A
    renewal refused (another worker took the record) or given up sets ``lost``, and the claim's
    ``finish`` then fails, so the record is retried and the next holder looks before writing.

    The renewing thread starts at the first renewal (``_Renewals``): a write done within ``every``,
    as nearly all are, never has one, where a thread started and joined per claim cost about 1 ms
    of CPU per archived pair."""

    def __init__(self, claim: _TableClaim, every: float) -> None:
        self._claim, self._every = claim, every
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._since = time.monotonic()
        self.lost = False
        _renewals.after(every, self._begin)

    def _begin(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            thread = threading.Thread(target=self.run, name="delivery-hold", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no thread to be had: renew nothing, and say so, as a lost hold
                self.lost = True
                return
            self._thread = thread

    def run(self) -> None:
        hold = self._claim.hold_seconds
        margin = min(5.0, hold / 4)  # give up this long before the hold would lapse
        renewed_at = self._since
        wait = 0.0  # started at the first renewal: ``every`` has passed
        while not self._stopping.wait(wait):
            try:
                if not self._claim.renew():
                    return  # finished or released meanwhile
            except Exception as error:
                taken = isinstance(error, HttpResponseError) and error.status_code in (404, 412)
                if taken or time.monotonic() - renewed_at >= hold - margin:
                    self.lost = True
                    return
                wait = min(2.0, self._every)
                continue
            renewed_at = time.monotonic()
            wait = self._every

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)


class _Renewals:
    """One thread of the process's that calls each keeper's ``_begin`` when its first renewal is
    due; it only starts threads, so a slow renewal never delays another's."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Any]] = []
        self._count = 0
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def after(self, seconds: float, action: Any) -> None:
        with self._wake:
            self._count += 1
            heapq.heappush(self._due, (time.monotonic() + seconds, self._count, action))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="delivery-holds", daemon=True)
                self._thread.start()
            elif self._due[0][1] == self._count:
                self._wake.notify()  # sooner than the one waited for

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, action = heapq.heappop(self._due)
            try:
                action()
            except Exception:  # never the scheduler's end: the other holds still need theirs
                logger.exception("delivery hold: the first renewal could not be started")


_renewals = _Renewals()


class _TableClaim:
    def __init__(self, records: TableDeliveryRecords, keys: tuple[str, str], state: DeliveryState,
                 found: str, etag: str, hold: dict[str, Any] | None) -> None:
        self._records = records
        self._keys = keys
        self.state = state
        self._found = found  # the state the claim found, given back if it ends without beginning
        self._etag = etag
        self._hold_until: datetime | None = None  # None: not held (a done record)
        self._begun = False
        self._closed = False
        self._lock = threading.Lock()
        self._keeper: _HoldKeeper | None = None
        self.hold_seconds = records.hold_seconds
        if hold is not None:
            self._held(hold)

    @transient_storage_errors
    def begin(self) -> None:
        if self._hold_until is None:  # a done record written again: take it first
            hold = _hold(self.hold_seconds)
            self._conditional({"state": "writing", **hold})
            self._held(hold)
        else:
            self._check_hold()
        self._begun = True

    @transient_storage_errors
    def finish(self, outcome: WriteOutcome) -> None:
        if self._hold_until is not None:
            self._check_hold()
        self._conditional({"state": "done", "outcome": outcome.value, "finished_at": _now(),
                           "holder": "", "hold_until": _now()}, close=True)
        self.state = DeliveryState.DONE

    def renew(self) -> bool:
        """Push the hold on; False when the claim has ended. Raises what storage raises."""
        until = _now() + timedelta(seconds=self.hold_seconds)
        if not self._write({"hold_until": until}, if_open=True):
            return False
        self._hold_until = until
        return True

    def release(self) -> None:
        """At the end of the claim: stop renewing, and give back a hold that was not finished."""
        if self._keeper is not None:
            self._keeper.stop()
        if self._hold_until is None or self._closed:
            return
        state = "writing" if self._begun else self._found
        try:
            self._write({"state": state, "holder": "", "hold_until": _now()}, close=True)
        except AzureError:
            pass  # taken, or storage unreachable: the hold lapses by itself

    def _held(self, hold: dict[str, Any]) -> None:
        self._hold_until = hold["hold_until"]
        self._keeper = _HoldKeeper(self, self._records.renew_seconds)

    def _check_hold(self) -> None:
        # As a lapsed lease fails the blob adapter's writes: once the hold has lapsed, another
        # worker may take the record at any moment, so this claim writes nothing more.
        if (self._keeper is not None and self._keeper.lost) or self._hold_until is None or self._hold_until <= _now():
            raise TransientError("the hold on this delivery record lapsed: another worker may have it")

    def _conditional(self, changes: dict[str, Any], *, close: bool = False) -> None:
        """A write of this claim's own; TransientError when another worker wrote the entity since."""
        try:
            self._write(changes, close=close)
        except HttpResponseError as error:
            if error.status_code not in (404, 412):
                raise
            self._closed = True  # nothing of this claim's to give back
            raise TransientError("the hold on this delivery record was lost: another worker has it") from error

    def _write(self, changes: dict[str, Any], *, close: bool = False, if_open: bool = False) -> bool:
        with self._lock:
            if if_open and self._closed:
                return False
            partition, row = self._keys
            metadata = self._records.client().update_entity(
                {"PartitionKey": partition, "RowKey": row, **changes}, mode=UpdateMode.MERGE,
                etag=self._etag, match_condition=MatchConditions.IfNotModified,
            )
            self._etag = metadata["etag"]
            if close:
                self._closed = True
            return True


def _hold(seconds: float) -> dict[str, Any]:
    return {"holder": os.urandom(12).hex(), "hold_until": _now() + timedelta(seconds=seconds)}


class TableDeliveryRecords:
    """``DeliveryRecords`` on one table. ``hold_seconds`` is how long a hold lasts unrenewed (60 s,
    like the blob lease; tests shorten it); ``wait_seconds`` how long a claim waits for another
    worker's hold before giving the message back."""

    def __init__(self, service: TableServiceClient, table: str, *, wait_seconds: float = 15.0,
                 hold_seconds: float = HOLD_SECONDS, renew_seconds: float | None = None) -> None:
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError("a table name is a letter and 2 to 62 letters or digits")
        self._service = service
        self._name = table
        self._table: TableClient | None = None
        self._wait_seconds = wait_seconds
        self.hold_seconds = hold_seconds
        self.renew_seconds = renew_seconds if renew_seconds is not None else hold_seconds / 3

    @contextmanager
    def claim(self, mailbox: str, record_key: str) -> Iterator[_TableClaim]:
        claim = self._claim(delivery_keys(mailbox, record_key))
        try:
            yield claim
        finally:
            claim.release()

    def client(self) -> TableClient:
        if self._table is None:
            self._table = self._service.get_table_client(self._name)
        return self._table

    @transient_storage_errors
    def _claim(self, keys: tuple[str, str]) -> _TableClaim:
        partition, row = keys
        deadline = time.monotonic() + self._wait_seconds
        pause = 0.1
        while True:
            hold = _hold(self.hold_seconds)
            try:
                metadata = self._insert({"PartitionKey": partition, "RowKey": row, "state": "writing",
                                         "claimed_at": _now(), **hold})
                return _TableClaim(self, keys, DeliveryState.NEW, "new", metadata["etag"], hold)
            except ResourceExistsError:
                pass
            try:
                entity = self.client().get_entity(partition, row)
            except ResourceNotFoundError:
                continue  # released and gone between the two: insert again
            found = str(entity.get("state", ""))
            state = _STATES.get(found, DeliveryState.IN_DOUBT)
            etag = str(entity.metadata["etag"])
            if state is DeliveryState.DONE:
                return _TableClaim(self, keys, state, found, etag, None)
            hold_until = entity.get("hold_until")
            if not entity.get("holder") or hold_until is None or hold_until <= _now():
                try:
                    metadata = self.client().update_entity(
                        {"PartitionKey": partition, "RowKey": row, "state": "writing", "claimed_at": _now(),
                         **hold}, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified)
                    return _TableClaim(self, keys, state, found, metadata["etag"], hold)
                except HttpResponseError as error:
                    if not _conflict(error):
                        raise
                    continue  # another worker took it first: look again
            if time.monotonic() >= deadline:
                # Another worker is writing this very record into this mailbox. Come back later:
                # by then it is done and this delivery is skipped as a duplicate.
                raise TransientError(_HELD_BY_ANOTHER, retry_after=30)
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _insert(self, entity: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.client().create_entity(entity)
        except ResourceNotFoundError:
            # An insert finds no table, nothing else (the SDK leaves its error code unset here).
            # Deployments create the table (its role is scoped to it); a local run on empty
            # storage creates it here. Every insert that met the missing table tries (claims run
            # side by side: one that came second must not fail on the flag of the first), and an
            # insert that still finds none raises.
            pass
        try:
            self.client().create_table()
        except ResourceExistsError:
            pass
        return self.client().create_entity(entity)


if TYPE_CHECKING:
    from shared.ports import DeliveryRecords

    def _implements_the_port(records: TableDeliveryRecords) -> DeliveryRecords:
        return records  # pyright holds the table adapter to the port (the composition root hands out its wrapper)
