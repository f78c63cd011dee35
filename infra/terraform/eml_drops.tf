# Vendor EML drop zone (SFTP, issue 21; docs/deploy.md, Vendor EML drop zone): the same as the drop
# zone sections of infra/bicep/main.bicep, behind var.eml_drop_zone.
#
# Capture vendors (Capture Mobile / TeleMessage) deliver ZIPs of EMLs over SFTP. Azure Blob Storage
# speaks SFTP only on an account with a hierarchical namespace, and "local users" are its only SFTP
# identities (Storage docs, "SSH File Transfer Protocol (SFTP) support for Azure Blob Storage"). The
# main account cannot be that account: its evidence container is under container-level WORM, which
# SFTP excludes (evidence.tf). Hence an account of its own with one container, eml-drops, which the
# vendor's local user has as its home. No WORM here (SFTP excludes it): the app copies every drop
# into the evidence container as it takes it (the code's part), and the vendor cannot delete.

locals {
  # 'dz', within the 24 characters of a storage account name like the others.
  eml_drop_storage_account_name = substr("${var.name_prefix}dz${local.suffix}", 0, 24)
  # The drop container (EML_DROPS_CONTAINER in shared/settings.py, the trigger's path eml-drops/{name}).
  eml_drops_container_name = "eml-drops"
  # The blob-triggered function, as the code registers it (Host.Functions.<name> in the webhook).
  eml_drops_function_name = "eml_drop_blob"
  # The vendor's public keys (comma-separated while rotating), and whether there is a login at all
  # (the variable's validation requires a key with the zone).
  eml_drop_ssh_public_keys = [for key in split(",", var.eml_drop_ssh_public_key) : trimspace(key) if trimspace(key) != ""]
  eml_drop_login           = var.eml_drop_zone && length(local.eml_drop_ssh_public_keys) > 0
}

