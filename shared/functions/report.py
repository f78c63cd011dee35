"""HTTP GET /api/report (function key): a window's admin report, JSON or CSV.

``?window=ID`` (default: the latest window), ``&format=csv`` for the CSV. Built live from the
ledger; a window no longer there is served from its stored copy while the retention keeps it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import azure.functions as func

from shared.composition import get_container
from shared.domain.identifiers import InvalidIdentifier, one_of
from shared.domain.identifiers import window_id as check_window_id
from shared.domain.report import report_csv
from shared.functions.http import bad_parameter, error_response, only_get
from shared.service.reports import latest_report, window_report_by_id

bp = func.Blueprint()

_TYPES = {"json": "application/json", "csv": "text/csv"}


@bp.route(route="report", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def archive_report(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := only_get(req)) is not None:
        return refused
    # Both parameters become part of a blob name (reports/<window>.<format>): checked before any
    # storage call, so no value can name a blob outside windows/ and reports/.
    try:
        fmt = one_of((req.params.get("format") or "json").lower(), tuple(_TYPES), "format")
        window_id = req.params.get("window")
        if window_id is not None and window_id != "":
            check_window_id(window_id, "window")
    except InvalidIdentifier as error:
        return bad_parameter(error)
    container = get_container()
    now = datetime.now(UTC)
    try:
        report = window_report_by_id(container.ledger, window_id, now) if window_id else \
            latest_report(container.ledger, now)
    except LookupError:
        assert window_id  # only a named window can be missing
        stored = container.reports.load(window_id, fmt)
        if stored is None:
            return error_response(404, "no such window, and no stored report for it")
        return _response(stored.decode("utf-8-sig"), fmt, window_id)
    if report is None:
        return error_response(404, "no windows yet")
    body = report_csv([report]) if fmt == "csv" else json.dumps(report.to_json(), indent=1, ensure_ascii=False)
    return _response(body, fmt, report.window_id)


def _response(body: str, fmt: str, window_id: str) -> func.HttpResponse:
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if fmt == "csv":
        headers["Content-Disposition"] = f'attachment; filename="whatsapp-archiver-{window_id}.csv"'
    return func.HttpResponse(body, mimetype=_TYPES[fmt], charset="utf-8", headers=headers)
