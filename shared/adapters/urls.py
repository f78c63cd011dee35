"""Where a URL points: the checks that decide whether a credential (or mail content) may travel to it.

Both the Graph and the TeleMessage adapters use these; this module imports neither adapter (only
the error taxonomy and the table of Graph clouds), so neither depends on the other. The Graph
checks: a link out of an answer (``@odata.nextLink``) is followed only on the client's own Graph
(``checked_graph_link``), an upload URL is used only on the cloud's Exchange hosts
(``checked_upload_url``).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from shared.adapters.graph_clouds import resolve_cloud
from shared.domain.errors import ConfigurationError, PermanentError, PoisonReason

DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_url(url: str) -> SplitResult | None:
    """``url`` split, when it is an absolute http(s) URL that parsers read alike; else None.

    Whitespace, control characters and backslashes are refused outright: parsers disagree about
    them (WHATWG parsers end the authority at a backslash, urllib does not), and a URL two parsers
    read differently can pass a host check in one and be sent elsewhere by the other.
    """
    if not url or any(c.isspace() or not c.isprintable() or c == "\\" for c in url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number below 65536
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts


def origin(parts: SplitResult) -> tuple[str, str, int]:
    """(scheme, host, port) with the scheme's default port filled in: what "the same server" means."""
    return parts.scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS[parts.scheme]


def has_userinfo(parts: SplitResult) -> bool:
    return "@" in parts.netloc


def checked_base_url(url: str, setting: str) -> SplitResult:
    """``url`` split, when credentials may be sent to it: an absolute http(s) URL, https unless it
    is a loopback test server, with neither userinfo nor query nor fragment.

    Anything else is a ConfigurationError naming ``setting``; the message never quotes the URL,
    which may hold a password.
    """
    parts = split_url(url.strip())
    if parts is None:
        raise ConfigurationError(f"{setting} must be an absolute https URL")
    if has_userinfo(parts):
        raise ConfigurationError(f"{setting} must not carry a user name or password")
    if parts.query or parts.fragment or url.strip().endswith(("?", "#")):
        raise ConfigurationError(f"{setting} must not carry a query or a fragment")
    if parts.scheme != "https" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(f"{setting} must use https (http only for a loopback test server)")
    return parts


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

