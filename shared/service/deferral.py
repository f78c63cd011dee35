"""One policy for waiting out a source's or a mailbox's Retry-After: hand the task back to its
queue, invisible until the wait is over, instead of holding a worker — or spending the host's few
retries in seconds on a throttle that lasts minutes.

The copy is durable before the message being processed completes, so the work cannot be lost in
between; a crash between the two leaves a duplicate every step absorbs (claim checks written once,
pages deduplicated, items imported once)."""

from __future__ import annotations

from typing import Any, Protocol, Self

from shared.domain.errors import TransientError
from shared.ports import WorkQueue

# A throttle that outlasts this many hand-backs is no longer a throttle: let the host's retry and
# poison path take over, so the work ends somewhere a human looks.
MAX_DEFERRALS = 50
MAX_DEFER_SECONDS = 3600


class Deferrable(Protocol):
    deferrals: int

    def deferred(self) -> Self: ...

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


def defer_on_retry_after(error: TransientError, task: Deferrable, queue: WorkQueue | None) -> int | None:
    """The seconds the task was handed back for, or None when the failure is left to the host's
    retries (no Retry-After, no queue to hand back to, or deferred too often already)."""
    if queue is None or error.retry_after is None or task.deferrals >= MAX_DEFERRALS:
        return None
    delay = max(1, min(int(error.retry_after + 0.999), MAX_DEFER_SECONDS))
    queue.send(task.deferred().model_dump(mode="json"), delay_seconds=delay)
    return delay
