"""`liuhen login / logout / whoami`, `liuhen user ...` and `liuhen token ...`: accounts,
roles, case grants, sessions and API tokens from the command line (docs/security.md).

Which command needs which permission is in liuhen/command_permissions.py, checked
before a command here runs; these functions only do the work.
"""

from __future__ import annotations

import getpass
import socket
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from access.roles import ROLE_TITLES, Role
from config.errors import LiuhenError
from config.i18n import _
from liuhen.access_audit import audit
from liuhen.output import err, out, print_json

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from access.policy import Principal
    from catalog.access_models import User
    from liuhen.app import App, InitReport

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
ROLE_CHOICE = click.Choice([r.value for r in Role])


class UsageProblem(LiuhenError):
    exit_code = 2


def _source() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def _principal(ctx: Any) -> Principal:
    from liuhen.actor import current_principal

    return current_principal(click.get_current_context())


def _zone(app: App) -> Any:
    from config.settings import zone_of

    return zone_of(app.settings.station.time_zone)


def _when(app: App, text: str, option: str) -> datetime:
    from config.timetext import TimeTextError, parse_instant

    try:
        return parse_instant(text, _zone(app))
    except TimeTextError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'{option}'") from exc


def _shown(app: App, when: datetime | None) -> str:
    from config.timetext import show_time

    return show_time(when, _zone(app))


def _iso(app: App, when: datetime | None) -> str | None:
    """A time in --json output: ISO 8601 with the station's offset."""
    from config.timetext import iso_time

    return iso_time(when, _zone(app))


