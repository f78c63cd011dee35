"""Tokens and passwords go only to their own hosts.

The Graph token only to the configured cloud's Graph host (or the loopback test server), never
along a page link, an upload URL or a redirect that points elsewhere; TeleMessage's password and
token only over https (http only to loopback) and never along a redirect. Every "elsewhere" below is
a ``Bystander``: a second server on another loopback port that records whatever reaches it, so a
test proves that nothing did, not merely that an error was raised.
"""
# The LocalGraph and LocalTeleMessage fixtures of the adapters' own tests are imported, not copied,
# and then named as test parameters, which ruff reads as redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from shared.adapters.graph_client import build_graph_client
from shared.adapters.graph_directory import GraphDirectory, GraphPhoneDirectory
from shared.adapters.graph_mailbox import GraphMailbox
from shared.adapters.telemessage import TeleMessageClient
from shared.adapters.urls import checked_graph_link, checked_upload_url
from shared.domain.errors import ConfigurationError, PermanentError, PoisonReason, TransientError
from shared.local.graph_stand_in.server import LocalGraph
from shared.local.telemessage_server import LocalTeleMessage
from shared.ports import WriteOutcome
from tests import test_telemessage_client as tm
from tests.test_graph_mailbox import ALICE, TOKEN, attached, blob, client, graph, mailbox, rendered  # noqa: F401
from tests.test_telemessage_client import day, server  # noqa: F401

pytestmark = [
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]

SECRET = "not-a-real-secret"
GRAPH = "https://graph.microsoft.com/v1.0"


@dataclass
class Bystander:
    """A loopback server that must never be contacted: ``requests`` holds each request's method,
    path, headers and body. It answers 200 with JSON that would look like success to a careless
    client."""

    url: str
    requests: list[dict[str, Any]]


@pytest.fixture
def bystander() -> Iterator[Bystander]:
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
            answer = json.dumps({"value": [], "accessToken": "stolen", "expiresIn": 3600}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield Bystander(f"http://127.0.0.1:{server.server_address[1]}", seen)
    finally:
        server.shutdown()
        server.server_close()


def allowed_hosts(graph_client: Any) -> list[str]:
    provider = graph_client.request_adapter._authentication_provider.access_token_provider
    return provider.get_allowed_hosts_validator().get_allowed_hosts()


# -- Graph: where the token may go ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cloud", "base_url"),
    [
        ("global", "https://graph.example.com/v1.0"),
        ("global", "https://graph.microsoft.com.example.com/v1.0"),
        ("global", "https://graph.microsoft.us/v1.0"),  # another cloud's Graph host
        ("usgov", "https://graph.microsoft.com/v1.0"),
        ("global", "https://graph.microsoft.com:8443/v1.0"),
        ("global", "http://graph.microsoft.com/v1.0"),
        ("global", f"https://app:{SECRET}@graph.microsoft.com/v1.0"),
        ("global", "https://graph.microsoft.com/v1.0?key=" + SECRET),
    ],
)
def test_graph_base_url_off_the_clouds_graph_host_is_refused_at_build_time_without_quoting_it(
    cloud: str, base_url: str
) -> None:
    with pytest.raises(ConfigurationError, match="GRAPH_BASE_URL") as refused:
        build_graph_client(cloud=cloud, base_url=base_url, tenant_id="t", client_id="c", client_secret=SECRET)
    assert SECRET not in str(refused.value) and "example" not in str(refused.value)


@pytest.mark.parametrize(("cloud", "host"), [("usgov", "graph.microsoft.us"), ("global", "graph.microsoft.com")])
def test_graph_base_url_on_the_clouds_own_graph_host_is_accepted_and_the_token_allowed_there_only(
    cloud: str, host: str
) -> None:
    built = build_graph_client(cloud=cloud, base_url=f"https://{host}/v1.0", tenant_id="t", client_id="c",
                               client_secret=SECRET)
    assert built.request_adapter.base_url == f"https://{host}/v1.0"
    assert allowed_hosts(built) == [host]
    assert allowed_hosts(build_graph_client(cloud=cloud, tenant_id="t", client_id="c", client_secret=SECRET)) == [host]


def test_loopback_graph_base_url_allows_the_token_to_that_loopback_host_not_to_any_host(graph: LocalGraph) -> None:
    assert allowed_hosts(build_graph_client(base_url=graph.base_url, access_token=TOKEN)) == ["127.0.0.1"]


