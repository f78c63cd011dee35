# Evidence store (WORM, issue 18; docs/deploy.md, Evidence store): the same as the Evidence store
# section of infra/bicep/main.bicep.
#
# The raw captured bytes (TeleMessage records, webhook bodies, chat export files, media) as block
# blobs raw/<kind>/<sha256>, each created once and never overwritten; the manifests of the hash
# chain and the final admin reports are kept the same way (raw/manifest/..., raw/admin-report/...). One container under a container-level
# time-based retention policy (Storage docs, "Container-level WORM policies for immutable blob data"
# and "Store business-critical blob data with immutable storage"):
# - Container-level, not version-level, WORM: it needs no blob versioning (versioning stays off in
#   this account: the claim checks and the state container have no use for versions, and they would
#   be paid for) and it is the only kind that allows protected append writes (no write of the code
#   appends today: every piece, manifests included, is a block blob created once). It is compatible with what the account has (blob and container soft delete, which
#   Microsoft recommends beside it; no hierarchical namespace, which it would support anyway) and
#   incompatible only with what the account does not use: point-in-time restore, last access time
#   tracking, NFS 3.0 and SFTP (tests/test_infra.py keeps them off).
# - protected_append_writes_enabled (allowProtectedAppendWrites), not
#   protected_append_writes_all_enabled (they are mutually exclusive): the former lets Append Block
#   add to append blobs (left on for append-only evidence to come; nothing appends today); the latter also lets new blocks be appended to
#   existing block blobs (Data Lake append and flush), which the code never does, so a raw blob stays
#   exactly as it was committed. Creating a block blob (Put Blob, or Put Block and Put Block List) is
#   allowed under the policy; an overwrite, Set Blob Metadata or Set Blob Properties and any delete
#   are refused until the blob is older than the period.
# - Left unlocked: a locked policy can never be shortened or removed (only extended, at most five
#   times), and the container and the account can no longer be deleted while it holds blobs. Locking
#   is a deliberate act of the firm, with the CLI (docs/deploy.md); Terraform never locks it
#   (`locked` stays false here) and, once it is locked, reads the lock and leaves it
#   (ignore_changes): the provider refuses `locked = false` over a locked policy. Azure refuses every
#   write to a locked policy but an extension, so after locking evidence_retention_days must equal
#   the policy's period (extend it with the CLI, then set the variable to match).
#   Microsoft: only a locked policy is compliant with SEC 17a-4(f); lock within about a day.
# Resource: azurerm_storage_container_immutability_policy (azurerm docs; Microsoft.Storage
# .../containers/immutabilityPolicies/default through Resource Manager, API 2023-05-01).
#
# Legal hold: azurerm_storage_container only reports it (has_legal_hold, read-only) and no azurerm
# resource places one; in Resource Manager a hold is the action setLegalHold (tags such as a matter
# id), not a property. evidence_legal_hold marks the request on the container (metadata
# legal_hold_requested) and the output evidence_legal_hold_command gives the command; a person with
# the right runs it (docs/deploy.md). (azapi_resource_action could POST setLegalHold, but only
# once, blind to a hold cleared or changed by hand, and Bicep has no equivalent: the templates stay
# the same, and placing or lifting a hold stays a person's act.)
#
# prevent_destroy on the container and the policy: Terraform refuses a plan that would delete them
# (a container holding blobs under an active policy cannot be deleted anyway).

resource "azurerm_storage_container" "evidence" {
  #checkov:skip=CKV2_AZURE_21:This check wants azurerm_log_analytics_storage_insights, which reads blobs with the account key; shared keys are disabled. Blob reads, writes and deletes go to Log Analytics through azurerm_monitor_diagnostic_setting.storage_blob instead.
  name                  = local.evidence_container_name
  storage_account_id    = azurerm_storage_account.main.id
  container_access_type = "private"
  metadata = {
    legal_hold_requested = tostring(var.evidence_legal_hold)
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "azurerm_storage_container_immutability_policy" "evidence" {
  storage_container_resource_manager_id = "${azurerm_storage_account.main.id}/blobServices/default/containers/${azurerm_storage_container.evidence.name}"
  immutability_period_in_days           = var.evidence_retention_days
  protected_append_writes_enabled       = true
  protected_append_writes_all_enabled   = false

  lifecycle {
    prevent_destroy = true
    ignore_changes  = [locked]
  }
}

# The identity's role on the evidence container: no built-in blob data role writes without delete
# (Storage Blob Data Contributor has blobs/delete), so a custom role with only what the code does
# there (shared/adapters/evidence_blobs.py). Data actions (Storage docs, "Actions and attributes for
# Azure role assignment conditions for Azure Blob Storage"):
#   blobs/read        read a blob and its properties, list blobs (verify reads everything back)
#   blobs/write       write a blob: Put Blob, Put Block and Put Block List of a new blob (the policy
#                     refuses them on an existing one). It also covers Set Blob Metadata and
#                     Properties (the policy refuses them) and Set Blob Tier (allowed under WORM,
#                     never called by the code)
#   blobs/add/action  create a blob, or append data (Append Block: never called today)
# and one control-plane action, containers/write: the code creates its container on first use and
# takes the conflict as "it exists" (shared/adapters/azure_storage.py, ensured_container); Create
# Container is authorized by containers/write (as in Storage Blob Data Contributor), and without it
# the call is refused with 403 instead. containers/write is not containers/delete, and the policy and
# the legal hold have actions of their own (immutabilityPolicies/*, setLegalHold/action,
# clearLegalHold/action), none of which this role has.
# Not granted: blobs/delete, blobs/permanentDelete/action, blobs/deleteBlobVersion/action,
# blobs/move/action, blobs/tags/write, blobs/immutableStorage/runAsSuperUser/action (writes a blob
# legal hold or immutability policy), blobs/runAsSuperUser/action, containers/delete.
# Defined in this resource group (assignable here only) and assigned on the evidence container only;
# its name carries the prefix and the suffix because role names are unique in a tenant. Creating it
# needs Microsoft.Authorization/roleDefinitions/write (Owner or User Access Administrator;
# docs/deploy.md, Prerequisites).
locals {
  evidence_writer_actions = [
    "Microsoft.Storage/storageAccounts/blobServices/containers/write",
  ]
  evidence_writer_data_actions = [
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
  ]
}

resource "azurerm_role_definition" "evidence_writer" {
  name              = "WhatsApp Archiver evidence writer (${var.name_prefix}-${local.suffix})"
  scope             = azurerm_resource_group.main.id
  description       = "Create and read blobs and append to append blobs in the WhatsApp Archiver evidence container; no delete."
  assignable_scopes = [azurerm_resource_group.main.id]

  permissions {
    actions          = local.evidence_writer_actions
    not_actions      = []
    data_actions     = local.evidence_writer_data_actions
    not_data_actions = []
  }
}

# On the container, as every container role (main.tf): the scope is the ARM resource ID.
resource "azurerm_role_assignment" "evidence" {
  scope              = "${azurerm_storage_account.main.id}/blobServices/default/containers/${azurerm_storage_container.evidence.name}"
  role_definition_id = azurerm_role_definition.evidence_writer.role_definition_resource_id
  principal_id       = azurerm_user_assigned_identity.app.principal_id
  principal_type     = "ServicePrincipal"
}
