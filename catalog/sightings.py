"""Sightings: each docking in which a recording's bytes were seen, and who it says they are.

A recording is stored once per content; every later docking that holds the same bytes
adds a sighting (a ``DUPLICATE`` docking-file row) and nothing else. The identity a
recording was filed under is the first docking's; when that docking knew nothing (a
file copied off a card under a generic name, "VID_0001.MP4", by an unknown recorder) and
a later one does (the body-worn camera itself docked, its file named with serial, 警号
and start time), the later identity used to appear only as a sighting.

:func:`note_sightings` runs as a duplicate is registered:

* the recording has no device and the sighting's docking names one: the recording takes
  that device (and the docking's officer, when it has none), with a custody event
  ``identity-from-sighting`` saying which docking and file it came from;
* the recording has a device and the sighting names another (or another officer):
  nothing is changed, the conflict is flagged in ``flags["identity_conflict"]`` (one
  entry per sighting) with a custody event ``flagged-identity-conflict``.

:func:`sighting_report` gives, for ``liuhen show``, each sighting with its docking's
identity (device serial, officer, where the station read them) and what the file's own
name says (serial, 警号, start time) by the file-name patterns.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.custody import append_event
from catalog.models import Device, Docking, DockingFile, Officer, Recording
from catalog.signing import Signer
from formats.filenames import NameParser

__all__ = ["CONFLICT_FLAG", "note_sightings", "sighting_report"]

CONFLICT_FLAG = "identity_conflict"


class SightingDocking(Protocol):
    """What a sighting needs of its docking (catalog.dockings.DockingRef has it)."""

    @property
    def uid(self) -> str: ...
    @property
    def device_id(self) -> int | None: ...
    @property
    def officer_id(self) -> int | None: ...


class SightingFile(Protocol):
    """What a sighting needs of the file (catalog.dockings.OffloadedFile has it)."""

    @property
    def sha256(self) -> str: ...
    @property
    def relpath_raw(self) -> bytes: ...
    @property
    def captured_at(self) -> datetime | None: ...


def note_sightings(
    session: Session,
    signer: Signer,
    sightings: Iterable[tuple[SightingDocking, SightingFile]],
    actor: str,
) -> None:
    """Take the identity a sighting gives to a recording without one; flag conflicts.

    Call for files registered as duplicates of a held recording, in the registering
    transaction. Idempotent: a sighting noted again adds no event and no second flag.
    """
    for docking, f in sightings:
        if docking.device_id is None and docking.officer_id is None:
            continue  # a sighting that knows nobody: nothing to take, nothing to contradict
        rec = session.scalars(select(Recording).where(Recording.sha256 == f.sha256)).first()
        if rec is None:
            continue
        path = f.relpath_raw.decode("utf-8", errors="backslashreplace")
        seen = {"docking": docking.uid, "path": path}
        if f.captured_at is not None:
            seen["name_time"] = f.captured_at.isoformat()
        if rec.device_id is None and docking.device_id is not None:
            _adopt(session, signer, rec, docking, seen, actor)
        else:
            _check(session, signer, rec, docking, seen, actor)


def _adopt(
    session: Session,
    signer: Signer,
    rec: Recording,
    docking: SightingDocking,
    seen: dict[str, str],
    actor: str,
) -> None:
    rec.device_id = docking.device_id
    officer_taken = rec.officer_id is None and docking.officer_id is not None
    if officer_taken:
        rec.officer_id = docking.officer_id
    details: dict[str, Any] = {
        **seen,
        "device": _serial(session, docking.device_id),
        "officer": _number(session, rec.officer_id) if officer_taken else None,
        "reason": "the recording had no device; this sighting names one",
    }
    append_event(
        session,
        signer,
        actor=actor,
        action="identity-from-sighting",
        object_type="recording",
        object_id=rec.sha256,
        details=details,
    )


def _check(
    session: Session,
    signer: Signer,
    rec: Recording,
    docking: SightingDocking,
    seen: dict[str, str],
    actor: str,
) -> None:
    problems: list[str] = []
    if None not in (rec.device_id, docking.device_id) and rec.device_id != docking.device_id:
        problems.append(
            f"device {_serial(session, docking.device_id)} here, "
            f"{_serial(session, rec.device_id)} on the recording"
        )
    if None not in (rec.officer_id, docking.officer_id) and rec.officer_id != docking.officer_id:
        problems.append(
            f"officer {_number(session, docking.officer_id)} here, "
            f"{_number(session, rec.officer_id)} on the recording"
        )
    if not problems:
        return
    entry = {**seen, "conflict": "; ".join(problems)}
    flags = dict(rec.flags or {})
    entries = list(flags.get(CONFLICT_FLAG) or [])
    if entry in entries:
        return
    flags[CONFLICT_FLAG] = [*entries, entry]
    rec.flags = flags
    append_event(
        session,
        signer,
        actor=actor,
        action="flagged-identity-conflict",
        object_type="recording",
        object_id=rec.sha256,
        details=entry,
    )


def _serial(session: Session, device_id: int | None) -> str | None:
    device = session.get(Device, device_id) if device_id is not None else None
    return device.serial if device else None


def _number(session: Session, officer_id: int | None) -> str | None:
    officer = session.get(Officer, officer_id) if officer_id is not None else None
    return officer.number if officer else None


def sighting_report(session: Session, rec: Recording, parser: NameParser) -> list[dict[str, Any]]:
    """Each sighting of ``rec``, first first, with the identity it gives.

    ``parser`` reads the file names: the caller builds it from the settings (the
    configured ``ingest.filename_patterns`` and ``station.time_zone``), so "the file name
    says" reads names as ingest read them.
    """
    rows = session.execute(
        select(DockingFile, Docking)
        .join(Docking, Docking.id == DockingFile.docking_id)
        .where(DockingFile.recording_id == rec.id)
        .order_by(DockingFile.id)
    )
    out: list[dict[str, Any]] = []
    for f, docking in rows:
        name = parser.parse(f.relpath.rsplit("/", 1)[-1])
        out.append(
            {
                "docking": f.docking_id,
                "docking_uid": docking.uid,
                "station": docking.station_id,
                "docked_at": docking.started_at.isoformat(),
                "path": f.relpath,
                "state": f.state,
                "device": _serial(session, docking.device_id),
                "officer": _number(session, docking.officer_id),
                "identity_source": docking.identity_source,
                "name": {
                    "serial": name.serial,
                    "officer": name.officer,
                    "start": name.start.isoformat() if name.start else None,
                },
            }
        )
    return out
