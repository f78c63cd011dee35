"""HTTP GET /api/status (function key): recent windows, reconciliation, poisoned records by reason, queue
depths and the daily volume. JSON by default (scripts read it); an HTML page for people when asked with
``?format=html`` or by a browser (an ``Accept`` header preferring text/html). ``?format=json`` forces JSON."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping

import azure.functions as func

from shared.composition import get_container
from shared.functions.http import error_response, only_get
from shared.service.status import build_status
from shared.service.status_page import render_status_page

bp = func.Blueprint()

# The page is self-contained: inline CSS and SVG, no script, nothing fetched.
HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    # The page's own address may hold the function key (?code=): never send it anywhere.
    "Referrer-Policy": "no-referrer",
    "Vary": "Accept",
}


@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def archive_status(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := only_get(req)) is not None:
        return refused
    fmt = (req.params.get("format") or "").strip().lower()
    if fmt not in ("", "json", "html"):
        return error_response(400, "format must be json or html", parameter="format")
    windows = req.params.get("windows")
    # ASCII digits only: int() would also take "٣" or "1_0", and a huge number costs a long parse.
    if windows is not None and not (windows.isascii() and windows.isdigit() and len(windows) <= 6):
        return error_response(400, "windows must be a whole number", parameter="windows")
    container = get_container()
    limit = int(windows) if windows is not None else container.settings.status_recent_windows
    status = build_status(container.ledger, container.queue_depths(), limit=max(1, min(limit, 366)))
    if fmt == "html" or (not fmt and prefers_html(req.headers.get("Accept"))):
        page = render_status_page(status, json_href=json_link(req.params))
        return func.HttpResponse(page, mimetype="text/html", charset="utf-8", headers=dict(HTML_HEADERS))
    # The same URL answers HTML or JSON by the Accept header: caches must tell them apart.
    return func.HttpResponse(json.dumps(status, indent=2), mimetype="application/json", headers={"Vary": "Accept"})


def json_link(params: Mapping[str, str]) -> str:
    """The page's relative link to the same status as JSON, keeping the function key and window count."""
    kept = {name: params[name] for name in ("code", "windows") if params.get(name)}
    return "?" + urllib.parse.urlencode({"format": "json", **kept})


def prefers_html(accept: str | None) -> bool:
    """Whether an Accept header ranks text/html above JSON (a browser's does; ``*/*`` and none do not)."""
    if not accept:
        return False
    ranges: dict[str, float] = {}
    for part in accept.split(","):
        media, *options = [piece.strip() for piece in part.split(";")]
        if not media:
            continue
        quality = 1.0
        for option in options:
            name, _, value = option.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges[media.lower()] = max(quality, ranges.get(media.lower(), 0.0))

    def quality_of(media: str) -> float:
        kind = media.split("/")[0] + "/*"
        for candidate in (media, kind, "*/*"):
            if candidate in ranges:
                return ranges[candidate]
        return 0.0

    html = max(quality_of("text/html"), quality_of("application/xhtml+xml"))
    return html > 0 and html > quality_of("application/json")
