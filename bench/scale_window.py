"""A synthetic window of many outcomes in the table ledger, and the ledger's shapes at the design point
(``python -m bench.scale``).

The window: every record listed (one page entity per 200 records) and finished (its record entity
with the folded outcome, its outcome entity), each shard's counters, the slices counted, so that
status, report and the timer read it as a window of that many records that reconciled. The
entities are built by the adapter's own code (``_write_record``, ``_write_tally``, ``_chunks``,
``_shard``), and ``same_shape`` holds one record written this way to one written by
``record_page`` and ``record_outcome``. What is not the adapter's: they are written 50 records
(100 entities) to a transaction, several transactions at once, as upserts without reading first — the
adapter's compare-and-swap writes, a page and an outcome at a time, take about 60 records a second
from Azurite on this machine, which would make 2,000,000 a matter of nine hours.

The mix: 89% imported into one mailbox, 10% into two (1.1 mailboxes a record, docs/scale.md), 1% a
skipped duplicate, 0.5% poisoned (no mapping), mailboxes among 20,000.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.adapters import azure_tables as tables
from shared.domain.errors import PoisonReason
from shared.domain.ledger import MailboxResult, MappingRule, OutcomeEntry, PageEntry, RecordOutcome, WindowInfo
from shared.domain.records import record_key
from shared.domain.tally import RecordState, Tally, contribution
from shared.domain.window import Window

MAILBOXES = 20_000
PAGE = 200  # records per listing page (TELEMESSAGE_PAGE_SIZE's default)
PER_TRANSACTION = 50  # records per entity-group transaction: a record and its outcome, 100 entities
BLOCK = tables.SHARDS * PER_TRANSACTION * 4  # records written per round: 12,800


def synthetic_window(now: datetime, days: int = 1) -> WindowInfo:
    window = Window(now - timedelta(days=days), now)
    return WindowInfo(window, len(window.slices(timedelta(hours=1))), now)


def claim_check_for(n: int) -> bytes:
    """The ``n``-th record's claim check: a text record of TeleMessage's size (about 1 KB)."""
    return json.dumps({
        "messageId": f"TM{n:012d}", "sourceType": "WHATSAPP_ARCHIVER", "messageType": "TEXT",
        "messageTime": 1_763_800_000_000 + n, "archivedTime": 1_763_800_005_000 + n, "direction": "OUTGOING",
        "owner": {"phone": f"+4477009{n % 100000:05d}", "email": f"employee{n % MAILBOXES:05d}@bank.example"},
        "sender": {"phone": f"+4477009{n % 100000:05d}", "email": f"employee{n % MAILBOXES:05d}@bank.example"},
        "recipients": [{"phone": f"+1202555{n % 10000:04d}", "firstName": "Client", "lastName": f"{n % 977}"}],
        "textContent": " ".join(("confirm", "price", "desk", "spread", "volume")[(n + i) % 5] for i in range(90)),
    }, separators=(",", ":")).encode()


def outcome_for(n: int, key: str, at: datetime) -> OutcomeEntry:
    """The ``n``-th record's outcome in the mix above, with what the chain of evidence keeps: the
    claim check's SHA-256 and, per mailbox, the item's id and digest."""
    mailbox = f"employee{n % MAILBOXES:05d}@bank.example"
    message_id = f"TM{n:012d}"
    raw = hashlib.sha256(claim_check_for(n)).hexdigest()
    item = hashlib.sha256(f"item {n}".encode()).hexdigest()
    if n % 200 == 199:
        return OutcomeEntry(key, message_id, RecordOutcome.POISONED, at, reason=PoisonReason.NO_MAPPING.value,
                            detail="no participant maps to a mailbox", source_user="+44 7••• ••• 5" + str(n % 10),
                            raw_sha256=raw)
    if n % 100 == 7:
        mailboxes = (MailboxResult(mailbox, RecordOutcome.SKIPPED_DUPLICATE, MappingRule.CSV, message_id, item),)
        return OutcomeEntry(key, message_id, RecordOutcome.SKIPPED_DUPLICATE, at, mailboxes,
                            source_user="+44 7••• ••• 5" + str(n % 10), raw_sha256=raw)
    mailboxes = (MailboxResult(mailbox, RecordOutcome.IMPORTED, MappingRule.CSV, message_id, item),)
    if n % 10 == 3:
        other = f"employee{(n * 7 + 1) % MAILBOXES:05d}@bank.example"
        mailboxes += (MailboxResult(other, RecordOutcome.IMPORTED, MappingRule.EMAIL, message_id, item),)
    return OutcomeEntry(key, message_id, RecordOutcome.IMPORTED, at, mailboxes,
                        source_user="+44 7••• ••• 5" + str(n % 10), raw_sha256=raw)


def key_for(n: int) -> str:
    return record_key(f"TM{n:012d}")


def _outcome_entity(partition: str, entry: OutcomeEntry) -> dict[str, Any]:
    # As record_outcome writes it: the entry as it came, beside the record.
    return {"PartitionKey": partition, "kind": "outcome", **tables._chunks("entry", entry.to_json()),
            "RowKey": f"{entry.record_key}~o~{tables._nonce()}"}


def _page_entity(window_id: str, slice_id: str, page: int, keys: list[str]) -> dict[str, Any]:
    # As record_page writes it.
    return {"PartitionKey": f"{window_id}~pages", "RowKey": f"{slice_id}~{page:06d}", "kind": "page",
            "last": False, **tables._chunks("keys", keys)}


@dataclass
class WindowWriter:
    """Writes records ``[written, written + count)`` of a synthetic window into the ledger's table."""

    ledger: tables.TableWindowLedger
    info: WindowInfo
    threads: int = 4
    written: int = 0

    def __post_init__(self) -> None:
        self.ledger.open_window(self.info)
        self._kinds: dict[str, Counter[int]] = {}  # shard partition -> outcome kind -> records
        self._slices = [s.id for s in self.info.window.slices(timedelta(hours=1))]

    @property
    def window_id(self) -> str:
        return self.info.window_id

    def write(self, count: int, progress: Callable[[int], None] = lambda n: None) -> float:
        """Write ``count`` more records and bring the counters up to date; the seconds it took."""
        started = time.monotonic()
        client = self.ledger._client()
        at = self.info.scheduled_at + timedelta(minutes=5)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="scale-writer") as pool:
            end = self.written + count
            while self.written < end:
                stop = min(end, self.written + BLOCK)
                list(pool.map(_submit(client), self._block(self.written, stop, at)))
                self.written = stop
                progress(stop)
        self._write_counters()
        return time.monotonic() - started

    def _block(self, start: int, stop: int, at: datetime) -> list[list[tuple[Any, ...]]]:
        by_shard: dict[str, list[tuple[Any, ...]]] = {}
        pages: list[tuple[Any, ...]] = []
        for first in range(start, stop, PAGE):
            keys = [key_for(n) for n in range(first, min(stop, first + PAGE))]
            number = first // PAGE
            pages.append(("upsert", _page_entity(self.window_id, self._slices[number % len(self._slices)],
                                                 number, keys)))
            for offset, key in enumerate(keys):
                n = first + offset
                partition = tables._shard(self.window_id, key)
                entry = outcome_for(n, key, at)
                by_shard.setdefault(partition, []).extend([
                    ("upsert", _outcome_entity(partition, entry)),
                    ("upsert", tables._write_record(partition, key, RecordState(True, entry), None)[1]),
                ])
                self._kinds.setdefault(partition, Counter())[_kind(n)] += 1
        batches = [pages[i:i + PER_TRANSACTION] for i in range(0, len(pages), PER_TRANSACTION)]
        for operations in by_shard.values():
            step = 2 * PER_TRANSACTION
            batches += [operations[i:i + step] for i in range(0, len(operations), step)]
        return batches

    def _write_counters(self) -> None:
        """Each shard's counters to its records so far (as the adapter writes them: a compare-and-swap
        on the counter entity), and every slice finished."""
        at = self.info.scheduled_at + timedelta(minutes=5)
        for partition, kinds in self._kinds.items():
            total = Tally()
            for kind, records in kinds.items():
                total += _times(contribution(RecordState(True, outcome_for(kind, key_for(kind), at))), records)
            existing = self.ledger._get(partition, tables.TALLY)
            current = Tally.from_json(tables._json(existing, "tally") or {})
            self.ledger._client().submit_transaction(tables._write_tally(partition, existing, total - current))
        self.ledger._client().upsert_entity({
            "PartitionKey": f"{self.window_id}~pages", "RowKey": tables.COUNTS, "kind": "counts",
            **tables._chunks("counts", {"slices": self.info.slice_count})})


