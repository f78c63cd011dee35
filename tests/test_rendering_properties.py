"""Property tests: whatever text, names and file names a phone sends, rendering and the .eml writer
never let them become headers or markup, never crash, and keep attachments byte-exact."""

from __future__ import annotations

import hashlib
import re
import tempfile
from email import message_from_bytes
from email.policy import default
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.local_files import EmlMailbox
from shared.domain.records import ArchiveRecord
from shared.domain.rendering import render
from tests.builders import ALICE, attachment, record

# Any Unicode, including controls, line breaks, bidi overrides and surrogate-free astral characters.
free_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)
EXPECTED_HEADERS = {
    "subject", "from", "to", "date", "message-id", "thread-topic", "mime-version", "content-type",
    "x-archive-item-id", "x-archive-source", "x-archive-event", "x-archive-message-type",
    "x-archive-captured-time", "references", "in-reply-to", "thread-index",
}


def build(text, name, group, file_name, data, message_id="p-1"):
    person = {**ALICE, "firstName": name, "lastName": None}
    rec = record(message_id, textContent=text, sender=person, owner=person, dialogGroupName=group,
                 groupMessage=bool(group), messageType="DOCUMENT",
                 attachments=[attachment("a1", data, fileName=file_name)])
    return render(ArchiveRecord.model_validate(rec), {"a1": data})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=free_text, name=free_text, group=free_text, file_name=free_text, data=st.binary(max_size=2048))
def test_no_input_becomes_a_header_or_markup_and_attachments_stay_exact(text, name, group, file_name, data):
    item = build(text, name, group, file_name, data)
    raw = item.to_mime_bytes()
    message = message_from_bytes(raw, policy=default)

    # No header injection: only the headers we write, each a single logical line.
    assert {key.lower() for key in message.keys()} <= EXPECTED_HEADERS
    for key, value in message.items():
        assert "\n" not in str(value) and "\r" not in str(value), key

    # No markup injection: the HTML holds no tag that came from the input.
    html = message.get_body(("html",)).get_content()
    tags = set(re.findall(r"<\s*([a-zA-Z][a-zA-Z0-9]*)", html))
    assert tags <= {"html", "head", "meta", "title", "body", "table", "tr", "th", "td", "hr", "p", "h4", "ul", "li"}

    # Byte-exact attachment, with a safe name.
    [part] = list(message.iter_attachments())
    assert part.get_content() == data
    assert hashlib.sha256(part.get_content()).hexdigest() == hashlib.sha256(data).hexdigest()
    filename = part.get_filename()
    assert filename and "/" not in filename and "\\" not in filename and not filename.startswith(".")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=free_text, message_id=st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=256),
       data=st.binary(max_size=1024))
def test_the_eml_writer_stores_any_record_once_and_it_parses_back(text, message_id, data):
    item = build(text, "Name", None, "f.bin", data, message_id=message_id)
    with tempfile.TemporaryDirectory() as root:
        writer = EmlMailbox(root)
        assert writer.write("alice@contoso.example", item).value == "imported"
        assert writer.write("alice@contoso.example", item).value == "skipped_duplicate"
        [path] = list(Path(root).rglob("*.eml"))
        message = message_from_bytes(path.read_bytes(), policy=default)
        assert list(message.iter_attachments())[0].get_content() == data
        assert "\n" not in message["X-Archive-Item-Id"]
