"""Paces Graph requests per mailbox so the connector stays under Exchange Online's limits (10,000
requests per 10 minutes, 150 MB of uploads per 5 minutes, per app and mailbox) instead of running
into them: a GCRA token bucket for the requests, a sliding log for the upload bytes, a turn too far
away handed back to the queue (``PacingDeferred``). docs/graph.md ("Throttling", "Pacing") has the
design and its limits.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

# Exchange Online, per app and mailbox (Microsoft Graph throttling limits, Outlook service).
EXCHANGE_REQUESTS = 10_000
EXCHANGE_REQUEST_WINDOW_SECONDS = 600.0
# "150 megabytes": read as decimal megabytes, the stricter reading.
EXCHANGE_UPLOAD_BYTES = 150_000_000
EXCHANGE_UPLOAD_WINDOW_SECONDS = 300.0

DEFAULT_REQUEST_SHARE = 0.94
DEFAULT_BURST_SHARE = 0.05
DEFAULT_UPLOAD_SHARE = 0.95
DEFAULT_MAX_WAIT_SECONDS = 5.0
_UPLOAD_SLOTS_PER_WINDOW = 200
_IDLE_SWEEP_EVERY = 1024  # reservations between sweeps of idle mailboxes


@dataclass(frozen=True)
class MailboxLimits:
    """Exchange's per-mailbox budget. ``scaled`` keeps the rates and shortens the windows."""

    requests: int = EXCHANGE_REQUESTS
    request_window_seconds: float = EXCHANGE_REQUEST_WINDOW_SECONDS
    upload_bytes: int = EXCHANGE_UPLOAD_BYTES
    upload_window_seconds: float = EXCHANGE_UPLOAD_WINDOW_SECONDS

    def __post_init__(self) -> None:
        if self.requests < 1 or self.upload_bytes < 1:
            raise ValueError("limits must be positive")
        if self.request_window_seconds <= 0 or self.upload_window_seconds <= 0:
            raise ValueError("windows must be positive")

    @property
    def request_rate(self) -> float:
        """Requests per second at the limit."""
        return self.requests / self.request_window_seconds

    @property
    def upload_rate(self) -> float:
        """Bytes per second at the limit."""
        return self.upload_bytes / self.upload_window_seconds

    def scaled(self, factor: float) -> MailboxLimits:
        """The same rates over windows ``factor`` times as long (benchmarks: 0.05 turns 10 minutes
        into 30 seconds and 10,000 requests into 500)."""
        return MailboxLimits(
            requests=max(1, round(self.requests * factor)),
            request_window_seconds=self.request_window_seconds * factor,
            upload_bytes=max(1, round(self.upload_bytes * factor)),
            upload_window_seconds=self.upload_window_seconds * factor,
        )


EXCHANGE_LIMITS = MailboxLimits()


class PacingDeferred(Exception):
    """The mailbox's next turn is ``wait`` seconds away, more than the caller may wait."""

    def __init__(self, wait: float, what: str) -> None:
        super().__init__(f"mailbox budget ({what}): next turn in {wait:.1f} s")
        self.wait = wait
        self.what = what


@dataclass
class _Mailbox:
    tat: float  # GCRA theoretical arrival time of the next request
    uploads: deque[list[float]] = field(default_factory=deque)  # [latest time, bytes] slots, in order
    upload_total: float = 0.0  # bytes in ``uploads``
    blocked_until: float = 0.0  # a 429's Retry-After
    last_used: float = 0.0


@dataclass
class PacerStats:
    admitted: int = 0
    waited: int = 0  # requests that had to wait for their turn
    wait_seconds: float = 0.0
    deferred: int = 0  # turns refused as too far away
    penalties: int = 0  # 429s reported


