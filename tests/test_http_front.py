"""shared/local/http_front.py: the app's HTTP functions over real HTTP on loopback, through the host
runner — Meta's handshake and signed deliveries end up stored and queued, the host's refusals
(404, 405, 411, 413) are given, and a hundred deliveries at once are all answered."""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import http.client
import json
import socket
import threading
import urllib.parse
from pathlib import Path

import azure.functions as func
import pytest

import function_app
from shared.composition import get_container, reset_container
from shared.local.host_runner.runner import HostRunner
from shared.local.http_front import HttpFront
from tests import whatsapp_cloud_builders as wa
from tests.conftest import fast_host_json

SECRET = "front-test-app-secret"
VERIFY_TOKEN = "front-verify-token"
WEBHOOK = "/api/whatsapp/webhook"


def request(front: HttpFront, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def signed(body: bytes) -> dict[str, str]:
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": signature, "Content-Type": "application/json"}


# -- a toy app: the front's own behaviour, no storage needed ---------------------------------------------


@pytest.fixture
def toy_front(tmp_path: Path):
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="echo/{name}", methods=["GET", "POST"])
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        payload = {"name": req.route_params.get("name"), "params": dict(req.params), "method": req.method,
                   "caller": req.headers.get("x-caller"), "body": req.get_body().decode()}
        return func.HttpResponse(json.dumps(payload), status_code=201, mimetype="application/json",
                                 headers={"X-Answer": "yes"})

    @app.route(route="echo/fixed", methods=["GET"])
    def fixed(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("literal route")

    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"version": "2.0"}), encoding="utf-8")
    # Only HTTP functions: the runner never opens a queue, so the connection string is never used.
    runner = HostRunner(app, host_json=host_json, connection_settings={"AzureWebJobsStorage": "unused"})
    with runner, HttpFront(runner, max_body_bytes=1024) as front:
        yield front


def test_method_query_headers_route_values_and_body_reach_the_function_and_its_answer_comes_back(toy_front):
    status, headers, body = request(toy_front, "POST", "/api/echo/ana?lang=pt&x=%C3%A9", body=b"hello",
                                    headers={"X-Caller": "test"})
    assert status == 201 and headers["x-answer"] == "yes" and headers["content-type"] == "application/json"
    assert json.loads(body) == {"name": "ana", "params": {"lang": "pt", "x": "é"}, "method": "POST",
                                "caller": "test", "body": "hello"}
    status, headers, body = request(toy_front, "GET", "/api/echo/fixed")
    # A literal route outranks a parameter; a text answer carries its charset, as the worker adds it.
    assert (status, body, headers["content-type"]) == (200, b"literal route", "text/plain; charset=utf-8")


def test_an_unknown_route_is_404_and_a_method_the_function_does_not_take_is_405(toy_front):
    assert request(toy_front, "GET", "/api/nowhere")[0] == 404
    assert request(toy_front, "GET", "/echo/ana")[0] == 404  # outside the route prefix
    status, headers, _ = request(toy_front, "DELETE", "/api/echo/ana")
    assert status == 405 and headers["allow"] == "GET, POST"
    assert request(toy_front, "PUT", "/api/echo/fixed", body=b"")[0] == 405


def test_a_body_over_the_limit_is_refused_413_before_it_is_sent_and_a_post_without_length_is_411(toy_front):
    # The headers promise 10 MB and no byte of it is sent: the answer comes all the same, so the
    # front refused on Content-Length alone and never waited for (or buffered) the body.
    with socket.create_connection(("127.0.0.1", toy_front.port), timeout=30) as raw:
        raw.sendall(b"POST /api/echo/ana HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n\r\n")
        answer = raw.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 413") and "connection: close" in answer.lower()
    assert request(toy_front, "POST", "/api/echo/ana", body=b"x" * 1024)[0] == 201  # at the limit: taken
    with socket.create_connection(("127.0.0.1", toy_front.port), timeout=30) as raw:
        raw.sendall(b"POST /api/echo/ana HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 411")
    with socket.create_connection(("127.0.0.1", toy_front.port), timeout=30) as raw:
        raw.sendall(b"POST /api/echo/ana HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n0\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 411")


