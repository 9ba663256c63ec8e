"""The unit's picture: per unit, month and officer, how its enforcement actions were
recorded, and the housekeeping behind it (recordings left unattached, recorders not
docked, recorder clocks found off). Definitions: docs/compliance.md.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from catalog.models import (
    Case,
    CaseRecording,
    Device,
    Docking,
    EnforcementAction,
    Officer,
    Recording,
)
from catalog.states import RecordingState
from compliance.coverage import (
    COMPLETE,
    NONE,
    PARTIAL,
    STATUSES,
    UNCERTAIN,
    ActionCoverage,
    OfficerCoverage,
    Progress,
    Rules,
    action_select,
    coverage_of,
)
from compliance.periods import CST, month_of
from config.timetext import iso_time


@dataclass(frozen=True)
class Housekeeping:
    """The thresholds of the housekeeping figures ([compliance] settings)."""

    unattached_days: int = 30
    undocked_days: int = 7
    clock_off_s: float = 120.0

    @classmethod
    def of(cls, settings: Any) -> Housekeeping:
        return cls(settings.unattached_days, settings.undocked_days, settings.clock_off_s)


# The gap histogram's buckets: (label, upper bound in seconds, inclusive).
GAP_BUCKETS: tuple[tuple[str, float], ...] = (
    ("0", 0.0),
    ("≤30s", 30.0),
    ("30-60s", 60.0),
    ("1-5min", 300.0),
    ("5-30min", 1800.0),
    (">30min", math.inf),
)


def gap_histogram(gaps: Iterable[float]) -> dict[str, int]:
    counts = {label: 0 for label, _ in GAP_BUCKETS}
    for g in gaps:
        label = next(label for label, top in GAP_BUCKETS if g <= top)
        counts[label] += 1
    return counts


@dataclass
class Tally:
    """Actions by status, and the longest gap of each action that was recorded at all."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    gaps: list[float] = field(default_factory=list)

    def add(self, status: str, longest_gap_s: float) -> None:
        self.counts[status] += 1
        if status in (COMPLETE, PARTIAL):
            self.gaps.append(longest_gap_s)

    def as_dict(self) -> dict[str, Any]:
        n = sum(self.counts.values())
        d: dict[str, Any] = {"actions": n, **self.counts}
        for status in STATUSES:
            d[f"{status}_share"] = self.counts[status] / n if n else None
        d["median_gap_s"] = statistics.median(self.gaps) if self.gaps else None
        d["worst_gap_s"] = max(self.gaps) if self.gaps else None
        d["gap_histogram"] = gap_histogram(self.gaps)
        return d


def officer_status(o: OfficerCoverage) -> str:
    """One officer's part of an action, judged on their own recordings."""
    if o.doubts:
        return UNCERTAIN
    if o.layout.covered_s == 0 and o.layout.holes:
        return NONE
    return COMPLETE if o.complete else PARTIAL


@dataclass
class _Unit:
    total: Tally = field(default_factory=Tally)
    months: dict[str, Tally] = field(default_factory=dict)
    officers: dict[tuple[str, str], Tally] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)


def tally(found: Iterable[ActionCoverage], zone: tzinfo = CST) -> dict[str, _Unit]:
    units: dict[str, _Unit] = {}
    for cov in found:
        u = units.setdefault(cov.action.unit, _Unit())
        month = month_of(cov.action.start, zone)
        status, gap = cov.status, cov.longest_gap_s
        u.total.add(status, gap)
        u.months.setdefault(month, Tally()).add(status, gap)
        for o in cov.officers:
            u.names[o.officer.number] = o.officer.name
            key = (o.officer.number, month)
            u.officers.setdefault(key, Tally()).add(officer_status(o), o.layout.longest_gap_s)
    return units


