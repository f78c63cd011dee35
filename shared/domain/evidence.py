"""What the evidence store holds, by name: ``raw/<kind>/<sha256>``, one blob per piece of captured
bytes. The name is the content's SHA-256, so the same bytes captured twice are kept once, and a name
proves what its blob must hold: anyone can recompute it (``python -m shared.cli verify``)."""

from __future__ import annotations

import re

# What was captured, as it arrived: a page of TeleMessage records as listed (one compact JSON record a
# line), a webhook body as Meta signed it, a send the firm's application reported, a custodian's export
# file and its sidecar, a media file, a capture vendor's EML drop (a ZIP) and each EML in it; and what
# the connector made of them: each window's manifest (a link of the chain, shared/domain/manifest.py)
# and its final admin report (JSON and CSV).
KINDS = ("telemessage-page", "webhook-body", "outbound-post", "chat-export", "chat-export-sidecar", "media",
         "eml-drop", "eml",
         "manifest", "admin-report")
_NAME = re.compile(r"raw/(?P<kind>[a-z][a-z0-9-]{1,40})/(?P<sha256>[0-9a-f]{64})")


class EvidenceNameError(ValueError):
    pass


def evidence_name(kind: str, sha256: str) -> str:
    if kind not in KINDS:
        raise EvidenceNameError(f"not a kind of evidence: one of {', '.join(KINDS)}")
    name = f"raw/{kind}/{sha256}"
    if not _NAME.fullmatch(name):
        raise EvidenceNameError("not a SHA-256 in lower-case hex")
    return name


def parse_evidence_name(name: object) -> tuple[str, str]:
    """(kind, sha256) of an evidence name; EvidenceNameError for anything else."""
    found = _NAME.fullmatch(name) if isinstance(name, str) else None
    if found is None or found.group("kind") not in KINDS:
        raise EvidenceNameError("not an evidence name (raw/<kind>/<sha256>)")
    return found.group("kind"), found.group("sha256")
