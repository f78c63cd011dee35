"""The trigger functions: one blueprint per trigger, each a thin wrapper over shared.service."""

import logging

from shared.telemetry import configure_from_environment

# The storage and identity SDKs log every HTTP request (URL, headers) at INFO, and the host forwards
# INFO to Application Insights. URLs can name a record or a mailbox; our own logs carry ids and
# counts only, so keep the SDKs to warnings.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
logging.getLogger("azure.identity").setLevel(logging.WARNING)

# OpenTelemetry to Application Insights, only when APPLICATIONINSIGHTS_CONNECTION_STRING is set
# (docs/telemetry.md); without it nothing is imported and nothing is exported.
configure_from_environment()
