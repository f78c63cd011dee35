"""Azure Storage adapters: claim-check blobs, queues, the watermark, the window ledger, the mapping.

Clients come from the same settings the Functions host uses for its triggers: a connection
string in ``AzureWebJobsStorage`` (Azurite, or keys), or identity-based access through
``AzureWebJobsStorage__accountName`` with the app's managed identity.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient, ContentSettings
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from shared.domain.errors import ConfigurationError, TransientError
from shared.domain.identifiers import check_blob_name, container_name, is_window_id, webhook_body_ref
from shared.domain.ledger import OutcomeEntry, PageEntry, WindowInfo, handoff_order
from shared.domain.mapping_table import MappingTable, parse_mapping
from shared.domain.tally import ReadsFromEntries
from shared.domain.tasks import MAX_QUEUE_PAYLOAD
from shared.domain.window import Watermark, isoformat_z, parse_iso
from shared.ports import BlobStamp, QueuedMessage, RecordMissing, WatermarkConflict

logger = logging.getLogger(__name__)


def storage_service_clients(
    connection_string: str, account_name: str = "", client_id: str = "",
    blob_service_uri: str = "", queue_service_uri: str = "",
) -> tuple[BlobServiceClient, QueueServiceClient]:
    if connection_string:
        return (
            BlobServiceClient.from_connection_string(connection_string),
            QueueServiceClient.from_connection_string(connection_string),
        )
    if not account_name and not (blob_service_uri and queue_service_uri):
        raise ConfigurationError(
            "set AzureWebJobsStorage, or AzureWebJobsStorage__accountName "
            "(or __blobServiceUri and __queueServiceUri)"
        )
    credential = _identity(client_id)
    return (
        BlobServiceClient(blob_service_uri or f"https://{account_name}.blob.core.windows.net", credential=credential),
        QueueServiceClient(
            queue_service_uri or f"https://{account_name}.queue.core.windows.net", credential=credential
        ),
    )


def transient_storage_errors(function):
    """Storage hiccups (network, 5xx, throttling) become TransientError: the host retries. A
    generator's requests run while it is read, so its errors are translated there too."""
    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def reading(*args, **kwargs):
            with _translated_storage_errors():
                yield from function(*args, **kwargs)

        return reading

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with _translated_storage_errors():
            return function(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def _translated_storage_errors() -> Iterator[None]:
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as error:
        raise TransientError(f"storage unreachable: {type(error).__name__}") from error
    except HttpResponseError as error:
        if error.status_code is None or error.status_code >= 500 or error.status_code in (408, 429):
            raise TransientError(f"storage answered {error.status_code}") from error
        raise


class _CreatedOnce[Client]:
    """A container or queue client whose resource is created on first use, once per process:
    deployments create them up front, but local runs and tests start from empty storage."""

    def __init__(self, client: Client, create: Callable[[], object]) -> None:
        self._client = client
        self._create = create
        self._ensured = False
        self._lock = threading.Lock()

    def get(self) -> Client:
        if not self._ensured:
            with self._lock:
                if not self._ensured:
                    try:
                        self._create()
                    except ResourceExistsError:
                        pass
                    self._ensured = True
        return self._client


class CheckedContainer:
    """A container client that refuses unsafe blob names (``check_blob_name``) before any request.

    The second line of defence behind the checks at the edge: every adapter reaches blobs only
    through this, so no name built from a request, a queue message or a file can leave the
    container or the prefix it was meant for, whichever credential signs the request."""

    def __init__(self, client: ContainerClient) -> None:
        self._client = client

    @property
    def container_name(self) -> str:
        return self._client.container_name

    def create_container(self) -> object:
        return self._client.create_container()

    def get_blob_client(self, blob: str) -> BlobClient:
        name = check_blob_name(blob)
        return self._client.get_blob_client(name)

    def upload_blob(self, name: str, data: Any, **kwargs: Any) -> BlobClient:
        checked = check_blob_name(name)
        return self._client.upload_blob(checked, data, **kwargs)

    def download_blob(self, blob: str, **kwargs: Any) -> Any:
        name = check_blob_name(blob)
        return self._client.download_blob(name, **kwargs)

    def delete_blob(self, blob: str, **kwargs: Any) -> None:
        name = check_blob_name(blob)
        self._client.delete_blob(name, **kwargs)

    def list_blobs(self, name_starts_with: str, **kwargs: Any) -> Any:
        prefix = check_blob_name(name_starts_with, prefix=True)
        return self._client.list_blobs(name_starts_with=prefix, **kwargs)

    def walk_blobs(self, name_starts_with: str, **kwargs: Any) -> Any:
        prefix = check_blob_name(name_starts_with, prefix=True)
        return self._client.walk_blobs(name_starts_with=prefix, **kwargs)

    def walk_top_level(self, **kwargs: Any) -> Any:
        """The container's top level, blobs and folders (no name from outside goes into it)."""
        return self._client.walk_blobs(delimiter="/", **kwargs)


def _present_container(service: BlobServiceClient, name: str) -> _CreatedOnce[CheckedContainer]:
    client = CheckedContainer(service.get_container_client(container_name(name, "container")))
    return _CreatedOnce(client, lambda: None)


def drop_account_client(connection_string: str, blob_service_uri: str, client_id: str) -> BlobServiceClient | None:
    """The EML drop account's blob client from the EmlDrops connection settings, as the trigger reads
    them; None when none is set (the drop container is then in the host's own account)."""
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string)
    if not blob_service_uri:
        return None
    return BlobServiceClient(blob_service_uri, credential=_identity(client_id))


