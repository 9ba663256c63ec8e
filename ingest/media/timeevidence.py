"""When was it recorded? Capture start and end from every time a recording carries.

A recording carries several times, each of which can be wrong in its own way. All of
them are kept as they were read (:attr:`TimeEvidence.raw`, never overwritten); one is
chosen as the capture start by a fixed precedence, and every disagreement or impossible
value is flagged for a person to judge. Nothing is silently "fixed".

Sources, in order of precedence for the capture start
------------------------------------------------------
1. ``file-name``: the start time in the recorder's file name (GA/T 947 vendor naming:
   serial, 警号, start time). The recorder writes it when it opens the file, from its
   own clock, in local time (China Standard Time, parsed to UTC by
   :class:`ingest.identity.NameParser`). It is the most specific source: it names the
   start itself, to the second, and survives copying and re-muxing.
2. ``embedded``: the container's ``creation_time`` (MP4 ``mvhd``). Also the recorder's
   clock, but firmware gets it wrong more often: left at 1970 when the clock was never
   set, or local time written as if it were UTC (exactly 8 h ahead in China, flagged
   as such), and it can be rewritten by any tool that re-muxes the file.
3. ``file-mtime-minus-duration``: the file's modification time on the recorder, minus
   the media duration. The mtime is when the recorder last wrote the file, usually the
   END of the recording, hence the subtraction. It is the weakest device source: FAT
   file systems store it in local time without a zone and with 2 s resolution, and it
   changes if anything touches the file. Without a duration (a truncated recording,
   a photo) the mtime itself is used (``file-mtime``), and flagged.
4. ``received``: when the station received the file (its own, NTP-set clock). Always
   available, never the capture time: the last resort, and always flagged.

Device clock offset
-------------------
Sources 1 to 3 come from the recorder's clock. When the station measured that clock at
docking (``clock_offset_s``: device clock minus true time, positive when the device is
ahead), the offset is subtracted from each of them before anything else, and
:attr:`TimeEvidence.corrected_by_offset` says the chosen start was moved by it (an
offset of 0 moves nothing). The offset is measured at docking and assumed constant over
the recordings on the device; a clock that was reset during the shift breaks that
assumption, and shows as a disagreement between sources.

Plausibility and disagreement
-----------------------------
A device time (after correction) is impossible, flagged and never used as the start when
it is before 2000-01-01 (a clock that was never set: 1970, 2000 epochs) or later than
the station receive time plus ``threshold_s`` (nothing can be received before it is
recorded). Every pair of plausible start estimates that differ by more than
``threshold_s`` (default 120 s; exactly the threshold is not flagged) is flagged, and
the chosen source still wins: the precedence is deterministic, the judgement is left to
a person. An embedded time exactly 8 h (± 2 s) off another source is flagged
specifically, as local time labelled UTC. ``end`` is ``start + duration`` when the
duration is known, else ``None``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final

from config.i18n import N_
from config.message import Msg, stored

__all__ = [
    "DEFAULT_THRESHOLD_S",
    "DEFAULT_ZONE",
    "EARLIEST_PLAUSIBLE",
    "SOURCE_EMBEDDED",
    "SOURCE_FILE_MTIME",
    "SOURCE_FILE_MTIME_MINUS_DURATION",
    "SOURCE_FILE_NAME",
    "SOURCE_RECEIVED",
    "ZERO_TIMES",
    "EmbeddedTime",
    "TimeEvidence",
    "TimeSources",
    "derive_times",
    "read_embedded_time",
]

DEFAULT_THRESHOLD_S: Final = 120.0
# Earlier device times are a clock that was never set (recorders boot at 1970 or 2000).
EARLIEST_PLAUSIBLE: Final = datetime(2000, 1, 1, tzinfo=UTC)
# China Standard Time minus UTC: a local time written as UTC is exactly this far ahead.
EIGHT_HOURS_S: Final = 8 * 3600.0
# Names have one-second resolution and a container time may be taken a moment later.
EIGHT_HOURS_TOLERANCE_S: Final = 2.0

SOURCE_FILE_NAME: Final = "file-name"
SOURCE_EMBEDDED: Final = "embedded"
SOURCE_FILE_MTIME_MINUS_DURATION: Final = "file-mtime-minus-duration"
SOURCE_FILE_MTIME: Final = "file-mtime"
SOURCE_RECEIVED: Final = "received"
# The times the flags name (fields of their messages, translated with them).
_FILE_NAME: Final = Msg(N_("file name"))
_EMBEDDED: Final = Msg(N_("embedded creation time"))
_FILE_MTIME: Final = Msg(N_("file mtime"))
_MTIME_MINUS_DURATION: Final = Msg(N_("file mtime minus duration"))


@dataclass(frozen=True)
class TimeSources:
    """Every time known for one recording, as read. All datetimes must be aware."""

    file_name: datetime | None  # from the recorder's file name (aware UTC)
    embedded: datetime | None  # container creation_time (aware UTC)
    file_mtime: datetime | None  # file mtime on the recorder
    received: datetime  # station receive time (aware UTC)
    clock_offset_s: float | None  # device clock minus true time (positive: device ahead)
    duration_s: float | None

    def __post_init__(self) -> None:
        for name in ("file_name", "embedded", "file_mtime", "received"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"TimeSources.{name} must be timezone-aware, not {value!r}")


@dataclass(frozen=True)
class TimeEvidence:
    start: datetime | None  # aware UTC
    end: datetime | None
    source: str  # SOURCE_*: which source gave the start
    corrected_by_offset: bool  # the start was moved by the measured device clock offset
    # human-readable findings: English, each a config.message.Msg translated when read
    flags: tuple[str, ...]
    raw: dict[str, str | float | None]  # every raw value (ISO strings), never overwritten

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (datetimes as ISO 8601 strings)."""
        return {
            "start": _iso(self.start) if self.start else None,
            "end": _iso(self.end) if self.end else None,
            "source": self.source,
            "corrected_by_offset": self.corrected_by_offset,
            "flags": [stored(f) for f in self.flags],  # template + fields: shown later
            "raw": dict(self.raw),
        }


