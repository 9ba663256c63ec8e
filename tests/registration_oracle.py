"""The one-file registration of an offloaded file, kept as the tests' oracle.

The product registers files in batches (:func:`catalog.dockings.register_files`, a few
bulk statements); this writes, for one file, the rows and custody events that batch must
write for it, with the ORM and one event at a time. The batch tests compare the two.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import queue
from catalog.custody import append_event
from catalog.dockings import (
    DockingRef,
    OffloadedFile,
    _being_expired,
    _digest_conflict,
    _name_flags,
    _revive,
    display_name,
    path_key,
    repaired_details,
)
from catalog.models import Docking, DockingFile, Recording, utcnow
from catalog.sightings import note_sightings
from catalog.signing import Signer
from catalog.states import RecordingState


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
        select(Recording).where(Recording.sha256 == f.sha256).with_for_update()
    ).first()
    now = utcnow()
    if recording is not None and recording.state == RecordingState.EXPIRING:
        raise _being_expired(name, recording.id)
    revived = recording is not None and recording.state == RecordingState.EXPIRED
    if revived:
        assert recording is not None
        _revive(session, recording, docking.id, f, now)
    duplicate = recording is not None and not revived
    if recording is None:
        flags = _name_flags(name, f.relpath_raw)
        recording = Recording(
            sha256=f.sha256,
            sm3=f.sm3,
            size=f.size,
            object_key=f.object_key,
            state=RecordingState.STORED,
            original_name=name.rsplit("/", 1)[-1],
            original_name_raw=f.relpath_raw,
            device_id=docking.device_id,
            officer_id=docking.officer_id,
            docking_id=docking.id,
            captured_at=f.captured_at,
            received_at=f.staged_at,
            stored_at=now,
            verified_at=now,
            flags=flags,
            important=f.important,
        )
        session.add(recording)
        session.flush()
        # Media work (probe, derivatives) is queued with the registration, atomically.
        queue.enqueue(session, "probe", str(recording.id))
    elif recording.sm3 != f.sm3 or recording.size != f.size:
        raise _digest_conflict(name, f.sha256)
    if existing is not None:  # quarantined on an earlier try, taken now
        row = existing
        row.size, row.mtime, row.reason, row.recording_id = f.size, f.mtime, None, recording.id
        row.state = "DUPLICATE" if duplicate else "STORED"
    else:
        row = DockingFile(
            docking_id=docking.id,
            path_key=key,
            relpath=name,
            relpath_raw=f.relpath_raw,
            size=f.size,
            mtime=f.mtime,
            state="DUPLICATE" if duplicate else "STORED",
            recording_id=recording.id,
        )
        session.add(row)
    session.flush()
    common = {"docking": docking.uid, "path": name, "size": f.size}
    append_event(
        session,
        signer,
        actor=actor,
        action="offloaded",
        object_type="recording",
        object_id=f.sha256,
        details=common | {"sm3": f.sm3},
        at=f.staged_at,
    )
    if f.repaired is not None:
        append_event(
            session,
            signer,
            actor=actor,
            action="repaired",
            object_type="recording",
            object_id=f.sha256,
            details=repaired_details(f, docking.uid, name),
        )
    if duplicate:
        append_event(
            session,
            signer,
            actor=actor,
            action="duplicate-linked",
            object_type="recording",
            object_id=f.sha256,
            details=common | {"recording": recording.id},
        )
        note_sightings(session, signer, [(DockingRef.of(docking), f)], actor)
    else:
        if revived:
            assert recording is not None
            append_event(
                session,
                signer,
                actor=actor,
                action="restored-after-expiry",
                object_type="recording",
                object_id=f.sha256,
                details={"recording": recording.id, "docking": docking.uid},
            )
        append_event(
            session,
            signer,
            actor=actor,
            action="stored",
            object_type="recording",
            object_id=f.sha256,
            details={"key": f.object_key},
        )
        append_event(
            session,
            signer,
            actor=actor,
            action="verified",
            object_type="recording",
            object_id=f.sha256,
            details={"method": f.verified_by},
        )
        if f.important:  # kept until reviewed: the chain says why (as after the probe)
            append_event(
                session,
                signer,
                actor=actor,
                action="marked-important",
                object_type="recording",
                object_id=f.sha256,
                details={"source": "file-name", "name": recording.original_name},
            )
    return row, duplicate