def summarize(
    session: Session,
    rules: Rules,
    house: Housekeeping,
    *,
    unit: str | None,
    start: datetime,
    end: datetime,
    now: datetime,
    zone: tzinfo = CST,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The picture of one unit (or, with ``unit`` None, of every unit) over [start, end);
    months are those of ``zone`` (the station's), as are the times given back."""
    # Housekeeping figures are as of the period's end (or now, for a period still running).
    now = min(now, end)
    q = action_select().where(EnforcementAction.start >= start, EnforcementAction.start < end)
    if unit is not None:
        q = q.where(Case.unit == unit)
    found = coverage_of(session, q, rules, progress)
    units = tally(found, zone)
    unattached = _unattached(session, unit, start, end, now - timedelta(days=house.unattached_days))
    devices = _devices(session, unit, start, end, now, house)
    names = set(units) | set(unattached) | set(devices)
    if unit is not None:
        names.add(unit)
    return {
        "from": iso_time(start, zone),
        "to": iso_time(end, zone),
        "as_of": iso_time(now, zone),
        "rules": rules.as_dict(),
        "housekeeping": dict(house.__dict__),
        "district": _district(units) if unit is None else None,
        "units": [
            _unit_dict(name, units.get(name, _Unit()), unattached.get(name), devices.get(name))
            for name in sorted(names)
        ],
    }


def _district(units: dict[str, _Unit]) -> dict[str, Any]:
    whole = Tally()
    for u in units.values():
        for status, n in u.total.counts.items():
            whole.counts[status] += n
        whole.gaps += u.total.gaps
    return whole.as_dict()


def _unit_dict(
    name: str, u: _Unit, unattached: dict[str, Any] | None, devices: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "unit": name,
        **u.total.as_dict(),
        "months": [{"month": m, **t.as_dict()} for m, t in sorted(u.months.items())],
        "officers": [
            {"officer": number, "name": u.names.get(number, ""), "month": month, **t.as_dict()}
            for (number, month), t in sorted(u.officers.items())
        ],
        "unattached_recordings": unattached or {"count": 0, "by_officer": {}},
        "undocked_devices": (devices or {}).get("undocked", []),
        "clock_off_devices": (devices or {}).get("clock_off", []),
    }


def _unattached(
    session: Session, unit: str | None, start: datetime, end: datetime, before: datetime
) -> dict[str, dict[str, Any]]:
    """Recordings captured in the period, more than N days ago, attached to no case."""
    attached = exists().where(
        and_(CaseRecording.recording_id == Recording.id, CaseRecording.detached_at.is_(None))
    )
    q = (
        select(Device.unit, Officer.number, func.count())
        .select_from(Recording)
        .join(Device, Device.id == Recording.device_id)
        .outerjoin(Officer, Officer.id == Recording.officer_id)
        .where(
            Recording.captured_at >= start,
            Recording.captured_at < end,
            Recording.captured_at < before,
            Recording.state != RecordingState.EXPIRED,
            ~attached,
        )
        .group_by(Device.unit, Officer.number)
    )
    if unit is not None:
        q = q.where(Device.unit == unit)
    out: dict[str, dict[str, Any]] = {}
    for unit_name, number, n in session.execute(q):
        u = out.setdefault(unit_name, {"count": 0, "by_officer": {}})
        u["count"] += n
        u["by_officer"][number or "?"] = n
    return out


def _devices(
    session: Session,
    unit: str | None,
    start: datetime,
    end: datetime,
    now: datetime,
    house: Housekeeping,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per unit: devices not docked for N days (as of now), and devices whose clock was
    found off by more than the threshold at a docking in the period."""
    last = (
        select(Docking.device_id, func.max(Docking.started_at).label("last"))
        .group_by(Docking.device_id)
        .subquery()
    )
    q = select(Device.unit, Device.serial, last.c.last).outerjoin(
        last, last.c.device_id == Device.id
    )
    if unit is not None:
        q = q.where(Device.unit == unit)
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    stale = now - timedelta(days=house.undocked_days)
    for unit_name, serial, when in session.execute(q.order_by(Device.serial)):
        if when is None or when < stale:
            u = out.setdefault(unit_name, {"undocked": [], "clock_off": []})
            days = None if when is None else (now - when).days
            u["undocked"].append(
                {"serial": serial, "last_docked": when.isoformat() if when else None, "days": days}
            )
    for unit_name, serial, offsets in _clock_offsets(session, unit, start, end):
        off = [x for x in offsets if abs(x) > house.clock_off_s]
        if off:
            u = out.setdefault(unit_name, {"undocked": [], "clock_off": []})
            worst = max(off, key=abs)
            u["clock_off"].append({"serial": serial, "dockings": len(off), "worst_offset_s": worst})
    return out


def _clock_offsets(
    session: Session, unit: str | None, start: datetime, end: datetime
) -> list[tuple[str, str, list[float]]]:
    q = (
        select(Device.unit, Device.serial, Docking.identity_raw)
        .join(Device, Device.id == Docking.device_id)
        .where(Docking.started_at >= start, Docking.started_at < end)
        .order_by(Device.serial, Docking.started_at)
    )
    if unit is not None:
        q = q.where(Device.unit == unit)
    by: dict[tuple[str, str], list[float]] = {}
    for unit_name, serial, raw in session.execute(q):
        offset = clock_offset(raw)
        if offset is not None:
            by.setdefault((unit_name, serial), []).append(offset)
    return [(u, s, v) for (u, s), v in by.items()]


def clock_offset(raw: dict[str, Any] | None) -> float | None:
    """The device clock offset the station measured at a docking (device minus true time)."""
    value = (raw or {}).get("clock_offset_s")
    try:
        number = float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None
