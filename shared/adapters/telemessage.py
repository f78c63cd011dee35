"""TeleMessage archive client: the ``ArchiveSource`` the connector pulls WhatsApp records from.

TeleMessage publishes no public REST reference for this pull. This module is our model of it
(token login, the listing envelope, page tokens, attachment download with Range resume) and the
only place that knows any TeleMessage-specific detail: paths, query parameters, envelope field
names, error codes. A deployment whose tenant endpoint differs adapts this file and nothing else.

What the rest of the connector gets is plain: raw record JSON exactly as sent (validation happens
at import), attachment bytes as a stream, ``None`` for media never captured, and the error
taxonomy of ``shared.domain.errors`` for everything else.

Never log or raise with the password, the token or record content (numbers, names, text): the
logs leave the compliance boundary. Ids, counts and status codes only.

The password and the token go to ``base_url`` only: it must be https (http only for a loopback
test server), and no redirect is ever followed; a 3xx is a ConfigurationError, since following it
would hand the credentials (a 307 re-sends the login body) to whatever host the Location names.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlunsplit

import httpx

from shared.adapters.retry_policy import SERVER_ERRORS, RetryPolicy, Verdict
from shared.adapters.urls import checked_base_url
from shared.domain.errors import ConfigurationError, PermanentError, PoisonReason, TransientError
from shared.domain.window import Window, isoformat_z
from shared.ports import ListingPage

logger = logging.getLogger(__name__)

TOKEN_PATH = "/api/v1/auth/token"
ITEMS_PATH = "/api/v1/archive/items"
ATTACHMENT_PATH = "/api/v1/archive/attachments/{attachment_id}"
DEFAULT_SOURCE_TYPES = ("WHATSAPP_ARCHIVER", "WHATSAPP_CLOUD_ARCHIVER")
MAX_PAGE_SIZE = 1000

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def telemessage_retry_policy(attempts: int = 3, backoff: float = 0.5, max_inline_wait: float = 5.0) -> RetryPolicy:
    """The retries of a TeleMessage request: ``attempts`` in all, on 429 (its Retry-After when at
    most ``max_inline_wait``), 408 (the server gave up waiting for us) and any 5xx, and on a lost
    connection; ``backoff``, twice that, ... plus up to half a ``backoff`` of jitter in between.
    Every method is safe to repeat: the only POST is the login."""
    return RetryPolicy(
        max_attempts=attempts,
        backoff_factor=backoff,
        backoff_jitter=backoff / 2,
        backoff_max=max_inline_wait,
        max_inline_wait=max_inline_wait,
        retry_statuses=frozenset({408, 429}) | SERVER_ERRORS,
        unsafe_methods=frozenset(),
    )


class TeleMessageClient:
    """Lists archived records and streams attachments from TeleMessage over HTTPS.

    Thread-safe: one instance (and its connection pool and token) can serve every worker.
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        source_types: Sequence[str] = DEFAULT_SOURCE_TYPES,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_inline_wait: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.5,
        max_resumes: int = 3,
        chunk_size: int = 64 * 1024,
        clock: Callable[[], float] = time.monotonic,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        """``attempts``, ``backoff`` and ``max_inline_wait`` make ``telemessage_retry_policy``;
        ``retry_policy`` replaces it whole. A download resumes at most ``max_resumes`` times."""
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not source_types:
            raise ValueError("at least one source type is needed")
        self._base = urlunsplit(checked_base_url(base_url, "TELEMESSAGE_BASE_URL")).rstrip("/")
        self._username = username
        self._password = password
        self._source_types = tuple(source_types)
        self._timeout = httpx.Timeout(timeout)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=self._timeout, follow_redirects=False)
        self._sleep = sleep
        self._retry = retry_policy or telemessage_retry_policy(attempts, backoff, max_inline_wait)
        self._resume_retry = replace(self._retry, max_attempts=max_resumes + 1)
        self._chunk_size = chunk_size
        self._clock = clock
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_expires_at = 0.0

    def __repr__(self) -> str:
        return f"TeleMessageClient({self._base!r}, user={self._username!r})"

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> TeleMessageClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- ArchiveSource -----------------------------------------------------------------------
    def list_page(self, window: Window, page_token: str | None, page_size: int) -> ListingPage:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
        params = {
            "from": isoformat_z(window.start),
            "to": isoformat_z(window.end),
            "sourceTypes": ",".join(self._source_types),
            "pageSize": str(page_size),
        }
        if page_token:
            params["pageToken"] = page_token
        what = f"listing of window {window.id}"
        response = self._call("GET", ITEMS_PATH, what, params=params)
        if response.status_code == 400 and _error_code(response) == "invalid_window":
            raise ConfigurationError(
                f"TeleMessage rejected window {window.id} ({params['from']} to {params['to']}) as "
                "invalid_window: 'to' must be after 'from' and the window at most 31 days long"
            )
        if response.status_code != 200:
            raise _unexpected(response, what)
        try:
            body = response.json()
        except (ValueError, RecursionError):
            # RecursionError: nesting deeper than the JSON parser goes. Not ours to fix, so the page
            # is retried like any malformed page and ends in listing-poison, kept for a human.
            raise TransientError(f"malformed listing page for window {window.id}: not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise TransientError(
                f"malformed listing page for window {window.id}: expected an object with an 'items' list"
            )
        next_token = body.get("nextPageToken")
        if next_token is not None and not isinstance(next_token, str):
            raise TransientError(
                f"malformed listing page for window {window.id}: nextPageToken is not a string"
            )
        items = body["items"]
        logger.info(
            "TeleMessage listed %d items for window %s (%s)",
            len(items), window.id, "more pages" if next_token else "last page",
        )
        return ListingPage(items=items, next_page_token=next_token or None)

    def open_attachment(self, attachment_id: str) -> AttachmentStream | None:
        if attachment_id.strip(".") == "" or not attachment_id.isprintable():
            # quote() leaves "." and ".." as they are, and the URL would then resolve to the parent
            # path: a record's attachment id must name an attachment, nothing else on the server.
            raise PermanentError(PoisonReason.INVALID_ITEM, "an attachment id is empty, dots only or unprintable")
        path = ATTACHMENT_PATH.format(attachment_id=quote(attachment_id, safe=""))
        what = f"download of attachment {attachment_id}"
        response = self._call("GET", path, what, headers=_IDENTITY, stream=True)
        if response.status_code == 404:
            _discard(response)
            logger.info("TeleMessage has no media for attachment %s (never captured)", attachment_id)
            return None
        if response.status_code != 200:
            error = _unexpected(response, what)
            _discard(response)
            raise error
        return AttachmentStream(self, path, attachment_id, response)

    # -- plumbing ----------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        stream: bool = False,
        authenticated: bool = True,
    ) -> httpx.Response:
        """One logical request: retries what is safe to retry, refreshes an expired token once.

        Returns the response for any status the caller must interpret (2xx, 4xx other than 401,
        408 and 429); what is retried, and how often, is ``telemessage_retry_policy``'s call.
        For ``stream=True`` the body is not read yet and the caller must close it.
        """
        retry = self._retry
        refreshed = False
        while True:
            request_headers = dict(headers or {})
            token = None
            if authenticated:
                token = self._current_token()
                request_headers["Authorization"] = f"Bearer {token}"
            try:
                request = self._http.build_request(
                    method, self._base + path, params=params, headers=request_headers, json=json,
                    timeout=self._timeout,
                )
                # Per request too, so that an ``http`` client built to follow redirects does not.
                response = self._http.send(request, stream=stream, follow_redirects=False)
            except httpx.TransportError as exc:
                retry = self._pause_or_give_up(retry, method, what, type(exc).__name__, cause=exc)
                continue
            status = response.status_code
            if 300 <= status < 400:
                _discard(response)
                # The Location is not quoted: it may carry anything, a token included.
                raise ConfigurationError(
                    f"TeleMessage {what}: answered HTTP {status}, a redirect, which is never followed with "
                    "credentials; set TELEMESSAGE_BASE_URL to the address the API is served on"
                )
            if authenticated and status == 401:
                _discard(response)
                if refreshed:
                    raise ConfigurationError(f"TeleMessage {what}: a freshly issued token was refused (401)")
                refreshed = True
                logger.info("TeleMessage token refused during %s; fetching a new one", what)
                self._forget_token(token)
                continue
            if status in retry.retry_statuses:
                retry_after = response.headers.get("Retry-After")
                _discard(response)
                reason = "rate limited (429)" if status == 429 else f"HTTP {status}"
                retry = self._pause_or_give_up(retry, method, what, reason, status=status, retry_after=retry_after)
                continue
            return response

    def _pause_or_give_up(
        self,
        retry: RetryPolicy,
        method: str,
        what: str,
        reason: str,
        *,
        status: int | None = None,
        retry_after: str | None = None,
        cause: Exception | None = None,
    ) -> RetryPolicy:
        """Sleeps before the next attempt and returns the policy's next state, or raises the
        TransientError that ends the request."""
        decision = retry.after_failure(method=method, status=status, retry_after_header=retry_after)
        if decision.verdict is Verdict.WAIT_TOO_LONG:
            # Sleeping here would hold a worker hostage; let the queue redeliver later.
            raise TransientError(
                f"TeleMessage {what}: {reason}, retry after {decision.wait:g}s", retry_after=decision.wait
            ) from cause
        if not decision.retry:
            # Still rate limited: come back no sooner than the next attempt would have. Any other
            # failure carries the server's Retry-After if it named one, else the host retries.
            hint = decision.wait if status == 429 else decision.retry_after
            raise TransientError(
                f"TeleMessage {what}: {reason} after {decision.policy.failures} attempts", retry_after=hint
            ) from cause
        logger.warning("TeleMessage %s: %s (attempt %d of %d), retrying in %.2fs",
                       what, reason, decision.policy.failures, retry.max_attempts, decision.wait)
        self._sleep(decision.wait)
        return decision.policy

    def _current_token(self) -> str:
        with self._token_lock:
            if self._token is not None and self._clock() < self._token_expires_at:
                return self._token
            self._token = None
            requested_at = self._clock()
            token, expires_in = self._fetch_token()
            # Renew a little early so a token never expires between our check and TeleMessage's.
            self._token_expires_at = requested_at + expires_in - min(60.0, expires_in / 10)
            self._token = token
            return token

    def _forget_token(self, token: str | None) -> None:
        with self._token_lock:
            # Another thread may already have replaced it; do not throw away its fresh token.
            if self._token == token:
                self._token = None

    def _fetch_token(self) -> tuple[str, float]:
        what = "login"
        response = self._call(
            "POST", TOKEN_PATH, what, json={"username": self._username, "password": self._password},
            authenticated=False,
        )
        if response.status_code == 401:
            raise ConfigurationError(
                "TeleMessage refused the configured username or password (invalid_credentials)"
            )
        if response.status_code != 200:
            raise _unexpected(response, what)
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("accessToken") if isinstance(body, dict) else None
        expires_in = body.get("expiresIn") if isinstance(body, dict) else None
        if (
            not isinstance(token, str) or not token
            or isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0
        ):
            raise TransientError("TeleMessage login answered 200 without a usable accessToken/expiresIn")
        logger.info("TeleMessage login succeeded; token valid for %ss", expires_in)
        return token, float(expires_in)