def test_one_connection_carries_several_requests(toy_front):
    connection = http.client.HTTPConnection("127.0.0.1", toy_front.port, timeout=30)
    try:
        for n in range(3):
            connection.request("POST", f"/api/echo/n{n}", body=f"{n}".encode())
            response = connection.getresponse()
            assert json.loads(response.read())["name"] == f"n{n}"
    finally:
        connection.close()


# -- the webhook over Azurite ------------------------------------------------------------------------------


@pytest.fixture
def webhook_front(tmp_path, azurite, monkeypatch):
    env = {"AzureWebJobsStorage": azurite.connection_string, "WHATSAPP_APP_SECRET": SECRET,
           "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN, "ARCHIVE_SCHEDULE": "0 0 2 * * *"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_container()
    runner = HostRunner(function_app.app, host_json=fast_host_json(tmp_path),
                        connection_settings={"AzureWebJobsStorage": azurite.connection_string}, settings=env)
    with runner, HttpFront(runner) as front:
        yield front
    reset_container()


def handed_off() -> dict[str, bytes]:
    """Each webhook task on the listing queue: the stored body it names."""
    container = get_container()
    tasks = []
    while True:
        batch = container.listing_queue.receive(32, visibility_timeout=300)
        if not batch:
            break
        tasks.extend(json.loads(message.text) for message in batch)
    return {task["body_ref"]: container.webhook_bodies.get(task["body_ref"]) for task in tasks}


@pytest.mark.integration
def test_meta_handshake_over_http_echoes_the_challenge_and_a_wrong_token_is_403(webhook_front):
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    status, headers, body = request(webhook_front, "GET", f"{WEBHOOK}?{urllib.parse.urlencode(query)}")
    assert (status, body) == (200, b"1158201444") and headers["content-type"] == "text/plain; charset=utf-8"
    query["hub.verify_token"] = "guessed"
    assert request(webhook_front, "GET", f"{WEBHOOK}?{urllib.parse.urlencode(query)}")[0] == 403


@pytest.mark.integration
def test_a_signed_delivery_over_http_is_stored_and_queued_and_a_forged_one_leaves_nothing(webhook_front):
    body = wa.inbound(wa.message("text", wa.text("Sell 50 at the close."), n=1), contacts=[wa.contact()])
    forged = dict(signed(body), **{"X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert request(webhook_front, "POST", WEBHOOK, body=body, headers=forged)[0] == 401
    assert handed_off() == {}
    status, _, answer = request(webhook_front, "POST", WEBHOOK, body=body, headers=signed(body))
    assert (status, answer) == (200, b"")  # an explicit 200, not the host's default 204
    assert list(handed_off().values()) == [body]  # byte for byte, as signed


@pytest.mark.integration
def test_a_hundred_deliveries_at_once_are_all_answered_stored_and_queued(webhook_front):
    bodies = [wa.inbound(wa.message("text", wa.text(f"order {n}"), n=n), contacts=[wa.contact()])
              for n in range(100)]
    start = threading.Barrier(len(bodies))

    def deliver(body: bytes) -> int:
        start.wait()
        return request(webhook_front, "POST", WEBHOOK, body=body, headers=signed(body))[0]

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        statuses = list(pool.map(deliver, bodies))
    assert statuses == [200] * len(bodies)
    assert sorted(handed_off().values()) == sorted(bodies)


def test_the_front_refuses_to_listen_beyond_loopback():
    from shared.local.http_front import HttpFront

    with pytest.raises(ValueError, match="loopback"):
        HttpFront(None, host="0.0.0.0")  # type: ignore[arg-type]
