"""The grammar of identifiers from outside, and the blob adapters' own refusal of unsafe names
(the second line of defence, tested on its own: no edge check in front of it)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain import identifiers
from shared.domain.identifiers import InvalidIdentifier, UnsafeBlobName, check_blob_name
from shared.domain.ledger import WindowInfo
from shared.domain.records import record_key
from shared.domain.window import Window
from tests.builders import WINDOW_ID

TRAVERSALS = [
    "../mapping/phone-to-email", "..", ".", "reports/../mapping/x", "a/./b", "%2e%2e/mapping", "%2E%2E%2Fx",
    "a%2fb", "a%5Cb", "..\\mapping", "a\\b", "/etc/passwd", "//host/share", "a//b", "a\x00b", "a\nb",
    "a\rb", "a\x7fb", "a\x85b", "a\u2028b", "", "windows/zz./window.json", "report.",
]


def test_a_window_id_as_the_ledger_writes_it_passes_and_round_trips():
    from datetime import UTC, datetime

    info = WindowInfo(Window(datetime(2026, 11, 1, 2, tzinfo=UTC), datetime(2026, 11, 2, 2, tzinfo=UTC)), 24,
                      datetime(2026, 11, 2, 2, 0, 0, 123456, tzinfo=UTC))
    assert identifiers.window_id(info.window_id) == info.window_id
    assert identifiers.window_id(WINDOW_ID) == WINDOW_ID


@pytest.mark.parametrize("value", TRAVERSALS + [
    "no-such-window", WINDOW_ID + "/", WINDOW_ID + ".json", WINDOW_ID.replace("T", "t"), " " + WINDOW_ID,
    "20261131T000000Z-20261201T000000Z.20261201T000000000Z",  # 31 November
    "20261202T000000Z-20261201T000000Z.20261201T000000000Z",  # ends before it starts
    "２０２６" + WINDOW_ID[4:],  # full-width digits: \d would take them, the grammar must not
])
def test_anything_else_is_not_a_window_id_and_the_error_names_the_parameter_not_the_value(value):
    with pytest.raises(InvalidIdentifier) as error:
        identifiers.window_id(value, "window")
    assert error.value.parameter == "window" and str(error.value).startswith("window: not a window id")
    if len(value) > 3:
        assert value not in str(error.value)


def test_record_keys_and_references_follow_the_record_store():
    key = record_key("msg-1")
    assert identifiers.record_key(key) == key
    assert identifiers.record_key("unidentified-" + key) == "unidentified-" + key
    assert identifiers.record_ref(f"{key}.json") and identifiers.record_ref(f"{key}.0123456789abcdef.json")
    for bad in ("k", key.upper(), f"../{key}", f"{key}.json/..", f"{key}.JSON"):
        with pytest.raises(InvalidIdentifier):
            identifiers.record_ref(bad)
    with pytest.raises(InvalidIdentifier):
        identifiers.record_key(key + "0")


def test_queue_message_ids_are_guids():
    assert identifiers.message_id("0f8fad5b-d9cb-469f-a165-70867728950e")
    for bad in ("0f8fad5b", "../0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5b-d9cb-469f-a165-70867728950e\n"):
        with pytest.raises(InvalidIdentifier):
            identifiers.message_id(bad, "--message-id")


@pytest.mark.parametrize("address", [
    "alice@contoso.example", "o'brien@contoso.example", "first.last+tag@sub.contoso.example",
    "guest_fabrikam.com#EXT#@contoso.onmicrosoft.com", "josé@contoso.example",
])
def test_mailbox_addresses_of_real_users_and_guests_pass(address):
    assert identifiers.is_mailbox_address(address)


@pytest.mark.parametrize("address", [
    "", "alice", "@contoso.example", "alice@", "a/b@contoso.example", "a\\b@contoso.example",
    "a?b@contoso.example", "a%2f@contoso.example", "a b@contoso.example", "alice@contoso", "alice@-x.example",
    "alice@contoso..example", ".alice@contoso.example", "alice@contoso.example/../../users",
    "alice@contoso.example\x00", "a@b@contoso.example", "alice@127.0.0.1",
])
def test_anything_that_would_change_a_graph_url_is_no_mailbox_address(address):
    assert not identifiers.is_mailbox_address(address)


@pytest.mark.parametrize("name", TRAVERSALS)
def test_the_blob_guard_refuses_every_name_that_could_mean_another_blob(name):
    with pytest.raises(UnsafeBlobName) as error:
        check_blob_name(name)
    if len(name) > 3:
        assert name not in str(error.value)


@pytest.mark.parametrize("name", [
    "windows/20261101T020000Z-20261102T020000Z.20261102T020000123Z/window.json",
    "reports/20261101T020000Z-20261102T020000Z.20261102T020000123Z.csv", "mapping/phone-to-email.csv",
    f"{record_key('m')}.json", "deliveries/ab/cd.json", "transcripts/staged/2026-11-01/x/y.json", "a..b", ".hidden",
])
def test_the_blob_guard_lets_the_names_the_adapters_write_through(name):
    assert check_blob_name(name) == name


def test_a_listing_prefix_may_end_with_a_slash_but_a_name_may_not():
    assert check_blob_name("windows/", prefix=True) == "windows/"
    with pytest.raises(UnsafeBlobName):
        check_blob_name("windows/")
    with pytest.raises(UnsafeBlobName):
        check_blob_name("windows/../", prefix=True)


@given(st.lists(st.sampled_from(["a", "..", ".", "", "%2e", "%2F", "\\", "\x00", "b"]), min_size=1, max_size=6))
def test_no_accepted_name_resolves_to_a_different_path(parts):
    import posixpath
    import urllib.parse

    name = "/".join(parts)
    try:
        check_blob_name(name)
    except UnsafeBlobName:
        return
    decoded = urllib.parse.unquote(name)
    assert posixpath.normpath(decoded) == decoded and "\\" not in decoded


def test_the_adapters_refuse_an_unsafe_name_before_any_request_whatever_the_caller_checked():
    """No storage behind it: a refused name must not reach the service client at all."""
    from shared.adapters.azure_storage import BlobReportStore, BlobWindowLedger

    class NoService:
        def get_container_client(self, name):
            return NoContainer(name)

    class NoContainer:
        def __init__(self, name):
            self.container_name = name

        def __getattr__(self, attribute):
            raise AssertionError(f"a request was built: {attribute}")

    reports = BlobReportStore(NoService(), "archive-state")  # type: ignore[arg-type]
    ledger = BlobWindowLedger(NoService(), "archive-state")  # type: ignore[arg-type]
    reports._container._ensured = True  # the container exists; only the name is in question
    ledger._container._ensured = True
    for call in (lambda: reports.load("../mapping/phone-to-email", "csv"),
                 lambda: reports.load("x", "csv/../../y"),
                 lambda: ledger.window("../../archive-records/k"),
                 lambda: ledger.outcomes("a\\b"),
                 lambda: ledger.pages("%2e%2e")):
        with pytest.raises(UnsafeBlobName):
            call()


def test_settings_refuse_unsafe_container_and_mapping_blob_names():
    from pydantic import ValidationError

    from shared.settings import Settings

    for bad in ({"mapping_blob": "../archive-records/x.json"}, {"state_container": "../x"},
                {"records_container": "Archive_Records"}, {"catch_all_mailbox": "a/b@contoso.example"}):
        with pytest.raises(ValidationError):
            Settings(**bad)


@pytest.mark.parametrize("digits", ["١٢٣", "１２３", "߁߂߃"])
def test_digits_of_other_scripts_make_no_window_id_anywhere_in_it(digits):
    with pytest.raises(InvalidIdentifier):
        identifiers.window_id(WINDOW_ID[:-4] + digits + "Z")


def test_transcript_buckets_are_a_day_and_a_chat_id_in_ascii():
    assert identifiers.is_bucket("2026-11-01/" + "0" * 32)
    for bad in ("2026-11-01/" + "0" * 31, "２０２６-11-01/" + "0" * 32, "2026-11-01/../" + "0" * 29, "x"):
        assert not identifiers.is_bucket(bad)
