"""The grammar of every identifier that arrives from outside and ends up in a blob name, a queue
message or a URL: window ids, record keys and references, poison message ids, queue names and
reasons, mailbox addresses, blob names.

Each check takes the value and the name of the parameter it came in (``window``, ``--message-id``),
and raises ``InvalidIdentifier`` naming that parameter and the expected form. The message never
repeats the value: a rejected value may be anything, personal data included, and error bodies and
logs carry ids and counts only.

Checking at the edge is the first line. The second is ``check_blob_name``, which the blob adapters
apply to every name they touch, whatever the caller checked (``shared.adapters.azure_storage``).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import TypeGuard

WINDOW_ID_FORM = "YYYYMMDDTHHMMSSZ-YYYYMMDDTHHMMSSZ.YYYYMMDDTHHMMSSmmmZ, as `status` shows it"
# [0-9], not \d: \d takes any script's digits ("١٢٣"), which no id of ours holds.
_STAMP = r"[0-9]{8}T[0-9]{6}Z"
_WINDOW_ID = re.compile(rf"({_STAMP})-({_STAMP})\.([0-9]{{8}}T[0-9]{{6}})([0-9]{{3}})Z")
# The SHA-256 of the record's id; for a record listed without an id, of its bytes, marked as such
# (shared.service.listing).
# A re-capture (the same id sent again with other bytes) is a record of its own: the key of the id,
# then the first 16 hex digits of the new bytes' SHA-256.
_RECORD_KEY = re.compile(r"(unidentified-)?[0-9a-f]{64}(\.[0-9a-f]{16})?")
# A record's claim check: ``<key>.json``, or ``<key>.<sha256 prefix>.json`` for a second version
# of the same id (shared.adapters.azure_storage.BlobRecordStore).
_RECORD_REF = re.compile(r"(unidentified-)?[0-9a-f]{64}(\.[0-9a-f]{16})?\.json")
_BUCKET = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}/[0-9a-f]{32}")
# A stored webhook body (or a send the firm's application reported): its day of receipt and the
# SHA-256 of its bytes.
_WEBHOOK_BODY = re.compile(r"(?:webhooks|outbound)/[0-9]{4}-[0-9]{2}-[0-9]{2}/[0-9a-f]{64}\.json")
# Azure Storage queue message ids are GUIDs (Azurite's too).
_MESSAGE_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Azure's container naming rule: 3-63 of lower-case letters, digits and single hyphens.
_CONTAINER = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_DOMAIN_LABEL = re.compile(r"(?!-)[\w-]{1,63}(?<!-)")
# Characters no mailbox address of Exchange Online holds, and that change a URL's or a path's
# meaning: separators, query and escape characters, white space.
_NOT_IN_ADDRESSES = frozenset("/\\?%@\"<>()[],;: \t")

MAX_BLOB_NAME = 1024  # Azure's limit, in characters
_ENCODED_SEPARATOR = re.compile(r"%(2[fF]|5[cC]|2[eE]|00)")
_TIMESTAMP = "%Y%m%dT%H%M%SZ"


class InvalidIdentifier(ValueError):
    """A value that is not of its parameter's form. ``str()`` names the parameter, never the value."""

    def __init__(self, parameter: str, expected: str) -> None:
        super().__init__(f"{parameter}: not {expected}")
        self.parameter = parameter
        self.expected = expected


def window_id(value: object, parameter: str = "window") -> str:
    """A window id as ``WindowInfo.window_id`` writes it: capture range, then hand-off time, all
    real UTC moments, the range not empty."""
    if not isinstance(value, str) or (match := _WINDOW_ID.fullmatch(value)) is None:
        raise InvalidIdentifier(parameter, f"a window id ({WINDOW_ID_FORM})")
    try:
        start, end, _handed_off = (
            datetime.strptime(text, _TIMESTAMP).replace(tzinfo=UTC)
            for text in (match[1], match[2], match[3] + "Z")
        )
    except ValueError:
        raise InvalidIdentifier(parameter, "a window id: one of its times is not a real date and time") from None
    if end <= start:
        raise InvalidIdentifier(parameter, "a window id: its capture range ends before it starts")
    return value


def is_window_id(value: object) -> bool:
    try:
        window_id(value)
    except InvalidIdentifier:
        return False
    return True


def is_record_ref(value: object) -> bool:
    return isinstance(value, str) and _RECORD_REF.fullmatch(value) is not None


def is_bucket(value: object) -> bool:
    """A transcript bucket, ``<day>/<chat id>`` (``shared.domain.transcripts.Bucket``)."""
    return isinstance(value, str) and _BUCKET.fullmatch(value) is not None


def record_key(value: object, parameter: str = "record_key") -> str:
    """A record key: the SHA-256 of the record's id, in lower-case hex (``records.record_key``)."""
    return _matching(_RECORD_KEY, value, parameter,
                     "a record key ([unidentified-]<64 lower-case hex digits>[.<16 hex digits>])")


