data "azurerm_client_config" "current" {}

locals {
  # Stable per subscription and resource group, like Bicep's uniqueString(resourceGroup().id).
  suffix               = substr(sha1("${var.subscription_id}/${var.resource_group_name}"), 0, 13)
  storage_account_name = substr("${var.name_prefix}st${local.suffix}", 0, 24)
  key_vault_name       = substr("${var.name_prefix}kv${local.suffix}", 0, 24)
  function_app_name    = "${var.name_prefix}-func-${local.suffix}"
  # The Functions host ID, set explicitly (AzureFunctionsWebHost__hostid in app.tf): the Event Grid
  # blob trigger passes every event through the host queue azure-webjobs-blobtrigger-<host id>
  # (Blobs extension, BlobTriggerQueueWriter), and that queue must have a known name so that its
  # role can be scoped to it. On Flex Consumption the default host ID is an MD5 hash of the site
  # name (azure-functions-host, ScriptHostIdProvider), which Bicep cannot compute; both templates
  # set the same one. The app name is a valid host ID: lowercase letters, digits and single
  # dashes, at most 29 characters (32 allowed), and the storage account is this app alone.
  function_host_id = lower(local.function_app_name)

  # Queue names are fixed in the code (shared/settings.py); the host creates a -poison queue on
  # first use, they are created here so that the poison alert and `poison list` work from day one.
  queue_names = [
    "listing",
    "items",
    "transcripts",
    "listing-poison",
    "items-poison",
    "transcripts-poison",
    local.blob_trigger_host_queue_name,
    local.blob_trigger_poison_queue_name,
  ]
  # The Event Grid blob trigger (chat_export_blob) uses two queues of its own in AzureWebJobsStorage
  # (Blobs extension 5.x): the webhook puts each BlobCreated event on the host queue
  # azure-webjobs-blobtrigger-<host id>, which the host then reads to run the function, and a blob
  # whose function fails five times goes to webjobs-blobtrigger-poison. The host creates both on
  # first use; they are created here so that their roles can be scoped to them.
  blob_trigger_host_queue_name   = "azure-webjobs-blobtrigger-${local.function_host_id}"
  blob_trigger_poison_queue_name = "webjobs-blobtrigger-poison"

  deployment_container_name = "app-package"
  records_container_name    = "archive-records"
  state_container_name      = "archive-state"
  # Custodian collections: WhatsApp Export chat files (.zip or .txt) and their sidecars FILE.json,
  # read by the Event Grid blob trigger chat_export_blob (path chat-exports/{name}), which writes
  # FILE.report.json beside them. The container name is fixed in the code (the trigger path).
  chat_exports_container_name = "chat-exports"
  # The blob-triggered function, as the code registers it: the Event Grid subscription (events.tf)
  # delivers to it by this name (Host.Functions.<name>).
  chat_exports_function_name = "chat_export_blob"
  # The evidence store (EVIDENCE_CONTAINER, default archive-evidence in shared/settings.py): the raw
  # captured bytes, the chain's manifests and the final admin reports (raw/<kind>/<sha256>, block
  # blobs created once),
  # under a time-based retention policy. Not in container_names: it has a policy, metadata and a
  # role of its own (evidence.tf).
  evidence_container_name = "archive-evidence"
  # The Functions host's own containers in AzureWebJobsStorage: azure-webjobs-hosts (host and timer
  # singleton leases, the timer's schedule monitor, the host id) and azure-webjobs-secrets (function
  # and host keys). The host creates them if they are missing; they are created here so that its
  # roles can be scoped to them (a role assignment needs its scope to exist).
  hosts_container_name   = "azure-webjobs-hosts"
  secrets_container_name = "azure-webjobs-secrets"
  container_names = [
    local.deployment_container_name,
    local.records_container_name,
    local.state_container_name,
    local.hosts_container_name,
    local.secrets_container_name,
    local.chat_exports_container_name,
  ]
  # The window ledger (LEDGER_TABLE, default archiveledger in shared/settings.py). The code creates
  # it on first use if it is missing; it is created here so that its role can be scoped to it.
  ledger_table_name = "archiveledger"
  # The delivery records (DELIVERY_TABLE, default archivedeliveries in shared/settings.py), the same way.
  delivery_table_name = "archivedeliveries"
  # The claim checks (RECORD_TABLE, default archiverecords in shared/settings.py), the same way.
  record_table_name = "archiverecords"
  table_names = [
    local.ledger_table_name,
    local.delivery_table_name,
    local.record_table_name,
  ]

  # The identity's data role on each container, assigned on that container only (the same table as
  # containerRoles in infra/bicep/main.bicep; tests/test_infra.py keeps them equal).
  #   app-package      Contributor: the Flex Consumption platform writes and reads the deployment
  #                    package with this identity (functionAppConfig.deployment.storage).
  #   archive-records  Contributor: claim checks, written once and read back. The code never
  #                    deletes here; Contributor still includes delete (no built-in role has write
  #                    without delete), and blob soft delete (7 days) covers a deletion.
  #   archive-state    Contributor: watermark (ETag), ledger (append blobs), mapping and its
  #                    history, delivery records under blob leases, transcript staging (deleted once
  #                    composed) and admin reports (purged after REPORT_RETENTION_DAYS).
  #   azure-webjobs-*  Owner: the role the Functions documentation names for identity-based
  #                    AzureWebJobsStorage ("Connecting to host storage with an identity": Storage
  #                    Blob Data Owner covers the host's coordination blobs and its key store).
  #   chat-exports     Contributor: the blob trigger reads each upload and its sidecar FILE.json
  #                    (the host reads the blob, with this identity, through AzureWebJobsStorage),
  #                    and the code writes FILE.report.json beside them. No account-level blob role
  #                    exists to cover it: every blob role here is on its own container. The code
  #                    never deletes here; Contributor still includes delete (no built-in role
  #                    writes without it), and blob soft delete (7 days) covers a deletion.
  #   archive-evidence not in this table: a custom role without any delete right (evidence.tf), as
  #                    no built-in blob role writes without delete.
  # Owner is kept off the data containers: over Contributor it adds POSIX ACL and ownership changes,
  # blob tags, permanent deletion of soft-deleted blobs and versions, and immutability-policy bypass,
  # none of which the code uses and all of which weaken the evidence kept there. (The Functions docs
  # suggest Owner for a blob trigger; in the watched container an Event Grid blob trigger only reads
  # the blob and its properties, and its bookkeeping lives in the host containers and queues.)
  container_roles = {
    "app-package"           = "Storage Blob Data Contributor"
    "archive-records"       = "Storage Blob Data Contributor"
    "archive-state"         = "Storage Blob Data Contributor"
    "azure-webjobs-hosts"   = "Storage Blob Data Owner"
    "azure-webjobs-secrets" = "Storage Blob Data Owner"
    "chat-exports"          = "Storage Blob Data Contributor"
  }
}

