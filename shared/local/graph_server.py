"""A local, Graph-compatible server for exactly the calls the Graph adapters make.

It stands in for Exchange Online in tests: threaded, stdlib only, real HTTP on loopback. Where real
Graph is strict in a way that matters to an archive, it is as strict:

- a message without ``Integer 0x0E07`` would be a draft and is refused; ``sentDateTime`` /
  ``receivedDateTime`` on create are refused; custom headers must be x-/X- and at most 5;
- extended property values must be well formed for their type (Binary base64, Boolean
  true/false, Integer decimal, SystemTime ISO-8601 UTC), else 400 ``ErrorInvalidPropertyValue``;
  every property is stored as sent (``extended_property`` / ``binary_property`` read them back);
- requests over 4 MB (4 MiB) are refused with 413 ``ErrorRequestEntityTooLarge``;
- upload sessions for attachments under 3 MB are refused
  (``ErrorAttachmentSizeShouldNotBeLessThanMinimumSize``); chunks must arrive in order, at most
  4 MB each, with an exact ``Content-Range`` and no Authorization header;
- per mailbox: more than 4 requests in flight, more than ``rate_limit`` requests in a sliding
  window, or more than ``upload_limit`` bytes of request bodies (POST, PUT, PATCH) in a sliding
  window, are answered 429 ``ApplicationThrottled`` with ``Retry-After`` (Exchange's limits are
  10,000 requests per 10 minutes, 4 at a time, 150 MB per 5 minutes: the benchmark enforces them
  with the windows scaled down and the rates kept). Only mail calls count against a mailbox;
  directory calls (``/users/{u}``, ``/users?$filter=...``) are Entra ID's, not Exchange's, and are
  counted but never throttled. ``budget_usage`` and ``admitted_requests`` say what a mailbox used;
- a folder holding ``folder_item_limit`` items (Exchange's is 1,000,000; tests scale it down)
  refuses another with 500 ``ErrorMessagePerFolderCountReceiveQuotaExceeded``, the code Exchange
  documents for it and the status its OData layer gives that code; folders report their
  ``totalItemCount``;
- a duplicate folder is ``ErrorFolderExists``; a user without a mailbox answers
  ``MailboxNotEnabledForRESTAPI``, an unknown one ``ErrorInvalidUser``, a mailbox outside the
  app's RBAC scope (``access_denied``) 403 ``ErrorAccessDenied``.

Where real Graph is merely undocumented (an upload session on a non-draft item), it accepts by
default and records that it did; ``refuse_upload_sessions_on_non_drafts=True`` plays the other
answer. Stored attachments keep their sha256 and size, and their bytes up to
``keep_attachment_bytes`` (so a 30 MB upload does not keep a 30 MB copy in the test process).

Calls served (paths under ``/v1.0``; ``{u}`` is a user's UPN, id or mail alias):

- ``GET  /users/{u}`` and ``GET /users?$filter=mail eq '...'``
- ``GET  /users`` without ``$filter``: the directory listing, with ``$select`` and ``$top``, paged
  through ``@odata.nextLink`` (a loopback URL with a ``$skiptoken``); counted as ``user_list``
  under ``DIRECTORY`` (``request_counts(DIRECTORY)``)
- ``GET  /users/{u}/mailFolders/inbox`` and ``GET /users/{u}/mailFolders/{f}`` (``totalItemCount``)
- ``GET|POST /users/{u}/mailFolders/{f}/childFolders`` (``$filter=displayName eq '...'``)
- ``GET|POST /users/{u}/mailFolders/{f}/messages`` (GET: the extended-property ``$filter``)
- ``GET  /users/{u}/messages``: the extended-property ``$filter`` over every folder of the mailbox;
  every match, ``$top`` (default 10) a page, the next page behind an ``@odata.nextLink`` with a
  ``$skip``, as Graph pages messages
- ``GET  /users/{u}/messages/{m}/$value``: the item as MIME (``message/rfc822``), made from what is
  stored as Exchange makes it from the item's properties (see ``item_mime``)
- ``GET|POST /users/{u}/messages/{m}/attachments``
- ``POST /users/{u}/messages/{m}/attachments/createUploadSession``, then ``PUT /upload/{token}``
- ``POST /users/{u}/messages/{m}/permanentDelete`` and ``DELETE /users/{u}/messages/{m}``
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import re
import secrets
import socket
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024
# Graph documents "3 MB" as the smallest upload session; read as decimal megabytes by default.
UPLOAD_SESSION_MIN_BYTES = 3_000_000
MAX_CONCURRENT_PER_MAILBOX = 4
KEEP_ATTACHMENT_BYTES = 8 * 1024 * 1024
MAX_ATTACHMENT_BYTES = 150 * 1024 * 1024
MAX_INTERNET_HEADERS = 5
MSGFLAG_UNSENT = 0x8
# Exchange Online's most items in one mail folder.
FOLDER_ITEM_LIMIT = 1_000_000

_EXTENDED_FILTER = re.compile(
    r"^singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id eq '((?:[^']|'')*)'"
    r"\s+and\s+\1/value eq '((?:[^']|'')*)'\s*\)$",
    re.IGNORECASE,
)
_DISPLAY_NAME_FILTER = re.compile(r"^displayName eq '((?:[^']|'')*)'$", re.IGNORECASE)
_MAIL_FILTER = re.compile(r"^mail eq '((?:[^']|'')*)'$", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
# The "mailbox" key that directory-wide requests (GET /users) are counted under.
DIRECTORY = "(directory)"
# Entra ID calls: counted under the user they name, never throttled as the mailbox's.
DIRECTORY_OPERATIONS = frozenset({"user_find", "user_get", "user_list"})
# Graph's largest page of users, and its page size when no $top is given.
MAX_USER_PAGE = 999
DEFAULT_USER_PAGE = 100
# Properties of a user this server knows; a $select naming another is refused as Graph does.
USER_PROPERTIES = (
    "id", "userPrincipalName", "mail", "displayName", "mobilePhone", "businessPhones", "accountEnabled",
)
# What Graph returns for a user when no $select is given (accountEnabled is not among them).
DEFAULT_USER_SELECT = ("id", "userPrincipalName", "mail", "displayName", "mobilePhone", "businessPhones")


def normalize_property_id(prop_id: str) -> str:
    """Extended property ids compare case-insensitively, whatever the spacing."""
    return " ".join(prop_id.split()).lower()


def extended_property(message: dict[str, Any], prop_id: str) -> str | None:
    """The value of one singleValueExtendedProperty of a stored message, or None."""
    return message["extendedProperties"].get(normalize_property_id(prop_id))


def binary_property(message: dict[str, Any], prop_id: str) -> bytes | None:
    """A Binary singleValueExtendedProperty of a stored message, decoded, or None."""
    value = extended_property(message, prop_id)
    return None if value is None else base64.b64decode(value)


class GraphHTTPError(Exception):
    def __init__(self, status: int, code: str, message: str = "", headers: dict[str, str] | None = None):
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message or code
        self.headers = headers or {}


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: float | None
    path_contains: str | None
    code: str | None
    method: str | None
    after_execution: bool
    skip: int = 0
    location: str | None = None  # a redirect's Location
    amend: dict[str, Any] | None = None  # served as usual, these fields added to the answer


@dataclass
class _Barrier:
    """Holds requests of one operation until ``parties`` of them have arrived (a race, on cue)."""

    parties: int
    timeout: float
    arrived: int = 0
    released: threading.Event = field(default_factory=threading.Event)


@dataclass
class _User:
    upn: str
    id: str
    has_mailbox: bool
    mail: str
    mobile_phone: str | None = None
    business_phones: list[str] = field(default_factory=list)
    account_enabled: bool = True
    display_name: str | None = None


@dataclass
class _Mailbox:
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> folder
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> stored message
    # folder id -> items in it, kept as items come and go (counting on every create is quadratic)
    items: Counter[str] = field(default_factory=Counter)


@dataclass
class _UploadSession:
    mailbox: str
    message_id: str
    name: str
    content_type: str
    size: int
    keep_bytes: bool
    received: int = 0
    digest: Any = field(default_factory=hashlib.sha256)
    content: bytearray = field(default_factory=bytearray)
    chunks: list[int] = field(default_factory=list)


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
        self.reject_drafts = reject_drafts
        self.access_denied = frozenset(u.strip().lower() for u in access_denied)
        self.max_concurrent_per_mailbox = max_concurrent_per_mailbox
        self.rate_limit = rate_limit
        self.upload_limit = upload_limit
        self.throttle_retry_after = throttle_retry_after
        self.fractional_retry_after = fractional_retry_after
        self.upload_session_min_bytes = upload_session_min_bytes
        self.refuse_upload_sessions_on_non_drafts = refuse_upload_sessions_on_non_drafts
        self.keep_attachment_bytes = keep_attachment_bytes
        self._lock = threading.RLock()
        self._users: dict[str, _User] = {}
        aliases = {mail.lower(): upn.lower() for mail, upn in (mail_aliases or {}).items()}
        for upn, has_mailbox in users.items():
            key = upn.strip().lower()
            mail = next((m for m, u in aliases.items() if u == key), key)
            self._users[key] = _User(key, str(uuid.uuid5(uuid.NAMESPACE_URL, key)), has_mailbox, mail)
        if user_page_size < 1:
            raise ValueError("user_page_size must be at least 1")
        if folder_item_limit < 1:
            raise ValueError("folder_item_limit must be at least 1")
        self.folder_item_limit = folder_item_limit
        self.user_page_size = user_page_size
        self._skip_tokens: dict[str, int] = {}  # $skiptoken -> index of the next user listed
        for upn, profile in (profiles or {}).items():
            self.set_profile(upn, **profile)
        self._mailboxes: dict[str, _Mailbox] = {}
        self._sessions: dict[str, _UploadSession] = {}
        self._faults: list[_Fault] = []
        self._folder_races: dict[str, str] = {}
        self._counts: dict[str, Counter[str]] = defaultdict(Counter)
        self._throttled: dict[str, Counter[str]] = defaultdict(Counter)
        self._inflight: Counter[str] = Counter()
        self._max_inflight: Counter[str] = Counter()
        self._recent: dict[str, deque[float]] = defaultdict(deque)
        self._recent_uploads: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        # Mail requests let through, per mailbox: (monotonic arrival time, body bytes).
        self._admitted: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self._barriers: dict[str, _Barrier] = {}
        self.request_log: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.graph = self  # type: ignore[attr-defined]
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
        with self._lock:
            self._faults.append(
                _Fault(status, times, retry_after, path_contains, code, method, after_execution, skip, location)
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
        with self._lock:
            self._faults.append(
                _Fault(200, times, None, path_contains, None, method, True, amend=dict(fields))
            )

    def hold_until(self, operation: str, parties: int, timeout: float = 5.0) -> None:
        """The next ``parties`` requests of ``operation`` (e.g. ``item_lookup``) wait for each
        other and are then served together: two workers' lookups both run before either create."""
        with self._lock:
            self._barriers[operation] = _Barrier(parties, timeout)

    def simulate_folder_race(self, mailbox: str, display_name: str) -> None:
        """The next childFolders lookup in ``mailbox`` answers "none", and right after it another
        worker creates ``display_name``: the caller's own create then meets ErrorFolderExists."""
        with self._lock:
            self._folder_races[mailbox.lower()] = display_name

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
            user = self._users.get(upn.strip().lower())
            if user is None:
                raise KeyError(f"no user {upn!r}: add it to ``users`` first")
            user.mobile_phone = mobilePhone
            user.business_phones = list(businessPhones or [])
            user.account_enabled = bool(accountEnabled)
            user.display_name = displayName

    def set_body(self, mailbox: str, message_id: str, content: str) -> None:
        """Replaces a stored item's body content (someone with access to the mailbox edited it):
        what its ``$value`` says from then on."""
        with self._lock:
            message = self._stored(mailbox, message_id)
            message["body"] = {**(message.get("body") or {"contentType": "html"}), "content": content}

    def delete_message(self, mailbox: str, message_id: str) -> None:
        """Removes a stored item, as a hard delete in Exchange would (no request counted)."""
        with self._lock:
            message = self._stored(mailbox, message_id)
            box = self._mailboxes[mailbox.lower()]
            del box.messages[message_id]
            box.items[message["parentFolderId"]] -= 1

    def _stored(self, mailbox: str, message_id: str) -> dict[str, Any]:
        box = self._mailboxes.get(mailbox.lower())
        message = box.messages.get(message_id) if box else None
        if message is None:
            raise KeyError(f"no item {message_id!r} in that mailbox")
        return message

    # -- inspection -----------------------------------------------------------------------------

    def messages(self, mailbox: str) -> list[dict[str, Any]]:
        """Stored items, oldest first. Attachments carry ``sha256`` and ``size``, and their bytes
        under ``content`` when not larger than ``keep_attachment_bytes`` (else ``content`` is None)."""
        with self._lock:
            box = self._mailboxes.get(mailbox.lower())
            return copy.deepcopy(list(box.messages.values())) if box else []

    def folders(self, mailbox: str) -> list[dict[str, Any]]:
        """Folders in creation order, each with its ``totalItemCount``."""
        with self._lock:
            box = self._mailboxes.get(mailbox.lower())
            if box is None:
                return []
            return [{**copy.deepcopy(f), "totalItemCount": box.items[f["id"]]} for f in box.folders.values()]

    def request_counts(self, mailbox: str) -> dict[str, int]:
        """Requests received per operation (``folder_find``, ``item_create``, ``upload_chunk``...),
        throttled ones included."""
        with self._lock:
            return dict(self._counts.get(mailbox.lower(), Counter()))

    def total_requests(self, mailbox: str) -> int:
        return sum(self.request_counts(mailbox).values())

    def pending_faults(self) -> int:
        """Scripted failures (``fail_next``) not served yet."""
        with self._lock:
            return sum(fault.remaining for fault in self._faults)

    def throttled_counts(self, mailbox: str) -> dict[str, int]:
        """429s sent by the throttling rules (not by ``fail_next``), per rule (``concurrency``, ``rate``)."""
        with self._lock:
            return dict(self._throttled.get(mailbox.lower(), Counter()))

    def total_throttled(self) -> int:
        """429s sent by the throttling rules, over every mailbox."""
        with self._lock:
            return sum(sum(counts.values()) for counts in self._throttled.values())

    def admitted_requests(self, mailbox: str) -> list[tuple[float, int]]:
        """The mail requests let through for ``mailbox`` (throttled ones not included), as
        (``time.monotonic()`` at arrival, request body bytes)."""
        with self._lock:
            return list(self._admitted.get(mailbox.lower(), ()))

    def budget_usage(self, mailbox: str, since: float | None = None) -> dict[str, Any]:
        """What ``mailbox`` used of Exchange's budget (mail requests admitted, their body bytes,
        429s from the throttling rules), from ``since`` (monotonic time) on when given."""
        admitted = [(t, n) for t, n in self.admitted_requests(mailbox) if since is None or t >= since]
        return {
            "requests": len(admitted),
            "upload_bytes": sum(n for _, n in admitted),
            "throttled": sum(self.throttled_counts(mailbox).values()),
            "first": admitted[0][0] if admitted else None,
            "last": admitted[-1][0] if admitted else None,
        }

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()
            self._throttled.clear()
            self._admitted.clear()
            self.request_log.clear()

    def max_concurrency(self, mailbox: str) -> int:
        with self._lock:
            return self._max_inflight.get(mailbox.lower(), 0)

    # -- request handling (called by _Handler on server threads) --------------------------------

    def handle(
        self, method: str, raw_path: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        segments = [unquote(s) for s in split.path.split("/") if s]
        upload = len(segments) == 2 and segments[0] == "upload"
        try:
            operation, mailbox = self._classify(method, segments, query, upload)
        except GraphHTTPError as exc:
            return _error_response(exc)
        try:
            if not upload:
                self._check_auth(headers)
            in_flight = self._enter(mailbox, operation, method, split.path, headers, split.query, len(body))
        except GraphHTTPError as exc:
            return _error_response(exc)
        try:
            if self.latency_seconds:
                time.sleep(self.latency_seconds)
            self._wait_at_barrier(operation)
            fault = self._take_fault(method, split.path)
            if fault is not None and not fault.after_execution:
                raise _fault_error(fault)
            status, payload, extra = self._dispatch(operation, segments, query, headers, body)
            if fault is not None and fault.amend is not None and not isinstance(payload, bytes):
                payload = {**(payload or {}), **fault.amend}
            elif fault is not None and fault.amend is None:
                raise _fault_error(fault)
            if isinstance(payload, bytes):  # a media answer: its Content-Type comes in ``extra``
                data, response_headers = payload, {}
            else:
                data = b"" if payload is None else json.dumps(payload).encode("utf-8")
                response_headers = {"Content-Type": "application/json"} if payload is not None else {}
            response_headers.update(extra)
            return status, response_headers, data
        except GraphHTTPError as exc:
            return _error_response(exc)
        finally:
            if in_flight:
                self._leave(mailbox)

    def _enter(
        self, mailbox: str, operation: str, method: str, path: str, headers: Any, query: str = "",
        body_bytes: int = 0,
    ) -> bool:
        """Counts the request, then admits it or answers 429 (concurrency, rate, then uploads).
        Directory calls are counted and admitted: Exchange's per-mailbox limits are not theirs.
        True when the request is now in flight for the mailbox (``_leave`` it afterwards)."""
        with self._lock:
            now = time.monotonic()
            self._counts[mailbox][operation] += 1
            self.request_log.append(
                {
                    "at": now,
                    "mailbox": mailbox,
                    "operation": operation,
                    "method": method,
                    "path": path,
                    "query": unquote(query),
                    "prefer": headers.get("Prefer"),
                    "authorization": headers.get("Authorization") is not None,
                }
            )
            mail_call = operation not in DIRECTORY_OPERATIONS
            limit = self.max_concurrent_per_mailbox
            if mail_call and limit is not None and self._inflight[mailbox] >= limit:
                self._throttled[mailbox]["concurrency"] += 1
                wait = max(self.latency_seconds, 0.02) if self.fractional_retry_after else 1.0
                raise self._throttle("Application is over its MailboxConcurrency limit.", wait)
            if mail_call and self.rate_limit is not None:
                allowed, window = self.rate_limit
                recent = self._recent[mailbox]
                while recent and now - recent[0] >= window:
                    recent.popleft()
                if len(recent) >= allowed:
                    self._throttled[mailbox]["rate"] += 1
                    raise self._throttle("Application is over its request rate limit.", window - (now - recent[0]))
            uploaded = body_bytes if method in ("POST", "PUT", "PATCH") else 0
            if mail_call and self.upload_limit is not None and uploaded:
                allowed_bytes, window = self.upload_limit
                uploads = self._recent_uploads[mailbox]
                while uploads and now - uploads[0][0] >= window:
                    uploads.popleft()
                held = sum(n for _, n in uploads)
                if uploads and held + uploaded > allowed_bytes:
                    # The wait until enough of the window has passed for this body to fit (a body
                    # larger than the whole budget is let into an empty window).
                    wait, freed = 0.0, 0
                    for at, n in uploads:
                        freed += n
                        wait = window - (now - at)
                        if held - freed + uploaded <= allowed_bytes:
                            break
                    self._throttled[mailbox]["upload"] += 1
                    raise self._throttle("Application is over its upload limit.", wait)
                uploads.append((now, uploaded))
            if mail_call:
                if self.rate_limit is not None:
                    self._recent[mailbox].append(now)
                self._admitted[mailbox].append((now, uploaded))
                self._inflight[mailbox] += 1
                self._max_inflight[mailbox] = max(self._max_inflight[mailbox], self._inflight[mailbox])
            return mail_call

    def _throttle(self, message: str, wait: float) -> GraphHTTPError:
        if self.throttle_retry_after is not None:
            retry_after = f"{self.throttle_retry_after:g}"
        elif self.fractional_retry_after:
            retry_after = f"{max(wait, 0.001):.3f}"
        else:
            retry_after = str(max(1, math.ceil(wait)))
        return GraphHTTPError(429, "ApplicationThrottled", message, {"Retry-After": retry_after})

    def _leave(self, mailbox: str) -> None:
        with self._lock:
            self._inflight[mailbox] -= 1

    def _wait_at_barrier(self, operation: str) -> None:
        with self._lock:
            barrier = self._barriers.get(operation)
            if barrier is None:
                return
            barrier.arrived += 1
            if barrier.arrived >= barrier.parties:
                del self._barriers[operation]
                barrier.released.set()
        barrier.released.wait(barrier.timeout)

    def _check_auth(self, headers: Any) -> None:
        value = headers.get("Authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphHTTPError(401, "InvalidAuthenticationToken", "Access token is empty.")
        if self.token is not None and token.strip() != self.token:
            raise GraphHTTPError(401, "InvalidAuthenticationToken", "Access token validation failure.")

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if (
                    fault.remaining > 0
                    and (fault.path_contains is None or fault.path_contains in path)
                    and (fault.method is None or fault.method.upper() == method)
                ):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _classify(
        self, method: str, segments: list[str], query: dict[str, str], upload: bool
    ) -> tuple[str, str]:
        """(operation name, mailbox key) of a request, for counting and routing."""
        if upload:
            with self._lock:
                session = self._sessions.get(segments[1])
            return "upload_chunk", session.mailbox if session else "(unknown)"
        if len(segments) < 2 or segments[0] != "v1.0" or segments[1].lower() != "users":
            raise GraphHTTPError(400, "BadRequest", "Unsupported path.")
        rest = [s.lower() for s in segments[2:]]
        if not rest and method == "GET" and "$filter" not in query:
            return "user_list", DIRECTORY
        if not rest:
            match = _MAIL_FILTER.match(query.get("$filter", ""))
            mailbox = match.group(1).replace("''", "'").lower() if match else "(directory)"
            user = self._find_user(mailbox)
            return "user_find", user.upn if user else mailbox
        user = self._find_user(segments[2])
        mailbox = user.upn if user else segments[2].lower()
        operation = _operation(method, rest[1:])
        if operation is None:
            raise GraphHTTPError(400, "BadRequest", "Unsupported path.")
        return operation, mailbox

    def _find_user(self, ident: str) -> _User | None:
        key = ident.strip().lower()
        with self._lock:
            user = self._users.get(key)
            if user is None:
                user = next((u for u in self._users.values() if u.id == key or u.mail == key), None)
            return user

    def _mail_user(self, ident: str) -> _User:
        user = self._find_user(ident)
        if user is None:
            raise GraphHTTPError(404, "ErrorInvalidUser", f"The requested user '{ident}' is invalid.")
        if not user.has_mailbox:
            raise GraphHTTPError(
                404, "MailboxNotEnabledForRESTAPI", "REST API is not yet supported for this mailbox."
            )
        if user.upn in self.access_denied:
            raise GraphHTTPError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return user

    def _mailbox(self, user: _User) -> _Mailbox:
        box = self._mailboxes.get(user.upn)
        if box is None:
            box = _Mailbox()
            for well_known in ("msgfolderroot", "inbox"):
                box.folders[well_known] = {
                    "id": f"{well_known}-{user.id}",
                    "displayName": well_known,
                    "parentFolderId": None,
                    "wellKnownName": well_known,
                }
            box.folders["inbox"]["parentFolderId"] = box.folders["msgfolderroot"]["id"]
            self._mailboxes[user.upn] = box
        return box

    @staticmethod
    def _folder(box: _Mailbox, ident: str) -> dict[str, Any]:
        folder = box.folders.get(ident.lower()) or next(
            (f for f in box.folders.values() if f["id"] == ident), None
        )
        if folder is None:
            raise GraphHTTPError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return folder

    @staticmethod
    def _message(box: _Mailbox, ident: str) -> dict[str, Any]:
        message = box.messages.get(ident)
        if message is None:
            raise GraphHTTPError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return message

    def _dispatch(
        self, operation: str, segments: list[str], query: dict[str, str], headers: Any, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if operation == "upload_chunk":
            return self._upload_chunk(segments[1], headers, body)
        if len(body) > MAX_REQUEST_BYTES:
            raise GraphHTTPError(
                413, "ErrorRequestEntityTooLarge", "The maximum request length supported is 4MB."
            )
        with self._lock:
            if operation == "user_find":
                return 200, self._user_find(query), {}
            if operation == "user_list":
                return 200, self._user_list(query), {}
            if operation == "user_get":
                user = self._find_user(segments[2])
                if user is None:
                    raise GraphHTTPError(
                        404, "Request_ResourceNotFound", f"Resource '{segments[2]}' does not exist."
                    )
                return 200, _user_json(user), {}
            user = self._mail_user(segments[2])
            box = self._mailbox(user)
            handler = getattr(self, f"_op_{operation}")
            return handler(user, box, segments[4:], query, headers, body)

    def _user_find(self, query: dict[str, str]) -> dict[str, Any]:
        match = _MAIL_FILTER.match(query.get("$filter", ""))
        if not match:
            raise GraphHTTPError(400, "Request_UnsupportedQuery", "Unsupported query.")
        mail = match.group(1).replace("''", "'").strip().lower()
        users = [u for u in self._users.values() if u.mail == mail]
        return {"value": [_user_json(u) for u in users]}

    def _user_list(self, query: dict[str, str]) -> dict[str, Any]:
        """One page of every user, in a stable order; the next page's link keeps $select and $top."""
        select = [s.strip() for s in (query.get("$select") or "").split(",") if s.strip()]
        known = {name.lower(): name for name in USER_PROPERTIES}
        for name in select:
            if name.lower() not in known:
                message = f"Could not find a property named '{name}' on type 'microsoft.graph.user'."
                raise GraphHTTPError(400, "Request_BadRequest", message)
        fields = [known[name.lower()] for name in select] or list(DEFAULT_USER_SELECT)
        top_text = query.get("$top")
        try:
            top = DEFAULT_USER_PAGE if top_text is None else int(top_text)
        except ValueError:
            raise GraphHTTPError(400, "Request_BadRequest", "Invalid $top.") from None
        if not 1 <= top <= MAX_USER_PAGE:
            message = f"Invalid page size specified: '{top}'. Must be between 1 and 999 inclusive."
            raise GraphHTTPError(400, "Request_UnsupportedQuery", message)
        start = 0
        token = query.get("$skiptoken")
        if token is not None:
            if token not in self._skip_tokens:
                raise GraphHTTPError(400, "Directory_ExpiredPageToken", "The specified page token value has expired.")
            start = self._skip_tokens[token]
        users = list(self._users.values())
        end = start + min(top, self.user_page_size)
        page: dict[str, Any] = {"value": [_user_fields(u, fields) for u in users[start:end]]}
        if end < len(users):
            next_token = secrets.token_urlsafe(12)
            self._skip_tokens[next_token] = end
            params = [f"$top={top}", f"$skiptoken={next_token}"]
            if select:
                params.insert(0, "$select=" + ",".join(select))
            page["@odata.nextLink"] = f"{self.base_url}/users?" + "&".join(params)
        return page

    # -- mail operations (lock held) ------------------------------------------------------------

    def _op_mailbox_probe(self, user, box, rest, query, headers, body):
        if rest and rest[0].lower() != "inbox":
            raise GraphHTTPError(400, "BadRequest", "Only the inbox is served.")
        return 200, {"id": box.folders["inbox"]["id"]}, {}

    def _op_folder_find(self, user, box, rest, query, headers, body):
        parent = self._folder(box, rest[0])
        race = self._folder_races.pop(user.upn, None)
        children = [f for f in box.folders.values() if f["parentFolderId"] == parent["id"]]
        flt = query.get("$filter")
        if flt:
            match = _DISPLAY_NAME_FILTER.match(flt.strip())
            if not match:
                raise GraphHTTPError(400, "ErrorInvalidUrlQueryFilter", "Unsupported filter.")
            name = match.group(1).replace("''", "'").casefold()
            children = [f for f in children if f["displayName"].casefold() == name]
        if race is not None:
            self._new_folder(box, parent, race)
            return 200, {"value": []}, {}
        return 200, {"value": [_folder_json(f, box.items[f["id"]]) for f in children]}, {}

    def _op_folder_get(self, user, box, rest, query, headers, body):
        folder = self._folder(box, rest[0])
        return 200, _folder_json(folder, box.items[folder["id"]]), {}

    def _op_folder_create(self, user, box, rest, query, headers, body):
        parent = self._folder(box, rest[0])
        name = str(_json(body).get("displayName") or "").strip()
        if not name:
            raise GraphHTTPError(400, "ErrorInvalidRequest", "displayName is required.")
        if any(
            f["parentFolderId"] == parent["id"] and f["displayName"].casefold() == name.casefold()
            for f in box.folders.values()
        ):
            raise GraphHTTPError(409, "ErrorFolderExists", "A folder with the specified name already exists.")
        return 201, _folder_json(self._new_folder(box, parent, name), 0), {}

    def _new_folder(self, box: _Mailbox, parent: dict[str, Any], name: str) -> dict[str, Any]:
        folder_id = "folder-" + secrets.token_hex(8)
        folder = {"id": folder_id, "displayName": name, "parentFolderId": parent["id"]}
        box.folders[folder_id] = folder
        return folder

    def _op_item_lookup(self, user, box, rest, query, headers, body):
        """In one folder (``/mailFolders/{f}/messages``) or, as ``/messages``, in all of them."""
        folder_id = self._folder(box, rest[0])["id"] if rest else None
        match = _EXTENDED_FILTER.match((query.get("$filter") or "").strip())
        if not match:
            raise GraphHTTPError(400, "ErrorInvalidUrlQueryFilter", "Unsupported filter.")
        prop_id = normalize_property_id(match.group(2).replace("''", "'"))
        value = match.group(3).replace("''", "'")
        found = [
            m for m in box.messages.values()
            if folder_id in (None, m["parentFolderId"]) and m["extendedProperties"].get(prop_id) == value
        ]
        try:
            top, skip = int(query.get("$top") or 10), int(query.get("$skip") or 0)
        except ValueError:
            raise GraphHTTPError(400, "ErrorInvalidUrlQuery", "Invalid $top or $skip.") from None
        if top < 1 or skip < 0:
            raise GraphHTTPError(400, "ErrorInvalidUrlQuery", "Invalid $top or $skip.")
        page: dict[str, Any] = {"value": [{"id": m["id"]} for m in found[skip : skip + top]]}
        if skip + top < len(found):
            path = f"users/{quote(user.upn)}/" + (f"mailFolders/{quote(rest[0])}/" if rest else "")
            params = urlencode({**query, "$skip": str(skip + top)}, quote_via=quote, safe="$")
            page["@odata.nextLink"] = f"{self.base_url}/{path}messages?{params}"
        return 200, page, {}

    def _op_item_mime(self, user, box, rest, query, headers, body):
        message = self._message(box, rest[0])
        return 200, item_mime(message), {"Content-Type": "message/rfc822"}

    def _op_item_create(self, user, box, rest, query, headers, body):
        folder = self._folder(box, rest[0])
        if box.items[folder["id"]] >= self.folder_item_limit:
            raise GraphHTTPError(
                500, "ErrorMessagePerFolderCountReceiveQuotaExceeded",
                "The number of received messages has exceeded the quota for the folder.",
            )
        payload = _json(body)
        for field_name in ("sentDateTime", "receivedDateTime"):
            if field_name in payload:
                raise GraphHTTPError(400, "ErrorInvalidPropertySet", f"{field_name} cannot be set on create.")
        properties: dict[str, str] = {}
        for prop in payload.get("singleValueExtendedProperties") or []:
            properties[normalize_property_id(str(prop.get("id", "")))] = str(prop.get("value"))
        flags_value = properties.get("integer 0x0e07")
        if flags_value is None:
            if self.reject_drafts:
                raise GraphHTTPError(
                    400, "ErrorInvalidPropertySet", "Integer 0x0E07 missing: the item would be a draft."
                )
            is_draft = True
        else:
            try:
                is_draft = bool(int(flags_value) & MSGFLAG_UNSENT)
            except ValueError:
                raise GraphHTTPError(400, "ErrorInvalidPropertyValue", "Invalid message flags.") from None
        for prop_id, value in properties.items():
            _check_property_value(prop_id, value)
        _check_internet_headers(payload.get("internetMessageHeaders"))
        message_id = "AAMk" + secrets.token_hex(16)
        attachments = [self._file_attachment(a, "inline") for a in payload.get("attachments") or []]
        message = {
            "id": message_id,
            "parentFolderId": folder["id"],
            "folderName": folder["displayName"],
            "isDraft": is_draft,
            "subject": payload.get("subject"),
            "body": payload.get("body"),
            "from": payload.get("from"),
            "sender": payload.get("sender"),
            "toRecipients": payload.get("toRecipients") or [],
            "internetMessageId": payload.get("internetMessageId"),
            "internetMessageHeaders": payload.get("internetMessageHeaders") or [],
            "singleValueExtendedProperties": payload.get("singleValueExtendedProperties") or [],
            "extendedProperties": properties,
            "attachments": attachments,
            "createdDateTime": datetime.now(UTC).isoformat(),
            "preferHeader": headers.get("Prefer"),
        }
        box.messages[message_id] = message
        box.items[folder["id"]] += 1
        reply = {k: message[k] for k in ("id", "parentFolderId", "isDraft", "subject", "internetMessageId")}
        reply["hasAttachments"] = bool(attachments)
        return 201, reply, {}

    def _file_attachment(self, payload: dict[str, Any], via: str) -> dict[str, Any]:
        return _file_attachment(payload, via, self.keep_attachment_bytes)

    def _op_attachment_list(self, user, box, rest, query, headers, body):
        message = self._message(box, rest[0])
        return 200, {"value": [_attachment_json(a) for a in message["attachments"]]}, {}

    def _op_attachment_add(self, user, box, rest, query, headers, body):
        message = self._message(box, rest[0])
        attachment = self._file_attachment(_json(body), "attachment_post")
        message["attachments"].append(attachment)
        return 201, _attachment_json(attachment), {}

    def _op_upload_session_create(self, user, box, rest, query, headers, body):
        message = self._message(box, rest[0])
        item = _json(body).get("AttachmentItem") or {}
        size = item.get("size")
        if item.get("attachmentType") != "file" or not item.get("name") or not isinstance(size, int):
            raise GraphHTTPError(400, "ErrorInvalidRequest", "AttachmentItem needs a type, name and size.")
        if size < self.upload_session_min_bytes:
            raise GraphHTTPError(
                400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize", "The attachment is too small."
            )
        if size > MAX_ATTACHMENT_BYTES:
            raise GraphHTTPError(400, "ErrorAttachmentSizeExceeded", "The attachment is too large.")
        if self.refuse_upload_sessions_on_non_drafts and not message["isDraft"]:
            raise GraphHTTPError(400, "ErrorInvalidOperation", "Upload sessions are only supported on drafts.")
        token = secrets.token_urlsafe(16)
        self._sessions[token] = _UploadSession(
            user.upn, message["id"], str(item["name"]), str(item.get("contentType") or ""), size,
            keep_bytes=size <= self.keep_attachment_bytes,
        )
        message.setdefault("uploadSessionsWhileNonDraft", 0)
        if not message["isDraft"]:
            message["uploadSessionsWhileNonDraft"] += 1
        return 201, {
            "uploadUrl": f"{self.root_url}/upload/{token}",
            "expirationDateTime": (datetime.now(UTC) + timedelta(minutes=15)).isoformat(),
            "nextExpectedRanges": ["0-"],
        }, {}

    def _op_item_discard(self, user, box, rest, query, headers, body):
        message = self._message(box, rest[0])
        del box.messages[rest[0]]
        box.items[message["parentFolderId"]] -= 1
        return 204, None, {}

    def _upload_chunk(self, token: str, headers: Any, body: bytes) -> tuple[int, Any, dict[str, str]]:
        if headers.get("Authorization") is not None:
            raise GraphHTTPError(401, "InvalidAuthenticationToken", "Upload URLs take no Authorization.")
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                raise GraphHTTPError(404, "ErrorItemNotFound", "The upload session does not exist.")
            match = _CONTENT_RANGE.match(headers.get("Content-Range") or "")
            if not match:
                raise GraphHTTPError(400, "InvalidContentRange", "Content-Range is missing or malformed.")
            start, end, total = (int(g) for g in match.groups())
            if len(body) > MAX_UPLOAD_CHUNK_BYTES:
                raise GraphHTTPError(413, "RequestBodyTooLarge", "Upload chunks are limited to 4 MB.")
            if total != session.size or start != session.received or end - start + 1 != len(body):
                raise GraphHTTPError(416, "InvalidRange", f"Expected bytes {session.received}-.")
            session.received += len(body)
            session.digest.update(body)
            if session.keep_bytes:
                session.content.extend(body)
            session.chunks.append(len(body))
            if session.received < session.size:
                return 200, {
                    "expirationDateTime": (datetime.now(UTC) + timedelta(minutes=15)).isoformat(),
                    "nextExpectedRanges": [f"{session.received}-"],
                }, {}
            del self._sessions[token]
            box = self._mailboxes.get(session.mailbox)
            message = box.messages.get(session.message_id) if box else None
            if message is None:
                raise GraphHTTPError(404, "ErrorItemNotFound", "The message no longer exists.")
            attachment = {
                "id": "att-" + secrets.token_hex(8),
                "name": session.name,
                "contentType": session.content_type,
                "size": session.size,
                "sha256": session.digest.hexdigest(),
                "content": bytes(session.content) if session.keep_bytes else None,
                "via": "upload_session",
                "chunks": list(session.chunks),
            }
            message["attachments"].append(attachment)
            return 201, None, {"Location": f"{self.base_url}/attachments/{attachment['id']}"}


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
        graph: LocalGraph = self.server.graph  # type: ignore[attr-defined]
        status, headers, data = graph.handle(self.command, self.path, self.headers, body)
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


def _operation(method: str, tail: list[str]) -> str | None:
    """The operation a request under /users/{u} performs; ``tail`` is lower-cased."""
    match (method, tail):
        case ("GET", []):
            return "user_get"
        case ("GET", ["mailfolders", "inbox"]):
            return "mailbox_probe"
        case ("GET", ["mailfolders", _]):
            return "folder_get"
        case ("GET", ["mailfolders", _, "childfolders"]):
            return "folder_find"
        case ("POST", ["mailfolders", _, "childfolders"]):
            return "folder_create"
        case ("GET", ["mailfolders", _, "messages"]) | ("GET", ["messages"]):
            return "item_lookup"
        case ("POST", ["mailfolders", _, "messages"]):
            return "item_create"
        case ("GET", ["messages", _, "$value"]):
            return "item_mime"
        case ("GET", ["messages", _, "attachments"]):
            return "attachment_list"
        case ("POST", ["messages", _, "attachments"]):
            return "attachment_add"
        case ("POST", ["messages", _, "attachments", "createuploadsession"]):
            return "upload_session_create"
        case ("POST", ["messages", _, "permanentdelete"]) | ("DELETE", ["messages", _]):
            return "item_discard"
    return None


def _error_response(exc: GraphHTTPError) -> tuple[int, dict[str, str], bytes]:
    payload = {"error": {"code": exc.code, "message": exc.message}}
    headers = {"Content-Type": "application/json", **exc.headers}
    return exc.status, headers, json.dumps(payload).encode("utf-8")


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise GraphHTTPError(400, "BadRequest", "The body is not JSON.") from None
    if not isinstance(value, dict):
        raise GraphHTTPError(400, "BadRequest", "The body is not a JSON object.")
    return value


def _user_json(user: _User) -> dict[str, Any]:
    return {"id": user.id, "mail": user.mail, "userPrincipalName": user.upn}


def _user_fields(user: _User, fields: list[str]) -> dict[str, Any]:
    values = {
        "id": user.id,
        "userPrincipalName": user.upn,
        "mail": user.mail,
        "displayName": user.display_name,
        "mobilePhone": user.mobile_phone,
        "businessPhones": list(user.business_phones),
        "accountEnabled": user.account_enabled,
    }
    return {name: values[name] for name in fields}


def _folder_json(folder: dict[str, Any], items: int) -> dict[str, Any]:
    return {**{k: folder[k] for k in ("id", "displayName", "parentFolderId")}, "totalItemCount": items}


def _attachment_json(attachment: dict[str, Any]) -> dict[str, Any]:
    return {k: attachment[k] for k in ("id", "name", "contentType", "size")}


class _PlainText(HTMLParser):
    """The text of an HTML body, for the text/plain alternative Exchange puts beside it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in ("head", "style", "script", "title")
        self.parts.append("\n" if tag in ("br", "p", "div", "tr") else "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "style", "script", "title") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def item_mime(message: dict[str, Any]) -> bytes:
    """A stored item as ``GET /messages/{id}/$value`` gives it: MIME made anew from the item's
    properties, as Exchange makes it (it keeps no MIME for an item created through Graph).

    Subject; Date from ``SystemTime 0x0039`` (the client submit time Graph reads as
    ``sentDateTime``; the creation time when absent), to the second; From, Sender, To; Message-ID
    and the x- headers stored; a multipart/alternative of the body's text and (for an HTML body)
    its HTML; then each file attachment with its name, content type and bytes, whichever way it
    arrived (in the create, posted alone, uploaded in a session). An attachment whose bytes were
    not kept (``keep_attachment_bytes``) cannot be given back: the answer is a 500 rather than an
    item quietly missing it.
    """
    mime = EmailMessage(policy=policy.default)
    mime["Subject"] = " ".join(str(message.get("subject") or "").splitlines())
    sent = message["extendedProperties"].get("systemtime 0x0039") or message["createdDateTime"]
    sent_at = datetime.fromisoformat(sent.replace("Z", "+00:00")).astimezone(UTC).replace(microsecond=0)
    mime["Date"] = format_datetime(sent_at)
    for header, field_name in (("From", "from"), ("Sender", "sender")):
        if address := _mime_address(message.get(field_name)):
            mime[header] = address
    recipients = [a for a in (_mime_address(r) for r in message.get("toRecipients") or []) if a]
    if recipients:
        mime["To"] = ", ".join(recipients)
    if message.get("internetMessageId"):
        mime["Message-ID"] = str(message["internetMessageId"])
    for header in message.get("internetMessageHeaders") or []:
        mime[str(header["name"])] = str(header["value"])
    stored_body = message.get("body") or {}
    content = str(stored_body.get("content") or "")
    if str(stored_body.get("contentType") or "").lower() == "html":
        text = _PlainText()
        text.feed(content)
        text.close()
        mime.set_content("".join(text.parts).strip() + "\n", charset="utf-8")
        mime.add_alternative(content, subtype="html", charset="utf-8")
    else:
        mime.set_content(content, charset="utf-8")
    for attachment in message["attachments"]:
        if attachment.get("content") is None:
            raise GraphHTTPError(500, "LocalGraphBytesNotKept", "The attachment's bytes were not kept.")
        maintype, _, subtype = str(attachment.get("contentType") or "").partition("/")
        if not maintype or not subtype or maintype.lower() in ("multipart", "message"):
            maintype, subtype = "application", "octet-stream"
        mime.add_attachment(
            attachment["content"], maintype=maintype, subtype=subtype, filename=str(attachment.get("name") or ""),
        )
    return mime.as_bytes()


def _mime_address(recipient: Any) -> str | None:
    address = (recipient or {}).get("emailAddress") or {}
    if not address.get("address"):
        return None
    return formataddr((str(address.get("name") or ""), str(address["address"])))


def _check_property_value(prop_id: str, value: str) -> None:
    """Values as Graph's JSON carries them: Binary in base64, Boolean true/false, Integer decimal,
    SystemTime ISO-8601 UTC (``prop_id`` normalised: lower case)."""
    kind = prop_id.split(" ", 1)[0]
    if kind == "binary":
        try:
            base64.b64decode(value, validate=True)
        except ValueError:
            raise GraphHTTPError(400, "ErrorInvalidPropertyValue", "Binary values must be base64.") from None
    elif kind == "boolean" and value.lower() not in ("true", "false"):
        raise GraphHTTPError(400, "ErrorInvalidPropertyValue", "Boolean values must be true or false.")
    elif kind == "integer" and not re.fullmatch(r"-?\d+", value):
        raise GraphHTTPError(400, "ErrorInvalidPropertyValue", "Integer values must be decimal.")
    elif kind == "systemtime":
        _parse_time(value)


def _parse_time(value: str) -> None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GraphHTTPError(400, "ErrorInvalidPropertyValue", "Invalid SystemTime value.") from None
    if parsed.tzinfo is None:
        raise GraphHTTPError(400, "ErrorInvalidPropertyValue", "SystemTime values must be UTC.")


def _check_internet_headers(headers: Any) -> None:
    if headers is None:
        return
    if not isinstance(headers, list) or not 0 < len(headers) <= MAX_INTERNET_HEADERS:
        raise GraphHTTPError(
            400, "InvalidInternetMessageHeaderCollection", "Between 1 and 5 internet message headers."
        )
    for header in headers:
        name = str(header.get("name") or "")
        if not name.lower().startswith("x-"):
            raise GraphHTTPError(
                400, "InvalidInternetMessageHeader", "Internet message header names must start with 'x-'."
            )


def _file_attachment(payload: dict[str, Any], via: str, keep_bytes: int) -> dict[str, Any]:
    if payload.get("@odata.type") != "#microsoft.graph.fileAttachment":
        raise GraphHTTPError(400, "ErrorInvalidRequest", "Only file attachments are served.")
    try:
        content = base64.b64decode(payload.get("contentBytes") or "", validate=True)
    except ValueError:
        raise GraphHTTPError(400, "ErrorInvalidRequest", "contentBytes is not base64.") from None
    return {
        "id": "att-" + secrets.token_hex(8),
        "name": payload.get("name"),
        "contentType": payload.get("contentType"),
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "content": content if len(content) <= keep_bytes else None,
        "via": via,
        "isInline": bool(payload.get("isInline")),
    }


def _fault_error(fault: _Fault) -> GraphHTTPError:
    headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
    if fault.location is not None:
        headers["Location"] = fault.location
    code = fault.code or {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "GatewayTimeout"}.get(
        fault.status, "InjectedFault"
    )
    return GraphHTTPError(fault.status, code, "Injected by LocalGraph.fail_next.", headers)
