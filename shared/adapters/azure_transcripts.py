"""Daily transcript state in blobs of the state container, under ``transcripts/``:

- ``staged/<day>/<chat id>/<record key>/<window id>.json``: a record waiting for its day's
  transcript, one copy per window that listed it (a re-list before the day is composed adds a copy,
  never rewrites another window's, so unstaging a part never removes a copy it did not account);
  ``staged/<day>/<chat id>/<record key>.json`` is the one copy staged before windows were kept
  apart, still read and removed;
- ``parts/<day>/<chat id>/<number>.json``: a part's manifest, created once (If-None-Match: *);
- ``transcribed/<record key>.json``: which part holds a record, once that part is written.

Chat ids and record keys are hashes, so no phone number or message id appears in a blob name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from shared.adapters.azure_storage import ensured_container, transient_storage_errors
from shared.domain.identifiers import is_bucket
from shared.domain.transcripts import Bucket, StagedRecord, TranscriptPart

_STAGED = "transcripts/staged/"
_PARTS = "transcripts/parts/"
_TRANSCRIBED = "transcripts/transcribed/"


class BlobTranscriptStore:
    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._container = ensured_container(service, container)
        # Copies read from the single-copy name of earlier releases: (bucket, record key, window) -> blob.
        self._legacy: dict[tuple[str, str, str], str] = {}

    @transient_storage_errors
    def stage(self, bucket: Bucket, record: StagedRecord) -> None:
        container = self._container.get()
        for window in record.window_ids:
            copy = replace(record, window_id=window, relisted_by=())
            container.upload_blob(self._staged_name(bucket, record.record_key, window), json.dumps(copy.to_json()),
                                  overwrite=True)

    @transient_storage_errors
    def staged_buckets(self) -> list[Bucket]:
        buckets: set[str] = set()
        for blob in self._container.get().list_blobs(name_starts_with=_STAGED):
            day, _, rest = blob.name.removeprefix(_STAGED).partition("/")
            bucket = f"{day}/{rest.partition('/')[0]}"
            if is_bucket(bucket):  # a stray blob must not stop every day's transcripts
                buckets.add(bucket)
        return [Bucket.parse(name) for name in sorted(buckets)]

    @transient_storage_errors
    def staged(self, bucket: Bucket) -> list[StagedRecord]:
        container = self._container.get()
        prefix = f"{_STAGED}{bucket.name}/"
        records = []
        for blob in container.list_blobs(name_starts_with=prefix):
            try:
                data = container.download_blob(blob.name).readall()
            except ResourceNotFoundError:
                continue  # composed and removed by another worker since the listing
            record = StagedRecord.from_json(json.loads(data))
            if "/" not in blob.name.removeprefix(prefix):
                self._legacy[(bucket.name, record.record_key, record.window_id)] = blob.name
            records.append(record)
        return records

    @transient_storage_errors
    def unstage(self, bucket: Bucket, records: Iterable[StagedRecord]) -> None:
        container = self._container.get()
        for record in records:
            for window in record.window_ids:
                names = [self._staged_name(bucket, record.record_key, window)]
                legacy = self._legacy.pop((bucket.name, record.record_key, window), None)
                for name in [legacy, *names] if legacy else names:
                    try:
                        container.delete_blob(name)
                    except ResourceNotFoundError:
                        pass

    @transient_storage_errors
    def parts(self, bucket: Bucket) -> list[TranscriptPart]:
        container = self._container.get()
        parts = [
            TranscriptPart.from_json(json.loads(container.download_blob(blob.name).readall()))
            for blob in container.list_blobs(name_starts_with=f"{_PARTS}{bucket.name}/")
        ]
        return sorted(parts, key=lambda p: p.number)

    @transient_storage_errors
    def create_part(self, part: TranscriptPart) -> bool:
        try:
            self._container.get().upload_blob(self._part_name(part), json.dumps(part.to_json()), overwrite=False)
        except ResourceExistsError:
            return False
        return True

    @transient_storage_errors
    def update_part(self, part: TranscriptPart) -> None:
        self._container.get().upload_blob(self._part_name(part), json.dumps(part.to_json()), overwrite=True)

    @transient_storage_errors
    def transcribed_in(self, record_key: str) -> str | None:
        try:
            data = self._container.get().download_blob(f"{_TRANSCRIBED}{record_key}.json").readall()
        except ResourceNotFoundError:
            return None
        return json.loads(data)["item_id"]

    @transient_storage_errors
    def mark_transcribed(self, record_keys: list[str], item_id: str) -> None:
        container = self._container.get()
        for key in record_keys:
            container.upload_blob(f"{_TRANSCRIBED}{key}.json", json.dumps({"item_id": item_id}), overwrite=True)

    @staticmethod
    def _staged_name(bucket: Bucket, record_key: str, window_id: str) -> str:
        return f"{_STAGED}{bucket.name}/{record_key}/{window_id}.json"

    @staticmethod
    def _part_name(part: TranscriptPart) -> str:
        return f"{_PARTS}{part.bucket.name}/{part.number:05d}.json"
