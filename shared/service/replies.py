"""The text of the message a record answers, read from that record's claim check (any window): a
reply in the archive shows what it replied to, as the phone did."""

from __future__ import annotations

import json

from shared.domain.json_values import is_json_object
from shared.domain.records import ArchiveRecord, record_key
from shared.ports import RecordMissing, RecordStore


def replied_text(records: RecordStore, record: ArchiveRecord) -> str | None:
    """The answered record's text, from its claim check when it was listed (any window)."""
    if not record.reply_to_message_id:
        return None
    try:
        parent: object = json.loads(records.get(f"{record_key(record.reply_to_message_id)}.json"))
    except (RecordMissing, ValueError):
        return None
    text = parent.get("textContent") if is_json_object(parent) else None
    return text if isinstance(text, str) and text.strip() else None
