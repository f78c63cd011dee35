"""The kiota middleware that replaces two of the SDK's defaults in every Graph client.

- ``BoundedRetryHandler`` for kiota's RetryHandler, which would sleep inside a request for any
  ``Retry-After`` below 180 s, three times over, while the queue message's visibility timeout runs
  out: every decision is ``graph_retry_policy``'s (a few quick retries; a longer wait comes back
  as the response, and the queue does the waiting). docs/graph.md ("Throttling") has the whole story.
- ``RefuseRedirects`` for kiota's RedirectHandler: no redirect is ever followed with the token.

Both classes are built on first use, so importing this module does not import kiota.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from shared.adapters.retry_policy import THROTTLING_STATUSES, RetryDecision, RetryPolicy

DEFAULT_MAX_RETRIES = 2
DEFAULT_RETRY_MAX_WAIT_SECONDS = 5.0


def graph_retry_policy(
    max_retries: int = DEFAULT_MAX_RETRIES, max_wait_seconds: float = DEFAULT_RETRY_MAX_WAIT_SECONDS
) -> RetryPolicy:
    """The retries of a Graph request (docs/graph.md, "Throttling"): throttling and unavailability
    only, a POST on 429 only; 0.25 s, 0.5 s, 1 s ... plus up to 0.25 s of jitter between attempts,
    and no wait above ``max_wait_seconds`` slept inline."""
    return RetryPolicy(
        max_attempts=max_retries + 1,
        backoff_factor=0.25,
        backoff_jitter=0.25,
        backoff_max=max_wait_seconds,
        max_inline_wait=max_wait_seconds,
        retry_statuses=THROTTLING_STATUSES,
        unsafe_methods=frozenset({"POST"}),
        unsafe_retry_statuses=frozenset({429}),
    )


@cache
def bounded_retry_handler_class() -> type:
    """kiota's RetryHandler with every decision taken by a ``RetryPolicy``.

    kiota keeps the loop, the count of attempts (its ``Retry-Attempt`` header) and its refusal to
    resend a body it cannot rewind (octet streams); whether to retry and how long to wait are the
    policy's. Built on first use so importing this module does not import kiota.
    """
    from kiota_http.middleware import RetryHandler
    from kiota_http.middleware.retry_handler import RETRY_ATTEMPT

    class BoundedRetryHandler(RetryHandler):  # type: ignore[misc,valid-type]
        def __init__(self, options: Any = None, *, policy: RetryPolicy) -> None:
            super().__init__(options)
            self.policy = policy
            self.retry_on_status_codes = set(policy.retry_statuses)

        def _decision(self, retry_count: int, response: Any) -> RetryDecision:
            return self.policy.at(retry_count).after_failure(
                method=response.request.method,
                status=response.status_code,
                retry_after_header=response.headers.get("Retry-After"),
            )

        def check_retry_valid(self, retry_count: int, options: Any) -> bool:
            return True  # the policy counts the attempts (should_retry)

        def should_retry(self, request: Any, options: Any, response: Any) -> bool:
            # Every response of the chain passes here once: the place to count Graph's throttling,
            # whether it is retried here or handed back to the queue as TransientError.
            if response.status_code in THROTTLING_STATUSES:
                from shared import telemetry

                telemetry.count_graph_throttled(response.status_code)
            if not super().should_retry(request, options, response):
                return False
            retry_count = int(response.request.headers.get(RETRY_ATTEMPT, 0))
            return self._decision(retry_count, response).retry

        def get_delay_time(self, retry_count: int, response: Any = None, delay: float = 0.0) -> float:
            if response is None:
                return self.policy.at(retry_count + 1).next_wait()
            return self._decision(retry_count, response).wait

    return BoundedRetryHandler


@cache
def refuse_redirects_class() -> type:
    """A middleware that ends every 3xx answer as an ``APIError`` instead of following it.

    It takes the place of kiota's RedirectHandler, which follows up to five redirects: it drops the
    Authorization header only when the scheme, host or port changes, so a redirect elsewhere on
    the Graph host still carries the token; a 307/308 to another host re-sends the body (mail
    content) there; and the hop is made whatever the new host is. Left alone (no handler at all),
    kiota would read a 3xx that has a Location as a success with an empty answer: a lookup would
    look like "not found". Graph's v1.0 API answers none of our calls with a redirect, so one
    means something in between (a proxy, a wrong GRAPH_BASE_URL) that an operator must look at:
    graph_errors classifies it as a ``ConfigurationError``.
    """
    from kiota_abstractions.api_error import APIError
    from kiota_http.middleware.middleware import BaseMiddleware

    class RefuseRedirects(BaseMiddleware):  # type: ignore[misc,valid-type]
        async def send(self, request: Any, transport: Any) -> Any:
            response = await super().send(request, transport)
            if 300 <= response.status_code < 400:
                await response.aclose()
                raise APIError(
                    f"graph answered {response.status_code}: redirects are not followed",
                    response.status_code,
                    dict(response.headers),
                )
            return response

    return RefuseRedirects
