"""Answers "does this address belong to a user with an Exchange Online mailbox?" through Graph.

Two requests per address not yet cached: ``GET /users/{address}?$select=id,mail,userPrincipalName``
(the user exists; ``{address}`` must be the UPN, or the object id), then the cheapest mail call,
``GET /users/{id}/mailFolders/inbox?$select=id``, which answers ``MailboxNotEnabledForRESTAPI``
(or ``ResourceNotFound``) for a user without a mailbox, and 403 ``ErrorAccessDenied`` for a mailbox
the app may not open (left out of its Exchange RBAC for Applications scope): also "no", since
nothing can be archived there. When the address is not a UPN, one more
request looks the user up by primary SMTP address (``$filter=mail eq '...'``): in many tenants the
UPN and the mail address differ.

Answers are cached per process: 15 minutes when a mailbox exists, 5 minutes when not, so a
mailbox provisioned after a first refusal is picked up soon. Throttling, outages and network
errors raise ``TransientError`` and are never cached as "no mailbox"; a refused token or missing
``User.Read.All`` consent raises ``ConfigurationError``. Requests pass the process-wide
``MailboxGate`` like the writer's, keyed by the address asked about.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from shared.adapters.graph_client import (
    ACCESS_DENIED_CODE,
    MAILBOX_MISSING_CODES,
    USER_NOT_FOUND_CODES,
    MailboxGate,
    acquire_graph_loop,
    graph_failure,
    mailbox_ref,
    process_mailbox_gate,
    release_graph_loop,
    translate_common,
)
from shared.domain.errors import MailboxUnavailable, PermanentError, TransientError

logger = logging.getLogger(__name__)

POSITIVE_TTL_SECONDS = 15 * 60
NEGATIVE_TTL_SECONDS = 5 * 60
# Codes that mean "no such user" or "no mailbox": a valid answer, not a failure.
_NO_MAILBOX_CODES = MAILBOX_MISSING_CODES | USER_NOT_FOUND_CODES
# On GET /users/{address} only: an identifier Graph cannot parse is no user either.
_UNPARSABLE_ID_CODES = frozenset({"Request_BadRequest", "ErrorInvalidIdMalformed"})


class GraphDirectory:
    """``MailboxDirectory`` on Microsoft Graph, with a per-process TTL cache. Thread-safe."""

    def __init__(
        self,
        client: Any,
        *,
        positive_ttl_seconds: float = POSITIVE_TTL_SECONDS,
        negative_ttl_seconds: float = NEGATIVE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        gate: MailboxGate | None = None,
    ) -> None:
        self._client = client
        self._gate = gate or process_mailbox_gate()
        self._positive_ttl = positive_ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        self._clock = clock
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()
        self._loop = acquire_graph_loop(client)
        self._closed = False

    def has_mailbox(self, address: str) -> bool:
        return self.mailbox_identity(address) is not None

    def mailbox_identity(self, address: str) -> str | None:
        """The user's userPrincipalName (lower-case) when the user exists and has a mailbox."""
        key = address.strip().lower()
        if not key:
            return None
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        if self._closed:
            raise RuntimeError("GraphDirectory is closed")
        answer = self._loop.run(self._lookup(address.strip()))
        ttl = self._positive_ttl if answer else self._negative_ttl
        with self._lock:
            self._cache[key] = (answer, self._clock() + ttl)
        logger.info("graph directory mailbox=%s has_mailbox=%s", mailbox_ref(key), answer is not None)
        return answer

    def forget(self, address: str) -> None:
        with self._lock:
            self._cache.pop(address.strip().lower(), None)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            release_graph_loop(self._client)

    def __enter__(self) -> GraphDirectory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _lookup(self, address: str) -> str | None:
        user = await self._user(address)
        if user is None:
            return None
        user_id, identity = user
        from msgraph.generated.users.item.mail_folders.item.mail_folder_item_request_builder import (
            MailFolderItemRequestBuilder,
        )

        query = MailFolderItemRequestBuilder.MailFolderItemRequestBuilderGetQueryParameters(select=["id"])
        builder = self._client.users.by_user_id(user_id).mail_folders.by_mail_folder_id("inbox")
        found = await self._answer("mailbox_probe", address, lambda: builder.get(_config(query))) is not None
        return identity if found else None

    async def _user(self, address: str) -> tuple[str, str] | None:
        """(object id, identity): the UPN names the mailbox in every later call, whatever alias
        the mapping used."""
        from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder

        query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
            select=["id", "mail", "userPrincipalName"]
        )
        user_builder = self._client.users.by_user_id(address)
        user = await self._answer("user_get", address, lambda: user_builder.get(_config(query)))
        if user is not None and user.id:
            return str(user.id), (user.user_principal_name or address).lower()
        if "@" not in address:
            return None
        return await self._user_by_mail(address)

    async def _user_by_mail(self, address: str) -> tuple[str, str] | None:
        from msgraph.generated.users.users_request_builder import UsersRequestBuilder

        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            filter=f"mail eq '{address.replace(chr(39), chr(39) * 2)}'",
            select=["id", "mail", "userPrincipalName"],
            top=1,
        )
        page = await self._answer("user_find", address, lambda: self._client.users.get(_config(query)))
        for user in (page.value if page is not None else None) or []:
            if user.id:
                return str(user.id), (user.user_principal_name or address).lower()
        return None

    async def _answer(self, operation: str, address: str, request: Callable[[], Any]) -> Any:
        """The call's result, None for "no such user / no mailbox", or a taxonomy error."""
        try:
            async with self._gate.slot(address):
                return await request()
        except Exception as exc:
            failure = graph_failure(exc)
            unparsable = (
                failure is not None
                and operation == "user_get"
                and failure.status == 400
                and failure.code in _UNPARSABLE_ID_CODES
            )
            if failure is not None and (failure.code in _NO_MAILBOX_CODES or unparsable):
                return None
            if failure is not None and operation == "mailbox_probe" and failure.status == 403 \
                    and failure.code == ACCESS_DENIED_CODE:
                logger.warning("graph directory mailbox=%s: app may not open this mailbox (%s)",
                               mailbox_ref(address), failure.code)
                return None
            translated = translate_common(exc, mailbox=address, operation=operation)
            if translated is None:
                raise
            if isinstance(translated, MailboxUnavailable):
                return None
            if isinstance(translated, PermanentError):
                # A 4xx we do not know is not evidence of a missing mailbox; let the queue retry it.
                raise TransientError(translated.detail) from None
            raise translated from None


def _config(query: Any) -> Any:
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    return RequestConfiguration(query_parameters=query)
