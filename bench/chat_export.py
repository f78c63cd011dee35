"""``python -m bench.chat_export``: how fast, and in how much memory, a chat export is read.

    python -m bench.chat_export                 # 10,000, 40,000 and 100,000 messages
    python -m bench.chat_export --json          # one JSON object
    python -m bench.chat_export --sizes 2000    # any sizes (CI: tests/test_bench.py runs a small one)

WhatsApp exports at most about 40,000 messages with media and 100,000 without (the numbers vary by
app version; ../shared/reference/whatsapp-chat-export.md §9). Each size is an invented iOS group chat
(five authors, one in Arabic and one a number wrapped in bidi marks; one message in eight multi-line;
media lines; identical "ok"s), written as its export text, then read in a fresh process: the figures are
the parse's wall time and the records' (``parse_chat``, then ``build_records`` and each record made and
serialised in turn, as an import takes them), messages per second, and the process's peak resident
memory (``VmHWM``) over its resident memory before the text was read — what one import holds at once
besides the app itself. The chat text an upload may hold is bounded (``MAX_TRANSCRIPT_BYTES``, 64 MiB);
the last line extrapolates the peak to that bound from the largest size measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from typing import Any

from bench.stack import REPO_ROOT

MIB = 1024 * 1024
AUTHORS = ("Dana Whitfield", "Owen Marsh", "\u0644\u064a\u0644\u0649 \u062d\u062f\u0627\u062f",
           "\u202a+44\u00a07700\u00a0900218\u202c", "Noa Cohen")
WORDS = "price confirm desk spread volume close open bid offer trade settle limit order fill book".split()

CHILD = r"""
import json, sys, time
from datetime import UTC, datetime
from pathlib import Path

def rss(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0

from shared.domain.chat_export import parse_chat
from shared.domain.chat_export_records import ExportContext, build_records
from shared.service.chat_export_import import record_bytes
data = Path(sys.argv[1]).read_bytes()
Path("/proc/self/clear_refs").write_text("5")
before = rss("VmRSS:")
started = time.perf_counter()
parsed = parse_chat(data, date_order="dmy")
parsed_at = time.perf_counter()
context = ExportContext(custodian="dana.whitfield@contoso.example", time_zone="Europe/London", chat_name="Desk",
                        file_name="WhatsApp Chat - Desk.zip", file_sha256="0" * 64, captured_at=datetime.now(UTC),
                        participants={"Dana Whitfield": "dana.whitfield@contoso.example"})
built = build_records(parsed, context)
stored = sum(len(record_bytes(item)) for item in built.iter_records())  # one at a time, as an import takes them
finished = time.perf_counter()
print(json.dumps({"lines": parsed.lines, "messages": len(parsed.messages), "records": built.count,
                  "claim_check_bytes": stored,
                  "parse_s": parsed_at - started, "build_s": finished - parsed_at,
                  "peak_rss": rss("VmHWM:"), "baseline_rss": before}))
"""


def export_text(messages: int, seed: int = 17) -> bytes:
    rng = random.Random(seed)
    clock = datetime(2026, 1, 13, 8, 0, 0)
    lines = []
    for number in range(messages):
        clock += timedelta(seconds=rng.randint(5, 400))
        stamp = f"[{clock:%d/%m/%Y, %H:%M:%S}]"
        author = rng.choice(AUTHORS)
        roll = rng.random()
        if roll < 0.04:
            body = f"\u200e<attached: {number:08d}-PHOTO-{clock:%Y-%m-%d-%H-%M-%S}.jpg>"
        elif roll < 0.07:
            body = "ok"
        elif roll < 0.19:
            body = "\r\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
                               for _ in range(rng.randint(2, 4)))
        else:
            body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20)))
        lines.append(f"{stamp} {author}: {body}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def measure(messages: int) -> dict[str, Any]:
    data = export_text(messages)
    with tempfile.NamedTemporaryFile(suffix=".txt") as handle:
        handle.write(data)
        handle.flush()
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        out = subprocess.run([sys.executable, "-c", CHILD, handle.name], capture_output=True, text=True, check=True,
                             env=env, cwd=REPO_ROOT, timeout=900)
    figures = json.loads(out.stdout)
    seconds = figures["parse_s"] + figures["build_s"]
    return {
        "messages": figures["messages"], "lines": figures["lines"], "text_mib": round(len(data) / MIB, 2),
        "parse_s": round(figures["parse_s"], 3), "build_s": round(figures["build_s"], 3),
        "messages_per_s": round(figures["messages"] / seconds) if seconds else None,
        "peak_over_baseline_mib": round((figures["peak_rss"] - figures["baseline_rss"]) / MIB, 1),
        "mib_per_text_mib": round((figures["peak_rss"] - figures["baseline_rss"]) / len(data), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chat_export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,40000,100000", help="message counts, comma-separated")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    runs = [measure(size) for size in sizes]
    from shared.service.chat_export_files import MAX_TRANSCRIPT_BYTES

    largest = max(runs, key=lambda run: run["text_mib"])
    at_bound = round(largest["mib_per_text_mib"] * MAX_TRANSCRIPT_BYTES / MIB)
    result = {"runs": runs, "extrapolated_peak_mib_at_text_bound": at_bound,
              "text_bound_mib": MAX_TRANSCRIPT_BYTES // MIB}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print("chat export reading (parse + records), each size in a fresh process")
    for run in runs:
        print(f"  {run['messages']:>7} messages ({run['lines']} lines, {run['text_mib']} MiB of text): "
              f"parse {run['parse_s']} s, records {run['build_s']} s, {run['messages_per_s']} messages/s, "
              f"peak +{run['peak_over_baseline_mib']} MiB ({run['mib_per_text_mib']} MiB per MiB of text)")
    print(f"  at the bound of {result['text_bound_mib']} MiB of chat text: about {at_bound} MiB "
          "(extrapolated linearly from the largest size; a Flex Consumption instance has 2,048 or 4,096 MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
