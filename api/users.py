"""``/api/v1/users``: accounts for the administrators (三员分立: the system administrator
manages users' existence, the security administrator their roles and locks), and
``/api/v1/session/password``: one's own password. The rules are access.accounts'."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.auth import Caller, caller
from api.errors import ApiError
from api.models import ERRORS
from config.i18n import _
from config.timetext import iso_time

router = APIRouter(tags=["users"], responses=ERRORS)
Who = Annotated[Caller, Depends(caller)]
Login = Annotated[str, Path(min_length=1, max_length=64)]
RoleName = Literal[
    "officer",
    "reviewer",
    "supervisor",
    "archivist",
    "auditor",
    "system_admin",
    "security_admin",
    "audit_admin",
]


class UserCreate(BaseModel):
    login: str = Field(min_length=1, max_length=64)
    display_name: str = Field("", max_length=200)
    unit: str = Field("", max_length=200)
    officer_number: str | None = Field(None, max_length=32, description="警号")


class PasswordChange(BaseModel):
    current: str = Field(min_length=1, max_length=1024)
    new: str = Field(min_length=1, max_length=1024)


def _user_json(who: Caller, user: Any, roles: frozenset[Any]) -> dict[str, Any]:
    return {
        "login": user.login,
        "display_name": user.display_name,
        "unit": user.unit,
        "officer_number": user.officer_number,
        "state": user.state,
        "roles": sorted(r.value for r in roles),
        "two_factor": user.totp_enabled,
        "last_login_at": iso_time(user.last_login_at, who.ctx.zone),
    }


@router.get("/users", summary="List users")
def list_users(who: Who) -> list[dict[str, Any]]:
    from access.accounts import roles_of
    from catalog.access_models import User

    who.authorize("user.admin")
    with who.ctx.catalog.session() as s:
        users = list(s.scalars(select(User).order_by(User.login)))
        return [_user_json(who, u, roles_of(s, u.id)) for u in users]


@router.post("/users", status_code=201, summary="Add a user")
def add_user(who: Who, body: UserCreate) -> dict[str, Any]:
    """A user without roles (the security administrator grants them), with a one-time
    password shown only in this answer, to be changed at first login."""
    from access.accounts import create_user

    who.authorize("user.admin")
    with who.ctx.catalog.transaction() as s:
        user, one_time = create_user(
            s,
            login=body.login,
            display_name=body.display_name,
            unit=body.unit,
            officer_number=body.officer_number,
            actor=who.actor,
            policy=who.ctx.settings.access,
        )
        made = _user_json(who, user, frozenset())
    # As `liuhen user add` records it.
    who.audit("access.user_change", "user", body.login, created=True, roles=[])
    return made | {"one_time_password": one_time}


@router.post("/users/{login}/{change}", summary="Lock, unlock, disable or enable a user")
def set_state(
    who: Who, login: Login, change: Literal["lock", "unlock", "disable", "enable"]
) -> dict[str, Any]:
    """Locking and unlocking is the security administrator's; disabling and enabling
    (the account's existence) the system administrator's. Sessions of a locked or
    disabled user end at their next request."""
    from access.accounts import change_state, get_user, roles_of
    from access.audit import STATE_ACTIONS

    who.authorize("role.admin" if change in ("lock", "unlock") else "user.admin")
    _not_self(who, login)
    with who.ctx.catalog.transaction() as s:
        user = get_user(s, login)
        state = change_state(s, user, change)
        done = _user_json(who, user, roles_of(s, user.id))
    # The same action and details as `liuhen user lock|unlock|disable` record.
    who.audit(STATE_ACTIONS[change], "user", login, state=state)
    return done


@router.put("/users/{login}/roles/{role}", summary="Grant a role")
def grant(who: Who, login: Login, role: RoleName) -> dict[str, Any]:
    """The three administrator roles are refused on one account together."""
    return _change_role(who, login, role, grant=True)


@router.delete("/users/{login}/roles/{role}", summary="Revoke a role")
def revoke(who: Who, login: Login, role: RoleName) -> dict[str, Any]:
    return _change_role(who, login, role, grant=False)


def _not_self(who: Caller, login: str) -> None:
    """No one changes their own roles or state: another administrator must (as the
    command line's user commands)."""
    if who.principal.login == login:
        raise ApiError(
            _("you may not change your own account's roles or state"),
            hint=_("another administrator must do it"),
            status=403,
        )


def _change_role(who: Caller, login: str, role: str, *, grant: bool) -> dict[str, Any]:
    from access.accounts import get_user, grant_role, revoke_role, roles_of
    from access.roles import Role

    who.authorize("role.admin")
    _not_self(who, login)
    with who.ctx.catalog.transaction() as s:
        user = get_user(s, login)
        if grant:
            changed = grant_role(s, user, Role(role), actor=who.actor)
        else:
            changed = revoke_role(s, user, Role(role))
        done = _user_json(who, user, roles_of(s, user.id))
    if changed:
        who.audit("access.role_change", "user", login, role=role, granted=grant)
    return done | {"changed": changed}


@router.post("/session/password", status_code=204, summary="Change my password")
def change_password(who: Who, body: PasswordChange) -> Response:
    """The current password again (a wrong one counts towards the lockout), then the new
    one under the password policy; a one-time password must be changed so first."""
    from access.accounts import LoginFailed, change_password, get_user
    from access.audit import LOCK_FAILED_PASSWORD_CHECKS

    login = who.principal.login
    try:
        with who.ctx.catalog.transaction() as s:
            user = get_user(s, login)
            change_password(
                s, user, body.current, body.new, policy=who.ctx.settings.access, source=who.source
            )
    except LoginFailed as exc:
        if exc.locked:  # this wrong current password reached the lockout
            who.audit(
                "access.lock",
                "user",
                login,
                result=exc.reason,
                cause=LOCK_FAILED_PASSWORD_CHECKS,
            )
        raise
    who.audit("access.password_change", "user", login)
    return Response(status_code=204)