class AttachmentStream(Iterator[bytes]):
    """An attachment's bytes in chunks, resuming with ``Range`` when the connection drops.

    Close it (or use it as a context manager) if you stop before the end, so the connection goes
    back to the pool.
    """

    def __init__(self, client: TeleMessageClient, path: str, attachment_id: str, response: httpx.Response):
        self._client = client
        self._path = path
        self._attachment_id = attachment_id
        self._response = response
        self._total = _content_length(response)
        self._received = 0
        self._skip = 0
        self._retry = client._resume_retry  # counts the resumes
        self._closed = False
        self._chunks = self._generate()

    @property
    def size(self) -> int | None:
        """The size TeleMessage announced, when it did."""
        return self._total

    @property
    def resumes(self) -> int:
        return self._retry.failures

    def __iter__(self) -> AttachmentStream:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._chunks.close()
            self._response.close()

    def __enter__(self) -> AttachmentStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Nothing sensible can be done about a failed close during garbage collection.
        with contextlib.suppress(Exception):
            self.close()

    def _generate(self) -> Generator[bytes]:
        try:
            while True:
                try:
                    for chunk in self._response.iter_bytes(self._client._chunk_size):
                        if self._skip:
                            dropped = min(self._skip, len(chunk))
                            self._skip -= dropped
                            chunk = chunk[dropped:]
                            if not chunk:
                                continue
                        self._received += len(chunk)
                        yield chunk
                except httpx.TransportError as exc:
                    reason = type(exc).__name__
                else:
                    if self._total is None or self._received >= self._total:
                        return
                    reason = "body ended early"
                self._response.close()
                if not self._resume(reason):
                    return
        finally:
            self._response.close()

    def _resume(self, reason: str) -> bool:
        """Reopen the download at the first missing byte; False when nothing is left to fetch."""
        client = self._client
        where = f"attachment {self._attachment_id}"
        decision = self._retry.after_failure(method="GET")
        self._retry = decision.policy
        if not decision.retry:
            raise TransientError(
                f"TeleMessage download of {where}: connection lost {self.resumes} times "
                f"({reason}); got {self._received} of {self._total if self._total is not None else '?'} bytes"
            )
        logger.warning("TeleMessage download of %s interrupted (%s) at byte %d; resuming in %.2fs",
                       where, reason, self._received, decision.wait)
        client._sleep(decision.wait)
        headers = {**_IDENTITY, "Range": f"bytes={self._received}-"}
        response = client._call("GET", self._path, f"resumed download of {where}", headers=headers,
                                stream=True)
        status = response.status_code
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != self._received:
                _discard(response)
                raise TransientError(f"TeleMessage download of {where}: resumed at the wrong offset")
            if match.group(3) != "*":
                self._total = int(match.group(3))
            self._skip = 0
        elif status == 200:
            # The server ignored Range and starts over: drop what we already passed on.
            self._total = _content_length(response)
            self._skip = self._received
        elif status == 416 and self._total is not None and self._received >= self._total:
            _discard(response)
            return False
        else:
            _discard(response)
            raise TransientError(f"TeleMessage download of {where}: HTTP {status} when resuming")
        self._response = response
        return True


_IDENTITY = {"Accept-Encoding": "identity"}  # Range offsets must count the bytes as stored


def _discard(response: httpx.Response) -> None:
    """Finish with a response we will not use, keeping its connection reusable when cheap."""
    try:
        response.read()
    except httpx.HTTPError:
        pass
    finally:
        response.close()


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


def _error_code(response: httpx.Response) -> str | None:
    """The ``error`` code of an error body, only when it looks like a code (never echo free text)."""
    try:
        response.read()
        body = response.json()
    except (ValueError, httpx.HTTPError, httpx.StreamError):
        return None
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.match(code) else None


def _unexpected(response: httpx.Response, what: str) -> ConfigurationError:
    code = _error_code(response)
    detail = f" ({code})" if code else ""
    return ConfigurationError(f"TeleMessage {what}: unexpected HTTP {response.status_code}{detail}")
