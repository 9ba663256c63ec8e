"""Who recorded what: device and officer identity of a docked recorder.

From the device information file on the recorder when present; else from file names,
by the configured list of patterns (GA/T 947-style: serial, 警号, start time; the rule
itself is :mod:`formats.filenames`); else from the folder name. Raw values are always
kept; an unknown device is still ingested, and flagged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.i18n import N_
from config.message import Msg
from config.settings import CHINA_STANDARD_TIME

# The file-name rule lives in formats/ (the catalog reads names too, and may not import
# ingest); re-exported here for ingest's own modules.
from formats.filenames import NameFields, NameParser

__all__ = [
    "CHINA_STANDARD_TIME",
    "DeviceIdentity",
    "NameFields",
    "NameParser",
    "foreign_device",
    "identify",
    "read_device_info",
    "several_recorders",
]

MAX_INFO_BYTES = 64 * 1024


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
    # English, each a config.message.Msg: translated when read, never when stored
    flags: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        return self.source != "folder"


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
                Msg(
                    N_("file names carry device serial(s) {serials}, device file says {serial}"),
                    serials=", ".join(serials),
                    serial=serial,
                )
            )
        if officers and officer and officers != [officer]:
            flags.append(
                Msg(
                    N_("file names carry officer number(s) {officers}, device file says {officer}"),
                    officers=", ".join(officers),
                    officer=officer,
                )
            )
        offset: float | None
        try:
            offset = float(v["clock_offset_s"]) if v.get("clock_offset_s") else None
        except ValueError:
            offset = None
            flags.append(
                Msg(
                    N_("device file clock_offset_s is not a number: {value}"),
                    value=repr(v["clock_offset_s"]),
                )
            )
        if not serial:
            flags.append(Msg(N_("device file {name} has no serial"), name=fname))
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
            flags.append(
                Msg(
                    N_("file names carry several device serials: {serials}"),
                    serials=", ".join(serials),
                )
            )
        return DeviceIdentity(
            serial=serials[0],
            officer_number=officers[0] if len(officers) == 1 else None,
            source="file-name",
            raw={"serials": serials, "officers": officers},
            flags=tuple(flags),
        )
    flags.append(Msg(N_("unknown device: no device file and no serial in the file names")))
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
