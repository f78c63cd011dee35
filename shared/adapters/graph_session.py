"""Calling Graph for one client: every request of the writer, its folder chain and attachments, and
the item reader goes through a ``GraphSession``, which takes the mailbox's gate slot
(graph_gate.py), then its pacing turn (graph_pacer.py), and classifies failures (graph_errors.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from shared.adapters.graph_client import graph_client_info
from shared.adapters.graph_errors import Target, graph_error, graph_failure
from shared.adapters.graph_gate import MailboxGate
from shared.adapters.graph_json import send_json
from shared.adapters.graph_pacer import MailboxPacer, PacingDeferred, process_mailbox_pacer
from shared.domain.errors import ArchiveError, TransientError


class GraphSession:
    """One client, the per-mailbox gate and the per-mailbox pacer: every request goes through
    ``send`` or ``call`` (upload PUTs through ``gate`` and ``pace`` themselves).

    A request takes its gate slot first and its pacing turn second, so it goes out at the moment
    the pacer booked for it: were the order reversed, requests admitted on time could pile up
    behind a busy gate and leave together, over the rate. While the pacer holds a slot, the
    mailbox is rate-bound anyway, so the slot would not have been used sooner.

    The pacer's budgets are per Graph host and mailbox (Exchange's are per app and mailbox): two
    clients of one process on the same host share them, a test server on another port has its own.
    """

    def __init__(self, client: Any, gate: MailboxGate, pacer: MailboxPacer | None = None) -> None:
        self.client = client
        self.gate = gate
        self.pacer = pacer or process_mailbox_pacer()
        try:
            info = graph_client_info(client)
            self.base_url, self.cloud = info.base_url, info.cloud
        except (KeyError, TypeError):
            # A client built elsewhere (tests): one budget per mailbox; no page link is followed.
            self.base_url, self.cloud = "", "global"

    def budget_key(self, mailbox: str) -> str:
        return f"{self.base_url} {mailbox}" if self.base_url else mailbox

    async def pace(self, mailbox: str, *, upload_bytes: int = 0, may_defer: bool = True) -> None:
        """Waits for ``mailbox``'s next turn (hold a gate slot); a turn too far away is a
        TransientError carrying the wait, raised before anything is sent."""
        try:
            await self.pacer.admit(self.budget_key(mailbox), upload_bytes=upload_bytes, may_defer=may_defer)
        except PacingDeferred as deferred:
            raise TransientError(
                f"graph {deferred.what} budget of the mailbox used up for now", retry_after=deferred.wait,
            ) from None

    def upload_wait(self, mailbox: str, upload_bytes: int) -> float:
        """Seconds until ``upload_bytes`` could all be uploaded into ``mailbox`` (nothing booked)."""
        return self.pacer.upload_wait(self.budget_key(mailbox), upload_bytes)

    def throttled(self, mailbox: str, retry_after: float | None) -> None:
        """A 429 reached the writer: the rest of this process holds off that mailbox as long."""
        self.pacer.penalize(self.budget_key(mailbox), retry_after)

    async def raw(self, request: Any) -> Any:
        """Sends a kiota ``RequestInformation``; Graph's answer as plain JSON (graph_json.py says
        why every answer the writer reads goes this way, not through the SDK's models)."""
        return await send_json(self.client, request)

    async def send[R](
        self, mailbox: str, request: Callable[[], Awaitable[R]], *, upload_bytes: int = 0
    ) -> R:
        """Runs ``request()`` inside one of ``mailbox``'s slots, in its pacing turn; failures come
        back untranslated. ``upload_bytes``: the size of the request's body (POST), which counts
        against the mailbox's upload budget.

        ``request`` is a factory so that nothing is created (and left un-awaited) while waiting.
        """
        async with self.gate.slot(mailbox):
            await self.pace(mailbox, upload_bytes=upload_bytes)
            try:
                return await request()
            except Exception as exc:
                failure = graph_failure(exc)
                if failure is not None and failure.throttled:
                    self.throttled(mailbox, failure.retry_after)
                raise

    async def call[R](
        self,
        operation: str,
        mailbox: str,
        request: Callable[[], Awaitable[R]],
        *,
        target: Target = Target.MAILBOX,
        upload_bytes: int = 0,
    ) -> R:
        """``send``, with failures classified (graph_errors.py) for a call addressing ``target``."""
        try:
            return await self.send(mailbox, request, upload_bytes=upload_bytes)
        except ArchiveError:
            raise
        except Exception as exc:
            raise graph_error(exc, operation, mailbox, target) from None
