"""Every HTTP function and every CLI command that takes an id, tried as an attacker holding the
function key would: arbitrary query parameters, headers and methods, over Azurite, with every
storage request recorded as the service would resolve it.

Two credentials: the account key (Shared Key signs the path, so a traversal fails inside the SDK)
and an account SAS, which, like the managed identity's bearer token, does not sign the path — under
it ``reports/../mapping/x`` is served as ``mapping/x``. The control test shows that.

What must hold for any input: no request outside the containers and prefixes the endpoint serves,
no 5xx, no personal data (nor the rejected value) in an error body.
"""

from __future__ import annotations

import json
import posixpath
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.core.pipeline.transport import RequestsTransport
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.composition import reset_container
from shared.domain.ledger import WindowInfo
from shared.domain.records import record_key
from shared.domain.window import Window
from shared.functions import report, status
from tests.test_identifiers import TRAVERSALS

pytestmark = pytest.mark.integration

STATE = "archive-state"
RECORDS = "archive-records"
# Planted where no endpoint may look: if any of these shows in a response, the endpoint leaked.
MAPPING_MARKER = "+447700900999,leak-canary@contoso.example"
RECORD_MARKER = "record content canary: the client's message text"
RECORD_KEY = record_key("canary-message")
KNOWN_WINDOW = WindowInfo(
    Window(datetime(2026, 11, 1, 2, tzinfo=UTC), datetime(2026, 11, 2, 2, tzinfo=UTC)), 1,
    datetime(2026, 11, 2, 2, 0, 0, 123000, tzinfo=UTC),
)
STORED_ONLY_WINDOW = "20261020T020000Z-20261021T020000Z.20261021T020000456Z"  # a report, no ledger entry
QUEUES = {"listing", "items", "listing-poison", "items-poison", "transcripts", "transcripts-poison"}

# What each function may touch in the state container: (method, blob-name prefix).
SERVES = {
    "archive_report": ("windows/", "reports/"),
    "archive_status": ("windows/",),
}


@dataclass
class StorageRequest:
    method: str
    container: str | None
    blob: str | None  # as the service resolves it: percent-decoded, dot segments removed
    query: dict[str, str]
    queue: bool
    table: bool = False  # a table request: ``container`` is the table ("Tables" to create one, "$batch")

    @property
    def lists(self) -> bool:
        return self.query.get("comp") == "list"


@dataclass
class Recorder:
    requests: list[StorageRequest] = field(default_factory=list)
    queue_ports: set[int] = field(default_factory=set)
    table_ports: set[int] = field(default_factory=set)

    def record(self, url: str, method: str) -> None:
        split = urllib.parse.urlsplit(url)
        # What a server (or a proxy, or the transport) makes of the path: decoded, then resolved.
        path = posixpath.normpath("/" + urllib.parse.unquote(split.path).lstrip("/"))
        parts = path.strip("/").split("/", 2)[1:]  # drop the account segment (Azurite's path style)
        query = dict(urllib.parse.parse_qsl(split.query))
        queue = split.port in self.queue_ports
        if split.port in self.table_ports:
            # /<account>/<table>(PartitionKey='…',RowKey='…'), /<account>/<table>(), /<account>/Tables
            table = parts[0].split("(", 1)[0] if parts else None
            self.requests.append(StorageRequest(method, table, None, query, False, table=True))
            return
        self.requests.append(StorageRequest(
            method, parts[0] if parts else None, parts[1] if len(parts) > 1 else None, query, queue,
        ))


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    recording = Recorder()
    original = RequestsTransport.send

    def send(self, request, **kwargs):
        recording.record(request.url, request.method)
        return original(self, request, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RequestsTransport, "send", send)
        yield recording


