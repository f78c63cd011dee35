"""Meta's webhook authenticity: the handshake and the body signature, including secret rotation and
the escaped-Unicode form Meta signs."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.webhook_auth import (
    secrets_from_setting,
    signature_valid,
    verification_handshake,
)

SECRET = "test-app-secret-1"
OLD_SECRET = "test-app-secret-0"


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


BODY = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()


def test_a_body_signed_with_the_app_secret_is_valid_and_any_change_is_not():
    assert signature_valid(BODY, sign(BODY), (SECRET,))
    assert not signature_valid(BODY + b" ", sign(BODY), (SECRET,))
    assert not signature_valid(BODY, sign(BODY, "another secret"), (SECRET,))


@pytest.mark.parametrize("header", [None, "", "sha256=", "sha1=" + "0" * 40, "sha256=" + "g" * 64,
                                    "sha256=" + "0" * 63, "md5=abc", "SHA256=" + "0" * 64])
def test_a_missing_or_malformed_signature_header_is_invalid(header):
    assert not signature_valid(BODY, header, (SECRET,))


def test_no_secret_configured_accepts_nothing():
    assert not signature_valid(BODY, sign(BODY, ""), ())
    assert secrets_from_setting("") == () and secrets_from_setting(" , ,") == ()


def test_either_secret_of_a_rotation_is_accepted():
    secrets = secrets_from_setting(f"{SECRET}, {OLD_SECRET}")
    assert secrets == (SECRET, OLD_SECRET)
    assert signature_valid(BODY, sign(BODY, SECRET), secrets)
    assert signature_valid(BODY, sign(BODY, OLD_SECRET), secrets)


def test_upper_case_hex_in_the_header_is_the_same_signature():
    assert signature_valid(BODY, sign(BODY).upper().replace("SHA256=", "sha256="), (SECRET,))


def test_a_body_with_raw_unicode_is_valid_when_meta_signed_its_escaped_form():
    raw = '{"text":{"body":"Café 👍"}}'.encode()
    escaped = json.dumps({"text": {"body": "Café 👍"}}, separators=(",", ":")).encode()  # \u00e9, \ud83d\udc4d
    assert b"\\u00e9" in escaped and b"\\ud83d\\udc4d" in escaped
    assert signature_valid(raw, sign(escaped), (SECRET,))
    assert signature_valid(raw, sign(raw), (SECRET,))
    assert not signature_valid(raw, sign(escaped + b" "), (SECRET,))


@given(st.binary(max_size=512), st.one_of(st.none(), st.text(max_size=80)))
def test_no_body_or_header_raises_and_a_random_header_is_never_valid(body, header):
    assert signature_valid(body, header, (SECRET,)) is False


@given(st.binary(max_size=512))
def test_the_signature_of_any_body_is_valid_for_that_body(body):
    assert signature_valid(body, sign(body), (OLD_SECRET, SECRET))


def test_the_handshake_echoes_the_challenge_only_for_subscribe_with_our_token():
    ok = verification_handshake({"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "1158201444"},
                                "vt")
    assert ok.status == 200 and ok.challenge == "1158201444"


@pytest.mark.parametrize("params,token", [
    ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}, "vt"),
    ({"hub.mode": "unsubscribe", "hub.verify_token": "vt", "hub.challenge": "1"}, "vt"),
    ({"hub.verify_token": "vt", "hub.challenge": "1"}, "vt"),
    ({"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}, ""),  # nothing configured
    ({"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "<script>"}, "vt"),
    ({"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": ""}, "vt"),
    ({"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "1" * 257}, "vt"),
])
def test_anything_else_is_403_and_echoes_nothing(params, token):
    answer = verification_handshake(params, token)
    assert answer.status == 403 and answer.challenge is None


def test_an_unresolved_key_vault_reference_is_no_secret():
    """The platform hands an unresolvable reference to the app as its own text: guessable."""
    reference = "@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/whatsapp-app-secret/)"
    assert secrets_from_setting(reference) == ()
    assert not signature_valid(BODY, sign(BODY, reference), secrets_from_setting(reference))
