"""The Graph writer, directory and client against LocalGraph: loopback only, free ports, real HTTP.

Everything below goes through the real msgraph-sdk client (kiota middleware, serialisation,
error mapping) built by build_graph_client; only Exchange Online is replaced, by LocalGraph
(shared/local/graph_stand_in/), whose own behaviour is checked at the end with plain HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.adapters.graph_attachments import UPLOAD_CHUNK_BYTES, UploadSessionAttachments
from shared.adapters.graph_client import build_graph_client, graph_client_info
from shared.adapters.graph_clouds import resolve_cloud
from shared.adapters.graph_credentials import azure_credential, certificate_bytes
from shared.adapters.graph_directory import GraphDirectory
from shared.adapters.graph_gate import MailboxGate
from shared.adapters.graph_mailbox import GraphMailbox
from shared.adapters.graph_message import (
    DEFAULT_ITEM_CLASS,
    ID_PROPERTY_GUID,
    PROP_CLIENT_SUBMIT_TIME,
    PROP_CONVERSATION_INDEX,
    PROP_CONVERSATION_INDEX_TRACKING,
    PROP_CONVERSATION_TOPIC,
    PROP_DELIVERY_TIME,
    PROP_MESSAGE_CLASS,
    PROP_MESSAGE_FLAGS,
    id_property_id,
)
from shared.domain.errors import (
    ConfigurationError,
    MailboxUnavailable,
    PermanentError,
    PoisonReason,
    TransientError,
)
from shared.domain.records import ArchiveRecord
from shared.domain.rendered import BytesPayload, FilePayload, MailAddress, RenderedAttachment, RenderedItem
from shared.domain.rendering import render
from shared.local.graph_stand_in.server import LocalGraph
from shared.local.graph_stand_in.store import binary_property, extended_property
from shared.ports import WriteOutcome
from tests import builders

# msgraph-sdk's generated request builders warn about their own deprecated classes on import.
pytestmark = [
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "local-test-token"
ALICE = "alice@contoso.example"  # has an Exchange Online mailbox
NOBOX = "nobox@contoso.example"  # exists in Entra ID, no mailbox
OUTSIDER = "outsider@contoso.example"  # has a mailbox, outside the app's RBAC for Applications scope
UNKNOWN = "ghost@contoso.example"  # no such user
SENT = datetime(2025, 11, 22, 8, 26, 40, 123000, tzinfo=UTC)
RECEIVED = datetime(2025, 11, 22, 8, 26, 45, tzinfo=UTC)
MIB = 1024 * 1024


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


def attached(name: str, data: bytes, content_type: str = "application/octet-stream") -> RenderedAttachment:
    return RenderedAttachment(name, content_type, len(data), None, BytesPayload(data))


def file_payload(path: Path, size: int, seed: int = 11) -> tuple[FilePayload, str]:
    """Writes ``size`` deterministic bytes to ``path`` a mebibyte at a time; returns the payload
    and its sha256 (the test never holds the whole file either)."""
    digest = hashlib.sha256()
    piece = blob(MIB, seed)
    with path.open("wb") as out:
        written = 0
        n = 0
        while written < size:
            part = hashlib.sha256(n.to_bytes(8, "big")).digest() + piece[32 : min(MIB, size - written)]
            part = part[: min(MIB, size - written)]
            out.write(part)
            digest.update(part)
            written += len(part)
            n += 1
    return FilePayload(path, size), digest.hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def graph() -> Iterator[LocalGraph]:
    with LocalGraph({ALICE: True, NOBOX: False, OUTSIDER: True}, token=TOKEN, access_denied={OUTSIDER}) as server:
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


def warm(writer: GraphMailbox, graph: LocalGraph, mailbox: str = ALICE) -> None:
    """Archives one throw-away record so the folder id is cached, then forgets the counts."""
    writer.write(mailbox, rendered(record_id=f"wamid.warm-{id(writer)}"), check_existing=False)
    graph.reset_counts()


# -- the item -----------------------------------------------------------------------------------


def test_item_is_a_non_draft_with_original_times_class_id_body_parties_and_byte_exact_attachments(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    photo, video = blob(40_000, seed=1), blob(3_500_000, seed=2)
    item = rendered(attachments=(attached("photo.jpg", photo, "image/jpeg"), attached("clip.mp4", video, "video/mp4")))

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
    assert stored["sender"]["emailAddress"] == {"name": "Alice Smith", "address": ALICE}
    assert [r["emailAddress"] for r in stored["toRecipients"]] == [
        {"name": "Carla Customer", "address": "carla@customer.example"}
    ]
    assert stored["internetMessageId"] == item.message_id_header
    assert stored["internetMessageHeaders"] == [{"name": "X-WhatsApp-Archiver-Record", "value": item.record_id}]
    assert {a["name"]: (a["contentType"], a["size"], a["sha256"], a["via"]) for a in stored["attachments"]} == {
        "photo.jpg": ("image/jpeg", len(photo), sha(photo), "inline"),
        "clip.mp4": ("video/mp4", len(video), sha(video), "upload_session"),
    }
    assert {a["name"]: a["content"] for a in stored["attachments"]} == {"photo.jpg": photo, "clip.mp4": video}
    folder = next(f for f in graph.folders(ALICE) if f["displayName"] == "WhatsApp Archiver")
    assert folder["parentFolderId"].startswith("msgfolderroot")


def test_item_class_and_folder_name_are_settings(graph: LocalGraph, client: Any) -> None:
    with GraphMailbox(client, item_class="IPM.Note.Custom", folder_name="Chats") as writer:
        writer.write(ALICE, rendered())

    [stored] = graph.messages(ALICE)
    assert stored["folderName"] == "Chats"
    assert extended_property(stored, PROP_MESSAGE_CLASS) == "IPM.Note.Custom"


def test_microsofts_connector_class_can_be_kept_so_saved_searches_still_find_new_items(
    graph: LocalGraph, client: Any
) -> None:
    # Firms moving from Microsoft's connector search itemclass:ipm.externaldata.whatsapparchiver* and
    # kind:externaldata: ARCHIVE_ITEM_CLASS=IPM.ExternalData.WhatsAppArchiver keeps those searches whole.
    with GraphMailbox(client, item_class="IPM.ExternalData.WhatsAppArchiver") as writer:
        writer.write(ALICE, rendered())
    [stored] = graph.messages(ALICE)
    item_class = extended_property(stored, PROP_MESSAGE_CLASS)
    assert item_class == "IPM.ExternalData.WhatsAppArchiver"
    assert item_class.lower().startswith("ipm.externaldata.whatsapparchiver")  # the saved search's prefix
    with pytest.raises(ConfigurationError):
        GraphMailbox(client, item_class="ExternalData.WhatsAppArchiver")  # not a message class at all


def test_second_checked_write_of_same_record_is_skipped_duplicate_and_leaves_one_item(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    item = rendered(record_id="wamid.it's+odd&/?#=")  # quotes and URL delimiters survive the filter

    assert mailbox.write(ALICE, item) == WriteOutcome.IMPORTED
    assert mailbox.write(ALICE, item) == WriteOutcome.SKIPPED_DUPLICATE

    assert len(graph.messages(ALICE)) == 1
    lookups = [r for r in graph.request_log if r["operation"] == "item_lookup"]
    assert lookups and all(r["prefer"] == 'IdType="ImmutableId"' for r in lookups)


def test_unchecked_write_skips_the_lookup_so_a_text_record_costs_exactly_one_request(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    warm(mailbox, graph)

    assert mailbox.write(ALICE, rendered(), check_existing=False) == WriteOutcome.IMPORTED

    assert graph.request_counts(ALICE) == {"item_create": 1}


def test_requests_per_record_match_the_documented_cost(graph: LocalGraph, tmp_path: Path) -> None:
    """The table in docs/graph.md ("What a record costs"), measured: requests LocalGraph received for the
    mailbox per archived record, folder already cached, upload PUTs included."""
    big, _ = file_payload(tmp_path / "20mb.bin", 20 * MIB)
    records = {
        "text only": (),
        "1 MB attachment": (attached("doc.pdf", blob(1_000_000, seed=3)),),
        "20 MiB attachment": (RenderedAttachment("video.mp4", "video/mp4", big.size, None, big),),
    }
    measured: dict[tuple[str, bool], dict[str, int]] = {}
    with GraphMailbox(build_graph_client(base_url=graph.base_url, access_token=TOKEN)) as writer:
        warm(writer, graph)
        for n, (label, attachments) in enumerate(records.items()):
            for check in (False, True):
                graph.reset_counts()
                item = rendered(record_id=f"wamid.cost-{n}-{check}", attachments=attachments)
                assert writer.write(ALICE, item, check_existing=check) == WriteOutcome.IMPORTED
                measured[(label, check)] = graph.request_counts(ALICE)

    totals = {key: sum(counts.values()) for key, counts in measured.items()}
    assert totals == {
        ("text only", False): 1,
        ("text only", True): 2,
        ("1 MB attachment", False): 1,
        ("1 MB attachment", True): 2,
        ("20 MiB attachment", False): 9,
        ("20 MiB attachment", True): 10,
    }
    assert measured[("20 MiB attachment", True)] == {
        "item_lookup": 1, "item_create": 1, "upload_session_create": 1, "upload_chunk": 7
    }


# -- the archive folder -------------------------------------------------------------------------


def test_folder_is_created_once_and_cached_so_later_records_skip_folder_requests(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    for n in range(3):
        mailbox.write(ALICE, rendered(record_id=f"wamid.{n}"))

    assert graph.request_counts(ALICE) == {"folder_find": 1, "folder_create": 1, "item_lookup": 3, "item_create": 3}
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


# -- concurrency and races ------------------------------------------------------------------------


def test_concurrent_writes_to_one_mailbox_share_one_folder_and_stay_within_four_requests() -> None:
    with LocalGraph({ALICE: True}, latency_seconds=0.05) as slow:
        writer = GraphMailbox(build_graph_client(base_url=slow.base_url, access_token=TOKEN))
        try:
            with ThreadPoolExecutor(10) as pool:
                list(pool.map(lambda n: writer.write(ALICE, rendered(record_id=f"wamid.c{n}")), range(10)))
        finally:
            writer.close()

        assert len(slow.messages(ALICE)) == 10
        assert slow.request_counts(ALICE)["folder_create"] == 1
        assert 1 < slow.max_concurrency(ALICE) <= 4
        assert slow.throttled_counts(ALICE) == {}


def test_two_clients_in_one_process_share_the_four_request_gate_per_mailbox() -> None:
    with LocalGraph({ALICE: True}, latency_seconds=0.03) as slow:
        writers = [GraphMailbox(build_graph_client(base_url=slow.base_url, access_token=TOKEN)) for _ in range(2)]
        try:
            with ThreadPoolExecutor(12) as pool:
                list(pool.map(
                    lambda n: writers[n % 2].write(ALICE, rendered(record_id=f"wamid.g{n}")), range(16)
                ))
        finally:
            for writer in writers:
                writer.close()

        assert len(slow.messages(ALICE)) == 16
        assert slow.max_concurrency(ALICE) <= 4
        assert slow.throttled_counts(ALICE) == {}  # LocalGraph would have answered a 5th with 429


def test_one_record_raced_by_two_threads_on_one_writer_is_created_once(client: Any) -> None:
    with LocalGraph({ALICE: True}, latency_seconds=0.05) as slow:
        with GraphMailbox(build_graph_client(base_url=slow.base_url, access_token=TOKEN)) as writer:
            with ThreadPoolExecutor(2) as pool:
                outcomes = list(pool.map(lambda _: writer.write(ALICE, rendered()), range(2)))

        assert sorted(outcomes) == [WriteOutcome.IMPORTED, WriteOutcome.SKIPPED_DUPLICATE]
        assert len(slow.messages(ALICE)) == 1


def test_one_record_raced_by_two_workers_can_be_created_twice_without_the_service_lease(graph: LocalGraph) -> None:
    """Documents the limit of the writer's own guarantee. Two workers (two clients, as two
    processes would have) both look the record up before either creates it: both find nothing and
    both create. Only a lease across workers (the service layer's idempotency lease) prevents that;
    the writer guarantees that once an item exists, every checked write finds it."""
    workers = [GraphMailbox(build_graph_client(base_url=graph.base_url, access_token=TOKEN)) for _ in range(2)]
    try:
        for worker in workers:
            warm(worker, graph)
        graph.hold_until("item_lookup", parties=2)  # both lookups run before either create
        with ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(lambda w: w.write(ALICE, rendered(record_id="wamid.race")), workers))

        assert outcomes == [WriteOutcome.IMPORTED, WriteOutcome.IMPORTED]
        assert graph.request_counts(ALICE) == {"item_lookup": 2, "item_create": 2}
        assert workers[0].write(ALICE, rendered(record_id="wamid.race")) == WriteOutcome.SKIPPED_DUPLICATE
    finally:
        for worker in workers:
            worker.close()
    racing = [m for m in graph.messages(ALICE) if extended_property(m, id_property_id()) == "wamid.race"]
    assert len(racing) == 2


def test_mailbox_gate_hands_slots_across_event_loops_and_never_exceeds_its_limit() -> None:
    gate = MailboxGate(limit=2)
    inside = 0
    most = 0
    counter_lock = threading.Lock()

    async def request(n: int) -> None:
        nonlocal inside, most
        async with gate.slot("Alice@Contoso.example" if n % 2 else "alice@contoso.example"):
            with counter_lock:
                inside += 1
                most = max(most, inside)
            await asyncio.sleep(0.01)
            with counter_lock:
                inside -= 1

    async def cancelled_waiter() -> None:
        task = asyncio.ensure_future(request(99))
        await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    def run_loop(offset: int) -> None:
        async def main() -> None:
            await asyncio.gather(*(request(offset + n) for n in range(10)), cancelled_waiter())

        asyncio.run(main())

    threads = [threading.Thread(target=run_loop, args=(k * 100,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert most == 2 and gate.peak(ALICE) == 2
    assert gate.in_flight(ALICE) == 0  # every slot, the cancelled waiters' included, came back


# -- throttling ---------------------------------------------------------------------------------


def test_429_with_long_retry_after_raises_transient_error_at_once(graph: LocalGraph, mailbox: GraphMailbox) -> None:
    warm(mailbox, graph)
    graph.fail_next(429, retry_after=120, path_contains="/messages")

    started = time.monotonic()
    with pytest.raises(TransientError) as raised:
        mailbox.write(ALICE, rendered())

    assert raised.value.retry_after == 120
    assert time.monotonic() - started < 5  # no sleeping through the Retry-After inside the write
    assert graph.request_counts(ALICE) == {"item_lookup": 1}  # not retried by the client
    assert len(graph.messages(ALICE)) == 1  # the warm-up record only


def test_short_throttling_is_retried_inside_the_client_honouring_retry_after(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    graph.fail_next(503, path_contains="/childFolders", method="GET")
    graph.fail_next(429, retry_after=0.2, path_contains="/messages", method="POST")

    started = time.monotonic()
    assert mailbox.write(ALICE, rendered()) == WriteOutcome.IMPORTED

    assert time.monotonic() - started >= 0.2
    counts = graph.request_counts(ALICE)
    assert counts["folder_find"] == 2 and counts["item_create"] == 2  # a throttled POST was not executed
    assert len(graph.messages(ALICE)) == 1


def test_503_on_create_is_not_resent_and_the_next_attempt_imports_exactly_once(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    graph.fail_next(503, path_contains="/messages", method="POST")

    with pytest.raises(TransientError):
        mailbox.write(ALICE, rendered(), check_existing=False)
    assert graph.request_counts(ALICE)["item_create"] == 1

    assert mailbox.write(ALICE, rendered()) == WriteOutcome.IMPORTED
    assert len(graph.messages(ALICE)) == 1


def test_504_after_the_create_went_through_is_found_by_the_checked_retry_not_duplicated(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    graph.fail_next(504, path_contains="/messages", method="POST", after_execution=True)

    with pytest.raises(TransientError):
        mailbox.write(ALICE, rendered(), check_existing=False)
    assert len(graph.messages(ALICE)) == 1  # Graph did create it

    assert mailbox.write(ALICE, rendered(), check_existing=True) == WriteOutcome.SKIPPED_DUPLICATE
    assert len(graph.messages(ALICE)) == 1


def test_throttling_storm_ends_with_every_record_written_exactly_once(tmp_path: Path) -> None:
    """Two workers (own clients and gates, as two processes) against one mailbox with a rate
    limit and the 4-request concurrency limit, plus injected 429/503/504 bursts (one 503 after the
    item was created). Each worker retries a TransientError after its retry_after, the first
    attempt unchecked and later ones checked, as the service layer does."""
    video = blob(4 * MIB, seed=21)
    items = [
        rendered(record_id=f"wamid.storm-{n}", attachments=(attached("v.mp4", video),) if n % 6 == 0 else ())
        for n in range(18)
    ]
    # 20 ms per request keeps requests in flight long enough for two workers' 2 x 4 slots to overrun
    # the mailbox's 4, and 12 requests per 0.5 s is below what they ask for, even on a busy machine.
    # Retry-After is the exact wait (fractions of a second) to keep the test short.
    with LocalGraph(
        {ALICE: True}, latency_seconds=0.02, rate_limit=(12, 0.5), fractional_retry_after=True
    ) as server:
        server.fail_next(429, times=4, retry_after=0.02)
        server.fail_next(503, times=2, path_contains="/messages", method="POST", after_execution=True)
        server.fail_next(504, times=2, path_contains="/messages", method="GET")
        server.fail_next(503, times=1, path_contains="/upload/")
        workers = [
            GraphMailbox(
                # Waits above 50 ms come back as TransientError(retry_after) for the loop below;
                # upload chunks wait out short throttling themselves (up to 5 s, as in production).
                build_graph_client(base_url=server.base_url, access_token=TOKEN, retry_max_wait_seconds=0.05),
                gate=MailboxGate(4),
            )
            for _ in range(2)
        ]
        deadline = time.monotonic() + 60
        attempts: list[int] = []

        def archive(n: int) -> WriteOutcome:
            writer, item = workers[n % 2], items[n]
            attempt = 0
            while True:
                try:
                    outcome = writer.write(ALICE, item, check_existing=attempt > 0)
                    attempts.append(attempt + 1)
                    return outcome
                except TransientError as error:
                    attempt += 1
                    assert time.monotonic() < deadline, "the storm never cleared"
                    time.sleep(min(error.retry_after or 0.05, 1.0))

        try:
            with ThreadPoolExecutor(6) as pool:
                outcomes = list(pool.map(archive, range(len(items))))
        finally:
            for worker in workers:
                worker.close()

        stored = server.messages(ALICE)
        throttled = server.throttled_counts(ALICE)
    ids = sorted(extended_property(m, id_property_id()) or "" for m in stored)
    assert ids == sorted(item.record_id for item in items)  # every record, exactly once
    for message in stored:
        expected = [sha(video)] if int(extended_property(message, id_property_id()).rsplit("-", 1)[1]) % 6 == 0 else []
        assert [a["sha256"] for a in message["attachments"]] == expected
    assert set(outcomes) <= {WriteOutcome.IMPORTED, WriteOutcome.SKIPPED_DUPLICATE}
    assert throttled.get("rate", 0) + throttled.get("concurrency", 0) > 0  # the limits did bite
    assert max(attempts) > 1


# -- errors -------------------------------------------------------------------------------------


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


def test_item_too_big_for_one_request_without_attachments_is_refused_before_any_request(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    with pytest.raises(PermanentError) as raised:
        mailbox.write(ALICE, rendered(html_body="<p>" + "x" * (4 * MIB) + "</p>"))

    assert raised.value.reason == PoisonReason.TOO_BIG
    assert graph.total_requests(ALICE) == 0


def test_413_from_graph_on_create_is_permanent_too_big(graph: LocalGraph, mailbox: GraphMailbox) -> None:
    graph.fail_next(413, path_contains="/messages", method="POST", code="ErrorRequestEntityTooLarge")

    with pytest.raises(PermanentError) as raised:
        mailbox.write(ALICE, rendered())

    assert raised.value.reason == PoisonReason.TOO_BIG


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


def test_mailbox_outside_the_apps_rbac_scope_is_not_mapped_and_a_refused_write_comes_back_much_later(
    graph: LocalGraph, mailbox: GraphMailbox, directory: GraphDirectory
) -> None:
    # Writing: the scope changed under a mapped mailbox. Not a configuration error, not a drop:
    # the record comes back after a long wait (scope changes take time to apply).
    with pytest.raises(TransientError) as raised:
        mailbox.write(OUTSIDER, rendered())

    assert "ErrorAccessDenied" in str(raised.value) and raised.value.retry_after >= 600
    assert mailbox.write(ALICE, rendered()) == WriteOutcome.IMPORTED  # other mailboxes carry on
    assert directory.has_mailbox(OUTSIDER) is False
    assert directory.has_mailbox(ALICE) is True


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
            attached("photo.jpg", photo, "image/jpeg"),
            RenderedAttachment("lost.mp4", "video/mp4", 10_000_000, None, None),
            attached("voice.ogg", voice, "audio/ogg"),
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


def test_attachment_under_3mb_goes_inline_and_one_of_3mb_goes_through_an_upload_session(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    warm(mailbox, graph)
    under, at = blob(2_900_000, seed=3), blob(3_000_000, seed=4)

    mailbox.write(ALICE, rendered(record_id="wamid.under", attachments=(attached("under.bin", under),)))
    assert graph.request_counts(ALICE) == {"item_lookup": 1, "item_create": 1}
    graph.reset_counts()
    mailbox.write(ALICE, rendered(record_id="wamid.at", attachments=(attached("at.bin", at),)))
    assert graph.request_counts(ALICE) == {
        "item_lookup": 1, "item_create": 1, "upload_session_create": 1, "upload_chunk": 1
    }

    vias = {a["name"]: (a["via"], a["sha256"]) for m in graph.messages(ALICE) for a in m["attachments"]}
    assert vias == {"under.bin": ("inline", sha(under)), "at.bin": ("upload_session", sha(at))}


def test_attachment_that_would_push_the_create_over_4mb_is_posted_after_it(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    first, second = blob(2_000_000, seed=3), blob(2_000_000, seed=4)
    item = rendered(attachments=(attached("a.pdf", first), attached("b.pdf", second)))

    mailbox.write(ALICE, item)

    [stored] = graph.messages(ALICE)
    assert sorted((a["name"], a["via"]) for a in stored["attachments"]) == [
        ("a.pdf", "inline"),
        ("b.pdf", "attachment_post"),
    ]
    assert {a["name"]: a["content"] for a in stored["attachments"]} == {"a.pdf": first, "b.pdf": second}


def test_5mb_attachment_goes_through_an_upload_session_in_ordered_chunks_without_authorization(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    video = blob(5 * MIB, seed=5)

    outcome = mailbox.write(ALICE, rendered(attachments=(attached("clip.mp4", video, "video/mp4"),)))

    assert outcome == WriteOutcome.IMPORTED

    [stored] = graph.messages(ALICE)
    [attachment] = stored["attachments"]
    assert attachment["via"] == "upload_session"
    assert attachment["content"] == video
    assert attachment["chunks"] == [UPLOAD_CHUNK_BYTES, len(video) - UPLOAD_CHUNK_BYTES]
    assert stored["isDraft"] is False and stored["uploadSessionsWhileNonDraft"] == 1
    chunk_requests = [r for r in graph.request_log if r["operation"] == "upload_chunk"]
    assert len(chunk_requests) == 2 and not any(r["authorization"] for r in chunk_requests)


def test_30mb_file_backed_attachment_streams_with_peak_memory_far_below_its_size(
    graph: LocalGraph, mailbox: GraphMailbox, tmp_path: Path
) -> None:
    """A memory test, not a timing test: Python allocations (the writer, httpx and LocalGraph all
    run in this process) are traced while 30 MiB go from a file into the mailbox."""
    payload, digest = file_payload(tmp_path / "video.mp4", 30 * MIB)
    item = rendered(attachments=(RenderedAttachment("video.mp4", "video/mp4", payload.size, None, payload),))
    # Warm up: folder cached, connections open, the upload-session code paths imported.
    mailbox.write(ALICE, rendered(record_id="wamid.warm", attachments=(attached("w.bin", blob(3_100_000)),)))

    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        outcome = mailbox.write(ALICE, item, check_existing=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert outcome == WriteOutcome.IMPORTED
    assert peak - baseline < 12 * MIB, f"peak {(peak - baseline) / MIB:.1f} MiB above baseline"
    [stored] = [m for m in graph.messages(ALICE) if m["attachments"][0]["name"] == "video.mp4"]
    [attachment] = stored["attachments"]
    assert (attachment["size"], attachment["sha256"]) == (30 * MIB, digest)
    assert attachment["chunks"] == [UPLOAD_CHUNK_BYTES] * 9 + [30 * MIB - 9 * UPLOAD_CHUNK_BYTES]


def test_payload_shorter_than_its_size_is_corrupt_and_leaves_no_item(
    graph: LocalGraph, mailbox: GraphMailbox, tmp_path: Path
) -> None:
    payload, _ = file_payload(tmp_path / "short.bin", 4 * MIB)
    lying = RenderedAttachment("short.bin", "video/mp4", 5 * MIB, None, FilePayload(payload.path, 5 * MIB))

    with pytest.raises(PermanentError) as raised:
        mailbox.write(ALICE, rendered(attachments=(lying,)))

    assert raised.value.reason == PoisonReason.ATTACHMENT_CORRUPT
    assert graph.messages(ALICE) == []


def test_graphs_session_minimum_above_ours_falls_back_to_posting_the_attachment_alone() -> None:
    data = blob(3_050_000, seed=9)  # refused as "too small" by a 3 MiB minimum, fits one request
    with LocalGraph({ALICE: True}, upload_session_min_bytes=3 * MIB) as server:
        with GraphMailbox(build_graph_client(base_url=server.base_url, access_token=TOKEN)) as writer:
            assert writer.write(ALICE, rendered(attachments=(attached("odd.bin", data),))) == WriteOutcome.IMPORTED

        [stored] = server.messages(ALICE)
        assert [(a["via"], a["sha256"]) for a in stored["attachments"]] == [("attachment_post", sha(data))]
        assert server.request_counts(ALICE)["upload_session_create"] == 1


def test_upload_session_refused_on_a_non_draft_removes_the_item_and_poisons_as_too_big() -> None:
    """The fallback for the undocumented case (see docs/graph.md, "Large attachments")."""
    video = blob(4 * MIB, seed=10)
    with LocalGraph({ALICE: True}, refuse_upload_sessions_on_non_drafts=True) as server:
        with GraphMailbox(build_graph_client(base_url=server.base_url, access_token=TOKEN)) as writer:
            with pytest.raises(PermanentError) as raised:
                writer.write(ALICE, rendered(attachments=(attached("v.mp4", video),)))
            assert raised.value.reason == PoisonReason.TOO_BIG
            assert "upload session refused" in raised.value.detail
            assert server.messages(ALICE) == []  # no incomplete item left behind

            server.reset_counts()
            with pytest.raises(PermanentError):  # later large records: refused up front
                writer.write(ALICE, rendered(record_id="wamid.next", attachments=(attached("v.mp4", video),)))
            assert server.total_requests(ALICE) == 0
            assert writer.write(ALICE, rendered(record_id="wamid.text")) == WriteOutcome.IMPORTED


def test_upload_sessions_disabled_refuses_large_attachments_before_any_request(graph: LocalGraph, client: Any) -> None:
    strategy = UploadSessionAttachments(upload_sessions=False)
    with GraphMailbox(client, attachments=strategy) as writer:
        with pytest.raises(PermanentError) as raised:
            writer.write(ALICE, rendered(attachments=(attached("v.mp4", blob(3_500_000)),)))
        assert writer.write(ALICE, rendered(record_id="wamid.small", attachments=(attached("s", b"abc"),))) == (
            WriteOutcome.IMPORTED
        )

    assert raised.value.reason == PoisonReason.TOO_BIG
    assert [m["attachments"][0]["name"] for m in graph.messages(ALICE)] == ["s"]


def test_failed_upload_removes_the_incomplete_item_so_the_retry_imports_it_whole(
    graph: LocalGraph, client: Any
) -> None:
    video = blob(4 * MIB, seed=6)
    item = rendered(attachments=(attached("clip.mp4", video, "video/mp4"),))
    with GraphMailbox(client, attachments=UploadSessionAttachments(chunk_retries=0)) as writer:
        graph.fail_next(500, path_contains="/upload/")
        with pytest.raises(TransientError):
            writer.write(ALICE, item, check_existing=False)
        assert graph.messages(ALICE) == []

        assert writer.write(ALICE, item) == WriteOutcome.IMPORTED

    [stored] = graph.messages(ALICE)
    assert [a["content"] for a in stored["attachments"]] == [video]


def test_briefly_throttled_upload_chunk_is_put_again_and_arrives_once(graph: LocalGraph, mailbox: GraphMailbox) -> None:
    video = blob(4 * MIB, seed=12)
    graph.fail_next(429, retry_after=0.05, path_contains="/upload/")

    assert mailbox.write(ALICE, rendered(attachments=(attached("v.mp4", video),))) == WriteOutcome.IMPORTED

    [stored] = graph.messages(ALICE)
    assert [a["sha256"] for a in stored["attachments"]] == [sha(video)]
    assert graph.request_counts(ALICE)["upload_chunk"] == 3  # 2 chunks, one of them twice


def test_interrupted_import_left_behind_is_completed_by_the_checked_retry(graph: LocalGraph, client: Any) -> None:
    video = blob(4 * MIB, seed=8)
    item = rendered(attachments=(attached("clip.mp4", video, "video/mp4"),))
    with GraphMailbox(client, attachments=UploadSessionAttachments(chunk_retries=0)) as writer:
        graph.fail_next(500, path_contains="/upload/")
        graph.fail_next(500, path_contains="/permanentDelete")
        with pytest.raises(TransientError):
            writer.write(ALICE, item, check_existing=False)
        assert [m["attachments"] for m in graph.messages(ALICE)] == [[]]

        assert writer.write(ALICE, item, check_existing=True) == WriteOutcome.IMPORTED
        assert writer.write(ALICE, item) == WriteOutcome.SKIPPED_DUPLICATE

    [stored] = graph.messages(ALICE)
    assert [a["content"] for a in stored["attachments"]] == [video]


def test_only_x_headers_reach_graph_and_at_most_five(graph: LocalGraph, mailbox: GraphMailbox) -> None:
    headers = (("Thread-Topic", "chat"),) + tuple((f"X-Extra-{n}", str(n)) for n in range(7))

    mailbox.write(ALICE, rendered(extra_headers=headers))

    [stored] = graph.messages(ALICE)
    assert [h["name"] for h in stored["internetMessageHeaders"]] == [f"X-Extra-{n}" for n in range(5)]


def rendered_record(message_id: str, **fields: Any) -> RenderedItem:
    """A record rendered by the real renderer: the same item the .eml writer serialises."""
    return render(ArchiveRecord.model_validate(builders.record(message_id, **fields)), {})


def eml_thread_index(item: RenderedItem) -> bytes:
    return base64.b64decode(item.to_mime()["Thread-Index"])


def test_item_carries_the_chats_conversation_topic_and_the_emls_thread_index_in_the_create(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    warm(mailbox, graph)
    item = rendered_record("c1", dialogGroupId="g-1", groupMessage=True, dialogGroupName="Deal team")

    assert mailbox.write(ALICE, item, check_existing=False) == WriteOutcome.IMPORTED

    assert graph.total_requests(ALICE) == 1  # the properties travel in the create itself
    stored = next(m for m in graph.messages(ALICE) if extended_property(m, id_property_id()) == "c1")
    assert item.conversation_topic == "WhatsApp: Deal team (group)"
    assert extended_property(stored, PROP_CONVERSATION_TOPIC) == item.conversation_topic
    index = binary_property(stored, PROP_CONVERSATION_INDEX)
    assert index == eml_thread_index(item)
    assert len(index) == 22 and index[0] == 0x01
    assert extended_property(stored, PROP_CONVERSATION_INDEX_TRACKING) == "true"
    # References / In-Reply-To / Thread-Index are not x- headers: Graph would refuse them.
    assert all(h["name"].lower().startswith("x-") for h in stored["internetMessageHeaders"])


def test_items_of_one_chat_share_the_conversation_guid_and_other_chats_do_not(
    graph: LocalGraph, mailbox: GraphMailbox
) -> None:
    items = [
        rendered_record("g1-a", dialogGroupId="g-1", groupMessage=True),
        rendered_record("g1-b", dialogGroupId="g-1", groupMessage=True, replyToMessageId="g1-a",
                        messageTime=builders.BASE_TIME + 3_600_000),
        rendered_record("g2-a", dialogGroupId="g-2", groupMessage=True),
        rendered_record("d-out", sender=builders.ALICE, recipients=[builders.CUSTOMER]),
        rendered_record("d-back", sender=builders.CUSTOMER, recipients=[builders.ALICE]),
    ]
    for item in items:
        mailbox.write(ALICE, item, check_existing=False)

    stored = {extended_property(m, id_property_id()): m for m in graph.messages(ALICE)}
    index = {key: binary_property(message, PROP_CONVERSATION_INDEX) for key, message in stored.items()}
    guid = {key: value[6:22] for key, value in index.items()}
    assert index == {i.record_id: eml_thread_index(i) for i in items}
    assert guid["g1-a"] == guid["g1-b"]
    assert guid["d-out"] == guid["d-back"]  # a 1:1 chat, whichever way the message goes
    assert len({guid["g1-a"], guid["g2-a"], guid["d-out"]}) == 3
    assert index["g1-a"][1:6] != index["g1-b"][1:6]  # the FILETIME part orders them in the chat


def test_item_without_a_usable_thread_index_carries_the_topic_only(graph: LocalGraph, mailbox: GraphMailbox) -> None:
    mailbox.write(ALICE, rendered("no-index", conversation_topic="WhatsApp: Bob"))
    bad = (("Thread-Index", "not base64!"),)
    mailbox.write(ALICE, rendered("bad-index", conversation_topic="WhatsApp: Bob", extra_headers=bad))
    short = (("Thread-Index", base64.b64encode(b"\x01" * 10).decode()),)
    mailbox.write(ALICE, rendered("short-index", extra_headers=short))

    for message in graph.messages(ALICE):
        assert extended_property(message, PROP_CONVERSATION_INDEX) is None
        assert extended_property(message, PROP_CONVERSATION_INDEX_TRACKING) is None
    topics = {extended_property(m, id_property_id()): extended_property(m, PROP_CONVERSATION_TOPIC)
              for m in graph.messages(ALICE)}
    assert topics == {"no-index": "WhatsApp: Bob", "bad-index": "WhatsApp: Bob", "short-index": None}


# -- directory ----------------------------------------------------------------------------------


def test_directory_says_true_for_a_user_with_a_mailbox_and_caches_it(
    graph: LocalGraph, directory: GraphDirectory
) -> None:
    assert directory.has_mailbox(ALICE) is True
    assert directory.has_mailbox(ALICE.upper()) is True

    assert graph.request_counts(ALICE) == {"user_get": 1, "mailbox_probe": 1}


def test_directory_looks_a_new_mailbox_up_once_when_many_workers_meet_it_at_once(
    graph: LocalGraph, directory: GraphDirectory
) -> None:
    import concurrent.futures

    graph.latency_seconds = 0.05  # long enough for every thread to arrive while the lookup runs
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: directory.mailbox_identity(ALICE), range(16)))

    assert answers == [ALICE.lower()] * 16
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


def test_a_users_mail_address_and_sign_in_name_map_to_one_mailbox_identity() -> None:
    from shared.domain.records import ArchiveRecord
    from shared.service.mapping import MailboxMapper
    from tests.builders import record
    from tests.fakes import StaticMapping

    upn = "a.smith@contoso.onmicrosoft.example"
    with LocalGraph({upn: True}, mail_aliases={ALICE: upn}) as server:
        with GraphDirectory(build_graph_client(base_url=server.base_url, access_token=TOKEN)) as lookup:
            assert lookup.mailbox_identity(ALICE) == lookup.mailbox_identity(upn.upper()) == upn
            # The CSV names her by sign-in name, her participant record by mail address: one mailbox.
            csv = f"PhoneNumber,EmailAddress\n+447700900001,{upn}\n"
            rec = record(sender={"phone": "+447700900001", "email": ALICE},
                         recipients=[{"phone": "+447700900002", "email": ALICE}])
            mapped = MailboxMapper(lookup, StaticMapping(csv)).map_record(ArchiveRecord.model_validate(rec))
            assert [m.address for m in mapped] == [upn]


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
    with pytest.raises(ConfigurationError):
        build_graph_client(base_url="http://graph.example/v1.0", access_token=TOKEN)


class RecordingCredential:
    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(TOKEN, int(time.time()) + 3600)


@pytest.mark.parametrize(
    ("cloud", "host", "authority"),
    [
        ("global", "https://graph.microsoft.com", "login.microsoftonline.com"),
        ("gcc-high", "https://graph.microsoft.us", "login.microsoftonline.us"),
        ("dod", "https://dod-graph.microsoft.us", "login.microsoftonline.us"),
        ("china", "https://microsoftgraph.chinacloudapi.cn", "login.chinacloudapi.cn"),
    ],
)
def test_a_national_cloud_setting_changes_graph_host_token_scope_and_sign_in_authority_together(
    cloud: str, host: str, authority: str, graph: LocalGraph
) -> None:
    target = resolve_cloud(cloud)
    assert (target.base_url, target.scope, target.authority_host) == (f"{host}/v1.0", f"{host}/.default", authority)

    app = {"tenant_id": "tenant", "client_id": "app", "client_secret": "not-a-real-secret"}
    client = build_graph_client(cloud=cloud, **app)
    assert client.request_adapter.base_url == f"{host}/v1.0"
    info = graph_client_info(client)
    assert (info.base_url, info.scope, info.authority_host, info.credential_kind) == (
        f"{host}/v1.0", f"{host}/.default", authority, "client_secret"
    )
    _, credential = azure_credential(target, **app)
    assert credential._authority == f"https://{authority}"

    # The scope really requested for a call, end to end (the host replaced by LocalGraph).
    recorder = RecordingCredential()
    with GraphMailbox(build_graph_client(cloud=cloud, base_url=graph.base_url, credential=recorder)) as writer:
        writer.write(ALICE, rendered())
    assert set(recorder.scopes) == {(f"{host}/.default",)}


def _certificate() -> tuple[bytes, bytes]:
    """A throw-away self-signed certificate with its key: (PEM of key + certificate, PFX bytes)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # Entra signs with RS256
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whatsapp-archiver-test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + cert.public_bytes(serialization.Encoding.PEM)
    pfx = pkcs12.serialize_key_and_certificates(b"test", key, cert, None, serialization.NoEncryption())
    return pem, pfx


def test_app_registration_certificate_from_a_path_pem_text_or_key_vault_base64_pfx(tmp_path: Path) -> None:
    pem, pfx = _certificate()
    path = tmp_path / "app.pem"
    path.write_bytes(pem)
    target = resolve_cloud("usgov")
    app = {"tenant_id": "tenant", "client_id": "app"}

    for given in (
        {"certificate_path": str(path)},
        {"certificate_data": pem.decode()},  # PEM text, as a Key Vault reference to a PEM cert gives
        {"certificate_data": pem.decode().replace("\n", "\\n")},  # PEM pasted on one line
        {"certificate_data": base64.b64encode(pfx).decode()},  # Key Vault's base64 PFX
        {"certificate_data": pfx},  # the PFX file's bytes
    ):
        kind, credential = azure_credential(target, **app, **given)
        assert kind == "certificate", given
        assert credential._authority == "https://login.microsoftonline.us"
    assert build_graph_client(cloud="usgov", **app, certificate_data=base64.b64encode(pfx).decode()) is not None

    with pytest.raises(ConfigurationError):
        certificate_bytes("not a certificate at all!")
    with pytest.raises(ConfigurationError) as raised:
        azure_credential(target, **app, certificate_data=base64.b64encode(b"garbage").decode())
    assert "garbage" not in str(raised.value)
    with pytest.raises(ConfigurationError):
        azure_credential(target, client_id="app", certificate_path=str(path))  # no tenant
    with pytest.raises(ConfigurationError):
        azure_credential(target, **app, certificate_path=str(path), certificate_data=pem)


def test_managed_identity_system_or_user_assigned_and_never_mixed_with_an_app_registration() -> None:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    target = resolve_cloud("global")
    assert isinstance(azure_credential(target, managed_identity=True)[1], ManagedIdentityCredential)
    kind, user_assigned = azure_credential(target, managed_identity_client_id="00000000-0000-0000-0000-000000000001")
    assert kind == "managed_identity" and isinstance(user_assigned, ManagedIdentityCredential)
    assert isinstance(azure_credential(target)[1], DefaultAzureCredential)
    with pytest.raises(ConfigurationError):
        azure_credential(target, managed_identity=True, tenant_id="t", client_id="c", client_secret="s")
    with pytest.raises(ConfigurationError):
        azure_credential(target, tenant_id="t", client_id="c")  # neither secret nor certificate
    assert graph_client_info(build_graph_client(managed_identity=True)).credential_kind == "managed_identity"


def test_importing_the_graph_adapters_does_not_import_the_sdk() -> None:
    code = (
        "import sys\n"
        "import shared.adapters.graph_client, shared.adapters.graph_directory\n"
        "import shared.adapters.graph_mailbox, shared.adapters.graph_item_reader\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('msgraph', 'azure', 'kiota_http')], "
        "sorted(m for m in sys.modules if m.startswith(('msgraph', 'azure', 'kiota')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, env=env)


# -- LocalGraph itself: it must behave as the documentation says -------------------------------


@pytest.fixture
def http(graph: LocalGraph) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=graph.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as session:
        yield session


def _archive_folder(http: httpx.Client) -> str:
    response = http.post(f"/users/{ALICE}/mailFolders/msgfolderroot/childFolders", json={"displayName": "F"})
    return response.json()["id"]


def _message_json(**extra: Any) -> dict[str, Any]:
    return {
        "subject": "s",
        "singleValueExtendedProperties": [{"id": "Integer 0x0E07", "value": "1"}],
        **extra,
    }


def test_local_graph_refuses_create_requests_over_4mb_with_413(http: httpx.Client) -> None:
    folder = _archive_folder(http)
    big = base64.b64encode(blob(3_200_000)).decode()
    attachment = {"@odata.type": "#microsoft.graph.fileAttachment", "name": "a", "contentBytes": big}

    response = http.post(f"/users/{ALICE}/mailFolders/{folder}/messages", json=_message_json(attachments=[attachment]))

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "ErrorRequestEntityTooLarge"


def test_local_graph_refuses_malformed_extended_property_values_and_stores_binary_ones(
    graph: LocalGraph, http: httpx.Client
) -> None:
    folder = _archive_folder(http)
    url = f"/users/{ALICE}/mailFolders/{folder}/messages"
    flags = {"id": "Integer 0x0E07", "value": "1"}
    for prop in ({"id": "Binary 0x0071", "value": "not base64!"}, {"id": "Boolean 0x3016", "value": "yes"}):
        response = http.post(url, json=_message_json(singleValueExtendedProperties=[flags, prop]))
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "ErrorInvalidPropertyValue"

    index = b"\x01" + bytes(range(21))
    binary = {"id": "Binary 0x0071", "value": base64.b64encode(index).decode()}
    assert http.post(url, json=_message_json(singleValueExtendedProperties=[flags, binary])).status_code == 201
    [stored] = graph.messages(ALICE)
    assert binary_property(stored, "binary 0x0071") == index


def test_local_graph_upload_sessions_refuse_small_files_and_check_order_range_and_authorization(
    graph: LocalGraph, http: httpx.Client
) -> None:
    folder = _archive_folder(http)
    message = http.post(f"/users/{ALICE}/mailFolders/{folder}/messages", json=_message_json()).json()
    sessions = f"/users/{ALICE}/messages/{message['id']}/attachments/createUploadSession"

    small = http.post(sessions, json={"AttachmentItem": {"attachmentType": "file", "name": "s", "size": 2_999_999}})
    assert small.status_code == 400
    assert small.json()["error"]["code"] == "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"

    data = blob(3_500_000)
    url = http.post(
        sessions, json={"AttachmentItem": {"attachmentType": "file", "name": "big", "size": len(data)}}
    ).json()["uploadUrl"]
    with httpx.Client(timeout=10) as upload:
        first, rest = data[:2_000_000], data[2_000_000:]
        assert upload.put(url, content=rest, headers={"Content-Range": f"bytes 2000000-3499999/{len(data)}"}) \
            .status_code == 416  # out of order
        assert upload.put(url, content=first, headers={"Content-Range": "bytes 0-1999999/9"}).status_code == 416
        assert upload.put(url, content=first).status_code == 400  # no Content-Range
        assert upload.put(
            url, content=first, headers={"Content-Range": "bytes 0-1999999/3500000", "Authorization": "Bearer x"}
        ).status_code == 401
        assert upload.put(url, content=first, headers={"Content-Range": "bytes 0-1999999/3500000"}).status_code == 200
        done = upload.put(url, content=rest, headers={"Content-Range": "bytes 2000000-3499999/3500000"})
        assert done.status_code == 201 and "Location" in done.headers

    [stored] = graph.messages(ALICE)
    assert [(a["size"], a["sha256"], a["chunks"]) for a in stored["attachments"]] == [
        (len(data), sha(data), [2_000_000, 1_500_000])
    ]
    assert graph.request_counts(ALICE)["upload_chunk"] == 6  # every PUT counted for the mailbox


def test_local_graph_throttles_a_fifth_concurrent_request_of_one_mailbox() -> None:
    with LocalGraph({ALICE: True}, latency_seconds=0.3) as server:
        def probe(_: int) -> httpx.Response:
            with httpx.Client(timeout=10, headers={"Authorization": "Bearer t"}) as session:
                return session.get(f"{server.base_url}/users/{ALICE}/mailFolders/inbox")

        started = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(probe, range(6)))
        elapsed = time.monotonic() - started

        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 200, 200, 200, 429, 429]
        throttled = [r for r in responses if r.status_code == 429]
        assert all(r.headers["Retry-After"] == "1" for r in throttled)
        assert all(r.json()["error"]["code"] == "ApplicationThrottled" for r in throttled)
        assert server.max_concurrency(ALICE) == 4 and server.throttled_counts(ALICE) == {"concurrency": 2}
        assert elapsed >= 0.3  # the latency setting applies


