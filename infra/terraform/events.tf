# Chat exports: Event Grid delivers uploads to the blob trigger (the same as in the Bicep template).
#
# Flex Consumption runs blob triggers only with the Event Grid source (no container polling): the
# storage account publishes BlobCreated to a system topic, and a subscription on it posts each event
# to the Blobs extension webhook of the function app, which queues it for chat_export_blob.
# Functions docs, "Tutorial: Trigger Azure Functions on blob containers using an event subscription"
# (functions-event-grid-blob-trigger): endpoint
# https://<app host>/runtime/webhooks/blobs?functionName=Host.Functions.<function>&code=<key>, the
# key being the system key blobs_extension (App keys > System keys), Event Grid Schema.

# The storage account's system topic: an Azure resource has at most one, which every subscription to
# the account's events shares. In the account's region.
resource "azurerm_eventgrid_system_topic" "storage" {
  name                = "${var.name_prefix}-storage-events"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  source_resource_id  = azurerm_storage_account.main.id
  topic_type          = "Microsoft.Storage.StorageAccounts"
}

# The host's blobs_extension system key. It exists, and the webhook answers the subscription's
# validation handshake, only once the code with chat_export_blob runs in the app: hence
# create_event_subscriptions, false for the very first apply. (The key is in the state, like every
# secret here: use an encrypted backend.)
data "azurerm_function_app_host_keys" "app" {
  count               = var.create_event_subscriptions ? 1 : 0
  name                = azapi_resource.function_app.name
  resource_group_name = azurerm_resource_group.main.name
}

# BlobCreated in chat-exports only, each upload of FILE or FILE.json. The reports the function
# writes there (FILE.report.json) are left out, so that a report never triggers the function. Event
# Grid retries a failed delivery for 24 hours (30 attempts) and then drops it: an upload without a
# report beside it is uploaded again (an import skips what is already archived).
resource "azurerm_eventgrid_system_topic_event_subscription" "chat_exports" {
  count                 = var.create_event_subscriptions ? 1 : 0
  name                  = "chat-exports-to-function"
  system_topic          = azurerm_eventgrid_system_topic.storage.name
  resource_group_name   = azurerm_resource_group.main.name
  event_delivery_schema = "EventGridSchema"
  included_event_types  = ["Microsoft.Storage.BlobCreated"]

  subject_filter {
    subject_begins_with = "/blobServices/default/containers/${local.chat_exports_container_name}/"
  }

  advanced_filter {
    string_not_ends_with {
      key    = "subject"
      values = [".report.json"]
    }
  }

  webhook_endpoint {
    url = "https://${azapi_resource.function_app.output.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${local.chat_exports_function_name}&code=${data.azurerm_function_app_host_keys.app[0].blobs_extension_key}"
  }

  retry_policy {
    max_delivery_attempts = 30
    event_time_to_live    = 1440
  }

  depends_on = [
    azurerm_storage_container.main,
    azurerm_role_assignment.container,
    azurerm_role_assignment.queue,
  ]
}
