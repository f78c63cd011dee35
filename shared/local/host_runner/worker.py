"""What the Python worker does around a function: hands it its trigger value, ``func.Out`` outputs and a
``context``, runs it (awaiting a coroutine), and reads what it gave a queue output binding."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import azure.functions as func

from shared.local.host_runner.functions import FunctionSpec


class Out(func.Out[Any]):
    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class _Context(func.Context):
    def __init__(self, function_name: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._local = threading.local()
        self._local.invocation_id = self._invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return os.getcwd()

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


def invoke(spec: FunctionSpec, trigger_value: Any) -> tuple[Any, dict[str, Out]]:
    """Runs the function on ``trigger_value``: its return value and its output arguments."""
    outs = {arg: Out() for arg in spec.out_args}
    kwargs: dict[str, Any] = {spec.trigger_arg: trigger_value, **outs}
    if spec.wants_context:
        kwargs["context"] = _Context(spec.name)
    return _call_user_function(spec.fn, kwargs), outs


def _call_user_function(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    result = fn(**kwargs)
    if not inspect.isawaitable(result):
        return result

    async def wait() -> Any:
        return await result

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    # Called from inside an event loop (an async test): asyncio.run would refuse, so use a private one.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, wait()).result()


def output_bodies(value: Any) -> Iterable[bytes]:
    """What a queue output binding accepts from Python: str, bytes, QueueMessage, or a list of them."""
    if value is None:
        return
    if isinstance(value, str):
        yield value.encode("utf-8")
    elif isinstance(value, (bytes, bytearray)):
        yield bytes(value)
    elif isinstance(value, func.QueueMessage):
        yield value.get_body()
    elif isinstance(value, Iterable) and not isinstance(value, Mapping):
        for item in value:
            if isinstance(item, (str, bytes, bytearray, func.QueueMessage)):
                yield from output_bodies(item)
            else:
                raise TypeError(
                    f"queue output list item must be str, bytes or QueueMessage, not {type(item)}"
                )
    else:
        raise TypeError(f"queue output must be str, bytes, QueueMessage or a list of them, not {type(value)}")
