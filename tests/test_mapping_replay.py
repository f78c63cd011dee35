"""A mapping fix without redeploying: `mapping upload` stores the checked file where the functions
read it (keeping the earlier version), `mapping show` explains a number, and `poison replay
--reason no_mapping` imports the records that now map exactly once, the rest returning to poison."""

from __future__ import annotations

import json

import pytest

import function_app
from shared.cli.main import main as cli
from shared.composition import get_container, reset_container
from shared.domain.records import record_key
from shared.local.host_runner.runner import HostRunner
from shared.service.reports import with_rows
from shared.service.status import window_summary
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

HENRIK_PHONE = "+447700900127"  # an employee the traffic's mapping file forgot
HENRIK_MAILBOX = "henrik.lovas@contoso.example"


def drain(env: dict[str, str], *, timer: bool = False) -> None:
    with HostRunner(function_app.app, host_json=REPO_ROOT / "host.json",
                    connection_settings={"AzureWebJobsStorage": env["AzureWebJobsStorage"]},
                    settings=env, workers=4) as runner:
        if timer:
            runner.run_timer("schedule_archive_window")
        runner.drain(timeout=300)


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    reset_container()
    code = cli(list(argv))
    return code, capsys.readouterr().out


def henrik_files(local_app) -> list:
    folder = local_app.mailbox_dir / HENRIK_MAILBOX / "WhatsApp Archiver"
    return sorted(folder.glob("*.eml")) if folder.exists() else []


def test_replay_after_mapping_upload_imports_the_previously_unmapped_records_once(
    local_app, traffic, monkeypatch, tmp_path, capsys,
):
    monkeypatch.delenv("MAPPING_FILE")  # read the mapping where production does: the blob
    env = {k: v for k, v in local_app.env.items() if k != "MAPPING_FILE"}
    first_csv = tmp_path / "first.csv"
    first_csv.write_text(traffic.mapping_csv(), encoding="utf-8")
    code, out = run_cli(capsys, "mapping", "upload", str(first_csv))
    assert code == 0 and "PASS" in out

    drain(env, timer=True)
    container = get_container()
    watermark, _ = container.watermarks.read()
    before = with_rows(container.ledger, window_summary(container.ledger, watermark.last_window_id))
    unmapped = before.poisoned["no_mapping"]
    assert before.reconciled and not henrik_files(local_app)
    poisoned_keys = {key for key, entry in before.records.items() if entry.reason == "no_mapping"}
    henriks = [
        r for r in traffic.records
        if record_key(r["messageId"]) in poisoned_keys
        and HENRIK_PHONE in {p.get("phone") for p in (r["sender"], *r["recipients"])}
    ]
    assert 0 < len(henriks) < unmapped

    # A bad file is refused and changes nothing.
    bad = tmp_path / "bad.csv"
    bad.write_text("PhoneNumber,EmailAddress\n4.47700900127E+11,henrik.lovas@contoso.example\n", encoding="utf-8")
    code, out = run_cli(capsys, "mapping", "upload", str(bad))
    assert code == 1 and "line 2" in out and "scientific notation" in out and "nothing stored" in out

    # The fix: Henrik's mailbox now exists, and the mapping file names it.
    directory = tmp_path / "directory.txt"
    directory.write_text(directory.read_text(encoding="utf-8") + HENRIK_MAILBOX + "\n", encoding="utf-8")
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(traffic.mapping_csv() + f"+44 7700 900127,{HENRIK_MAILBOX}\n", encoding="utf-8")
    code, out = run_cli(capsys, "mapping", "upload", str(fixed))
    assert code == 0 and "earlier version kept as mapping/history/phone-to-email-" in out
    assert len(get_container().mapping_blob.history()) == 1
    code, out = run_cli(capsys, "mapping", "show", "07700 900127")
    assert code == 0 and f"{HENRIK_PHONE} → {HENRIK_MAILBOX} (rule: csv)" in out

    code, out = run_cli(capsys, "poison", "replay", "--reason", "no_mapping")
    assert code == 0 and f"replayed {unmapped} message(s) (no_mapping {unmapped})" in out
    drain(env)
    imported_for_henrik = henrik_files(local_app)
    assert len(imported_for_henrik) == len(henriks)

    container = get_container()
    after = window_summary(container.ledger, watermark.last_window_id)
    assert after.reconciled
    assert after.poisoned["no_mapping"] == unmapped - len(henriks)
    assert after.imported == before.imported + len(henriks)

    # Replaying again changes nothing for the records now archived: exactly once.
    code, out = run_cli(capsys, "poison", "replay", "--reason", "no_mapping")
    assert code == 0
    drain(env)
    assert henrik_files(local_app) == imported_for_henrik

    code, out = run_cli(capsys, "poison", "list", "--reason", "no_mapping", "--json")
    entries = json.loads(out)
    assert len(entries) == unmapped - len(henriks)
    assert all(e["replays"] == 2 and e["first_failed_at"] < e["last_failed_at"] for e in entries)
    assert all(e["record_ref"] and e["reason"] == "no_mapping" for e in entries)


def test_running_functions_pick_up_an_uploaded_mapping_without_a_restart(azurite):
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.azure_storage import BlobMappingSource

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    now = [1000.0]
    admin = BlobMappingSource(service, "archive-state", "mapping/phone-to-email.csv", default_region="GB")
    worker = BlobMappingSource(service, "archive-state", "mapping/phone-to-email.csv", default_region="GB",
                               refresh_seconds=60, clock=lambda: now[0])
    assert len(worker.current()) == 0  # no file yet: nothing maps by CSV, nothing fails
    admin.upload(b"PhoneNumber,EmailAddress\n07700 900127,henrik.lovas@contoso.example\n")
    now[0] += 30
    assert len(worker.current()) == 0  # cached until the refresh interval passes
    now[0] += 31
    assert worker.current().lookup(HENRIK_PHONE).email == HENRIK_MAILBOX
    admin.upload(b"PhoneNumber,EmailAddress\n")  # the number removed again
    now[0] += 61
    assert worker.current().lookup(HENRIK_PHONE) is None
    assert len(admin.history()) == 1
