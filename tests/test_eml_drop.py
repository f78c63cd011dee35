"""A vendor's EML drop is judged before anything in it is imported: its manifest must hold (count,
names, none empty, none unlisted) and its members must be safe to unpack (no path outside the
archive, no nested archive, no bomb). ZIPs and manifests here are written by the tests, in the shape
Capture Mobile documents."""

from __future__ import annotations

import io
import zipfile
from datetime import date

import pytest

from shared.domain.eml_drop import (
    DropLimits,
    DropProblem,
    MemberTooBig,
    check_drop,
    member_name_problem,
    parse_drop_name,
    parse_manifest,
    read_member,
)

EML = (b"From: +447700900123@capture.example\r\nTo: alice@contoso.example\r\nSubject: WhatsApp\r\n"
       b"Message-ID: <m1@capture.example>\r\nDate: Fri, 04 Dec 2026 09:00:00 +0000\r\n\r\nHello\r\n")


def drop(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return zipfile.ZipFile(buffer)


def manifest(count: int | str, *names: str) -> bytes:
    return ("Count: " + str(count) + "\r\n" + "".join(f"{n}\r\n" for n in names)).encode()


def problems(verdict) -> list[DropProblem]:
    return [f.problem for f in verdict.findings]


def test_a_capture_mobile_zip_name_gives_its_day_and_sequence():
    name = parse_drop_name("202612040000-TeleMessage_3_20261205013000.zip")
    assert name is not None and name.day == date(2026, 12, 4) and name.number == 3
    assert parse_drop_name("export.zip") is None
    assert parse_drop_name("202613400000-TeleMessage_3_x.zip") is None  # no 13th month
    assert parse_drop_name("202612040000-TeleMessage_3_../x.zip") is None


def test_a_manifest_that_holds_lets_every_listed_eml_through():
    verdict = check_drop(drop({"a.eml": EML, "b.eml": EML, "batch.mf": manifest(2, "a.eml", "b.eml")}))
    assert verdict.manifest_holds and verdict.safe
    assert [info.filename for info in verdict.emls] == ["a.eml", "b.eml"]
    assert verdict.describe() == "manifest holds"


@pytest.mark.parametrize(("members", "expected"), [
    ({"a.eml": EML, "m.mf": manifest(2, "a.eml")}, [DropProblem.COUNT_MISMATCH]),
    ({"a.eml": EML, "m.mf": manifest("many", "a.eml")}, [DropProblem.COUNT_MISSING]),
    ({"a.eml": EML, "m.mf": manifest(1, "a.eml", "gone.eml")}, [DropProblem.LISTED_MISSING]),
    ({"a.eml": EML, "b.eml": b"", "m.mf": manifest(2, "a.eml", "b.eml")}, [DropProblem.LISTED_EMPTY]),
    ({"a.eml": EML, "b.eml": EML, "m.mf": manifest(2, "a.eml")}, [DropProblem.NOT_LISTED]),
    ({"a.eml": EML, "m.mf": manifest(1, "a.eml", "a.eml")}, [DropProblem.LISTED_TWICE]),
    ({"a.eml": EML, "A.eml": EML, "m.mf": manifest(2, "a.eml", "a.EML")},
     [DropProblem.LISTED_MISSING, DropProblem.NOT_LISTED]),  # names match exactly, case included
])
def test_a_manifest_that_does_not_hold_says_what_is_wrong(members, expected):
    verdict = check_drop(drop(members))
    assert problems(verdict) == expected
    assert verdict.safe and not verdict.manifest_holds
    assert expected[0] in verdict.describe()


def test_a_zip_without_a_manifest_is_checked_for_safety_only():
    verdict = check_drop(drop({"one.eml": EML, "two.eml": EML}))
    assert verdict.manifest is None and verdict.manifest_holds and len(verdict.emls) == 2
    assert verdict.describe() == "no manifest"


def test_two_manifests_are_a_finding_not_a_choice():
    verdict = check_drop(drop({"a.eml": EML, "1.mf": manifest(1, "a.eml"), "2.mf": manifest(1, "a.eml")}))
    assert problems(verdict) == [DropProblem.MANIFESTS]


@pytest.mark.parametrize("name", ["../evil.eml", "a/../../evil.eml", "/etc/passwd.eml", "c:\\x.eml", "a\\..\\b.eml",
                                  "./a.eml", "bad\x01name.eml", "c1\x85control.eml", "line\u2028separator.eml"])
def test_a_member_named_outside_the_archive_makes_the_zip_unsafe(name):
    verdict = check_drop(drop({name: EML, "m.mf": manifest(1, name)}))
    assert DropProblem.UNSAFE_MEMBER_NAME in problems(verdict)
    assert not verdict.safe and verdict.manifest is None  # the manifest is not even read
    assert member_name_problem(name) is not None


def test_ordinary_member_names_are_safe():
    for name in ("a.eml", "2026/12/04/msg-1.eml", "ünïcode name (1).eml"):
        assert member_name_problem(name) is None


def test_a_nested_archive_is_refused_by_name():
    verdict = check_drop(drop({"a.eml": EML, "inner.zip": b"PK\x03\x04", "m.mf": manifest(1, "a.eml")}))
    assert problems(verdict) == [DropProblem.NESTED_ARCHIVE] and not verdict.safe


def test_a_bomb_is_refused_by_its_ratio_and_the_limit_is_named():
    zeros = b"\0" * (4 * 1024 * 1024)  # deflates about a thousand to one
    verdict = check_drop(drop({"bomb.eml": zeros, "m.mf": manifest(1, "bomb.eml")}))
    assert problems(verdict) == [DropProblem.COMPRESSION_RATIO]
    assert "over 200:1" in verdict.describe()


def test_size_limits_are_named_in_the_finding():
    limits = DropLimits(max_member_bytes=100, max_total_bytes=150, ratio_floor_bytes=10**9)
    verdict = check_drop(drop({"a.eml": EML, "b.eml": EML}, compression=zipfile.ZIP_STORED), limits)
    assert DropProblem.MEMBER_TOO_BIG in problems(verdict) and DropProblem.TOO_BIG_IN_ALL in problems(verdict)
    assert "over 100" in verdict.describe() and "over 150" in verdict.describe()


def test_too_many_members_stops_before_looking_at_each():
    verdict = check_drop(drop({f"{i}.eml": EML for i in range(5)}), DropLimits(max_members=4))
    assert problems(verdict) == [DropProblem.TOO_MANY_MEMBERS] and not verdict.safe


def test_reading_a_member_is_bounded_whatever_the_directory_says():
    archive = drop({"a.eml": EML})
    info = archive.getinfo("a.eml")
    assert read_member(archive, info, len(EML)) == EML
    with pytest.raises(MemberTooBig, match="a.eml"):
        read_member(archive, info, len(EML) - 1)


def test_a_manifest_reads_its_headers_and_names():
    parsed = parse_manifest("\ufeffCount: 2\r\nCreated: 2026-12-05 01:30\r\n\r\nx.eml\r\nNotes: odd.eml\r\n")
    assert parsed.count == 2 and parsed.names == ("x.eml", "Notes: odd.eml")
    assert parsed.headers["created"] == "2026-12-05 01:30"


def test_a_nul_in_a_member_name_is_refused_by_the_grammar():
    # Python's zipfile cuts a name at NUL on both sides, so only the grammar can be shown it.
    assert member_name_problem("bad\x00name.eml") is not None


def test_two_members_of_one_name_make_the_zip_unsafe():
    # Python's zipfile writes both; unpacked, one would hide the other, and one manifest line would seem to
    # hold for both.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning):
        archive.writestr("a.eml", EML)
        archive.writestr("a.eml", EML.replace(b"Hello", b"Other"))
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("m.mf", manifest(2, "a.eml"))
    buffer.seek(0)
    verdict = check_drop(zipfile.ZipFile(buffer))
    assert not verdict.safe and DropProblem.UNSAFE_MEMBER_NAME in problems(verdict)


def test_a_manifest_line_ends_at_a_line_feed_only():
    listed = parse_manifest("Count: 2\r\nform\x0cfeed.eml\r\nplain.eml\n")
    assert listed.names == ("form\x0cfeed.eml", "plain.eml")


def test_a_member_packed_with_a_method_zipfile_cannot_unpack_is_named_before_anything_is_imported():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.eml", EML)
        archive.writestr("m.mf", manifest(1, "a.eml"))
    raw = bytearray(buffer.getvalue())
    # Deflate64 (method 9), as Windows Explorer writes large files: in the local and the central header.
    local = raw.index(b"PK\x03\x04")
    raw[local + 8:local + 10] = (9).to_bytes(2, "little")
    central = raw.index(b"PK\x01\x02")
    raw[central + 10:central + 12] = (9).to_bytes(2, "little")
    verdict = check_drop(zipfile.ZipFile(io.BytesIO(bytes(raw))))
    assert not verdict.safe and DropProblem.UNSUPPORTED_COMPRESSION in problems(verdict)


def test_a_manifest_with_carriage_returns_alone_still_holds():
    assert parse_manifest("Count: 2\ra.eml\rb.eml\r").names == ("a.eml", "b.eml")
