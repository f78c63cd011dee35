"""What a failed Graph request means: the one table that turns Graph's answers (status, error code,
Retry-After) and transport failures into the connector's error taxonomy (shared/domain/errors.py).

Every Graph adapter (the directory, the writer, its folder chain and attachments, the item reader)
classifies its failures here and only here: ``classify`` gives a ``Classified``, the taxonomy
error to raise and, where the call's ``Target`` gives Graph's answer a meaning of its own (the
user has no mailbox, the archive folder is gone or full, the upload session is refused...), that
``Meaning``. Callers branch on the meaning, never on a status code. docs/graph.md ("What a Graph
failure means") has the table in prose.

Nothing here imports the SDK when this module is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto
from typing import Any

from shared.adapters.retry_policy import THROTTLING_STATUSES, parse_retry_after
from shared.domain.errors import (
    ArchiveError,
    ConfigurationError,
    MailboxUnavailable,
    PermanentError,
    PoisonReason,
    TransientError,
)

# Error codes that mean "this user has no usable mailbox" (or is unknown). Graph is not
# consistent between them for the same user over time, so they are treated alike.
MAILBOX_MISSING_CODES = frozenset(
    {
        "MailboxNotEnabledForRESTAPI",
        "MailboxNotSupportedForRESTAPI",
        "ErrorInvalidUser",
        "ErrorNonExistentMailbox",
    }
)
# Codes for "no such object". On a /users/{id} call, or on a mail call addressed to the user
# before any item is involved, that object is the user.
USER_NOT_FOUND_CODES = frozenset({"Request_ResourceNotFound", "ResourceNotFound"})
# Codes that mean "no such user" or "no mailbox" to the directory: a valid answer, not a failure.
NO_MAILBOX_CODES = MAILBOX_MISSING_CODES | USER_NOT_FOUND_CODES
# On GET /users/{address} only: an identifier Graph cannot parse is no user either.
UNPARSABLE_ID_CODES = frozenset({"Request_BadRequest", "ErrorInvalidIdMalformed"})
# 403 with this code on a mail call: the app may not touch this mailbox (Exchange RBAC for
# Applications scope or an application access policy leaves it out). Missing Mail.ReadWrite
# consent gives the same answer for every mailbox: the service layer sees that as every mailbox
# unavailable at once.
ACCESS_DENIED_CODE = "ErrorAccessDenied"
ACCESS_DENIED_RETRY_SECONDS = 15 * 60
# Also Exchange's answer for a full mailbox and for the named-property quota: a full folder only
# when the folder's own count says so.
QUOTA_EXCEEDED_CODE = "ErrorQuotaExceeded"
# Exchange's refusal of an item because its folder is full (an EWS ResponseCode; Graph's OData
# layer answers it with a 500, which would otherwise read as a passing server error).
FOLDER_FULL_CODE = "ErrorMessagePerFolderCountReceiveQuotaExceeded"
# Another worker created the folder first (seen as 409 and as 400).
FOLDER_EXISTS_CODE = "ErrorFolderExists"
# A 404 with one of these on a call to the cached archive folder: someone deleted it.
FOLDER_GONE_CODES = frozenset({"ErrorItemNotFound", "ErrorInvalidIdMalformed"})
# A 404 on an item listed a moment ago: it was deleted in between, so it is not there.
ITEM_GONE_CODES = frozenset({"ErrorItemNotFound"})
SESSION_TOO_SMALL_CODE = "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"
# Codes and message fragments of "this request or message is too big". Graph has answered an
# oversized request both as 413 and as 400 BadRequest "Maximum request length exceeded" /
# "The maximum request length supported is 4MB".
TOO_LARGE_CODES = frozenset(
    {
        "ErrorRequestEntityTooLarge",
        "RequestEntityTooLarge",
        "RequestBodyTooLarge",
        "ErrorMessageSizeExceeded",
        "ErrorAttachmentSizeExceeded",
    }
)
_TOO_LARGE_MESSAGES = ("maximum request length",)


class Target(Enum):
    """What a request addresses, which decides what Graph's "not found" and "refused" mean."""

    # The writer's and the reader's calls on the mailbox as a whole (item lookup, folder find):
    # a 404 "no such object" is the user.
    MAILBOX = auto()
    # The archive folder, by the id cached for it: a 404 "no such item" is the folder, deleted.
    FOLDER = auto()
    # Creating the archive folder: ErrorFolderExists is another worker's folder.
    FOLDER_CREATE = auto()
    # Creating the item in the archive folder: as FOLDER, and a 400/413 refuses our body (the
    # record: poisoned), and Exchange's "folder full" codes are the folder's.
    ITEM_CREATE = auto()
    # An existing item (its attachments): any 404 is the item, gone; the next attempt starts over.
    ITEM = auto()
    # createUploadSession on an existing item: as ITEM, and a refusal that is not about size or
    # token is "no upload sessions on this item", and a size below Graph's minimum is named.
    UPLOAD_SESSION = auto()
    # The reader's $value of an item it just listed: a 404 "no such item" is the item, deleted.
    ITEM_CONTENT = auto()
    # The directory's GET /users/{address}: no such user, no mailbox, or an address Graph cannot
    # parse as an id are all "no mailbox"; a refusal it does not know is no evidence: retried.
    USER = auto()
    # The directory's GET /users?$filter=mail eq ...: as USER, without the unparsable id.
    USER_SEARCH = auto()
    # The directory's mailbox probe (GET /users/{id}/mailFolders/inbox): as USER_SEARCH, and 403
    # ErrorAccessDenied is a mailbox outside the app's scope, so "no mailbox" too.
    MAILBOX_PROBE = auto()
    # The directory-wide user listing (phone index): 401/403 is the User.Read.All consent; no
    # single mailbox is in question, so every other refusal is retried.
    USER_LIST = auto()


