"""Answers "does this address belong to a user with an Exchange Online mailbox?" through Graph
(``GraphDirectory``, 2 or 3 requests per address, answers cached per process), and "which Entra ID
user has this phone number?" (``GraphPhoneDirectory``, from an index of every user's phones).
docs/graph.md ("Does an address have a mailbox", "Mapping by the phone numbers in Entra ID") has
the requests, the caching and what each answer means.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.adapters.graph_client import graph_client_info
from shared.adapters.graph_errors import Meaning, Target, classify
from shared.adapters.graph_gate import MailboxGate, mailbox_ref, process_mailbox_gate
from shared.adapters.graph_json import send_json, string, values
from shared.adapters.graph_loop import acquire_graph_loop, release_graph_loop
from shared.adapters.urls import checked_graph_link
from shared.domain.errors import ConfigurationError, PermanentError, TransientError
from shared.domain.phones import try_normalize_phone

logger = logging.getLogger(__name__)

POSITIVE_TTL_SECONDS = 15 * 60
NEGATIVE_TTL_SECONDS = 5 * 60
# Addresses remembered per process, least recently asked dropped first: a bank's 20,000 mailboxes
# and the customers' addresses that are asked about and have none, at a few hundred bytes each.
MAX_CACHED_ADDRESSES = 50_000

PHONE_INDEX_TTL_SECONDS = 60 * 60
# After a failed refresh that left an older index in service: the wait before trying again (or
# Graph's Retry-After when longer), so a throttled or broken directory is not asked on every lookup.
PHONE_INDEX_RETRY_SECONDS = 60
# Graph's largest page of users.
USER_PAGE_SIZE = 999
PHONE_INDEX_SELECT = ("id", "userPrincipalName", "mail", "mobilePhone", "businessPhones", "accountEnabled")
# The gate key directory-wide requests are held under (they concern no one mailbox).
DIRECTORY_GATE_KEY = "(directory)"


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
        max_entries: int = MAX_CACHED_ADDRESSES,
    ) -> None:
        self._client = client
        self._gate = gate or process_mailbox_gate()
        self._positive_ttl = positive_ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        self._clock = clock
        self._max_entries = max(1, max_entries)
        # Least recently asked first: bounded, so a long-lived worker's memory does not grow with
        # every address it ever met.
        self._cache: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        self._in_flight: dict[str, threading.Lock] = {}
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
        cached = self._cached(key)
        if cached is not None:
            return cached[0]
        if self._closed:
            raise RuntimeError("GraphDirectory is closed")
        # Single flight: the worker threads that meet a new mailbox at once (a batch of 16 from one
        # chat) wait for one lookup instead of each sending the same two requests.
        with self._lock:
            flight = self._in_flight.setdefault(key, threading.Lock())
        try:
            with flight:
                cached = self._cached(key)
                if cached is not None:
                    return cached[0]
                answer = self._loop.run(self._lookup(address.strip()))
                ttl = self._positive_ttl if answer else self._negative_ttl
                with self._lock:
                    self._cache[key] = (answer, self._clock() + ttl)
                    self._cache.move_to_end(key)
                    while len(self._cache) > self._max_entries:
                        self._cache.popitem(last=False)
        finally:
            with self._lock:
                if self._in_flight.get(key) is flight:
                    del self._in_flight[key]
        logger.info("graph directory mailbox=%s has_mailbox=%s", mailbox_ref(key), answer is not None)
        return answer

    def _cached(self, key: str) -> tuple[str | None] | None:
        with self._lock:
            cached = self._cache.get(key)
            if cached is None:
                return None
            if cached[1] <= self._clock():
                del self._cache[key]  # expired: asked again, and not kept in the meantime
                return None
            self._cache.move_to_end(key)
        return (cached[0],)

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
        found = await self._answer(
            "mailbox_probe", address, Target.MAILBOX_PROBE,
            lambda: send_json(self._client, builder.to_get_request_information(_config(query))),
        ) is not None
        return identity if found else None

    async def _user(self, address: str) -> tuple[str, str] | None:
        """(object id, identity): the UPN names the mailbox in every later call, whatever alias
        the mapping used."""
        from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder

        query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
            select=["id", "mail", "userPrincipalName"]
        )
        user_builder = self._client.users.by_user_id(address)
        user = await self._answer(
            "user_get", address, Target.USER,
            lambda: send_json(self._client, user_builder.to_get_request_information(_config(query))),
        )
        user_id = string(user, "id")
        if user_id:
            return user_id, (string(user, "userPrincipalName") or address).lower()
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
        page = await self._answer(
            "user_find", address, Target.USER_SEARCH,
            lambda: send_json(self._client, self._client.users.to_get_request_information(_config(query))),
        )
        for user in values(page):
            user_id = string(user, "id")
            if user_id:
                return user_id, (string(user, "userPrincipalName") or address).lower()
        return None

    async def _answer(self, operation: str, address: str, target: Target, request: Callable[[], Any]) -> Any:
        """The call's result, None for "no such user / no mailbox", or a taxonomy error."""
        try:
            async with self._gate.slot(address):
                return await request()
        except Exception as exc:
            verdict = classify(exc, operation, address, target)
            if verdict.meaning is Meaning.NO_MAILBOX:
                return None
            if verdict.meaning is Meaning.OUT_OF_SCOPE and verdict.failure is not None:
                logger.warning("graph directory mailbox=%s: app may not open this mailbox (%s)",
                               mailbox_ref(address), verdict.failure.code)
                return None
            if verdict.error is exc:
                raise
            raise verdict.error from None


