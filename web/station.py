"""The station screen (采集站): one card per dock slot, for a touch screen beside the
docks, readable from two metres, updated twice a second.

Its rows are what `liuhen station status` prints (``ingest.status.status_rows`` over the
station journal), so the screen works on a station without the district server, and it
says 可安全拔出 exactly when the docking's state does (``DockingState.is_safe_to_clear``,
the one rule) — the page's script only shows the verdict the server sent.

Nothing on it shows evidence content: slot, recorder serial, officer, counts and bytes.
On the station's own screen no login is needed: that is a browser on the station opening
the loopback-only listener `liuhen serve` opens for it ([api] station_screen_port), told
apart by the listening socket, not by a peer address a reverse proxy rewrites. On the
main listener the viewer must be logged in and hold ``district.status``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import context
from api.context import ApiContext
from api.errors import status_of
from config.errors import LiuhenError
from config.i18n import N_
from ingest.journal import Journal
from ingest.status import status_rows
from web.auth import (
    is_station_screen,
    on_station_listener,
    page_caller,
    station_host_ok,
    to_login,
)
from web.render import gettext_of, page, render

router = APIRouter(include_in_schema=False)
POLL_MS = 500  # under one second, as the station's operators expect
# Off the station's own screen: who may read the district status (the auditor, the system
# administrator) may see the stations' screens too; officers and reviewers see their
# recordings in the catalog, not who is docking where.
PERMISSION = "district.status"
_journals: dict[str, Journal] = {}
_journals_lock = threading.Lock()


def _journal(ctx: ApiContext) -> Journal | None:
    """The station journal, opened once per server; None where there is none (a
    district server that is not a station)."""
    path = ctx.settings.journal_path
    key = str(path)
    with _journals_lock:
        if key not in _journals:
            if not path.exists():
                return None
            _journals[key] = Journal(path)
        return _journals[key]


def current_slots(ctx: ApiContext) -> list[dict[str, Any]]:
    """The newest docking of each slot, by slot: what is (or was last) in each dock."""
    journal = _journal(ctx)
    if journal is None:
        return []
    newest: dict[str, dict[str, Any]] = {}
    for row in status_rows(journal):
        seen = newest.get(row["slot"])
        if seen is None or row["started_at"] >= seen["started_at"]:
            newest[row["slot"]] = row
    return [newest[slot] for slot in sorted(newest)]


def _view(row: dict[str, Any], _: Callable[[str], str]) -> dict[str, Any]:
    """One slot as the screen shows it: the verdict's words decided here."""
    total = row["bytes_total"] or 0
    percent = 100 if row["safe_to_clear"] else (100 * row["bytes_done"] // total if total else 0)
    if row["safe_to_clear"]:
        verdict, tone = _("SAFE TO CLEAR"), "safe"
    elif row["state"] == "NO_FILES":
        verdict, tone = _("NO FILES FOUND: DO NOT UNPLUG"), "danger"
    else:
        verdict, tone = _("DO NOT UNPLUG"), "busy"
    # An allow-list, never the whole row: the journal's ``message`` and ``waiting`` name
    # problem files, store paths and service addresses, which the screen must not show.
    return {
        "slot": row["slot"],
        "device": row["device"],
        "officer": row["officer"],
        "officer_name": row["officer_name"],
        "state": row["state"],
        "files_done": row["files_done"],
        "files_total": row["files_total"],
        "bytes_done": row["bytes_done"],
        "bytes_total": row["bytes_total"],
        "problems": row["problems"],  # a count, not the files
        "waiting": _("waiting for the store or the catalog") if row["waiting"] else None,
        "safe_to_clear": row["safe_to_clear"],
        "percent": min(percent, 100),
        "verdict": verdict,
        "tone": tone,
        "state_text": _(_STATE_TEXT.get(row["state"], row["state"])),
        "eta_text": _eta(row["eta_s"], _),
    }


_STATE_TEXT = {
    "OFFLOADING": N_("offloading"),
    "SAFE_TO_CLEAR": N_("stored and verified"),
    "CLEARED": N_("recorder cleared"),
    "INCOMPLETE": N_("incomplete: files not taken"),
    "NO_FILES": N_("no files found on the recorder"),
}


def _eta(seconds: int | None, _: Callable[[str], str]) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    return _("about {minutes} min {seconds} s left").format(minutes=minutes, seconds=secs)


def _refusal(request: Request, *, polled: bool = False) -> Response | None:
    """None when the request may see the screen: the station's own screen (its loopback
    listener), or a logged-in user whose roles may read the district status — the
    stations' state is part of it, and the screen names officers and recorder serials.
    Else the answer: to the login page, or a refusal (audited, as on every page)."""
    if is_station_screen(request):
        return None
    who = page_caller(request, touch=not polled)  # polling keeps no session alive
    if who is None:
        return to_login(request)
    try:
        who.authorize(PERMISSION)
    except LiuhenError as exc:
        failed = {"error": exc.message, "hint": exc.hint, "http_status": status_of(exc)}
        return page(request, who, "error.html", failed)
    return None


@router.get("/station")
def station_page(request: Request) -> Response:
    refused = _refusal(request)
    if refused is not None:
        return refused
    ctx = context(request)
    _ = gettext_of(request)
    slots = [_view(r, _) for r in current_slots(ctx)]
    values = {
        "slots": slots,
        "station_id": ctx.settings.station.id,
        "has_journal": _journal(ctx) is not None,
        "poll_ms": POLL_MS,
        "bare": True,
    }
    return render(request, "station.html", values, zone=ctx.zone)


@router.get("/station/status")
def station_status(request: Request) -> Response:
    """The slots as JSON for the screen's script (polled every POLL_MS)."""
    refused = _refusal(request, polled=True)
    if isinstance(refused, RedirectResponse):
        return JSONResponse({"error": "login"}, status_code=401)
    if refused is not None:
        return JSONResponse({"error": "forbidden"}, status_code=refused.status_code)
    ctx = context(request)
    _ = gettext_of(request)
    slots = [_view(r, _) for r in current_slots(ctx)]
    return JSONResponse({"slots": slots}, headers={"Cache-Control": "no-store"})


class StationListenerGuard:
    """On the station screen's loopback listener, the screen and nothing else: a request
    that does not name the station by a loopback name (DNS rebinding) is misdirected
    (421), and any other page or API call is not found there (it is on the main one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            port = int(getattr(scope["app"].state, "station_screen_port", 0) or 0)
            if on_station_listener(scope, port):
                answer: Response | None = None
                if not station_host_ok(scope, port):
                    answer = PlainTextResponse(
                        f"421 Misdirected Request: open http://127.0.0.1:{port}/station",
                        status_code=421,
                    )
                elif not _station_path(scope["path"]):
                    answer = PlainTextResponse("404 Not Found", status_code=404)
                if answer is not None:
                    await answer(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _station_path(path: str) -> bool:
    return path in ("/station", "/station/status") or path.startswith("/static/")
