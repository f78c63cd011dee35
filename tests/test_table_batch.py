"""shared/adapters/table_batch.py: the SDK's transaction request, byte for byte, and its answers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient, TableTransactionError, UpdateMode
from azure.data.tables._table_batch import TableBatchOperations

from shared.adapters.table_batch import batch_body, submit_transaction


@pytest.fixture
def table(azurite: Any) -> Any:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    return service.create_table_if_not_exists("batchtest")


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    requests: list[Any] = []
    original = RequestsTransport.send

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        if request.url.endswith("$batch"):
            requests.append(request)
        return original(self, request, **kwargs)

    monkeypatch.setattr(RequestsTransport, "send", send)
    return requests


def _operations(row: str, etag: str | None = None) -> list[tuple[Any, ...]]:
    update: tuple[Any, ...] = (
        ("update", {"PartitionKey": "p", "RowKey": "tally", "n": 2, "text": "é ~ ' \" \\ 😀"},
         {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified})
        if etag else ("upsert", {"PartitionKey": "p", "RowKey": "tally", "n": 1}, {"mode": UpdateMode.REPLACE}))
    return [("create", {"PartitionKey": "p", "RowKey": row, "kind": "outcome", "entry_0": "x" * 300,
                        "flag": True, "count": 7}),
            update,
            ("upsert", {"PartitionKey": "p", "RowKey": f"{row}~r", "listed": False}, {"mode": UpdateMode.MERGE}),
            ("delete", {"PartitionKey": "p", "RowKey": "absent-but-harmless"})]


def test_the_body_is_the_sdks_byte_for_byte(table: Any, sent: list[Any]) -> None:
    table.upsert_entity({"PartitionKey": "p", "RowKey": "absent-but-harmless"})
    table.submit_transaction(_operations("a"))
    etag = table.get_entity("p", "tally").metadata["etag"]
    table.upsert_entity({"PartitionKey": "p", "RowKey": "absent-but-harmless"})
    table.submit_transaction(_operations("b", etag))
    for sdk, row, tag in ((sent[0], "a", None), (sent[1], "b", etag)):
        body = sdk.content if hasattr(sdk, "content") else sdk.body
        batch = re.search(r"boundary=(\S+)", sdk.headers["Content-Type"]).group(1)
        changeset = re.search(rb"boundary=(changeset_[0-9a-f-]+)", body).group(1).decode()
        batched = TableBatchOperations(config=table._client._config,
                                       endpoint=f"{table.scheme}://{table._primary_hostname}",
                                       table_name=table.table_name, is_cosmos_endpoint=False)
        for operation in _operations(row, tag):
            batched.add_operation(operation)
        assert batch_body(batched.requests, sdk.headers["x-ms-date"], batch, changeset) == body


def test_a_transaction_writes_as_the_sdks_does(table: Any, sent: list[Any]) -> None:
    table.upsert_entity({"PartitionKey": "p", "RowKey": "absent-but-harmless"})
    submit_transaction(table, _operations("c"))
    assert table.get_entity("p", "c")["entry_0"] == "x" * 300
    assert table.get_entity("p", "c")["count"] == 7
    assert table.get_entity("p", "tally")["n"] == 1
    assert table.get_entity("p", "c~r")["listed"] is False
    assert len(sent) == 1
    ours = sent[0]
    assert ours.headers["Content-Type"].startswith("multipart/mixed; boundary=batch_")
    assert {"x-ms-version", "DataServiceVersion", "MaxDataServiceVersion", "Accept"} <= set(ours.headers)


@pytest.mark.parametrize("conflict", ["exists", "etag"])
def test_a_refused_transaction_raises_what_the_sdk_raises(table: Any, conflict: str) -> None:
    table.upsert_entity({"PartitionKey": "p", "RowKey": "tally", "n": 0})
    stale = table.get_entity("p", "tally").metadata["etag"]
    table.upsert_entity({"PartitionKey": "p", "RowKey": "tally", "n": 5})
    table.create_entity({"PartitionKey": "p", "RowKey": "taken"})
    if conflict == "exists":
        operations: list[tuple[Any, ...]] = [("create", {"PartitionKey": "p", "RowKey": "fresh"}),
                                             ("create", {"PartitionKey": "p", "RowKey": "taken"})]
    else:
        operations = [("create", {"PartitionKey": "p", "RowKey": "fresh"}),
                      ("update", {"PartitionKey": "p", "RowKey": "tally", "n": 6},
                       {"mode": UpdateMode.REPLACE, "etag": stale, "match_condition": MatchConditions.IfNotModified})]
    errors = []
    for send in (table.submit_transaction, lambda ops: submit_transaction(table, ops)):
        with pytest.raises(TableTransactionError) as raised:
            send(operations)
        errors.append((type(raised.value), raised.value.status_code, raised.value.error_code))
    assert errors[0] == errors[1]
    assert errors[0][1] == (409 if conflict == "exists" else 412)
    assert table.get_entity("p", "tally")["n"] == 5
    with pytest.raises(Exception, match="ResourceNotFound|Not ?Found"):
        table.get_entity("p", "fresh")
