"""``/api/v1/session``: log in (a server-side session in a cookie), who am I, log out.
Every login, failed login and logout is an access event."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from api.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Caller,
    caller,
    context,
    csrf_token,
    source_of,
)
from api.models import ERRORS

router = APIRouter(prefix="/session", tags=["session"], responses=ERRORS)
# "/": the web pages (web/) are logged in by the same session as the API they call.
COOKIE_PATH = "/"


class Login(BaseModel):
    login: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(None, max_length=64, description="Two-factor or recovery code.")


class Me(BaseModel):
    login: str
    display_name: str
    unit: str | None
    officer_number: str | None
    roles: list[str]
    via: str
    pending: list[str] = Field(description="What to fix before anything else is allowed.")
    csrf_token: str | None = Field(
        None, description="Send it as X-CSRF-Token with every POST, PATCH or DELETE."
    )


def _me(who: Caller, csrf: str | None = None) -> dict[str, Any]:
    p = who.principal
    return {
        "login": p.login,
        "display_name": p.display_name,
        "unit": p.unit,
        "officer_number": p.officer_number,
        "roles": sorted(r.value for r in p.roles),
        "via": p.via,
        "pending": sorted(p.pending),
        "csrf_token": csrf,
    }


@router.post("", response_model=Me, summary="Log in")
def login(body: Login, request: Request, response: Response) -> dict[str, Any]:
    """Check the password (and the two-factor code where the account has one), open a
    server-side session and set it as an HttpOnly cookie. Failures are audited; after
    the configured number of failures the account locks for a while."""
    from access.accounts import LoginFailed, authenticate
    from access.sessions import open_session
    from access.totp_seal import sealer_of

    ctx = context(request)
    source = source_of(request)
    try:
        with ctx.catalog.transaction() as s:
            principal = authenticate(
                s,
                body.login,
                body.password,
                totp=body.totp,
                source=source,
                policy=ctx.settings.access,
                zone=ctx.zone,
                sealer=sealer_of(ctx.settings.data_dir),
            )
            secret = open_session(s, principal, source=source, policy=ctx.settings.access)
    except LoginFailed as exc:
        anonymous = Caller(ctx, _anonymous(body.login), source)
        anonymous.audit("access.login_failed", "user", body.login, result=exc.reason)
        if exc.locked:  # this failure reached the lockout (docs/security.md, "Audit")
            anonymous.audit(
                "access.lock", "user", body.login, result=exc.reason, cause="failed_logins"
            )
        raise
    who = Caller(ctx, principal, source)
    who.audit("access.login", "user", principal.login)
    secure = request.url.scheme == "https"
    csrf = csrf_token(secret)
    response.set_cookie(
        SESSION_COOKIE, secret, httponly=True, secure=secure, samesite="strict", path=COOKIE_PATH
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, httponly=False, secure=secure, samesite="strict", path=COOKIE_PATH
    )
    return _me(who, csrf)


def _anonymous(login: str) -> Any:
    from access.policy import Principal

    return Principal(None, login, login, None, None, frozenset(), via="session")


@router.get("", response_model=Me, summary="Who am I")
def whoami(who: Annotated[Caller, Depends(caller)]) -> dict[str, Any]:
    return _me(who)


@router.delete("", status_code=204, summary="Log out")
def logout(
    who: Annotated[Caller, Depends(caller)], request: Request, response: Response
) -> Response:
    """End the session now (its cookie is cleared too)."""
    from access.sessions import close_session

    secret = request.cookies.get(SESSION_COOKIE) or _bearer_secret(request)
    if secret:
        with who.ctx.catalog.transaction() as s:
            close_session(s, secret)
    who.audit("access.logout", "user", who.principal.login)
    done = Response(status_code=204)
    done.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    done.delete_cookie(CSRF_COOKIE, path=COOKIE_PATH)
    return done


def _bearer_secret(request: Request) -> str | None:
    from access.sessions import SESSION_PREFIX

    _scheme, _sep, credential = request.headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    return credential if credential.startswith(SESSION_PREFIX) else None
