"""Builds the Microsoft Graph client, the event loop the synchronous adapters run it on, and the
per-mailbox request gate they share.

Cold starts: ``msgraph`` takes about half a second to import and ``azure.identity`` a good part
of that again, so both are imported inside the functions below, never when this module is
imported. The function app can import the adapters eagerly and pay for the SDK only on the first
Graph call.

National clouds: one row of ``CLOUDS`` picks the Graph host, the token scope, the sign-in
authority and the hosts upload sessions may point at together; mixing them (a GCC High token for
graph.microsoft.com) fails at run time with a 401, so they are never configured separately.

Where credentials go: the token only ever to the cloud's Graph host (or, for tests, to the
loopback server ``base_url`` names); a link out of an answer (``@odata.nextLink``) only when it
stays on that same server (``checked_graph_link``); an upload URL only to the cloud's Exchange
hosts (``checked_upload_url``); and no redirect is ever followed (``refuse_redirects_class``).

Credentials (``build_graph_client``), in this order:

- ``access_token``: a fixed bearer token, only for a loopback ``base_url`` (test servers);
- ``credential``: any object with ``get_token(*scopes, **kw)`` (tests, custom chains);
- an app registration: ``tenant_id`` + ``client_id`` + either ``client_secret`` or a certificate,
  given as ``certificate_path`` or as ``certificate_data``: PEM text, or the base64 text of a PFX
  (what a Key Vault reference app setting to a certificate's secret delivers), or raw bytes;
- a managed identity: ``managed_identity=True`` (system-assigned) or
  ``managed_identity_client_id`` (user-assigned);
- nothing of the above: ``DefaultAzureCredential`` (developer machines).

Retries: kiota's RetryHandler would sleep inside the request for any ``Retry-After`` below 180 s,
three times over: up to nine minutes blocked in one write while the queue message's visibility
timeout runs out. The client built here uses ``BoundedRetryHandler`` instead, which takes every
decision from ``graph_retry_policy`` (a ``RetryPolicy``, retry_policy.py): at most ``max_retries``
quick retries, only when the wait is at most ``retry_max_wait_seconds`` (the ``Retry-After`` when
Graph sends one, else a short exponential backoff with jitter); longer waits come back as the
429/503/504 response, which the adapters turn into ``TransientError(retry_after=...)`` at once so
the queue, not a sleeping worker, does the waiting. A POST is retried only on 429 (throttled
requests were not executed); a 503/504 on a POST may have created the item, and the next
attempt's idempotency lookup is the safe way to find out.

Concurrency: Exchange allows 4 concurrent requests per app and mailbox. ``MailboxGate`` keeps
every Graph request of this process (all clients, all loops, upload PUTs included) within that,
per mailbox.

Event loop: the SDK is async, the service layer is not. ``GraphLoop`` runs one event loop on a
daemon thread per client, shared by every adapter that uses the client: httpx's connection pool
belongs to the loop it was first used on, so two adapters with their own loops on one client
would break each other's connections. Any number of worker threads may call in at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import importlib.util
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from shared.adapters.retry_policy import THROTTLING_STATUSES, RetryDecision, RetryPolicy, parse_retry_after
from shared.adapters.urls import checked_base_url, has_userinfo, is_loopback_host, origin, split_url
from shared.domain.errors import ConfigurationError, PermanentError, PoisonReason

if TYPE_CHECKING:
    import httpx
    from azure.core.credentials import AccessToken
    from msgraph.graph_service_client import GraphServiceClient

T = TypeVar("T")

DEFAULT_MAX_RETRIES = 2
DEFAULT_RETRY_MAX_WAIT_SECONDS = 5.0
# kiota's defaults (100 s per request, 30 s to connect): a create with 3 MB of inline attachments
# can take a while on a slow link, and a shorter timeout would turn it into a duplicate-check retry.
REQUEST_TIMEOUT_SECONDS = 100.0
CONNECT_TIMEOUT_SECONDS = 30.0
# Exchange Online: 4 concurrent requests per app and mailbox.
MAX_CONCURRENT_REQUESTS_PER_MAILBOX = 4


@dataclass(frozen=True)
class GraphCloud:
    name: str
    graph_host: str  # https://...
    authority_host: str  # host name only, as azure-identity wants it
    # Host names only. Graph's upload sessions hand out a URL on the cloud's Exchange Online host
    # (the old Outlook REST endpoint), not on the Graph host; the URL carries its own token.
    upload_hosts: tuple[str, ...]

    @property
    def scope(self) -> str:
        return f"{self.graph_host}/.default"

    @property
    def base_url(self) -> str:
        return f"{self.graph_host}/v1.0"


# Upload hosts, from Microsoft's own pages:
# - global: the uploadUrl of the example on learn.microsoft.com/graph/api/attachment-createuploadsession
#   is on outlook.office.com; answers seen in the field use outlook.office365.com
#   (microsoftgraph/microsoft-graph-docs-contrib issue #8880); "Microsoft 365 URLs and IP address
#   ranges", Exchange Online ID 1, serves it on outlook.cloud.microsoft, outlook.office.com and
#   outlook.office365.com;
# - GCC High: outlook.office365.us ("Microsoft 365 U.S. Government GCC High endpoints", Exchange ID 1);
# - DoD: outlook-dod.office365.us and webmail.apps.mil ("Microsoft 365 U.S. Government DoD endpoints",
#   Exchange ID 1);
# - 21Vianet: partner.outlook.cn ("API endpoints of Office 365 operated by 21Vianet", Mail API).
# Graph's national-cloud table marks createUploadSession unavailable in US Government L4/L5; the
# hosts are listed there all the same, so that a session Graph does grant is not refused here.
_GLOBAL = GraphCloud(
    "global", "https://graph.microsoft.com", "login.microsoftonline.com",
    ("outlook.office.com", "outlook.office365.com", "outlook.cloud.microsoft"),
)
_USGOV = GraphCloud("usgov", "https://graph.microsoft.us", "login.microsoftonline.us", ("outlook.office365.us",))
_DOD = GraphCloud(
    "dod", "https://dod-graph.microsoft.us", "login.microsoftonline.us",
    ("outlook-dod.office365.us", "webmail.apps.mil"),
)
_CHINA = GraphCloud(
    "china", "https://microsoftgraph.chinacloudapi.cn", "login.chinacloudapi.cn", ("partner.outlook.cn",)
)

CLOUDS: dict[str, GraphCloud] = {
    "global": _GLOBAL,
    "gcc": _GLOBAL,  # GCC (moderate) runs on the commercial Graph endpoint
    "usgov": _USGOV,
    "gcchigh": _USGOV,
    "dod": _DOD,
    "china": _CHINA,
}


def resolve_cloud(cloud: str) -> GraphCloud:
    key = cloud.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    try:
        return CLOUDS[key]
    except KeyError:
        raise ConfigurationError(
            f"unknown Graph cloud {cloud!r}; expected one of {', '.join(sorted(CLOUDS))}"
        ) from None


class StaticTokenCredential:
    """Serves one fixed bearer token. Only for loopback test servers: it never expires or refreshes."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)

    def close(self) -> None:
        return None


