"""Switching a deployment's ledger from append blobs to the table mid-stream: a window handed off
before the switch finishes in the blobs (its outcomes recorded there, its summary read there), new
windows open in the table, and both are listed by hand-off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from shared.adapters.azure_storage import BlobWindowLedger
from shared.adapters.azure_tables import TableWindowLedger, table_service
from shared.adapters.ledger_upgrade import TableLedgerAfterBlobs
from shared.domain.ledger import MailboxResult, MappingRule, OutcomeEntry, PageEntry, RecordOutcome, WindowInfo
from shared.domain.window import Window

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, tzinfo=UTC)
OLD = WindowInfo(Window(T0, T0 + timedelta(days=1)), 1, T0 + timedelta(days=1))
NEW = WindowInfo(Window(T0 + timedelta(days=1), T0 + timedelta(days=2)), 1, T0 + timedelta(days=2))


def _stores(azurite):
    blob = BlobWindowLedger(BlobServiceClient.from_connection_string(azurite.connection_string), "archive-state")
    table = TableWindowLedger(table_service(azurite.connection_string), "archiveledger")
    return blob, table


def _outcome(key: str) -> OutcomeEntry:
    return OutcomeEntry(key, "m", RecordOutcome.IMPORTED, T0 + timedelta(days=1, minutes=5),
                        (MailboxResult("ann@contoso.example", RecordOutcome.IMPORTED, MappingRule.CSV),))


def test_a_window_begun_in_the_blobs_finishes_there_and_new_windows_open_in_the_table(azurite):
    blob, table = _stores(azurite)
    blob.open_window(OLD)  # handed off by the earlier version; its record is still in the queue
    blob.record_page(OLD.window_id, PageEntry("s1", 0, ("a" * 64,), True))

    ledger = TableLedgerAfterBlobs(table, blob)
    ledger.record_outcome(OLD.window_id, _outcome("a" * 64))
    assert ledger.summary(OLD.window_id).reconciled and blob.summary(OLD.window_id).reconciled
    assert table.window(OLD.window_id) is None  # nothing of it went to the table

    ledger.open_window(NEW)
    ledger.record_page(NEW.window_id, PageEntry("s1", 0, ("b" * 64,), True))
    ledger.record_outcome(NEW.window_id, _outcome("b" * 64))
    assert table.summary(NEW.window_id).reconciled and blob.window(NEW.window_id) is None
    assert [info.window_id for info in ledger.recent_windows(5)] == [NEW.window_id, OLD.window_id]


def test_a_deployment_without_blob_windows_keeps_to_the_table(azurite):
    blob, table = _stores(azurite)
    ledger = TableLedgerAfterBlobs(table, blob)
    ledger.open_window(NEW)
    assert [info.window_id for info in ledger.recent_windows(5)] == [NEW.window_id]
    assert ledger.window(OLD.window_id) is None and ledger._blob_windows is False
