"""``python -m shared.cli import-chat-export``: a custodian's zipped 3,000-line export with media, through
``main`` into .eml mailboxes — every line accounted for, media byte-exact with its SHA-256, nothing
archived twice on a second run or from an overlapping export, and bad usage refused by name."""

from __future__ import annotations

import hashlib
import json
import zipfile
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from shared.cli.main import main
from tests.fixtures.chat_exports.make_large_chat import read_facts, write_large_export

CUSTODIAN = "dana.whitfield@contoso.example"
OWEN = "owen.marsh@contoso.example"
LAYLA_MAIL = "layla.haddad@contoso.example"
NUMBER_MAIL = "desk.218@contoso.example"


@pytest.fixture
def setup(tmp_path: Path):
    (tmp_path / "users.txt").write_text(f"{CUSTODIAN}\n{OWEN}\n{LAYLA_MAIL}\n{NUMBER_MAIL}\n", encoding="utf-8")
    (tmp_path / "people.csv").write_text(
        f"Name,Email\nDana Whitfield,{CUSTODIAN}\nليلى حداد,{LAYLA_MAIL}\n", encoding="utf-8")
    (tmp_path / "map.csv").write_text(f"PhoneNumber,EmailAddress\n+447700900218,{NUMBER_MAIL}\n", encoding="utf-8")
    return tmp_path


def argv(tmp: Path, export: Path, *extra: str) -> list[str]:
    return ["import-chat-export", str(export), "--custodian", CUSTODIAN, "--time-zone", "Europe/London",
            "--participants", str(tmp / "people.csv"), "--mapping", str(tmp / "map.csv"),
            "--directory", str(tmp / "users.txt"), "--mailbox-dir", str(tmp / "mail"), *extra]


def mail_of(folder: Path) -> list:
    return [BytesParser(policy=policy.default).parsebytes(p.read_bytes()) for p in sorted(folder.rglob("*.eml"))]


@pytest.mark.parametrize(("platform", "lines"), [("ios", 3000), ("android", 400)])
def test_a_zipped_3000_line_export_with_media_is_archived_whole_and_once(setup, platform, lines, capsys):
    tmp = setup
    export = write_large_export(tmp / "in", platform=platform, lines=lines)
    facts = read_facts(export)
    report_path = tmp / "report.json"
    assert main(argv(tmp, export, "--report", str(report_path))) == 0
    report = json.loads(report_path.read_text(encoding="utf-8"))

    assert report["lines"] == lines and report["unparsed"] == 0
    assert report["messages"] + report["system"] == facts["message_count"]
    assert report["media_attached"] == len(facts["media_present"])
    assert [m["file"] for m in report["media_missing_files"]] == facts["media_missing"]
    assert report["media_unreferenced_files"] == facts["media_unreferenced"]
    assert report["media_missing"] == 1 and report["media_unreferenced"] == 1
    # Every record: the messages, and the stray file as an item of its own.
    assert len(report["items"]) == facts["message_count"] + 1
    assert {i["outcome"] for i in report["items"]} == {"imported"}
    assert all(CUSTODIAN in i["mailboxes"] for i in report["items"])
    assert report["imported"] == sum(len(i["mailboxes"]) for i in report["items"])
    assert report["skipped_duplicates"] == 0 and report["poisoned"] == {}
    # No line dropped: every physical line is in exactly one record's range.
    covered = sorted(n for i in report["items"] if i["lines"][0] for n in range(i["lines"][0], i["lines"][1] + 1))
    assert covered == list(range(1, lines + 1))

    custodian_items = mail_of(tmp / "mail" / CUSTODIAN)
    assert len(custodian_items) == len(report["items"])
    assert {str(m["X-Archive-Item-Id"]) for m in custodian_items} == {i["messageId"] for i in report["items"]}
    with zipfile.ZipFile(export) as archive:
        members = {Path(n).name: archive.read(n) for n in archive.namelist() if not n.startswith("__MACOSX/")}
    attached = {part.get_filename(): part.get_payload(decode=True) for item in custodian_items
                for part in item.iter_attachments() if part.get_filename() in members}
    assert set(attached) == set(facts["media_present"]) | set(facts["media_unreferenced"])
    for name, data in attached.items():
        assert data == members[name], name  # byte-exact
    some = next(item for item in custodian_items if any(p.get_filename() in members for p in item.iter_attachments()))
    name = next(p.get_filename() for p in some.iter_attachments() if p.get_filename() in members)
    assert hashlib.sha256(members[name]).hexdigest() in some.get_body(("plain",)).get_content()
    # The employees found by name (right to left) and by number got their copies; a person the
    # participants file does not name is external, however real their mailbox.
    for colleague in (LAYLA_MAIL, NUMBER_MAIL):
        assert len(mail_of(tmp / "mail" / colleague)) == len(report["items"])
    assert not (tmp / "mail" / OWEN).exists()

    # A second run archives nothing new.
    capsys.readouterr()
    assert main(argv(tmp, export, "--json")) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["imported"] == 0 and again["skipped_duplicates"] == report["imported"]
    assert again["messages_already_archived"] == len(report["items"])
    assert len(mail_of(tmp / "mail" / CUSTODIAN)) == len(report["items"])


