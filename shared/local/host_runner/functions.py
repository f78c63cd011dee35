"""The app's registered functions as the host reads them: one trigger each, its output bindings,
``%SETTING%`` references resolved, queue names checked and lower-cased."""

from __future__ import annotations

import inspect
import json
import os
import re
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

from shared.local.host_runner.errors import HostRunnerError

DEFAULT_CONNECTION = "AzureWebJobsStorage"
QUEUE_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_SETTING_REF = re.compile(r"%([^%]+)%")
_SUPPORTED_BINDINGS = {"queueTrigger", "timerTrigger", "httpTrigger", "blobTrigger", "queue", "http"}


@dataclass(frozen=True)
class QueueRef:
    connection: str  # the *name* of the connection setting
    queue: str


@dataclass
class FunctionSpec:
    name: str
    fn: Callable[..., Any]
    trigger_type: str
    trigger_arg: str
    trigger: dict[str, Any]
    queue: QueueRef | None = None
    schedule: str | None = None
    route: str | None = None
    methods: tuple[str, ...] | None = None
    queue_outputs: list[tuple[str, QueueRef]] = field(default_factory=list)
    http_output: str | None = None
    out_args: list[str] = field(default_factory=list)
    wants_context: bool = False


# get_functions() may be called only once per app; keep its result so several runners can share an app.
_FUNCTIONS_BY_APP: weakref.WeakKeyDictionary[Any, list[func.Function]] = weakref.WeakKeyDictionary()
_FUNCTIONS_LOCK = threading.Lock()


def registered_functions(app: func.FunctionApp | Sequence[func.Function]) -> list[func.Function]:
    """The app's functions; safe to call more than once (the app's own get_functions() is not)."""
    if not isinstance(app, func.FunctionApp):
        return list(app)
    with _FUNCTIONS_LOCK:
        if app not in _FUNCTIONS_BY_APP:
            _FUNCTIONS_BY_APP[app] = list(app.get_functions())
        return _FUNCTIONS_BY_APP[app]


class FunctionReader:
    """Reads functions against the runner's connection settings (names of connections) and app settings."""

    def __init__(self, connection_settings: Mapping[str, str], settings: Mapping[str, str]) -> None:
        self._connection_settings = connection_settings
        self._settings = settings

    def read(self, function: func.Function) -> FunctionSpec:
        name = function.get_function_name()
        if name is None:
            raise HostRunnerError(f"function {function!r} has no name")
        bindings = json.loads(function.get_function_json())["bindings"]
        unsupported = sorted({b["type"] for b in bindings} - _SUPPORTED_BINDINGS)
        if unsupported:
            raise HostRunnerError(
                f"function {name} uses bindings {unsupported} that HostRunner does not emulate "
                "(add them in shared/local/host_runner/)"
            )
        triggers = [b for b in bindings if b["type"].endswith("Trigger")]
        if len(triggers) != 1:
            raise HostRunnerError(f"function {name} must have exactly one trigger, has {len(triggers)}")
        trigger = triggers[0]
        user_function = function.get_user_function()
        spec = FunctionSpec(
            name=name,
            fn=user_function,
            trigger_type=trigger["type"],
            trigger_arg=trigger["name"],
            trigger=trigger,
            wants_context="context" in inspect.signature(user_function).parameters,
        )
        if spec.trigger_type == "queueTrigger":
            spec.queue = self.queue_ref(name, trigger)
        elif spec.trigger_type == "timerTrigger":
            spec.schedule = self.resolve(name, str(trigger["schedule"]))
        elif spec.trigger_type == "blobTrigger":
            if str(trigger.get("source", "")).lower() != "eventgrid":
                # Flex Consumption has no polling blob trigger: an app that relies on one fails here.
                raise HostRunnerError(f"function {name}: a blob trigger must have source EventGrid")
        else:
            spec.route = str(trigger.get("route") or name)
            methods = trigger.get("methods")
            spec.methods = tuple(str(m).upper() for m in methods) if methods else None
        for binding in bindings:
            if binding is trigger or binding.get("direction") != "OUT":
                continue
            arg = binding["name"]
            if arg != "$return":
                spec.out_args.append(arg)
            if binding["type"] == "queue":
                spec.queue_outputs.append((arg, self.queue_ref(name, binding)))
            else:
                spec.http_output = arg
        return spec

    def queue_ref(self, function_name: str, binding: Mapping[str, Any]) -> QueueRef:
        # Like the host: resolve %SETTING% references, then lower-case ("coerce here to be nice").
        queue = self.resolve(function_name, str(binding["queueName"])).lower()
        if not QUEUE_NAME.match(queue):
            raise HostRunnerError(f"function {function_name}: {queue!r} is not a valid queue name")
        connection = binding.get("connection") or DEFAULT_CONNECTION
        if connection not in self._connection_settings:
            raise HostRunnerError(
                f"function {function_name}: connection {connection!r} is not in connection_settings"
            )
        return QueueRef(connection, queue)

    def resolve(self, function_name: str, text: str) -> str:
        def lookup(match: re.Match[str]) -> str:
            key = match.group(1)
            value = self._settings.get(key, os.environ.get(key))
            if value is None:
                raise HostRunnerError(f"function {function_name}: app setting {key!r} is not defined")
            return value

        return _SETTING_REF.sub(lookup, text)
