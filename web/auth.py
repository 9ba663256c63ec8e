"""Who is looking at a page: the API's own session (``api.auth.caller``), so a page and
the API calls its JavaScript makes are one login, one session, one audit trail.

Logging in and out goes through the API's handlers (``api.session``): a page form posts
here, and the same code that answers ``POST /api/v1/session`` checks the password,
counts the failure toward the lockout, opens the session and audits it.
"""

from __future__ import annotations

import hmac
from typing import Final
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from access.sessions import SessionExpired
from api.auth import CSRF_COOKIE, SESSION_COOKIE, Caller, context, csrf_token, source_of

# The station's own screen is a browser on the station itself.
LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})


def page_caller(request: Request) -> Caller | None:
    """The logged-in caller of a page, or None (no session, or it has ended). As
    ``api.auth.caller`` finds a cookie session; a page form that changes something
    checks its CSRF field itself (:func:`csrf_ok`), forms cannot send a header."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    from access.sessions import principal_for_session

    ctx = context(request)
    try:
        with ctx.catalog.transaction() as s:
            principal = principal_for_session(s, secret, policy=ctx.settings.access)
    except SessionExpired:
        return None
    return Caller(ctx, principal, source_of(request))


def to_login(request: Request) -> RedirectResponse:
    """Back to the login page, which returns here after the login."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here)}", status_code=303)


def safe_next(target: str | None) -> str:
    """Where to go after a login: a path on this server only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/recordings"
    return target


def is_loopback(request: Request) -> bool:
    return bool(request.client and request.client.host in LOOPBACK)


async def form_of(request: Request) -> dict[str, str]:
    """A posted HTML form (application/x-www-form-urlencoded), first value of each."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def csrf_ok(request: Request, sent: str | None) -> bool:
    """A page form that changes something carries the session's CSRF token."""
    secret = request.cookies.get(SESSION_COOKIE, "")
    if not secret or not sent:
        return False
    return hmac.compare_digest(sent.encode(), csrf_token(secret).encode())


def clear_cookies(response: Response) -> None:
    from api.session import COOKIE_PATH

    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    response.delete_cookie(CSRF_COOKIE, path=COOKIE_PATH)
