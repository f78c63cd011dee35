"""Scripted trouble for tests: failures and amended answers (``fail_next`` / ``amend_next``) and
requests held back until their rivals arrive (``hold_until``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from shared.local.graph_stand_in.errors import GraphHTTPError


@dataclass
class Fault:
    status: int
    remaining: int
    retry_after: float | None
    path_contains: str | None
    code: str | None
    method: str | None
    after_execution: bool
    skip: int = 0
    location: str | None = None  # a redirect's Location
    amend: dict[str, Any] | None = None  # served as usual, these fields added to the answer


@dataclass
class Barrier:
    """Holds requests of one operation until ``parties`` of them have arrived (a race, on cue)."""

    parties: int
    timeout: float
    arrived: int = 0
    released: threading.Event = field(default_factory=threading.Event)


class FaultScript:
    """The faults and barriers scripted so far, served to matching requests in order."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._faults: list[Fault] = []
        self._barriers: dict[str, Barrier] = {}

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def hold(self, operation: str, parties: int, timeout: float) -> None:
        with self._lock:
            self._barriers[operation] = Barrier(parties, timeout)

    def pending(self) -> int:
        with self._lock:
            return sum(fault.remaining for fault in self._faults)

    def take(self, method: str, path: str) -> Fault | None:
        """The fault this request meets, if any (counted as served)."""
        with self._lock:
            for fault in self._faults:
                if (
                    fault.remaining > 0
                    and (fault.path_contains is None or fault.path_contains in path)
                    and (fault.method is None or fault.method.upper() == method)
                ):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def wait_at_barrier(self, operation: str) -> None:
        with self._lock:
            barrier = self._barriers.get(operation)
            if barrier is None:
                return
            barrier.arrived += 1
            if barrier.arrived >= barrier.parties:
                del self._barriers[operation]
                barrier.released.set()
        barrier.released.wait(barrier.timeout)


def fault_error(fault: Fault) -> GraphHTTPError:
    headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
    if fault.location is not None:
        headers["Location"] = fault.location
    code = fault.code or {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "GatewayTimeout"}.get(
        fault.status, "InjectedFault"
    )
    return GraphHTTPError(fault.status, code, "Injected by LocalGraph.fail_next.", headers)
