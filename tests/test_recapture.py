"""Same id, different bytes: the source sent a record again under an id archived before, with other
content. The new version is archived as a re-capture of its own that says which fields differ,
counted apart; the first item stays as it was; the same bytes again stay a skipped duplicate."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from shared.domain.ledger import MailboxResult, MappingRule, OutcomeEntry, RecordOutcome, merge_outcomes
from shared.domain.recapture import differing_fields, recapture
from shared.domain.records import record_key
from shared.domain.report import RowOutcome
from shared.domain.tally import RecordState, contribution
from shared.domain.tasks import ItemTask
from shared.ports import ListingPage
from shared.service.importing import ItemImporter
from shared.service.mapping import MailboxMapper
from shared.service.reports import report_for
from tests.builders import DIRECTORY, MAPPING_CSV, record
from tests.fakes import MemorySource, SetDirectory, StaticMapping
from tests.test_idempotency import NOW, Stack


class EveryWindow(MemorySource):
    """Lists its records in whichever window asks: a source that sends an id again later."""

    def list_page(self, window, page_token, page_size):
        return ListingPage(list(self.records), None)


def _stack() -> Stack:
    stack = Stack([])
    stack.source = EveryWindow([])
    mapper = MailboxMapper(SetDirectory(*DIRECTORY), StaticMapping(MAPPING_CSV))
    stack.importer = ItemImporter(mapper, stack.boxes, stack.source, max_item_bytes=10 * 1024 * 1024,
                                  records=stack.records)
    return stack


def _archive(stack: Stack, raw: dict, *, hours: int) -> str:
    """One window listing ``raw``, its items imported; the window's id."""
    stack.source.records[:] = [raw]
    info = stack.schedule(NOW + timedelta(hours=hours))
    stack.list_all()
    stack.process_all()
    return info.window_id


def test_other_bytes_under_an_archived_id_are_archived_again_as_a_recapture_saying_what_differs():
    original = record("m-1", textContent="Price is 100")
    stack = _stack()
    first = _archive(stack, original, hours=0)
    changed = {**original, "textContent": "Price is 90"}
    second = _archive(stack, changed, hours=6)

    items = [item for box in stack.boxes.items.values() for item in box.values()]
    versions = sorted(items, key=lambda item: item.record_key)
    assert len(items) == 2 * len(stack.boxes.items)  # both versions, in every mapped mailbox
    by_key = {item.record_key: item for item in versions}
    base = record_key("m-1")
    recaptured = next(item for key, item in by_key.items() if key != base)
    assert recaptured.record_key.startswith(base + ".") and recaptured.record_id.startswith("m-1#")
    assert "Price is 90" in recaptured.text_body and "Price is 100" in by_key[base].text_body
    assert "differs in: textContent" in recaptured.text_body
    assert ("X-Archive-Recapture-Of", base) in recaptured.extra_headers

    summary = stack.ledger.summary(second)
    assert summary.reconciled and summary.recaptured == 1 and summary.skipped_duplicates == 0
    report = report_for(stack.ledger, stack.ledger.window(second), NOW)
    assert report.totals["recaptured"] == 1
    assert {row.outcome for row in report.rows} == {RowOutcome.RECAPTURED}
    assert all("differs in: textContent" in row.detail for row in report.rows)
    assert stack.ledger.summary(first).recaptured == 0

    # The same changed bytes once more: a duplicate of the re-capture, not another one.
    third = _archive(stack, changed, hours=12)
    summary = stack.ledger.summary(third)
    assert summary.reconciled and summary.imported == 0 and summary.skipped_duplicates == summary.fanout > 0
    # And the first bytes again: the first item's duplicate.
    fourth = _archive(stack, original, hours=18)
    assert stack.ledger.summary(fourth).recaptured == 0 and stack.ledger.summary(fourth).imported == 0
    assert sum(len(box) for box in stack.boxes.items.values()) == len(items)


