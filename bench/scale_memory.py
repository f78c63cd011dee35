"""Peak memory of status, report and the timer over a big window, each in a fresh process
(``python -m bench.scale``).

The child imports what every command uses (``function_app``, the CLI, the storage adapters), builds
the container and opens the ledger's table, then takes its resident memory as the baseline and
resets the kernel's high-water mark (``echo 5 > /proc/self/clear_refs``, as figure (f) does). Then
it runs one command, its output to a file, and reports ``VmHWM`` less the baseline:

- ``status``: ``python -m shared.cli status --json``;
- ``report``: ``python -m shared.cli report --window ID --json``, then ``--csv`` (the larger of the two);
- ``timer``: the registered ``schedule_archive_window`` function, once, as the host calls it: hand the
  next window off, account the host-moved records, read the recent windows' summaries, flag the
  overdue ones and store their reports (JSON and CSV).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.stack import REPO_ROOT

MIB = 1024 * 1024
COMMANDS = ("status", "report", "timer")

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024

import function_app  # noqa: F401 - every function's imports, as on a worker
import shared.cli.admin, shared.cli.main, shared.cli.reports, shared.domain.report, shared.service.reports
import shared.adapters.azure_storage, shared.adapters.azure_tables
from shared.composition import get_container

command, window_id, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
container = get_container()
container.ledger.window(window_id)  # the clients built, the table's connection open
container.reports, container.watermarks, container.listing_queue
baseline = status("VmRSS:")
reset = True
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    reset = False
started, cpu = time.monotonic(), time.process_time()
if command == "status":
    sys.stdout = open(out, "w")
    shared.cli.main.main(["status", "--json"])
    sys.stdout.close()
elif command == "report":
    for shape in ("--json", "--csv"):
        shared.cli.main.main(["report", "--window", window_id, shape, "--output", str(out) + shape])
elif command == "timer":
    from types import SimpleNamespace
    function = next(f for f in function_app.app.get_functions() if f.get_function_name() == "schedule_archive_window")
    function.get_user_function()(SimpleNamespace(past_due=False))
sys.stdout = sys.__stdout__
peak = status("VmHWM:") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("SCALE-RESULT " + json.dumps({"baseline": baseline, "peak": peak, "hwm_reset": reset,
                                    "seconds": time.monotonic() - started, "cpu": time.process_time() - cpu}))
"""


def measure(command: str, env: dict[str, str], window_id: str, timeout: float = 1800) -> dict[str, Any]:
    """``command`` (one of COMMANDS) in a fresh process: peak resident memory above its baseline."""
    child_env = {
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO_ROOT), **env,
    }
    with tempfile.TemporaryDirectory(prefix="scale-memory-") as folder:
        completed = subprocess.run(
            [sys.executable, "-c", CHILD, command, window_id, str(Path(folder) / "out")], cwd=REPO_ROOT,
            env=child_env, capture_output=True, text=True, timeout=timeout,
        )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("SCALE-RESULT ")]
    if not lines:
        raise RuntimeError(f"{command} failed in its fresh process ({completed.returncode}):\n"
                           f"{completed.stderr[-3000:]}")
    result = json.loads(lines[-1].removeprefix("SCALE-RESULT "))
    return {
        "peak_above_baseline_mib": round((result["peak"] - result["baseline"]) / MIB, 1),
        "baseline_mib": round(result["baseline"] / MIB, 1),
        "peak_mib": round(result["peak"] / MIB, 1),
        "high_water_mark_reset": result["hwm_reset"],
        "seconds": round(result["seconds"], 1),
        "cpu_seconds": round(result["cpu"], 1),
    }
