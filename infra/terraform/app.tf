resource "azurerm_service_plan" "main" {
  #checkov:skip=CKV_AZURE_211:Flex Consumption (FC1) is the plan the app is built for (scale per function, 30-minute timeout); it has no larger SKU.
  #checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero by design; the daily timer and the queue triggers need no always-on instance, and queue work retries on any instance.
  #checkov:skip=CKV_AZURE_225:Zone redundancy for Flex Consumption is offered in some regions only; the queues retry work on another instance, and storage redundancy is set by storage_sku.
  name                = "${var.name_prefix}-plan"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  os_type             = "Linux"
  sku_name            = "FC1"
}

locals {
  use_app_registration = var.graph_app_client_id != ""

  app_settings = {
    # Functions host: identity-based AzureWebJobsStorage (the code reads __accountName and
    # __clientId too). The service URIs carry the cloud's storage suffix, which accountName alone
    # does not.
    AzureWebJobsStorage__accountName     = azurerm_storage_account.main.name
    AzureWebJobsStorage__credential      = "managedidentity"
    AzureWebJobsStorage__clientId        = azurerm_user_assigned_identity.app.client_id
    AzureWebJobsStorage__blobServiceUri  = azurerm_storage_account.main.primary_blob_endpoint
    AzureWebJobsStorage__queueServiceUri = azurerm_storage_account.main.primary_queue_endpoint
    AzureWebJobsStorage__tableServiceUri = azurerm_storage_account.main.primary_table_endpoint
    # The host ID, so that the blob trigger host queue has the name created in main.tf
    # (local.function_host_id).
    AzureFunctionsWebHost__hostid = local.function_host_id
    # Keyless Application Insights.
    APPLICATIONINSIGHTS_CONNECTION_STRING     = azurerm_application_insights.main.connection_string
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING = "Authorization=AAD;ClientId=${azurerm_user_assigned_identity.app.client_id}"
    # The connector (shared/settings.py).
    ARCHIVE_SCHEDULE                 = var.archive_schedule
    FIRST_RUN_LOOKBACK_HOURS         = tostring(var.first_run_lookback_hours)
    SLICE_MINUTES                    = tostring(var.slice_minutes)
    MAX_WINDOW_DAYS                  = tostring(var.max_window_days)
    LISTING_OVERLAP_MINUTES          = tostring(var.listing_overlap_minutes)
    CAPTURE_SETTLE_MINUTES           = tostring(var.capture_settle_minutes)
    TELEMESSAGE_BASE_URL             = var.telemessage_base_url
    TELEMESSAGE_USERNAME             = "@Microsoft.KeyVault(SecretUri=${azapi_resource.secret["telemessage-username"].output.properties.secretUri})"
    TELEMESSAGE_PASSWORD             = "@Microsoft.KeyVault(SecretUri=${azapi_resource.secret["telemessage-password"].output.properties.secretUri})"
    TELEMESSAGE_PAGE_SIZE            = tostring(var.telemessage_page_size)
    RECORDS_CONTAINER                = local.records_container_name
    STATE_CONTAINER                  = local.state_container_name
    LEDGER_STORE                     = var.ledger_store
    LEDGER_TABLE                     = local.ledger_table_name
    DELIVERY_STORE                   = var.delivery_store
    DELIVERY_TABLE                   = local.delivery_table_name
    RECORD_STORE                     = var.record_store
    RECORD_TABLE                     = local.record_table_name
    CUSTOM_MAPPING_ENABLED           = tostring(var.custom_mapping_enabled)
    AUTO_MAPPING_ENABLED             = tostring(var.auto_mapping_enabled)
    DIRECTORY_PHONE_MAPPING_ENABLED  = tostring(var.directory_phone_mapping_enabled)
    DEFAULT_PHONE_REGION             = var.default_phone_region
    MAPPING_BLOB                     = var.mapping_blob
    CATCH_ALL_MAILBOX                = var.catch_all_mailbox
    MAX_ITEM_MB                      = tostring(var.max_item_mb)
    ARCHIVE_FOLDER_NAME              = var.archive_folder_name
    ARCHIVE_ITEM_CLASS               = var.archive_item_class
    DAILY_TRANSCRIPTS                = tostring(var.daily_transcripts)
    TRANSCRIPT_TIME_ZONE             = var.transcript_time_zone
    TRANSCRIPT_DELAY_MINUTES         = tostring(var.transcript_delay_minutes)
    TRANSCRIPT_MAX_WAIT_HOURS        = tostring(var.transcript_max_wait_hours)
    CHAT_EXPORT_REPORT_DELAY_SECONDS = tostring(var.chat_export_report_delay_seconds)
    GRAPH_CLOUD                      = var.graph_cloud
    GRAPH_UPLOAD_SESSIONS            = tostring(var.graph_upload_sessions)
    GRAPH_CONVERSATION_PROPERTIES    = tostring(var.graph_conversation_properties)
    # WhatsApp Business Platform webhooks (optional): a Key Vault reference for each secret given,
    # else empty, never a reference to a secret that was not written. A reference that does not
    # resolve leaves its own text as the value, which the app would take for a secret.
    WHATSAPP_VERIFY_TOKEN     = contains(local.secret_names, "whatsapp-verify-token") ? "@Microsoft.KeyVault(SecretUri=${azapi_resource.secret["whatsapp-verify-token"].output.properties.secretUri})" : ""
    WHATSAPP_APP_SECRET       = contains(local.secret_names, "whatsapp-app-secret") ? "@Microsoft.KeyVault(SecretUri=${azapi_resource.secret["whatsapp-app-secret"].output.properties.secretUri})" : ""
    WHATSAPP_ACCESS_TOKEN     = contains(local.secret_names, "whatsapp-access-token") ? "@Microsoft.KeyVault(SecretUri=${azapi_resource.secret["whatsapp-access-token"].output.properties.secretUri})" : ""
    WHATSAPP_GRAPH_BASE_URL   = var.whatsapp_graph_base_url
    WHATSAPP_GRAPH_VERSION    = var.whatsapp_graph_version
    WHATSAPP_PHONE_NUMBER_IDS = var.whatsapp_phone_number_ids
    # Graph credential: the managed identity (AZURE_CLIENT_ID), or an app registration with a
    # certificate from Key Vault. The code refuses both at once, so one side is always empty.
    AZURE_CLIENT_ID       = local.use_app_registration ? "" : azurerm_user_assigned_identity.app.client_id
    GRAPH_TENANT_ID       = local.use_app_registration ? data.azurerm_client_config.current.tenant_id : ""
    GRAPH_CLIENT_ID       = var.graph_app_client_id
    GRAPH_CERTIFICATE     = var.graph_certificate_name == "" ? "" : "@Microsoft.KeyVault(SecretUri=${azurerm_key_vault.main.vault_uri}secrets/${var.graph_certificate_name}/)"
    STATUS_RECENT_WINDOWS = tostring(var.status_recent_windows)
    REPORT_RETENTION_DAYS = tostring(var.report_retention_days)
    # The evidence store (evidence.tf): its container and the period of its policy.
    EVIDENCE_CONTAINER      = local.evidence_container_name
    EVIDENCE_RETENTION_DAYS = tostring(var.evidence_retention_days)
    # The vendor EML drops: the identity-based connection EmlDrops of eml_drop_blob, read by the code
    # too, with the identity (__credential, __clientId); its poison queue in the main account; with
    # the zone off, the main account, so that the host can still index the trigger, which no
    # subscription then fires (eml_drops.tf).
    EmlDrops__credential          = "managedidentity"
    EmlDrops__clientId            = azurerm_user_assigned_identity.app.client_id
    EmlDrops__blobServiceUri      = var.eml_drop_zone ? azurerm_storage_account.eml_drops[0].primary_blob_endpoint : azurerm_storage_account.main.primary_blob_endpoint
    EmlDrops__queueServiceUri     = azurerm_storage_account.main.primary_queue_endpoint
    EML_PHONE_PATTERN             = var.eml_phone_pattern
    EML_DROP_REPORT_DELAY_SECONDS = tostring(var.eml_drop_report_delay_seconds)
  }
}

