"""What every demo shares (the TeleMessage window, the WhatsApp Business Platform day, the chat
export): where its state lives, the settings it runs under, the day its traffic is anchored to, how it
finishes (the window sealed into the chain of evidence, the admin report beside the mail) and how it
prints where everything went. The demos import this; none imports another."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DemoPaths:
    root: Path
    source: str = "telemessage"  # each source keeps its own day and mapping; Azurite and the mail are shared

    def _own(self, name: str, suffix: str) -> Path:
        return self.root / (f"{name}{suffix}" if self.source == "telemessage" else f"{name}-{self.source}{suffix}")

    @property
    def azurite(self) -> Path:
        return self.root / "azurite"

    @property
    def mailboxes(self) -> Path:
        return self.root / "mailboxes"

    @property
    def mapping(self) -> Path:
        return self._own("mapping", ".csv")

    @property
    def directory(self) -> Path:
        return self._own("directory", ".txt")

    @property
    def state(self) -> Path:
        return self._own("demo", ".json")

    @property
    def log(self) -> Path:
        return self.root / "demo.log"

    @property
    def reports(self) -> Path:
        return self.root / "reports"


def seal_as_the_timer_would(container) -> dict[str, Any]:
    """What the timer's next run does with windows that reconciled: seal them into the chain of
    evidence (shared/service/evidence_chain.py), so the demo's state verifies at once."""
    from shared.service.evidence_chain import seal_reconciled
    from shared.service.status import recent_summaries

    summaries = recent_summaries(container.ledger, container.settings.status_recent_windows)
    sealed = seal_reconciled(container.ledger, container.evidence, container.evidence_chain, summaries,
                             datetime.now(UTC))
    head, _ = container.evidence_chain.head()
    return {"sealed": [s.window_id for s in sealed], "chain_links": head.seq if head else 0}


def write_admin_report(container, window_id: str, folder: Path) -> list[str]:
    """The window's admin report beside the demo's mail, as `report --json / --csv` would print it."""
    from shared.domain.report import report_csv
    from shared.service.reports import window_report_by_id

    report = window_report_by_id(container.ledger, window_id, datetime.now(UTC))
    folder.mkdir(parents=True, exist_ok=True)
    as_json = folder / f"{window_id}.json"
    as_csv = folder / f"{window_id}.csv"
    as_json.write_text(json.dumps(report.to_json(), indent=1, ensure_ascii=False), encoding="utf-8")
    as_csv.write_text(report_csv([report]), encoding="utf-8-sig", newline="")
    return [str(as_json), str(as_csv)]


def day_anchor(paths: DemoPaths, *, midnight: bool = False) -> datetime:
    """The end of the local TeleMessage's day of traffic, fixed at the first run so that later runs
    see the same records (and nothing new). ``midnight``: the traffic is the last whole UTC day, so
    that daily transcripts can be composed at once."""
    if paths.state.exists():
        return datetime.fromisoformat(json.loads(paths.state.read_text())["anchor"])
    from shared.settings import get_settings

    settle = timedelta(minutes=get_settings().capture_settle_minutes)
    anchor = (datetime.now(UTC) - settle).replace(second=0, microsecond=0)
    if midnight:
        anchor = anchor.replace(hour=0, minute=0)
    paths.state.write_text(json.dumps({"anchor": anchor.isoformat()}))
    return anchor


@contextmanager
def app_settings(values: Mapping[str, str]) -> Iterator[None]:
    """App settings for the in-process functions (a fresh container reads them), restored afterwards."""
    from shared.composition import reset_container

    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    reset_container()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_container()


def print_window_counts(window: dict[str, Any], indent: str = "  ") -> None:
    """A window's counts, as every demo prints them."""
    poisoned = window["poisoned"]
    for label, value in (
        ("records listed:", window["listed"]),
        ("fan-out (record × mailbox):", window["fanout"]),
        ("imported:", window["imported"]),
        ("skipped duplicates:", window["skipped_duplicates"]),
        ("partially imported:", f"{window['partially_imported']} (archived; media never captured)"),
        ("poisoned:", f"{sum(poisoned.values())}"
                      + (" (" + ", ".join(f"{k}: {v}" for k, v in poisoned.items()) + ")" if poisoned else "")),
        ("pending:", window["pending"]),
    ):
        print(f"{indent}{label.ljust(21)} {value}")


def print_where(report: dict[str, Any]) -> None:
    """Queues, mail, admin report, log and time, as every demo prints them."""
    print("  queues:               " + ", ".join(f"{k} {v}" for k, v in report["queues"].items()))
    print(f"  mail (.eml):          {report['mailbox_dir']} ({report['eml_files']} files)")
    if report.get("admin_report"):
        print(f"  admin report:         {' and '.join(report['admin_report'])}")
    if report.get("evidence"):
        evidence = report["evidence"]
        print(f"  evidence chain:       {len(evidence['sealed'])} window(s) sealed now, {evidence['chain_links']} "
              "link(s) in all (check them: python -m shared.cli verify --online)")
    print(f"  log (ids and counts): {report['log']}")
    print(f"  took:                 {report['seconds']} s")
