"""``LocalGraph``: the Graph stand-in's HTTP server (threaded, stdlib only, real HTTP on loopback),
its test controls and what it lets tests inspect. What it serves, and how strictly, is in
docs/local-stack.md; each job is in a module of its own, wired here."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from shared.local.graph_stand_in.attachments import KEEP_ATTACHMENT_BYTES, UPLOAD_SESSION_MIN_BYTES, UploadSessions
from shared.local.graph_stand_in.directory import MAX_USER_PAGE, Directory
from shared.local.graph_stand_in.errors import GraphHTTPError, error_response
from shared.local.graph_stand_in.faults import Fault, FaultScript, fault_error
from shared.local.graph_stand_in.mail import FOLDER_ITEM_LIMIT, MailOperations
from shared.local.graph_stand_in.routing import classify
from shared.local.graph_stand_in.store import GraphStore
from shared.local.graph_stand_in.throttling import MAX_CONCURRENT_PER_MAILBOX, MailboxThrottle

MAX_REQUEST_BYTES = 4 * 1024 * 1024


class LocalGraph:
    """The server. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(
        self,
        users: dict[str, bool],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_seconds: float = 0.0,
        token: str | None = None,
        mail_aliases: dict[str, str] | None = None,
        reject_drafts: bool = True,
        access_denied: set[str] | frozenset[str] = frozenset(),
        max_concurrent_per_mailbox: int | None = MAX_CONCURRENT_PER_MAILBOX,
        rate_limit: tuple[int, float] | None = None,
        upload_limit: tuple[int, float] | None = None,
        throttle_retry_after: float | None = None,
        fractional_retry_after: bool = False,
        upload_session_min_bytes: int = UPLOAD_SESSION_MIN_BYTES,
        refuse_upload_sessions_on_non_drafts: bool = False,
        keep_attachment_bytes: int = KEEP_ATTACHMENT_BYTES,
        profiles: dict[str, dict[str, Any]] | None = None,
        user_page_size: int = MAX_USER_PAGE,
        folder_item_limit: int = FOLDER_ITEM_LIMIT,
    ) -> None:
        """``users``: UPN -> has an Exchange Online mailbox. ``token``: the only bearer token
        accepted (any non-empty one when None). ``mail_aliases``: mail address -> UPN, for users
        whose primary SMTP address is not their UPN. ``reject_drafts=False`` stores drafts
        (flagged) instead of refusing them. ``access_denied``: UPNs whose mailbox the app may not
        open (403 ``ErrorAccessDenied`` on mail calls). ``latency_seconds``: added to every request.

        Directory listing (``GET /users``): ``profiles`` gives users of ``users`` their Entra ID
        properties, UPN -> ``{"mobilePhone": str | None, "businessPhones": [str],
        "accountEnabled": bool, "displayName": str}`` (all optional; by default no phones,
        enabled); ``set_profile`` changes them later. ``user_page_size``: the most users one page
        holds whatever ``$top`` asks (Graph's own cap is 999): a small one forces paging.

        ``folder_item_limit``: the most items one folder holds (Exchange's 1,000,000 scaled down, so
        that a test fills a folder with a few items).

        Throttling, per mailbox: ``max_concurrent_per_mailbox`` requests in flight (None: no
        limit), ``rate_limit=(requests, per_seconds)`` in a sliding window (None: no limit),
        ``upload_limit=(bytes, per_seconds)`` of request bodies in a sliding window (None: no
        limit); a throttled request does not count against the rate or upload budget. The
        429's ``Retry-After`` is ``throttle_retry_after`` when given; else the time until the
        window admits a request again (for the concurrency limit: 1 s), in whole seconds as Graph
        sends it (at least 1), or to the millisecond with ``fractional_retry_after`` (fast tests)."""
        self.host = host
        self.latency_seconds = latency_seconds
        self.token = token
        self._lock = threading.RLock()
        self._store = GraphStore(self._lock, users, mail_aliases or {}, access_denied)
        if user_page_size < 1:
            raise ValueError("user_page_size must be at least 1")
        if folder_item_limit < 1:
            raise ValueError("folder_item_limit must be at least 1")
        self._directory = Directory(self._store, user_page_size)
        for upn, profile in (profiles or {}).items():
            self.set_profile(upn, **profile)
        self._throttle = MailboxThrottle(
            self._lock,
            max_concurrent=max_concurrent_per_mailbox,
            rate_limit=rate_limit,
            upload_limit=upload_limit,
            retry_after=throttle_retry_after,
            fractional_retry_after=fractional_retry_after,
        )
        self.request_log: list[dict[str, Any]] = self._throttle.request_log
        self._faults = FaultScript(self._lock)
        self._uploads = UploadSessions(
            self._lock, self._store, lambda: self.root_url,
            min_bytes=upload_session_min_bytes,
            refuse_on_non_drafts=refuse_upload_sessions_on_non_drafts,
            keep_bytes=keep_attachment_bytes,
        )
        self._mail = MailOperations(
            self._store, self._uploads, lambda: self.base_url,
            reject_drafts=reject_drafts,
            folder_item_limit=folder_item_limit,
            keep_attachment_bytes=keep_attachment_bytes,
        )
        self._server = _GraphHTTPServer((host, port), self)
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1.0"

    def start(self) -> LocalGraph:
        if self._thread is None:
            # A short poll keeps stop() quick: tests start and stop a server each.
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="local-graph",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> LocalGraph:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- test controls --------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        path_contains: str | None = None,
        code: str | None = None,
        method: str | None = None,
        after_execution: bool = False,
        skip: int = 0,
        location: str | None = None,
    ) -> None:
        """The next ``times`` matching requests fail with ``status`` (and Graph error ``code``).

        A request matches when its path contains ``path_contains`` and its method is ``method``
        (either left out: any). Upload PUTs match too. ``after_execution``: the request is carried
        out first and only its answer is replaced (a 503/504 after the item was created).
        ``skip``: that many matching requests are served normally first (the second page fails).
        ``location``: sent as the answer's Location header (with a 3xx: a redirect).
        """
        self._faults.add(
            Fault(status, times, retry_after, path_contains, code, method, after_execution, skip, location)
        )

    def amend_next(
        self,
        fields: dict[str, Any],
        *,
        path_contains: str | None = None,
        method: str | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` matching requests (as for ``fail_next``) are served as usual, with
        ``fields`` set in their JSON answer: e.g. an ``@odata.nextLink`` or an ``uploadUrl`` that
        points at another server, as a compromised or misrouted Graph could answer."""
        self._faults.add(Fault(200, times, None, path_contains, None, method, True, amend=dict(fields)))

    def hold_until(self, operation: str, parties: int, timeout: float = 5.0) -> None:
        """The next ``parties`` requests of ``operation`` (e.g. ``item_lookup``) wait for each
        other and are then served together: two workers' lookups both run before either create."""
        self._faults.hold(operation, parties, timeout)

    def simulate_folder_race(self, mailbox: str, display_name: str) -> None:
        """The next childFolders lookup in ``mailbox`` answers "none", and right after it another
        worker creates ``display_name``: the caller's own create then meets ErrorFolderExists."""
        with self._lock:
            self._mail.folder_races[mailbox.lower()] = display_name

    def set_profile(
        self,
        upn: str,
        *,
        mobilePhone: str | None = None,  # Graph's property names, as in ``profiles``
        businessPhones: list[str] | None = None,
        accountEnabled: bool = True,
        displayName: str | None = None,
    ) -> None:
        """Replaces a user's directory properties (phones as free text, as Entra ID stores them)."""
        with self._lock:
            user = self._store.users.get(upn.strip().lower())
            if user is None:
                raise KeyError(f"no user {upn!r}: add it to ``users`` first")
            user.mobile_phone = mobilePhone
            user.business_phones = list(businessPhones or [])
            user.account_enabled = bool(accountEnabled)
            user.display_name = displayName

    def set_body(self, mailbox: str, message_id: str, content: str) -> None:
        """Replaces a stored item's body content (someone with access to the mailbox edited it):
        what its ``$value`` says from then on."""
        self._store.set_body(mailbox, message_id, content)

    def delete_message(self, mailbox: str, message_id: str) -> None:
        """Removes a stored item, as a hard delete in Exchange would (no request counted)."""
        self._store.delete_message(mailbox, message_id)

    # -- inspection -----------------------------------------------------------------------------

    def messages(self, mailbox: str) -> list[dict[str, Any]]:
        """Stored items, oldest first. Attachments carry ``sha256`` and ``size``, and their bytes
        under ``content`` when not larger than ``keep_attachment_bytes`` (else ``content`` is None)."""
        return self._store.messages(mailbox)

    def folders(self, mailbox: str) -> list[dict[str, Any]]:
        """Folders in creation order, each with its ``totalItemCount``."""
        return self._store.folders(mailbox)

    def request_counts(self, mailbox: str) -> dict[str, int]:
        """Requests received per operation (``folder_find``, ``item_create``, ``upload_chunk``...),
        throttled ones included."""
        return self._throttle.request_counts(mailbox)

    def total_requests(self, mailbox: str) -> int:
        return sum(self.request_counts(mailbox).values())

    def pending_faults(self) -> int:
        """Scripted failures (``fail_next``) not served yet."""
        return self._faults.pending()

    def throttled_counts(self, mailbox: str) -> dict[str, int]:
        """429s sent by the throttling rules (not by ``fail_next``), per rule (``concurrency``, ``rate``)."""
        return self._throttle.throttled_counts(mailbox)

    def total_throttled(self) -> int:
        """429s sent by the throttling rules, over every mailbox."""
        return self._throttle.total_throttled()

    def admitted_requests(self, mailbox: str) -> list[tuple[float, int]]:
        """The mail requests let through for ``mailbox`` (throttled ones not included), as
        (``time.monotonic()`` at arrival, request body bytes)."""
        return self._throttle.admitted_requests(mailbox)

    def budget_usage(self, mailbox: str, since: float | None = None) -> dict[str, Any]:
        """What ``mailbox`` used of Exchange's budget (mail requests admitted, their body bytes,
        429s from the throttling rules), from ``since`` (monotonic time) on when given."""
        return self._throttle.budget_usage(mailbox, since)

    def reset_counts(self) -> None:
        self._throttle.reset_counts()

    def max_concurrency(self, mailbox: str) -> int:
        return self._throttle.max_concurrency(mailbox)

    # -- request handling (called by _Handler on server threads) --------------------------------

    def handle(
        self, method: str, raw_path: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        segments = [unquote(s) for s in split.path.split("/") if s]
        upload = len(segments) == 2 and segments[0] == "upload"
        try:
            operation, mailbox = classify(method, segments, query, upload, self._store, self._uploads)
        except GraphHTTPError as exc:
            return error_response(exc)
        try:
            if not upload:
                self._check_auth(headers)
            in_flight = self._throttle.enter(
                mailbox, operation, method, split.path, headers, split.query, len(body), self.latency_seconds
            )
        except GraphHTTPError as exc:
            return error_response(exc)
        try:
            if self.latency_seconds:
                time.sleep(self.latency_seconds)
            self._faults.wait_at_barrier(operation)
            fault = self._take_fault(method, split.path)
            if fault is not None and not fault.after_execution:
                raise fault_error(fault)
            status, payload, extra = self._dispatch(operation, segments, query, headers, body)
            if fault is not None and fault.amend is not None and not isinstance(payload, bytes):
                payload = {**(payload or {}), **fault.amend}
            elif fault is not None and fault.amend is None:
                raise fault_error(fault)
            if isinstance(payload, bytes):  # a media answer: its Content-Type comes in ``extra``
                data, response_headers = payload, {}
            else:
                data = b"" if payload is None else json.dumps(payload).encode("utf-8")
                response_headers = {"Content-Type": "application/json"} if payload is not None else {}
            response_headers.update(extra)
            return status, response_headers, data
        except GraphHTTPError as exc:
            return error_response(exc)
        finally:
            if in_flight:
                self._throttle.leave(mailbox)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        """The scripted fault this request meets, if any (bench/soak.py counts them by overriding this)."""
        return self._faults.take(method, path)

    def _check_auth(self, headers: Any) -> None:
        value = headers.get("Authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphHTTPError(401, "InvalidAuthenticationToken", "Access token is empty.")
        if self.token is not None and token.strip() != self.token:
            raise GraphHTTPError(401, "InvalidAuthenticationToken", "Access token validation failure.")

    def _dispatch(
        self, operation: str, segments: list[str], query: dict[str, str], headers: Any, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if operation == "upload_chunk":
            return self._uploads.chunk(segments[1], headers, body)
        if len(body) > MAX_REQUEST_BYTES:
            raise GraphHTTPError(
                413, "ErrorRequestEntityTooLarge", "The maximum request length supported is 4MB."
            )
        with self._lock:
            if operation == "user_find":
                return 200, self._directory.find(query), {}
            if operation == "user_list":
                return 200, self._directory.list(query, self.base_url), {}
            if operation == "user_get":
                return 200, self._directory.get(segments[2]), {}
            user = self._store.mail_user(segments[2])
            box = self._store.mailbox(user)
            return self._mail.serve(operation, user, box, segments[4:], query, headers, body)


class _GraphHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], graph: LocalGraph) -> None:
        super().__init__(address, _Handler)
        self.graph = graph


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalGraph/1.0"

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; with Nagle and delayed ACKs each keep-alive
        # response would wait ~40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server = self.server
        assert isinstance(server, _GraphHTTPServer)
        status, headers, data = server.graph.handle(self.command, self.path, self.headers, body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("request-id", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        return  # tests read request_counts, not stderr
