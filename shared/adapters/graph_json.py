"""Graph answers as plain JSON, not as msgraph-sdk models.

The SDK's request builders deserialise every answer into its generated models. For an adapter that
needs an id or two from each answer this is the most expensive thing it does:

- the first model derived from ``Entity`` (User, MailFolder, Message, Attachment...) that kiota
  deserialises runs ``Entity.get_field_deserializers``, which imports every model of the SDK
  (about 1,400 modules) to resolve ``@odata.type``: 1.1 s and about 30 MiB, measured, once per
  process, on its first record (the cold start);
- every later one builds the field tables of the whole class chain again: about a millisecond per
  answer, which was a fifth of the connector's CPU per archived record.

So adapters build the request with the builder (``to_get_request_information`` /
``to_post_request_information``: URLs, query parameters, serialisation of the body stay the SDK's,
but for the item create's body, written directly as graph_message_json.py explains) and send it with
``send_json``. Errors are unchanged: kiota raises the SDK's ``ODataError`` (an
``APIError``) as the builders do, so ``graph_failure`` and the error taxonomy apply as before.
"""

from __future__ import annotations

from typing import Any


def odata_error_mapping() -> dict[str, Any]:
    """What the SDK's request builders map every error status to."""
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

    return {"XXX": ODataError}


async def send_json(client: Any, request: Any) -> Any:
    """Sends a kiota ``RequestInformation`` through ``client``'s adapter (its middleware, retries
    and authentication included) and returns the answer as parsed JSON, None when it is empty.
    An answer that is not JSON is a ``TransientError``."""
    import json

    from shared.domain.errors import TransientError

    body = await client.request_adapter.send_primitive_async(request, "bytes", odata_error_mapping())
    try:
        return json.loads(body) if body else None
    except ValueError:
        raise TransientError("graph answered with a body that is not JSON") from None


def values(page: Any) -> list[dict[str, Any]]:
    """The objects of a collection answer (``{"value": [...]}``)."""
    found = page.get("value") if isinstance(page, dict) else None
    return [v for v in found if isinstance(v, dict)] if isinstance(found, list) else []


def string(answer: Any, field: str) -> str | None:
    """A non-empty string field of an object answer, else None."""
    value = answer.get(field) if isinstance(answer, dict) else None
    return value if isinstance(value, str) and value else None
