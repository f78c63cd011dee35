"""One contract for every DeliveryRecords — the in-memory fake, the blob records under a lease and the
table records held by ETag, the last two on Azurite — so that switching DELIVERY_STORE changes the
bill and nothing else: a new pair is begun, finished and then skipped as done; a claim given back
before its write leaves the pair new, one given back mid-write leaves it in doubt; a dead worker's
record is in doubt once its hold lapses; of two claimers at once one wins and the other is told to
come back (TransientError); renewal keeps the hold through a write longer than the hold; a lost hold
makes ``finish`` fail; the mailbox is case-insensitive and never in clear in a key.

Holds are short here: the table records take ``hold_seconds``; a blob lease cannot be shorter than
15 seconds, so the blob cases that wait for a lapse take that long. The fake's lock never lapses,
and it keys by the address as given (``OnceOnlyMailbox`` lower-cases it first): the cases about a
lapse, the address's case and keys in URLs are the storage adapters' only.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from shared.domain.errors import TransientError
from shared.ports import DeliveryState, WriteOutcome
from tests.fakes import MemoryDeliveryRecords

MAILBOX = "alice@contoso.example"
TABLE = "archivedeliveries"
TABLE_HOLD = 1.5
BLOB_LEASE = 15  # the shortest lease Azure grants


def key(n: int) -> str:
    return f"{n:064x}"


class Backend:
    """Builds records as separate workers would (each its own storage client), and a claim whose
    worker stalls: held, never renewed, never given back."""

    name: str
    hold: float  # how long an unrenewed hold lasts

    def make(self, *, wait_seconds: float = 15.0) -> Any:
        raise NotImplementedError

    def stalled(self, mailbox: str, record_key: str) -> tuple[AbstractContextManager, Any]:
        raise NotImplementedError

    def keys(self) -> list[str]:
        """Every key this backend's storage holds, as it travels in URLs."""
        raise NotImplementedError


class MemoryBackend(Backend):
    name, hold = "memory", 0.5

    def __init__(self) -> None:
        self._records = MemoryDeliveryRecords()

    def make(self, *, wait_seconds: float = 15.0) -> Any:
        self._records._wait = wait_seconds  # one store shared by every "worker", as in one process
        return self._records


class BlobBackend(Backend):
    name, hold = "blob", BLOB_LEASE + 1

    def __init__(self, connection_string: str, monkeypatch: pytest.MonkeyPatch) -> None:
        import shared.adapters.azure_deliveries as deliveries

        self._connection = connection_string
        self._module = deliveries
        self._monkeypatch = monkeypatch
        monkeypatch.setattr(deliveries, "LEASE_SECONDS", BLOB_LEASE)
        monkeypatch.setattr(deliveries, "RENEW_EVERY_SECONDS", 5)

    def _service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self._connection)

    def make(self, *, wait_seconds: float = 15.0) -> Any:
        return self._module.BlobDeliveryRecords(self._service(), "archive-state", wait_seconds=wait_seconds)

    def stalled(self, mailbox: str, record_key: str) -> tuple[AbstractContextManager, Any]:
        class NoRenewal:
            def __init__(self, lease) -> None:
                self.lost = False

            def stop(self) -> None:
                pass

        with self._monkeypatch.context() as patch:
            patch.setattr(self._module, "_LeaseKeeper", NoRenewal)
            manager = self.make().claim(mailbox, record_key)
            return manager, manager.__enter__()

    def keys(self) -> list[str]:
        return [blob.name for blob in self._service().get_container_client("archive-state").list_blobs()]


