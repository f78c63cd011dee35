"""The event loop the synchronous Graph adapters run the async SDK on: one ``GraphLoop`` (an asyncio
loop on a daemon thread) per client, leased by every adapter using that client; docs/graph.md
("The Graph client") says why one loop per client and not one per adapter."""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")


_HTTP_CLIENTS: weakref.WeakKeyDictionary[Any, httpx.AsyncClient] = weakref.WeakKeyDictionary()


GRAPH_LOOP_THREAD = "graph-loop"


class _QuietGraphTransport(logging.Filter):
    """Drops httpx's per-request INFO lines for calls made on a Graph loop thread.

    Their URLs name the mailbox, carry the record id in the lookup filter, and for upload
    sessions embed the upload URL's own token: none of that may reach the logs in clear.
    Warnings and errors still pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        on_graph_loop = (record.threadName or "").startswith(GRAPH_LOOP_THREAD)
        return record.levelno >= logging.WARNING or not on_graph_loop


_QUIET_FILTER = _QuietGraphTransport()


class GraphLoop:
    """One asyncio event loop on a daemon thread. ``run`` is safe to call from any other thread."""

    def __init__(self, name: str = GRAPH_LOOP_THREAD) -> None:
        for logger_name in ("httpx", "httpcore"):
            target = logging.getLogger(logger_name)
            if _QUIET_FILTER not in target.filters:
                target.addFilter(_QUIET_FILTER)
        self._loop = asyncio.new_event_loop()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    @property
    def closed(self) -> bool:
        return self._closed

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("the Graph event loop is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("GraphLoop.run called from its own loop thread: it would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


@dataclass
class _LoopLease:
    loop: GraphLoop
    users: int


_LEASES: weakref.WeakKeyDictionary[Any, _LoopLease] = weakref.WeakKeyDictionary()
_LEASES_LOCK = threading.Lock()


def acquire_graph_loop(client: Any) -> GraphLoop:
    """The loop of ``client``, started on first use. Pair every call with ``release_graph_loop``."""
    with _LEASES_LOCK:
        lease = _LEASES.get(client)
        if lease is None or lease.loop.closed:
            lease = _LoopLease(GraphLoop(), 0)
            _LEASES[client] = lease
        lease.users += 1
        return lease.loop


def release_graph_loop(client: Any, *cleanups: Coroutine[Any, Any, Any]) -> None:
    """Gives back one lease; the last one closes the client's connections and stops the loop.

    ``cleanups`` run on the loop first, whoever releases (e.g. the caller's own upload client).
    Adapters sharing a client own it together: once the last one is closed the client is spent.
    """
    with _LEASES_LOCK:
        lease = _LEASES.get(client)
        if lease is None:
            for cleanup in cleanups:
                cleanup.close()
            return
        lease.users -= 1
        last = lease.users <= 0
        if last:
            del _LEASES[client]
    for cleanup in cleanups:
        _run_quietly(lease.loop, cleanup)
    if last:
        http_client = _HTTP_CLIENTS.get(client)
        if http_client is not None:
            _run_quietly(lease.loop, http_client.aclose())
        lease.loop.close()


def _run_quietly(loop: GraphLoop, coro: Coroutine[Any, Any, Any]) -> None:
    try:
        loop.run(coro)
    except Exception:
        pass


def own_http_client(client: Any, http_client: httpx.AsyncClient) -> None:
    """Registers ``client``'s httpx client: the last ``release_graph_loop`` closes its connections
    on the loop they belong to."""
    _HTTP_CLIENTS[client] = http_client
