"""How an item's attachments reach it: inline in the create request while it stays under 4 MB,
else added after the create, one POST each below 3 MB or an upload session streamed in chunks
(``UploadSessionAttachments``, the default ``AttachmentStrategy``). docs/graph.md ("Large
attachments") has the limits, the memory measured and the open point about sessions on non-drafts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Protocol

from shared import telemetry
from shared.adapters.graph_errors import Meaning, Target, classify, classify_upload_chunk
from shared.adapters.graph_json import string
from shared.adapters.graph_message import create_request_estimate, file_attachment
from shared.adapters.graph_middleware import graph_retry_policy
from shared.adapters.graph_session import GraphSession
from shared.adapters.retry_policy import SERVER_ERRORS, THROTTLING_STATUSES, RetryPolicy
from shared.adapters.urls import checked_upload_url
from shared.domain.errors import ArchiveError, ConfigurationError, PermanentError, PoisonReason, TransientError
from shared.domain.rendered import RenderedAttachment, RenderedItem, read_all

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)


# Request size: Graph refuses requests over 4 MB (4 MiB, as measured in public reports). The
# margin covers the JSON around the parts we measure (property names, recipients, headers) and
# HTTP framing.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
REQUEST_MARGIN_BYTES = 64 * 1024
# Upload-session chunks: at most 4 MB each; 10 x 320 KiB is the customary safe size.
UPLOAD_CHUNK_BYTES = 3_276_800
# "3 MB to 150 MB: upload session; under 3 MB: POST". Read as decimal megabytes, the stricter
# reading for us: an attachment just under it still fits one POST (base64 4,000,000 bytes).
UPLOAD_SESSION_MIN_BYTES = 3_000_000
# The largest attachment that fits a POST of its own (base64 plus a little JSON) under 4 MiB.
SINGLE_POST_ATTACHMENT_LIMIT = (MAX_REQUEST_BYTES - REQUEST_MARGIN_BYTES) * 3 // 4
# Exchange Online's upper bound for a message (tenants default to 35 MB and may raise it).
MAX_MESSAGE_BYTES = 150 * 1024 * 1024
# How long a refused upload session makes the strategy refuse records that would need one.
SESSION_REFUSAL_MEMORY_SECONDS = 3600.0


@dataclass(frozen=True)
class AttachmentPlan:
    inline: tuple[RenderedAttachment, ...]  # inside the create POST
    after_create: tuple[RenderedAttachment, ...]  # added to the created item, one by one
    missing: int  # not captured: not sent, the body already says so


class AttachmentStrategy(Protocol):
    """Decides how each attachment reaches the item, and adds those that miss the create.

    One instance per writer: it may keep connections on the writer's event loop.
    """

    def plan(self, item: RenderedItem) -> AttachmentPlan:
        """Raises PermanentError for an item it can never deliver, before any request."""
        ...

    async def attach(
        self, graph: GraphSession, mailbox: str, message_id: str, attachment: RenderedAttachment
    ) -> None: ...

    async def aclose(self) -> None: ...


class UploadSessionRefused(Exception):
    """Graph refused an attachment upload session on the (non-draft) item."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UploadSessionAttachments:
    """Inline while the create request stays under 4 MB; the others added after the create.

    Attachments under 3 MB go inline, smallest first, while the create request stays under 4 MB
    (their bytes are read whole: they are small). One that misses the create is posted on its own
    (``POST .../messages/{id}/attachments``) when it is under 3 MB, else uploaded through
    ``createUploadSession`` and plain httpx PUTs of at most ``chunk_bytes`` with ``Content-Range``
    and no Authorization header (the upload URL carries its own token, so it is never logged; it
    is used only on the cloud's Exchange hosts, see ``checked_upload_url``),
    read one chunk at a time from ``payload.open()``. The SDK's LargeFileUploadTask is avoided: it
    is known to misbehave with Outlook items.

    Should Graph's session minimum be larger than ours, an attachment it refuses as too small is
    posted on its own when that still fits a request. Should Graph refuse sessions on non-drafts,
    see docs/graph.md ("Large attachments"). ``upload_sessions=False`` (clouds without upload sessions) refuses
    records with an attachment that fits no single request, before anything is created.

    Memory, measured (``test_30mb_file_backed_attachment_streams_with_peak_memory_far_below_its_size``):
    a 30 MiB file-backed attachment archived with a tracemalloc peak of about 6.6 MiB above the
    baseline for the whole process, of which the writer's share is one 3.1 MiB chunk and one
    256 KiB send slice; the rest is LocalGraph's own copy of the chunk it is receiving.
    """

    def __init__(
        self,
        *,
        upload_sessions: bool = True,
        chunk_bytes: int = UPLOAD_CHUNK_BYTES,
        chunk_retries: int = 2,
        retry_max_wait_seconds: float = 5.0,
        timeout_seconds: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        if chunk_bytes <= 0 or chunk_bytes > MAX_REQUEST_BYTES or chunk_bytes % (320 * 1024):
            raise ConfigurationError("upload chunks must be a multiple of 320 KiB and at most 4 MB")
        self.upload_sessions = upload_sessions
        self.chunk_bytes = chunk_bytes
        # A chunk PUT is Graph's retry policy (``chunk_retries`` retries, no wait above
        # ``retry_max_wait_seconds`` slept) on any server error too: the upload host is not behind
        # kiota, and a chunk refused for good costs the whole item (the writer removes it).
        self.retry_policy = retry_policy or replace(
            graph_retry_policy(chunk_retries, retry_max_wait_seconds),
            retry_statuses=THROTTLING_STATUSES | SERVER_ERRORS,
        )
        self.timeout_seconds = timeout_seconds
        self._clock = clock
        self._sessions_refused_at: float | None = None
        self._http: httpx.AsyncClient | None = None

    # -- planning -----------------------------------------------------------------------------

    def plan(self, item: RenderedItem) -> AttachmentPlan:
        present = [a for a in item.attachments if not a.missing]
        total = sum(a.size for a in present)
        if total > MAX_MESSAGE_BYTES:
            raise PermanentError(
                PoisonReason.TOO_BIG, f"{total} bytes of attachments exceed Exchange's message size limit"
            )
        base = create_request_estimate(item)
        if base > MAX_REQUEST_BYTES - REQUEST_MARGIN_BYTES:
            raise PermanentError(PoisonReason.TOO_BIG, f"the item without attachments takes {base} bytes of JSON")
        budget = MAX_REQUEST_BYTES - REQUEST_MARGIN_BYTES - base
        inline_ids: set[int] = set()
        for attachment in sorted(present, key=lambda a: a.size):
            cost = inline_cost(attachment)
            if attachment.size >= UPLOAD_SESSION_MIN_BYTES or cost > budget:
                break
            budget -= cost
            inline_ids.add(id(attachment))
        after = tuple(a for a in present if id(a) not in inline_ids)
        needs_session = [a for a in after if a.size >= UPLOAD_SESSION_MIN_BYTES]
        if needs_session and not self._sessions_usable():
            why = "refused by Graph recently" if self.upload_sessions else "disabled"
            raise PermanentError(
                PoisonReason.TOO_BIG,
                f"{len(needs_session)} attachment(s) of 3 MB or more need an upload session, {why}",
            )
        return AttachmentPlan(
            inline=tuple(a for a in present if id(a) in inline_ids),
            after_create=after,
            missing=len(item.attachments) - len(present),
        )

    def _sessions_usable(self) -> bool:
        if not self.upload_sessions:
            return False
        refused = self._sessions_refused_at
        return refused is None or self._clock() - refused > SESSION_REFUSAL_MEMORY_SECONDS

    # -- adding after the create --------------------------------------------------------------

    async def attach(
        self, graph: GraphSession, mailbox: str, message_id: str, attachment: RenderedAttachment
    ) -> None:
        if attachment.size < UPLOAD_SESSION_MIN_BYTES:
            await self._post_attachment(graph, mailbox, message_id, attachment)
            return
        try:
            await self._upload(graph, mailbox, message_id, attachment)
        except _SessionTooSmall:
            if attachment.size > SINGLE_POST_ATTACHMENT_LIMIT:
                raise PermanentError(
                    PoisonReason.TOO_BIG,
                    f"an attachment of {attachment.size} bytes is below Graph's upload-session minimum "
                    "and above what one request carries",
                ) from None
            await self._post_attachment(graph, mailbox, message_id, attachment)
        except UploadSessionRefused as refused:
            self._sessions_refused_at = self._clock()
            logger.error("graph upload sessions refused on non-draft items (%s): large attachments "
                         "cannot be archived with this strategy", refused.detail)
            raise PermanentError(PoisonReason.TOO_BIG, f"upload session refused: {refused.detail}") from None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _post_attachment(
        self, graph: GraphSession, mailbox: str, message_id: str, attachment: RenderedAttachment
    ) -> None:
        data = await read_small(attachment)
        builder = graph.client.users.by_user_id(mailbox).messages.by_message_id(message_id).attachments
        request = builder.to_post_request_information(file_attachment(attachment, data))
        del data
        await graph.call(
            "attachment_add", mailbox, lambda: graph.raw(request), target=Target.ITEM,
            upload_bytes=len(request.content or b""),
        )

    async def _upload(
        self, graph: GraphSession, mailbox: str, message_id: str, attachment: RenderedAttachment
    ) -> None:
        from msgraph.generated.models.attachment_item import AttachmentItem
        from msgraph.generated.models.attachment_type import AttachmentType
        from msgraph.generated.users.item.messages.item.attachments.create_upload_session.create_upload_session_post_request_body import (  # noqa: E501
            CreateUploadSessionPostRequestBody,
        )

        assert attachment.payload is not None  # planned attachments are present
        total = attachment.size
        body = CreateUploadSessionPostRequestBody(
            attachment_item=AttachmentItem(
                attachment_type=AttachmentType.File,
                name=attachment.file_name,
                size=total,
                content_type=attachment.content_type,
            )
        )
        builder = graph.client.users.by_user_id(mailbox).messages.by_message_id(message_id).attachments
        try:
            request = builder.create_upload_session.to_post_request_information(body)
            session = await graph.send(mailbox, lambda: graph.raw(request))
        except ArchiveError:
            raise
        except Exception as exc:
            verdict = classify(exc, "upload_session_create", mailbox, Target.UPLOAD_SESSION)
            if verdict.meaning is Meaning.SESSION_TOO_SMALL:
                raise _SessionTooSmall() from None
            if verdict.meaning is Meaning.SESSION_REFUSED and verdict.failure is not None:
                raise UploadSessionRefused(verdict.failure.describe("upload_session_create")) from None
            raise verdict.error from None
        upload_url = string(session, "uploadUrl")
        if upload_url is None:
            raise TransientError("graph returned an upload session without an upload URL")
        upload_url = checked_upload_url(upload_url, graph.base_url, graph.cloud)

        http = self._client()
        reader = await asyncio.to_thread(attachment.payload.open)
        try:
            start = 0
            while start < total:
                size = min(self.chunk_bytes, total - start)
                chunk = await asyncio.to_thread(_read_exactly, reader, size)
                if len(chunk) != size:
                    raise PermanentError(PoisonReason.ATTACHMENT_CORRUPT, "payload shorter than its size")
                if start + size == total and await asyncio.to_thread(reader.read, 1):
                    raise PermanentError(PoisonReason.ATTACHMENT_CORRUPT, "payload longer than its size")
                await self._put_chunk(graph, mailbox, http, upload_url, chunk, start, total)
                start += size
                del chunk  # one chunk in memory at a time: drop it before reading the next
        finally:
            await asyncio.to_thread(reader.close)

    async def _put_chunk(
        self,
        graph: GraphSession,
        mailbox: str,
        http: httpx.AsyncClient,
        url: str,
        chunk: bytes,
        start: int,
        total: int,
    ) -> None:
        import httpx

        end = start + len(chunk) - 1
        headers = {
            "Content-Range": f"bytes {start}-{end}/{total}",
            "Content-Length": str(len(chunk)),
            "Content-Type": "application/octet-stream",
        }
        retry = self.retry_policy
        while True:
            body = _slices(chunk)
            try:
                async with graph.gate.slot(mailbox):
                    # Mid-upload the chunk waits for its turn however long: giving up here would
                    # throw away the chunks already sent, which counted against the budget too.
                    await graph.pace(mailbox, upload_bytes=len(chunk), may_defer=False)
                    # httpx sends any bytes-like slice; its annotation says bytes (no copy made here).
                    response = await http.put(url, content=body, headers=headers)  # pyright: ignore[reportArgumentType]
            except httpx.TransportError as exc:
                decision = retry.after_failure(method="PUT")
                if not decision.retry:
                    raise TransientError(f"upload chunk failed: {type(exc).__name__}") from None
                retry = decision.policy
                await asyncio.sleep(decision.wait)
                continue
            finally:
                await body.aclose()
            status = response.status_code
            if status in (200, 201, 202, 204):
                return
            verdict = classify_upload_chunk(response)
            if isinstance(verdict.error, PermanentError):  # too large: no retry makes it fit
                raise verdict.error
            decision = retry.after_failure(
                method="PUT", status=status, retry_after_header=response.headers.get("Retry-After")
            )
            failure = verdict.failure
            if failure is not None and failure.throttled:
                graph.throttled(mailbox, decision.retry_after)
            if failure is not None and failure.throttling:
                # Chunks go to the upload host outside kiota, whose retry handler counts the rest.
                telemetry.count_graph_throttled(status)
            if not decision.retry:
                raise verdict.error
            retry = decision.policy
            await asyncio.sleep(decision.wait)

    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._http is None:
            # Separate from the Graph client on purpose: no auth middleware, so no bearer token
            # can reach the upload host, and no retry handler resending octet streams.
            self._http = httpx.AsyncClient(timeout=self.timeout_seconds, follow_redirects=False)
        return self._http


# Slices handed to httpx: h11 copies what it sends, so a slice, not the whole chunk, is copied at
# a time. The chunk is passed through a generator rather than as ``content=bytes`` because
# httpx's Response and its stream reference each other: a cycle that would keep every sent chunk
# alive until the garbage collector runs (measured: four 3 MB chunks at once).
_SEND_SLICE_BYTES = 256 * 1024


async def _slices(chunk: bytes) -> AsyncGenerator[memoryview]:
    view = memoryview(chunk)
    try:
        for offset in range(0, len(view), _SEND_SLICE_BYTES):
            yield view[offset : offset + _SEND_SLICE_BYTES]
    finally:
        view.release()


class _SessionTooSmall(Exception):
    """Graph's upload-session minimum is above this attachment's size."""


def _read_exactly(reader: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at the end of the stream (raw files may return short reads)."""
    first = reader.read(size)
    if len(first) == size or not first:
        return first
    parts = [first]
    got = len(first)
    while got < size:
        more = reader.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


async def read_small(attachment: RenderedAttachment) -> bytes:
    """All the bytes of a small attachment (one that fits a single request), read off the event
    loop and size-checked. Large ones are only ever streamed."""
    if attachment.payload is None:
        raise ValueError("attachment not captured")
    if attachment.size > SINGLE_POST_ATTACHMENT_LIMIT:
        raise ValueError("only attachments that fit one request are read whole")
    data = await asyncio.to_thread(read_all, attachment.payload)
    if len(data) != attachment.size:
        raise PermanentError(PoisonReason.ATTACHMENT_CORRUPT, "payload size differs from what it declared")
    return data


def create_upload_bytes(item: RenderedItem, plan: AttachmentPlan) -> int:
    """About the size of the create request's body (a little more), before it is built."""
    return create_request_estimate(item) + sum(inline_cost(a) for a in plan.inline)


def inline_cost(attachment: RenderedAttachment) -> int:
    encoded = 4 * math.ceil(attachment.size / 3)
    return encoded + len(json.dumps(attachment.file_name)) + len(attachment.content_type) + 160

