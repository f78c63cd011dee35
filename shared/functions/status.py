"""HTTP GET /api/status (function key): recent windows, reconciliation and queue depths as JSON."""

from __future__ import annotations

import json

import azure.functions as func

from shared.composition import get_container
from shared.service.status import build_status

bp = func.Blueprint()


@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def archive_status(req: func.HttpRequest) -> func.HttpResponse:
    container = get_container()
    try:
        limit = int(req.params.get("windows", container.settings.status_recent_windows))
    except ValueError:
        return func.HttpResponse('{"error": "windows must be a whole number"}', status_code=400,
                                 mimetype="application/json")
    status = build_status(container.ledger, container.queue_depths(), limit=max(1, min(limit, 366)))
    return func.HttpResponse(json.dumps(status, indent=2), mimetype="application/json")
