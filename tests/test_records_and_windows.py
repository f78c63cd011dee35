from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from shared.domain.records import ArchiveRecord
from shared.domain.window import Watermark, Window, next_window
from tests.builders import record

NOW = datetime(2026, 11, 23, 2, 0, 30, tzinfo=UTC)


def test_valid_record_keeps_unknown_fields_at_every_level():
    data = record(vendorNewField={"x": 1}, sender={"phone": "+447700900001", "badge": "gold"})
    parsed = ArchiveRecord.model_validate(data)
    assert parsed.model_extra["vendorNewField"] == {"x": 1}
    assert parsed.sender.model_extra["badge"] == "gold"
    assert parsed.model_dump(by_alias=True)["vendorNewField"] == {"x": 1}


@pytest.mark.parametrize("change", [
    {"messageTime": "1763800000000"},  # a string is not an integer
    {"messageType": "POLL"},
    {"recipients": []},
    {"sourceType": "SMS"},
    {"messageTime": -1},
    {"messageTime": 10**17},  # beyond year 9999
    {"groupMessage": 1},
])
def test_records_that_break_the_schema_are_rejected(change):
    with pytest.raises(ValidationError):
        ArchiveRecord.model_validate(record(**change))


def test_missing_required_field_is_rejected():
    data = record()
    del data["owner"]
    with pytest.raises(ValidationError):
        ArchiveRecord.model_validate(data)


def test_first_run_takes_the_last_24_hours_to_the_minute():
    window = next_window(None, NOW, first_run_lookback=timedelta(hours=24), max_length=timedelta(days=31))
    assert window == Window(datetime(2026, 11, 22, 2, 0, tzinfo=UTC), datetime(2026, 11, 23, 2, 0, tzinfo=UTC))


def test_next_window_starts_exactly_at_the_watermark():
    mark = Watermark(datetime(2026, 11, 22, 2, 0, tzinfo=UTC))
    window = next_window(mark, NOW, first_run_lookback=timedelta(hours=24), max_length=timedelta(days=31))
    assert window.start == mark.position


def test_no_window_when_nothing_new_was_captured():
    mark = Watermark(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    assert next_window(mark, NOW, first_run_lookback=timedelta(hours=24), max_length=timedelta(days=31)) is None


def test_long_outage_is_cut_at_the_maximum_window_length():
    mark = Watermark(NOW - timedelta(days=40))
    window = next_window(mark, NOW, first_run_lookback=timedelta(hours=24), max_length=timedelta(days=31))
    assert window.duration == timedelta(days=31)


def test_slices_cover_the_window_exactly_without_overlap():
    window = Window(datetime(2026, 11, 22, 2, 0, 17, tzinfo=UTC), datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    parts = window.slices(timedelta(hours=1))
    assert parts[0].start == window.start and parts[-1].end == window.end
    assert all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False))
    assert len(parts) == 24


def test_window_id_round_trips():
    window = Window(datetime(2026, 11, 22, 2, tzinfo=UTC), datetime(2026, 11, 23, 2, tzinfo=UTC))
    assert Window.from_id(window.id) == window


def test_window_ledger_id_survives_its_json_round_trip():
    from shared.domain.ledger import WindowInfo

    info = WindowInfo(Window(NOW - timedelta(hours=1), NOW), 1, datetime(2026, 11, 23, 2, 0, 1, 123456, tzinfo=UTC))
    assert WindowInfo.from_json(info.to_json()).window_id == info.window_id


def test_window_ends_the_settle_margin_before_now():
    window = next_window(None, NOW, first_run_lookback=timedelta(hours=24), max_length=timedelta(days=31),
                         settle=timedelta(minutes=15))
    assert window.end == datetime(2026, 11, 23, 1, 45, tzinfo=UTC)


def test_an_overlap_starts_the_window_that_much_before_the_watermark_but_never_opens_one_alone():
    mark = Watermark(datetime(2026, 11, 22, 2, 0, tzinfo=UTC))
    window = next_window(mark, NOW, first_run_lookback=timedelta(hours=24), max_length=timedelta(days=31),
                         overlap=timedelta(minutes=30))
    assert window.start == mark.position - timedelta(minutes=30) and window.end > mark.position
    caught_up = Watermark(window.end)
    assert next_window(caught_up, NOW, first_run_lookback=timedelta(hours=24), max_length=timedelta(days=31),
                       overlap=timedelta(minutes=30)) is None
    with pytest.raises(ValueError, match="overlap"):
        next_window(mark, NOW, first_run_lookback=timedelta(hours=1), max_length=timedelta(hours=1),
                    overlap=timedelta(hours=1))
