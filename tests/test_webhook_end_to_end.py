"""Webhook bodies through the registered functions under the host runner, over Azurite, into .eml
mailboxes: signed deliveries are archived once per message and mailbox however often Meta sends
them, the day's window reconciles, malformed parts are poisoned with their path, forged bodies leave
nothing behind."""

from __future__ import annotations

import hashlib
import hmac
import json
from email import policy
from email.parser import BytesParser

import pytest

import function_app
from shared.composition import get_container, reset_container
from shared.domain.ledger import summarize
from shared.local.host_runner.runner import HostRunner
from tests import whatsapp_cloud_builders as wa
from tests.conftest import fast_host_json

pytestmark = pytest.mark.integration

SECRET = "test-app-secret"
EMPLOYEE = "trader@contoso.example"


MEDIA_TOKEN = "test-system-user-token"


@pytest.fixture
def meta():
    from shared.local.meta_server import LocalMeta

    with LocalMeta(MEDIA_TOKEN) as server:
        yield server


@pytest.fixture
def webhook_app(tmp_path, azurite, meta, monkeypatch):
    mapping = tmp_path / "mapping.csv"
    mapping.write_text(f"PhoneNumber,EmailAddress\n+{wa.BUSINESS},{EMPLOYEE}\n", encoding="utf-8")
    directory = tmp_path / "directory.txt"
    directory.write_text(EMPLOYEE + "\n", encoding="utf-8")
    env = {
        "AzureWebJobsStorage": azurite.connection_string, "WHATSAPP_APP_SECRET": SECRET,
        "WHATSAPP_VERIFY_TOKEN": "verify-me", "MAILBOX_WRITER": "eml", "EML_MAILBOX_DIR": str(tmp_path / "mail"),
        "DIRECTORY": "file", "DIRECTORY_FILE": str(directory), "MAPPING_FILE": str(mapping),
        # The TeleMessage path is not used here; its client is built all the same, and never called.
        "TELEMESSAGE_BASE_URL": "http://127.0.0.1:9", "TELEMESSAGE_USERNAME": "unused",
        "ARCHIVE_SCHEDULE": "0 0 2 * * *",
        "WHATSAPP_GRAPH_BASE_URL": meta.base_url, "WHATSAPP_ACCESS_TOKEN": MEDIA_TOKEN,
        "WHATSAPP_PHONE_NUMBER_IDS": wa.PHONE_NUMBER_ID,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_container()
    runner = HostRunner(function_app.app, host_json=fast_host_json(tmp_path),
                        connection_settings={"AzureWebJobsStorage": azurite.connection_string}, settings=env, workers=4)
    with runner:
        yield runner, tmp_path / "mail"
    reset_container()


def deliver(runner: HostRunner, body: bytes, secret: str = SECRET):
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return runner.call_http("whatsapp_webhook", "POST", headers={"X-Hub-Signature-256": signature}, body=body)


def the_day():
    """The one day window the deliveries were accounted in: its summary and its raw outcomes."""
    ledger = get_container().ledger
    [window] = ledger.recent_windows(5)
    outcomes = ledger.outcomes(window.window_id)
    return summarize(window, ledger.pages(window.window_id), outcomes), outcomes


def archived(mail_dir) -> list:
    return [BytesParser(policy=policy.default).parsebytes(p.read_bytes()) for p in sorted(mail_dir.rglob("*.eml"))]


def test_signed_deliveries_are_archived_once_per_message_however_often_meta_sends_them(webhook_app):
    runner, mail = webhook_app
    first = wa.inbound(wa.message("text", wa.text("Buy 100 at market."), n=1),
                       wa.message("text", wa.text("Confirm when done."), n=2), contacts=[wa.contact()])
    echo = wa.echoes(wa.echo("text", wa.text("Done: 100 filled."), n=3))
    for body in (first, echo):
        assert deliver(runner, body).status_code == 200
    runner.drain(timeout=120)
    # Meta redelivers the same bytes (a retry): the body was split already, nothing is queued again.
    assert deliver(runner, first).status_code == 200
    runner.drain(timeout=120)
    # The same message in another body (Meta batches differently on a retry): its record is skipped.
    assert deliver(runner, wa.inbound(wa.message("text", wa.text("Buy 100 at market."), n=1),
                                      contacts=[wa.contact()])).status_code == 200
    runner.drain(timeout=120)

    items = archived(mail)
    assert len(items) == 3  # two inbound, one echo: the redeliveries added nothing
    ids = {item["X-Archive-Item-Id"] for item in items}
    assert ids == {wa.wamid(1), wa.wamid(2), wa.wamid(3)}
    assert {path.relative_to(mail).parts[0] for path in mail.rglob("*.eml")} == {EMPLOYEE}  # the number's mailbox
    echoed = next(item for item in items if item["X-Archive-Item-Id"] == wa.wamid(3))
    assert f"+{wa.BUSINESS}" in str(echoed["From"])  # an echo is what the employee sent
    summary, outcomes = the_day()
    # One day window: the re-sent record folds into the one already imported, and the ledger keeps
    # the evidence that it came again and was skipped.
    assert summary.listed == 3 and summary.imported == 3 and summary.pending == 0 and not summary.poisoned
    written = sorted(m.outcome.value for o in outcomes for m in o.mailboxes)
    assert written == ["imported"] * 3 + ["skipped_duplicate"]


def test_a_malformed_message_is_poisoned_naming_its_path_and_the_good_ones_beside_it_are_archived(webhook_app):
    runner, mail = webhook_app
    broken = wa.message("text", wa.text("no time"), n=5)
    broken["timestamp"] = "yesterday"
    body = wa.inbound(wa.message("text", wa.text("fine"), n=4), broken, contacts=[wa.contact()])
    assert deliver(runner, body).status_code == 200
    runner.drain(timeout=120)
    assert deliver(runner, body).status_code == 200  # Meta sends it again: split once, poisoned once
    runner.drain(timeout=120)

    assert [item["X-Archive-Item-Id"] for item in archived(mail)] == [wa.wamid(4)]
    queue = get_container().items_poison_queue.client
    [message] = queue.receive_messages(max_messages=32, visibility_timeout=1)
    poison = json.loads(message.content)
    assert poison["reason"] == "invalid_item" and "messages[1].timestamp" in poison["detail"]
    assert poison["message_id"] == wa.wamid(5) and "no time" not in poison["detail"]


def test_a_forged_or_unsigned_body_leaves_nothing_behind(webhook_app):
    runner, mail = webhook_app
    body = wa.inbound(wa.message("text", wa.text("forged"), n=9), contacts=[wa.contact()])
    assert deliver(runner, body, secret="not-the-app-secret").status_code == 401
    assert runner.call_http("whatsapp_webhook", "POST", body=body).status_code == 401
    runner.drain(timeout=30)
    assert archived(mail) == [] and get_container().ledger.recent_windows(5) == []
    assert runner.call_http("whatsapp_webhook", "GET", params={
        "hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "31337"}).get_body() == b"31337"


def test_media_is_captured_from_meta_at_once_and_archived_byte_exact(webhook_app, meta):
    runner, mail = webhook_app
    meta.add("media-1", wa.PICTURE, "image/jpeg")
    body = wa.inbound(wa.message("image", wa.media("media-1", "image/jpeg", caption="the chart"), n=6),
                      contacts=[wa.contact()])
    assert deliver(runner, body).status_code == 200
    runner.drain(timeout=120)
    [item] = archived(mail)
    assert item["X-Archive-Item-Id"] == wa.wamid(6)
    [attachment] = [part for part in item.iter_attachments()]
    assert attachment.get_content() == wa.PICTURE
    # The token went to the stand-in's lookup and its own download link, nowhere else.
    assert {r.authorization for r in meta.requests} == {f"Bearer {MEDIA_TOKEN}"} and len(meta.downloads()) == 1


def test_media_meta_no_longer_has_is_archived_as_not_captured_and_counted_partial(webhook_app, meta):
    runner, mail = webhook_app
    body = wa.inbound(wa.message("image", wa.media("media-gone", "image/jpeg", caption="expired"), n=7),
                      contacts=[wa.contact()])
    assert deliver(runner, body).status_code == 200
    runner.drain(timeout=120)
    [item] = archived(mail)
    assert item["X-Archive-Item-Id"] == wa.wamid(7)
    summary, _ = the_day()
    assert summary.imported == 1 and summary.partially_imported == 1 and summary.pending == 0


def test_a_send_the_firms_application_reports_is_archived_once_and_its_failed_receipt_reported_against_it(
    webhook_app,
):
    from shared.domain.report import window_report
    from tests.test_whatsapp_outbound import send

    runner, mail = webhook_app
    post = json.dumps(send(21)).encode()
    for _ in range(2):  # the application retries after a timeout: the same post again
        answer = runner.call_http("whatsapp_outbound", "POST", body=post)
        assert answer.status_code == 200 and json.loads(answer.get_body())["messageId"] == wa.wamid(21)
    refused = runner.call_http("whatsapp_outbound", "POST", body=b'{"wamid": "nope"}')
    assert refused.status_code == 400 and json.loads(refused.get_body())["parameter"] == "wamid"
    receipts = wa.statuses(wa.status(21, "sent"), wa.status(21, "failed", errors=[wa.meta_error(131049, "Not sent")]))
    for body in (receipts, receipts):
        assert deliver(runner, body).status_code == 200
    runner.drain(timeout=120)

    [item] = archived(mail)
    assert item["X-Archive-Item-Id"] == wa.wamid(21) and f"+{wa.BUSINESS}" in str(item["From"])
    assert "Your order is booked." in item.get_body(("plain",)).get_content()
    summary, _ = the_day()
    assert summary.listed == 1 and summary.imported == 1 and summary.reconciled
    assert summary.receipts == {"sent": 1, "failed": 1}
    report = window_report(summary, problems=(), generated_at=summary.info.scheduled_at)
    [row] = [row for row in report.rows if row.outcome == "delivery_failed"]
    assert row.record_id == wa.wamid(21) and row.microsoft_365_user == EMPLOYEE and "131049" in row.detail
