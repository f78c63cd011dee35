"""The one retry policy of every outbound HTTP call, and the one ``Retry-After`` parser.

Each retry loop of the product (kiota's retry handler on the Graph client, the upload-session
chunk PUTs, ``TeleMessageClient._call`` and its attachment resumes) asks a ``RetryPolicy`` what a
failure means for it: retry after some wait, or give up. The loops keep only what is theirs: what
a status means for the caller, how to send again, the message of the error they raise.

``RetryPolicy`` is immutable, in the manner of urllib3's ``Retry``: ``after_failure`` returns a
``RetryDecision`` carrying the policy's next state (one more failure counted), never changing the
policy it was called on, so one configured policy can serve any number of requests and threads.

A failure is retried when all of these hold:

- the status is one of ``retry_statuses`` (no status at all, a transport error, counts as
  retryable), and the method is not one of ``unsafe_methods``, or the status is one of
  ``unsafe_retry_statuses``: a 429 says the request was not executed, but a 503 or a dropped
  connection on a POST may have created what it asked for, and only the caller's idempotency check
  can tell;
- the wait is at most ``max_inline_wait``. The wait is the server's ``Retry-After`` when it sent
  one, else ``backoff_factor * 2 ** (failures - 1)`` plus up to ``backoff_jitter`` seconds of
  jitter (a fleet of workers that failed together does not come back in lockstep), capped at
  ``backoff_max``. A longer wait is not slept in a worker: the loop raises
  ``TransientError(retry_after=...)`` and the queue does the waiting;
- fewer than ``max_attempts`` attempts have failed.

``parse_retry_after`` reads the header: delta-seconds (ASCII digits, a decimal fraction tolerated)
or an HTTP date; anything else (``inf``, ``nan``, ``1e400``, negative numbers, other digits than
ASCII) is no Retry-After at all, and the value is capped at ``MAX_RETRY_AFTER_SECONDS``.

Standard library only: the Graph adapters import this module without paying for msgraph or kiota.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum

# The longest wait a Retry-After can ask for: a day. A server that asks for more (or for "forever",
# inf, 1e400) is heard as "much later"; the queue's own cap on a deferral is shorter still.
MAX_RETRY_AFTER_SECONDS = 24 * 60 * 60
SERVER_ERRORS = frozenset(range(500, 600))
THROTTLING_STATUSES = frozenset({429, 503, 504})

# RFC 9110 delta-seconds is 1*DIGIT; a fraction is tolerated (Graph's test server sends one).
_DELTA_SECONDS = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
# Backoff exponents beyond this are capped anyway; it keeps 2.0 ** n finite.
_MAX_EXPONENT = 64


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, within ``[0, MAX_RETRY_AFTER_SECONDS]``.

    ``None`` when the header is absent or unreadable. A date in the past is 0. A header sent twice
    (joined by httpx as ``"5, 5"``) counts with its largest delta-seconds. ``now`` (for tests) is
    the moment an HTTP date is measured from; naive means UTC.
    """
    if value is None:
        return None
    text = value.strip()
    parts = [part.strip() for part in text.split(",")]
    if all(_DELTA_SECONDS.fullmatch(part) for part in parts):
        # float() of a very long digit string is inf, never an error: the cap makes it finite.
        return min(max(float(part) for part in parts), float(MAX_RETRY_AFTER_SECONDS))
    if not text.isascii():
        return None
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    moment = now or datetime.now(UTC)
    seconds = (_aware(when) - _aware(moment)).total_seconds()
    return min(max(seconds, 0.0), float(MAX_RETRY_AFTER_SECONDS))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Verdict(Enum):
    RETRY = "retry"
    NOT_RETRYABLE = "not retryable"  # this method and status: an answer, not a passing fault
    WAIT_TOO_LONG = "wait too long"  # over max_inline_wait: for the queue to wait out
    EXHAUSTED = "attempts used up"


