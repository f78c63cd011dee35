"""Figure (a): the connector's own work per record, on one core, with no I/O but the spool.

``ItemImporter.import_raw`` (validation, mapping, media spooling with its SHA-256 check, rendering,
the size check) runs for every record of the realistic mix, as the items function runs it, with
the network replaced: the mapper answers from memory, the source serves attachment bytes from
memory, and the writer builds the Graph create request's JSON body as the writer sends it
(``create_body``, attachments that travel inline included) and stops there. CPU time
is the calling thread's (``time.thread_time``): one core.

A second pass over the same records times the stages one by one, the leads for optimisation.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from bench.records import RecordSet


class _Source:
    def __init__(self, media: dict[str, bytes | None]) -> None:
        self._media = media

    def list_page(self, *args: Any) -> Any:
        raise NotImplementedError

    def open_attachment(self, attachment_id: str) -> Iterator[bytes] | None:
        data = self._media.get(attachment_id)
        if data is None:
            return None
        return iter([data[i : i + 65536] for i in range(0, len(data), 65536)])


class _Mapper:
    def __init__(self) -> None:
        # Imported once here, not on every record: an import statement in the loop is the
        # harness's cost, not the connector's.
        from shared.domain.ledger import MappingRule
        from shared.service.mapping import MappedMailbox

        self._mapped = lambda address: MappedMailbox(address, MappingRule.EMAIL)

    def map_record(self, record: Any) -> list[Any]:
        mailboxes = [p.email for p in (record.sender, *record.recipients) if getattr(p, "email", None)]
        return [self._mapped(mailboxes[0].lower())] if mailboxes else []


class CreateBodyWriter:
    """A MailboxWriter that does the CPU part of a Graph write: plan the attachments and write the
    create request's body. Nothing is sent."""

    def __init__(self) -> None:
        # Everything imported once here, not on every record: an import statement in the loop is
        # the harness's cost, not the connector's.
        from shared.adapters import graph_message
        from shared.adapters.graph_attachments import UploadSessionAttachments
        from shared.domain.rendered import read_all
        from shared.ports import WriteOutcome

        self._graph_message = graph_message
        self._read_all = read_all
        self._attachments = UploadSessionAttachments()
        self._imported = WriteOutcome.IMPORTED
        self.bytes = 0

    def write(self, mailbox: str, item: Any, *, check_existing: bool = True) -> Any:
        self.bytes += len(self.create_body(item))
        return self._imported

    def create_body(self, item: Any) -> bytes:
        graph_message = self._graph_message
        plan = self._attachments.plan(item)
        inline = [(a, self._read_all(a.payload)) for a in plan.inline]
        body, _ = graph_message.create_body(item, item_class=graph_message.DEFAULT_ITEM_CLASS,
                                            id_property=graph_message.id_property_id(), inline=inline)
        return body


def media_bytes(records: RecordSet) -> dict[str, bytes | None]:
    from shared.local.traffic.media import media_bytes as _media_bytes

    return {
        attachment_id: _media_bytes(records.seed, attachment_id, size, content_type) if captured else None
        for attachment_id, (size, content_type, captured) in records.media.items()
    }


def measure_rendering(records: RecordSet, *, rounds: int = 2, max_item_mb: int = 10) -> dict[str, Any]:
    import json

    from shared.service.importing import ItemImporter

    raws = [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in records.records]
    media = media_bytes(records)
    writer = CreateBodyWriter()
    importer = ItemImporter(_Mapper(), writer, _Source(media), max_item_bytes=max_item_mb * 1024 * 1024,
                            default_region="GB")
    for raw in raws[:20]:  # warm-up: first-use imports and caches are the cold start's business
        importer.import_raw(raw)
    outcomes: Counter[str] = Counter()
    started = time.thread_time()
    for _ in range(rounds):
        for raw in raws:
            outcomes[importer.import_raw(raw).outcome.value] += 1
    cpu = time.thread_time() - started
    processed = len(raws) * rounds
    return {
        "records": processed,
        "cpu_seconds": round(cpu, 3),
        "records_per_second": round(processed / cpu, 1),
        "cpu_ms_per_record": round(1000 * cpu / processed, 3),
        "outcomes": dict(outcomes),
        "create_body_kib_per_record": round(writer.bytes / processed / 1024, 1),
        "stages_ms_per_record": stage_breakdown(raws, media, max_item_mb=max_item_mb),
    }


def stage_breakdown(raws: list[bytes], media: dict[str, bytes | None], *, max_item_mb: int) -> dict[str, float]:
    """CPU per record of each step the importer takes (same order), over the records it archives."""
    from shared.domain.records import parse_record
    from shared.domain.rendered import base64_mime_size
    from shared.domain.rendering import render
    from shared.service.media import MediaSpool

    stages: Counter[str] = Counter()
    writer = CreateBodyWriter()
    source = _Source(media)
    counted = 0
    for raw in raws:
        t0 = time.thread_time()
        record = parse_record(raw)
        t1 = time.thread_time()
        if sum(base64_mime_size(a.size) for a in record.attachments) > max_item_mb * 1024 * 1024:
            continue  # poisoned too_big before any work
        with MediaSpool(source, max_bytes=max_item_mb * 1024 * 1024) as spool:
            payloads = {a.attachment_id: spool.payload(a) for a in record.attachments}
            t2 = time.thread_time()
            item = render(record, payloads, default_region="GB")
            t3 = time.thread_time()
            item.mime_size()
            t4 = time.thread_time()
            writer.create_body(item)
            t5 = time.thread_time()
        counted += 1
        stages["validate (pydantic)"] += t1 - t0
        stages["media spool + SHA-256"] += t2 - t1
        stages["render (text + HTML)"] += t3 - t2
        stages["size check (mime_size)"] += t4 - t3
        stages["Graph create body (JSON)"] += t5 - t4
    return {name: round(1000 * seconds / max(1, counted), 3) for name, seconds in stages.items()}