# -- Graph: links out of answers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("link", "followed"),
    [
        ("https://graph.microsoft.com/v1.0/users?$skiptoken=abc", "https://graph.microsoft.com/v1.0/users?$skiptoken=abc"),
        ("https://GRAPH.microsoft.com:443/v1.0/users?$top=9", "https://graph.microsoft.com/v1.0/users?$top=9"),
        ("https://graph.microsoft.com/v1.0/users#frag", "https://graph.microsoft.com/v1.0/users"),
        ("https://evil.example/v1.0/users", None),
        ("https://graph.microsoft.com.evil.example/v1.0/users", None),
        ("http://graph.microsoft.com/v1.0/users", None),
        ("https://graph.microsoft.com:8443/v1.0/users", None),
        ("https://someone@graph.microsoft.com/v1.0/users", None),
        ("https://graph.microsoft.com/beta/users", None),
        ("https://graph.microsoft.com/v1.0/../beta/users", None),
        ("https://graph.microsoft.com/v1.0/%2e%2e/beta/users", None),
        ("https://graph.microsoft.com\\@evil.example/v1.0/users", None),
        ("/v1.0/users?$skiptoken=abc", None),
        ("", None),
    ],
)
def test_a_page_link_is_followed_only_on_the_clients_own_server_under_its_api_version(
    link: str, followed: str | None
) -> None:
    if followed is not None:
        assert checked_graph_link(link, GRAPH) == followed
        return
    with pytest.raises(PermanentError) as refused:
        checked_graph_link(link, GRAPH)
    assert refused.value.reason is PoisonReason.INVALID_ITEM
    assert "evil" not in str(refused.value) and "skiptoken" not in str(refused.value)


def test_a_user_listing_page_link_to_another_server_is_refused_and_that_server_never_contacted(
    graph: LocalGraph, client: Any, bystander: Bystander
) -> None:
    graph.amend_next({"@odata.nextLink": f"{bystander.url}/v1.0/users?$skiptoken=x"}, path_contains="/v1.0/users")
    with GraphPhoneDirectory(client) as phones, pytest.raises(TransientError, match="page link not followed"):
        phones.mailbox_for_phone("+447700900123")
    assert bystander.requests == []


def test_an_attachment_listing_page_link_to_another_server_poisons_the_record_with_a_reason_unfollowed(
    graph: LocalGraph, mailbox: GraphMailbox, bystander: Bystander
) -> None:
    item = rendered(attachments=(attached("clip.mp4", blob(3_000_000), "video/mp4"),))
    assert mailbox.write(ALICE, item, check_existing=False) == WriteOutcome.IMPORTED
    graph.amend_next({"@odata.nextLink": f"{bystander.url}/v1.0/next"}, path_contains="/attachments", method="GET")

    with pytest.raises(PermanentError, match="page link not followed") as refused:
        mailbox.write(ALICE, item, check_existing=True)

    assert refused.value.reason is PoisonReason.INVALID_ITEM
    assert bystander.requests == []


# -- Graph: redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_graph_redirect_is_not_followed_and_no_token_or_mail_reaches_its_target(
    graph: LocalGraph, mailbox: GraphMailbox, bystander: Bystander, status: int
) -> None:
    graph.fail_next(status, location=f"{bystander.url}/v1.0/users/{ALICE}/mailFolders", path_contains="/messages",
                    method="POST")

    with pytest.raises(ConfigurationError, match=f"graph {status} .*item_create.*redirect"):
        mailbox.write(ALICE, rendered(), check_existing=False)

    assert bystander.requests == []
    assert graph.request_counts(ALICE)["item_create"] == 1  # answered once, never retried or followed


def test_a_redirected_directory_lookup_is_a_configuration_error_and_goes_nowhere(
    graph: LocalGraph, client: Any, bystander: Bystander
) -> None:
    graph.fail_next(307, location=f"{bystander.url}/v1.0/users/{ALICE}", path_contains="/users/")
    with GraphDirectory(client) as directory, pytest.raises(ConfigurationError, match="redirect"):
        directory.has_mailbox(ALICE)
    assert bystander.requests == []


# -- Graph: upload URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cloud", "url", "used"),
    [
        ("global", "https://outlook.office.com/api/v2.0/Users('u')/AttachmentSessions('s')?authtoken=t", True),
        ("global", "https://outlook.office365.com/api/gbeta/users('u')/messages('m')/AttachmentSessions('s')", True),
        ("usgov", "https://outlook.office365.us/api/v2.0/AttachmentSessions('s')", True),
        ("dod", "https://outlook-dod.office365.us/api/v2.0/AttachmentSessions('s')", True),
        ("china", "https://partner.outlook.cn/api/v2.0/AttachmentSessions('s')", True),
        ("global", "https://outlook.office365.us/api/v2.0/AttachmentSessions('s')", False),  # another cloud's
        ("usgov", "https://outlook.office.com/api/v2.0/AttachmentSessions('s')", False),
        ("global", "http://outlook.office.com/api/v2.0/AttachmentSessions('s')", False),
        ("global", "https://outlook.office.com:8443/api/v2.0/AttachmentSessions('s')", False),
        ("global", "https://outlook.office.com.evil.example/api/v2.0/AttachmentSessions('s')", False),
        ("global", "https://u@outlook.office.com/api/v2.0/AttachmentSessions('s')", False),
        ("global", "https://graph.microsoft.com/v1.0/upload", False),
        ("global", "http://127.0.0.1:8080/upload/s", False),  # loopback only for a loopback client
        ("global", "http://169.254.169.254/metadata", False),
    ],
)
def test_an_upload_url_is_used_only_on_the_clouds_exchange_hosts(cloud: str, url: str, used: bool) -> None:
    if used:
        assert checked_upload_url(url, GRAPH, cloud) == url
        return
    with pytest.raises(PermanentError, match="upload URL not used") as refused:
        checked_upload_url(url, GRAPH, cloud)
    assert "authtoken" not in str(refused.value) and "evil" not in str(refused.value)