def _submit(client: Any) -> Callable[[list[tuple[Any, ...]]], Any]:
    """``submit_transaction``, again after a dropped connection (every operation is an upsert, so a
    transaction applied before its answer was lost is applied again to the same effect)."""
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    def submit(operations: list[tuple[Any, ...]]) -> Any:
        for attempt in range(4):
            try:
                return client.submit_transaction(operations)
            except (ServiceRequestError, ServiceResponseError):
                if attempt == 3:
                    raise
                time.sleep(1 + attempt)
        return None

    return submit


def _kind(n: int) -> int:
    """The smallest index with the same outcome as ``n`` in the mix (one per kind)."""
    if n % 200 == 199:
        return 199
    if n % 100 == 7:
        return 7
    return 3 if n % 10 == 3 else 0


def _times(tally: Tally, n: int) -> Tally:
    data = tally.to_json()
    scaled = {k: v * n for k, v in data.items() if isinstance(v, int)}
    scaled["poisoned"] = {k: v * n for k, v in data["poisoned"].items()}
    scaled["days"] = {d: {k: v * n for k, v in c.items()} for d, c in data["days"].items()}
    return Tally.from_json(scaled)


def same_shape(ledger: tables.TableWindowLedger, now: datetime) -> bool:
    """A record written by the adapter (``record_page``, ``record_outcome``) and one written by
    ``WindowWriter`` have the same properties, and the window's counters the same names."""
    info = synthetic_window(now - timedelta(seconds=1))
    ledger.open_window(info)
    key = key_for(3)
    ledger.record_page(info.window_id, PageEntry(info.window.slices(timedelta(hours=1))[0].id, 0, (key,), False))
    ledger.record_outcome(info.window_id, outcome_for(3, key, now))
    writer = WindowWriter(ledger, synthetic_window(now + timedelta(seconds=1)), threads=1)
    writer.write(PAGE)

    def names(window_id: str, row: str, kind: str) -> set[str]:
        entities = ledger._client().query_entities(
            "PartitionKey eq @pk and kind eq @kind", parameters={"pk": tables._shard(window_id, key), "kind": kind})
        found = [e for e in entities if e["RowKey"].startswith(row)]
        return set(found[0]) if found else set()

    return all(names(info.window_id, row, kind) == names(writer.window_id, row, kind) != set()
               for row, kind in ((key, "record"), (f"{key}~o~", "outcome"), (tables.TALLY, "tally")))