class TableBackend(Backend):
    name, hold = "table", TABLE_HOLD + 0.5

    def __init__(self, connection_string: str) -> None:
        self._connection = connection_string

    def make(self, *, wait_seconds: float = 15.0, renew_seconds: float | None = None, **client: Any) -> Any:
        from azure.data.tables import TableServiceClient

        from shared.adapters.table_deliveries import TableDeliveryRecords

        return TableDeliveryRecords(TableServiceClient.from_connection_string(self._connection, **client), TABLE,
                                    wait_seconds=wait_seconds, hold_seconds=TABLE_HOLD, renew_seconds=renew_seconds)

    def stalled(self, mailbox: str, record_key: str) -> tuple[AbstractContextManager, Any]:
        manager = self.make(renew_seconds=3600).claim(mailbox, record_key)
        return manager, manager.__enter__()

    def entities(self) -> list[dict[str, Any]]:
        from azure.data.tables import TableServiceClient

        return list(TableServiceClient.from_connection_string(self._connection).get_table_client(TABLE)
                    .list_entities())

    def keys(self) -> list[str]:
        return [f"{e['PartitionKey']}/{e['RowKey']}" for e in self.entities()]


@pytest.fixture(params=["memory", pytest.param("blob", marks=pytest.mark.integration),
                        pytest.param("table", marks=pytest.mark.integration)])
def backend(request, monkeypatch) -> Backend:
    if request.param == "memory":
        return MemoryBackend()
    azurite = request.getfixturevalue("azurite")
    if request.param == "blob":
        return BlobBackend(azurite.connection_string, monkeypatch)
    return TableBackend(azurite.connection_string)


def storage_only(backend: Backend, why: str) -> None:
    if isinstance(backend, MemoryBackend):
        pytest.skip(f"the in-memory fake: {why}")


def state_of(records, mailbox: str, record_key: str) -> DeliveryState:
    with records.claim(mailbox, record_key) as claim:
        return claim.state


# --- the life of a pair ---------------------------------------------------------------------------


def test_a_new_pair_is_begun_finished_and_then_skipped_as_done(backend):
    with backend.make().claim(MAILBOX, key(1)) as claim:
        assert claim.state is DeliveryState.NEW
        claim.begin()
        claim.finish(WriteOutcome.IMPORTED)
    assert state_of(backend.make(), MAILBOX, key(1)) is DeliveryState.DONE
    assert state_of(backend.make(), MAILBOX, key(1)) is DeliveryState.DONE  # a duplicate changes nothing
    assert state_of(backend.make(), "bob@contoso.example", key(1)) is DeliveryState.NEW  # per mailbox
    assert state_of(backend.make(), MAILBOX, key(2)) is DeliveryState.NEW  # per record


def test_a_claim_given_back_before_its_write_leaves_the_pair_new(backend):
    with backend.make().claim(MAILBOX, key(1)) as claim:
        assert claim.state is DeliveryState.NEW
    assert state_of(backend.make(), MAILBOX, key(1)) is DeliveryState.NEW


def test_a_claim_given_back_mid_write_leaves_the_pair_in_doubt_at_once(backend):
    with pytest.raises(TransientError), backend.make().claim(MAILBOX, key(1)) as claim:
        claim.begin()
        raise TransientError("the write failed after the item may have been created")
    started = time.monotonic()
    with backend.make(wait_seconds=0.5).claim(MAILBOX, key(1)) as claim:
        assert claim.state is DeliveryState.IN_DOUBT  # no waiting for a lapse: the hold was given back
        claim.begin()
        claim.finish(WriteOutcome.SKIPPED_DUPLICATE)
    assert time.monotonic() - started < 5
    assert state_of(backend.make(), MAILBOX, key(1)) is DeliveryState.DONE


def test_a_dead_workers_record_is_in_doubt_once_its_hold_lapses(backend):
    storage_only(backend, "its lock never lapses")
    manager, dead = backend.stalled(MAILBOX, key(1))
    dead.begin()  # ... and the worker dies mid-write
    with pytest.raises(TransientError), backend.make(wait_seconds=0.3).claim(MAILBOX, key(1)):
        pass  # still held
    time.sleep(backend.hold)
    with backend.make(wait_seconds=0.3).claim(MAILBOX, key(1)) as claim:
        assert claim.state is DeliveryState.IN_DOUBT
        claim.begin()
        claim.finish(WriteOutcome.SKIPPED_DUPLICATE)
    assert state_of(backend.make(), MAILBOX, key(1)) is DeliveryState.DONE
    manager.__exit__(None, None, None)


