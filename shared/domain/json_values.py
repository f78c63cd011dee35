"""Parsed JSON, typed: ``json.loads`` answers ``Any``, and what it read came from outside (a webhook
body, a blob, a queue message, a file), so the domain checks a value's shape before it reads it."""

from __future__ import annotations

from typing import TypeIs


def is_json_object(value: object) -> TypeIs[dict[str, object]]:
    """A JSON object as ``json.loads`` gives it (every key a str)."""
    return isinstance(value, dict)


def is_json_array(value: object) -> TypeIs[list[object]]:
    """A JSON array as ``json.loads`` gives it."""
    return isinstance(value, list)
