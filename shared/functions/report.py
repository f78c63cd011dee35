"""HTTP GET /api/report (function key): a window's admin report, JSON or CSV.

``?window=ID`` (default: the latest window), ``&format=csv`` for the CSV. Built live from the
ledger; a window no longer there is served from its stored copy while the retention keeps it.

An HTTP response is one body in the worker's memory, so a window of more than HTTP_REPORT_MAX_ROWS
rows is answered with its head only (JSON: totals and problems, ``rows_omitted`` saying how many;
CSV: 413): its rows are in the stored report and ``python -m shared.cli report --window ID --csv``,
both streamed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import azure.functions as func

from shared.composition import get_container
from shared.domain.identifiers import InvalidIdentifier, one_of
from shared.domain.identifiers import window_id as check_window_id
from shared.functions.http import bad_parameter, error_response, only_get
from shared.service.reports import latest_window, stream_report

bp = func.Blueprint()

_TYPES = {"json": "application/json", "csv": "text/csv"}

# About 30 MB of body at ~300 bytes a row: well inside a 2 GB instance beside the work it runs.
HTTP_REPORT_MAX_ROWS = 100_000
HTTP_STORED_REPORT_MAX_BYTES = 32 * 1024 * 1024


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
    ledger = container.ledger
    info = ledger.window(window_id) if window_id else latest_window(ledger)
    if info is None:
        if not window_id:
            return error_response(404, "no windows yet")
        size = container.reports.stored_size(window_id, fmt)
        if size is not None and size > HTTP_STORED_REPORT_MAX_BYTES:
            return error_response(413, f"the stored report is {size} bytes, more than one response holds; read it "
                                       f"with `python -m shared.cli report --window {window_id} --csv`")
        stored = container.reports.load(window_id, fmt)
        if stored is None:
            return error_response(404, "no such window, and no stored report for it")
        return _response(stored.decode("utf-8-sig"), fmt, window_id)
    with stream_report(ledger, info, now) as report:
        if report.row_count <= HTTP_REPORT_MAX_ROWS:
            chunks = report.csv_chunks() if fmt == "csv" else report.json_chunks()
            return _response("".join(chunks), fmt, info.window_id)
        too_many = (f"the window has {report.row_count} rows, more than one response holds "
                    f"({HTTP_REPORT_MAX_ROWS}); read them with `python -m shared.cli report --window "
                    f"{info.window_id} --csv` or from the stored report")
        if fmt == "csv":
            return error_response(413, too_many)
        head = {**report.head.to_json(), "rows": [], "rows_omitted": report.row_count, "rows_note": too_many}
        return _response(json.dumps(head, indent=1, ensure_ascii=False), fmt, info.window_id)


def _response(body: str, fmt: str, window_id: str) -> func.HttpResponse:
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if fmt == "csv":
        headers["Content-Disposition"] = f'attachment; filename="whatsapp-archiver-{window_id}.csv"'
    return func.HttpResponse(body, mimetype=_TYPES[fmt], charset="utf-8", headers=headers)
