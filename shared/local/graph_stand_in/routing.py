"""Which operation a request to the Graph stand-in is, and which mailbox it counts against."""

from __future__ import annotations

from shared.local.graph_stand_in.attachments import UploadSessions
from shared.local.graph_stand_in.directory import MAIL_FILTER
from shared.local.graph_stand_in.errors import GraphHTTPError
from shared.local.graph_stand_in.store import GraphStore
from shared.local.graph_stand_in.throttling import DIRECTORY


def classify(
    method: str, segments: list[str], query: dict[str, str], upload: bool, store: GraphStore,
    uploads: UploadSessions,
) -> tuple[str, str]:
    """(operation name, mailbox key) of a request, for counting and routing; ``segments`` are the
    path's, unquoted; ``upload``: a ``PUT /upload/{token}``."""
    if upload:
        return "upload_chunk", uploads.mailbox_of(segments[1])
    if len(segments) < 2 or segments[0] != "v1.0" or segments[1].lower() != "users":
        raise GraphHTTPError(400, "BadRequest", "Unsupported path.")
    rest = [s.lower() for s in segments[2:]]
    if not rest and method == "GET" and "$filter" not in query:
        return "user_list", DIRECTORY
    if not rest:
        match = MAIL_FILTER.match(query.get("$filter", ""))
        mailbox = match.group(1).replace("''", "'").lower() if match else DIRECTORY
        user = store.find_user(mailbox)
        return "user_find", user.upn if user else mailbox
    user = store.find_user(segments[2])
    mailbox = user.upn if user else segments[2].lower()
    operation = user_operation(method, rest[1:])
    if operation is None:
        raise GraphHTTPError(400, "BadRequest", "Unsupported path.")
    return operation, mailbox


def user_operation(method: str, tail: list[str]) -> str | None:
    """The operation a request under /users/{u} performs; ``tail`` is lower-cased."""
    match (method, tail):
        case ("GET", []):
            return "user_get"
        case ("GET", ["mailfolders", "inbox"]):
            return "mailbox_probe"
        case ("GET", ["mailfolders", _]):
            return "folder_get"
        case ("GET", ["mailfolders", _, "childfolders"]):
            return "folder_find"
        case ("POST", ["mailfolders", _, "childfolders"]):
            return "folder_create"
        case ("GET", ["mailfolders", _, "messages"]) | ("GET", ["messages"]):
            return "item_lookup"
        case ("POST", ["mailfolders", _, "messages"]):
            return "item_create"
        case ("GET", ["messages", _, "$value"]):
            return "item_mime"
        case ("GET", ["messages", _, "attachments"]):
            return "attachment_list"
        case ("POST", ["messages", _, "attachments"]):
            return "attachment_add"
        case ("POST", ["messages", _, "attachments", "createuploadsession"]):
            return "upload_session_create"
        case ("POST", ["messages", _, "permanentdelete"]) | ("DELETE", ["messages", _]):
            return "item_discard"
    return None
