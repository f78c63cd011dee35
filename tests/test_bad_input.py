"""Property tests: whatever a source sends, every record ends accounted for and the worker goes on.

Malformed records (missing fields, wrong JSON types, huge fields, invalid UTF-8, lone surrogates,
deep nesting, not JSON, not an object, NaN, numbers out of range) are poisoned as ``invalid_item``
with a detail that names the field but never its value, and the claim-check blob keeps exactly what
the source sent. Malformed listing pages are a TransientError (retried, then listing-poison).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.telemessage import TeleMessageClient
from shared.domain.errors import PoisonReason, TransientError
from shared.domain.ledger import RecordOutcome, WindowInfo, summarize
from shared.domain.records import MAX_EPOCH_MS, ArchiveRecord
from shared.domain.tasks import ItemTask, ListingTask
from shared.domain.window import Window
from shared.local.telemessage_server import LocalTeleMessage
from shared.ports import ListingPage
from shared.service.import_results import ImportResult
from shared.service.importing import ItemImporter
from shared.service.listing import list_slice_page, serialise_item
from shared.service.mapping import MailboxMapper
from shared.service.processing import process_item_message
from tests.builders import ALICE, BASE_TIME, CUSTOMER, DIRECTORY, MAPPING_CSV, attachment, record
from tests.fakes import MemoryLedger, MemoryMailboxes, MemoryQueue, MemoryRecordStore, SetDirectory, StaticMapping

SECRET = "Zq7-SECRET-value-Xk9"  # never in a poison detail: details leave the compliance boundary
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.data_too_large])
REQUIRED = ("messageId", "sourceType", "messageType", "messageTime", "archivedTime", "owner", "sender", "recipients")
FIELDS = frozenset(ArchiveRecord.model_fields) | {f.alias for f in ArchiveRecord.model_fields.values() if f.alias}


def importer(mailboxes: MemoryMailboxes | None = None, max_bytes: int = 10 * 1024 * 1024) -> ItemImporter:
    mapper = MailboxMapper(SetDirectory(*DIRECTORY), StaticMapping(MAPPING_CSV))
    return ItemImporter(mapper, mailboxes or MemoryMailboxes(), None, max_item_bytes=max_bytes)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def full_record(message_id: str = "full-1") -> dict[str, Any]:
    """A valid record with every optional object present, so nested fields can be broken too."""
    return record(
        message_id, messageType="IMAGE", event="DELETED", groupMessage=True, dialogGroupId="g-1",
        dialogGroupName="Desk", replyToMessageId="q-1", relatedMessageId="r-1", forwarded=False,
        deletion={"scope": "FOR_EVERYONE", "deletedTime": BASE_TIME},
        attachments=[attachment("a1", b"picture")],
        call={"callType": "VOICE", "result": "ANSWERED", "startTime": BASE_TIME, "endTime": BASE_TIME + 1,
              "durationSeconds": 1},
        location={"latitude": 51.5, "longitude": -0.1, "name": "Office", "address": "1 Street"},
        contacts=[{"displayName": "Carla", "phones": ["+12025550143"], "emails": ["c@example.com"]}],
        reaction={"emoji": "👍"}, system={"eventType": "OTHER", "description": "d"},
    )


def assert_invalid(result: ImportResult, *fields: str, secret: str = SECRET) -> None:
    assert result.outcome is RecordOutcome.POISONED, result
    assert result.reason is PoisonReason.INVALID_ITEM, result
    assert result.detail and len(result.detail) <= 2000
    for name in fields:
        assert name in result.detail, (name, result.detail)
    assert secret not in result.detail


def put(rec: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    rec = copy.deepcopy(rec)
    target: Any = rec
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return rec


# -- records: missing fields and wrong JSON types ----------------------------------------------

@PROPERTY
@given(st.sets(st.sampled_from(REQUIRED), min_size=1))
def test_a_record_missing_required_fields_is_invalid_naming_each_one(missing):
    rec = {k: v for k, v in full_record(SECRET).items() if k not in missing}
    result = importer().import_raw(dumps(rec))
    assert_invalid(result, *(f"{name}: Field required" for name in missing))


# Every field (and some nested ones) with the JSON kinds its schema accepts.
KINDS: dict[tuple[str | int, ...], frozenset[str]] = {
    ("messageId",): frozenset({"string"}),
    ("sourceType",): frozenset(),  # an enum: no value from the strategies below is one of its values
    ("event",): frozenset(),
    ("messageType",): frozenset(),
    ("direction",): frozenset({"null"}),
    ("messageTime",): frozenset({"int"}),
    ("archivedTime",): frozenset({"int"}),
    ("owner",): frozenset({"object"}),
    ("sender",): frozenset({"object"}),
    ("recipients",): frozenset(),  # an array, but of participants: arrays below hold strings
    ("groupMessage",): frozenset({"bool"}),
    ("forwarded",): frozenset({"bool"}),
    ("dialogGroupId",): frozenset({"string", "null"}),
    ("dialogGroupName",): frozenset({"string", "null"}),
    ("textContent",): frozenset({"string", "null"}),
    ("replyToMessageId",): frozenset({"string", "null"}),
    ("relatedMessageId",): frozenset({"string", "null"}),
    ("deletion",): frozenset({"object", "null"}),
    ("attachments",): frozenset(),
    ("call",): frozenset({"object", "null"}),
    ("location",): frozenset({"object", "null"}),
    ("contacts",): frozenset(),
    ("reaction",): frozenset({"object", "null"}),
    ("system",): frozenset({"object", "null"}),
    ("sender", "phone"): frozenset({"string", "null"}),
    ("owner", "email"): frozenset({"string", "null"}),
    ("recipients", 0, "firstName"): frozenset({"string", "null"}),
    ("deletion", "deletedTime"): frozenset({"int", "null"}),
    ("deletion", "scope"): frozenset({"null"}),
    ("attachments", 0, "attachmentId"): frozenset({"string"}),
    ("attachments", 0, "size"): frozenset({"int"}),
    ("attachments", 0, "sha256"): frozenset({"null"}),
    ("call", "durationSeconds"): frozenset({"int", "null"}),
    ("call", "startTime"): frozenset({"int", "null"}),
    ("location", "latitude"): frozenset({"null", "int", "float"}),
    ("contacts", 0, "phones"): frozenset({"array"}),
    ("reaction", "emoji"): frozenset({"string", "null"}),
}
JSON_KINDS: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "bool": st.booleans(),  # booleans where integers (or anything else) are expected
    "int": st.integers(min_value=MAX_EPOCH_MS + 1) | st.integers(max_value=-1),
    "float": st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer() or abs(f) > 1e300),
    "string": st.text(max_size=20).map(lambda t: SECRET + t),
    "array": st.lists(st.just(SECRET), min_size=1, max_size=3),
    "object": st.just({"vendorKey": SECRET}),
}


@st.composite
def wrong_types(draw):
    path = draw(st.sampled_from(sorted(KINDS, key=str)))
    kind = draw(st.sampled_from(sorted(set(JSON_KINDS) - KINDS[path])))
    return path, draw(JSON_KINDS[kind])


@PROPERTY
@given(wrong_types())
def test_a_field_of_the_wrong_json_type_is_invalid_naming_the_field_not_the_value(broken):
    path, value = broken
    rec = put(full_record(), path, value)
    result = importer().import_raw(dumps(rec))
    assert_invalid(result, ".".join(map(str, path)))


@pytest.mark.parametrize(("path", "value"), [
    (("messageTime",), True), (("archivedTime",), False), (("attachments", 0, "size"), True),
    (("call", "durationSeconds"), False), (("groupMessage",), 1), (("forwarded",), 0),
    (("messageTime",), 1.0), (("messageTime",), "1763800000000"),
])
def test_booleans_for_integers_and_numbers_for_booleans_are_not_coerced(path, value):
    assert_invalid(importer().import_raw(dumps(put(full_record(), path, value))), ".".join(map(str, path)))


@PROPERTY
@given(path=st.sampled_from([("messageTime",), ("archivedTime",), ("deletion", "deletedTime"),
                             ("call", "startTime"), ("call", "endTime")]),
       value=st.integers(max_value=-1) | st.integers(min_value=MAX_EPOCH_MS + 1))
def test_times_before_1970_or_after_year_9999_are_invalid(path, value):
    result = importer().import_raw(dumps(put(full_record(), path, value)))
    assert_invalid(result, ".".join(map(str, path)), secret=str(value))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
@pytest.mark.parametrize("field", ["messageTime", "location.latitude", "call.durationSeconds"])
def test_nan_and_infinity_where_numbers_are_expected_are_invalid(field, literal):
    path = tuple(field.split("."))
    text = json.dumps(put(full_record(), path, "@@HERE@@")).replace('"@@HERE@@"', literal)
    assert_invalid(importer().import_raw(text.encode()), field)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_nan_in_an_unknown_field_is_kept_and_imported(literal):
    text = json.dumps(record(vendorScore="@@HERE@@")).replace('"@@HERE@@"', literal)
    assert importer().import_raw(text.encode()).outcome is RecordOutcome.IMPORTED


# -- records: huge fields ------------------------------------------------------------------------

@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(size=st.integers(1, 3).map(lambda mb: mb * 1024 * 1024),
       field=st.sampled_from(["textContent", "dialogGroupName", "fileName", "vendorField"]))
def test_megabytes_of_text_in_a_text_field_import_or_are_too_big_never_crash(size, field):
    huge = "Ω" * (size // 2)
    boxes = MemoryMailboxes()
    if field == "fileName":
        rec = record(messageType="DOCUMENT", attachments=[attachment("a1", b"doc", fileName=huge)])
    else:
        rec = record(groupMessage=True, **{field: huge})
    result = importer(boxes, max_bytes=6 * 1024 * 1024).import_raw(dumps(rec))
    if result.outcome is RecordOutcome.POISONED:
        assert result.reason is PoisonReason.TOO_BIG
        assert huge[:100] not in result.detail
    else:
        assert result.outcome is RecordOutcome.IMPORTED and "msg-1" in boxes.items["alice@contoso.example"]


@FEW
@given(length=st.integers(1, 2000), where=st.sampled_from(["sender", "recipient", "contact"]))
def test_long_person_names_are_imported(length, where):
    # Kept to thousands of characters: header folding of a display name is quadratic in its length
    # (shared/domain/rendered.py _add_phrase), so a megabyte name would hold a worker for hours.
    name = ("Ω" + SECRET) * (length // 20 + 1)
    rec = {
        "sender": record(sender={**ALICE, "firstName": name, "lastName": name}, owner=ALICE),
        "recipient": record(recipients=[{**CUSTOMER, "displayName": name, "firstName": None, "lastName": None}]),
        "contact": record(messageType="CONTACT", contacts=[{"displayName": name, "phones": [name]}]),
    }[where]
    boxes = MemoryMailboxes()
    assert importer(boxes).import_raw(dumps(rec)).outcome is RecordOutcome.IMPORTED
    assert "msg-1" in boxes.items["alice@contoso.example"]


@FEW
@given(size=st.integers(1, 3).map(lambda mb: mb * 1024 * 1024),
       field=st.sampled_from(["messageTime", "sourceType", "owner", "recipients", "groupMessage"]))
def test_megabytes_in_a_field_that_is_not_text_are_invalid_with_a_short_detail(size, field):
    result = importer().import_raw(dumps(record(**{field: SECRET * (size // len(SECRET))})))
    assert_invalid(result, field)


@FEW
@given(length=st.integers(257, 2_000_000))
def test_a_message_id_over_256_characters_is_invalid(length):
    message_id = (SECRET * (length // len(SECRET) + 1))[:length]
    assert_invalid(importer().import_raw(dumps(record(message_id))), "messageId")


@FEW
@given(count=st.integers(1025, 20_000))
def test_more_than_1024_recipients_is_invalid(count):
    rec = record(recipients=[{**CUSTOMER, "displayName": SECRET}] * count)
    assert_invalid(importer().import_raw(dumps(rec)), "recipients")


# -- records: unknown fields and deep nesting ------------------------------------------------------

json_leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30))
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=40,
)
unknown_keys = st.text(min_size=1, max_size=20).filter(lambda k: k not in FIELDS)


@PROPERTY
@given(st.dictionaries(unknown_keys, json_values, min_size=1, max_size=5))
def test_nested_junk_in_unknown_fields_is_kept_and_the_record_imported(extras):
    boxes = MemoryMailboxes()
    result = importer(boxes).import_raw(json.dumps({**record(), **extras}).encode())
    assert result.outcome is RecordOutcome.IMPORTED, result
    assert "msg-1" in boxes.items["alice@contoso.example"]


def nested_text(depth: int, shape: str) -> str:
    if shape == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "{}" + "}" * depth


@pytest.mark.parametrize("shape", ["array", "object"])
@pytest.mark.parametrize("depth", [10, 150, 250, 10_000, 200_000])
def test_deep_nesting_in_a_field_or_as_the_record_never_crashes(depth, shape):
    base = json.dumps(record())
    in_unknown = base[:-1] + ',"vendorTree":' + nested_text(depth, shape) + "}"
    in_known = base[:-1] + ',"textContent":' + nested_text(depth, shape) + "}"
    whole = nested_text(depth, shape)

    unknown_result = importer().import_raw(in_unknown.encode())
    if depth <= 150:
        assert unknown_result.outcome is RecordOutcome.IMPORTED
    else:
        assert_invalid(unknown_result, "recursion limit")
    known = importer().import_raw(in_known.encode())
    assert_invalid(known, "textContent" if depth <= 150 else "recursion limit")
    assert_invalid(importer().import_raw(whole.encode()), "(record)" if shape == "array" or depth > 150 else "")


# -- records: bytes that are not UTF-8, lone surrogates, not JSON, not an object ----------------------

INVALID_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xc0\x80", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xed\xbf\xbf",
                b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80"]


@PROPERTY
@given(bad=st.sampled_from(INVALID_UTF8), prefix=st.text(max_size=5), field=st.sampled_from(
    ["textContent", "messageId", "dialogGroupName", "vendorField"]))
def test_invalid_utf8_in_the_raw_bytes_is_invalid(bad, prefix, field):
    rec = record(**{field: "@@HERE@@"})
    left, right = json.dumps(rec).encode().split(b"@@HERE@@")
    result = importer().import_raw(left + json.dumps(prefix)[1:-1].encode() + bad + right)
    assert_invalid(result, "Invalid JSON")


lone_surrogates = st.integers(0xD800, 0xDFFF).map(chr)


@PROPERTY
@given(surrogate=lone_surrogates, text=st.text(max_size=5),
       field=st.sampled_from(["textContent", "messageId", "dialogGroupName", "vendorField"]))
def test_lone_surrogates_escaped_in_the_json_or_raw_in_the_text_are_invalid(surrogate, text, field):
    rec = record(**{field: text + surrogate + "."})
    escaped = json.dumps(rec)  # "\udXXX" escapes: JSON that no UTF-8 string can be
    assert_invalid(importer().import_raw(escaped.encode()), "Invalid JSON")
    assert importer().import_raw(escaped).reason is PoisonReason.INVALID_ITEM
    raw_text = json.dumps(rec, ensure_ascii=False)  # a str that cannot even be encoded
    assert importer().import_raw(raw_text).reason is PoisonReason.INVALID_ITEM
    surrogate_bytes = raw_text.encode("utf-8", "surrogatepass")  # CESU-style bytes
    assert importer().import_raw(surrogate_bytes).reason is PoisonReason.INVALID_ITEM


@PROPERTY
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_bytes_and_text_that_are_not_a_record_are_invalid(payload):
    assert_invalid(importer().import_raw(payload), secret="\x00" + SECRET)


@PROPERTY
@given(json_values.filter(lambda v: not isinstance(v, dict)))
def test_json_that_is_not_an_object_is_invalid(value):
    assert_invalid(importer().import_raw(json.dumps(value).encode()), "(record)")


# -- records: valid but odd --------------------------------------------------------------------------

odd_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=200) | st.none()


@PROPERTY
@given(text=odd_text, group=odd_text, reply=odd_text,
       times=st.tuples(st.sampled_from([0, 1, MAX_EPOCH_MS, BASE_TIME]), st.sampled_from([0, MAX_EPOCH_MS])),
       duration=st.integers(0, 2**63), latitude=st.floats(-90, 90), longitude=st.floats(-180, 180),
       message_type=st.sampled_from(["TEXT", "CALL", "LOCATION", "CONTACT", "REACTION", "SYSTEM"]),
       event=st.sampled_from(["CREATED", "EDITED", "DELETED"]),
       message_id=st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=256))
def test_valid_but_odd_records_are_imported(text, group, reply, times, duration, latitude, longitude,
                                            message_type, event, message_id):
    rec = record(
        message_id, textContent=text, dialogGroupName=group, groupMessage=group is not None,
        replyToMessageId=reply, messageTime=times[0], archivedTime=times[1], messageType=message_type,
        event=event, deletion={"deletedTime": times[1]} if event == "DELETED" else None,
        call={"startTime": times[0], "endTime": times[1], "durationSeconds": duration},
        location={"latitude": latitude, "longitude": longitude, "name": text},
        contacts=[{"displayName": text, "phones": [text or ""], "emails": []}] * 3,
        reaction={"emoji": text}, system={"description": text},
    )
    boxes = MemoryMailboxes()
    result = importer(boxes).import_raw(json.dumps(rec, ensure_ascii=False).encode())
    assert result.outcome is RecordOutcome.IMPORTED, result
    assert message_id in boxes.items["alice@contoso.example"]


# -- end to end over fakes: a page of anything, every item accounted for -----------------------------

WINDOW = Window(datetime(2025, 11, 22, 8, 0, tzinfo=UTC), datetime(2025, 11, 22, 9, 0, tzinfo=UTC))


class PagedSource:
    """Serves exactly the given items, in pages, whatever they are."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def list_page(self, window: Window, page_token: str | None, page_size: int) -> ListingPage:
        offset = int(page_token or 0)
        more = offset + page_size < len(self.items)
        return ListingPage(self.items[offset: offset + page_size], str(offset + page_size) if more else None)

    def open_attachment(self, attachment_id: str):
        return None


