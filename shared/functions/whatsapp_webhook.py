"""HTTP GET/POST /api/whatsapp/webhook (anonymous: Meta cannot send a function key; the body's
signature is the authentication): Meta's verification handshake, and every webhook delivery stored,
handed off and acknowledged (shared/service/webhook_intake.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from shared.composition import get_container
from shared.domain.webhook_auth import secrets_from_setting, unresolved_as_unset
from shared.service.webhook_intake import WebhookRequest, receive_webhook

bp = func.Blueprint()

_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@bp.route(route="whatsapp/webhook", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
def whatsapp_webhook(req: func.HttpRequest) -> func.HttpResponse:
    container = get_container()
    settings = container.settings
    answer = receive_webhook(
        WebhookRequest(req.method or "", req.params, req.headers, req.get_body()),
        verify_token=unresolved_as_unset(settings.whatsapp_verify_token.get_secret_value()),
        app_secrets=secrets_from_setting(settings.whatsapp_app_secret.get_secret_value()),
        store=container.webhook_bodies, handoff=container.listing_queue, clock=lambda: datetime.now(UTC),
        evidence=container.evidence,
    )
    # An explicit status always: the host answers 204 to a function that returns none, and Meta
    # takes only a 200 as delivered.
    return func.HttpResponse(answer.text, status_code=answer.status, mimetype="text/plain", charset="utf-8",
                             headers=dict(_HEADERS))
