"""Media of WhatsApp Business Platform webhooks, fetched from Meta's Graph API.

Two steps, both with the system user's bearer token: ``GET {base}/{version}/{media id}`` answers a
download URL (on Meta's media host, valid about five minutes), then that URL answers the bytes. A
media id from a webhook expires after seven days, so this runs right after the webhook arrives,
never at a daily run.

Where the token goes: only to the configured Graph host (``WHATSAPP_GRAPH_BASE_URL``: Meta's, or a
loopback stand-in for tests) and to Meta's media download host; a download URL anywhere else is
not fetched (the media then counts as not captured). Redirects are never followed.

What an answer means: an unknown or expired media id (Meta answers a Graph error, 400 or 404) is
media that cannot be captured any more: ``None``, and the message is archived saying so. A refused
token (401, 403) is a configuration error. Throttling and server errors are retried as the one
retry policy says, and past that handed back as ``TransientError`` for the queue to wait out.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import quote

import httpx

from shared.adapters.retry_policy import SERVER_ERRORS, THROTTLING_STATUSES, RetryPolicy
from shared.adapters.urls import checked_base_url, has_userinfo, is_loopback_host, origin, split_url
from shared.domain.errors import ConfigurationError, TransientError

log = logging.getLogger(__name__)

# Meta's media download host (the reference, §6). Exact host names, https only.
DOWNLOAD_HOSTS = ("lookaside.fbsbx.com",)
GRAPH_HOSTS = ("graph.facebook.com",)
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_CHUNK = 64 * 1024
DEFAULT_POLICY = RetryPolicy(max_attempts=3, retry_statuses=THROTTLING_STATUSES | SERVER_ERRORS)


@dataclass(frozen=True)
class MetaMedia:
    """What Meta says of a media id before the bytes are fetched."""

    media_id: str
    url: str
    mime_type: str | None
    sha256: str | None  # as Meta sent it: hex or base64
    file_size: int | None


class MetaMediaClient:
    """Thread-safe: one instance (and its connection pool) serves every worker."""

    def __init__(
        self, base_url: str, version: str, access_token: str, *, http: httpx.Client | None = None,
        policy: RetryPolicy = DEFAULT_POLICY, sleep: Callable[[float], None] = time.sleep,
        timeout: float = 30.0,
    ) -> None:
        parts = checked_base_url(base_url, "WHATSAPP_GRAPH_BASE_URL")
        if not is_loopback_host(parts.hostname) and (parts.hostname or "").lower() not in GRAPH_HOSTS:
            raise ConfigurationError("WHATSAPP_GRAPH_BASE_URL must be Meta's Graph host (or a loopback test server)")
        if not re.fullmatch(r"v[0-9]{1,3}\.0", version):
            raise ConfigurationError("WHATSAPP_GRAPH_VERSION must look like v26.0")
        if not access_token:
            raise ConfigurationError("WHATSAPP_ACCESS_TOKEN is not set: webhook media cannot be fetched")
        self._base = base_url.rstrip("/")
        self._base_parts = parts
        self._version = version
        self._token = access_token
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False)
        self._policy = policy
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"MetaMediaClient({self._base!r}, {self._version})"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> MetaMediaClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- the two steps ------------------------------------------------------------------------
    def describe(self, media_id: str) -> MetaMedia | None:
        """Meta's answer for a media id; None when Meta no longer knows it (expired or unknown)."""
        if not _MEDIA_ID.fullmatch(media_id):
            log.warning("webhook media id is not of Meta's form; not fetched")
            return None
        response = self._send("GET", f"{self._base}/{self._version}/{quote(media_id, safe='')}", "media lookup")
        try:
            if response.status_code in (400, 404):
                log.info("Meta no longer knows a media id (%d): not captured", response.status_code)
                return None
            data = response.json()
        except ValueError:
            raise TransientError("Meta's media lookup answered something that is not JSON") from None
        finally:
            response.close()
        url = data.get("url") if isinstance(data, dict) else None
        if not isinstance(url, str):
            raise TransientError("Meta's media lookup answered without a download URL")
        size = data.get("file_size")
        return MetaMedia(
            media_id, url, _text(data.get("mime_type")), _text(data.get("sha256")),
            int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
        )

    def open_media(self, media_id: str) -> Iterator[bytes] | None:
        """The media's bytes in chunks (never whole in memory), or None when they cannot be
        captured. A link that lapsed between the two steps is asked for again, once."""
        for attempt in (1, 2):
            media = self.describe(media_id)
            if media is None:
                return None
            if not self._download_allowed(media.url):
                log.warning("Meta answered a download URL off its media host; not fetched")
                return None
            response = self._send("GET", media.url, "media download", stream=True)
            if response.status_code == 404 and attempt == 1:
                response.close()
                continue  # the link expired: a fresh one
            if response.status_code != 200:
                response.close()
                log.info("Meta's media download answered %d: not captured", response.status_code)
                return None
            return _chunks(response)
        return None

    # -- plumbing ----------------------------------------------------------------------------
    def _download_allowed(self, url: str) -> bool:
        parts = split_url(url)
        if parts is None or has_userinfo(parts):
            return False
        if is_loopback_host(self._base_parts.hostname):
            return origin(parts) == origin(self._base_parts)  # the stand-in serves its own links
        return origin(parts) in {("https", host, 443) for host in DOWNLOAD_HOSTS}

    def _send(self, method: str, url: str, what: str, *, stream: bool = False) -> httpx.Response:
        policy = self._policy
        while True:
            status: int | None = None
            retry_after: str | None = None
            try:
                request = self._http.build_request(method, url, headers={
                    "Authorization": f"Bearer {self._token}", "User-Agent": "whatsapp-archiver"})
                response = self._http.send(request, stream=stream, follow_redirects=False)
            except httpx.TransportError as error:
                failure = type(error).__name__
            else:
                status = response.status_code
                if 300 <= status < 400:
                    response.close()
                    raise ConfigurationError(f"Meta {what} answered a redirect ({status}); not followed with the token")
                if status in (401, 403):
                    response.close()
                    raise ConfigurationError(f"Meta {what} refused the access token ({status})")
                if status not in policy.retry_statuses:
                    return response
                retry_after = response.headers.get("Retry-After")
                response.close()
                failure = f"status {status}"
            decision = policy.after_failure(method=method, status=status, retry_after_header=retry_after)
            if not decision.retry:
                raise TransientError(f"Meta {what} failed ({failure})", retry_after=decision.retry_after)
            policy = decision.policy
            self._sleep(decision.wait)


def _chunks(response: httpx.Response) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes(_CHUNK)
    except httpx.TransportError as error:
        raise TransientError(f"Meta's media download broke off ({type(error).__name__})") from None
    finally:
        response.close()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
