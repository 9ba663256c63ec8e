"""Cases: the list, a case's page (its enforcement actions beside the recordings that
cover them, close and reopen with a reason, an export with its progress, the .tar
download and the hand-over receipt).

As the recordings pages, these go through the API's handlers (``api.cases``) so the
policy decides and the audit records; the page's script calls the API to close, reopen
and export, and follows the export job until its bag can be downloaded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from api import cases as api_cases
from api.auth import Caller
from api.errors import status_of
from config.errors import LiuhenError
from web.auth import page_caller, to_login
from web.render import page

router = APIRouter(include_in_schema=False)


def _failed(request: Request, who: Caller, exc: LiuhenError) -> Response:
    values = {"error": exc.message, "hint": exc.hint, "http_status": status_of(exc)}
    return page(request, who, "error.html", values)


@router.get("/cases")
def cases_page(request: Request) -> Response:
    who = page_caller(request)
    if who is None:
        return to_login(request)
    status = request.query_params.get("status") or None
    wanted = (request.query_params.get("q") or "").strip()
    try:
        found = api_cases.list_cases(who, status if status in ("open", "closed") else None)  # type: ignore[arg-type]
    except LiuhenError as exc:
        return _failed(request, who, exc)
    if wanted:
        found = [c for c in found if wanted in c["number"] or wanted in (c.get("title") or "")]
    values = {"cases": found, "status": status, "q": wanted}
    return page(request, who, "cases.html", values)


@router.get("/cases/{number:path}")
def case_page(request: Request, number: str) -> Response:
    who = page_caller(request)
    if who is None:
        return to_login(request)
    try:
        report = api_cases.case_detail(who, number)  # authorized and audited as a view
    except LiuhenError as exc:
        return _failed(request, who, exc)
    target = who.case_target(report["number"])
    values = {
        "case": report,
        "timeline": timeline(report),
        "may_change": who.allowed("case.change", target),
        "may_export": who.allowed("export.run", target),
        "size_total": sum(r["size"] for r in report["recordings"]),
    }
    return page(request, who, "case.html", values)


def timeline(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each enforcement action with the recordings whose capture overlaps it, in time
    order; then the recordings that cover no action (attached by hand)."""
    rows: list[dict[str, Any]] = []
    covered: set[int] = set()
    for action in report["actions"]:
        start, end = _utc(action["start"]), _utc(action["end"])
        overlapping = [
            r
            for r in report["recordings"]
            if r["capture_start"]
            and _utc(r["capture_start"]) < end
            and _utc(r["capture_end"] or r["capture_start"]) > start
        ]
        covered |= {r["recording"] for r in overlapping}
        rows.append({"action": action, "recordings": overlapping})
    rest = [r for r in report["recordings"] if r["recording"] not in covered]
    if rest:
        rows.append({"action": None, "recordings": rest})
    return rows


def _utc(text: str) -> datetime:
    """An ISO time of the catalog (naive means UTC there) as an aware datetime."""
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@router.get("/exports/{uid}/receipt")
def receipt_page(request: Request, uid: str) -> Response:
    """The hand-over receipt (移交回执) of a finished export, to print: what was handed
    over, by whom and when, each recording's digests, and the signed event that
    recorded it. For who may export what it holds."""
    from access.policy import Target
    from archive_export.history import handover_receipt

    who = page_caller(request)
    if who is None:
        return to_login(request)
    try:
        who.authorize("export.run")
        with who.ctx.catalog.session() as s:
            found = handover_receipt(s, uid)
        numbers = (found.get("scope") or {}).get("cases") or []
        for number in numbers:
            who.authorize("export.run", who.case_target(number))
        if not numbers and who.scope("export.run") is not None:
            who.authorize("export.run", Target("export", uid))
    except LiuhenError as exc:
        return _failed(request, who, exc)
    # Who read a hand-over receipt (its digests, the cases handed over) is an access.
    who.audit("access.view", "export", uid, kind="receipt")
    return page(request, who, "receipt.html", {"r": found})