class ThreadedCredential:
    """Runs a synchronous azure-identity credential's ``get_token`` on a worker thread.

    kiota awaits whatever ``get_token`` returns when it is awaitable. Called directly, a token
    refresh (an IMDS or Entra round trip, sometimes seconds on a cold start) would stall every
    Graph call in flight on the shared loop; on a thread it stalls only the request that needs it.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def get_token(self, *scopes: str, **kwargs: Any) -> Coroutine[Any, Any, AccessToken]:
        return asyncio.to_thread(self.inner.get_token, *scopes, **kwargs)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True)
class GraphClientInfo:
    """What a built client talks to and how it signs in (no secrets): for logs and tests."""

    cloud: str
    base_url: str
    scope: str
    authority_host: str
    credential_kind: str  # static_token | custom | client_secret | certificate | managed_identity | default


_CLIENT_INFO: weakref.WeakKeyDictionary[Any, GraphClientInfo] = weakref.WeakKeyDictionary()


def graph_client_info(client: Any) -> GraphClientInfo:
    """The settings ``client`` was built with; KeyError for a client not built here."""
    return _CLIENT_INFO[client]


def checked_graph_link(link: str, base_url: str) -> str:
    """``link`` (an ``@odata.nextLink`` out of Graph's answer) when following it keeps the token
    on the client's own Graph: an absolute URL with the scheme, host and port of ``base_url``, a
    path under its path and no userinfo. It comes back rebuilt on ``base_url``'s own scheme and
    authority, so what is sent is exactly what was checked.

    Anything else is a ``PermanentError(INVALID_ITEM)``, raised before any request: Graph handing
    out a link to another server is not something a retry fixes. A caller whose failure would
    poison records that are not at fault turns it into a ``TransientError``.
    """
    base = split_url(base_url)
    parts = split_url(link) if isinstance(link, str) else None
    if base is None or parts is None:
        why = "not an absolute http(s) URL"
    elif has_userinfo(parts):
        why = "it carries userinfo"
    elif origin(parts) != origin(base):
        why = "another scheme, host or port"
    elif not _under(parts.path, base.path):
        why = "a path outside the API version"
    else:
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
    # The link itself is not quoted: it names users and carries Graph's paging tokens.
    raise PermanentError(PoisonReason.INVALID_ITEM, f"graph answered with a page link not followed ({why})")


def checked_upload_url(url: str, base_url: str, cloud: str) -> str:
    """``url`` (an upload session's ``uploadUrl``) when it is https on one of ``cloud``'s Exchange
    hosts (``GraphCloud.upload_hosts``) or, for a client on a loopback test server, on that very
    server. The PUTs carry no Authorization header, but they do carry the attachment: a foreign
    upload URL is refused like a foreign page link, a ``PermanentError(INVALID_ITEM)``.
    """
    parts = split_url(url)
    base = split_url(base_url)
    if parts is None or has_userinfo(parts):
        why = "not an absolute http(s) URL without userinfo"
    elif base is not None and is_loopback_host(base.hostname):
        if origin(parts) == origin(base):
            return url
        why = "not on the loopback Graph server"
    elif origin(parts) in {("https", host, 443) for host in resolve_cloud(cloud).upload_hosts}:
        return url
    else:
        why = f"not https on an Exchange host of the {resolve_cloud(cloud).name} cloud"
    # The URL is not quoted: it embeds the session's own token.
    raise PermanentError(PoisonReason.INVALID_ITEM, f"graph answered with an upload URL not used ({why})")


def _under(path: str, base_path: str) -> bool:
    """``path`` is below ``base_path`` without leaving it through dot segments."""
    prefix = base_path.rstrip("/") + "/"
    return path.startswith(prefix) and not any(unquote(s) in (".", "..") for s in path.split("/"))


def build_graph_client(
    *,
    cloud: str = "global",
    base_url: str | None = None,
    access_token: str | None = None,
    credential: Any = None,
    managed_identity: bool = False,
    managed_identity_client_id: str | None = None,
    tenant_id: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    certificate_path: str | None = None,
    certificate_data: str | bytes | None = None,
    certificate_password: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    retry_max_wait_seconds: float = DEFAULT_RETRY_MAX_WAIT_SECONDS,
) -> GraphServiceClient:
    """A ``GraphServiceClient`` for one national cloud, with bounded retries (see module docstring).

    ``base_url`` (including the version segment, e.g. ``http://127.0.0.1:8123/v1.0``) is either a
    loopback Graph-compatible test server or the cloud's own Graph host (e.g.
    ``https://graph.microsoft.us/v1.0`` for ``usgov``); any other host is refused, since the token
    goes wherever the base URL points. The token scope stays the cloud's. A static ``access_token``
    is accepted only together with a loopback ``base_url``: it has no place in front of the real
    Graph.
    """
    target = resolve_cloud(cloud)
    parts = checked_base_url(base_url or target.base_url, "GRAPH_BASE_URL")
    base = urlunsplit(parts).rstrip("/")
    loopback = is_loopback_host(parts.hostname)
    graph_host = urlsplit(target.graph_host).hostname or ""
    if not loopback and origin(parts) != ("https", graph_host, 443):
        raise ConfigurationError(
            f"GRAPH_BASE_URL must be on {graph_host}, the Graph host of the {target.name} cloud, or on "
            "a loopback test server: the Graph token goes nowhere else"
        )
    if not 0 <= max_retries <= 10:
        raise ConfigurationError("max_retries must be between 0 and 10")
    if not 0 <= retry_max_wait_seconds <= 60:
        raise ConfigurationError("retry_max_wait_seconds must be between 0 and 60")

    if access_token is not None:
        if not loopback:
            raise ConfigurationError("a static access token is only allowed with a loopback base_url")
        if not access_token:
            raise ConfigurationError("access_token is empty")
        if credential is not None:
            raise ConfigurationError("give either access_token or credential, not both")
        kind, token_source = "static_token", StaticTokenCredential(access_token)
    elif credential is not None:
        kind, token_source = "custom", credential
    else:
        kind, identity = azure_credential(
            target,
            managed_identity=managed_identity,
            managed_identity_client_id=managed_identity_client_id,
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            certificate_path=certificate_path,
            certificate_data=certificate_data,
            certificate_password=certificate_password,
        )
        token_source = ThreadedCredential(identity)

    scopes = [target.scope]
    # kiota reads an empty list as "any host": name the one host this client is built for.
    allowed_hosts = [parts.hostname or graph_host]
    client = _assemble_client(token_source, base, scopes, allowed_hosts, max_retries, retry_max_wait_seconds)
    _CLIENT_INFO[client] = GraphClientInfo(target.name, base, target.scope, target.authority_host, kind)
    return client


def azure_credential(
    target: GraphCloud,
    *,
    managed_identity: bool = False,
    managed_identity_client_id: str | None = None,
    tenant_id: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    certificate_path: str | None = None,
    certificate_data: str | bytes | None = None,
    certificate_password: str | None = None,
) -> tuple[str, Any]:
    """(kind, azure-identity credential) for ``target``'s authority; see the module docstring.

    Nothing here contacts Entra ID: a wrong secret shows on the first token request, a certificate
    that cannot be read right here as a ConfigurationError.
    """
    from azure.identity import (
        CertificateCredential,
        ClientSecretCredential,
        DefaultAzureCredential,
        ManagedIdentityCredential,
    )

    certificate_given = bool(certificate_path) or bool(certificate_data)
    app_registration = bool(client_secret) or certificate_given
    if (managed_identity or managed_identity_client_id) and app_registration:
        raise ConfigurationError("configure either a managed identity or an app registration, not both")
    if managed_identity or managed_identity_client_id:
        # IMDS issues the token; the authority only matters for app registrations.
        return "managed_identity", ManagedIdentityCredential(client_id=managed_identity_client_id or None)
    if app_registration:
        if not (tenant_id and client_id):
            raise ConfigurationError("an app registration needs both tenant_id and client_id")
        if certificate_path and certificate_data:
            raise ConfigurationError("give the certificate either as a path or as data, not both")
        if certificate_given:
            # A certificate wins over a secret left behind in the settings: it is the stronger one.
            options: dict[str, Any] = {"authority": target.authority_host}
            if certificate_password:
                options["password"] = certificate_password
            if certificate_data:
                options["certificate_data"] = certificate_bytes(certificate_data)
            try:
                return "certificate", CertificateCredential(
                    tenant_id, client_id, certificate_path=certificate_path or None, **options
                )
            except (ValueError, TypeError, OSError) as exc:
                # The library's message may describe the file; name only what went wrong.
                raise ConfigurationError(
                    f"the app registration's certificate cannot be loaded ({type(exc).__name__}): "
                    "expected PEM or PFX with its RSA private key, and the right password"
                ) from None
        return "client_secret", ClientSecretCredential(
            tenant_id, client_id, client_secret or "", authority=target.authority_host
        )
    if tenant_id or client_id:
        raise ConfigurationError(
            "tenant_id/client_id given without client_secret or a certificate; "
            "use managed_identity_client_id for a user-assigned managed identity"
        )
    return "default", DefaultAzureCredential(authority=target.authority_host)


def certificate_bytes(value: str | bytes) -> bytes:
    """PEM or PKCS#12 bytes from what a setting holds.

    Accepted: PEM text (certificate and private key; ``\\n`` escapes are unfolded when the text has
    no real line breaks), the base64 text of a PFX (what a Key Vault reference to a certificate's
    secret delivers), or the bytes of either file.
    """
    if isinstance(value, str):
        text = value.strip()
        if "-----BEGIN" in text:
            if "\n" not in text and "\\n" in text:
                text = text.replace("\\n", "\n")
            return text.encode("ascii", errors="strict")
        data = _b64(text.encode("ascii", errors="ignore"))
    else:
        raw = bytes(value)
        if b"-----BEGIN" in raw:
            return raw
        if raw[:1] == b"\x30":  # DER: a PFX file's own bytes
            return raw
        data = _b64(raw)
    if data is None or not data:
        raise ConfigurationError("the certificate setting is neither PEM text nor base64 of a PFX")
    return data


def _b64(text: bytes) -> bytes | None:
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _assemble_client(
    credential: Any,
    base: str,
    scopes: list[str],
    allowed_hosts: list[str],
    max_retries: int,
    retry_max_wait_seconds: float,
) -> GraphServiceClient:
    import httpx
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from kiota_http.kiota_client_factory import KiotaClientFactory
    from kiota_http.middleware import RedirectHandler, RetryHandler
    from kiota_http.middleware.options import RetryHandlerOption, UrlReplaceHandlerOption
    from kiota_http.observability_options import ObservabilityOptions
    from msgraph._version import VERSION
    from msgraph.graph_request_adapter import GraphRequestAdapter
    from msgraph.graph_service_client import GraphServiceClient
    from msgraph_core import APIVersion, GraphClientFactory
    from msgraph_core.middleware import GraphTelemetryHandler
    from msgraph_core.middleware.options import GraphTelemetryHandlerOption

    options: dict[str, Any] = {
        UrlReplaceHandlerOption.get_key(): UrlReplaceHandlerOption(
            enabled=True, replacement_pairs={"/users/me-token-to-replace": "/me"}
        ),
    }
    middleware = KiotaClientFactory.get_default_middleware(options)
    retry_option = RetryHandlerOption(delay=0.0, max_retries=max_retries)
    bounded = bounded_retry_handler_class()(
        retry_option, policy=graph_retry_policy(max_retries, retry_max_wait_seconds)
    )
    refuse = refuse_redirects_class()()
    middleware = [
        bounded if isinstance(m, RetryHandler) else refuse if isinstance(m, RedirectHandler) else m
        for m in middleware
    ]
    middleware.append(
        GraphTelemetryHandler(
            options=GraphTelemetryHandlerOption(api_version=APIVersion.v1, sdk_version=VERSION)
        )
    )

    _sniffio_known_absent()
    http_client = httpx.AsyncClient(
        base_url=base,
        timeout=httpx.Timeout(REQUEST_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
        http2=_h2_available(),
        follow_redirects=False,  # see refuse_redirects_class
    )
    http_client = GraphClientFactory.create_with_custom_middleware(middleware, client=http_client)
    auth = AzureIdentityAuthenticationProvider(credential, scopes=scopes, allowed_hosts=allowed_hosts)
    adapter = GraphRequestAdapter(auth, client=http_client)
    # kiota puts each request's full URL (``/users/{address}/...``) on its spans unless told not to.
    # shared.telemetry records no kiota span at all; this keeps addresses off them even under a
    # tracer provider configured some other way.
    adapter.observability_options = ObservabilityOptions(include_euii_attributes=False)
    # httpx appends a "/" to its base_url, which would give ".../v1.0//users": set it exactly.
    adapter.base_url = base
    client = GraphServiceClient(request_adapter=adapter)
    _HTTP_CLIENTS[client] = http_client
    return client


def _h2_available() -> bool:
    return importlib.util.find_spec("h2") is not None


@cache
def _sniffio_known_absent() -> None:
    """httpcore asks which async library runs with ``import sniffio`` on every lock and request,
    falling back to asyncio when the import fails. anyio 4.12 and later no longer install sniffio,
    and a failed import is not remembered: each one searched every directory of ``sys.path`` again,
    about 1 ms of CPU per Graph request (issue 16 item 6). When sniffio is not installed, say so in
    ``sys.modules`` once (the import then fails at once, as it would after the search); when it is,
    nothing changes."""
    import sys

    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def graph_retry_policy(
    max_retries: int = DEFAULT_MAX_RETRIES, max_wait_seconds: float = DEFAULT_RETRY_MAX_WAIT_SECONDS
) -> RetryPolicy:
    """The retries of a Graph request (see the module docstring): throttling and unavailability
    only, a POST on 429 only; 0.25 s, 0.5 s, 1 s ... plus up to 0.25 s of jitter between attempts,
    and no wait above ``max_wait_seconds`` slept inline."""
    return RetryPolicy(
        max_attempts=max_retries + 1,
        backoff_factor=0.25,
        backoff_jitter=0.25,
        backoff_max=max_wait_seconds,
        max_inline_wait=max_wait_seconds,
        retry_statuses=THROTTLING_STATUSES,
        unsafe_methods=frozenset({"POST"}),
        unsafe_retry_statuses=frozenset({429}),
    )


@cache
def bounded_retry_handler_class() -> type:
    """kiota's RetryHandler with every decision taken by a ``RetryPolicy`` (see the module docstring).

    kiota keeps the loop, the count of attempts (its ``Retry-Attempt`` header) and its refusal to
    resend a body it cannot rewind (octet streams); whether to retry and how long to wait are the
    policy's. Built on first use so importing this module does not import kiota.
    """
    from kiota_http.middleware import RetryHandler
    from kiota_http.middleware.retry_handler import RETRY_ATTEMPT

    class BoundedRetryHandler(RetryHandler):  # type: ignore[misc,valid-type]
        def __init__(self, options: Any = None, *, policy: RetryPolicy) -> None:
            super().__init__(options)
            self.policy = policy
            self.retry_on_status_codes = set(policy.retry_statuses)

        def _decision(self, retry_count: int, response: Any) -> RetryDecision:
            return self.policy.at(retry_count).after_failure(
                method=response.request.method,
                status=response.status_code,
                retry_after_header=response.headers.get("Retry-After"),
            )

        def check_retry_valid(self, retry_count: int, options: Any) -> bool:
            return True  # the policy counts the attempts (should_retry)

        def should_retry(self, request: Any, options: Any, response: Any) -> bool:
            # Every response of the chain passes here once: the place to count Graph's throttling,
            # whether it is retried here or handed back to the queue as TransientError.
            if response.status_code in THROTTLING_STATUSES:
                from shared import telemetry

                telemetry.count_graph_throttled(response.status_code)
            if not super().should_retry(request, options, response):
                return False
            retry_count = int(response.request.headers.get(RETRY_ATTEMPT, 0))
            return self._decision(retry_count, response).retry

        def get_delay_time(self, retry_count: int, response: Any = None, delay: float = 0.0) -> float:
            if response is None:
                return self.policy.at(retry_count + 1).next_wait()
            return self._decision(retry_count, response).wait

    return BoundedRetryHandler


@cache
def refuse_redirects_class() -> type:
    """A middleware that ends every 3xx answer as an ``APIError`` instead of following it.

    It takes the place of kiota's RedirectHandler, which follows up to five redirects: it drops the
    Authorization header only when the scheme, host or port changes, so a redirect elsewhere on
    the Graph host still carries the token; a 307/308 to another host re-sends the body (mail
    content) there; and the hop is made whatever the new host is. Left alone (no handler at all),
    kiota would read a 3xx that has a Location as a success with an empty answer: a lookup would
    look like "not found". Graph's v1.0 API answers none of our calls with a redirect, so one
    means something in between (a proxy, a wrong GRAPH_BASE_URL) that an operator must look at;
    ``translate_common`` says so.
    """
    from kiota_abstractions.api_error import APIError
    from kiota_http.middleware.middleware import BaseMiddleware

    class RefuseRedirects(BaseMiddleware):  # type: ignore[misc,valid-type]
        async def send(self, request: Any, transport: Any) -> Any:
            response = await super().send(request, transport)
            if 300 <= response.status_code < 400:
                await response.aclose()
                raise APIError(
                    f"graph answered {response.status_code}: redirects are not followed",
                    response.status_code,
                    dict(response.headers),
                )
            return response

    return RefuseRedirects


# ---------------------------------------------------------------------------------------------
# At most 4 requests in flight per mailbox, process-wide.


class MailboxGate:
    """A per-mailbox counting semaphore shared by every event loop of the process.

    ``asyncio.Semaphore`` belongs to one loop; this one hands slots across loops (each client has
    its own ``GraphLoop``), so two clients in one process still stay within Exchange's limit of
    concurrent requests per app and mailbox. Waiters are served in arrival order. Hold a slot for
    one request only, never across a sleep or another acquisition.
    """

    def __init__(self, limit: int = MAX_CONCURRENT_REQUESTS_PER_MAILBOX) -> None:
        if limit < 1:
            raise ConfigurationError("the concurrent request limit per mailbox must be at least 1")
        self.limit = limit
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}
        self._waiters: dict[str, deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}
        self._peak: dict[str, int] = {}

    @staticmethod
    def key(mailbox: str) -> str:
        return mailbox.strip().lower()

    @asynccontextmanager
    async def slot(self, mailbox: str) -> AsyncIterator[None]:
        key = self.key(mailbox)
        await self._acquire(key)
        try:
            yield
        finally:
            self._release(key)

    def in_flight(self, mailbox: str) -> int:
        with self._lock:
            return self._active.get(self.key(mailbox), 0)

    def peak(self, mailbox: str) -> int:
        """The most requests this gate ever let through at once for ``mailbox``."""
        with self._lock:
            return self._peak.get(self.key(mailbox), 0)

    async def _acquire(self, key: str) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._active.get(key, 0) < self.limit and not self._waiters.get(key):
                self._take(key)
                return
            future: asyncio.Future[None] = loop.create_future()
            entry = (loop, future)
            self._waiters.setdefault(key, deque()).append(entry)
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                queue = self._waiters.get(key)
                queued = queue is not None and entry in queue
                if queued:
                    queue.remove(entry)  # type: ignore[union-attr]
            if not queued and future.done() and not future.cancelled():
                self._release(key)  # the slot was handed over just before the cancellation
            # Otherwise a hand-over is under way and _grant passes the slot on.
            raise

    def _take(self, key: str) -> None:
        active = self._active.get(key, 0) + 1
        self._active[key] = active
        self._peak[key] = max(self._peak.get(key, 0), active)

    def _release(self, key: str) -> None:
        with self._lock:
            queue = self._waiters.get(key)
            while queue:
                loop, future = queue.popleft()
                if not queue:
                    del self._waiters[key]
                try:
                    # The slot passes to the waiter without the count ever dropping.
                    loop.call_soon_threadsafe(self._grant, key, future)
                    return
                except RuntimeError:  # that loop is closed: try the next waiter
                    continue
            active = self._active.get(key, 0) - 1
            if active > 0:
                self._active[key] = active
            else:
                self._active.pop(key, None)

    def _grant(self, key: str, future: asyncio.Future[None]) -> None:
        if future.done():  # cancelled while the hand-over was on its way
            self._release(key)
        else:
            future.set_result(None)


_PROCESS_GATE = MailboxGate()


def process_mailbox_gate() -> MailboxGate:
    """The gate every adapter of this process uses unless given its own (tests simulating processes)."""
    return _PROCESS_GATE


# ---------------------------------------------------------------------------------------------
# The event loop the synchronous adapters run the SDK on.

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


# ---------------------------------------------------------------------------------------------
# Turning Graph failures into the connector's error taxonomy.

# Error codes that mean "this user has no usable mailbox" (or is unknown). Graph is not
# consistent between them for the same user over time, so they are treated alike.
MAILBOX_MISSING_CODES = frozenset(
    {
        "MailboxNotEnabledForRESTAPI",
        "MailboxNotSupportedForRESTAPI",
        "ErrorInvalidUser",
        "ErrorNonExistentMailbox",
    }
)
# Codes for "no such object". On a /users/{id} call, or on a mail call addressed to the user
# before any item is involved, that object is the user.
USER_NOT_FOUND_CODES = frozenset({"Request_ResourceNotFound", "ResourceNotFound"})
# 403 with this code on a mail call: the app may not touch this mailbox (Exchange RBAC for
# Applications scope or an application access policy leaves it out). Missing Mail.ReadWrite
# consent gives the same answer for every mailbox: the service layer sees that as every mailbox
# unavailable at once.
ACCESS_DENIED_CODE = "ErrorAccessDenied"
ACCESS_DENIED_RETRY_SECONDS = 15 * 60
# Codes and message fragments of "this request or message is too big". Graph has answered an
# oversized request both as 413 and as 400 BadRequest "Maximum request length exceeded" /
# "The maximum request length supported is 4MB".
TOO_LARGE_CODES = frozenset(
    {
        "ErrorRequestEntityTooLarge",
        "RequestEntityTooLarge",
        "RequestBodyTooLarge",
        "ErrorMessageSizeExceeded",
        "ErrorAttachmentSizeExceeded",
    }
)
_TOO_LARGE_MESSAGES = ("maximum request length",)


@dataclass(frozen=True)
class GraphFailure:
    status: int | None
    code: str
    retry_after: float | None
    request_id: str
    too_large: bool = False  # from the code or Graph's message (the message itself is not kept)

    def describe(self, operation: str) -> str:
        """Status, code and request id only: Graph's messages can quote addresses and names."""
        text = f"graph {self.status} {self.code or 'no-code'} on {operation}"
        return f"{text} (request-id {self.request_id})" if self.request_id else text


def graph_failure(exc: BaseException) -> GraphFailure | None:
    """Status, error code and Retry-After of a kiota ``APIError``; None for any other exception."""
    from kiota_abstractions.api_error import APIError

    if not isinstance(exc, APIError):
        return None
    main_error = getattr(exc, "error", None)  # ODataError.error is a MainError
    code = str(getattr(main_error, "code", None) or "")
    message = str(getattr(main_error, "message", None) or "").lower()
    headers = exc.response_headers or {}
    status = exc.response_status_code
    return GraphFailure(
        status=status,
        code=code,
        retry_after=parse_retry_after(_header(headers, "Retry-After")),
        request_id=_header(headers, "request-id") or _header(headers, "client-request-id") or "",
        too_large=status == 413 or code in TOO_LARGE_CODES or any(m in message for m in _TOO_LARGE_MESSAGES),
    )


def _header(headers: Any, name: str) -> str | None:
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        lowered = name.lower()
        value = next((v for k, v in headers.items() if str(k).lower() == lowered), None)
    return None if value is None else str(value)


def translate_common(exc: BaseException, *, mailbox: str, operation: str) -> Exception | None:
    """The taxonomy error for failures every Graph call shares; None when ``exc`` is not one.

    Callers handle their operation-specific codes first (a 400 on the create, a missing folder).
    """
    from shared.domain.errors import (
        MailboxUnavailable,
        PermanentError,
        PoisonReason,
        TransientError,
    )

    failure = graph_failure(exc)
    if failure is None:
        return _translate_non_graph(exc, operation)
    if failure.code in MAILBOX_MISSING_CODES:
        return MailboxUnavailable(mailbox, failure.code)
    if failure.status == 403 and failure.code == ACCESS_DENIED_CODE:
        # One mailbox refused (Exchange RBAC for Applications scope). The directory already
        # answered "no mailbox" for mailboxes outside the scope, so reaching here means the scope
        # changed under us, and scope changes take a while to apply everywhere: come back much
        # later rather than drop this mailbox's copy (after the deferral cap the record poisons).
        return TransientError(failure.describe(operation), retry_after=ACCESS_DENIED_RETRY_SECONDS)
    if failure.code == "ErrorQuotaExceeded":
        # A full mailbox can take mail again once someone frees space; the queue retries it.
        return TransientError(failure.describe(operation), retry_after=failure.retry_after)
    status = failure.status
    if status is None or status in THROTTLING_STATUSES or status >= 500:
        return TransientError(failure.describe(operation), retry_after=failure.retry_after)
    if status in (401, 403):
        # A refused or expired token, missing consent for the whole API.
        return ConfigurationError(failure.describe(operation))
    if 300 <= status < 400:
        return ConfigurationError(f"{failure.describe(operation)}: a redirect, never followed with the token")
    if failure.too_large:
        return PermanentError(PoisonReason.TOO_BIG, failure.describe(operation))
    return PermanentError(PoisonReason.INVALID_ITEM, failure.describe(operation))


def _translate_non_graph(exc: BaseException, operation: str) -> Exception | None:
    import httpx
    from azure.core.exceptions import ClientAuthenticationError
    from kiota_authentication_azure._exceptions import HTTPError as KiotaAuthHTTPError

    from shared.domain.errors import TransientError

    if isinstance(exc, httpx.TransportError):
        return TransientError(f"graph unreachable on {operation}: {type(exc).__name__}")
    if isinstance(exc, ClientAuthenticationError):
        return ConfigurationError(f"no Graph token on {operation}: {type(exc).__name__}")
    if isinstance(exc, KiotaAuthHTTPError):
        return ConfigurationError(f"Graph token refused for this URL on {operation}")
    return None


def mailbox_ref(mailbox: str) -> str:
    """A stable, non-reversible short name for a mailbox in logs."""
    return hashlib.sha256(mailbox.strip().lower().encode("utf-8")).hexdigest()[:12]
