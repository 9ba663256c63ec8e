"""Periods as a unit speaks of them: days, months and years of the station's zone.

A day is read by config.timetext (the one parser of dates people type: ``2026-11-03``,
``2026/11/03``, ``2026年11月3日``, full-width digits); a year (``2026``) and a month
(``2026-11``, ``2026/11``, ``2026年11月``) are read here, since timetext reads days and
instants only."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, tzinfo

from config.i18n import _
from config.settings import CHINA_STANDARD_TIME
from config.timetext import TimeTextError, fold_text, parse_day

# The default zone of code that runs without settings (and of recorded review samples,
# whose population must redraw the same whatever a station's setting is later).
CST = CHINA_STANDARD_TIME
_MONTH = re.compile(r"^(\d{4})\s*(?:[-/.]|年)\s*(\d{1,2})\s*月?$")
_YEAR = re.compile(r"^(\d{4})\s*年?$")


class PeriodError(TimeTextError):
    """Text that names no year, month or day; the message repeats it as typed."""


def month_of(at: datetime, zone: tzinfo = CST) -> str:
    """The month of an instant in ``zone``: ``2026-11``."""
    return at.astimezone(zone).strftime("%Y-%m")


def canonical_period(text: str, zone: tzinfo = CST) -> str:
    """The period as stored and shown: ``2026``, ``2026-11`` or ``2026-11-03``."""
    kind, value = _read(text, zone)
    if kind == "year":
        return f"{value.year:04d}"
    if kind == "month":
        return f"{value.year:04d}-{value.month:02d}"
    return value.isoformat()


def period(text: str, zone: tzinfo = CST) -> tuple[datetime, datetime]:
    """A year, month or day (in ``zone``) as a UTC interval [start, end)."""
    kind, first = _read(text, zone)
    if kind == "year":
        after = date(first.year + 1, 1, 1)
    elif kind == "month":
        after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    else:
        after = first + timedelta(days=1)
    return _start(first, zone), _start(after, zone)


def _read(text: str, zone: tzinfo) -> tuple[str, date]:
    folded = fold_text(text)
    if m := _YEAR.match(folded):
        return "year", date(int(m.group(1)), 1, 1)
    if m := _MONTH.match(folded):
        year, month = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12:
            raise PeriodError(
                _("{text!r} is not a year, month or day: there is no month {month}").format(
                    text=text, month=month
                )
            )
        return "month", date(year, month, 1)
    try:
        return "day", parse_day(text, zone)
    except TimeTextError as exc:
        raise PeriodError(
            _(
                "{text!r} is not a year, month or day: give e.g. 2026, 2026-11, "
                "2026-11-03, 2026/11/03 or 2026年11月3日"
            ).format(text=text)
        ) from exc


def _start(day: date, zone: tzinfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
