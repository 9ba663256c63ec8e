"""A file name's start time is read as strptime("%Y%m%d%H%M%S") reads its digits: the same
answer for every string of digits (a real time, or None for month 13, 30 February, hour
24 …), and the same NameFields however often a name is asked about."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from formats.filenames import NameParser, _parse_start

ZONE = ZoneInfo("Asia/Shanghai")


def _by_strptime(digits: str) -> datetime | None:
    try:
        local = datetime.strptime(digits, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return local.replace(tzinfo=ZONE).astimezone(UTC)


def test_real_and_impossible_times() -> None:
    assert _parse_start("20240229-235959", ZONE) == datetime(2024, 2, 29, 15, 59, 59, tzinfo=UTC)
    for impossible in (
        "20241301000000",  # month 13
        "20230229120000",  # 29 February of a common year
        "20240431120000",  # 31 April
        "20240101240000",  # hour 24
        "20240101126000",  # minute 60
        "20240101125960",  # second 60
        "00000101000000",  # year 0
        "20240001000000",  # month 0
        "20240100000000",  # day 0
    ):
        assert _parse_start(impossible, ZONE) is None, impossible
        assert _by_strptime(impossible) is None, impossible


def test_same_as_strptime_for_any_digits() -> None:
    rng = random.Random(4)
    cases = [
        "".join(rng.choice("0123456789") for _ in range(n)) for n in (14,) * 3000 + (12, 13, 15)
    ]
    # Mostly plausible ones, near the edges of each field.
    for _ in range(3000):
        y, mo, d = rng.randint(1, 9999), rng.randint(0, 13), rng.randint(0, 32)
        h, mi, s = rng.randint(0, 25), rng.randint(0, 61), rng.randint(0, 62)
        cases.append(f"{y:04d}{mo:02d}{d:02d}{h:02d}{mi:02d}{s:02d}")
    cases += ["2024011512", "202401151230", "2024115123045"]  # narrower fields
    for digits in cases:
        assert _parse_start(digits, ZONE) == _by_strptime(digits), digits


def test_a_name_asked_again_gets_the_same_fields() -> None:
    parser = NameParser((r"(?P<serial>[A-Z0-9]+)_(?P<start>\d{14})",), zone=ZONE)
    first = parser.parse("A123_20240115123045.MP4")
    assert first.serial == "A123"
    assert first.start == datetime(2024, 1, 15, 4, 30, 45, tzinfo=UTC)
    assert parser.parse("A123_20240115123045.MP4") == first
    assert parser.parse("A123_20241315123045.MP4").start is None  # month 13
