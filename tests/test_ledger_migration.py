"""An upgraded deployment keeps its history: ``ledger-migrate`` copies the append-blob ledger's
windows into the table ledger, and the table ledger then summarises them exactly as the blob ledger
did — copying twice changes no count."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.composition import reset_container
from shared.domain.ledger import MailboxResult, MappingRule, OutcomeEntry, PageEntry, RecordOutcome, WindowInfo
from shared.domain.window import Window

pytestmark = pytest.mark.integration

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def test_ledger_migrate_copies_every_window_and_the_counts_hold(azurite, monkeypatch, capsys):
    from shared.cli.main import main
    from shared.composition import get_container

    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("LEDGER_STORE", "table")
    reset_container()
    try:
        container = get_container()
        old = container.blob_ledger
        infos = [WindowInfo(Window(T0 + timedelta(days=d), T0 + timedelta(days=d + 1)), 1,
                            T0 + timedelta(days=d + 1, hours=2)) for d in range(3)]
        for n, info in enumerate(infos):
            old.open_window(info)
            old.record_page(info.window_id, PageEntry(info.window.id, 0, (f"{n}a" * 32, f"{n}b" * 32), True))
            old.record_outcome(info.window_id, OutcomeEntry(f"{n}a" * 32, "m", RecordOutcome.IMPORTED, T0, mailboxes=(
                MailboxResult("bob@contoso.example", RecordOutcome.IMPORTED, MappingRule.CSV),)))
            old.record_outcome(info.window_id, OutcomeEntry(f"{n}b" * 32, "m", RecordOutcome.POISONED, T0,
                                                            reason="no_mapping"))
        from shared.adapters.azure_tables import TableWindowLedger, table_service

        table = TableWindowLedger(table_service(azurite.connection_string), "archiveledger")
        assert table.recent_windows(10) == []  # the table starts empty
        # The deployment's ledger already reads the blob windows (they finish where they began).
        assert [w.window_id for w in container.ledger.recent_windows(10)] == [i.window_id for i in reversed(infos)]

        for _ in range(2):  # run again: nothing changes
            assert main(["ledger-migrate", "--json"]) == 0
            assert json.loads(capsys.readouterr().out) == {"windows": 3, "pages": 3, "outcomes": 6}
        assert [w.window_id for w in table.recent_windows(10)] == [i.window_id for i in reversed(infos)]
        for info in infos:
            assert table.summary(info.window_id).to_json() == old.summary(info.window_id).to_json()
            assert container.ledger.summary(info.window_id).to_json() == old.summary(info.window_id).to_json()
    finally:
        reset_container()


def test_ledger_migrate_refuses_when_the_ledger_is_not_the_table(azurite, monkeypatch, capsys):
    from shared.cli.main import main

    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("LEDGER_STORE", "blob")
    reset_container()
    try:
        assert main(["ledger-migrate"]) == 2
        assert "LEDGER_STORE is not table" in capsys.readouterr().err
    finally:
        reset_container()