def stored_record_key(reference: str) -> str:
    """The key a stored record is listed and archived under: its id's key for the first bytes stored
    under that id, ``<key>.<digest>`` for a re-capture (``BlobRecordStore`` names them so)."""
    return record_ref(reference).removesuffix(".json")


def recapture_of(key: str) -> str | None:
    """For a re-capture's key, the key of the record it re-captures; None for a first capture."""
    base, dot, _ = record_key(key).partition(".")
    return base if dot else None


def record_ref(value: object, parameter: str = "record_ref") -> str:
    """A claim-check blob name in the records container."""
    return _matching(_RECORD_REF, value, parameter, "a record reference (<record key>[.<16 hex digits>].json)")


def webhook_body_ref(value: object, parameter: str = "body_ref") -> str:
    """Where a webhook body is stored (``shared.service.webhook_intake.body_name``)."""
    return _matching(_WEBHOOK_BODY, value, parameter,
                     "a webhook body reference (webhooks/<day>/<sha256>.json, or outbound/…)")


def message_id(value: object, parameter: str = "message id") -> str:
    """A queue message id, as `poison list` shows it."""
    return _matching(_MESSAGE_ID, value, parameter, "a queue message id (a GUID, as `poison list` shows it)")


def container_name(value: object, parameter: str) -> str:
    return _matching(_CONTAINER, value, parameter, "a blob container name (3-63 lower-case letters, digits, hyphens)")


def _matching(pattern: re.Pattern[str], value: object, parameter: str, expected: str) -> str:
    if not (isinstance(value, str) and pattern.fullmatch(value)):
        raise InvalidIdentifier(parameter, expected)
    return value


def one_of(value: str, allowed: tuple[str, ...] | list[str], parameter: str) -> str:
    """A value from a closed list (a queue name, a poison reason, a format)."""
    if value not in allowed:
        raise InvalidIdentifier(parameter, "one of " + ", ".join(allowed))
    return value


def is_mailbox_address(value: object) -> TypeGuard[str]:
    """Whether ``value`` can be a mailbox's address or user principal name: one local part, an
    ``@``, a domain of host-name labels, none of the characters that would change a Graph URL's
    path or query. Guest UPNs (``name_contoso.com#EXT#@tenant.onmicrosoft.com``) pass: ``#`` and
    ``'`` are legal there, and the Graph SDK encodes them."""
    if not isinstance(value, str) or len(value) > 320 or _has_control(value):
        return False
    local, at, domain = value.rpartition("@")
    if not (at and local and domain) or len(local) > 128 or len(domain) > 253:
        return False
    if any(char in _NOT_IN_ADDRESSES for char in local) or local.startswith(".") or local.endswith(".") \
            or ".." in local:
        return False
    labels = domain.split(".")
    return len(labels) >= 2 and all(_DOMAIN_LABEL.fullmatch(label) for label in labels) \
        and not labels[-1].isdigit()


def mailbox_address(value: object, parameter: str) -> str:
    if not is_mailbox_address(value):
        raise InvalidIdentifier(parameter, "a mailbox address (name@domain)")
    return value


def check_blob_name(name: object, *, prefix: bool = False) -> str:
    """A blob name (or, with ``prefix``, a listing prefix) that can only mean itself: no ``.`` or
    ``..`` segment, no segment ending with a dot, no backslash, no leading ``/``, no empty segment,
    no percent-encoded separator, dot or NUL, no control character. A name breaking these rules is
    refused whatever produced it: a storage SDK or a proxy may resolve ``reports/../mapping/x`` to
    ``mapping/x`` before the request is authorised, and a bearer token (unlike a Shared Key
    signature) does not pin the path."""
    if not isinstance(name, str) or not name:
        raise UnsafeBlobName("empty")
    if len(name) > MAX_BLOB_NAME:
        raise UnsafeBlobName(f"longer than {MAX_BLOB_NAME} characters")
    if _has_control(name):
        raise UnsafeBlobName("holds a control character")
    if "\\" in name:
        raise UnsafeBlobName("holds a backslash")
    if name.startswith("/"):
        raise UnsafeBlobName("starts with /")
    if _ENCODED_SEPARATOR.search(name):
        raise UnsafeBlobName("holds a percent-encoded separator, dot or NUL")
    segments = name.split("/")
    if prefix and segments[-1] == "":
        segments = segments[:-1]  # "windows/" lists below a folder
    for segment in segments:
        if segment in (".", ".."):
            raise UnsafeBlobName("holds a . or .. segment")
        if segment == "":
            raise UnsafeBlobName("holds an empty segment (//)")
        if segment.endswith("."):
            # Azure may trim a trailing dot, so "a./b" and "a/b" could be one blob.
            raise UnsafeBlobName("holds a segment ending with a dot")
    return name


class UnsafeBlobName(ValueError):
    """A blob name the adapters refuse to send (see ``check_blob_name``). Never names the blob: it
    may have been built from anything."""

    def __init__(self, why: str) -> None:
        super().__init__(f"refused an unsafe blob name: {why}")


def _has_control(text: str) -> bool:
    # Cc (C0, DEL, C1) and the line and paragraph separators, which some parsers treat as newlines.
    return any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in text)
