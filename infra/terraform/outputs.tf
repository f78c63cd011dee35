output "function_app_name" {
  value = azapi_resource.function_app.name
}

output "function_app_hostname" {
  value = azapi_resource.function_app.output.properties.defaultHostName
}

# The Callback URL to enter in Meta's App Dashboard (WhatsApp > Configuration) for the WhatsApp
# Business Platform source: the function whatsapp_webhook, route whatsapp/webhook.
output "whatsapp_webhook_url" {
  value = "https://${azapi_resource.function_app.output.properties.defaultHostName}/api/whatsapp/webhook"
}

# Where the firm's sending application reports each message it sends through the Cloud API (the
# function whatsapp_outbound, route whatsapp/outbound; append ?code=<function key>).
output "whatsapp_outbound_url" {
  value = "https://${azapi_resource.function_app.output.properties.defaultHostName}/api/whatsapp/outbound"
}

output "storage_account_name" {
  value = azurerm_storage_account.main.name
}

# Where custodians upload WhatsApp chat exports and their sidecars (docs/deploy.md, section 11).
output "chat_exports_container" {
  value = local.chat_exports_container_name
}

# The evidence store (docs/deploy.md, Evidence store), and with evidence_legal_hold the command that
# places the legal hold, for a person with the right to run it: replace <matterid> by the hold tag
# (3 to 23 letters and digits). --allow-protected-append-writes-all keeps append blobs appendable
# under the hold (a legal hold offers only that append setting); the code creates block blobs only.
output "evidence_container" {
  value = azurerm_storage_container.evidence.name
}

output "evidence_legal_hold_command" {
  value = var.evidence_legal_hold ? "az storage container legal-hold set --resource-group ${azurerm_resource_group.main.name} --account-name ${azurerm_storage_account.main.name} --container-name ${local.evidence_container_name} --tags <matterid> --allow-protected-append-writes-all true" : ""
}

# The vendor EML drop zone (docs/deploy.md, Vendor EML drop zone), empty while it is off: the SFTP
# host (the drop account's blob endpoint host), the login (<account>.<user>) and the container the
# vendor's home is.
output "eml_drop_sftp_host" {
  value = var.eml_drop_zone ? azurerm_storage_account.eml_drops[0].primary_blob_host : ""
}

output "eml_drop_sftp_user" {
  value = local.eml_drop_login ? "${local.eml_drop_storage_account_name}.${var.eml_drop_user_name}" : ""
}

output "eml_drops_container" {
  value = var.eml_drop_zone ? local.eml_drops_container_name : ""
}

output "key_vault_name" {
  value = azurerm_key_vault.main.name
}

output "app_insights_name" {
  value = azurerm_application_insights.main.name
}

output "identity_name" {
  value = azurerm_user_assigned_identity.app.name
}

output "identity_client_id" {
  value = azurerm_user_assigned_identity.app.client_id
}

output "identity_principal_id" {
  value = azurerm_user_assigned_identity.app.principal_id
}
