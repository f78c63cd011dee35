"""Start and stop the repo's pinned Azurite (node_modules) for tests and the local demo.

    with Azurite() as azurite:                       # in-memory, free loopback ports
        QueueServiceClient.from_connection_string(azurite.connection_string)

Ports are chosen by Azurite itself (port 0) and read back from its startup lines, so two test
sessions on one machine cannot race for the same port. `restart()` keeps those ports, so clients
built from `connection_string` keep working across a restart (fault tests rely on this).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["ACCOUNT_KEY", "ACCOUNT_NAME", "Azurite", "AzuriteError"]

# The documented, public development-storage account: not a secret.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_SERVICES = ("blob", "queue", "table")
_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at \S+:(\d+)")
_REPO_ROOT = Path(__file__).resolve().parents[2]  # shared/local/azurite.py -> repo root


class AzuriteError(RuntimeError):
    pass


def _azurite_entry() -> Path:
    entry = _REPO_ROOT / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
    if not entry.is_file():
        raise AzuriteError(
            f"Azurite is not installed under {_REPO_ROOT / 'node_modules'}: run npm ci in {_REPO_ROOT}"
        )
    return entry


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the whole process group (Azurite closes its servers and flushes --location), then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Azurite:
    """One Azurite process (blob, queue, table) on loopback; a context manager.

    `location=None` keeps all data in memory (lost on `restart()`); with a directory, data survives
    `restart()`.
    """

    def __init__(
        self,
        *,
        location: Path | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.location = Path(location) if location is not None else None
        self.host = host
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._entry = _azurite_entry()
        self._node = shutil.which("node")
        if self._node is None:
            raise AzuriteError("node is not on PATH: Azurite needs Node.js (see package.json)")
        self._ports: dict[str, int] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self._workdir: Path | None = None
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        with self._lock:
            if self._proc is not None:
                raise AzuriteError("Azurite is already running")
            if self._workdir is None:
                # Azurite's cwd and log live here, so nothing lands in the repo checkout.
                self._workdir = Path(tempfile.mkdtemp(prefix="azurite-"))
                atexit.register(shutil.rmtree, self._workdir, True)
            if self.location is not None:
                self.location.mkdir(parents=True, exist_ok=True)
            self._spawn()
        return self

    def stop(self) -> None:
        with self._lock:
            self._terminate()
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None

    def restart(self) -> None:
        """Stop and start again on the same ports and location (in-memory data is lost)."""
        with self._lock:
            if not self._ports:
                raise AzuriteError("restart() needs a started Azurite")
            self._terminate()
            self._spawn()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- endpoints -------------------------------------------------------------------------------

    @property
    def blob_port(self) -> int:
        return self._port("blob")

    @property
    def queue_port(self) -> int:
        return self._port("queue")

    @property
    def table_port(self) -> int:
        return self._port("table")

    def endpoint(self, service: str) -> str:
        return f"http://{self.host}:{self._port(service)}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.endpoint('blob')};QueueEndpoint={self.endpoint('queue')};"
            f"TableEndpoint={self.endpoint('table')};"
        )

    def output_tail(self, lines: int = 30) -> str:
        if self._workdir is None:
            return ""
        try:
            text = (self._workdir / "azurite.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- internals -------------------------------------------------------------------------------

    def _port(self, service: str) -> int:
        if service not in self._ports:
            raise AzuriteError("Azurite has not been started")
        return self._ports[service]

    def _command(self) -> list[str]:
        assert self._node is not None
        cmd = [self._node, str(self._entry)]
        for service in _SERVICES:
            # Port 0 on the first start lets the OS pick; a restart reuses what was picked.
            cmd += [f"--{service}Host", self.host, f"--{service}Port", str(self._ports.get(service, 0))]
        cmd += ["--skipApiVersionCheck", "--disableTelemetry", "--loose", "--silent"]
        if self.location is None:
            cmd.append("--inMemoryPersistence")
        else:
            cmd += ["--location", str(self.location)]
        # PR_SET_PDEATHSIG: the kernel kills Azurite if this process dies without running atexit
        # (SIGKILL, OOM). It fires when the *forking thread* exits, so only use it from the main thread.
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            cmd = [setpriv, "--pdeathsig", "SIGKILL", "--", *cmd]
        return cmd

    def _spawn(self) -> None:
        assert self._workdir is not None
        log_path = self._workdir / "azurite.log"
        with open(log_path, "ab") as log:
            log.write(b"--- starting azurite ---\n")
            log.flush()
            proc = subprocess.Popen(
                self._command(),
                cwd=self._workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() kills node and anything it spawns
            )
        self._proc = proc
        # Safety net for forgotten stop(): runs at garbage collection or interpreter exit.
        self._finalizer = weakref.finalize(self, _kill_group, proc, 2.0)
        try:
            self._wait_ready(log_path)
        except BaseException:
            self._terminate()
            raise

    def _wait_ready(self, log_path: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        wanted = set(_SERVICES)
        while True:
            if self._proc.poll() is not None:
                raise AzuriteError(
                    f"Azurite exited with code {self._proc.returncode} during startup:\n{self.output_tail()}"
                )
            if not self._ports.keys() >= wanted:
                text = log_path.read_text(errors="replace").split("--- starting azurite ---")[-1]
                for name, port in _LISTENING.findall(text):
                    self._ports[name.lower()] = int(port)
            if self._ports.keys() >= wanted and all(_port_open(self.host, p) for p in self._ports.values()):
                return
            if time.monotonic() > deadline:
                raise AzuriteError(
                    f"Azurite did not accept connections within {self.startup_timeout:.0f}s "
                    f"(ports found: {self._ports}); output tail:\n{self.output_tail()}"
                )
            time.sleep(0.05)

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if proc is not None:
            _kill_group(proc, self.stop_timeout)