def list_and_import(source: Any, *, page_size: int = 3):
    """List every page of one slice, then import every queued item, as the functions would."""
    ledger, records, boxes = MemoryLedger(), MemoryRecordStore(), MemoryMailboxes()
    listing, items, poison = MemoryQueue("listing"), MemoryQueue("items"), MemoryQueue("items-poison")
    info = WindowInfo(WINDOW, 1, datetime(2025, 11, 22, 10, 0, tzinfo=UTC))
    ledger.open_window(info)
    listing.send(ListingTask.first_page(info.window_id, WINDOW).model_dump(mode="json"))
    while listing.messages:
        task = ListingTask.model_validate(listing.messages.pop(0))
        list_slice_page(task, source=source, records=records, items_queue=items, listing_queue=listing,
                        ledger=ledger, page_size=page_size)
    tasks = [ItemTask.model_validate(m) for m in items.messages]
    imp = importer(boxes)
    for task in tasks:
        process_item_message(task.to_text(), dequeue_count=1, records=records, importer=imp,
                             poison_queue=poison, ledger=ledger)
    summary = summarize(info, ledger.pages(info.window_id), ledger.outcomes(info.window_id))
    return summary, tasks, records, poison, boxes


def same_json(blob: bytes, item: Any) -> bool:
    # Compared as text: NaN is not equal to itself, but it is written the same way.
    return json.dumps(json.loads(blob)) == json.dumps(item)