def _json_times(app: App, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with their times (datetime values) as :func:`_iso` writes them."""
    return [
        {k: _iso(app, v) if isinstance(v, datetime) else v for k, v in row.items()} for row in rows
    ]


def _read_secret(from_stdin: bool, prompt: str, *, confirm: bool = False) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UsageProblem(_("no password on standard input"))
        return line.rstrip("\r\n")
    value: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return value


def _user(session: Session, login: str) -> User:
    from access.accounts import get_user

    return get_user(session, login)


def _roles_text(roles: Any) -> str:
    return ", ".join(_(ROLE_TITLES[Role(r)]) for r in sorted(roles)) or _("(no role)")


# --- init: the first administrator -----------------------------------------------------


def first_admin(app: App, login: str | None, report: InitReport) -> dict[str, Any]:
    """`liuhen init --admin LOGIN`: the first system administrator, with a one-time
    password (returned to be shown once). Only while the catalog has no accounts."""
    from access.accounts import create_user, has_accounts

    with app.ready_catalog().transaction() as session:
        if has_accounts(session):
            report.kept.append(_("user accounts (the first administrator exists)"))
            return {}
        if login is None:
            return {"admin": None}
        user, password = create_user(
            session,
            login=login,
            roles=[Role.SYSTEM_ADMIN],
            actor="liuhen init",
            policy=app.settings.access,
        )
        user_id = user.id
    report.created.append(_("system administrator {login}").format(login=login))
    audit(
        app,
        actor="liuhen init",
        action="access.user_change",
        object_type="user",
        object_id=login,
        details={"created": True, "roles": [Role.SYSTEM_ADMIN.value]},
    )
    return {"admin": {"login": login, "id": user_id, "one_time_password": password}}


def show_first_admin(admin: dict[str, Any]) -> None:
    if "admin" not in admin:
        return
    if admin["admin"] is None:
        err.print(
            _(
                "[yellow]note[/yellow] no user accounts yet: anyone who can run liuhen here "
                "acts as the local user. Create the first system administrator with "
                "`liuhen init --admin LOGIN`."
            )
        )
        return
    out.print(
        _(
            "one-time password of {login} (shown only now; change it at first login with "
            "`liuhen login` then `liuhen user passwd`):"
        ).format(login=admin["admin"]["login"])
    )
    print(admin["admin"]["one_time_password"])


# --- login, logout, whoami -------------------------------------------------------------


def _attempt(app: App, login: str, password: str, totp: str | None) -> tuple[Principal, str]:
    from access.accounts import authenticate
    from access.sessions import open_session
    from access.totp_seal import sealer_of

    with app.ready_catalog().transaction() as session:
        principal = authenticate(
            session,
            login,
            password,
            totp=totp,
            source=_source(),
            policy=app.settings.access,
            zone=_zone(app),
            sealer=sealer_of(app.settings.data_dir),
        )
        secret = open_session(session, principal, source=_source(), policy=app.settings.access)
    return principal, secret


def _login_event(app: App, login: str, action: str, *, result: str = "ok", **details: str) -> None:
    """One access event of a login at this terminal: the login acts on its own account."""
    audit(
        app,
        actor=login,
        action=action,
        object_type="user",
        object_id=login,
        result=result,
        source=_source(),
        details=details or None,
    )


def run_login(app: App, login: str, password: str, totp: str | None) -> Principal:
    from access.accounts import LoginFailed, has_accounts
    from liuhen.actor import write_session_secret

    with app.ready_catalog().session() as session:
        if not has_accounts(session):
            raise UsageProblem(
                _("the catalog has no user accounts yet"),
                hint=_("create the first system administrator: liuhen init --admin LOGIN"),
            )
    try:
        try:
            principal, secret = _attempt(app, login, password, totp)
        except LoginFailed as exc:
            if exc.reason != "totp_required" or totp is not None or not sys.stdin.isatty():
                raise
            code = click.prompt(_("Two-factor code"))
            principal, secret = _attempt(app, login, password, code)
    except LoginFailed as exc:
        _login_event(app, login, "access.login_failed", result=exc.reason)
        if exc.locked:  # this failure reached the lockout (docs/security.md, "Audit")
            _login_event(app, login, "access.lock", result=exc.reason, cause="failed_logins")
        raise
    write_session_secret(app.settings, secret)
    _login_event(app, login, "access.login", session=principal.session_id or "")
    return principal


def _say_pending(principal: Principal) -> None:
    from access.accounts import PENDING_PASSWORD, PENDING_TOTP

    if PENDING_PASSWORD in principal.pending:
        err.print(
            _(
                "[yellow]warning[/yellow] your password is a one-time or expired password: "
                "change it now with `liuhen user passwd`; until then you may do nothing else"
            )
        )
    if PENDING_TOTP in principal.pending:
        err.print(
            _(
                "[yellow]warning[/yellow] an administrator needs two-factor login: turn it "
                "on with `liuhen user 2fa enroll`; until then you may do nothing else"
            )
        )


def _register_session(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.command("login")
    @click.argument("login", required=False)
    @click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
    @click.option("--totp", help="The code of your authenticator app, or a recovery code.")
    @json_option
    @pass_ctx
    def login_cmd(
        ctx: Any, login: str | None, password_stdin: bool, totp: str | None, as_json: bool
    ) -> None:
        """Log in: later commands act as you until you log out or the session ends."""
        app = ctx.app()
        login = login or click.prompt(_("Login"), default=getpass.getuser())
        password = _read_secret(password_stdin, _("Password"))
        principal = run_login(app, login, password, totp)
        policy = app.settings.access
        if as_json:
            print_json(_principal_json(principal))
        else:
            out.print(
                _(
                    "[green]✓[/green] logged in as {login} ({roles}); the session ends after "
                    "{idle} minutes unused and at the latest in {hours} hours"
                ).format(
                    login=principal.login,
                    roles=_roles_text(principal.roles),
                    idle=policy.session_idle_minutes,
                    hours=policy.session_absolute_hours,
                )
            )
        _say_pending(principal)

    @cli.command("logout")
    @pass_ctx
    def logout_cmd(ctx: Any) -> None:
        """End this user's session for this data directory."""
        from access.sessions import close_session
        from liuhen.actor import forget_session, read_session_secret

        app = ctx.app()
        secret = read_session_secret(app.settings)
        if secret is None:
            out.print(_("not logged in"))
            return
        with app.ready_catalog().transaction() as session:
            close_session(session, secret)
        forget_session(app.settings)
        audit(
            app,
            actor=getpass.getuser(),
            action="access.logout",
            object_type="session",
            object_id="cli",
            source=_source(),
        )
        out.print(_("[green]✓[/green] logged out"))

    @cli.command("whoami")
    @json_option
    @pass_ctx
    def whoami_cmd(ctx: Any, as_json: bool) -> None:
        """Who commands run as here: the logged-in user, an API token, or the local user."""
        principal = _principal(ctx)
        if as_json:
            print_json(_principal_json(principal))
            return
        out.print(
            _("{login} ({name}) via {via}; unit: {unit}; 警号: {number}; roles: {roles}").format(
                login=principal.actor,
                name=principal.display_name,
                via=principal.via,
                unit=principal.unit or "-",
                number=principal.officer_number or "-",
                roles=_roles_text(principal.roles),
            ),
            markup=False,
        )
        _say_pending(principal)


def _principal_json(principal: Principal) -> dict[str, Any]:
    return {
        "login": principal.login,
        "display_name": principal.display_name,
        "unit": principal.unit,
        "officer_number": principal.officer_number,
        "roles": sorted(r.value for r in principal.roles),
        "via": principal.via,
        "pending": sorted(principal.pending),
    }


def register(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    _register_session(cli, pass_ctx, json_option)
    from liuhen.user_admin_cmds import register_tokens, register_users

    register_users(cli, pass_ctx, json_option)
    register_tokens(cli, pass_ctx, json_option)
