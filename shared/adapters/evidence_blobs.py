"""The evidence store on Blob storage: one container under a container-level time-based retention
policy (WORM; both templates create it, docs/deploy.md). The writes are made for that policy:

- a piece of evidence is a block blob created once under its SHA-256 (``If-None-Match: *``); one
  already there is the same bytes, kept before, and is left as it is (an overwrite would be refused);
- bytes too large for memory are staged block by block while their digest is computed, and committed
  only if it is the digest they were announced with: under WORM a wrong blob could never be removed,
  and uncommitted blocks are discarded by the service after a week;
- nothing here deletes, overwrites or changes a tier: the app's role on the container has no right to.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobServiceClient

from shared.adapters.azure_storage import ensured_container, transient_storage_errors
from shared.domain.evidence import evidence_name, parse_evidence_name
from shared.domain.identifiers import window_id as check_window_id
from shared.domain.manifest import Link
from shared.ports import ChainConflict, RecordMissing

BLOCK_BYTES = 4 * 1024 * 1024


class EvidenceDigestMismatch(ValueError):
    """The streamed bytes are not the ones announced: nothing was kept."""


class BlobEvidenceStore:
    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._container = ensured_container(service, container)

    @transient_storage_errors
    def keep(self, kind: str, raw: bytes, metadata: dict[str, str] | None = None) -> str:
        raw = bytes(raw)
        name = evidence_name(kind, hashlib.sha256(raw).hexdigest())
        try:
            self._container.get().upload_blob(name, raw, overwrite=False, metadata=_metadata(metadata))
        except (ResourceExistsError, ResourceModifiedError):
            pass  # the same bytes, kept before: their name is their digest
        except HttpResponseError as error:
            if error.status_code != 409:  # 409 also when a WORM policy refuses the write to an existing blob
                raise
        return name

    @transient_storage_errors
    def keep_stream(self, kind: str, sha256: str, chunks: Iterator[bytes],
                    metadata: dict[str, str] | None = None) -> str:
        name = evidence_name(kind, sha256)
        blob = self._container.get().get_blob_client(name)
        if self._exists(blob):
            _drain(chunks)
            return name
        digest = hashlib.sha256()
        blocks: list[BlobBlock] = []
        buffer = bytearray()

        def stage(data: bytes) -> None:
            block_id = base64.b64encode(f"{len(blocks):08d}".encode()).decode()
            blob.stage_block(block_id, data)
            blocks.append(BlobBlock(block_id=block_id))

        for chunk in chunks:
            digest.update(chunk)
            buffer += chunk
            while len(buffer) >= BLOCK_BYTES:
                stage(bytes(buffer[:BLOCK_BYTES]))
                del buffer[:BLOCK_BYTES]
        if buffer or not blocks:
            stage(bytes(buffer))
        if digest.hexdigest() != sha256:
            raise EvidenceDigestMismatch(f"{kind}: the bytes streamed are not the ones announced; nothing was kept")
        try:
            # Created, never replaced: If-None-Match: * (this SDK's etag/match_condition keywords do not
            # reach commit_block_list's request, so the header is given as such).
            blob.commit_block_list(blocks, metadata=_metadata(metadata), headers={"If-None-Match": "*"})
        except (ResourceExistsError, ResourceModifiedError):
            pass  # kept by another worker meanwhile: the same bytes
        return name

    @transient_storage_errors
    def read(self, name: str) -> bytes:
        parse_evidence_name(name)
        try:
            return self._container.get().download_blob(name).readall()
        except ResourceNotFoundError:
            raise RecordMissing(name) from None

    def stream(self, name: str) -> Iterator[bytes]:
        parse_evidence_name(name)
        try:
            download = self._download(name)
        except ResourceNotFoundError:
            raise RecordMissing(name) from None
        yield from download.chunks()

    @transient_storage_errors
    def _download(self, name: str):
        return self._container.get().download_blob(name)

    @transient_storage_errors
    def exists(self, name: str) -> bool:
        parse_evidence_name(name)
        return self._exists(self._container.get().get_blob_client(name))

    @transient_storage_errors
    def names(self, kind: str) -> Iterator[str]:
        prefix = evidence_name(kind, "0" * 64)[: -64]
        for blob in self._container.get().list_blobs(name_starts_with=prefix):
            yield blob.name

    @staticmethod
    def _exists(blob) -> bool:
        try:
            blob.get_blob_properties()
        except ResourceNotFoundError:
            return False
        return True


def _metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    # Metadata travels in headers: ASCII only, and never content (ids, kinds, times).
    return {key: value for key, value in (metadata or {}).items() if value.isascii() and key.isidentifier()}


def _drain(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


class BlobEvidenceChain:
    """The chain's head and each window's last seal, in the state container (``evidence-chain/``),
    the head changed with ETag conditions as the watermark is."""

    HEAD = "evidence-chain/head.json"

    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._container = ensured_container(service, container)

    @transient_storage_errors
    def head(self) -> tuple[Link | None, str | None]:
        try:
            download = self._container.get().download_blob(self.HEAD)
        except ResourceNotFoundError:
            return None, None
        return Link.from_json(json.loads(download.readall())), download.properties.etag

    @transient_storage_errors
    def advance(self, link: Link, expected_version: str | None) -> None:
        blob = self._container.get().get_blob_client(self.HEAD)
        body = json.dumps(link.to_json())
        try:
            if expected_version is None:
                blob.upload_blob(body, overwrite=False)
            else:
                blob.upload_blob(body, overwrite=True, etag=expected_version,
                                 match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError) as error:
            raise ChainConflict("the chain's head moved since it was read") from error

    @transient_storage_errors
    def sealed_digest(self, window_id: str) -> str | None:
        try:
            data = json.loads(self._container.get().download_blob(self._sealed(window_id)).readall())
        except ResourceNotFoundError:
            return None
        return data.get("summary_digest")

    @transient_storage_errors
    def mark_sealed(self, window_id: str, link: Link, summary_digest: str) -> None:
        body = json.dumps({"summary_digest": summary_digest, "link": link.to_json()})
        self._container.get().upload_blob(self._sealed(window_id), body, overwrite=True)

    @transient_storage_errors
    def sealed_links(self) -> Iterator[tuple[str, Link]]:
        container = self._container.get()
        for blob in container.list_blobs(name_starts_with="evidence-chain/windows/"):
            window_id = blob.name.removeprefix("evidence-chain/windows/").removesuffix(".json")
            data = json.loads(container.download_blob(blob.name).readall())
            yield window_id, Link.from_json(data["link"])

    @staticmethod
    def _sealed(window_id: str) -> str:
        return f"evidence-chain/windows/{check_window_id(window_id)}.json"
