"""Meta's webhook authenticity: the verification handshake (GET) and the body signature (POST).

The signature is ``X-Hub-Signature-256: sha256=<64 lower-case hex>``, the HMAC-SHA256 of the
request body keyed with the app secret. It is computed over the raw bytes as received; parsing and
re-serialising would change them. Meta signs the payload in its escaped-Unicode form (é as
``\\u00e9``): the body on the wire is normally already in that form, and when a body holds raw
non-ASCII bytes the escaped form is tried as well. Several secrets may be configured (comma-separated)
so that an app secret can be rotated without dropping deliveries.

Every comparison is constant-time, and every secret is tried whatever the first one gave, so the
time taken says nothing about which secret or which prefix matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_BODY_BYTES = 3 * 1024 * 1024  # Meta: payloads of up to 3 MB
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
# Meta's challenge is a random token (its samples show digits); anything else is not Meta's.
_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{1,256}")


def secrets_from_setting(value: str) -> tuple[str, ...]:
    """The app secrets of a comma-separated setting, blanks dropped."""
    return tuple(part.strip() for part in unresolved_as_unset(value).split(",") if part.strip())


def unresolved_as_unset(value: str) -> str:
    """A Key Vault reference the platform could not resolve reaches the app as its own text
    (``@Microsoft.KeyVault(SecretUri=...)``): anyone who can guess the vault's name could then
    sign with it. Such a value is no secret at all."""
    return "" if value.strip().startswith("@Microsoft.KeyVault(") else value


def signature_valid(body: bytes, header: str | None, secrets: tuple[str, ...]) -> bool:
    """Whether ``header`` is the signature of ``body`` under any of ``secrets``."""
    match = _SIGNATURE.fullmatch(header.strip()) if header else None
    if match is None or not secrets:
        return False
    claimed = match[1].lower().encode("ascii")
    candidates = [body]
    escaped = _escaped_unicode(body)
    if escaped is not None and escaped != body:
        candidates.append(escaped)
    valid = False
    for secret in secrets:
        for candidate in candidates:
            digest = hmac.new(secret.encode("utf-8"), candidate, hashlib.sha256).hexdigest().encode("ascii")
            valid |= hmac.compare_digest(digest, claimed)
    return valid


def _escaped_unicode(body: bytes) -> bytes | None:
    """The body with every non-ASCII character written as ``\\uXXXX`` (lower-case hex, surrogate
    pairs above U+FFFF), as Meta signs it; None when the body is not UTF-8."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.isascii():
        return None
    out: list[str] = []
    for char in text:
        code = ord(char)
        if code < 0x80:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
    return "".join(out).encode("ascii")


@dataclass(frozen=True)
class Handshake:
    status: int
    challenge: str | None = None  # echoed as text/plain when status is 200


def verification_handshake(params: dict[str, str], verify_token: str) -> Handshake:
    """Meta's GET: ``hub.mode=subscribe``, ``hub.verify_token`` equal to ours, ``hub.challenge``
    echoed back. Anything else is 403, with nothing said about which part failed."""
    mode = params.get("hub.mode", "")
    token = params.get("hub.verify_token", "")
    challenge = params.get("hub.challenge", "")
    token_ok = bool(verify_token) and hmac.compare_digest(token.encode("utf-8"), verify_token.encode("utf-8"))
    if mode != "subscribe" or not token_ok or not _CHALLENGE.fullmatch(challenge):
        return Handshake(403)
    return Handshake(200, challenge)