surrogate_text = st.lists(st.text(max_size=3) | lone_surrogates, max_size=4).map("".join)
junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | surrogate_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(surrogate_text, inner, max_size=4),
    max_leaves=30,
)


@st.composite
def broken_records(draw, number: int):
    """A record with one thing wrong: a required field gone or of the wrong kind, or a lone surrogate."""
    rec = full_record(f"bad-{number}")
    how = draw(st.sampled_from(["drop", "wrong", "surrogate"]))
    if how == "drop":
        del rec[draw(st.sampled_from(REQUIRED[1:]))]
    elif how == "wrong":
        path, value = draw(wrong_types().filter(lambda b: b[0] != ("messageId",)))
        rec = put(rec, path, value)
    else:
        rec["textContent"] = "before " + draw(lone_surrogates) + " after"
    return rec


@st.composite
def pages(draw):
    kinds = draw(st.lists(st.sampled_from(["valid", "junk", "broken"]), min_size=1, max_size=14))
    items: list[Any] = []
    valid_ids: list[str] = []
    for number, kind in enumerate(kinds):
        if kind == "valid":
            valid_ids.append(f"valid-{number}")
            items.append(record(valid_ids[-1], archivedTime=BASE_TIME + number, recipients=[CUSTOMER]))
        elif kind == "junk":
            items.append(draw(junk))
        else:
            items.append(draw(broken_records(number)))
    return items, valid_ids


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages(), st.integers(1, 5))
def test_a_page_of_valid_records_and_arbitrary_json_is_accounted_for_item_by_item(page, page_size):
    items, valid_ids = page
    summary, tasks, records, poison, boxes = list_and_import(PagedSource(items), page_size=page_size)

    assert len(tasks) == len(items)  # one queued import per item listed, in order
    poisoned_refs = {m["record_ref"]: m for m in poison.messages}
    for item, task in zip(items, tasks, strict=True):
        assert same_json(records.get(task.record_ref), item)  # the claim check holds what was sent
        if isinstance(item, dict) and item.get("messageId") in valid_ids:
            assert summary.records[task.record_key].outcome is RecordOutcome.IMPORTED
        else:
            message = poisoned_refs[task.record_ref]
            assert message["reason"] == "invalid_item" and message["record_key"] == task.record_key
            assert summary.records[task.record_key].outcome is RecordOutcome.POISONED

    assert sorted(boxes.items["alice@contoso.example"]) == sorted(valid_ids)  # each imported once
    archived = sum(e.outcome in (RecordOutcome.IMPORTED, RecordOutcome.SKIPPED_DUPLICATE)
                   for e in summary.records.values())
    assert summary.listed == archived + sum(summary.poisoned.values())
    assert set(summary.poisoned) <= {"invalid_item"}
    assert summary.reconciled and summary.pending == 0


