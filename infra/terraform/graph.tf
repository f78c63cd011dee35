# Microsoft Graph application roles of the managed identity (the Bicep path runs
# infra/scripts/grant-graph-roles.sh instead). The identity running Terraform needs an Entra ID role
# that may grant application permissions: Privileged Role Administrator (or Global Administrator).
#
# User.Read.All: the directory check that a mapped address is a real mailbox, and phone mapping.
# Mail.ReadWrite: create the archive items. Tenant-wide until Exchange Online RBAC for Applications
# scopes it (infra/scripts/scope-exchange-rbac.ps1); then set graph_mail_tenant_wide = false so that
# Terraform removes the tenant-wide grant too, and does not bring it back.

data "azuread_service_principal" "msgraph" {
  client_id = "00000003-0000-0000-c000-000000000000" # Microsoft Graph, the same in every cloud
}

resource "azuread_app_role_assignment" "graph_user_read_all" {
  app_role_id         = data.azuread_service_principal.msgraph.app_role_ids["User.Read.All"]
  principal_object_id = azurerm_user_assigned_identity.app.principal_id
  resource_object_id  = data.azuread_service_principal.msgraph.object_id
}

resource "azuread_app_role_assignment" "graph_mail_readwrite" {
  count               = var.graph_mail_tenant_wide ? 1 : 0
  app_role_id         = data.azuread_service_principal.msgraph.app_role_ids["Mail.ReadWrite"]
  principal_object_id = azurerm_user_assigned_identity.app.principal_id
  resource_object_id  = data.azuread_service_principal.msgraph.object_id
}
