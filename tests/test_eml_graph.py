"""``import-eml --graph`` into the local Graph-compatible server on 127.0.0.1: a vendor's EML is written
through Graph as it is, with the attachments Microsoft's connector could not carry — a 5 MB one through
an upload session, byte for byte, and, with the item limit raised (MAX_ITEM_MB), an item over 10 MB —
while an item over the limit is poisoned ``too_big`` naming its size; a second run writes nothing."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from email import policy
from email.message import EmailMessage

import pytest

from shared.cli.main import main
from shared.composition import reset_container
from shared.local.graph_stand_in.server import LocalGraph
from tests.test_cli_import_eml import ALICE, manifest

pytestmark = pytest.mark.integration
TOKEN = "local-graph-token"
MIB = 1024 * 1024


def eml_with(number: int, attachment: bytes) -> bytes:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = '"+44 7700 900201" <+447700900201@capture.example>'
    message["To"] = f"Alice Smith <{ALICE}>"
    message["Subject"] = f"WhatsApp video {number}"
    message["Date"] = f"Fri, 04 Dec 2026 10:{number:02d}:00 +0000"
    message["Message-ID"] = f"<video-{number}@capture.example>"
    message.set_content("See the video.\n")
    message.add_attachment(attachment, maintype="video", subtype="mp4", filename=f"clip-{number}.mp4")
    return message.as_bytes()


def blob(size: int, seed: int) -> bytes:
    # Not compressible (a ZIP bomb check would otherwise be near), and distinct per seed.
    chunk = hashlib.sha256(str(seed).encode()).digest()
    out = bytearray()
    while len(out) < size:
        chunk = hashlib.sha256(chunk).digest()
        out += chunk
    return bytes(out[:size])


@pytest.fixture
def graph(monkeypatch):
    with LocalGraph({ALICE: True}, token=TOKEN, keep_attachment_bytes=16 * MIB) as server:
        monkeypatch.setenv("GRAPH_BASE_URL", server.base_url)
        monkeypatch.setenv("GRAPH_ACCESS_TOKEN", TOKEN)
        reset_container()
        yield server
    reset_container()


def test_big_attachments_go_through_graph_byte_for_byte_and_an_item_over_the_limit_is_poisoned(tmp_path, graph):
    medium, large = blob(5 * MIB, 1), blob(12 * MIB, 2)
    emls = {"video-1.eml": eml_with(1, medium), "video-2.eml": eml_with(2, large)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in emls.items():
            archive.writestr(name, data)
        archive.writestr("batch.mf", manifest(2, *emls))
    drop = tmp_path / "202612040000-TeleMessage_7_20261205013000.zip"
    drop.write_bytes(buffer.getvalue())

    def run(*extra: str) -> dict:
        report = tmp_path / "report.json"
        assert main(["import-eml", str(drop), "--graph", "--region", "GB",
                     "--report", str(report), *extra]) == 0
        [only] = json.loads(report.read_text(encoding="utf-8"))
        return only

    # At the default limit (10 MB, Microsoft's connector's own): the 5 MB video is archived, the 12 MB
    # one is poisoned with its size.
    first = run()
    assert first["imported"] == 1 and first["failed_by_reason"] == {"too_big": 1}
    [too_big] = [item for item in first["items"] if item["outcome"] == "poisoned"]
    assert too_big["file"].endswith("/video-2.eml") and "over the limit of 10485760" in too_big["detail"]
    assert graph.request_counts(ALICE).get("upload_session_create", 0) == 1  # over 3 MB: an upload session
    # The limit raised (the firm's Exchange allows up to 150 MB): the 12 MB video is archived too, and
    # the 5 MB one is not written twice.
    second = run("--max-item-mb", "25")
    assert (second["imported"], second["skipped_duplicates"]) == (1, 1)
    stored = graph.messages(ALICE)
    assert len(stored) == 2
    kept = {a["name"]: a for m in stored for a in m["attachments"]}
    assert kept["clip-1.mp4"]["sha256"] == hashlib.sha256(medium).hexdigest()
    assert kept["clip-2.mp4"]["sha256"] == hashlib.sha256(large).hexdigest() and kept["clip-2.mp4"]["size"] == 12 * MIB
    headers = [{h["name"]: h["value"] for h in m["internetMessageHeaders"]} for m in stored]
    assert {h["X-Archive-Eml-Sha256"] for h in headers} == {hashlib.sha256(e).hexdigest() for e in emls.values()}
    assert {h["X-Archive-Source"] for h in headers} == {"VENDOR_EML"}
    # A plain-text EML's text is the item's body (Graph takes one body: HTML keeping its lines).
    assert all("See the video." in m["body"]["content"] and m["body"]["contentType"].lower() == "html"
               for m in stored)
