"""Runs demo windows with telemetry exported, through the real azure-monitor-opentelemetry exporter,
to a local stand-in for Application Insights ingestion, and writes down everything that left the
process: the envelopes the stand-in received and every line Python logging emitted.

    python -m tests.telemetry_probe OUT_DIR

tests/test_telemetry.py runs this in a subprocess (OpenTelemetry's global providers can be set
once per process) and scans what it wrote for personal data. Written to OUT_DIR:

- ``envelopes.json``: every telemetry item received, as parsed JSON;
- ``logs.json``: every log record (formatted message, exception text, ``extra=`` fields);
- ``reports.json``: the demo reports of the windows run (``eml``: the local demo, ``graph``: the
  same day through the Graph writer against the local Graph server, with throttling injected);
- ``connections.json``: connections attempted outside loopback (refused; must stay empty);
- ``anchors.json``: the traffic anchor of each window, to regenerate its people and texts.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
TOKEN = "local-graph-token"


class Ingestion:
    """Accepts ``POST .../v2.1/track`` as Application Insights does: a JSON array or newline
    delimited JSON of envelopes, gzip'd or not; answers that every item was accepted."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.posts = 0
        lock = threading.Lock()
        probe = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding", "").lower() == "gzip" or body[:2] == b"\x1f\x8b":
                    body = gzip.decompress(body)
                items = _parse(body.decode("utf-8"))
                with lock:
                    probe.envelopes.extend(items)
                    probe.posts += 1
                answer = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})
                data = answer.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> Ingestion:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client closing its keep-alive
            super().handle_error(request, client_address)


def _parse(text: str) -> list[Any]:
    text = text.strip()
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return value if isinstance(value, list) else [value]


class Capture(logging.Handler):
    """Every log record, as a host would forward it: message, exception text and extra fields."""

    _STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict[str, Any]] = []
        self._format = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception as error:  # a broken format string is still a line to scan
            message = f"{record.msg!r} {record.args!r} ({type(error).__name__})"
        line: dict[str, Any] = {"logger": record.name, "level": record.levelname, "message": message}
        if record.exc_info:
            line["exception"] = self._format.formatException(record.exc_info)
        extra = {k: repr(v) for k, v in vars(record).items() if k not in self._STANDARD}
        if extra:
            line["extra"] = extra
        self.lines.append(line)


def guard_loopback(refused: list[str]) -> None:
    """Refuse, and note, any connection or name lookup outside loopback (statsbeat, OneSettings,
    IMDS and live metrics would reach Microsoft endpoints if they were not switched off)."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.getaddrinfo":
            host = args[0]
            if isinstance(host, bytes):
                host = host.decode()
            if host is not None and str(host) not in LOOPBACK:
                refused.append(f"getaddrinfo {host}")
                raise OSError(f"telemetry probe: {host} is not loopback")
        elif event == "socket.connect":
            address = args[1]
            if isinstance(address, tuple) and address and str(address[0]) not in LOOPBACK:
                refused.append(f"connect {address[0]}")
                raise OSError(f"telemetry probe: {address[0]} is not loopback")

    sys.addaudithook(hook)


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    refused: list[str] = []
    guard_loopback(refused)
    capture = Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    root.setLevel(logging.INFO)  # what the host forwards by default (host.json: Information)

    with Ingestion() as ingestion:
        os.environ.update({
            "APPLICATIONINSIGHTS_CONNECTION_STRING": (
                f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={ingestion.endpoint}"
            ),
            # Nothing but our telemetry, and only to the stand-in.
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
            "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
            "OTEL_METRIC_EXPORT_INTERVAL": "2000",
            "OTEL_BSP_SCHEDULE_DELAY": "500",
            "OTEL_BLRP_SCHEDULE_DELAY": "500",
        })
        from shared import telemetry

        if not telemetry.configure_from_environment(disable_offline_storage=True):
            raise SystemExit("telemetry was not configured")
        import function_app  # noqa: F401 - registers the functions; configures nothing more

        reports, anchors = run_windows(out)

        from opentelemetry import _logs, metrics, trace

        for provider in (trace.get_tracer_provider(), _logs.get_logger_provider(), metrics.get_meter_provider()):
            provider.force_flush()
        for provider in (trace.get_tracer_provider(), _logs.get_logger_provider(), metrics.get_meter_provider()):
            provider.shutdown()
        envelopes = list(ingestion.envelopes)

    root.removeHandler(capture)
    (out / "envelopes.json").write_text(json.dumps(envelopes, ensure_ascii=False))
    (out / "logs.json").write_text(json.dumps(capture.lines, ensure_ascii=False))
    (out / "reports.json").write_text(json.dumps(reports))
    (out / "anchors.json").write_text(json.dumps(anchors))
    (out / "connections.json").write_text(json.dumps(refused))
    return 0


def run_windows(out: Path) -> tuple[dict[str, Any], dict[str, str]]:
    from shared.composition import reset_container
    from shared.local.demo import DemoPaths, app_settings, run_window
    from shared.local.graph_stand_in.server import LocalGraph
    from shared.local.traffic.day import generate_day

    reports: dict[str, Any] = {}
    anchors: dict[str, str] = {}
    eml = DemoPaths(out / "eml")
    eml.root.mkdir()
    reports["eml"] = run_window(eml, workers=2)
    anchors["eml"] = json.loads(eml.state.read_text())["anchor"]

    graph_paths = DemoPaths(out / "graph")
    graph_paths.root.mkdir()
    users = {address: True for address in generate_day(datetime(2026, 1, 1, tzinfo=UTC)).directory()}
    with LocalGraph(users, token=TOKEN) as graph:
        # Throttling on the way, so that archiver.graph.throttled has something to count.
        # Both are retried inside the Graph client, so the window needs no queue retry.
        graph.fail_next(429, times=3, retry_after=0.1, path_contains="/messages", method="POST")
        graph.fail_next(503, times=2, method="GET")
        with app_settings({"GRAPH_BASE_URL": graph.base_url, "GRAPH_ACCESS_TOKEN": TOKEN}):
            reports["graph"] = run_window(graph_paths, graph=True, workers=2)
        reset_container()
    anchors["graph"] = json.loads(graph_paths.state.read_text())["anchor"]
    return reports, anchors


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
