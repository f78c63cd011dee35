"""Building the kiota requests the Graph adapters send: request configuration (query parameters,
``Prefer: IdType="ImmutableId"``), OData string literals, and a POST whose JSON body is already
written (graph_message_json.py says why the create's body is)."""

from __future__ import annotations

from typing import Any

PREFER_IMMUTABLE_ID = 'IdType="ImmutableId"'


def odata_string(value: str) -> str:
    """An OData string literal: single quotes doubled, wrapped in single quotes."""
    return "'" + value.replace("'", "''") + "'"


def request_configuration(query: Any = None, *, prefer_immutable: bool = False) -> Any:
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    config = RequestConfiguration(query_parameters=query)
    if prefer_immutable:
        config.headers.add("Prefer", PREFER_IMMUTABLE_ID)
    return config


def json_post_request(builder: Any, body: bytes, config: Any) -> Any:
    """The POST request ``builder.to_post_request_information`` makes, with a body already
    serialised: same URL, headers and content type."""
    from kiota_abstractions.method import Method
    from kiota_abstractions.request_information import RequestInformation

    request = RequestInformation(Method.POST, builder.url_template, builder.path_parameters)
    request.configure(config)
    request.headers.try_add("Accept", "application/json")
    request.set_stream_content(body, "application/json")
    return request
