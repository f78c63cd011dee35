"""TeleMessageClient against the local TeleMessage stand-in, over loopback HTTP.

Every test speaks real HTTP to ``LocalTeleMessage``; faults are injected on the server side, and
only time (sleep, clock) is replaced so retries cost nothing.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from shared.adapters.telemessage import TeleMessageClient
from shared.domain.errors import ConfigurationError, TransientError
from shared.domain.window import Window
from shared.local.telemessage_server import LocalTeleMessage
from shared.local.traffic.day import TrafficDay, generate_day, iter_attachments

ANCHOR = datetime(2024, 6, 12, 6, 0, tzinfo=UTC)
PASSWORD = "s3cret-Pa55word!"
ITEMS = "/api/v1/archive/items"
TOKEN = "/api/v1/auth/token"
ATTACHMENTS = "/api/v1/archive/attachments/"


@pytest.fixture(scope="module")
def day() -> TrafficDay:
    return generate_day(ANCHOR)


@pytest.fixture
def server(day: TrafficDay) -> Iterator[LocalTeleMessage]:
    with LocalTeleMessage(day, password=PASSWORD) as running:
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(server: LocalTeleMessage, sleeps: list[float]) -> Iterator[TeleMessageClient]:
    with TeleMessageClient(server.base_url, "demo", PASSWORD, sleep=sleeps.append, timeout=5.0) as made:
        yield made


def list_all(client: TeleMessageClient, window: Window, page_size: int) -> tuple[list, int]:
    items: list = []
    pages = 0
    token = None
    while True:
        page = client.list_page(window, token, page_size)
        pages += 1
        items.extend(page.items)
        token = page.next_page_token
        if token is None:
            return items, pages


def download(client: TeleMessageClient, attachment_id: str) -> bytes:
    stream = client.open_attachment(attachment_id)
    assert stream is not None
    with stream:
        return b"".join(stream)


def record_at(template: dict, archived: int, message_id: str, source_type: str = "WHATSAPP_ARCHIVER") -> dict:
    record = copy.deepcopy(template)
    record.update(messageId=message_id, archivedTime=archived, messageTime=archived - 1000,
                  sourceType=source_type, attachments=[])
    return record


def epoch_ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


# -- listing -----------------------------------------------------------------------------------

def test_whole_day_listed_through_pages_returns_every_record_once_in_contract_order(client, day):
    items, pages = list_all(client, day.window, page_size=37)

    assert pages == -(-len(day.records) // 37)
    ids = [item["messageId"] for item in items]
    assert len(ids) == len(set(ids)) == len(day.records)
    assert [(i["archivedTime"], i["messageId"]) for i in items] == sorted(
        (r["archivedTime"], r["messageId"]) for r in day.records
    )
    assert items == day.records  # byte-for-byte the JSON values the source holds


def test_listing_returns_raw_items_without_validating_them(server, client, day):
    broken = {"messageId": "broken-1", "archivedTime": day.records[0]["archivedTime"], "sender": 42,
              "sourceType": "WHATSAPP_ARCHIVER", "vendorField": {"kept": True}}
    server.add_records([broken])

    items, _ = list_all(client, day.window, page_size=1000)

    assert broken in items


def test_window_includes_records_at_from_and_excludes_records_at_to(day):
    start = ANCHOR - timedelta(hours=2)
    end = ANCHOR - timedelta(hours=1)
    template = day.records[0]
    records = [
        record_at(template, epoch_ms(start) - 1, "before"),
        record_at(template, epoch_ms(start), "at-from"),
        record_at(template, epoch_ms(end) - 1, "last-ms"),
        record_at(template, epoch_ms(end), "at-to"),
    ]
    with LocalTeleMessage(records, password=PASSWORD) as server, \
            TeleMessageClient(server.base_url, "demo", PASSWORD) as client:
        items, _ = list_all(client, Window(start, end), page_size=10)

    assert [item["messageId"] for item in items] == ["at-from", "last-ms"]


def test_records_sharing_an_archived_time_are_ordered_by_message_id_across_pages(day):
    same = epoch_ms(ANCHOR - timedelta(hours=3))
    records = [record_at(day.records[0], same, message_id) for message_id in ("c", "a", "e", "b", "d")]
    with LocalTeleMessage(records, password=PASSWORD) as server, \
            TeleMessageClient(server.base_url, "demo", PASSWORD) as client:
        items, pages = list_all(client, day.window, page_size=2)

    assert [item["messageId"] for item in items] == ["a", "b", "c", "d", "e"]
    assert pages == 3


def test_only_the_configured_source_types_are_listed(server, day):
    cloud_only = ["WHATSAPP_CLOUD_ARCHIVER"]
    with TeleMessageClient(server.base_url, "demo", PASSWORD, source_types=cloud_only) as cloud:
        items, _ = list_all(cloud, day.window, page_size=500)

    assert items
    assert {item["sourceType"] for item in items} == {"WHATSAPP_CLOUD_ARCHIVER"}
    assert len(items) == sum(r["sourceType"] == "WHATSAPP_CLOUD_ARCHIVER" for r in day.records)
    assert server.requests[-1].query["sourceTypes"] == "WHATSAPP_CLOUD_ARCHIVER"


def test_window_is_sent_as_utc_iso_8601_with_z(server, client, day):
    client.list_page(day.window, None, 10)

    query = server.requests[-1].query
    assert query["from"] == "2024-06-11T06:00:00.000Z"
    assert query["to"] == "2024-06-12T06:00:00.000Z"


def test_records_added_after_start_are_listed(server, client, day):
    late = record_at(day.records[0], day.records[-1]["archivedTime"] + 5, "added-later")
    before, _ = list_all(client, day.window, page_size=1000)
    server.add_records([late])
    after, _ = list_all(client, day.window, page_size=1000)

    assert len(after) == len(before) + 1
    assert after[-1]["messageId"] == "added-later"


def test_invalid_window_is_a_configuration_error_naming_the_window(client):
    too_long = Window(ANCHOR - timedelta(days=40), ANCHOR)

    with pytest.raises(ConfigurationError, match="invalid_window") as caught:
        client.list_page(too_long, None, 100)

    assert too_long.id in str(caught.value)


@pytest.mark.parametrize("body", [b"not json at all", b"[1, 2, 3]", b'{"items": "nope"}', b'{"next": null}'],
                         ids=["not-json", "array", "items-not-list", "no-items"])
def test_malformed_listing_page_is_a_transient_error(server, client, day, body):
    server.faults.respond_next(ITEMS, 200, body)

    with pytest.raises(TransientError, match="malformed listing page"):
        client.list_page(day.window, None, 100)


def test_page_size_outside_the_contract_is_refused_before_any_request(server, client, day):
    for size in (0, 1001):
        with pytest.raises(ValueError):
            client.list_page(day.window, None, size)
    assert server.count(ITEMS) == 0


# -- authentication ----------------------------------------------------------------------------

def test_token_is_fetched_once_and_reused_across_calls(server, client, day):
    for _ in range(3):
        client.list_page(day.window, None, 5)

    assert server.count(TOKEN) == 1
    assert server.count(ITEMS) == 3


def test_expired_token_is_replaced_once_and_the_call_retried(server, client, day):
    client.list_page(day.window, None, 5)
    server.expire_all_tokens()

    page = client.list_page(day.window, None, 5)

    assert len(page.items) == 5
    assert server.count(TOKEN) == 2
    assert [r.status for r in server.requests if r.path == ITEMS] == [200, 401, 200]


def test_token_is_renewed_before_its_announced_expiry(server, day):
    now = [0.0]
    with TeleMessageClient(server.base_url, "demo", PASSWORD, clock=lambda: now[0]) as client:
        client.list_page(day.window, None, 5)
        now[0] = 3500.0  # well inside the 3600 s lifetime
        client.list_page(day.window, None, 5)
        assert server.count(TOKEN) == 1
        now[0] = 3590.0  # inside the safety margin before expiry
        client.list_page(day.window, None, 5)

    assert server.count(TOKEN) == 2
    assert all(r.status == 200 for r in server.requests)


def test_invalid_credentials_are_a_configuration_error_and_not_retried(server, day, sleeps):
    with TeleMessageClient(server.base_url, "demo", "wrong", sleep=sleeps.append) as client, \
            pytest.raises(ConfigurationError, match="invalid_credentials"):
        client.list_page(day.window, None, 5)

    assert server.count(TOKEN) == 1
    assert server.count(ITEMS) == 0
    assert sleeps == []


def test_a_fresh_token_refused_again_is_a_configuration_error(server, client, day):
    server.faults.fail_next(ITEMS, 401, times=2)

    with pytest.raises(ConfigurationError):
        client.list_page(day.window, None, 5)

    assert server.count(TOKEN) == 2
    assert server.count(ITEMS) == 2


def test_token_endpoint_outage_is_retried(server, client, day, sleeps):
    server.faults.fail_next(TOKEN, 503)

    assert len(client.list_page(day.window, None, 5).items) == 5
    assert len(sleeps) == 1


# -- rate limits and failures ------------------------------------------------------------------

def test_short_retry_after_is_slept_inline_and_the_request_repeated(server, client, day, sleeps):
    client.list_page(day.window, None, 5)
    server.faults.fail_next(ITEMS, 429, retry_after=2)

    page = client.list_page(day.window, None, 5)

    assert len(page.items) == 5
    assert sleeps == [2.0]


def test_long_retry_after_raises_transient_error_carrying_it_without_sleeping(server, client, day, sleeps):
    client.list_page(day.window, None, 5)
    server.faults.fail_next(ITEMS, 429, retry_after=120)

    with pytest.raises(TransientError) as caught:
        client.list_page(day.window, None, 5)

    assert caught.value.retry_after == 120.0
    assert sleeps == []
    assert server.count(ITEMS) == 2


def test_retry_after_as_an_http_date_is_understood(server, client, day):
    server.faults.fail_next(ITEMS, 429, retry_after=format_datetime(datetime.now(UTC) + timedelta(hours=1),
                                                                     usegmt=True))

    with pytest.raises(TransientError) as caught:
        client.list_page(day.window, None, 5)

    assert 3500 < caught.value.retry_after <= 3600


def test_rate_limit_that_never_lifts_gives_up_after_the_attempt_budget(server, client, day, sleeps):
    server.faults.fail_next(ITEMS, 429, retry_after=1, times=10)

    with pytest.raises(TransientError) as caught:
        client.list_page(day.window, None, 5)

    assert server.count(ITEMS) == 3
    assert sleeps == [1.0, 1.0]
    assert caught.value.retry_after == 1.0


def test_server_errors_are_retried_with_growing_backoff(server, client, day, sleeps):
    server.faults.fail_next(ITEMS, 503, times=2)

    assert len(client.list_page(day.window, None, 5).items) == 5
    assert len(sleeps) == 2
    assert sleeps[0] < sleeps[1]


def test_persistent_server_errors_become_a_transient_error_after_bounded_attempts(
    server, client, day, sleeps
):
    server.faults.fail_next(ITEMS, 500, times=10)

    with pytest.raises(TransientError, match="HTTP 500 after 3 attempts"):
        client.list_page(day.window, None, 5)

    assert server.count(ITEMS) == 3
    assert len(sleeps) == 2


def test_connection_reset_before_the_response_is_retried(server, client, day):
    server.faults.drop_connection_next(ITEMS, after_bytes=None)

    assert len(client.list_page(day.window, None, 5).items) == 5


def test_connection_lost_in_the_middle_of_a_page_is_retried(server, client, day):
    server.faults.drop_connection_next(ITEMS, after_bytes=100)

    assert len(client.list_page(day.window, None, 50).items) == 50


def test_timeouts_are_retried_then_become_a_transient_error(server, day, sleeps):
    server.faults.delay_next(ITEMS, 1.0, times=3)
    with TeleMessageClient(server.base_url, "demo", PASSWORD, timeout=0.2, sleep=sleeps.append) as client, \
            pytest.raises(TransientError, match="Timeout"):
        client.list_page(day.window, None, 5)

    assert len(sleeps) == 2


# -- attachments -------------------------------------------------------------------------------

def test_every_downloadable_attachment_streams_bytes_matching_its_sha256(client, day):
    downloadable = [a for a in iter_attachments(day.records)
                    if "content" not in a and day.attachment_bytes(a["attachmentId"]) is not None]
    assert len(downloadable) >= 5

    for attachment in downloadable:
        data = download(client, attachment["attachmentId"])
        assert len(data) == attachment["size"]
        assert hashlib.sha256(data).hexdigest() == attachment["sha256"]


def test_attachment_arrives_in_bounded_chunks_not_one_buffer(server, day):
    attachment = day.record("large_attachment")["attachments"][0]
    with TeleMessageClient(server.base_url, "demo", PASSWORD, chunk_size=256 * 1024) as client:
        stream = client.open_attachment(attachment["attachmentId"])
        assert stream is not None
        sizes = [len(chunk) for chunk in stream]

    assert sum(sizes) == attachment["size"]
    assert len(sizes) > 10
    assert max(sizes) <= 256 * 1024


def test_dropped_connection_mid_attachment_resumes_with_range_and_bytes_are_identical(server, client, day):
    attachment = day.record("huge_attachment")["attachments"][0]
    server.faults.drop_connection_next(ATTACHMENTS, after_bytes=3_000_001)

    stream = client.open_attachment(attachment["attachmentId"])
    assert stream is not None
    with stream:
        data = b"".join(stream)
        assert stream.resumes == 1

    assert data == day.attachment_bytes(attachment["attachmentId"])
    assert hashlib.sha256(data).hexdigest() == attachment["sha256"]
    resumed = [r for r in server.requests if r.path.startswith(ATTACHMENTS) and r.range]
    assert len(resumed) == 1
    assert resumed[0].status == 206
    first_missing = int(resumed[0].range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < first_missing <= 3_000_001


def test_repeated_drops_resume_each_time_from_the_first_missing_byte(server, client, day):
    attachment = day.record("large_attachment")["attachments"][0]
    server.faults.drop_connection_next(ATTACHMENTS, after_bytes=700_000, times=3)

    data = download(client, attachment["attachmentId"])

    assert hashlib.sha256(data).hexdigest() == attachment["sha256"]
    offsets = [int(r.range.removeprefix("bytes=").removesuffix("-"))
               for r in server.requests if r.path.startswith(ATTACHMENTS) and r.range]
    assert len(offsets) == 3
    assert offsets == sorted(offsets)


def test_a_connection_that_keeps_dropping_becomes_a_transient_error(server, day, sleeps):
    attachment = day.record("large_attachment")["attachments"][0]
    server.faults.drop_connection_next(ATTACHMENTS, after_bytes=100_000, times=10)
    with TeleMessageClient(server.base_url, "demo", PASSWORD, sleep=sleeps.append, max_resumes=2) as client:
        stream = client.open_attachment(attachment["attachmentId"])
        assert stream is not None
        with pytest.raises(TransientError, match="connection lost 3 times"):
            b"".join(stream)


def test_media_never_captured_returns_none(client, day):
    attachment = day.record("missing_media")["attachments"][0]

    assert client.open_attachment(attachment["attachmentId"]) is None


def test_attachment_download_refreshes_an_expired_token(server, client, day):
    attachment = day.record("audio")["attachments"][0]
    client.list_page(day.window, None, 1)
    server.expire_all_tokens()

    data = download(client, attachment["attachmentId"])

    assert hashlib.sha256(data).hexdigest() == attachment["sha256"]
    assert server.count(TOKEN) == 2


def test_attachment_server_errors_are_retried(server, client, day, sleeps):
    attachment = day.record("audio")["attachments"][0]
    server.faults.fail_next(ATTACHMENTS, 502)

    assert hashlib.sha256(download(client, attachment["attachmentId"])).hexdigest() == attachment["sha256"]
    assert len(sleeps) == 1


def test_inline_attachments_served_by_the_stand_in_match_their_content(server, client, day):
    inline = next(a for a in iter_attachments(day.records) if "content" in a)

    assert download(client, inline["attachmentId"]) == base64.b64decode(inline["content"])


# -- hygiene -----------------------------------------------------------------------------------

def test_password_token_and_record_content_never_reach_logs_or_errors(server, day, caplog, sleeps):
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    with TeleMessageClient(server.base_url, "demo", PASSWORD, sleep=sleeps.append) as client:
        list_all(client, day.window, page_size=100)
        server.expire_all_tokens()
        server.faults.fail_next(ITEMS, 503, times=2)
        server.faults.drop_connection_next(ATTACHMENTS, after_bytes=1000)
        list_all(client, day.window, page_size=100)
        download(client, day.record("audio")["attachments"][0]["attachmentId"])
        for fault in (lambda: server.faults.fail_next(ITEMS, 429, retry_after=60),
                      lambda: server.faults.fail_next(ITEMS, 500, times=3),
                      lambda: server.faults.respond_next(ITEMS, 200, b"{")):
            fault()
            try:
                client.list_page(day.window, None, 100)
            except TransientError as error:
                errors.append(repr(error))
    with TeleMessageClient(server.base_url, "demo", "wrong" + PASSWORD) as wrong:
        try:
            wrong.list_page(day.window, None, 1)
        except ConfigurationError as error:
            errors.append(repr(error))

    text = caplog.text + "\n".join(errors)
    assert len(errors) == 4
    assert PASSWORD not in text
    assert server.issued_tokens and not any(token in text for token in server.issued_tokens)
    for person in day.people:
        assert person.phone not in text and person.phone[1:] not in text
        assert person.last_name is None or person.last_name not in text
    for record in day.records:
        if record["textContent"] and len(record["textContent"]) > 8:
            assert record["textContent"] not in text


# -- the stand-in's own contract (what the demo relies on) -------------------------------------

def test_stand_in_rejects_page_sizes_and_page_tokens_outside_the_contract(server, client, day):
    client.list_page(day.window, None, 1)  # log in
    token = server.issued_tokens[-1]
    headers = {"Authorization": f"Bearer {token}"}
    base = {"from": "2024-06-11T06:00:00.000Z", "to": "2024-06-12T06:00:00.000Z"}
    with httpx.Client(base_url=server.base_url, headers=headers) as raw:
        assert raw.get(ITEMS, params={**base, "pageSize": "0"}).json() == {"error": "invalid_page_size"}
        assert raw.get(ITEMS, params={**base, "pageSize": "1001"}).status_code == 400
        assert raw.get(ITEMS, params={**base, "pageSize": "10", "pageToken": "forged"}).status_code == 400
        reversed_window = {"from": base["to"], "to": base["from"], "pageSize": "10"}
        assert raw.get(ITEMS, params=reversed_window).json() == {"error": "invalid_window"}
        assert raw.get(ITEMS, params={**base, "pageSize": "10"}, headers={"Authorization": "Bearer x"}
                       ).status_code == 401


def test_stand_in_honours_byte_ranges(server, client, day):
    attachment = day.record("audio")["attachments"][0]
    client.list_page(day.window, None, 1)
    expected = day.attachment_bytes(attachment["attachmentId"])
    assert expected is not None
    headers = {"Authorization": f"Bearer {server.issued_tokens[-1]}", "Range": "bytes=10-19"}
    with httpx.Client(base_url=server.base_url) as raw:
        partial = raw.get(ATTACHMENTS + attachment["attachmentId"], headers=headers)
        whole = raw.get(ATTACHMENTS + attachment["attachmentId"],
                        headers={"Authorization": headers["Authorization"]})

    assert partial.status_code == 206
    assert partial.content == expected[10:20]
    assert partial.headers["Content-Range"] == f"bytes 10-19/{len(expected)}"
    assert whole.status_code == 200
    assert whole.headers["Content-Type"] == attachment["contentType"]
    assert int(whole.headers["Content-Length"]) == len(expected)


@pytest.mark.parametrize("attachment_id", [".", "..", "...", "a\nb"])
def test_an_attachment_id_that_would_resolve_to_another_path_is_refused_before_any_request(server, client,
                                                                                           attachment_id):
    """quote() keeps "." and "..": /attachments/.. would resolve to the listing with the token."""
    from shared.domain.errors import PermanentError, PoisonReason

    before = len(server.requests)
    with pytest.raises(PermanentError) as error:
        client.open_attachment(attachment_id)
    assert error.value.reason is PoisonReason.INVALID_ITEM and len(server.requests) == before
