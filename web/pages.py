"""The pages' routes: log in and out, and the page routers of each area."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.auth import context
from api.errors import status_of
from config.errors import LiuhenError
from web import audit, cases, district, recordings, station
from web.auth import clear_cookies, csrf_ok, form_of, page_caller, safe_next, same_site
from web.render import gettext_of, render

router = APIRouter(include_in_schema=False)
router.include_router(station.router)
router.include_router(recordings.router)
router.include_router(cases.router)
router.include_router(audit.router)
router.include_router(district.router)


@router.get("/")
def home(request: Request) -> Response:
    return RedirectResponse("/recordings" if page_caller(request) else "/login", status_code=303)


@router.get("/login")
def login_page(request: Request) -> Response:
    return _login_form(request, {"next": safe_next(request.query_params.get("next"))})


def _login_form(request: Request, values: dict[str, Any], status: int = 200) -> Response:
    zone = context(request).zone
    return render(request, "login.html", values, zone=zone, status=status)


@router.post("/login")
async def login(request: Request) -> Response:
    """The form's login, answered by the API's own login (``api.session.login``): the
    same lockout, session, cookies and audit as ``POST /api/v1/session``."""
    from api.session import Login
    from api.session import login as api_login

    form = await form_of(request)
    target = safe_next(form.get("next"))
    values: dict[str, Any] = {"next": target, "login": form.get("login", "")}
    _ = gettext_of(request)
    if not same_site(request):
        # Login CSRF: another site's page posting this form would log this browser into
        # an account of its choosing, and what the officer then does would be recorded
        # under it. Browsers say where a form comes from (Origin, Sec-Fetch-Site).
        refused = {"next": target, "error": _("this login form was sent from another site")}
        refused["hint"] = _("open liuhen itself and log in there")
        return _login_form(request, refused, status=403)
    try:
        body = Login(
            login=form.get("login", "").strip(),
            password=form.get("password", ""),
            totp=form.get("totp", "").strip() or None,
        )
    except ValidationError:
        values["error"] = _("give your login and your password")
        return _login_form(request, values, status=400)
    done = RedirectResponse(target, status_code=303)
    try:
        await run_in_threadpool(api_login, body, request, done)
    except LiuhenError as exc:
        values.update(error=exc.message, hint=exc.hint, locked="locked" in _reason(exc))
        values["needs_totp"] = _reason(exc) in ("totp_required", "bad_totp")
        return _login_form(request, values, status=status_of(exc))
    return done


def _reason(exc: LiuhenError) -> str:
    return str(getattr(exc, "reason", ""))


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (as ``DELETE /api/v1/session``: closed on the server, audited)."""
    from api.session import logout as api_logout

    form = await form_of(request)
    who = page_caller(request)
    if who is not None and not csrf_ok(request, form.get("csrf")):
        # Not this site's own form (SameSite=Strict already keeps the cookie from other
        # sites' forms): the session stays as it is.
        return RedirectResponse("/", status_code=303)
    done = RedirectResponse("/login", status_code=303)
    if who is not None:
        await run_in_threadpool(api_logout, who, request, done)
    clear_cookies(done)
    return done
