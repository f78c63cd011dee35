"""Delivery records as blobs under a lease: ``deliveries/<sha256(mailbox)>/<record_key>.json``.

The mailbox is hashed in the name because blob names travel in request URLs, which storage
SDKs log; the address itself is inside the blob.

A blob lease is the cross-process lock: 60 seconds, renewed in the background while a write is
running (a 150 MB upload takes longer than a minute), and left to expire if the worker dies, after
which the next holder finds the record "writing" and treats it as in doubt.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobClient, BlobLeaseClient, BlobServiceClient

from shared.adapters.azure_storage import ensured_container, transient_storage_errors
from shared.domain.errors import TransientError
from shared.domain.window import isoformat_z
from shared.ports import DeliveryState, WriteOutcome

LEASE_SECONDS = 60
RENEW_EVERY_SECONDS = 20
_STATES = {"new": DeliveryState.NEW, "writing": DeliveryState.IN_DOUBT, "done": DeliveryState.DONE}


class _LeaseKeeper:
    """Renews the lease while a write runs. A failed renewal is retried every couple of seconds
    until shortly before the lease would lapse: a storage hiccup must not hand the record to
    another worker while this one is still writing it. If it lapses anyway, ``lost`` is set and
    the claim's final ``finish`` (which needs the lease) fails, so the record is retried and the
    next holder looks before writing."""

    def __init__(self, lease: BlobLeaseClient) -> None:
        self._lease = lease
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._run, name="delivery-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        renewed_at = time.monotonic()
        wait = RENEW_EVERY_SECONDS
        while not self._stop.wait(wait):
            try:
                self._lease.renew()
            except Exception as error:
                if isinstance(error, HttpResponseError) and error.status_code in (409, 412):
                    self.lost = True  # another worker holds it now
                    return
                if time.monotonic() - renewed_at >= LEASE_SECONDS - 5:
                    self.lost = True
                    return
                wait = 2
                continue
            renewed_at = time.monotonic()
            wait = RENEW_EVERY_SECONDS

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _BlobClaim:
    def __init__(self, blob: BlobClient, lease: BlobLeaseClient, state: DeliveryState, mailbox: str) -> None:
        self._blob = blob
        self._lease = lease
        self._mailbox = mailbox
        self.state = state

    @transient_storage_errors
    def begin(self) -> None:
        self._put({"state": "writing", "started_at": isoformat_z(datetime.now(UTC))})

    @transient_storage_errors
    def finish(self, outcome: WriteOutcome) -> None:
        self._put({"state": "done", "outcome": outcome.value, "finished_at": isoformat_z(datetime.now(UTC))})
        self.state = DeliveryState.DONE

    def _put(self, data: dict) -> None:
        self._blob.upload_blob(json.dumps({**data, "mailbox": self._mailbox}), overwrite=True, lease=self._lease)


class BlobDeliveryRecords:
    def __init__(self, service: BlobServiceClient, container: str, *, wait_seconds: float = 15.0) -> None:
        self._container = ensured_container(service, container)
        self._wait_seconds = wait_seconds

    @contextmanager
    def claim(self, mailbox: str, record_key: str) -> Iterator[_BlobClaim]:
        address = mailbox.strip().lower()
        folder = hashlib.sha256(address.encode("utf-8")).hexdigest()
        blob = self._container.get().get_blob_client(f"deliveries/{folder}/{record_key}.json")
        lease = self._acquire(blob)
        keeper = _LeaseKeeper(lease)
        try:
            data = json.loads(blob.download_blob().readall())
            yield _BlobClaim(blob, lease, _STATES.get(data.get("state"), DeliveryState.IN_DOUBT), address)
        finally:
            keeper.stop()
            try:
                lease.release()
            except HttpResponseError:
                pass  # expired or lost: nothing to give back

    @transient_storage_errors
    def _acquire(self, blob: BlobClient) -> BlobLeaseClient:
        try:
            blob.upload_blob(json.dumps({"state": "new"}), overwrite=False)
        except ResourceExistsError:
            pass
        deadline = time.monotonic() + self._wait_seconds
        pause = 0.1
        while True:
            try:
                return blob.acquire_lease(lease_duration=LEASE_SECONDS)
            except HttpResponseError as error:
                if error.status_code != 409:
                    raise
            if time.monotonic() >= deadline:
                # Another worker is writing this very record into this mailbox. Come back later:
                # by then it is done and this delivery is skipped as a duplicate.
                raise TransientError("another worker holds this record for this mailbox", retry_after=30)
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
