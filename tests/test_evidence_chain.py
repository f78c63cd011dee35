"""The chain of evidence, end to end through the services: a window imported into .eml mailboxes,
sealed, verified; then each kind of tampering, and ``verify`` names exactly what was changed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest

from shared.adapters.local_files import EmlItemReader, EmlMailbox
from shared.domain.manifest import read_manifest
from shared.domain.records import record_key
from shared.domain.tasks import ListingTask
from shared.service.evidence_chain import seal_reconciled
from shared.service.importing import ItemImporter
from shared.service.listing import list_slice_page
from shared.service.mapping import MailboxMapper
from shared.service.processing import process_item_message
from shared.service.scheduling import schedule_window
from shared.service.status import recent_summaries
from shared.service.verify import FindingKind, Scope, verify
from tests.builders import BOB, CUSTOMER, DIRECTORY, MAPPING_CSV, attachment, record
from tests.fakes import (
    MemoryEvidenceChain,
    MemoryEvidenceStore,
    MemoryLedger,
    MemoryQueue,
    MemoryRecordStore,
    MemorySource,
    MemoryWatermarkStore,
    SetDirectory,
    StaticMapping,
)

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
PHOTO = b"\x89PNG" + bytes(range(200)) * 20


class Deployment:
    """The services wired over fakes and real .eml folders, as the function app wires them."""

    def __init__(self, tmp_path) -> None:
        self.marks, self.ledger, self.records = MemoryWatermarkStore(), MemoryLedger(), MemoryRecordStore()
        self.evidence, self.chain = MemoryEvidenceStore(), MemoryEvidenceChain()
        self.mailboxes = EmlMailbox(tmp_path / "mail")
        self.poison = MemoryQueue("items-poison")

    def run_window(self, records, now=NOW) -> str:
        listing, items = MemoryQueue("listing"), MemoryQueue("items")
        info = schedule_window(now, watermarks=self.marks, listing_queue=listing, ledger=self.ledger)
        source = MemorySource(records)
        while listing.messages:
            task = ListingTask.model_validate(listing.messages.pop(0))
            list_slice_page(task, source=source, records=self.records, items_queue=items, listing_queue=listing,
                            ledger=self.ledger, page_size=2, evidence=self.evidence)
        mapper = MailboxMapper(SetDirectory(*DIRECTORY), StaticMapping(MAPPING_CSV))
        importer = ItemImporter(mapper, self.mailboxes, source, max_item_bytes=10 * 1024 * 1024)
        while items.messages:
            process_item_message(json.dumps(items.messages.pop(0)), dequeue_count=1, records=self.records,
                                 importer=importer, poison_queue=self.poison, ledger=self.ledger)
        return info.window_id

    def seal(self, now=NOW):
        return seal_reconciled(self.ledger, self.evidence, self.chain, recent_summaries(self.ledger, 10), now)

    def verify(self, *, online=True, **kwargs):
        reader = EmlItemReader(self.mailboxes) if online else None
        return verify(self.evidence, self.chain, self.records, reader=reader, **kwargs)

    def eml(self, mailbox: str, message_id: str):
        [path] = self.mailboxes.files_of(mailbox, record_key(message_id))
        return path


def _day(now=NOW):
    t = int((now - timedelta(hours=3)).timestamp() * 1000)
    return [
        record("m-text", archivedTime=t, recipients=[BOB, CUSTOMER]),
        record("m-photo", archivedTime=t + 1, messageType="IMAGE", recipients=[BOB],
               attachments=[attachment("p", PHOTO)]),
        record("m-nobody", archivedTime=t + 2, sender=CUSTOMER, owner={"phone": "+15550000"},
               recipients=[CUSTOMER]),
        record("m-solo", archivedTime=t + 3, recipients=[CUSTOMER]),
    ]


@pytest.fixture
def sealed(tmp_path):
    deployment = Deployment(tmp_path)
    window = deployment.run_window(_day())
    [done] = deployment.seal()
    assert done.window_id == window and done.link.seq == 1 and done.records == 4
    return deployment, window


def _kinds(result):
    return [(f.kind, f.window_id, f.record_id, f.mailbox) for f in result.findings]


def test_an_untouched_window_verifies_offline_and_online(sealed):
    deployment, window = sealed
    offline = deployment.verify(online=False)
    assert offline.ok, _kinds(offline)
    assert (offline.manifests, offline.links_walked, offline.windows, offline.records) == (1, 1, [window], 4)
    assert offline.claim_checks == 4
    online = deployment.verify()
    assert online.ok, _kinds(online)
    # m-text: Alice and Bob; m-photo: Alice and Bob; m-solo: Alice; m-nobody is poisoned.
    assert online.items_checked == 5


def test_the_manifest_records_every_outcome_and_the_final_reports_are_kept_beside_it(sealed):
    deployment, window = sealed
    link, _ = deployment.chain.head()
    head, rows = read_manifest(deployment.evidence.read(link.name).splitlines())
    assert head.window_id == window and head.prev is None and set(head.reports) == {"json", "csv"}
    outcomes = {row.record_id: row.outcome for row in rows}
    assert outcomes == {"m-text": "imported", "m-photo": "imported", "m-nobody": "poisoned", "m-solo": "imported"}
    photo = next(row for row in rows if row.record_id == "m-photo")
    assert sorted(i.mailbox for i in photo.items) == ["alice@contoso.example", "bob@contoso.example"]
    report = json.loads(deployment.evidence.read(head.reports["json"]))
    assert report["window_id"] == window and report["reconciled"] is True
    assert deployment.evidence.read(head.reports["csv"]).startswith(b"\xef\xbb\xbfwindow_id,record_id")


def test_sealing_again_without_a_change_adds_no_link_and_a_new_window_links_to_the_last(sealed, tmp_path):
    deployment, first = sealed
    assert deployment.seal() == []
    later = NOW + timedelta(days=1)
    second = deployment.run_window(_day(later), now=later)
    [done] = deployment.seal(later)
    assert done.window_id == second and done.link.seq == 2
    head, _ = read_manifest(deployment.evidence.read(done.link.name).splitlines())
    assert head.prev == deployment.chain.sealed[first][0]
    assert deployment.verify().ok


def test_a_seal_that_stopped_before_its_link_is_sealed_again_and_its_draft_is_no_finding(tmp_path):
    deployment = Deployment(tmp_path)
    window = deployment.run_window(_day())
    advance = deployment.chain.advance

    def storage_fails(link, version):
        raise OSError("the connection dropped")

    deployment.chain.advance = storage_fails
    assert deployment.seal() == []  # logged, left for the next run
    assert len(list(deployment.evidence.names("manifest"))) == 1
    deployment.chain.advance = advance
    [done] = deployment.seal(NOW + timedelta(minutes=5))
    assert done.window_id == window and done.link.seq == 1
    result = deployment.verify()
    assert result.ok, _kinds(result)
    assert (result.manifests, result.unlinked_drafts) == (2, 1)


def test_an_altered_claim_check_is_named_with_its_window_and_record(sealed):
    deployment, window = sealed
    name = f"{record_key('m-text')}.json"
    deployment.records.blobs[name] = deployment.records.blobs[name].replace(b"Hello", b"Hellp")
    result = deployment.verify(online=False)
    assert _kinds(result) == [(FindingKind.CLAIM_CHECK_ALTERED, window, "m-text", None)]


def test_a_claim_check_removed_is_named(sealed):
    deployment, window = sealed
    del deployment.records.blobs[f"{record_key('m-solo')}.json"]
    assert _kinds(deployment.verify(online=False)) == [(FindingKind.CLAIM_CHECK_MISSING, window, "m-solo", None)]


def test_an_item_deleted_from_a_mailbox_is_named_with_the_mailbox(sealed):
    deployment, window = sealed
    deployment.eml("bob@contoso.example", "m-photo").unlink()
    assert deployment.verify(online=False).ok  # offline, the evidence still holds
    result = deployment.verify()
    assert _kinds(result) == [(FindingKind.ITEM_MISSING, window, "m-photo", "bob@contoso.example")]


def test_an_items_body_changed_is_named(sealed):
    deployment, window = sealed
    path = deployment.eml("alice@contoso.example", "m-text")
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    html = message.get_body(preferencelist=("html",))
    html.set_content(html.get_content().replace("Hello", "Goodbye"), subtype="html", charset="utf-8")
    path.write_bytes(message.as_bytes())
    result = deployment.verify()
    assert _kinds(result) == [(FindingKind.ITEM_ALTERED, window, "m-text", "alice@contoso.example")]


def test_an_attachment_changed_is_named(sealed):
    deployment, window = sealed
    path = deployment.eml("bob@contoso.example", "m-photo")
    path.write_bytes(path.read_bytes().replace(b"iVBOR", b"iVBOQ", 1))  # base64 of the PNG's first bytes
    assert _kinds(deployment.verify()) == [(FindingKind.ITEM_ALTERED, window, "m-photo", "bob@contoso.example")]


def test_an_item_written_twice_is_named_a_duplicate(sealed):
    deployment, window = sealed
    path = deployment.eml("alice@contoso.example", "m-solo")
    (path.parent / ("20000101T000000000000Z-" + path.name.split("-", 1)[1])).write_bytes(path.read_bytes())
    result = deployment.verify()
    assert _kinds(result) == [(FindingKind.ITEM_DUPLICATED, window, "m-solo", "alice@contoso.example")]


def test_a_manifest_removed_is_named_with_its_window_and_link(sealed):
    deployment, window = sealed
    link, _ = deployment.chain.head()
    del deployment.evidence.blobs[link.name]
    result = deployment.verify(online=False)
    assert [(f.kind, f.window_id, f.link) for f in result.findings] == [(FindingKind.MANIFEST_MISSING, window, 1)]


def test_a_manifest_removed_from_the_middle_breaks_the_chain_there_and_the_links_below_are_still_checked(sealed):
    deployment, first = sealed
    days = [NOW + timedelta(days=n) for n in (1, 2)]
    windows = [deployment.run_window(_day(day), now=day) for day in days]
    deployment.seal(days[-1])
    middle = deployment.chain.sealed[windows[0]][0]
    del deployment.evidence.blobs[middle.name]
    name = f"{record_key('m-text')}.json"
    deployment.records.blobs[name] = b"{}"  # the first window's claim check: below the gap
    result = deployment.verify(online=False)
    kinds = {(f.kind, f.window_id) for f in result.findings}
    assert (FindingKind.MANIFEST_MISSING, windows[0]) in kinds
    assert (FindingKind.CLAIM_CHECK_ALTERED, first) in kinds


def test_a_manifest_altered_is_named(sealed):
    deployment, window = sealed
    link, _ = deployment.chain.head()
    deployment.evidence.blobs[link.name] = deployment.evidence.blobs[link.name].replace(b"imported", b"poisoned", 1)
    kinds = [(f.kind, f.window_id) for f in deployment.verify(online=False).findings]
    assert (FindingKind.MANIFEST_ALTERED, window) in kinds


def test_a_head_moved_back_leaves_the_newer_manifest_off_the_chain(sealed):
    deployment, first = sealed
    later = NOW + timedelta(days=1)
    second = deployment.run_window(_day(later), now=later)
    deployment.seal(later)
    first_link = deployment.chain.sealed[first][0]
    deployment.chain.link = first_link  # someone with write access to the state container
    kinds = [(f.kind, f.window_id) for f in deployment.verify(online=False).findings]
    assert kinds == [(FindingKind.MANIFEST_OFF_CHAIN, second)]


def test_a_window_asked_for_and_never_sealed_is_a_finding(sealed):
    deployment, window = sealed
    other = window.replace("20261123T020000", "20261124T020000")
    result = deployment.verify(online=False, scope=Scope(window_id=other))
    assert _kinds(result) == [(FindingKind.WINDOW_NOT_SEALED, other, None, None)]
    assert deployment.verify(online=False, scope=Scope(window_id=window)).ok


def test_sample_reads_back_only_that_many_records(sealed):
    deployment, _ = sealed
    result = deployment.verify(sample=1)
    assert result.ok and 1 <= result.items_checked <= 2


class TestThroughGraph:
    """The same window archived through Microsoft Graph (the local stand-in on loopback) and read back
    item by item: an untouched window verifies; an item edited or deleted in Exchange is named."""

    @pytest.fixture
    def archived(self, tmp_path):
        from shared.adapters.graph_client import build_graph_client
        from shared.adapters.graph_item_reader import GraphItemReader
        from shared.adapters.graph_mailbox import GraphMailbox
        from shared.local.graph_stand_in.server import LocalGraph

        with LocalGraph({box: True for box in DIRECTORY}, token="t") as graph:
            client = build_graph_client(base_url=graph.base_url, access_token="t")
            with GraphMailbox(client) as writer, GraphItemReader(client, id_property=writer.id_property) as reader:
                deployment = Deployment(tmp_path)
                deployment.mailboxes = writer
                window = deployment.run_window(_day())
                deployment.seal()
                yield deployment, window, graph, reader

    @staticmethod
    def _stored(graph, mailbox, record_id):
        return next(m for m in graph.messages(mailbox)
                    if any(p["value"] == record_id for p in m.get("singleValueExtendedProperties", ())))

    def test_an_untouched_window_verifies_item_by_item(self, archived):
        deployment, _, _, reader = archived
        result = verify(deployment.evidence, deployment.chain, deployment.records, reader=reader)
        assert result.ok, _kinds(result)
        assert result.items_checked == 5

    def test_a_body_edited_in_exchange_and_an_item_deleted_are_named(self, archived):
        deployment, window, graph, reader = archived
        edited = self._stored(graph, "alice@contoso.example", "m-text")
        graph.set_body("alice@contoso.example", edited["id"], edited["body"]["content"].replace("Hello", "Hi"))
        gone = self._stored(graph, "bob@contoso.example", "m-photo")
        graph.delete_message("bob@contoso.example", gone["id"])
        result = verify(deployment.evidence, deployment.chain, deployment.records, reader=reader)
        assert sorted(_kinds(result)) == [
            (FindingKind.ITEM_ALTERED, window, "m-text", "alice@contoso.example"),
            (FindingKind.ITEM_MISSING, window, "m-photo", "bob@contoso.example"),
        ]


def test_a_scoped_run_reads_only_the_heads_of_other_windows_manifests_and_a_full_run_hashes_them(sealed):
    deployment, first = sealed
    later = NOW + timedelta(days=1)
    second = deployment.run_window(_day(later), now=later)
    deployment.seal(later)
    old = deployment.chain.sealed[first][0].name
    deployment.evidence.blobs[old] = deployment.evidence.blobs[old].replace(b'"imported"', b'"poisoned"', 1)
    scoped = deployment.verify(online=False, scope=Scope(window_id=second))
    assert scoped.ok and scoped.heads_only == 1 and scoped.windows == [second]
    assert [(f.kind, f.window_id) for f in deployment.verify(online=False).findings][:1] == [
        (FindingKind.MANIFEST_ALTERED, first)]