@pytest.fixture(scope="module")
def storage(recorder) -> Iterator[dict[str, str]]:
    """Azurite seeded with a window, a stored report, the mapping and a record; the connection
    strings of both credentials."""
    from azure.storage.blob import BlobServiceClient
    from azure.storage.blob._shared.models import AccountSasPermissions, ResourceTypes
    from azure.storage.blob._shared.shared_access_signature import SharedAccessSignature

    from shared.adapters.azure_storage import BlobReportStore, BlobWindowLedger
    from shared.local.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite

    with Azurite() as azurite:
        recorder.queue_ports.add(azurite.queue_port)
        recorder.table_ports.add(azurite.table_port)
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        for name in (STATE, RECORDS):
            service.create_container(name)
        state = service.get_container_client(STATE)
        state.upload_blob("mapping/phone-to-email.csv", f"PhoneNumber,EmailAddress\n{MAPPING_MARKER}\n")
        state.upload_blob(f"deliveries/aa/{RECORD_KEY}.json", json.dumps({"mailbox": "leak-canary@contoso.example"}))
        service.get_container_client(RECORDS).upload_blob(f"{RECORD_KEY}.json", json.dumps({"text": RECORD_MARKER}))
        BlobWindowLedger(service, STATE).open_window(KNOWN_WINDOW)
        # Stray folders under windows/ (anyone with a data role can write them): they must neither
        # break status and report nor take a real window's place among the newest.
        for stray in ("windows/zzzz/window.json", "windows/zz%2fx/window.json", "windows/zz..x/window.json"):
            state.upload_blob(stray, b"{}")
        BlobReportStore(service, STATE).save(STORED_ONLY_WINDOW, [json.dumps({"window_id": STORED_ONLY_WINDOW})],
                                             ["window_id\r\n"])
        sas = SharedAccessSignature(ACCOUNT_NAME, ACCOUNT_KEY).generate_account(
            # Blob, queue and table (the blob SDK's Services object knows no tables): "bqt".
            "bqt", ResourceTypes(service=True, container=True, object=True),
            AccountSasPermissions(read=True, list=True, write=True, create=True, add=True, update=True,
                                  process=True),
            datetime.now(UTC) + timedelta(hours=2),
        )
        yield {
            "account key": azurite.connection_string,
            "unsigned path (account SAS)": (
                f"BlobEndpoint={azurite.endpoint('blob')};QueueEndpoint={azurite.endpoint('queue')};"
                f"TableEndpoint={azurite.endpoint('table')};SharedAccessSignature={sas}"
            ),
        }


CREDENTIALS = ["account key", "unsigned path (account SAS)"]
WEBHOOK_SECRET = "fuzz-app-secret"


