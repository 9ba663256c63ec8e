"""Catalog side of media work: probe results, time evidence, chapters, derivatives.

Each function runs in the caller's transaction with its custody event, and is
idempotent, because a worker killed at any point has its work item claimed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from catalog import queue
from catalog.custody import append_event
from catalog.models import Derivative, Recording, RecordingGroup, WorkItem, utcnow
from catalog.states import PROBE_STATES, RecordingState
from formats.filenames import NameParser

# Work item kinds. ``derive`` plans a recording's derivatives once it is probed: it queues
# one ``derive:<kind>`` item per derivative, so that each is made, fails and is retried
# on its own (a poster that fails neither blocks nor redoes the access copy).
PROBE, DERIVE = "probe", "derive"
# A photo's JPEG copy is its "access" derivative, with a "thumbnail" beside it.
DERIVATIVE_KINDS = ("access", "proxy", "poster", "audio", "recovered", "thumbnail")
STEP_PREFIX = f"{DERIVE}:"
STEP_KINDS = tuple(f"{STEP_PREFIX}{k}" for k in DERIVATIVE_KINDS)
MEDIA_WORK_KINDS = (PROBE, DERIVE, *STEP_KINDS)
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
    flags: dict[str, Any]  # damaged / unsupported / unreadable / time flags
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
    found = dict(out.flags)
    damage = found.pop("damaged", None)
    rec.flags = {**(rec.flags or {}), **found}
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
    if damage:  # after the probed event: the damage flag and its event, one way for all
        record_damage(session, signer, rec, str(damage), actor)
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


def step_kind(derivative: str) -> str:
    """The work item kind that makes one derivative kind."""
    if derivative not in DERIVATIVE_KINDS:
        raise ValueError(f"no work item kind makes a {derivative!r} derivative")
    return f"{STEP_PREFIX}{derivative}"


def plan_derivatives(session: Session, rec: Recording, derivatives: list[str]) -> None:
    """Queue one work item per derivative ``rec`` should have (none: it is derived as it
    is). Idempotent: an item already queued, done or failed is left as it is."""
    for kind in derivatives:
        queue.enqueue(session, step_kind(kind), str(rec.id))
    settle_derivation(session, rec)


def settle_derivation(session: Session, rec: Recording) -> bool:
    """Mark ``rec`` DERIVED once every derivative item of it is done; True if so. A failed
    item keeps it PROBED (its derivatives are incomplete) until a retry succeeds. The
    caller holds the recording's lock, so two workers finishing its last two items one
    after the other see each other's outcome."""
    session.flush()
    open_items = session.scalars(
        select(WorkItem.id).where(
            WorkItem.subject == str(rec.id),
            WorkItem.kind.in_(STEP_KINDS),
            WorkItem.state != queue.DONE,
        )
    ).first()
    if open_items is not None:
        return False
    mark_derived(session, rec)
    return True


def record_damage(session: Session, signer: Any, rec: Recording, reason: str, actor: str) -> bool:
    """Flag ``rec`` damaged with ``reason`` and a signed ``flagged-damaged`` event: damage
    found after the probe (a structure check, a derivative that comes out short). The
    original stays as it is; a damaged recording gets a recovery attempt, never a copy
    pretending to be whole. False when it was flagged with this reason already."""
    flags = dict(rec.flags or {})
    if flags.get("damaged") == reason:
        return False
    rec.flags = {**flags, "damaged": reason}
    append_event(
        session,
        signer,
        actor=actor,
        action="flagged-damaged",
        object_type="recording",
        object_id=rec.sha256,
        details={"reason": reason},
    )
    return True


def set_flag(rec: Recording, name: str, value: Any) -> None:
    """Set one flag of ``rec`` (a note for `show`, such as why no recovery was made)."""
    rec.flags = {**(rec.flags or {}), name: value}