def test_a_later_overlapping_export_archives_only_its_new_messages(setup, capsys):
    tmp = setup
    full = write_large_export(tmp / "full", lines=600, platform="android")
    # The earlier export: the first 400 lines of the same chat (WhatsApp exports keep the most recent
    # messages, so an earlier export is the same chat cut shorter at the end).
    with zipfile.ZipFile(full) as archive:
        text = archive.read("WhatsApp Chat with Harbour Walk.txt").decode("utf-8").split("\n")
    earlier = tmp / "early" / "WhatsApp Chat with Harbour Walk.txt"
    earlier.parent.mkdir()
    cut = next(n for n in range(400, 0, -1) if text[n][:2].isdigit() and text[n][2] == "/")
    earlier.write_text("\n".join(text[:cut]) + "\n", encoding="utf-8")
    assert main(argv(tmp, earlier, "--json")) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(argv(tmp, full, "--json")) == 0
    second = json.loads(capsys.readouterr().out)
    # A line naming a file the text-only import could not attach is archived again with its file (a
    # revision, never skipped); every other overlapping line is already archived.
    present = set(read_facts(full)["media_present"])
    revised = sum(1 for i in first["items"] if any(f" {name}," in " ".join(i["notes"]) for name in present))
    assert revised > 0
    assert second["messages_already_archived"] == len(first["items"]) - revised
    assert second["messages_new"] == len(second["items"]) - second["messages_already_archived"]


def test_dates_that_do_not_decide_the_order_need_date_order(setup, capsys):
    tmp = setup
    chat = tmp / "WhatsApp Chat with Owen Marsh.txt"
    chat.write_text("03/04/2026, 10:00 - Owen Marsh: hello\n03/04/2026, 10:01 - Dana Whitfield: hi\n",
                    encoding="utf-8")
    assert main(argv(tmp, chat)) == 2
    assert "--date-order" in capsys.readouterr().err
    assert main(argv(tmp, chat, "--date-order", "mdy", "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dateOrder"] == "mdy" and report["dateOrderAssumed"] is True
    assert report["notes"] and not report["group"]
    # A 1:1 chat: the custodian's own line is From them, the other's to them.
    mail = mail_of(tmp / "mail" / CUSTODIAN)
    assert {str(m["From"].addresses[0].addr_spec) for m in mail} >= {CUSTODIAN}


@pytest.mark.parametrize(("flag", "value", "named"), [
    ("--time-zone", "Europe/../../etc/passwd", "--time-zone"),
    ("--time-zone", "Mars/Olympus", "--time-zone"),
    ("--custodian", "not an address", "--custodian"),
    ("--date-order", "dym", "--date-order"),
])
def test_bad_arguments_are_refused_naming_the_flag(setup, flag, value, named, capsys):
    tmp = setup
    chat = tmp / "chat.txt"
    chat.write_text("13/04/2026, 10:00 - Owen Marsh: hello\n", encoding="utf-8")
    args = argv(tmp, chat)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2 and named in capsys.readouterr().err
    assert not (tmp / "mail").exists()


def test_a_file_that_is_no_export_exits_1_naming_it(setup, capsys):
    tmp = setup
    bad = tmp / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(argv(tmp, bad)) == 1
    assert "broken.zip" in capsys.readouterr().err