def test_the_same_record_in_other_bytes_is_a_duplicate_not_a_recapture():
    """Keys in another order, 1.0 for 1: other bytes, the same record. No second item."""
    original = record("m-4", textContent="hello", messageTime=1_700_000_000_000)
    stack = _stack()
    _archive(stack, original, hours=0)
    reordered = dict(reversed(list(original.items())))
    again = _archive(stack, reordered, hours=6)
    summary = stack.ledger.summary(again)
    assert summary.recaptured == 0 and summary.imported == 0 and summary.skipped_duplicates == summary.fanout > 0


def test_a_recapture_in_eml_mailboxes_is_a_file_of_its_own(tmp_path):
    from shared.adapters.local_files import EmlMailbox
    from shared.domain.records import parse_record
    from shared.domain.rendering import render

    boxes = EmlMailbox(str(tmp_path), "WhatsApp Archiver")
    first = render(parse_record(json.dumps(record("m-5", textContent="Price is 100"))), {})
    changed_raw = json.dumps(record("m-5", textContent="Price is 90")).encode()
    again = recapture(record_key("m-5") + "." + "0123456789abcdef", b"{}", changed_raw)
    second = render(parse_record(changed_raw), {}, recapture=again)
    assert first.sent_at == second.sent_at
    assert boxes.write("ann@contoso.example", first).value == "imported"
    assert boxes.write("ann@contoso.example", second).value == "imported"
    assert boxes.write("ann@contoso.example", second).value == "skipped_duplicate"
    assert EmlMailbox.file_name(first) != EmlMailbox.file_name(second)


def test_the_same_bytes_again_are_a_skipped_duplicate_and_no_recapture():
    original = record("m-2", textContent="hello")
    stack = _stack()
    _archive(stack, original, hours=0)
    again = _archive(stack, json.loads(json.dumps(original)), hours=6)
    summary = stack.ledger.summary(again)
    assert summary.recaptured == 0 and summary.imported == 0 and summary.skipped_duplicates == summary.fanout


def test_the_fields_that_differ_are_named_never_their_values():
    before = json.dumps({"text": "secret A", "messageTime": 1, "attachments": []}).encode()
    after = json.dumps({"text": "secret B", "messageTime": 1, "attachments": [{"id": "x"}], "extra": 1}).encode()
    assert differing_fields(before, after) == ("attachments", "extra", "text")
    assert differing_fields(b"[1]", after) == ("record",)
    assert differing_fields(b"{not json", after) == ("record",)
    note = recapture(record_key("m") + ".0123456789abcdef", before, after).note
    assert "attachments, extra, text" in note and "secret" not in note
    assert recapture(record_key("m"), before, after) is None  # a first capture
    unknown = recapture(record_key("m") + ".0123456789abcdef", None, after)
    assert unknown.differs == () and "could not be read" in unknown.note


def test_a_recaptures_key_is_a_valid_task_key_and_counts_once_in_the_tally():
    key = record_key("m-3") + ".0123456789abcdef"
    ItemTask(window_id="20261122T020000Z-20261123T020000Z.20261123T020000000Z", record_key=key,
             record_ref=key + ".json")
    at = datetime(2026, 11, 23, tzinfo=UTC)
    entry = OutcomeEntry(key, "m-3", RecordOutcome.IMPORTED, at,
                         (MailboxResult("ann@contoso.example", RecordOutcome.IMPORTED, MappingRule.CSV),),
                         detail="re-capture …", recapture_of=record_key("m-3"))
    assert OutcomeEntry.from_json(entry.to_json()) == entry
    retried = merge_outcomes(entry, OutcomeEntry(key, "m-3", RecordOutcome.SKIPPED_DUPLICATE, at, (
        MailboxResult("ann@contoso.example", RecordOutcome.SKIPPED_DUPLICATE, MappingRule.CSV),)))
    assert retried.recapture_of == record_key("m-3") and retried.detail == "re-capture …"
    assert contribution(RecordState(listed=True, outcome=retried)).recaptured == 1
