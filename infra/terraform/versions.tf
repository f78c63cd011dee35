# WhatsApp Archiver: the same deployment as infra/bicep/main.bicep (tests/test_infra.py keeps queues,
# containers, app settings, every role assignment, role and scope, and the Event Grid subscriptions
# of the blob triggers identical in both), plus the Microsoft Graph application roles of the managed
# identity through the azuread provider. See docs/deploy.md.

terraform {
  required_version = ">= 1.9"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.45, < 5.0"
    }
    azuread = {
      source  = "hashicorp/azuread"
      version = "~> 3.4"
    }
    # The function app itself is an azapi resource: azurerm_function_app_flex_consumption cannot set
    # keyVaultReferenceIdentity (needed for Key Vault references with a user-assigned identity) and
    # writes an AzureWebJobsStorage connection string with an empty key even with identity-based
    # storage (hashicorp/terraform-provider-azurerm#29693), which the host and this code would use.
    azapi = {
      source  = "Azure/azapi"
      version = "~> 2.5"
    }
  }
}

# One variable picks the cloud for every provider: a managed identity only gets tokens from the
# Entra ID of the cloud it lives in, so Azure resources and Microsoft Graph share it.
locals {
  clouds = {
    global = { azurerm = "public", azuread = "global" }
    usgov  = { azurerm = "usgovernment", azuread = "usgovernmentl4" }
    dod    = { azurerm = "usgovernment", azuread = "usgovernmentl5" }
    china  = { azurerm = "china", azuread = "china" }
  }
  cloud = local.clouds[var.graph_cloud]
}

provider "azurerm" {
  environment     = local.cloud.azurerm
  subscription_id = var.subscription_id
  # Shared keys are disabled on the storage account: data-plane calls use Entra ID.
  storage_use_azuread = true
  features {
    key_vault {
      purge_soft_delete_on_destroy    = false
      recover_soft_deleted_key_vaults = true
    }
  }
}

provider "azuread" {
  environment = local.cloud.azuread
}

provider "azapi" {
  environment     = local.cloud.azurerm
  subscription_id = var.subscription_id
}
