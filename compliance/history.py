"""Recordings by officer, as the catalog knows them: the officer of a recording is the one
its device was assigned to at the capture start (catalog.devices); a recording whose device
had no assignment then keeps the officer the catalog resolved for it (the device file).

Loaded with a few set queries for any number of actions (never one ORM load per action),
then searched with bisection: the same code serves one action and a district's year.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Text, case, cast, or_, select
from sqlalchemy.orm import Session

from catalog.models import DeviceAssignment, Recording
from config.i18n import N_, _
from config.message import english

# No body-worn recorder records one file for a day (battery, file-size limits): a bound
# on how far before an action's window a recording that overlaps it can have started,
# so the catalog is searched by capture start (indexed) alone.
MAX_RECORDING = timedelta(days=1)
# Past this many ids an IN list is not worth it: the time range alone selects.
IN_LIST_MAX = 5000
# A file docked under a generic name has no capture time until the probe reads one.
UNPROBED = N_("not probed yet: capture time unknown")  # translated where it is used


class Rec(NamedTuple):
    id: int
    start: datetime
    end: datetime | None
    doubt: str | None  # why its capture time is in doubt; None when it is trusted


def doubt_of(flags: dict[str, Any] | None, end: datetime | None) -> str | None:
    """Why a recording's capture interval cannot be trusted, or None.

    Every time flag of the probe (ingest.media.timeevidence: sources that disagree, a
    clock never set, a start taken from the receive time …) counts; so does an unknown
    end (not probed yet, or no duration).
    """
    times = (flags or {}).get("time") or []
    if times:
        return "; ".join(english(t) for t in times)  # kept as config.message data
    if end is None:
        return _("capture end unknown (not probed yet, or no duration)")
    return None


@dataclass
class History:
    """Each officer's recordings, sorted by capture start."""

    recs: dict[int, list[Rec]]
    starts: dict[int, list[datetime]]
    longest: dict[int, timedelta]  # the officer's longest trusted recording
    # Recordings of no known capture time, by receive time (their ``end``): each may have
    # been captured at any time before it was received.
    unknown: dict[int, list[Rec]] = field(default_factory=dict)
    received: dict[int, list[datetime]] = field(default_factory=dict)

    def around(
        self, officer_id: int, start: datetime, end: datetime, margin: timedelta
    ) -> list[Rec]:
        """The officer's recordings that may touch ``[start - margin, end + margin]``."""
        found: list[Rec] = []
        recs = self.recs.get(officer_id)
        if recs:
            reach = max(self.longest.get(officer_id, timedelta(0)), margin)
            lo = bisect.bisect_left(self.starts[officer_id], start - margin - reach)
            hi = bisect.bisect_right(self.starts[officer_id], end + margin)
            found = recs[lo:hi]
        unknown = self.unknown.get(officer_id)
        if unknown:
            i = bisect.bisect_left(self.received[officer_id], start - margin)
            found = found + unknown[i:]
        return found


def load_history(
    session: Session, officer_ids: Collection[int], lo: datetime, hi: datetime
) -> History:
    """The recordings of these officers captured from ``lo - MAX_RECORDING`` to ``hi``,
    and those of their devices received after ``lo`` that have no capture time yet."""
    window_lo, lo = lo, lo - MAX_RECORDING
    devices = _devices_of(session, officer_ids, lo, hi)
    # Only the flags that mention times come back (as text, parsed here): parsing every
    # recording's JSON cost more than the rest of the load together.
    flags_text = cast(Recording.flags, Text)
    q = select(
        Recording.id,
        Recording.device_id,
        Recording.officer_id,
        Recording.captured_at,
        Recording.capture_end,
        case((flags_text.like('%"time"%'), flags_text), else_=None),
    ).where(Recording.captured_at >= lo, Recording.captured_at <= hi)
    if len(officer_ids) + len(devices) <= IN_LIST_MAX:
        q = q.where(
            or_(Recording.device_id.in_(devices), Recording.officer_id.in_(list(officer_ids)))
        )
    if len(officer_ids) > 50:  # a district's year: stream it; one action: one round trip
        q = q.execution_options(yield_per=20_000)
    rows = session.connection().execute(q).all()
    unprobed = _unprobed(session, officer_ids, devices, window_lo)
    device_ids = {r.device_id for r in rows} | {d for _, d, _, _ in unprobed}
    spans = _assignments(session, {d for d in device_ids if d is not None}, lo, hi)
    wanted = set(officer_ids)
    recs: dict[int, list[Rec]] = {}
    for rid, device_id, own_officer, start, end, flags in rows:
        officer = _officer_at(spans.get(device_id), start)
        if officer is None:
            officer = own_officer
        if officer is None or officer not in wanted:
            continue
        doubt = doubt_of(json.loads(flags) if flags else None, end)
        recs.setdefault(officer, []).append(Rec(rid, start, end, doubt))
    history = _indexed(recs)
    for rid, device_id, own_officer, received in unprobed:
        # Captured at some time before it was received: whoever held the device from the
        # start of the period looked at until then may have recorded it.
        held = spans.get(device_id) if device_id is not None else None
        for officer in _holders(held, own_officer, lo, min(received, hi)):
            if officer in wanted:
                history.unknown.setdefault(officer, []).append(Rec(rid, lo, received, _(UNPROBED)))
    for officer, items in history.unknown.items():
        items.sort(key=lambda r: (r.end, r.id))
        history.received[officer] = [r.end for r in items if r.end is not None]
    return history


