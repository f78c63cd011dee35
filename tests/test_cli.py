"""``python -m shared.cli``: the administrator's contract from the README's "Command line" section.

The CLI runs in-process through ``shared.cli.main.main`` (real adapters, real files under tmp
paths, nothing mocked) and, where the entry point itself is the thing proved, as a subprocess of
the checkout's interpreter with ``-m shared.cli``.
"""

from __future__ import annotations

import codecs
import contextlib
import email
import email.policy
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.cli.main import main
from shared.local.traffic.day import TrafficDay, generate_day
from tests import builders

REPO_ROOT = Path(__file__).resolve().parents[1]
ANCHOR = datetime(2024, 6, 12, 6, 0, tzinfo=UTC)
FOLDER = "WhatsApp Archiver"
# The report's top-level keys exactly as the README's "Command line" section lists them.
REPORT_KEYS = {"listed", "fanout", "imported", "skipped_duplicates", "partially_imported", "poisoned", "items"}
ENTRY_KEYS = {"line", "messageId", "outcome", "mailboxes", "reason"}


def _python() -> str:
    venv = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None


def run_cli(argv: list[str], report: Path | None = None) -> Run:
    """main() in-process with its output captured; usable from module-scoped fixtures (no capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    loaded = json.loads(report.read_text(encoding="utf-8")) if report is not None and report.exists() else None
    return Run(code, out.getvalue(), err.getvalue(), loaded)


def import_argv(items: Path, inputs: Path, mailboxes: Path, report: Path | None = None, *extra: str) -> list[str]:
    argv = ["import", str(items), "--mapping", str(inputs / "map.csv"), "--directory", str(inputs / "users.txt"),
            "--mailbox-dir", str(mailboxes)]
    if report is not None:
        argv += ["--report", str(report)]
    return argv + list(extra)


def snapshot(root: Path) -> dict[Path, tuple[int, int, int]]:
    """Every file under root with its inode, size and modification time: any rewrite shows."""
    if not root.exists():
        return {}
    return {p: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def stored_mail(root: Path) -> dict[tuple[str, str], email.message.EmailMessage]:
    """(mailbox folder, X-Archive-Item-Id) -> the parsed message, for every .eml under root."""
    found: dict[tuple[str, str], email.message.EmailMessage] = {}
    for path in root.glob(f"*/{FOLDER}/*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        key = (path.parent.parent.name, str(message["X-Archive-Item-Id"]))
        assert key not in found, f"record {key[1]} written twice into {key[0]}"
        found[key] = message
    return found


def message_time(record: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(record["messageTime"] // 1000, tz=UTC)  # Date: has whole seconds


def sent_pairs(report: dict[str, Any], outcome: str) -> set[tuple[str, str]]:
    return {
        (mailbox, item["messageId"])
        for item in report["items"]
        for mailbox, result in item.get("mailbox_outcomes", {}).items()
        if result["outcome"] == outcome
    }


# -- a realistic day, imported twice -----------------------------------------------------------


@dataclass
class DayImport:
    day: TrafficDay
    items: Path
    mailboxes: Path
    first: Run
    files_after_first: dict[Path, tuple[int, int, int]]
    mail_after_first: dict[tuple[str, str], email.message.EmailMessage]
    second: Run
    files_after_second: dict[Path, tuple[int, int, int]]


@pytest.fixture(scope="module")
def day_import(tmp_path_factory) -> DayImport:
    """One generated day imported with --region GB, then the same command again into the same
    mailboxes. (Module-scoped: the day is ~45 MB of JSON Lines and a run takes seconds.)"""
    root = tmp_path_factory.mktemp("day")
    day = generate_day(ANCHOR)
    items = root / "items.jsonl"
    day.write_jsonl(items)
    (root / "map.csv").write_text(day.mapping_csv(), encoding="utf-8")
    (root / "users.txt").write_text("\n".join(day.directory()) + "\n", encoding="utf-8")
    mailboxes = root / "mailboxes"
    first = run_cli(import_argv(items, root, mailboxes, root / "first.json", "--region", "GB"), root / "first.json")
    after_first = snapshot(mailboxes)
    mail_after_first = stored_mail(mailboxes)
    second = run_cli(import_argv(items, root, mailboxes, root / "second.json", "--region", "GB"),
                     root / "second.json")
    return DayImport(day, items, mailboxes, first, after_first, mail_after_first, second, snapshot(mailboxes))


def test_import_of_a_generated_day_exits_0_and_writes_the_report(day_import):
    assert day_import.first.code == 0, day_import.first.stderr
    assert day_import.first.report is not None
    # The generated mapping file is clean with --region GB: nothing to complain about.
    assert day_import.first.stderr == ""


def test_import_report_has_exactly_the_documented_keys(day_import):
    report = day_import.first.report
    assert set(report) == REPORT_KEYS
    assert all(isinstance(report[k], int) for k in REPORT_KEYS - {"poisoned", "items"})
    assert all(isinstance(reason, str) and isinstance(n, int) and n > 0 for reason, n in report["poisoned"].items())
    for entry in report["items"]:
        assert ENTRY_KEYS <= set(entry)


def test_import_report_has_one_entry_per_non_blank_line_in_file_order(day_import):
    lines = day_import.items.read_bytes().split(b"\n")
    non_blank = [number for number, line in enumerate(lines, start=1) if line.strip()]
    entries = day_import.first.report["items"]
    assert [entry["line"] for entry in entries] == non_blank
    assert [entry["messageId"] for entry in entries] == [record["messageId"] for record in day_import.day.records]


def test_import_report_reconciles_records_and_pairs(day_import):
    report = day_import.first.report
    records = day_import.day.records
    outcomes = [entry["outcome"] for entry in report["items"]]
    assert report["listed"] == len(records) == len(outcomes)
    assert report["fanout"] == report["imported"] + report["skipped_duplicates"]
    accounted = sum(outcome in ("imported", "skipped_duplicate") for outcome in outcomes)
    assert report["listed"] == accounted + sum(report["poisoned"].values())
    assert report["fanout"] == sum(len(entry["mailboxes"]) for entry in report["items"])
    # A first run into empty mailboxes imports every pair it fans out to.
    assert report["imported"] == report["fanout"] > 0 and report["skipped_duplicates"] == 0


def test_import_prints_the_same_counts_it_reports(day_import):
    report, stdout = day_import.first.report, day_import.first.stdout
    assert re.search(rf"^records listed:\s+{report['listed']}$", stdout, re.M)
    assert re.search(rf"^imported:\s+{report['imported']}$", stdout, re.M)
    assert re.search(rf"^poisoned:\s+{sum(report['poisoned'].values())} \(", stdout, re.M)


def test_import_poisons_the_12_mb_video_as_too_big_and_the_unmappable_chat_as_no_mapping(day_import):
    day, report = day_import.day, day_import.first.report
    by_id = {entry["messageId"]: entry for entry in report["items"]}
    huge = by_id[day.labels["huge_attachment"]]
    assert (huge["outcome"], huge["reason"], huge["mailboxes"]) == ("poisoned", "too_big", [])
    unmapped = by_id[day.labels["unmapped"]]
    assert (unmapped["outcome"], unmapped["reason"], unmapped["mailboxes"]) == ("poisoned", "no_mapping", [])
    assert report["poisoned"]["too_big"] >= 1 and report["poisoned"]["no_mapping"] >= 1
    stored_ids = {item_id for _, item_id in day_import.mail_after_first}
    assert huge["messageId"] not in stored_ids and unmapped["messageId"] not in stored_ids


def test_import_writes_one_eml_per_imported_pair_in_lower_case_mailbox_folders(day_import):
    mail = day_import.mail_after_first
    assert set(mail) == sent_pairs(day_import.first.report, "imported")
    assert len(mail) == day_import.first.report["imported"]
    for mailbox_dir in day_import.mailboxes.iterdir():
        assert mailbox_dir.name == mailbox_dir.name.lower()
        assert [p.name for p in mailbox_dir.iterdir()] == [FOLDER]
    # Nothing but finished .eml files: no temporary file is left behind.
    assert all(path.suffix == ".eml" and not path.name.startswith(".") for path in day_import.files_after_first)
    # The CSV spells one address in mixed case (Lukasz.Wisniewski@Contoso.example).
    assert (day_import.mailboxes / "lukasz.wisniewski@contoso.example" / FOLDER).is_dir()


def test_import_eml_date_is_the_records_message_time_not_its_capture_time(day_import):
    records = {record["messageId"]: record for record in day_import.day.records}
    mail = day_import.mail_after_first
    assert mail
    for (_, item_id), message in mail.items():
        assert message["Date"].datetime == message_time(records[item_id]), item_id
    # The record delivered days late keeps its original send time.
    late = day_import.day.record("late_delivery")
    assert late["archivedTime"] - late["messageTime"] > 24 * 3600 * 1000
    late_mail = [m for (_, item_id), m in mail.items() if item_id == late["messageId"]]
    assert late_mail
    assert all(m["Date"].datetime == message_time(late) for m in late_mail)


def test_import_sends_the_csv_wins_record_to_the_csv_address_not_the_email_property(day_import):
    day = day_import.day
    record = day.record("csv_wins")
    marcus = day.person("marcus")
    assert record["sender"]["email"] == marcus.email == "m.webb@contoso.example"
    entry = next(e for e in day_import.first.report["items"] if e["messageId"] == record["messageId"])
    assert entry["mailbox_outcomes"][marcus.csv_email] == {"outcome": "imported", "rule": "csv"}
    assert (marcus.csv_email, record["messageId"]) in day_import.mail_after_first
    assert not (day_import.mailboxes / "m.webb@contoso.example").exists()


def test_second_import_of_the_same_file_skips_every_pair_as_a_duplicate(day_import):
    first, second = day_import.first.report, day_import.second.report
    assert day_import.second.code == 0
    assert second["imported"] == 0
    assert second["skipped_duplicates"] == first["fanout"] == second["fanout"]
    assert second["listed"] == first["listed"]
    assert second["poisoned"] == first["poisoned"]
    assert sent_pairs(second, "skipped_duplicate") == sent_pairs(first, "imported")
    for a, b in zip(first["items"], second["items"], strict=True):
        expected = "skipped_duplicate" if a["outcome"] == "imported" else a["outcome"]
        assert (b["line"], b["messageId"], b["outcome"], b["reason"]) == (a["line"], a["messageId"], expected,
                                                                          a["reason"])


def test_second_import_creates_and_rewrites_no_files(day_import):
    assert day_import.files_after_second == day_import.files_after_first


# -- small files built from tests/builders.py -------------------------------------------------


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """map.csv and users.txt for the builders' people (Alice by email, Bob by CSV)."""
    (tmp_path / "map.csv").write_text(builders.MAPPING_CSV, encoding="utf-8")
    (tmp_path / "users.txt").write_text("\n".join(builders.DIRECTORY) + "\n", encoding="utf-8")
    return tmp_path