@dataclass(frozen=True)
class _Reading:
    """One device-clock time, corrected for the clock offset."""

    name: Msg  # "the file name time": for a value on its own
    pair_name: Msg  # "file name": for a start estimate compared with another
    raw: datetime
    value: datetime  # raw minus the clock offset, UTC

    def describe(self) -> Msg:
        if self.value != self.raw:
            return Msg(
                N_("{name} {time} (device clock showed {raw})"),
                name=self.name,
                time=self.value,
                raw=self.raw,
            )
        return Msg(N_("{name} {time}"), name=self.name, time=self.value)


def derive_times(src: TimeSources, *, threshold_s: float = DEFAULT_THRESHOLD_S) -> TimeEvidence:
    """Capture start and end of one recording, by the precedence of the module docstring."""
    if not (math.isfinite(threshold_s) and threshold_s >= 0):
        raise ValueError(f"threshold_s must be a non-negative number, not {threshold_s}")
    flags: list[str] = []
    received = src.received.astimezone(UTC)
    latest = received + timedelta(seconds=threshold_s)

    offset, length = _offset_and_length(src, threshold_s, flags)

    def reading(name: Msg, pair_name: Msg, value: datetime | None) -> _Reading | None:
        if value is None:
            return None
        shift = timedelta(seconds=offset or 0.0)
        return _Reading(name, pair_name, value, value.astimezone(UTC) - shift)

    by_name = reading(Msg(N_("file name time")), _FILE_NAME, src.file_name)
    embedded = reading(_EMBEDDED, _EMBEDDED, src.embedded)
    mtime = reading(
        _FILE_MTIME,
        _MTIME_MINUS_DURATION if length is not None else _FILE_MTIME,
        src.file_mtime,
    )
    readings = [r for r in (by_name, embedded, mtime) if r is not None]

    plausible = _plausible(readings, received, threshold_s, flags)

    flags.extend(_eight_hour_flags(embedded, by_name, mtime, length))

    # Start estimates of the plausible device sources, in precedence order.
    estimates: list[tuple[str, _Reading, datetime]] = []
    for candidate, source in ((by_name, SOURCE_FILE_NAME), (embedded, SOURCE_EMBEDDED)):
        if candidate is not None and candidate in plausible:
            estimates.append((source, candidate, candidate.value))
    if mtime is not None and mtime in plausible and length is not None:
        estimates.append((SOURCE_FILE_MTIME_MINUS_DURATION, mtime, mtime.value - length))
    lone_mtime = mtime if mtime is not None and mtime in plausible and length is None else None
    flags.extend(_disagreements(estimates, lone_mtime, threshold_s))

    chosen: _Reading | None
    if estimates:
        source, chosen, start = estimates[0]
    elif mtime is not None and mtime in plausible:
        source, chosen, start = SOURCE_FILE_MTIME, mtime, mtime.value
        flags.append(
            Msg(
                N_(
                    "duration unknown: start set to the file mtime, which is usually the end "
                    "of the recording"
                )
            )
        )
    else:
        source, chosen, start = SOURCE_RECEIVED, None, received
        flags.append(
            Msg(
                N_(
                    "no plausible capture time from the device: start set to the station "
                    "receive time {time}"
                ),
                time=received,
            )
        )

    end = start + length if length is not None else None
    if chosen is not None and end is not None and end > latest:
        flags.append(
            Msg(
                N_(
                    "capture end {end} is after the station received the file at {received} "
                    "(threshold {threshold} s)"
                ),
                end=end,
                received=received,
                threshold=_secs(threshold_s),
            )
        )

    raw: dict[str, str | float | None] = {
        "file_name": _iso_raw(src.file_name),
        "embedded": _iso_raw(src.embedded),
        "file_mtime": _iso_raw(src.file_mtime),
        "received": _iso_raw(src.received),
        "clock_offset_s": src.clock_offset_s,
        "duration_s": src.duration_s,
    }
    return TimeEvidence(
        start=start,
        end=end,
        source=source,
        corrected_by_offset=chosen is not None and offset is not None and offset != 0,
        flags=tuple(flags),
        raw=raw,
    )


