"""The Graph stand-in's Entra ID side: ``GET /users/{u}``, ``GET /users?$filter=mail eq '...'`` and
the directory listing (``GET /users``, paged through ``@odata.nextLink``)."""

from __future__ import annotations

import re
import secrets
from typing import Any

from shared.local.graph_stand_in.errors import GraphHTTPError
from shared.local.graph_stand_in.store import GraphStore, User

MAIL_FILTER = re.compile(r"^mail eq '((?:[^']|'')*)'$", re.IGNORECASE)
# Graph's largest page of users, and its page size when no $top is given.
MAX_USER_PAGE = 999
DEFAULT_USER_PAGE = 100
# Properties of a user this server knows; a $select naming another is refused as Graph does.
USER_PROPERTIES = (
    "id", "userPrincipalName", "mail", "displayName", "mobilePhone", "businessPhones", "accountEnabled",
)
# What Graph returns for a user when no $select is given (accountEnabled is not among them).
DEFAULT_USER_SELECT = ("id", "userPrincipalName", "mail", "displayName", "mobilePhone", "businessPhones")


def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "mail": user.mail, "userPrincipalName": user.upn}


def user_fields(user: User, fields: list[str]) -> dict[str, Any]:
    values = {
        "id": user.id,
        "userPrincipalName": user.upn,
        "mail": user.mail,
        "displayName": user.display_name,
        "mobilePhone": user.mobile_phone,
        "businessPhones": list(user.business_phones),
        "accountEnabled": user.account_enabled,
    }
    return {name: values[name] for name in fields}


class Directory:
    """The directory calls, answered from the store (lock held by the caller)."""

    def __init__(self, store: GraphStore, page_size: int) -> None:
        self._store = store
        self.page_size = page_size  # the most users one page holds whatever $top asks
        self._skip_tokens: dict[str, int] = {}  # $skiptoken -> index of the next user listed

    def get(self, ident: str) -> dict[str, Any]:
        user = self._store.find_user(ident)
        if user is None:
            raise GraphHTTPError(404, "Request_ResourceNotFound", f"Resource '{ident}' does not exist.")
        return user_json(user)

    def find(self, query: dict[str, str]) -> dict[str, Any]:
        match = MAIL_FILTER.match(query.get("$filter", ""))
        if not match:
            raise GraphHTTPError(400, "Request_UnsupportedQuery", "Unsupported query.")
        mail = match.group(1).replace("''", "'").strip().lower()
        users = [u for u in self._store.users.values() if u.mail == mail]
        return {"value": [user_json(u) for u in users]}

    def list(self, query: dict[str, str], base_url: str) -> dict[str, Any]:
        """One page of every user, in a stable order; the next page's link keeps $select and $top."""
        select = [s.strip() for s in (query.get("$select") or "").split(",") if s.strip()]
        known = {name.lower(): name for name in USER_PROPERTIES}
        for name in select:
            if name.lower() not in known:
                message = f"Could not find a property named '{name}' on type 'microsoft.graph.user'."
                raise GraphHTTPError(400, "Request_BadRequest", message)
        fields = [known[name.lower()] for name in select] or list(DEFAULT_USER_SELECT)
        top_text = query.get("$top")
        try:
            top = DEFAULT_USER_PAGE if top_text is None else int(top_text)
        except ValueError:
            raise GraphHTTPError(400, "Request_BadRequest", "Invalid $top.") from None
        if not 1 <= top <= MAX_USER_PAGE:
            message = f"Invalid page size specified: '{top}'. Must be between 1 and 999 inclusive."
            raise GraphHTTPError(400, "Request_UnsupportedQuery", message)
        start = 0
        token = query.get("$skiptoken")
        if token is not None:
            if token not in self._skip_tokens:
                raise GraphHTTPError(400, "Directory_ExpiredPageToken", "The specified page token value has expired.")
            start = self._skip_tokens[token]
        users = list(self._store.users.values())
        end = start + min(top, self.page_size)
        page: dict[str, Any] = {"value": [user_fields(u, fields) for u in users[start:end]]}
        if end < len(users):
            next_token = secrets.token_urlsafe(12)
            self._skip_tokens[next_token] = end
            params = [f"$top={top}", f"$skiptoken={next_token}"]
            if select:
                params.insert(0, "$select=" + ",".join(select))
            page["@odata.nextLink"] = f"{base_url}/users?" + "&".join(params)
        return page
