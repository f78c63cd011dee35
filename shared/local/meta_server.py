"""A local stand-in for Meta's media endpoints, for the demo and the tests (loopback only).

As the reference describes them: ``GET /{version}/{media id}`` with the system user's bearer
token answers ``{messaging_product, url, mime_type, sha256, file_size, id}``; the ``url`` is a
download link that needs the same bearer token and expires after a few minutes (here: a setting,
so a test can let it lapse); an unknown or expired media id is a Graph error (400, code 100).
Requests are recorded, so a test can see which token went where.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit


@dataclass(frozen=True)
class MetaRequest:
    method: str
    path: str
    authorization: str | None
    status: int


@dataclass(frozen=True)
class StoredMedia:
    data: bytes
    mime_type: str
    sha256_base64: bool = False  # Meta's samples show the digest in base64 in some places
    expired: bool = False  # Meta's webhook media ids lapse after 7 days: then it answers as for an unknown id


class LocalMeta:
    """Serves media by id on 127.0.0.1 (a free port); ``media[id] = StoredMedia(...)``."""

    def __init__(self, token: str, *, version: str = "v26.0", url_lifetime: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.token = token
        self.version = version
        self.url_lifetime = url_lifetime
        self.media: dict[str, StoredMedia] = {}
        self.requests: list[MetaRequest] = []
        self._clock = clock
        self._links: dict[str, tuple[str, float]] = {}  # link key -> (media id, expires at)
        self._lock = threading.Lock()
        self._fail: list[int] = []  # statuses for the next media lookups
        self._httpd: ThreadingHTTPServer | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> LocalMeta:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self._httpd.serve_forever, daemon=True, name="local-meta").start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- test controls ----------------------------------------------------------------------------
    def add(self, media_id: str, data: bytes, mime_type: str, *, sha256_base64: bool = False,
            expired: bool = False) -> None:
        self.media[media_id] = StoredMedia(data, mime_type, sha256_base64, expired)

    def fail_next_lookups(self, *statuses: int) -> None:
        with self._lock:
            self._fail.extend(statuses)

    def expire_links(self) -> None:
        """Every download link handed out so far lapses, as Meta's do after about 5 minutes."""
        with self._lock:
            self._links = {key: (media_id, 0.0) for key, (media_id, _) in self._links.items()}

    def downloads(self) -> list[MetaRequest]:
        return [r for r in self.requests if r.path.startswith("/download/")]

    # -- behaviour ----------------------------------------------------------------------------
    def answer(self, method: str, path: str, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = self._answer(method, path, authorization)
        with self._lock:
            self.requests.append(MetaRequest(method, path, authorization, status))
        return status, headers, body

    def _answer(self, method: str, path: str, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        if method != "GET":
            return _error(405, "method not allowed", 100)
        if not hmac.compare_digest((authorization or "").encode(), f"Bearer {self.token}".encode()):
            return _error(401, "Error validating access token", 190)
        parts = urlsplit(path)
        if parts.path.startswith("/download/"):
            return self._download(parts.path.removeprefix("/download/"))
        prefix = f"/{self.version}/"
        if not parts.path.startswith(prefix):
            return _error(404, "unknown path", 100)
        with self._lock:
            failure = self._fail.pop(0) if self._fail else None
        if failure is not None:
            return _error(failure, "injected failure", 4 if failure == 429 else 2)
        media_id = parts.path.removeprefix(prefix)
        stored = self.media.get(media_id)
        if stored is None or stored.expired:
            return _error(400, "Unsupported get request. Object does not exist", 100)
        key = secrets.token_urlsafe(16)
        with self._lock:
            self._links[key] = (media_id, self._clock() + self.url_lifetime)
        digest = hashlib.sha256(stored.data).digest()
        answer = {
            "messaging_product": "whatsapp", "url": f"{self.base_url}/download/{key}?mid={media_id}",
            "mime_type": stored.mime_type, "file_size": str(len(stored.data)), "id": media_id,
            "sha256": base64.b64encode(digest).decode() if stored.sha256_base64 else digest.hex(),
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()

    def _download(self, key: str) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            link = self._links.get(key)
        if link is None or link[1] <= self._clock() or link[0] not in self.media:
            return 404, {"Content-Type": "text/plain"}, b"Not Found"
        stored = self.media[link[0]]
        return 200, {"Content-Type": stored.mime_type}, stored.data


def _error(status: int, message: str, code: int) -> tuple[int, dict[str, str], bytes]:
    body = {"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "local"}}
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _handler(meta: LocalMeta) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            status, headers, body = meta.answer(method, self.path, self.headers.get("Authorization"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler

