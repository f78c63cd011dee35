"""``python -m shared.cli verify`` on the demo's state over Azurite: an untouched demo verifies, offline
and online; each kind of tampering (a claim check altered, an item deleted, an item's body changed, a
manifest removed) makes it exit 1 and name exactly what was changed."""

from __future__ import annotations

import hashlib
import json
import shutil
from contextlib import contextmanager
from email import message_from_bytes, policy

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared.adapters.local_files import EmlMailbox
from shared.adapters.table_records import record_keys
from shared.cli.main import main
from shared.domain.manifest import read_manifest
from shared.local.azurite import Azurite
from shared.settings import Settings


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify") / "demo"
    assert main(["demo", "--state-dir", str(root)]) == 0
    return root

@pytest.fixture
def state(demo_state, tmp_path):
    copy = tmp_path / "demo"
    shutil.copytree(demo_state, copy)
    return copy

def _verify(state, capsys, *extra):
    capsys.readouterr()
    code = main(["verify", "--state-dir", str(state), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)

@contextmanager
def _storage(state):
    with Azurite(location=state / "azurite") as azurite:
        yield azurite.connection_string

def _manifest(connection: str):
    settings = Settings()
    service = BlobServiceClient.from_connection_string(connection)
    head = json.loads(service.get_container_client(settings.state_container)
                      .download_blob("evidence-chain/head.json").readall())
    evidence = service.get_container_client(settings.evidence_container)
    window_head, rows = read_manifest(evidence.download_blob(head["name"]).readall().splitlines())
    return head, window_head.window_id, rows, evidence

def _archived(rows, mailboxes=2):
    return next(r for r in rows if r.archived and len(r.items) >= mailboxes)

def _found(result):
    return [(f["kind"], f["window_id"], f["record_key"], f["mailbox"]) for f in result["findings"]]

def test_an_untouched_demo_verifies_offline_and_online(demo_state, capsys):
    code, offline = _verify(demo_state, capsys)
    assert code == 0 and offline["ok"] and offline["findings"] == []
    assert offline["links_walked"] == 1 and offline["claim_checks"] == offline["records"] > 100
    code, online = _verify(demo_state, capsys, "--online")
    assert code == 0 and online["items_checked"] > offline["records"]
    code, sampled = _verify(demo_state, capsys, "--online", "--sample", "5")
    assert code == 0 and 5 <= sampled["items_checked"] < online["items_checked"]

def test_a_claim_check_altered_is_named_by_window_and_record(state, capsys):
    with _storage(state) as connection:
        _, window, rows, _ = _manifest(connection)
        row = _archived(rows)
        table = TableServiceClient.from_connection_string(connection).get_table_client(Settings().record_table)
        entity = table.get_entity(*record_keys(row.claim_check))
        forged = bytes(entity["raw00"]).replace(b'"', b"'", 1)  # and the stored hash made to agree
        entity.update({"raw00": forged, "sha256": hashlib.sha256(forged).hexdigest()})
        table.update_entity(entity)
    code, result = _verify(state, capsys)
    assert code == 1
    assert _found(result) == [("claim_check_altered", window, row.record_key, None)]

def test_an_item_deleted_from_a_mailbox_is_named_online(state, capsys):
    with _storage(state) as connection:
        _, window, rows, _ = _manifest(connection)
    row = _archived(rows)
    item = row.items[0]
    [path] = EmlMailbox(state / "mailboxes").files_of(item.mailbox, row.record_key)
    path.unlink()
    assert _verify(state, capsys)[0] == 0  # offline the evidence holds: the mailbox is not read
    code, result = _verify(state, capsys, "--online")
    assert code == 1
    assert _found(result) == [("item_missing", window, row.record_key, item.mailbox)]

def test_an_items_body_changed_is_named_online(state, capsys):
    with _storage(state) as connection:
        _, window, rows, _ = _manifest(connection)
    row = _archived(rows)
    item = row.items[-1]
    [path] = EmlMailbox(state / "mailboxes").files_of(item.mailbox, row.record_key)
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    html = message.get_body(preferencelist=("html",))
    html.set_content(html.get_content().replace("</body>", "<p>added later</p></body>"), subtype="html",
                     charset="utf-8")
    path.write_bytes(message.as_bytes())
    code, result = _verify(state, capsys, "--online")
    assert code == 1
    assert _found(result) == [("item_altered", window, row.record_key, item.mailbox)]

def test_a_manifest_removed_is_named_by_window_and_link(state, capsys):
    with _storage(state) as connection:
        head, window, _, evidence = _manifest(connection)
        evidence.delete_blob(head["name"])  # Azurite keeps no WORM policy: Azure would refuse this
    code, result = _verify(state, capsys)
    assert code == 1
    assert [(f["kind"], f["window_id"], f["link"]) for f in result["findings"]] == [
        ("manifest_missing", window, 1)]

def test_verify_without_demo_state_is_a_usage_error(tmp_path, capsys):
    assert main(["verify", "--state-dir", str(tmp_path / "none")]) == 2
    assert "run `python -m shared.cli demo` first" in capsys.readouterr().err
