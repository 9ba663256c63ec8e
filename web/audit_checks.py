"""The custody check run from the audit page: `liuhen custody verify`'s own check
(``api.custody_check``), one station's chain after the other in a background thread,
so the page can show how far it has come and each station's result.

One check at a time per server (it reads every custody event: two at once would only
share the disk and the two cores), whichever process of `liuhen serve --workers N` the
button reached: the check holds ``<data dir>/custody_checks/run.lock`` while it runs.
The running or last check (``run.json``) and each station's last result
(``stations.json``) are files there (``api.filestate``), so every process shows the
same, and a restart forgets nothing; a check whose process died is shown as failed
(interrupted).

Problems are kept as data (kind, station, event number, detail), not as text in the
language of the process that found them, and shown in the reader's language. The check
runs in English; the chain walk writes its details as text, so a station with problems
is walked again in Chinese and both details are kept.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from api.context import ApiContext
from api.custody_check import check_custody, reachable_anchors, trusted_keys
from api.filestate import Held, owner_gone, read_json, try_lock, write_json
from catalog.custody import Problem
from catalog.models import CustodyEvent, Station
from config.errors import LiuhenError
from config.i18n import N_, language, language_for
from config.message import Msg, shown, stored
from config.timetext import iso_time


def _problem(p: Problem, chinese: Problem | None = None) -> dict[str, Any]:
    kept = {
        "kind": p.kind,
        "station": p.station_id,
        "seq": p.seq,
        "event_id": p.event_id,
        "detail": str(p.detail),
    }
    if chinese is not None:
        kept["detail_zh"] = str(chinese.detail)
    return kept


def _problems(english: list[Any], chinese: list[Any] | None) -> list[dict[str, Any]]:
    """The problems as kept: each with its detail in English and, where the same walk in
    Chinese found the same problem (same kind, station and event), in Chinese too."""
    same = chinese is not None and len(chinese) == len(english)
    pairs = zip(english, chinese if same and chinese is not None else english, strict=True)
    return [
        _problem(_as_problem(e), _as_problem(z) if same and _same(e, z) else None) for e, z in pairs
    ]


def _as_problem(p: Any) -> Problem:
    if isinstance(p, Problem):
        return p
    return Problem(p.station_id, p.seq, None, p.kind, p.detail)  # an anchor's Issue


def _same(a: Any, b: Any) -> bool:
    return bool(a.kind == b.kind and a.station_id == b.station_id and a.seq == b.seq)


def problem_text(kept: Any) -> str:
    """A kept problem (or note) in the reader's language."""
    if isinstance(kept, dict) and "kind" in kept:
        chinese = kept.get("detail_zh") if language() == "zh" else None
        return Problem(
            str(kept.get("station") or ""),
            kept.get("seq"),
            kept.get("event_id"),
            str(kept["kind"]),
            str(chinese or kept.get("detail") or ""),
        ).describe()
    if isinstance(kept, dict) and "en" in kept:  # a text kept in both languages
        return str(kept.get(language()) or kept["en"])
    return shown(kept)


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


@dataclass
class StationResult:
    """One station's chain as the check found it."""

    station: str
    ok: bool
    events: int
    last_anchored: int | None  # the highest event number a verified signed head vouches for
    heads_verified: int
    kept_problems: list[dict[str, Any]]
    checked_at: datetime

    @property
    def problems(self) -> list[str]:
        """The problems in the reader's language."""
        return [problem_text(p) for p in self.kept_problems]

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

    def kept(self) -> dict[str, Any]:
        return {
            "station": self.station,
            "ok": self.ok,
            "events": self.events,
            "last_anchored": self.last_anchored,
            "heads_verified": self.heads_verified,
            "problems": self.kept_problems,
            "checked_at": self.checked_at.isoformat(),
        }

    @classmethod
    def from_kept(cls, kept: dict[str, Any]) -> StationResult:
        return cls(
            station=str(kept["station"]),
            ok=bool(kept["ok"]),
            events=int(kept.get("events") or 0),
            last_anchored=kept.get("last_anchored"),
            heads_verified=int(kept.get("heads_verified") or 0),
            kept_problems=list(kept.get("problems") or []),
            checked_at=_time(kept.get("checked_at")) or datetime.now(UTC),
        )


@dataclass
class CustodyRun:
    """One check of every station's chain, started by ``actor``."""

    actor: str
    stations: list[str]
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    current: str | None = None
    done: list[StationResult] = field(default_factory=list)
    # Anchors that could not be read and name no station (kept problems), and sources
    # out of reach (kept messages).
    kept_general: list[Any] = field(default_factory=list)
    kept_error: Any = None

    @property
    def state(self) -> str:
        if self.kept_error is not None:
            return "failed"
        return "done" if self.finished_at is not None else "running"

    @property
    def ok(self) -> bool:
        return self.state == "done" and not self.kept_general and all(r.ok for r in self.done)

    @property
    def general(self) -> list[str]:
        return [problem_text(g) for g in self.kept_general]

    @property
    def error(self) -> str | None:
        return None if self.kept_error is None else problem_text(self.kept_error)

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

    def kept(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "stations": self.stations,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "current": self.current,
            "done": [r.kept() for r in self.done],
            "general": self.kept_general,
            "error": self.kept_error,
        }

    @classmethod
    def from_kept(cls, kept: dict[str, Any]) -> CustodyRun:
        return cls(
            actor=str(kept.get("actor", "")),
            stations=[str(s) for s in kept.get("stations") or []],
            started_at=_time(kept.get("started_at")) or datetime.now(UTC),
            finished_at=_time(kept.get("finished_at")),
            current=kept.get("current"),
            done=[StationResult.from_kept(r) for r in kept.get("done") or []],
            kept_general=list(kept.get("general") or []),
            kept_error=kept.get("error"),
        )


