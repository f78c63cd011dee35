"""Golden tests: every record of a generated day (every messageType and event) rendered, then read
back with two real mail parsers — Python's ``email`` (policy.default) and the ``mail-parser``
package — asserting what a reviewer sees: subject, parties, original time, ids, body, attachments."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import compat32, default
from email.utils import parsedate_to_datetime

import mailparser
import pytest

from shared.domain.records import ArchiveRecord
from shared.domain.rendering import render
from shared.local.traffic.day import generate_day

DAY = generate_day(datetime(2026, 11, 22, 12, 0, tzinfo=UTC))

# What the body must say for each kind of record (beyond the header block every item has).
EXPECTED_PHRASES = {
    "CALL": ("call",),
    "LOCATION": ("Coordinates:", "Map: https://www.openstreetmap.org/"),
    "CONTACT": ("Contact card:",),
    "SYSTEM": ("Group event:",),
}


def one_encoded_word(header: str, address: str) -> bool:
    """Whether the display name before ``address`` in a raw address header is one encoded word (or none)."""
    unfolded = " ".join(header.split())
    before = unfolded[: unfolded.index(f"<{address}>")].rsplit(",", 1)[-1]
    return before.count("=?") <= 1


def media(record: dict) -> dict:
    return {a["attachmentId"]: DAY.attachment_bytes(a["attachmentId"]) for a in record.get("attachments", [])}


def test_the_day_covers_every_message_type_and_event():
    kinds = Counter(r["messageType"] for r in DAY.records)
    events = Counter(r.get("event", "CREATED") for r in DAY.records)
    assert set(kinds) == {"TEXT", "IMAGE", "VIDEO", "AUDIO", "VOICE_NOTE", "DOCUMENT", "STICKER", "LOCATION",
                          "CONTACT", "CALL", "REACTION", "SYSTEM"}
    assert set(events) == {"CREATED", "EDITED", "DELETED"}


@pytest.mark.parametrize("data", DAY.records, ids=lambda r: f"{r['messageType']}-{r.get('event', 'CREATED')}")
def test_every_record_reads_back_the_same_in_both_parsers(data):
    record = ArchiveRecord.model_validate(data)
    bytes_by_id = media(data)
    if sum(len(b or b"") for b in bytes_by_id.values()) > 6 * 1024 * 1024:
        pytest.skip("over the item limit: poisoned as too_big, never rendered into a mailbox")
    item = render(record, bytes_by_id, default_region="GB")
    raw = item.to_mime_bytes()
    stdlib = message_from_bytes(raw, policy=default)
    other = mailparser.parse_from_bytes(raw)

    # Subject and conversation topic, exactly — every character and space — in both parsers,
    # the subject flagged for edits and deletions.
    assert stdlib["Subject"] == other.subject == item.subject
    assert stdlib["Thread-Topic"] == other.headers["Thread-Topic"] == item.conversation_topic
    if record.event != "CREATED":
        assert item.subject.startswith(f"{record.event} – ")
    # Parties: From is the sender, To every recipient, with their names exactly (isolates included).
    assert stdlib["From"].addresses[0].addr_spec == other.from_[0][1] == item.sender.address
    assert other.from_[0][0] == item.sender.display_name
    assert [a.addr_spec for a in stdlib["To"].addresses] == [addr for _, addr in other.to] == [
        r.address for r in item.recipients]
    assert [name for name, _ in other.to] == [r.display_name for r in item.recipients]
    # Python 3.13.0 keeps the space between two encoded words of a display name (gh-128110): it is
    # held to the names written as one encoded word, and to the rest but for those spaces.
    written = message_from_bytes(raw, policy=compat32)
    for header, people in (("From", (item.sender,)), ("To", item.recipients)):
        for address, person in zip(stdlib[header].addresses, people, strict=True):
            if one_encoded_word(written[header], person.address):
                assert address.display_name == person.display_name
            else:
                assert address.display_name.replace(" ", "") == person.display_name.replace(" ", "")
    # The original WhatsApp time, not the capture or import time: to the second in Date (RFC 5322
    # has no finer unit), to the millisecond in the body.
    to_the_second = record.sent_at.replace(microsecond=0)
    assert parsedate_to_datetime(stdlib["Date"]) == to_the_second == other.date.replace(tzinfo=UTC)
    # The record id, exactly, for chain of custody.
    assert stdlib["X-Archive-Item-Id"] == other.headers["X-Archive-Item-Id"] == record.message_id
    # Threading ids as written: never RFC 2047 encoded words (mail clients do not decode them there).
    as_written = message_from_bytes(raw, policy=compat32)
    for name in ("Message-ID", "References", "In-Reply-To"):
        assert "=?" not in (as_written[name] or ""), name
        assert stdlib[name] is None or " ".join(stdlib[name].split()) == " ".join(as_written[name].split())
    # Body: the header block and what this kind of record says.
    plain = stdlib.get_body(("plain",)).get_content()
    assert f"Record id: {record.message_id}" in plain
    assert f"Sent (UTC): {record.sent_at.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}" in plain
    for phrase in EXPECTED_PHRASES.get(record.message_type, ()):
        assert phrase in plain, (record.message_type, phrase)
    if record.message_type == "REACTION":
        assert "Reacted " in plain or "Removed a reaction from " in plain
    if record.event == "DELETED":
        assert "was deleted" in plain
    if record.event == "EDITED":
        assert "was edited" in plain
    if record.text_content:
        first_line = record.text_content.splitlines()[0] if record.text_content.splitlines() else ""
        assert first_line.strip()[:20] in plain
    # Attachments: byte-exact in both parsers; media never captured is said, not attached.
    expected = {a.file_name: a.content for a in item.attachments if not a.missing}
    got_stdlib = {p.get_filename(): p.get_payload(decode=True) for p in stdlib.iter_attachments()}
    got_other = {a["filename"]: a for a in other.attachments}
    assert got_stdlib == expected
    assert set(got_other) == set(expected)
    for attachment in item.attachments:
        if attachment.missing:
            assert "MEDIA NOT CAPTURED" in plain
