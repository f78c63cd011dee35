"""A capture vendor's drops in the `eml-drops` container, through the registered functions under the host
runner over Azurite (Event Grid's BlobCreated delivered as the host's blobs extension does, on the
trigger's own connection, EmlDrops), into .eml mailboxes: a ZIP whose manifest holds imports every EML
once into the right mailboxes with its report beside it, its window seals and verifies (claim checks
and items read back); the same ZIP delivered again adds nothing; a wrong manifest imports nothing,
says why beside the drop, waits in poison, and a replay accepting it imports it once."""

from __future__ import annotations

import hashlib
import json
from email import policy
from email.parser import BytesParser

import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from shared.composition import get_container, reset_container
from shared.local.demo_kit import seal_as_the_timer_would
from shared.local.host_runner.runner import HostRunner
from shared.service.poison import reason_selector
from shared.service.verify import verify
from tests.conftest import fast_host_json
from tests.test_cli_import_eml import ALICE, BOB, ZIP_NAME, manifest, vendor_eml
from tests.test_eml_drop_intake import zip_bytes

pytestmark = pytest.mark.integration


@pytest.fixture
def drops_app(tmp_path, azurite, monkeypatch):
    (tmp_path / "users.txt").write_text(f"{ALICE}\n{BOB}\n", encoding="utf-8")
    (tmp_path / "map.csv").write_text(f"PhoneNumber,EmailAddress\n+44 7700 900002,{BOB}\n", encoding="utf-8")
    env = {
        "AzureWebJobsStorage": azurite.connection_string, "EmlDrops": azurite.connection_string,
        "MAILBOX_WRITER": "eml", "EML_MAILBOX_DIR": str(tmp_path / "mail"), "DIRECTORY": "file",
        "DIRECTORY_FILE": str(tmp_path / "users.txt"), "MAPPING_FILE": str(tmp_path / "map.csv"),
        "DEFAULT_PHONE_REGION": "GB", "TELEMESSAGE_BASE_URL": "http://127.0.0.1:9", "TELEMESSAGE_USERNAME": "unused",
        "ARCHIVE_SCHEDULE": "0 0 2 * * *", "EML_DROP_REPORT_DELAY_SECONDS": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_container()
    # The template creates the container: the app may only read there and write reports.
    drops = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("eml-drops")
    drops.create_container()
    runner = HostRunner(function_app.app, host_json=fast_host_json(tmp_path),
                        connection_settings={"AzureWebJobsStorage": azurite.connection_string,
                                             "EmlDrops": azurite.connection_string},
                        settings=env, workers=4)
    with runner:
        yield runner, drops, tmp_path
    reset_container()


def deliver(runner, drops, name: str, data: bytes) -> None:
    drops.upload_blob(name, data, overwrite=True)
    runner.deliver_blob_created(name, "eml_drop_blob")
    runner.drain(timeout=120)


def report_of(drops, name: str) -> dict:
    return json.loads(drops.download_blob(name + ".report.json").readall())


def archived(folder) -> list:
    return [BytesParser(policy=policy.default).parsebytes(p.read_bytes()) for p in sorted(folder.rglob("*.eml"))]


def good_drop(emls: dict[str, bytes]) -> bytes:
    return zip_bytes({**emls, "batch.mf": manifest(3, *emls)})


def test_a_drop_whose_manifest_holds_is_archived_once_reported_sealed_and_verified(drops_app, azurite):
    runner, drops, tmp = drops_app
    name = f"capture-mobile/{ZIP_NAME}"
    emls = {f"msg-{n}.eml": vendor_eml(n) for n in (1, 2, 3)}  # made once: a MIME boundary is random
    data = good_drop(emls)
    deliver(runner, drops, name, data)

    report = report_of(drops, name)
    assert report["status"] == "done" and report["manifest"] == "holds" and report["pending"] == 0
    assert report["sha256"] == hashlib.sha256(data).hexdigest()
    assert (report["emls_listed"], report["imported"], report["pairs_imported"]) == (3, 3, 6)
    for mailbox in (ALICE, BOB):
        items = archived(tmp / "mail" / mailbox)
        assert sorted(str(i["Message-ID"]) for i in items) == [f"<wa-{n}@capture.example>" for n in (1, 2, 3)]
        assert {str(i["X-Archive-Eml-Sha256"]) for i in items} == {
            hashlib.sha256(eml).hexdigest() for eml in emls.values()}
    [photo] = [part for item in archived(tmp / "mail" / ALICE) for part in item.iter_attachments()]
    assert photo.get_payload(decode=True) == b"\x89PNG\r\n" + bytes(2000)  # byte-exact

    evidence = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        "archive-evidence")
    kept = {blob.name for blob in evidence.list_blobs(name_starts_with="raw/")}
    assert f"raw/eml-drop/{hashlib.sha256(data).hexdigest()}" in kept
    assert {f"raw/eml/{hashlib.sha256(eml).hexdigest()}" for eml in emls.values()} <= kept

    # The drop's window is accounted like any other: it seals, and verify finds its claim checks and
    # reads every item back from the mailboxes.
    container = get_container()
    sealed = seal_as_the_timer_would(container)
    assert report["window"] in sealed["sealed"]
    result = verify(container.evidence, container.evidence_chain, container.records, reader=container.item_reader)
    assert not result.findings and result.claim_checks >= 3 and result.items_checked >= 6

    # Event Grid again, then the vendor delivering the same ZIP again: nothing new anywhere.
    runner.deliver_blob_created(name, "eml_drop_blob")
    runner.drain(timeout=120)
    deliver(runner, drops, name, data)
    again = report_of(drops, name)
    assert again["status"] == "done" and (again["imported"], again["skipped_duplicates"]) == (0, 3)
    assert len(archived(tmp / "mail" / ALICE)) == 3 and len(archived(tmp / "mail" / BOB)) == 3


