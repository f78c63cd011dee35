"""The app's HTTP-triggered functions over real HTTP on loopback, through a HostRunner.

The Functions host cannot run on these machines; the local Meta stand-in, the demo and the bench
need to reach ``POST /api/whatsapp/webhook`` as Meta does: over a socket, many deliveries at once.

    with HttpFront(runner) as front:
        urllib.request.urlopen(f"{front.url}/api/whatsapp/webhook?hub.mode=subscribe&...")

Routes are the functions' routes under host.json's route prefix. The method, headers, query and
the raw body go to ``HostRunner.call_http``; its status, headers, content type and body come back.
As the host does: no route → 404; a method the function does not take → 405 with ``Allow``; a
body over ``max_body_bytes`` → 413 before it is read (the Functions host's own limit is far larger;
this one keeps a client from making the process buffer without bound); a POST, PUT or PATCH without
Content-Length (chunked included) → 411. Auth levels are not enforced (the runner does not emulate
them): bind it to loopback only.

Logs carry the method, the route's path, the status and the body's size, never the query (the
handshake's verify token travels there) nor the body.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

import azure.functions as func

from shared.local.host_runner.runner import HostRunner

__all__ = ["DEFAULT_MAX_BODY_BYTES", "HttpFront"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# socketserver's default backlog is 5: a burst of 100 connections would see SYNs dropped and
# retransmitted a second later, which is what a latency figure would then measure.
_BACKLOG = 1024


class _Server(ThreadingHTTPServer):
    request_queue_size = _BACKLOG
    daemon_threads = True

    def __init__(self, front: HttpFront, handler: type[BaseHTTPRequestHandler]) -> None:
        self.front = front
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__((front.host, 0), handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        # Idle keep-alive connections would otherwise keep their threads waiting on a runner that
        # is about to be closed.
        with self.connections_lock:
            open_now = list(self.connections)
        for connection in open_now:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Meta's client and the bench's use it
    timeout = 30  # a client that stops sending mid-request does not hold its thread for ever

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        front = server.front
        method = self.command.upper()
        split = urllib.parse.urlsplit(self.path)
        found = front.runner.http_function_at(split.path)
        if found is None:
            self._refuse(404)
            return
        name, methods = found
        if methods is not None and method not in methods:
            self._refuse(405, {"Allow": ", ".join(methods)})
            return
        body = self._read_body(method, front.max_body_bytes)
        if body is None:
            return
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            # Repeated headers arrive joined, as ASP.NET hands them to the worker.
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        url = urllib.parse.urlunsplit(("http", f"{front.host}:{front.port}", split.path, split.query, ""))
        try:
            response = front.runner.call_http(name, method, url, headers=headers, body=body)
        except Exception:
            logger.exception("HTTP front: %s %s could not be handed to %s", method, split.path, name)
            response = func.HttpResponse(status_code=500)
        self._write(response, method)
        logger.debug("HTTP front: %s %s -> %d (%d bytes in)", method, split.path, response.status_code, len(body))

    def _read_body(self, method: str, limit: int) -> bytes | None:
        """The request body, or None once a refusal was sent."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse(411, close=True)
            return None
        declared = self.headers.get("Content-Length")
        if declared is None:
            if method in _BODY_METHODS:
                self._refuse(411, close=True)
                return None
            return b""
        if not declared.strip().isdigit():
            self._refuse(400, close=True)
            return None
        length = int(declared)
        if length > limit:
            logger.warning("HTTP front: body of %d bytes refused (over %d)", length, limit)
            self._refuse(413, close=True)  # unread bytes remain: the connection cannot be reused
            return None
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True  # the client went away mid-body: nothing to answer
            return None
        return body

    def _refuse(self, status: int, headers: dict[str, str] | None = None, *, close: bool = False) -> None:
        if close:
            self.close_connection = True
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        if close:
            self.send_header("Connection", "close")
        self.end_headers()

    def _write(self, response: func.HttpResponse, method: str) -> None:
        body = response.get_body() or b""
        headers = response.headers
        self.send_response(response.status_code)
        if "content-type" not in headers:
            # What the Python worker adds (azure.functions.http.HttpResponseConverter).
            mimetype = response.mimetype
            content_type = f"{mimetype}; charset={response.charset}" if mimetype.startswith("text/") else mimetype
            self.send_header("Content-Type", content_type)
        for key, value in headers.items():
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # The base class writes every request line, query included, to stderr.
        pass


class HttpFront:
    """A ThreadingHTTPServer on ``host`` (loopback) and a free port, serving ``runner``'s HTTP
    functions; a context manager. ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, runner: HostRunner, *, host: str = "127.0.0.1",
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        # It checks no function key and no auth level: a stand-in for the host on this machine only.
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("HttpFront serves loopback only (127.0.0.1 or ::1)")
        self.runner = runner
        self.host = host
        self.max_body_bytes = max_body_bytes
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the HTTP front is already running")
        self._server = _Server(self, _Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="http-front", daemon=True)
        self._thread.start()
        logger.info("HTTP front serving %s on %s", ", ".join(self.runner.function_names), self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the HTTP front is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
