"""WhatsApp "Export chat" files parse to what the documented format says they hold (issue 17).

Each ``tests/fixtures/chat_exports/*.txt`` is a small invented export in one platform and locale form of
shared/reference/whatsapp-chat-export.md, written byte for byte by ``write_fixtures.py`` (invisible
characters included); its ``*.expected.json`` holds the expectation written by hand: date order and
whether a hint decided it, physical and unparsed line counts, the preamble, and every message's lines,
local time, author, kind, text, edited flag and media. Files a parser must refuse name the error.

Beyond the fields: every physical line belongs to exactly one message or the preamble, in file order;
``raw`` is the file's lines verbatim; and a generated 3,000-line chat (iOS and Android) parses to the
message count, authors and media references its generator recorded.
"""

from __future__ import annotations

import json
import re
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from shared.domain.chat_export import DateOrderUndecided, ExportEncodingError, UnsupportedCalendar, parse_chat
from tests.fixtures.chat_exports import write_fixtures
from tests.fixtures.chat_exports.make_large_chat import read_facts, write_large_export

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "chat_exports"
ERRORS: dict[str, type[Exception]] = {
    "DateOrderUndecided": DateOrderUndecided,
    "UnsupportedCalendar": UnsupportedCalendar,
    "ExportEncodingError": ExportEncodingError,
}
FIELDS = ("first_line", "last_line", "local_time", "author", "kind", "text", "edited", "media_file", "media_omitted")


