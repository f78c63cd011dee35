"""A vendor's EML as the archive item: its own subject, bodies, attachments, time and parties, not a
re-telling. The vendor wrote the message; the connector only carries it and says where it came from.

What is carried: Subject (one line), the text and HTML bodies as the EML has them, every attachment
byte for byte (file names made safe), Date as the original time, From / To / Cc as mail addresses
(with the phone numbers the vendor wrote, isolated as every source's are), Message-ID, In-Reply-To
and References. What is added, in a fixed set of headers (never the EML's own header names, which
would each spend one of the mailbox's named properties): the record id, the source, the EML's file
name and its SHA-256. The EML's own bytes are the record's claim check.
"""

from __future__ import annotations

import hashlib
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html import escape

from shared.domain.eml_items import EmlFacts, unescaped
from shared.domain.item_digest import visible_text
from shared.domain.records import record_key
from shared.domain.rendered import BytesPayload, RenderedAttachment, RenderedItem
from shared.domain.rendering import SYNTHETIC_DOMAIN, header_safe, participant_address, sanitize_file_name, single_line

EML_SOURCE = "VENDOR_EML"


def render_eml(data: bytes, facts: EmlFacts, *, file_name: str, default_region: str | None = None) -> RenderedItem:
    """The item for one EML whose facts were read by ``read_eml``."""
    message = BytesParser(policy=policy.default).parsebytes(data)
    key = record_key(facts.record_id)
    subject = single_line(facts.subject)
    threading = [("In-Reply-To", f"<{facts.in_reply_to}>")] if facts.in_reply_to else []
    if facts.references:
        threading.append(("References", " ".join(f"<{r}>" for r in facts.references)))
    text = _body(message, "plain")
    # Graph creates an item from one body, the HTML. When the EML's HTML shows no text (none at all, or
    # only a picture) while its text part has some, that text goes into the HTML too, keeping its lines
    # and its direction: Graph's item shows it, and the digest reads it on both sides.
    html = _body(message, "html")
    if text.strip() and not visible_text(html):
        block = f'<pre dir="auto" style="white-space: pre-wrap; font-family: inherit">{escape(text)}</pre>'
        closing = html.lower().rfind("</body>")
        html = html[:closing] + block + html[closing:] if closing >= 0 else html + block
    return RenderedItem(
        record_id=facts.record_id,
        record_key=key,
        subject=subject,
        sender=participant_address(facts.sender, default_region),
        recipients=tuple(participant_address(p, default_region) for p in facts.recipients),
        sent_at=facts.sent_at,
        received_at=facts.sent_at,
        text_body=text,
        html_body=html,
        attachments=tuple(_attachments(message)),
        message_id_header=f"<{facts.message_id}>" if facts.message_id else f"<{key}@{SYNTHETIC_DOMAIN}>",
        conversation_topic=subject,
        extra_headers=(
            *threading,
            ("X-Archive-Item-Id", header_safe(facts.record_id)),
            ("X-Archive-Source", EML_SOURCE),
            ("X-Archive-Eml-File", header_safe(single_line(file_name))),
            ("X-Archive-Eml-Sha256", facts.sha256),
        ),
    )


def _body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    if part is None:
        return ""
    try:
        # Lines end as the item's own text does; the claim check keeps the EML's endings.
        return str(part.get_content()).replace("\r\n", "\n")
    except (LookupError, ValueError):  # an unknown charset or a broken transfer encoding: bytes as they are
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def _attachments(message: EmailMessage) -> list[RenderedAttachment]:
    attachments: list[RenderedAttachment] = []
    for index, part in enumerate(message.iter_attachments()):
        raw = part.get_payload(decode=True)
        data = raw if isinstance(raw, bytes) else b""
        content_type = part.get_content_type()
        sha256 = hashlib.sha256(data).hexdigest()
        attachments.append(RenderedAttachment(
            file_name=sanitize_file_name(unescaped(part.get_filename() or ""), content_type, index),
            content_type=content_type,
            declared_size=len(data),
            declared_sha256=sha256,
            payload=BytesPayload(data, sha256),
        ))
    return attachments
