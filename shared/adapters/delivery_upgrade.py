"""Delivery records on a table, for a deployment whose earlier version kept them as leased blobs.

The table knows nothing of the pairs archived before the switch. Without their history, a record
archived then and delivered again afterwards (a re-listed overlap, a backfill, a poison replay, a
webhook body sent again) would look new and be written a second time, and one left in doubt by a
worker that died mid-write would be written again without the lookup that finds it. So while the
state container holds any earlier delivery blob, a pair the table meets for the first time is
looked up among them: ``done`` is recorded in the table as done and skipped; ``writing`` is in
doubt (the writer looks in the mailbox first). One blob read per new pair ($0.004 per 10,000); a
deployment that never had blob delivery records (asked once per process) pays nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from shared.adapters.azure_storage import ensured_container, transient_storage_errors
from shared.adapters.table_deliveries import TableDeliveryRecords
from shared.ports import DeliveryState, WriteOutcome

PREFIX = "deliveries/"
_EARLIER = {"done": DeliveryState.DONE, "writing": DeliveryState.IN_DOUBT}


class TableDeliveriesAfterBlobs:
    """``DeliveryRecords``: the table's, with the earlier blobs' history for pairs new to the table."""

    def __init__(self, table: TableDeliveryRecords, service: BlobServiceClient, container: str) -> None:
        self._table = table
        self._container = ensured_container(service, container)
        self._earlier_exist: bool | None = None

    @contextmanager
    def claim(self, mailbox: str, record_key: str) -> Iterator[Any]:
        with self._table.claim(mailbox, record_key) as claim:
            if claim.state is DeliveryState.NEW and self._any_earlier():
                earlier = self._earlier_state(mailbox, record_key)
                if earlier is DeliveryState.DONE:
                    # Archived before the switch: the table says so from now on, and no one writes.
                    claim.finish(WriteOutcome.SKIPPED_DUPLICATE)
                elif earlier is DeliveryState.IN_DOUBT:
                    claim.state = DeliveryState.IN_DOUBT
            yield claim

    @transient_storage_errors
    def _any_earlier(self) -> bool:
        if self._earlier_exist is None:
            names = self._container.get().list_blobs(name_starts_with=PREFIX, results_per_page=1)
            first_page = next(names.by_page(), [])
            self._earlier_exist = any(True for _ in first_page)
        return self._earlier_exist

    @transient_storage_errors
    def _earlier_state(self, mailbox: str, record_key: str) -> DeliveryState | None:
        folder = hashlib.sha256(mailbox.strip().lower().encode("utf-8")).hexdigest()
        blob = self._container.get().get_blob_client(f"{PREFIX}{folder}/{record_key}.json")
        try:
            data = json.loads(blob.download_blob().readall())
        except ResourceNotFoundError:
            return None
        except ValueError:
            return DeliveryState.IN_DOUBT  # torn or foreign: look before writing
        if not isinstance(data, dict) or data.get("state") == "new":
            return None if isinstance(data, dict) else DeliveryState.IN_DOUBT
        # Anything but "new" that is not "done" may have been written: look before writing.
        return _EARLIER.get(str(data.get("state")), DeliveryState.IN_DOUBT)
