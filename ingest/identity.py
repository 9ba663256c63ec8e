"""Who recorded what: device and officer identity of a docked recorder.

From the device information file on the recorder when present; else from file names,
by the configured list of patterns (GA/T 947-style: serial, 警号, start time); else
from the folder name. Raw values are always kept; an unknown device is still ingested,
and flagged.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

# Recorder clocks show China Standard Time (by default: the station.time_zone setting
# names the zone a NameParser is given).
from config.settings import CHINA_STANDARD_TIME

MAX_INFO_BYTES = 64 * 1024


@dataclass(frozen=True)
class NameFields:
    """What a recorder file name says, per the first pattern that matched."""

    serial: str | None = None
    officer: str | None = None
    start: datetime | None = None  # aware, UTC
    seq: int | None = None
    pattern: int | None = None  # index of the pattern that matched
    important: bool = False  # the recorder tagged the file important (see important_marker)


@dataclass(frozen=True)
class DeviceIdentity:
    serial: str | None
    officer_number: str | None
    officer_name: str = ""
    unit_number: str = ""
    unit_name: str = ""
    model: str = ""
    clock_offset_s: float | None = None
    source: str = "folder"  # device-info | file-name | folder
    raw: dict[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        return self.source != "folder"


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

    def parse(self, name: str) -> NameFields:
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
    digits = re.sub(r"[^0-9]", "", text)
    try:
        local = datetime.strptime(digits, "%Y%m%d%H%M%S")
    except ValueError:
        return None  # a name that looks right but names no real time (month 13 ...)
    return local.replace(tzinfo=zone).astimezone(UTC)


def read_device_info(root: Path, names: tuple[str, ...]) -> tuple[str, dict[str, str]] | None:
    """The first device information file found at the recorder root, parsed."""
    for name in names:
        path = root / name
        if path.is_symlink() or not path.is_file():
            continue
        with open(path, "rb") as f:
            data = f.read(MAX_INFO_BYTES)
        text = data.decode("utf-8-sig", errors="replace")
        values: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip():
                values[key.strip().lower()] = value.strip()
        return name, values
    return None


def identify(
    root: Path, file_names: list[str], parser: NameParser, info_names: tuple[str, ...]
) -> DeviceIdentity:
    info = read_device_info(root, info_names)
    from_names = [parser.parse(n) for n in file_names]
    serials = sorted({f.serial for f in from_names if f.serial})
    officers = sorted({f.officer for f in from_names if f.officer})
    flags: list[str] = []
    if info is not None:
        fname, v = info
        serial = v.get("serial") or None
        officer = v.get("officer_number") or None
        if serials and serial and serials != [serial]:
            flags.append(
                f"file names carry device serial(s) {', '.join(serials)}, device file says {serial}"
            )
        if officers and officer and officers != [officer]:
            flags.append(
                f"file names carry officer number(s) {', '.join(officers)}, "
                f"device file says {officer}"
            )
        offset: float | None
        try:
            offset = float(v["clock_offset_s"]) if v.get("clock_offset_s") else None
        except ValueError:
            offset = None
            flags.append(f"device file clock_offset_s is not a number: {v['clock_offset_s']!r}")
        if not serial:
            flags.append(f"device file {fname} has no serial")
        return DeviceIdentity(
            serial=serial or (serials[0] if len(serials) == 1 else None),
            officer_number=officer,
            officer_name=v.get("officer_name", ""),
            unit_number=v.get("unit_number", ""),
            unit_name=v.get("unit_name", ""),
            model=v.get("model", ""),
            clock_offset_s=offset,
            source="device-info",
            raw={"file": fname, "values": v},
            flags=tuple(flags),
        )
    if serials:
        if len(serials) > 1:
            flags.append(f"file names carry several device serials: {', '.join(serials)}")
        return DeviceIdentity(
            serial=serials[0],
            officer_number=officers[0] if len(officers) == 1 else None,
            source="file-name",
            raw={"serials": serials, "officers": officers},
            flags=tuple(flags),
        )
    flags.append("unknown device: no device file and no serial in the file names")
    return DeviceIdentity(
        serial=None,
        officer_number=officers[0] if len(officers) == 1 else None,
        source="folder",
        raw={"folder": root.name, "officers": officers},
        flags=tuple(flags),
    )


def several_recorders(
    root: Path, file_relpaths: list[bytes], parser: NameParser, info_names: tuple[str, ...]
) -> list[tuple[str, str]]:
    """The folders of ``root`` that are recorders of different devices, as
    ``(folder, serial)``; empty when ``root`` is one recorder.

    A folder copied from several recorders (``K111111/``, ``K222222/``) must not become one
    docking filed under the first serial. ``root`` is one recorder when it has a device
    file of its own; else each top-level folder is identified by its own device file or,
    without one, by the single serial its files' names carry. Folders of one recorder
    (dates, DCIM) carry the same serial and so are not several recorders.
    """
    if read_device_info(root, info_names) is not None:
        return []
    names: dict[str, set[str]] = {}
    for rel in file_relpaths:
        top, sep, rest = rel.partition(b"/")
        if not sep:
            continue
        serial = parser.parse(os.fsdecode(rest.rsplit(b"/", 1)[-1])).serial
        names.setdefault(os.fsdecode(top), set()).update([serial] if serial else [])
    found: dict[str, str] = {}
    for folder, serials in names.items():
        info = read_device_info(root / folder, info_names)
        serial = info[1].get("serial") if info is not None else None
        if not serial and len(serials) == 1:
            serial = next(iter(serials))
        if serial:
            found[folder] = serial
    if len(set(found.values())) < 2:
        return []
    return sorted(found.items())


def foreign_device(name: str, parser: NameParser, serial: str | None) -> str | None:
    """The device serial ``name`` carries when it is not the docking's ``serial``."""
    named = parser.parse(name).serial
    return named if named and serial and named != serial else None
