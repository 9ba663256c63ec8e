"""Times as people type and read them: the one place a time or date given on the command
line, in a CSV or in a query is parsed, and the one place a time is shown to a person.

A time a person types is in the station's zone (``station.time_zone``, Asia/Shanghai by
default) unless it names its own offset; a time shown to a person is in that zone, with
its offset where it matters. Programs (JSON) get ISO 8601 with an explicit offset.

Accepted forms (a date alone, or a date and a time of day):

* ``2026-12-01``, ``2026/12/01``, ``2026.12.01``, ``20261201``, ``2026年12月1日``
  (months and days with or without a leading zero; full-width digits too);
* followed by a space, ``T`` or nothing (after ``日``) and ``07:00``, ``7:00:05``,
  ``07:00:05.250``, ``7时30分`` / ``7点30分``;
* optionally ended by an offset: ``Z``, ``+08:00``, ``+0800``, ``UTC``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

from config.i18n import _

# Full-width digits and punctuation people type with a Chinese input method.
_FOLD = str.maketrans("０１２３４５６７８９：－／．＋　ＴＺ", "0123456789:-/.+ TZ")

_DATE = re.compile(
    r"""^(?P<y>\d{4})
        (?:
          (?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})
        | 年\s*(?P<m2>\d{1,2})\s*月\s*(?P<d2>\d{1,2})\s*[日号]
        | (?P<m3>\d{2})(?P<d3>\d{2})
        )""",
    re.VERBOSE,
)
_CLOCK = re.compile(
    r"""^(?:[T\s]+)?
        (?P<h>\d{1,2})
        (?: [:时点] (?P<mi>\d{1,2}) 分?
            (?: [:分]? (?P<s>\d{1,2}) 秒? (?:\.(?P<f>\d{1,6}))? )?
          | [时点]整? )?
        \s*""",
    re.VERBOSE,
)
_OFFSET = re.compile(r"^\s*(?:(?P<z>Z|UTC|GMT)|(?P<sign>[+-])(?P<oh>\d{2}):?(?P<om>\d{2}))$")


class TimeTextError(ValueError):
    """A date or time that cannot be read: the message repeats the text as typed."""


@dataclass(frozen=True)
class ParsedTime:
    """What the text said: the instant, and whether it named a time of day."""

    at: datetime  # aware, in the zone the text named or the station's zone
    has_clock: bool


def fold_text(text: str) -> str:
    """Full-width digits and separators as their ASCII forms, surrounding space removed."""
    return text.translate(_FOLD).strip()


def parse_time(text: str, zone: tzinfo) -> ParsedTime:
    """A date, or a date and time of day, as typed by a person; naive means ``zone``.

    Raises :class:`TimeTextError` naming the text as typed and the forms accepted."""
    folded = fold_text(text)
    m = _DATE.match(folded)
    if not m:
        raise TimeTextError(_bad(text))
    year = int(m.group("y"))
    month = int(m.group("m") or m.group("m2") or m.group("m3"))
    day = int(m.group("d") or m.group("d2") or m.group("d3"))
    try:
        the_day = date(year, month, day)
    except ValueError as exc:
        raise TimeTextError(
            _("{text}: there is no such day (month 1-12, day within the month)").format(
                text=repr(text)
            )
        ) from exc
    rest = folded[m.end() :]
    if rest and not m.group("m2") and rest[0] not in " T+-Z":
        # "2026-12-123" is a mistyped day, not 12 December at 3 o'clock: after a date in
        # digits the time of day is set off by a space or T (after 日 it may follow).
        raise TimeTextError(_bad(text))
    clock = time(0, 0)
    has_clock = False
    if rest.strip():
        rest, offset = _split_offset(rest, text)
        if rest.strip():
            c = _CLOCK.match(rest)
            if not c or c.end() != len(rest):
                raise TimeTextError(_bad(text))
            fraction = (c.group("f") or "").ljust(6, "0")
            try:
                clock = time(
                    int(c.group("h")),
                    int(c.group("mi") or 0),
                    int(c.group("s") or 0),
                    int(fraction),
                )
            except ValueError as exc:
                raise TimeTextError(
                    _("{text}: there is no such time of day (hours 0-23, minutes 0-59)").format(
                        text=repr(text)
                    )
                ) from exc
            has_clock = True
        if offset is not None:
            return ParsedTime(datetime.combine(the_day, clock, offset), has_clock)
    return ParsedTime(datetime.combine(the_day, clock, zone), has_clock)


def parse_instant(text: str, zone: tzinfo) -> datetime:
    """A point in time (a date alone means its midnight in ``zone``), as UTC."""
    return _to_utc(parse_time(text, zone).at, text)


def parse_day(text: str, zone: tzinfo) -> date:
    """A calendar day; a time of day is refused (the caller asked for a day)."""
    parsed = parse_time(text, zone)
    if parsed.has_clock:
        raise TimeTextError(
            _("{text}: give a day (e.g. 2026-12-01), not a time of day").format(text=repr(text))
        )
    return parsed.at.date()


def day_start(day: date, zone: tzinfo) -> datetime:
    """Midnight at the start of ``day`` in ``zone``, as UTC."""
    return datetime.combine(day, time(0, 0), zone).astimezone(UTC)


def parse_range(
    start: str | None, end: str | None, zone: tzinfo
) -> tuple[datetime | None, datetime | None]:
    """``--from``/``--to`` as a half-open UTC interval [from, to): ``--to`` is exclusive.

    A ``--to`` that is a day alone means the start of that day (so ``--from 2026-12-01
    --to 2026-12-02`` is the whole of 1 December). Equal or reversed bounds are refused
    with a message that repeats both as typed and says that ``--to`` is exclusive."""
    lo = parse_instant(start, zone) if start else None
    hi = parse_instant(end, zone) if end else None
    if lo is not None and hi is not None and hi <= lo:
        raise TimeTextError(
            _(
                "--from {start} is not before --to {end}: --to is exclusive (the first "
                "moment not included), so give a later --to, e.g. the next day"
            ).format(start=repr(start), end=repr(end))
        )
    return lo, hi


def show_time(value: datetime | str | None, zone: tzinfo, *, seconds: bool = True) -> str:
    """A time for a person: ``2026-12-01 07:00:00 +08:00`` in ``zone``; "—" for none.

    A naive value is taken as UTC (the catalog stores UTC)."""
    when = _as_datetime(value)
    if when is None:
        return "—"
    local = when.astimezone(zone)
    clock = "%H:%M:%S" if seconds else "%H:%M"
    return local.strftime(f"%Y-%m-%d {clock} ") + offset_text(local)


def show_minutes(value: datetime | str | None, zone: tzinfo) -> str:
    """``2026-12-01 07:00`` in ``zone``, for a table column whose header names the offset
    (:func:`zone_suffix`); "—" for none."""
    return show_time(value, zone, seconds=False).rsplit(" ", 1)[0] if value else "—"


def show_span(start: datetime | None, end: datetime | None, zone: tzinfo) -> str:
    """``2026-12-01 07:00–08:30`` in ``zone``, or both days when the span crosses midnight."""
    if start is None:
        return "—"
    first = show_minutes(start, zone)
    if end is None:
        return first
    last = show_minutes(end, zone)
    if last[:10] == first[:10]:
        last = last[11:]
    return f"{first}–{last}"


def zone_suffix(zone: tzinfo, when: datetime | None = None) -> str:
    """`` (+08:00)``: the offset a column's times are in, for its header."""
    moment = (when or datetime.now(UTC)).astimezone(zone)
    return f" ({offset_text(moment)})"