# Microsoft.Web/sites through azapi, as in the Bicep template (see versions.tf for why not
# azurerm_function_app_flex_consumption).
resource "azapi_resource" "function_app" {
  type      = "Microsoft.Web/sites@2024-04-01"
  name      = local.function_app_name
  parent_id = azurerm_resource_group.main.id
  location  = azurerm_resource_group.main.location

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.app.id]
  }

  body = {
    kind = "functionapp,linux"
    properties = {
      serverFarmId              = azurerm_service_plan.main.id
      httpsOnly                 = true
      clientCertEnabled         = false
      keyVaultReferenceIdentity = azurerm_user_assigned_identity.app.id
      functionAppConfig = {
        deployment = {
          storage = {
            type  = "blobContainer"
            value = "${azurerm_storage_account.main.primary_blob_endpoint}${local.deployment_container_name}"
            authentication = {
              type                           = "UserAssignedIdentity"
              userAssignedIdentityResourceId = azurerm_user_assigned_identity.app.id
            }
          }
        }
        scaleAndConcurrency = {
          maximumInstanceCount = var.maximum_instance_count
          instanceMemoryMB     = var.instance_memory_mb
        }
        runtime = {
          name    = "python"
          version = "3.13"
        }
      }
      siteConfig = {
        minTlsVersion = "1.2"
        http20Enabled = true
        ftpsState     = "Disabled"
        appSettings   = [for name, value in local.app_settings : { name = name, value = value }]
      }
    }
  }

  response_export_values = ["properties.defaultHostName"]

  depends_on = [
    azurerm_storage_container.main,
    azurerm_storage_queue.main,
    azapi_resource.table,
    azurerm_storage_container.evidence,
    azurerm_storage_container_immutability_policy.evidence,
    azurerm_role_assignment.container,
    azurerm_role_assignment.evidence,
    azurerm_storage_container.eml_drops,
    azurerm_role_assignment.eml_drops,
    azurerm_role_assignment.queue,
    azurerm_role_assignment.table,
    azurerm_role_assignment.storage_reader,
    azurerm_role_assignment.secrets_user,
    azurerm_role_assignment.graph_certificate_secrets_user,
    azurerm_role_assignment.metrics_publisher,
  ]
}

# Publishing with Entra ID only (az functionapp deployment ... uses a token): no basic-auth
# publishing credentials for FTP or SCM.
resource "azapi_resource" "ftp_basic_auth" {
  type      = "Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01"
  name      = "ftp"
  parent_id = azapi_resource.function_app.id
  body = {
    properties = {
      allow = false
    }
  }
}

resource "azapi_resource" "scm_basic_auth" {
  type      = "Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01"
  name      = "scm"
  parent_id = azapi_resource.function_app.id
  body = {
    properties = {
      allow = false
    }
  }
}