@dataclass(frozen=True)
class RetryDecision:
    verdict: Verdict
    policy: RetryPolicy  # the state after this failure: use it for the next attempt
    wait: float  # the server's Retry-After, else the backoff: slept before the next attempt
    retry_after: float | None  # the server's Retry-After, parsed; None when it sent none

    @property
    def retry(self) -> bool:
        return self.verdict is Verdict.RETRY


@dataclass(frozen=True)
class RetryPolicy:
    """How often, how long and on what to retry one request (see the module docstring).

    ``failures`` is the state: how many attempts of this request have failed so far. ``rng``
    returns a float in ``[0, 1)`` for the jitter (``random.random``; a fixed one in tests).
    """

    max_attempts: int = 3
    backoff_factor: float = 0.25
    backoff_jitter: float = 0.25
    backoff_max: float = 5.0
    max_inline_wait: float = 5.0
    retry_statuses: frozenset[int] = THROTTLING_STATUSES
    unsafe_methods: frozenset[str] = frozenset({"POST", "PATCH"})
    unsafe_retry_statuses: frozenset[int] = frozenset({429})
    failures: int = 0
    rng: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError("max_attempts must be a whole number of at least 1")
        if isinstance(self.failures, bool) or not isinstance(self.failures, int) or self.failures < 0:
            raise ValueError("failures must be a whole number of at least 0")
        for name in ("backoff_factor", "backoff_jitter", "backoff_max", "max_inline_wait"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds, at least 0")
        object.__setattr__(self, "unsafe_methods", frozenset(m.upper() for m in self.unsafe_methods))

    @property
    def exhausted(self) -> bool:
        """No attempt is left: ``max_attempts`` of them have failed."""
        return self.failures >= self.max_attempts

    def increment(self) -> RetryPolicy:
        """This policy with one more failed attempt counted."""
        return replace(self, failures=self.failures + 1)

    def at(self, failures: int) -> RetryPolicy:
        """This policy after ``failures`` failed attempts (for loops that count them themselves)."""
        return replace(self, failures=failures)

    def backoff(self) -> float:
        """The wait after the latest failure when the server named none: 0 before any failure."""
        if self.failures == 0:
            return 0.0
        draw = self.rng()
        draw = draw if 0.0 <= draw <= 1.0 else 1.0 if draw > 1.0 else 0.0  # nan: 0
        jitter = self.backoff_jitter * draw
        exponent = min(self.failures - 1, _MAX_EXPONENT)
        return min(self.backoff_max, self.backoff_factor * 2.0**exponent + jitter)

    def next_wait(self, retry_after: float | None = None) -> float:
        """The wait before the next attempt: the server's ``retry_after`` if any, else the backoff."""
        return self.backoff() if retry_after is None else retry_after

    def is_retryable(self, method: str | None, status: int | None) -> bool:
        """Whether a failure with this method and status (None: no answer at all) may be retried."""
        if status is not None and status not in self.retry_statuses:
            return False
        if method is not None and method.upper() in self.unsafe_methods:
            return status in self.unsafe_retry_statuses
        return True

    def after_failure(
        self,
        *,
        method: str | None = None,
        status: int | None = None,
        retry_after_header: str | None = None,
        now: datetime | None = None,
    ) -> RetryDecision:
        """What to do after an attempt failed with ``status`` (None: a transport error) and the
        ``Retry-After`` header as sent: the decision, with the policy's next state."""
        following = self.increment()
        retry_after = parse_retry_after(retry_after_header, now=now)
        wait = following.next_wait(retry_after)
        if not self.is_retryable(method, status):
            verdict = Verdict.NOT_RETRYABLE
        elif wait > self.max_inline_wait:
            verdict = Verdict.WAIT_TOO_LONG
        elif following.exhausted:
            verdict = Verdict.EXHAUSTED
        else:
            verdict = Verdict.RETRY
        return RetryDecision(verdict, following, wait, retry_after)