# --- exclusion ------------------------------------------------------------------------------------


def test_a_claimer_finding_another_holder_is_told_to_come_back_later(backend):
    with backend.make().claim(MAILBOX, key(1)):
        with pytest.raises(TransientError) as error, backend.make(wait_seconds=0.5).claim(MAILBOX, key(1)):
            pass
    assert error.value.retry_after
    assert state_of(backend.make(wait_seconds=0.5), MAILBOX, key(1)) is DeliveryState.NEW  # given back: free


def test_of_two_claimers_at_once_one_wins_and_the_other_comes_back(backend):
    workers = [backend.make(wait_seconds=0.3) for _ in range(2)]
    start = threading.Barrier(2)

    def claim(records) -> str:
        start.wait()
        try:
            with records.claim(MAILBOX, key(1)) as claim:
                time.sleep(1.0)  # writing, while the other tries
                return claim.state.value
        except TransientError:
            return "come back"

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(claim, workers))
    assert results == ["come back", "new"]


def test_a_claimer_that_waits_finds_the_pair_done_by_the_other(backend):
    holder, waiter = backend.make(), backend.make(wait_seconds=10)
    claimed = threading.Event()

    def write() -> None:
        with holder.claim(MAILBOX, key(1)) as claim:
            claimed.set()
            claim.begin()
            time.sleep(0.5)
            claim.finish(WriteOutcome.IMPORTED)

    thread = threading.Thread(target=write)
    thread.start()
    claimed.wait(10)
    assert state_of(waiter, MAILBOX, key(1)) is DeliveryState.DONE
    thread.join()


def test_renewal_keeps_the_hold_through_a_write_longer_than_the_hold(backend):
    with backend.make().claim(MAILBOX, key(1)) as claim:
        claim.begin()
        time.sleep(backend.hold * 1.2)  # a 150 MB upload
        with pytest.raises(TransientError), backend.make(wait_seconds=0.3).claim(MAILBOX, key(1)):
            pass
        claim.finish(WriteOutcome.IMPORTED)
    assert state_of(backend.make(), MAILBOX, key(1)) is DeliveryState.DONE


def test_a_lost_hold_makes_finish_fail(backend):
    storage_only(backend, "its lock never lapses")
    taken_manager, taken = backend.stalled(MAILBOX, key(1))
    lapsed_manager, lapsed = backend.stalled(MAILBOX, key(2))
    taken.begin()
    lapsed.begin()
    time.sleep(backend.hold)
    # Another worker took the first record; nobody took the second, but its hold lapsed all the same.
    with backend.make(wait_seconds=0.3).claim(MAILBOX, key(1)) as other:
        assert other.state is DeliveryState.IN_DOUBT
        with pytest.raises((TransientError, HttpResponseError)):
            taken.finish(WriteOutcome.IMPORTED)
        other.begin()
        other.finish(WriteOutcome.SKIPPED_DUPLICATE)
    with pytest.raises((TransientError, HttpResponseError)):
        lapsed.finish(WriteOutcome.IMPORTED)
    taken_manager.__exit__(None, None, None)
    lapsed_manager.__exit__(None, None, None)
    assert state_of(backend.make(), MAILBOX, key(1)) is DeliveryState.DONE
    assert state_of(backend.make(), MAILBOX, key(2)) is DeliveryState.IN_DOUBT  # the next holder looks first


# --- the address ------------------------------------------------------------------------------------


