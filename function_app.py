"""The function app: a registry of one blueprint per trigger. All logic lives in shared/."""

import azure.functions as func

from shared.functions import (
    chat_exports,
    eml_drops,
    items,
    listing,
    report,
    schedule,
    status,
    transcripts,
    whatsapp_outbound,
    whatsapp_webhook,
)

app = func.FunctionApp()
app.register_functions(schedule.bp)
app.register_functions(listing.bp)
app.register_functions(items.bp)
app.register_functions(transcripts.bp)
app.register_functions(status.bp)
app.register_functions(report.bp)
app.register_functions(whatsapp_webhook.bp)
app.register_functions(whatsapp_outbound.bp)
app.register_functions(chat_exports.bp)
app.register_functions(eml_drops.bp)
