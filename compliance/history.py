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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Text, case, cast, or_, select
from sqlalchemy.orm import Session

from catalog.models import DeviceAssignment, Recording

# No body-worn recorder records one file for a day (battery, file-size limits): a bound
# on how far before an action's window a recording that overlaps it can have started,
# so the catalog is searched by capture start (indexed) alone.
MAX_RECORDING = timedelta(days=1)
# Past this many ids an IN list is not worth it: the time range alone selects.
IN_LIST_MAX = 5000


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
        return "; ".join(str(t) for t in times)
    if end is None:
        return "capture end unknown (not probed yet, or no duration)"
    return None


@dataclass
class History:
    """Each officer's recordings, sorted by capture start."""

    recs: dict[int, list[Rec]]
    starts: dict[int, list[datetime]]
    longest: dict[int, timedelta]  # the officer's longest trusted recording

    def around(
        self, officer_id: int, start: datetime, end: datetime, margin: timedelta
    ) -> list[Rec]:
        """The officer's recordings that may touch ``[start - margin, end + margin]``."""
        recs = self.recs.get(officer_id)
        if not recs:
            return []
        reach = max(self.longest.get(officer_id, timedelta(0)), margin)
        lo = bisect.bisect_left(self.starts[officer_id], start - margin - reach)
        hi = bisect.bisect_right(self.starts[officer_id], end + margin)
        return recs[lo:hi]


def load_history(
    session: Session, officer_ids: Collection[int], lo: datetime, hi: datetime
) -> History:
    """The recordings of these officers captured from ``lo - MAX_RECORDING`` to ``hi``."""
    lo = lo - MAX_RECORDING
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
    spans = _assignments(session, {r.device_id for r in rows if r.device_id is not None}, lo, hi)
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
    return _indexed(recs)


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
