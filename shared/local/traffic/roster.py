"""The people of the generated day, with everything the mapping logic may (or may not) find about
them, and the tenant's mailboxes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SOURCE_TYPES = ("WHATSAPP_ARCHIVER", "WHATSAPP_CLOUD_ARCHIVER")
DOMAIN = "contoso.example"


@dataclass(frozen=True)
class Person:
    """Someone on the roster, with everything the mapping logic may (or may not) find about them."""

    key: str
    phone: str  # canonical E.164
    employee: bool
    first_name: str | None = None
    last_name: str | None = None
    display_name: str | None = None
    email: str | None = None  # the "User's Email address" property TeleMessage sends
    captured_phone: str | None = None  # the number as TeleMessage captured it, when not E.164
    csv_phone: str | None = None  # the number as a person typed it into the mapping CSV
    csv_email: str | None = None
    source_type: str | None = None  # employees: which capture product their phone uses

    @property
    def name(self) -> str:
        full = " ".join(part for part in (self.first_name, self.last_name) if part)
        return full or self.display_name or self.phone

    def participant(self) -> dict[str, Any]:
        """The participant object as TeleMessage sends it (a fresh dict every time)."""
        value: dict[str, Any] = {"phone": self.captured_phone or self.phone}
        # Employees without the property simply lack the key; externals carry an explicit null.
        if self.email is not None or not self.employee:
            value["email"] = self.email
        value["firstName"] = self.first_name
        value["lastName"] = self.last_name
        if self.display_name is not None:
            value["displayName"] = self.display_name
        return value


def roster() -> tuple[Person, ...]:
    def mail(local: str) -> str:
        return f"{local}@{DOMAIN}"

    return (
        # Mapped automatically through the e-mail property.
        Person("amelia", "+447700900101", True, "Amelia", "Hughes", email=mail("amelia.hughes"),
               source_type="WHATSAPP_ARCHIVER"),
        Person("jose", "+447700900102", True, "José", "Núñez", email=mail("jose.nunez"),
               csv_phone="+44 7700 900102", csv_email=mail("jose.nunez"),
               source_type="WHATSAPP_CLOUD_ARCHIVER"),
        Person("priya", "+12025550110", True, "Priya", "Raman", email=mail("priya.raman"),
               source_type="WHATSAPP_ARCHIVER"),
        # Mapped only through the CSV: no e-mail property at all.
        Person("siobhan", "+447700900123", True, "Siobhán", "Ní Bhriain",
               csv_phone="+44 (0)7700 900123", csv_email=mail("siobhan.nibhriain"),
               source_type="WHATSAPP_CLOUD_ARCHIVER"),
        Person("lukasz", "+447700900124", True, "Łukasz", "Wiśniewski",
               csv_phone="0044 7700 900124", csv_email="Lukasz.Wisniewski@Contoso.example",
               source_type="WHATSAPP_ARCHIVER"),
        Person("ayse", "+447700900125", True, "Ayşe", "Yılmaz", captured_phone="+44 7700 900125",
               csv_phone="07700-900-125", csv_email=mail("ayse.yilmaz"),
               source_type="WHATSAPP_CLOUD_ARCHIVER"),
        # An e-mail property whose address has no mailbox, and a CSV row that must win over it.
        Person("marcus", "+447700900126", True, "Marcus", "Webb", email=mail("m.webb"),
               csv_phone="+44 7700 900 126", csv_email=mail("marcus.webb"),
               source_type="WHATSAPP_CLOUD_ARCHIVER"),
        Person("danielle", "+12025550143", True, "Danielle", "O'Connor",
               csv_phone="001 (202) 555-0143", csv_email=mail("danielle.oconnor"),
               source_type="WHATSAPP_CLOUD_ARCHIVER"),
        # Nobody can map these two: no property and no CSV row; a CSV row whose mailbox is gone.
        Person("henrik", "+447700900127", True, "Henrik", "Løvås", source_type="WHATSAPP_ARCHIVER"),
        Person("olivia", "+447700900128", True, "Olivia", "Grant",
               csv_phone="+447700900128", csv_email=mail("olivia.grant"),
               source_type="WHATSAPP_CLOUD_ARCHIVER"),
        # Customers and counterparties: phone, no e-mail.
        Person("fatima", "+447700900201", False, "فاطمة", "الصالح", display_name="Fatima Al-Saleh",
               captured_phone="447700900201"),
        Person("yael", "+447700900202", False, "יעל", "כהן", captured_phone="+44 7700 900202"),
        Person("bjorn", "+447700900203", False, "Björn", "Svensson"),
        Person("zoe", "+447700900204", False, "Zoë", "Ångström"),
        Person("chen", "+12025550177", False, display_name="陈静 Chen Jing"),
        Person("kwame", "+12025550191", False, "Kwame", "Mensah", display_name="Kwame (Mensah Logistics)"),
        Person("unnamed", "+12025550188", False),
    )


# Mailboxes that exist in the tenant, spelled as the tenant spells them (lower case; the CSV's
# mixed-case spelling must still match). m.webb and olivia.grant deliberately have none.
MAILBOXES = tuple(
    f"{local}@{DOMAIN}"
    for local in (
        "amelia.hughes", "jose.nunez", "priya.raman", "siobhan.nibhriain", "lukasz.wisniewski",
        "ayse.yilmaz", "marcus.webb", "danielle.oconnor", "compliance", "it.helpdesk",
    )
)