def test_local_graph_throttles_a_mailbox_above_its_request_rate_until_the_window_moves() -> None:
    with LocalGraph({ALICE: True, NOBOX: True}, rate_limit=(3, 0.4)) as server:
        with httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer t"}, timeout=10) as session:
            statuses = [session.get(f"/users/{ALICE}/mailFolders/inbox").status_code for _ in range(4)]
            other = session.get(f"/users/{NOBOX}/mailFolders/inbox").status_code  # its own budget
            throttled = session.get(f"/users/{ALICE}/mailFolders/inbox")
            time.sleep(0.45)
            after = session.get(f"/users/{ALICE}/mailFolders/inbox").status_code

    assert statuses == [200, 200, 200, 429] and other == 200 and after == 200
    assert throttled.status_code == 429 and float(throttled.headers["Retry-After"]) >= 1


def test_local_graph_refuses_a_duplicate_folder_and_mail_calls_for_users_without_a_usable_mailbox(
    http: httpx.Client,
) -> None:
    children = f"/users/{ALICE}/mailFolders/msgfolderroot/childFolders"
    assert http.post(children, json={"displayName": "WhatsApp Archiver"}).status_code == 201
    duplicate = http.post(children, json={"displayName": "whatsapp archiver"})
    assert (duplicate.status_code, duplicate.json()["error"]["code"]) == (409, "ErrorFolderExists")

    nobox = http.get(f"/users/{NOBOX}/mailFolders/inbox")
    assert nobox.json()["error"]["code"] == "MailboxNotEnabledForRESTAPI"
    denied = http.get(f"/users/{OUTSIDER}/mailFolders/inbox")
    assert (denied.status_code, denied.json()["error"]["code"]) == (403, "ErrorAccessDenied")
    assert http.get(f"/users/{UNKNOWN}/mailFolders/inbox").json()["error"]["code"] == "ErrorInvalidUser"


def test_the_directory_cache_keeps_at_most_its_bound_dropping_the_least_recently_asked(
    graph: LocalGraph, client: Any,
) -> None:
    with GraphDirectory(client, max_entries=2) as lookup:
        lookup.has_mailbox(ALICE)
        lookup.has_mailbox(NOBOX)
        lookup.has_mailbox(ALICE)  # asked again: now the most recent
        lookup.has_mailbox(OUTSIDER)  # over the bound: NOBOX, least recently asked, is dropped
        lookup.has_mailbox(ALICE)
        lookup.has_mailbox(NOBOX)

    assert graph.request_counts(ALICE)["user_get"] == 1
    assert graph.request_counts(NOBOX)["user_get"] == 2
