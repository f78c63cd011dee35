"""Graph answers read as plain JSON (shared/adapters/graph_json.py) and the writer that reads them so.

Deserialising any msgraph-sdk model derived from Entity imports the SDK's whole model tree (about
1,400 modules, a second and 30 MiB on a cold start). The writer must never do it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.adapters.graph_client import build_graph_client
from shared.adapters.graph_errors import graph_failure
from shared.adapters.graph_json import send_json, string, values
from shared.local.graph_stand_in.server import LocalGraph

REPO_ROOT = Path(__file__).resolve().parents[1]
ALICE = "alice@contoso.example"
TOKEN = "local-test-token"

pytestmark = [
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]

WRITES_IN_A_FRESH_PROCESS = r"""
import sys
from dataclasses import replace
from shared.adapters.graph_client import build_graph_client
from shared.adapters.graph_mailbox import GraphMailbox
from shared.local.graph_stand_in.server import LocalGraph
from tests.test_graph_mailbox import ALICE, TOKEN, attached, blob, rendered

with LocalGraph({ALICE: True}, token=TOKEN) as graph:
    with GraphMailbox(build_graph_client(base_url=graph.base_url, access_token=TOKEN)) as writer:
        writer.write(ALICE, rendered("plain"), check_existing=True)  # folder find + create, lookup, create
        big = rendered("large", attachments=(attached("v.mp4", blob(3_500_000)),))
        writer.write(ALICE, big, check_existing=False)  # create + upload session + chunks
        writer.write(ALICE, big, check_existing=True)  # lookup finds it, lists its attachments
        odd = rendered("odd", attachments=(attached("a.bin", blob(2_000_000)), attached("b.bin", blob(2_500_000))))
        writer.write(ALICE, odd, check_existing=False)  # one inline, one posted after the create
    assert len(graph.messages(ALICE)) == 3, graph.messages(ALICE)
print(sum(1 for name in sys.modules if name.startswith("msgraph.generated.models.")))
"""


def test_the_writer_never_deserialises_the_sdks_models_so_the_model_tree_is_never_imported():
    completed = subprocess.run([sys.executable, "-c", WRITES_IN_A_FRESH_PROCESS], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded = int(completed.stdout.split()[-1])
    assert loaded < 60, f"{loaded} model modules imported: something deserialised an Entity"


async def _send(client, request):
    return await send_json(client, request)


def test_send_json_returns_plain_json_none_for_no_content_and_the_sdks_errors():
    import asyncio

    with LocalGraph({ALICE: True}, token=TOKEN) as graph:
        client = build_graph_client(base_url=graph.base_url, access_token=TOKEN)
        folders = client.users.by_user_id(ALICE).mail_folders.by_mail_folder_id("msgfolderroot").child_folders
        from msgraph.generated.models.mail_folder import MailFolder
        from msgraph.generated.models.message import Message
        from msgraph.generated.models.single_value_legacy_extended_property import (
            SingleValueLegacyExtendedProperty,
        )

        loop = asyncio.new_event_loop()
        try:
            created = loop.run_until_complete(_send(client, folders.to_post_request_information(
                MailFolder(display_name="WhatsApp Archiver"))))
            listed = loop.run_until_complete(_send(client, folders.to_get_request_information()))
            with pytest.raises(Exception) as refused:
                loop.run_until_complete(_send(client, folders.to_post_request_information(
                    MailFolder(display_name="WhatsApp Archiver"))))
            inbox = client.users.by_user_id(ALICE).mail_folders.by_mail_folder_id("inbox").messages
            item = loop.run_until_complete(_send(client, inbox.to_post_request_information(Message(
                subject="x", single_value_extended_properties=[
                    SingleValueLegacyExtendedProperty(id="Integer 0x0E07", value="1")]))))
            deleted = client.users.by_user_id(ALICE).messages.by_message_id(string(item, "id"))
            no_content = loop.run_until_complete(_send(client, deleted.permanent_delete.to_post_request_information()))
            with pytest.raises(Exception) as missing:
                loop.run_until_complete(_send(client, deleted.permanent_delete.to_post_request_information()))
        finally:
            loop.run_until_complete(client.request_adapter._http_client.aclose())
            loop.close()

    assert string(created, "id") and string(created, "displayName") == "WhatsApp Archiver"
    assert string(created, "id") in [string(f, "id") for f in values(listed)]  # beside the inbox
    failure = graph_failure(refused.value)
    assert (failure.status, failure.code) == (409, "ErrorFolderExists")
    assert item["isDraft"] is False and no_content is None
    assert graph_failure(missing.value).code == "ErrorItemNotFound"


def test_values_and_string_tolerate_answers_of_the_wrong_shape():
    assert values(None) == [] and values({"value": "x"}) == [] and values({"value": [1, {"id": "a"}]}) == [{"id": "a"}]
    assert string({"id": ""}, "id") is None and string([], "id") is None and string({"id": 5}, "id") is None
