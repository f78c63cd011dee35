"""Headless Chromium (Debian's ``chromium``) for the tests that look at a page as a reviewer would: one
run per call with a fresh profile, pages served from 127.0.0.1, and a probe that reads back where each
character of a page was laid out, so a test can check visual order, not just markup."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import threading
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CHROMIUM_TIMEOUT = 60
WINDOW = (1280, 1600)


def require_chromium() -> str:
    """Debian's chromium: skipped when missing, unless REQUIRE_CHROMIUM=1 (CI), where missing fails."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("REQUIRE_CHROMIUM") == "1":
            pytest.fail("REQUIRE_CHROMIUM=1 but no `chromium` on PATH (apt-get install chromium)")
        pytest.skip("no `chromium` on PATH (Debian: apt-get install chromium); set REQUIRE_CHROMIUM=1 to fail instead")
    return path


class PageServer:
    """Serves one HTTP response (body and headers) on 127.0.0.1 and records every request it receives."""

    def __init__(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        self.requests: list[str] = []
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.requests.append(self.path)
                if self.path != path:
                    self.send_error(404)
                    return
                self.send_response(200)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{path}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """One headless run with a fresh profile; its whole process group is killed after the timeout."""
    command = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars", *args,
    ]
    profile.mkdir(parents=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=CHROMIUM_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT} s: {' '.join(args)}")
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def png_size_and_pixels(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, the decompressed scanlines) of a PNG, read with struct and zlib."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    idat, offset = b"", 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            idat += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    return width, height, zlib.decompress(idat)


# -- where each character was laid out ---------------------------------------------------------------------------

# Runs in the page after it is parsed: for every block marked data-probe (or, without any, every p, li,
# h1-h4, div and pre, and every table row as its label: the th's text names the td's), each character's
# box, as JSON in a <pre> the dump carries.
_PROBE = """<script>
(() => {
  const marked = document.querySelectorAll('[data-probe]');
  const blocks = marked.length ? marked : document.querySelectorAll('p, tr, li, h1, h2, h3, h4, pre, div');
  const out = [];
  for (const block of blocks) {
    const chars = [];
    const row = block.tagName === 'TR' && block.querySelector('th') && block.querySelector('td');
    const walker = document.createTreeWalker(row ? block.querySelector('td') : block, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) {
      let i = 0;
      for (const char of node.data) {  // by code point: an emoji is one character, not two halves
        const range = document.createRange();
        range.setStart(node, i); range.setEnd(node, i + char.length);
        const box = range.getBoundingClientRect();
        chars.push([char, box.left, box.top, box.width]);
        i += char.length;
      }
    }
    const probe = block.getAttribute('data-probe') || (row ? block.querySelector('th').textContent
                                                             : block.tagName.toLowerCase());
    out.push({probe, chars});
  }
  const pre = document.createElement('pre');
  pre.id = 'layout-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""
_PROBED = re.compile(r'<pre id="layout-probe">(.*?)</pre>', re.S)
_HALF_LINE = 8  # px, at the default 16 px font
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


@dataclass(frozen=True)
class Line:
    """One visual line of a probed block: its characters as they appear from left to right."""

    probe: str
    text: str
    left: float  # px from the page's left edge to the line's first character
    right: float  # ... and to the end of its last

    def left_of(self, first: str, second: str) -> bool:
        """Whether ``first`` (as it appears on screen) sits wholly left of ``second`` on this line."""
        a, b = self.text.find(first), self.text.find(second)
        return a >= 0 and b >= 0 and a + len(first) <= b


def visual(text: str) -> str:
    """What a right-to-left run looks like from left to right: its characters reversed (enough for
    letters without combining marks, which is what the test names are written in)."""
    return text[::-1]


def laid_out_lines(binary: str, profile: Path, page: str) -> list[Line]:
    """Loads ``page`` (an HTML document) in headless Chromium and returns every probed block's visual
    lines: characters grouped by the line box they landed on, each line read left to right."""
    body_end = page.lower().rfind("</body>")
    probed = page[:body_end] + _PROBE + page[body_end:] if body_end >= 0 else page + _PROBE
    with PageServer("/page", probed.encode(), {"Content-Type": "text/html; charset=utf-8"}) as server:
        dom = run_chromium(binary, profile, "--dump-dom", server.url).stdout.decode()
    found = _PROBED.search(dom)
    assert found, "the layout probe did not run"
    lines: list[Line] = []
    for block in json.loads(html.unescape(found.group(1))):
        # Scripts sit at different heights in one line box (Arabic and Latin glyphs come from different
        # fonts), so a line is every character whose top lies within half a line of the line's first.
        rows: list[tuple[float, list[tuple[float, float, str]]]] = []
        for char, left, top, width in sorted(block["chars"], key=lambda c: c[2]):
            if _INVISIBLE.match(char) or (width == 0 and not char.strip()):
                continue
            if not rows or top - rows[-1][0] > _HALF_LINE:
                rows.append((top, []))
            rows[-1][1].append((left, width, char))
        for _, row in rows:
            row.sort(key=lambda box: box[0])
            text = "".join(char for _, _, char in row)
            lines.append(Line(block["probe"], text, row[0][0], max(left + width for left, width, _ in row)))
    return lines


def screenshot(binary: str, profile: Path, page: str, target: Path) -> None:
    """``page`` rendered to ``target`` (a PNG kept as a test artifact)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    with PageServer("/page", page.encode(), {"Content-Type": "text/html; charset=utf-8"}) as server:
        run_chromium(binary, profile, f"--screenshot={target}", server.url)
    assert target.exists(), f"no screenshot at {target}"
