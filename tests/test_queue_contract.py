"""Contracts of the queues, each held by the in-memory fakes and the storage queue on Azurite alike,
so a fake can never promise what the adapter does not do:

- a work queue (WorkQueue): what is sent arrives as the same JSON; a payload over the queue's size
  limit, or one JSON cannot hold, is refused and nothing is queued;
- an inspectable queue (InspectableQueue, the poison queues): a received message hides for its
  visibility timeout and then comes back with a new pop receipt and one more dequeue; delete removes
  it, release shows it again at once; a lapsed pop receipt deletes or releases nothing; a delayed
  send hides until it is due; text that is not the connector's JSON (what the host moves to poison)
  is read as it is; ``depth`` counts hidden messages too."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from shared.domain.tasks import MAX_QUEUE_PAYLOAD
from tests.fakes import MemoryInspectableQueue, MemoryQueue

PAYLOAD = {"kind": "item", "record_key": "ab" * 32, "text": "Grüße ✓", "n": [1, 2.5, None, True]}


def _storage_queue(request):
    from azure.storage.queue import QueueServiceClient

    from shared.adapters.azure_storage import StorageQueue

    service = QueueServiceClient.from_connection_string(request.getfixturevalue("azurite").connection_string)
    return StorageQueue(service, f"contract-{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["memory", "storage"])
def work_queue(request):
    return MemoryQueue("items") if request.param == "memory" else _storage_queue(request)


@pytest.fixture(params=["memory", "storage"])
def queue(request):
    return MemoryInspectableQueue("items-poison") if request.param == "memory" else _storage_queue(request)


def _sent(queue) -> list[dict[str, Any]]:
    """What a receiver of the work queue gets (the fake keeps it; the adapter is read back)."""
    if isinstance(queue, MemoryQueue):
        return queue.messages
    return [json.loads(m.text) for m in queue.receive(32, visibility_timeout=30)]


def _put_raw(queue, text: str) -> None:
    """A message on the wire that the connector did not write (the host moves such to poison)."""
    if isinstance(queue, MemoryInspectableQueue):
        queue.put(text)
    else:
        _ = queue.client  # the queue exists from here on
        queue._raw.send_message(text)  # as it is: not through the base64 encode policy


def test_a_sent_payload_arrives_as_the_same_json(work_queue):
    work_queue.send(PAYLOAD)
    work_queue.send({"kind": "listing", "page": 2})
    assert _sent(work_queue) == [PAYLOAD, {"kind": "listing", "page": 2}]


def test_a_payload_over_the_size_limit_is_refused_and_nothing_is_queued(work_queue):
    with pytest.raises(ValueError, match="over the limit"):
        work_queue.send({"text": "x" * MAX_QUEUE_PAYLOAD})
    assert _sent(work_queue) == []


def test_a_payload_json_cannot_hold_is_refused_and_nothing_is_queued(work_queue):
    with pytest.raises(TypeError):
        work_queue.send({"when": object()})
    assert _sent(work_queue) == []


def test_a_received_message_hides_until_its_visibility_timeout_then_comes_back(queue):
    queue.send(PAYLOAD)
    [first] = queue.receive(5, visibility_timeout=1)
    assert json.loads(first.text) == PAYLOAD and first.dequeue_count == 1 and first.inserted_at.tzinfo
    assert queue.receive(5, visibility_timeout=1) == []  # hidden from everyone else
    time.sleep(1.5)
    [again] = queue.receive(5, visibility_timeout=30)
    assert again.id == first.id and again.pop_receipt != first.pop_receipt and again.dequeue_count == 2
    assert again.inserted_at == first.inserted_at


def test_delete_removes_a_received_message_and_release_shows_it_again_at_once(queue):
    queue.send({"n": 1})
    queue.send({"n": 2})
    received = queue.receive(5, visibility_timeout=30)
    assert sorted(json.loads(m.text)["n"] for m in received) == [1, 2]
    one, two = sorted(received, key=lambda m: json.loads(m.text)["n"])
    queue.delete(one)
    queue.release(two)
    [back] = queue.receive(5, visibility_timeout=30)
    assert json.loads(back.text) == {"n": 2} and back.dequeue_count == 2
    queue.delete(one)  # deleted already: nothing happens


def test_a_lapsed_pop_receipt_deletes_and_releases_nothing(queue):
    queue.send(PAYLOAD)
    [first] = queue.receive(1, visibility_timeout=1)
    time.sleep(1.5)
    [second] = queue.receive(1, visibility_timeout=30)  # another scan holds it now
    queue.delete(first)
    queue.release(first)
    assert queue.receive(5, visibility_timeout=30) == []  # still hidden: the second holder's to handle
    assert queue.depth() == 1
    queue.delete(second)
    assert queue.depth() == 0


def test_receive_takes_at_most_the_number_asked_for(queue):
    for n in range(5):
        queue.send({"n": n})
    first = queue.receive(2, visibility_timeout=30)
    rest = queue.receive(32, visibility_timeout=30)
    assert len(first) == 2 and len(rest) == 3
    assert sorted(json.loads(m.text)["n"] for m in first + rest) == [0, 1, 2, 3, 4]


def test_a_delayed_message_hides_until_it_is_due(queue):
    queue.send({"later": True}, delay_seconds=1)
    assert queue.receive(5, visibility_timeout=30) == []
    assert queue.depth() == 1  # held, though not yet visible
    time.sleep(1.5)
    [due] = queue.receive(5, visibility_timeout=30)
    assert json.loads(due.text) == {"later": True} and due.dequeue_count == 1


def test_text_that_is_not_the_connectors_json_is_read_as_it_is(queue):
    _put_raw(queue, "not json, not base64 either!")
    [message] = queue.receive(5, visibility_timeout=30)
    assert message.text == "not json, not base64 either!"


def test_depth_counts_every_message_hidden_ones_too(queue):
    assert queue.depth() == 0  # before the queue was ever used
    for n in range(3):
        queue.send({"n": n})
    queue.receive(2, visibility_timeout=30)
    assert queue.depth() == 3
    for message in queue.receive(5, visibility_timeout=30):
        queue.delete(message)
    assert queue.depth() == 2


def test_the_inspectable_queue_refuses_what_the_work_queue_refuses(queue):
    with pytest.raises(ValueError, match="over the limit"):
        queue.send({"text": "x" * MAX_QUEUE_PAYLOAD})
    assert queue.depth() == 0


@pytest.mark.integration
def test_the_connectors_own_messages_never_expire(azurite):
    from azure.storage.queue import QueueServiceClient

    from shared.adapters.azure_storage import StorageQueue

    queue = StorageQueue(QueueServiceClient.from_connection_string(azurite.connection_string), "contract-ttl")
    queue.send(PAYLOAD)
    [peeked] = queue.client.peek_messages(max_messages=1)
    assert peeked.expires_on is not None and peeked.expires_on.year == 9999