def _identity(client_id: str):
    """The app's identity, as the host reads a connection's ``__clientId``: that user-assigned managed
    identity, or (none given) whatever DefaultAzureCredential finds (a developer's sign-in)."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()


def ensured_container(service: BlobServiceClient, name: str) -> _CreatedOnce[CheckedContainer]:
    client = CheckedContainer(service.get_container_client(container_name(name, "container")))
    return _CreatedOnce(client, client.create_container)


class BlobRecordStore:
    """Each record's raw JSON at ``<record_key>.json``, written once. The same record listed again
    with the same bytes reuses it; if the source ever sends different bytes under the same id, both
    versions are kept (the second under ``<record_key>.<sha256 prefix>.json``): the copy an item was
    archived from is evidence and must not change after the fact."""

    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._container = ensured_container(service, container)

    @transient_storage_errors
    def put(self, record_key: str, raw: bytes) -> str:
        name = f"{record_key}.json"
        container = self._container.get()
        try:
            container.upload_blob(name, raw, overwrite=False)
            return name
        except ResourceExistsError:
            if container.download_blob(name).readall() == raw:
                return name
        variant = f"{record_key}.{hashlib.sha256(raw).hexdigest()[:16]}.json"
        try:
            container.upload_blob(variant, raw, overwrite=False)
        except ResourceExistsError:
            pass  # the same variant, stored by an earlier listing
        return variant

    @transient_storage_errors
    def get(self, reference: str) -> bytes:
        try:
            return self._container.get().download_blob(reference).readall()
        except ResourceNotFoundError:
            raise RecordMissing(reference) from None


class BlobWebhookBodyStore:
    """Webhook bodies in the records container under ``webhooks/``, written once: the name is the
    bytes' SHA-256, so a body already there is the same body delivered again."""

    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._container = ensured_container(service, container)

    @transient_storage_errors
    def put(self, name: str, raw: bytes, metadata: dict[str, str]) -> None:
        try:
            self._container.get().upload_blob(
                webhook_body_ref(name, "name"), raw, overwrite=False, metadata=metadata,
                content_settings=ContentSettings(content_type="application/json"),
            )
        except ResourceExistsError:
            pass  # a redelivery: the same bytes are stored already

    @transient_storage_errors
    def get(self, name: str) -> bytes:
        try:
            return self._container.get().download_blob(webhook_body_ref(name, "name")).readall()
        except ResourceNotFoundError:
            raise RecordMissing(name) from None

    @transient_storage_errors
    def split_done(self, name: str) -> bool:
        try:
            self._container.get().get_blob_client(_split_marker(name)).get_blob_properties()
        except ResourceNotFoundError:
            return False
        return True

    @transient_storage_errors
    def mark_split(self, name: str) -> None:
        self._container.get().upload_blob(_split_marker(name), b"", overwrite=True)


def _split_marker(name: str) -> str:
    # Beside the body, not on it: the body's bytes and metadata stay as they arrived (evidence).
    return webhook_body_ref(name, "name").removesuffix(".json") + ".split"


