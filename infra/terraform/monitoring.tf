resource "azurerm_log_analytics_workspace" "main" {
  name                = "${var.name_prefix}-log"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
}

resource "azurerm_application_insights" "main" {
  name                = "${var.name_prefix}-appi"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  application_type    = "web"
  workspace_id        = azurerm_log_analytics_workspace.main.id
  # Keyless: telemetry only with an Entra ID token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
  local_authentication_disabled = true
}

# Monitoring Metrics Publisher on this component only (the narrowest scope: the component is the
# resource): keyless (Entra ID) telemetry ingestion, required once local authentication is disabled.
resource "azurerm_role_assignment" "metrics_publisher" {
  scope                = azurerm_application_insights.main.id
  role_definition_name = "Monitoring Metrics Publisher"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
}

# Every data request to a storage account's blobs and queues (reads, writes, deletes; SFTP included
# on the drop account, eml_drops.tf) goes to the workspace.
locals {
  storage_log_categories = ["StorageRead", "StorageWrite", "StorageDelete"]
}

resource "azurerm_monitor_diagnostic_setting" "storage_blob" {
  name                       = "storageBlobLogs"
  target_resource_id         = "${azurerm_storage_account.main.id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id
  dynamic "enabled_log" {
    for_each = local.storage_log_categories
    content {
      category = enabled_log.value
    }
  }
}

resource "azurerm_monitor_diagnostic_setting" "storage_queue" {
  name                       = "storageQueueLogs"
  target_resource_id         = "${azurerm_storage_account.main.id}/queueServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id
  dynamic "enabled_log" {
    for_each = local.storage_log_categories
    content {
      category = enabled_log.value
    }
  }
}

resource "azurerm_monitor_action_group" "main" {
  name                = "${var.name_prefix}-alerts"
  resource_group_name = azurerm_resource_group.main.name
  short_name          = "waarchiver"
  email_receiver {
    name                    = "operator"
    email_address           = var.alert_email
    use_common_alert_schema = true
  }
}

# Poison: Azure Storage queue metrics are per account (no per-queue dimension), so "items-poison
# is not empty" cannot be a metric alert. The alert reads the app's own logs instead: the
# connector logs every record it poisons ("... poisoned ...", "moved to poison") and the host
# logs "Moving message to queue '<name>-poison'" when retries run out. It fires on each new poison
# message; `python -m shared.cli poison list` shows what is there.
resource "azurerm_monitor_scheduled_query_rules_alert_v2" "poison" {
  name                    = "${var.name_prefix}-poison"
  display_name            = "WhatsApp Archiver: records poisoned"
  description             = "A record or task went to a -poison queue. Run python -m shared.cli poison list."
  resource_group_name     = azurerm_resource_group.main.name
  location                = azurerm_resource_group.main.location
  scopes                  = [azurerm_application_insights.main.id]
  severity                = 2
  evaluation_frequency    = "PT15M"
  window_duration         = "PT15M"
  auto_mitigation_enabled = false
  criteria {
    query                   = "traces | where message has \"poisoned\" or message has \"moved to poison\" or (message has \"MaxDequeueCount\" and message has \"-poison\")"
    time_aggregation_method = "Count"
    operator                = "GreaterThan"
    threshold               = 0
    failing_periods {
      number_of_evaluation_periods             = 1
      minimum_failing_periods_to_trigger_alert = 1
    }
  }
  action {
    action_groups = [azurerm_monitor_action_group.main.id]
  }
}

# No reconciled window in 26 hours: the timer runs daily and logs "window <id> DOES NOT RECONCILE"
# (ERROR) at every run for a window still unreconciled 6 hours after its hand-off. The alert also
# fires when no timer run succeeded in 26 hours (the app is stopped, not deployed, or failing).
resource "azurerm_monitor_scheduled_query_rules_alert_v2" "not_reconciled" {
  name                    = "${var.name_prefix}-not-reconciled"
  display_name            = "WhatsApp Archiver: no reconciled window in 26 hours"
  description             = "A window does not reconcile, or the archive timer has not run successfully for 26 hours. Run python -m shared.cli status."
  resource_group_name     = azurerm_resource_group.main.name
  location                = azurerm_resource_group.main.location
  scopes                  = [azurerm_application_insights.main.id]
  severity                = 1
  evaluation_frequency    = "PT1H"
  window_duration         = "P2D"
  auto_mitigation_enabled = true
  criteria {
    query                   = "let runs = toscalar(requests | where timestamp > ago(26h) and operation_Name =~ \"schedule_archive_window\" and success == true | count); let unreconciled = toscalar(traces | where timestamp > ago(26h) and severityLevel >= 3 and message has \"DOES NOT RECONCILE\" | count); print runs = runs, unreconciled = unreconciled | where runs == 0 or unreconciled > 0"
    time_aggregation_method = "Count"
    operator                = "GreaterThan"
    threshold               = 0
    failing_periods {
      number_of_evaluation_periods             = 1
      minimum_failing_periods_to_trigger_alert = 1
    }
  }
  action {
    action_groups = [azurerm_monitor_action_group.main.id]
  }
}

