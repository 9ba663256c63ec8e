"""The access log (``/audit``): who viewed, played, downloaded, exported, attached; who
logged in, and who changed roles — filtered by user, recording, case and time, a page
of events at a time, for the auditor and the audit administrator only. Beside it
(``/audit/integrity``), for the auditor: each station's custody chain with its signed
chain heads and the custody check run from a button (``web.audit_checks``), and the
store's fixity audits with their failures.

The events are the audit's own (``access.audit.access_events``: signed custody events
in the ``access.`` namespace), and each reader sees what `liuhen audit log` shows them:
accesses to evidence with ``audit.view``, logins, users and roles with
``audit.admin_view`` (the three administrators are kept apart).
"""

from __future__ import annotations

import re
from typing import Any, Final

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from api.auth import Caller
from api.errors import ApiError, status_of
from catalog.search import time_range
from config.errors import LiuhenError
from config.i18n import N_, _
from web.auth import page_caller, to_login
from web.render import page

router = APIRouter(include_in_schema=False)
# The objects whose accesses are accesses to evidence (as `liuhen audit log` has them).
EVIDENCE_TYPES: Final = ("recording", "derivative", "case", "export")
PAGE: Final = 200
FILTERS: Final = ("user", "recording", "case", "from", "to")


@router.get("/audit")
def audit_page(request: Request) -> Response:
    who = page_caller(request)
    if who is None:
        return to_login(request)
    q = request.query_params
    asked = {k: q.get(k, "").strip() for k in FILTERS}
    values: dict[str, Any] = {"asked": asked, "events": [], "next_url": None}
    try:
        evidence, admin = who.allowed("audit.view"), who.allowed("audit.admin_view")
        if not (evidence or admin):
            who.authorize("audit.view")  # refused, and the refusal audited
        after = _row_id(q.get("after", ""))
        events, next_after = _events(who, asked, after)
        values["events"] = [_row(e, who) for e in _visible(events, evidence, admin)]
        values["next_url"] = _next_url(request, next_after)
    except LiuhenError as exc:
        values.update(error=exc.message, hint=exc.hint, http_status=status_of(exc))
        if status_of(exc) == 403:
            return page(request, who, "error.html", values)
    return page(request, who, "audit.html", values)


def _events(who: Caller, asked: dict[str, str], after: int | None) -> tuple[list[Any], int | None]:
    from access.audit import access_events

    since, until = time_range(asked["from"] or None, asked["to"] or None, who.ctx.zone)
    with who.ctx.catalog.session() as s:
        events = access_events(
            s,
            actor=asked["user"] or None,
            object_id=_objects(s, asked),
            since=since,
            until=until,
            limit=PAGE,
            after_id=after,
        )
    next_after = events[-1].id if len(events) == PAGE else None
    return events, next_after


def _objects(session: Session, asked: dict[str, str]) -> list[str] | None:
    """The custody object ids a recording or case filter names (None: any object): the
    case's number, its recordings' and their derivatives' digests."""
    from api.services import get_recording
    from catalog.cases import get_case
    from catalog.models import CaseRecording, Derivative, Recording

    if not asked["recording"] and not asked["case"]:
        return None
    rec_ids: list[int] = []
    ids: list[str] = []
    if asked["recording"]:
        rec_ids.append(get_recording(session, _number(asked["recording"])).id)
    if asked["case"]:
        case = get_case(session, asked["case"])
        ids.append(case.number)
        rec_ids += session.scalars(
            select(CaseRecording.recording_id).where(CaseRecording.case_id == case.id)
        )
    if rec_ids:
        ids += session.scalars(select(Recording.sha256).where(Recording.id.in_(rec_ids)))
        ids += session.scalars(
            select(Derivative.sha256).where(Derivative.recording_id.in_(rec_ids))
        )
    return ids


def _row_id(text: str) -> int | None:
    """A row id typed in a URL: ASCII digits within the catalog's integers (str.isdigit
    would take '²', which int() refuses), else None."""
    return int(text) if re.fullmatch(r"[0-9]{1,10}", text) and int(text) < 2**31 else None


def _number(text: str) -> int:
    return _row_id(text) or 0  # 0: not found, said as such


