"""Past Exchange's 1,000,000 items per folder: the archive folder chain ("WhatsApp Archiver",
"WhatsApp Archiver 2", ...) on Graph (against LocalGraph, loopback only) and on disk (.eml writer),
with the limit scaled down to a handful of items."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.adapters.graph_client import build_graph_client
from shared.adapters.graph_folders import archive_folder_name
from shared.adapters.graph_mailbox import GraphMailbox
from shared.adapters.graph_message import id_property_id
from shared.adapters.local_files import EmlMailbox
from shared.domain.errors import TransientError
from shared.domain.rendered import MailAddress, RenderedItem
from shared.local.graph_stand_in.server import LocalGraph
from shared.local.graph_stand_in.store import extended_property
from shared.ports import WriteOutcome

pytestmark = [
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]

TOKEN = "local-test-token"
ALICE = "alice@contoso.example"
BASE = "WhatsApp Archiver"
LIMIT = 5  # Exchange's 1,000,000 items per folder, scaled down


def item(n: int | str) -> RenderedItem:
    record_id = f"wamid.chain-{n}"
    return RenderedItem(
        record_id=record_id,
        record_key=hashlib.sha256(record_id.encode()).hexdigest(),
        subject="WhatsApp: Alice Smith to Carla Customer",
        sender=MailAddress("Alice Smith", ALICE),
        recipients=(MailAddress("Carla Customer", "carla@customer.example"),),
        sent_at=datetime(2025, 11, 22, 8, 26, 40, tzinfo=UTC),
        received_at=datetime(2025, 11, 22, 8, 26, 45, tzinfo=UTC),
        text_body="Hello",
        html_body="<p>Hello</p>",
        message_id_header=f"<{record_id}@whatsapp-archiver.invalid>",
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def graph() -> Iterator[LocalGraph]:
    with LocalGraph({ALICE: True}, token=TOKEN, folder_item_limit=LIMIT) as server:
        yield server


def writer(graph: LocalGraph, **options: Any) -> GraphMailbox:
    """A writer with its own client, as another process would have."""
    return GraphMailbox(build_graph_client(base_url=graph.base_url, access_token=TOKEN), **options)


def chain(graph: LocalGraph) -> dict[str, int]:
    """Archive folders under the mailbox root -> items in each."""
    return {f["displayName"]: f["totalItemCount"] for f in graph.folders(ALICE)
            if f["displayName"].startswith(BASE) and f["parentFolderId"].startswith("msgfolderroot")}


def record_ids(graph: LocalGraph) -> Counter[str]:
    return Counter(extended_property(m, id_property_id()) for m in graph.messages(ALICE))


# -- Graph ------------------------------------------------------------------------------------


def test_folder_names_number_the_chain_from_the_configured_name() -> None:
    assert [archive_folder_name(BASE, n) for n in (1, 2, 10)] == [BASE, f"{BASE} 2", f"{BASE} 10"]
    with pytest.raises(ValueError):
        archive_folder_name(BASE, 0)


def test_items_roll_over_into_numbered_continuation_folders_before_the_limit(graph: LocalGraph) -> None:
    with writer(graph, folder_items=LIMIT - 1, folder_growth_per_second=0) as mailbox:
        outcomes = [mailbox.write(ALICE, item(n), check_existing=False) for n in range(10)]

    assert outcomes == [WriteOutcome.IMPORTED] * 10
    assert chain(graph) == {BASE: 4, f"{BASE} 2": 4, f"{BASE} 3": 2}
    # Moving on cost a count read, a find and a create per full folder; Exchange refused nothing.
    assert graph.request_counts(ALICE) == {"folder_find": 3, "folder_create": 3, "folder_get": 2, "item_create": 10}


def test_a_duplicate_of_an_item_in_an_earlier_folder_is_skipped_with_one_lookup(graph: LocalGraph) -> None:
    with writer(graph, folder_items=LIMIT - 1, folder_growth_per_second=0) as mailbox:
        for n in range(10):
            mailbox.write(ALICE, item(n), check_existing=False)
        graph.reset_counts()

        assert mailbox.write(ALICE, item(0)) == WriteOutcome.SKIPPED_DUPLICATE  # it sits in folder 1
        assert graph.request_counts(ALICE) == {"item_lookup": 1}

        graph.reset_counts()
        assert mailbox.write(ALICE, item("new")) == WriteOutcome.IMPORTED
        # A checked write costs what it did with one folder: the lookup covers the whole mailbox.
        assert graph.request_counts(ALICE) == {"item_lookup": 1, "item_create": 1}

    graph.reset_counts()
    with writer(graph) as fresh:  # another process: no folder known yet, none needed for a duplicate
        assert fresh.write(ALICE, item(5)) == WriteOutcome.SKIPPED_DUPLICATE
    assert graph.request_counts(ALICE) == {"item_lookup": 1}
    assert set(record_ids(graph).values()) == {1}
    lookups = [r for r in graph.request_log if r["operation"] == "item_lookup"]
    assert all(r["path"] == "/v1.0/users/alice%40contoso.example/messages" for r in lookups)  # not a folder's


def test_a_writer_unaware_of_the_limit_moves_on_when_exchange_refuses_the_item(graph: LocalGraph) -> None:
    with writer(graph) as mailbox:  # folder_items at its default: Exchange's refusal is the only sign
        outcomes = [mailbox.write(ALICE, item(n), check_existing=False) for n in range(7)]

    assert outcomes == [WriteOutcome.IMPORTED] * 7
    assert chain(graph) == {BASE: LIMIT, f"{BASE} 2": 2}
    assert graph.request_counts(ALICE)["item_create"] == 8  # the refused one, then the same item again
    assert sum(record_ids(graph).values()) == 7


def test_quota_exceeded_moves_on_only_when_the_folders_count_says_it_is_full(graph: LocalGraph) -> None:
    with writer(graph, folder_items=3, folder_growth_per_second=0) as mailbox:
        mailbox.write(ALICE, item(0), check_existing=False)
        # The mailbox is full, not the folder: the record waits, no folder is added.
        graph.fail_next(507, code="ErrorQuotaExceeded", path_contains="/messages", method="POST")
        with pytest.raises(TransientError):
            mailbox.write(ALICE, item(1), check_existing=False)
        assert chain(graph) == {BASE: 1}

        with writer(graph) as other:  # another process fills the folder meanwhile
            for n in (2, 3):
                other.write(ALICE, item(n), check_existing=False)
        graph.fail_next(507, code="ErrorQuotaExceeded", path_contains="/messages", method="POST")
        assert mailbox.write(ALICE, item(1), check_existing=False) == WriteOutcome.IMPORTED

    assert chain(graph) == {BASE: 3, f"{BASE} 2": 1}


def test_a_count_that_may_be_stale_is_read_again_before_the_folder_could_be_full(graph: LocalGraph) -> None:
    clock = Clock()
    with writer(graph, folder_items=4, folder_growth_per_second=1.0, clock=clock) as mailbox:
        mailbox.write(ALICE, item(0), check_existing=False)
        with writer(graph, folder_growth_per_second=0) as other:  # fills the folder to 4 meanwhile
            for n in (1, 2, 3):
                other.write(ALICE, item(n), check_existing=False)

        graph.reset_counts()
        clock.now += 1  # 1 (own) + 1 s x 1 item/s < 4: the count read earlier stands
        mailbox.write(ALICE, item(4), check_existing=False)
        assert graph.request_counts(ALICE) == {"item_create": 1}
        assert chain(graph) == {BASE: LIMIT}  # Exchange's limit, not the writer's: it did not know

        graph.reset_counts()
        clock.now += 10  # others could have filled it since: read the count again, then move on
        mailbox.write(ALICE, item(5), check_existing=False)
        assert graph.request_counts(ALICE) == {"folder_get": 1, "folder_find": 1, "folder_create": 1, "item_create": 1}

    assert chain(graph) == {BASE: LIMIT, f"{BASE} 2": 1}


def test_workers_reaching_a_full_folder_at_once_create_one_continuation_folder(graph: LocalGraph) -> None:
    with writer(graph, folder_items=LIMIT) as filler:
        for n in range(LIMIT):
            filler.write(ALICE, item(n), check_existing=False)
    graph.reset_counts()

    workers = [writer(graph, folder_items=LIMIT) for _ in range(3)]
    graph.hold_until("folder_create", parties=3)  # every one found no folder 2 and creates it
    try:
        with ThreadPoolExecutor(3) as pool:
            outcomes = list(pool.map(lambda w: w[1].write(ALICE, item(f"w{w[0]}")), enumerate(workers)))
    finally:
        for worker in workers:
            worker.close()

    assert outcomes == [WriteOutcome.IMPORTED] * 3
    assert graph.request_counts(ALICE)["folder_create"] == 3  # two of them met ErrorFolderExists
    assert chain(graph) == {BASE: LIMIT, f"{BASE} 2": 3}
    assert [f["displayName"] for f in graph.folders(ALICE)].count(f"{BASE} 2") == 1


def test_a_deleted_continuation_folder_is_made_again_and_the_write_goes_through(graph: LocalGraph) -> None:
    with writer(graph, folder_items=2, folder_growth_per_second=0) as mailbox:
        for n in range(3):
            mailbox.write(ALICE, item(n), check_existing=False)
        graph.fail_next(404, code="ErrorItemNotFound", path_contains="/messages", method="POST")
        assert mailbox.write(ALICE, item(3), check_existing=False) == WriteOutcome.IMPORTED
    # The chain was found again from its start: folder 1 is full, folder 2 takes the item.
    assert chain(graph) == {BASE: 2, f"{BASE} 2": 2}


# -- LocalGraph models the limit --------------------------------------------------------------


def test_local_graph_refuses_an_item_in_a_full_folder_and_reports_item_counts(graph: LocalGraph) -> None:
    with httpx.Client(base_url=graph.base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        folder = http.post(f"/users/{ALICE}/mailFolders/msgfolderroot/childFolders", json={"displayName": "F"}).json()
        message = {"subject": "s", "singleValueExtendedProperties": [{"id": "Integer 0x0E07", "value": "1"}]}
        created = [http.post(f"/users/{ALICE}/mailFolders/{folder['id']}/messages", json=message)
                   for _ in range(LIMIT + 1)]
        found = http.get(f"/users/{ALICE}/mailFolders/msgfolderroot/childFolders",
                         params={"$filter": "displayName eq 'F'"}).json()["value"]
        got = http.get(f"/users/{ALICE}/mailFolders/{folder['id']}").json()
        http.delete(f"/users/{ALICE}/messages/{created[0].json()['id']}")
        after_delete = http.get(f"/users/{ALICE}/mailFolders/{folder['id']}").json()

    assert [r.status_code for r in created] == [201] * LIMIT + [500]
    assert created[-1].json()["error"]["code"] == "ErrorMessagePerFolderCountReceiveQuotaExceeded"
    assert folder["totalItemCount"] == 0
    assert found[0]["totalItemCount"] == got["totalItemCount"] == LIMIT
    assert after_delete["totalItemCount"] == LIMIT - 1


# -- the .eml writer mirrors the chain ----------------------------------------------------------


def eml_chain(root: Path) -> dict[str, int]:
    home = root / ALICE
    return {d.name: sum(1 for _ in d.glob("*.eml")) for d in sorted(home.iterdir())}


def test_eml_writer_rolls_over_into_the_same_numbered_folders_and_skips_duplicates_in_any(tmp_path: Path) -> None:
    mailbox = EmlMailbox(tmp_path, BASE, folder_items=3)
    first = [mailbox.write(ALICE, item(n)) for n in range(7)]
    again = [mailbox.write(ALICE, item(n)) for n in range(7)]
    fresh = EmlMailbox(tmp_path, BASE, folder_items=3)  # another process
    later = fresh.write(ALICE, item(7))

    assert first == [WriteOutcome.IMPORTED] * 7
    assert again == [WriteOutcome.SKIPPED_DUPLICATE] * 7
    assert later == WriteOutcome.IMPORTED
    assert eml_chain(tmp_path) == {BASE: 3, f"{BASE} 2": 3, f"{BASE} 3": 2}  # nothing else, no temporaries
    assert mailbox.find(ALICE, item(0)) == tmp_path / ALICE / BASE / EmlMailbox.file_name(item(0))


def test_eml_writers_racing_fill_each_folder_exactly_and_write_every_record_once(tmp_path: Path) -> None:
    shared_writer = EmlMailbox(tmp_path, BASE, folder_items=LIMIT)
    other_process = EmlMailbox(tmp_path, BASE, folder_items=LIMIT)
    start = threading.Barrier(8)

    def run(k: int) -> list[WriteOutcome]:
        start.wait()
        target = shared_writer if k % 4 else other_process
        return [target.write(ALICE, item(n)) for n in range(k % 2, 24, 2)] + [target.write(ALICE, item(n))
                                                                              for n in range(24)]

    with ThreadPoolExecutor(8) as pool:
        outcomes = [o for batch in pool.map(run, range(8)) for o in batch]

    assert outcomes.count(WriteOutcome.IMPORTED) == 24
    folders = eml_chain(tmp_path)
    assert list(folders) == [archive_folder_name(BASE, n) for n in range(1, len(folders) + 1)]
    assert sum(folders.values()) == 24
    names = [p.name for p in (tmp_path / ALICE).rglob("*.eml")]
    assert len(names) == len(set(names)) == 24
    # Within one process the count is exact; the flock keeps the second process's view current.
    assert all(count <= LIMIT for count in folders.values())
