"""The Graph stand-in's mail operations: folders, items (create, lookup, ``$value``, discard) and
their attachments, each served from the store with the lock held."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from shared.local.graph_stand_in.attachments import UploadSessions, attachment_json, file_attachment
from shared.local.graph_stand_in.errors import GraphHTTPError, json_body
from shared.local.graph_stand_in.items import check_create
from shared.local.graph_stand_in.mime import item_mime
from shared.local.graph_stand_in.store import GraphStore, Mailbox, User, normalize_property_id

# Exchange Online's most items in one mail folder.
FOLDER_ITEM_LIMIT = 1_000_000

_EXTENDED_FILTER = re.compile(
    r"^singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id eq '((?:[^']|'')*)'"
    r"\s+and\s+\1/value eq '((?:[^']|'')*)'\s*\)$",
    re.IGNORECASE,
)
_DISPLAY_NAME_FILTER = re.compile(r"^displayName eq '((?:[^']|'')*)'$", re.IGNORECASE)

Answer = tuple[int, Any, dict[str, str]]


def folder_json(folder: dict[str, Any], items: int) -> dict[str, Any]:
    return {**{k: folder[k] for k in ("id", "displayName", "parentFolderId")}, "totalItemCount": items}


class MailOperations:
    """One method per mail operation (``_op_`` + its name), called by ``serve``."""

    def __init__(
        self,
        store: GraphStore,
        uploads: UploadSessions,
        base_url: Callable[[], str],
        *,
        reject_drafts: bool,
        folder_item_limit: int,
        keep_attachment_bytes: int,
    ) -> None:
        self._store = store
        self._uploads = uploads
        self._base_url = base_url
        self.reject_drafts = reject_drafts
        self.folder_item_limit = folder_item_limit
        self.keep_attachment_bytes = keep_attachment_bytes
        self.folder_races: dict[str, str] = {}  # mailbox -> folder another worker creates next

    def serve(
        self, operation: str, user: User, box: Mailbox, rest: list[str], query: dict[str, str], headers: Any,
        body: bytes,
    ) -> Answer:
        handler: Callable[..., Answer] = getattr(self, f"_op_{operation}")
        return handler(user, box, rest, query, headers, body)

    def _op_mailbox_probe(self, user, box, rest, query, headers, body):
        if rest and rest[0].lower() != "inbox":
            raise GraphHTTPError(400, "BadRequest", "Only the inbox is served.")
        return 200, {"id": box.folders["inbox"]["id"]}, {}

    def _op_folder_find(self, user, box, rest, query, headers, body):
        parent = self._store.folder(box, rest[0])
        race = self.folder_races.pop(user.upn, None)
        children = [f for f in box.folders.values() if f["parentFolderId"] == parent["id"]]
        flt = query.get("$filter")
        if flt:
            match = _DISPLAY_NAME_FILTER.match(flt.strip())
            if not match:
                raise GraphHTTPError(400, "ErrorInvalidUrlQueryFilter", "Unsupported filter.")
            name = match.group(1).replace("''", "'").casefold()
            children = [f for f in children if f["displayName"].casefold() == name]
        if race is not None:
            self._store.new_folder(box, parent, race)
            return 200, {"value": []}, {}
        return 200, {"value": [folder_json(f, box.items[f["id"]]) for f in children]}, {}

    def _op_folder_get(self, user, box, rest, query, headers, body):
        folder = self._store.folder(box, rest[0])
        return 200, folder_json(folder, box.items[folder["id"]]), {}

    def _op_folder_create(self, user, box, rest, query, headers, body):
        parent = self._store.folder(box, rest[0])
        name = str(json_body(body).get("displayName") or "").strip()
        if not name:
            raise GraphHTTPError(400, "ErrorInvalidRequest", "displayName is required.")
        if any(
            f["parentFolderId"] == parent["id"] and f["displayName"].casefold() == name.casefold()
            for f in box.folders.values()
        ):
            raise GraphHTTPError(409, "ErrorFolderExists", "A folder with the specified name already exists.")
        return 201, folder_json(self._store.new_folder(box, parent, name), 0), {}

    def _op_item_lookup(self, user, box, rest, query, headers, body):
        """In one folder (``/mailFolders/{f}/messages``) or, as ``/messages``, in all of them."""
        folder_id = self._store.folder(box, rest[0])["id"] if rest else None
        match = _EXTENDED_FILTER.match((query.get("$filter") or "").strip())
        if not match:
            raise GraphHTTPError(400, "ErrorInvalidUrlQueryFilter", "Unsupported filter.")
        prop_id = normalize_property_id(match.group(2).replace("''", "'"))
        value = match.group(3).replace("''", "'")
        found = [
            m for m in box.messages.values()
            if folder_id in (None, m["parentFolderId"]) and m["extendedProperties"].get(prop_id) == value
        ]
        try:
            top, skip = int(query.get("$top") or 10), int(query.get("$skip") or 0)
        except ValueError:
            raise GraphHTTPError(400, "ErrorInvalidUrlQuery", "Invalid $top or $skip.") from None
        if top < 1 or skip < 0:
            raise GraphHTTPError(400, "ErrorInvalidUrlQuery", "Invalid $top or $skip.")
        page: dict[str, Any] = {"value": [{"id": m["id"]} for m in found[skip : skip + top]]}
        if skip + top < len(found):
            path = f"users/{quote(user.upn)}/" + (f"mailFolders/{quote(rest[0])}/" if rest else "")
            params = urlencode({**query, "$skip": str(skip + top)}, quote_via=quote, safe="$")
            page["@odata.nextLink"] = f"{self._base_url()}/{path}messages?{params}"
        return 200, page, {}

    def _op_item_mime(self, user, box, rest, query, headers, body):
        message = self._store.message(box, rest[0])
        return 200, item_mime(message), {"Content-Type": "message/rfc822"}

    def _op_item_create(self, user, box, rest, query, headers, body):
        folder = self._store.folder(box, rest[0])
        if box.items[folder["id"]] >= self.folder_item_limit:
            raise GraphHTTPError(
                500, "ErrorMessagePerFolderCountReceiveQuotaExceeded",
                "The number of received messages has exceeded the quota for the folder.",
            )
        payload = json_body(body)
        properties, is_draft = check_create(payload, reject_drafts=self.reject_drafts)
        message_id = "AAMk" + secrets.token_hex(16)
        attachments = [self._file_attachment(a, "inline") for a in payload.get("attachments") or []]
        message = {
            "id": message_id,
            "parentFolderId": folder["id"],
            "folderName": folder["displayName"],
            "isDraft": is_draft,
            "subject": payload.get("subject"),
            "body": payload.get("body"),
            "from": payload.get("from"),
            "sender": payload.get("sender"),
            "toRecipients": payload.get("toRecipients") or [],
            "internetMessageId": payload.get("internetMessageId"),
            "internetMessageHeaders": payload.get("internetMessageHeaders") or [],
            "singleValueExtendedProperties": payload.get("singleValueExtendedProperties") or [],
            "extendedProperties": properties,
            "attachments": attachments,
            "createdDateTime": datetime.now(UTC).isoformat(),
            "preferHeader": headers.get("Prefer"),
        }
        box.messages[message_id] = message
        box.items[folder["id"]] += 1
        reply = {k: message[k] for k in ("id", "parentFolderId", "isDraft", "subject", "internetMessageId")}
        reply["hasAttachments"] = bool(attachments)
        return 201, reply, {}

    def _file_attachment(self, payload: dict[str, Any], via: str) -> dict[str, Any]:
        return file_attachment(payload, via, self.keep_attachment_bytes)

    def _op_attachment_list(self, user, box, rest, query, headers, body):
        message = self._store.message(box, rest[0])
        return 200, {"value": [attachment_json(a) for a in message["attachments"]]}, {}

    def _op_attachment_add(self, user, box, rest, query, headers, body):
        message = self._store.message(box, rest[0])
        attachment = self._file_attachment(json_body(body), "attachment_post")
        message["attachments"].append(attachment)
        return 201, attachment_json(attachment), {}

    def _op_upload_session_create(self, user, box, rest, query, headers, body):
        return self._uploads.create(user.upn, self._store.message(box, rest[0]), body)

    def _op_item_discard(self, user, box, rest, query, headers, body):
        message = self._store.message(box, rest[0])
        del box.messages[rest[0]]
        box.items[message["parentFolderId"]] -= 1
        return 204, None, {}
