"""HTTP POST /api/whatsapp/outbound (function key): the firm's sending application reports each
message it sent through the Cloud API, with the wamid Meta returned, so that what the business
sent is archived (Meta's webhooks carry only its receipts). shared/service/webhook_intake.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import azure.functions as func

from shared.composition import get_container
from shared.functions.http import JSON_ERROR_HEADERS, error_response
from shared.service.webhook_intake import business_numbers, receive_outbound

bp = func.Blueprint()


@bp.route(route="whatsapp/outbound", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def whatsapp_outbound(req: func.HttpRequest) -> func.HttpResponse:
    if (req.method or "").upper() != "POST":
        return error_response(405, "method not allowed")
    container = get_container()
    answer = receive_outbound(
        req.get_body(), numbers=business_numbers(container.settings.whatsapp_phone_number_ids),
        store=container.webhook_bodies, handoff=container.listing_queue, clock=lambda: datetime.now(UTC),
        evidence=container.evidence,
    )
    return func.HttpResponse(json.dumps(answer.body), status_code=answer.status, mimetype="application/json",
                             headers=dict(JSON_ERROR_HEADERS))
