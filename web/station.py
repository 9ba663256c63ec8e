"""The station screen (采集站): one card per dock slot, for a touch screen beside the
docks, readable from two metres, updated twice a second.

Its rows are what `liuhen station status` prints (``ingest.status.status_rows`` over the
station journal), so the screen works on a station without the district server, and it
says 可安全拔出 exactly when the docking's state does (``DockingState.is_safe_to_clear``,
the one rule) — the page's script only shows the verdict the server sent.

Nothing on it shows evidence content: slot, recorder serial, officer, counts and bytes.
On the station's own screen (a browser on loopback) no login is needed; from anywhere
else the viewer must be logged in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.auth import context
from api.context import ApiContext
from config.i18n import N_
from ingest.journal import Journal
from ingest.status import status_rows
from web.auth import is_loopback, page_caller, to_login
from web.render import gettext_of, render

router = APIRouter(include_in_schema=False)
POLL_MS = 500  # under one second, as the station's operators expect
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
    return {
        **row,
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


def _allowed(request: Request) -> bool:
    return is_loopback(request) or page_caller(request) is not None


@router.get("/station")
def station_page(request: Request) -> Response:
    if not _allowed(request):
        return to_login(request)
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
    if not _allowed(request):
        return JSONResponse({"error": "login"}, status_code=401)
    ctx = context(request)
    _ = gettext_of(request)
    slots = [_view(r, _) for r in current_slots(ctx)]
    return JSONResponse({"slots": slots}, headers={"Cache-Control": "no-store"})