@pytest.fixture(scope="module", params=CREDENTIALS)
def app(request, storage, recorder, tmp_path_factory) -> Iterator[Recorder]:
    """The function app's settings on Azurite under one credential."""
    users = tmp_path_factory.mktemp("dir") / "users.txt"
    users.write_text("leak-canary@contoso.example\n", encoding="utf-8")
    env = {
        "AzureWebJobsStorage": storage[request.param],
        "DIRECTORY": "file", "DIRECTORY_FILE": str(users),
        "MAILBOX_WRITER": "eml", "EML_MAILBOX_DIR": str(tmp_path_factory.mktemp("mail")),
        # Built by the import function's composition; a forged message must never get as far as calling it.
        "TELEMESSAGE_BASE_URL": "http://127.0.0.1:9", "TELEMESSAGE_USERNAME": "never-used",
        "WHATSAPP_APP_SECRET": WEBHOOK_SECRET, "WHATSAPP_VERIFY_TOKEN": "fuzz-verify-token",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        reset_container()
        yield recorder
    reset_container()


def test_control_an_unsigned_credential_reads_across_prefixes_and_containers_and_the_recorder_sees_it(
    storage, recorder,
):
    """Without the checks, reports/../mapping/... would be served as the mapping file: the fuzz
    below is not looking for something that cannot happen."""
    from azure.storage.blob import BlobServiceClient

    raw = BlobServiceClient.from_connection_string(storage["unsigned path (account SAS)"]).get_container_client(STATE)
    recorder.requests.clear()
    assert MAPPING_MARKER.encode() in raw.download_blob("reports/../mapping/phone-to-email.csv").readall()
    assert RECORD_MARKER.encode() in raw.download_blob(f"reports/../../{RECORDS}/{RECORD_KEY}.json").readall()
    reads = [(r.container, r.blob) for r in recorder.requests if r.method == "GET"]
    assert (STATE, "mapping/phone-to-email.csv") in reads and (RECORDS, f"{RECORD_KEY}.json") in reads


def _outside(requests: list[StorageRequest], function: str) -> list[StorageRequest]:
    allowed = SERVES[function]
    wrong = []
    for r in requests:
        if r.table:
            # The ledger's table only, read (or created, on empty local storage); no other table.
            if not ((r.container == "archiveledger" and r.method == "GET")
                    or (r.container == "Tables" and r.method == "POST")):
                wrong.append(r)
            continue
        if r.queue:
            # status reads queue depths (GET ?comp=metadata) of the connector's own queues, nothing else.
            if function != "archive_status" or r.container not in QUEUES or r.method not in ("GET", "HEAD", "PUT") \
                    or r.blob is not None:
                wrong.append(r)
            continue
        if r.container != STATE:
            wrong.append(r)
        elif r.blob is None:
            # The container itself: created once per process, or listed under a served prefix.
            prefix = r.query.get("prefix", "")
            if not (r.method == "PUT" and r.query.get("restype") == "container") and not (
                r.lists and prefix.startswith(allowed)
            ):
                wrong.append(r)
        elif r.method not in ("GET", "HEAD") or not r.blob.startswith(allowed):
            # Reads only (a stored report's size is asked before its body), under a served prefix.
            wrong.append(r)
    return wrong


def _call(function, method: str, params: dict[str, str], headers: dict[str, str]) -> func.HttpResponse:
    request = func.HttpRequest(method, "http://localhost/api/x", headers=headers, params=params, body=b"")
    return function.build().get_user_function()(request)  # an exception here is the host's 500


def _check(recorder: Recorder, name: str, response: func.HttpResponse, params: dict[str, str]) -> None:
    assert response.status_code in (200, 400, 404, 405), (name, response.status_code)
    assert not _outside(recorder.requests, name), _outside(recorder.requests, name)
    body = response.get_body().decode("utf-8", errors="replace")
    for marker in (MAPPING_MARKER, RECORD_MARKER, "leak-canary"):
        assert marker not in body
    if response.status_code >= 400:
        for value in params.values():
            if len(value) >= 4:
                assert value not in body, "an error body repeats the request's value"


WINDOW_VALUES = st.one_of(
    st.sampled_from(TRAVERSALS + [
        "../mapping/phone-to-email", "../../archive-records/" + RECORD_KEY, "..%2fmapping%2fphone-to-email",
        "%2e%2e/%2e%2e/archive-records/x", "reports\\..\\mapping", "/windows", KNOWN_WINDOW.window_id,
        STORED_ONLY_WINDOW, KNOWN_WINDOW.window_id + "/../../mapping/phone-to-email",
        "20261101T020000Z-20261102T020000Z.20261102T020000123Z\x00", "",
    ]),
    st.text(max_size=80),
    st.text(alphabet="./\\%2eEfFcC5", max_size=24),
)
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get", "TRACE"])
HEADERS = st.dictionaries(
    st.sampled_from(["Accept", "X-Forwarded-For", "X-Original-URL", "Range", "If-Match", "Cookie"]),
    st.text(max_size=40), max_size=3,
)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(window=WINDOW_VALUES, fmt=st.one_of(st.sampled_from(["json", "csv", "CSV", "html", "", "../csv"]),
                                           st.text(max_size=12)),
       extra=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=20), max_size=2),
       method=METHODS, headers=HEADERS)
def test_report_reads_only_windows_and_reports_whatever_it_is_asked(app, window, fmt, extra, method, headers):
    params = {**extra, "window": window, "format": fmt}
    app.requests.clear()
    response = _call(report.archive_report, method, params, headers)
    _check(app, "archive_report", response, params)
    if method.upper() not in ("GET", "HEAD"):
        assert response.status_code == 405 and not app.requests


@FUZZ
@given(fmt=st.one_of(st.sampled_from(["json", "html", "", "HTML", "xml"]), st.text(max_size=12)),
       windows=st.one_of(st.sampled_from(["1", "14", "366", "100000", "-1", "1e9", "٣", "1_0", "../1"]),
                         st.text(max_size=12)),
       extra=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=20), max_size=2),
       method=METHODS, headers=HEADERS)
def test_status_reads_only_windows_and_queue_depths_whatever_it_is_asked(app, fmt, windows, extra, method, headers):
    params = {**extra, "format": fmt, "windows": windows}
    app.requests.clear()
    response = _call(status.archive_status, method, params, headers)
    _check(app, "archive_status", response, params)


