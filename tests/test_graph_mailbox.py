"""The Graph writer and directory against LocalGraph: loopback only, free ports, real HTTP.

Everything below goes through the real msgraph-sdk client (kiota middleware, serialisation,
error mapping) built by build_graph_client; only Exchange Online is replaced, by LocalGraph.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.graph_client import build_graph_client, resolve_cloud
from shared.adapters.graph_directory import GraphDirectory
from shared.adapters.graph_mailbox import (
    DEFAULT_ITEM_CLASS,
    ID_PROPERTY_GUID,
    PROP_CLIENT_SUBMIT_TIME,
    PROP_DELIVERY_TIME,
    PROP_MESSAGE_CLASS,
    PROP_MESSAGE_FLAGS,
    UPLOAD_CHUNK_BYTES,
    GraphMailbox,
    UploadSessionAttachments,
    id_property_id,
)
from shared.domain.errors import (
    ConfigurationError,
    MailboxUnavailable,
    PermanentError,
    PoisonReason,
    TransientError,
)
from shared.domain.rendered import MailAddress, RenderedAttachment, RenderedItem
from shared.local.graph_server import LocalGraph, extended_property
from shared.ports import WriteOutcome

# msgraph-sdk's generated request builders warn about their own deprecated classes on import.
pytestmark = [
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "local-test-token"
ALICE = "alice@contoso.example"  # has an Exchange Online mailbox
NOBOX = "nobox@contoso.example"  # exists in Entra ID, no mailbox
UNKNOWN = "ghost@contoso.example"  # no such user
SENT = datetime(2025, 11, 22, 8, 26, 40, 123000, tzinfo=UTC)
RECEIVED = datetime(2025, 11, 22, 8, 26, 45, tzinfo=UTC)


def rendered(record_id: str = "wamid.HBgM-1", **overrides: Any) -> RenderedItem:
    item = RenderedItem(
        record_id=record_id,
        record_key=hashlib.sha256(record_id.encode()).hexdigest(),
        subject="WhatsApp: Alice Smith to Carla Customer",
        sender=MailAddress("Alice Smith", ALICE),
        recipients=(MailAddress("Carla Customer", "carla@customer.example"),),
        sent_at=SENT,
        received_at=RECEIVED,
        text_body="Hello",
        html_body="<p>Hello</p>",
        message_id_header=f"<{record_id}@whatsapp-archiver.invalid>",
        extra_headers=(("X-WhatsApp-Archiver-Record", record_id),),
    )
    return replace(item, **overrides)


def blob(size: int, seed: int = 7) -> bytes:
    """Deterministic, non-repeating-per-chunk bytes, so a misplaced chunk cannot go unnoticed."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@pytest.fixture
def graph() -> Iterator[LocalGraph]:
    with LocalGraph({ALICE: True, NOBOX: False}, token=TOKEN) as server:
        yield server


@pytest.fixture
def client(graph: LocalGraph) -> Any:
    return build_graph_client(base_url=graph.base_url, access_token=TOKEN)


@pytest.fixture
def mailbox(client: Any) -> Iterator[GraphMailbox]:
    writer = GraphMailbox(client)
    yield writer
    writer.close()


@pytest.fixture
def directory(client: Any) -> Iterator[GraphDirectory]:
    lookup = GraphDirectory(client)
    yield lookup
    lookup.close()


# -- the item -----------------------------------------------------------------------------------


