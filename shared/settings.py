"""Every setting the connector reads, typed, from environment variables / app settings.

One object, read once per process (lazily, by the composition root). The README lists them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain import identifiers

MAX_ITEM_MB_CEILING = 150  # Exchange Online's largest configurable message size

# Queue names are fixed, not settings: the trigger bindings name them, and a name that could differ
# between the app settings and the infrastructure is one more way to lose records.
LISTING_QUEUE = "listing"
ITEMS_QUEUE = "items"
LISTING_POISON_QUEUE = f"{LISTING_QUEUE}-poison"
ITEMS_POISON_QUEUE = f"{ITEMS_QUEUE}-poison"
TRANSCRIPTS_QUEUE = "transcripts"
TRANSCRIPTS_POISON_QUEUE = f"{TRANSCRIPTS_QUEUE}-poison"
CHAT_EXPORTS_CONTAINER = "chat-exports"  # custodians' "Export chat" uploads (the blob trigger's path)
STORAGE_CONNECTION = "AzureWebJobsStorage"  # the connection setting prefix the triggers use
# Capture vendors' EML drops: the container an SFTP local user's home is, in an account of its own
# (SFTP needs a hierarchical namespace, which the evidence container's WORM policy excludes), and the
# connection setting prefix its Event Grid blob trigger reads (EmlDrops__blobServiceUri, ...).
EML_DROPS_CONTAINER = "eml-drops"
EML_DROPS_CONNECTION = "EmlDrops"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, populate_by_name=True)

    # --- Schedule and windows -------------------------------------------------------------
    archive_schedule: str = Field(default="0 0 2 * * *", description="NCRONTAB, UTC; read by the timer binding")
    first_run_lookback_hours: int = Field(default=24, ge=1, le=24 * 31)
    slice_minutes: int = Field(default=60, ge=1, le=24 * 60, description="length of one listing work item")
    max_window_days: int = Field(default=31, ge=1, le=31, description="longest window one run hands off")
    listing_overlap_minutes: int = Field(
        default=0, ge=0, le=24 * 60,
        description="each window re-lists this much before the watermark; repeats are skipped"
    )
    capture_settle_minutes: int = Field(
        default=15, ge=0, le=24 * 60, description="windows end this long before now, so late-indexed records are seen"
    )

    # --- TeleMessage ----------------------------------------------------------------------
    telemessage_base_url: str = ""
    telemessage_username: str = ""
    telemessage_password: SecretStr = SecretStr("")
    telemessage_page_size: int = Field(default=200, ge=1, le=1000)

    # --- WhatsApp Business Platform (Cloud API) webhooks: a second source, off unless set ------
    whatsapp_verify_token: SecretStr = Field(default=SecretStr(""), description="the token of Meta's GET handshake")
    whatsapp_app_secret: SecretStr = Field(
        default=SecretStr(""), description="the Meta app secret(s) bodies are signed with; comma-separated to rotate"
    )
    whatsapp_access_token: SecretStr = Field(default=SecretStr(""), description="system-user token for media downloads")
    whatsapp_graph_base_url: str = Field(default="https://graph.facebook.com", description="Meta's Graph API (media)")
    whatsapp_graph_version: str = Field(
        default="v26.0", pattern=r"^v[0-9]{1,3}\.0$",
        description="pinned Graph API version"
    )
    whatsapp_phone_number_ids: str = Field(
        default="", pattern=r"^[0-9, ]{0,4000}$",
        description="the firm's business numbers (Meta's phone_number_id, comma-separated) whose API sends "
                    "whatsapp_outbound takes; empty: it takes none",
    )

    # --- Storage (queues, claim checks, state) ---------------------------------------------
    storage_connection: str = Field(default="", validation_alias="AzureWebJobsStorage")
    storage_account_name: str = Field(default="", validation_alias="AzureWebJobsStorage__accountName")
    storage_client_id: str = Field(default="", validation_alias="AzureWebJobsStorage__clientId")
    # Outside Azure's public cloud (Azure Government for GCC High, Azure China) the service URIs
    # are set, as the Functions host reads them for its own triggers.
    storage_blob_service_uri: str = Field(default="", validation_alias="AzureWebJobsStorage__blobServiceUri")
    storage_queue_service_uri: str = Field(default="", validation_alias="AzureWebJobsStorage__queueServiceUri")
    storage_table_service_uri: str = Field(default="", validation_alias="AzureWebJobsStorage__tableServiceUri")
    # The window ledger: Azure Table storage (no limit a bank reaches, summaries in constant memory;
    # docs/scale.md), or the append blobs of earlier versions (windows of at most ~800,000 outcomes).
    ledger_store: Literal["table", "blob"] = "table"
    ledger_table: str = Field(default="archiveledger", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$")
    # Delivery records (one per mailbox and record, held while the item is written): Azure Table
    # storage (two table transactions per pair instead of three blob writes; docs/scale.md), or
    # blobs under a lease in the state container, as earlier versions kept them.
    delivery_store: Literal["table", "blob"] = "table"
    delivery_table: str = Field(default="archivedeliveries", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$")
    # Claim checks (each record's raw bytes, written once): Azure Table storage (a table transaction
    # instead of a blob write; blobs written before are still read), or blobs in RECORDS_CONTAINER.
    record_store: Literal["table", "blob"] = "table"
    record_table: str = Field(default="archiverecords", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$")
    records_container: str = "archive-records"
    state_container: str = "archive-state"

    # --- Mapping ----------------------------------------------------------------------------
    custom_mapping_enabled: bool = True
    auto_mapping_enabled: bool = True
    default_phone_region: str | None = None
    mapping_blob: str = Field(default="mapping/phone-to-email.csv", description="blob in the state container")
    mapping_file: str = Field(default="", description="a local CSV path instead of the blob (local runs)")
    directory_phone_mapping_enabled: bool = Field(
        default=False,
        description="after CSV and email: the Entra ID user whose mobilePhone/businessPhones is the number"
    )
    catch_all_mailbox: str = Field(default="", description="records no participant maps to go here instead of poison")
    directory: Literal["graph", "file"] = "graph"
    directory_file: str = ""

    # --- Delivery ---------------------------------------------------------------------------
    mailbox_writer: Literal["graph", "eml"] = "graph"
    eml_mailbox_dir: str = ""
    max_item_mb: float = Field(default=10, gt=0, le=MAX_ITEM_MB_CEILING)
    archive_folder_name: str = "WhatsApp Archiver"
    archive_item_class: str = "IPM.Note.WhatsAppArchiver"

    # --- Daily transcripts (off: one item per record, as the documented connector does) ------
    daily_transcripts: bool = Field(default=False, description="one item per chat per day instead of one per record")
    transcript_time_zone: str = Field(default="UTC", description="IANA zone whose calendar days the transcripts cover")
    transcript_delay_minutes: int = Field(
        default=30, ge=0, le=24 * 60,
        description="after a hand-off, wait this long before composing the days that are over"
    )
    transcript_max_wait_hours: float = Field(
        default=6, gt=0, le=72,
        description="compose anyway after this long, even if some records of the window are unsettled"
    )

    # --- Evidence (the captured bytes under WORM retention; docs/deploy.md) ----------------------
    evidence_container: str = "archive-evidence"
    evidence_retention_days: int = Field(
        default=2557, ge=1, le=146_000, description="days the evidence container's time-based retention keeps each blob"
    )

    # --- Custodians' chat exports (the chat-exports container) ---------------------------------
    chat_export_report_delay_seconds: int = Field(
        default=60, ge=0, le=3600, description="after an export is handed off, wait this long before its report is "
                                       "written again with the records' outcomes (then five times as long)"
    )

    # --- Capture vendors' EML drops (the eml-drops container of the SFTP account) ---------------
    # The code reads the drop account as the trigger does: a connection string (local, Azurite), or
    # the account's blob endpoint with the app's identity. Unset: the drop container is looked for in
    # AzureWebJobsStorage (local runs keep everything in one account).
    eml_drops_connection: str = Field(default="", validation_alias="EmlDrops")
    eml_drops_blob_service_uri: str = Field(default="", validation_alias="EmlDrops__blobServiceUri")
    eml_drops_client_id: str = Field(default="", validation_alias="EmlDrops__clientId")
    eml_phone_pattern: str = Field(
        default="", max_length=200,
        description="where the vendor writes phone numbers in EML addresses (a regular expression; empty: a run "
                    "of 7 to 15 digits, with an optional +, in the local part or the display name)",
    )
    eml_drop_report_delay_seconds: int = Field(
        default=60, ge=0, le=3600, description="after a drop is handed off, wait this long before its report is "
                                       "written again with the EMLs' outcomes (then five times as long)"
    )

    # --- Microsoft Graph ----------------------------------------------------------------------
    graph_cloud: Literal["global", "usgov", "dod", "china"] = "global"
    graph_base_url: str = ""
    graph_access_token: SecretStr = SecretStr("")
    graph_upload_sessions: bool = Field(
        default=True, description="attachments over 3 MB through upload sessions; off where the cloud lacks them"
    )
    graph_conversation_properties: bool = Field(
        default=True, description="set PidTagConversationTopic/Index so a chat's items form one conversation"
    )
    azure_client_id: str = Field(default="", description="client id of a user-assigned managed identity")
    # An app registration instead of the managed identity (secret or certificate from Key Vault):
    graph_tenant_id: str = ""
    graph_client_id: str = ""
    graph_client_secret: SecretStr = SecretStr("")
    graph_certificate: SecretStr = Field(
        default=SecretStr(""), description="PEM, or base64 PFX as a Key Vault certificate reference delivers it"
    )
    graph_certificate_path: str = ""
    graph_certificate_password: SecretStr = SecretStr("")

    # --- Status and the admin report ---------------------------------------------------------
    status_recent_windows: int = Field(default=14, ge=1, le=366)
    report_retention_days: int = Field(
        default=90, ge=1, le=3650, description="how long each window's admin report (JSON and CSV) is kept in storage"
    )

    @field_validator("default_phone_region", mode="before")
    @classmethod
    def _blank_region_is_none(cls, value: object) -> object:
        return value.strip().upper() or None if isinstance(value, str) else value

    @field_validator("records_container", "state_container", "evidence_container")
    @classmethod
    def _container_names(cls, value: str, info: ValidationInfo) -> str:
        return identifiers.container_name(value, str(info.field_name).upper())

    @field_validator("mapping_blob")
    @classmethod
    def _mapping_blob_name(cls, value: str) -> str:
        try:
            return identifiers.check_blob_name(value)
        except identifiers.UnsafeBlobName as error:
            raise ValueError(f"MAPPING_BLOB: {error}") from None

    @field_validator("eml_phone_pattern")
    @classmethod
    def _phone_pattern_compiles(cls, value: str) -> str:
        import re

        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"EML_PHONE_PATTERN: not a regular expression ({error})") from None
        return value

    @field_validator("eml_drops_blob_service_uri")
    @classmethod
    def _drop_endpoint(cls, value: str) -> str:
        if value and not value.startswith("https://"):
            raise ValueError("EmlDrops__blobServiceUri: an https:// blob endpoint")
        return value

    @field_validator("catch_all_mailbox")
    @classmethod
    def _catch_all_address(cls, value: str) -> str:
        return identifiers.mailbox_address(value.strip(), "CATCH_ALL_MAILBOX") if value.strip() else ""

    @field_validator("transcript_time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"TRANSCRIPT_TIME_ZONE: {value!r} is not an IANA time zone (e.g. Europe/London)") from None
        return value

    @model_validator(mode="after")
    def _overlap_shorter_than_a_window(self) -> Settings:
        if self.listing_overlap_minutes >= self.max_window_days * 24 * 60:
            raise ValueError("LISTING_OVERLAP_MINUTES must be shorter than MAX_WINDOW_DAYS")
        return self

    @model_validator(mode="after")
    def _local_writers_need_paths(self) -> Settings:
        if self.mailbox_writer == "eml" and not self.eml_mailbox_dir:
            raise ValueError("MAILBOX_WRITER=eml needs EML_MAILBOX_DIR")
        if self.directory == "file" and not self.directory_file:
            raise ValueError("DIRECTORY=file needs DIRECTORY_FILE")
        return self

    @property
    def transcript_zone(self):
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.transcript_time_zone)

    @property
    def max_item_bytes(self) -> int:
        return int(self.max_item_mb * 1024 * 1024)



@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
