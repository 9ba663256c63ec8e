"""The file-name identity rule: what a recorder's file name says.

Recorders name their files after themselves (GA/T 947-style: device serial, 警号, start
time, sequence); the configured patterns (``ingest.filename_patterns``) say where each
part sits. Ingest reads names as it files a docking; the catalog reads them again for
``liuhen show`` ("the file name says"), and the catalog may not import ingest, so the
rule lives here, in a package both may use. Of the project it imports only ``config``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from config.settings import CHINA_STANDARD_TIME

__all__ = ["NameFields", "NameParser"]


@dataclass(frozen=True)
class NameFields:
    """What a recorder file name says, per the first pattern that matched."""

    serial: str | None = None
    officer: str | None = None
    start: datetime | None = None  # aware, UTC
    seq: int | None = None
    pattern: int | None = None  # index of the pattern that matched
    important: bool = False  # the recorder tagged the file important (see important_marker)


class NameParser:
    """Reads recorder file names by the configured patterns. A name's start time is the
    recorder's local wall-clock time, read in ``zone`` (the station's time zone,
    ``station.time_zone``: the zone the media time rules read local times in too)."""

    def __init__(
        self,
        patterns: tuple[str, ...],
        important_marker: str = "",
        *,
        zone: tzinfo | str = CHINA_STANDARD_TIME,
    ) -> None:
        self.patterns = [re.compile(p) for p in patterns]
        self.important = re.compile(important_marker) if important_marker else None
        self.zone = ZoneInfo(zone) if isinstance(zone, str) else zone
        # A docking reads each name up to three times (identity, foreign device, filing);
        # what a name says never changes, so the answers are kept (NameFields is frozen).
        self._parse_cached = lru_cache(maxsize=_CACHED_NAMES)(self._parse)

    def parse(self, name: str) -> NameFields:
        return self._parse_cached(name)

    def _parse(self, name: str) -> NameFields:
        # The important tag is vendor decoration around the usual name: take it out, so
        # the same patterns read a tagged and an untagged file alike.
        important = False
        if self.important is not None:
            stripped = self.important.sub("", name, count=1)
            important, name = stripped != name, stripped
        for index, pattern in enumerate(self.patterns):
            m = pattern.search(name)
            if not m:
                continue
            groups = m.groupdict()
            start = _parse_start(groups.get("start"), self.zone)
            seq = groups.get("seq")
            return NameFields(
                serial=groups.get("serial"),
                officer=groups.get("officer"),
                start=start,
                seq=int(seq) if seq else None,
                pattern=index,
                important=important,
            )
        return NameFields(important=important)


def _parse_start(text: str | None, zone: tzinfo) -> datetime | None:
    if not text:
        return None
    digits = _NOT_DIGIT.sub("", text)
    try:
        if len(digits) == 14:
            # What strptime("%Y%m%d%H%M%S") reads from 14 digits (every field two digits
            # wide, the year four), without its regex machinery: datetime checks the
            # fields as strptime's result is checked (month 13, 30 February, hour 24 …).
            local = datetime(
                int(digits[:4]),
                int(digits[4:6]),
                int(digits[6:8]),
                int(digits[8:10]),
                int(digits[10:12]),
                int(digits[12:14]),
            )
        else:  # narrower fields: strptime's own reading
            local = datetime.strptime(digits, "%Y%m%d%H%M%S")
    except ValueError:
        return None  # a name that looks right but names no real time (month 13 ...)
    return local.replace(tzinfo=zone).astimezone(UTC)


_NOT_DIGIT = re.compile(r"[^0-9]")
_CACHED_NAMES = 8192  # names of one docking's identity pass still cached when filed
