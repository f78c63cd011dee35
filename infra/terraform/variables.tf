# --- Subscription, naming, region, cloud ---------------------------------------------------------

variable "subscription_id" {
  description = "Azure subscription to deploy into."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group created for the connector."
  type        = string
}

variable "name_prefix" {
  description = "Short prefix for every resource name: lowercase letters and digits, 2 to 10 characters."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]{2,10}$", var.name_prefix))
    error_message = "name_prefix: 2 to 10 lowercase letters or digits."
  }
}

variable "location" {
  description = "Azure region; it must offer the Flex Consumption plan with Python 3.13."
  type        = string
}

variable "graph_cloud" {
  description = "GRAPH_CLOUD and the cloud of every provider: global (also GCC), usgov (GCC High), dod, china."
  type        = string
  default     = "global"
  validation {
    condition     = contains(["global", "usgov", "dod", "china"], var.graph_cloud)
    error_message = "graph_cloud: global, usgov, dod or china."
  }
}

variable "storage_sku" {
  description = "Storage redundancy (account_replication_type). The account holds every record until it is archived."
  type        = string
  default     = "GRS"
  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "GZRS"], var.storage_sku)
    error_message = "storage_sku: LRS, ZRS, GRS or GZRS."
  }
}

variable "maximum_instance_count" {
  description = "Upper bound of Flex Consumption instances (each queue function scales out to it)."
  type        = number
  default     = 40
  validation {
    condition     = var.maximum_instance_count >= 1 && var.maximum_instance_count <= 1000
    error_message = "maximum_instance_count: 1 to 1000."
  }
}

variable "instance_memory_mb" {
  description = "Memory of one Flex Consumption instance: 512, 2048 or 4096."
  type        = number
  default     = 2048
  validation {
    condition     = contains([512, 2048, 4096], var.instance_memory_mb)
    error_message = "instance_memory_mb: 512, 2048 or 4096."
  }
}

variable "log_retention_days" {
  description = "Days the Log Analytics workspace keeps the app logs."
  type        = number
  default     = 90
}

variable "alert_email" {
  description = "Alerts go to this address."
  type        = string
}

variable "function_failure_threshold" {
  description = "Function failures in one hour above which the failure alert fires (queue retries fail on purpose)."
  type        = number
  default     = 5
}

# --- Microsoft 365 -------------------------------------------------------------------------------

variable "graph_mail_tenant_wide" {
  description = <<-EOT
    Grant the Graph application role Mail.ReadWrite tenant-wide to the managed identity. Set it to
    false once infra/scripts/scope-exchange-rbac.ps1 has scoped Mail.ReadWrite to the archived users'
    group in Exchange Online (or before the first run, if you scope first): otherwise the next apply
    restores the tenant-wide grant the script removed.
  EOT
  type        = bool
  default     = true
}

variable "graph_app_client_id" {
  description = "Client id of an app registration to use for Graph instead of the managed identity; empty: the managed identity."
  type        = string
  default     = ""
}

variable "graph_certificate_name" {
  description = "Name of a Key Vault certificate of that app registration (imported after deployment); empty: none."
  type        = string
  default     = ""
}

# --- TeleMessage ---------------------------------------------------------------------------------

variable "telemessage_base_url" {
  description = "TELEMESSAGE_BASE_URL: the TeleMessage archive API of your account."
  type        = string
}

variable "telemessage_username" {
  description = "TeleMessage account user name; stored in Key Vault (and in the Terraform state: use an encrypted backend)."
  type        = string
  sensitive   = true
}

variable "telemessage_password" {
  description = "TeleMessage account password; stored in Key Vault (and in the Terraform state: use an encrypted backend)."
  type        = string
  sensitive   = true
}

variable "telemessage_page_size" {
  description = "TELEMESSAGE_PAGE_SIZE: records per listing page (1-1000)."
  type        = number
  default     = 200
}

# --- WhatsApp Business Platform (Cloud API) webhooks: optional -----------------------------------
# Leave the three secrets empty for a deployment without this source: nothing is stored for them and
# the app settings are empty (the webhook then refuses every delivery with 503). Each one given is
# stored in Key Vault (and in the Terraform state: use an encrypted backend) and set as a Key Vault
# reference.

variable "whatsapp_verify_token" {
  description = "WHATSAPP_VERIFY_TOKEN: the Verify token typed into Meta's App Dashboard (the GET handshake); empty: the source is off."
  type        = string
  default     = ""
  sensitive   = true
  nullable    = false
}