class BlobChatExportUploads:
    """The container custodians upload their exports to (``chat-exports``): read by name (every name
    checked before it reaches the SDK), and a report written beside each export, nothing else."""

    def __init__(self, service: BlobServiceClient, container: str, *, create: bool = True) -> None:
        # ``create``: False where the container is the template's and the app may not create one
        # (the EML drop account, where it reads and writes reports only).
        self._container = ensured_container(service, container) if create else _present_container(service, container)

    @transient_storage_errors
    def stamp(self, name: str) -> BlobStamp | None:
        try:
            properties = self._container.get().get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return BlobStamp(properties.size, str(properties.etag).strip('"'), properties.last_modified)

    @transient_storage_errors
    def read_small(self, name: str, limit: int) -> bytes:
        try:
            download = self._container.get().download_blob(name)
        except ResourceNotFoundError:
            raise RecordMissing(name) from None
        if download.size > limit:
            raise ValueError(f"over {limit} bytes")
        return download.readall()

    @transient_storage_errors
    def download_to(self, name: str, target: BinaryIO, *, etag: str | None = None) -> int:
        # With an ETag, If-Match: the bytes of that version or none (a blob replaced mid-read is not mixed).
        condition = {"etag": f'"{etag.strip(chr(34))}"', "match_condition": MatchConditions.IfNotModified} \
            if etag else {}
        try:
            download = self._container.get().download_blob(name, **condition)
            return download.readinto(target)
        except (ResourceNotFoundError, ResourceModifiedError):
            raise RecordMissing(name) from None

    @transient_storage_errors
    def put_report(self, name: str, raw: bytes) -> None:
        self._container.get().upload_blob(
            name, raw, overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )


class BlobCapturedMedia:
    """A push source's media, captured when its message arrived: ``media/<source>/<sha256 of the
    media id>`` in the records container, streamed in (never whole in memory), read back at import
    as the source's attachments (``open_attachment``, the port MediaSpool reads)."""

    def __init__(self, service: BlobServiceClient, container: str, source: str) -> None:
        self._container = ensured_container(service, container)
        self._source = source

    def _name(self, media_id: str) -> str:
        return f"media/{self._source}/{hashlib.sha256(media_id.encode('utf-8')).hexdigest()}"

    @transient_storage_errors
    def has(self, media_id: str) -> bool:
        try:
            self._container.get().get_blob_client(self._name(media_id)).get_blob_properties()
        except ResourceNotFoundError:
            return False
        return True

    @transient_storage_errors
    def put(self, media_id: str, chunks: Iterator[bytes], metadata: dict[str, str]) -> tuple[int, str]:
        """Store the bytes; (size, SHA-256 hex) of what was stored."""
        digest = hashlib.sha256()
        size = 0

        def counted() -> Iterator[bytes]:
            nonlocal size
            for chunk in chunks:
                size += len(chunk)
                digest.update(chunk)
                yield chunk

        self._container.get().upload_blob(self._name(media_id), counted(), overwrite=True, metadata=metadata)
        return size, digest.hexdigest()

    @transient_storage_errors
    def open_attachment(self, media_id: str) -> Iterator[bytes] | None:
        try:
            download = self._container.get().download_blob(self._name(media_id))
        except ResourceNotFoundError:
            return None
        return download.chunks()