# allow shared key access off (shared_access_key_enabled = false): an SFTP client authenticates as a
# local user with its SSH key, never with the account key ("Azure AD, shared access signature and
# account key authorization are not supported for the SFTP endpoint", SFTP known issues; a local
# user's sharedKey "is used for SMB authentication only", local user docs), and disallowing Shared
# Key rejects only requests signed with the account access keys ("Prevent Shared Key
# authorization"). Blob and container soft delete (7 days) are supported with a hierarchical
# namespace; blob versioning is not, so none.
resource "azurerm_storage_account" "eml_drops" {
  #checkov:skip=CKV_AZURE_35:The SFTP client of the vendor connects from the internet, and the Flex app (no VNet) reads drops over the public endpoint; a storage firewall would also refuse the app, which has no fixed outbound address (docs/deploy.md, Vendor EML drop zone).
  #checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: the SFTP endpoint is the public endpoint of the account; every SFTP login needs the SSH key of the vendor, every other request an Entra ID token and a role.
  #checkov:skip=CKV2_AZURE_33:No private endpoint: the vendor reaches SFTP over the internet, see CKV_AZURE_35.
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys, as on the main account: a customer-managed key needs a key, its rotation and vault access of its own; add one if your policy demands it.
  #checkov:skip=CKV_AZURE_33:Classic Storage Analytics queue logging needs shared keys, which are disabled; the account has no queue in use, and blob reads, writes and deletes (SFTP included) go to Log Analytics through azurerm_monitor_diagnostic_setting.eml_drop_blob.
  #checkov:skip=CKV_AZURE_244:Local users are the only identities Azure SFTP accepts, and SFTP is what the capture vendors deliver by; the one local user has an SSH key only, no password and no shared key, and no delete right (docs/deploy.md).
  count                            = var.eml_drop_zone ? 1 : 0
  name                             = local.eml_drop_storage_account_name
  resource_group_name              = azurerm_resource_group.main.name
  location                         = azurerm_resource_group.main.location
  account_kind                     = "StorageV2"
  account_tier                     = "Standard"
  account_replication_type         = var.storage_sku
  access_tier                      = "Hot"
  is_hns_enabled                   = true
  sftp_enabled                     = true
  local_user_enabled               = true
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

resource "azurerm_storage_container" "eml_drops" {
  #checkov:skip=CKV2_AZURE_21:This check wants azurerm_log_analytics_storage_insights, which reads blobs with the account key; shared keys are disabled. Blob reads, writes and deletes go to Log Analytics through azurerm_monitor_diagnostic_setting.eml_drop_blob instead.
  count                 = var.eml_drop_zone ? 1 : 0
  name                  = local.eml_drops_container_name
  storage_account_id    = azurerm_storage_account.eml_drops[0].id
  container_access_type = "private"
}

# The vendor's login: an SFTP local user (Microsoft.Storage/storageAccounts/localUsers, through azapi
# as in Bicep: azurerm_storage_account_local_user cannot set hasSharedKey) with SSH public keys only
# (no password, no SMB shared key), whose home is eml-drops, with the container permissions r (read
# file content: the vendor reads the reports the app writes beside its ZIPs), w (upload file), l
# (list) and c (upload a file that does not exist), and no d: drops are evidence (SFTP docs,
# Container permissions). A local user bypasses Azure RBAC and ABAC entirely, so these permissions
# are all it has. Up to 10 public keys per local user (docs/deploy.md, key rotation).
resource "azapi_resource" "eml_drop_user" {
  count     = local.eml_drop_login ? 1 : 0
  type      = "Microsoft.Storage/storageAccounts/localUsers@2023-05-01"
  name      = var.eml_drop_user_name
  parent_id = azurerm_storage_account.eml_drops[0].id
  body = {
    properties = {
      homeDirectory     = local.eml_drops_container_name
      hasSshKey         = true
      hasSshPassword    = false
      hasSharedKey      = false
      sshAuthorizedKeys = [for i, key in local.eml_drop_ssh_public_keys : { description = "capture vendor key ${i + 1}", key = key }]
      permissionScopes = [
        {
          permissions  = "rwlc"
          service      = "blob"
          resourceName = local.eml_drops_container_name
        },
      ]
    }
  }

  depends_on = [azurerm_storage_container.eml_drops]
}

# The identity's role on eml-drops: it reads every drop and writes nothing but the status reports
# <drop>.report.json beside them. Enforced twice:
# - A custom role without any delete or move action: no built-in blob role writes without delete,
#   and Storage Blob Data Contributor also holds the action containers/delete, which a role
#   assignment condition cannot restrict (conditions apply to data actions only). Data actions
#   (Storage docs, "Actions and attributes for Azure role assignment conditions for Azure Blob
#   Storage"): blobs/read (read a drop and its properties, list), blobs/write and blobs/add/action
#   (write a report). No action: the container is the template's, and the code never creates one.
# - An Azure ABAC condition (version 2.0) on the assignment: writing and creating are allowed only
#   on a blob path ending .report.json, so neither a drop nor its properties or metadata can be
#   changed. The Blob path attribute is the path inside the container; it is not among the
#   attributes the same page marks unsupported with a hierarchical namespace (blob index tags,
#   snapshots). StringLike's * matches across '/', so reports in a vendor's folder are covered.
locals {
  eml_drop_reporter_data_actions = [
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
  ]
  eml_drop_report_condition = <<-CONDITION
    (
     (
      !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'})
      AND
      !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'})
     )
     OR
     (
      @Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike '*.report.json'
     )
    )
  CONDITION
}

resource "azurerm_role_definition" "eml_drop_reporter" {
  count             = var.eml_drop_zone ? 1 : 0
  name              = "WhatsApp Archiver EML drop reader (${var.name_prefix}-${local.suffix})"
  scope             = azurerm_resource_group.main.id
  description       = "Read the vendor EML drops and write their .report.json status files (with the assignment condition); no delete."
  assignable_scopes = [azurerm_resource_group.main.id]

  permissions {
    actions          = []
    not_actions      = []
    data_actions     = local.eml_drop_reporter_data_actions
    not_data_actions = []
  }
}

# On the container, as every container role (main.tf): the scope is the ARM resource ID.
resource "azurerm_role_assignment" "eml_drops" {
  count              = var.eml_drop_zone ? 1 : 0
  scope              = "${azurerm_storage_account.eml_drops[0].id}/blobServices/default/containers/${azurerm_storage_container.eml_drops[0].name}"
  role_definition_id = azurerm_role_definition.eml_drop_reporter[0].role_definition_resource_id
  principal_id       = azurerm_user_assigned_identity.app.principal_id
  principal_type     = "ServicePrincipal"
  condition_version  = "2.0"
  condition          = local.eml_drop_report_condition
}

# The Functions host's part of the trigger eml_drop_blob (connection EmlDrops, Blobs extension 5.x,
# source EventGrid; azure-sdk-for-net, Microsoft.Azure.WebJobs.Extensions.Storage.Blobs,
# BlobListenerFactory and BlobTriggerAttributeBindingProvider): the webhook queues each event on
# the host queue azure-webjobs-blobtrigger-<host id> of AzureWebJobsStorage, the host reads the blob
# through the trigger's connection (the role above), and a blob that fails five times goes to
# webjobs-blobtrigger-poison in the queue service of the trigger's connection. An identity-based
# connection given as __blobServiceUri must also name that queue service, __queueServiceUri
# ("required for blob triggers", Functions docs, Blob storage connections). app.tf points
# EmlDrops__queueServiceUri at the main account's queue service, whose webjobs-blobtrigger-poison
# (and its role) exists for chat_export_blob: the drop account needs no queue and the identity no
# queue role on it, and every blob trigger poison lands in the queue `poison list` and the alert
# watch. (Microsoft recommends the blob account's own queue service; it requires only that the
# identity may read and write messages in the one it is given.) No Reader on the drop account: the
# host's storage health check lists the containers of AzureWebJobsStorage only.
#
# With the zone off, EmlDrops__blobServiceUri is the main account's blob endpoint: the code registers
# eml_drop_blob in every deployment, and the host builds the clients of a trigger's connection when
# it indexes the function, so the connection must resolve; without a subscription nothing ever
# delivers to it, and no eml-drops container exists in the main account.

resource "azurerm_monitor_diagnostic_setting" "eml_drop_blob" {
  count                      = var.eml_drop_zone ? 1 : 0
  name                       = "emlDropBlobLogs"
  target_resource_id         = "${azurerm_storage_account.eml_drops[0].id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id
  dynamic "enabled_log" {
    for_each = local.storage_log_categories
    content {
      category = enabled_log.value
    }
  }
}

# --- Event Grid delivers each completed upload to the blob trigger ---------------------------------
#
# The same as the chat exports (events.tf), on the drop account: its own system topic (an Azure
# resource has at most one), and a subscription delivering BlobCreated in eml-drops, reports left
# out, to the Blobs extension webhook of eml_drop_blob with the blobs_extension key; only with the
# zone and with create_event_subscriptions.
#
# Complete uploads only (Event Grid docs, "Azure Blob Storage as an Event Grid source"): an SFTP put
# raises BlobCreated twice, SftpCreate when the file is opened (an empty blob) and SftpCommit when it
# is closed with its contents; on a hierarchical-namespace account a Data Lake upload raises
# CreateFile, then FlushWithClose once the data is committed; a Blob REST upload raises PutBlob or
# PutBlockList once the blob is committed; CopyBlob on such an account is raised when the copy
# starts, not when it ends. The advanced filter on data.api keeps the four values that mean "the
# file is whole". An SFTP rename raises BlobRenamed (SftpRename), not BlobCreated, which is why the
# vendor uploads under the final name (docs/deploy.md).
locals {
  eml_drop_complete_upload_apis = ["SftpCommit", "FlushWithClose", "PutBlob", "PutBlockList"]
}

resource "azurerm_eventgrid_system_topic" "eml_drops" {
  count               = var.eml_drop_zone ? 1 : 0
  name                = "${var.name_prefix}-eml-drop-events"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  source_resource_id  = azurerm_storage_account.eml_drops[0].id
  topic_type          = "Microsoft.Storage.StorageAccounts"
}

resource "azurerm_eventgrid_system_topic_event_subscription" "eml_drops" {
  count                 = var.create_event_subscriptions && var.eml_drop_zone ? 1 : 0
  name                  = "eml-drops-to-function"
  system_topic          = azurerm_eventgrid_system_topic.eml_drops[0].name
  resource_group_name   = azurerm_resource_group.main.name
  event_delivery_schema = "EventGridSchema"
  included_event_types  = ["Microsoft.Storage.BlobCreated"]

  subject_filter {
    subject_begins_with = "/blobServices/default/containers/${local.eml_drops_container_name}/"
  }

  advanced_filter {
    string_not_ends_with {
      key    = "subject"
      values = [".report.json"]
    }
    string_in {
      key    = "data.api"
      values = local.eml_drop_complete_upload_apis
    }
  }

  webhook_endpoint {
    url = "https://${azapi_resource.function_app.output.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${local.eml_drops_function_name}&code=${data.azurerm_function_app_host_keys.app[0].blobs_extension_key}"
  }

  retry_policy {
    max_delivery_attempts = 30
    event_time_to_live    = 1440
  }

  depends_on = [
    azurerm_storage_container.eml_drops,
    azurerm_role_assignment.eml_drops,
    azurerm_role_assignment.queue,
  ]
}
