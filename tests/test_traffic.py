"""The generated day of WhatsApp traffic: valid, complete in its corner cases, and deterministic."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
from datetime import UTC, datetime, timedelta

import phonenumbers
import pytest

from shared.domain.records import ArchiveRecord
from shared.local.traffic.day import TrafficDay, generate_day, iter_attachments
from shared.local.traffic.media import HUGE_ATTACHMENT_SIZE, INLINE_LIMIT

ANCHOR = datetime(2024, 6, 12, 6, 0, tzinfo=UTC)
TEN_MB = 10 * 1024 * 1024
MESSAGE_TYPES = {"TEXT", "IMAGE", "VIDEO", "AUDIO", "VOICE_NOTE", "DOCUMENT", "STICKER", "LOCATION",
                 "CONTACT", "CALL", "REACTION", "SYSTEM"}


@pytest.fixture(scope="module")
def day() -> TrafficDay:
    return generate_day(ANCHOR)


def ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def by_id(day: TrafficDay) -> dict[str, dict]:
    return {record["messageId"]: record for record in day.records}


def phone_of(participant: dict) -> str:
    return phonenumbers.format_number(phonenumbers.parse(participant["phone"], "GB"),
                                      phonenumbers.PhoneNumberFormat.E164)


def test_default_day_has_a_realistic_volume(day):
    assert 250 <= len(day.records) <= 400


def test_every_record_validates_strictly_against_the_archive_record_model(day):
    for record in day.records:
        ArchiveRecord.model_validate(record)


def test_records_are_in_contract_order_with_unique_message_ids(day):
    keys = [(r["archivedTime"], r["messageId"]) for r in day.records]
    assert keys == sorted(keys)
    assert len({r["messageId"] for r in day.records}) == len(day.records)


def test_same_anchor_and_seed_give_identical_output(day):
    again = generate_day(ANCHOR)
    assert json.dumps(again.records) == json.dumps(day.records)
    assert again.mapping_csv() == day.mapping_csv()
    for attachment in list(iter_attachments(day.records))[:10]:
        attachment_id = attachment["attachmentId"]
        assert again.attachment_bytes(attachment_id) == day.attachment_bytes(attachment_id)


def test_another_seed_gives_another_day():
    assert json.dumps(generate_day(ANCHOR, seed=8).records) != json.dumps(generate_day(ANCHOR).records)


def test_archived_times_lie_inside_the_day_and_message_times_just_before_them(day):
    low, high = ms(ANCHOR - timedelta(hours=24) + timedelta(minutes=1)), ms(ANCHOR - timedelta(minutes=1))
    late = []
    for record in day.records:
        assert low <= record["archivedTime"] < high
        delay = record["archivedTime"] - record["messageTime"]
        assert delay >= 0
        if delay > 60_000 and record["messageType"] != "CALL":
            late.append(delay)
    assert 2 <= len(late) <= 10
    assert all(timedelta(days=1) <= timedelta(milliseconds=d) <= timedelta(days=3) for d in late)
    assert all(day.window.contains(datetime.fromtimestamp(r["archivedTime"] / 1000, UTC))
               for r in day.records)


def test_late_deliveries_share_a_capture_millisecond_to_exercise_the_message_id_tie_break(day):
    late = day.record("late_delivery")
    same = [r for r in day.records if r["archivedTime"] == late["archivedTime"]]
    assert len(same) >= 2


def test_every_message_type_event_and_system_event_type_occurs(day):
    assert {r["messageType"] for r in day.records} == MESSAGE_TYPES
    assert {r["event"] for r in day.records} == {"CREATED", "EDITED", "DELETED"}
    system_events = {r["system"]["eventType"] for r in day.records if r["messageType"] == "SYSTEM"}
    assert len(system_events) >= 6
    assert {"GROUP_CREATED", "PARTICIPANT_ADDED", "PARTICIPANT_LEFT", "SUBJECT_CHANGED"} <= system_events


def test_calls_cover_voice_and_video_answered_missed_and_rejected(day):
    calls = [r["call"] for r in day.records if r["messageType"] == "CALL"]
    assert {c["callType"] for c in calls} == {"VOICE", "VIDEO"}
    assert {"ANSWERED", "MISSED", "REJECTED"} <= {c["result"] for c in calls}
    for call in calls:
        assert call["startTime"] <= call["endTime"]
        if call["result"] == "ANSWERED":
            assert call["durationSeconds"] > 0
            assert call["endTime"] - call["startTime"] >= call["durationSeconds"] * 1000


def test_reactions_point_at_messages_and_one_removes_a_reaction(day):
    records = by_id(day)
    reactions = [r for r in day.records if r["messageType"] == "REACTION"]
    assert all(r["relatedMessageId"] in records for r in reactions)
    assert "" in {r["reaction"]["emoji"] for r in reactions}
    removed = day.record("reaction_removed")
    assert removed["relatedMessageId"] == day.record("reaction")["relatedMessageId"]


def test_edits_have_their_own_id_and_point_at_the_original_with_new_text(day):
    records = by_id(day)
    edits = [r for r in day.records if r["event"] == "EDITED"]
    assert edits
    for edit in edits:
        original = records[edit["relatedMessageId"]]
        assert original["event"] == "CREATED"
        assert edit["messageId"] != original["messageId"]
        assert edit["textContent"] != original["textContent"]
        assert edit["archivedTime"] > original["archivedTime"]


def test_deletions_cover_both_scopes_with_and_without_the_original_content(day):
    deletions = [r for r in day.records if r["event"] == "DELETED"]
    assert {d["deletion"]["scope"] for d in deletions} == {"FOR_ME", "FOR_EVERYONE"}
    assert all(isinstance(d["deletion"]["deletedTime"], int) for d in deletions)
    assert any(d["textContent"] for d in deletions)
    assert any(d["attachments"] for d in deletions)
    assert any(not d["textContent"] and not d["attachments"] for d in deletions)
    assert day.record("deleted_unknown_original")["relatedMessageId"] not in by_id(day)


def test_replies_and_forwards_are_present(day):
    records = by_id(day)
    replies = [r for r in day.records if r["replyToMessageId"]]
    assert replies and all(r["replyToMessageId"] in records for r in replies)
    assert any(r["forwarded"] for r in day.records)


def test_owner_is_always_an_employee_taking_part_in_the_chat(day):
    employees = {p.phone for p in day.people if p.employee}
    for record in day.records:
        owner = phone_of(record["owner"])
        participants = {phone_of(p) for p in (record["sender"], *record["recipients"])}
        assert owner in employees
        assert owner in participants
        assert record["direction"] == ("OUTGOING" if phone_of(record["sender"]) == owner else "INCOMING")


def test_chats_cover_groups_one_to_one_both_source_types_and_directions(day):
    assert {r["sourceType"] for r in day.records} == {"WHATSAPP_ARCHIVER", "WHATSAPP_CLOUD_ARCHIVER"}
    assert {r["direction"] for r in day.records} == {"INCOMING", "OUTGOING"}
    groups = [r for r in day.records if r["groupMessage"]]
    assert groups and all(r["dialogGroupId"] and r["dialogGroupName"] for r in groups)
    assert any(len(r["recipients"]) >= 3 for r in groups)
    singles = [r for r in day.records if not r["groupMessage"]]
    assert singles and all(r["dialogGroupId"] is None and len(r["recipients"]) == 1 for r in singles)


def test_texts_carry_emoji_right_to_left_scripts_literal_markup_and_line_breaks(day):
    texts = [r["textContent"] for r in day.records if r["textContent"]]
    assert any(re.search("[\u0600-\u06ff]", t) for t in texts)  # Arabic
    assert any(re.search("[\u0590-\u05ff]", t) for t in texts)  # Hebrew
    assert any(re.search("[\U0001f300-\U0001faff]", t) for t in texts)  # emoji
    assert any("<script>alert(1)</script>" in t for t in texts)
    assert any("&amp;" in t for t in texts)
    assert any("\r\n" in t for t in texts) and any("\n" in t.replace("\r\n", "") for t in texts)


def test_every_attachment_has_the_sha256_and_size_of_its_bytes(day):
    for attachment in iter_attachments(day.records):
        data = day.attachment_bytes(attachment["attachmentId"])
        if data is None:
            continue
        assert len(data) == attachment["size"]
        assert attachment["sha256"] == hashlib.sha256(data).hexdigest()
        if "content" in attachment:
            assert base64.b64decode(attachment["content"], validate=True) == data


def test_small_attachments_are_inline_and_large_ones_only_downloadable(day):
    attachments = list(iter_attachments(day.records))
    inline = [a for a in attachments if "content" in a]
    remote = [a for a in attachments if "content" not in a]
    assert inline and remote
    assert all(a["size"] <= INLINE_LIMIT for a in inline)
    captured_remote = [a for a in remote if day.attachment_bytes(a["attachmentId"]) is not None]
    assert all(a["size"] > INLINE_LIMIT for a in captured_remote)
    sizes = [a["size"] for a in attachments]
    assert min(sizes) < 10 * 1024
    assert any(1024 * 1024 < s <= 2 * 1024 * 1024 for s in sizes)
    assert any(4.5 * 1024 * 1024 < s < 6 * 1024 * 1024 for s in sizes)


def test_exactly_one_record_has_an_attachment_over_ten_megabytes(day):
    huge = [r for r in day.records if any(a["size"] > TEN_MB for a in r["attachments"])]
    assert [r["messageId"] for r in huge] == [day.labels["huge_attachment"]]
    assert huge[0]["attachments"][0]["size"] == HUGE_ATTACHMENT_SIZE


def test_media_never_captured_has_metadata_but_no_bytes(day):
    attachment = day.record("missing_media")["attachments"][0]
    assert "content" not in attachment
    assert day.attachment_bytes(attachment["attachmentId"]) is None
    assert attachment["size"] > 0 and attachment["sha256"]
    uncaptured = [a for a in iter_attachments(day.records) if day.attachment_bytes(a["attachmentId"]) is None]
    assert len(uncaptured) == 1


def test_file_names_come_as_phones_send_them(day):
    names = {a["fileName"] for a in iter_attachments(day.records)}
    assert "../../etc/x.pdf" in names
    assert "" in names
    assert any(any(ord(c) < 32 for c in name) for name in names)
    assert any(re.fullmatch(r"IMG-\d{8}-WA\d{4}\.jpg", name) for name in names)


def test_mapping_csv_numbers_are_human_formats_of_the_roster_numbers(day):
    rows = list(csv.DictReader(io.StringIO(day.mapping_csv())))
    assert list(rows[0]) == ["PhoneNumber", "EmailAddress"]
    roster = {p.csv_phone: p for p in day.people if p.csv_phone}
    assert len(rows) == len(roster)
    for row in rows:
        number = phonenumbers.parse(row["PhoneNumber"], "GB")
        assert phonenumbers.is_possible_number(number)
        assert phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == \
            roster[row["PhoneNumber"]].phone
    written = [row["PhoneNumber"] for row in rows]
    assert any(w.startswith("00") for w in written)
    assert any("(0)" in w for w in written)
    assert any("-" in w for w in written)
    assert any(w.startswith("0") and not w.startswith("00") for w in written)


def test_people_cover_every_mapping_case(day):
    directory = {a.lower() for a in day.directory()}
    employees = [p for p in day.people if p.employee]
    by_property = [p for p in employees if p.email and p.email.lower() in directory]
    csv_only = [p for p in employees if not p.email and p.csv_email and p.csv_email.lower() in directory]
    csv_wins = [p for p in employees if p.email and p.email.lower() not in directory
                and p.csv_email and p.csv_email.lower() in directory]
    unmapped = [p for p in employees if day.expected_mailbox(p) is None]
    assert by_property and csv_only and len(csv_wins) == 1
    assert day.expected_mailbox(csv_wins[0]) == csv_wins[0].csv_email.lower()
    assert unmapped
    externals = [p for p in day.people if not p.employee]
    assert externals and all(p.email is None and day.expected_mailbox(p) is None for p in externals)
    assert any(not p.name.isascii() for p in day.people)
    unmapped_phones = {p.phone for p in unmapped}
    assert any(phone_of(r["owner"]) in unmapped_phones for r in day.records)


def test_numbers_and_addresses_are_fictional(day):
    for person in day.people:
        assert person.phone.startswith(("+447700900", "+120255501"))
    for address in [*day.directory(), *(p.email for p in day.people if p.email)]:
        assert address.lower().endswith("@contoso.example")


def test_scale_multiplies_the_volume_but_keeps_a_single_huge_attachment():
    tripled = generate_day(ANCHOR, scale=3)
    single = generate_day(ANCHOR)
    assert 2.5 * len(single.records) < len(tripled.records) < 3.5 * len(single.records)
    huge = [a for a in iter_attachments(tripled.records) if a["size"] > TEN_MB]
    assert len(huge) == 1


def test_jsonl_export_inlines_every_captured_attachment(day, tmp_path):
    path = tmp_path / "day.jsonl"

    written = day.write_jsonl(path)

    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and written == len(lines) - 1 == len(day.records)
    exported = [json.loads(line) for line in lines[:-1]]
    assert [r["messageId"] for r in exported] == [r["messageId"] for r in day.records]
    for attachment in iter_attachments(exported):
        data = day.attachment_bytes(attachment["attachmentId"])
        if data is None:
            assert "content" not in attachment
        else:
            assert hashlib.sha256(base64.b64decode(attachment["content"])).hexdigest() == attachment["sha256"]
    assert "content" not in day.record("huge_attachment")["attachments"][0]  # the day itself is untouched
