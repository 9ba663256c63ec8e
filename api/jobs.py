"""Exports started over HTTP run as background jobs, one at a time per server (an
export reads every byte it packs from the store and re-hashes it: two at once would
only share the disk and the two cores).

A job is what `liuhen export --out FILE.tar` does, into ``<data dir>/exports/api/<job>.tar``;
its progress is the size of the bag written so far. The catalog's ``exports`` rows and
custody events record the export itself, as for the CLI; the job list is the server's
record of who asked and where the file is: ``<job>.json`` beside the bag
(``api.filestate``), so that every process of `liuhen serve --workers N` sees every job,
and a restart forgets none.

Across processes: the process that takes a job holds ``<job>.lock`` until the job has
its final state, and runs it only while it holds ``.export.lock`` too (one export at a
time, whichever process took the job). A job left queued or running by a process that
died (killed, or stopped before the job's turn came) is found so by whoever looks next,
and is marked failed (code ``Interrupted``), its half-written bag removed.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from api.context import ApiContext
from api.filestate import Held, hold, owner_gone, read_json, try_lock, write_json
from archive_export.bagwriter import PARTIAL_SUFFIX
from catalog.models import utcnow
from config.errors import LiuhenError
from config.i18n import N_, _
from config.message import Msg, is_message, shown, stored
from config.timetext import iso_time

log = logging.getLogger("liuhen.api")
ACTIVE = ("queued", "running")
_ID = re.compile(r"[0-9a-f]{32}")
EXPORT_LOCK = ".export.lock"  # held by the one process exporting now
WAIT_S = 0.5  # how often a queued job looks whether the export before it has finished


@dataclass
class ExportJob:
    id: str
    scope: dict[str, Any]
    actor: str
    out: Path
    state: str = "queued"  # queued | running | done | failed
    started_at: datetime | None = None
    finished_at: datetime | None = None
    export: str | None = None
    bags: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None

    @property
    def record(self) -> Path:
        return self.out.with_suffix(".json")

    @property
    def lock(self) -> Path:
        return self.out.with_suffix(".lock")

    @property
    def partial(self) -> Path:
        return self.out.with_name(self.out.name + PARTIAL_SUFFIX)

    def bytes_written(self) -> int:
        for path in (self.out, self.partial):
            try:
                return path.stat().st_size
            except OSError:
                continue
        return 0

    def as_dict(self, ctx: ApiContext) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "scope": self.scope,
            "actor": self.actor,
            "started_at": iso_time(self.started_at, ctx.zone),
            "finished_at": iso_time(self.finished_at, ctx.zone),
            "bytes_written": self.bytes_written(),
            "export": self.export,
            "bags": self.bags,
            "error": _shown_error(self.error),
        }

    def save(self) -> None:
        kept = asdict(self) | {
            "out": self.out.name,
            "started_at": _when(self.started_at),
            "finished_at": _when(self.finished_at),
        }
        write_json(self.record, kept)

    @classmethod
    def load(cls, record: Path) -> ExportJob | None:
        kept = read_json(record)
        if not isinstance(kept, dict) or not _ID.fullmatch(str(kept.get("id", ""))):
            return None
        return cls(
            id=kept["id"],
            scope=kept.get("scope") or {},
            actor=str(kept.get("actor", "")),
            out=record.with_name(str(kept.get("out") or f"{kept['id']}.tar")),
            state=str(kept.get("state", "failed")),
            started_at=_parsed(kept.get("started_at")),
            finished_at=_parsed(kept.get("finished_at")),
            export=kept.get("export"),
            bags=kept.get("bags") or [],
            error=kept.get("error"),
        )


def _shown_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """The error in the reader's language where it was kept as a message (the
    interruption, noticed by whichever process looked)."""
    if error is None:
        return None
    return {
        k: shown(v) if k in ("message", "hint") and is_message(v) else v for k, v in error.items()
    }


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parsed(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


class JobNotFound(LiuhenError):
    http_status = 404


class ExportJobs:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liuhen-export")
        self._closing = threading.Event()

    @property
    def folder(self) -> Path:
        return self.ctx.settings.data_dir / "exports" / "api"

    def start(
        self,
        *,
        cases: tuple[str, ...],
        date_from: datetime | None,
        date_to: datetime | None,
        with_access: bool,
        actor: str,
    ) -> ExportJob:
        job_id = uuid.uuid4().hex
        scope: dict[str, Any] = {
            "cases": list(cases),
            "from": iso_time(date_from, self.ctx.zone),
            "to": iso_time(date_to, self.ctx.zone),
            "with_access": with_access,
        }
        job = ExportJob(job_id, scope, actor, self.folder / f"{job_id}.tar")
        job.out.parent.mkdir(parents=True, exist_ok=True)
        mine = hold(job.lock)  # before the record: nobody may see it without its owner
        try:
            job.save()
            self._pool.submit(self._run, job, mine, cases, date_from, date_to, with_access)
        except BaseException:
            mine.release(remove=True)
            raise
        return job

    def get(self, job_id: str) -> ExportJob:
        job = ExportJob.load(self.folder / f"{job_id}.json") if _ID.fullmatch(job_id) else None
        if job is None:
            raise JobNotFound(
                _("no export job {id}").format(id=job_id),
                hint=_("list the jobs with GET /api/v1/exports/jobs"),
            )
        return self._settled(job)

    def all(self) -> list[ExportJob]:
        jobs = (ExportJob.load(p) for p in self.folder.glob("*.json"))
        return sorted((self._settled(j) for j in jobs if j is not None), key=lambda j: j.id)

    def _settled(self, job: ExportJob) -> ExportJob:
        """``job``, marked failed if the process that had it is gone before it ended."""
        if job.state not in ACTIVE:
            return job
        gone = owner_gone(job.lock)
        if gone is False:
            return job
        try:
            now = ExportJob.load(job.record)  # under the lock: the owner's last word
            if now is None or now.state not in ACTIVE:
                return now or job
            _interrupted(now)
            return now
        finally:
            if isinstance(gone, Held):
                gone.release(remove=True)

    def _run(
        self,
        job: ExportJob,
        mine: Held,
        cases: tuple[str, ...],
        date_from: datetime | None,
        date_to: datetime | None,
        with_access: bool,
    ) -> None:
        turn: Held | None = None
        try:
            turn = self._turn()
            if turn is None:  # the server is stopping before this job's turn came
                _interrupted(job)
                return
            self._export(job, cases, date_from, date_to, with_access)
        finally:
            if turn is not None:
                turn.release()
            mine.release(remove=True)

    def _turn(self) -> Held | None:
        """The export lock, once the export before (in any process) has finished;
        None when the server stops first."""
        while not self._closing.is_set():
            turn = try_lock(self.folder / EXPORT_LOCK)
            if turn is not None:
                return turn
            self._closing.wait(WAIT_S)
        return None

    def _export(
        self,
        job: ExportJob,
        cases: tuple[str, ...],
        date_from: datetime | None,
        date_to: datetime | None,
        with_access: bool,
    ) -> None:
        from archive_export.export import ExportRequest, export_bundle, reconcile_interrupted
        from archive_export.fourprops import Options

        s = self.ctx.settings
        job.state, job.started_at = "running", utcnow()
        job.save()
        try:
            req = ExportRequest(
                out=job.out,
                cases=cases,
                date_from=date_from,
                date_to=date_to,
                with_access=with_access,
                organization=s.station.unit or s.station.name,
                actor=job.actor,
                options=Options(ffmpeg=s.ffmpeg.ffmpeg, ffprobe=s.ffmpeg.ffprobe),
            )
            reconcile_interrupted(self.ctx.catalog, self.ctx.signer, actor=job.actor)
            result = export_bundle(self.ctx.catalog, self.ctx.store, self.ctx.signer, req)
        except LiuhenError as exc:
            job.error = {"message": exc.message, "hint": exc.hint, "code": type(exc).__name__}
            job.state = "failed"
        except Exception as exc:  # a bug: the job says so, the server keeps serving
            job.error = {
                "message": _("internal error: {kind}").format(kind=type(exc).__name__),
                "hint": _("the server's log has the details; report it"),
                "code": "InternalError",
            }
            job.state = "failed"
            log.exception("export job %s failed", job.id)
        else:
            job.export = result.uid
            job.bags = [
                {
                    "name": b.name,
                    "files": b.files,
                    "bytes": b.bytes,
                    "recordings": b.recordings,
                    "four_properties_ok": bool(b.four_properties["ok"]),
                }
                for b in result.bags
            ]
            job.state = "done"
        finally:
            job.finished_at = utcnow()
            job.save()

    def close(self) -> None:
        self._closing.set()
        self._pool.shutdown(wait=True)


def _interrupted(job: ExportJob) -> None:
    """``job`` failed: its process stopped before it ended; the half-written bag goes
    (the catalog's own export row is reconciled by the next export)."""
    partial = job.partial
    if partial.is_dir():
        shutil.rmtree(partial, ignore_errors=True)
    else:
        partial.unlink(missing_ok=True)
    job.state = "failed"
    job.finished_at = job.finished_at or utcnow()
    job.error = {
        "message": stored(
            Msg(
                N_("export job {id} was interrupted: the server process running it stopped"),
                id=job.id,
            )
        ),
        "hint": stored(Msg(N_("start the export again"))),
        "code": "Interrupted",
    }
    job.save()