def jsonl(*records: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)


SECRET_TEXT = "my account is 12-34-56 87654321, tell nobody"
SECRET_PHONE = "+447700900777"
SECRET_DIGITS = "7700900777"


def test_bad_lines_become_invalid_item_entries_with_their_line_numbers_and_the_batch_continues(
    inputs, tmp_path, capsys,
):
    secret = {"phone": SECRET_PHONE, "firstName": "Eve", "lastName": "Hidden"}
    wrong_type = builders.record("bad-type", messageTime="yesterday", textContent=SECRET_TEXT, recipients=[secret])
    bad_utf8 = jsonl(builders.record("bad-utf8", textContent="café " + SECRET_TEXT, recipients=[secret]))
    bad_utf8 = bad_utf8.replace("café".encode(), b"caf\xff\xfe")
    number_as_phone = builders.record("bad-phone", textContent=SECRET_TEXT, recipients=[{"phone": 447700900777}])
    lines = [
        jsonl(builders.record("good-1")),                                          # 1 imported
        b"not json {" + SECRET_TEXT.encode() + b"\n",                              # 2 not JSON
        b'["' + SECRET_PHONE.encode() + b'", "' + SECRET_TEXT.encode() + b'"]\n',  # 3 a JSON array
        jsonl(wrong_type),                                                         # 4 wrong type
        bad_utf8,                                                                  # 5 invalid UTF-8
        b"   \t \n",                                                               # 6 blank: no entry
        jsonl(builders.record("good-2", sender=builders.BOB, owner=builders.BOB)),  # 7 imported (CSV)
        b"\n",                                                                     # 8 blank: no entry
        jsonl(number_as_phone),                                                    # 9 wrong type, nested
        jsonl(builders.record("good-3")).rstrip(b"\n"),                            # 10 last, no newline
    ]
    items = tmp_path / "items.jsonl"
    items.write_bytes(b"".join(lines))
    report_path = tmp_path / "report.json"

    code = main(import_argv(items, inputs, tmp_path / "mail", report_path))

    captured = capsys.readouterr()
    assert code == 0, captured.err
    report_text = report_path.read_text(encoding="utf-8")
    report = json.loads(report_text)
    entries = {entry["line"]: entry for entry in report["items"]}
    assert sorted(entries) == [1, 2, 3, 4, 5, 7, 9, 10]
    assert [entries[n]["outcome"] for n in (1, 7, 10)] == ["imported"] * 3
    for number in (2, 3, 4, 5, 9):
        assert (entries[number]["outcome"], entries[number]["reason"]) == ("poisoned", "invalid_item"), number
        assert entries[number]["mailboxes"] == []
        assert entries[number]["detail"]
    # The report names what is wrong ...
    assert "messageTime" in entries[4]["detail"]
    assert "recipients.0.phone" in entries[9]["detail"]
    assert "JSON" in entries[2]["detail"] and "JSON" in entries[5]["detail"]
    # ... and keeps the id of a record that still says it, for the admin to find it.
    assert entries[4]["messageId"] == "bad-type" and entries[9]["messageId"] == "bad-phone"
    assert report["listed"] == 8 and report["poisoned"] == {"invalid_item": 5}
    assert report["imported"] == report["fanout"] == 3
    # Personal data never reaches the report or the console.
    for text in (report_text, captured.out, captured.err):
        for secret_value in (SECRET_TEXT, "87654321", SECRET_DIGITS, "Hidden"):
            assert secret_value not in text
    assert {item_id for _, item_id in stored_mail(tmp_path / "mail")} == {"good-1", "good-2", "good-3"}


