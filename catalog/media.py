"""Catalog side of media work: probe results, time evidence, chapters, derivatives.

Each function runs in the caller's transaction with its custody event, and is
idempotent, because a worker killed at any point has its work item claimed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import queue
from catalog.custody import append_event
from catalog.models import Derivative, Recording, RecordingGroup
from catalog.states import PROBE_STATES, RecordingState

PROBE, DERIVE = "probe", "derive"
# Segments count as contiguous when one starts within this of the previous one's end
# (file-name times have one-second resolution; container durations are not exact).
SEGMENT_GAP = timedelta(seconds=2)


@dataclass(frozen=True)
class ProbeOutcome:
    probe: dict[str, Any]
    media_kind: str
    duration_s: float | None
    time_evidence: dict[str, Any]
    start: datetime | None
    end: datetime | None
    flags: dict[str, Any]  # damaged / unreadable / time flags
    segment_seq: int | None  # sequence number from the file name, for chapters


@dataclass(frozen=True)
class DerivedObject:
    kind: str
    sha256: str
    sm3: str
    size: int
    object_key: str
    method: str
    command: list[str]
    tool_version: str
    duration_s: float | None
    profile: str = ""


def record_probe(
    session: Session, signer: Any, rec: Recording, out: ProbeOutcome, actor: str
) -> None:
    if rec.state not in PROBE_STATES:
        return  # already further along: a replayed work item changes nothing
    rec.probe = out.probe
    rec.media_kind = out.media_kind
    rec.duration_s = out.duration_s
    rec.time_evidence = out.time_evidence
    rec.captured_at = out.start or rec.captured_at
    rec.capture_end = out.end
    rec.flags = {**(rec.flags or {}), **out.flags}
    rec.state = RecordingState.PROBED
    append_event(
        session,
        signer,
        actor=actor,
        action="probed",
        object_type="recording",
        object_id=rec.sha256,
        details={
            "ok": out.probe.get("ok"),
            "error": out.probe.get("error"),
            "container": out.probe.get("container"),
            "video": out.probe.get("video_codec"),
            "audio": out.probe.get("audio_codec"),
            "duration_s": out.duration_s,
            "start": out.start.isoformat() if out.start else None,
            "flags": sorted(out.flags),
        },
    )
    if out.flags.get("damaged"):
        append_event(
            session,
            signer,
            actor=actor,
            action="flagged-damaged",
            object_type="recording",
            object_id=rec.sha256,
            details={"reason": out.flags["damaged"]},
        )
    if out.segment_seq is not None and out.start is not None:
        assign_group(session, rec, out.segment_seq)
    queue.enqueue(session, DERIVE, str(rec.id))


def assign_group(session: Session, rec: Recording, seq: int) -> None:
    """Join ``rec`` to the chapter group of its neighbouring segments, if any."""
    rec.group_seq = seq
    if rec.captured_at is None or rec.device_id is None:
        return
    neighbours = session.scalars(
        select(Recording).where(
            Recording.device_id == rec.device_id,
            Recording.id != rec.id,
            Recording.group_seq.in_([seq - 1, seq + 1]),
            Recording.media_kind == rec.media_kind,
        )
    ).all()
    for other in neighbours:
        if other.captured_at is None:
            continue
        before = (
            other.group_seq == seq - 1
            and other.capture_end is not None
            and abs(rec.captured_at - other.capture_end) <= SEGMENT_GAP
        )
        after = (
            other.group_seq == seq + 1
            and rec.capture_end is not None
            and abs(other.captured_at - rec.capture_end) <= SEGMENT_GAP
        )
        if not (before or after):
            continue
        if other.group_id is None and rec.group_id is None:
            group = RecordingGroup(device_id=rec.device_id)
            session.add(group)
            session.flush()
            other.group_id = rec.group_id = group.id
        elif rec.group_id is None:
            rec.group_id = other.group_id
        elif other.group_id is None:
            other.group_id = rec.group_id
        elif other.group_id != rec.group_id:  # two groups meet: merge into the older
            keep, drop = sorted([rec.group_id, other.group_id])
            for r in session.scalars(select(Recording).where(Recording.group_id == drop)):
                r.group_id = keep
    if rec.group_id is not None:
        members = session.scalars(select(Recording).where(Recording.group_id == rec.group_id))
        starts = [m.captured_at for m in members if m.captured_at]
        current = session.get(RecordingGroup, rec.group_id)
        assert current is not None
        group = current
        group.start = min(starts) if starts else None
        ends = [
            m.capture_end
            for m in session.scalars(select(Recording).where(Recording.group_id == rec.group_id))
            if m.capture_end
        ]
        group.end = max(ends) if ends else None


def record_derivative(
    session: Session, signer: Any, rec: Recording, d: DerivedObject, actor: str
) -> Derivative:
    existing = session.scalars(
        select(Derivative).where(Derivative.recording_id == rec.id, Derivative.kind == d.kind)
    ).first()
    if existing is not None:
        return existing
    row = Derivative(
        recording_id=rec.id,
        kind=d.kind,
        sha256=d.sha256,
        sm3=d.sm3,
        size=d.size,
        object_key=d.object_key,
        profile=d.profile,
        method=d.method,
        tool_version=d.tool_version,
        duration_s=d.duration_s,
        command={"argv": d.command},
    )
    session.add(row)
    session.flush()
    append_event(
        session,
        signer,
        actor=actor,
        action="derived",
        object_type="derivative",
        object_id=d.sha256,
        details={
            "source": rec.sha256,
            "kind": d.kind,
            "method": d.method,
            "command": d.command,
            "ffmpeg": d.tool_version,
            "sm3": d.sm3,
            "size": d.size,
            "recovered": d.method == "recovered",
        },
    )
    return row


def mark_derived(session: Session, rec: Recording) -> None:
    if rec.state == RecordingState.PROBED:
        rec.state = RecordingState.DERIVED


def find_recording(session: Session, ref: str) -> list[Recording]:
    """Recordings matching an id, or a SHA-256 / SM3 hex prefix (at least 6 digits)."""
    ref = ref.strip().lower()
    for prefix in ("sha256:", "sm3:"):
        ref = ref.removeprefix(prefix)
    if ref.isdigit() and len(ref) < 6:
        rec = session.get(Recording, int(ref))
        return [rec] if rec else []
    if len(ref) < 6 or any(c not in "0123456789abcdef" for c in ref):
        return []
    found = list(
        session.scalars(select(Recording).where(Recording.sha256.startswith(ref)).limit(5))
    )
    found += [
        r
        for r in session.scalars(select(Recording).where(Recording.sm3.startswith(ref)).limit(5))
        if r not in found
    ]
    return found


def recording_report(session: Session, rec: Recording) -> dict[str, Any]:
    """Everything `liuhen show` prints about one recording."""
    from catalog.models import CustodyEvent, Device, DockingFile, Officer

    derivatives = list(
        session.scalars(
            select(Derivative).where(Derivative.recording_id == rec.id).order_by(Derivative.id)
        )
    )
    object_ids = [rec.sha256, *(d.sha256 for d in derivatives)]
    events = session.scalars(
        select(CustodyEvent)
        .where(CustodyEvent.object_id.in_(object_ids))
        .order_by(CustodyEvent.at, CustodyEvent.station_id, CustodyEvent.seq)
    )
    files = session.scalars(
        select(DockingFile).where(DockingFile.recording_id == rec.id).order_by(DockingFile.id)
    )
    device = session.get(Device, rec.device_id) if rec.device_id else None
    officer = session.get(Officer, rec.officer_id) if rec.officer_id else None
    probe = dict(rec.probe or {})
    probe.pop("raw", None)
    segments: list[dict[str, Any]] = []
    if rec.group_id is not None:
        segments = [
            {
                "id": r.id,
                "seq": r.group_seq,
                "name": r.original_name,
                "start": _iso(r.captured_at),
                "end": _iso(r.capture_end),
            }
            for r in session.scalars(
                select(Recording)
                .where(Recording.group_id == rec.group_id)
                .order_by(Recording.group_seq)
            )
        ]
    return {
        "id": rec.id,
        "name": rec.original_name,
        "state": rec.state,
        "sha256": rec.sha256,
        "sm3": rec.sm3,
        "size": rec.size,
        "object_key": rec.object_key,
        "device": device.serial if device else None,
        "officer": officer.number if officer else None,
        "capture_start": _iso(rec.captured_at),
        "capture_end": _iso(rec.capture_end),
        "received_at": _iso(rec.received_at),
        "media_kind": rec.media_kind,
        "duration_s": rec.duration_s,
        "probe": probe,
        "time_evidence": rec.time_evidence,
        "flags": rec.flags,
        "chapters": segments,
        "seen_in": [{"docking": f.docking_id, "path": f.relpath, "state": f.state} for f in files],
        "derivatives": [
            {
                "kind": d.kind,
                "method": d.method,
                "sha256": d.sha256,
                "sm3": d.sm3,
                "size": d.size,
                "duration_s": d.duration_s,
                "object_key": d.object_key,
                "ffmpeg": d.tool_version,
                "command": (d.command or {}).get("argv"),
            }
            for d in derivatives
        ],
        "custody": [
            {
                "station": e.station_id,
                "seq": e.seq,
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "object": e.object_id,
            }
            for e in events
        ],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