# Failed invocations, as the Functions host records them. The connector's own spans are requests
# too (shared/telemetry.py: span kind consumer, failed when their invocation fails): left out, so
# that one failure counts once.
resource "azurerm_monitor_scheduled_query_rules_alert_v2" "function_failures" {
  name                    = "${var.name_prefix}-function-failures"
  display_name            = "WhatsApp Archiver: function failures"
  description             = "Function invocations failed (exceptions reach the host); transient ones are retried by the queue."
  resource_group_name     = azurerm_resource_group.main.name
  location                = azurerm_resource_group.main.location
  scopes                  = [azurerm_application_insights.main.id]
  severity                = 2
  evaluation_frequency    = "PT15M"
  window_duration         = "PT1H"
  auto_mitigation_enabled = true
  criteria {
    query                   = "requests | where success == false and name !in (\"archive_record\", \"list_page\", \"compose_transcript\")"
    time_aggregation_method = "Count"
    operator                = "GreaterThan"
    threshold               = var.function_failure_threshold
    failing_periods {
      number_of_evaluation_periods             = 1
      minimum_failing_periods_to_trigger_alert = 1
    }
  }
  action {
    action_groups = [azurerm_monitor_action_group.main.id]
  }
}

# WhatsApp Business Platform webhooks (only with whatsapp_app_secret, the source on). Deliveries
# refused for a missing or wrong X-Hub-Signature-256 (counter archiver.webhook.deliveries by
# archiver.outcome): forged traffic, or the app secret changed at Meta but not here. Meta retries a
# refused delivery only for a limited time, so a rotation gone wrong loses messages unless fixed.
resource "azurerm_monitor_scheduled_query_rules_alert_v2" "webhook_signature" {
  count                   = local.whatsapp_enabled ? 1 : 0
  name                    = "${var.name_prefix}-webhook-signature"
  display_name            = "WhatsApp Archiver: webhook signature failures"
  description             = "WhatsApp webhook deliveries were refused (401) for a missing or wrong signature: forged traffic, or the Meta app secret changed without WHATSAPP_APP_SECRET. Meta retries them only for a limited time."
  resource_group_name     = azurerm_resource_group.main.name
  location                = azurerm_resource_group.main.location
  scopes                  = [azurerm_application_insights.main.id]
  severity                = 2
  evaluation_frequency    = "PT15M"
  window_duration         = "PT15M"
  auto_mitigation_enabled = true
  criteria {
    query                   = "customMetrics | where name == \"archiver.webhook.deliveries\" and tostring(customDimensions[\"archiver.outcome\"]) in (\"signature_missing\", \"signature_wrong\") | project timestamp, refused = valueSum"
    metric_measure_column   = "refused"
    time_aggregation_method = "Total"
    operator                = "GreaterThan"
    threshold               = var.webhook_signature_failure_threshold
    failing_periods {
      number_of_evaluation_periods             = 1
      minimum_failing_periods_to_trigger_alert = 1
    }
  }
  action {
    action_groups = [azurerm_monitor_action_group.main.id]
  }
}

# Sends the firm's application reported and the connector refused (400/403: a field, a number that
# is not the firm's; 503: no number configured). Each is a message the business sent that is not
# archived until the application posts it again, so one is enough to alert on.
resource "azurerm_monitor_scheduled_query_rules_alert_v2" "outbound_refused" {
  count                   = local.whatsapp_enabled ? 1 : 0
  name                    = "${var.name_prefix}-outbound-refused"
  display_name            = "WhatsApp Archiver: outbound sends refused"
  description             = "whatsapp_outbound refused sends the sending application reported (a malformed post, a number not in WHATSAPP_PHONE_NUMBER_IDS, or none configured): those messages are not archived until it posts them again. See the warnings of whatsapp_outbound for the field at fault."
  resource_group_name     = azurerm_resource_group.main.name
  location                = azurerm_resource_group.main.location
  scopes                  = [azurerm_application_insights.main.id]
  severity                = 2
  evaluation_frequency    = "PT15M"
  window_duration         = "PT15M"
  auto_mitigation_enabled = true
  criteria {
    query                   = "customMetrics | where name == \"archiver.webhook.deliveries\" and tostring(customDimensions[\"archiver.outcome\"]) in (\"outbound_refused\", \"outbound_not_configured\") | project timestamp, refused = valueSum"
    metric_measure_column   = "refused"
    time_aggregation_method = "Total"
    operator                = "GreaterThan"
    threshold               = 0
    failing_periods {
      number_of_evaluation_periods             = 1
      minimum_failing_periods_to_trigger_alert = 1
    }
  }
  action {
    action_groups = [azurerm_monitor_action_group.main.id]
  }
}