class MailboxPacer:
    """Per-mailbox pacing (docs/graph.md, "Pacing"). Thread-safe; usable from any event loop."""

    def __init__(
        self,
        limits: MailboxLimits | None = EXCHANGE_LIMITS,
        *,
        request_share: float = DEFAULT_REQUEST_SHARE,
        burst_share: float = DEFAULT_BURST_SHARE,
        upload_share: float = DEFAULT_UPLOAD_SHARE,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """``limits=None``: no pacing at all (429s alone hold the writer back)."""
        if not 0 < request_share <= 1 or not 0 <= burst_share < 1 or request_share + burst_share > 1:
            raise ValueError("request_share and burst_share must be shares of the limit adding up to at most 1")
        if not 0 < upload_share <= 1:
            raise ValueError("upload_share must be a share of the limit")
        if max_wait_seconds < 0:
            raise ValueError("max_wait_seconds must not be negative")
        self.limits = limits
        self.max_wait_seconds = max_wait_seconds
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._boxes: dict[str, _Mailbox] = {}
        self._stats: dict[str, PacerStats] = {}
        self._reservations = 0
        if limits is None:
            self.interval = 0.0
            self.tolerance = 0.0
            self.upload_budget = math.inf
            self._upload_window = 0.0
            self._upload_slot = 0.0
            return
        self.interval = limits.request_window_seconds / (limits.requests * request_share)
        # GCRA lets a request through while tat - now <= tolerance: burst + 1 requests at once.
        burst = max(0, math.floor(limits.requests * burst_share) - 1)
        self.tolerance = burst * self.interval
        self.upload_budget = limits.upload_bytes * upload_share
        self._upload_window = limits.upload_window_seconds
        self._upload_slot = limits.upload_window_seconds / _UPLOAD_SLOTS_PER_WINDOW

    @classmethod
    def unlimited(cls) -> MailboxPacer:
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self.limits is not None

    @staticmethod
    def key(mailbox: str) -> str:
        return mailbox.strip().lower()

    # -- the calls the writer makes -------------------------------------------------------------

    async def admit(self, mailbox: str, *, upload_bytes: int = 0, may_defer: bool = True) -> float:
        """Waits for ``mailbox``'s next turn for one request carrying ``upload_bytes``; returns
        the seconds waited. Raises PacingDeferred when ``may_defer`` and the turn is further away
        than ``max_wait_seconds`` (nothing is reserved then)."""
        wait = self.reserve(mailbox, upload_bytes=upload_bytes, may_defer=may_defer)
        if wait > 0:
            await self._sleep(wait)
        return wait

    def reserve(self, mailbox: str, *, upload_bytes: int = 0, may_defer: bool = True) -> float:
        """Books the next turn and returns how far away it is (``admit`` without the sleep)."""
        if self.limits is None:
            return 0.0
        key = self.key(mailbox)
        with self._lock:
            now = self._clock()
            box = self._box(key, now)
            stats = self._stats.setdefault(key, PacerStats())
            at = max(now, box.tat - self.tolerance, box.blocked_until)
            what = "requests"
            if upload_bytes > 0:
                upload_at = self._upload_turn(box, now, float(upload_bytes), not_before=at)
                if upload_at > at:
                    at, what = upload_at, "uploads"
            wait = at - now
            if may_defer and wait > self.max_wait_seconds:
                stats.deferred += 1
                raise PacingDeferred(wait, what)
            box.tat = max(box.tat, at) + self.interval
            if upload_bytes > 0:
                self._add_upload(box, at, float(upload_bytes))
            box.last_used = at
            stats.admitted += 1
            if wait > 0:
                stats.waited += 1
                stats.wait_seconds += wait
            self._reservations += 1
            if self._reservations % _IDLE_SWEEP_EVERY == 0:
                self._sweep(now)
            return wait

    def upload_wait(self, mailbox: str, upload_bytes: int) -> float:
        """Seconds until ``upload_bytes`` could all go out in ``mailbox``'s window, reserving
        nothing: the writer asks before creating an item whose attachments it will upload."""
        if self.limits is None or upload_bytes <= 0:
            return 0.0
        key = self.key(mailbox)
        with self._lock:
            now = self._clock()
            box = self._box(key, now)
            start = max(now, box.blocked_until)
            return self._upload_turn(box, now, float(upload_bytes), not_before=start) - now

    def penalize(self, mailbox: str, retry_after: float | None) -> None:
        """A 429 got through (another instance, a stricter tenant): every request of ``mailbox``
        in this process waits out its Retry-After (1 s when Graph gave none)."""
        if self.limits is None:
            return
        key = self.key(mailbox)
        with self._lock:
            now = self._clock()
            box = self._box(key, now)
            box.blocked_until = max(box.blocked_until, now + (1.0 if retry_after is None else retry_after))
            self._stats.setdefault(key, PacerStats()).penalties += 1

    def stats(self, mailbox: str | None = None) -> PacerStats:
        """Counts for one mailbox, or summed over all of them."""
        with self._lock:
            if mailbox is not None:
                found = self._stats.get(self.key(mailbox))
                return PacerStats(**vars(found)) if found else PacerStats()
            total = PacerStats()
            for one in self._stats.values():
                for name, value in vars(one).items():
                    setattr(total, name, getattr(total, name) + value)
            return total

    # -- internals (lock held) -------------------------------------------------------------------

    def _box(self, key: str, now: float) -> _Mailbox:
        box = self._boxes.get(key)
        if box is None:
            box = self._boxes[key] = _Mailbox(tat=now, last_used=now)
        return box

    def _prune(self, box: _Mailbox, now: float) -> None:
        horizon = now - self._upload_window
        while box.uploads and box.uploads[0][0] <= horizon:
            box.upload_total -= box.uploads.popleft()[1]
        if not box.uploads:
            box.upload_total = 0.0

    def _upload_turn(self, box: _Mailbox, now: float, size: float, *, not_before: float) -> float:
        """The earliest time >= ``not_before`` (and after every booked upload) at which the window
        ending then holds at most the budget with ``size`` more bytes."""
        self._prune(box, now)
        at = max(not_before, box.uploads[-1][0] if box.uploads else not_before)
        held = box.upload_total
        for slot_time, slot_bytes in box.uploads:
            if slot_time > at - self._upload_window and held + size <= self.upload_budget:
                break
            held -= slot_bytes
            # The window ending at ``at`` excludes a slot from the moment its latest byte is a
            # whole window old.
            at = max(at, slot_time + self._upload_window)
        return at

    def _add_upload(self, box: _Mailbox, at: float, size: float) -> None:
        last = box.uploads[-1] if box.uploads else None
        if last is not None and at - last[0] < self._upload_slot:
            # Coalesce: the slot now leaves the window when its latest byte does.
            last[0] = max(last[0], at)
            last[1] += size
        else:
            box.uploads.append([at, size])
        box.upload_total += size

    def _sweep(self, now: float) -> None:
        idle = [
            key for key, box in self._boxes.items()
            if box.tat <= now and box.blocked_until <= now
            and (not box.uploads or box.uploads[-1][0] <= now - self._upload_window)
        ]
        for key in idle:
            del self._boxes[key]


_PROCESS_PACER = MailboxPacer()
_PROCESS_LOCK = threading.Lock()


def process_mailbox_pacer() -> MailboxPacer:
    """The pacer every Graph writer of this process shares unless given its own."""
    return _PROCESS_PACER


def set_process_mailbox_pacer(pacer: MailboxPacer) -> MailboxPacer:
    """Replaces the process-wide pacer for writers built from now on (benchmarks: limits scaled to
    a short run); returns the one it replaced."""
    global _PROCESS_PACER
    with _PROCESS_LOCK:
        previous, _PROCESS_PACER = _PROCESS_PACER, pacer
    return previous
