"""Incremental state: the capture-time windows the connector lists, and its watermark.

TeleMessage selects on ``archivedTime`` (capture time), ``from`` inclusive and ``to`` exclusive,
so a window is a half-open interval ``[start, end)`` of capture time. The watermark is the end of
the last window whose listing work was durably handed off; the next window starts there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_ID_FORMAT = "%Y%m%dT%H%M%SZ"


def utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous here; pass an aware UTC datetime")
    return value.astimezone(UTC)


def isoformat_z(value: datetime) -> str:
    """ISO 8601 in UTC with a Z, to the millisecond: the form TeleMessage and reports use."""
    return utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


@dataclass(frozen=True, order=True)
class Window:
    """A half-open interval of capture time, [start, end)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", utc(self.start))
        object.__setattr__(self, "end", utc(self.end))
        if self.end <= self.start:
            raise ValueError(f"window end {self.end} is not after its start {self.start}")

    @property
    def id(self) -> str:
        return f"{self.start.strftime(_ID_FORMAT)}-{self.end.strftime(_ID_FORMAT)}"

    @classmethod
    def from_id(cls, window_id: str) -> Window:
        start, end = window_id.split("-")
        return cls(
            datetime.strptime(start, _ID_FORMAT).replace(tzinfo=UTC),
            datetime.strptime(end, _ID_FORMAT).replace(tzinfo=UTC),
        )

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def slices(self, length: timedelta) -> list[Window]:
        """Consecutive sub-windows of at most ``length`` that exactly cover this one."""
        if length <= timedelta(0):
            raise ValueError("slice length must be positive")
        parts: list[Window] = []
        cursor = self.start
        while cursor < self.end:
            upper = min(cursor + length, self.end)
            parts.append(Window(cursor, upper))
            cursor = upper
        return parts

    def contains(self, moment: datetime) -> bool:
        return self.start <= utc(moment) < self.end


@dataclass(frozen=True)
class Watermark:
    """Everything captured before ``position`` has been handed off for listing."""

    position: datetime
    last_window_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", utc(self.position))


def next_window(
    watermark: Watermark | None,
    now: datetime,
    *,
    first_run_lookback: timedelta,
    max_length: timedelta,
    settle: timedelta = timedelta(0),
    overlap: timedelta = timedelta(0),
    granularity: timedelta = timedelta(minutes=1),
) -> Window | None:
    """The window to hand off now, or None when nothing new has been captured since the watermark.

    The end is ``now - settle`` rounded down to ``granularity``. The settle margin leaves time for
    records captured just before the end to become listable at the source (indexing lag, clock
    skew): a record that appeared in the past after its window was listed would never be seen.
    Rounding keeps ids readable and makes a run repeated within the same minute find nothing. A
    window longer than ``max_length`` (after a long outage) is cut there; the next run continues
    from the new watermark.

    ``overlap`` starts each window that much before the watermark, so records the source indexed
    later than the settle margin allowed are still listed; idempotent import skips the repeats.
    Only new capture time opens a window: the overlap alone never does.
    """
    if overlap >= max_length:
        raise ValueError("the overlap must be shorter than the longest window, or no window would progress")
    end = _floor(utc(now) - settle, granularity)
    if watermark is None:
        start = end - first_run_lookback
    else:
        if end <= watermark.position:
            return None
        start = watermark.position - overlap
    if end <= start:
        return None
    end = min(end, start + max_length)
    return Window(start, end)


def _floor(moment: datetime, granularity: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    steps = (moment - epoch) // granularity
    return epoch + steps * granularity
