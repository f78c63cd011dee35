"""Phone numbers to E.164, the form the mapping table is keyed on.

Every *possible* number is accepted, not only *valid* ones: phonenumbers' table of allocated
ranges lags reality, and rejecting a real employee's new number would silently lose their records.
"""

from __future__ import annotations

import re

import phonenumbers

_SCIENTIFIC = re.compile(r"^\s*[+-]?\d+(?:[.,]\d+)?[eE]\+?\d+\s*$")


class PhoneNumberError(ValueError):
    """A number that cannot be turned into E.164; the message says why and what to do."""


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    text = raw.strip()
    if not text:
        raise PhoneNumberError("the phone number is empty")
    if _SCIENTIFIC.match(text):
        raise PhoneNumberError(
            f"'{mask_phone(text)}' is in scientific notation, as Excel shows long numbers: format the column "
            "as Text (or prefix the number with +) and save the file again"
        )
    if text.lower().startswith("tel:"):
        text = text[4:]
    if text.startswith("00") and not default_region:
        # "00" is the international prefix in most of the world; without a region to say
        # otherwise, read it as "+".
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, (default_region or "").upper() or None)
    except phonenumbers.NumberParseException as error:
        if error.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            hint = (
                "write it in international form (+country code) or set the default region"
                if not default_region
                else f"the country code is unknown (DEFAULT_PHONE_REGION is {default_region})"
            )
            raise PhoneNumberError(f"'{mask_phone(text)}' has no recognisable country code: {hint}") from None
        raise PhoneNumberError(f"'{mask_phone(text)}' is not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise PhoneNumberError(
            f"'{mask_phone(text)}' cannot be a phone number (wrong length for its country)"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def try_normalize_phone(raw: str | None, default_region: str | None = None) -> str | None:
    if not raw:
        return None
    try:
        return normalize_phone(raw, default_region)
    except PhoneNumberError:
        return None


def normalize_participant_phone(raw: str | None, default_region: str | None = None) -> str | None:
    """A phone as TeleMessage captured it, or None when it cannot be a number.

    WhatsApp identifies people by country code and number without a "+" (447700900123), so a
    string of digits not starting with 0 is read as international first; only if that fails does
    the default region apply. (Mapping files are read strictly instead: there a bare national
    number is more likely, and guessing wrong would send records to the wrong person.)
    """
    if not raw:
        return None
    digits = re.sub(r"[\s().-]", "", raw)
    if digits.isdigit() and not digits.startswith("0"):
        international = try_normalize_phone("+" + digits)
        if international:
            return international
    return try_normalize_phone(raw, default_region)


def mask_phone(text: str) -> str:
    """The number with all but its first two and last three digits starred: enough for an
    administrator to recognise it, not enough to dial it (reports and error messages)."""
    digits = [c for c in text if c.isdigit()]
    if len(digits) <= 4:
        return "*" * len(text)
    keep_tail = 3
    seen = 0
    total = len(digits)
    out: list[str] = []
    for c in text:
        if c.isdigit():
            seen += 1
            out.append(c if seen <= 2 or seen > total - keep_tail else "*")
        else:
            out.append(c)
    return "".join(out)


def masked_number(raw: str | None, default_region: str | None = None) -> str | None:
    """A participant's number as reports show it: E.164 when it reads as one, then masked."""
    if not raw or not raw.strip():
        return None
    return mask_phone(try_normalize_phone(raw, default_region) or raw.strip())
