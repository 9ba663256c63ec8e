"""``/api/v1/exports``, ``/api/v1/verify``, ``/api/v1/district``: exports as background
jobs (start, progress, download as .tar), the results of fixity audits, and the district
status `liuhen district status` shows."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from access.policy import Target
from api.auth import Caller, caller
from api.errors import ApiError
from api.jobs import ExportJob as Job
from api.jobs import ExportJobs
from api.models import ERRORS, ExportJob, ExportStart
from api.streaming import byte_range, stream_file
from catalog.models import FixityCheck, FixityRun
from catalog.search import time_range
from config.i18n import _
from config.timetext import iso_time

router = APIRouter(responses=ERRORS)
Who = Annotated[Caller, Depends(caller)]
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The job's id.")]


def _jobs(request: Request) -> ExportJobs:
    jobs: ExportJobs = request.app.state.jobs
    return jobs


Jobs = Annotated[ExportJobs, Depends(_jobs)]


@router.post(
    "/exports",
    status_code=202,
    response_model=ExportJob,
    tags=["exports"],
    summary="Start an export",
)
def start_export(who: Who, jobs: Jobs, body: ExportStart) -> dict[str, Any]:
    """A retention bundle (signed BagIt bag, as `liuhen export --out FILE.tar`) of the
    cases named, or of the recordings captured in [from, to) (station time); runs in the
    background: follow it at ``/exports/jobs/{id}``, then download it."""
    who.authorize("export.run")
    if bool(body.cases) == bool(body.date_from or body.date_to):
        raise ApiError(
            _("name cases, or a time range (from, to), not both nor neither"),
            hint=_('e.g. {"cases": ["沪徐市监罚〔2026〕123号"]} or {"from": "2026-12-01"}'),
        )
    for number in body.cases:
        who.authorize("export.run", who.case_target(number))
    if not body.cases and who.scope("export.run") is not None:
        # A time range takes every unit's recordings: only a role reaching all units may.
        who.authorize("export.run", Target("recordings", _("captured in a time range")))
    lo, hi = time_range(body.date_from, body.date_to, who.ctx.zone)
    job = jobs.start(
        cases=tuple(body.cases),
        date_from=lo,
        date_to=hi,
        with_access=body.with_access,
        actor=who.actor,
    )
    who.audit("access.export", "export", job.id, **job.scope)
    return job.as_dict(who.ctx)


def _reaches(who: Caller, scope: dict[str, Any]) -> bool:
    """Whether the caller may export what an export of ``scope`` holds (each of its
    cases; a time range: every unit)."""
    cases = scope.get("cases") or []
    if not cases:
        return who.scope("export.run") is None
    return all(who.allowed("export.run", who.case_target(n)) for n in cases)


def _own_job(who: Caller, jobs: ExportJobs, job_id: str) -> Job:
    """The job, for the one who started it or one who may export all it holds."""
    found = jobs.get(job_id)
    if found.actor != who.actor and not _reaches(who, found.scope):
        for number in found.scope.get("cases") or []:
            who.authorize("export.run", who.case_target(number))
        who.authorize("export.run", Target("export", job_id))
    return found


@router.get("/exports/jobs", response_model=list[ExportJob], tags=["exports"], summary="Jobs")
def list_jobs(who: Who, jobs: Jobs) -> list[dict[str, Any]]:
    """The jobs of this server the caller started, or whose cases it may export."""
    who.authorize("export.run")
    return [
        j.as_dict(who.ctx) for j in jobs.all() if j.actor == who.actor or _reaches(who, j.scope)
    ]


@router.get("/exports/jobs/{job_id}", response_model=ExportJob, tags=["exports"], summary="A job")
def job(who: Who, jobs: Jobs, job_id: JobId) -> dict[str, Any]:
    who.authorize("export.run")
    return _own_job(who, jobs, job_id).as_dict(who.ctx)


@router.get(
    "/exports/jobs/{job_id}/download",
    response_class=StreamingResponse,
    tags=["exports"],
    summary="Download the bag",
    responses={
        200: {"description": "The bag as .tar.", "content": {"application/x-tar": {}}},
        206: {"description": "The range asked for.", "content": {"application/x-tar": {}}},
        409: {"description": "The export has not finished.", **ERRORS[400]},
        416: {"description": "The range is not within the file.", **ERRORS[400]},
    },
)
def download(
    who: Who,
    jobs: Jobs,
    job_id: JobId,
    range_: Annotated[str | None, Header(alias="Range", max_length=200)] = None,
) -> StreamingResponse:
    """The finished bag as one .tar (with ranges, to resume). Audited as a download."""
    who.authorize("export.run")
    found = _own_job(who, jobs, job_id)
    if found.state != "done" or not found.out.is_file():
        raise ApiError(
            _("export job {id} is {state}: nothing to download yet").format(
                id=job_id, state=found.state
            ),
            hint=_("wait until its state is done"),
            status=409,
        )
    size = found.out.stat().st_size
    rng = byte_range(range_, size, if_range=None, etag="")
    response = stream_file(
        found.out, rng, size, media_type="application/x-tar", filename=found.out.name
    )
    who.audit("access.download", "export", found.export or job_id, job=job_id)
    return response


@router.get("/exports", tags=["exports"], summary="Hand-over history")
def handovers(who: Who, include_failed: Annotated[bool, Query()] = False) -> list[dict[str, Any]]:
    """Every finished export (hand-over), newest first, as `liuhen export list`."""
    from archive_export.history import handover_history

    who.authorize("export.run")
    with who.ctx.catalog.session() as s:
        history = handover_history(s, include_failed=include_failed)
    return [h for h in history if _reaches(who, h.get("scope") or {})]


@router.get("/verify/runs", tags=["verify"], summary="Fixity audits")
def verify_runs(who: Who, limit: Annotated[int, Query(ge=1, le=500)] = 20) -> list[dict[str, Any]]:
    """The fixity audits of the store (`liuhen verify --store`), newest first."""
    who.authorize("verify.run")
    with who.ctx.catalog.session() as s:
        runs = s.scalars(select(FixityRun).order_by(FixityRun.id.desc()).limit(limit))
        return [_run(r, who) for r in runs]


@router.get("/verify/runs/{uid}", tags=["verify"], summary="One fixity audit")
def verify_run(who: Who, uid: Annotated[str, Path(min_length=1, max_length=36)]) -> dict[str, Any]:
    """One audit, with every object that failed it."""
    who.authorize("verify.run")
    with who.ctx.catalog.session() as s:
        run = s.scalars(select(FixityRun).where(FixityRun.uid == uid)).first()
        if run is None:
            raise ApiError(
                _("no fixity audit {uid}").format(uid=uid),
                hint=_("list them with GET /api/v1/verify/runs"),
                status=404,
            )
        failed = s.scalars(
            select(FixityCheck)
            .where(FixityCheck.run_id == run.id, FixityCheck.ok.is_(False))
            .order_by(FixityCheck.id)
        )
        return _run(run, who) | {
            "failures": [
                {
                    "recording": c.recording_id,
                    "object_key": c.object_key,
                    "detail": c.detail,
                    "checked_at": iso_time(c.checked_at, who.ctx.zone),
                }
                for c in failed
            ]
        }


def _run(r: FixityRun, who: Caller) -> dict[str, Any]:
    return {
        "uid": r.uid,
        "actor": r.actor,
        "scope": r.scope,
        "state": r.state,
        "checked": r.checked,
        "failed": r.failed,
        "bytes": r.bytes,
        "started_at": iso_time(r.started_at, who.ctx.zone),
        "finished_at": iso_time(r.finished_at, who.ctx.zone),
    }


@router.get("/district/status", tags=["district"], summary="District status")
def district(
    who: Who, expiry_within_days: Annotated[int, Query(ge=0, le=36500)] = 30
) -> dict[str, Any]:
    """Stations, processes, queue, stuck items, failures, storage used and expiry, as
    `liuhen district status --json`."""
    from catalog.district_status import district_status

    who.authorize("district.status")
    with who.ctx.catalog.session() as s:
        return district_status(
            s, expiry_within_days=expiry_within_days, retention=who.ctx.settings.retention
        )
