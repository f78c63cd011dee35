"""``python -m shared.cli import-eml``: a Capture Mobile-style ZIP with a correct manifest imports every EML
once into the right mailboxes (phone in the address mapped through the CSV, an employee's own address,
unmapped people left out); a wrong manifest imports nothing and says why; re-delivery adds nothing; an
unparseable EML is poisoned naming its file; a ZIP with a '../' member is refused. ZIPs, manifests and
EMLs are written here."""

from __future__ import annotations

import io
import json
import zipfile
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from shared.cli.main import main

ALICE = "alice@contoso.example"
BOB = "bob@contoso.example"  # reached only through the phone → email CSV
ZIP_NAME = "202612040000-TeleMessage_1_20261205013000.zip"


def vendor_eml(number: int, *, sender: str = '"Fatima Al-Saleh" <+447700900201@capture.example>',
               to: str = f"Alice Smith <{ALICE}>, +447700900002@capture.example") -> bytes:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f"WhatsApp message {number}"
    message["Date"] = f"Fri, 04 Dec 2026 09:{number:02d}:00 +0000"
    message["Message-ID"] = f"<wa-{number}@capture.example>"
    message.set_content(f"Message number {number}\n")
    if number == 2:
        message.add_attachment(b"\x89PNG\r\n" + bytes(2000), maintype="image", subtype="png", filename="photo.png")
    return message.as_bytes()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    return path


def manifest(count: int, *names: str) -> bytes:
    return (f"Count: {count}\r\n" + "".join(f"{n}\r\n" for n in names)).encode()


@pytest.fixture
def tenant(tmp_path: Path) -> Path:
    (tmp_path / "users.txt").write_text(f"{ALICE}\n{BOB}\n", encoding="utf-8")
    (tmp_path / "map.csv").write_text(f"PhoneNumber,EmailAddress\n+44 7700 900002,{BOB}\n", encoding="utf-8")
    return tmp_path


def run(tenant: Path, *paths: Path, extra: tuple[str, ...] = ()) -> tuple[int, list[dict]]:
    report = tenant / "report.json"
    code = main(["import-eml", *map(str, paths), "--directory", str(tenant / "users.txt"),
                 "--mailbox-dir", str(tenant / "mail"), "--mapping", str(tenant / "map.csv"), "--region", "GB",
                 "--report", str(report), *extra])
    return code, json.loads(report.read_text(encoding="utf-8"))


def mail(tenant: Path, mailbox: str) -> list:
    folder = tenant / "mail" / mailbox
    return [BytesParser(policy=policy.default).parsebytes(p.read_bytes()) for p in sorted(folder.rglob("*.eml"))]


def good_zip(tenant: Path) -> Path:
    emls = {f"msg-{n}.eml": vendor_eml(n) for n in (1, 2, 3)}
    return write_zip(tenant / ZIP_NAME, {**emls, "batch.mf": manifest(3, *emls)})


def test_a_zip_whose_manifest_holds_imports_every_eml_once_into_the_right_mailboxes(tenant):
    code, [report] = run(tenant, good_zip(tenant))
    assert code == 0
    assert report["manifest"] == "holds" and report["drop"] == {"day": "2026-12-04", "number": 1,
                                                                "zipped": "20261205013000"}
    assert (report["records_from_source"], report["imported"], report["failed"]) == (3, 3, 0)
    assert report["records_after_fanout"] == 6  # Alice by her address, Bob by his number; Fatima maps nowhere
    alice, bob = mail(tenant, ALICE), mail(tenant, BOB)
    assert [m["Subject"] for m in alice] == [m["Subject"] for m in bob] == [
        "WhatsApp message 1", "WhatsApp message 2", "WhatsApp message 3"]
    assert alice[0]["Message-ID"] == "<wa-1@capture.example>"
    [photo] = list(alice[1].iter_attachments())
    assert photo.get_payload(decode=True) == b"\x89PNG\r\n" + bytes(2000)
    assert not (tenant / "mail" / "+447700900201@capture.example").exists()