variable "whatsapp_app_secret" {
  description = "WHATSAPP_APP_SECRET: the Meta app secret the webhook bodies are signed with (two, comma-separated, while rotating); empty: the webhook refuses every delivery."
  type        = string
  default     = ""
  sensitive   = true
  nullable    = false
}

variable "whatsapp_access_token" {
  description = "WHATSAPP_ACCESS_TOKEN: a Meta system-user access token, for media downloads; empty: none."
  type        = string
  default     = ""
  sensitive   = true
  nullable    = false
}

variable "whatsapp_graph_base_url" {
  description = "WHATSAPP_GRAPH_BASE_URL: Meta's Graph API (media downloads)."
  type        = string
  default     = "https://graph.facebook.com"
}

variable "whatsapp_graph_version" {
  description = "WHATSAPP_GRAPH_VERSION: the pinned Graph API version, such as v26.0."
  type        = string
  default     = "v26.0"
  validation {
    condition     = can(regex("^v[0-9]{1,3}\\.0$", var.whatsapp_graph_version))
    error_message = "whatsapp_graph_version: v<major>.0, such as v26.0."
  }
}

variable "whatsapp_phone_number_ids" {
  description = "WHATSAPP_PHONE_NUMBER_IDS: the firm's business numbers (Meta phone_number_id, comma-separated) whose API sends whatsapp_outbound takes; empty: it takes none."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^[0-9, ]{0,4000}$", var.whatsapp_phone_number_ids))
    error_message = "whatsapp_phone_number_ids: phone_number_id digits, comma-separated."
  }
}

variable "webhook_signature_failure_threshold" {
  description = "WhatsApp webhook deliveries refused for a missing or wrong signature in 15 minutes above which the signature alert fires."
  type        = number
  default     = 5
}

# --- Schedule and windows ------------------------------------------------------------------------

variable "archive_schedule" {
  description = "ARCHIVE_SCHEDULE: NCRONTAB with 6 fields, in UTC. Daily at 02:00 UTC by default."
  type        = string
  default     = "0 0 2 * * *"
  validation {
    condition     = length(split(" ", trimspace(var.archive_schedule))) == 6
    error_message = "archive_schedule: NCRONTAB has six fields: second minute hour day month day-of-week."
  }
}

variable "first_run_lookback_hours" {
  description = "FIRST_RUN_LOOKBACK_HOURS: the first window when there is no watermark yet."
  type        = number
  default     = 24
}

variable "slice_minutes" {
  description = "SLICE_MINUTES: capture time per listing work item."
  type        = number
  default     = 60
}

variable "max_window_days" {
  description = "MAX_WINDOW_DAYS: longest window one run hands off."
  type        = number
  default     = 31
}

variable "listing_overlap_minutes" {
  description = "LISTING_OVERLAP_MINUTES: capture time re-listed before the watermark (repeats are skipped)."
  type        = number
  default     = 0
}

variable "capture_settle_minutes" {
  description = "CAPTURE_SETTLE_MINUTES: windows end this long before now."
  type        = number
  default     = 15
}

# --- Mapping -------------------------------------------------------------------------------------

variable "custom_mapping_enabled" {
  description = "CUSTOM_MAPPING_ENABLED: the phone -> email CSV (python -m shared.cli mapping upload)."
  type        = bool
  default     = true
}

variable "auto_mapping_enabled" {
  description = "AUTO_MAPPING_ENABLED: the participant email property of a record."
  type        = bool
  default     = true
}

variable "directory_phone_mapping_enabled" {
  description = "DIRECTORY_PHONE_MAPPING_ENABLED: the Entra ID user whose mobilePhone/businessPhones is the number."
  type        = bool
  default     = false
}

variable "default_phone_region" {
  description = "DEFAULT_PHONE_REGION: region such as GB for numbers written without a country code; empty for none."
  type        = string
  default     = ""
}

variable "mapping_blob" {
  description = "MAPPING_BLOB: the mapping CSV in the state container."
  type        = string
  default     = "mapping/phone-to-email.csv"
}

variable "catch_all_mailbox" {
  description = "CATCH_ALL_MAILBOX: records no participant maps to go here instead of poison; empty for none."
  type        = string
  default     = ""
}

# --- Delivery ------------------------------------------------------------------------------------