resource "azurerm_resource_group" "main" {
  name     = var.resource_group_name
  location = var.location
}

# --- Identity ------------------------------------------------------------------------------------

# One user-assigned identity for everything: host storage, the code's storage clients, Key Vault
# references, keyless Application Insights and Microsoft Graph (graph.tf).
resource "azurerm_user_assigned_identity" "app" {
  name                = "${var.name_prefix}-id"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
}

# --- Storage -------------------------------------------------------------------------------------

resource "azurerm_storage_account" "main" {
  #checkov:skip=CKV_AZURE_35:No VNet in this deployment: the Flex app reaches storage over its public endpoint, authenticated by Entra ID only (shared keys off). Add VNet integration and private endpoints where policy requires (docs/deploy.md).
  #checkov:skip=CKV_AZURE_59:Public network access stays on for the same reason as CKV_AZURE_35: without a VNet the app needs the public endpoint; every request needs an Entra ID token and an RBAC role.
  #checkov:skip=CKV2_AZURE_33:No private endpoint: no VNet in this deployment, see CKV_AZURE_35.
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys: a customer-managed key needs a key, its rotation and vault access of its own; add one if your policy demands it.
  #checkov:skip=CKV_AZURE_33:Classic Storage Analytics queue logging needs shared keys, which are disabled; queue reads, writes and deletes go to Log Analytics through azurerm_monitor_diagnostic_setting.storage_queue instead.
  name                             = local.storage_account_name
  resource_group_name              = azurerm_resource_group.main.name
  location                         = azurerm_resource_group.main.location
  account_kind                     = "StorageV2"
  account_tier                     = "Standard"
  account_replication_type         = var.storage_sku
  access_tier                      = "Hot"
  shared_access_key_enabled        = false
  default_to_oauth_authentication  = true
  allow_nested_items_to_be_public  = false
  cross_tenant_replication_enabled = false
  min_tls_version                  = "TLS1_2"
  https_traffic_only_enabled       = true
  public_network_access_enabled    = true

  network_rules {
    default_action = "Allow"
    bypass         = ["AzureServices"]
  }

  blob_properties {
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }
}

resource "azurerm_storage_container" "main" {
  #checkov:skip=CKV2_AZURE_21:This check wants azurerm_log_analytics_storage_insights, which reads blobs with the account key; shared keys are disabled. Blob reads, writes and deletes go to Log Analytics through azurerm_monitor_diagnostic_setting.storage_blob instead.
  for_each              = toset(local.container_names)
  name                  = each.value
  storage_account_id    = azurerm_storage_account.main.id
  container_access_type = "private"
}