def test_the_same_zip_delivered_again_adds_nothing(tenant):
    zipped = good_zip(tenant)
    run(tenant, zipped)
    code, [again] = run(tenant, zipped)
    assert code == 0 and again["imported"] == 0 and again["skipped_duplicates"] == 3
    assert len(mail(tenant, ALICE)) == 3


def test_a_wrong_manifest_imports_nothing_and_says_why(tenant, capsys):
    emls = {f"msg-{n}.eml": vendor_eml(n) for n in (1, 2)}
    zipped = write_zip(tenant / ZIP_NAME, {**emls, "batch.mf": manifest(3, *emls, "msg-3.eml")})
    code, [report] = run(tenant, zipped)
    assert code == 1 and report["manifest"] == "mismatch" and report["records_from_source"] == 0
    assert "count_mismatch: Count: 3, the ZIP holds 2" in report["verdict"]
    assert "listed_missing: msg-3.eml" in report["verdict"]
    assert not (tenant / "mail").exists()
    assert "manifest mismatch" in capsys.readouterr().out

    code, [accepted] = run(tenant, zipped, extra=("--accept-manifest-mismatch",))
    assert code == 0 and accepted["manifest"] == "mismatch accepted" and accepted["imported"] == 2


def test_a_member_named_outside_the_archive_refuses_the_whole_zip(tenant):
    zipped = write_zip(tenant / "drop.zip", {"ok.eml": vendor_eml(1), "../escape.eml": vendor_eml(2)})
    code, [report] = run(tenant, zipped, extra=("--accept-manifest-mismatch",))
    assert code == 1 and report["manifest"] == "refused" and "unsafe_member_name" in report["verdict"]
    assert not (tenant / "mail").exists() and not (tenant.parent / "escape.eml").exists()


def test_an_eml_that_cannot_be_read_is_poisoned_naming_its_file(tenant):
    broken = b"Subject: no sender and no date\r\n\r\nbody\r\n"
    zipped = write_zip(tenant / "drop.zip", {"good.eml": vendor_eml(1), "broken.eml": broken})
    code, [report] = run(tenant, zipped)
    assert code == 0 and report["manifest"] == "absent"
    assert report["imported"] == 1 and report["failed_by_reason"] == {"invalid_item": 1}
    [poisoned] = [item for item in report["items"] if item["outcome"] == "poisoned"]
    assert poisoned["detail"].startswith("drop.zip/broken.eml: no From address")
    assert poisoned["raw_sha256"]


def test_loose_emls_and_unmapped_people(tenant):
    loose = tenant / "loose"
    loose.mkdir()
    (loose / "a.eml").write_bytes(vendor_eml(7))
    (loose / "b.eml").write_bytes(vendor_eml(8, to="+12025550199@capture.example"))
    code, [first, second] = run(tenant, loose)
    assert code == 0
    assert first["imported"] == 1 and second["failed_by_reason"] == {"no_mapping": 1}


def test_a_mailbox_that_keeps_failing_is_reported_and_the_rest_of_the_drop_still_imports(tenant):
    from shared.domain.errors import TransientError
    from shared.service.eml_import import EmlImporter, import_zip
    from shared.service.mapping import MailboxMapper
    from tests.fakes import MemoryMailboxes, SetDirectory, StaticMapping

    class FlakyMailboxes(MemoryMailboxes):
        def write(self, mailbox, item, *, check_existing=True):
            if item.record_id == "<wa-2@capture.example>":
                raise TransientError("mailbox throttled", retry_after=1.0)
            return super().write(mailbox, item, check_existing=check_existing)

    writer = FlakyMailboxes()
    mapper = MailboxMapper(SetDirectory(ALICE, BOB), StaticMapping(f"PhoneNumber,EmailAddress\n+447700900002,{BOB}\n"))
    slept: list[float] = []
    report = import_zip(good_zip(tenant), EmlImporter(mapper, writer, max_item_bytes=10 * 1024 * 1024,
                                                       default_region="GB"), sleep=slept.append).to_json()
    assert report["imported"] == 2 and report["failed_by_reason"] == {"retries_exhausted": 1}
    assert slept and all(wait == 1.0 for wait in slept)
    assert len(writer.items[ALICE]) == 2
