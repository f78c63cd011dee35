resource "azurerm_key_vault" "main" {
  #checkov:skip=CKV_AZURE_109:No VNet in this deployment: Key Vault references are resolved by the platform over the public endpoint with the app's identity and an RBAC role; restrict it with VNet integration and a private endpoint where policy requires.
  #checkov:skip=CKV_AZURE_189:Public network access stays on for the same reason as CKV_AZURE_109.
  #checkov:skip=CKV2_AZURE_32:No private endpoint: no VNet in this deployment, see CKV_AZURE_109.
  name                          = local.key_vault_name
  location                      = azurerm_resource_group.main.location
  resource_group_name           = azurerm_resource_group.main.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  rbac_authorization_enabled    = true
  soft_delete_retention_days    = 90
  purge_protection_enabled      = true
  public_network_access_enabled = true

  network_acls {
    default_action = "Allow"
    bypass         = "AzureServices"
  }
}

# The secrets are written through ARM (Microsoft.KeyVault/vaults/secrets), as Bicep does, not
# through the Key Vault data plane: the identity running Terraform needs no Key Vault data role (its
# Contributor or Owner on the resource group includes Microsoft.KeyVault/vaults/secrets/write), so
# no Key Vault Secrets Officer grant exists for it. ARM never returns a secret's value, so only a
# changed variable writes a new version. The values are in the Terraform state, as before: use an
# encrypted backend. (for_each takes the names only: sensitive values cannot drive it.)
#
# The WhatsApp Business Platform secrets are optional (the source is off unless they are given):
# each is written, and granted, only when its variable is not empty, so a deployment without the
# source has none of them. Whether a secret was given is no secret, hence nonsensitive() on that
# test alone (for_each refuses anything derived from a sensitive value).
locals {
  required_secret_names = ["telemessage-username", "telemessage-password"]
  optional_secret_names = ["whatsapp-verify-token", "whatsapp-app-secret", "whatsapp-access-token"]
  secret_values = {
    "telemessage-username"  = var.telemessage_username
    "telemessage-password"  = var.telemessage_password
    "whatsapp-verify-token" = var.whatsapp_verify_token
    "whatsapp-app-secret"   = var.whatsapp_app_secret
    "whatsapp-access-token" = var.whatsapp_access_token
  }
  secret_names = concat(
    local.required_secret_names,
    [for name in local.optional_secret_names : name if nonsensitive(local.secret_values[name] != "")],
  )
  # The WhatsApp source is on when its app secret is given: without it the webhook refuses every
  # delivery (503), so its alerts (monitoring.tf) exist only then.
  whatsapp_enabled = contains(local.secret_names, "whatsapp-app-secret")
}

resource "azapi_resource" "secret" {
  for_each  = toset(local.secret_names)
  type      = "Microsoft.KeyVault/vaults/secrets@2023-07-01"
  name      = each.key
  parent_id = azurerm_key_vault.main.id
  body = {
    properties = {
      value       = local.secret_values[each.key]
      contentType = "text/plain"
    }
  }
  response_export_values = ["properties.secretUri"]
}

# Deployments made before the secrets moved to ARM: forget the data-plane secret resources without
# deleting the secrets (a deleted secret stays soft-deleted under purge protection and would block
# the ARM write of the same name); azapi_resource.secret writes a new version of each. The
# deployer's former Key Vault Secrets Officer assignment is no longer in the configuration, so the
# next apply removes it.
removed {
  from = azurerm_key_vault_secret.telemessage_username
  lifecycle {
    destroy = false
  }
}

removed {
  from = azurerm_key_vault_secret.telemessage_password
  lifecycle {
    destroy = false
  }
}

# Key Vault Secrets User (read a secret's value; not Officer, which may also write and delete) on
# each secret the app settings reference, not on the vault: the identity cannot read any other
# secret or certificate that is or will be in this vault. Key Vault RBAC supports assignments on a
# single secret (Key Vault docs, "Provide access with Azure RBAC": secret scope role assignment).
resource "azurerm_role_assignment" "secrets_user" {
  for_each             = toset(local.secret_names)
  scope                = azapi_resource.secret[each.key].id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# The Graph certificate (only with graph_certificate_name): its private key is read through the
# certificate's secret of the same name, so Key Vault Secrets User on that one secret. Import the
# certificate before applying with its name (docs/deploy.md): the scope must exist.
resource "azurerm_role_assignment" "graph_certificate_secrets_user" {
  count                = var.graph_certificate_name == "" ? 0 : 1
  scope                = "${azurerm_key_vault.main.id}/secrets/${var.graph_certificate_name}"
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}
