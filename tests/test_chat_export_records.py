"""Chat export lines become records: ids that survive a re-export, times read in the operator's zone
with DST flagged, the custodian always a participant, employees found by name or number, and the
zip read without trusting it."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.domain.chat_export import parse_chat
from shared.domain.chat_export_records import ExportContext, MediaFile, build_records, resolve_local_time
from shared.domain.participants_table import parse_participants
from shared.service.chat_export_files import ExportFileError, chat_name_from_file, open_export

FIXTURES = Path(__file__).parent / "fixtures" / "chat_exports"
CUSTODIAN = "claire.dunn@contoso.example"
CAPTURED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def context(**changes) -> ExportContext:
    values = {
        "custodian": CUSTODIAN, "time_zone": "Europe/London", "chat_name": "Night shift",
        "file_name": "WhatsApp Chat with Night shift.txt", "file_sha256": "a" * 64, "captured_at": CAPTURED,
        "participants": {"Claire Dunn": CUSTODIAN},
    }
    values.update(changes)
    return ExportContext(**values)


def records_of(text: str, **changes):
    return build_records(parse_chat(text.encode("utf-8"), date_order="dmy"), context(**changes))


def test_a_dst_night_resolves_the_skipped_and_the_repeated_hour_and_flags_each_record():
    built = build_records(parse_chat((FIXTURES / "android_dst_london.txt").read_bytes()), context())
    by_text = {r.record.text_content: r.record for r in built.records}
    skipped = by_text["this minute never happened here"]
    assert skipped.export.time_note.startswith("time_nonexistent")
    assert skipped.sent_at == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # read with GMT, the offset before
    first = by_text["first time 01:10"]
    second = by_text["second time 01:10"]
    assert first.export.time_note.startswith("time_ambiguous") and "first occurrence" in first.export.time_note
    assert second.export.time_note.startswith("time_ambiguous") and "second occurrence" in second.export.time_note
    assert first.sent_at == datetime(2026, 10, 25, 0, 10, tzinfo=UTC)  # 01:10 BST
    assert second.sent_at == datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 01:10 GMT, an hour later
    assert by_text["and now 01:05 again"].sent_at == datetime(2026, 10, 25, 1, 5, tzinfo=UTC)
    assert by_text["go to sleep"].export.time_note is None
    assert all(r.record.export.time_zone == "Europe/London" for r in built.records)


def test_resolving_a_plain_time_needs_no_note():
    from zoneinfo import ZoneInfo

    instant, note = resolve_local_time(datetime(2026, 7, 1, 12, 0), ZoneInfo("America/New_York"), None)
    assert instant == datetime(2026, 7, 1, 16, 0, tzinfo=UTC) and note is None


ANDROID = (
    "01/03/2026, 09:01 - Claire Dunn: Morning\n"
    "01/03/2026, 09:02 - Ben Okafor: ok\n"
    "01/03/2026, 09:02 - Ben Okafor: ok\n"
    "01/03/2026, 09:03 - +44 7700 900123: price?\n"
)
IOS_LATER = (
    "[01/03/2026, 09:01:12] Claire Dunn: Morning\r\n"
    "[01/03/2026, 09:02:03] Ben Okafor: ok\r\n"
    "[01/03/2026, 09:02:40] Ben Okafor: ok\r\n"
    "[01/03/2026, 09:03:59] \u202a+44\u00a07700\u00a0900123\u202c: price?\r\n"
    "[02/03/2026, 10:00:00] Ben Okafor: new today\r\n"
)


def ids(built) -> list[str]:
    return [r.record.message_id for r in built.records]


def test_the_same_lines_in_an_ios_and_an_android_export_of_one_chat_get_the_same_ids():
    android = records_of(ANDROID)
    ios = records_of(IOS_LATER)
    assert ids(ios)[:4] == ids(android)  # seconds, brackets, CRLF, NBSP and bidi marks make no new record
    assert ids(ios)[4] not in ids(android)


def test_identical_lines_in_one_minute_are_two_records_and_a_changed_text_is_another():
    android = records_of(ANDROID)
    assert len(set(ids(android))) == 4  # the two "ok"s stay two
    edited = records_of(ANDROID.replace("price?", "price? <This message was edited>"))
    assert ids(edited)[3] == ids(android)[3]  # the marker alone changes nothing: the same final text
    deleted = records_of(ANDROID.replace("price?", "This message was deleted"))
    assert ids(deleted)[3] != ids(android)[3]  # a deletion is a revision, kept beside the original
    assert deleted.records[3].record.event == "DELETED"


def test_another_custodian_or_chat_never_shares_an_id():
    assert not set(ids(records_of(ANDROID))) & set(ids(records_of(ANDROID, chat_name="Day shift")))
    assert not set(ids(records_of(ANDROID))) & set(ids(records_of(ANDROID, custodian="ben@contoso.example")))


def test_the_custodian_is_in_every_record_and_employees_are_found_by_name_or_number():
    built = records_of(ANDROID, participants={"Claire Dunn": CUSTODIAN, "Ben Okafor": "ben@contoso.example"})
    for item in built.records:
        people = [p.email for p in item.record.participants]
        assert CUSTODIAN in people
    morning, ok, _, price = (r.record for r in built.records)
    assert morning.sender.email == CUSTODIAN and morning.direction == "OUTGOING"
    assert ok.sender.email == "ben@contoso.example" and ok.direction == "INCOMING"
    assert price.sender.phone == "+447700900123"  # mapped through the phone → email CSV at import
    assert built.group  # three people besides the custodian's lines


def test_a_line_naming_a_missing_file_and_a_file_no_line_names_are_reported_and_kept():
    text = ("01/03/2026, 09:01 - Ben Okafor: IMG-20260301-WA0001.jpg (file attached)\nthe view\n"
            "01/03/2026, 09:02 - Ben Okafor: IMG-20260301-WA0002.jpg (file attached)\n")
    media = {"IMG-20260301-WA0001.jpg": MediaFile("IMG-20260301-WA0001.jpg", "export-" + "1" * 64, 10, "1" * 64),
             "IMG-20260301-WA0009.jpg": MediaFile("IMG-20260301-WA0009.jpg", "export-" + "9" * 64, 20, "9" * 64)}
    built = records_of(text, media=media)
    attached, missing, stray = (r for r in built.records)
    assert attached.record.attachments[0].sha256 == "1" * 64 and attached.record.text_content == "the view"
    assert missing.notes[0].startswith("media_missing") and not missing.record.attachments
    assert stray.kind == "media_unreferenced" and stray.record.attachments[0].file_name == "IMG-20260301-WA0009.jpg"
    assert (built.media_attached, built.media_missing, built.media_unreferenced) == (
        1, ((3, "IMG-20260301-WA0002.jpg"),), ("IMG-20260301-WA0009.jpg",))


def test_text_before_the_first_message_is_a_record_of_its_own():
    built = records_of("exported by a forensic tool\n\n" + ANDROID)
    first = built.records[0]
    assert first.kind == "unparsed" and first.record.text_content == "exported by a forensic tool\n"
    assert (first.first_line, first.last_line) == (1, 2)


def test_chat_names_are_read_from_the_file_names_phones_write():
    assert chat_name_from_file("WhatsApp Chat - Sales Desk.zip") == "Sales Desk"
    assert chat_name_from_file("WhatsApp Chat with Ben Okafor.txt") == "Ben Okafor"
    assert chat_name_from_file("WhatsApp Chat mit Anna.txt") == "Anna"
    assert chat_name_from_file("Ben Okafor님과의 WhatsApp 대화.txt") == "Ben Okafor"
    assert chat_name_from_file("export.txt") == "export"


def test_a_participants_file_names_its_bad_rows_and_refuses_one_name_with_two_addresses():
    table = parse_participants(b"Name,Email\nBen Okafor,ben@contoso.example\nBad,not-an-address\n"
                               b"ben okafor,other@contoso.example\n\xd9\x81\xd8\xa7\xd8\xb7\xd9\x85\xd8\xa9,"
                               b"fatima@contoso.example\n")
    assert table.names == {"Ben Okafor": "ben@contoso.example", "فاطمة": "fatima@contoso.example"}
    assert [p.split(":")[0] for p in table.problems] == ["line 3", "line 4"]


def make_zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_members_whose_names_leave_the_archive_or_repeat_are_kept_under_names_of_their_own(tmp_path):
    path = make_zip(tmp_path / "WhatsApp Chat - X.zip", {
        "_chat.txt": ANDROID.encode(), "../../etc/passwd": b"x", "/abs.jpg": b"y", "ok.jpg": b"z",
        "sub/ok.jpg": b"other", "__MACOSX/._ok.jpg": b"fork",
    })
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("ok.jpg", b"same name again")  # a second entry of exactly one name
    export = open_export(path)
    kept = dict(export.renamed)
    assert set(kept) == {"../../etc/passwd", "/abs.jpg", "sub/ok.jpg", "ok.jpg"}
    assert all(name.startswith("member-") and "/" not in name and ".." not in name for name in kept.values())
    assert set(export.media) == {"ok.jpg", *kept.values()}
    assert export.ignored == ["__MACOSX/._ok.jpg"]
    # Each entry is read as the entry it is, whatever its name says.
    import hashlib

    for name, member in export.media.items():
        assert hashlib.sha256(b"".join(export.open_member(name))).hexdigest() == member.sha256


def test_a_zip_bomb_is_refused_naming_the_member_and_the_ratio(tmp_path):
    path = make_zip(tmp_path / "bomb.zip", {"_chat.txt": ANDROID.encode(), "big.bin": bytes(50 * 1024 * 1024)})
    with pytest.raises(ExportFileError, match=r"member big\.bin inflates \d+:1, over the limit of 200:1"):
        open_export(path)


def test_a_zip_without_a_chat_text_is_refused(tmp_path):
    with pytest.raises(ExportFileError, match="no chat text"):
        open_export(make_zip(tmp_path / "photos.zip", {"a.jpg": b"x", "b.jpg": b"y"}))


def test_the_transcript_is_found_as_phones_name_it(tmp_path):
    android = open_export(make_zip(tmp_path / "a.zip", {
        "WhatsApp Chat with Ben.txt": ANDROID.encode(), "notes.txt": b"other", "IMG-1.jpg": b"x"}))
    assert android.transcript_name == "WhatsApp Chat with Ben.txt" and "notes.txt" in android.media
    ios = open_export(make_zip(tmp_path / "b.zip", {"_chat.txt": IOS_LATER.encode(), "WhatsApp.txt": b"x"}))
    assert ios.transcript_name == "_chat.txt"
