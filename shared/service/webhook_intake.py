"""The receiving end of a push source (WhatsApp Business Platform webhooks, and the sends the firm's
application reports): authenticate, store, hand off, acknowledge — in that order, and nothing more
before the answer.

Meta keeps no copy it can send again once it has had a 200, and it retries anything else for days:
so a 200 goes out only after the body is durably stored and its work queued, and every failure
before that is a 5xx for Meta to retry. Splitting the body into records, fetching media and
archiving happen behind the queue, where a slow mailbox cannot make Meta time out.

The body is stored content-addressed (``webhooks/<day of receipt>/<sha256>.json``), so Meta's
duplicate deliveries land on the bytes already there; archiving once per message is the records'
job (their keys derive from the message ids).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import telemetry
from shared.domain.tasks import WebhookBodyTask
from shared.domain.webhook_auth import MAX_BODY_BYTES, SIGNATURE_HEADER, signature_valid, verification_handshake
from shared.domain.whatsapp_outbound import OutboundRefused, check_outbound
from shared.domain.window import isoformat_z
from shared.ports import EvidenceStore, WebhookBodyStore, WorkQueue

log = logging.getLogger(__name__)

SOURCE = "whatsapp-cloud"


@dataclass(frozen=True)
class WebhookRequest:
    method: str
    params: Mapping[str, str]
    headers: Mapping[str, str]  # looked up case-insensitively by the caller's mapping
    body: bytes


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    text: str = ""  # text/plain; the handshake's challenge, else empty (nothing about why)


def body_name(raw: bytes, received_at: datetime, folder: str = "webhooks") -> str:
    return f"{folder}/{received_at.date().isoformat()}/{hashlib.sha256(raw).hexdigest()}.json"


def receive_webhook(
    request: WebhookRequest, *, verify_token: str, app_secrets: tuple[str, ...], store: WebhookBodyStore,
    handoff: WorkQueue, clock: Callable[[], datetime], evidence: EvidenceStore | None = None,
) -> WebhookAnswer:
    """Errors from ``store`` and ``handoff`` propagate: the host answers 500, and Meta retries."""
    method = request.method.upper()
    if method == "GET":
        handshake = verification_handshake(dict(request.params), verify_token)
        if handshake.status != 200:
            log.warning("webhook verification refused")
        telemetry.count_webhook("verified" if handshake.status == 200 else "verification_refused")
        return WebhookAnswer(handshake.status, handshake.challenge or "")
    if method != "POST":
        return WebhookAnswer(405)
    if len(request.body) > MAX_BODY_BYTES:
        log.warning("webhook body of %d bytes refused: over %d", len(request.body), MAX_BODY_BYTES)
        telemetry.count_webhook("too_big")
        return WebhookAnswer(413)
    if not app_secrets:
        # Unsigned bodies are never taken; 503 so that Meta keeps the deliveries until it is set.
        log.error("webhook refused: WHATSAPP_APP_SECRET is not set")
        telemetry.count_webhook("not_configured")
        return WebhookAnswer(503)
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature_valid(request.body, signature, app_secrets):
        why = "signature_missing" if not signature else "signature_wrong"
        log.warning("webhook %s: body of %d bytes refused, nothing stored", why, len(request.body))
        telemetry.count_webhook(why)
        return WebhookAnswer(401)
    received_at = clock()
    name = body_name(request.body, received_at)
    # The signature is kept with the body: with the app secret, anyone can check later that these
    # are the bytes Meta sent.
    store.put(name, request.body, {"source": SOURCE, "received_at": isoformat_z(received_at),
                                   "x_hub_signature_256": (signature or "").strip()})
    if evidence is not None:
        evidence.keep("webhook-body", request.body, {"received_at": isoformat_z(received_at),
                                                     "x_hub_signature_256": (signature or "").strip()})
    handoff.send(WebhookBodyTask(body_ref=name, source=SOURCE, received_at=received_at).model_dump(mode="json"))
    log.info("webhook body %s stored (%d bytes) and handed off", name.rsplit("/", 1)[-1][:16], len(request.body))
    telemetry.count_webhook("accepted")
    return WebhookAnswer(200)


@dataclass(frozen=True)
class OutboundAnswer:
    status: int
    body: dict[str, Any]


def receive_outbound(
    body: bytes, *, numbers: frozenset[str], store: WebhookBodyStore, handoff: WorkQueue,
    clock: Callable[[], datetime], evidence: EvidenceStore | None = None,
) -> OutboundAnswer:
    """A send the firm's application reports (``whatsapp_outbound``): checked, stored, handed off,
    then 200 — the same order as a webhook, so that a 200 means the message will be archived.

    Unlike Meta, the caller is the firm's own software: a post that would not become exactly one
    record is refused (400 naming the field, 403 for a number that is not the firm's, 413 too big)
    before anything is stored, for it to be fixed and sent again. With no numbers configured the
    function takes nothing (503). Errors from ``store`` and ``handoff`` propagate (500: the caller
    retries; the same post again lands on the bytes already stored and the record already archived)."""
    if not numbers:
        log.error("outbound send refused: WHATSAPP_PHONE_NUMBER_IDS is not set")
        telemetry.count_webhook("outbound_not_configured")
        return OutboundAnswer(503, {"error": "no business numbers are configured (WHATSAPP_PHONE_NUMBER_IDS)"})
    received_at = clock()
    try:
        send = check_outbound(body, received_at=received_at, numbers=numbers)
    except OutboundRefused as refused:
        log.warning("outbound send refused (%d bytes): %s", len(body), refused.parameter)
        telemetry.count_webhook("outbound_refused")
        return OutboundAnswer(refused.status, {"error": str(refused), "parameter": refused.parameter})
    name = body_name(body, received_at, folder="outbound")
    store.put(name, body, {"source": SOURCE, "received_at": isoformat_z(received_at), "kind": "outbound_send"})
    if evidence is not None:
        evidence.keep("outbound-post", body, {"received_at": isoformat_z(received_at)})
    handoff.send(WebhookBodyTask(body_ref=name, source=SOURCE, received_at=received_at).model_dump(mode="json"))
    log.info("outbound send %s stored (%d bytes) and handed off", name.rsplit("/", 1)[-1][:16], len(body))
    telemetry.count_webhook("outbound_accepted")
    return OutboundAnswer(200, {"messageId": send.wamid, "stored": True})


def business_numbers(setting: str) -> frozenset[str]:
    """``WHATSAPP_PHONE_NUMBER_IDS``: Meta's phone_number_ids, comma-separated."""
    return frozenset(part.strip() for part in setting.split(",") if part.strip())