def _visible(events: list[Any], evidence: bool, admin: bool) -> list[Any]:
    return [
        e
        for e in events
        if (e.object_type in EVIDENCE_TYPES and evidence)
        or (e.object_type not in EVIDENCE_TYPES and admin)
    ]


def _row(e: Any, who: Caller) -> dict[str, Any]:
    from access.access_report import details_text
    from access.audit import action_label, result_label

    return {
        "at": e.at,
        "actor": e.actor,
        "action": action_label(e.action),
        "object": _object_text(e),
        "result": result_label(e.result),
        "source": e.source,
        "details": details_text(e.details),
    }


def _object_text(e: Any) -> str:
    """A recording by its id (its digest is in the custody event), the rest as named."""
    rec_id = e.details.get("recording_id")
    return f"#{rec_id}" if e.object_type == "recording" and rec_id else str(e.object_id)


def _next_url(request: Request, after: int | None) -> str | None:
    if after is None:
        return None
    from urllib.parse import urlencode

    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "after"]
    return "/audit?" + urlencode([*kept, ("after", str(after))])


@router.get("/audit/report")
def report_page(request: Request) -> Response:
    """The chain-of-custody and access report of one recording (``?recording=ID``) or
    one case (``?case=NUMBER``), signed, to print or save as PDF from the browser (as
    `liuhen audit report --out FILE.html`, and audited as that is: ``access.report``
    with the digest of what was handed out)."""
    import hashlib

    from access.access_report import access_report
    from api.services import get_recording

    who = page_caller(request)
    if who is None:
        return to_login(request)
    q = request.query_params
    recording, case = q.get("recording", "").strip(), q.get("case", "").strip()
    try:
        if bool(recording) == bool(case):
            raise ApiError(
                _("name one recording or one case"),
                hint=_("liuhen audit report --recording ID --out FILE.html, or --case NUMBER"),
            )
        subject = who.recording_target(_number(recording)) if recording else who.case_target(case)
        who.authorize("audit.view", subject)
        with who.ctx.catalog.session() as s:
            rec_id = get_recording(s, _number(recording)).id if recording else None
            report = access_report(
                s,
                recording_id=rec_id,
                case_number=case or None,
                zone=who.ctx.zone,
                signer=who.ctx.signer,
                generated_by=who.actor,
            )
            html = report.to_html()
    except LiuhenError as exc:
        failed = {"error": exc.message, "hint": exc.hint, "http_status": status_of(exc)}
        return page(request, who, "error.html", failed)
    digest = hashlib.sha256(html.encode("utf-8")).hexdigest()
    who.audit(
        "access.report",
        report.subject_kind,
        report.subject,
        format="html",
        sha256=digest,
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


# -- custody chains and store fixity (/audit/integrity) -----------------------------------------

# What to do about a failed fixity check, by the kind its detail starts with (the
# details are stored in English: archive_export.fixity).
FIXITY_ACTIONS: Final = {
    "missing": N_(
        "The object is gone from the store: restore it from the replica or the backup, "
        "then run liuhen verify --store again; keep this run's id for the record."
    ),
    "mismatch": N_(
        "The stored bytes are not those ingested: do not overwrite anything; restore the "
        "object from the replica or the backup and report it to the security administrator."
    ),
    "unreadable": N_(
        "The store could not read the object: check the store (liuhen doctor), then run "
        "liuhen verify --store --resume."
    ),
}
FIXITY_RUNS: Final = 20
FIXITY_FAILURES: Final = 200  # shown; the rest: GET /api/v1/verify/runs/{uid}


@router.get("/audit/integrity")
def integrity_page(request: Request) -> Response:
    """Each station's custody chain (events, signed chain heads, the last check and a
    button to run it) and the store's fixity audits with their failures: for the
    auditor (``custody.view``, ``verify.run``) on the audit page's side."""
    from api import ops
    from web.audit_checks import chain_summaries, checks_of

    who = page_caller(request)
    if who is None:
        return to_login(request)
    values: dict[str, Any] = {}
    try:
        _may_read_integrity(who)
        custody, fixity = who.allowed("custody.view"), who.allowed("verify.run")
        if custody:
            checks = checks_of(who.ctx, request.app.state)
            values["chains"] = chain_summaries(who.ctx)
            values["heads"] = _anchored_heads(who)
            values["last"] = checks.last
            values["run"] = checks.run
        if fixity:
            runs = ops.verify_runs(who, limit=FIXITY_RUNS)
            values["runs"] = runs
            failures = [
                f | {"run": r["uid"], "what_to_do": _what_to_do(f["detail"], request)}
                for r in runs
                if r["failed"]
                for f in ops.verify_run(who, r["uid"])["failures"]
            ]
            values["failures"] = failures[:FIXITY_FAILURES]
            values["failures_more"] = max(0, len(failures) - FIXITY_FAILURES)
    except LiuhenError as exc:
        failed = {"error": exc.message, "hint": exc.hint, "http_status": status_of(exc)}
        return page(request, who, "error.html", failed)
    return page(request, who, "audit_integrity.html", values)


def _may_read_integrity(who: Caller) -> None:
    """The audit's readers who hold custody.view or verify.run; anyone else is refused
    (and the refusal audited)."""
    if not (who.allowed("audit.view") or who.allowed("audit.admin_view")):
        who.authorize("audit.view")
    if not (who.allowed("custody.view") or who.allowed("verify.run")):
        who.authorize("custody.view")


def _anchored_heads(who: Caller) -> dict[str, list[dict[str, Any]]]:
    """Station -> its signed chain heads within reach (station journal, store), newest
    first, each once with every place it was read from."""
    from api.custody_check import reachable_anchors

    reached = reachable_anchors(who.ctx.settings, who.ctx.store)
    by_station: dict[str, dict[tuple[int, str], dict[str, Any]]] = {}
    for h in reached.heads:
        seen = by_station.setdefault(h.station_id, {})
        row = seen.setdefault(
            (h.seq, h.event_hash),
            {"seq": h.seq, "hash": h.event_hash, "at": h.at, "key": h.key_id, "where": []},
        )
        where = "store" if h.source.startswith("store") else "journal"
        if where not in row["where"]:
            row["where"].append(where)
    return {
        sid: sorted(rows.values(), key=lambda r: r["seq"], reverse=True)[:5]
        for sid, rows in by_station.items()
    }


def _what_to_do(detail: str, request: Request) -> str:
    from web.render import gettext_of

    kind = detail.split(":", 1)[0].strip()
    text = FIXITY_ACTIONS.get(kind, FIXITY_ACTIONS["unreadable"])
    return gettext_of(request)(text)


@router.post("/audit/integrity/custody")
async def start_custody_check(request: Request) -> Response:
    """Start the custody check (the page's button; its CSRF field is checked)."""
    from starlette.concurrency import run_in_threadpool

    from web.audit_checks import checks_of
    from web.auth import csrf_ok, form_of

    form = await form_of(request)
    who = page_caller(request)
    if who is None:
        return to_login(request)
    if not csrf_ok(request, form.get("csrf")):
        return RedirectResponse("/audit/integrity", status_code=303)
    try:
        await run_in_threadpool(who.authorize, "custody.view")
        await run_in_threadpool(_may_read_integrity, who)
    except LiuhenError as exc:
        failed = {"error": exc.message, "hint": exc.hint, "http_status": status_of(exc)}
        return page(request, who, "error.html", failed)
    checks = checks_of(who.ctx, request.app.state)
    await run_in_threadpool(checks.start, who.actor)
    return RedirectResponse("/audit/integrity#custody", status_code=303)


@router.get("/audit/integrity/custody")
def custody_check_status(request: Request) -> Response:
    """The running or last custody check, as JSON, for the page's progress bar."""
    from web.audit_checks import checks_of

    who = page_caller(request)
    if who is None:
        return JSONResponse({"error": {"message": "not logged in"}}, status_code=401)
    try:
        who.authorize("custody.view")
        _may_read_integrity(who)
    except LiuhenError as exc:
        return JSONResponse({"error": {"message": exc.message}}, status_code=status_of(exc))
    run = checks_of(who.ctx, request.app.state).run
    body = run.as_dict(who.ctx.zone) if run else {"state": "none"}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