class Meaning(Enum):
    """What Graph's answer says about the object the call addressed, beyond its taxonomy error."""

    NONE = auto()
    NO_MAILBOX = auto()  # the user is unknown or has no usable mailbox
    OUT_OF_SCOPE = auto()  # the mailbox exists, the app may not open it
    GONE = auto()  # the folder or item the call addressed no longer exists
    FOLDER_FULL = auto()  # Exchange refused the item for its folder's item count
    MAYBE_FOLDER_FULL = auto()  # a quota refusal: the folder's, if the folder's count says it is full
    FOLDER_EXISTS = auto()  # another worker created the folder first
    SESSION_TOO_SMALL = auto()  # the attachment is below Graph's upload-session minimum
    SESSION_REFUSED = auto()  # no upload session on this item


_DIRECTORY = frozenset({Target.USER, Target.USER_SEARCH, Target.MAILBOX_PROBE, Target.USER_LIST})


@dataclass(frozen=True)
class GraphFailure:
    status: int | None
    code: str
    retry_after: float | None
    request_id: str
    too_large: bool = False  # from the code or Graph's message (the message itself is not kept)

    @property
    def throttled(self) -> bool:
        """A 429: the mailbox's budget is used up (the pacer holds off for ``retry_after``)."""
        return self.status == 429

    @property
    def throttling(self) -> bool:
        """429, 503 or 504: Graph's throttling answers, counted in telemetry."""
        return self.status in THROTTLING_STATUSES

    def describe(self, operation: str) -> str:
        """Status, code and request id only: Graph's messages can quote addresses and names."""
        text = f"graph {self.status} {self.code or 'no-code'} on {operation}"
        return f"{text} (request-id {self.request_id})" if self.request_id else text


@dataclass(frozen=True)
class Classified:
    """A failed call, classified: the error to raise unless the caller acts on ``meaning``."""

    error: Exception  # the taxonomy error; the exception itself when it is none of Graph's
    meaning: Meaning = Meaning.NONE
    failure: GraphFailure | None = None  # None: not an answer from Graph