GROUP_MEMBERS = 1024  # WhatsApp's largest group: the most mailboxes one record can fan out to


def design_entities(ledger: tables.TableWindowLedger, now: datetime, *, page_size: int, days: int) -> list[Any]:
    """The largest entities the adapter writes at the design point, written by ``record_page`` and
    ``record_outcome`` and read back: a page of ``page_size`` records (TELEMESSAGE_PAGE_SIZE's
    maximum), a record in a group of GROUP_MEMBERS mapped members, and a shard's counters after
    outcomes on each of ``days`` days and of every poison reason."""
    info = synthetic_window(now, days=days)
    ledger.open_window(info)
    window_id, slice_id = info.window_id, info.window.slices(timedelta(hours=1))[0].id
    keys = [key_for(n) for n in range(page_size)]
    ledger.record_page(window_id, PageEntry(slice_id, 0, tuple(keys), False))
    big = keys[0]
    members = tuple(MailboxResult(f"employee{n:05d}@bank.example", RecordOutcome.IMPORTED, MappingRule.CSV)
                    for n in range(GROUP_MEMBERS))
    ledger.record_outcome(window_id, OutcomeEntry(big, "TM-group", RecordOutcome.IMPORTED, now, members,
                                                  source_user="+44 7••• ••• 555"))
    partition = tables._shard(window_id, big)
    same_shard = [k for k in keys if tables._shard(window_id, k) == partition and k != big]
    reasons = list(PoisonReason)
    for n, key in enumerate(same_shard[:days + len(reasons)]):
        at = now - timedelta(days=n % days)
        entry = outcome_for(n, key, at) if n < days else OutcomeEntry(
            key, f"TM-p{n}", RecordOutcome.POISONED, at, reason=reasons[n - days].value, source_user="+44 7••• ••• 555")
        ledger.record_outcome(window_id, entry)
    outcome = next(e for e in ledger._client().query_entities(
        "PartitionKey eq @pk and kind eq 'outcome'", parameters={"pk": partition}) if e["RowKey"].startswith(big))
    return [ledger._get(f"{window_id}~pages", f"{slice_id}~{0:06d}"), ledger._get(partition, big), outcome,
            ledger._get(partition, tables.TALLY)]


def entity_size(entity: Any) -> tuple[int, int, int]:
    """(bytes, largest property's bytes, properties) of an entity by Azure's rule: 4 bytes, plus the
    keys' characters at 2 bytes, plus per property 8 bytes and its name's characters at 2 bytes
    and its value (a string 4 bytes plus 2 per UTF-16 unit; a bool 1; a number or a date 8). The
    Timestamp property the service adds is counted."""
    def value_bytes(value: Any) -> int:
        if isinstance(value, bool):
            return 1
        if isinstance(value, int | float | datetime):
            return 8
        text = str(value)
        return 4 + len(text.encode("utf-16-le", "surrogatepass"))

    size = 4 + 2 * (len(entity["PartitionKey"]) + len(entity["RowKey"]))
    largest, count = 0, 3  # PartitionKey, RowKey, Timestamp
    size += 8 + 2 * len("Timestamp") + 8
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey"):
            continue
        part = value_bytes(value)
        largest = max(largest, part)
        size += 8 + 2 * len(name) + part
        count += 1
    return size, largest, count
