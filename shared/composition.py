"""The composition root: builds every adapter from settings, lazily, once per process.

Nothing here runs at import time: a cold start of the function app pays only for what the
invoked function actually uses (msgraph-sdk alone takes about half a second to import).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Self, overload

from shared.ports import (
    ArchiveSource,
    CapturedMediaStore,
    ChatExportUploads,
    ConnectorQueue,
    DeliveryRecords,
    EvidenceChain,
    EvidenceStore,
    ItemReader,
    MailboxDirectory,
    MailboxWriter,
    MappingSource,
    MediaFetcher,
    PhoneDirectory,
    RecordStore,
    ReportStore,
    TranscriptStore,
    WatermarkStore,
    WebhookBodyStore,
    WindowLedger,
)
from shared.service.importing import ItemImporter
from shared.service.mapping import MailboxMapper
from shared.service.scheduling import SchedulePolicy
from shared.settings import (
    ITEMS_POISON_QUEUE,
    ITEMS_QUEUE,
    LISTING_POISON_QUEUE,
    LISTING_QUEUE,
    TRANSCRIPTS_POISON_QUEUE,
    TRANSCRIPTS_QUEUE,
    Settings,
    get_settings,
)

if TYPE_CHECKING:
    # Signatures only: the adapters are imported when first built, never at import time.
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient
    from msgraph.graph_service_client import GraphServiceClient

    from shared.adapters.azure_storage import BlobMappingSource, StorageQueue
    from shared.adapters.local_files import FileDirectory
    from shared.service.eml_drop_intake import DropStores
    from shared.service.eml_import import EmlImporter
    from shared.service.import_results import RecordSink
    from shared.service.transcripts import DuePolicy, TranscriptComposer

# The host calls functions from several threads at once (a queue batch is 16 messages). Two threads
# building the same adapter would each open a Graph client, an event-loop thread and connections,
# and keep separate caches. One re-entrant lock serialises construction (adapters build on one
# another); once built, a value lives in the instance's __dict__ and is read with no lock at all.
_BUILD_LOCK = threading.RLock()


class _built_once[T](cached_property[T]):
    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...

    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type[Any] | None = None) -> T | Self:
        if instance is None:
            return self
        with _BUILD_LOCK:
            return super().__get__(instance, owner)


class Container:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # --- storage ----------------------------------------------------------------------------
    @_built_once
    def _service_clients(self) -> tuple[BlobServiceClient, QueueServiceClient]:
        from shared.adapters.azure_storage import storage_service_clients

        s = self.settings
        return storage_service_clients(
            s.storage_connection, s.storage_account_name, s.storage_client_id,
            s.storage_blob_service_uri, s.storage_queue_service_uri,
        )

    def _queue(self, name: str) -> StorageQueue:
        from shared.adapters.azure_storage import StorageQueue

        return StorageQueue(self._service_clients[1], name)

    @_built_once
    def listing_queue(self) -> ConnectorQueue:
        return self._queue(LISTING_QUEUE)

    @_built_once
    def items_queue(self) -> ConnectorQueue:
        return self._queue(ITEMS_QUEUE)

    @_built_once
    def items_poison_queue(self) -> ConnectorQueue:
        return self._queue(ITEMS_POISON_QUEUE)

    @_built_once
    def listing_poison_queue(self) -> ConnectorQueue:
        return self._queue(LISTING_POISON_QUEUE)

    @_built_once
    def transcripts_queue(self) -> ConnectorQueue:
        return self._queue(TRANSCRIPTS_QUEUE)

    @_built_once
    def transcripts_poison_queue(self) -> ConnectorQueue:
        return self._queue(TRANSCRIPTS_POISON_QUEUE)

    @_built_once
    def webhook_bodies(self) -> WebhookBodyStore:
        from shared.adapters.azure_storage import BlobWebhookBodyStore

        return BlobWebhookBodyStore(self._service_clients[0], self.settings.records_container)

    @_built_once
    def evidence(self) -> EvidenceStore:
        from shared.adapters.evidence_blobs import BlobEvidenceStore

        return BlobEvidenceStore(self._service_clients[0], self.settings.evidence_container)

    @_built_once
    def evidence_chain(self) -> EvidenceChain:
        from shared.adapters.evidence_blobs import BlobEvidenceChain

        return BlobEvidenceChain(self._service_clients[0], self.settings.state_container)

    @_built_once
    def captured_media(self) -> dict[str, CapturedMediaStore]:
        """Per push source, its media as captured when the messages arrived."""
        from shared.adapters.azure_storage import BlobCapturedMedia

        service, container = self._service_clients[0], self.settings.records_container
        return {source: BlobCapturedMedia(service, container, source)
                for source in ("whatsapp-cloud", "whatsapp-chat-export")}

    @_built_once
    def chat_export_uploads(self) -> ChatExportUploads:
        from shared.adapters.azure_storage import BlobChatExportUploads
        from shared.settings import CHAT_EXPORTS_CONTAINER

        return BlobChatExportUploads(self._service_clients[0], CHAT_EXPORTS_CONTAINER)

    @_built_once
    def eml_drops(self) -> ChatExportUploads:
        """The EML drop container (the SFTP account's ``eml-drops``): read, and reports written beside
        each drop. The container is the template's: the app holds no right to create one there."""
        from shared.adapters.azure_storage import BlobChatExportUploads, drop_account_client
        from shared.settings import EML_DROPS_CONTAINER

        s = self.settings
        service = drop_account_client(s.eml_drops_connection, s.eml_drops_blob_service_uri, s.eml_drops_client_id) \
            or self._service_clients[0]
        return BlobChatExportUploads(service, EML_DROPS_CONTAINER, create=service is self._service_clients[0])

    @_built_once
    def drop_stores(self) -> DropStores:
        from shared.adapters.azure_storage import BlobChatExportUploads
        from shared.service.eml_drop_intake import DropStores

        # The app's own copy of each drop's report, in the state container (the vendor writes beside its drops).
        state = BlobChatExportUploads(self._service_clients[0], self.settings.state_container)
        return DropStores(drops=self.eml_drops, state=state, records=self.records, evidence=self.evidence,
                          items_queue=self.items_queue, report_queue=self.listing_queue,
                          poison_queue=self.listing_poison_queue, ledger=self.ledger)

    @_built_once
    def meta_media(self) -> MediaFetcher:
        from shared.adapters.meta_media import MetaMediaClient
        from shared.domain.webhook_auth import unresolved_as_unset

        s = self.settings
        return MetaMediaClient(s.whatsapp_graph_base_url, s.whatsapp_graph_version,
                               unresolved_as_unset(s.whatsapp_access_token.get_secret_value()))

    @_built_once
    def records(self) -> RecordStore:
        s = self.settings
        if s.record_store == "blob":
            from shared.adapters.azure_storage import BlobRecordStore

            return BlobRecordStore(self._service_clients[0], s.records_container)
        from shared.adapters.table_records import TableRecordStore

        return TableRecordStore(self._table_service, s.record_table, self._service_clients[0], s.records_container)

    @_built_once
    def watermarks(self) -> WatermarkStore:
        from shared.adapters.azure_storage import BlobWatermarkStore

        return BlobWatermarkStore(self._service_clients[0], self.settings.state_container)

    @_built_once
    def blob_ledger(self) -> WindowLedger:
        """The append-blob ledger of earlier versions (``LEDGER_STORE=blob``, and ``ledger-migrate``'s source)."""
        from shared.adapters.azure_storage import BlobWindowLedger

        return BlobWindowLedger(self._service_clients[0], self.settings.state_container)

    @_built_once
    def ledger(self) -> WindowLedger:
        s = self.settings
        if s.ledger_store == "blob":
            return self.blob_ledger
        from shared.adapters.azure_tables import TableWindowLedger
        from shared.adapters.ledger_upgrade import TableLedgerAfterBlobs

        # Windows an earlier version began in the append blobs finish there.
        return TableLedgerAfterBlobs(TableWindowLedger(self._table_service, s.ledger_table), self.blob_ledger)

    @_built_once
    def _table_service(self) -> TableServiceClient:
        from shared.adapters.azure_tables import table_service

        s = self.settings
        return table_service(s.storage_connection, s.storage_account_name, s.storage_client_id,
                             s.storage_table_service_uri, s.storage_blob_service_uri)

    @_built_once
    def reports(self) -> ReportStore:
        from shared.adapters.azure_storage import BlobReportStore

        return BlobReportStore(self._service_clients[0], self.settings.state_container)

    def poison_queues(self):
        from shared.service.poison import PoisonQueues

        return PoisonQueues(
            [self.items_poison_queue, self.listing_poison_queue, self.transcripts_poison_queue],
            {
                LISTING_QUEUE: self.listing_queue, ITEMS_QUEUE: self.items_queue,
                TRANSCRIPTS_QUEUE: self.transcripts_queue,
            },
        )

    def queue_depths(self) -> dict[str, int]:
        queues = (self.listing_queue, self.items_queue, self.items_poison_queue, self.listing_poison_queue)
        if self.settings.daily_transcripts:
            queues += (self.transcripts_queue, self.transcripts_poison_queue)
        return {queue.name: queue.depth() for queue in queues}

    # --- mapping ------------------------------------------------------------------------------
    @_built_once
    def mapping_source(self) -> MappingSource:
        s = self.settings
        if s.mapping_file:
            from shared.adapters.local_files import FileMappingSource

            return FileMappingSource(s.mapping_file, default_region=s.default_phone_region)
        return self.mapping_blob

    @_built_once
    def mapping_blob(self) -> BlobMappingSource:
        """The mapping in the state container (MAPPING_BLOB), where `mapping upload` and the demos put
        it: the functions' source unless MAPPING_FILE names a local file instead."""
        from shared.adapters.azure_storage import BlobMappingSource

        s = self.settings
        return BlobMappingSource(
            self._service_clients[0], s.state_container, s.mapping_blob, default_region=s.default_phone_region
        )

    @_built_once
    def directory(self) -> MailboxDirectory:
        if self.settings.directory == "file":
            return self._file_directory
        from shared.adapters.graph_directory import GraphDirectory

        return GraphDirectory(self._graph_client)

    @_built_once
    def _file_directory(self) -> FileDirectory:
        """DIRECTORY=file: one file lists the mailboxes and, beside them, their phone numbers."""
        from shared.adapters.local_files import FileDirectory

        return FileDirectory(self.settings.directory_file, default_region=self.settings.default_phone_region)

    @_built_once
    def mapper(self) -> MailboxMapper:
        s = self.settings
        return MailboxMapper(
            self.directory,
            self.mapping_source if s.custom_mapping_enabled else None,
            custom_enabled=s.custom_mapping_enabled,
            auto_enabled=s.auto_mapping_enabled,
            default_region=s.default_phone_region,
            phones=self.phone_directory if s.directory_phone_mapping_enabled else None,
            catch_all=s.catch_all_mailbox or None,
        )

    @_built_once
    def phone_directory(self) -> PhoneDirectory:
        if self.settings.directory == "file":
            return self._file_directory
        from shared.adapters.graph_directory import GraphPhoneDirectory

        return GraphPhoneDirectory(self._graph_client, default_region=self.settings.default_phone_region)

    # --- delivery -----------------------------------------------------------------------------
    @_built_once
    def _graph_client(self) -> GraphServiceClient:
        from shared.adapters.graph_client import build_graph_client

        s = self.settings
        return build_graph_client(
            cloud=s.graph_cloud,
            base_url=s.graph_base_url or None,
            access_token=s.graph_access_token.get_secret_value() or None,
            managed_identity_client_id=s.azure_client_id or None,
            tenant_id=s.graph_tenant_id or None,
            client_id=s.graph_client_id or None,
            client_secret=s.graph_client_secret.get_secret_value() or None,
            certificate_path=s.graph_certificate_path or None,
            certificate_data=s.graph_certificate.get_secret_value() or None,
            certificate_password=s.graph_certificate_password.get_secret_value() or None,
        )

    @_built_once
    def writer(self) -> MailboxWriter:
        s = self.settings
        if s.mailbox_writer == "eml":
            from shared.adapters.local_files import EmlMailbox

            return EmlMailbox(s.eml_mailbox_dir, s.archive_folder_name)
        from shared.service.delivery import OnceOnlyMailbox

        # The .eml writer is exactly-once by itself (atomic link); Graph needs delivery records.
        return OnceOnlyMailbox(self.graph_mailbox, self.delivery_records)

    @_built_once
    def item_reader(self) -> ItemReader:
        """Reads archived items back for ``verify --online``, from where the writer puts them."""
        s = self.settings
        if s.mailbox_writer == "eml":
            from shared.adapters.local_files import EmlItemReader, EmlMailbox

            return EmlItemReader(EmlMailbox(s.eml_mailbox_dir, s.archive_folder_name))
        from shared.adapters.graph_item_reader import GraphItemReader

        return GraphItemReader(self._graph_client)

    @_built_once
    def delivery_records(self) -> DeliveryRecords:
        s = self.settings
        if s.delivery_store == "blob":
            from shared.adapters.azure_deliveries import BlobDeliveryRecords

            return BlobDeliveryRecords(self._service_clients[0], s.state_container)
        from shared.adapters.delivery_upgrade import TableDeliveriesAfterBlobs
        from shared.adapters.table_deliveries import TableDeliveryRecords

        # Blob records an earlier version wrote are still consulted for pairs new to the table.
        return TableDeliveriesAfterBlobs(TableDeliveryRecords(self._table_service, s.delivery_table),
                                         self._service_clients[0], s.state_container)

    @_built_once
    def graph_mailbox(self) -> MailboxWriter:
        from shared.adapters.graph_attachments import UploadSessionAttachments
        from shared.adapters.graph_mailbox import GraphMailbox

        s = self.settings
        return GraphMailbox(
            self._graph_client, item_class=s.archive_item_class, folder_name=s.archive_folder_name,
            attachments=UploadSessionAttachments(upload_sessions=s.graph_upload_sessions),
            conversation_properties=s.graph_conversation_properties,
        )

    @_built_once
    def source(self) -> ArchiveSource:
        from shared.adapters.telemessage import TeleMessageClient

        s = self.settings
        return TeleMessageClient(
            s.telemessage_base_url, s.telemessage_username, s.telemessage_password.get_secret_value()
        )

    @_built_once
    def importer(self) -> ItemImporter:
        s = self.settings
        # No TeleMessage account (a firm fed by EML drops or webhooks only): no TeleMessage records
        # reach the items queue, so none needs its client, and the importer is built without one.
        return ItemImporter(
            self.mapper, self.writer, self.source if s.telemessage_base_url else None,
            max_item_bytes=s.max_item_bytes, default_region=s.default_phone_region, records=self.records,
            transcripts=self.transcript_stager if s.daily_transcripts else None,
            media_sources=self.captured_media,
        )

    @_built_once
    def eml_importer(self) -> EmlImporter:
        import re

        from shared.domain.eml_items import PHONE_IN_ADDRESS
        from shared.service.eml_import import EmlImporter

        s = self.settings
        return EmlImporter(self.mapper, self.writer, max_item_bytes=s.max_item_bytes,
                           default_region=s.default_phone_region,
                           phone_pattern=re.compile(s.eml_phone_pattern) if s.eml_phone_pattern else PHONE_IN_ADDRESS,
                           records=self.records)

    # --- daily transcripts --------------------------------------------------------------------
    @_built_once
    def transcript_store(self) -> TranscriptStore:
        from shared.adapters.azure_transcripts import BlobTranscriptStore

        return BlobTranscriptStore(self._service_clients[0], self.settings.state_container)

    @_built_once
    def transcript_stager(self) -> RecordSink:
        from shared.service.transcripts import TranscriptStager

        s = self.settings
        return TranscriptStager(self.transcript_store, zone=s.transcript_zone, default_region=s.default_phone_region)

    @_built_once
    def transcript_composer(self) -> TranscriptComposer:
        from shared.service.transcripts import TranscriptComposer

        s = self.settings
        return TranscriptComposer(
            self.transcript_store, self.records, self.writer, self.source, self.ledger, self.items_poison_queue,
            zone=s.transcript_zone, max_item_bytes=s.max_item_bytes, default_region=s.default_phone_region,
            media_sources=self.captured_media,
        )

    @property
    def transcript_due_policy(self) -> DuePolicy:
        from shared.service.transcripts import DuePolicy

        s = self.settings
        return DuePolicy(
            zone=s.transcript_zone,
            recheck=timedelta(seconds=max(5, min(300, s.transcript_delay_minutes * 60))),
            max_wait=timedelta(hours=s.transcript_max_wait_hours),
        )

    @property
    def schedule_policy(self) -> SchedulePolicy:
        s = self.settings
        return SchedulePolicy(
            first_run_lookback=timedelta(hours=s.first_run_lookback_hours),
            max_window=timedelta(days=s.max_window_days),
            slice_length=timedelta(minutes=s.slice_minutes),
            settle=timedelta(minutes=s.capture_settle_minutes),
            overlap=timedelta(minutes=s.listing_overlap_minutes),
            transcript_delay=timedelta(minutes=s.transcript_delay_minutes) if s.daily_transcripts else None,
        )


_container: Container | None = None


def get_container() -> Container:
    global _container
    if _container is None:
        with _BUILD_LOCK:
            if _container is None:
                _container = Container(get_settings())
    return _container


def reset_container() -> None:
    """Forget the process-wide container and settings (tests, and the local runner between runs)."""
    global _container
    with _BUILD_LOCK:
        _container = None
        get_settings.cache_clear()