def graph_failure(exc: BaseException) -> GraphFailure | None:
    """Status, error code and Retry-After of a kiota ``APIError``; None for any other exception."""
    from kiota_abstractions.api_error import APIError

    if not isinstance(exc, APIError):
        return None
    main_error = getattr(exc, "error", None)  # ODataError.error is a MainError
    code = str(getattr(main_error, "code", None) or "")
    message = str(getattr(main_error, "message", None) or "").lower()
    headers = exc.response_headers or {}
    status = exc.response_status_code
    return GraphFailure(
        status=status,
        code=code,
        retry_after=parse_retry_after(_header(headers, "Retry-After")),
        request_id=_header(headers, "request-id") or _header(headers, "client-request-id") or "",
        too_large=status == 413 or code in TOO_LARGE_CODES or any(m in message for m in _TOO_LARGE_MESSAGES),
    )


def classify(exc: Exception, operation: str, mailbox: str, target: Target = Target.MAILBOX) -> Classified:
    """``exc``, raised by a Graph call on ``operation`` for ``mailbox`` addressing ``target``, classified.

    The error never carries Graph's own message, which can quote the address. An ``ArchiveError``
    (raised on the way, e.g. by the pacer) is already classified and comes back as it is.
    """
    if isinstance(exc, ArchiveError):
        return Classified(exc)
    failure = graph_failure(exc)
    if failure is None:
        return Classified(_transport_error(exc, operation) or exc)
    return Classified(_error(failure, operation, mailbox, target), _meaning(failure, target), failure)


def graph_error(exc: Exception, operation: str, mailbox: str, target: Target = Target.MAILBOX) -> Exception:
    """The taxonomy error of ``classify``, for a caller that gives no meaning a treatment of its own."""
    return classify(exc, operation, mailbox, target).error


def _meaning(failure: GraphFailure, target: Target) -> Meaning:
    status, code = failure.status, failure.code
    if target is Target.UPLOAD_SESSION:
        if code == SESSION_TOO_SMALL_CODE:
            return Meaning.SESSION_TOO_SMALL
        if _is_session_refusal(failure):
            return Meaning.SESSION_REFUSED
    elif target is Target.FOLDER_CREATE:
        if code == FOLDER_EXISTS_CODE:
            return Meaning.FOLDER_EXISTS
    elif target in (Target.FOLDER, Target.ITEM_CREATE):
        if status == 404 and code in FOLDER_GONE_CODES:
            return Meaning.GONE
        if target is Target.ITEM_CREATE and code == FOLDER_FULL_CODE:
            return Meaning.FOLDER_FULL
        if target is Target.ITEM_CREATE and code == QUOTA_EXCEEDED_CODE:
            return Meaning.MAYBE_FOLDER_FULL
    elif target is Target.ITEM:
        if status == 404:
            return Meaning.GONE
    elif target is Target.ITEM_CONTENT:
        if status == 404 and code in ITEM_GONE_CODES:
            return Meaning.GONE
    elif target in (Target.USER, Target.USER_SEARCH, Target.MAILBOX_PROBE):
        unparsable = target is Target.USER and status == 400 and code in UNPARSABLE_ID_CODES
        if code in NO_MAILBOX_CODES or unparsable:
            return Meaning.NO_MAILBOX
        if target is Target.MAILBOX_PROBE and status == 403 and code == ACCESS_DENIED_CODE:
            return Meaning.OUT_OF_SCOPE
    return Meaning.NONE


def _is_session_refusal(failure: GraphFailure) -> bool:
    """A createUploadSession answer that says "not on this item", as opposed to a passing fault."""
    status = failure.status
    if status is None or status in THROTTLING_STATUSES or status >= 500 or failure.too_large:
        return False
    if status == 404 or status == 401:
        return False  # the item is gone / the token: handled as such
    return status in (400, 403, 405, 409, 501)


def _error(failure: GraphFailure, operation: str, mailbox: str, target: Target) -> Exception:
    status, code = failure.status, failure.code
    if target is Target.USER_LIST and status in (401, 403):
        return ConfigurationError(
            failure.describe(operation) + ": listing users needs the User.Read.All application permission"
        )
    if target is Target.ITEM_CREATE and status in (400, 413):
        # Graph refused the body we built for this record: no retry makes it acceptable.
        reason = PoisonReason.TOO_BIG if failure.too_large else PoisonReason.INVALID_ITEM
        return PermanentError(reason, failure.describe(operation))
    if target not in _DIRECTORY and status == 404:
        if target in (Target.ITEM, Target.UPLOAD_SESSION):
            # Whatever the code (Exchange says ErrorItemNotFound), the item is gone: start over.
            return TransientError(failure.describe(operation))
        if code in USER_NOT_FOUND_CODES:
            return MailboxUnavailable(mailbox, code)
    error = _common_error(failure, operation, mailbox)
    if target in _DIRECTORY:
        if isinstance(error, PermanentError):
            # A 4xx we do not know is not evidence of a missing mailbox; let the queue retry it.
            return TransientError(error.detail)
        if target is Target.USER_LIST and isinstance(error, MailboxUnavailable):
            return TransientError(f"graph {error.code} on {operation}")
    return error


