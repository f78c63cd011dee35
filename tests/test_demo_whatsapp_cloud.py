"""``demo --source whatsapp-cloud``: the generated day of Business Platform traffic, Meta's webhook
sender, and the demo end to end over loopback (Azurite, the local Meta, the HTTP front)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import Counter
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.cli.main import main
from shared.domain.mapping_table import parse_mapping
from shared.domain.webhook_auth import signature_valid
from shared.domain.whatsapp_cloud import parse_webhook
from shared.local.demo import DemoPaths
from shared.local.meta_server import LocalMeta
from shared.local.meta_webhooks import ANSWER_LOST, WebhookSender
from shared.local.whatsapp_traffic import WebhookBody, generate_whatsapp_day

ANCHOR = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 3, 12, 5, tzinfo=UTC)
SECRET = "test-app-secret"

# Every kind of §3 of the reference (and §5's Coexistence events), as the parser names them.
EVERY_KIND = {
    "TEXT/CREATED", "IMAGE/CREATED", "VIDEO/CREATED", "AUDIO/CREATED", "VOICE_NOTE/CREATED", "DOCUMENT/CREATED",
    "STICKER/CREATED", "LOCATION/CREATED", "CONTACT/CREATED", "INTERACTIVE/CREATED", "TEMPLATE_REPLY/CREATED",
    "REACTION/CREATED", "ORDER/CREATED", "SYSTEM/CREATED", "UNSUPPORTED/CREATED", "TEXT/EDITED", "TEXT/DELETED",
    "MEDIA_PLACEHOLDER/CREATED",
}


# --- The day ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def day():
    return generate_whatsapp_day(ANCHOR)


def test_the_day_is_the_same_bytes_for_the_same_anchor_and_seed(day):
    again = generate_whatsapp_day(ANCHOR)
    assert [b.wire for b in again.bodies] == [b.wire for b in day.bodies]
    assert [b.wire for b in generate_whatsapp_day(ANCHOR, seed=16).bodies] != [b.wire for b in day.bodies]


def test_every_message_of_the_day_parses_to_one_record_and_every_kind_is_there(day):
    records, kinds, problems, receipts = {}, set(), [], Counter()
    for body in day.bodies:
        batch = parse_webhook(body.wire, received_at=RECEIVED)
        for message in batch.messages:
            assert message.message_id not in records  # Meta sends each message in one body only
            records[message.message_id] = message.record
            kinds.add(f"{message.record['messageType']}/{message.record['event']}")
        problems += [(body.label, p.detail) for p in batch.problems]
        receipts.update(batch.status_counts)
    assert set(records) == set(day.archived)
    assert kinds == EVERY_KIND
    assert receipts == day.statuses and {"sent", "delivered", "read", "played", "failed"} <= set(receipts)
    # The two malformed bodies, and nothing else, are problems: the whole body each.
    assert [label for label, _ in problems] == [b.label for b in day.malformed]
    assert sorted(detail for _, detail in problems) == [
        "$: the body is not JSON", "object: not whatsapp_business_account"]

    label = {name: records[wamid] for name, wamid in day.labels.items() if wamid in records}
    assert label["voice"]["messageType"] == "VOICE_NOTE"
    assert label["document"]["attachments"][0]["fileName"].startswith("Passport scan")
    assert label["reply"]["replyToMessageId"] == day.labels["send_text"]
    assert label["image"]["forwarded"] and label["video"]["frequentlyForwarded"]
    assert label["ad_referral"]["referral"]["ctwaClid"] and label["group"]["groupMessage"]
    assert label["reaction_removed"]["reaction"] == {"emoji": ""}
    assert label["unknown"]["messageType"] == label["unsupported"]["messageType"] == "UNSUPPORTED"
    assert label["username_user"]["sender"]["userId"] and "phone" not in label["username_user"]["sender"]
    assert label["echo_text"]["direction"] == "OUTGOING" and label["echo_text"]["sender"]["phone"] == "+447700900301"
    assert label["edit"]["relatedMessageId"] == day.labels["text_to_edit"]
    assert label["echo_revoke"]["relatedMessageId"] == day.labels["echo_to_revoke"]
    assert label["interactive_flow"]["interactive"]["payloadJson"].startswith('{"flow_token"')


def test_bodies_are_batched_as_meta_batches_them_and_escaped_as_meta_signs_them(day):
    envelopes = [json.loads(b.wire) for b in day.bodies if not b.malformed]
    assert any(len(e["entry"]) > 1 for e in envelopes)  # several entries in one body
    assert any(len(entry["changes"]) > 1 for e in envelopes for entry in e["entry"])
    assert any(len(c["value"].get("messages", [])) > 1 for e in envelopes for entry in e["entry"]
               for c in entry["changes"])
    raw = [b for b in day.bodies if b.wire != b.signed]
    assert len(raw) == 1 and not raw[0].wire.isascii() and raw[0].signed.isascii()
    assert all(b.wire.isascii() for b in day.bodies if b.wire == b.signed and not b.malformed)
    assert signature_valid(raw[0].wire, "sha256=" + hmac.new(SECRET.encode(), raw[0].signed, hashlib.sha256)
                           .hexdigest(), (SECRET,))


def test_numbers_are_fictitious_and_each_business_number_maps_to_a_mailbox_in_the_directory(day):
    for business in day.businesses:
        assert business.display.startswith(("1555010", "447700900"))
    for customer in day.customers:
        assert customer.wa_id is None or customer.wa_id.startswith(("1555010", "447700900"))
    table = parse_mapping(day.mapping_csv()).table
    for business in day.businesses:
        entry = table.lookup("+" + business.display)
        assert entry is not None and entry.email == business.mailbox and business.mailbox in day.directory()
    assert set(day.archived.values()) <= set(day.directory())


def test_one_media_id_has_expired_and_the_local_meta_says_so():
    [expired] = generate_whatsapp_day(ANCHOR).expired_media
    import httpx

    with LocalMeta("token") as meta:
        meta.add(expired, b"gone", "image/jpeg", expired=True)
        meta.add("123", b"here", "image/jpeg")
        with httpx.Client(trust_env=False) as http:
            headers = {"Authorization": "Bearer token"}
            assert http.get(f"{meta.base_url}/{meta.version}/{expired}", headers=headers).status_code == 400
            assert http.get(f"{meta.base_url}/{meta.version}/123", headers=headers).status_code == 200


def test_api_sends_carry_the_request_the_response_and_the_wamid_their_receipts_name(day):
    receipts = {s.message_id for b in day.bodies for s in parse_webhook(b.wire, received_at=RECEIVED).statuses}
    wamids = {send.wamid for send in day.outbound}
    assert receipts == wamids
    payload = day.outbound[0].payload()
    assert set(payload) == {"wamid", "phone_number_id", "display_phone_number", "sent_at", "request", "response"}
    assert payload["response"]["messages"][0]["id"] == payload["wamid"] and payload["sent_at"].endswith("Z")


# --- Meta's sender ------------------------------------------------------------------------------

class _Receiver:
    """A loopback endpoint answering scripted statuses (then 200), keeping what it was sent."""

    def __init__(self, *statuses: int) -> None:
        self.script = list(statuses)
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                challenge = self.path.rsplit("hub.challenge=", 1)[-1]
                self._answer(200, challenge.encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((self.path, dict(self.headers), body))
                self._answer(receiver.script.pop(0) if receiver.script else 200, b"")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/whatsapp/webhook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[_Receiver] = []

    def make(*statuses: int) -> _Receiver:
        made.append(_Receiver(*statuses))
        return made[-1]

    yield make
    for server in made:
        server.close()


BODY = WebhookBody("body-001", b'{"object":"whatsapp_business_account","entry":[]}',
                   b'{"object":"whatsapp_business_account","entry":[]}')


def sender(url: str, **options) -> tuple[WebhookSender, list[float]]:
    sleeps: list[float] = []
    return WebhookSender(url, SECRET, sleep=sleeps.append, timeout=5.0, **options), sleeps


def test_each_body_is_signed_with_the_app_secret_over_its_raw_bytes(receiver):
    server = receiver()
    meta, _ = sender(server.url)
    with meta:
        meta.deliver([BODY])
    [(path, headers, body)] = server.received
    expected = "sha256=" + hmac.new(SECRET.encode(), BODY.wire, hashlib.sha256).hexdigest()
    assert body == BODY.wire and headers["X-Hub-Signature-256"] == expected
    assert signature_valid(body, headers["X-Hub-Signature-256"], (SECRET,))
    assert not signature_valid(body, headers["X-Hub-Signature-256"], ("another-secret",))
    assert headers["Content-Type"] == "application/json" and headers["X-Hub-Signature"].startswith("sha1=")


def test_a_body_is_delivered_again_until_it_gets_a_200_with_a_growing_backoff(receiver):
    server = receiver(500, 503, 200)
    meta, sleeps = sender(server.url, backoff=0.1)
    with meta:
        log = meta.deliver([BODY])
    assert [body for _, _, body in server.received] == [BODY.wire] * 3
    assert [(a.number, a.kind, a.status) for a in log.attempts] == [
        (1, "delivery", 500), (2, "redelivery", 503), (3, "redelivery", 200)]
    assert sleeps == [0.1, 0.2]
    summary = log.summary()
    assert summary["delivered"] == 1 and summary["redelivered"] == 1 and summary["undelivered"] == []


def test_a_200_ends_the_deliveries_of_a_body(receiver):
    server = receiver()
    meta, sleeps = sender(server.url)
    with meta:
        log = meta.deliver([BODY, WebhookBody("body-002", b"{}", b"{}")])
    assert len(server.received) == 2 and sleeps == []
    assert sorted((a.label, a.status) for a in log.attempts) == [("body-001", 200), ("body-002", 200)]


def test_an_unreachable_callback_is_tried_max_attempts_times_and_reported_undelivered(receiver):
    server = receiver()
    url = server.url
    server.close()  # nothing listens there any more
    meta, sleeps = sender(url, max_attempts=3)
    with meta:
        log = meta.deliver([BODY])
    assert [a.status for a in log.attempts] == [None] * 3 and all(a.error for a in log.attempts)
    assert len(sleeps) == 2 and log.summary()["undelivered"] == ["body-001"]


def test_meta_sometimes_delivers_again_after_a_200_and_after_an_answer_it_never_got(receiver):
    server = receiver()
    meta, _ = sender(server.url, duplicate_rate=1.0, lost_answer_rate=1.0)
    with meta:
        log = meta.deliver([BODY])
    # Sent, answered (the answer lost on the way), sent again, taken; and once more after the 200.
    assert len(server.received) == 3
    assert [(a.kind, a.status, a.error) for a in log.attempts] == [
        ("delivery", None, ANSWER_LOST), ("redelivery", 200, None), ("duplicate", 200, None)]
    summary = log.summary()
    assert summary["answers_lost"] == 1 and summary["duplicates_sent"] == 1 and summary["delivered"] == 1


def test_the_handshake_needs_the_challenge_back(receiver):
    server = receiver()
    meta, _ = sender(server.url)
    with meta:
        assert meta.handshake("verify-me", challenge="4242")


# --- The demo end to end ------------------------------------------------------------------------

def test_demo_source_is_an_option_of_the_demo_only(monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr("shared.local.demo.run_demo", lambda **kwargs: seen.update(kwargs) or 0)
    assert main(["demo", "--source", "whatsapp-cloud", "--state-dir", "x"]) == 0
    assert seen["source"] == "whatsapp-cloud"
    assert main(["demo"]) == 0 and seen["source"] == "telemessage"
    assert main(["demo", "--source", "whatsapp-cloud", "--relist"]) == 2
    assert "--source telemessage" in capsys.readouterr().err


@pytest.mark.integration
def test_the_whatsapp_cloud_demo_archives_every_message_once_reconciles_and_a_second_run_adds_nothing(tmp_path):
    from shared.local.whatsapp_demo import run_whatsapp_day

    paths = DemoPaths(tmp_path / "demo", "whatsapp-cloud")
    paths.root.mkdir(parents=True)
    first = run_whatsapp_day(paths)
    anchor = datetime.fromisoformat(json.loads(paths.state.read_text())["anchor"])
    day = generate_whatsapp_day(anchor)

    assert first["reconciled"] and first["handshake"]
    [window] = first["windows"]
    outbound = {send.wamid: send.business.mailbox for send in day.outbound} if first["outbound"] else {}
    expected = {**day.archived, **outbound}
    assert window["listed"] == len(expected) + len(day.malformed)
    assert window["imported"] == window["fanout"] == len(expected) and window["pending"] == 0
    assert window["poisoned"] == {"invalid_item": 2}  # the body not JSON, the body not a WhatsApp envelope
    assert window["partially_imported"] == 1  # the media id that had expired
    sent = first["deliveries"]
    assert sent["delivered"] == sent["bodies"] == len(day.bodies) and not sent["undelivered"]
    assert sent["redelivered"] > 0 and sent["duplicates_sent"] > 0
    # Redelivered and duplicated bodies were archived once: each message one item in its mailbox.
    items = _items(paths.mailboxes)
    assert {wamid: mailbox for wamid, (mailbox, _) in items.items()} == expected
    assert len(list(paths.mailboxes.rglob("*.eml"))) == len(expected) == first["eml_files"]
    # A body Meta sent again after a lost answer, or twice after a 200, is split once — unless its two
    # copies are split at the same moment, when its records reach import twice and the second copy is
    # skipped: never more skips than bodies sent again.
    assert first["this_run"].get("skipped_duplicate", 0) <= sent["redelivered"] + sent["duplicates_sent"]
    header = {name: items[wamid][1] for name, wamid in day.labels.items() if wamid in items}
    assert header["voice"]["X-Archive-Message-Type"] == "VOICE_NOTE"
    assert header["edit"]["X-Archive-Event"] == "EDITED" and header["revoke"]["X-Archive-Event"] == "DELETED"
    assert header["echo_text"]["From"].addresses[0].username == "+447700900301"  # the employee sent it
    assert header["template_button"]["X-Archive-Source"] == "WHATSAPP_BUSINESS_PLATFORM"
    expired = header["image_expired"]
    assert not list(expired.iter_attachments())  # archived all the same, without the bytes
    with_files = ("image", "document", "sticker", "echo_image", "history_media")
    assert [len(list(header[name].iter_attachments())) for name in with_files] == [1] * len(with_files)
    rows = json.loads(paths.reports.joinpath(f"{window['window_id']}.json").read_text())["rows"]
    assert sorted(r["detail"] for r in rows if r["reason"] == "invalid_item") == [
        "$: the body is not JSON", "object: not whatsapp_business_account"]

    second = run_whatsapp_day(paths)
    assert second["reconciled"] and second["this_run"] == {}  # the same day's bodies again: all split before
    assert len(list(paths.mailboxes.rglob("*.eml"))) == len(expected)


def _items(mailboxes):
    found = {}
    for path in mailboxes.rglob("*.eml"):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        found[str(message["X-Archive-Item-Id"])] = (path.relative_to(mailboxes).parts[0], message)
    return found
