"""The local host stand-ins: Azurite lifecycle and HostRunner's host-like trigger semantics.

Each test builds its own toy app (get_functions() may run once per app) and uses fresh queue names, so
tests share one Azurite per module without seeing each other's messages.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from shared.local import azurite as azurite_module
from shared.local.azurite import Azurite, AzuriteError
from shared.local.host_runner.errors import DrainTimeout, HostRunnerError
from shared.local.host_runner.host_json import QueueOptions, parse_timespan
from shared.local.host_runner.runner import HostRunner

integration = pytest.mark.integration


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with Azurite() as instance:
        yield instance


def _queue_name(prefix: str = "q") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def _host_json(tmp_path: Path, **queues: Any) -> Path:
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"version": "2.0", "extensions": {"queues": queues}}), encoding="utf-8")
    return path


def _runner(azurite: Azurite, app: func.FunctionApp, host_json: Path, **kwargs: Any) -> HostRunner:
    return HostRunner(
        app,
        host_json=host_json,
        connection_settings={"AzureWebJobsStorage": azurite.connection_string},
        **kwargs,
    )


def _queue_app(queue: str, handler: Callable[[func.QueueMessage], Any]) -> func.FunctionApp:
    bp = func.Blueprint()

    @bp.queue_trigger(arg_name="msg", queue_name=queue, connection="AzureWebJobsStorage")
    def on_message(msg: func.QueueMessage) -> None:
        handler(msg)

    app = func.FunctionApp()
    app.register_functions(bp)
    return app


def _base64_client(azurite: Azurite, queue: str) -> QueueClient:
    return QueueClient.from_connection_string(
        azurite.connection_string, queue, message_encode_policy=TextBase64EncodePolicy()
    )


def _plain_client(azurite: Azurite, queue: str) -> QueueClient:
    return QueueClient.from_connection_string(azurite.connection_string, queue)


def _raw_contents(azurite: Azurite, queue: str) -> list[str]:
    client = _plain_client(azurite, queue)
    try:
        return [m.content for m in client.peek_messages(max_messages=32)]
    except ResourceNotFoundError:  # a queue that was never created holds nothing
        return []


# -- host.json parsing (no storage needed) ---------------------------------------------------------------


def test_host_json_defaults_match_the_functions_host(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text('{"version": "2.0"}', encoding="utf-8")
    assert QueueOptions.from_host_json(path) == QueueOptions(
        message_encoding="base64", max_dequeue_count=5, visibility_timeout=timedelta(0), batch_size=16
    )


def test_host_json_queue_settings_are_read_case_insensitively(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text(
        json.dumps(
            {
                "Extensions": {
                    "Queues": {
                        "MessageEncoding": "None",
                        "maxdequeuecount": 3,
                        "visibilityTimeout": "00:01:30",
                        "batchSize": 4,
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    options = QueueOptions.from_host_json(path)
    assert options == QueueOptions("none", 3, timedelta(seconds=90), 4)


def test_timespan_parsing_accepts_dotnet_forms_and_refuses_bare_numbers() -> None:
    assert parse_timespan("00:00:30") == timedelta(seconds=30)
    assert parse_timespan("1.02:03:04.5") == timedelta(days=1, hours=2, minutes=3, seconds=4.5)
    with pytest.raises(HostRunnerError):
        parse_timespan("30")


# -- queue triggers --------------------------------------------------------------------------------------


@integration
def test_base64_messages_from_TextBase64EncodePolicy_are_delivered_decoded(azurite: Azurite, tmp_path: Path):
    queue = _queue_name()
    seen: list[func.QueueMessage] = []
    runner = _runner(azurite, _queue_app(queue, seen.append), _host_json(tmp_path))
    client = _base64_client(azurite, queue)
    client.send_message("héllo wörld")
    client.send_message(json.dumps({"record": 1}))

    assert runner.drain(timeout=10) == 2

    assert [m.get_body().decode("utf-8") for m in seen] == ["héllo wörld", '{"record": 1}']
    assert seen[1].get_json() == {"record": 1}
    assert all(m.dequeue_count == 1 and m.id and m.insertion_time and m.pop_receipt for m in seen)
    assert runner.queue_depths() == {queue: 0}


@integration
def test_always_failing_message_is_tried_max_dequeue_count_times_then_poisoned_unchanged(
    azurite: Azurite, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    queue = _queue_name()
    attempts: list[int | None] = []

    def fail(msg: func.QueueMessage) -> None:
        attempts.append(msg.dequeue_count)
        raise RuntimeError("downstream unavailable")

    runner = _runner(azurite, _queue_app(queue, fail), _host_json(tmp_path, maxDequeueCount=3))
    secret_body = "+447700900123 said something private"
    _base64_client(azurite, queue).send_message(secret_body)

    with caplog.at_level(logging.DEBUG, logger="shared.local.host_runner"):
        runner.drain(timeout=10)

    assert attempts == [1, 2, 3]
    poisoned = _raw_contents(azurite, f"{queue}-poison")
    assert poisoned == [base64.b64encode(secret_body.encode()).decode()]  # still base64, byte for byte
    assert runner.queue_depths() == {queue: 0}
    assert runner.stats["failed"] == 3 and runner.stats["poisoned"] == 1
    failures = [r.getMessage() for r in caplog.records if "failed on message" in r.getMessage()]
    assert len(failures) == 3 and all("on_message" in f and "RuntimeError" in f for f in failures)
    assert "said something private" not in caplog.text


@integration
def test_function_failing_once_is_retried_and_not_poisoned(azurite: Azurite, tmp_path: Path):
    queue = _queue_name()
    attempts: list[int | None] = []

    def flaky(msg: func.QueueMessage) -> None:
        attempts.append(msg.dequeue_count)
        if len(attempts) == 1:
            raise TimeoutError("first try fails")

    runner = _runner(azurite, _queue_app(queue, flaky), _host_json(tmp_path, maxDequeueCount=3))
    _base64_client(azurite, queue).send_message("retry me")

    runner.drain(timeout=10)

    assert attempts == [1, 2]
    assert _raw_contents(azurite, f"{queue}-poison") == []
    assert runner.stats["succeeded"] == 1


@integration
def test_failed_message_waits_for_host_json_visibility_timeout_before_retry(azurite: Azurite, tmp_path: Path):
    queue = _queue_name()
    times: list[float] = []

    def flaky(msg: func.QueueMessage) -> None:
        times.append(time.monotonic())
        if len(times) == 1:
            raise ValueError("again later")

    runner = _runner(azurite, _queue_app(queue, flaky), _host_json(tmp_path, visibilityTimeout="00:00:01"))
    _base64_client(azurite, queue).send_message("later")

    runner.drain(timeout=10)

    assert len(times) == 2 and times[1] - times[0] >= 0.9


@integration
def test_message_encoding_none_delivers_plain_text(azurite: Azurite, tmp_path: Path):
    queue = _queue_name()
    seen: list[bytes] = []
    runner = _runner(
        azurite,
        _queue_app(queue, lambda m: seen.append(m.get_body())),
        _host_json(tmp_path, messageEncoding="none"),
    )
    _plain_client(azurite, queue).send_message('{"plain": "text ✓"}')

    runner.drain(timeout=10)

    assert seen == ['{"plain": "text ✓"}'.encode()]


@integration
def test_plain_text_message_under_base64_config_goes_to_poison_without_invoking(
    azurite: Azurite, tmp_path: Path
):
    queue = _queue_name()
    seen: list[func.QueueMessage] = []
    runner = _runner(azurite, _queue_app(queue, seen.append), _host_json(tmp_path, maxDequeueCount=3))
    _plain_client(azurite, queue).send_message('{"sent": "without base64"}')  # the SDK's default: the trap

    runner.drain(timeout=10)

    assert seen == []
    assert _raw_contents(azurite, f"{queue}-poison") == ['{"sent": "without base64"}']
    assert runner.stats["decode_failed"] == 1


@integration
def test_percent_setting_queue_names_resolve_from_settings_then_environment(
    azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from_settings, from_env = _queue_name("s"), _queue_name("e")
    monkeypatch.setenv("TEST_ENV_QUEUE", from_env.upper())  # the host lower-cases queue names
    seen: list[str] = []
    bp = func.Blueprint()

    @bp.queue_trigger(arg_name="msg", queue_name="%TEST_SETTINGS_QUEUE%", connection="AzureWebJobsStorage")
    def by_setting(msg: func.QueueMessage) -> None:
        seen.append("settings:" + msg.get_body().decode())

    @bp.queue_trigger(arg_name="msg", queue_name="%TEST_ENV_QUEUE%", connection="AzureWebJobsStorage")
    def by_env(msg: func.QueueMessage) -> None:
        seen.append("env:" + msg.get_body().decode())

    app = func.FunctionApp()
    app.register_functions(bp)
    runner = _runner(azurite, app, _host_json(tmp_path), settings={"TEST_SETTINGS_QUEUE": from_settings})

    assert sorted(runner.trigger_queues) == sorted([from_settings, from_env])
    runner.send_message(from_settings, "a")
    runner.send_message(from_env, "b")
    runner.drain(timeout=10)
    assert sorted(seen) == ["env:b", "settings:a"]


@integration
def test_undefined_percent_setting_fails_at_construction_naming_it(azurite: Azurite, tmp_path: Path):
    app = _queue_app("%TEST_UNDEFINED_QUEUE_SETTING%", lambda m: None)
    with pytest.raises(HostRunnerError, match="TEST_UNDEFINED_QUEUE_SETTING"):
        _runner(azurite, app, _host_json(tmp_path))


@integration
def test_async_queue_function_is_awaited(azurite: Azurite, tmp_path: Path):
    queue = _queue_name()
    seen: list[str] = []
    bp = func.Blueprint()

    @bp.queue_trigger(arg_name="msg", queue_name=queue, connection="AzureWebJobsStorage")
    async def on_message(msg: func.QueueMessage) -> None:
        seen.append(msg.get_body().decode())

    app = func.FunctionApp()
    app.register_functions(bp)
    runner = _runner(azurite, app, _host_json(tmp_path))
    runner.send_message(queue, "awaited")

    runner.drain(timeout=10)

    assert seen == ["awaited"]


@integration
def test_worker_pool_processes_a_batch_in_parallel(azurite: Azurite, tmp_path: Path):
    queue = _queue_name()
    threads: set[str] = set()
    lock = threading.Lock()

    def slow(msg: func.QueueMessage) -> None:
        time.sleep(0.2)
        with lock:
            threads.add(threading.current_thread().name)

    with _runner(azurite, _queue_app(queue, slow), _host_json(tmp_path, batchSize=8), workers=4) as runner:
        for i in range(8):
            runner.send_message(queue, f"m{i}")
        started = time.monotonic()
        assert runner.pump_once() == 8
        assert time.monotonic() - started < 8 * 0.2
        assert len(threads) > 1


@integration
def test_queue_output_binding_is_written_only_when_the_function_succeeds(azurite: Azurite, tmp_path: Path):
    inbox, outbox = _queue_name("in"), _queue_name("out")
    received: list[str] = []
    bp = func.Blueprint()

    @bp.queue_trigger(arg_name="msg", queue_name=inbox, connection="AzureWebJobsStorage")
    @bp.queue_output(arg_name="out", queue_name=outbox, connection="AzureWebJobsStorage")
    def fan_out(msg: func.QueueMessage, out: func.Out[list[str]]) -> None:
        body = msg.get_body().decode()
        out.set([f"{body}-1", f"{body}-2"])
        if body == "bad":
            raise ValueError("outputs must be discarded")

    @bp.queue_trigger(arg_name="msg", queue_name=outbox, connection="AzureWebJobsStorage")
    def collect(msg: func.QueueMessage) -> None:
        received.append(msg.get_body().decode())

    app = func.FunctionApp()
    app.register_functions(bp)
    runner = _runner(azurite, app, _host_json(tmp_path, maxDequeueCount=1))
    runner.send_message(inbox, "good")
    runner.send_message(inbox, "bad")

    runner.drain(timeout=10)

    assert sorted(received) == ["good-1", "good-2"]
    assert runner.queue_depths() == {inbox: 0, outbox: 0}


# -- crashes and drain -----------------------------------------------------------------------------------


@integration
def test_crash_after_function_leaves_message_to_reappear_after_crash_visibility(
    azurite: Azurite, tmp_path: Path
):
    queue = _queue_name()
    attempts: list[int | None] = []
    runner = _runner(
        azurite,
        _queue_app(queue, lambda m: attempts.append(m.dequeue_count)),
        _host_json(tmp_path),
        visibility_timeout_on_crash=1,
        crash_after_function=lambda name, msg: msg.dequeue_count == 1,
    )
    runner.send_message(queue, "at least once")

    runner.drain(timeout=10)  # waits while the crashed message is invisible

    assert attempts == [1, 2]  # ran twice: the function must be idempotent
    assert runner.stats["crashed"] == 1 and runner.stats["succeeded"] == 1
    assert _raw_contents(azurite, f"{queue}-poison") == []


@integration
def test_message_dequeued_past_max_after_crashes_is_poisoned_uninvoked(azurite: Azurite, tmp_path: Path):
    queue = _queue_name()
    attempts: list[int | None] = []
    runner = _runner(
        azurite,
        _queue_app(queue, lambda m: attempts.append(m.dequeue_count)),
        _host_json(tmp_path, maxDequeueCount=2),
        visibility_timeout_on_crash=1,
        crash_after_function=lambda name, msg: True,
    )
    runner.send_message(queue, "keeps crashing")

    runner.drain(timeout=15)

    assert attempts == [1, 2]
    assert _raw_contents(azurite, f"{queue}-poison") == [runner.encode("keeps crashing")]


@integration
def test_drain_times_out_naming_queue_depths_while_messages_stay_invisible(azurite: Azurite, tmp_path: Path):
    queue = _queue_name()
    runner = _runner(
        azurite,
        _queue_app(queue, lambda m: None),
        _host_json(tmp_path),
        visibility_timeout_on_crash=60,
        crash_after_function=lambda name, msg: True,
    )
    runner.send_message(queue, "stuck")

    with pytest.raises(DrainTimeout) as caught:
        runner.drain(timeout=0.5)
    assert caught.value.depths == {queue: 1}


@integration
def test_drain_returns_promptly_when_queues_are_empty(azurite: Azurite, tmp_path: Path):
    runner = _runner(azurite, _queue_app(_queue_name(), lambda m: None), _host_json(tmp_path))
    started = time.monotonic()
    assert runner.drain(timeout=5) == 0
    assert time.monotonic() - started < 2


@integration
def test_two_runners_can_share_one_app_although_get_functions_runs_once(azurite: Azurite, tmp_path: Path):
    app = _queue_app(_queue_name(), lambda m: None)
    first = _runner(azurite, app, _host_json(tmp_path))
    second = _runner(azurite, app, _host_json(tmp_path))
    assert first.function_names == second.function_names == ["on_message"]


# -- timer and HTTP --------------------------------------------------------------------------------------


@integration
def test_run_timer_invokes_the_timer_function_with_a_timer_request(azurite: Azurite, tmp_path: Path):
    calls: list[func.TimerRequest] = []
    app = func.FunctionApp()

    @app.timer_trigger(schedule="%TEST_SCHEDULE%", arg_name="timer", run_on_startup=False)
    def tick(timer: func.TimerRequest) -> None:
        calls.append(timer)

    runner = _runner(azurite, app, _host_json(tmp_path), settings={"TEST_SCHEDULE": "0 0 2 * * *"})

    runner.run_timer()
    runner.run_timer("tick", past_due=True)

    assert runner.timer_schedule("tick") == "0 0 2 * * *"
    assert [c.past_due for c in calls] == [False, True]
    assert all(isinstance(c, func.TimerRequest) for c in calls)


@integration
def test_call_http_returns_the_function_response_with_params_and_route_values(
    azurite: Azurite, tmp_path: Path
):
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="greet/{name}", methods=["GET", "POST"])
    def greet(req: func.HttpRequest) -> func.HttpResponse:
        payload = {
            "name": req.route_params["name"],
            "lang": req.params.get("lang"),
            "caller": req.headers.get("x-caller"),
            "body": req.get_body().decode(),
            "method": req.method,
        }
        return func.HttpResponse(json.dumps(payload), mimetype="application/json")

    @app.route(route="broken")
    def broken(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("bug")

    runner = _runner(azurite, app, _host_json(tmp_path))

    response = runner.call_http(
        "greet", url="http://localhost/api/greet/ana?lang=pt", headers={"X-Caller": "test"}
    )
    assert response.status_code == 200
    assert json.loads(response.get_body()) == {
        "name": "ana",
        "lang": "pt",
        "caller": "test",
        "body": "",
        "method": "GET",
    }
    posted = runner.call_http("greet", "POST", route_params={"name": "bo"}, body="hi")
    assert json.loads(posted.get_body())["body"] == "hi"
    assert runner.call_http("broken").status_code == 500  # as the host answers an unhandled exception
    with pytest.raises(HostRunnerError):
        runner.call_http("greet", "DELETE", route_params={"name": "x"})



@integration
def test_call_http_from_a_hundred_threads_at_once_answers_each_and_creates_the_output_queue_once(
    azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    queue = _queue_name("http")
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="take/{n}", methods=["POST"])
    @app.queue_output(arg_name="out", queue_name=queue, connection="AzureWebJobsStorage")
    def take(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
        out.set(req.get_body().decode())
        return func.HttpResponse(f"{req.route_params['n']}:{req.get_body().decode()}")

    creates: list[str] = []
    create_queue = QueueClient.create_queue

    def counted(self: QueueClient, *args: Any, **kwargs: Any) -> Any:
        creates.append(self.queue_name)
        return create_queue(self, *args, **kwargs)

    monkeypatch.setattr(QueueClient, "create_queue", counted)
    runner = _runner(azurite, app, _host_json(tmp_path, messageEncoding="none"))
    start = threading.Barrier(100)

    def call(n: int) -> bytes:
        start.wait()
        return runner.call_http("take", "POST", f"http://localhost/api/take/{n}", body=str(n)).get_body()

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(call, range(100)))
    assert answers == [f"{n}:{n}".encode() for n in range(100)]
    assert creates.count(queue) == 1
    sent = runner.queue_client(queue).receive_messages(messages_per_page=32, visibility_timeout=60)
    assert sorted(int(m.content) for m in sent) == list(range(100))


def test_http_function_at_finds_the_route_under_the_prefix_literal_before_parameter(tmp_path: Path):
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="items/{id}", methods=["GET"])
    def item(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    @app.route(route="items/latest")
    def latest(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    runner = HostRunner(app, host_json=_host_json(tmp_path), connection_settings={"AzureWebJobsStorage": "unused"})
    assert runner.http_function_at("/api/items/42") == ("item", ("GET",))
    assert runner.http_function_at("/api/items/latest") == ("latest", None)
    assert runner.http_function_at("/api/other") is None and runner.http_function_at("/items/42") is None

# -- Azurite ---------------------------------------------------------------------------------------------


def _azurite_processes(port: int) -> list[int]:
    """PIDs of live processes running Azurite on `port` (read from /proc, so orphans are found too)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if state != "Z" and any(a.endswith(b"azurite.js") for a in args) and str(port).encode() in args:
            found.append(int(entry.name))
    return found