def show_clock(value: datetime | str | None, zone: tzinfo) -> str:
    """A short time for a narrow table: ``12-01 07:00`` in ``zone`` (offset left out)."""
    when = _as_datetime(value)
    if when is None:
        return "—"
    return when.astimezone(zone).strftime("%m-%d %H:%M")


def show_day(value: datetime | date | str | None, zone: tzinfo) -> str:
    """The calendar day in ``zone``: ``2026-12-01``."""
    if value is None:
        return "—"
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    when = _as_datetime(value)
    assert when is not None
    return when.astimezone(zone).date().isoformat()


def iso_time(value: datetime | str | None, zone: tzinfo) -> str | None:
    """ISO 8601 with an explicit offset in ``zone`` for JSON: ``2026-12-01T07:00:00+08:00``."""
    when = _as_datetime(value)
    return None if when is None else when.astimezone(zone).isoformat()


def offset_text(when: datetime) -> str:
    """``+08:00`` for an aware time."""
    delta = when.utcoffset() or timedelta(0)
    sign = "-" if delta < timedelta(0) else "+"
    minutes = abs(int(delta.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _as_datetime(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    when = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _split_offset(rest: str, text: str) -> tuple[str, tzinfo | None]:
    for cut in range(len(rest)):
        if rest[cut] in "Z+-" or rest[cut:].upper().startswith(("UTC", "GMT")):
            m = _OFFSET.match(rest[cut:])
            if m is None:
                continue
            if m.group("z"):
                return rest[:cut], UTC
            minutes = int(m.group("oh")) * 60 + int(m.group("om"))
            if minutes >= 24 * 60:
                raise TimeTextError(_("{text}: no such UTC offset").format(text=repr(text)))
            sign = -1 if m.group("sign") == "-" else 1
            return rest[:cut], timezone(sign * timedelta(minutes=minutes))
    return rest, None


def _to_utc(when: datetime, text: str) -> datetime:
    try:
        return when.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01 00:00 at UTC+8 is before year 1 in UTC
        raise TimeTextError(_("{text} is outside the calendar").format(text=repr(text))) from exc


def _bad(text: str) -> str:
    return _(
        "{text} is not a date or time: give e.g. 2026-12-01, 2026/12/01, "
        "2026年12月1日 or 2026-12-01 07:00 (station time unless an offset such as "
        "+08:00 is given)"
    ).format(text=repr(text))
