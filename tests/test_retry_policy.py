"""The one retry policy and the one Retry-After parser (shared/adapters/retry_policy.py), and the
three loops that take their decisions from it: kiota's retry handler on the Graph client, the
upload-session chunk PUTs and TeleMessage's requests and attachment resumes.

The parser and the policy are checked as properties (hypothesis); each loop against the local
servers of its own tests, whose fixtures are imported from there.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.graph_attachments import UploadSessionAttachments
from shared.adapters.graph_client import build_graph_client
from shared.adapters.graph_mailbox import GraphMailbox
from shared.adapters.graph_middleware import bounded_retry_handler_class, graph_retry_policy
from shared.adapters.retry_policy import (
    MAX_RETRY_AFTER_SECONDS,
    THROTTLING_STATUSES,
    RetryPolicy,
    Verdict,
    parse_retry_after,
)
from shared.adapters.telemessage import TeleMessageClient, telemessage_retry_policy
from shared.domain.errors import TransientError
from tests.test_graph_mailbox import ALICE, MIB, TOKEN, attached, blob, graph, rendered, warm  # noqa: F401
from tests.test_telemessage_client import ATTACHMENTS, ITEMS, PASSWORD, day, server, sleeps  # noqa: F401

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CAP = float(MAX_RETRY_AFTER_SECONDS)


def fixed(value: float) -> Any:
    return lambda: value


# -- parse_retry_after ---------------------------------------------------------------------------


header_like = st.one_of(
    st.text(),
    st.from_regex(r"[ \t]*[-+]?[0-9.,eE٣５]{0,420}(inf|nan)?[ \t]*", fullmatch=True),
    st.datetimes(timezones=st.timezones()).map(format_datetime),
    st.builds("{}, {:02d} {} {} {:02d}:{:02d}:{:02d} {}".format,
              st.sampled_from(["Mon", "Sun", "Xyz"]), st.integers(0, 40), st.sampled_from(["Jan", "Feb", "Foo"]),
              st.integers(-10, 100_000), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
              st.sampled_from(["GMT", "+0000", "-2359", "+9999", "-0000", "EST", ""])),
)


@given(header_like)
def test_any_text_is_no_retry_after_or_a_finite_wait_within_the_cap(value: str) -> None:
    seconds = parse_retry_after(value, now=NOW)
    assert seconds is None or (math.isfinite(seconds) and 0.0 <= seconds <= CAP)


@given(st.integers(min_value=0, max_value=10**30), st.sampled_from(["", " ", "\t", "  "]))
def test_delta_seconds_are_read_exactly_and_capped(seconds: int, pad: str) -> None:
    assert parse_retry_after(f"{pad}{seconds}{pad}") == min(float(seconds), CAP)


@given(st.decimals(min_value=0, max_value=MAX_RETRY_AFTER_SECONDS, places=3, allow_nan=False))
def test_decimal_delta_seconds_are_tolerated(seconds: Any) -> None:
    assert parse_retry_after(str(seconds)) == pytest.approx(float(seconds))


@given(st.integers(min_value=-10 * 86_400, max_value=10 * 86_400))
def test_http_dates_are_seconds_from_now_never_below_zero_nor_above_the_cap(offset: int) -> None:
    header = format_datetime(NOW + timedelta(seconds=offset), usegmt=True)
    assert parse_retry_after(header, now=NOW) == min(max(offset, 0), CAP)


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "inf", "-inf", "Infinity", "nan", "NaN", "1e400", "1e3", "-5", "-0", "+5", "0x10", "5s",
     "1_000", "٣", "５", "½", "5 5", "5,", ",5", "soon", "Wed, 31 Feb 2026 07:28:00 GMT",
     "Wed, 21 Oct 99999 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 +9999"],
)
def test_garbage_is_no_retry_after(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("120", 120.0), (" 2.5 ", 2.5), ("007", 7.0), ("5.", 5.0), (".5", 0.5), ("5, 7", 7.0),
     ("9" * 400, CAP), (str(MAX_RETRY_AFTER_SECONDS + 1), CAP),
     ("Sun, 01 Mar 2026 12:01:00 GMT", 60.0), ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),
     ("Sun, 01 Mar 2026 12:00:30 -0000", 30.0), ("Sun, 01 Mar 2026 13:00:30 +0100", 30.0),
     ("Mon, 01 Mar 2027 12:00:00 GMT", CAP)],
)
def test_readable_values(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_an_http_date_is_measured_from_the_clock_when_no_now_is_given() -> None:
    header = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    assert 3500 < (parse_retry_after(header) or 0) <= 3600
    assert parse_retry_after("Sun, 01 Mar 2026 12:01:00 GMT", now=NOW.replace(tzinfo=None)) == 60.0


def test_there_is_one_retry_after_parser_in_shared() -> None:
    root = Path(__file__).resolve().parents[1] / "shared"
    texts = {path.relative_to(root).as_posix(): path.read_text(encoding="utf-8") for path in root.rglob("*.py")}
    # HTTP dates are parsed in one place (Retry-After); an EML's Date header is the only other date
    # in mail format the connector reads, and it is read where EMLs are.
    assert sorted(name for name, text in texts.items() if "parsedate" in text) == [
        "adapters/retry_policy.py", "domain/eml_items.py"]
    assert [name for name, text in texts.items() if "def parse_retry_after" in text] == ["adapters/retry_policy.py"]


def test_the_policy_module_imports_no_http_library() -> None:
    code = ("import sys, shared.adapters.retry_policy\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('httpx', 'msgraph', 'kiota_http', 'azure')]\n")
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# -- RetryPolicy --------------------------------------------------------------------------------

policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 12),
    backoff_factor=st.floats(0, 10),
    backoff_jitter=st.floats(0, 5),
    backoff_max=st.floats(0, 120),
    max_inline_wait=st.floats(0, 120),
    rng=st.floats(0, 1, exclude_max=True).map(fixed),
)
failures = st.lists(
    st.tuples(st.sampled_from(["GET", "PUT", "POST", "DELETE"]), st.sampled_from([None, 408, 429, 500, 503, 504]),
              st.sampled_from([None, "0", "1", "3.5", "30", "inf", "junk"])),
    min_size=1, max_size=20,
)


@given(policies, failures)
def test_attempts_are_bounded_and_waits_are_bounded(policy: RetryPolicy, seen: list[tuple[Any, ...]]) -> None:
    attempts = 1
    for method, status, header in seen:
        decision = policy.after_failure(method=method, status=status, retry_after_header=header)
        assert decision.policy.failures == policy.failures + 1
        assert math.isfinite(decision.wait) and decision.wait >= 0
        if not decision.retry:
            break
        assert decision.wait <= policy.max_inline_wait
        policy = decision.policy
        attempts += 1
    assert attempts <= policy.max_attempts


@given(policies, st.integers(1, 200))
def test_backoff_grows_with_each_failure_and_stays_within_its_cap_and_jitter(policy: RetryPolicy, n: int) -> None:
    lower = min(policy.backoff_max, policy.backoff_factor * 2.0 ** min(n - 1, 64))
    upper = min(policy.backoff_max, lower + policy.backoff_jitter)
    wait = policy.at(n).backoff()
    assert lower <= wait <= upper
    assert policy.at(n + 1).backoff() >= wait  # the same draw: only the exponent differs


def test_waits_double_until_the_cap_without_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_factor=0.25, backoff_jitter=0, backoff_max=3)
    assert [policy.at(n).backoff() for n in range(7)] == [0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 3.0]


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_jitter_stays_within_its_bounds_whatever_the_random_source_says(draw: float) -> None:
    policy = RetryPolicy(backoff_factor=1, backoff_jitter=0.5, backoff_max=100, rng=fixed(draw))
    assert 1.0 <= policy.at(1).backoff() <= 1.5


def test_the_policy_is_immutable_and_a_decision_leaves_it_as_it_was() -> None:
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.failures = 2  # type: ignore[misc]
    decision = policy.after_failure(status=503)
    assert policy.failures == 0 and decision.policy.failures == 1
    assert policy.increment() == policy.at(1) != policy
    assert hash(policy) == hash(RetryPolicy(rng=fixed(0.5)))  # the random source is not state


@pytest.mark.parametrize(
    ("method", "status", "verdict"),
    [("GET", 503, Verdict.RETRY), ("POST", 429, Verdict.RETRY), ("POST", 503, Verdict.NOT_RETRYABLE),
     ("post", 504, Verdict.NOT_RETRYABLE), ("POST", None, Verdict.NOT_RETRYABLE), ("PUT", None, Verdict.RETRY),
     ("GET", 400, Verdict.NOT_RETRYABLE), ("GET", 500, Verdict.NOT_RETRYABLE)],
)
def test_what_is_retryable(method: str, status: int | None, verdict: Verdict) -> None:
    assert RetryPolicy().after_failure(method=method, status=status).verdict is verdict


def test_a_long_retry_after_is_handed_back_even_on_the_first_failure() -> None:
    decision = RetryPolicy(max_inline_wait=5).after_failure(method="GET", status=429, retry_after_header="120")
    assert decision.verdict is Verdict.WAIT_TOO_LONG and decision.retry_after == decision.wait == 120.0
    short = RetryPolicy(max_inline_wait=5).after_failure(method="GET", status=429, retry_after_header="5")
    assert short.retry and short.wait == 5.0


def test_the_last_attempt_is_not_followed_by_another() -> None:
    policy = RetryPolicy(max_attempts=2)
    assert policy.after_failure(status=503).retry
    assert policy.at(1).after_failure(status=503).verdict is Verdict.EXHAUSTED
    assert RetryPolicy(max_attempts=1).after_failure(status=503).verdict is Verdict.EXHAUSTED


@pytest.mark.parametrize(
    "fields",
    [{"max_attempts": 0}, {"max_attempts": 1.5}, {"max_attempts": True}, {"failures": -1},
     {"backoff_factor": math.nan}, {"backoff_jitter": -1}, {"backoff_max": math.inf}, {"max_inline_wait": math.inf}],
)
def test_a_policy_that_could_wait_forever_or_never_try_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**fields)


def test_graphs_policy_keeps_the_waits_of_the_retry_handler_it_replaced() -> None:
    # 0.25 s, 0.5 s, 1 s ... plus up to 0.25 s, never above the bound; a POST only on 429.
    low, high = replace(graph_retry_policy(5, 0.6), rng=fixed(0.0)), replace(graph_retry_policy(5, 0.6), rng=fixed(1.0))
    assert [low.at(n).backoff() for n in (1, 2, 3)] == [0.25, 0.5, 0.6]
    assert [high.at(n).backoff() for n in (1, 2, 3)] == [0.5, 0.6, 0.6]
    assert graph_retry_policy(2).max_attempts == 3 and graph_retry_policy().retry_statuses == THROTTLING_STATUSES
    assert not graph_retry_policy().is_retryable("POST", 503) and graph_retry_policy().is_retryable("POST", 429)


# -- the loops ----------------------------------------------------------------------------------


def test_kiotas_retry_handler_takes_its_decisions_from_the_policy() -> None:
    policy = replace(graph_retry_policy(max_retries=2, max_wait_seconds=5.0), rng=fixed(0.5))
    handler = bounded_retry_handler_class()(None, policy=policy)

    def answer(status: int, method: str = "GET", attempt: int = 0, retry_after: str | None = None) -> httpx.Response:
        headers = {"Retry-Attempt": str(attempt)} if attempt else {}
        request = httpx.Request(method, "http://127.0.0.1/v1.0/users", headers=headers)
        return httpx.Response(status, headers={"Retry-After": retry_after} if retry_after else {}, request=request)

    def retried(response: httpx.Response) -> bool:
        return handler.should_retry(response.request, handler.options, response)

    assert retried(answer(503)) and retried(answer(503, attempt=1)) and not retried(answer(503, attempt=2))
    assert handler.get_delay_time(0, answer(503)) == policy.at(1).backoff() == 0.375
    assert handler.get_delay_time(1, answer(503, attempt=1)) == policy.at(2).backoff() == 0.625
    assert handler.get_delay_time(0, answer(429, retry_after="1.5")) == 1.5  # fractions kept
    assert not retried(answer(503, "POST")) and retried(answer(429, "POST"))
    assert not retried(answer(429, retry_after="6")) and not retried(answer(500))


def test_graph_requests_are_attempted_as_often_as_the_policy_says(graph: Any) -> None:  # noqa: F811
    client = build_graph_client(base_url=graph.base_url, access_token=TOKEN, max_retries=3, retry_max_wait_seconds=0.3)
    policy = graph_retry_policy(3, 0.3)
    with GraphMailbox(client) as writer:
        graph.fail_next(503, times=4, path_contains="/childFolders", method="GET")  # a 5th would pass
        started = time.monotonic()
        with pytest.raises(TransientError):
            writer.write(ALICE, rendered())
        # 0.25 s + at least 0.3 s twice (the bound), between four attempts.
        assert time.monotonic() - started >= 0.85
        assert graph.request_counts(ALICE)["folder_find"] == policy.max_attempts == 4

        warm(writer, graph)
        graph.fail_next(429, times=4, retry_after=0.01, path_contains="/messages", method="POST")
        with pytest.raises(TransientError):
            writer.write(ALICE, rendered(), check_existing=False)
        assert graph.request_counts(ALICE)["item_create"] == 4

        graph.reset_counts()
        graph.fail_next(429, retry_after=1, path_contains="/messages", method="POST")
        with pytest.raises(TransientError) as handed_back:
            writer.write(ALICE, rendered(), check_existing=False)
        assert handed_back.value.retry_after == 1.0 and graph.request_counts(ALICE)["item_create"] == 1


def test_upload_chunks_are_put_as_often_as_the_policy_says(graph: Any) -> None:  # noqa: F811
    client = build_graph_client(base_url=graph.base_url, access_token=TOKEN)
    strategy = UploadSessionAttachments(chunk_retries=3, retry_max_wait_seconds=0.05)
    video = rendered(attachments=(attached("v.mp4", blob(4 * MIB, seed=21)),))
    assert strategy.retry_policy.max_attempts == 4 and strategy.retry_policy.is_retryable("PUT", 500)
    with GraphMailbox(client, attachments=strategy) as writer:
        graph.fail_next(500, times=4, path_contains="/upload/")  # a 5th would pass
        with pytest.raises(TransientError, match="upload chunk refused with 500"):
            writer.write(ALICE, video, check_existing=False)
        assert graph.request_counts(ALICE)["upload_chunk"] == 4

        graph.reset_counts()
        graph.fail_next(429, retry_after=1, path_contains="/upload/")
        with pytest.raises(TransientError) as handed_back:
            writer.write(ALICE, video)
        assert handed_back.value.retry_after == 1.0 and graph.request_counts(ALICE)["upload_chunk"] == 1
    assert graph.messages(ALICE) == []  # each incomplete item was removed


def test_telemessage_requests_are_attempted_and_spaced_as_the_policy_says(
    server: Any, day: Any, sleeps: list[float]  # noqa: F811
) -> None:
    policy = replace(telemessage_retry_policy(attempts=4), rng=fixed(1.0))
    with TeleMessageClient(server.base_url, "demo", PASSWORD, sleep=sleeps.append, retry_policy=policy) as client:
        client.list_page(day.window, None, 5)
        server.faults.fail_next(ITEMS, 503, times=4)  # a 5th would pass
        with pytest.raises(TransientError, match="HTTP 503 after 4 attempts"):
            client.list_page(day.window, None, 5)
        assert server.count(ITEMS) == 1 + 4
        assert sleeps == [policy.at(n).backoff() for n in (1, 2, 3)] == [0.75, 1.25, 2.25]

        # A 503 that names its wait is heard like a 429: beyond the inline bound, the queue waits.
        sleeps.clear()
        server.faults.fail_next(ITEMS, 503, retry_after=30)
        with pytest.raises(TransientError) as handed_back:
            client.list_page(day.window, None, 5)
        assert handed_back.value.retry_after == 30.0 and sleeps == []


def test_telemessage_downloads_resume_as_often_as_the_policy_says(
    server: Any, day: Any, sleeps: list[float]  # noqa: F811
) -> None:
    attachment = day.record("large_attachment")["attachments"][0]
    server.faults.drop_connection_next(ATTACHMENTS, after_bytes=100_000, times=10)
    policy = replace(telemessage_retry_policy(), rng=fixed(0.0))
    with TeleMessageClient(server.base_url, "demo", PASSWORD, sleep=sleeps.append, max_resumes=3,
                           retry_policy=policy) as client:
        stream = client.open_attachment(attachment["attachmentId"])
        assert stream is not None
        with pytest.raises(TransientError, match="connection lost 4 times"):
            b"".join(stream)
    assert stream.resumes == 4
    assert sleeps == [0.5, 1.0, 2.0]
