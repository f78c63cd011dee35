"""Where the Graph token comes from: a fixed token for loopback test servers, a caller's own
credential, an app registration (secret or certificate), a managed identity, or
DefaultAzureCredential; docs/graph.md ("Credentials and clouds") lists them in order.

``azure.identity`` is imported inside the functions, never when this module is imported (cold
starts: docs/graph.md, "The Graph client").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from shared.adapters.graph_clouds import GraphCloud
from shared.domain.errors import ConfigurationError

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken


class StaticTokenCredential:
    """Serves one fixed bearer token. Only for loopback test servers: it never expires or refreshes."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)

    def close(self) -> None:
        return None


class ThreadedCredential:
    """Runs a synchronous azure-identity credential's ``get_token`` on a worker thread.

    kiota awaits whatever ``get_token`` returns when it is awaitable. Called directly, a token
    refresh (an IMDS or Entra round trip, sometimes seconds on a cold start) would stall every
    Graph call in flight on the shared loop; on a thread it stalls only the request that needs it.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def get_token(self, *scopes: str, **kwargs: Any) -> Coroutine[Any, Any, AccessToken]:
        return asyncio.to_thread(self.inner.get_token, *scopes, **kwargs)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def azure_credential(
    target: GraphCloud,
    *,
    managed_identity: bool = False,
    managed_identity_client_id: str | None = None,
    tenant_id: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    certificate_path: str | None = None,
    certificate_data: str | bytes | None = None,
    certificate_password: str | None = None,
) -> tuple[str, Any]:
    """(kind, azure-identity credential) for ``target``'s authority, in the order docs/graph.md gives.

    Nothing here contacts Entra ID: a wrong secret shows on the first token request, a certificate
    that cannot be read right here as a ConfigurationError.
    """
    from azure.identity import (
        CertificateCredential,
        ClientSecretCredential,
        DefaultAzureCredential,
        ManagedIdentityCredential,
    )

    certificate_given = bool(certificate_path) or bool(certificate_data)
    app_registration = bool(client_secret) or certificate_given
    if (managed_identity or managed_identity_client_id) and app_registration:
        raise ConfigurationError("configure either a managed identity or an app registration, not both")
    if managed_identity or managed_identity_client_id:
        # IMDS issues the token; the authority only matters for app registrations.
        return "managed_identity", ManagedIdentityCredential(client_id=managed_identity_client_id or None)
    if app_registration:
        if not (tenant_id and client_id):
            raise ConfigurationError("an app registration needs both tenant_id and client_id")
        if certificate_path and certificate_data:
            raise ConfigurationError("give the certificate either as a path or as data, not both")
        if certificate_given:
            # A certificate wins over a secret left behind in the settings: it is the stronger one.
            options: dict[str, Any] = {"authority": target.authority_host}
            if certificate_password:
                options["password"] = certificate_password
            if certificate_data:
                options["certificate_data"] = certificate_bytes(certificate_data)
            try:
                return "certificate", CertificateCredential(
                    tenant_id, client_id, certificate_path=certificate_path or None, **options
                )
            except (ValueError, TypeError, OSError) as exc:
                # The library's message may describe the file; name only what went wrong.
                raise ConfigurationError(
                    f"the app registration's certificate cannot be loaded ({type(exc).__name__}): "
                    "expected PEM or PFX with its RSA private key, and the right password"
                ) from None
        return "client_secret", ClientSecretCredential(
            tenant_id, client_id, client_secret or "", authority=target.authority_host
        )
    if tenant_id or client_id:
        raise ConfigurationError(
            "tenant_id/client_id given without client_secret or a certificate; "
            "use managed_identity_client_id for a user-assigned managed identity"
        )
    return "default", DefaultAzureCredential(authority=target.authority_host)


def certificate_bytes(value: str | bytes) -> bytes:
    """PEM or PKCS#12 bytes from what a setting holds.

    Accepted: PEM text (certificate and private key; ``\\n`` escapes are unfolded when the text has
    no real line breaks), the base64 text of a PFX (what a Key Vault reference to a certificate's
    secret delivers), or the bytes of either file.
    """
    if isinstance(value, str):
        text = value.strip()
        if "-----BEGIN" in text:
            if "\n" not in text and "\\n" in text:
                text = text.replace("\\n", "\n")
            return text.encode("ascii", errors="strict")
        data = _b64(text.encode("ascii", errors="ignore"))
    else:
        raw = bytes(value)
        if b"-----BEGIN" in raw:
            return raw
        if raw[:1] == b"\x30":  # DER: a PFX file's own bytes
            return raw
        data = _b64(raw)
    if data is None or not data:
        raise ConfigurationError("the certificate setting is neither PEM text nor base64 of a PFX")
    return data


def _b64(text: bytes) -> bytes | None:
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None

