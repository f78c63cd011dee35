"""HTTP trigger routes as the host reads them: ``{param}``, ``{param?}``, ``{*catchall}`` and
``{param:constraint}`` under host.json's route prefix."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping

from shared.local.host_runner.errors import HostRunnerError

ROUTE_PARAM = re.compile(r"\{(\*{0,2})([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\?)?\}")


def parameter_count(route: str) -> int:
    return len(ROUTE_PARAM.findall(route))


def fill_route(route: str, route_params: Mapping[str, str], prefix: str) -> str:
    """The URL path (without a leading slash) of ``route`` with ``route_params`` filled in."""

    def value(match: re.Match[str]) -> str:
        name, optional = match.group(2), match.group(3)
        if name in route_params:
            return urllib.parse.quote(str(route_params[name]), safe="/" if match.group(1) else "")
        if optional:
            return ""
        raise HostRunnerError(f"route {route!r} needs route_params[{name!r}]")

    path = ROUTE_PARAM.sub(value, route).rstrip("/")
    return f"{prefix}/{path}" if prefix else path


def match_route(route: str, path: str, prefix: str) -> dict[str, str] | None:
    """The route parameters of the URL path ``path`` when ``route`` matches it, else None."""
    pattern, pos = "", 0
    for match in ROUTE_PARAM.finditer(route):
        literal = route[pos : match.start()]
        catch_all, name, optional = match.groups()
        part = f"(?P<{name}>{'.+' if catch_all else '[^/]+'})"
        if optional and literal.endswith("/"):
            pattern += re.escape(literal[:-1]) + f"(?:/{part})?"
        else:
            pattern += re.escape(literal) + (f"{part}?" if optional else part)
        pos = match.end()
    pattern += re.escape(route[pos:])
    escaped_prefix = re.escape(prefix) + "/" if prefix else ""
    found = re.fullmatch(f"/?{escaped_prefix}{pattern}/?", path)
    if found is None:
        return None
    return {k: urllib.parse.unquote(v) for k, v in found.groupdict().items() if v is not None}
