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

# Key Vault Secrets User on this vault only: read secret values for the app settings' Key Vault
# references (the TeleMessage credentials and, if used, the Graph certificate's secret).
resource "azurerm_role_assignment" "vault_secrets_user" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# Terraform writes the secrets through the Key Vault data plane (Bicep does it through ARM), so the
# identity running Terraform needs Key Vault Secrets Officer on this vault. Role assignments can
# take a few minutes to apply: if the first apply fails with 403 on a secret, apply again.
resource "azurerm_role_assignment" "deployer_secrets_officer" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_key_vault_secret" "telemessage_username" {
  #checkov:skip=CKV_AZURE_41:TeleMessage account credentials have no expiry of their own; an expiry date here would only stop the connector. Rotate them at TeleMessage and update the secret.
  name         = "telemessage-username"
  value        = var.telemessage_username
  content_type = "text/plain"
  key_vault_id = azurerm_key_vault.main.id
  depends_on   = [azurerm_role_assignment.deployer_secrets_officer]
}

resource "azurerm_key_vault_secret" "telemessage_password" {
  #checkov:skip=CKV_AZURE_41:TeleMessage account credentials have no expiry of their own; an expiry date here would only stop the connector. Rotate them at TeleMessage and update the secret.
  name         = "telemessage-password"
  value        = var.telemessage_password
  content_type = "text/plain"
  key_vault_id = azurerm_key_vault.main.id
  depends_on   = [azurerm_role_assignment.deployer_secrets_officer]
}
