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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

__all__ = [
    "DEFAULT_THRESHOLD_S",
    "EARLIEST_PLAUSIBLE",
    "SOURCE_EMBEDDED",
    "SOURCE_FILE_MTIME",
    "SOURCE_FILE_MTIME_MINUS_DURATION",
    "SOURCE_FILE_NAME",
    "SOURCE_RECEIVED",
    "TimeEvidence",
    "TimeSources",
    "derive_times",
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
    flags: tuple[str, ...]  # human-readable findings
    raw: dict[str, str | float | None]  # every raw value (ISO strings), never overwritten

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (datetimes as ISO 8601 strings)."""
        return {
            "start": _iso(self.start) if self.start else None,
            "end": _iso(self.end) if self.end else None,
            "source": self.source,
            "corrected_by_offset": self.corrected_by_offset,
            "flags": list(self.flags),
            "raw": dict(self.raw),
        }


@dataclass(frozen=True)
class _Reading:
    """One device-clock time, corrected for the clock offset."""

    name: str  # "the file name time": for a value on its own
    pair_name: str  # "file name": for a start estimate compared with another
    raw: datetime
    value: datetime  # raw minus the clock offset, UTC

    def describe(self) -> str:
        text = f"{self.name} {_iso(self.value)}"
        if self.value != self.raw:
            text += f" (device clock showed {_iso(self.raw)})"
        return text


def derive_times(src: TimeSources, *, threshold_s: float = DEFAULT_THRESHOLD_S) -> TimeEvidence:
    """Capture start and end of one recording, by the precedence of the module docstring."""
    if not (math.isfinite(threshold_s) and threshold_s >= 0):
        raise ValueError(f"threshold_s must be a non-negative number, not {threshold_s}")
    flags: list[str] = []
    received = src.received.astimezone(UTC)
    latest = received + timedelta(seconds=threshold_s)

    offset = src.clock_offset_s
    if offset is not None and not math.isfinite(offset):
        flags.append(f"device clock offset {offset} is not a number: not applied")
        offset = None
    if offset is not None and abs(offset) > threshold_s:
        side = "ahead of" if offset > 0 else "behind"
        flags.append(
            f"device clock was {_secs(abs(offset))} s {side} the station clock at docking: "
            "device times corrected by it"
        )
    duration = src.duration_s
    if duration is not None and not (math.isfinite(duration) and duration >= 0):
        flags.append(f"duration {duration} is not a valid length: ignored")
        duration = None
    length = timedelta(seconds=duration) if duration is not None else None

    def reading(name: str, pair_name: str, value: datetime | None) -> _Reading | None:
        if value is None:
            return None
        shift = timedelta(seconds=offset or 0.0)
        return _Reading(name, pair_name, value, value.astimezone(UTC) - shift)

    by_name = reading("file name time", "file name", src.file_name)
    embedded = reading("embedded creation time", "embedded creation time", src.embedded)
    mtime = reading(
        "file mtime",
        "file mtime minus duration" if length is not None else "file mtime",
        src.file_mtime,
    )
    readings = [r for r in (by_name, embedded, mtime) if r is not None]

    plausible: list[_Reading] = []
    for r in readings:
        if r.value < EARLIEST_PLAUSIBLE:
            flags.append(f"{r.describe()} is before 2000: device clock not set; not used")
        elif r.value > latest:
            ahead = (r.value - received).total_seconds()
            flags.append(
                f"{r.describe()} is {_secs(ahead)} s after the station received the file at "
                f"{_iso(received)} (threshold {_secs(threshold_s)} s): device clock wrong; "
                "not used"
            )
        else:
            plausible.append(r)

    flags.extend(_eight_hour_flags(embedded, by_name, mtime, length))

    # Start estimates of the plausible device sources, in precedence order.
    estimates: list[tuple[str, _Reading, datetime]] = []
    for candidate, source in ((by_name, SOURCE_FILE_NAME), (embedded, SOURCE_EMBEDDED)):
        if candidate is not None and candidate in plausible:
            estimates.append((source, candidate, candidate.value))
    if mtime is not None and mtime in plausible and length is not None:
        estimates.append((SOURCE_FILE_MTIME_MINUS_DURATION, mtime, mtime.value - length))
    for i, (_, a, start_a) in enumerate(estimates):
        for _, b, start_b in estimates[i + 1 :]:
            apart = abs((start_b - start_a).total_seconds())
            if apart > threshold_s:
                flags.append(
                    f"{a.pair_name} and {b.pair_name} differ by {_secs(apart)} s "
                    f"(threshold {_secs(threshold_s)} s)"
                )
    if mtime is not None and mtime in plausible and length is None:
        # Without a duration the mtime bounds the start from one side only.
        for _, r, estimate in estimates:
            before = (estimate - mtime.value).total_seconds()
            if before > threshold_s:
                flags.append(
                    f"file mtime {_iso(mtime.value)} is {_secs(before)} s before the "
                    f"{r.pair_name} start (threshold {_secs(threshold_s)} s): a file cannot "
                    "be written before its recording starts"
                )

    chosen: _Reading | None
    if estimates:
        source, chosen, start = estimates[0]
    elif mtime is not None and mtime in plausible:
        source, chosen, start = SOURCE_FILE_MTIME, mtime, mtime.value
        flags.append(
            "duration unknown: start set to the file mtime, which is usually the end of "
            "the recording"
        )
    else:
        source, chosen, start = SOURCE_RECEIVED, None, received
        flags.append(
            f"no plausible capture time from the device: start set to the station receive "
            f"time {_iso(received)}"
        )

    end = start + length if length is not None else None
    if chosen is not None and end is not None and end > latest:
        flags.append(
            f"capture end {_iso(end)} is after the station received the file at "
            f"{_iso(received)} (threshold {_secs(threshold_s)} s)"
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
    references: list[tuple[str, datetime]] = []
    if by_name is not None:
        references.append(("file name", by_name.value))
    if mtime is not None and length is not None:
        references.append(("file mtime minus duration", mtime.value - length))
    for what, reference in references:
        if reference < EARLIEST_PLAUSIBLE:
            continue
        ahead = (embedded.value - reference).total_seconds()
        if abs(ahead - EIGHT_HOURS_S) <= EIGHT_HOURS_TOLERANCE_S:
            return [
                f"embedded creation time is exactly 8 h off: local time written as UTC? "
                f"({_secs(ahead)} s ahead of the {what})"
            ]
        if abs(ahead + EIGHT_HOURS_S) <= EIGHT_HOURS_TOLERANCE_S:
            return [
                f"embedded creation time is exactly 8 h behind the {what}: a time-zone "
                f"mix-up (the {what} read as UTC+8 but written in UTC?)"
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
