"""config/timetext: every spelling of a date and time people type reads as the same
instant in the station's zone, and times are shown back in that zone with its offset."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.timetext import (
    TimeTextError,
    iso_time,
    parse_day,
    parse_instant,
    parse_range,
    show_clock,
    show_time,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
SEVEN_AM = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # 2026-12-01 07:00 in Shanghai


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-01 07:00",
        "2026/12/01 07:00",
        "2026.12.01 7:00",
        "2026-12-01T07:00:00",
        "2026年12月1日 07:00",
        "2026年12月1日7时",
        "2026年12月1日7点整",
        "2026年12月01日 7时00分",
        "２０２６－１２－０１　０７：００",
        "2026-12-01 07:00+08:00",
        "2026-11-30 23:00Z",
        "2026-11-30 23:00 UTC",
        "2026-11-30 16:00 -07:00",
    ],
)
def test_every_spelling_names_seven_in_the_morning_in_shanghai(text: str) -> None:
    assert parse_instant(text, SHANGHAI) == SEVEN_AM


@pytest.mark.parametrize("text", ["2026-12-01", "2026/12/1", "2026年12月1日", "20261201"])
def test_a_day_alone_is_its_midnight_in_the_station_zone(text: str) -> None:
    assert parse_day(text, SHANGHAI) == date(2026, 12, 1)
    assert parse_instant(text, SHANGHAI) == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["2026-13-01", "yesterday", "2026-12-01 25:00", "12/01/2026", "2026-12-123", "2026-12-011"],
)
def test_bad_text_is_refused_repeating_it_as_typed(text: str) -> None:
    with pytest.raises(TimeTextError) as caught:
        parse_instant(text, SHANGHAI)
    assert repr(text) in str(caught.value)


def test_a_day_option_refuses_a_time_of_day() -> None:
    with pytest.raises(TimeTextError, match="07:30"):
        parse_day("2026-12-01 07:30", SHANGHAI)


def test_to_is_exclusive_and_equal_bounds_say_so() -> None:
    lo, hi = parse_range("2026-12-01", "2026-12-02", SHANGHAI)
    assert (lo, hi) == (
        datetime(2026, 11, 30, 16, 0, tzinfo=UTC),
        datetime(2026, 12, 1, 16, 0, tzinfo=UTC),
    )
    with pytest.raises(TimeTextError) as caught:
        parse_range("2026-12-01", "2026年12月1日", SHANGHAI)
    message = str(caught.value)
    assert "'2026-12-01'" in message and "'2026年12月1日'" in message and "--to" in message


def test_times_are_shown_in_the_station_zone_with_offset() -> None:
    assert show_time(SEVEN_AM, SHANGHAI) == "2026-12-01 07:00:00 +08:00"
    assert show_time("2026-11-30T23:00:00+00:00", SHANGHAI) == "2026-12-01 07:00:00 +08:00"
    assert show_time("2026-11-30 23:00:00", SHANGHAI) == "2026-12-01 07:00:00 +08:00"  # UTC
    assert show_clock(SEVEN_AM, SHANGHAI) == "12-01 07:00"
    assert iso_time(SEVEN_AM, SHANGHAI) == "2026-12-01T07:00:00+08:00"
    assert show_time(None, SHANGHAI) == "—"


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 12, 31)))
def test_what_is_shown_reads_back_as_the_same_instant(naive: datetime) -> None:
    when = naive.replace(microsecond=0, tzinfo=UTC)
    assert parse_instant(show_time(when, SHANGHAI), SHANGHAI) == when
    assert parse_instant(show_time(when, SHANGHAI)[:19], SHANGHAI) == when
