"""The SHA-256 of what was written into a mailbox, in a form a read-back can recompute.

The bytes written are not what a mailbox gives back: Exchange stores a Graph item as properties
and makes its MIME anew when asked (other boundaries, other header folding, its own HTML head), and
even the .eml writer's MIME carries random boundaries. So the digest is taken over what a reviewer
reads and Exchange keeps: the record id the item is found by, the subject, the original send time
(UTC, to the second: Exchange keeps no finer), the visible text of the HTML body (the text outside
tags, outside ``<head>``, ``<style>`` and ``<script>``, entities decoded, whitespace runs made one
space, NFC) — or, when that shows nothing (a vendor's plain-text EML), the text body, whitespace runs
made one space, NFC — and each attachment's file name and SHA-256, in name order. An item whose body text,
subject, time or any attachment byte changed has another digest; re-encoding the same content does
not change it. The same function reads a rendered item at write time and an item's MIME at
``verify`` time, so both sides are one code path.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from html import unescape
from html.parser import HTMLParser

from shared.domain.rendered import RenderedItem

DIGEST_VERSION = 1
_HIDDEN = frozenset({"head", "style", "script", "title"})


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        self.parts.append(" ")  # a tag separates words ("a<br>b" reads as two)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN and self._hidden:
            self._hidden -= 1
        self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible_text(html: str) -> str:
    fast = _plain_markup_text(html)
    if fast is not None:
        return normal_text(fast)
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    return normal_text("".join(parser.parts))


# Every "<...>" with no "<" or ">" inside: a plain start or end tag (its name beginning with a letter, as
# html.parser reads a name, which it reports lower-cased), a doctype declaration, or something else.
_MARKUP = re.compile(
    r"<(?P<end>/?)(?P<name>[A-Za-z][^\t\n\r\f />\x00<>]*)[^<>]*>"
    r"|(?P<doctype><!doctype[^<>-][^<>]*>)"
    r"|<[^<>]*>",
    re.IGNORECASE,
)


def _plain_markup_text(html: str) -> str | None:
    """``_VisibleText``'s reading of ``html`` in one pass of a regular expression, for markup made only
    of plain tags and text (what the connector renders, and what Exchange gives back for it); None for
    anything else — a comment, a "<" in text, a quote left open in a tag (which could put a ">" inside
    an attribute), a script or style not closed plainly — which html.parser then reads. The digest of
    an item is the same whichever path reads it (tests/test_item_digest.py holds the two to each other),
    at a fraction of the parser's cost: on every write it was most of a record's CPU."""
    if "\x00" in html:
        return None
    parts: list[str] = []
    hidden = 0
    raw: str | None = None  # inside <script> or <style>: text up to its end tag, never markup
    position = 0
    for found in _MARKUP.finditer(html):
        text, token = html[position:found.start()], found.group(0)
        position = found.end()
        if "<" in text:
            return None
        if raw is not None:
            if token.lower() == f"</{raw}>":
                raw = None
                hidden -= 1
                parts.append(" ")
            elif f"</{raw}" in token.lower():
                return None  # an end tag of another shape: where html.parser ends the text varies
            continue
        if text and not hidden:
            parts.append(unescape(text) if "&" in text else text)
        if '"' in token and token.count('"') % 2 or "'" in token and token.count("'") % 2:
            return None
        name = found.group("name")
        if name is None:
            if found.group("doctype") is not None:
                continue  # a declaration: html.parser reports it apart, and it shows nothing
            return None
        tag = name.lower()
        if found.group("end"):
            if tag in _HIDDEN and hidden:
                hidden -= 1
        elif tag in _HIDDEN:
            if token.endswith("/>"):
                if tag in ("script", "style"):
                    return None  # a self-closed script or style: html.parser's reading of what follows varies
            else:
                hidden += 1
                raw = tag if tag in ("script", "style") else None
        parts.append(" ")
    rest = html[position:]
    if raw is not None or "<" in rest:
        return None  # a script or style never closed (html.parser holds its text back), or a "<" in text
    if rest and not hidden:
        parts.append(unescape(rest) if "&" in rest else rest)
    return "".join(parts)


def normal_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


@dataclass(frozen=True)
class ItemContent:
    """What the digest is taken over (see the module's docstring)."""

    record_id: str
    subject: str
    sent_at: datetime
    body_text: str
    attachments: tuple[tuple[str, str], ...]  # (file name, SHA-256), in name order

    def digest(self) -> str:
        canonical = {
            "v": DIGEST_VERSION,
            "record_id": self.record_id,
            "subject": normal_text(self.subject),
            "sent": self.sent_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "body": self.body_text,
            "attachments": [list(pair) for pair in sorted(self.attachments)],
        }
        data = json.dumps(canonical, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(data.encode("utf-8")).hexdigest()


def rendered_content(item: RenderedItem) -> ItemContent:
    """At write time: a missing attachment (media never captured) is not in the item, so not here."""
    attachments = [(normal_text(a.file_name), a.payload.digest()) for a in item.attachments if a.payload is not None]
    return ItemContent(item.record_id, item.subject, item.sent_at, _body(item.html_body, item.text_body),
                       tuple(attachments))


def _body(html: str, text: str) -> str:
    # An item whose HTML body shows nothing (a vendor's plain-text EML, carried as it is; a writer may
    # still add an empty HTML part) is read by its text: otherwise any change to it would leave the
    # digest as it was.
    return visible_text(html) or normal_text(text)


def item_digest(item: RenderedItem) -> str:
    return rendered_content(item).digest()


class UnreadableItem(ValueError):
    """The item read back is not MIME this module can take apart (named by the caller)."""


def mime_content(raw: bytes, record_id: str) -> ItemContent:
    """At verify time, from an item's MIME (an .eml file; Graph's ``/messages/{id}/$value``).
    ``record_id``: what the item was found by (the .eml's file name, Graph's id property)."""
    try:
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        subject = str(message.get("Subject", ""))
        date = message.get("Date")  # a DateHeader under policy.default: its moment, or None when unreadable
        sent_at = getattr(date, "datetime", None)
        if sent_at is None or sent_at.tzinfo is None:
            raise UnreadableItem("no Date with a zone")
        html_part = message.get_body(preferencelist=("html",))
        body = visible_text(html_part.get_content()) if html_part is not None else ""
        if not body:  # the text part is read only when the HTML shows nothing (as at write time)
            text_part = message.get_body(preferencelist=("plain",))
            body = normal_text(text_part.get_content()) if text_part is not None else ""
        attachments = list(_attachments(message.iter_attachments()))
    except UnreadableItem:
        raise
    except (ValueError, TypeError, LookupError, AssertionError) as error:
        raise UnreadableItem(f"{type(error).__name__}") from None
    return ItemContent(record_id, subject, sent_at, body, tuple(attachments))


def _attachments(parts: Iterable[EmailMessage]) -> Iterable[tuple[str, str]]:
    for part in parts:
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):  # a message/rfc822 part: not something we attach
            continue
        yield normal_text(part.get_filename() or ""), hashlib.sha256(payload).hexdigest()
