"""Exchange's per-mailbox limits, played by the Graph stand-in: every request is counted (and logged),
then admitted or answered 429 ``ApplicationThrottled`` with a ``Retry-After``.

Mail calls count against their mailbox: at most ``max_concurrent`` in flight, ``rate_limit`` requests
and ``upload_limit`` bytes of request bodies (POST, PUT, PATCH) in sliding windows. Directory calls
are Entra ID's, not Exchange's: counted, never throttled.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, defaultdict, deque
from typing import Any
from urllib.parse import unquote

from shared.local.graph_stand_in.errors import GraphHTTPError

MAX_CONCURRENT_PER_MAILBOX = 4
# The "mailbox" key that directory-wide requests (GET /users) are counted under.
DIRECTORY = "(directory)"
# Entra ID calls: counted under the user they name, never throttled as the mailbox's.
DIRECTORY_OPERATIONS = frozenset({"user_find", "user_get", "user_list"})


class MailboxThrottle:
    """Counts requests per mailbox and operation, and admits mail calls within the limits."""

    def __init__(
        self,
        lock: threading.RLock,
        *,
        max_concurrent: int | None,
        rate_limit: tuple[int, float] | None,
        upload_limit: tuple[int, float] | None,
        retry_after: float | None,
        fractional_retry_after: bool,
    ) -> None:
        self._lock = lock
        self.max_concurrent = max_concurrent
        self.rate_limit = rate_limit
        self.upload_limit = upload_limit
        self.retry_after = retry_after
        self.fractional_retry_after = fractional_retry_after
        self._counts: dict[str, Counter[str]] = defaultdict(Counter)
        self._throttled: dict[str, Counter[str]] = defaultdict(Counter)
        self._inflight: Counter[str] = Counter()
        self._max_inflight: Counter[str] = Counter()
        self._recent: dict[str, deque[float]] = defaultdict(deque)
        self._recent_uploads: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        # Mail requests let through, per mailbox: (monotonic arrival time, body bytes).
        self._admitted: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.request_log: list[dict[str, Any]] = []

    def enter(
        self, mailbox: str, operation: str, method: str, path: str, headers: Any, query: str = "",
        body_bytes: int = 0, latency_seconds: float = 0.0,
    ) -> bool:
        """Counts the request, then admits it or answers 429 (concurrency, rate, then uploads).
        Directory calls are counted and admitted: Exchange's per-mailbox limits are not theirs.
        True when the request is now in flight for the mailbox (``leave`` it afterwards)."""
        with self._lock:
            now = time.monotonic()
            self._counts[mailbox][operation] += 1
            self.request_log.append(
                {
                    "at": now,
                    "mailbox": mailbox,
                    "operation": operation,
                    "method": method,
                    "path": path,
                    "query": unquote(query),
                    "prefer": headers.get("Prefer"),
                    "authorization": headers.get("Authorization") is not None,
                }
            )
            mail_call = operation not in DIRECTORY_OPERATIONS
            limit = self.max_concurrent
            if mail_call and limit is not None and self._inflight[mailbox] >= limit:
                self._throttled[mailbox]["concurrency"] += 1
                wait = max(latency_seconds, 0.02) if self.fractional_retry_after else 1.0
                raise self._throttle("Application is over its MailboxConcurrency limit.", wait)
            if mail_call and self.rate_limit is not None:
                allowed, window = self.rate_limit
                recent = self._recent[mailbox]
                while recent and now - recent[0] >= window:
                    recent.popleft()
                if len(recent) >= allowed:
                    self._throttled[mailbox]["rate"] += 1
                    raise self._throttle("Application is over its request rate limit.", window - (now - recent[0]))
            uploaded = body_bytes if method in ("POST", "PUT", "PATCH") else 0
            if mail_call and self.upload_limit is not None and uploaded:
                allowed_bytes, window = self.upload_limit
                uploads = self._recent_uploads[mailbox]
                while uploads and now - uploads[0][0] >= window:
                    uploads.popleft()
                held = sum(n for _, n in uploads)
                if uploads and held + uploaded > allowed_bytes:
                    # The wait until enough of the window has passed for this body to fit (a body
                    # larger than the whole budget is let into an empty window).
                    wait, freed = 0.0, 0
                    for at, n in uploads:
                        freed += n
                        wait = window - (now - at)
                        if held - freed + uploaded <= allowed_bytes:
                            break
                    self._throttled[mailbox]["upload"] += 1
                    raise self._throttle("Application is over its upload limit.", wait)
                uploads.append((now, uploaded))
            if mail_call:
                if self.rate_limit is not None:
                    self._recent[mailbox].append(now)
                self._admitted[mailbox].append((now, uploaded))
                self._inflight[mailbox] += 1
                self._max_inflight[mailbox] = max(self._max_inflight[mailbox], self._inflight[mailbox])
            return mail_call

    def _throttle(self, message: str, wait: float) -> GraphHTTPError:
        if self.retry_after is not None:
            retry_after = f"{self.retry_after:g}"
        elif self.fractional_retry_after:
            retry_after = f"{max(wait, 0.001):.3f}"
        else:
            retry_after = str(max(1, math.ceil(wait)))
        return GraphHTTPError(429, "ApplicationThrottled", message, {"Retry-After": retry_after})

    def leave(self, mailbox: str) -> None:
        with self._lock:
            self._inflight[mailbox] -= 1

    # -- what was counted -----------------------------------------------------------------------

    def request_counts(self, mailbox: str) -> dict[str, int]:
        with self._lock:
            return dict(self._counts.get(mailbox.lower(), Counter()))

    def throttled_counts(self, mailbox: str) -> dict[str, int]:
        with self._lock:
            return dict(self._throttled.get(mailbox.lower(), Counter()))

    def total_throttled(self) -> int:
        with self._lock:
            return sum(sum(counts.values()) for counts in self._throttled.values())

    def admitted_requests(self, mailbox: str) -> list[tuple[float, int]]:
        with self._lock:
            return list(self._admitted.get(mailbox.lower(), ()))

    def budget_usage(self, mailbox: str, since: float | None = None) -> dict[str, Any]:
        admitted = [(t, n) for t, n in self.admitted_requests(mailbox) if since is None or t >= since]
        return {
            "requests": len(admitted),
            "upload_bytes": sum(n for _, n in admitted),
            "throttled": sum(self.throttled_counts(mailbox).values()),
            "first": admitted[0][0] if admitted else None,
            "last": admitted[-1][0] if admitted else None,
        }

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()
            self._throttled.clear()
            self._admitted.clear()
            self.request_log.clear()

    def max_concurrency(self, mailbox: str) -> int:
        with self._lock:
            return self._max_inflight.get(mailbox.lower(), 0)