class CustodyChecks:
    """The server's custody checks: the one running or last run, and each station's
    last result (kept across runs), as the files in ``folder`` hold them."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.folder: Path = ctx.settings.data_dir / "custody_checks"

    @property
    def _run_file(self) -> Path:
        return self.folder / "run.json"

    @property
    def _lock_file(self) -> Path:
        return self.folder / "run.lock"

    @property
    def run(self) -> CustodyRun | None:
        """The check running now or last run (one whose process died: failed)."""
        run = self._read_run()
        if run is None or run.state != "running":
            return run
        gone = owner_gone(self._lock_file)
        if gone is False:
            return run
        try:
            run = self._read_run()  # under the lock: the last word of the check's process
            if run is not None and run.state == "running":
                run.kept_error = stored(
                    Msg(N_("interrupted: the server process running the check stopped"))
                )
                run.current = None
                run.finished_at = datetime.now(UTC)
                write_json(self._run_file, run.kept())
            return run
        finally:
            if isinstance(gone, Held):
                gone.release()

    @property
    def last(self) -> dict[str, StationResult]:
        kept = read_json(self.folder / "stations.json")
        if not isinstance(kept, dict):
            return {}
        return {k: StationResult.from_kept(v) for k, v in kept.items() if isinstance(v, dict)}

    def _read_run(self) -> CustodyRun | None:
        kept = read_json(self._run_file)
        return CustodyRun.from_kept(kept) if isinstance(kept, dict) else None

    def start(self, actor: str) -> CustodyRun | None:
        """A new check in the background, or the one still running (in any process)."""
        mine = try_lock(self._lock_file)
        for _ in range(20):
            if mine is not None:
                break
            running = self.run
            if running is not None and running.state == "running":
                return running
            # Held a moment by another process looking whether a check died: again.
            time.sleep(0.05)
            mine = try_lock(self._lock_file)
        if mine is None:
            return self.run
        try:
            run = CustodyRun(actor=actor, stations=chain_stations(self.ctx))
            write_json(self._run_file, run.kept())
            threading.Thread(
                target=self._check, args=(run, mine), name="liuhen-custody-check", daemon=True
            ).start()
        except BaseException:
            mine.release()
            raise
        return run

    def _check(self, run: CustodyRun, mine: Held) -> None:
        try:
            with language_for("en"):  # what the walk writes is kept: in English
                self._walk(run)
        finally:
            mine.release()

    def _walk(self, run: CustodyRun) -> None:
        """The check, in English; what it finds wrong (rare: a damaged or forged chain,
        an anchor out of reach) is found again in Chinese, so the page shows a reader
        either language: the chain walk's details are made as text where found."""
        ctx = self.ctx
        try:
            trusted = trusted_keys(ctx.settings, lambda: ctx.signer)
            reached = reachable_anchors(ctx.settings, ctx.store)
            general = [i for i in reached.issues if not i.station_id]
            chinese_reached = None
            if reached.unreachable or general:
                with language_for("zh"):
                    chinese_reached = reachable_anchors(ctx.settings, ctx.store)
            if chinese_reached is not None and len(chinese_reached.unreachable) == len(
                reached.unreachable
            ):
                run.kept_general += [
                    {"en": str(e), "zh": str(z)}
                    for e, z in zip(reached.unreachable, chinese_reached.unreachable, strict=True)
                ]
            else:
                run.kept_general += [str(u) for u in reached.unreachable]
            run.kept_general += _problems(
                general,
                None
                if chinese_reached is None
                else [i for i in chinese_reached.issues if not i.station_id],
            )
            for station in run.stations:
                run.current = station
                write_json(self._run_file, run.kept())
                with ctx.catalog.session() as s:
                    report = check_custody(s, reached, trusted, station=station)
                found = [p for p in report.problems if p.station_id == station]
                chinese = None
                if found:
                    with language_for("zh"), ctx.catalog.session() as s:
                        again = check_custody(
                            s, chinese_reached or reached, trusted, station=station
                        )
                    chinese = [p for p in again.problems if p.station_id == station]
                mine = found
                result = StationResult(
                    station=station,
                    ok=not mine,
                    events=report.events,
                    last_anchored=report.last_anchored.get(station),
                    heads_verified=report.heads_verified,
                    kept_problems=_problems(mine, chinese),
                    checked_at=datetime.now(UTC),
                )
                run.done.append(result)
                last = read_json(self.folder / "stations.json")
                last = last if isinstance(last, dict) else {}
                last[station] = result.kept()
                write_json(self.folder / "stations.json", last)
        except LiuhenError as exc:
            run.kept_error = stored(exc.kept) if exc.kept is not None else exc.message
        except Exception as exc:  # shown on the page, never a silently dead thread
            run.kept_error = f"{type(exc).__name__}: {exc}"
        finally:
            run.current = None
            run.finished_at = datetime.now(UTC)
            write_json(self._run_file, run.kept())


def checks_of(ctx: ApiContext, state: Any) -> CustodyChecks:
    """The server's :class:`CustodyChecks` (holding nothing but where its files are)."""
    checks: CustodyChecks | None = getattr(state, "custody_checks", None)
    if checks is None:
        checks = CustodyChecks(ctx)
        state.custody_checks = checks
    return checks


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