resource "azurerm_storage_queue" "main" {
  for_each           = toset(local.queue_names)
  name               = each.value
  storage_account_id = azurerm_storage_account.main.id
}

# Tables through azapi (Resource Manager), not azurerm_storage_table: that resource reads and writes
# the table's access policies on the data plane with Shared Key only, which this account refuses
# (shared keys are off), so it could neither create nor refresh the table.
resource "azapi_resource" "table" {
  for_each  = toset(local.table_names)
  type      = "Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01"
  name      = each.value
  parent_id = "${azurerm_storage_account.main.id}/tableServices/default"
}

# Admin reports: the app writes each window's report to reports/<window id>.json and .csv in the
# state container; this rule deletes them report_retention_days after their last write. It matches
# that prefix only: the ledger, the watermark and the mapping history in the same container are
# evidence, and no rule touches them. The app also purges reports older than REPORT_RETENTION_DAYS
# itself (so local runs on Azurite honour the setting too); this rule is the platform's guarantee.
# Deleted reports stay recoverable for the blob soft delete days above.
resource "azurerm_storage_management_policy" "main" {
  storage_account_id = azurerm_storage_account.main.id
  rule {
    name    = "deleteOldReports"
    enabled = true
    filters {
      blob_types   = ["blockBlob"]
      prefix_match = ["${local.state_container_name}/reports/"]
    }
    actions {
      base_blob {
        delete_after_days_since_modification_greater_than = var.report_retention_days
      }
    }
  }
}

# Storage roles: each container, queue and table gets the identity's role on itself only; nothing
# is granted on the storage account's data as a whole. Azure RBAC scopes blob data roles to a
# single container, queue data roles to a single queue and table data roles to a single table
# (Storage docs, "Authorize access to blobs/queues/tables using Microsoft Entra ID", Resource
# scope); a container, queue or table created later gets no access from these assignments. The
# scopes are ARM resource IDs, built here rather than taken from the container and queue resources,
# whose id is not always the ARM ID in azurerm.
resource "azurerm_role_assignment" "container" {
  for_each             = local.container_roles
  scope                = "${azurerm_storage_account.main.id}/blobServices/default/containers/${azurerm_storage_container.main[each.key].name}"
  role_definition_name = each.value
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# Storage Queue Data Contributor on each queue, the narrowest built-in role that covers what both
# sides do there: the triggers (listing, items, transcripts) receive, update and delete messages and
# the host creates and writes the -poison queues when retries run out (Functions docs: queue trigger
# Reader + Message Processor, output Contributor or Message Sender); the code sends with
# create-on-first-use (Create Queue is queues/write, which only Contributor among the queue data
# roles has), reads queue depth (queue metadata) and receives, replays and purges poison messages.
# The blob trigger queues the same way: the webhook creates the host queue if missing and sends each
# event to it, the host receives and deletes, and after five failures creates and writes
# webjobs-blobtrigger-poison (Functions docs, blob trigger: Storage Queue Data Contributor, for the
# poison queue). Contributor also permits deleting the queue itself, which nothing here does.
resource "azurerm_role_assignment" "queue" {
  for_each             = toset(local.queue_names)
  scope                = "${azurerm_storage_account.main.id}/queueServices/default/queues/${azurerm_storage_queue.main[each.key].name}"
  role_definition_name = "Storage Queue Data Contributor"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# Reader (control plane, read-only, no data access) on the storage account: the Functions host's
# storage health check lists the account's containers every 30 seconds (azure-functions-host,
# WebJobsStorageHealthCheck: GetBlobContainersAsync), and List Containers is an account-level
# operation (blobServices/containers/read) that no container-scoped role grants. Reader is the only
# built-in role that allows it without any blob or queue data action; it cannot read keys (listKeys
# is an action, not a read). Without it the host reports AzureWebJobsStorage unhealthy.
resource "azurerm_role_assignment" "storage_reader" {
  scope                = azurerm_storage_account.main.id
  role_definition_name = "Reader"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# Storage Table Data Contributor on each table, the only built-in table data role that writes
# (Storage Table Data Reader only reads): the ledger creates its table on first use if it is
# missing (Create Table is tables/write), reads records, counters and windows by point reads and
# queries, and writes them with inserts, upserts and entity-group transactions that replace with an
# ETag (entities/add, update and write); the delivery records the same way, with inserts, point
# reads and merges that hold an ETag. Scoped to each table, not the account: the identity can read
# and write these tables only, and no other table in the account, present or future.
# Contributor also permits deleting entities and the table itself, which the code never does.
resource "azurerm_role_assignment" "table" {
  for_each             = toset(local.table_names)
  scope                = "${azurerm_storage_account.main.id}/tableServices/default/tables/${azapi_resource.table[each.key].name}"
  role_definition_name = "Storage Table Data Contributor"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}
