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
