"""What `liuhen district status` shows: the state of a whole district from its catalog.

Stations and their last docking, running processes (stations and workers) from their
heartbeats, the work queue by kind and state, stuck items, failures, storage used and
recordings due for expiry. Everything is read in one read session; nothing is changed.
Every function returns plain JSON-ready values (times as ISO 8601 UTC text).

Queries aggregate in the database (GROUP BY), so the cost does not grow with what the
caller receives; the lists (stuck items, failures) are capped and carry the full count.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from catalog import queue
from catalog.heartbeat import ALIVE, ALIVE_FACTOR, RUNNING, interval_of, status_of
from catalog.media import MEDIA_WORK_KINDS
from catalog.models import (
    Derivative,
    Docking,
    DockingFile,
    Heartbeat,
    LegalHold,
    Recording,
    SigningKey,
    Station,
    WorkItem,
    utcnow,
)
from catalog.states import RecordingState
from config.i18n import _
from config.settings import RetentionSettings
from config.timetext import iso_time, show_time

# Stopped and died processes stay listed this long (from when last seen), so a restart
# is visible.
STOPPED_SHOWN_FOR = timedelta(days=1)
LIST_LIMIT = 50
ERROR_CHARS = 500
# Recordings examined per expiry figure: a backlog beyond this is reported as "at least".
EXPIRY_SCAN_LIMIT = 10_000


def _iso(value: datetime | None, zone: tzinfo) -> str | None:
    """ISO 8601 with the offset of ``zone`` (UTC unless the caller names the station's)."""
    return iso_time(value, zone)


def district_status(
    session: Session,
    *,
    now: datetime | None = None,
    expiry_within_days: int = 30,
    limit: int = LIST_LIMIT,
    retention: RetentionSettings | None = None,
    zone: tzinfo = UTC,
) -> dict[str, Any]:
    """The whole picture, as `district status --json` prints it; times ISO 8601 with the
    offset of ``zone`` (pass the station's to show people their own time)."""
    now = now or utcnow()
    processes = list_processes(session, now=now, zone=zone)
    return {
        "generated_at": _iso(now, zone),
        "stations": list_stations(session, processes, zone=zone),
        "workers": [p for p in processes if p["role"] == "worker"],
        "processes": processes,
        "queue": queue_counts(session),
        "stuck": stuck_items(session, processes, now=now, limit=limit, zone=zone),
        "failures": failures(session, limit=limit, zone=zone),
        "storage": storage_used(session),
        "expiry": expiry_due(session, now=now, within_days=expiry_within_days, policy=retention),
    }


# -- processes and stations -------------------------------------------------------------------


def list_processes(
    session: Session, *, now: datetime | None = None, zone: tzinfo = UTC
) -> list[dict[str, Any]]:
    """Heartbeat rows: every running one, and those stopped within STOPPED_SHOWN_FOR."""
    now = now or utcnow()
    rows = session.scalars(
        select(Heartbeat)
        .where((Heartbeat.state == RUNNING) | (Heartbeat.last_seen >= now - STOPPED_SHOWN_FOR))
        .order_by(Heartbeat.station_id, Heartbeat.role, Heartbeat.process_id)
    )
    out = []
    for hb in rows:
        out.append(
            {
                "process_id": hb.process_id,
                "role": hb.role,
                "station_id": hb.station_id,
                "host": hb.host,
                "pid": hb.pid,
                "version": hb.version,
                "status": status_of(hb, now),
                "started_at": _iso(hb.started_at, zone),
                "last_seen": _iso(hb.last_seen, zone),
                "seen_s_ago": round((now - hb.last_seen).total_seconds(), 1),
                "interval_s": interval_of(hb),
                "details": dict(hb.details or {}),
            }
        )
    return out


def list_stations(
    session: Session, processes: Iterable[dict[str, Any]], *, zone: tzinfo = UTC
) -> list[dict[str, Any]]:
    """Each registered station: keys, dockings by state, its last docking, its processes."""
    by_station: dict[str, list[dict[str, Any]]] = {}
    for p in processes:
        by_station.setdefault(p["station_id"], []).append(p)
    keys: dict[str, tuple[int, int]] = {}
    for sid, total, active in session.execute(
        select(
            SigningKey.station_id,
            func.count(),
            func.count().filter(SigningKey.retired_at.is_(None)),
        ).group_by(SigningKey.station_id)
    ):
        keys[sid] = (int(total), int(active))
    dockings: dict[str, dict[str, int]] = {}
    for sid, state, n in session.execute(
        select(Docking.station_id, Docking.state, func.count()).group_by(
            Docking.station_id, Docking.state
        )
    ):
        dockings.setdefault(sid, {})[state] = int(n)
    # The latest docking of each station: its highest id (ids grow with time per catalog).
    latest_ids = select(func.max(Docking.id)).group_by(Docking.station_id)
    last: dict[str, Docking] = {
        d.station_id: d for d in session.scalars(select(Docking).where(Docking.id.in_(latest_ids)))
    }
    out = []
    for st in session.scalars(select(Station).order_by(Station.id)):
        procs = by_station.get(st.id, [])
        d = last.get(st.id)
        out.append(
            {
                "id": st.id,
                "name": st.name,
                "unit": st.unit,
                "role": st.role,
                "keys": {"total": keys.get(st.id, (0, 0))[0], "active": keys.get(st.id, (0, 0))[1]},
                "dockings": dockings.get(st.id, {}),
                "last_docking": None
                if d is None
                else {
                    "uid": d.uid,
                    "state": d.state,
                    "slot": d.slot,
                    "started_at": _iso(d.started_at, zone),
                    "finished_at": _iso(d.finished_at, zone),
                    "files": d.files_total,
                    "bytes": d.bytes_total,
                },
                "processes": [p["process_id"] for p in procs],
                "alive": any(p["status"] == ALIVE for p in procs),
            }
        )
    return out


# -- the work queue ---------------------------------------------------------------------------


def queue_counts(session: Session) -> dict[str, dict[str, int]]:
    """Work items by kind, then state: {"probe": {"PENDING": 3, "DONE": 10}, ...}."""
    out: dict[str, dict[str, int]] = {}
    for kind, state, n in session.execute(
        select(WorkItem.kind, WorkItem.state, func.count()).group_by(WorkItem.kind, WorkItem.state)
    ):
        out.setdefault(kind, {})[state] = int(n)
    return out


def _owner_alive(owner: str, alive: list[dict[str, Any]]) -> bool:
    """Whether a lease owner has a live heartbeat: its published lease owner, or the same
    host and pid (owners are ``host:pid:suffix``)."""
    host_pid = owner.rsplit(":", 1)[0] if owner.count(":") >= 2 else None
    for p in alive:
        if p["details"].get("lease_owner") == owner:
            return True
        if host_pid is not None and f"{p['host']}:{p['pid']}" == host_pid:
            return True
    return False


def stuck_items(
    session: Session,
    processes: Iterable[dict[str, Any]],
    *,
    now: datetime | None = None,
    limit: int = LIST_LIMIT,
    zone: tzinfo = UTC,
) -> dict[str, Any]:
    """Claimed items that are not progressing: the lease lapsed (its worker died or hung),
    or no live process owns it. Another worker takes a lapsed item at its next claim;
    one that stays listed means no worker is running for its kind."""
    now = now or utcnow()
    alive = [p for p in processes if p["status"] == ALIVE]
    items: list[dict[str, Any]] = []
    for item in session.scalars(
        select(WorkItem).where(WorkItem.state == queue.CLAIMED).order_by(WorkItem.updated_at)
    ):
        owner = item.lease_owner or ""
        if item.lease_expires_at is None or item.lease_expires_at < now:
            reason = (
                _("lease expired at {at}: its worker died or hung").format(
                    at=show_time(item.lease_expires_at, zone)
                )
                if item.lease_expires_at
                else _("claimed without a lease")
            )
        elif not _owner_alive(owner, alive):
            reason = _(
                "no live heartbeat from its owner {owner} (none within {count} heartbeat intervals)"
            ).format(owner=owner, count=ALIVE_FACTOR)
        else:
            continue
        items.append(
            {
                "id": item.id,
                "kind": item.kind,
                "subject": item.subject,
                "attempts": item.attempts,
                "lease_owner": item.lease_owner,
                "lease_expires_at": _iso(item.lease_expires_at, zone),
                "updated_at": _iso(item.updated_at, zone),
                "reason": reason,
            }
        )
    return {"count": len(items), "items": items[:limit]}


def failures(session: Session, *, limit: int = LIST_LIMIT, zone: tzinfo = UTC) -> dict[str, Any]:
    """Work items that failed for good, latest first, also grouped by recording (each
    with the reason and whether it would fail the same way again), and quarantined
    files."""
    count = (
        session.scalar(
            select(func.count()).select_from(WorkItem).where(WorkItem.state == queue.FAILED)
        )
        or 0
    )
    items = [
        {
            "id": w.id,
            "kind": w.kind,
            "subject": w.subject,
            "attempts": w.attempts,
            "failure": w.failure,
            "updated_at": _iso(w.updated_at, zone),
            "last_error": (w.last_error or "")[-ERROR_CHARS:],
        }
        for w in session.scalars(
            select(WorkItem)
            .where(WorkItem.state == queue.FAILED)
            .order_by(WorkItem.updated_at.desc(), WorkItem.id.desc())
            .limit(limit)
        )
    ]
    quarantined = (
        session.scalar(
            select(func.count()).select_from(DockingFile).where(DockingFile.state == "QUARANTINED")
        )
        or 0
    )
    files = [
        {
            "docking": uid,
            "station_id": sid,
            "path": f.relpath,
            "reason": f.reason,
            "at": _iso(f.created_at, zone),
        }
        for f, uid, sid in session.execute(
            select(DockingFile, Docking.uid, Docking.station_id)
            .join(Docking, Docking.id == DockingFile.docking_id)
            .where(DockingFile.state == "QUARANTINED")
            .order_by(DockingFile.id.desc())
            .limit(limit)
        )
    ]
    return {
        "count": int(count),
        "items": items,
        "by_recording": failures_by_recording(session, limit=limit, zone=zone),
        "quarantined_files": {"count": int(quarantined), "items": files},
    }


def failures_by_recording(
    session: Session, *, limit: int = LIST_LIMIT, zone: tzinfo = UTC
) -> dict[str, Any]:
    """Recordings with media work that failed for good, the latest failure first: each
    with its name, digest and failed items (kind, deterministic or transient, reason),
    so an operator sees what to look at and what `liuhen worker retry` would redo."""
    failed = (WorkItem.state == queue.FAILED) & WorkItem.kind.in_(MEDIA_WORK_KINDS)
    count = session.scalar(select(func.count(func.distinct(WorkItem.subject))).where(failed)) or 0
    latest = (
        select(WorkItem.subject, func.max(WorkItem.updated_at).label("at"))
        .where(failed)
        .group_by(WorkItem.subject)
        .order_by(func.max(WorkItem.updated_at).desc(), WorkItem.subject)
        .limit(limit)
    )
    subjects = [subject for subject, _ in session.execute(latest)]
    rec_ids = [int(x) for x in subjects if x.isdigit()]
    names = {r.id: r for r in session.scalars(select(Recording).where(Recording.id.in_(rec_ids)))}
    grouped: dict[str, list[dict[str, Any]]] = {x: [] for x in subjects}
    for w in session.scalars(
        select(WorkItem).where(failed, WorkItem.subject.in_(subjects)).order_by(WorkItem.id)
    ):
        grouped[w.subject].append(
            {
                "id": w.id,
                "kind": w.kind,
                "failure": w.failure,
                "attempts": w.attempts,
                "updated_at": _iso(w.updated_at, zone),
                "last_error": (w.last_error or "")[-ERROR_CHARS:],
            }
        )
    out = []
    for subject in subjects:
        rec = names.get(int(subject)) if subject.isdigit() else None
        out.append(
            {
                "recording": rec.id if rec else subject,
                "name": rec.original_name if rec else None,
                "sha256": rec.sha256 if rec else None,
                "state": rec.state if rec else None,
                "items": grouped[subject],
            }
        )
    return {"count": int(count), "recordings": out}


# -- storage and retention --------------------------------------------------------------------


def storage_used(session: Session) -> dict[str, Any]:
    """Bytes held: originals by state, derivatives by kind; the total leaves out what a
    tombstone says was deleted."""
    # Expired, not tombstoned: a recording restored after expiry keeps its tombstone.
    tomb = select(Recording.id).where(Recording.state == RecordingState.EXPIRED)
    recordings: dict[str, dict[str, int]] = {}
    for state, n, size in session.execute(
        select(Recording.state, func.count(), func.coalesce(func.sum(Recording.size), 0))
        .where(Recording.id.not_in(tomb))
        .group_by(Recording.state)
    ):
        recordings[state] = {"count": int(n), "bytes": int(size)}
    derivatives: dict[str, dict[str, int]] = {}
    for kind, n, size in session.execute(
        select(Derivative.kind, func.count(), func.coalesce(func.sum(Derivative.size), 0))
        .where(Derivative.recording_id.not_in(tomb))
        .group_by(Derivative.kind)
    ):
        derivatives[kind] = {"count": int(n), "bytes": int(size)}
    originals = sum(v["bytes"] for v in recordings.values())
    derived = sum(v["bytes"] for v in derivatives.values())
    return {
        "recordings": recordings,
        "derivatives": derivatives,
        "originals_bytes": originals,
        "derivatives_bytes": derived,
        "total_bytes": originals + derived,
    }


def expiry_due(
    session: Session,
    *,
    now: datetime | None = None,
    within_days: int = 30,
    policy: RetentionSettings | None = None,
) -> dict[str, Any]:
    """Recordings the retention sweep may delete now, and those it may delete within
    ``within_days``: held, important-unreviewed and case-attached recordings never count.

    With the retention policy, the retention rules decide (``catalog.retention.due``), so
    `district status` and `liuhen retention sweep` agree; at most ``EXPIRY_SCAN_LIMIT``
    recordings are examined per figure (``capped`` says when the figure is a floor).
    Without it, recordings whose stored retention date (``retain_until``) has passed.
    """
    now = now or utcnow()
    soon = now + timedelta(days=within_days)
    if policy is not None:
        from catalog.retention import due

        def figure(at: datetime) -> tuple[dict[str, int], bool]:
            decisions = due(session, policy, at, limit=EXPIRY_SCAN_LIMIT)
            size = (
                session.scalar(
                    select(func.coalesce(func.sum(Recording.size), 0)).where(
                        Recording.id.in_([d.recording_id for d in decisions])
                    )
                )
                or 0
            )
            return (
                {"count": len(decisions), "bytes": int(size)},
                len(decisions) >= EXPIRY_SCAN_LIMIT,
            )

        now_fig, now_capped = figure(now)
        soon_fig, soon_capped = figure(soon)
        return {
            "source": "retention rules",
            "due": now_fig,
            "within_days": within_days,
            "due_soon": {
                "count": soon_fig["count"] - now_fig["count"],
                "bytes": soon_fig["bytes"] - now_fig["bytes"],
            },
            "capped": now_capped or soon_capped,
        }
    held = select(LegalHold.recording_id).where(LegalHold.released_at.is_(None))
    # Expired, not tombstoned: a recording restored after expiry keeps its tombstone.
    tomb = select(Recording.id).where(Recording.state == RecordingState.EXPIRED)
    base = select(func.count(), func.coalesce(func.sum(Recording.size), 0)).where(
        Recording.retain_until.is_not(None),
        Recording.id.not_in(held),
        Recording.id.not_in(tomb),
        ~and_(Recording.important, Recording.reviewed_at.is_(None)),
    )
    due_n, due_bytes = session.execute(base.where(Recording.retain_until <= now)).one()
    soon_n, soon_bytes = session.execute(
        base.where(Recording.retain_until > now, Recording.retain_until <= soon)
    ).one()
    return {
        "source": "recordings.retain_until",
        "due": {"count": int(due_n), "bytes": int(due_bytes)},
        "within_days": within_days,
        "due_soon": {"count": int(soon_n), "bytes": int(soon_bytes)},
        "capped": False,
    }
