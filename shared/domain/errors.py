"""The error taxonomy. It decides routing, so every adapter raises one of these.

- ``TransientError``: try again later. The queue function raises it; the host makes the message
  visible again and, after ``maxDequeueCount`` attempts, moves it to ``<queue>-poison``.
- ``PermanentError``: retrying cannot help. The record goes to the poison queue at once, with
  its reason, and the queue message completes.
- ``MailboxUnavailable``: one mailbox cannot take mail (no Exchange Online mailbox, unknown
  user). For mapping it means "not a valid mailbox", never a retry loop.
- ``ConfigurationError``: the deployment is wrong (bad credentials, missing setting).
"""

from __future__ import annotations

from enum import StrEnum


class PoisonReason(StrEnum):
    NO_MAPPING = "no_mapping"
    TOO_BIG = "too_big"
    INVALID_ITEM = "invalid_item"
    ATTACHMENT_CORRUPT = "attachment_corrupt"
    # The host (or our runner) moved the message after maxDequeueCount failed attempts.
    RETRIES_EXHAUSTED = "retries_exhausted"
    # The source handed back a page token this slice had used already: following it would list
    # the same pages for ever. The continuation waits in listing-poison; the slice stays open.
    PAGE_TOKEN_LOOP = "page_token_loop"
    # A vendor's EML drop whose manifest does not hold (count, names, empty or unlisted files): the
    # whole ZIP waits, imported not at all, until the vendor delivers again or an operator replays it
    # accepting the mismatch.
    MANIFEST_MISMATCH = "manifest_mismatch"


class ArchiveError(Exception):
    """Base of every error the connector raises on purpose."""


class TransientError(ArchiveError):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ArchiveError):
    def __init__(self, reason: PoisonReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class MailboxUnavailable(ArchiveError):
    def __init__(self, mailbox: str, code: str) -> None:
        super().__init__(f"mailbox unavailable ({code})")
        self.mailbox = mailbox
        self.code = code


class ConfigurationError(ArchiveError):
    """The deployment is misconfigured; an operator must act."""
