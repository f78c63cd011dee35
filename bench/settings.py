"""The app settings the soak and the benchmark run the functions with: every setting a figure or an
expectation depends on is pinned, so the caller's environment cannot change what a run measures."""

from __future__ import annotations

SETTLE_MINUTES = 15  # CAPTURE_SETTLE_MINUTES: windows end this long before now


def pinned_app_settings(
    *, storage: str, telemessage_url: str, username: str, password: str, graph_url: str, graph_token: str,
    max_item_mb: int = 10, custom_mapping: bool = True,
) -> dict[str, str]:
    """Graph writer and directory on the local Graph, TeleMessage on the local server, one window of
    hourly slices reaching back 25 hours (an hour more than a day of traffic: however long
    generating it and starting the stack takes, the first window still holds every record)."""
    return {
        "AzureWebJobsStorage": storage,
        "TELEMESSAGE_BASE_URL": telemessage_url,
        "TELEMESSAGE_USERNAME": username,
        "TELEMESSAGE_PASSWORD": password,
        "TELEMESSAGE_PAGE_SIZE": "200",
        "MAILBOX_WRITER": "graph",
        "DIRECTORY": "graph",
        "GRAPH_BASE_URL": graph_url,
        "GRAPH_ACCESS_TOKEN": graph_token,
        "MAPPING_FILE": "",  # the mapping is read where production reads it: the blob
        "CUSTOM_MAPPING_ENABLED": "true" if custom_mapping else "false",
        "AUTO_MAPPING_ENABLED": "true",
        "DIRECTORY_PHONE_MAPPING_ENABLED": "false",
        "CATCH_ALL_MAILBOX": "",
        "DEFAULT_PHONE_REGION": "GB",
        "MAX_ITEM_MB": str(max_item_mb),
        "DAILY_TRANSCRIPTS": "false",
        "ARCHIVE_SCHEDULE": "0 0 2 * * *",
        "CAPTURE_SETTLE_MINUTES": str(SETTLE_MINUTES),
        "FIRST_RUN_LOOKBACK_HOURS": "25",
        "SLICE_MINUTES": "60",
        "LISTING_OVERLAP_MINUTES": "0",
    }