def test_max_item_mb_below_a_records_size_poisons_it_as_too_big(inputs, tmp_path, capsys):
    picture = builders.attachment("photo", os.urandom(200 * 1024))  # declared size alone is over the limit
    items = tmp_path / "items.jsonl"
    items.write_bytes(jsonl(
        builders.record("small"),
        builders.record("with-photo", messageType="IMAGE", attachments=[picture]),
        # Under the limit by its text alone, over it once rendered (plain and HTML bodies).
        builders.record("long-text", textContent="lorem ipsum " * 7_000),
    ))
    report_path = tmp_path / "report.json"

    code = main(import_argv(items, inputs, tmp_path / "mail", report_path, "--max-item-mb", "0.1"))

    assert code == 0, capsys.readouterr().err
    report = json.loads(report_path.read_text(encoding="utf-8"))
    outcome = {entry["messageId"]: (entry["outcome"], entry["reason"]) for entry in report["items"]}
    assert outcome == {
        "small": ("imported", None),
        "with-photo": ("poisoned", "too_big"),
        "long-text": ("poisoned", "too_big"),
    }
    assert report["poisoned"] == {"too_big": 2}
    assert {item_id for _, item_id in stored_mail(tmp_path / "mail")} == {"small"}


def test_the_same_records_import_under_the_default_limit(inputs, tmp_path, capsys):
    picture = builders.attachment("photo", os.urandom(200 * 1024))
    items = tmp_path / "items.jsonl"
    items.write_bytes(jsonl(builders.record("with-photo", messageType="IMAGE", attachments=[picture]),
                            builders.record("long-text", textContent="lorem ipsum " * 7_000)))
    report_path = tmp_path / "report.json"

    assert main(import_argv(items, inputs, tmp_path / "mail", report_path)) == 0
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert [entry["outcome"] for entry in report["items"]] == ["imported", "imported"]
    mail = stored_mail(tmp_path / "mail")
    [photo_mail] = [m for (_, item_id), m in mail.items() if item_id == "with-photo"]
    [part] = list(photo_mail.iter_attachments())
    assert hashlib.sha256(part.get_content()).hexdigest() == picture["sha256"]


