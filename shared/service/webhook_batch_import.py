"""``import --format whatsapp-cloud``: a file of WhatsApp Business Platform webhook bodies, one per
line as Meta sent them, through the same parsing as the webhook and the same import as every record.

Why it is built this way:
- Each line is one body: ``parse_webhook`` turns it into records, receipts, problems and notices,
  exactly as the ``listing`` queue does for a delivered body. A line that is no body at all (not
  JSON, not a WhatsApp envelope, over the 3 MB Meta sends at most) is one more problem: poisoned
  ``invalid_item`` in the report with its line and the JSON path at fault, never the batch's end.
- Meta redelivers, so a file may hold the same message more than once: every occurrence goes to the
  importer, whose writers are idempotent, and the later ones come back as skipped duplicates. A
  second run of the whole file writes nothing.
- Media is captured before its record is imported, as the webhook path does, into a folder that
  lives as long as the run: a redelivered message reuses its bytes, and a media id Meta no longer
  has is asked for once. Without a fetcher (no access token) every media id counts as not captured:
  the records are still archived, saying so, and count as partially imported.
- Receipts carry no content: they are counted per status (once per wamid and status, however often
  Meta sent them), and the failed ones are listed with Meta's error codes, never as items.
- A file has no arrival times: every record's capture time is the run's start.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from shared.domain.errors import ConfigurationError, PermanentError, PoisonReason
from shared.domain.json_values import is_json_object
from shared.domain.tasks import capturable_media_ids
from shared.domain.webhook_auth import MAX_BODY_BYTES
from shared.domain.whatsapp_cloud import (
    BODY,
    ParsedMessage,
    StatusEvidence,
    WebhookBatch,
    WebhookProblem,
    parse_webhook,
)
from shared.ports import MediaFetcher
from shared.service.batch_import import BatchReport, import_with_retries
from shared.service.import_results import ImportResult
from shared.service.importing import ItemImporter
from shared.service.listing import serialise_item
from shared.service.media import is_closable

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class CapturedMediaFiles(contextlib.AbstractContextManager["CapturedMediaFiles", None]):
    """The run's captured media (a ``CapturedMediaStore``): one file per media id in a private
    temporary folder, removed when the run ends. Import reads it as the source's attachments."""

    def __init__(self, spool_dir: str | None = None) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="wa-import-media-", dir=spool_dir)
        self._root = Path(self._folder.name)

    def __exit__(self, *exc_info: object) -> None:
        self._folder.cleanup()

    def _path(self, media_id: str) -> Path:
        return self._root / hashlib.sha256(media_id.encode("utf-8")).hexdigest()

    def has(self, media_id: str) -> bool:
        return self._path(media_id).is_file()

    def put(self, media_id: str, chunks: Iterator[bytes], metadata: dict[str, str]) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        descriptor, partial = tempfile.mkstemp(dir=self._root, prefix=".incoming-")
        try:
            with os.fdopen(descriptor, "wb") as handle, contextlib.closing(chunks) \
                    if is_closable(chunks) else contextlib.nullcontext():
                for chunk in chunks:
                    size += len(chunk)
                    digest.update(chunk)
                    handle.write(chunk)
            # Complete or absent: a download that broke off leaves no file that reads as captured.
            os.replace(partial, self._path(media_id))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
        return size, digest.hexdigest()

    def open_attachment(self, media_id: str) -> Iterator[bytes] | None:
        try:
            handle = self._path(media_id).open("rb")
        except FileNotFoundError:
            return None
        return _read_chunks(handle)

    def forget(self, media_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(media_id).unlink()


def _read_chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


@dataclass
class WebhookImportReport:
    """batch_import's report (one entry per message or problem), plus what only webhooks carry."""

    batch: BatchReport = field(default_factory=BatchReport)
    bodies: int = 0
    statuses: Counter[str] = field(default_factory=Counter[str])
    repeated_statuses: int = 0
    failed_statuses: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    notices: Counter[str] = field(default_factory=Counter[str])
    media_captured: int = 0
    media_not_captured: int = 0
    media_note: str | None = None
    stopped: dict[str, Any] | None = None
    _receipts: set[tuple[str, str]] = field(default_factory=set[tuple[str, str]], init=False, repr=False)

    def add_message(self, line: int, message: ParsedMessage, result: ImportResult) -> None:
        self.batch.add(line, result, message.message_id)["path"] = message.path

    def add_problem(self, line: int, problem: WebhookProblem) -> None:
        error = PermanentError(PoisonReason.INVALID_ITEM, problem.detail[:2000])
        self.batch.add(line, ImportResult.poisoned(problem.message_id, error), problem.message_id)["path"] = \
            problem.path

    def add_status(self, line: int, status: StatusEvidence) -> None:
        if status.key in self._receipts:
            self.repeated_statuses += 1
            return
        self._receipts.add(status.key)
        self.statuses[status.status] += 1
        if status.failed:
            # Code and title only: Meta's longer texts may quote the recipient.
            errors = [{"code": e.get("code") if isinstance(e.get("code"), int) else None,
                       "title": e.get("title") if isinstance(e.get("title"), str) else None}
                      for e in status.errors if is_json_object(e)]  # Meta's JSON: any shape may come
            self.failed_statuses.append({"line": line, "path": status.path, "messageId": status.message_id,
                                         "errors": errors})

    def to_json(self) -> dict[str, Any]:
        counts = self.batch.to_json()
        items = counts.pop("items")
        report: dict[str, Any] = {"format": "whatsapp-cloud", "bodies": self.bodies, **counts}
        report["statuses"] = {
            "counts": dict(sorted(self.statuses.items())),
            "repeated": self.repeated_statuses,
            "failed": self.failed_statuses,
        }
        media: dict[str, int | str] = {"captured": self.media_captured, "not_captured": self.media_not_captured}
        if self.media_note:
            media["note"] = self.media_note
        report["media"] = media
        report["notices"] = dict(sorted(self.notices.items()))
        if self.stopped is not None:
            report["stopped"] = self.stopped
        report["items"] = items
        return report


class _MediaCapture:
    """Fetches each media id of the run at most once (a repeat reuses the captured bytes, and an id
    Meta no longer has is not asked for again)."""

    def __init__(self, fetcher: MediaFetcher | None, store: CapturedMediaFiles, report: WebhookImportReport) -> None:
        self._fetcher = fetcher
        self._store = store
        self._report = report
        self._gone: set[str] = set()

    def capture(self, media_ids: list[str]) -> None:
        for media_id in media_ids:
            if media_id in self._gone or self._store.has(media_id):
                continue
            chunks = self._fetcher.open_media(media_id) if self._fetcher is not None else None
            if chunks is None:
                self._gone.add(media_id)
                self._report.media_not_captured += 1
                continue
            self._store.put(media_id, chunks, {})
            self._report.media_captured += 1

    def forget(self, media_ids: list[str]) -> None:
        for media_id in media_ids:
            if self._store.has(media_id):
                self._store.forget(media_id)
                self._report.media_captured -= 1


def import_webhook_lines(
    lines: BinaryIO, importer: ItemImporter, *, store: CapturedMediaFiles, fetcher: MediaFetcher | None,
    received_at: datetime, media_note: str | None = None, sleep: Callable[[float], None] = time.sleep,
) -> WebhookImportReport:
    """Every non-blank line is read; nothing here raises for bad input. ``importer`` reads this
    source's media from ``store``. A ConfigurationError (Meta refused the token) stops the run at
    its line, recorded in ``stopped``: the lines after it are for a run with the setting fixed."""
    report = WebhookImportReport(media_note=media_note)
    media = _MediaCapture(fetcher, store, report)
    for number, line in _bounded_lines(lines, MAX_BODY_BYTES):
        report.bodies += 1
        if line is None:
            report.add_problem(number, WebhookProblem(
                BODY, BODY, f"the line is longer than {MAX_BODY_BYTES} bytes, the most Meta sends in one body", None,
            ))
            continue
        batch = parse_webhook(line, received_at=received_at)
        try:
            _import_batch(number, batch, importer, media, report, sleep)
        except ConfigurationError as error:
            report.stopped = {"line": number, "error": str(error)}
            break
    log.info("webhook import: %d line(s), %d record(s) and problem(s), %d receipt(s)",
             report.bodies, len(report.batch.items), sum(report.statuses.values()) + report.repeated_statuses)
    return report


def _import_batch(
    number: int, batch: WebhookBatch, importer: ItemImporter, media: _MediaCapture, report: WebhookImportReport,
    sleep: Callable[[float], None],
) -> None:
    for message in batch.messages:
        report.add_message(number, message, _import_message(message, importer, media, sleep))
    for problem in batch.problems:
        report.add_problem(number, problem)
    for status in batch.statuses:
        report.add_status(number, status)
    report.notices.update(notice.kind for notice in batch.notices)


def _import_message(
    message: ParsedMessage, importer: ItemImporter, media: _MediaCapture, sleep: Callable[[float], None],
) -> ImportResult:
    media_ids = capturable_media_ids(message.record)  # as the webhook path fetches them
    # Bytes damaged in transit fail their digest: the next attempt downloads them again.
    return import_with_retries(
        importer, serialise_item(message.record), message_id=message.message_id, label=message.key[:16],
        sleep=sleep, before=lambda: media.capture(media_ids), after_failure=lambda: media.forget(media_ids),
    )


def _bounded_lines(handle: BinaryIO, limit: int) -> Iterable[tuple[int, bytes | None]]:
    """(line number, line) for every non-blank line; None for a line over ``limit`` bytes, which is
    skipped without being held in memory."""
    number = 0
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        number += 1
        if number == 1:
            line = line.removeprefix(codecs.BOM_UTF8)  # Notepad and PowerShell write one
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := handle.readline(_CHUNK)) and not rest.endswith(b"\n"):
                pass
            yield number, None
            continue
        if line.strip():
            yield number, line