def test_item_lands_in_archive_folder_as_non_draft_with_original_times_class_and_id(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    item = rendered()

    assert mailbox.write(ALICE, item) == WriteOutcome.IMPORTED

    [stored] = graph.messages(ALICE)
    assert stored["folderName"] == "WhatsApp Archiver"
    assert stored["isDraft"] is False
    assert extended_property(stored, PROP_MESSAGE_FLAGS) == "1"
    assert extended_property(stored, PROP_CLIENT_SUBMIT_TIME) == "2025-11-22T08:26:40.123Z"
    assert extended_property(stored, PROP_DELIVERY_TIME) == "2025-11-22T08:26:45Z"
    assert extended_property(stored, PROP_MESSAGE_CLASS) == DEFAULT_ITEM_CLASS
    assert extended_property(stored, id_property_id(ID_PROPERTY_GUID)) == item.record_id
    assert stored["subject"] == item.subject
    assert stored["body"] == {"contentType": "html", "content": "<p>Hello</p>"}
    assert stored["from"]["emailAddress"] == {"name": "Alice Smith", "address": ALICE}
    assert [r["emailAddress"]["address"] for r in stored["toRecipients"]] == ["carla@customer.example"]
    assert stored["internetMessageId"] == item.message_id_header
    assert stored["internetMessageHeaders"] == [
        {"name": "X-WhatsApp-Archiver-Record", "value": item.record_id}
    ]
    folder = next(f for f in graph.folders(ALICE) if f["displayName"] == "WhatsApp Archiver")
    assert folder["parentFolderId"].startswith("msgfolderroot")


def test_item_class_and_folder_name_are_settings(graph: LocalGraph, client: Any) -> None:
    with GraphMailbox(client, item_class="IPM.Note.Custom", folder_name="Chats") as writer:
        writer.write(ALICE, rendered())

    [stored] = graph.messages(ALICE)
    assert stored["folderName"] == "Chats"
    assert extended_property(stored, PROP_MESSAGE_CLASS) == "IPM.Note.Custom"


def test_second_write_of_same_record_is_skipped_duplicate_and_leaves_one_item(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    item = rendered(record_id="wamid.it's+odd&/?#=")  # quotes and URL delimiters survive the filter

    assert mailbox.write(ALICE, item) == WriteOutcome.IMPORTED
    assert mailbox.write(ALICE, item) == WriteOutcome.SKIPPED_DUPLICATE

    assert len(graph.messages(ALICE)) == 1
    lookups = [r for r in graph.request_log if r["operation"] == "item_lookup"]
    assert lookups and all(r["prefer"] == 'IdType="ImmutableId"' for r in lookups)


def test_folder_is_created_once_and_cached_so_each_record_costs_two_requests(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    for n in range(3):
        mailbox.write(ALICE, rendered(record_id=f"wamid.{n}"))

    assert graph.request_counts(ALICE) == {
        "folder_find": 1,
        "folder_create": 1,
        "item_lookup": 3,
        "item_create": 3,
    }
    assert [f["displayName"] for f in graph.folders(ALICE)].count("WhatsApp Archiver") == 1


def test_existing_archive_folder_is_reused_not_recreated(graph: LocalGraph, client: Any) -> None:
    with GraphMailbox(client) as first:
        first.write(ALICE, rendered(record_id="wamid.a"))
    with GraphMailbox(build_graph_client(base_url=graph.base_url, access_token=TOKEN)) as second:
        second.write(ALICE, rendered(record_id="wamid.b"))

    assert graph.request_counts(ALICE)["folder_create"] == 1
    assert {m["parentFolderId"] for m in graph.messages(ALICE)} == {
        f["id"] for f in graph.folders(ALICE) if f["displayName"] == "WhatsApp Archiver"
    }


def test_folder_creation_race_lost_to_another_worker_is_resolved_by_looking_again(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    graph.simulate_folder_race(ALICE, "WhatsApp Archiver")

    assert mailbox.write(ALICE, rendered()) == WriteOutcome.IMPORTED

    counts = graph.request_counts(ALICE)
    assert counts["folder_find"] == 2 and counts["folder_create"] == 1  # the create met ErrorFolderExists
    assert [f["displayName"] for f in graph.folders(ALICE)].count("WhatsApp Archiver") == 1
    assert len(graph.messages(ALICE)) == 1


def test_concurrent_writes_to_one_mailbox_share_one_folder_and_stay_within_four_requests(
    client: Any,
) -> None:
    with LocalGraph({ALICE: True}, latency_seconds=0.05) as slow:
        writer = GraphMailbox(build_graph_client(base_url=slow.base_url, access_token=TOKEN))
        try:
            threads = [
                threading.Thread(target=writer.write, args=(ALICE, rendered(record_id=f"wamid.c{n}")))
                for n in range(10)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            writer.close()

        assert len(slow.messages(ALICE)) == 10
        assert slow.request_counts(ALICE)["folder_create"] == 1
        assert 1 < slow.max_concurrency(ALICE) <= 4


# -- errors -------------------------------------------------------------------------------------


def test_429_with_long_retry_after_raises_transient_error_at_once(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    mailbox.write(ALICE, rendered(record_id="wamid.warm"))  # folder cached: the next call is the lookup
    graph.fail_next(429, retry_after=120, path_contains="/messages")

    started = time.monotonic()
    with pytest.raises(TransientError) as raised:
        mailbox.write(ALICE, rendered())

    assert raised.value.retry_after == 120
    assert time.monotonic() - started < 5  # no sleeping through the Retry-After inside the write
    assert graph.request_counts(ALICE)["item_lookup"] == 2  # not retried by the client
    assert len(graph.messages(ALICE)) == 1


def test_short_throttling_on_a_lookup_is_retried_inside_the_client(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    graph.fail_next(503, path_contains="/childFolders", method="GET")

    assert mailbox.write(ALICE, rendered()) == WriteOutcome.IMPORTED
    assert graph.request_counts(ALICE)["folder_find"] == 2


def test_503_on_create_is_not_resent_and_the_next_attempt_imports_exactly_once(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    graph.fail_next(503, path_contains="/messages", method="POST")

    with pytest.raises(TransientError):
        mailbox.write(ALICE, rendered())
    assert graph.request_counts(ALICE)["item_create"] == 1

    assert mailbox.write(ALICE, rendered()) == WriteOutcome.IMPORTED
    assert len(graph.messages(ALICE)) == 1


def test_bad_request_on_create_is_permanent_invalid_item_naming_only_graphs_code(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    item = rendered()
    graph.fail_next(400, path_contains="/messages", method="POST", code="ErrorInvalidRecipients")

    with pytest.raises(PermanentError) as raised:
        mailbox.write(ALICE, item)

    assert raised.value.reason == PoisonReason.INVALID_ITEM
    assert "ErrorInvalidRecipients" in raised.value.detail
    for private in (item.subject, ALICE, "carla@customer.example", "Hello"):
        assert private not in str(raised.value)


def test_mailbox_without_exchange_raises_mailbox_unavailable(mailbox: GraphMailbox) -> None:
    with pytest.raises(MailboxUnavailable) as raised:
        mailbox.write(NOBOX, rendered())

    assert raised.value.mailbox == NOBOX
    assert raised.value.code == "MailboxNotEnabledForRESTAPI"


def test_unknown_user_raises_mailbox_unavailable(mailbox: GraphMailbox) -> None:
    with pytest.raises(MailboxUnavailable) as raised:
        mailbox.write(UNKNOWN, rendered())

    assert raised.value.code == "ErrorInvalidUser"
    assert UNKNOWN not in str(raised.value)


def test_rejected_token_is_a_configuration_error(graph: LocalGraph) -> None:
    with GraphMailbox(build_graph_client(base_url=graph.base_url, access_token="wrong")) as writer:
        with pytest.raises(ConfigurationError):
            writer.write(ALICE, rendered())


# -- attachments --------------------------------------------------------------------------------


def test_small_attachments_travel_inline_and_uncaptured_ones_are_not_sent(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    photo, voice = blob(40_000, seed=1), blob(900_000, seed=2)
    item = rendered(
        attachments=(
            RenderedAttachment("photo.jpg", "image/jpeg", len(photo), None, photo),
            RenderedAttachment("lost.mp4", "video/mp4", 10_000_000, None, None),
            RenderedAttachment("voice.ogg", "audio/ogg", len(voice), None, voice),
        )
    )

    mailbox.write(ALICE, item)

    [stored] = graph.messages(ALICE)
    assert [(a["name"], a["content"], a["via"]) for a in stored["attachments"]] == [
        ("photo.jpg", photo, "inline"),
        ("voice.ogg", voice, "inline"),
    ]
    assert graph.request_counts(ALICE)["item_create"] == 1
    assert "upload_session_create" not in graph.request_counts(ALICE)


def test_attachment_that_would_push_the_create_over_4mb_is_posted_after_it(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    first, second = blob(2_000_000, seed=3), blob(2_000_000, seed=4)
    item = rendered(
        attachments=(
            RenderedAttachment("a.pdf", "application/pdf", len(first), None, first),
            RenderedAttachment("b.pdf", "application/pdf", len(second), None, second),
        )
    )

    mailbox.write(ALICE, item)

    [stored] = graph.messages(ALICE)
    assert sorted((a["name"], a["via"]) for a in stored["attachments"]) == [
        ("a.pdf", "inline"),
        ("b.pdf", "attachment_post"),
    ]
    assert {a["name"]: a["content"] for a in stored["attachments"]} == {"a.pdf": first, "b.pdf": second}


def test_5mb_attachment_goes_through_an_upload_session_in_chunks_and_arrives_byte_identical(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    video = blob(5 * 1024 * 1024, seed=5)
    item = rendered(attachments=(RenderedAttachment("clip.mp4", "video/mp4", len(video), None, video),))

    assert mailbox.write(ALICE, item) == WriteOutcome.IMPORTED

    [stored] = graph.messages(ALICE)
    [attachment] = stored["attachments"]
    assert attachment["via"] == "upload_session"
    assert attachment["content"] == video
    assert attachment["chunks"] == [UPLOAD_CHUNK_BYTES, len(video) - UPLOAD_CHUNK_BYTES]
    assert stored["isDraft"] is False and stored["uploadSessionsWhileNonDraft"] == 1
    chunk_requests = [r for r in graph.request_log if r["operation"] == "upload_chunk"]
    assert len(chunk_requests) == 2 and not any(r["authorization"] for r in chunk_requests)


def test_failed_upload_removes_the_incomplete_item_so_the_retry_imports_it_whole(
    graph: LocalGraph, client: Any
) -> None:
    video = blob(4 * 1024 * 1024, seed=6)
    item = rendered(attachments=(RenderedAttachment("clip.mp4", "video/mp4", len(video), None, video),))
    with GraphMailbox(client, attachments=UploadSessionAttachments(chunk_retries=0)) as writer:
        graph.fail_next(500, path_contains="/upload/")
        with pytest.raises(TransientError):
            writer.write(ALICE, item)
        assert graph.messages(ALICE) == []

        assert writer.write(ALICE, item) == WriteOutcome.IMPORTED

    [stored] = graph.messages(ALICE)
    assert [a["content"] for a in stored["attachments"]] == [video]


def test_interrupted_import_left_behind_is_completed_by_the_retry(graph: LocalGraph, client: Any) -> None:
    video = blob(4 * 1024 * 1024, seed=8)
    item = rendered(attachments=(RenderedAttachment("clip.mp4", "video/mp4", len(video), None, video),))
    with GraphMailbox(client, attachments=UploadSessionAttachments(chunk_retries=0)) as writer:
        graph.fail_next(500, path_contains="/upload/")
        graph.fail_next(500, path_contains="/permanentDelete")
        with pytest.raises(TransientError):
            writer.write(ALICE, item)
        assert [m["attachments"] for m in graph.messages(ALICE)] == [[]]

        assert writer.write(ALICE, item) == WriteOutcome.IMPORTED
        assert writer.write(ALICE, item) == WriteOutcome.SKIPPED_DUPLICATE

    [stored] = graph.messages(ALICE)
    assert [a["content"] for a in stored["attachments"]] == [video]


def test_only_x_headers_reach_graph_and_at_most_five(graph: LocalGraph, mailbox: GraphMailbox) -> None:
    headers = (("Thread-Topic", "chat"),) + tuple((f"X-Extra-{n}", str(n)) for n in range(7))

    mailbox.write(ALICE, rendered(extra_headers=headers))

    [stored] = graph.messages(ALICE)
    assert [h["name"] for h in stored["internetMessageHeaders"]] == [f"X-Extra-{n}" for n in range(5)]


# -- directory ----------------------------------------------------------------------------------


def test_directory_says_true_for_a_user_with_a_mailbox_and_caches_it(
    graph: LocalGraph, directory: GraphDirectory
) -> None:
    assert directory.has_mailbox(ALICE) is True
    assert directory.has_mailbox(ALICE.upper()) is True

    assert graph.request_counts(ALICE) == {"user_get": 1, "mailbox_probe": 1}


def test_directory_says_false_for_a_user_without_mailbox_and_for_an_unknown_user(
    directory: GraphDirectory,
) -> None:
    assert directory.has_mailbox(NOBOX) is False
    assert directory.has_mailbox(UNKNOWN) is False


def test_directory_finds_a_user_whose_mail_address_is_not_the_upn() -> None:
    upn = "a.smith@contoso.onmicrosoft.example"
    with LocalGraph({upn: True}, mail_aliases={ALICE: upn}) as server:
        with GraphDirectory(build_graph_client(base_url=server.base_url, access_token=TOKEN)) as lookup:
            assert lookup.has_mailbox(ALICE) is True


def test_directory_transient_failure_raises_and_is_not_cached_as_no_mailbox(
    graph: LocalGraph, directory: GraphDirectory
) -> None:
    graph.fail_next(429, retry_after=300)

    with pytest.raises(TransientError) as raised:
        directory.has_mailbox(ALICE)

    assert raised.value.retry_after == 300
    assert directory.has_mailbox(ALICE) is True


def test_directory_negative_answer_expires_sooner_than_a_positive_one(graph: LocalGraph, client: Any) -> None:
    now = [0.0]
    with GraphDirectory(client, clock=lambda: now[0]) as lookup:
        lookup.has_mailbox(ALICE)
        lookup.has_mailbox(NOBOX)
        now[0] = 6 * 60.0
        lookup.has_mailbox(ALICE)
        lookup.has_mailbox(NOBOX)

    assert graph.request_counts(ALICE)["user_get"] == 1
    assert graph.request_counts(NOBOX)["user_get"] == 2


# -- client construction ------------------------------------------------------------------------


def test_static_access_token_with_a_non_loopback_base_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        build_graph_client(base_url="https://graph.microsoft.com/v1.0", access_token=TOKEN)
    with pytest.raises(ConfigurationError):
        build_graph_client(access_token=TOKEN)


def test_each_national_cloud_pairs_its_graph_host_scope_and_authority() -> None:
    gcc_high = resolve_cloud("usgov")
    assert gcc_high.base_url == "https://graph.microsoft.us/v1.0"
    assert gcc_high.scope == "https://graph.microsoft.us/.default"
    assert gcc_high.authority_host == "login.microsoftonline.us"
    assert resolve_cloud("dod").scope == "https://dod-graph.microsoft.us/.default"
    assert resolve_cloud("china").authority_host == "login.chinacloudapi.cn"
    with pytest.raises(ConfigurationError):
        resolve_cloud("mars")


def test_importing_the_graph_adapters_does_not_import_the_sdk() -> None:
    code = (
        "import sys\n"
        "import shared.adapters.graph_client, shared.adapters.graph_directory\n"
        "import shared.adapters.graph_mailbox\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('msgraph', 'azure', 'kiota_http')], "
        "sorted(m for m in sys.modules if m.startswith(('msgraph', 'azure', 'kiota')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, env=env)