@pytest.mark.parametrize("window", [
    "../mapping/phone-to-email", "..%2fmapping%2fphone-to-email", "%2e%2e/%2e%2e/archive-records/" + RECORD_KEY,
    "reports\\..\\mapping\\phone-to-email", "/archive-state/mapping/phone-to-email", "a\x00b", "a\nb",
    KNOWN_WINDOW.window_id + "/../../mapping/phone-to-email",
])
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_report_answers_400_and_reads_nothing_for_every_window_id_that_is_not_one(app, window, fmt):
    app.requests.clear()
    response = _call(report.archive_report, "GET", {"window": window, "format": fmt}, {})
    assert response.status_code == 400 and json.loads(response.get_body())["parameter"] == "window"
    assert app.requests == []


def test_a_stored_report_larger_than_one_response_is_refused_before_it_is_read(app, monkeypatch):
    monkeypatch.setattr(report, "HTTP_STORED_REPORT_MAX_BYTES", 5)
    app.requests.clear()
    refused = _call(report.archive_report, "GET", {"window": STORED_ONLY_WINDOW, "format": "csv"}, {})
    assert refused.status_code == 413 and "shared.cli report" in json.loads(refused.get_body())["error"]
    name = f"reports/{STORED_ONLY_WINDOW}.csv"
    assert [r.method for r in app.requests if r.blob == name] == ["HEAD"]  # its size asked, its body never read


def test_valid_input_is_served_as_before(app):
    known = _call(report.archive_report, "GET", {"window": KNOWN_WINDOW.window_id}, {})
    assert known.status_code == 200 and json.loads(known.get_body())["window_id"] == KNOWN_WINDOW.window_id
    stored = _call(report.archive_report, "GET", {"window": STORED_ONLY_WINDOW, "format": "csv"}, {})
    assert stored.status_code == 200 and stored.get_body().decode().startswith("window_id")
    unknown = _call(report.archive_report, "GET", {"window": "20200101T000000Z-20200102T000000Z.20200102T000000000Z"},
                    {})
    assert unknown.status_code == 404
    page = _call(status.archive_status, "GET", {"windows": "3"}, {})
    assert page.status_code == 200 and json.loads(page.get_body())["windows"][0]["window_id"] == KNOWN_WINDOW.window_id


@pytest.mark.parametrize("field,value", [
    ("record_ref", "../mapping/phone-to-email.csv"), ("record_ref", f"../../{RECORDS}/{RECORD_KEY}.json"),
    ("window_id", "../../mapping/phone-to-email"), ("record_key", "../deliveries/aa"),
])
def test_a_forged_item_message_is_poisoned_whole_and_reads_nothing(app, field, value):
    """The import trigger's input is a queue message: anyone with a queue data role can write one."""
    from azure.functions.queue import QueueMessage

    from shared.composition import get_container
    from shared.domain.tasks import ItemTask, read_poison_queue_message
    from shared.functions import items

    task = ItemTask(window_id=KNOWN_WINDOW.window_id, record_key=RECORD_KEY, record_ref=f"{RECORD_KEY}.json")
    forged = json.dumps({**task.model_dump(mode="json"), field: value})
    app.requests.clear()
    items.import_archive_item.build().get_user_function()(QueueMessage(id="m", body=forged.encode(), dequeue_count=1))
    reads = [r for r in app.requests if not r.queue and r.method == "GET"]
    assert reads == []  # neither the named blob nor anything else was read
    queue = get_container().items_poison_queue
    [message] = queue.client.receive_messages(max_messages=32, visibility_timeout=1)
    queue.client.delete_message(message)
    poison = read_poison_queue_message(message.content, inserted_at=message.inserted_on, dequeue_count=1)
    assert poison.reason.value == "invalid_item" and poison.original_message == forged


EVIDENCE = "archive-evidence"


def _webhook_writes_only_its_bodies_and_hand_offs(requests: list[StorageRequest]) -> list[StorageRequest]:
    wrong = []
    for r in requests:
        if r.queue:
            if r.container != "listing" or r.method not in ("POST", "PUT"):
                wrong.append(r)
        elif r.container == EVIDENCE:
            # The body once more, as evidence: created under its digest, never read, never anything else.
            if r.method != "PUT" or not (r.blob or "").startswith("raw/webhook-body/") and r.blob is not None:
                wrong.append(r)
            elif r.blob is None and r.query.get("restype") != "container":
                wrong.append(r)
        elif r.method == "GET" or r.container != RECORDS or (r.blob is not None and not r.blob.startswith("webhooks/")):
            if not (r.method == "PUT" and r.blob is None and r.query.get("restype") == "container"):
                wrong.append(r)
    return wrong


