"""MailboxPacer (shared/adapters/graph_pacer.py) under a fake clock, and LocalGraph's enforcement of
Exchange's per-mailbox limits.

The pacer tests run real asyncio code (the process-wide MailboxGate, asyncio.sleep) on an event
loop whose clock is virtual: when nothing is ready to run, time jumps to the next timer. A minute
of traffic takes milliseconds and every figure is exact.
"""

from __future__ import annotations

import asyncio
import bisect
import selectors
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from shared.adapters.graph_gate import MailboxGate
from shared.adapters.graph_pacer import (
    EXCHANGE_LIMITS,
    MailboxLimits,
    MailboxPacer,
    PacingDeferred,
    process_mailbox_pacer,
    set_process_mailbox_pacer,
)
from shared.local.graph_stand_in.server import LocalGraph

ALICE = "alice@contoso.example"
BOB = "bob@contoso.example"
MB = 1_000_000


class _VirtualSelector(selectors.DefaultSelector):
    """Polls the real selector without blocking; when nothing is ready, moves the clock on by the
    timeout the loop would have slept for."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            self._clock[0] += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.clock = [1000.0]
        super().__init__(_VirtualSelector(self.clock))

    def time(self) -> float:
        return self.clock[0]


def run_virtual[T](make: Callable[[VirtualTimeLoop], Coroutine[Any, Any, T]]) -> T:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(make(loop))
    finally:
        loop.close()


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def most_bytes_in_any_window(sends: list[tuple[float, int]], window: float) -> int:
    sends = sorted(sends)
    best = 0
    for i, (start, _) in enumerate(sends):
        best = max(best, sum(size for t, size in sends[i:] if t < start + window))
    return best


# -- requests -----------------------------------------------------------------------------------------


def test_many_callers_on_one_mailbox_stay_under_the_rate_and_four_in_flight_yet_use_over_90_percent():
    limits = MailboxLimits(requests=100, request_window_seconds=10.0)  # 10 per second
    callers, latency, duration = 24, 0.05, 60.0
    sends: list[float] = []
    in_flight = most = 0

    async def main(loop: VirtualTimeLoop) -> None:
        nonlocal in_flight, most
        gate = MailboxGate()
        pacer = MailboxPacer(limits, clock=loop.time)
        end = loop.time() + duration

        async def caller() -> None:
            nonlocal in_flight, most
            while loop.time() < end:
                async with gate.slot(ALICE):
                    await pacer.admit(ALICE)
                    sends.append(loop.time())
                    in_flight += 1
                    most = max(most, in_flight)
                    await asyncio.sleep(latency)
                    in_flight -= 1

        await asyncio.gather(*(caller() for _ in range(callers)))

    run_virtual(main)

    assert most <= 4
    assert most_in_any_window(sends, limits.request_window_seconds) <= limits.requests
    reached = len(sends) / (limits.request_rate * duration)
    assert 0.90 <= reached <= 1.0, reached


def test_the_default_limits_are_exchanges_and_admit_at_most_99_percent_in_any_ten_minutes():
    clock = [0.0]
    pacer = MailboxPacer(clock=lambda: clock[0], max_wait_seconds=1e9)
    assert pacer.limits == EXCHANGE_LIMITS
    assert (EXCHANGE_LIMITS.requests, EXCHANGE_LIMITS.request_window_seconds) == (10_000, 600.0)
    assert (EXCHANGE_LIMITS.upload_bytes, EXCHANGE_LIMITS.upload_window_seconds) == (150 * MB, 300.0)
    sends = []
    for _ in range(25_000):  # one caller that never stops asking
        clock[0] += pacer.reserve(ALICE)
        sends.append(clock[0])
    assert most_in_any_window(sends, 600.0) <= 9_900
    steady = [t for t in sends if t >= 600.0]
    assert len(steady) / (sends[-1] - 600.0) == pytest.approx(10_000 / 600 * 0.94, rel=0.01)


def test_an_idle_mailbox_gets_its_burst_at_once_and_mailboxes_do_not_share_a_budget():
    clock = [0.0]
    pacer = MailboxPacer(MailboxLimits(requests=100, request_window_seconds=10.0), clock=lambda: clock[0])
    waits = [pacer.reserve(ALICE) for _ in range(5)]  # 5% of 100
    assert waits == [0.0] * 5
    assert pacer.reserve("ALICE@contoso.example ") > 0  # the same mailbox, however written
    assert pacer.reserve(BOB) == 0.0


def test_a_turn_further_away_than_the_wait_limit_is_refused_and_reserves_nothing():
    clock = [0.0]
    pacer = MailboxPacer(MailboxLimits(requests=10, request_window_seconds=10.0), clock=lambda: clock[0],
                         max_wait_seconds=2.0)
    waits = []
    with pytest.raises(PacingDeferred) as deferred:
        while True:
            waits.append(pacer.reserve(ALICE))
    assert max(waits) <= 2.0 and deferred.value.wait > 2.0 and deferred.value.what == "requests"
    assert pacer.stats(ALICE).deferred == 1
    # Nothing was booked by the refusal: the same turn is offered again.
    assert pacer.reserve(ALICE, may_defer=False) == pytest.approx(deferred.value.wait)


def test_a_429_that_got_through_holds_the_mailbox_for_its_retry_after():
    clock = [0.0]
    pacer = MailboxPacer(clock=lambda: clock[0], max_wait_seconds=5.0)
    pacer.penalize(ALICE, 30.0)
    with pytest.raises(PacingDeferred):
        pacer.reserve(ALICE)
    assert pacer.reserve(ALICE, may_defer=False) == pytest.approx(30.0)
    assert pacer.reserve(BOB) == 0.0
    assert pacer.stats(ALICE).penalties == 1


def test_an_unlimited_pacer_never_waits():
    pacer = MailboxPacer.unlimited()
    assert not pacer.enabled
    assert all(pacer.reserve(ALICE, upload_bytes=100 * MB) == 0.0 for _ in range(50_000))


# -- uploads -------------------------------------------------------------------------------------------


def test_uploads_never_exceed_the_byte_budget_in_any_window_and_keep_it_busy():
    limits = MailboxLimits(upload_bytes=15 * MB, upload_window_seconds=30.0)  # 0.5 MB/s
    chunk, duration = 3_276_800, 120.0
    sends: list[tuple[float, int]] = []

    async def main(loop: VirtualTimeLoop) -> None:
        gate = MailboxGate()
        pacer = MailboxPacer(limits, clock=loop.time)
        end = loop.time() + duration

        async def uploader() -> None:
            while loop.time() < end:
                async with gate.slot(ALICE):
                    await pacer.admit(ALICE, upload_bytes=chunk, may_defer=False)
                    sends.append((loop.time(), chunk))
                    await asyncio.sleep(0.2)

        await asyncio.gather(*(uploader() for _ in range(6)))

    run_virtual(main)

    assert most_bytes_in_any_window(sends, 30.0) <= 0.95 * 15 * MB
    reached = sum(size for _, size in sends) / (limits.upload_rate * duration)
    assert reached >= 0.85, reached


def test_an_idle_mailbox_takes_a_large_upload_at_full_speed_and_a_busy_one_waits_for_its_window():
    clock = [0.0]
    pacer = MailboxPacer(clock=lambda: clock[0])  # 150 MB per 5 minutes
    assert pacer.upload_wait(ALICE, 100 * MB) == 0.0
    for _ in range(31):  # a 100 MB attachment in 3.2 MB chunks, 50 ms apart
        assert pacer.reserve(ALICE, upload_bytes=3_276_800, may_defer=False) == 0.0
        clock[0] += 0.05
    # 101.6 MB sent: another 100 MB must wait until the first has left the five minutes.
    wait = pacer.upload_wait(ALICE, 100 * MB)
    assert 290.0 <= wait <= 301.6
    assert pacer.upload_wait(BOB, 100 * MB) == 0.0
    assert pacer.upload_wait(ALICE, 30 * MB) == 0.0  # 131.6 MB still fits 95% of 150 MB


def test_an_upload_larger_than_the_whole_budget_goes_alone_into_an_empty_window():
    clock = [0.0]
    pacer = MailboxPacer(MailboxLimits(upload_bytes=10 * MB, upload_window_seconds=10.0), clock=lambda: clock[0])
    assert pacer.reserve(ALICE, upload_bytes=2 * MB) == 0.0
    clock[0] += 1.0
    assert pacer.upload_wait(ALICE, 12 * MB) == pytest.approx(9.0)  # once the 2 MB have left


def test_scaled_limits_keep_the_rates():
    scaled = EXCHANGE_LIMITS.scaled(0.05)
    assert (scaled.requests, scaled.request_window_seconds) == (500, 30.0)
    assert scaled.request_rate == pytest.approx(EXCHANGE_LIMITS.request_rate)
    assert scaled.upload_rate == pytest.approx(EXCHANGE_LIMITS.upload_rate)


def test_the_process_pacer_can_be_replaced_for_writers_built_afterwards():
    mine = MailboxPacer.unlimited()
    previous = set_process_mailbox_pacer(mine)
    try:
        assert process_mailbox_pacer() is mine
    finally:
        set_process_mailbox_pacer(previous)
    assert process_mailbox_pacer() is previous


def test_threads_share_one_pacer_and_are_served_in_turn():
    pacer = MailboxPacer(MailboxLimits(requests=40, request_window_seconds=1.0), max_wait_seconds=10.0)
    sends: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            time.sleep(pacer.reserve(ALICE))
            with lock:
                sends.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sends) == 80
    assert pacer.stats(ALICE).admitted == 80
    # 80 requests at 37.6 per second after a burst of 2: about two seconds, whoever asked.
    assert max(sends) - min(sends) >= 1.5


# -- LocalGraph enforcing the limits ---------------------------------------------------------------------


def _create(client: httpx.Client, graph: LocalGraph, mailbox: str, body_bytes: int = 0) -> httpx.Response:
    body = {
        "subject": "x" * body_bytes,
        "singleValueExtendedProperties": [{"id": "Integer 0x0E07", "value": "1"}],
    }
    return client.post(f"{graph.base_url}/users/{mailbox}/mailFolders/inbox/messages", json=body,
                       headers={"Authorization": "Bearer t"})


def test_local_graph_counts_429s_per_rule_and_keeps_directory_calls_out_of_the_mailbox_budget():
    with LocalGraph({ALICE: True, BOB: True}, rate_limit=(3, 60.0), upload_limit=(50_000, 60.0),
                    fractional_retry_after=True) as graph, httpx.Client() as client:
        statuses = [_create(client, graph, ALICE).status_code for _ in range(5)]
        assert statuses == [201, 201, 201, 429, 429]
        assert client.get(f"{graph.base_url}/users/{ALICE}", headers={"Authorization": "Bearer t"}).status_code == 200
        assert _create(client, graph, BOB, body_bytes=40_000).status_code == 201
        assert _create(client, graph, BOB, body_bytes=20_000).status_code == 429  # over the upload budget
        assert _create(client, graph, BOB, body_bytes=5_000).status_code == 201
        assert graph.throttled_counts(ALICE) == {"rate": 2}
        assert graph.throttled_counts(BOB) == {"upload": 1}
        assert graph.total_throttled() == 3
        budget = graph.budget_usage(ALICE)
        assert budget["requests"] == 3 and budget["throttled"] == 2
        assert 45_000 < graph.budget_usage(BOB)["upload_bytes"] <= 50_000


def test_local_graph_answers_429_over_the_upload_budget_with_the_wait_until_it_fits():
    with LocalGraph({ALICE: True}, upload_limit=(30_000, 2.0), fractional_retry_after=True) as graph, \
            httpx.Client() as client:
        assert _create(client, graph, ALICE, body_bytes=20_000).status_code == 201
        refused = _create(client, graph, ALICE, body_bytes=20_000)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "ApplicationThrottled"
        wait = float(refused.headers["Retry-After"])
        assert 0 < wait <= 2.0
        time.sleep(wait + 0.05)
        assert _create(client, graph, ALICE, body_bytes=20_000).status_code == 201


# -- the Graph writer with its pacer -------------------------------------------------------------------


def _writer(graph: LocalGraph, pacer: MailboxPacer):
    from shared.adapters.graph_client import build_graph_client
    from shared.adapters.graph_mailbox import GraphMailbox
    from tests.test_graph_mailbox import TOKEN

    return GraphMailbox(build_graph_client(base_url=graph.base_url, access_token=TOKEN), pacer=pacer,
                        gate=MailboxGate())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_writer_whose_mailbox_turn_is_far_away_hands_the_record_back_before_sending_anything():
    from shared.domain.errors import TransientError
    from tests.test_graph_mailbox import rendered

    with LocalGraph({ALICE: True}) as graph:
        pacer = MailboxPacer(max_wait_seconds=2.0)
        with _writer(graph, pacer) as writer:
            writer.write(ALICE, rendered("first"), check_existing=False)
            before = graph.total_requests(ALICE)
            pacer.penalize(writer._graph.budget_key(ALICE), 30.0)  # as a 429 that got through would
            with pytest.raises(TransientError) as deferred:
                writer.write(ALICE, rendered("second"), check_existing=False)
            assert graph.total_requests(ALICE) == before  # nothing was sent
            assert 28.0 <= deferred.value.retry_after <= 30.0
            other = LocalGraph({ALICE: True}).start()
            try:  # the budget is per Graph host and mailbox: another server's ALICE is not held
                with _writer(other, pacer) as elsewhere:
                    elsewhere.write(ALICE, rendered("third"), check_existing=False)
            finally:
                other.stop()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_an_item_whose_uploads_the_budget_cannot_take_soon_is_refused_before_it_is_created():
    from shared.domain.errors import TransientError
    from tests.test_graph_mailbox import attached, blob, rendered

    with LocalGraph({ALICE: True}, keep_attachment_bytes=0) as graph:
        pacer = MailboxPacer(MailboxLimits(upload_bytes=10 * MB, upload_window_seconds=60.0), max_wait_seconds=5.0)
        with _writer(graph, pacer) as writer:
            writer.write(ALICE, rendered("four", attachments=(attached("a.mp4", blob(4 * MB)),)), check_existing=False)
            before = graph.request_counts(ALICE)
            with pytest.raises(TransientError) as deferred:
                writer.write(ALICE, rendered("eight", attachments=(attached("b.mp4", blob(8 * MB)),)),
                             check_existing=False)
            assert graph.request_counts(ALICE) == before  # not even the create
            assert 50.0 <= deferred.value.retry_after <= 60.0  # until the 4 MB have left the window
            assert len(graph.messages(ALICE)) == 1
        usage = graph.budget_usage(ALICE)
        assert 4 * MB < usage["upload_bytes"] < 4.1 * MB  # the pacer counted what the server did
