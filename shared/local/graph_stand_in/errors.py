"""Graph's error answers, as the stand-in gives them, and request bodies read as JSON objects."""

from __future__ import annotations

import json
from typing import Any


class GraphHTTPError(Exception):
    def __init__(self, status: int, code: str, message: str = "", headers: dict[str, str] | None = None):
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message or code
        self.headers = headers or {}


def error_response(exc: GraphHTTPError) -> tuple[int, dict[str, str], bytes]:
    payload = {"error": {"code": exc.code, "message": exc.message}}
    headers = {"Content-Type": "application/json", **exc.headers}
    return exc.status, headers, json.dumps(payload).encode("utf-8")


def json_body(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise GraphHTTPError(400, "BadRequest", "The body is not JSON.") from None
    if not isinstance(value, dict):
        raise GraphHTTPError(400, "BadRequest", "The body is not a JSON object.")
    return value
