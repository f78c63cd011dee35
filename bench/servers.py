"""The local Graph, the local TeleMessage and the local Meta in a process of their own, for the benchmark.

In the soak they run inside the process under test; for measuring throughput, cold start and
memory that would be wrong twice over: their request handling would share the connector's GIL and
CPU time, and their buffers would count in its memory. Here they run in a child process (a fresh
interpreter, neither forked from a parent with threads nor re-importing its ``__main__``) and the
parent drives them through a socket pair:

    with ServerProcess(graph={"users": {...}, "latency_seconds": 0.05}, telemessage=feed) as servers:
        servers.graph_url, servers.telemessage_url
        servers.graph("budget_usage", "alice@contoso.example")   # any LocalGraph method
        servers.telemessage("add_records", records)               # any LocalTeleMessage method
        servers.media(spec)                                       # more attachment bytes to serve

    ServerProcess(graph=..., meta=MetaFeed(token, spec, seed))   # Meta's media endpoints: servers.meta_url

Attachment bytes are made on demand from a spec ``{attachmentId: (size, contentType, captured)}``
and a seed, exactly as shared/local/traffic/ makes them, so a 100 MB attachment costs nothing
until it is downloaded and nothing crosses the pipe but the spec.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

MediaSpec = dict[str, tuple[int, str, bool]]
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class TeleMessageFeed:
    """What the local TeleMessage serves: records, the attachment bytes behind their ids, a login."""

    records: list[dict[str, Any]]
    media: MediaSpec
    seed: int
    username: str
    password: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetaFeed:
    """What the local Meta serves (shared/local/meta_server.py): media by id, made from the spec and
    the seed as the TeleMessage feed's attachments are, behind the system user's token."""

    token: str
    media: MediaSpec
    seed: int


class ServerError(RuntimeError):
    pass


class ServerProcess:
    def __init__(
        self, *, graph: dict[str, Any], telemessage: TeleMessageFeed | None = None, meta: MetaFeed | None = None,
    ) -> None:
        self._graph_options = graph
        self._feed = telemessage
        self._meta = meta
        self._lock = threading.Lock()
        self._conn: Any = None
        self._process: Any = None
        self.graph_url = ""
        self.telemessage_url = ""
        self.meta_url = ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> ServerProcess:
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-c", f"from bench.servers import child_main; child_main({theirs.fileno()})"],
            cwd=REPO_ROOT, pass_fds=(theirs.fileno(),), env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send((self._graph_options, self._feed, self._meta))
        status, payload = self._receive(timeout=60)
        if status != "ok":
            self.stop()
            raise ServerError(f"the local servers did not start: {payload}")
        self.graph_url, self.telemessage_url, self.meta_url = payload
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        try:
            with self._lock:
                self._conn.send(("stop", "", (), {}))
                self._receive(timeout=10)
        except (OSError, EOFError, ServerError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.terminate()
            self._process.wait(timeout=5)
        self._conn.close()
        self._process = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def graph(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._call("graph", method, args, kwargs)

    def telemessage(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._call("telemessage", method, args, kwargs)

    def media(self, spec: MediaSpec) -> None:
        self._call("media", "update", (spec,), {})

    def _call(self, target: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with self._lock:
            self._conn.send((target, method, args, kwargs))
            status, payload = self._receive(timeout=600)
        if status != "ok":
            raise ServerError(f"{target}.{method} failed in the server process:\n{payload}")
        return payload

    def _receive(self, timeout: float) -> tuple[str, Any]:
        if not self._conn.poll(timeout):
            raise ServerError("the server process did not answer")
        return self._conn.recv()


class _Media:
    """Attachment bytes by id, made on demand (the last one is kept: downloads resume)."""

    def __init__(self, spec: MediaSpec, seed: int) -> None:
        self.spec = dict(spec)
        self.seed = seed
        self._last: tuple[str, bytes] | None = None
        self._lock = threading.Lock()

    def update(self, spec: MediaSpec) -> None:
        self.spec.update(spec)

    def __call__(self, attachment_id: str) -> bytes | None:
        from shared.local.traffic.media import media_bytes as _media_bytes

        entry = self.spec.get(attachment_id)
        if entry is None or not entry[2]:
            return None
        with self._lock:
            if self._last is not None and self._last[0] == attachment_id:
                return self._last[1]
        data = _media_bytes(self.seed, attachment_id, entry[0], entry[1])
        with self._lock:
            self._last = (attachment_id, data)
        return data


def child_main(fd: int) -> None:
    """The child's side: serve until told to stop or the parent goes away."""
    from shared.local.graph_stand_in.server import LocalGraph
    from shared.local.telemessage_server import LocalTeleMessage

    conn = Connection(fd)
    graph = telemessage = meta = None
    try:
        graph_options, feed, meta_feed = conn.recv()
        options = dict(graph_options)
        users = options.pop("users")
        graph = LocalGraph(users, **options).start()
        # A client hanging up between requests is routine here; keep stderr for real trouble.
        graph._server.handle_error = lambda request, client_address: None
        media = _Media(feed.media if feed else {}, feed.seed if feed else 0)
        if feed is not None:
            telemessage = LocalTeleMessage(
                feed.records, username=feed.username, password=feed.password, attachments=media, **feed.options,
            ).start()
        if meta_feed is not None:
            meta = _local_meta(meta_feed)
        conn.send(("ok", (graph.base_url, telemessage.base_url if telemessage else "",
                          meta.base_url if meta else "")))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    targets = {"graph": graph, "telemessage": telemessage, "media": media}
    try:
        while True:
            try:
                target, method, args, kwargs = conn.recv()
            except EOFError:
                return
            if target == "stop":
                conn.send(("ok", None))
                return
            try:
                value = getattr(targets[target], method)
                result = value(*args, **kwargs) if callable(value) else value  # an attribute: its value
            except BaseException:
                conn.send(("error", traceback.format_exc()))
            else:
                conn.send(("ok", result))
    finally:
        if meta is not None:
            meta.__exit__(None, None, None)
        if telemessage is not None:
            telemessage.stop()
        graph.stop()


def _local_meta(feed: MetaFeed) -> Any:
    from shared.local.meta_server import LocalMeta

    meta = LocalMeta(feed.token).__enter__()
    meta._httpd.handle_error = lambda request, client_address: None  # a hang-up is routine here
    made = _Media(feed.media, feed.seed)
    for media_id, (_, content_type, _) in feed.media.items():
        meta.add(media_id, made(media_id), content_type)
    return meta
