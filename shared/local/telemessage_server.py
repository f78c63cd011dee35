"""A local stand-in for TeleMessage's archive API, for the demo and the tests.

It speaks the contract in ``telemessage-api.md`` (token login with expiry, the listing selected
on ``archivedTime`` in ``[from, to)`` and ordered by ``archivedTime`` then ``messageId``, opaque
page tokens, attachment download with ``Range``) and lets a test break it on purpose: fail the
next requests with a status, drop a connection half-way through a body, expire every token.

Run it by hand with ``python -m shared.local.telemessage_server --port 8081``: it serves a
generated day of traffic ending now.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import dataclasses
import hmac
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from shared.local.traffic.day import TrafficDay, generate_day
from shared.local.traffic.roster import SOURCE_TYPES

logger = logging.getLogger(__name__)

TOKEN_PATH = "/api/v1/auth/token"
ITEMS_PATH = "/api/v1/archive/items"
ATTACHMENTS_PREFIX = "/api/v1/archive/attachments/"
MAX_WINDOW = timedelta(days=31)
PAGE_TOKEN_LIFETIME = 24 * 3600.0
_CHUNK = 64 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

AttachmentSource = Callable[[str], bytes | None] | Mapping[str, bytes]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    range: str | None
    status: int | None  # None: the server hung up before answering (drop_connection_next(after_bytes=None))


@dataclass
class _Fault:
    prefix: str
    remaining: int
    status: int | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop_after: int | None = None  # bytes of the real response body to send before hanging up
    drop: bool = False
    delay: float = 0.0


class Faults:
    """Scripted misbehaviour, consumed first-in first-out by requests whose path matches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []

    def fail_next(
        self,
        path_prefix: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        body: bytes | dict[str, Any] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (and ``Retry-After``)."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        payload = body if body is not None else {"error": _error_name(status)}
        self.respond_next(path_prefix, status, payload, times=times, headers=headers)

    def respond_next(
        self,
        path_prefix: str,
        status: int,
        body: bytes | dict[str, Any] | list[Any],
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next matching requests with exactly this status and body (e.g. a malformed page)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._add(_Fault(path_prefix, times, status=status, body=raw, headers=dict(headers or {})))

    def drop_connection_next(self, path_prefix: str, *, after_bytes: int | None = 0, times: int = 1) -> None:
        """Hang up on the next matching requests.

        With ``after_bytes`` an int the real status line, headers (including the full
        Content-Length) and that many body bytes go out first; with None the connection closes
        before any response.
        """
        self._add(_Fault(path_prefix, times, drop=True, drop_after=after_bytes))

    def delay_next(self, path_prefix: str, seconds: float, *, times: int = 1) -> None:
        """Stall the next matching requests before answering them normally (to provoke timeouts)."""
        self._add(_Fault(path_prefix, times, delay=seconds))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def _take(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.prefix):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None


@dataclass
class _PageCursor:
    query: tuple[str, str, str]  # from, to, sourceTypes as first asked: a token serves only that listing
    after: tuple[int, str]
    issued: float


class _Dropped(Exception):
    """The handler hung up on purpose."""


class LocalTeleMessage:
    """A threaded HTTP server holding archive records; a context manager that starts and stops it."""

    def __init__(
        self,
        source: TrafficDay | Iterable[Mapping[str, Any]] = (),
        *,
        username: str = "demo",
        password: str,
        host: str = "127.0.0.1",
        port: int = 0,
        token_lifetime: int = 3600,
        attachments: AttachmentSource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.username = username
        self._password = password
        self._host = host
        self._port = port
        self.token_lifetime = token_lifetime
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[tuple[int, str]] = []  # sorted (archivedTime, messageId)
        self._entries: dict[tuple[int, str], tuple[str, str]] = {}  # key -> (sourceType, item JSON)
        self._message_ids: set[str] = set()
        self._attachment_types: dict[str, str | None] = {}
        self._inline: dict[str, str] = {}
        self._attachment_sources: list[AttachmentSource] = []
        self._tokens: dict[str, float] = {}
        self._cursors: dict[str, _PageCursor] = {}
        self.faults = Faults()
        self.requests: list[RecordedRequest] = []
        self.issued_tokens: list[str] = []  # so tests can prove no token ever leaks into logs
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if isinstance(source, TrafficDay):
            self.add_records(source.records, attachments=source.attachment_bytes)
        else:
            self.add_records(source)
        if attachments is not None:
            self._attachment_sources.append(attachments)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalTeleMessage:
        if self._httpd is not None:
            return self
        httpd = _Server((self._host, self._port), _Handler)
        httpd.app = self
        self._httpd = httpd
        # A short poll interval keeps stop() (and so every test teardown) quick.
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="local-telemessage", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalTeleMessage:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- test controls -----------------------------------------------------------------------
    def add_records(
        self, records: Iterable[Mapping[str, Any]], *, attachments: AttachmentSource | None = None
    ) -> None:
        """Capture more records (also while running). ``attachments`` supplies bytes by attachmentId."""
        prepared = []
        for record in records:
            archived, message_id = record.get("archivedTime"), record.get("messageId")
            if not isinstance(archived, int) or isinstance(archived, bool) or not isinstance(message_id, str):
                raise ValueError("a record needs an integer archivedTime and a string messageId to be listed")
            prepared.append(((archived, message_id), str(record.get("sourceType")), record))
        with self._lock:
            for key, source_type, record in prepared:
                if key[1] in self._message_ids:
                    raise ValueError(f"duplicate messageId {key[1]!r}")
                self._message_ids.add(key[1])
                self._entries[key] = (source_type, json.dumps(record, ensure_ascii=False))
                bisect.insort(self._keys, key)
                for attachment in record.get("attachments") or ():
                    if not isinstance(attachment, Mapping):
                        continue
                    attachment_id = attachment.get("attachmentId")
                    if not isinstance(attachment_id, str):
                        continue
                    self._attachment_types[attachment_id] = attachment.get("contentType")
                    if isinstance(attachment.get("content"), str):
                        self._inline[attachment_id] = attachment["content"]
            if attachments is not None:
                self._attachment_sources.append(attachments)

    def expire_all_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def count(self, path_prefix: str = "", *, method: str | None = None) -> int:
        """How many requests reached a path starting with ``path_prefix``."""
        with self._lock:
            return sum(1 for r in self.requests
                       if r.path.startswith(path_prefix) and (method is None or r.method == method))

    def records(self) -> list[dict[str, Any]]:
        """Every stored record in listing order."""
        with self._lock:
            return [json.loads(self._entries[key][1]) for key in self._keys]

    # -- request handling (called from handler threads) --------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = self._clock() + self.token_lifetime
            self.issued_tokens.append(token)
        return token

    def _token_valid(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        with self._lock:
            expires = self._tokens.get(authorization[len("Bearer "):])
        return expires is not None and self._clock() < expires

    def _check_credentials(self, username: Any, password: Any) -> bool:
        if not isinstance(username, str) or not isinstance(password, str):
            return False
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        password_ok = hmac.compare_digest(password.encode(), self._password.encode())
        return user_ok and password_ok

    def _list(self, query: dict[str, str]) -> tuple[int, dict[str, Any] | bytes]:
        try:
            start = _parse_instant(query["from"])
            end = _parse_instant(query["to"])
        except (KeyError, ValueError):
            return 400, {"error": "invalid_request"}
        if end <= start or end - start > MAX_WINDOW:
            return 400, {"error": "invalid_window"}
        raw_types = query.get("sourceTypes", ",".join(SOURCE_TYPES))
        source_types = set(raw_types.split(","))
        if not source_types <= set(SOURCE_TYPES):
            return 400, {"error": "invalid_source_type"}
        try:
            page_size = int(query.get("pageSize", "100"))
        except ValueError:
            return 400, {"error": "invalid_page_size"}
        if not 1 <= page_size <= 1000:
            return 400, {"error": "invalid_page_size"}
        signature = (query["from"], query["to"], raw_types)
        # archivedTime is in whole milliseconds: the first and last selected millisecond.
        low = _ceil_ms(start)
        high = _ceil_ms(end)
        after: tuple[int, str] | None = None
        with self._lock:
            token = query.get("pageToken")
            if token is not None:
                cursor = self._cursors.get(token)
                if (cursor is None or cursor.query != signature
                        or self._clock() - cursor.issued > PAGE_TOKEN_LIFETIME):
                    return 400, {"error": "invalid_page_token"}
                after = cursor.after
            if after is not None:
                index = bisect.bisect_right(self._keys, after)
            else:
                index = bisect.bisect_left(self._keys, (low, ""))
            items: list[str] = []
            last: tuple[int, str] | None = None
            more = False
            while index < len(self._keys) and self._keys[index][0] < high:
                key = self._keys[index]
                index += 1
                source_type, item = self._entries[key]
                if source_type not in source_types:
                    continue
                if len(items) == page_size:
                    more = True
                    break
                items.append(item)
                last = key
            next_token = None
            if more and last is not None:
                next_token = secrets.token_urlsafe(18)
                self._cursors[next_token] = _PageCursor(signature, last, self._clock())
        body = '{"items":[' + ",".join(items) + '],"nextPageToken":' + json.dumps(next_token) + "}"
        return 200, body.encode("utf-8")

    def _attachment(self, attachment_id: str) -> tuple[bytes | None, str]:
        with self._lock:
            content_type = self._attachment_types.get(attachment_id) or "application/octet-stream"
            sources = list(self._attachment_sources)
            inline = self._inline.get(attachment_id)
        for source in sources:
            data = source.get(attachment_id) if isinstance(source, Mapping) else source(attachment_id)
            if data is not None:
                return data, content_type
        if inline is not None:
            try:
                return base64.b64decode(inline, validate=True), content_type
            except binascii.Error:
                pass
        return None, content_type


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    app: LocalTeleMessage

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or hang up mid-response are part of the tests, not server bugs.
        logger.debug("local TeleMessage: connection from %s ended with an error", client_address,
                     exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real thing behind a load balancer
    _recorded: RecordedRequest
    timeout = 10  # idle keep-alive connections must not outlive a test run for long
    # Headers and body go out in separate writes; with Nagle on, each small response waits ~40 ms
    # for a delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("local TeleMessage: " + format, *args)

    def _app(self) -> LocalTeleMessage:
        server = self.server
        assert isinstance(server, _Server)
        return server.app

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        app = self._app()
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        # Recorded just before the status line goes out (see _send): a client that has its answer
        # must find its request already counted.
        self._recorded = RecordedRequest(method, path, query, self.headers.get("Range"), None)
        try:
            fault = app.faults._take(path)
            if fault is not None and fault.delay:
                time.sleep(fault.delay)
            if fault is not None and fault.drop and fault.drop_after is None:
                app._record(self._recorded)
                raise _Dropped
            if fault is not None and fault.status is not None:
                self._send(fault.status, fault.body, "application/json", fault.headers)
                return
            drop_after = fault.drop_after if fault is not None and fault.drop else None
            self._route(app, method, path, query, body, drop_after)
        except _Dropped:
            self.close_connection = True
            # A FIN after a partial body: to the client this looks like a connection lost mid-read.
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _route(
        self, app: LocalTeleMessage, method: str, path: str, query: dict[str, str], body: bytes,
        drop_after: int | None,
    ) -> int:
        if path == TOKEN_PATH and method == "POST":
            try:
                credentials = json.loads(body)
            except ValueError:
                return self._json(400, {"error": "invalid_request"})
            if not isinstance(credentials, dict) or not app._check_credentials(
                credentials.get("username"), credentials.get("password")
            ):
                return self._json(401, {"error": "invalid_credentials"})
            token = app._issue_token()
            return self._json(200, {"accessToken": token, "tokenType": "Bearer",
                                    "expiresIn": app.token_lifetime}, drop_after)
        if method != "GET" or not (path == ITEMS_PATH or path.startswith(ATTACHMENTS_PREFIX)):
            return self._json(404, {"error": "not_found"})
        if not app._token_valid(self.headers.get("Authorization")):
            return self._json(401, {"error": "invalid_token"})
        if path == ITEMS_PATH:
            status, payload = app._list(query)
            return self._json(status, payload, drop_after)
        attachment_id = unquote(path[len(ATTACHMENTS_PREFIX):])
        data, content_type = app._attachment(attachment_id)
        if data is None:
            return self._json(404, {"error": "media_not_captured"})
        return self._bytes(data, content_type, drop_after)

    def _bytes(self, data: bytes, content_type: str, drop_after: int | None) -> int:
        size = len(data)
        requested = _parse_range(self.headers.get("Range"), size)
        if requested == "unsatisfiable":
            self._send(416, b"", "application/octet-stream", {"Content-Range": f"bytes */{size}"})
            return 416
        if requested is None:
            self._send(200, data, content_type, {"Accept-Ranges": "bytes"}, drop_after)
            return 200
        first, last = requested
        self._send(206, data[first:last + 1], content_type,
                   {"Accept-Ranges": "bytes", "Content-Range": f"bytes {first}-{last}/{size}"}, drop_after)
        return 206

    def _json(self, status: int, payload: dict[str, Any] | bytes, drop_after: int | None = None) -> int:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
        self._send(status, raw, "application/json; charset=utf-8", {}, drop_after)
        return status

    def _send(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str],
              drop_after: int | None = None) -> None:
        self._app()._record(dataclasses.replace(self._recorded, status=status))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        limit = len(body) if drop_after is None else min(drop_after, len(body))
        view = memoryview(body)
        for offset in range(0, limit, _CHUNK):
            self.wfile.write(view[offset:min(offset + _CHUNK, limit)])
        if drop_after is not None:
            raise _Dropped


def _error_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_")
    except ValueError:
        return "injected_fault"


def _parse_instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("instants must carry a zone")
    return moment.astimezone(UTC)


def _ceil_ms(moment: datetime) -> int:
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    return -(-micros // 1000)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """(first, last) for a single satisfiable byte range, "unsatisfiable", or None to send it all."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first_text, _, last_text = header[len("bytes="):].strip().partition("-")
    try:
        if first_text == "":
            suffix = int(last_text)
            if suffix <= 0:
                return "unsatisfiable"
            return max(0, size - suffix), size - 1
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first >= size or last < first:
        return "unsatisfiable"
    return first, min(last, size - 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a generated day of WhatsApp traffic as TeleMessage.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--username", default="demo")
    parser.add_argument("--password", help="default: a random one, printed at start")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=int, default=1)
    args = parser.parse_args(argv)
    password = args.password or secrets.token_urlsafe(12)
    anchor = datetime.now(UTC).replace(second=0, microsecond=0)
    day = generate_day(anchor, seed=args.seed, scale=args.scale)
    with LocalTeleMessage(day, username=args.username, password=password, host=args.host,
                          port=args.port) as server:
        print(f"local TeleMessage at {server.base_url} with {len(day.records)} records "
              f"captured {day.window.start:%Y-%m-%d %H:%M} to {day.window.end:%Y-%m-%d %H:%M} UTC")
        print(f"username {args.username!r}, password {password!r}; Ctrl+C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