@FUZZ
@given(method=METHODS, params=st.dictionaries(st.sampled_from(["hub.mode", "hub.verify_token", "hub.challenge", "x"]),
                                              st.text(max_size=40), max_size=4),
       headers=st.dictionaries(st.sampled_from(["X-Hub-Signature-256", "X-Hub-Signature", "Content-Type", "Accept"]),
                               st.text(max_size=80), max_size=3),
       body=st.binary(max_size=2048), sign=st.booleans())
def test_the_webhook_reads_nothing_and_writes_only_signed_bodies_whatever_it_is_sent(
    app, method, params, headers, body, sign,
):
    import hashlib
    import hmac

    from shared.functions import whatsapp_webhook

    if sign:
        headers = {**headers, "X-Hub-Signature-256": "sha256=" + hmac.new(
            WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()}
    app.requests.clear()
    request = func.HttpRequest(method, "http://localhost/api/whatsapp/webhook", headers=headers, params=params,
                               body=body)
    response = whatsapp_webhook.whatsapp_webhook.build().get_user_function()(request)
    assert response.status_code in (200, 401, 403, 405, 413)
    assert not _webhook_writes_only_its_bodies_and_hand_offs(app.requests)
    stored = [r for r in app.requests if not r.queue and r.blob is not None and r.container == RECORDS]
    kept = [r for r in app.requests if not r.queue and r.blob is not None and r.container == EVIDENCE]
    if method.upper() == "POST" and sign:
        # Stored once for the pipeline, once as evidence under the body's own digest.
        digest = hashlib.sha256(body).hexdigest()
        assert response.status_code == 200 and len(stored) == 1
        assert [r.blob for r in kept] == [f"raw/webhook-body/{digest}"]
    elif method.upper() == "POST":
        assert response.status_code == 401 and stored == [] and kept == []
    answer = response.get_body()
    if response.status_code != 200 or method.upper() != "GET":
        assert answer == b""  # nothing is ever said back but the handshake's challenge


# --- the CLI ----------------------------------------------------------------------------------------
CLI_COMMANDS = {
    "report --since": lambda v: ["report", "--since", v],
    "backfill --from": lambda v: ["backfill", "--from", v, "--to", "2026-01-02"],
    "backfill --to": lambda v: ["backfill", "--from", "2026-01-01", "--to", v],
    "poison purge --older-than": lambda v: ["poison", "purge", "--older-than", v],
    "status --windows": lambda v: ["status", "--windows", v],
    "mapping check --region": lambda v: ["mapping", "check", "MAP.csv", "--region", v],
    "report --window": lambda v: ["report", "--window", v],
    "poison show": lambda v: ["poison", "show", v],
    "poison replay --message-id": lambda v: ["poison", "replay", "--message-id", v],
    "poison replay --reason": lambda v: ["poison", "replay", "--reason", v],
    "poison list --reason": lambda v: ["poison", "list", "--reason", v],
    "poison list --queue": lambda v: ["poison", "list", "--queue", v],
    "mapping show": lambda v: ["mapping", "show", v],
}
CLI_VALUES = ["../mapping/phone-to-email", "..%2f..%2farchive-records", "a\\..\\b", "/etc/passwd", "x\x00y",
              "%2e%2e"]
# Numbers and times that overflow or mean nothing, for the arguments that take numbers and times.
ODD_NUMBERS = ["nan", "-inf", "1e400", "0001-01-01T00:00+14:00", "0900-01-01", "9999-12-31", "99999999999999"]
NUMERIC = ("report --since", "backfill --from", "backfill --to", "poison purge --older-than", "status --windows")


@pytest.mark.parametrize("command,value", [(command, value) for command in CLI_COMMANDS for value in CLI_VALUES]
                         + [(command, value) for command in NUMERIC for value in ODD_NUMBERS])
def test_every_cli_command_that_takes_an_id_or_a_name_exits_2_naming_it_and_reads_nothing(
    app, capsys, command, value,
):
    from shared.cli.main import main

    app.requests.clear()
    with pytest.raises(SystemExit) as exit_:
        main(CLI_COMMANDS[command](value))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    argument = command.split()[-1] if command.split()[-1].startswith("--") else {"poison show": "ID",
                                                                                  "mapping show": "PHONE"}[command]
    assert f"argument {argument}:" in err and value not in err
    assert app.requests == []