def _offset_and_length(
    src: TimeSources, threshold_s: float, flags: list[str]
) -> tuple[float | None, timedelta | None]:
    """The clock offset and the duration that can be used; a flag for each that cannot."""
    offset = src.clock_offset_s
    if offset is not None and not math.isfinite(offset):
        flags.append(
            Msg(N_("device clock offset {offset} is not a number: not applied"), offset=str(offset))
        )
        offset = None
    if offset is not None and abs(offset) > threshold_s:
        ahead = N_(
            "device clock was {seconds} s ahead of the station clock at docking: device "
            "times corrected by it"
        )
        behind = N_(
            "device clock was {seconds} s behind the station clock at docking: device times "
            "corrected by it"
        )
        flags.append(Msg(ahead if offset > 0 else behind, seconds=_secs(abs(offset))))
    duration = src.duration_s
    if duration is not None and not (math.isfinite(duration) and duration >= 0):
        flags.append(
            Msg(N_("duration {duration} is not a valid length: ignored"), duration=str(duration))
        )
        duration = None
    return offset, timedelta(seconds=duration) if duration is not None else None


def _disagreements(
    estimates: list[tuple[str, _Reading, datetime]],
    lone_mtime: _Reading | None,
    threshold_s: float,
) -> list[str]:
    """Start estimates further apart than the threshold; and, without a duration, a
    start after the file's mtime (the mtime then bounds the start from one side only)."""
    flags: list[str] = []
    for i, (_, a, start_a) in enumerate(estimates):
        for _, b, start_b in estimates[i + 1 :]:
            apart = abs((start_b - start_a).total_seconds())
            if apart > threshold_s:
                flags.append(
                    Msg(
                        N_("{a} and {b} differ by {apart} s (threshold {threshold} s)"),
                        a=a.pair_name,
                        b=b.pair_name,
                        apart=_secs(apart),
                        threshold=_secs(threshold_s),
                    )
                )
    if lone_mtime is not None:
        for _, r, estimate in estimates:
            before = (estimate - lone_mtime.value).total_seconds()
            if before > threshold_s:
                flags.append(
                    Msg(
                        N_(
                            "file mtime {mtime} is {before} s before the {start} start "
                            "(threshold {threshold} s): a file cannot be written before its "
                            "recording starts"
                        ),
                        mtime=lone_mtime.value,
                        before=_secs(before),
                        start=r.pair_name,
                        threshold=_secs(threshold_s),
                    )
                )
    return flags


