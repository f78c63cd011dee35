"""Right-to-left names, chats and messages as a reviewer sees them: items rendered, laid out in
headless Chromium, and the visual order read back character by character — a phone number's digits
left to right after an Arabic or Hebrew name, a chat's name kept apart from "(group)", a Hebrew
message right to left on its own lines — in the HTML body, the plain-text part and the subject, for
single items and daily transcripts. Screenshots are kept under test-artifacts/."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from shared.domain.bidi import strip_isolates
from shared.domain.records import ArchiveRecord
from shared.domain.rendered import RenderedItem
from shared.domain.rendering import render
from shared.domain.transcript_rendering import TranscriptEntry, render_transcript
from shared.domain.transcripts import Bucket, StagedRecord, TranscriptPart
from shared.local.traffic.day import generate_day
from tests.browser import Line, laid_out_lines, require_chromium, screenshot, visual
from tests.builders import ALICE, attachment, record
from tests.conftest import REPO_ROOT

ARTIFACTS = REPO_ROOT / "test-artifacts"

FATIMA_NAME = "فاطمة الصالح"
FATIMA = {"phone": "+447700900201", "firstName": "فاطمة", "lastName": "الصالح"}
NOA_NAME = "נועה כהן"
NOA = {"phone": "+972501234567", "displayName": NOA_NAME}  # as a chat export or the Cloud API names people
SALES_GROUP = "فريق المبيعات – EMEA"
HEBREW_TEXT = "שלום, ההצעה בתוקף עד יום חמישי"
ARABIC_TEXT = "مرحبا، العرض ساري حتى يوم الخميس"


@pytest.fixture
def chromium() -> str:
    return require_chromium()


def item(**overrides) -> RenderedItem:
    return render(ArchiveRecord.model_validate(record(**overrides)), {}, default_region="GB")


def lines_of(chromium: str, tmp_path: Path, page: str, name: str) -> list[Line]:
    return laid_out_lines(chromium, tmp_path / f"profile-{name}", page)


def fact(lines: list[Line], label: str) -> str:
    """The visual text of the facts table's row ``label``."""
    found = [line.text for line in lines if line.probe == label]
    assert len(found) == 1, (label, [(line.probe, line.text) for line in lines])
    return found[0]


def one(lines: list[Line], starting: str, probe: str = "p") -> Line:
    found = [line for line in lines if line.probe == probe and line.text.startswith(starting)]
    assert len(found) == 1, (starting, [(line.probe, line.text) for line in lines])
    return found[0]


def text_page(**blocks: tuple[str, str]) -> str:
    """A page of plain text blocks, each in an element of the given direction, as a mail client
    shows a subject or a text/plain part: the isolate characters are all the help they get."""
    style = "white-space:pre-wrap;width:1200px"
    body = "".join(
        f'<div data-probe="{name}" dir="{direction}" style="{style}">{html.escape(text)}</div>'
        for name, (direction, text) in blocks.items()
    )
    return f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{body}</body></html>'


def test_an_arabic_callers_number_reads_left_to_right_after_the_name_in_the_html_body(chromium, tmp_path):
    rendered = item(messageType="LOCATION", sender=FATIMA, recipients=[ALICE], textContent=None,
                    location={"latitude": 51.5, "longitude": -0.12, "name": "مكتب لندن", "address": "10 Downing St"})
    lines = lines_of(chromium, tmp_path, rendered.html_body, "html")

    assert fact(lines, "From") == f"{visual(FATIMA_NAME)} (+447700900201) <+447700900201@whatsapp.invalid>"
    assert one(lines, "Location:").text == f"Location: {visual('مكتب لندن')}"
    assert fact(lines, "Record id") == "msg-1"
    screenshot(chromium, tmp_path / "profile-shot", rendered.html_body, ARTIFACTS / "rtl-arabic-caller.png")


def test_the_same_line_without_isolates_is_scrambled_so_the_probe_can_see_the_defect(chromium, tmp_path):
    # What the issue saw: the bidi algorithm pulls the brackets and the "+" into the Arabic run.
    rendered = item(sender=FATIMA, recipients=[ALICE])
    from_line = next(line for line in rendered.text_body.splitlines() if line.startswith("From: "))
    lines = lines_of(chromium, tmp_path, text_page(bare=("ltr", strip_isolates(from_line)),
                                                   isolated=("ltr", from_line)), "control")
    bare, isolated = (next(line for line in lines if line.probe == name) for name in ("bare", "isolated"))
    assert "(+447700900201)" not in bare.text
    assert isolated.text == f"From: {visual(FATIMA_NAME)} (+447700900201) <+447700900201@whatsapp.invalid>"