def test_a_wrong_manifest_imports_nothing_waits_in_poison_and_a_replay_accepting_it_imports_once(drops_app):
    runner, drops, tmp = drops_app
    name = ZIP_NAME.replace("_1_", "_2_")
    emls = {f"msg-{n}.eml": vendor_eml(n) for n in (4, 5)}
    deliver(runner, drops, name, zip_bytes({**emls, "batch.mf": manifest(3, *emls, "msg-6.eml")}))

    report = report_of(drops, name)
    assert report["status"] == "refused" and report["code"] == "manifest_mismatch"
    assert "count_mismatch" in report["verdict"] and "listed_missing" in report["verdict"]
    assert not (tmp / "mail").exists() or not archived(tmp / "mail")
    tools = get_container().poison_queues()
    (entry,) = tools.list(reason="manifest_mismatch")
    assert entry.replayable and entry.queue == "listing-poison"

    replay = tools.replay(reason_selector("manifest_mismatch"), accept_mismatch=True)
    assert len(replay.replayed) == 1
    runner.drain(timeout=120)
    accepted = report_of(drops, name)
    assert accepted["status"] == "done" and accepted["manifest"] == "mismatch accepted"
    assert accepted["imported"] == 2 and "accepted_by" in accepted
    assert len(archived(tmp / "mail" / ALICE)) == 2
    assert not tools.list(reason="manifest_mismatch")
    assert not tools.list()


def test_the_demo_archives_the_good_drop_refuses_the_other_and_a_second_run_archives_nothing_new(tmp_path):
    from shared.local.demo import DemoPaths
    from shared.local.eml_drop_demo import run_eml_drops

    paths = DemoPaths(tmp_path / "demo", "eml-drop")
    paths.root.mkdir(parents=True)
    first = run_eml_drops(paths)
    assert first["reconciled"]
    good, refused = first["drops"]
    assert (good["manifest"], good["imported"], good["pairs_imported"], good["failed"]) == ("holds", 5, 7, 0)
    assert refused["code"] == "manifest_mismatch" and "listed_missing" in refused["verdict"]
    assert first["queues"]["listing-poison"] == 1 and first["eml_files"] == 7
    second = run_eml_drops(paths)
    assert second["reconciled"] and second["drops"][0]["imported"] == 0
    assert second["drops"][0]["skipped_duplicates"] == 5 and second["eml_files"] == 7