def _plausible(
    readings: list[_Reading], received: datetime, threshold_s: float, flags: list[str]
) -> list[_Reading]:
    """The readings that can be a capture time; a flag in ``flags`` for each that cannot."""
    latest = received + timedelta(seconds=threshold_s)
    plausible: list[_Reading] = []
    for r in readings:
        if r.raw.astimezone(UTC) in ZERO_TIMES:
            quicktime = N_(
                "{name} {time} is zero (the MP4/QuickTime epoch): unset, the device never set "
                "it; not used"
            )
            unix = N_(
                "{name} {time} is zero (the Unix epoch): unset, the device never set it; not used"
            )
            zero = quicktime if r.raw.year == 1904 else unix
            flags.append(Msg(zero, name=r.name, time=_iso(r.raw)))
        elif r.value < EARLIEST_PLAUSIBLE:
            flags.append(
                Msg(
                    N_("{reading} is before 2000: device clock not set; not used"),
                    reading=r.describe(),
                )
            )
        elif r.value > latest:
            ahead = (r.value - received).total_seconds()
            flags.append(
                Msg(
                    N_(
                        "{reading} is {ahead} s after the station received the file at "
                        "{received} (threshold {threshold} s): device clock wrong; not used"
                    ),
                    reading=r.describe(),
                    ahead=_secs(ahead),
                    received=received,
                    threshold=_secs(threshold_s),
                )
            )
        else:
            plausible.append(r)
    return plausible