_EMPTY: Any = object()


def nested(depth: int, leaf: Any = _EMPTY) -> Any:
    value: Any = [] if leaf is _EMPTY else leaf
    for _ in range(depth):
        value = [value]
    return value


def test_items_too_deep_for_json_dumps_are_stored_whole_and_poisoned():
    deep = 50_000
    with pytest.raises(RecursionError):
        json.dumps(nested(deep))  # what the listing used to do with every item
    deep_record = record("deep-1", vendorTree=nested(deep))
    deep_object: Any = {}
    for _ in range(deep):
        deep_object = {"k\ud800": deep_object}
    items = [record("valid-0"), nested(deep), deep_record, deep_object, record("valid-1")]

    summary, tasks, records, poison, boxes = list_and_import(PagedSource(items), page_size=2)

    assert records.get(tasks[1].record_ref) == nested_text(deep + 1, "array").encode()
    assert records.get(tasks[2].record_ref) == (
        serialise_item(record("deep-1"))[:-1] + b',"vendorTree":' + nested_text(deep + 1, "array").encode() + b"}"
    )
    assert records.get(tasks[3].record_ref) == b'{"k\\ud800":' * deep + b"{}" + b"}" * deep
    assert tasks[2].message_id == "deep-1"
    assert sorted(boxes.items["alice@contoso.example"]) == ["valid-0", "valid-1"]
    assert [m["record_ref"] for m in poison.messages] == [t.record_ref for t in tasks[1:4]]
    assert {m["reason"] for m in poison.messages} == {"invalid_item"}
    assert summary.listed == 5 and summary.poisoned == {"invalid_item": 3} and summary.reconciled


