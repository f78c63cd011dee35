"""Switching a deployment's delivery records from blobs to the table loses no history: a pair the
earlier version archived stays a duplicate, one it left mid-write is in doubt (looked up before it
is written), and a deployment that never had blob records never reads them."""

from __future__ import annotations

import pytest
from azure.storage.blob import BlobServiceClient

from shared.adapters.azure_deliveries import BlobDeliveryRecords
from shared.adapters.azure_tables import table_service
from shared.adapters.delivery_upgrade import TableDeliveriesAfterBlobs
from shared.adapters.table_deliveries import TableDeliveryRecords
from shared.ports import DeliveryState, WriteOutcome

pytestmark = pytest.mark.integration

STATE = "archive-state"
DONE_KEY, WRITING_KEY, NEW_KEY = "a" * 64, "b" * 64, "c" * 64
MAILBOX = "Ann@Contoso.example"


class Crash(Exception):
    pass


def _upgraded(azurite) -> TableDeliveriesAfterBlobs:
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    table = TableDeliveryRecords(table_service(azurite.connection_string), "archivedeliveries")
    return TableDeliveriesAfterBlobs(table, blobs, STATE)


def test_pairs_archived_or_left_mid_write_by_the_blob_records_keep_their_state_in_the_table(azurite):
    earlier = BlobDeliveryRecords(BlobServiceClient.from_connection_string(azurite.connection_string), STATE)
    with earlier.claim(MAILBOX, DONE_KEY) as claim:
        claim.begin()
        claim.finish(WriteOutcome.IMPORTED)
    with pytest.raises(Crash), earlier.claim(MAILBOX, WRITING_KEY) as claim:
        claim.begin()
        raise Crash("killed mid-write")

    upgraded = _upgraded(azurite)
    with upgraded.claim("ann@contoso.example", DONE_KEY) as claim:
        assert claim.state is DeliveryState.DONE
    with upgraded.claim(MAILBOX, WRITING_KEY) as claim:
        assert claim.state is DeliveryState.IN_DOUBT
        claim.begin()
        claim.finish(WriteOutcome.IMPORTED)
    with upgraded.claim(MAILBOX, NEW_KEY) as claim:
        assert claim.state is DeliveryState.NEW
    # The table itself now holds what the blobs said: done without asking them again.
    table_only = TableDeliveryRecords(table_service(azurite.connection_string), "archivedeliveries")
    for key in (DONE_KEY, WRITING_KEY):
        with table_only.claim(MAILBOX, key) as claim:
            assert claim.state is DeliveryState.DONE


def test_a_deployment_that_never_had_blob_records_never_reads_them(azurite):
    upgraded = _upgraded(azurite)
    with upgraded.claim(MAILBOX, NEW_KEY) as claim:
        assert claim.state is DeliveryState.NEW
        claim.begin()
        claim.finish(WriteOutcome.IMPORTED)
    assert upgraded._earlier_exist is False
