"""What an item create must carry to be stored: the rules real Graph enforces on a new message."""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Any

from shared.local.graph_stand_in.errors import GraphHTTPError
from shared.local.graph_stand_in.store import normalize_property_id

MAX_INTERNET_HEADERS = 5
MSGFLAG_UNSENT = 0x8


def check_create(payload: dict[str, Any], *, reject_drafts: bool) -> tuple[dict[str, str], bool]:
    """The extended properties (by normalised id) of a create's JSON ``payload`` and whether it would
    be a draft. Refused: no ``Integer 0x0E07`` (a draft) unless ``reject_drafts`` is off,
    ``sentDateTime`` or ``receivedDateTime`` set, a malformed property value, bad internet headers."""
    for field_name in ("sentDateTime", "receivedDateTime"):
        if field_name in payload:
            raise GraphHTTPError(400, "ErrorInvalidPropertySet", f"{field_name} cannot be set on create.")
    properties: dict[str, str] = {}
    for prop in payload.get("singleValueExtendedProperties") or []:
        properties[normalize_property_id(str(prop.get("id", "")))] = str(prop.get("value"))
    flags_value = properties.get("integer 0x0e07")
    if flags_value is None:
        if reject_drafts:
            raise GraphHTTPError(
                400, "ErrorInvalidPropertySet", "Integer 0x0E07 missing: the item would be a draft."
            )
        is_draft = True
    else:
        try:
            is_draft = bool(int(flags_value) & MSGFLAG_UNSENT)
        except ValueError:
            raise GraphHTTPError(400, "ErrorInvalidPropertyValue", "Invalid message flags.") from None
    for prop_id, value in properties.items():
        check_property_value(prop_id, value)
    check_internet_headers(payload.get("internetMessageHeaders"))
    return properties, is_draft


def check_property_value(prop_id: str, value: str) -> None:
    """Values as Graph's JSON carries them: Binary in base64, Boolean true/false, Integer decimal,
    SystemTime ISO-8601 UTC (``prop_id`` normalised: lower case)."""
    kind = prop_id.split(" ", 1)[0]
    if kind == "binary":
        try:
            base64.b64decode(value, validate=True)
        except ValueError:
            raise GraphHTTPError(400, "ErrorInvalidPropertyValue", "Binary values must be base64.") from None
    elif kind == "boolean" and value.lower() not in ("true", "false"):
        raise GraphHTTPError(400, "ErrorInvalidPropertyValue", "Boolean values must be true or false.")
    elif kind == "integer" and not re.fullmatch(r"-?\d+", value):
        raise GraphHTTPError(400, "ErrorInvalidPropertyValue", "Integer values must be decimal.")
    elif kind == "systemtime":
        _parse_time(value)


def _parse_time(value: str) -> None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GraphHTTPError(400, "ErrorInvalidPropertyValue", "Invalid SystemTime value.") from None
    if parsed.tzinfo is None:
        raise GraphHTTPError(400, "ErrorInvalidPropertyValue", "SystemTime values must be UTC.")


def check_internet_headers(headers: Any) -> None:
    if headers is None:
        return
    if not isinstance(headers, list) or not 0 < len(headers) <= MAX_INTERNET_HEADERS:
        raise GraphHTTPError(
            400, "InvalidInternetMessageHeaderCollection", "Between 1 and 5 internet message headers."
        )
    for header in headers:
        name = str(header.get("name") or "")
        if not name.lower().startswith("x-"):
            raise GraphHTTPError(
                400, "InvalidInternetMessageHeader", "Internet message header names must start with 'x-'."
            )
