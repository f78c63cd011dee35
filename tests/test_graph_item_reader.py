"""The Graph read-back for ``verify --online`` against LocalGraph: items the real writer archived, read
back as Exchange gives them (``/messages/{id}/$value``), digested as the writer's side digests them."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any

import httpx
import pytest

from shared.adapters.graph_client import build_graph_client
from shared.adapters.graph_item_reader import LOOKUP_PAGE_SIZE, GraphItemReader
from shared.adapters.graph_mailbox import GraphMailbox
from shared.domain.errors import MailboxUnavailable, TransientError
from shared.domain.item_digest import item_digest
from shared.domain.records import ArchiveRecord
from shared.domain.rendered import RenderedItem
from shared.domain.rendering import render
from shared.local.graph_stand_in.server import LocalGraph
from shared.ports import ReadBackItem
from tests.builders import attachment, record

pytestmark = [
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]

TOKEN = "local-test-token"
ALICE = "alice@contoso.example"
NOBOX = "nobox@contoso.example"
UNKNOWN = "ghost@contoso.example"
PHOTO = b"\xff\xd8\xff" + bytes(range(256)) * 40
CLIP = bytes(range(251)) * 14_000  # 3.5 MB: uploaded through an upload session


@pytest.fixture
def graph() -> Iterator[LocalGraph]:
    with LocalGraph({ALICE: True, NOBOX: False}, token=TOKEN) as server:
        yield server


@pytest.fixture
def client(graph: LocalGraph) -> Any:
    return build_graph_client(base_url=graph.base_url, access_token=TOKEN)


@pytest.fixture
def writer(client: Any) -> Iterator[GraphMailbox]:
    with GraphMailbox(client) as mailbox:
        yield mailbox


@pytest.fixture
def reader(client: Any, writer: GraphMailbox) -> Iterator[GraphItemReader]:
    with GraphItemReader(client, id_property=writer.id_property) as items:
        yield items


def item(message_id: str = "wamid.read-back-1", *, clip: bool = False) -> RenderedItem:
    media = [attachment("photo", PHOTO, inline=False)]
    payloads = {"photo": PHOTO}
    if clip:
        media.append(attachment("clip", CLIP, inline=False, fileName="clip.mp4", contentType="video/mp4"))
        payloads["clip"] = CLIP
    rec = ArchiveRecord.model_validate(record(
        message_id, textContent="Price agreed: £1,200 — مرحبا\nsecond line", attachments=media,
    ))
    return render(rec, payloads)


def find(reader: GraphItemReader, rendered: RenderedItem) -> list[ReadBackItem]:
    return reader.find(ALICE, rendered.record_key, rendered.record_id)


def test_an_archived_item_is_found_once_and_its_mime_digests_to_what_was_written(
    graph: LocalGraph, writer: GraphMailbox, reader: GraphItemReader
) -> None:
    written = item(clip=True)
    writer.write(ALICE, written)
    [stored] = graph.messages(ALICE)
    assert {a["via"] for a in stored["attachments"]} == {"inline", "upload_session"}

    assert find(reader, written) == [ReadBackItem(stored["id"], item_digest(written))]


def test_a_body_changed_in_the_mailbox_reads_back_with_another_digest(
    graph: LocalGraph, writer: GraphMailbox, reader: GraphItemReader
) -> None:
    written = item()
    writer.write(ALICE, written)
    [stored] = graph.messages(ALICE)

    graph.set_body(ALICE, stored["id"], stored["body"]["content"].replace("1,200", "1,800"))

    [found] = find(reader, written)
    assert found.location == stored["id"]
    assert found.digest is not None and found.digest != item_digest(written)


def test_a_deleted_item_reads_back_as_nothing(graph: LocalGraph, writer: GraphMailbox, reader: GraphItemReader) -> None:
    written = item()
    writer.write(ALICE, written)
    [stored] = graph.messages(ALICE)

    graph.delete_message(ALICE, stored["id"])

    assert find(reader, written) == []


def test_two_items_carrying_one_records_id_read_back_as_two_for_verify_to_report(
    graph: LocalGraph, writer: GraphMailbox, reader: GraphItemReader
) -> None:
    written = item()
    writer.write(ALICE, written, check_existing=False)
    writer.write(ALICE, written, check_existing=False)  # no lookup: a second item of the same record

    found = find(reader, written)

    assert sorted(f.location for f in found) == sorted(m["id"] for m in graph.messages(ALICE))
    assert [f.digest for f in found] == [item_digest(written)] * 2


def test_duplicates_beyond_one_page_are_all_found_by_following_the_page_links(
    graph: LocalGraph, writer: GraphMailbox, reader: GraphItemReader
) -> None:
    written = item()
    for _ in range(LOOKUP_PAGE_SIZE + 2):
        writer.write(ALICE, written, check_existing=False)

    found = find(reader, written)

    assert len({f.location for f in found}) == LOOKUP_PAGE_SIZE + 2
    assert graph.request_counts(ALICE)["item_lookup"] == 2


def test_other_records_items_are_not_read_back(writer: GraphMailbox, reader: GraphItemReader) -> None:
    writer.write(ALICE, item("wamid.other"))

    assert find(reader, item()) == []


def test_an_unknown_user_or_one_without_a_mailbox_is_mailbox_unavailable(reader: GraphItemReader) -> None:
    for mailbox in (UNKNOWN, NOBOX):
        with pytest.raises(MailboxUnavailable):
            reader.find(mailbox, "key", "wamid.read-back-1")


def test_a_server_error_on_reading_the_item_is_transient(
    graph: LocalGraph, writer: GraphMailbox, reader: GraphItemReader
) -> None:
    written = item()
    writer.write(ALICE, written)
    graph.fail_next(503, times=5, path_contains="/$value")

    with pytest.raises(TransientError):
        find(reader, written)


def test_a_page_link_to_another_host_is_not_followed_with_the_token(
    graph: LocalGraph, writer: GraphMailbox, reader: GraphItemReader
) -> None:
    written = item()
    writer.write(ALICE, written)
    graph.amend_next({"@odata.nextLink": "https://attacker.example/v1.0/users?$skip=1"}, path_contains="/messages")
    graph.reset_counts()

    with pytest.raises(TransientError, match="page link not followed"):
        find(reader, written)
    assert graph.request_counts(ALICE) == {"item_lookup": 1}


def test_local_graph_gives_an_item_back_as_mime_with_its_parts(graph: LocalGraph, writer: GraphMailbox) -> None:
    written = item()
    writer.write(ALICE, written)
    [stored] = graph.messages(ALICE)

    with httpx.Client(base_url=graph.base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        answer = http.get(f"/users/{ALICE}/messages/{stored['id']}/$value")

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "message/rfc822"
    mime = message_from_bytes(answer.content, policy=policy.default)
    assert str(mime["Subject"]) == written.subject
    assert mime.get_body(preferencelist=("plain",)) is not None
    assert [(part.get_filename(), part.get_payload(decode=True)) for part in mime.iter_attachments()] == [
        ("photo.jpg", PHOTO)
    ]
