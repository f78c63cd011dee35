"""Builds the Microsoft Graph client (``build_graph_client``): one national cloud, one credential,
the bounded retries and refused redirects of graph_middleware, and a token that goes to the
cloud's Graph host only. docs/graph.md ("The Graph client") has the design.

``msgraph`` and ``azure.identity`` are imported inside the functions, never when this module is
imported: the function app can import the adapters eagerly and pay for the SDK only on the first
Graph call.
"""

from __future__ import annotations

import importlib.util
import weakref
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from shared.adapters.graph_clouds import resolve_cloud
from shared.adapters.graph_credentials import StaticTokenCredential, ThreadedCredential, azure_credential
from shared.adapters.graph_loop import own_http_client
from shared.adapters.graph_middleware import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_MAX_WAIT_SECONDS,
    bounded_retry_handler_class,
    graph_retry_policy,
    refuse_redirects_class,
)
from shared.adapters.urls import checked_base_url, is_loopback_host, origin
from shared.domain.errors import ConfigurationError

if TYPE_CHECKING:
    from msgraph.graph_service_client import GraphServiceClient


# kiota's defaults (100 s per request, 30 s to connect): a create with 3 MB of inline attachments
# can take a while on a slow link, and a shorter timeout would turn it into a duplicate-check retry.
REQUEST_TIMEOUT_SECONDS = 100.0
CONNECT_TIMEOUT_SECONDS = 30.0


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
    """A ``GraphServiceClient`` for one national cloud, with bounded retries (graph_middleware.py).

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
    own_http_client(client, http_client)
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

