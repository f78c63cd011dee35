"""The status endpoint as an HTML page for people: ``render_status_page(build_status(...))``.

One self-contained document: inline CSS, an inline SVG chart, no script, no font, no image and no
address outside the page except the relative link to the JSON (the endpoint serves it with a
Content-Security-Policy of ``default-src 'none'``). Every value from the status is HTML-escaped.
The status holds ids and counts only, no personal data, and so does the page.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

__all__ = ["render_status_page"]

# The chart's drawing box (SVG user units; the SVG scales to the page's width).
_CHART_W, _CHART_H = 960, 320
_PLOT_LEFT, _PLOT_RIGHT, _PLOT_TOP, _PLOT_BOTTOM = 64, 16, 40, 52
_MAX_BAR_W = 72


def render_status_page(status: Mapping[str, Any], *, json_href: str) -> str:
    """The whole page for one ``build_status`` result; ``json_href`` is the (relative) link to the JSON."""
    windows: list[Mapping[str, Any]] = list(status.get("windows", []))
    verdict_class, verdict_title, verdict_detail = _verdict(status, windows)
    generated = _when(status.get("generated_at"))
    return "".join([
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<meta name=\"color-scheme\" content=\"light dark\">\n",
        "<meta name=\"referrer\" content=\"no-referrer\">\n",
        # An empty data: icon, so a browser does not ask the server for /favicon.ico.
        "<link rel=\"icon\" href=\"data:,\">\n",
        f"<title>{_e(verdict_title)} · WhatsApp Archiver status</title>\n",
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n",
        "<header class=\"top\"><div><h1>WhatsApp Archiver <span>status</span></h1>",
        f"<p class=\"muted\">Generated {_e(generated)} · {_e(_plural(len(windows), 'recent window'))}</p></div>",
        f"<p class=\"links\"><a href=\"{_e(json_href)}\" type=\"application/json\">JSON</a></p></header>\n",
        f"<section class=\"verdict {verdict_class}\" role=\"status\" aria-live=\"polite\">"
        f"<span class=\"mark\" aria-hidden=\"true\">{_MARKS[verdict_class]}</span>"
        f"<div><h2>{_e(verdict_title)}</h2>{verdict_detail}</div></section>\n",
        _tiles(status, windows),
        _windows_table(windows),
        "<div class=\"pair\">\n",
        _poison_table(status.get("poisoned_by_reason", {})),
        _queue_table(status.get("queues", {})),
        "</div>\n",
        _volume_section(status.get("daily_volume", [])),
        "<footer class=\"muted\"><p>A window reconciles when every listed record is imported, skipped as a "
        "duplicate or poisoned (kept with its reason), and every record × mailbox pair is imported or skipped. "
        "Times are UTC. Poisoned records are not in any mailbox until they are replayed "
        "(<code>python -m shared.cli poison list</code>, <code>poison replay</code>).</p>",
        f"<p><a href=\"{_e(json_href)}\" type=\"application/json\">The same status as JSON</a></p></footer>\n",
        "</main>\n</body>\n</html>\n",
    ])


# -- verdict and tiles --------------------------------------------------------------------------------------------

_MARKS = {"ok": "✓", "warn": "!", "bad": "✕", "none": "·"}


def _verdict(status: Mapping[str, Any], windows: Sequence[Mapping[str, Any]]) -> tuple[str, str, str]:
    """(css class, headline, detail as escaped HTML)."""
    overdue = list(status.get("overdue_windows", []))
    unreconciled = list(status.get("unreconciled_windows", []))
    hours = _hours(status.get("overdue_after_hours"))
    poisoned = sum(_int(n) for n in dict(status.get("poisoned_by_reason", {})).values())
    poison_note = (
        f"<p class=\"note\"><strong>{_e(_plural(poisoned, 'record'))} poisoned</strong>: accounted for with "
        "their reason, but in no mailbox until they are replayed (see below).</p>"
        if poisoned else ""
    )
    if not windows:
        return "none", "No windows yet", "<p>The timer has not handed any capture time off.</p>"
    if overdue:
        in_progress = len(unreconciled) - len(overdue)
        more = f" {_plural(in_progress, 'more window')} still in progress." if in_progress > 0 else ""
        return (
            "bad",
            f"{_plural(len(overdue), 'window')} OVERDUE",
            "<p>" + _e(f"Not reconciled {hours} after the hand-off: records are stuck or lost and a person must "
                       f"look now. See the problems in the table below.{more}") + "</p>" + poison_note,
        )
    if unreconciled:
        return (
            "warn",
            f"{_plural(len(unreconciled), 'window')} not reconciled yet",
            "<p>" + _e(f"In progress: records are still being imported. A window not reconciled {hours} after "
                       "its hand-off is flagged as overdue.") + "</p>" + poison_note,
        )
    return (
        "ok",
        "The recent window is reconciled" if len(windows) == 1 else f"All {len(windows)} recent windows reconciled",
        "<p>Every listed record is imported, skipped as a duplicate or poisoned with its reason.</p>" + poison_note,
    )


def _tiles(status: Mapping[str, Any], windows: Sequence[Mapping[str, Any]]) -> str:
    poisoned = sum(_int(n) for n in dict(status.get("poisoned_by_reason", {})).values())
    queues = dict(status.get("queues", {}))
    waiting = sum(_int(n) for name, n in queues.items() if not str(name).endswith("-poison"))
    in_poison = sum(_int(n) for name, n in queues.items() if str(name).endswith("-poison"))
    reconciled = sum(1 for w in windows if w.get("reconciled"))
    tiles = [
        ("Windows reconciled", f"{_n(reconciled)} / {_n(len(windows))}",
         "ok" if reconciled == len(windows) else ("bad" if status.get("overdue_windows") else "warn")),
        ("Records listed", _n(sum(_int(w.get("listed")) for w in windows)), ""),
        ("Pairs imported", _n(sum(_int(w.get("imported")) for w in windows)), ""),
        ("Pairs skipped (duplicates)", _n(sum(_int(w.get("skipped_duplicates")) for w in windows)), ""),
        ("Records poisoned", _n(poisoned), "warn" if poisoned else ""),
        ("Queued work / in poison queues", f"{_n(waiting)} / {_n(in_poison)}", "warn" if in_poison else ""),
    ]
    return "<section class=\"tiles\" aria-label=\"Totals over the recent windows\">" + "".join(
        f"<div class=\"tile {cls}\"><span class=\"value\">{_e(value)}</span>"
        f"<span class=\"label\">{_e(label)}</span></div>"
        for label, value, cls in tiles
    ) + "</section>\n"


# -- tables ---------------------------------------------------------------------------------------------------------

_WINDOW_COLUMNS = (
    ("listed", "Listed"), ("fanout", "Fan-out"), ("imported", "Imported"), ("skipped_duplicates", "Skipped"),
    ("partially_imported", "Partial"), ("poisoned", "Poisoned"), ("pending", "Pending"),
    ("awaiting_transcript", "Awaiting transcript"),
)


def _windows_table(windows: Sequence[Mapping[str, Any]]) -> str:
    if not windows:
        return "<section><h2>Recent windows</h2><p class=\"muted\">None yet.</p></section>\n"
    head = "".join(f"<th scope=\"col\" class=\"num\">{_e(label)}</th>" for _, label in _WINDOW_COLUMNS)
    rows = [_window_row(w) for w in windows]
    return (
        "<section><h2>Recent windows</h2>"
        "<p class=\"muted\">Listed, poisoned, pending and awaiting count records; fan-out, imported and skipped count "
        "record × mailbox pairs.</p>"
        "<div class=\"scroll\"><table class=\"windows\"><thead><tr>"
        "<th scope=\"col\">Window (capture time, UTC)</th>"
        f"{head}<th scope=\"col\">Reconciled</th><th scope=\"col\">Problems</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table></div></section>\n"
    )


def _window_row(window: Mapping[str, Any]) -> str:
    window_id = str(window.get("window_id", ""))
    reconciled = bool(window.get("reconciled"))
    overdue = bool(window.get("overdue"))
    state = "ok" if reconciled else ("bad" if overdue else "warn")
    cells = [
        f"<th scope=\"row\" data-label=\"Window\"><span class=\"range\">{_e(_when(window.get('start'), utc=False))}"
        f" → {_e(_when(window.get('end'), utc=False))}</span><code class=\"wid\">{_breakable(window_id)}</code>"
        f"<span class=\"sub\">handed off {_e(_when(window.get('scheduled_at')))}</span></th>"
    ]
    labels = dict(_WINDOW_COLUMNS)
    for key, _ in _WINDOW_COLUMNS:
        if key == "poisoned":
            reasons = dict(window.get("poisoned") or {})
            total = sum(_int(n) for n in reasons.values())
            cls = "num hot" if total else "num zero"
            cells.append(
                f"<td class=\"{cls}\" data-col=\"poisoned\" data-label=\"Poisoned\"><span>{_n(total)}"
                + "".join(f"<span class=\"sub\">{_e(reason)} {_n(n)}</span>" for reason, n in sorted(reasons.items()))
                + "</span></td>"
            )
            continue
        value = _int(window.get(key))
        cls = "num hot" if value and key in ("pending", "awaiting_transcript") else "num"
        if not value:
            cls += " zero"
        cells.append(f"<td class=\"{cls}\" data-col=\"{key}\" data-label=\"{_e(labels[key])}\">{_n(value)}</td>")
    badge = (
        "<span class=\"badge ok\">yes</span>" if reconciled
        else "<span class=\"badge warn\">no</span>"
        + (" <span class=\"badge bad\">OVERDUE</span>" if overdue else "<span class=\"sub\">in progress</span>")
    )
    cells.append(f"<td data-col=\"reconciled\" data-label=\"Reconciled\"><span>{badge}</span></td>")
    listed: list[object] = window.get("problems") or []
    problems = [str(p) for p in listed]
    cells.append(
        "<td class=\"problems\" data-col=\"problems\" data-label=\"Problems\">"
        + ("<ul>" + "".join(f"<li>{_e(p)}</li>" for p in problems) + "</ul>" if problems
           else "<span class=\"muted\">none</span>")
        + "</td>"
    )
    return (
        f"<tr class=\"{state}\" data-window=\"{_e(window_id)}\" data-reconciled=\"{'yes' if reconciled else 'no'}\" "
        f"data-overdue=\"{'yes' if overdue else 'no'}\">" + "".join(cells) + "</tr>"
    )


def _poison_table(reasons: Mapping[str, Any]) -> str:
    body = "".join(
        f"<tr data-reason=\"{_e(reason)}\"><th scope=\"row\"><code>{_e(reason)}</code></th>"
        f"<td class=\"num\">{_n(count)}</td></tr>"
        for reason, count in dict(reasons).items()
    )
    if not body:
        return ("<section><h2>Poisoned records by reason</h2>"
                "<p class=\"muted\">No record of the recent windows was poisoned.</p></section>\n")
    total = sum(_int(n) for n in dict(reasons).values())
    return (
        "<section><h2>Poisoned records by reason</h2><table class=\"compact poison\"><thead><tr>"
        "<th scope=\"col\">Reason</th><th scope=\"col\" class=\"num\">Records</th></tr></thead><tbody>"
        f"{body}</tbody><tfoot><tr><th scope=\"row\">Total</th><td class=\"num\">{_n(total)}</td></tr></tfoot>"
        "</table></section>\n"
    )


def _queue_table(queues: Mapping[str, Any]) -> str:
    if not queues:
        return "<section><h2>Queues</h2><p class=\"muted\">No queue depths available.</p></section>\n"
    rows: list[str] = []
    for name, depth in dict(queues).items():
        value = _int(depth)
        cls = " class=\"hot\"" if value and str(name).endswith("-poison") else ""
        rows.append(f"<tr data-queue=\"{_e(name)}\"{cls}><th scope=\"row\"><code>{_e(name)}</code></th>"
                    f"<td class=\"num\">{_n(value)}</td></tr>")
    return (
        "<section><h2>Queues</h2><table class=\"compact queues\"><thead><tr><th scope=\"col\">Queue</th>"
        "<th scope=\"col\" class=\"num\">Messages</th></tr></thead><tbody>" + "".join(rows)
        + "</tbody></table></section>\n"
    )


# -- the daily volume chart -----------------------------------------------------------------------------------------


def _volume_section(days: Iterable[Mapping[str, Any]]) -> str:
    days = list(days)
    if not days:
        return ("<section><h2>Daily volume</h2><p class=\"muted\">No outcomes recorded in the recent windows yet."
                "</p></section>\n")
    rows = "".join(
        f"<tr><th scope=\"row\">{_e(d.get('date'))}</th><td class=\"num\">{_n(d.get('records'))}</td>"
        f"<td class=\"num\">{_n(d.get('imported'))}</td><td class=\"num\">{_n(d.get('skipped_duplicates'))}</td>"
        f"<td class=\"num\">{_n(d.get('poisoned'))}</td></tr>"
        for d in days
    )
    return (
        "<section><h2>Daily volume</h2><p class=\"muted\">Records finished per UTC day over the recent windows: "
        "archived (imported or skipped as duplicates) and poisoned.</p>"
        + _chart(days)
        + "<details><summary>As a table</summary><div class=\"scroll\"><table class=\"compact volume\"><thead><tr>"
        "<th scope=\"col\">Day (UTC)</th><th scope=\"col\" class=\"num\">Records archived</th>"
        "<th scope=\"col\" class=\"num\">Pairs imported</th><th scope=\"col\" class=\"num\">Pairs skipped</th>"
        "<th scope=\"col\" class=\"num\">Records poisoned</th></tr></thead><tbody>"
        f"{rows}</tbody></table></div></details></section>\n"
    )


def _chart(days: Sequence[Mapping[str, Any]]) -> str:
    plot_w = _CHART_W - _PLOT_LEFT - _PLOT_RIGHT
    plot_h = _CHART_H - _PLOT_TOP - _PLOT_BOTTOM
    base = _PLOT_TOP + plot_h
    peak = max((_int(d.get("records")) + _int(d.get("poisoned")) for d in days), default=0)
    step, top = _ticks(peak)
    slot = plot_w / len(days)
    bar_w = min(_MAX_BAR_W, slot * 0.7)
    label_every = max(1, math.ceil(60 / slot))  # a date label needs about 60 units
    show_values = slot >= 34

    def y(value: float) -> float:
        return base - (value / top) * plot_h

    first, last = days[0].get("date"), days[-1].get("date")
    total_archived = sum(_int(d.get("records")) for d in days)
    total_poisoned = sum(_int(d.get("poisoned")) for d in days)
    summary = (f"Records archived and poisoned per UTC day, {first} to {last}: {_n(total_archived)} archived, "
               f"{_n(total_poisoned)} poisoned.")
    parts = [
        f"<svg class=\"chart\" viewBox=\"0 0 {_CHART_W} {_CHART_H}\" role=\"img\" "
        f"aria-labelledby=\"chart-title chart-desc\" preserveAspectRatio=\"xMidYMid meet\">",
        "<title id=\"chart-title\">Daily volume</title>",
        f"<desc id=\"chart-desc\">{_e(summary)}</desc>",
        # Legend.
        f"<g class=\"legend\" aria-hidden=\"true\"><rect class=\"archived\" x=\"{_PLOT_LEFT}\" y=\"10\" width=\"14\" "
        f"height=\"14\" rx=\"2\"/><text x=\"{_PLOT_LEFT + 20}\" y=\"22\">archived records</text>"
        f"<rect class=\"poisoned\" x=\"{_PLOT_LEFT + 160}\" y=\"10\" width=\"14\" height=\"14\" rx=\"2\"/>"
        f"<text x=\"{_PLOT_LEFT + 180}\" y=\"22\">poisoned records</text></g>",
    ]
    # Y axis: grid lines and tick labels, and its title.
    parts.append("<g class=\"axis y\" aria-hidden=\"true\">")
    value = 0
    while value <= top:
        parts.append(
            f"<line class=\"grid\" x1=\"{_PLOT_LEFT}\" x2=\"{_CHART_W - _PLOT_RIGHT}\" y1=\"{y(value):.1f}\" "
            f"y2=\"{y(value):.1f}\"/><text x=\"{_PLOT_LEFT - 8}\" y=\"{y(value) + 4:.1f}\" "
            f"text-anchor=\"end\">{_n(value)}</text>"
        )
        value += step
    parts.append(
        f"<text class=\"title\" transform=\"translate(16 {_PLOT_TOP + plot_h / 2:.1f}) rotate(-90)\" "
        "text-anchor=\"middle\">records</text></g>"
    )
    # One group per day: the archived bar, the poisoned bar stacked on it, values and the date.
    for index, day in enumerate(days):
        date = str(day.get("date", ""))
        archived, poisoned = _int(day.get("records")), _int(day.get("poisoned"))
        center = _PLOT_LEFT + slot * (index + 0.5)
        x = center - bar_w / 2
        tooltip = (f"{date}: {_n(archived)} records archived ({_n(day.get('imported'))} pairs imported, "
                   f"{_n(day.get('skipped_duplicates'))} skipped as duplicates), {_n(poisoned)} poisoned")
        group = [f"<g class=\"day\" data-date=\"{_e(date)}\" data-archived=\"{archived}\" "
                 f"data-poisoned=\"{poisoned}\"><title>{_e(tooltip)}</title>"]
        if archived:
            group.append(f"<rect class=\"archived\" x=\"{x:.1f}\" y=\"{y(archived):.1f}\" width=\"{bar_w:.1f}\" "
                         f"height=\"{base - y(archived):.1f}\"/>")
        if poisoned:
            group.append(f"<rect class=\"poisoned\" x=\"{x:.1f}\" y=\"{y(archived + poisoned):.1f}\" "
                         f"width=\"{bar_w:.1f}\" height=\"{y(archived) - y(archived + poisoned):.1f}\"/>")
        if show_values:
            label_y = y(archived + poisoned) - 6
            if poisoned:
                group.append(f"<text class=\"value poisoned\" x=\"{center:.1f}\" y=\"{label_y:.1f}\" "
                             f"text-anchor=\"middle\">+{_n(poisoned)}</text>")
                label_y -= 16
            group.append(f"<text class=\"value\" x=\"{center:.1f}\" y=\"{label_y:.1f}\" "
                         f"text-anchor=\"middle\">{_n(archived)}</text>")
        if index % label_every == 0 or index == len(days) - 1:
            group.append(f"<text class=\"date\" x=\"{center:.1f}\" y=\"{base + 20}\" "
                         f"text-anchor=\"middle\">{_e(date[5:] if len(days) > 1 else date)}</text>")
        group.append("</g>")
        parts.append("".join(group))
    parts.append(
        f"<line class=\"baseline\" x1=\"{_PLOT_LEFT}\" x2=\"{_CHART_W - _PLOT_RIGHT}\" y1=\"{base}\" y2=\"{base}\"/>"
        f"<text class=\"axis title\" x=\"{_PLOT_LEFT + plot_w / 2:.1f}\" y=\"{_CHART_H - 8}\" "
        f"text-anchor=\"middle\" aria-hidden=\"true\">day (UTC){', month-day' if len(days) > 1 else ''}</text>"
        "</svg>"
    )
    return "".join(parts)


def _ticks(peak: int) -> tuple[int, int]:
    """A round step and the axis top for values up to ``peak``, with some headroom for the value labels."""
    peak = max(peak, 1)
    raw = peak * 1.15 / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(1, int(step))
    return step, step * math.ceil(peak * 1.15 / step)


# -- formatting -----------------------------------------------------------------------------------------------------


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _n(value: object) -> str:
    return f"{_int(value):,}"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _hours(value: Any) -> str:
    try:
        hours = float(value)
    except (TypeError, ValueError):
        return "long"
    return f"{hours:g} hour{'' if hours == 1 else 's'}"


def _when(value: object, *, utc: bool = True) -> str:
    """An ISO 8601 UTC time as ``YYYY-MM-DD HH:MM UTC``; anything else as it is."""
    if not value:
        return "—"
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC" if utc else "%Y-%m-%d %H:%M")


def _breakable(text: str) -> str:
    """Escaped, with optional line breaks after the separators of a window id."""
    out: list[str] = []
    for char in text:
        out.append(_e(char))
        if char in "-.":
            out.append("<wbr>")
    return "".join(out)


_CSS = """
:root{color-scheme:light dark;--bg:#f6f7f9;--panel:#fff;--text:#1b1f24;--muted:#5b6470;--line:#d9dde3;
--ok:#1a7f37;--ok-bg:#e6f4ea;--warn:#9a6700;--warn-bg:#fff4d6;--bad:#c62828;--bad-bg:#fde8e8;
--none:#57606a;--none-bg:#eef0f3;--archived:#2f6fdb;--poisoned:#d9480f;--grid:#e4e7eb;--accent:#0b5cad}
@media (prefers-color-scheme:dark){:root{--bg:#0f1216;--panel:#171b21;--text:#e6e9ee;--muted:#9aa4b0;
--line:#2c333c;--ok:#4ac26b;--ok-bg:#13301d;--warn:#e3b341;--warn-bg:#33290f;--bad:#ff6b6b;--bad-bg:#3d1518;
--none:#9aa4b0;--none-bg:#222830;--archived:#5b9bff;--poisoned:#ff8a4c;--grid:#262d36;--accent:#6cb6ff}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--text);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Liberation Sans",
"DejaVu Sans",sans-serif}
main{max-width:1440px;margin:0 auto;padding:20px 24px 32px}
h1{font-size:1.5rem;margin:0}h1 span{font-weight:400;color:var(--muted)}
h2{font-size:1.1rem;margin:0 0 6px}
a{color:var(--accent)}
code{font:0.86em/1.3 ui-monospace,"SFMono-Regular",Menlo,Consolas,"DejaVu Sans Mono",monospace}
.muted{color:var(--muted)}
.top{display:flex;justify-content:space-between;align-items:flex-end;gap:16px;flex-wrap:wrap;margin-bottom:14px}
.top p{margin:2px 0 0}
.links a{display:inline-block;padding:4px 12px;border:1px solid var(--line);border-radius:6px;
background:var(--panel);text-decoration:none;font-weight:600}
section{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:14px 16px;margin:0 0 14px}
section>p.muted{margin:0 0 10px;font-size:.9rem}
.verdict{display:flex;gap:16px;align-items:center;border-width:2px;padding:16px 20px}
.verdict h2{font-size:1.6rem;margin:0;line-height:1.2}
.verdict p{margin:4px 0 0}
.verdict p.note{color:var(--warn)}.verdict p.note strong{font-weight:700}
.verdict .mark{flex:none;display:grid;place-items:center;width:52px;height:52px;border-radius:50%;
font-size:30px;font-weight:700;color:#fff}
.verdict.ok{background:var(--ok-bg);border-color:var(--ok)}.verdict.ok h2{color:var(--ok)}
.verdict.ok .mark{background:var(--ok)}
.verdict.warn{background:var(--warn-bg);border-color:var(--warn)}.verdict.warn h2{color:var(--warn)}
.verdict.warn .mark{background:var(--warn)}
.verdict.bad{background:var(--bad-bg);border-color:var(--bad)}.verdict.bad h2{color:var(--bad);text-transform:uppercase}
.verdict.bad .mark{background:var(--bad)}
.verdict.none{background:var(--none-bg);border-color:var(--none)}.verdict.none .mark{background:var(--none)}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:10px;background:none;border:0;padding:0}
.tile{background:var(--panel);border:1px solid var(--line);border-left:5px solid var(--line);border-radius:8px;
padding:10px 12px;display:flex;flex-direction:column}
.tile .value{font-size:1.55rem;font-weight:700;font-variant-numeric:tabular-nums}
.tile .label{color:var(--muted);font-size:.85rem}
.tile.ok{border-left-color:var(--ok)}.tile.warn{border-left-color:var(--warn)}.tile.warn .value{color:var(--warn)}
.tile.bad{border-left-color:var(--bad)}.tile.bad .value{color:var(--bad)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:7px 8px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{font-size:.8rem;color:var(--muted);font-weight:600;border-bottom-width:2px;vertical-align:bottom}
table.windows thead th.num{max-width:6.5em;white-space:normal}
table.windows td.problems{min-width:13em}
table.windows th,table.windows td{padding:7px 6px}
.num{text-align:right;white-space:nowrap}
td.zero{color:var(--muted)}
td.hot,tr.hot td{color:var(--warn);font-weight:700}
tfoot th,tfoot td{font-weight:700;border-bottom:0}
table.windows tbody th{font-weight:400}
table.windows tr.ok>th:first-child{box-shadow:inset 4px 0 var(--ok)}
table.windows tr.warn>th:first-child{box-shadow:inset 4px 0 var(--warn)}
table.windows tr.bad>th:first-child{box-shadow:inset 4px 0 var(--bad)}
table.windows tr.bad{background:var(--bad-bg)}
.range{display:block;font-weight:600;white-space:nowrap}
.wid{display:block;color:var(--muted);font-size:.74rem;overflow-wrap:anywhere}
.sub{display:block;color:var(--muted);font-size:.78rem;font-weight:400}
td.num .sub{white-space:nowrap}
.problems ul{margin:0;padding-left:1.1em}.problems li{margin:0 0 2px}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:.8rem;font-weight:700;white-space:nowrap;
border:1px solid currentColor}
.badge.ok{color:var(--ok);background:var(--ok-bg)}.badge.warn{color:var(--warn);background:var(--warn-bg)}
.badge.bad{color:#fff;background:var(--bad);border-color:var(--bad);letter-spacing:.03em}
.pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:14px}
.pair section{margin:0 0 14px}
table.compact{width:auto;min-width:260px}
.chart{display:block;width:100%;height:auto;max-height:360px}
.chart text{fill:var(--text);font-size:13px}
.chart .axis text,.chart text.date,.chart .title{fill:var(--muted)}
.chart .grid{stroke:var(--grid);stroke-width:1}
.chart .baseline{stroke:var(--muted);stroke-width:1}
.chart rect.archived{fill:var(--archived)}.chart rect.poisoned{fill:var(--poisoned)}
.chart text.value{font-weight:700;font-size:14px}.chart text.value.poisoned{fill:var(--poisoned)}
.chart .legend text{fill:var(--text)}
details{margin-top:8px}summary{cursor:pointer;color:var(--accent)}
footer{font-size:.85rem;padding:0 4px}footer p{margin:4px 0}
@media (max-width:760px){
main{padding:12px 10px 24px}
.verdict{padding:12px 14px;gap:12px}.verdict h2{font-size:1.25rem}
.verdict .mark{width:40px;height:40px;font-size:22px}
.tiles{grid-template-columns:repeat(2,minmax(0,1fr))}
.tile .value{font-size:1.25rem}
table.windows thead{display:none}
table.windows,table.windows tbody,table.windows tr,table.windows th,table.windows td{display:block;width:100%}
table.windows tr{border:1px solid var(--line);border-radius:8px;margin:0 0 10px;padding:4px 0}
table.windows tbody th{min-width:0;border-bottom:1px solid var(--line)}
table.windows td{display:flex;justify-content:space-between;gap:12px;border:0;padding:3px 10px;text-align:right}
table.windows td::before{content:attr(data-label);color:var(--muted);text-align:left;font-weight:400}
table.windows td.problems{display:block;text-align:left}
table.windows td.problems::before{display:block}
.range{white-space:normal}
}
"""
