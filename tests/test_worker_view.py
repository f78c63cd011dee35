"""The real worker's view of the app (issue 19, item 7).

In Azure, the Python 3.13 worker hands the app to the `azure-functions-runtime` library: on the host's
WorkerInitRequest it imports `function_app.py` from the app's directory, validates every function
against its Python signature, and builds the function metadata the host registers (one
RpcFunctionMetadata per function, with the raw binding JSON). An app it rejects never starts. These tests
drive the library's own entry points as the worker does (`worker_init_request`, then
`functions_metadata_request`), without gRPC, and check what the host would receive: the function names,
each binding's type, direction and settings, and the host's own rules for names and routes.

The library takes the worker's generated protobuf classes as a parameter; they ship inside the worker,
in no package on PyPI, so `PROTOS` below declares the few messages indexing builds, with the field names, types and enum
numbers of the host's FunctionRpc.proto, and refuses an unknown field or a value of the wrong type as a
generated class does.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import textwrap
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from azure_functions_runtime import functions_metadata_request, worker_init_request
from azure_functions_runtime import handle_event as runtime_events
from azure_functions_runtime.bindings import meta as runtime_bindings
from azure_functions_runtime.functions import Registry
from azure_functions_runtime.http_v2 import HttpV2Registry

from shared.settings import (
    CHAT_EXPORTS_CONTAINER,
    EML_DROPS_CONNECTION,
    EML_DROPS_CONTAINER,
    ITEMS_QUEUE,
    LISTING_QUEUE,
    STORAGE_CONNECTION,
    TRANSCRIPTS_QUEUE,
)

APP_DIR = Path(__file__).resolve().parents[1]
SCRIPT_FILE = "function_app.py"  # the worker's default (PYTHON_SCRIPT_FILE_NAME unset)

# -- the protobuf messages indexing builds (FunctionRpc.proto) --------------------------------------------


class _Repeated:
    def __init__(self, of: Any) -> None:
        self.of = of


class _Map:  # map<string, of>
    def __init__(self, of: Any) -> None:
        self.of = of


class _Enum:
    def __init__(self, **values: int) -> None:
        self.values = values


def _field_value(kind: Any, value: Any, where: str) -> Any:
    if isinstance(kind, _Repeated):
        if value is not None and not isinstance(value, list | tuple):
            raise TypeError(f"{where}: a repeated field takes a list, not {type(value).__name__}")
        return [_field_value(kind.of, item, where) for item in value or ()]
    if isinstance(kind, _Map):
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"{where}: a map field takes a dict, not {type(value).__name__}")
        for key in value or {}:
            if not isinstance(key, str):
                raise TypeError(f"{where}: map keys are strings, not {type(key).__name__}")
        return {key: _field_value(kind.of, item, where) for key, item in (value or {}).items()}
    if value is None:  # as in a generated class: None leaves the field at its default
        defaults = {str: "", bool: False, int: 0}
        return 0 if isinstance(kind, _Enum) else defaults.get(kind)
    if isinstance(kind, _Enum):
        if type(value) is int and value in kind.values.values():
            return value
        if isinstance(value, str) and value in kind.values:
            return kind.values[value]
        raise ValueError(f"{where}: unknown enum value {value!r}")
    if kind in (str, bool, int, timedelta) and type(value) is not kind:
        raise TypeError(f"{where}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    if isinstance(kind, type) and issubclass(kind, _Message) and not isinstance(value, kind):
        raise TypeError(f"{where}: expected {kind.__name__}, got {type(value).__name__}")
    return value


class _Message:
    FIELDS: ClassVar[dict[str, Any]] = {}

    def __init__(self, **values: Any) -> None:
        for name in values:
            if name not in self.FIELDS:
                raise ValueError(f'Protocol message {type(self).__name__} has no "{name}" field.')
        for name, kind in self.FIELDS.items():
            setattr(self, name, _field_value(kind, values.get(name), f"{type(self).__name__}.{name}"))

    @classmethod
    def enum_constants(cls, enum: _Enum) -> None:  # nested enum values are class attributes, as generated
        for name, number in enum.values.items():
            setattr(cls, name, number)


DIRECTION = _Enum(**{"in": 0, "out": 1, "inout": 2})
DATA_TYPE = _Enum(undefined=0, string=1, binary=2, stream=3)
STATUS = _Enum(Failure=0, Success=1, Cancelled=2)
RETRY_STRATEGY = _Enum(exponential_backoff=0, fixed_delay=1)


class RpcException(_Message):
    FIELDS = {"source": str, "stack_trace": str, "message": str, "is_user_exception": bool, "type": str}


class StatusResult(_Message):
    FIELDS = {"status": STATUS, "result": str, "exception": RpcException}


class WorkerMetadata(_Message):
    FIELDS = {"runtime_name": str, "runtime_version": str, "worker_version": str, "worker_bitness": str,
              "custom_properties": _Map(str)}


class WorkerInitRequest(_Message):
    FIELDS = {"host_version": str, "capabilities": _Map(str), "worker_directory": str,
              "function_app_directory": str}


class StreamingMessage(_Message):
    FIELDS = {"request_id": str, "worker_init_request": WorkerInitRequest}


class WorkerInitResponse(_Message):
    FIELDS = {"worker_version": str, "capabilities": _Map(str), "result": StatusResult,
              "worker_metadata": WorkerMetadata}


class BindingInfo(_Message):
    FIELDS = {"type": str, "direction": DIRECTION, "data_type": DATA_TYPE, "properties": _Map(str)}


class RpcRetryOptions(_Message):
    FIELDS = {"max_retry_count": int, "delay_interval": timedelta, "minimum_interval": timedelta,
              "maximum_interval": timedelta, "retry_strategy": RETRY_STRATEGY}


class RpcFunctionMetadata(_Message):
    FIELDS = {"name": str, "directory": str, "script_file": str, "entry_point": str,
              "bindings": _Map(BindingInfo), "is_proxy": bool, "status": StatusResult, "language": str,
              "raw_bindings": _Repeated(str), "function_id": str, "managed_dependency_enabled": bool,
              "retry_options": RpcRetryOptions, "properties": _Map(str)}


class FunctionMetadataResponse(_Message):
    FIELDS = {"function_metadata_results": _Repeated(RpcFunctionMetadata), "result": StatusResult,
              "use_default_metadata_indexing": bool}


BindingInfo.enum_constants(DIRECTION)
BindingInfo.enum_constants(DATA_TYPE)
StatusResult.enum_constants(STATUS)
RpcRetryOptions.enum_constants(RETRY_STRATEGY)

PROTOS = SimpleNamespace(**{message.__name__: message for message in (
    RpcException, StatusResult, WorkerMetadata, WorkerInitRequest, StreamingMessage, WorkerInitResponse,
    BindingInfo, RpcRetryOptions, RpcFunctionMetadata, FunctionMetadataResponse,
)})

# -- the worker -------------------------------------------------------------------------------------------

# App settings the worker itself reads while it starts and indexes (none is set on the app).
WORKER_SETTINGS = ("PYTHON_SCRIPT_FILE_NAME", "PYTHON_ENABLE_DEBUG_LOGGING", "PYTHON_ENABLE_OPENTELEMETRY",
                   "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "APPLICATIONINSIGHTS_CONNECTION_STRING")



@dataclass
class WorkerView:
    init: WorkerInitResponse
    metadata: FunctionMetadataResponse

    @property
    def functions(self) -> dict[str, RpcFunctionMetadata]:
        return {function.name: function for function in self.metadata.function_metadata_results}

    @property
    def refusal(self) -> str | None:
        """The exception the worker reports instead of starting the app, or None if it indexed it."""
        if self.init.result.status == StatusResult.Success:
            return None
        return self.init.result.exception.message if self.init.result.exception else "(no exception)"


@pytest.fixture
def index(monkeypatch):
    """Index an app directory as a freshly started worker does: WorkerInitRequest, FunctionsMetadataRequest."""
    module = Path(SCRIPT_FILE).stem

    def run(app_dir: Path) -> WorkerView:
        # A new worker process: nothing indexed, no app module imported, the library's caches empty.
        monkeypatch.setattr(runtime_events, "_functions", Registry())
        monkeypatch.setattr(runtime_events, "_metadata_result", None)
        monkeypatch.setattr(runtime_events, "protos", None)
        monkeypatch.setattr(runtime_bindings, "BINDING_REGISTRY", None)
        monkeypatch.setattr(runtime_bindings, "DEFERRED_BINDING_REGISTRY", None)
        monkeypatch.setattr(runtime_bindings, "_DEFERRED_BINDING_REGISTRY_LOADED", False)
        monkeypatch.setattr(HttpV2Registry, "_http_v2_enabled_checked", False)
        monkeypatch.setattr(HttpV2Registry, "_http_v2_enabled", False)
        for setting in WORKER_SETTINGS:
            monkeypatch.delenv(setting, raising=False)
        # The worker imports the script by module name, with the app's directory on sys.path
        # (monkeypatch puts back whatever `function_app` this test process had imported before).
        monkeypatch.syspath_prepend(str(app_dir))
        monkeypatch.delitem(sys.modules, module, raising=False)
        host_says = StreamingMessage(worker_init_request=WorkerInitRequest(
            host_version="4", capabilities={}, function_app_directory=str(app_dir)))
        try:
            init = asyncio.run(worker_init_request(SimpleNamespace(
                name="WorkerInitRequest", request=host_says, properties={"host": "127.0.0.1", "protos": PROTOS})))
            metadata = asyncio.run(functions_metadata_request(SimpleNamespace(name="WorkerMetadataRequest")))
        finally:
            sys.modules.pop(module, None)  # this worker's app goes with it
        return WorkerView(init, metadata)

    return run


# -- what the host checks in the metadata it receives -----------------------------------------------------

# The host's own patterns (Azure Functions host: Utility.FunctionNameValidationRegex, case-insensitive, and
# FunctionDescriptorProvider.BindingNameValidationRegex): a binding name has no underscore.
HOST_FUNCTION_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,127}$", re.IGNORECASE)
HOST_BINDING_NAME = re.compile(r"^([a-zA-Z][a-zA-Z0-9]{0,127}|\$return)$")
# Azure Storage queue and container names: 3-63 lowercase letters, digits and single hyphens.
STORAGE_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
POISON_SUFFIX = "-poison"  # the queues extension moves a message that keeps failing to <queue>-poison


def raw_bindings(function: RpcFunctionMetadata) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in function.raw_bindings]


def host_rejections(functions: list[RpcFunctionMetadata]) -> list[str]:
    """What the host would refuse to load, by its rules for names, bindings, routes and storage names."""
    problems: list[str] = []
    names: set[str] = set()
    routes: list[tuple[str, str, set[str]]] = []
    for function in functions:
        name = function.name
        if not HOST_FUNCTION_NAME.match(name) or name.lower() == "host":
            problems.append(f"'{name}' is not a valid function name")
        if name.lower() in names:
            problems.append(f"function name '{name}' is not unique (names are compared ignoring case)")
        names.add(name.lower())
        bindings = raw_bindings(function)
        triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
        if len(triggers) != 1:
            problems.append(f"{name}: {len(triggers)} trigger bindings, not one")
        binding_names: set[str] = set()
        for binding in bindings:
            binding_name, direction = binding.get("name"), str(binding.get("direction", "")).lower()
            if not binding.get("type"):
                problems.append(f"{name}: a binding without a type: {binding}")
            if direction not in ("in", "out"):
                problems.append(f"{name}: binding {binding_name} has direction {binding.get('direction')!r}")
            if not isinstance(binding_name, str) or not HOST_BINDING_NAME.match(binding_name):
                problems.append(f"{name}: the binding name {binding_name} is invalid")
            elif binding_name.lower() in binding_names:
                problems.append(f"{name}: multiple bindings with name '{binding_name}'")
            else:
                binding_names.add(binding_name.lower())
            if binding_name == "$return" and direction != "out":
                problems.append(f"{name}: $return bindings must specify a direction of 'out'")
        for trigger in triggers:
            if trigger.get("direction") != "IN":
                problems.append(f"{name}: its trigger is not an input binding")
            if trigger["type"] == "httpTrigger":
                route = (trigger.get("route") or name).strip("/").lower()
                if route.split("/")[0] == "admin":
                    problems.append(f"{name}: route {route} conflicts with the host's built-in /admin routes")
                routes.append((name, route, {m.upper() for m in trigger.get("methods") or ()}))
            if trigger["type"] == "queueTrigger" and not STORAGE_NAME.match(trigger["queueName"] + POISON_SUFFIX):
                problems.append(f"{name}: queue {trigger['queueName']} (or its poison queue) is not a valid name")
            if trigger["type"] == "blobTrigger" and not STORAGE_NAME.match(trigger["path"].split("/")[0]):
                problems.append(f"{name}: blob path {trigger['path']} does not start with a valid container")
    for i, (first, route, methods) in enumerate(routes):
        for second, other_route, other_methods in routes[i + 1:]:
            # no methods means every method
            if route == other_route and (not methods or not other_methods or methods & other_methods):
                problems.append(f"{first} and {second} both serve route {route} for the same method")
    return problems


# -- the app as the code declares it ----------------------------------------------------------------------

QUEUE_FUNCTIONS = {"list_archive_slice": LISTING_QUEUE, "import_archive_item": ITEMS_QUEUE,
                   "compose_transcripts": TRANSCRIPTS_QUEUE}
HTTP_FUNCTIONS = {  # name: route, methods, auth level
    # The operators' pages and reports: behind a function key.
    "archive_status": ("status", ["GET"], "FUNCTION"),
    "archive_report": ("report", ["GET"], "FUNCTION"),
    # The firm's own application posts its sent messages here, with a function key.
    "whatsapp_outbound": ("whatsapp/outbound", ["POST"], "FUNCTION"),
    # Meta cannot send a function key: the verify token (GET) and the body's signature (POST) authenticate.
    "whatsapp_webhook": ("whatsapp/webhook", ["GET", "POST"], "ANONYMOUS"),
}
ARCHIVE_SCHEDULE = "ARCHIVE_SCHEDULE"  # the app setting the timer's schedule names (%ARCHIVE_SCHEDULE%)

EXPECTED_BINDINGS: dict[str, list[dict[str, Any]]] = {
    # The host resolves %ARCHIVE_SCHEDULE% from the app settings; the metadata keeps the placeholder.
    "schedule_archive_window": [{"direction": "IN", "type": "timerTrigger", "name": "timer",
                                 "schedule": f"%{ARCHIVE_SCHEDULE}%", "runOnStartup": False, "useMonitor": True}],
    **{name: [{"direction": "IN", "type": "queueTrigger", "name": "message", "queueName": queue,
               "connection": STORAGE_CONNECTION}] for name, queue in QUEUE_FUNCTIONS.items()},
    **{name: [{"direction": "IN", "type": "httpTrigger", "name": "req", "methods": methods, "authLevel": auth,
               "route": route},
              {"direction": "OUT", "type": "http", "name": "$return"}]
       for name, (route, methods, auth) in HTTP_FUNCTIONS.items()},
    # Event Grid delivers the uploads (Flex Consumption has no polling blob trigger), and the parameter is
    # a BlobClient: SupportsDeferredBinding makes the host send a reference, not the blob's bytes.
    "chat_export_blob": [{"direction": "IN", "type": "blobTrigger", "name": "client",
                          "path": f"{CHAT_EXPORTS_CONTAINER}/{{name}}", "connection": STORAGE_CONNECTION,
                          "source": "EventGrid", "properties": {"SupportsDeferredBinding": True}}],
    # A vendor's drops, in the SFTP account: its own connection.
    "eml_drop_blob": [{"direction": "IN", "type": "blobTrigger", "name": "client",
                       "path": f"{EML_DROPS_CONTAINER}/{{name}}", "connection": EML_DROPS_CONNECTION,
                       "source": "EventGrid", "properties": {"SupportsDeferredBinding": True}}],
}


@pytest.fixture
def app_view(index) -> WorkerView:
    return index(APP_DIR)


# -- the app ----------------------------------------------------------------------------------------------


def test_the_worker_indexes_the_app_and_hands_the_host_the_ten_functions(app_view):
    assert app_view.refusal is None
    assert app_view.metadata.result.status == StatusResult.Success
    # The worker indexes the app itself; the host does not fall back to looking for function.json files.
    assert app_view.metadata.use_default_metadata_indexing is False
    assert set(app_view.functions) == set(EXPECTED_BINDINGS)
    assert len(app_view.metadata.function_metadata_results) == len(EXPECTED_BINDINGS)
    for name, function in app_view.functions.items():
        assert (function.entry_point, function.script_file, function.directory) == (name, SCRIPT_FILE,
                                                                                   str(APP_DIR)), name
        assert function.language == "python" and function.properties == {"worker_indexed": "True"}, name
        assert function.is_proxy is False and function.managed_dependency_enabled is False, name
        # No function-level retry: a queue message that fails is retried by the queue (maxDequeueCount in
        # host.json) and then poisoned; the timer runs again at its next occurrence.
        assert function.retry_options is None, name
    assert len({f.function_id for f in app_view.functions.values()}) == len(EXPECTED_BINDINGS)


def test_each_function_binds_exactly_the_trigger_and_outputs_the_code_declares(app_view):
    assert {name: raw_bindings(f) for name, f in app_view.functions.items()} == EXPECTED_BINDINGS


def test_the_binding_table_agrees_with_the_raw_bindings_and_forces_no_data_type(app_view):
    directions = {"IN": getattr(BindingInfo, "in"), "OUT": BindingInfo.out}
    for name, function in app_view.functions.items():
        raw = {b["name"]: b for b in raw_bindings(function)}
        assert set(function.bindings) == set(raw), name
        for binding_name, info in function.bindings.items():
            assert info.type == raw[binding_name]["type"], (name, binding_name)
            assert info.direction == directions[raw[binding_name]["direction"]], (name, binding_name)
            # No dataType anywhere: each trigger hands its default (the queue message, the timer, the
            # request, the blob reference), not a string or bytes the code did not ask for.
            assert info.data_type == BindingInfo.undefined and "dataType" not in raw[binding_name], (name,
                                                                                                     binding_name)


def test_the_host_would_accept_every_name_binding_route_and_storage_name(app_view):
    assert host_rejections(app_view.metadata.function_metadata_results) == []


def test_the_poison_queues_the_code_reads_are_the_ones_the_host_will_fill(app_view):
    from shared.settings import ITEMS_POISON_QUEUE, LISTING_POISON_QUEUE, TRANSCRIPTS_POISON_QUEUE

    # The queues extension moves a message that keeps failing to <queueName>-poison.
    triggered = {b["queueName"] for f in app_view.functions.values() for b in raw_bindings(f)
                 if b["type"] == "queueTrigger"}
    assert {queue + POISON_SUFFIX for queue in triggered} == {
        LISTING_POISON_QUEUE, ITEMS_POISON_QUEUE, TRANSCRIPTS_POISON_QUEUE}


def test_every_setting_a_binding_names_is_set_locally_and_by_both_templates(app_view):
    placeholders = {setting for function in app_view.functions.values() for raw in function.raw_bindings
                    for setting in re.findall(r"%([A-Za-z0-9_]+)%", raw)}
    assert placeholders == {ARCHIVE_SCHEDULE}
    connections = {b["connection"] for f in app_view.functions.values() for b in raw_bindings(f) if "connection" in b}
    assert connections == {STORAGE_CONNECTION, EML_DROPS_CONNECTION}
    local = json.loads((APP_DIR / "local.settings.json.example").read_text(encoding="utf-8"))["Values"]
    bicep = (APP_DIR / "infra" / "bicep" / "main.bicep").read_text(encoding="utf-8")
    terraform = (APP_DIR / "infra" / "terraform" / "app.tf").read_text(encoding="utf-8")
    for setting in placeholders:
        assert setting in local
        assert re.search(rf"^\s*{setting}\s*:", bicep, re.MULTILINE), f"{setting} not in main.bicep's app settings"
        assert re.search(rf"^\s*{setting}\s*=", terraform, re.MULTILINE), f"{setting} not in app.tf's app settings"
    for connection in connections:
        # Locally a connection string; deployed, the identity-based form (<connection>__accountName, ...).
        assert connection in local
        assert re.search(rf"^\s*{connection}__(accountName|blobServiceUri)\s*:", bicep, re.MULTILINE), connection
        assert re.search(rf"^\s*{connection}__(accountName|blobServiceUri)\s*=", terraform, re.MULTILINE), connection


# -- apps the worker or the host would refuse: the same path fails ----------------------------------------

HEADER = "import azure.functions as func\n\napp = func.FunctionApp()\n"
QUEUE = f'queue_name="{ITEMS_QUEUE}", connection="{STORAGE_CONNECTION}"'

WORKER_REFUSES = {
    "a parameter that is not the binding's name": (f"""
        @app.queue_trigger(arg_name="msg", {QUEUE})
        def import_item(message: func.QueueMessage) -> None:
            pass
        """, "the following parameters are declared in Python but not in the function definition"),
    "two functions with one name": (f"""
        @app.function_name("import_item")
        @app.queue_trigger(arg_name="message", {QUEUE})
        def first(message: func.QueueMessage) -> None:
            pass

        @app.function_name("import_item")
        @app.queue_trigger(arg_name="message", {QUEUE})
        def second(message: func.QueueMessage) -> None:
            pass
        """, "does not have a unique function name"),
    "a trigger parameter annotated with another trigger's type": (f"""
        @app.queue_trigger(arg_name="message", {QUEUE})
        def import_item(message: func.HttpRequest) -> None:
            pass
        """, "do not match the corresponding function parameter's Python type annotation HttpRequest"),
    "an output binding whose parameter is not func.Out": (f"""
        @app.queue_trigger(arg_name="message", {QUEUE})
        @app.queue_output(arg_name="next", {QUEUE})
        def import_item(message: func.QueueMessage, next: str) -> None:
            pass
        """, 'is declared to have the "out" direction'),
    "two function apps in the script": ("""
        other = func.FunctionApp()
        """, "More than one FunctionApp"),
    "a module the app needs but the package does not install": ("""
        import not_in_requirements  # noqa: F401
        """, "No module named 'not_in_requirements'"),
}

HOST_REFUSES = {
    "a binding name with an underscore": (f"""
        @app.queue_trigger(arg_name="queue_message", {QUEUE})
        def import_item(queue_message: func.QueueMessage) -> None:
            pass
        """, "import_item: the binding name queue_message is invalid"),
    "function names that differ only in case": ("""
        @app.function_name("Status")
        @app.route(route="status", methods=["GET"])
        def first(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse()

        @app.route(route="status2", methods=["GET"])
        def status(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse()
        """, "function name 'status' is not unique (names are compared ignoring case)"),
    "two functions on one route and method": ("""
        @app.route(route="status", methods=["GET", "POST"])
        def first(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse()

        @app.route(route="Status/", methods=["POST"])
        def second(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse()
        """, "first and second both serve route status for the same method"),
    "a route under the host's /admin": ("""
        @app.route(route="admin/status", methods=["GET"])
        def status(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse()
        """, "status: route admin/status conflicts with the host's built-in /admin routes"),
    "a queue name with capitals": ("""
        @app.queue_trigger(arg_name="message", queue_name="Items", connection="AzureWebJobsStorage")
        def import_item(message: func.QueueMessage) -> None:
            pass
        """, "import_item: queue Items (or its poison queue) is not a valid name"),
}


def write_app(directory: Path, body: str) -> Path:
    (directory / SCRIPT_FILE).write_text(HEADER + textwrap.dedent(body), encoding="utf-8")
    return directory


@pytest.mark.parametrize(("body", "reason"), list(WORKER_REFUSES.values()), ids=list(WORKER_REFUSES))
def test_the_worker_refuses_to_start_an_app_it_cannot_load(index, tmp_path, body, reason):
    view = index(write_app(tmp_path, body))
    assert view.refusal is not None and reason in view.refusal
    assert view.metadata.function_metadata_results == []


@pytest.mark.parametrize(("body", "reason"), list(HOST_REFUSES.values()), ids=list(HOST_REFUSES))
def test_the_host_rules_refuse_an_app_the_worker_lets_through(index, tmp_path, body, reason):
    view = index(write_app(tmp_path, body))
    assert view.refusal is None
    assert host_rejections(view.metadata.function_metadata_results) == [reason]


def test_the_message_classes_refuse_what_a_generated_class_refuses():
    # So a metadata field the library filled with the wrong type or name fails here, as in the worker.
    with pytest.raises(TypeError):
        RpcFunctionMetadata(raw_bindings=[{"type": "queueTrigger"}])
    with pytest.raises(ValueError, match="no \"route\" field"):
        BindingInfo(type="httpTrigger", route="status")
    with pytest.raises(ValueError, match="unknown enum value"):
        BindingInfo(type="queueTrigger", direction=7)
    assert BindingInfo(type="http", direction="out").direction == BindingInfo.out == 1
