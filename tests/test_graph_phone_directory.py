"""GraphPhoneDirectory against LocalGraph: the Entra ID phone index, through the real msgraph-sdk
client on loopback (build_graph_client), with the directory listing served by shared/local/graph_stand_in/."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.adapters.graph_client import build_graph_client
from shared.adapters.graph_directory import PHONE_INDEX_SELECT, GraphPhoneDirectory
from shared.domain.errors import ConfigurationError, TransientError
from shared.local.graph_stand_in.server import LocalGraph
from shared.local.graph_stand_in.throttling import DIRECTORY

pytestmark = [
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]

TOKEN = "local-test-token"
TTL = 3600.0
ALICE = "alice@contoso.example"
BOB = "bob@contoso.example"
CAROL = "carol@contoso.example"
DAVE = "dave@contoso.example"
ERIN = "erin@contoso.example"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def server(profiles: dict[str, dict[str, Any]], **options: Any) -> LocalGraph:
    return LocalGraph({upn: True for upn in profiles}, token=TOKEN, profiles=profiles, **options)


def directory(graph: LocalGraph, clock: Clock | None = None, **options: Any) -> GraphPhoneDirectory:
    client = build_graph_client(base_url=graph.base_url, access_token=TOKEN)
    return GraphPhoneDirectory(client, clock=clock or Clock(), **options)


def list_requests(graph: LocalGraph) -> int:
    return graph.request_counts(DIRECTORY).get("user_list", 0)


@pytest.fixture
def graph() -> Iterator[LocalGraph]:
    profiles = {
        ALICE: {"mobilePhone": "+44 7700 900123", "businessPhones": ["(020) 7946 0000 ext 12"]},
        BOB: {"mobilePhone": "07700 900456"},
        CAROL: {"businessPhones": ["+1 (415) 555-0100 ext. 5", "+44 20 7946 0999"]},
    }
    with server(profiles) as local:
        yield local


# -- matching -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stored",
    [
        "+44 7700 900123",
        "+447700900123",
        "+44 (0)7700 900123",
        "0044 7700 900123",
        "07700 900123",
        "(07700) 900-123",
        "+44.7700.900.123",
        "tel:+44-7700-900123",
        "+44 7700 900123 ext 7",
    ],
)
def test_mobile_phone_stored_in_a_human_format_matches_its_e164(stored: str, clock: Clock) -> None:
    with server({ALICE: {"mobilePhone": stored}, BOB: {"mobilePhone": "+44 7700 900456"}}) as graph, \
            directory(graph, clock, default_region="GB") as phones:
        assert phones.mailbox_for_phone("+447700900123") == ALICE
        assert phones.mailbox_for_phone("+447700900456") == BOB


def test_business_phones_match_with_their_extensions_dropped(graph: LocalGraph, clock: Clock) -> None:
    with directory(graph, clock, default_region="GB") as phones:
        assert phones.mailbox_for_phone("+442079460000") == ALICE  # "(020) 7946 0000 ext 12"
        assert phones.mailbox_for_phone("+14155550100") == CAROL  # "+1 (415) 555-0100 ext. 5"
        assert phones.mailbox_for_phone("+442079460999") == CAROL  # second of her businessPhones
        assert phones.mailbox_for_phone("+447700900123") == ALICE  # her mobilePhone as well


def test_national_numbers_need_the_default_region_and_are_unreadable_without_it(
    graph: LocalGraph, clock: Clock
) -> None:
    with directory(graph, clock) as phones:
        assert phones.mailbox_for_phone("+447700900123") == ALICE  # stored in international form
        assert phones.mailbox_for_phone("+447700900456") is None  # stored as "07700 900456"
        assert phones.mailbox_for_phone("+442079460000") is None  # stored as "(020) 7946 0000 ext 12"
        assert phones.stats is not None and phones.stats.unreadable == 2


def test_unknown_or_unusable_number_maps_to_no_one(graph: LocalGraph, clock: Clock) -> None:
    with directory(graph, clock, default_region="GB") as phones:
        assert phones.mailbox_for_phone("+447700900999") is None
        assert phones.mailbox_for_phone("not a number") is None
        assert phones.mailbox_for_phone("") is None


def test_number_shared_by_two_enabled_users_is_ambiguous_and_maps_to_no_one(clock: Clock) -> None:
    profiles = {
        ALICE: {"mobilePhone": "+44 7700 900123", "businessPhones": ["+44 20 7946 0000"]},
        BOB: {"businessPhones": ["020 7946 0000"]},  # the same switchboard number
        CAROL: {"mobilePhone": "+447700900789"},
    }
    with server(profiles) as graph, directory(graph, clock, default_region="GB") as phones:
        assert phones.mailbox_for_phone("+442079460000") is None
        assert phones.mailbox_for_phone("+447700900123") == ALICE  # her own number still maps
        assert phones.stats is not None and phones.stats.ambiguous == 1


def test_one_user_with_the_same_number_twice_is_not_ambiguous(clock: Clock) -> None:
    profiles = {ALICE: {"mobilePhone": "+44 7700 900123", "businessPhones": ["07700 900123"]}}
    with server(profiles) as graph, directory(graph, clock, default_region="GB") as phones:
        assert phones.mailbox_for_phone("+447700900123") == ALICE


def test_disabled_account_is_left_out_so_a_number_it_shares_maps_to_the_enabled_user(clock: Clock) -> None:
    profiles = {
        ALICE: {"mobilePhone": "+44 7700 900123", "accountEnabled": False},  # left; number reassigned
        BOB: {"mobilePhone": "+44 7700 900123"},
        CAROL: {"mobilePhone": "+44 7700 900789", "accountEnabled": False},
    }
    with server(profiles) as graph, directory(graph, clock) as phones:
        assert phones.mailbox_for_phone("+447700900123") == BOB
        assert phones.mailbox_for_phone("+447700900789") is None
        assert phones.stats is not None and phones.stats.disabled == 2


def test_identity_is_the_lower_case_upn(clock: Clock) -> None:
    with server({"Dave.Smith@Contoso.Example": {"mobilePhone": "+44 7700 900321"}}) as graph, \
            directory(graph, clock) as phones:
        assert phones.mailbox_for_phone("+447700900321") == "dave.smith@contoso.example"


# -- loading ------------------------------------------------------------------------------------


def test_directory_of_several_pages_loads_completely_in_one_request_per_page(clock: Clock) -> None:
    profiles = {f"user{i}@contoso.example": {"mobilePhone": f"+44 7700 900{i:03d}"} for i in range(7)}
    with server(profiles, user_page_size=3) as graph, directory(graph, clock) as phones:
        for i in range(7):
            assert phones.mailbox_for_phone(f"+447700900{i:03d}") == f"user{i}@contoso.example"
        assert list_requests(graph) == 3  # ceil(7 / 3): the first lookup loaded every page
        assert phones.stats is not None and (phones.stats.users, phones.stats.pages) == (7, 3)
        first, *later = [r["query"] for r in graph.request_log]
        assert f"$select={','.join(PHONE_INDEX_SELECT)}" in first and "$top=999" in first
        assert "$filter" not in first
        assert all("$skiptoken=" in query for query in later)


def test_full_load_costs_one_request_per_999_users(clock: Clock) -> None:
    profiles = {f"user{i}@contoso.example": {} for i in range(1000)}
    profiles["user999@contoso.example"] = {"mobilePhone": "+44 7700 900999"}  # on the second page
    with server(profiles) as graph, directory(graph, clock) as phones:
        assert phones.mailbox_for_phone("+447700900999") == "user999@contoso.example"
        assert list_requests(graph) == 2


def test_concurrent_first_lookups_share_one_load(clock: Clock) -> None:
    with server({ALICE: {"mobilePhone": "+447700900123"}}, latency_seconds=0.2) as graph, \
            directory(graph, clock) as phones:
        answers: list[str | None] = []
        threads = [
            threading.Thread(target=lambda: answers.append(phones.mailbox_for_phone("+447700900123")))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert answers == [ALICE] * 8
        assert list_requests(graph) == 1


# -- the cache ----------------------------------------------------------------------------------


def test_cached_index_answers_repeated_lookups_without_requests_until_the_ttl_passes(
    graph: LocalGraph, clock: Clock
) -> None:
    with directory(graph, clock, default_region="GB", ttl_seconds=TTL) as phones:
        assert phones.mailbox_for_phone("+447700900123") == ALICE
        assert list_requests(graph) == 1
        graph.set_profile(ALICE, mobilePhone=None)
        graph.set_profile(BOB, mobilePhone="+44 7700 900123")  # the number moved to Bob
        clock.advance(TTL - 1)
        for _ in range(20):
            assert phones.mailbox_for_phone("+447700900123") == ALICE
            assert phones.mailbox_for_phone("+447700900999") is None
        assert list_requests(graph) == 1
        clock.advance(2)
        assert phones.mailbox_for_phone("+447700900123") == BOB
        assert list_requests(graph) == 2


def test_failed_refresh_keeps_serving_the_previous_index_and_waits_before_trying_again(
    graph: LocalGraph, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with directory(graph, clock, default_region="GB", ttl_seconds=TTL) as phones:
        assert phones.mailbox_for_phone("+447700900123") == ALICE
        clock.advance(TTL + 1)
        graph.fail_next(503, retry_after=120, path_contains="/v1.0/users", method="GET")
        with caplog.at_level(logging.WARNING, logger="shared.adapters.graph_directory"):
            assert phones.mailbox_for_phone("+447700900123") == ALICE
        assert any("refresh failed (TransientError)" in r.getMessage() for r in caplog.records)
        assert list_requests(graph) == 2
        clock.advance(60)  # within Graph's Retry-After: the old index answers, nothing is asked
        assert phones.mailbox_for_phone("+447700900123") == ALICE
        assert list_requests(graph) == 2
        graph.set_profile(ALICE, mobilePhone="+44 7700 900777")
        clock.advance(61)
        assert phones.mailbox_for_phone("+447700900777") == ALICE
        assert list_requests(graph) == 3


def test_failure_on_a_later_page_keeps_nothing_of_the_partial_load(clock: Clock) -> None:
    profiles = {f"user{i}@contoso.example": {"mobilePhone": f"+44 7700 900{i:03d}"} for i in range(4)}
    with server(profiles, user_page_size=2) as graph, directory(graph, clock, ttl_seconds=TTL) as phones:
        assert phones.mailbox_for_phone("+447700900003") == "user3@contoso.example"
        graph.set_profile("user0@contoso.example", mobilePhone="+44 7700 900555")
        clock.advance(TTL + 1)
        graph.reset_counts()
        # The first page loads, the second is throttled: the refresh is abandoned as a whole.
        graph.fail_next(429, retry_after=30, path_contains="/v1.0/users", method="GET", skip=1)
        assert phones.mailbox_for_phone("+447700900555") is None  # page 1 of the new load not used
        assert phones.mailbox_for_phone("+447700900000") == "user0@contoso.example"
        assert list_requests(graph) == 2


def test_throttled_first_load_raises_transient_error_and_the_next_lookup_tries_again(
    graph: LocalGraph, clock: Clock
) -> None:
    with directory(graph, clock, default_region="GB") as phones:
        graph.fail_next(429, retry_after=30, path_contains="/v1.0/users", method="GET")
        with pytest.raises(TransientError) as raised:
            phones.mailbox_for_phone("+447700900123")
        assert raised.value.retry_after == 30
        assert phones.mailbox_for_phone("+447700900123") == ALICE
        assert list_requests(graph) == 2


def test_missing_user_read_all_consent_is_a_configuration_error(graph: LocalGraph, clock: Clock) -> None:
    with directory(graph, clock) as phones:
        graph.fail_next(403, code="Authorization_RequestDenied", path_contains="/v1.0/users")
        with pytest.raises(ConfigurationError, match="User.Read.All"):
            phones.mailbox_for_phone("+447700900123")


def test_rejected_token_is_a_configuration_error(graph: LocalGraph) -> None:
    client = build_graph_client(base_url=graph.base_url, access_token="wrong-token")
    with GraphPhoneDirectory(client) as phones, pytest.raises(ConfigurationError):
        phones.mailbox_for_phone("+447700900123")


def test_logs_carry_counts_never_numbers_or_users(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    profiles = {
        ALICE: {"mobilePhone": "+44 7700 900123", "businessPhones": ["not known"]},
        BOB: {"mobilePhone": "+447700900123"},
        CAROL: {"mobilePhone": "+44 7700 900789"},
    }
    with server(profiles) as graph, directory(graph, clock) as phones, \
            caplog.at_level(logging.DEBUG, logger="shared.adapters.graph_directory"):
        assert phones.mailbox_for_phone("+447700900123") is None
        assert phones.mailbox_for_phone("+447700900789") == CAROL
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "users=3" in text and "ambiguous=1" in text and "unreadable=1" in text
    assert "shared by 2 users" in text
    for secret in ("7700", "900123", "900789", "alice", "bob", "carol", "contoso"):
        assert secret not in text


# -- the local server's listing, over plain HTTP ---------------------------------------------------


def test_local_graph_lists_users_with_select_top_and_loopback_next_links() -> None:
    profiles = {ALICE: {"mobilePhone": "+447700900123", "accountEnabled": False}, BOB: {}, CAROL: {}}
    with server(profiles, user_page_size=2) as graph:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        first = httpx.get(
            f"{graph.base_url}/users",
            params={"$select": "userPrincipalName,mobilePhone,accountEnabled", "$top": "999"},
            headers=headers,
        ).json()
        assert first["value"][0] == {
            "userPrincipalName": ALICE, "mobilePhone": "+447700900123", "accountEnabled": False,
        }
        assert len(first["value"]) == 2
        link = first["@odata.nextLink"]
        assert link.startswith(graph.base_url + "/users?") and "$skiptoken=" in link
        second = httpx.get(link, headers=headers).json()
        assert [u["userPrincipalName"] for u in second["value"]] == [CAROL]
        assert "@odata.nextLink" not in second and set(second["value"][0]) == {
            "userPrincipalName", "mobilePhone", "accountEnabled",
        }
        unknown = httpx.get(f"{graph.base_url}/users", params={"$select": "shoeSize"}, headers=headers)
        assert unknown.status_code == 400
        too_big = httpx.get(f"{graph.base_url}/users", params={"$top": "1000"}, headers=headers)
        assert too_big.status_code == 400
        by_mail = httpx.get(f"{graph.base_url}/users", params={"$filter": f"mail eq '{BOB}'"}, headers=headers)
        assert [u["userPrincipalName"] for u in by_mail.json()["value"]] == [BOB]
        assert graph.request_counts(DIRECTORY) == {"user_list": 4}
