"""At most 4 Graph requests in flight per mailbox, process-wide (Exchange Online's limit per app and
mailbox): every Graph request of the process, upload PUTs included, takes a ``MailboxGate`` slot.
Also how a mailbox is named without its address: the gate's key and the log reference."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shared.domain.errors import ConfigurationError

# Exchange Online: 4 concurrent requests per app and mailbox.
MAX_CONCURRENT_REQUESTS_PER_MAILBOX = 4


class MailboxGate:
    """A per-mailbox counting semaphore shared by every event loop of the process.

    ``asyncio.Semaphore`` belongs to one loop; this one hands slots across loops (each client has
    its own ``GraphLoop``), so two clients in one process still stay within Exchange's limit of
    concurrent requests per app and mailbox. Waiters are served in arrival order. Hold a slot for
    one request only, never across a sleep or another acquisition.
    """

    def __init__(self, limit: int = MAX_CONCURRENT_REQUESTS_PER_MAILBOX) -> None:
        if limit < 1:
            raise ConfigurationError("the concurrent request limit per mailbox must be at least 1")
        self.limit = limit
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}
        self._waiters: dict[str, deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}
        self._peak: dict[str, int] = {}

    @staticmethod
    def key(mailbox: str) -> str:
        return mailbox.strip().lower()

    @asynccontextmanager
    async def slot(self, mailbox: str) -> AsyncIterator[None]:
        key = self.key(mailbox)
        await self._acquire(key)
        try:
            yield
        finally:
            self._release(key)

    def in_flight(self, mailbox: str) -> int:
        with self._lock:
            return self._active.get(self.key(mailbox), 0)

    def peak(self, mailbox: str) -> int:
        """The most requests this gate ever let through at once for ``mailbox``."""
        with self._lock:
            return self._peak.get(self.key(mailbox), 0)

    async def _acquire(self, key: str) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._active.get(key, 0) < self.limit and not self._waiters.get(key):
                self._take(key)
                return
            future: asyncio.Future[None] = loop.create_future()
            entry = (loop, future)
            self._waiters.setdefault(key, deque()).append(entry)
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                queue = self._waiters.get(key)
                queued = queue is not None and entry in queue
                if queued:
                    queue.remove(entry)  # type: ignore[union-attr]
            if not queued and future.done() and not future.cancelled():
                self._release(key)  # the slot was handed over just before the cancellation
            # Otherwise a hand-over is under way and _grant passes the slot on.
            raise

    def _take(self, key: str) -> None:
        active = self._active.get(key, 0) + 1
        self._active[key] = active
        self._peak[key] = max(self._peak.get(key, 0), active)

    def _release(self, key: str) -> None:
        with self._lock:
            queue = self._waiters.get(key)
            while queue:
                loop, future = queue.popleft()
                if not queue:
                    del self._waiters[key]
                try:
                    # The slot passes to the waiter without the count ever dropping.
                    loop.call_soon_threadsafe(self._grant, key, future)
                    return
                except RuntimeError:  # that loop is closed: try the next waiter
                    continue
            active = self._active.get(key, 0) - 1
            if active > 0:
                self._active[key] = active
            else:
                self._active.pop(key, None)

    def _grant(self, key: str, future: asyncio.Future[None]) -> None:
        if future.done():  # cancelled while the hand-over was on its way
            self._release(key)
        else:
            future.set_result(None)


_PROCESS_GATE = MailboxGate()


def process_mailbox_gate() -> MailboxGate:
    """The gate every adapter of this process uses unless given its own (tests simulating processes)."""
    return _PROCESS_GATE


def mailbox_ref(mailbox: str) -> str:
    """A stable, non-reversible short name for a mailbox in logs."""
    return hashlib.sha256(mailbox.strip().lower().encode("utf-8")).hexdigest()[:12]
