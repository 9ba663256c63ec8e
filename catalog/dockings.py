"""Catalog side of a docking: register dockings, offloaded files and their custody events.

Every function runs inside the caller's transaction and is idempotent, because a
station killed at any instruction replays its journal on restart: registering the same
file of the same docking again changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from catalog import queue
from catalog.custody import append_event
from catalog.errors import RecordingBeingExpired
from catalog.models import (
    Derivative,
    Device,
    Docking,
    DockingFile,
    Officer,
    Recording,
    WorkItem,
    utcnow,
)
from catalog.signing import Signer

T = TypeVar("T")


@dataclass(frozen=True)
class DockingInfo:
    uid: str
    slot: str
    source_path: str
    serial: str | None
    officer_number: str | None
    officer_name: str
    unit: str
    model: str
    identity_source: str
    identity_raw: dict[str, Any]
    started_at: datetime


@dataclass(frozen=True)
class OffloadedFile:
    relpath_raw: bytes
    size: int
    mtime: datetime | None
    sha256: str
    sm3: str
    object_key: str
    captured_at: datetime | None
    staged_at: datetime
    verified_by: str  # how the stored copy was verified
    important: bool = False  # marked important on the recorder (kept until reviewed)


def path_key(relpath_raw: bytes) -> str:
    return hashlib.sha256(relpath_raw).hexdigest()


def display_name(relpath_raw: bytes) -> str:
    """Readable text for any name: invalid UTF-8 and control characters are escaped."""
    text = relpath_raw.decode("utf-8", errors="backslashreplace")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _get_or_create(session: Session, model: type[T], where: Any, make: Callable[[], T]) -> T:
    """The row matching ``where``, created if missing; safe when another process races us.

    On PostgreSQL two stations (or two threads) may insert the same device at once; the
    loser's insert fails on the unique key inside a savepoint, and it reads the winner's.
    """
    row = session.scalars(select(model).where(where)).first()
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = make()
            session.add(row)
    except IntegrityError:
        row = session.scalars(select(model).where(where)).one()
    return row


def ensure_docking(session: Session, signer: Signer, info: DockingInfo, actor: str) -> Docking:
    docking = session.scalars(select(Docking).where(Docking.uid == info.uid)).first()
    if docking is not None:
        return docking
    device = None
    if info.serial:
        serial = info.serial
        device = _get_or_create(
            session, Device, Device.serial == serial,
            lambda: Device(serial=serial, model=info.model, unit=info.unit, registered=False),
        )
    officer = None
    if info.officer_number:
        number = info.officer_number
        officer = _get_or_create(
            session, Officer, Officer.number == number,
            lambda: Officer(number=number, name=info.officer_name, unit=info.unit),
        )
    docking = Docking(
        uid=info.uid,
        station_id=signer.station_id,
        device_id=device.id if device else None,
        officer_id=officer.id if officer else None,
        slot=info.slot,
        source_path=info.source_path,
        identity_source=info.identity_source,
        identity_raw=info.identity_raw,
        started_at=info.started_at,
    )
    session.add(docking)
    session.flush()
    flags = []
    if device is None or not device.registered:
        flags.append("unregistered-device" if device else "unknown-device")
    append_event(
        session, signer, actor=actor, action="docked", object_type="docking",
        object_id=info.uid,
        details={"slot": info.slot, "serial": info.serial, "officer": info.officer_number,
                 "identity": info.identity_source, "flags": flags},
        at=info.started_at,
    )
    return docking


def register_file(
    session: Session, signer: Signer, docking: Docking, f: OffloadedFile, actor: str
) -> tuple[DockingFile, bool]:
    """Record a stored, verified file. Returns (row, whether the bytes were already held)."""
    key = path_key(f.relpath_raw)
    existing = session.scalars(
        select(DockingFile).where(DockingFile.docking_id == docking.id, DockingFile.path_key == key)
    ).first()
    if existing is not None and existing.state not in ("REJECTED", "QUARANTINED"):
        return existing, existing.state == "DUPLICATE"
    name = display_name(f.relpath_raw)
    recording = session.scalars(
        select(Recording).where(Recording.sha256 == f.sha256).with_for_update()).first()
    now = utcnow()
    if recording is not None and recording.state == "EXPIRING":
        raise RecordingBeingExpired(
            f"{name}: its bytes are those of recording {recording.id}, whose expiry is "
            "under way; the file is kept staged and registered when that has finished",
            hint="the station retries by itself; if it keeps waiting, finish the expiry "
            "with `liuhen retention sweep --apply`",
        )
    revived = recording is not None and recording.state == "EXPIRED"
    if revived:
        assert recording is not None
        _revive(session, recording, docking, f, now)
    duplicate = recording is not None and not revived
    if recording is None:
        flags: dict[str, Any] = {}
        if name != f.relpath_raw.decode("utf-8", errors="replace") or len(name) > 255:
            flags["unsafe_name"] = True
        recording = Recording(
            sha256=f.sha256, sm3=f.sm3, size=f.size, object_key=f.object_key, state="STORED",
            original_name=name.rsplit("/", 1)[-1],
            original_name_raw=f.relpath_raw, device_id=docking.device_id,
            officer_id=docking.officer_id, docking_id=docking.id, captured_at=f.captured_at,
            received_at=f.staged_at, stored_at=now, verified_at=now, flags=flags,
            important=f.important,
        )
        session.add(recording)
        session.flush()
        # Media work (probe, derivatives) is queued with the registration, atomically.
        queue.enqueue(session, "probe", str(recording.id))
    elif recording.sm3 != f.sm3 or recording.size != f.size:
        # Same SHA-256, different SM3 or size: impossible for honest bytes. Refuse loudly.
        raise ValueError(f"{name}: SHA-256 {f.sha256} already held with a different SM3/size")
    if existing is not None:  # quarantined on an earlier try, taken now
        row = existing
        row.size, row.mtime, row.reason, row.recording_id = f.size, f.mtime, None, recording.id
        row.state = "DUPLICATE" if duplicate else "STORED"
    else:
        row = DockingFile(
            docking_id=docking.id, path_key=key, relpath=name, relpath_raw=f.relpath_raw,
            size=f.size, mtime=f.mtime, state="DUPLICATE" if duplicate else "STORED",
            recording_id=recording.id,
        )
        session.add(row)
    session.flush()
    common = {"docking": docking.uid, "path": name, "size": f.size}
    append_event(session, signer, actor=actor, action="offloaded", object_type="recording",
                 object_id=f.sha256, details=common | {"sm3": f.sm3}, at=f.staged_at)
    if duplicate:
        append_event(session, signer, actor=actor, action="duplicate-linked",
                     object_type="recording", object_id=f.sha256,
                     details=common | {"recording": recording.id})
    else:
        if revived:
            assert recording is not None
            append_event(session, signer, actor=actor, action="restored-after-expiry",
                         object_type="recording", object_id=f.sha256,
                         details={"recording": recording.id, "docking": docking.uid})
        append_event(session, signer, actor=actor, action="stored", object_type="recording",
                     object_id=f.sha256, details={"key": f.object_key})
        append_event(session, signer, actor=actor, action="verified", object_type="recording",
                     object_id=f.sha256, details={"method": f.verified_by})
        if f.important:  # kept until reviewed: the chain says why (as after the probe)
            append_event(session, signer, actor=actor, action="marked-important",
                         object_type="recording", object_id=f.sha256,
                         details={"source": "file-name", "name": recording.original_name})
    return row, duplicate


def _revive(
    session: Session, rec: Recording, docking: Docking, f: OffloadedFile, now: datetime
) -> None:
    """Hold again the bytes of an expired, deleted recording that came back on a recorder.

    They were offloaded and stored again just now, so they are evidence in hand: the
    recording is live again (its tombstone stays, as history) and goes through the
    probe and derivatives again; the derivative rows of before point at deleted objects
    (the tombstone lists them) and are dropped, so they are made anew.
    """
    for d in session.scalars(select(Derivative).where(Derivative.recording_id == rec.id)):
        session.delete(d)
    rec.state = "STORED"
    rec.object_key = f.object_key
    rec.docking_id = docking.id
    rec.received_at = f.staged_at
    rec.stored_at = rec.verified_at = now
    rec.important = rec.important or f.important
    rec.reviewed_at = None
    rec.retain_until = None
    rec.flags = {k: v for k, v in (rec.flags or {}).items() if k != "expiry"} | {
        "restored_after_expiry": f.staged_at.isoformat()}
    for item in session.scalars(select(WorkItem).where(WorkItem.subject == str(rec.id),
                                                       WorkItem.kind.in_(("probe", "derive")))):
        session.delete(item)
    session.flush()
    queue.enqueue(session, "probe", str(rec.id))


def record_problem_file(
    session: Session, signer: Signer, docking: Docking, relpath_raw: bytes, size: int,
    state: str, reason: str, actor: str,
) -> None:
    """A file that was not stored (rejected or quarantined), with the reason, once."""
    key = path_key(relpath_raw)
    row = session.scalars(
        select(DockingFile).where(DockingFile.docking_id == docking.id, DockingFile.path_key == key)
    ).first()
    if row is not None:
        if row.state == state and row.reason == reason:
            return
        row.state, row.reason = state, reason
    else:
        session.add(DockingFile(docking_id=docking.id, path_key=key,
                                relpath=display_name(relpath_raw), relpath_raw=relpath_raw,
                                size=size, state=state, reason=reason))
    session.flush()
    append_event(session, signer, actor=actor, action=state.lower(), object_type="docking-file",
                 object_id=f"{docking.uid}/{key[:16]}",
                 details={"path": display_name(relpath_raw), "reason": reason})


def finish_docking(
    session: Session, signer: Signer, docking: Docking, state: str, *, files: int, size: int,
    problems: dict[str, Any], actor: str,
) -> None:
    if docking.state == state:
        return
    docking.state = state
    docking.files_total = files
    docking.bytes_total = size
    docking.problems = problems
    docking.finished_at = utcnow()
    append_event(session, signer, actor=actor, action=state.lower().replace("_", "-"),
                 object_type="docking", object_id=docking.uid,
                 details={"files": files, "bytes": size, "problems": len(problems)})


def mark_cleared(
    session: Session, signer: Signer, docking: Docking, relpath_raw: bytes, sha256: str,
    actor: str,
) -> None:
    row = session.scalars(
        select(DockingFile).where(DockingFile.docking_id == docking.id,
                                  DockingFile.path_key == path_key(relpath_raw))
    ).one()
    if row.state == "CLEARED":
        return
    row.state = "CLEARED"
    append_event(session, signer, actor=actor, action="cleared-from-recorder",
                 object_type="recording", object_id=sha256,
                 details={"docking": docking.uid, "path": row.relpath})