def test_a_group_named_in_arabic_and_english_stays_apart_from_its_label(chromium, tmp_path):
    rendered = item(sender=FATIMA, recipients=[ALICE], groupMessage=True, dialogGroupId="g-1",
                    dialogGroupName=SALES_GROUP)
    lines = lines_of(chromium, tmp_path, rendered.html_body, "group")
    # The name's own direction is right to left (its first strong letter is Arabic): "EMEA" ends up
    # on its left; "(group)" stays outside, on the right, as the English sentence has it.
    assert fact(lines, "Chat") == f"EMEA – {visual('فريق المبيعات')} (group)"
    subject = lines_of(chromium, tmp_path, text_page(subject=("ltr", rendered.subject)), "group-subject")[0]
    assert subject.text == (
        f"WhatsApp message from {visual(FATIMA_NAME)} (+447700900201) to EMEA – {visual('فريق المبيعات')} (group)"
    )


@pytest.mark.parametrize("direction", ["ltr", "rtl", "auto"])
def test_the_subject_keeps_the_number_left_to_right_whatever_the_screen_direction(chromium, tmp_path, direction):
    rendered = item(sender=FATIMA, recipients=[NOA])
    [line] = lines_of(chromium, tmp_path, text_page(subject=(direction, rendered.subject)), f"subject-{direction}")
    assert "+447700900201" in line.text and "+972501234567" in line.text
    if direction == "rtl":
        # An Arabic reader's screen: the sentence runs right to left (its brackets drawn mirrored), each
        # number still left to right with its "+" first, each name whole and beside its number.
        assert line.left_of("+972501234567( " + visual(NOA_NAME), "WhatsApp message from")
        assert line.left_of(visual(FATIMA_NAME) + " (+447700900201)", " to")
    else:
        assert line.text == (
            f"WhatsApp message from {visual(FATIMA_NAME)} (+447700900201) to {visual(NOA_NAME)} (+972501234567)"
        )


def test_the_plain_text_part_reads_the_same_as_the_html(chromium, tmp_path):
    rendered = item(sender=NOA, recipients=[FATIMA], textContent=HEBREW_TEXT,
                    messageType="DOCUMENT", attachments=[attachment("a1", b"%PDF", inline=False, fileName="הצעה.pdf",
                                                                   contentType="application/pdf")])
    lines = lines_of(chromium, tmp_path, text_page(text=("ltr", rendered.text_body)), "plain")
    noa = f"{visual(NOA_NAME)} (+972501234567) <+972501234567@whatsapp.invalid>"
    fatima = f"{visual(FATIMA_NAME)} (+447700900201) <+447700900201@whatsapp.invalid>"
    assert one(lines, "From:", "text").text == f"From: {noa}"
    assert one(lines, "To:", "text").text == f"To: {fatima}"
    # A Hebrew file name is a right-to-left run of its own (its extension on its left, as a Hebrew
    # screen shows it); the custody facts after it stay in order.
    listed = one(lines, "- ", "text")
    assert listed.text.startswith(f"- pdf.{visual('הצעה')} (application/pdf, 4 bytes, SHA-256 ")
    assert "– MEDIA NOT" in listed.text  # the line wraps after it


def test_a_hebrew_or_arabic_message_reads_right_to_left_on_its_own_lines(chromium, tmp_path):
    lines = []
    for name, text in (("hebrew", HEBREW_TEXT), ("arabic", ARABIC_TEXT), ("english", "See you on Thursday")):
        rendered = item(sender=NOA, recipients=[ALICE], textContent=text)
        laid = lines_of(chromium, tmp_path, rendered.html_body, name)
        lines.append(one(laid, "", "p"))
        screenshot(chromium, tmp_path / f"profile-shot-{name}", rendered.html_body,
                   ARTIFACTS / f"rtl-message-{name}.png")
    hebrew, arabic, english = lines
    assert hebrew.text == visual(HEBREW_TEXT) and arabic.text == visual(ARABIC_TEXT)
    # Right to left: the line starts at the right edge; the English one at the left.
    assert hebrew.right > english.right and arabic.right > english.right
    assert hebrew.left > english.left and arabic.left > english.left


def test_a_quoted_reply_is_isolated_next_to_our_words(chromium, tmp_path):
    reply = render(ArchiveRecord.model_validate(record(sender=FATIMA, recipients=[ALICE], replyToMessageId="msg-0",
                                                       textContent="ok 2")), {}, replied_text=ARABIC_TEXT)
    lines = lines_of(chromium, tmp_path, reply.html_body, "reply")
    assert one(lines, "In reply to:").text == f"In reply to: “{visual(ARABIC_TEXT)}”"
    assert fact(lines, "In reply to record") == "msg-0"