def test_a_loopback_client_takes_upload_urls_from_its_own_loopback_server_only(graph: LocalGraph) -> None:
    own = f"{graph.root_url}/upload/s"
    assert checked_upload_url(own, graph.base_url, "global") == own
    with pytest.raises(PermanentError):
        checked_upload_url(f"http://127.0.0.1:{graph.port + 1}/upload/s", graph.base_url, "global")
    with pytest.raises(PermanentError):
        checked_upload_url("https://outlook.office.com/api/v2.0/AttachmentSessions('s')", graph.base_url, "global")


def test_an_upload_url_on_another_server_is_never_put_to_and_the_incomplete_item_is_removed(
    graph: LocalGraph, mailbox: GraphMailbox, bystander: Bystander
) -> None:
    graph.amend_next({"uploadUrl": f"{bystander.url}/upload/s"}, path_contains="createUploadSession")
    item = rendered(attachments=(attached("clip.mp4", blob(3_000_000), "video/mp4"),))

    with pytest.raises(PermanentError, match="upload URL not used") as refused:
        mailbox.write(ALICE, item, check_existing=False)

    assert refused.value.reason is PoisonReason.INVALID_ITEM
    assert bystander.requests == []
    assert graph.request_counts(ALICE).get("upload_chunk", 0) == 0
    assert graph.messages(ALICE) == []  # no incomplete item left in the archive


def test_a_redirected_upload_chunk_is_not_followed_and_the_attachment_goes_nowhere_else(
    graph: LocalGraph, mailbox: GraphMailbox, bystander: Bystander
) -> None:
    graph.fail_next(307, location=f"{bystander.url}/upload/s", path_contains="/upload/")
    item = rendered(attachments=(attached("clip.mp4", blob(3_000_000), "video/mp4"),))

    with pytest.raises(TransientError, match="upload chunk refused with 307"):
        mailbox.write(ALICE, item, check_existing=False)

    assert bystander.requests == []
    assert graph.messages(ALICE) == []


# -- TeleMessage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        "http://archive.telemessage.example",
        "http://10.0.0.8:8080",
        f"https://demo:{tm.PASSWORD}@archive.telemessage.example",
        f"https://archive.telemessage.example/?password={tm.PASSWORD}",
        f"https://archive.telemessage.example/#{tm.PASSWORD}",
        "ftp://archive.telemessage.example",
        "archive.telemessage.example",
        "",
    ],
)
def test_telemessage_base_url_that_could_leak_credentials_is_refused_at_construction(base_url: str) -> None:
    with pytest.raises(ConfigurationError, match="TELEMESSAGE_BASE_URL") as refused:
        TeleMessageClient(base_url, "demo", tm.PASSWORD)
    assert tm.PASSWORD not in str(refused.value) and "telemessage.example" not in str(refused.value)


def test_telemessage_base_url_over_https_or_to_loopback_is_accepted_and_redirects_are_off(
    server: LocalTeleMessage,
) -> None:
    for base_url in ("https://archive.telemessage.example/", server.base_url, " https://archive.telemessage.example"):
        with TeleMessageClient(base_url, "demo", tm.PASSWORD) as made:
            assert made._http.follow_redirects is False


@pytest.mark.parametrize(
    ("path", "status"),
    [(tm.TOKEN, 307), (tm.TOKEN, 302), (tm.TOKEN, 308), (tm.ITEMS, 302), (tm.ITEMS, 301), (tm.ATTACHMENTS, 303)],
)
@pytest.mark.parametrize("follows_redirects", [False, True], ids=["own-http", "injected-http-that-follows"])
def test_a_telemessage_redirect_is_not_followed_and_no_credential_reaches_its_target(
    server: LocalTeleMessage, day: Any, bystander: Bystander, path: str, status: int, follows_redirects: bool
) -> None:
    server.faults.respond_next(path, status, b"", headers={"Location": f"{bystander.url}{path}x"})
    http = httpx.Client(follow_redirects=True, timeout=5.0) if follows_redirects else None
    with TeleMessageClient(server.base_url, "demo", tm.PASSWORD, http=http, sleep=lambda _: None) as source:
        with pytest.raises(ConfigurationError, match=f"HTTP {status}, a redirect") as refused:
            if path == tm.ATTACHMENTS:
                source.open_attachment("att-1")
            else:
                source.list_page(day.window, None, 10)
    if http is not None:
        http.close()

    assert bystander.requests == []
    assert tm.PASSWORD not in str(refused.value) and bystander.url not in str(refused.value)
    assert server.count(path) == 1  # a redirect is an answer, not something to retry
