"""The Graph stand-in's state: its users (with or without a mailbox) and their folders and items.

Every method here runs under the lock the server shares with its other parts.
"""

from __future__ import annotations

import base64
import copy
import secrets
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared.local.graph_stand_in.errors import GraphHTTPError

NOT_IN_STORE = "The specified object was not found in the store."


def normalize_property_id(prop_id: str) -> str:
    """Extended property ids compare case-insensitively, whatever the spacing."""
    return " ".join(prop_id.split()).lower()


def extended_property(message: dict[str, Any], prop_id: str) -> str | None:
    """The value of one singleValueExtendedProperty of a stored message, or None."""
    return message["extendedProperties"].get(normalize_property_id(prop_id))


def binary_property(message: dict[str, Any], prop_id: str) -> bytes | None:
    """A Binary singleValueExtendedProperty of a stored message, decoded, or None."""
    value = extended_property(message, prop_id)
    return None if value is None else base64.b64decode(value)


@dataclass
class User:
    upn: str
    id: str
    has_mailbox: bool
    mail: str
    mobile_phone: str | None = None
    business_phones: list[str] = field(default_factory=list)
    account_enabled: bool = True
    display_name: str | None = None


@dataclass
class Mailbox:
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> folder
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> stored message
    # folder id -> items in it, kept as items come and go (counting on every create is quadratic)
    items: Counter[str] = field(default_factory=Counter)


class GraphStore:
    """Users by UPN, and the mailboxes of those who have used theirs."""

    def __init__(
        self,
        lock: threading.RLock,
        users: dict[str, bool],
        mail_aliases: dict[str, str],
        access_denied: set[str] | frozenset[str],
    ) -> None:
        self.lock = lock
        self.access_denied = frozenset(u.strip().lower() for u in access_denied)
        self.users: dict[str, User] = {}
        aliases = {mail.lower(): upn.lower() for mail, upn in mail_aliases.items()}
        for upn, has_mailbox in users.items():
            key = upn.strip().lower()
            mail = next((m for m, u in aliases.items() if u == key), key)
            self.users[key] = User(key, str(uuid.uuid5(uuid.NAMESPACE_URL, key)), has_mailbox, mail)
        self.mailboxes: dict[str, Mailbox] = {}

    # -- users ----------------------------------------------------------------------------------

    def find_user(self, ident: str) -> User | None:
        """A user by UPN, id or mail address."""
        key = ident.strip().lower()
        with self.lock:
            user = self.users.get(key)
            if user is None:
                user = next((u for u in self.users.values() if u.id == key or u.mail == key), None)
            return user

    def mail_user(self, ident: str) -> User:
        """The user a mail call names, refused as Exchange refuses it when it has no mailbox to open."""
        user = self.find_user(ident)
        if user is None:
            raise GraphHTTPError(404, "ErrorInvalidUser", f"The requested user '{ident}' is invalid.")
        if not user.has_mailbox:
            raise GraphHTTPError(
                404, "MailboxNotEnabledForRESTAPI", "REST API is not yet supported for this mailbox."
            )
        if user.upn in self.access_denied:
            raise GraphHTTPError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return user

    # -- mailboxes, folders, items --------------------------------------------------------------

    def mailbox(self, user: User) -> Mailbox:
        """The user's mailbox, made with its root and inbox on first use."""
        box = self.mailboxes.get(user.upn)
        if box is None:
            box = Mailbox()
            for well_known in ("msgfolderroot", "inbox"):
                box.folders[well_known] = {
                    "id": f"{well_known}-{user.id}",
                    "displayName": well_known,
                    "parentFolderId": None,
                    "wellKnownName": well_known,
                }
            box.folders["inbox"]["parentFolderId"] = box.folders["msgfolderroot"]["id"]
            self.mailboxes[user.upn] = box
        return box

    @staticmethod
    def folder(box: Mailbox, ident: str) -> dict[str, Any]:
        folder = box.folders.get(ident.lower()) or next(
            (f for f in box.folders.values() if f["id"] == ident), None
        )
        if folder is None:
            raise GraphHTTPError(404, "ErrorItemNotFound", NOT_IN_STORE)
        return folder

    @staticmethod
    def message(box: Mailbox, ident: str) -> dict[str, Any]:
        message = box.messages.get(ident)
        if message is None:
            raise GraphHTTPError(404, "ErrorItemNotFound", NOT_IN_STORE)
        return message

    @staticmethod
    def new_folder(box: Mailbox, parent: dict[str, Any], name: str) -> dict[str, Any]:
        folder_id = "folder-" + secrets.token_hex(8)
        folder = {"id": folder_id, "displayName": name, "parentFolderId": parent["id"]}
        box.folders[folder_id] = folder
        return folder

    def stored(self, mailbox: str, message_id: str) -> dict[str, Any]:
        """A stored item, for the test controls (KeyError when there is none)."""
        box = self.mailboxes.get(mailbox.lower())
        message = box.messages.get(message_id) if box else None
        if message is None:
            raise KeyError(f"no item {message_id!r} in that mailbox")
        return message

    def set_body(self, mailbox: str, message_id: str, content: str) -> None:
        with self.lock:
            message = self.stored(mailbox, message_id)
            message["body"] = {**(message.get("body") or {"contentType": "html"}), "content": content}

    def delete_message(self, mailbox: str, message_id: str) -> None:
        with self.lock:
            message = self.stored(mailbox, message_id)
            box = self.mailboxes[mailbox.lower()]
            del box.messages[message_id]
            box.items[message["parentFolderId"]] -= 1

    def messages(self, mailbox: str) -> list[dict[str, Any]]:
        with self.lock:
            box = self.mailboxes.get(mailbox.lower())
            return copy.deepcopy(list(box.messages.values())) if box else []

    def folders(self, mailbox: str) -> list[dict[str, Any]]:
        with self.lock:
            box = self.mailboxes.get(mailbox.lower())
            if box is None:
                return []
            return [{**copy.deepcopy(f), "totalItemCount": box.items[f["id"]]} for f in box.folders.values()]