def requeue_failures(
    session: Session, signer: Any, actor: str, *, rec: Recording | None = None
) -> list[WorkItem]:
    """Put the failed media work of ``rec`` (or of every recording) back in the queue,
    with a signed ``work-requeued`` event per recording naming the items and the errors
    they had. Returns the items requeued."""
    query = select(WorkItem).where(
        WorkItem.state == queue.FAILED, WorkItem.kind.in_(MEDIA_WORK_KINDS)
    )
    if rec is not None:
        query = query.where(WorkItem.subject == str(rec.id))
    items = list(session.scalars(query.order_by(WorkItem.id).with_for_update()))
    by_subject: dict[str, list[WorkItem]] = {}
    for item in items:
        by_subject.setdefault(item.subject, []).append(item)
    for subject, group in by_subject.items():
        target = rec if rec is not None else _recording_of(session, subject)
        if target is None:
            continue
        append_event(
            session,
            signer,
            actor=actor,
            action="work-requeued",
            object_type="recording",
            object_id=target.sha256,
            details={
                "items": [
                    {"kind": i.kind, "attempts": i.attempts, "error": (i.last_error or "")[-500:]}
                    for i in group
                ]
            },
        )
    return queue.requeue_failed(session, items)


def _recording_of(session: Session, subject: str) -> Recording | None:
    return session.get(Recording, int(subject)) if subject.isdigit() else None


def work_failures(session: Session, rec_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The media work of these recordings that failed for good, or failed and waits to be
    tried again, with the reason: ``{rec_id: [{kind, state, failure, attempts, error,
    retry_at}]}``."""
    now = utcnow()
    out: dict[int, list[dict[str, Any]]] = {}
    rows = session.scalars(
        select(WorkItem)
        .where(
            WorkItem.subject.in_([str(i) for i in rec_ids]),
            WorkItem.kind.in_(MEDIA_WORK_KINDS),
            or_(
                WorkItem.state == queue.FAILED,
                (WorkItem.state == queue.PENDING) & WorkItem.last_error.is_not(None),
            ),
        )
        .order_by(WorkItem.id)
    )
    for item in rows:
        retry_at = item.not_before if item.state == queue.PENDING else None
        out.setdefault(int(item.subject), []).append(
            {
                "work_item": item.id,
                "kind": item.kind,
                "state": item.state,
                "failure": item.failure,
                "attempts": item.attempts,
                "error": item.last_error,
                "retry_at": _iso(retry_at) if retry_at and retry_at > now else None,
            }
        )
    return out


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


def recording_report(
    session: Session, rec: Recording, parser: NameParser, *, custody: bool = True
) -> dict[str, Any]:
    """Everything `liuhen show` prints about one recording; ``parser`` (built from the
    settings) reads what each sighting's file name says. ``custody=False``: without the
    custody history (the API pages it at its own endpoint)."""
    from catalog.custody import not_access
    from catalog.models import CustodyEvent, Device, Officer
    from catalog.sightings import sighting_report

    derivatives = list(
        session.scalars(
            select(Derivative).where(Derivative.recording_id == rec.id).order_by(Derivative.id)
        )
    )
    object_ids = [rec.sha256, *(d.sha256 for d in derivatives)]
    events = (
        session.scalars(
            select(CustodyEvent)
            .where(CustodyEvent.object_id.in_(object_ids), not_access())
            .order_by(CustodyEvent.at, CustodyEvent.station_id, CustodyEvent.seq)
        )
        if custody
        else ()
    )
    device = session.get(Device, rec.device_id) if rec.device_id else None
    officer = session.get(Officer, rec.officer_id) if rec.officer_id else None
    probe = dict(rec.probe or {})
    probe.pop("raw", None)
    segments = _chapters(session, rec)
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
        "failures": work_failures(session, [rec.id]).get(rec.id, []),
        "seen_in": sighting_report(session, rec, parser),
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


def _chapters(session: Session, rec: Recording) -> list[dict[str, Any]]:
    """The segments of the recording's chapter group, in order (none when ungrouped)."""
    if rec.group_id is None:
        return []
    return [
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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