@pytest.mark.parametrize("limit", ["150", "0.001"])
def test_max_item_mb_accepts_values_up_to_150(inputs, tmp_path, capsys, limit):
    items = tmp_path / "items.jsonl"
    items.write_bytes(jsonl(builders.record("m")))
    assert main(import_argv(items, inputs, tmp_path / "mail", None, "--max-item-mb", limit)) == 0


# -- unusable arguments: exit 2, a clear message, nothing written ------------------------------


def assert_usage_error(capsys, code: int, *expected: str) -> str:
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("error: ")
    for text in expected:
        assert text in captured.err
    assert "Traceback" not in captured.err
    return captured.err


def test_missing_items_file_is_a_usage_error(inputs, tmp_path, capsys):
    code = main(import_argv(tmp_path / "nope.jsonl", inputs, tmp_path / "mail", tmp_path / "r.json"))
    assert_usage_error(capsys, code, "items file", "nope.jsonl", "does not exist")
    assert not (tmp_path / "mail").exists() and not (tmp_path / "r.json").exists()


def test_missing_mapping_file_is_a_usage_error(inputs, tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    items.write_bytes(jsonl(builders.record("m")))
    (inputs / "map.csv").unlink()
    code = main(import_argv(items, inputs, tmp_path / "mail", tmp_path / "r.json"))
    assert_usage_error(capsys, code, "mapping file", "map.csv", "does not exist")
    assert not (tmp_path / "mail").exists() and not (tmp_path / "r.json").exists()


def test_missing_directory_file_is_a_usage_error(inputs, tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    items.write_bytes(jsonl(builders.record("m")))
    (inputs / "users.txt").unlink()
    code = main(import_argv(items, inputs, tmp_path / "mail"))
    assert_usage_error(capsys, code, "directory file", "users.txt")


@pytest.mark.parametrize("limit", ["0", "151", "-1", "nan"])
def test_max_item_mb_outside_0_to_150_is_a_usage_error(inputs, tmp_path, capsys, limit):
    items = tmp_path / "items.jsonl"
    items.write_bytes(jsonl(builders.record("m")))
    code = main(import_argv(items, inputs, tmp_path / "mail", tmp_path / "r.json", "--max-item-mb", limit))
    assert_usage_error(capsys, code, "--max-item-mb", "150")
    assert not (tmp_path / "mail").exists() and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("content", [
    "Name,Address\n+447700900002,bob@contoso.example\n",
    "+447700900002,bob@contoso.example\n",
    "",
], ids=["unknown-header", "no-header", "empty"])
def test_mapping_file_without_a_recognisable_header_is_a_usage_error(inputs, tmp_path, capsys, content):
    items = tmp_path / "items.jsonl"
    items.write_bytes(jsonl(builders.record("m")))
    (inputs / "map.csv").write_text(content, encoding="utf-8")
    code = main(import_argv(items, inputs, tmp_path / "mail", tmp_path / "r.json"))
    assert_usage_error(capsys, code, "mapping file", "map.csv", "unusable")
    assert not (tmp_path / "mail").exists() and not (tmp_path / "r.json").exists()


def test_mapping_file_with_a_bad_header_after_a_blank_line_is_a_usage_error(inputs, tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    items.write_bytes(jsonl(builders.record("m")))
    (inputs / "map.csv").write_text("\nName,Address\n+447700900002,bob@contoso.example\n", encoding="utf-8")
    code = main(import_argv(items, inputs, tmp_path / "mail", tmp_path / "r.json"))
    assert_usage_error(capsys, code, "mapping file", "unusable")


def test_report_in_a_missing_folder_is_a_usage_error_before_any_mail_is_written(inputs, tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    items.write_bytes(jsonl(builders.record("m")))
    code = main(import_argv(items, inputs, tmp_path / "mail", tmp_path / "no-such-dir" / "r.json"))
    assert_usage_error(capsys, code, "report folder")
    assert not (tmp_path / "mail").exists()


def test_jsonl_file_starting_with_a_utf8_bom_keeps_its_first_record(inputs, tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_bytes(b"\xef\xbb\xbf" + jsonl(builders.record("m-bom")))
    assert main(import_argv(items, inputs, tmp_path / "mail", tmp_path / "r.json")) == 0
    [entry] = json.loads((tmp_path / "r.json").read_text())["items"]
    assert entry["messageId"] == "m-bom" and entry["outcome"] == "imported"


def test_missing_required_option_is_an_argparse_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["import", str(tmp_path / "items.jsonl")])
    assert exit_info.value.code == 2
    assert "--mapping" in capsys.readouterr().err


# -- mapping check ----------------------------------------------------------------------------


GOOD_ROWS = [
    ("+44 7700 900101", "amelia.hughes@contoso.example"),
    ("+44 (0)7700 900123", "Siobhan.NiBhriain@Contoso.example"),
    ("0044 7700 900124", "lukasz.wisniewski@contoso.example"),
    ("07700-900-125", "ayse.yilmaz@contoso.example"),
]


def check(path: Path, *extra: str) -> Run:
    return run_cli(["mapping", "check", str(path), *extra])


def summary(stdout: str) -> tuple[str, int, int, int, int]:
    match = re.search(r"^(PASS|FAIL): (\d+) rows, (\d+) numbers mapped, (\d+) errors, (\d+) warnings$", stdout, re.M)
    assert match, stdout
    verdict, *counts = match.groups()
    return (verdict, *map(int, counts))


def test_mapping_check_passes_the_generated_mapping_file(tmp_path):
    day = generate_day(ANCHOR)
    path = tmp_path / "map.csv"
    path.write_text(day.mapping_csv(), encoding="utf-8")
    rows = len(day.mapping_csv().splitlines()) - 1
    result = check(path, "--region", "GB")
    assert result.code == 0
    assert summary(result.stdout) == ("PASS", rows, rows, 0, 0)
    assert result.stdout.splitlines() == [result.stdout.strip()]  # nothing but the summary


BAD_MAPPING = (
    "PhoneNumber,EmailAddress\n"                       # 1
    "4.47701E+11,a@contoso.example\n"                  # 2 error: scientific notation
    "+447700900002,not-an-address\n"                   # 3 error: invalid address
    "+447700900003,b@contoso.example\n"                # 4 ok, then conflicted by line 5
    "+44 7700 900003,c@contoso.example\n"              # 5 error: duplicate phone, another address
    "+447700900004,d@contoso.example\n"                # 6 ok
    "\n"                                               # 7 blank: ignored, still counted as a line
    "+44 7700 900004,D@Contoso.example\n"              # 8 warning: repeats line 6
    "call me maybe,e@contoso.example\n"                # 9 error: not a number
)


def _assert_bad_mapping_output(result: Run, name: str) -> None:
    assert result.code == 1
    problems = {int(m.group(1)): m.group(0) for m in re.finditer(rf"^{re.escape(name)}: line (\d+): .*$",
                                                                    result.stdout, re.M)}
    assert sorted(problems) == [2, 3, 5, 8, 9]
    assert "error" in problems[2] and "scientific notation" in problems[2]
    assert "error" in problems[3] and "email address is not valid" in problems[3]
    assert "error" in problems[5] and "already mapped to another address on line 4" in problems[5]
    assert "warning" in problems[8] and "repeats line 6" in problems[8]
    assert "error" in problems[9] and "not a phone number" in problems[9]
    assert summary(result.stdout) == ("FAIL", 7, 1, 4, 1)


@pytest.mark.parametrize("encode", [
    lambda text: text.encode("utf-8"),
    lambda text: codecs.BOM_UTF8 + text.replace("\n", "\r\n").encode("utf-8"),
    lambda text: text.replace("\n", "\r\n").encode("utf-16"),
], ids=["utf8-lf", "excel-utf8-bom-crlf", "utf16le-bom-crlf"])
def test_mapping_check_reports_every_problem_with_its_line_number_and_exits_1(tmp_path, encode):
    path = tmp_path / "bad.csv"
    path.write_bytes(encode(BAD_MAPPING))
    _assert_bad_mapping_output(check(path), "bad.csv")


def test_mapping_check_keeps_line_numbers_right_with_quoted_multiline_cells(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text(
        "PhoneNumber,EmailAddress,Note\n"
        '+447700900001,a@contoso.example,"two\nlines"\n'   # 2-3
        "+447700900002,nobody,\n",                          # 4 error
        encoding="utf-8",
    )
    result = check(path)
    assert result.code == 1
    assert re.search(r"^notes\.csv: line 4: error: email address is not valid", result.stdout, re.M)


def excel_utf8(rows: list[tuple[str, str]]) -> bytes:
    """Excel "CSV UTF-8 (Comma delimited)": BOM, CRLF, quotes only where needed."""
    text = "PhoneNumber,EmailAddress\r\n" + "".join(f"{p},{e}\r\n" for p, e in rows)
    return codecs.BOM_UTF8 + text.encode("utf-8")


def excel_semicolon_utf8(rows: list[tuple[str, str]]) -> bytes:
    """Excel in a locale whose list separator is ';' (most of continental Europe)."""
    text = "PhoneNumber;EmailAddress\r\n" + "".join(f"{p};{e}\r\n" for p, e in rows)
    return codecs.BOM_UTF8 + text.encode("utf-8")


def excel_utf16(rows: list[tuple[str, str]]) -> bytes:
    """UTF-16 LE with BOM and CRLF, comma-separated (tab is not a supported delimiter)."""
    text = "PhoneNumber,EmailAddress\r\n" + "".join(f"{p},{e}\r\n" for p, e in rows)
    return codecs.BOM_UTF16_LE + text.encode("utf-16-le")


def excel_ansi(rows: list[tuple[str, str]]) -> bytes:
    """Excel on Windows, plain "CSV (Comma delimited)": the ANSI code page, with an accented name column."""
    text = "Name,PhoneNumber,EmailAddress\r\n" + "".join(f"José Núñez,{p},{e}\r\n" for p, e in rows)
    return text.encode("cp1252")


def libreoffice(rows: list[tuple[str, str]]) -> bytes:
    """LibreOffice Calc with "Quote all text cells" and ';' as separator, LF line ends, no BOM."""
    text = '"Phone Number";"E-mail";"Comment"\n' + "".join(
        f'"{p}";"{e}";"desk; floor 3 ""North"""\n' for p, e in rows
    )
    return text.encode("utf-8")


@pytest.mark.parametrize("encode", [excel_utf8, excel_semicolon_utf8, excel_utf16, excel_ansi, libreoffice],
                         ids=lambda f: f.__name__)
def test_mapping_check_passes_files_as_excel_and_libreoffice_save_them(tmp_path, encode):
    path = tmp_path / "map.csv"
    path.write_bytes(encode(GOOD_ROWS))
    result = check(path, "--region", "GB")
    assert result.code == 0, result.stdout
    assert summary(result.stdout) == ("PASS", len(GOOD_ROWS), len(GOOD_ROWS), 0, 0)


def test_mapping_check_passes_with_warnings_only(tmp_path):
    path = tmp_path / "map.csv"
    path.write_text("PhoneNumber,EmailAddress\n+447700900001,a@contoso.example\n+447700900001,A@contoso.example\n",
                    encoding="utf-8")
    result = check(path)
    assert result.code == 0
    assert "line 3: warning: repeats line 2" in result.stdout
    assert summary(result.stdout) == ("PASS", 2, 1, 0, 1)


def test_mapping_check_of_a_missing_file_is_a_usage_error(tmp_path, capsys):
    code = main(["mapping", "check", str(tmp_path / "absent.csv")])
    assert_usage_error(capsys, code, "mapping file", "absent.csv")


# -- the module entry point -------------------------------------------------------------------


def run_module(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([_python(), "-m", "shared.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def test_python_dash_m_shared_cli_imports_a_file_and_exits_0(inputs, tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_bytes(jsonl(builders.record("m1"), builders.record("m2", sender=builders.BOB, owner=builders.BOB))
                      + b"garbage\n")
    report_path = tmp_path / "report.json"
    result = run_module(*import_argv(items, inputs, tmp_path / "mail", report_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert set(report) == REPORT_KEYS
    assert (report["listed"], report["imported"], report["poisoned"]) == (3, 2, {"invalid_item": 1})
    assert re.search(r"^records listed:\s+3$", result.stdout, re.M)
    assert set(stored_mail(tmp_path / "mail")) == {("alice@contoso.example", "m1"), ("bob@contoso.example", "m2")}


def test_python_dash_m_shared_cli_passes_exit_codes_through(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_MAPPING, encoding="utf-8")
    assert run_module("mapping", "check", str(bad)).returncode == 1
    usage = run_module("mapping", "check", str(tmp_path / "absent.csv"))
    assert usage.returncode == 2 and usage.stderr.startswith("error: mapping file")


def _mailboxes_of(mailboxes: Path) -> set[str]:
    return {path.parent.parent.name for path in mailboxes.rglob("*.eml")}


def test_import_maps_a_number_through_the_directory_as_the_functions_do_when_that_setting_is_on(
    inputs, tmp_path, monkeypatch,
):
    # Carla (the builders' customer) is a user here, found by her mobile number in the directory.
    (inputs / "users.txt").write_text("\n".join([*builders.DIRECTORY, "carla@contoso.example, +12025550143"]) + "\n",
                                      encoding="utf-8")
    items = tmp_path / "items.jsonl"
    items.write_bytes(jsonl(builders.record("to-carla")))
    off = run_cli(import_argv(items, inputs, tmp_path / "off"))
    assert off.code == 0 and _mailboxes_of(tmp_path / "off") == {"alice@contoso.example"}
    monkeypatch.setenv("DIRECTORY_PHONE_MAPPING_ENABLED", "true")
    on = run_cli(import_argv(items, inputs, tmp_path / "on"))
    assert on.code == 0 and _mailboxes_of(tmp_path / "on") == {"alice@contoso.example", "carla@contoso.example"}


def test_import_sends_a_record_nobody_maps_to_the_catch_all_mailbox_when_one_is_set(inputs, tmp_path, monkeypatch):
    (inputs / "users.txt").write_text("\n".join([*builders.DIRECTORY, "unmapped@contoso.example"]) + "\n",
                                      encoding="utf-8")
    items = tmp_path / "items.jsonl"
    items.write_bytes(jsonl(builders.record("nobody", sender=builders.CUSTOMER, owner={"phone": "+15550000"},
                                            recipients=[builders.CUSTOMER])))
    report = tmp_path / "r.json"
    without = run_cli(import_argv(items, inputs, tmp_path / "without", report), report)
    assert without.code == 0 and without.report is not None and without.report["poisoned"] == {"no_mapping": 1}
    monkeypatch.setenv("CATCH_ALL_MAILBOX", "unmapped@contoso.example")
    caught = run_cli(import_argv(items, inputs, tmp_path / "with"))
    assert caught.code == 0 and _mailboxes_of(tmp_path / "with") == {"unmapped@contoso.example"}


def test_a_bad_setting_in_the_environment_is_a_usage_error_naming_it(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("CATCH_ALL_MAILBOX", "not an address")
    items = tmp_path / "items.jsonl"
    items.write_bytes(jsonl(builders.record("m")))
    run = run_cli(import_argv(items, inputs, tmp_path / "mail"))
    assert run.code == 2 and "catch_all_mailbox" in run.stderr
