"""Fixtures for tests that run the registered functions against local infrastructure.

Everything listens on 127.0.0.1 with ports chosen by the OS; nothing outside loopback is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.composition import Container, get_container, reset_container
from shared.local.traffic.day import TrafficDay, generate_day
from shared.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_PASSWORD = "local-test-password"  # only ever sent to the local TeleMessage on loopback


def fast_host_json(tmp_path: Path, *, max_dequeue_count: int = 5) -> Path:
    """The repo's host.json with retries made immediately visible, so retry tests take seconds."""
    config = json.loads((REPO_ROOT / "host.json").read_text())
    config["extensions"]["queues"]["visibilityTimeout"] = "00:00:00"
    config["extensions"]["queues"]["maxDequeueCount"] = max_dequeue_count
    path = tmp_path / "host.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def azurite():
    from shared.local.azurite import Azurite

    with Azurite() as instance:
        yield instance


@pytest.fixture
def azurite_blobs(azurite):
    """A blob service client on this test's Azurite (the contract suites' blob adapters use it)."""
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture
def traffic() -> TrafficDay:
    """A day of traffic ending where the first scheduled window ends (now minus the settle margin)."""
    settle = timedelta(minutes=Settings().capture_settle_minutes)
    return generate_day((datetime.now(UTC) - settle).replace(second=0, microsecond=0))


@pytest.fixture
def telemessage(traffic):
    from shared.local.telemessage_server import LocalTeleMessage

    with LocalTeleMessage(traffic, username="connector", password=TEST_PASSWORD) as server:
        yield server


@dataclass
class LocalApp:
    container: Container
    mailbox_dir: Path
    env: dict[str, str]


@pytest.fixture
def local_app(tmp_path, azurite, telemessage, traffic, monkeypatch) -> LocalApp:
    """The function app's settings pointed at Azurite, the local TeleMessage and .eml mailboxes."""
    mapping = tmp_path / "mapping.csv"
    mapping.write_text(traffic.mapping_csv(), encoding="utf-8")
    directory = tmp_path / "directory.txt"
    directory.write_text("\n".join(traffic.directory()) + "\n", encoding="utf-8")
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "TELEMESSAGE_BASE_URL": telemessage.base_url,
        "TELEMESSAGE_USERNAME": "connector",
        "TELEMESSAGE_PASSWORD": TEST_PASSWORD,
        "MAILBOX_WRITER": "eml",
        "EML_MAILBOX_DIR": str(tmp_path / "mailboxes"),
        "DIRECTORY": "file",
        "DIRECTORY_FILE": str(directory),
        "MAPPING_FILE": str(mapping),
        "DEFAULT_PHONE_REGION": "GB",
        "ARCHIVE_SCHEDULE": "0 0 2 * * *",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_container()
    yield LocalApp(get_container(), tmp_path / "mailboxes", env)
    reset_container()