def _unprobed(
    session: Session, officer_ids: Collection[int], devices: list[int], since: datetime
) -> list[tuple[int, int | None, int | None, datetime]]:
    """Recordings of these officers' devices (or officers) with no capture time yet,
    received after ``since``: few, and found through the capture-time index (NULL)."""
    q = select(
        Recording.id, Recording.device_id, Recording.officer_id, Recording.received_at
    ).where(Recording.captured_at.is_(None), Recording.received_at >= since)
    if len(officer_ids) + len(devices) <= IN_LIST_MAX:
        q = q.where(
            or_(Recording.device_id.in_(devices), Recording.officer_id.in_(list(officer_ids)))
        )
    return [(rid, dev, own, at) for rid, dev, own, at in session.connection().execute(q)]


def _indexed(recs: dict[int, list[Rec]]) -> History:
    starts: dict[int, list[datetime]] = {}
    longest: dict[int, timedelta] = {}
    for officer, items in recs.items():
        items.sort(key=lambda r: (r.start, r.id))
        starts[officer] = [r.start for r in items]
        longest[officer] = max(
            (r.end - r.start for r in items if r.end is not None and r.doubt is None),
            default=timedelta(0),
        )
    return History(recs, starts, longest)


class _Spans(NamedTuple):
    starts: list[datetime]
    ends: list[datetime | None]
    officers: list[int]


def _officer_at(spans: _Spans | None, at: datetime) -> int | None:
    """The officer a device was assigned to at ``at`` ([start, end)), or None."""
    if spans is None:
        return None
    i = bisect.bisect_right(spans.starts, at) - 1
    if i < 0:
        return None
    end = spans.ends[i]
    return spans.officers[i] if end is None or at < end else None


def _holders(spans: _Spans | None, own: int | None, lo: datetime, hi: datetime) -> set[int]:
    """The officers a device was assigned to at any time in ``[lo, hi]``, else ``own``."""
    found = set()
    if spans is not None:
        for start, end, officer in zip(spans.starts, spans.ends, spans.officers, strict=True):
            if start <= hi and (end is None or end > lo):
                found.add(officer)
    if not found and own is not None:
        found.add(own)
    return found


def _devices_of(
    session: Session, officer_ids: Collection[int], lo: datetime, hi: datetime
) -> list[int]:
    q = select(DeviceAssignment.device_id).distinct().where(*_overlapping(lo, hi))
    if len(officer_ids) <= IN_LIST_MAX:
        q = q.where(DeviceAssignment.officer_id.in_(list(officer_ids)))
    return list(session.connection().scalars(q))


def _assignments(
    session: Session, device_ids: Iterable[int], lo: datetime, hi: datetime
) -> dict[int, _Spans]:
    ids = list(device_ids)
    q = select(
        DeviceAssignment.device_id,
        DeviceAssignment.start,
        DeviceAssignment.end,
        DeviceAssignment.officer_id,
    ).where(*_overlapping(lo, hi))
    if len(ids) <= IN_LIST_MAX:
        q = q.where(DeviceAssignment.device_id.in_(ids))
    out: dict[int, _Spans] = {}
    for device_id, start, end, officer in session.connection().execute(
        q.order_by(DeviceAssignment.device_id, DeviceAssignment.start)
    ):
        spans = out.setdefault(device_id, _Spans([], [], []))
        spans.starts.append(start)
        spans.ends.append(end)
        spans.officers.append(officer)
    return out


def _overlapping(lo: datetime, hi: datetime) -> list[Any]:
    return [
        DeviceAssignment.start <= hi,
        or_(DeviceAssignment.end.is_(None), DeviceAssignment.end > lo),
    ]
