"""``GET /messages/{id}/$value``: a stored item as MIME, made anew from its properties as Exchange
makes it (it keeps no MIME for an item created through Graph)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from html.parser import HTMLParser
from typing import Any

from shared.local.graph_stand_in.errors import GraphHTTPError


class _PlainText(HTMLParser):
    """The text of an HTML body, for the text/plain alternative Exchange puts beside it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in ("head", "style", "script", "title")
        self.parts.append("\n" if tag in ("br", "p", "div", "tr") else "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "style", "script", "title") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def item_mime(message: dict[str, Any]) -> bytes:
    """A stored item as ``GET /messages/{id}/$value`` gives it.

    Subject; Date from ``SystemTime 0x0039`` (the client submit time Graph reads as
    ``sentDateTime``; the creation time when absent), to the second; From, Sender, To; Message-ID
    and the x- headers stored; a multipart/alternative of the body's text and (for an HTML body)
    its HTML; then each file attachment with its name, content type and bytes, whichever way it
    arrived (in the create, posted alone, uploaded in a session). An attachment whose bytes were
    not kept (``keep_attachment_bytes``) cannot be given back: the answer is a 500 rather than an
    item quietly missing it.
    """
    mime = EmailMessage(policy=policy.default)
    mime["Subject"] = " ".join(str(message.get("subject") or "").splitlines())
    sent = message["extendedProperties"].get("systemtime 0x0039") or message["createdDateTime"]
    sent_at = datetime.fromisoformat(sent.replace("Z", "+00:00")).astimezone(UTC).replace(microsecond=0)
    mime["Date"] = format_datetime(sent_at)
    for header, field_name in (("From", "from"), ("Sender", "sender")):
        if address := _mime_address(message.get(field_name)):
            mime[header] = address
    recipients = [a for a in (_mime_address(r) for r in message.get("toRecipients") or []) if a]
    if recipients:
        mime["To"] = ", ".join(recipients)
    if message.get("internetMessageId"):
        mime["Message-ID"] = str(message["internetMessageId"])
    for header in message.get("internetMessageHeaders") or []:
        mime[str(header["name"])] = str(header["value"])
    stored_body = message.get("body") or {}
    content = str(stored_body.get("content") or "")
    if str(stored_body.get("contentType") or "").lower() == "html":
        text = _PlainText()
        text.feed(content)
        text.close()
        mime.set_content("".join(text.parts).strip() + "\n", charset="utf-8")
        mime.add_alternative(content, subtype="html", charset="utf-8")
    else:
        mime.set_content(content, charset="utf-8")
    for attachment in message["attachments"]:
        if attachment.get("content") is None:
            raise GraphHTTPError(500, "LocalGraphBytesNotKept", "The attachment's bytes were not kept.")
        maintype, _, subtype = str(attachment.get("contentType") or "").partition("/")
        if not maintype or not subtype or maintype.lower() in ("multipart", "message"):
            maintype, subtype = "application", "octet-stream"
        mime.add_attachment(
            attachment["content"], maintype=maintype, subtype=subtype, filename=str(attachment.get("name") or ""),
        )
    return mime.as_bytes()


def _mime_address(recipient: Any) -> str | None:
    address = (recipient or {}).get("emailAddress") or {}
    if not address.get("address"):
        return None
    return formataddr((str(address.get("name") or ""), str(address["address"])))