@dataclass(frozen=True)
class PhoneIndexStats:
    """Counts of one index load (never numbers or names): for logs and tests."""

    users: int
    disabled: int
    phones: int  # distinct normalised numbers indexed
    unreadable: int  # phone values that are not a number (for the default region)
    ambiguous: int  # numbers on two or more enabled users: answered None
    pages: int


@dataclass(frozen=True)
class _PhoneIndex:
    owners: dict[str, frozenset[str]]  # E.164 -> lower-case UPNs of the enabled users with it
    stats: PhoneIndexStats
    loaded_at: float


class GraphPhoneDirectory:
    """``PhoneDirectory`` on Microsoft Graph: the one enabled Entra ID user with a phone number.

    Entra ID keeps phones as free text ("+44 7700 900123", "(020) 7946 0000 ext 12"), so an exact
    ``$filter`` on the E.164 form would miss most of them. Instead the whole directory is read,
    ``GET /users?$select=id,userPrincipalName,mail,mobilePhone,businessPhones,accountEnabled&$top=999``
    following ``@odata.nextLink`` (ceil(N / 999) requests for N users; the pages are read as plain
    JSON, not msgraph-sdk models, which cost milliseconds per user), every ``mobilePhone`` and
    ``businessPhones`` value is normalised with ``default_region`` (extensions dropped), and numbers
    are indexed to the users who have them. Disabled accounts are left out. A number on two or more
    users is ambiguous and answers None: a record must never go to a guess.

    The index is cached per process for ``ttl_seconds``. Only one thread loads at a time; while it
    does, the others keep answering from the previous index, or wait when there is none. A load is
    all or nothing (a failure on page 7 keeps nothing of pages 1 to 6). When a refresh fails, the
    previous index stays in service (a warning is logged) and the next attempt waits
    ``PHONE_INDEX_RETRY_SECONDS`` or Graph's Retry-After; without any index the failure is raised:
    ``TransientError`` for throttling, outages and network errors, ``ConfigurationError`` for a
    refused token or missing ``User.Read.All`` consent (401/403).

    Logs carry counts only, never a number or a name. Whether the user found has a mailbox is the
    ``MailboxDirectory``'s question, not this one's. Thread-safe.
    """

    def __init__(
        self,
        client: Any,
        *,
        default_region: str | None = None,
        ttl_seconds: float = PHONE_INDEX_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        gate: MailboxGate | None = None,
        retry_seconds: float = PHONE_INDEX_RETRY_SECONDS,
    ) -> None:
        if ttl_seconds < 0 or retry_seconds < 0:
            raise ValueError("ttl_seconds and retry_seconds must not be negative")
        self._client = client
        self._region = default_region or None
        self._ttl = ttl_seconds
        self._retry = retry_seconds
        self._clock = clock
        self._gate = gate or process_mailbox_gate()
        self._lock = threading.Lock()  # guards the fields below; never held across a request
        self._refresh_lock = threading.Lock()  # one load at a time
        self._index: _PhoneIndex | None = None
        self._due = 0.0  # when the index (or, after a failure, the next attempt) is due
        self._attempts = 0  # finished loads, failed or not
        self._failure: Exception | None = None  # of the last load, when it failed
        self._loop = acquire_graph_loop(client)
        self._closed = False

    def mailbox_for_phone(self, e164: str) -> str | None:
        phone = try_normalize_phone(e164, self._region)
        if phone is None:
            return None
        owners = self._current().owners.get(phone)
        if not owners:
            return None
        if len(owners) > 1:
            logger.info("graph phone directory: number shared by %d users, ambiguous: not mapped", len(owners))
            return None
        return next(iter(owners))

    @property
    def stats(self) -> PhoneIndexStats | None:
        """Counts of the index in service, or None before the first load."""
        with self._lock:
            return self._index.stats if self._index is not None else None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            release_graph_loop(self._client)

    def __enter__(self) -> GraphPhoneDirectory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _current(self) -> _PhoneIndex:
        with self._lock:
            index, due, seen = self._index, self._due, self._attempts
        if index is not None and self._clock() < due:
            return index
        if self._closed:
            raise RuntimeError("GraphPhoneDirectory is closed")
        if index is not None:
            if not self._refresh_lock.acquire(blocking=False):
                return index  # another thread is refreshing: the previous index serves meanwhile
        else:
            self._refresh_lock.acquire()
        try:
            with self._lock:
                index, due, attempts, failure = self._index, self._due, self._attempts, self._failure
            if index is not None and self._clock() < due:
                return index  # refreshed (or failed and rescheduled) while this thread waited
            if index is None and attempts != seen and failure is not None:
                raise _again(failure)  # the load this thread waited for failed: no second request
            return self._reload(index)
        finally:
            self._refresh_lock.release()

    def _reload(self, previous: _PhoneIndex | None) -> _PhoneIndex:
        started = self._clock()
        try:
            owners, stats = self._loop.run(self._load())
        except Exception as exc:
            retry_after = getattr(exc, "retry_after", None) or 0.0
            with self._lock:
                self._attempts += 1
                self._failure = exc
                if previous is not None:
                    self._due = self._clock() + max(self._retry, retry_after)
            if previous is None:
                raise
            logger.warning(
                "graph phone directory: refresh failed (%s), still serving the index loaded %.0f s ago",
                type(exc).__name__, started - previous.loaded_at,
            )
            return previous
        now = self._clock()
        index = _PhoneIndex(owners, stats, now)
        with self._lock:
            self._index = index
            self._due = now + self._ttl
            self._attempts += 1
            self._failure = None
        logger.info(
            "graph phone directory loaded users=%d disabled=%d phones=%d unreadable=%d ambiguous=%d pages=%d",
            stats.users, stats.disabled, stats.phones, stats.unreadable, stats.ambiguous, stats.pages,
        )
        return index

    async def _load(self) -> tuple[dict[str, frozenset[str]], PhoneIndexStats]:
        from msgraph.generated.users.users_request_builder import UsersRequestBuilder

        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            select=list(PHONE_INDEX_SELECT), top=USER_PAGE_SIZE
        )
        users_builder = self._client.users
        owners: dict[str, set[str]] = {}
        users = disabled = unreadable = pages = 0
        seen_links: set[str] = set()
        request = users_builder.to_get_request_information(_config(query))
        while True:
            page = await self._fetch(users_builder.request_adapter, request)
            pages += 1
            for user in _users_of(page):
                users += 1
                if user.get("accountEnabled") is False:
                    disabled += 1
                    continue
                upn = str(user.get("userPrincipalName") or "").strip().lower()
                if not upn:
                    continue
                for raw in _phones_of(user):
                    phone = try_normalize_phone(raw, self._region)
                    if phone is None:
                        unreadable += 1
                    else:
                        owners.setdefault(phone, set()).add(upn)
            link = page.get("@odata.nextLink")
            if not link:
                break
            if not isinstance(link, str) or link in seen_links:
                raise TransientError("graph user listing returned a bad or repeated page link")
            seen_links.add(link)
            try:
                link = checked_graph_link(link, graph_client_info(self._client).base_url)
            except PermanentError as refused:
                # Every record mapped by phone waits on this index: poisoning them all for one
                # bad page would be wrong. Retried instead, and a previous index keeps serving.
                raise TransientError(refused.detail) from None
            request = users_builder.with_url(link).to_get_request_information()
        index = {phone: frozenset(upns) for phone, upns in owners.items()}
        ambiguous = sum(1 for upns in index.values() if len(upns) > 1)
        return index, PhoneIndexStats(users, disabled, len(index), unreadable, ambiguous, pages)

    async def _fetch(self, adapter: Any, request: Any) -> dict[str, Any]:
        """One page of users as JSON, or a taxonomy error.

        The request goes through the client's adapter (auth, bounded retries, Graph's error
        mapping) but the body is read as plain JSON: msgraph-sdk's ``User`` model costs a few
        milliseconds of CPU per user to deserialise, minutes for a large tenant.
        """
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        try:
            async with self._gate.slot(DIRECTORY_GATE_KEY):
                raw = await adapter.send_primitive_async(request, "bytes", {"XXX": ODataError})
        except Exception as exc:
            error = classify(exc, "user_list", DIRECTORY_GATE_KEY, Target.USER_LIST).error
            if error is exc:
                raise
            raise error from None
        try:
            page = json.loads(raw or b"{}")
        except ValueError:
            raise TransientError("graph user listing answered with unreadable JSON") from None
        if not isinstance(page, dict):
            raise TransientError("graph user listing answered with unexpected JSON")
        return page


def _users_of(page: dict[str, Any]) -> list[dict[str, Any]]:
    value = page.get("value")
    if not isinstance(value, list):
        raise TransientError("graph user listing answered without a value array")
    return [user for user in value if isinstance(user, dict)]


def _phones_of(user: dict[str, Any]) -> list[str]:
    """The user's non-blank phone values, mobile first, as Entra ID stores them (free text)."""
    business = user.get("businessPhones")
    values = [user.get("mobilePhone"), *(business if isinstance(business, list) else [])]
    return [value for value in values if isinstance(value, str) and value.strip()]


def _again(failure: Exception) -> Exception:
    """A fresh exception like ``failure`` for another waiting thread (one instance, one traceback)."""
    if isinstance(failure, TransientError):
        return TransientError(str(failure), retry_after=failure.retry_after)
    if isinstance(failure, ConfigurationError):
        return ConfigurationError(str(failure))
    return TransientError(f"graph phone directory load failed: {type(failure).__name__}")


def _config(query: Any) -> Any:
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    return RequestConfiguration(query_parameters=query)