@settings(max_examples=100, deadline=None)
@given(junk)
def test_serialising_an_item_gives_back_the_same_json_value_however_deep(value):
    assert same_json(serialise_item(value), value)
    deep = nested(20_000, value)
    assert serialise_item(deep) == b"[" * 20_000 + serialise_item(value) + b"]" * 20_000


def test_an_item_whose_message_id_has_no_utf8_form_is_stored_unidentified_and_poisoned():
    items = [record("bad-\udc00-id"), record("valid-0")]
    summary, tasks, records, poison, boxes = list_and_import(PagedSource(items))
    assert tasks[0].message_id is None and tasks[0].record_key.startswith("unidentified-")
    assert same_json(records.get(tasks[0].record_ref), items[0])
    assert poison.messages[0]["record_ref"] == tasks[0].record_ref
    assert poison.messages[0]["reason"] == "invalid_item"
    assert summary.listed == 2 and summary.reconciled


# -- the TeleMessage client: a page it cannot parse is transient ---------------------------------------

PASSWORD = "bad-input-test-password"
ITEMS = "/api/v1/archive/items"


@pytest.fixture
def telemessage():
    with LocalTeleMessage([], password=PASSWORD) as server, \
            TeleMessageClient(server.base_url, "demo", PASSWORD, sleep=lambda _: None, timeout=5.0) as client:
        yield server, client


