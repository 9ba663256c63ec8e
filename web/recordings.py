"""Recordings: the search page and a recording's page.

Both go through the API's own handlers (``api.recordings``), so the policy decides what
is listed and shown, and a recording page's opening is audited as a view exactly as
``GET /api/v1/recordings/{id}`` is. The page's player streams the proxy or access copy
from the API's range endpoint; markers and attaching are the API's POSTs, made by the
page's script with the session's CSRF token.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from api import recordings as api_recordings
from api.auth import Caller
from api.errors import status_of
from api.services import get_recording
from catalog.models import Case, CaseRecording
from catalog.search import FLAGS, STATES
from config.errors import LiuhenError
from config.i18n import N_
from config.message import shown
from web.auth import page_caller, to_login
from web.render import page

router = APIRouter(include_in_schema=False)
FILTERS = ("officer", "device", "unit", "case", "from", "to")
FLAG_TEXT = {
    "damaged": N_("damaged"),
    "time_disagreement": N_("time disagreement"),
    "unattached": N_("unattached"),
    "expiring": N_("expiring soon"),
    "on_hold": N_("on hold"),
    # the keys the worker writes into a recording's flags
    "time": N_("time disagreement"),
    "unreadable": N_("unreadable"),
}
PLAYABLE = ("proxy", "access")
MAX_ID = 2**31 - 1  # the API's bound on a recording id in a path (api.recordings)
# The sources of a recording's times (ingest.timeevidence's names), as people call them.
TIME_SOURCES = {
    "file_name": N_("file name"),
    "embedded": N_("embedded in the file"),
    "file_mtime": N_("file modification time"),
    "received": N_("received at the station"),
    "clock_offset_s": N_("recorder clock offset (s)"),
    "duration_s": N_("duration (s)"),
}


@router.get("/recordings")
def search_page(request: Request) -> Response:
    who = page_caller(request)
    if who is None:
        return to_login(request)
    q = request.query_params
    asked = {k: q.get(k, "").strip() for k in FILTERS}
    states = [s for s in q.getlist("state") if s in STATES]
    flags = [f for f in q.getlist("flag") if f in FLAGS]
    values: dict[str, Any] = {
        "asked": asked,
        "states": states,
        "flags": flags,
        "all_states": STATES,
        "flag_text": FLAG_TEXT,
        "items": [],
        "next_cursor": None,
        "searched": any(asked.values()) or bool(states or flags) or "go" in q,
    }
    try:
        found = api_recordings.search(
            who,
            officer=asked["officer"] or None,
            device=asked["device"] or None,
            unit=asked["unit"] or None,
            case=asked["case"] or None,
            date_from=asked["from"] or None,
            date_to=asked["to"] or None,
            state=states or None,
            flag=flags or None,
            cursor=q.get("cursor") or None,
        )
        values.update(items=found["items"], next_cursor=found["next_cursor"])
    except LiuhenError as exc:
        values.update(error=exc.message, hint=exc.hint, http_status=status_of(exc))
    values["next_url"] = _next_url(request, values["next_cursor"])
    return page(request, who, "recordings.html", values)


def _next_url(request: Request, cursor: str | None) -> str | None:
    """This search's next page: the same filters and the cursor (keyset paging)."""
    if not cursor:
        return None
    from urllib.parse import urlencode

    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    return "/recordings?" + urlencode([*kept, ("cursor", cursor)])


@router.get("/recordings/{rec_id:int}")
def recording_page(request: Request, rec_id: int) -> Response:
    who = page_caller(request)
    if who is None:
        return to_login(request)
    try:
        if not 0 < rec_id <= MAX_ID:  # past the catalog's ids, as the API's path bounds
            with who.ctx.catalog.session() as s:
                get_recording(s, rec_id)  # says it is not found, in the API's words
        # Authorized and audited as a view; the cases read in the same session.
        report, cases = api_recordings.view(who, rec_id, partial(_cases_of, who, rec_id))
    except LiuhenError as exc:
        failed = {"error": exc.message, "hint": exc.hint, "http_status": status_of(exc)}
        return page(request, who, "error.html", failed)
    target = who.recording_target(rec_id)
    may = {
        p: who.allowed(p, target)
        for p in ("recording.play", "recording.mark", "custody.view", "recording.download")
    }
    custody = (
        api_recordings.custody_page(who, rec_id, after=0, limit=500, report=report)["events"]
        if may["custody.view"]
        else None
    )
    kinds = {d["kind"] for d in report["derivatives"]}
    playable = [k for k in PLAYABLE if k in kinds]  # the proxy first: small, seeks fast
    values: dict[str, Any] = {
        "rec": report,
        "may": may,
        "may_attach": who.allowed("case.attach"),
        "may_hold": who.allowed("hold.change", target),
        "custody": custody,
        "cases": cases or [],
        "play_kind": playable[0] if playable and may["recording.play"] else None,
        "has_poster": any(d["kind"] == "poster" for d in report["derivatives"]),
        "flag_text": FLAG_TEXT,
        "flag_values": {k: _flag_value(v) for k, v in (report.get("flags") or {}).items()},
        "time_flags": [shown(f) for f in (report.get("time_evidence") or {}).get("flags") or []],
        "time_sources": _time_sources(report.get("time_evidence") or {}, who),
    }
    return page(request, who, "recording.html", values)


def _flag_value(value: Any) -> str:
    """A flag's reason in the reader's language: a kept message translated (config.message),
    a list one item after another; an older row's plain text as it is."""
    items = value if isinstance(value, list) else [value]
    return "; ".join(str(shown(v)) for v in items)


def _time_sources(evidence: dict[str, Any], who: Caller) -> list[tuple[str, str]]:
    """What each source (file name, embedded, file time, receipt) said the start was,
    times shown in the station's zone."""
    from config.timetext import show_time

    raw = evidence.get("raw") or {}
    shown: list[tuple[str, str]] = []
    for name, value in raw.items():
        text = str(value)
        if isinstance(value, str) and len(value) >= 19 and value[4] == "-":
            text = show_time(value, who.ctx.zone)
        shown.append((TIME_SOURCES.get(str(name), str(name)), text))
    return shown


def _cases_of(who: Caller, rec_id: int, s: Session) -> list[dict[str, Any]]:
    """The cases the recording is (or was) attached to, and why — of the cases the
    reader may see (the policy's ``case.view``). A case they may not see is only said to
    be there: no number, reason or who attached it (the case itself answers them 403)."""
    scope = who.case_scope()
    links = (
        select(Case.id, Case.number, Case.title, CaseRecording)
        .join(CaseRecording, CaseRecording.case_id == Case.id)
        .where(CaseRecording.recording_id == rec_id)
        .order_by(CaseRecording.attached_at)
    )
    rows = s.execute(links).all()
    visible = (
        None
        if scope is None or not rows
        else set(s.scalars(select(Case.id).where(Case.id.in_([r[0] for r in rows]), scope)))
    )
    shown: list[dict[str, Any]] = []
    for case_id, number, title, link in rows:
        if visible is not None and case_id not in visible:
            shown.append({"hidden": True, "number": number, "detached_at": link.detached_at})
            continue
        shown.append(
            {
                "number": number,
                "title": title,
                "method": link.method,
                "reason": link.reason,
                "actor": link.actor,
                "attached_at": link.attached_at,
                "detached_at": link.detached_at,
                "detach_reason": link.detach_reason,
            }
        )
    return shown