def test_a_transcript_names_its_people_and_chat_in_order(chromium, tmp_path):
    zone = ZoneInfo("Asia/Dubai")
    start = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    records = [
        ArchiveRecord.model_validate(record(
            f"t-{i}", sender=person, recipients=[other], groupMessage=True, dialogGroupId="g-1",
            dialogGroupName=SALES_GROUP, textContent=text,
            messageTime=int((start + timedelta(minutes=i)).timestamp() * 1000),
        ))
        for i, (person, other, text) in enumerate(((FATIMA, NOA, ARABIC_TEXT), (NOA, FATIMA, HEBREW_TEXT)))
    ]
    staged = tuple(StagedRecord(f"k{i}", f"k{i}.json", "w", r.message_id, r.message_time, (), 0)
                   for i, r in enumerate(records))
    part = TranscriptPart(Bucket(start.date(), "0" * 32), 1, staged)
    rendered = render_transcript(part, [TranscriptEntry(r, {}) for r in records], zone=zone)
    lines = lines_of(chromium, tmp_path, rendered.html_body, "transcript")
    assert fact(lines, "Chat") == f"EMEA – {visual('فريق المبيعات')} (group)"
    participants = fact(lines, "Participants")
    assert f"{visual(FATIMA_NAME)} (+447700900201) <+447700900201@whatsapp.invalid>" in participants
    assert f"{visual(NOA_NAME)} (+972501234567) <+972501234567@whatsapp.invalid>" in participants
    headings = [line.text for line in lines if line.probe == "h4"]
    assert headings == [
        f"1. 12:00:00 message from {visual(FATIMA_NAME)} (+447700900201)",
        f"2. 12:01:00 message from {visual(NOA_NAME)} (+972501234567)",
    ]
    subject = lines_of(chromium, tmp_path, text_page(subject=("ltr", rendered.subject)), "transcript-subject")[0]
    assert subject.text.endswith(f": EMEA – {visual('فريق المبيعات')} (group)")
    screenshot(chromium, tmp_path / "profile-shot", rendered.html_body, ARTIFACTS / "rtl-transcript.png")


def test_the_demo_days_arabic_and_hebrew_items_read_correctly(chromium, tmp_path):
    """The generated day the demo archives: Fatima's Arabic message, Yael's Hebrew one and a message
    in the Arabic-named sales group, as a reviewer opens them."""
    day = generate_day(datetime(2026, 11, 22, 12, 0, tzinfo=UTC))

    def first(test) -> RenderedItem:
        data = next(r for r in day.records if test(r))
        return render(ArchiveRecord.model_validate(data), {}, default_region="GB")

    arabic = first(lambda r: r.get("textContent") == "مرحبا أميليا، هل وصلت الشحنة؟ 📦")
    hebrew = first(lambda r: r.get("textContent") == "שלום חוסה, מתי הפגישה?")
    group = first(lambda r: r.get("dialogGroupName") == SALES_GROUP and r["messageType"] == "TEXT")
    page = "".join(
        f'<section data-item="{name}">{rendered.html_body}</section>'
        for name, rendered in (("arabic", arabic), ("hebrew", hebrew), ("group", group))
    )
    lines = lines_of(chromium, tmp_path, page, "demo")
    fatima = f"{visual(FATIMA_NAME)} (+447700900201) <+447700900201@whatsapp.invalid>"
    yael = f"{visual('יעל כהן')} (+447700900202) <+447700900202@whatsapp.invalid>"
    froms = [line.text for line in lines if line.probe == "From"]
    assert froms[:2] == [fatima, yael]
    assert [line.text for line in lines if line.probe == "Chat"][2] == f"EMEA – {visual('فريق المبيعات')} (group)"
    messages = [line for line in lines if line.probe == "p"]
    # The emoji ends the Arabic sentence, so it stands at its left end.
    assert messages[0].text == "📦 " + visual("مرحبا أميليا، هل وصلت الشحنة؟")
    assert messages[1].text == visual("שלום חוסה, מתי הפגישה?")
    assert messages[1].right > messages[2].right - 1  # right to left: it ends at the right edge too
    for name, rendered in (("arabic", arabic), ("hebrew", hebrew)):
        subject = lines_of(chromium, tmp_path, text_page(subject=("ltr", rendered.subject)), f"demo-{name}")[0]
        assert f"({'+447700900201' if name == 'arabic' else '+447700900202'})" in subject.text
    screenshot(chromium, tmp_path / "profile-demo-shot", page, ARTIFACTS / "rtl-demo-items.png")