def test_the_mailbox_is_case_insensitive(backend):
    storage_only(backend, "it keys by the address as given; OnceOnlyMailbox lower-cases it before")
    with backend.make().claim(" Alice@Contoso.EXAMPLE", key(1)) as claim:
        claim.begin()
        claim.finish(WriteOutcome.IMPORTED)
    assert state_of(backend.make(), MAILBOX, key(1)) is DeliveryState.DONE


def test_no_mailbox_address_is_in_clear_in_any_key(backend):
    storage_only(backend, "it has no keys that travel in URLs")
    for mailbox in (MAILBOX, "Bob.Smith@Contoso.Example"):
        with backend.make().claim(mailbox, key(1)) as claim:
            claim.begin()
            claim.finish(WriteOutcome.IMPORTED)
    keys = backend.keys()
    assert len(keys) == 2
    for part in ("alice", "bob", "contoso", "@"):
        assert not any(part in k.lower() for k in keys), keys


# --- the table records only -------------------------------------------------------------------------


@pytest.fixture
def table(azurite) -> TableBackend:
    return TableBackend(azurite.connection_string)


@pytest.mark.integration
def test_a_table_pair_costs_two_writes_and_no_read_and_a_duplicate_one_insert_and_one_read(table):
    with table.make().claim(MAILBOX, key(99)):
        pass  # the table exists from here on
    requests: list[str] = []
    records = table.make(raw_request_hook=lambda r: requests.append(r.http_request.method))
    with records.claim(MAILBOX, key(1)) as claim:
        claim.begin()
        claim.finish(WriteOutcome.IMPORTED)
    assert requests == ["POST", "PATCH"]  # insert "writing", merge "done"
    requests.clear()
    assert state_of(records, MAILBOX, key(1)) is DeliveryState.DONE
    assert requests == ["POST", "GET"]  # the insert that finds it, the read that says done


@pytest.mark.integration
def test_the_table_entity_holds_no_address_and_keys_spread_a_mailbox(table):
    for n in range(32):
        with table.make().claim(MAILBOX, key(n)) as claim:
            claim.begin()
            claim.finish(WriteOutcome.IMPORTED)
    entities = table.entities()
    assert not any("alice" in str(value).lower() for e in entities for value in e.values())
    assert len({e["PartitionKey"] for e in entities}) == 16  # one mailbox over 16 partitions
    assert {e["state"] for e in entities} == {"done"} and {e["outcome"] for e in entities} == {"imported"}


@pytest.mark.integration
def test_a_record_key_a_row_key_cannot_hold_is_hashed(table):
    from shared.adapters.table_deliveries import delivery_keys

    awkward = ["a/b", "a\\b", "a#b", "a?b", "a\x01b", "a'b", "x" * 600]
    for record_key in awkward:
        with table.make().claim(MAILBOX, record_key) as claim:
            assert claim.state is DeliveryState.NEW
            claim.begin()
            claim.finish(WriteOutcome.IMPORTED)
    rows = {delivery_keys(MAILBOX, k)[1] for k in awkward}
    assert len(rows) == len(awkward) and all(row.startswith("~") and len(row) == 65 for row in rows)
    assert all(state_of(table.make(), MAILBOX, k) is DeliveryState.DONE for k in awkward)
    assert delivery_keys(MAILBOX, "unidentified-" + key(7))[1] == "unidentified-" + key(7)


@pytest.mark.integration
def test_sixteen_first_claims_at_once_on_a_table_not_yet_created_all_succeed(azurite):
    """The first batch of items on empty storage: every claim that meets the missing table creates
    it (or finds it created) and goes on; none fails because another made it first."""
    from shared.adapters.azure_tables import table_service
    from shared.adapters.table_deliveries import TableDeliveryRecords

    records = TableDeliveryRecords(table_service(azurite.connection_string), "freshdeliveries")

    def claim(n: int) -> DeliveryState:
        with records.claim("ann@contoso.example", f"{n:064x}") as held:
            held.begin()
            held.finish(WriteOutcome.IMPORTED)
            return held.state

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(claim, range(16))) == [DeliveryState.DONE] * 16
