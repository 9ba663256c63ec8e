"""The custody check run from the audit page: `liuhen custody verify`'s own check
(``api.custody_check``), one station's chain after the other in a background thread,
so the page can show how far it has come and each station's result.

One check at a time per server (it reads every custody event: two at once would only
share the disk and the two cores). The results are the server's memory, as the export
jobs are: a restart forgets when each chain was last verified, and the next check tells
it again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy import func, select

from api.context import ApiContext
from api.custody_check import check_custody, reachable_anchors, trusted_keys
from catalog.models import CustodyEvent, Station
from config.errors import LiuhenError
from config.timetext import iso_time


@dataclass
class StationResult:
    """One station's chain as the check found it."""

    station: str
    ok: bool
    events: int
    last_anchored: int | None  # the highest event number a verified signed head vouches for
    heads_verified: int
    problems: list[str]
    checked_at: datetime

    def as_dict(self, zone: tzinfo) -> dict[str, Any]:
        return {
            "station": self.station,
            "ok": self.ok,
            "events": self.events,
            "last_anchored": self.last_anchored,
            "heads_verified": self.heads_verified,
            "problems": self.problems,
            "checked_at": iso_time(self.checked_at, zone),
        }


@dataclass
class CustodyRun:
    """One check of every station's chain, started by ``actor``."""

    actor: str
    stations: list[str]
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    current: str | None = None
    done: list[StationResult] = field(default_factory=list)
    # Anchors that could not be read and name no station, and sources out of reach.
    general: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def state(self) -> str:
        if self.error is not None:
            return "failed"
        return "done" if self.finished_at is not None else "running"

    @property
    def ok(self) -> bool:
        return self.state == "done" and not self.general and all(r.ok for r in self.done)

    def as_dict(self, zone: tzinfo) -> dict[str, Any]:
        return {
            "state": self.state,
            "ok": self.ok,
            "actor": self.actor,
            "started_at": iso_time(self.started_at, zone),
            "finished_at": iso_time(self.finished_at, zone),
            "stations_total": len(self.stations),
            "stations_done": len(self.done),
            "current": self.current,
            "results": [r.as_dict(zone) for r in self.done],
            "general": self.general,
            "error": self.error,
        }


class CustodyChecks:
    """The server's custody checks: the one running or last run, and each station's
    last result (kept across runs)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self.run: CustodyRun | None = None
        self.last: dict[str, StationResult] = {}

    def start(self, actor: str) -> CustodyRun:
        """A new check in the background, or the one still running."""
        with self._lock:
            if self.run is not None and self.run.state == "running":
                return self.run
            self.run = CustodyRun(actor=actor, stations=chain_stations(self.ctx))
            run = self.run
        threading.Thread(
            target=self._check, args=(run,), name="liuhen-custody-check", daemon=True
        ).start()
        return run

    def _check(self, run: CustodyRun) -> None:
        ctx = self.ctx
        try:
            trusted = trusted_keys(ctx.settings, lambda: ctx.signer)
            reached = reachable_anchors(ctx.settings, ctx.store)
            run.general += reached.unreachable
            run.general += [i.detail for i in reached.issues if not i.station_id]
            for station in run.stations:
                run.current = station
                with ctx.catalog.session() as s:
                    report = check_custody(s, reached, trusted, station=station)
                mine = [p for p in report.problems if p.station_id == station]
                result = StationResult(
                    station=station,
                    ok=not mine,
                    events=report.events,
                    last_anchored=report.last_anchored.get(station),
                    heads_verified=report.heads_verified,
                    problems=[p.describe() for p in mine],
                    checked_at=datetime.now(UTC),
                )
                run.done.append(result)
                self.last[station] = result
        except LiuhenError as exc:
            run.error = exc.message
        except Exception as exc:  # shown on the page, never a silently dead thread
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            run.current = None
            run.finished_at = datetime.now(UTC)


def checks_of(ctx: ApiContext, state: Any) -> CustodyChecks:
    """The server's :class:`CustodyChecks`, made on first use (``app.state``)."""
    checks: CustodyChecks | None = getattr(state, "custody_checks", None)
    if checks is None:
        with _MAKE:
            checks = getattr(state, "custody_checks", None)
            if checks is None:
                checks = CustodyChecks(ctx)
                state.custody_checks = checks
    return checks


_MAKE = threading.Lock()


def chain_stations(ctx: ApiContext) -> list[str]:
    """Every station the catalog knows or that has custody events, sorted."""
    with ctx.catalog.session() as s:
        known = set(s.scalars(select(Station.id)))
        known |= set(s.scalars(select(CustodyEvent.station_id).distinct()))
    return sorted(known)


@dataclass
class ChainSummary:
    station: str
    name: str
    unit: str
    events: int
    last_seq: int
    last_event_at: str | None


def chain_summaries(ctx: ApiContext) -> list[ChainSummary]:
    """Each station's chain as the catalog holds it: events, newest number and time."""
    with ctx.catalog.session() as s:
        stations = {st.id: st for st in s.scalars(select(Station))}
        rows = s.execute(
            select(
                CustodyEvent.station_id,
                func.count(),
                func.max(CustodyEvent.seq),
                func.max(CustodyEvent.at),
            ).group_by(CustodyEvent.station_id)
        ).all()
    counted = {r[0]: (int(r[1]), int(r[2] or 0), r[3]) for r in rows}
    out = []
    for sid in sorted(set(stations) | set(counted)):
        st = stations.get(sid)
        events, last_seq, last_at = counted.get(sid, (0, 0, None))
        out.append(
            ChainSummary(
                station=sid,
                name=st.name if st else "",
                unit=st.unit if st else "",
                events=events,
                last_seq=last_seq,
                last_event_at=last_at,
            )
        )
    return out