class StorageQueue:
    """JSON messages, base64-encoded on the wire as the Functions host expects by default."""

    def __init__(self, service: QueueServiceClient, name: str) -> None:
        self.name = name
        self._client: QueueClient = service.get_queue_client(
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )
        self._created = _CreatedOnce(self._client, self._client.create_queue)
        self._raw: QueueClient = service.get_queue_client(name)

    @property
    def client(self) -> QueueClient:
        return self._created.get()

    @transient_storage_errors
    def send(self, payload: dict[str, Any], *, delay_seconds: int = 0) -> None:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        if len(text.encode()) > MAX_QUEUE_PAYLOAD:
            raise ValueError(f"queue message of {len(text.encode())} bytes is over the limit")
        # -1: never expire. The default time to live is 7 days; a backlog older than that (an outage, a
        # long catch-up) would otherwise vanish from the queue without trace.
        self.client.send_message(text, time_to_live=-1, visibility_timeout=delay_seconds or None)

    @transient_storage_errors
    def receive(self, max_messages: int, *, visibility_timeout: int) -> list[QueuedMessage]:
        self._created.get()  # the queue exists from here on
        # Read raw, not through the base64 decode policy: a poison queue holds what the host moved
        # there, including messages that were never valid base64, and one of those must not make
        # the whole batch unreadable.
        received = self._raw.receive_messages(
            messages_per_page=min(max_messages, 32), max_messages=max_messages,
            visibility_timeout=visibility_timeout,
        )
        return [
            QueuedMessage(m.id, m.pop_receipt or "", m.inserted_on or datetime.now(UTC), m.dequeue_count or 0,
                          _decoded(m.content or ""))
            for m in received
        ]

    @transient_storage_errors
    def delete(self, message: QueuedMessage) -> None:
        try:
            self._raw.delete_message(message.id, message.pop_receipt)
        except ResourceNotFoundError:
            pass  # gone already (deleted by an earlier attempt), or received again since (Azure: 404)
        except HttpResponseError as error:
            if not _lapsed_receipt(error):
                raise
            logger.warning("queue %s: message %s was received again since; not deleted", self.name, message.id)

    @transient_storage_errors
    def release(self, message: QueuedMessage) -> None:
        try:
            self._raw.update_message(message.id, message.pop_receipt, visibility_timeout=0)
        except ResourceNotFoundError:
            pass
        except HttpResponseError as error:
            if not _lapsed_receipt(error):
                raise  # a lapsed receipt: the message is someone else's to release now

    @transient_storage_errors
    def depth(self) -> int:
        try:
            return self._client.get_queue_properties().approximate_message_count or 0
        except ResourceNotFoundError:
            return 0


def _lapsed_receipt(error: HttpResponseError) -> bool:
    """A pop receipt no longer current (the message became visible and was received again): Azure
    answers 404, Azurite 400 PopReceiptMismatch. Either way the message is no longer ours to touch."""
    return error.status_code == 400 and getattr(error, "error_code", None) == "PopReceiptMismatch"


