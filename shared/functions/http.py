"""What the HTTP functions answer when a request is not one they serve: one JSON error shape,
naming the parameter, never repeating its value (it may be anything, personal data included)."""

from __future__ import annotations

import json

import azure.functions as func

from shared.domain.identifiers import InvalidIdentifier

JSON_ERROR_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def error_response(status: int, message: str, *, parameter: str | None = None) -> func.HttpResponse:
    body: dict[str, str] = {"error": message}
    if parameter is not None:
        body["parameter"] = parameter
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json",
                             headers=dict(JSON_ERROR_HEADERS))


def bad_parameter(error: InvalidIdentifier) -> func.HttpResponse:
    return error_response(400, str(error), parameter=error.parameter)


def only_get(req: func.HttpRequest) -> func.HttpResponse | None:
    """405 for anything but GET (and HEAD): the route registers GET only, and this holds even where
    a proxy or a test harness does not enforce it."""
    if (req.method or "").upper() in ("GET", "HEAD"):
        return None
    return func.HttpResponse(json.dumps({"error": "method not allowed"}), status_code=405,
                             mimetype="application/json", headers={**JSON_ERROR_HEADERS, "Allow": "GET"})