variable "max_item_mb" {
  description = "MAX_ITEM_MB: largest rendered item in MB (at most 150)."
  type        = number
  default     = 10
}

variable "archive_folder_name" {
  description = "ARCHIVE_FOLDER_NAME: the folder under the mailbox root."
  type        = string
  default     = "WhatsApp Archiver"
}

variable "archive_item_class" {
  description = "ARCHIVE_ITEM_CLASS: item class of archived items; keep it derived from IPM.Note."
  type        = string
  default     = "IPM.Note.WhatsAppArchiver"
}

variable "graph_upload_sessions" {
  description = "GRAPH_UPLOAD_SESSIONS: attachments over 3 MB through upload sessions; false where the cloud lacks them."
  type        = bool
  default     = true
}

variable "graph_conversation_properties" {
  description = "GRAPH_CONVERSATION_PROPERTIES: group a chat into one Outlook conversation."
  type        = bool
  default     = true
}

# --- Daily transcripts and status ----------------------------------------------------------------

variable "daily_transcripts" {
  description = "DAILY_TRANSCRIPTS: one item per chat, day and mailbox instead of one per record."
  type        = bool
  default     = false
}

variable "transcript_time_zone" {
  description = "TRANSCRIPT_TIME_ZONE: IANA zone whose calendar days transcripts cover."
  type        = string
  default     = "UTC"
}

variable "transcript_delay_minutes" {
  description = "TRANSCRIPT_DELAY_MINUTES: wait after a hand-off before composing the days that are over."
  type        = number
  default     = 30
}

variable "chat_export_report_delay_seconds" {
  description = "CHAT_EXPORT_REPORT_DELAY_SECONDS: after a chat export is handed off, wait this long before its report is written again with the outcomes (then five times as long)."
  type        = number
  default     = 60
  validation {
    condition     = var.chat_export_report_delay_seconds >= 0 && var.chat_export_report_delay_seconds <= 3600
    error_message = "chat_export_report_delay_seconds must be 0 to 3600."
  }
}

variable "transcript_max_wait_hours" {
  description = "TRANSCRIPT_MAX_WAIT_HOURS: compose anyway after this long."
  type        = number
  default     = 6
}

variable "ledger_store" {
  description = "LEDGER_STORE: where the window ledger is kept, table (the ledger table) or blob (append blobs in the state container, as earlier versions kept it; windows of at most about 800,000 outcomes)."
  type        = string
  default     = "table"
  validation {
    condition     = contains(["table", "blob"], var.ledger_store)
    error_message = "ledger_store: table or blob."
  }
}

variable "delivery_store" {
  description = "DELIVERY_STORE: where the delivery records (one per mailbox and record, held while the item is written) are kept, table (the delivery table; two table transactions per archived pair) or blob (blobs under a lease in the state container, as earlier versions kept them)."
  type        = string
  default     = "table"
  validation {
    condition     = contains(["table", "blob"], var.delivery_store)
    error_message = "delivery_store: table or blob."
  }
}

variable "record_store" {
  description = "RECORD_STORE: where the claim checks (each record's raw bytes, written once) are kept, table (the records table; a table transaction per record, blobs written before still read) or blob (one blob per record in the records container, as earlier versions kept them)."
  type        = string
  default     = "table"
  validation {
    condition     = contains(["table", "blob"], var.record_store)
    error_message = "record_store: table or blob."
  }
}

variable "status_recent_windows" {
  description = "STATUS_RECENT_WINDOWS: windows shown by archive_status."
  type        = number
  default     = 14
}

variable "report_retention_days" {
  description = "REPORT_RETENTION_DAYS: days each window's admin report (reports/<window id>.json and .csv in the state container) is kept; a lifecycle rule deletes older ones."
  type        = number
  default     = 90
  validation {
    condition     = var.report_retention_days >= 1 && var.report_retention_days <= 3650 && floor(var.report_retention_days) == var.report_retention_days
    error_message = "report_retention_days: a whole number of days, 1 to 3650."
  }
}

# --- Chat exports (custodian collections) --------------------------------------------------------

variable "create_event_subscriptions" {
  description = "Create the Event Grid subscription that delivers uploads to the chat-exports container to the function chat_export_blob. Set false only for the very first apply, before the code is published: the subscription is validated against the deployed function and needs its blobs_extension key (docs/deploy.md, section 11). Keep it true afterwards: false destroys the subscription."
  type        = bool
  default     = true
  nullable    = false
}

