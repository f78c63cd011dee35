"""The webhook's receiving end: a body is acknowledged (200) only once it is stored and handed off;
forged, unsigned or oversized bodies store nothing; redeliveries land on the bytes already stored.
The same behaviour is checked against the in-memory store and the blob adapter on Azurite."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from shared.domain.tasks import WebhookBodyTask
from shared.domain.webhook_auth import MAX_BODY_BYTES
from shared.ports import RecordMissing
from shared.service.webhook_intake import WebhookRequest, body_name, receive_webhook
from tests.fakes import MemoryQueue, MemoryWebhookBodyStore

SECRET = "test-app-secret"
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
BODY = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": []}]}).encode()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def post(store, queue, body: bytes = BODY, headers: dict[str, str] | None = None, secrets=(SECRET,)):
    request = WebhookRequest("POST", {}, signed(body) if headers is None else headers, body)
    return receive_webhook(request, verify_token="vt", app_secrets=secrets, store=store, handoff=queue,
                           clock=lambda: NOW)


@pytest.fixture(params=["memory", "azurite"])
def store(request):
    """Both stores, so the fake can never promise what the blob adapter does not do."""
    if request.param == "memory":
        yield MemoryWebhookBodyStore()
        return
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.azure_storage import BlobWebhookBodyStore
    from shared.local.azurite import Azurite

    with Azurite() as azurite:
        yield BlobWebhookBodyStore(BlobServiceClient.from_connection_string(azurite.connection_string),
                                   "archive-records")


def test_a_signed_body_is_stored_byte_exact_with_its_signature_then_handed_off_then_acknowledged(store):
    queue = MemoryQueue("listing")
    answer = post(store, queue)
    assert answer.status == 200 and answer.text == ""
    [message] = queue.messages
    task = WebhookBodyTask.model_validate(message)
    assert task.body_ref == body_name(BODY, NOW) and task.received_at == NOW and task.source == "whatsapp-cloud"
    assert store.get(task.body_ref) == BODY


def test_a_redelivered_body_lands_on_the_bytes_already_stored_and_is_handed_off_again(store):
    queue = MemoryQueue("listing")
    assert post(store, queue).status == 200 and post(store, queue).status == 200
    assert len(queue.messages) == 2 and queue.messages[0]["body_ref"] == queue.messages[1]["body_ref"]
    assert store.get(queue.messages[0]["body_ref"]) == BODY


@pytest.mark.parametrize("headers", [{}, signed(BODY, "forged"), {"X-Hub-Signature-256": "sha256=" + "0" * 64},
                                     {"X-Hub-Signature": "sha1=" + "0" * 40}])
def test_an_unsigned_or_forged_body_is_401_and_nothing_is_stored_or_handed_off(store, headers):
    queue = MemoryQueue("listing")
    assert post(store, queue, headers=headers).status == 401
    assert queue.messages == []
    with pytest.raises(RecordMissing):
        store.get(body_name(BODY, NOW))


def test_a_body_over_3_mb_is_413_and_nothing_is_stored(store):
    queue = MemoryQueue("listing")
    big = b'{"object":"whatsapp_business_account","pad":"' + b"x" * MAX_BODY_BYTES + b'"}'
    assert post(store, queue, body=big).status == 413 and queue.messages == []
    with pytest.raises(RecordMissing):
        store.get(body_name(big, NOW))


def test_without_an_app_secret_nothing_is_taken_and_meta_is_told_to_retry():
    store, queue = MemoryWebhookBodyStore(), MemoryQueue("listing")
    assert post(store, queue, secrets=()).status == 503 and not store.bodies and not queue.messages


def test_a_signed_body_that_is_not_json_is_still_stored_and_handed_off_for_the_queue_to_poison():
    store, queue = MemoryWebhookBodyStore(), MemoryQueue("listing")
    assert post(store, queue, body=b"\x00 not json").status == 200
    assert list(store.bodies.values()) == [b"\x00 not json"] and len(queue.messages) == 1


def test_when_storage_fails_there_is_no_200_and_nothing_is_handed_off():
    from shared.domain.errors import TransientError

    queue = MemoryQueue("listing")
    with pytest.raises(TransientError):
        post(MemoryWebhookBodyStore(fail=True), queue)
    assert queue.messages == []


def test_when_the_hand_off_fails_there_is_no_200_and_the_redelivery_completes_it():
    store = MemoryWebhookBodyStore()
    with pytest.raises(ConnectionError):
        post(store, MemoryQueue("listing", fail_after=0))
    queue = MemoryQueue("listing")
    assert post(store, queue).status == 200 and len(queue.messages) == 1


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(method):
    request = WebhookRequest(method, {}, signed(BODY), BODY)
    store, queue = MemoryWebhookBodyStore(), MemoryQueue("listing")
    answer = receive_webhook(request, verify_token="vt", app_secrets=(SECRET,), store=store, handoff=queue,
                             clock=lambda: NOW)
    assert answer.status == 405 and not store.bodies and not queue.messages


def test_the_get_handshake_answers_the_challenge_as_text():
    request = WebhookRequest("GET", {"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "42"}, {}, b"")
    answer = receive_webhook(request, verify_token="vt", app_secrets=(SECRET,), store=MemoryWebhookBodyStore(),
                             handoff=MemoryQueue(), clock=lambda: NOW)
    assert (answer.status, answer.text) == (200, "42")


def test_the_blob_adapter_refuses_a_name_that_is_not_a_webhook_body_reference():
    from shared.domain.identifiers import InvalidIdentifier
    from shared.domain.tasks import TaskFormatError

    with pytest.raises(TaskFormatError):
        WebhookBodyTask.from_text(json.dumps({"kind": "webhook_body", "body_ref": "../mapping/x.json",
                                              "source": "whatsapp-cloud", "received_at": "2026-12-05T12:00:00Z"}))
    from shared.domain import identifiers

    with pytest.raises(InvalidIdentifier):
        identifiers.webhook_body_ref("webhooks/2026-12-05/../../mapping.json")


def test_the_http_function_stores_hands_off_and_answers_an_explicit_200_over_azurite(azurite, monkeypatch, tmp_path):
    import azure.functions as func

    from shared.composition import get_container, reset_container
    from shared.functions import whatsapp_webhook

    for name, value in {"AzureWebJobsStorage": azurite.connection_string, "WHATSAPP_APP_SECRET": f"old, {SECRET}",
                        "WHATSAPP_VERIFY_TOKEN": "vt", "MAILBOX_WRITER": "eml", "EML_MAILBOX_DIR": str(tmp_path),
                        "DIRECTORY": "file", "DIRECTORY_FILE": str(tmp_path / "users.txt")}.items():
        monkeypatch.setenv(name, value)
    reset_container()
    try:
        function = whatsapp_webhook.whatsapp_webhook.build().get_user_function()
        url = "https://app.example/api/whatsapp/webhook"
        # Header names arrive in any case; the host's mapping finds them all the same.
        ok = function(func.HttpRequest("POST", url, headers={"x-hub-signature-256": signed(BODY)[
            "X-Hub-Signature-256"]}, body=BODY))
        forged = function(func.HttpRequest("POST", url, headers=signed(BODY, "forged"), body=BODY))
        hello = function(func.HttpRequest("GET", url, params={"hub.mode": "subscribe", "hub.verify_token": "vt",
                                                              "hub.challenge": "12345"}, body=b""))
        container = get_container()
        [message] = container.listing_queue.receive(32, visibility_timeout=1)
        task = WebhookBodyTask.from_text(message.text)
        stored = container.webhook_bodies.get(task.body_ref)
    finally:
        reset_container()
    assert ok.status_code == 200 and ok.get_body() == b""
    assert forged.status_code == 401
    assert hello.status_code == 200 and hello.get_body() == b"12345" and hello.mimetype == "text/plain"
    assert stored == BODY


def test_a_split_body_is_marked_beside_it_and_the_body_itself_stays_as_it_arrived(store):
    from shared.domain.identifiers import InvalidIdentifier

    post(store, MemoryQueue("listing"))
    name = body_name(BODY, NOW)
    assert not store.split_done(name)
    store.mark_split(name)
    store.mark_split(name)  # a retried task marks it again
    assert store.split_done(name) and store.get(name) == BODY
    assert not store.split_done(body_name(b'{"other": 1}', NOW))
    with pytest.raises(InvalidIdentifier):
        store.split_done("webhooks/../mapping/mapping.csv")
