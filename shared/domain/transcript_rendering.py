"""A day of one chat rendered as one archive item: every record in order, each as the per-record
item would say it (same facts, same content lines, same attachment custody lines).

The sender is the chat itself (a synthetic address): a transcript has many authors, and every one
of them is in To, so a search for a person finds the days they took part in.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

from shared.domain.bidi import strip_isolates, to_html
from shared.domain.records import ArchiveRecord
from shared.domain.rendered import AttachmentPayload, MailAddress, RenderedAttachment, RenderedItem
from shared.domain.rendering import (
    MAX_SUBJECT_LENGTH,
    SOURCE_LABELS,
    SYNTHETIC_DOMAIN,
    attachment_facts,
    chat_key,
    chat_label,
    content_lines,
    folded,
    header_safe,
    html_fact_rows,
    html_list_items,
    html_paragraphs,
    kind_label,
    participant_address,
    reference_facts,
    rendered_attachments,
    single_line,
    threading_headers,
)
from shared.domain.transcripts import TranscriptPart, chat_id
from shared.domain.window import isoformat_z


@dataclass(frozen=True)
class TranscriptEntry:
    record: ArchiveRecord
    media: Mapping[str, AttachmentPayload | bytes | None]
    replied_text: str | None = None
    raw_sha256: str | None = None  # the claim check's bytes as composed: the chain of evidence's link


@dataclass(frozen=True)
class _RenderedEntry:
    number: int
    record: ArchiveRecord
    sender: MailAddress
    heading: str
    facts: list[tuple[str, str]]
    content: list[str]
    attachments: tuple[RenderedAttachment, ...]


def render_transcript(
    part: TranscriptPart,
    entries: Sequence[TranscriptEntry],
    *,
    zone: ZoneInfo,
    default_region: str | None = None,
) -> RenderedItem:
    """Render ``entries`` (the part's records for one mailbox, in transcript order) as one item."""
    if not entries:
        raise ValueError("a transcript needs at least one record")
    records = [e.record for e in entries]
    first = records[0]
    people: dict[str, MailAddress] = {}
    for record in records:
        for participant in record.participants:
            address = participant_address(participant, default_region)
            people.setdefault(address.address, address)
    chat = chat_label(first, tuple(participant_address(p, default_region) for p in first.recipients))
    chat_address = MailAddress(chat, f"chat-{chat_id(chat_key(first, default_region))}@{SYNTHETIC_DOMAIN}")
    rendered = [_entry(i, e, zone, default_region) for i, e in enumerate(entries, start=1)]
    attachments = tuple(a for entry in rendered for a in entry.attachments)
    events = sorted({r.event for r in records} - {"CREATED"})
    subject = _subject(part, chat, len(records), events, zone)
    facts = _facts(part, first, chat, people, records, zone)
    item_key = hashlib.sha256(part.item_id.encode("utf-8")).hexdigest()
    return RenderedItem(
        record_id=part.item_id,
        record_key=item_key,
        subject=subject,
        sender=chat_address,
        recipients=tuple(people.values()),
        sent_at=first.sent_at,
        received_at=records[-1].sent_at,
        text_body=_text_body(facts, rendered),
        html_body=_html_body(subject, facts, rendered),
        attachments=attachments,
        message_id_header=f"<{item_key}@{SYNTHETIC_DOMAIN}>",
        conversation_topic=single_line(strip_isolates(f"WhatsApp: {chat}")),
        extra_headers=(
            *threading_headers(chat_key(first, default_region), first.message_time),
            ("X-Archive-Item-Id", header_safe(part.item_id)),
            ("X-Archive-Message-Type", "TRANSCRIPT"),
            ("X-Archive-Transcript-Day", f"{part.bucket.day.isoformat()} {zone.key}"),
            ("X-Archive-Transcript-Part", str(part.number)),
            ("X-Archive-Record-Count", str(len(records))),
        ),
    )


def _entry(number: int, entry: TranscriptEntry, zone: ZoneInfo, region: str | None) -> _RenderedEntry:
    record = entry.record
    sender = participant_address(record.sender, region)
    kind = kind_label(record)
    flag = f"{record.event} " if record.event != "CREATED" else ""
    local = record.sent_at.astimezone(zone).strftime("%H:%M:%S")
    heading = f"{number}. {local} {flag}{kind} from {sender.display_name}"
    facts = [
        ("Sent (UTC)", isoformat_z(record.sent_at)),
        ("From", f"{sender.display_name} <{sender.address}>"),
        ("Record id", record.message_id),
        ("Source", SOURCE_LABELS[record.source_type]),
        *reference_facts(record),
    ]
    # Files from different records may share a name: the record's number keeps them apart and
    # ties each file to the entry that lists it.
    attachments = tuple(
        replace(a, file_name=f"{number:03d}-{a.file_name}") for a in rendered_attachments(record, entry.media)
    )
    return _RenderedEntry(
        number, record, sender, heading, facts, content_lines(record, entry.replied_text), attachments,
    )


def _subject(part: TranscriptPart, chat: str, count: int, events: list[str], zone: ZoneInfo) -> str:
    noun = "record" if count == 1 else "records"
    parts = [f"WhatsApp transcript {part.bucket.day.isoformat()} ({zone.key}), {count} {noun}"]
    if part.number > 1:
        parts.append(f"part {part.number}")
    if events:
        parts.append("includes " + " and ".join(events))
    return folded(", ".join(parts) + f": {chat}", MAX_SUBJECT_LENGTH)


def _facts(
    part: TranscriptPart, first: ArchiveRecord, chat: str, people: Mapping[str, MailAddress],
    records: Sequence[ArchiveRecord], zone: ZoneInfo,
) -> list[tuple[str, str]]:
    facts = [("Chat", chat)]
    if first.dialog_group_id:
        facts.append(("Chat id", first.dialog_group_id))
    facts += [
        ("Day", f"{part.bucket.day.isoformat()} ({zone.key})"),
        ("Part", str(part.number)),
        ("Records", str(len(records))),
        ("First (UTC)", isoformat_z(records[0].sent_at)),
        ("Last (UTC)", isoformat_z(records[-1].sent_at)),
        ("Participants", "; ".join(f"{p.display_name} <{p.address}>" for p in people.values())),
        ("Source", ", ".join(sorted({SOURCE_LABELS[r.source_type] for r in records}))),
        ("Transcript id", part.item_id),
    ]
    return facts


def _text_body(facts: list[tuple[str, str]], entries: list[_RenderedEntry]) -> str:
    out = [f"{name}: {value}" for name, value in facts]
    for entry in entries:
        out += ["", f"── {entry.heading}"]
        out += [f"{name}: {value}" for name, value in entry.facts]
        out += entry.content or ["(no text)"]
        out += [f"Attachment: {attachment_facts(a)}" for a in entry.attachments]
    return "\n".join(out) + "\n"


def _html_body(subject: str, facts: list[tuple[str, str]], entries: list[_RenderedEntry]) -> str:
    e = html.escape

    def table(rows: list[tuple[str, str]]) -> str:
        return "<table>" + html_fact_rows(rows, [e(text) for row in rows for text in row]) + "</table>"

    blocks: list[str] = []
    for entry in entries:
        content = html_paragraphs([e(line) for line in entry.content or ["(no text)"]])
        files = ""
        if entry.attachments:
            files = "<ul>" + html_list_items([e(attachment_facts(a)) for a in entry.attachments]) + "</ul>"
        heading = to_html(e(entry.heading))
        blocks.append(f"<div><h4 dir=\"auto\">{heading}</h4>{table(entry.facts)}{content}{files}</div><hr>")
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
        f"<title>{e(subject)}</title></head><body>"
        f"{table(facts)}<hr>{''.join(blocks)}</body></html>"
    )
