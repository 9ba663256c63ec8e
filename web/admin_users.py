"""Users (三员分立, as access/roles.py splits it): the system administrator adds users
(their one-time password shown once), disables and enables them (``user.admin``); the
security administrator grants and revokes roles, locks and unlocks, ends a user's
sessions (``session.revoke``) and grants cases to a named user for a period, and reads
the password and lockout policy (``role.admin``). Each sees the list of users and the
forms of their own part only.

Every change is the HTTP API's own handler (``api.users``: the policy decides, the
service refuses, e.g. a second administrator role on one account, and the audit
records) or, where the API has none, ``web.account_admin`` over the same functions as
the command line. The forms are plain HTML posts carrying the session's CSRF token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from access.roles import ADMIN_ROLES, ROLE_TITLES, Role
from api import users as api_users
from api.auth import Caller
from api.errors import ApiError, status_of
from config.errors import LiuhenError
from web import account_admin
from web.auth import csrf_ok, form_of, page_caller, to_login
from web.render import gettext_of, page

router = APIRouter(include_in_schema=False)
STATE_CHANGES = ("lock", "unlock", "disable", "enable")


def _failed(request: Request, who: Caller, exc: LiuhenError) -> Response:
    values = {"error": exc.message, "hint": exc.hint, "http_status": status_of(exc)}
    return page(request, who, "error.html", values)


def _may(who: Caller) -> dict[str, bool]:
    return {
        "users": who.allowed("user.admin"),
        "roles": who.allowed("role.admin"),
        "logout": who.allowed("session.revoke"),
    }


def _admit(who: Caller) -> dict[str, bool]:
    """What the caller may do here; refused (audited, 403) when neither part is
    theirs."""
    may = _may(who)
    if not (may["users"] or may["roles"]):
        who.authorize("user.admin")  # raises AccessDenied, recorded as access.denied
    return may


def _users(who: Caller) -> list[dict[str, Any]]:
    """Every user as ``GET /api/v1/users`` gives them (``api.users``' own rows), with
    their live sessions; read here too for the security administrator, who holds
    role.admin rather than user.admin."""
    from sqlalchemy import select

    from access.accounts import roles_of
    from catalog.access_models import User

    sessions = account_admin.live_session_counts(who)
    with who.ctx.catalog.session() as s:
        rows = []
        for u in s.scalars(select(User).order_by(User.login)):
            row = api_users._user_json(who, u, roles_of(s, u.id))
            row["sessions"] = sessions.get(u.id, 0)
            row["is_admin"] = bool(set(row["roles"]) & {r.value for r in ADMIN_ROLES})
            rows.append(row)
        return rows


def _users_page(
    request: Request, who: Caller, may: dict[str, bool], values: dict[str, Any] | None = None
) -> Response:
    shown: dict[str, Any] = {
        "may": may,
        "users": _users(who),
        "roles": [(r.value, ROLE_TITLES[r]) for r in Role],
        "role_titles": {r.value: ROLE_TITLES[r] for r in Role},
        "grants": account_admin.grants(who) if may["roles"] else [],
        "policy": who.ctx.settings.access if may["roles"] else None,
        **(values or {}),
    }
    return page(request, who, "admin_users.html", shown)


@router.get("/admin/users")
def users_page(request: Request) -> Response:
    who = page_caller(request)
    if who is None:
        return to_login(request)
    try:
        may = _admit(who)
    except LiuhenError as exc:
        return _failed(request, who, exc)
    return _users_page(request, who, may)


async def _change(
    request: Request,
    work: Callable[[Caller, dict[str, str]], dict[str, Any]],
) -> Response:
    """A posted form of the page: the caller admitted, the CSRF token checked, then
    ``work`` (in a thread: it waits on the catalog); the page again with what ``work``
    returned to show, or with the refusal in an alert."""
    who = page_caller(request)
    if who is None:
        return to_login(request)
    form = await form_of(request)
    _ = gettext_of(request)
    try:
        may = await run_in_threadpool(_admit, who)
    except LiuhenError as exc:
        return _failed(request, who, exc)
    if not csrf_ok(request, form.get("csrf")):
        values = {
            "error": _("the form has expired: open the page again and repeat"),
            "http_status": 403,
        }
        return _users_page(request, who, may, values)
    try:
        done = await run_in_threadpool(work, who, form)
    except LiuhenError as exc:
        values = {"error": exc.message, "hint": exc.hint, "http_status": status_of(exc)}
        return await run_in_threadpool(_users_page, request, who, may, values)
    return await run_in_threadpool(_users_page, request, who, may, done)


@router.post("/admin/users")
async def add_user(request: Request) -> Response:
    """A new user without roles (the security administrator grants them), with a
    one-time password shown in this answer only."""
    _ = gettext_of(request)

    def work(who: Caller, form: dict[str, str]) -> dict[str, Any]:
        try:
            body = api_users.UserCreate(
                login=form.get("login", "").strip(),
                display_name=form.get("display_name", "").strip(),
                unit=form.get("unit", "").strip(),
                officer_number=form.get("officer_number", "").strip() or None,
            )
        except ValidationError as exc:
            raise ApiError(
                _("the login is required; names and units are at most 200 characters"),
                hint=_("correct the form and add the user again"),
                status=422,
            ) from exc
        made = api_users.add_user(who, body)
        return {"created": made}

    return await _change(request, work)


@router.post("/admin/users/{login}/state")
async def change_state(request: Request, login: str) -> Response:
    _ = gettext_of(request)

    def work(who: Caller, form: dict[str, str]) -> dict[str, Any]:
        change = form.get("change", "")
        if change not in STATE_CHANGES:
            raise ApiError(_("unknown change {change}").format(change=change))
        api_users.set_state(who, login, change)  # type: ignore[arg-type]
        done = {
            "lock": _("{login} is locked; their sessions end at their next request"),
            "unlock": _("{login} is unlocked"),
            "disable": _("{login} is disabled; their sessions end at their next request"),
            "enable": _("{login} is enabled again"),
        }[change]
        return {"notice": done.format(login=login)}

    return await _change(request, work)


@router.post("/admin/roles")
async def change_role(request: Request) -> Response:
    _ = gettext_of(request)

    def work(who: Caller, form: dict[str, str]) -> dict[str, Any]:
        login, role, op = form.get("login", ""), form.get("role", ""), form.get("op", "")
        if role not in {r.value for r in Role} or op not in ("grant", "revoke"):
            raise ApiError(_("choose a role to grant or revoke"), status=422)
        title = _(ROLE_TITLES[Role(role)])
        if op == "grant":
            done = api_users.grant(who, login, role)  # type: ignore[arg-type]
            text = (
                _("{login} holds the role {role}")
                if done["changed"]
                else _("{login} already holds the role {role}")
            )
        else:
            done = api_users.revoke(who, login, role)  # type: ignore[arg-type]
            text = _("{login} does not hold the role {role}")
        return {"notice": text.format(login=login, role=title)}

    return await _change(request, work)


@router.post("/admin/users/{login}/logout")
async def force_logout(request: Request, login: str) -> Response:
    _ = gettext_of(request)

    def work(who: Caller, form: dict[str, str]) -> dict[str, Any]:
        ended = account_admin.force_logout(who, login)
        text = _("ended {n} session(s) of {login}").format(n=ended, login=login)
        return {"notice": text}

    return await _change(request, work)


@router.post("/admin/grants")
async def grant_case(request: Request) -> Response:
    _ = gettext_of(request)

    def work(who: Caller, form: dict[str, str]) -> dict[str, Any]:
        login = form.get("login", "").strip()
        if not login:
            raise ApiError(_("choose the user to grant the case to"), status=422)
        grant = account_admin.grant_case_to(
            who,
            login,
            form.get("case", ""),
            form.get("starts", ""),
            form.get("ends", ""),
            form.get("reason", ""),
        )
        return {"granted": grant}

    return await _change(request, work)


@router.post("/admin/grants/end")
async def end_grants(request: Request) -> Response:
    _ = gettext_of(request)

    def work(who: Caller, form: dict[str, str]) -> dict[str, Any]:
        login, number = form.get("login", ""), form.get("case", "")
        ended = account_admin.end_case_grants(who, login, number)
        text = _("ended {n} grant(s) of case {case} to {login}").format(
            n=ended, case=number, login=login
        )
        return {"notice": text}

    return await _change(request, work)
