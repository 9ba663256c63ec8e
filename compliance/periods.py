"""Periods as a unit speaks of them: days, months and years of China Standard Time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from config.settings import CHINA_STANDARD_TIME

CST = CHINA_STANDARD_TIME
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")


def month_of(at: datetime) -> str:
    """The China Standard Time month of an instant: ``2026-11``."""
    return at.astimezone(CST).strftime("%Y-%m")


def period(text: str) -> tuple[datetime, datetime]:
    """``2026`` or ``2026-11`` or ``2026-11-03`` (CST) as a UTC interval [start, end)."""
    text = text.strip()
    if m := _YEAR.match(text):
        year = int(m.group(1))
        return _utc(datetime(year, 1, 1, tzinfo=CST)), _utc(datetime(year + 1, 1, 1, tzinfo=CST))
    if m := _MONTH.match(text):
        year, month = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12:
            raise ValueError(f"{text!r}: no month {month}")
        nxt = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=CST)
        return _utc(datetime(year, month, 1, tzinfo=CST)), _utc(nxt)
    day = datetime.fromisoformat(text).replace(tzinfo=CST)
    return _utc(day), _utc(day + timedelta(days=1))


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)