@integration
def test_azurite_restart_keeps_ports_and_location_data_and_stop_leaves_no_process(tmp_path: Path):
    instance = Azurite(location=tmp_path / "azurite-data")
    with instance:
        connection_string = instance.connection_string
        first_pid = instance.pid
        client = QueueClient.from_connection_string(connection_string, "survives-restart")
        client.create_queue()
        client.send_message("kept")

        instance.restart()

        assert instance.connection_string == connection_string
        assert instance.pid != first_pid and _azurite_processes(instance.queue_port) == [instance.pid]
        assert [m.content for m in client.peek_messages()] == ["kept"]
        port = instance.queue_port
    assert not instance.running
    assert _azurite_processes(port) == []
    with pytest.raises(ProcessLookupError):
        os.killpg(first_pid, 0)


@integration
def test_azurite_in_memory_restart_starts_empty_on_the_same_ports():
    with Azurite() as instance:
        ports = (instance.blob_port, instance.queue_port, instance.table_port)
        QueueClient.from_connection_string(instance.connection_string, "gone-after-restart").create_queue()
        instance.restart()
        assert (instance.blob_port, instance.queue_port, instance.table_port) == ports
        assert _raw_contents(instance, "gone-after-restart") == []  # the queue itself is gone


def test_azurite_without_node_modules_says_to_run_npm_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(azurite_module, "_REPO_ROOT", tmp_path)
    with pytest.raises(AzuriteError, match="npm ci"):
        Azurite()


def test_a_release_or_delete_storage_cannot_take_leaves_the_message_to_come_back_instead_of_stopping_the_run():
    from azure.core.exceptions import ServiceRequestError

    def unreachable():
        raise ServiceRequestError("Failed to establish a new connection: [Errno 111] Connection refused")

    # The message was received invisibly: it comes back when its visibility ends, as in Azure.
    HostRunner._settle(unreachable, "message-1", "release")
    HostRunner._settle(unreachable, "message-1", "delete")
