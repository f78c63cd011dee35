"""Contact cards shared in WhatsApp, as vCard 3.0 files a reviewer can open (RFC 2426)."""

from __future__ import annotations

from shared.domain.records import ContactCard


def escape(value: str) -> str:
    """vCard text escaping: a shared card's text is data and must not break the card's structure."""
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return value.replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n")


def fold(line: str) -> str:
    """Lines of at most 75 octets, continuation lines starting with a space, never splitting a
    UTF-8 character."""
    out: list[str] = []
    current, size = "", 0
    for char in line:
        width = len(char.encode("utf-8"))
        limit = 75 if not out else 74
        if size + width > limit:
            out.append(current)
            current, size = "", 0
        current += char
        size += width
    out.append(current)
    return "\r\n ".join(out)


def vcard(contact: ContactCard) -> bytes:
    name = (contact.display_name or "").strip() or "(no name)"
    lines = ["BEGIN:VCARD", "VERSION:3.0", f"FN:{escape(name)}", f"N:{escape(name)};;;;"]
    if contact.organization:
        lines.append(f"ORG:{escape(contact.organization)}")
    lines += [f"TEL:{escape(phone)}" for phone in contact.phones]
    lines += [f"EMAIL;TYPE=INTERNET:{escape(email)}" for email in contact.emails]
    lines.append("END:VCARD")
    return ("\r\n".join(fold(line) for line in lines) + "\r\n").encode("utf-8")
