"""Exports started over HTTP run as background jobs, one at a time per server (an
export reads every byte it packs from the store and re-hashes it: two at once would
only share the disk and the two cores).

A job is what `liuhen export --out FILE.tar` does, into ``<data dir>/exports/api/<job>.tar``;
its progress is the size of the bag written so far. The catalog's ``exports`` rows and
custody events record the export itself, as for the CLI; the job list is the server's
memory of who asked and where the file is, lost on restart (the bags are not).
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from api.context import ApiContext
from archive_export.bagwriter import PARTIAL_SUFFIX
from catalog.models import utcnow
from config.errors import LiuhenError
from config.i18n import _
from config.timetext import iso_time


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

    def bytes_written(self) -> int:
        for path in (self.out, self.out.with_name(self.out.name + PARTIAL_SUFFIX)):
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
            "error": self.error,
        }


class JobNotFound(LiuhenError):
    http_status = 404


class ExportJobs:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._jobs: dict[str, ExportJob] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liuhen-export")

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
        folder = self.ctx.settings.data_dir / "exports" / "api"
        scope: dict[str, Any] = {
            "cases": list(cases),
            "from": iso_time(date_from, self.ctx.zone),
            "to": iso_time(date_to, self.ctx.zone),
            "with_access": with_access,
        }
        job = ExportJob(job_id, scope, actor, folder / f"{job_id}.tar")
        with self._lock:
            self._jobs[job_id] = job
        self._pool.submit(self._run, job, cases, date_from, date_to, with_access)
        return job

    def get(self, job_id: str) -> ExportJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(
                _("no export job {id}").format(id=job_id),
                hint=_("list the jobs with GET /api/v1/exports/jobs"),
            )
        return job

    def all(self) -> list[ExportJob]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.id)

    def _run(
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
        try:
            job.out.parent.mkdir(parents=True, exist_ok=True)
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
            import logging

            logging.getLogger("liuhen.api").exception("export job %s failed", job.id)
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

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