@pytest.mark.parametrize("body", [
    b'{"items":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"items":[' + b'{"a":' * 100_000 + b"{}" + b"}" * 100_000 + b"]}",
    b'{"items":[{"textContent":"\xff\xfe"}]}',
    b'{"items":[' + b"1" * 5000 + b"]}",
], ids=["deep-arrays", "deep-objects", "invalid-utf8", "integer-too-long-for-python"])
def test_a_page_the_client_cannot_parse_is_a_transient_error(telemessage, body):
    server, client = telemessage
    server.faults.respond_next(ITEMS, 200, body)
    with pytest.raises(TransientError, match="malformed listing page"):
        client.list_page(WINDOW, None, 100)
    assert client.list_page(WINDOW, None, 100).items == []  # the next attempt is served as usual


def test_odd_items_on_a_page_the_client_can_parse_reach_poison_with_their_json_kept(telemessage):
    server, client = telemessage
    valid = record("valid-0", recipients=[CUSTOMER])
    body = ('{"items":[' + ",".join([
        json.dumps(valid),
        '{"messageId":"lone-1","textContent":"half a pair: \\ud83d."}',
        '{"messageId":"\\udc00"}',
        '{"messageId":"nan-1","messageTime":NaN,"archivedTime":-Infinity}',
        "[" * 5000 + "]" * 5000,
        "null",
        '"just text"',
    ]) + '],"nextPageToken":null}').encode()
    server.faults.respond_next(ITEMS, 200, body)
    page = client.list_page(WINDOW, None, 100)
    assert len(page.items) == 7

    summary, tasks, records, poison, boxes = list_and_import(PagedSource(page.items), page_size=100)

    assert list(boxes.items["alice@contoso.example"]) == ["valid-0"]
    assert [m["record_ref"] for m in poison.messages] == [t.record_ref for t in tasks[1:]]
    assert {m["reason"] for m in poison.messages} == {"invalid_item"}
    for item, task in zip(page.items, tasks, strict=True):
        assert same_json(records.get(task.record_ref), item)
    assert b"\\ud83d" in records.get(tasks[1].record_ref)
    assert summary.listed == 7 and summary.poisoned == {"invalid_item": 6} and summary.reconciled