@cache
def expectation(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _id(name: str) -> str:
    return name.removesuffix(".expected.json")


EXPECTED = sorted(path.name for path in FIXTURES.glob("*.expected.json"))
PARSED = [name for name in EXPECTED if "error" not in expectation(name)]
REFUSED = [name for name in EXPECTED if "error" in expectation(name)]
# One parsed expectation per fixture file (a file refused without a hint is parsed with its hint).
PARSED_FILES = sorted({expectation(name)["fixture"]: name for name in reversed(PARSED)}.values())


def physical_lines(data: bytes) -> list[str]:
    """The file's lines as the reference counts them: LF or CRLF ends a line, a BOM is no content, and
    a final line ending starts no new line."""
    lines = data.decode("utf-8").removeprefix("\ufeff").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def parse(name: str):
    expected = expectation(name)
    return parse_chat((FIXTURES / expected["fixture"]).read_bytes(), date_order=expected["hint"])


def message_fields(message) -> dict[str, Any]:
    fields = {field: getattr(message, field) for field in FIELDS}
    fields["local_time"] = message.local_time.isoformat()
    return fields


def preamble_fields(preamble) -> dict[str, Any] | None:
    if preamble is None:
        return None
    return {"first_line": preamble.first_line, "last_line": preamble.last_line, "raw": preamble.raw}


def line_spans(parsed) -> list[tuple[int, int]]:
    spans = [(parsed.preamble.first_line, parsed.preamble.last_line)] if parsed.preamble is not None else []
    return spans + [(message.first_line, message.last_line) for message in parsed.messages]


# --- Every fixture against its hand-written expectation -------------------------------------------


@pytest.mark.parametrize("name", PARSED, ids=_id)
def test_export_parses_to_the_hand_written_expectation(name):
    expected = expectation(name)
    parsed = parse(name)

    assert (parsed.date_order, parsed.date_order_assumed) == (expected["date_order"], expected["date_order_assumed"])
    assert parsed.lines == expected["lines"]
    assert parsed.unparsed_lines == expected["unparsed_lines"]
    assert preamble_fields(parsed.preamble) == expected["preamble"]

    actual = [message_fields(message) for message in parsed.messages]
    differences = [
        f"message {index} (line {want['first_line']}): {field} is {got.get(field)!r}, expected {want[field]!r}"
        for index, (got, want) in enumerate(zip(actual, expected["messages"], strict=False), start=1)
        for field in FIELDS
        if got.get(field) != want[field]
    ]
    assert not differences, "\n".join(differences)
    assert len(actual) == len(expected["messages"])


@pytest.mark.parametrize("name", REFUSED, ids=_id)
def test_refused_export_raises_the_documented_error(name):
    expected = expectation(name)
    with pytest.raises(ERRORS[expected["error"]]) as raised:
        parse(name)
    if "error_line" in expected:
        assert re.search(rf"\bline\W*{expected['error_line']}\b", str(raised.value), re.IGNORECASE), (
            f"the error does not name line {expected['error_line']}: {raised.value}"
        )


# --- Line accounting -------------------------------------------------------------------------------


def assert_lines_accounted_for(parsed, data: bytes) -> None:
    lines = physical_lines(data)
    assert parsed.lines == len(lines)
    covered = [number for first, last in line_spans(parsed) for number in range(first, last + 1)]
    assert covered == list(range(1, len(lines) + 1)), "lines missing, repeated or out of file order"
    if parsed.preamble is not None:
        assert parsed.preamble.raw == "\n".join(lines[parsed.preamble.first_line - 1 : parsed.preamble.last_line])
    for message in parsed.messages:
        assert message.raw == "\n".join(lines[message.first_line - 1 : message.last_line]), message.first_line


@pytest.mark.parametrize("name", PARSED_FILES, ids=lambda name: expectation(name)["fixture"])
def test_every_physical_line_is_in_exactly_one_message_or_the_preamble_and_raw_is_verbatim(name):
    assert_lines_accounted_for(parse(name), (FIXTURES / expectation(name)["fixture"]).read_bytes())


# --- The fixtures themselves -----------------------------------------------------------------------


def test_committed_fixtures_are_exactly_what_write_fixtures_writes():
    built = write_fixtures.build()
    on_disk = {path.name for path in FIXTURES.iterdir() if path.suffix in (".txt", ".json")}
    assert on_disk == set(built), "run tests/fixtures/chat_exports/write_fixtures.py"
    changed = [name for name, data in built.items() if (FIXTURES / name).read_bytes() != data]
    assert not changed, f"edited by hand or not regenerated: {changed}"


def test_every_fixture_file_has_an_expectation_and_every_expectation_a_file():
    files = {path.name for path in FIXTURES.glob("*.txt")}
    named = {expectation(name)["fixture"] for name in EXPECTED}
    assert files == named


INVISIBLE = [
    ("ios_en_us_narrow_nbsp.txt", "9:41:07\u202fPM]"),  # U+202F before PM
    ("ios_en_us_narrow_nbsp.txt", "\u200e[1/15/24"),  # LRM before a generated line
    ("ios_en_us_narrow_nbsp.txt", ": \u200e\u200eYour security code"),  # two LRMs
    ("android_en_ca_iso.txt", "5:46\u202fp.m."),
    ("android_es_pm.txt", "9:29 p.\u00a0m. - "),  # no-break space inside the Spanish marker
    ("ios_de.txt", "\u200e<attached: 00000012-PHOTO-2026-03-07-21-23-05.jpg>"),
    ("ios_de.txt", ": \u200eBild weggelassen"),
    ("ios_en_gb_group.txt", "] ~\u202fMaya Lind: "),
    ("ios_en_gb_group.txt", "] +44\u00a07700\u00a0900456: "),
    ("ios_ar_arabic_indic.txt", "[\u0662\u0667\u200f/\u0663\u200f/\u0662\u0660\u0662\u0662\u060c "),  # RLM, ،
    ("ios_ar_arabic_indic.txt", "\u00a0\u0645]"),  # no-break space before the Arabic PM marker
    ("ios_ar_arabic_indic.txt", "\u202a+44\u00a07700\u00a0900321\u202c: "),  # LRE ... PDF
    ("android_nl_dashed.txt", ": \u200ePTT-20220323-WA0000.opus (bestand bijgevoegd)"),
    ("android_en_dash.txt", "AM \u2013 Grace Hall"),
    ("android_odd_line_breaks.txt", "Total:\r12 items"),
]


@pytest.mark.parametrize(("file", "needle"), INVISIBLE, ids=[f"{file}:{needle!a}" for file, needle in INVISIBLE])
def test_fixture_bytes_hold_the_invisible_characters_they_are_about(file, needle):
    assert needle.encode("utf-8") in (FIXTURES / file).read_bytes()


@pytest.mark.parametrize("file", sorted(path.name for path in FIXTURES.glob("*.txt")))
def test_ios_fixtures_end_lines_with_crlf_and_the_others_with_lf(file):
    data = (FIXTURES / file).read_bytes()
    if file.startswith("ios_"):
        assert data.count(b"\n") == data.count(b"\r\n") > 0
    else:
        assert b"\r\n" not in data


def test_bom_fixture_starts_with_a_bom_and_the_encoding_fixture_is_not_utf8():
    assert (FIXTURES / "android_bom.txt").read_bytes().startswith(b"\xef\xbb\xbf")
    with pytest.raises(UnicodeDecodeError):
        (FIXTURES / "android_not_utf8.txt").read_bytes().decode("utf-8")


# --- A generated 3,000-line chat -------------------------------------------------------------------


@pytest.fixture(scope="module", params=["ios", "android"])
def large_chat(request, tmp_path_factory):
    zip_path = write_large_export(tmp_path_factory.mktemp(request.param), lines=3000, platform=request.param)
    facts = read_facts(zip_path)
    with zipfile.ZipFile(zip_path) as archive:
        members = archive.namelist()
        data = archive.read(facts["transcript"])
    return facts, members, data, parse_chat(data)


def test_generated_large_chat_parses_to_its_message_count(large_chat):
    facts, _, _, parsed = large_chat
    assert parsed.lines == facts["lines"] == 3000
    assert len(parsed.messages) == facts["message_count"]
    assert (parsed.date_order, parsed.date_order_assumed) == (facts["date_order"], False)
    assert (parsed.unparsed_lines, parsed.preamble) == (0, None)
    assert (
        sum(1 for message in parsed.messages if message.last_line > message.first_line) == facts["multi_line_messages"]
    )


def test_generated_large_chat_accounts_for_every_line_and_keeps_raw(large_chat):
    _, _, data, parsed = large_chat
    assert_lines_accounted_for(parsed, data)


def test_generated_large_chat_keeps_identical_lines_as_separate_messages_in_file_order(large_chat):
    _, _, data, parsed = large_chat
    ok_lines = [line for line in physical_lines(data) if line.endswith(": ok")]
    assert len(ok_lines) > len(set(ok_lines))  # the generator wrote runs of identical lines
    assert sum(1 for message in parsed.messages if message.text == "ok") == len(ok_lines)
    times = [message.local_time for message in parsed.messages]
    assert times == sorted(times)  # the generator's clock only moves forward


def test_generated_large_chat_authors_are_the_five_members_as_printed_without_bidi_marks(large_chat):
    facts, _, _, parsed = large_chat
    assert sorted({message.author for message in parsed.messages if message.author is not None}) == facts["authors"]


def test_generated_large_chat_names_media_the_zip_holds_lacks_or_holds_unnamed(large_chat):
    facts, members, _, parsed = large_chat
    referenced = sorted(message.media_file for message in parsed.messages if message.media_file)
    assert referenced == facts["media_referenced"]
    files = {name for name in members if name != facts["transcript"] and not name.startswith("__MACOSX/")}
    assert sorted(set(referenced) & files) == facts["media_present"]
    assert sorted(set(referenced) - files) == facts["media_missing"] != []
    assert sorted(files - set(referenced)) == facts["media_unreferenced"] != []
    assert [name for name in members if name.startswith("__MACOSX/")] == facts["macosx_entries"] != []


def test_large_chat_generator_is_deterministic(tmp_path):
    for platform in ("ios", "android"):
        first = write_large_export(tmp_path / "a", lines=500, platform=platform)
        second = write_large_export(tmp_path / "b", lines=500, platform=platform)
        assert first.read_bytes() == second.read_bytes()
        assert read_facts(first) == read_facts(second)
        with zipfile.ZipFile(first) as archive:
            assert len(physical_lines(archive.read(read_facts(first)["transcript"]))) == 500
