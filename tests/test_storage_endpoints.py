"""The connector reaches its storage where the Functions host does, in every cloud."""

from shared.adapters.azure_storage import storage_service_clients


def test_national_cloud_service_uris_are_used_for_identity_based_storage():
    blob, queue = storage_service_clients(
        "", "archiverst", "client-id",
        "https://archiverst.blob.core.usgovcloudapi.net", "https://archiverst.queue.core.usgovcloudapi.net",
    )
    assert blob.url.startswith("https://archiverst.blob.core.usgovcloudapi.net")
    assert queue.url.startswith("https://archiverst.queue.core.usgovcloudapi.net")


def test_public_cloud_endpoints_follow_from_the_account_name():
    blob, queue = storage_service_clients("", "archiverst", "client-id")
    assert blob.url.startswith("https://archiverst.blob.core.windows.net")
    assert queue.url.startswith("https://archiverst.queue.core.windows.net")
