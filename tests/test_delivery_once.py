"""Exactly one item per record and mailbox under at-least-once delivery and racing workers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.storage.blob import BlobServiceClient

from shared.adapters.azure_deliveries import BlobDeliveryRecords
from shared.domain.errors import TransientError
from shared.domain.records import ArchiveRecord
from shared.domain.rendering import render
from shared.ports import WriteOutcome
from shared.service.delivery import OnceOnlyMailbox
from tests.builders import record
from tests.fakes import MemoryDeliveryRecords

ITEM = render(ArchiveRecord.model_validate(record("race-1")), {})


class SlowMailbox:
    """A mailbox that takes a while to create an item and remembers every call it got."""

    def __init__(self, delay: float = 0.3, fail_once: bool = False) -> None:
        self.items: dict[tuple[str, str], int] = {}
        self.calls: list[bool] = []  # check_existing of each call
        self.delay = delay
        self.fail_once = fail_once
        self._lock = threading.Lock()

    def write(self, mailbox, item, *, check_existing=True):
        self.calls.append(check_existing)
        time.sleep(self.delay)
        with self._lock:
            key = (mailbox, item.record_id)
            if check_existing and key in self.items:
                return WriteOutcome.SKIPPED_DUPLICATE
            self.items[key] = self.items.get(key, 0) + 1
        if self.fail_once:
            self.fail_once = False
            raise TransientError("the worker died after the create, before finishing")
        return WriteOutcome.IMPORTED


@pytest.fixture(params=["memory", pytest.param("blob", marks=pytest.mark.integration)])
def deliveries(request):
    if request.param == "memory":
        yield lambda: MemoryDeliveryRecords()
        return
    from shared.local.azurite import Azurite

    with Azurite() as azurite:
        # Each call builds its own storage client, as separate worker processes would.
        yield lambda: BlobDeliveryRecords(BlobServiceClient.from_connection_string(azurite.connection_string),
                                          "archive-state")


def shared_records(factory):
    records = factory()
    return records if isinstance(records, MemoryDeliveryRecords) else None


def test_two_workers_racing_on_one_record_leave_one_item(deliveries):
    mailbox = SlowMailbox()
    memory = shared_records(deliveries)
    writers = [OnceOnlyMailbox(mailbox, memory or deliveries()) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(w.write, "alice@contoso.example", ITEM) for w in writers]
    outcomes = sorted(f.result().value for f in futures)
    assert outcomes == ["imported", "skipped_duplicate"]
    assert mailbox.items == {("alice@contoso.example", "race-1"): 1}
    assert mailbox.calls == [False]  # the winner created without a lookup; the loser never asked


def test_a_delivered_record_is_skipped_without_asking_the_mailbox(deliveries):
    mailbox = SlowMailbox(delay=0)
    records = deliveries()
    writer = OnceOnlyMailbox(mailbox, records)
    assert writer.write("alice@contoso.example", ITEM) is WriteOutcome.IMPORTED
    assert writer.write("Alice@Contoso.example", ITEM) is WriteOutcome.SKIPPED_DUPLICATE
    assert mailbox.calls == [False]


def test_after_a_crash_mid_write_the_next_attempt_looks_before_writing(deliveries):
    mailbox = SlowMailbox(delay=0, fail_once=True)
    records = deliveries()
    with pytest.raises(TransientError):
        OnceOnlyMailbox(mailbox, records).write("alice@contoso.example", ITEM)
    assert OnceOnlyMailbox(mailbox, records).write("alice@contoso.example", ITEM) is WriteOutcome.SKIPPED_DUPLICATE
    assert mailbox.calls == [False, True]
    assert mailbox.items == {("alice@contoso.example", "race-1"): 1}


@pytest.mark.integration
def test_a_record_held_too_long_by_another_worker_gives_the_message_back():
    from shared.local.azurite import Azurite

    with Azurite() as azurite:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        holder = BlobDeliveryRecords(service, "archive-state")
        waiter = BlobDeliveryRecords(service, "archive-state", wait_seconds=0.5)
        with holder.claim("alice@contoso.example", ITEM.record_key):
            with pytest.raises(TransientError) as error:
                with waiter.claim("alice@contoso.example", ITEM.record_key):
                    pass
        assert error.value.retry_after
        with waiter.claim("alice@contoso.example", ITEM.record_key) as claim:  # released: free again
            assert claim.state.value == "new"


def test_the_lease_keeper_renews_through_storage_hiccups_and_reports_a_lease_it_lost(monkeypatch):
    import shared.adapters.azure_deliveries as deliveries

    class FlakyLease:
        def __init__(self, failures: list[Exception | None]) -> None:
            self.failures = failures
            self.renewals = 0

        def renew(self) -> None:
            self.renewals += 1
            failure = self.failures.pop(0) if self.failures else None
            if failure:
                raise failure

    monkeypatch.setattr(deliveries, "RENEW_EVERY_SECONDS", 0.01)
    monkeypatch.setattr(deliveries, "LEASE_SECONDS", 5.5)
    flaky = FlakyLease([ConnectionError("storage unreachable"), None])
    keeper = deliveries._LeaseKeeper(flaky)
    time.sleep(2.2)  # one failure, a retry 2 s later that succeeds
    keeper.stop()
    assert flaky.renewals >= 2 and not keeper.lost

    from azure.core.exceptions import HttpResponseError

    taken = HttpResponseError(message="lease id mismatch")
    taken.status_code = 409
    keeper = deliveries._LeaseKeeper(FlakyLease([taken]))
    time.sleep(0.2)
    keeper.stop()
    assert keeper.lost
