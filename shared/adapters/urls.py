"""Where a URL points: the checks that decide whether a credential may travel to it.

Both the Graph and the TeleMessage adapters use these; this module imports neither (only the
error taxonomy), so neither adapter depends on the other.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

from shared.domain.errors import ConfigurationError

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
