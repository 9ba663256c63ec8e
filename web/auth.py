"""Who is looking at a page: the API's own session (``api.auth.caller``), so a page and
the API calls its JavaScript makes are one login, one session, one audit trail.

Logging in and out goes through the API's handlers (``api.session``): a page form posts
here, and the same code that answers ``POST /api/v1/session`` checks the password,
counts the failure toward the lockout, opens the session and audits it.
"""

from __future__ import annotations

import hmac
from typing import Final
from urllib.parse import parse_qs, quote, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import Scope

from access.sessions import SessionExpired
from api.auth import CSRF_COOKIE, SESSION_COOKIE, Caller, context, csrf_token, source_of

# The station's own screen is a browser on the station itself, on its loopback listener.
LOOPBACK: Final = frozenset({"127.0.0.1", "::1"})
STATION_HOST_NAMES: Final = ("localhost", "127.0.0.1", "[::1]")


def page_caller(request: Request, *, touch: bool = True) -> Caller | None:
    """The logged-in caller of a page, or None (no session, or it has ended). As
    ``api.auth.caller`` finds a cookie session; a page form that changes something
    checks its CSRF field itself (:func:`csrf_ok`), forms cannot send a header.
    ``touch=False``: a request a page's script makes by itself (polling), which does not
    count as use of the session (its idle timeout runs on)."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    from access.sessions import principal_for_session

    ctx = context(request)
    try:
        with ctx.catalog.look_up() as s:
            principal = principal_for_session(s, secret, policy=ctx.settings.access, touch=touch)
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


def station_screen_port(request: Request) -> int:
    """The port of the station screen's own listener (0: none), as `liuhen serve` set it
    ([api] station_screen_port, or --station-port)."""
    return int(getattr(request.app.state, "station_screen_port", 0) or 0)


def on_station_listener(scope: Scope, port: int) -> bool:
    """Whether the request came in on the station screen's listener: the listening
    socket's own address (``scope["server"]``), which no forwarded header changes."""
    server = scope.get("server")
    return bool(port) and server is not None and server[0] in LOOPBACK and server[1] == port


def station_host_ok(scope: Scope, port: int) -> bool:
    """A loopback peer (that listener has no proxy headers: the raw peer) that names
    the station by a loopback name and that port: a page of another site whose name
    was rebound to 127.0.0.1 (DNS rebinding) sends its own name and is refused."""
    client = scope.get("client")
    host = Headers(scope=scope).get("host", "")
    names = {f"{name}:{port}" for name in STATION_HOST_NAMES}
    return client is not None and client[0] in LOOPBACK and host.lower() in names


def is_station_screen(request: Request) -> bool:
    """The station's own screen: a browser on the station, on its loopback listener."""
    port = station_screen_port(request)
    return on_station_listener(request.scope, port) and station_host_ok(request.scope, port)


def same_site(request: Request) -> bool:
    """Whether a form was posted by this site's own page, as the browser says it: no
    ``Sec-Fetch-Site: cross-site`` and an ``Origin``, where one is sent, naming this
    server (the Host the browser asked for; behind a reverse proxy, the one it passes
    on). Clients that are no browser send neither, and are no CSRF risk."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "").lower()
    parts = urlsplit(origin.lower())
    if not parts.hostname or parts.scheme not in ("http", "https"):
        return False  # "null": a sandboxed frame, a file, a data: URL
    if ":" in host.rsplit("]", 1)[-1]:
        return parts.netloc == host
    return parts.hostname == host.strip("[]")  # a proxy that passes the name alone


# A page's form (a login, a reason, a filter) is a few hundred bytes; reached before any
# login, a form's body is read no further than this.
FORM_MAX = 64 * 1024


async def form_of(request: Request) -> dict[str, str]:
    """A posted HTML form (application/x-www-form-urlencoded), first value of each; a
    body over :data:`FORM_MAX` is read no further and counts as an empty form."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX:
            return {}
    text = body.decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


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
