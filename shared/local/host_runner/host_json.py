"""host.json as the host reads it: the storage-queue extension's options and the HTTP route prefix."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from shared.local.host_runner.errors import HostRunnerError

MAX_BATCH = 32  # Azure Storage returns at most 32 messages per receive
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$")


def parse_timespan(text: str) -> dt.timedelta:
    """Parse a .NET TimeSpan as host.json writes it: `[d.]hh:mm:ss[.fffffff]`."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        # .NET would read a bare "30" as 30 *days*: refuse rather than guess.
        raise HostRunnerError(f"not a TimeSpan of the form [d.]hh:mm:ss[.fffffff]: {text!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    return dt.timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0").ljust(7, "0")) // 10,
    )


def _ci_get(mapping: Mapping[str, Any], key: str) -> Any:
    # .NET configuration binding, which reads host.json, ignores key case.
    for k, v in mapping.items():
        if k.lower() == key.lower():
            return v
    return None


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the host's defaults."""

    message_encoding: Literal["base64", "none"] = "base64"
    max_dequeue_count: int = 5
    visibility_timeout: dt.timedelta = dt.timedelta(0)
    batch_size: int = 16

    @classmethod
    def from_host_json(cls, path: Path) -> QueueOptions:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        queues = _ci_get(_ci_get(document, "extensions") or {}, "queues") or {}
        defaults = cls()
        encoding = str(_ci_get(queues, "messageEncoding") or defaults.message_encoding).lower()
        if encoding not in ("base64", "none"):
            raise HostRunnerError(
                f"{path}: extensions.queues.messageEncoding must be base64 or none, not {encoding!r}"
            )
        max_dequeue = int(_ci_get(queues, "maxDequeueCount") or defaults.max_dequeue_count)
        if max_dequeue < 1:
            raise HostRunnerError(f"{path}: extensions.queues.maxDequeueCount must be at least 1")
        batch = int(_ci_get(queues, "batchSize") or defaults.batch_size)
        if not 1 <= batch <= MAX_BATCH:
            raise HostRunnerError(f"{path}: extensions.queues.batchSize must be between 1 and {MAX_BATCH}")
        visibility = _ci_get(queues, "visibilityTimeout")
        return cls(
            message_encoding="base64" if encoding == "base64" else "none",
            max_dequeue_count=max_dequeue,
            visibility_timeout=parse_timespan(visibility) if visibility else defaults.visibility_timeout,
            batch_size=batch,
        )


def read_route_prefix(host_json: Path) -> str:
    """`extensions.http.routePrefix` (the host's default: api)."""
    document = json.loads(host_json.read_text(encoding="utf-8"))
    http = _ci_get(_ci_get(document, "extensions") or {}, "http") or {}
    prefix = _ci_get(http, "routePrefix")
    return "api" if prefix is None else str(prefix).strip("/")