# The webhook answered 5xx: a storage or queue failure before the body was safe (an exception, which
# the host answers with 500), or 503 while the app has no app secret to check signatures with. Meta
# keeps such a delivery and retries it, for 36 hours to 7 days by its own pages, then drops it:
# every one counts. The host records an HTTP function's status in resultCode but can mark the
# request successful whatever the status (azure-functions-host#6511), so the alert reads resultCode.
resource "azurerm_monitor_scheduled_query_rules_alert_v2" "webhook_5xx" {
  count                   = local.whatsapp_enabled ? 1 : 0
  name                    = "${var.name_prefix}-webhook-5xx"
  display_name            = "WhatsApp Archiver: webhook answered 5xx"
  description             = "The WhatsApp webhook answered Meta (or whatsapp_outbound answered the sending application of the firm) with a server error; Meta retries for a limited time, then drops the delivery. See the failed requests and their exceptions."
  resource_group_name     = azurerm_resource_group.main.name
  location                = azurerm_resource_group.main.location
  scopes                  = [azurerm_application_insights.main.id]
  severity                = 1
  evaluation_frequency    = "PT15M"
  window_duration         = "PT15M"
  auto_mitigation_enabled = true
  criteria {
    query                   = "requests | where name in (\"whatsapp_webhook\", \"whatsapp_outbound\") and toint(resultCode) >= 500"
    time_aggregation_method = "Count"
    operator                = "GreaterThan"
    threshold               = 0
    failing_periods {
      number_of_evaluation_periods             = 1
      minimum_failing_periods_to_trigger_alert = 1
    }
  }
  action {
    action_groups = [azurerm_monitor_action_group.main.id]
  }
}

# --- Query pack and workbook ---------------------------------------------------------------------

# The queries are infra/monitoring/queries/<name>.kql, one file each, with their display names in
# infra/monitoring/queries.json; Bicep loads the same files, so neither template holds a copy of a
# query. Both GUID names below are uuidv5 of where the resource lives (deterministic, like Bicep's
# guid()): a fresh state or a second apply finds the same query and workbook instead of making new ones.
locals {
  monitoring_dir     = "${path.module}/../monitoring"
  monitoring_queries = jsondecode(file("${local.monitoring_dir}/queries.json"))
  monitoring_query_texts = {
    for name, _ in local.monitoring_queries : name => file("${local.monitoring_dir}/queries/${name}.kql")
  }
  resource_group_id = "/subscriptions/${var.subscription_id}/resourceGroups/${var.resource_group_name}"
  query_pack_name   = "${var.name_prefix}-queries"

  # infra/monitoring/workbook.json with the query of each query item (type 3), a reference
  # "{{queries/<name>.kql}}", replaced by that file's text, as in Bicep. A conditional reports the
  # errors of the branch it takes only, so text and parameter items (no content.query) pass as they are.
  workbook_template = jsondecode(file("${local.monitoring_dir}/workbook.json"))
  workbook_data = jsonencode({
    version = local.workbook_template.version
    items = [for item in local.workbook_template.items : item.type != 3 ? item : merge(item, {
      content = merge(item.content, {
        query = local.monitoring_query_texts[trimsuffix(trimprefix(item.content.query, "{{queries/"), ".kql}}")]
      })
    })]
    fallbackResourceIds = [azurerm_application_insights.main.id]
  })
}

# Logs > Queries > Query packs: "<name_prefix>-queries".
resource "azurerm_log_analytics_query_pack" "main" {
  name                = local.query_pack_name
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
}

resource "azurerm_log_analytics_query_pack_query" "main" {
  for_each       = local.monitoring_queries
  name           = uuidv5("url", "${local.resource_group_id}/providers/Microsoft.OperationalInsights/queryPacks/${local.query_pack_name}/queries/${each.key}")
  query_pack_id  = azurerm_log_analytics_query_pack.main.id
  display_name   = each.value.displayName
  description    = each.value.description
  body           = local.monitoring_query_texts[each.key]
  categories     = ["applications"]
  resource_types = ["microsoft.insights/components"]
}

# Linked to the Application Insights component: Application Insights > Workbooks.
resource "azurerm_application_insights_workbook" "main" {
  name                = uuidv5("url", "${local.resource_group_id}/providers/Microsoft.Insights/workbooks/${var.name_prefix}-archiver")
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  display_name        = "WhatsApp Archiver (${var.name_prefix})"
  category            = "workbook"
  source_id           = lower(azurerm_application_insights.main.id) # the provider wants it lowercase
  data_json           = local.workbook_data
}