def _eight_hour_flags(
    embedded: _Reading | None,
    by_name: _Reading | None,
    mtime: _Reading | None,
    length: timedelta | None,
) -> list[str]:
    """The classic firmware bug: local time (UTC+8) written into creation_time as UTC.

    Checked whatever the plausibility: the wrong value is often in the future.
    """
    if embedded is None:
        return []
    references: list[tuple[Msg, datetime]] = []
    if by_name is not None:
        references.append((_FILE_NAME, by_name.value))
    if mtime is not None and length is not None:
        references.append((_MTIME_MINUS_DURATION, mtime.value - length))
    for what, reference in references:
        if reference < EARLIEST_PLAUSIBLE:
            continue
        ahead = (embedded.value - reference).total_seconds()
        if abs(ahead - EIGHT_HOURS_S) <= EIGHT_HOURS_TOLERANCE_S:
            return [
                Msg(
                    N_(
                        "embedded creation time is exactly 8 h off: local time written as "
                        "UTC? ({seconds} s ahead of the {what})"
                    ),
                    seconds=_secs(ahead),
                    what=what,
                )
            ]
        if abs(ahead + EIGHT_HOURS_S) <= EIGHT_HOURS_TOLERANCE_S:
            return [
                Msg(
                    N_(
                        "embedded creation time is exactly 8 h behind the {what}: a time-zone "
                        "mix-up (the {what} read as UTC+8 but written in UTC?)"
                    ),
                    what=what,
                )
            ]
    return []


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _iso_raw(value: datetime | None) -> str | None:
    """As given (its own zone kept), so the raw record says what the source said."""
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def _secs(value: float) -> str:
    if abs(value - round(value)) < 1e-6:
        return str(round(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


# --- the embedded capture time: which field, which zone --------------------------------

DEFAULT_ZONE: Final = "Asia/Shanghai"
# Stored zeros: the QuickTime/MP4 epoch and the Unix epoch. A device that never set its
# clock (or a tool that wrote "no time") leaves one of them; it is never a capture time.
ZERO_TIMES: Final = (datetime(1904, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC))

EMBEDDED_QUICKTIME_CREATIONDATE: Final = "quicktime-creationdate"
EMBEDDED_EXIF: Final = "exif"
EMBEDDED_AVI_IDIT: Final = "avi-idit"
EMBEDDED_BWF_BEXT: Final = "bwf-bext"
EMBEDDED_CONTAINER: Final = "container"

_OFFSET_RE: Final = re.compile(r"([+-])(\d{2}):?(\d{2})$")
# BWF OriginationDate: "2018-12-31"; some recorders write "2019:01:01" (or '/' or '.').
_BEXT_DATE_RE: Final = re.compile(r"^(\d{4})[-:/.](\d{2})[-:/.](\d{2})$")
_BEXT_TIME_RE: Final = re.compile(r"^(\d{2})[-:.](\d{2})[-:.](\d{2})$")
_EXIF_TIME_RE: Final = re.compile(r"^(\d{4}):(\d{2}):(\d{2}) (\d{2}):(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class EmbeddedTime:
    """The capture time a recording carries in itself, and how it was read.

    ``value`` is aware UTC. ``raw`` is the text as the file (or ffprobe) gave it,
    ``source`` which field (EMBEDDED_*), ``rule`` in words how the text became ``value``
    (which zone, and why). ``unset`` is True for a stored zero (1904-01-01 or
    1970-01-01): ``value`` is then that zero, which :func:`derive_times` flags and never
    uses.
    """

    value: datetime
    raw: str
    source: str
    rule: str
    unset: bool = False


def read_embedded_time(
    *,
    container: str | None,
    format_tags: Mapping[str, str],
    stream_tags: Sequence[Mapping[str, str]] = (),
    exif: Mapping[str, Any] | None = None,
    stored_zero: datetime | None = None,
    avi_idit: str | None = None,
    zone: tzinfo,
) -> EmbeddedTime | None:
    """The best embedded capture time, by these rules (first that applies):

    1. QuickTime ``com.apple.quicktime.creationdate`` ("2023-09-22T18:34:05+0200"): the
       device's wall clock with its UTC offset, to the second; preferred to the
       container's ``creation_time``, which is coarser and rewritten by any re-mux.
    2. EXIF ``DateTimeOriginal`` of a photo, with ``OffsetTimeOriginal`` when the camera
       wrote one, else the camera's local time, read in ``zone``.
    3. AVI ``IDIT`` (``avi_idit``, the chunk's text, e.g. "MON SEP 10 20:52:00 2012";
       ffmpeg shows it reformatted as the ``creation_time`` tag of an ``avi`` file): the
       camera's local time, read in ``zone``.
    4. Broadcast WAV ``bext`` origination date and time (ffmpeg's ``date`` and
       ``creation_time`` tags of a ``wav`` file): the recorder's local time, read in
       ``zone``.
    5. Any other container's ``creation_time``: UTC, as MP4/MOV define it (a value
       with its own zone is read in that zone).

    A stored zero in any of them, or ``stored_zero`` (an MP4 ``mvhd`` creation time of 0,
    which ffprobe does not show), gives an ``unset`` result.
    """
    names = set((container or "").split(","))
    tag_sets = (format_tags, *stream_tags)
    apple = _tag("com.apple.quicktime.creationdate", tag_sets)
    if apple:
        found = _read_local_or_offset(apple, EMBEDDED_QUICKTIME_CREATIONDATE, zone, "QuickTime")
        if found is not None:
            return found
    if exif and isinstance(exif.get("DateTimeOriginal"), str):
        found = _read_exif(exif, zone)
        if found is not None:
            return found
    created = _tag("creation_time", tag_sets)
    if "avi" in names and (avi_idit or created):
        found = _read_idit(avi_idit, zone) or _read_local_or_offset(
            created or "", EMBEDDED_AVI_IDIT, zone, "AVI IDIT (as ffmpeg shows it)"
        )
        if found is not None:
            return found
    if "wav" in names or "w64" in names:
        found = _read_bext(_tag("date", tag_sets), created, zone)
        if found is not None:
            return found
    if created:
        found = _read_container(created)
        if found is not None:
            return found
    if stored_zero is not None and stored_zero in ZERO_TIMES:
        return EmbeddedTime(
            value=stored_zero,
            raw=f"0 ({_iso(stored_zero)})",
            source=EMBEDDED_CONTAINER,
            rule="movie header (mvhd) creation time is 0: never set by the device",
            unset=True,
        )
    return None


def _tag(name: str, tag_sets: Sequence[Mapping[str, str]]) -> str | None:
    for tags in tag_sets:
        for key, value in tags.items():
            if key.lower() == name and value.strip():
                return value.strip()
    return None


def _zone_name(zone: tzinfo, at: datetime) -> str:
    offset = zone.utcoffset(at) or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{zone} (UTC{sign}{minutes // 60:02d}:{minutes % 60:02d})"


def _local(
    naive: datetime, raw: str, source: str, zone: tzinfo, what: str, rule_extra: str = ""
) -> EmbeddedTime:
    """A wall-clock time without a zone, read in the station's zone."""
    if _is_zero(naive):
        return EmbeddedTime(
            naive.replace(tzinfo=UTC), raw, source, f"{what} is a stored zero: never set", True
        )
    aware = naive.replace(tzinfo=zone)
    rule = (
        f"{what} is the device's local time without a zone{rule_extra}; read in the "
        f"station's time zone {_zone_name(zone, aware)}"
    )
    return EmbeddedTime(aware.astimezone(UTC), raw, source, rule)


def _is_zero(naive: datetime) -> bool:
    return naive.replace(tzinfo=UTC) in ZERO_TIMES


def _read_local_or_offset(raw: str, source: str, zone: tzinfo, what: str) -> EmbeddedTime | None:
    text = raw.strip().replace("Z", "+00:00") if raw.strip().endswith("Z") else raw.strip()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        return _local(value, raw, source, zone, what)
    if _is_zero(value.astimezone(UTC).replace(tzinfo=None)):
        return EmbeddedTime(value.astimezone(UTC), raw, source, f"{what} is a stored zero", True)
    offset = value.strftime("%z")
    rule = f"{what} time with its own UTC offset {offset[:3]}:{offset[3:]}"
    return EmbeddedTime(value.astimezone(UTC), raw, source, rule)


def _read_idit(raw: str | None, zone: tzinfo) -> EmbeddedTime | None:
    """An IDIT chunk's text: C ``ctime`` form ("MON SEP 10 20:52:00 2012", the usual one)
    or EXIF form ("2012:09:10 20:52:00")."""
    if not raw:
        return None
    text = " ".join(raw.split()).title()
    for form in ("%a %b %d %H:%M:%S %Y", "%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            naive = datetime.strptime(text, form)
        except ValueError:
            continue
        return _local(naive, raw, EMBEDDED_AVI_IDIT, zone, "AVI IDIT date")
    return None


def _read_exif(exif: Mapping[str, Any], zone: tzinfo) -> EmbeddedTime | None:
    raw = str(exif["DateTimeOriginal"]).strip()
    m = _EXIF_TIME_RE.match(raw)
    if m is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(g) for g in m.groups())
        naive = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None  # "0000:00:00 00:00:00" and other placeholders
    subsec = str(exif.get("SubSecTimeOriginal") or "").strip()
    if subsec.isdigit():
        naive += timedelta(seconds=float(f"0.{subsec}"))
    offset = str(exif.get("OffsetTimeOriginal") or "").strip()
    shown = raw + (f".{subsec}" if subsec.isdigit() else "")
    om = _OFFSET_RE.match(offset)
    if om is None:
        return _local(naive, shown, EMBEDDED_EXIF, zone, "EXIF DateTimeOriginal")
    sign, hours, minutes = om.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes)) * (-1 if sign == "-" else 1)
    value = (naive - delta).replace(tzinfo=UTC)
    rule = f"EXIF DateTimeOriginal with its OffsetTimeOriginal {offset}"
    return EmbeddedTime(value, f"{shown} {offset}", EMBEDDED_EXIF, rule)


def _read_bext(date: str | None, time: str | None, zone: tzinfo) -> EmbeddedTime | None:
    if not date or not time:
        return None
    dm, tm = _BEXT_DATE_RE.match(date), _BEXT_TIME_RE.match(time)
    if dm is None or tm is None:
        return None
    try:
        year, month, day = (int(g) for g in dm.groups())
        hour, minute, second = (int(g) for g in tm.groups())
        naive = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    return _local(
        naive,
        f"{date} {time}",
        EMBEDDED_BWF_BEXT,
        zone,
        "broadcast WAV bext origination date and time",
    )


def _read_container(raw: str) -> EmbeddedTime | None:
    text = raw.strip()
    try:
        value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None  # "0000-00-00 00:00:00" and other placeholders
    stated = value.tzinfo is not None
    value = (value if stated else value.replace(tzinfo=UTC)).astimezone(UTC)
    if value in ZERO_TIMES:
        return EmbeddedTime(
            value,
            raw,
            EMBEDDED_CONTAINER,
            "container creation time is a stored zero: never set",
            True,
        )
    if not stated:
        rule = "container creation_time without a zone: UTC, as MP4/MOV define it"
    elif value.utcoffset() == timedelta(0) and text.endswith(("Z", "+00:00")):
        rule = "container creation_time in UTC"
    else:
        rule = "container creation_time with its own UTC offset"
    return EmbeddedTime(value, raw, EMBEDDED_CONTAINER, rule)