# --- Evidence store (WORM, issue 18; evidence.tf) -------------------------------------------------

variable "evidence_retention_days" {
  description = "EVIDENCE_RETENTION_DAYS: days the evidence container keeps every blob under its time-based retention policy (WORM), counted from creation (from the last append for an append blob); 2557 days is 7 years. While the policy is unlocked this variable sets it; once the firm has locked it, it can only be extended, with the CLI, and this variable must then equal the policy's period (docs/deploy.md)."
  type        = number
  default     = 2557
  nullable    = false
  validation {
    condition     = var.evidence_retention_days >= 1 && var.evidence_retention_days <= 146000 && floor(var.evidence_retention_days) == var.evidence_retention_days
    error_message = "evidence_retention_days: a whole number of days, 1 to 146000."
  }
}

variable "evidence_legal_hold" {
  description = "A legal hold on the evidence container is requested: the container gets the metadata legal_hold_requested=true and the output evidence_legal_hold_command gives the command that places the hold. A legal hold is an action with case tags (setLegalHold), not a property a template can declare; it is placed and cleared by a person (docs/deploy.md)."
  type        = bool
  default     = false
  nullable    = false
}

# --- Vendor EML drop zone (SFTP, issue 21; eml_drops.tf) -------------------------------------------

variable "eml_drop_zone" {
  description = "Create the vendor EML drop zone: a storage account of its own with SFTP (hierarchical namespace), the container eml-drops, the vendor's SFTP local user and the Event Grid subscription that hands each upload to the function eml_drop_blob. Off by default: Azure bills SFTP by the hour while it is enabled on an account, used or not (about $0.30 an hour, some $220 a month, at US list prices; docs/deploy.md)."
  type        = bool
  default     = false
  nullable    = false
}

variable "eml_drop_ssh_public_key" {
  description = "The capture vendor's SSH public key for the SFTP local user, OpenSSH form (ssh-rsa of 2048 bits or more, ecdsa-sha2-nistp256 or ecdsa-sha2-nistp384; Azure SFTP takes no ed25519 key); while rotating, the new and the old, comma-separated (at most 10). A public key, not a secret. Required with eml_drop_zone."
  type        = string
  default     = ""
  nullable    = false
  validation {
    # Cross-variable validation: Terraform 1.9 and later (versions.tf).
    condition     = !var.eml_drop_zone || length([for key in split(",", var.eml_drop_ssh_public_key) : key if trimspace(key) != ""]) > 0
    error_message = "eml_drop_ssh_public_key: eml_drop_zone = true needs the vendor's SSH public key (docs/deploy.md, Vendor EML drop zone)."
  }
  validation {
    condition = alltrue([for key in split(",", var.eml_drop_ssh_public_key) : trimspace(key) == "" || can(regex("^(ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384) [A-Za-z0-9+/]+={0,3}( .*)?$", trimspace(key)))]) && length(split(",", var.eml_drop_ssh_public_key)) <= 10
    error_message = "eml_drop_ssh_public_key: at most 10 comma-separated OpenSSH public keys, each ssh-rsa, ecdsa-sha2-nistp256 or ecdsa-sha2-nistp384 (Azure SFTP takes no ed25519 key)."
  }
}

variable "eml_drop_user_name" {
  description = "User name of the vendor's SFTP local user: 3 to 64 lowercase letters and digits (Azure local user names). The vendor logs in as <account>.<user>."
  type        = string
  default     = "emlvendor"
  nullable    = false
  validation {
    condition     = can(regex("^[a-z0-9]{3,64}$", var.eml_drop_user_name))
    error_message = "eml_drop_user_name: 3 to 64 lowercase letters and digits."
  }
}

variable "eml_phone_pattern" {
  description = "EML_PHONE_PATTERN: where the vendor writes phone numbers in EML addresses, a regular expression; empty: a run of 7 to 15 digits, with an optional +, in the local part or the display name."
  type        = string
  default     = ""
  nullable    = false
}

variable "eml_drop_report_delay_seconds" {
  description = "EML_DROP_REPORT_DELAY_SECONDS: after a drop is handed off, wait this long before its report is written again with the EMLs' outcomes (then five times as long)."
  type        = number
  default     = 60
  validation {
    condition     = var.eml_drop_report_delay_seconds >= 0 && var.eml_drop_report_delay_seconds <= 3600
    error_message = "eml_drop_report_delay_seconds must be 0 to 3600."
  }
}