def _common_error(failure: GraphFailure, operation: str, mailbox: str) -> Exception:
    """The taxonomy error for the answers every Graph call shares."""
    if failure.code in MAILBOX_MISSING_CODES:
        return MailboxUnavailable(mailbox, failure.code)
    if failure.status == 403 and failure.code == ACCESS_DENIED_CODE:
        # One mailbox refused (Exchange RBAC for Applications scope). The directory already
        # answered "no mailbox" for mailboxes outside the scope, so reaching here means the scope
        # changed under us, and scope changes take a while to apply everywhere: come back much
        # later rather than drop this mailbox's copy (after the deferral cap the record poisons).
        return TransientError(failure.describe(operation), retry_after=ACCESS_DENIED_RETRY_SECONDS)
    if failure.code == QUOTA_EXCEEDED_CODE:
        # A full mailbox can take mail again once someone frees space; the queue retries it.
        return TransientError(failure.describe(operation), retry_after=failure.retry_after)
    status = failure.status
    if status is None or status in THROTTLING_STATUSES or status >= 500:
        return TransientError(failure.describe(operation), retry_after=failure.retry_after)
    if status in (401, 403):
        # A refused or expired token, missing consent for the whole API.
        return ConfigurationError(failure.describe(operation))
    if 300 <= status < 400:
        return ConfigurationError(f"{failure.describe(operation)}: a redirect, never followed with the token")
    if failure.too_large:
        return PermanentError(PoisonReason.TOO_BIG, failure.describe(operation))
    return PermanentError(PoisonReason.INVALID_ITEM, failure.describe(operation))


def _transport_error(exc: BaseException, operation: str) -> Exception | None:
    """The taxonomy error for a failure before Graph answered; None when ``exc`` is none of those."""
    import httpx
    from azure.core.exceptions import ClientAuthenticationError
    from kiota_authentication_azure._exceptions import HTTPError as KiotaAuthHTTPError

    if isinstance(exc, httpx.TransportError):
        return TransientError(f"graph unreachable on {operation}: {type(exc).__name__}")
    if isinstance(exc, ClientAuthenticationError):
        return ConfigurationError(f"no Graph token on {operation}: {type(exc).__name__}")
    if isinstance(exc, KiotaAuthHTTPError):
        return ConfigurationError(f"Graph token refused for this URL on {operation}")
    return None


def classify_upload_chunk(response: Any) -> Classified:
    """An upload-session chunk PUT answered with an error (``response``: httpx's, from the Exchange
    upload host, outside kiota). Too large is permanent; anything else, once the retry policy has
    given up, is transient: an expired or confused session is not resumed, the writer removes the
    item and the next attempt starts the record again. Judged by status and code alone."""
    status = response.status_code
    code = _error_code(response)
    failure = GraphFailure(
        status=status,
        code=code,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        request_id="",
        too_large=status == 413 or code in TOO_LARGE_CODES,
    )
    detail = f"upload chunk refused with {status} {code}"
    if failure.too_large:
        return Classified(PermanentError(PoisonReason.TOO_BIG, detail), failure=failure)
    return Classified(TransientError(detail, retry_after=failure.retry_after), failure=failure)


def _error_code(response: Any) -> str:
    try:
        payload = response.json()
    except ValueError:
        return ""
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code) if isinstance(code, str) and code.isprintable() and len(code) < 100 else ""


def _header(headers: Any, name: str) -> str | None:
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        lowered = name.lower()
        value = next((v for k, v in headers.items() if str(k).lower() == lowered), None)
    return None if value is None else str(value)