def _decoded(content: str) -> str:
    """A message's text: base64 as the host writes it, or as it is when it is not base64."""
    try:
        return base64.b64decode(content, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return content


class BlobWatermarkStore:
    """``state/watermark.json`` with ETag-based optimistic concurrency."""

    BLOB = "state/watermark.json"

    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._container = ensured_container(service, container)

    @transient_storage_errors
    def read(self) -> tuple[Watermark | None, str | None]:
        try:
            download = self._container.get().download_blob(self.BLOB)
        except ResourceNotFoundError:
            return None, None
        data = json.loads(download.readall())
        return Watermark(parse_iso(data["position"]), data.get("last_window_id")), download.properties.etag

    @transient_storage_errors
    def advance(self, watermark: Watermark, expected_version: str | None) -> None:
        body = json.dumps({
            "position": isoformat_z(watermark.position),
            "last_window_id": watermark.last_window_id,
            "updated_at": isoformat_z(datetime.now(UTC)),
        })
        blob = self._container.get().get_blob_client(self.BLOB)
        try:
            if expected_version is None:
                blob.upload_blob(body, overwrite=False)
            else:
                blob.upload_blob(
                    body, overwrite=True, etag=expected_version, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError) as error:
            raise WatermarkConflict("the watermark changed since it was read") from error


class BlobWindowLedger(ReadsFromEntries):
    """Per window: ``windows/<id>/window.json``, then append blobs of JSON lines: ``pages.jsonl``
    and ``outcomes/<shard>.jsonl``. Appends are atomic and concurrent writers never conflict; an
    append blob takes 50,000 blocks, so outcomes are spread over 16 shards (800,000 per window)."""

    SHARDS = "0123456789abcdef"

    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._container = ensured_container(service, container)

    @transient_storage_errors
    def open_window(self, info: WindowInfo) -> None:
        self._container.get().upload_blob(
            f"windows/{info.window_id}/window.json", json.dumps(info.to_json()), overwrite=True
        )

    @transient_storage_errors
    def window(self, window_id: str) -> WindowInfo | None:
        try:
            data = self._container.get().download_blob(f"windows/{window_id}/window.json").readall()
        except ResourceNotFoundError:
            return None
        return WindowInfo.from_json(json.loads(data))

    @transient_storage_errors
    def record_page(self, window_id: str, entry: PageEntry) -> None:
        self._append(f"windows/{window_id}/pages.jsonl", entry.to_json())

    @transient_storage_errors
    def page_listed(self, window_id: str, slice_id: str, page: int) -> bool:
        try:
            self._container.get().get_blob_client(_listed_marker(window_id, slice_id, page)).get_blob_properties()
        except ResourceNotFoundError:
            return False
        return True

    @transient_storage_errors
    def mark_page_listed(self, window_id: str, slice_id: str, page: int) -> None:
        self._container.get().upload_blob(_listed_marker(window_id, slice_id, page), b"", overwrite=True)

    @transient_storage_errors
    def record_outcome(self, window_id: str, entry: OutcomeEntry) -> None:
        shard = entry.record_key[-1] if entry.record_key[-1] in self.SHARDS else "0"
        self._append(f"windows/{window_id}/outcomes/{shard}.jsonl", entry.to_json())

    @transient_storage_errors
    def recent_windows(self, limit: int) -> list[WindowInfo]:
        found = [
            item.name.removeprefix("windows/").rstrip("/")
            for item in self._container.get().walk_blobs(name_starts_with="windows/", delimiter="/")
        ]
        # Only window ids count: a stray folder (anyone with a data role can write one) must neither
        # break every status and report nor take a real window's place among the newest.
        ids = [name for name in found if is_window_id(name)]
        if len(ids) < len(found):
            logger.warning("window ledger: %d folder(s) under windows/ are not window ids; ignored",
                           len(found) - len(ids))
        # By hand-off, not by capture range: a backfill handed off today is among the recent windows.
        infos = [self.window(window_id) for window_id in sorted(ids, key=handoff_order, reverse=True)[:limit]]
        return [info for info in infos if info is not None]

    @transient_storage_errors
    def pages(self, window_id: str) -> list[PageEntry]:
        return [PageEntry.from_json(line) for line in self._lines(f"windows/{window_id}/pages.jsonl")]

    @transient_storage_errors
    def outcomes(self, window_id: str) -> list[OutcomeEntry]:
        entries: list[OutcomeEntry] = []
        for blob in self._container.get().list_blobs(name_starts_with=f"windows/{window_id}/outcomes/"):
            entries.extend(OutcomeEntry.from_json(line) for line in self._lines(blob.name))
        return entries

    def _append(self, name: str, data: dict[str, Any]) -> None:
        line = (json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        blob = self._container.get().get_blob_client(name)
        try:
            blob.append_block(line)
        except ResourceNotFoundError:
            try:
                blob.create_append_blob(if_none_match="*")
            except ResourceExistsError:
                pass  # another worker created it first
            blob.append_block(line)

    def _lines(self, name: str) -> list[dict[str, Any]]:
        try:
            data = self._container.get().download_blob(name).readall()
        except ResourceNotFoundError:
            return []
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def _listed_marker(window_id: str, slice_id: str, page: int) -> str:
    # One empty blob per page handed off: a re-run of the page (a crash after its continuation was
    # sent, a replay) finds it and stops, instead of sending a second continuation that forks the slice.
    return f"windows/{window_id}/listed/{slice_id}/{page}"


class BlobReportStore:
    """``reports/<window id>.json`` and ``.csv`` in the state container (the templates' lifecycle
    rule deletes this prefix after REPORT_RETENTION_DAYS; the app purges it too)."""

    PREFIX = "reports/"

    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._container = ensured_container(service, container)

    @transient_storage_errors
    def save(self, window_id: str, json_parts: Iterable[str], csv_parts: Iterable[str], *,
             summary_digest: str = "") -> None:
        # An iterable body goes up in blocks (staged, then committed as a list): memory holds one
        # block, and readers see the earlier copy until the new one is whole. The digest goes on the
        # JSON, written last, so it never vouches for a CSV that is not there yet.
        container = self._container.get()
        # UTF-8 with a BOM: Excel opens it with the right encoding.
        container.upload_blob(f"{self.PREFIX}{window_id}.csv", _utf8(csv_parts, bom=True), overwrite=True,
                              content_settings=ContentSettings(content_type="text/csv; charset=utf-8"))
        container.upload_blob(f"{self.PREFIX}{window_id}.json", _utf8(json_parts), overwrite=True,
                              metadata={"summary_digest": summary_digest} if summary_digest else None,
                              content_settings=ContentSettings(content_type="application/json; charset=utf-8"))

    @transient_storage_errors
    def stored_size(self, window_id: str, fmt: str) -> int | None:
        try:
            return self._container.get().get_blob_client(f"{self.PREFIX}{window_id}.{fmt}").get_blob_properties().size
        except ResourceNotFoundError:
            return None

    @transient_storage_errors
    def summary_digest(self, window_id: str) -> str | None:
        try:
            properties = self._container.get().get_blob_client(f"{self.PREFIX}{window_id}.json").get_blob_properties()
        except ResourceNotFoundError:
            return None
        return (properties.metadata or {}).get("summary_digest") or None

    @transient_storage_errors
    def load(self, window_id: str, fmt: str) -> bytes | None:
        try:
            return self._container.get().download_blob(f"{self.PREFIX}{window_id}.{fmt}").readall()
        except ResourceNotFoundError:
            return None

    @transient_storage_errors
    def stored(self) -> list[str]:
        names = (b.name for b in self._container.get().list_blobs(name_starts_with=self.PREFIX))
        ids = {name.removeprefix(self.PREFIX).rsplit(".", 1)[0] for name in names}
        return sorted(window_id for window_id in ids if is_window_id(window_id))

    @transient_storage_errors
    def delete(self, window_id: str) -> None:
        for fmt in ("json", "csv"):
            try:
                self._container.get().delete_blob(f"{self.PREFIX}{window_id}.{fmt}")
            except ResourceNotFoundError:
                pass


def _utf8(parts: Iterable[str], *, bom: bool = False) -> Iterator[bytes]:
    if bom:
        yield "\ufeff".encode()
    for part in parts:
        if part:
            yield part.encode("utf-8")


class BlobMappingSource:
    """The custom mapping CSV from a blob, re-read when its ETag changes (checked at most every
    ``refresh_seconds``), so an administrator's fix applies without redeploying."""

    def __init__(
        self, service: BlobServiceClient, container: str, blob: str, *,
        default_region: str | None, refresh_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._container = ensured_container(service, container)
        self._blob = blob
        self._region = default_region
        self._refresh = refresh_seconds
        self._etag: str | None = None
        self._table = MappingTable()
        self._checked_at = float("-inf")
        self._clock = clock
        self._lock = threading.Lock()

    def current(self) -> MappingTable:
        with self._lock:
            if self._clock() - self._checked_at >= self._refresh:
                self._reload()
            return self._table

    @property
    def location(self) -> str:
        return f"{self._container.get().container_name}/{self._blob}"

    @transient_storage_errors
    def upload(self, data: bytes) -> str | None:
        """Store a new mapping file; workers pick it up at their next refresh. The file it replaces
        is kept under ``<folder>/history/`` (named by when it was stored and its hash): which
        mapping routed a record is part of the record's custody. Returns that name, or None."""
        container = self._container.get()
        client = container.get_blob_client(self._blob)
        kept = None
        try:
            current = client.download_blob()
        except ResourceNotFoundError:
            current = None
        if current is not None:
            old = current.readall()
            if old == data:
                return None  # the same file again: nothing to keep, nothing changes
            folder, _, name = self._blob.rpartition("/")
            stem = name.rsplit(".", 1)[0]
            stamp = current.properties.last_modified.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            kept = f"{folder + '/' if folder else ''}history/{stem}-{stamp}-{hashlib.sha256(old).hexdigest()[:12]}.csv"
            container.upload_blob(kept, old, overwrite=True)
        client.upload_blob(data, overwrite=True)
        with self._lock:
            self._checked_at = float("-inf")
        return kept

    @transient_storage_errors
    def history(self) -> list[str]:
        """The earlier versions kept, oldest first."""
        folder = self._blob.rpartition("/")[0]
        prefix = f"{folder + '/' if folder else ''}history/"
        return sorted(b.name for b in self._container.get().list_blobs(name_starts_with=prefix))

    @transient_storage_errors
    def _reload(self) -> None:
        client = self._container.get().get_blob_client(self._blob)
        try:
            if self._etag is not None and client.get_blob_properties().etag == self._etag:
                self._checked_at = self._clock()
                return
            download = client.download_blob()
        except ResourceNotFoundError:
            self._table, self._etag = MappingTable(), None
            self._checked_at = self._clock()
            return
        self._table = parse_mapping(download.readall(), self._region).table
        self._etag = download.properties.etag
        self._checked_at = self._clock()

