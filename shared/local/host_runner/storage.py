"""The storage queues the runner reads and writes, as the host's QueueServiceClientProvider gives them:
raw-text clients per (connection, queue), queues created on first use, and poison-queue names."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import LinearRetry, QueueClient, QueueServiceClient

from shared.local.host_runner.errors import HostRunnerError
from shared.local.host_runner.functions import QUEUE_NAME, QueueRef

POISON_SUFFIX = "-poison"


class _SteadyRetry(LinearRetry):
    """LinearRetry without jitter, waiting ``seconds`` between tries (LinearRetry types its interval
    in whole seconds)."""

    def __init__(self, seconds: float, retry_total: int) -> None:
        super().__init__(retry_total=retry_total, random_jitter_range=0)
        self._seconds = seconds

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        return self._seconds


class QueueStorage:
    """Queue clients by (connection setting name, queue), made from ``connection_settings``."""

    def __init__(self, connection_settings: Mapping[str, str], client_kwargs: Mapping[str, Any]) -> None:
        self._connection_settings = dict(connection_settings)
        self.client_kwargs = dict(client_kwargs)
        # Storage's default back-off (15 s and up) would stall a local run across an Azurite restart.
        self.client_kwargs.setdefault("retry_policy", _SteadyRetry(0.5, retry_total=5))
        self._services: dict[str, QueueServiceClient] = {}
        self._clients: dict[QueueRef, QueueClient] = {}
        self._created: set[QueueRef] = set()
        self._lock = threading.Lock()
        self._create_lock = threading.Lock()

    def connection_string(self, connection: str) -> str:
        conn = self._connection_settings.get(connection)
        if conn is None:
            raise HostRunnerError(f"connection {connection!r} is not in connection_settings")
        return conn

    def client(self, ref: QueueRef) -> QueueClient:
        with self._lock:
            client = self._clients.get(ref)
            if client is None:
                conn = self.connection_string(ref.connection)
                service = self._services.get(conn)
                if service is None:
                    service = QueueServiceClient.from_connection_string(conn, **self.client_kwargs)
                    self._services[conn] = service
                # No message policies: the runner sees and writes the raw text, and decodes it itself.
                client = self._clients[ref] = service.get_queue_client(ref.queue)
            return client

    def ensure_queue(self, ref: QueueRef) -> None:
        if ref in self._created:
            return
        # HTTP functions are called from many threads at once (shared/local/http_front.py): without
        # the lock each of them would create the same queue again on its first output.
        with self._create_lock:
            if ref in self._created:
                return
            try:
                self.client(ref).create_queue()
            except ResourceExistsError:
                pass
            self._created.add(ref)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        for service in self._services.values():
            service.close()
        self._clients.clear()
        self._services.clear()


def poison_name(queue: str) -> str | None:
    # As QueueListenerFactory.CreatePoisonQueueReference: none for poison queues or over-long names.
    if queue.endswith(POISON_SUFFIX) or not QUEUE_NAME.match(queue + POISON_SUFFIX):
        return None
    return queue + POISON_SUFFIX
