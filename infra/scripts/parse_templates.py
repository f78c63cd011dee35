"""Parse the infrastructure templates and print them as JSON (stdout).

    parse_templates.py terraform infra/terraform     (needs python-hcl2)
    parse_templates.py bicep infra/bicep/main.bicep  (needs pycep-parser)

Runs inside the infra virtualenvs that scripts/infra-check creates (python-hcl2 and checkov's own
hcl2 fork cannot share one environment), so it imports nothing from this repository; the checks
on the parsed templates live in tests/test_infra.py. Exit 1 with the parser's message when a
template does not parse.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def parse_terraform(directory: Path) -> dict:
    """All *.tf files of one module merged: {"resource": [...], "locals": [...], ...}."""
    import hcl2

    merged: dict[str, list] = {}
    files = sorted(directory.glob("*.tf"))
    if not files:
        raise SystemExit(f"no *.tf files in {directory}")
    for path in files:
        with path.open(encoding="utf-8") as handle:
            try:
                parsed = hcl2.load(handle)
            except Exception as error:  # the parser raises lark errors of several kinds
                raise SystemExit(f"{path}: {error}") from None
        for key, blocks in parsed.items():
            if not key.startswith("__"):
                merged.setdefault(key, []).extend(blocks)
    return merged


def parse_bicep(path: Path) -> dict:
    from pycep import BicepParser

    try:
        return BicepParser().parse(file_path=path)
    except Exception as error:
        raise SystemExit(f"{path}: {error}") from None


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("terraform", "bicep"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, target = argv[0], Path(argv[1])
    parsed = parse_terraform(target) if kind == "terraform" else parse_bicep(target)
    json.dump(parsed, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
