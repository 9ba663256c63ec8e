"""`liuhen user ...` and `liuhen token ...`: the administrators' side of accounts (who
may run which is liuhen/command_permissions.py's table, checked before these run)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.markup import escape

from access.roles import Role
from config.i18n import _
from liuhen.access_audit import audit
from liuhen.output import out, print_json
from liuhen.user_cmds import (
    ROLE_CHOICE,
    Decorator,
    UsageProblem,
    _iso,
    _json_times,
    _principal,
    _read_secret,
    _roles_text,
    _shown,
    _source,
    _user,
    _when,
)


def _not_self(principal: Any, login: str, what: str) -> None:
    """No one changes their own roles, locks or grants: another administrator must."""
    if principal.login == login and principal.via != "local":
        raise UsageProblem(
            _("you may not {what} your own account").format(what=what),
            hint=_("another administrator must do it"),
        )


def _change(app: Any, principal: Any, action: str, login: str, **details: Any) -> None:
    audit(
        app,
        actor=principal.actor,
        action=action,
        object_type="user",
        object_id=login,
        source="cli",
        details=details,
    )


def register_users(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.group("user")
    def user_group() -> None:
        """User accounts, roles, case grants and two-factor login."""

    _register_add_list(user_group, pass_ctx, json_option)
    _register_password(user_group, pass_ctx, json_option)
    _register_states(user_group, pass_ctx)
    _register_2fa(user_group, pass_ctx)
    _register_roles(user_group, pass_ctx)
    _register_case_grants(user_group, pass_ctx, json_option)


def _register_add_list(group: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @group.command("add")
    @click.argument("login")
    @click.option("--name", default="", help="Display name.")
    @click.option("--unit", default="", help="The user's unit (单位).")
    @click.option("--officer", "officer_number", help="The user's 警号, for an officer.")
    @click.option("--role", "roles", multiple=True, type=ROLE_CHOICE, help="A role (repeatable).")
    @json_option
    @pass_ctx
    def user_add(
        ctx: Any,
        login: str,
        name: str,
        unit: str,
        officer_number: str | None,
        roles: tuple[str, ...],
        as_json: bool,
    ) -> None:
        """Add a user; prints a one-time password, shown only now."""
        from access.accounts import create_user

        app, principal = ctx.app(), _principal(ctx)
        wanted = [Role(r) for r in roles]
        with app.ready_catalog().transaction() as session:
            _created, password = create_user(
                session,
                login=login,
                display_name=name,
                unit=unit,
                officer_number=officer_number,
                roles=wanted,
                actor=principal.actor,
                policy=app.settings.access,
            )
        _change(
            app,
            principal,
            "access.user_change",
            login,
            created=True,
            roles=sorted(r.value for r in wanted),
        )
        if as_json:
            print_json({"login": login, "one_time_password": password})
            return
        out.print(
            _(
                "[green]✓[/green] user {login} added ({roles}); one-time password, shown only "
                "now (to be changed at first login):"
            ).format(login=login, roles=_roles_text(wanted))
        )
        print(password)

    @group.command("list")
    @json_option
    @pass_ctx
    def user_list(ctx: Any, as_json: bool) -> None:
        """Every user: unit, 警号, state, roles, two-factor, last login."""
        app = ctx.app()
        rows = _user_rows(app)
        if as_json:
            print_json(rows)
            return
        for r in rows:
            out.print(
                f"{r['login']:16} {r['state']:9} {r['unit'] or '-':12} "
                f"{r['officer_number'] or '-':8} "
                f"2FA:{'on' if r['totp'] else 'off':3} {_roles_text(r['roles'])}  "
                f"{_('last login')}: {_shown(app, r['last_login_at'])}",
                markup=False,
            )


def _user_rows(app: Any) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from access.accounts import roles_of
    from catalog.access_models import User

    with app.ready_catalog().session() as session:
        users = session.scalars(select(User).order_by(User.login)).all()
        return [
            {
                "login": u.login,
                "display_name": u.display_name,
                "unit": u.unit,
                "officer_number": u.officer_number,
                "state": u.state,
                "locked_until": _iso(app, u.locked_until),
                "roles": sorted(r.value for r in roles_of(session, u.id)),
                "totp": u.totp_enabled,
                "last_login_at": _iso(app, u.last_login_at),
            }
            for u in users
        ]


def _register_password(group: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @group.command("passwd")
    @click.argument("login", required=False)
    @click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the current and the new password from standard input, one a line.",
    )
    @json_option
    @pass_ctx
    def user_passwd(ctx: Any, login: str | None, password_stdin: bool, as_json: bool) -> None:
        """Change your password; or, naming another user, give them a one-time password
        (security administrator)."""
        app, principal = ctx.app(), _principal(ctx)
        if login and login != principal.login:
            password = reset_password(app, principal, login)
            if as_json:
                print_json({"login": login, "one_time_password": password})
                return
            out.print(_("one-time password of {login}, shown only now:").format(login=login))
            print(password)
            return
        current = _read_secret(password_stdin, _("Current password"))
        new = _read_secret(password_stdin, _("New password"), confirm=True)
        change_own_password(app, principal, current, new)
        out.print(_("[green]✓[/green] password changed"))


def change_own_password(app: Any, principal: Any, current: str, new: str) -> None:
    from access.accounts import LoginFailed, change_password
    from access.audit import LOCK_FAILED_PASSWORD_CHECKS

    try:
        with app.ready_catalog().transaction() as session:
            user = session.get(_user_model(), principal.user_id)
            change_password(
                session, user, current, new, policy=app.settings.access, source=_source()
            )
    except LoginFailed as exc:
        if exc.locked:  # this wrong current password reached the lockout
            audit(
                app,
                actor=principal.actor,
                action="access.lock",
                object_type="user",
                object_id=principal.login,
                result=exc.reason,
                source="cli",
                details={"cause": LOCK_FAILED_PASSWORD_CHECKS},
            )
        raise
    _change(app, principal, "access.password_change", principal.login)


def reset_password(app: Any, principal: Any, login: str) -> str:
    from access.accounts import generate_password, set_password
    from access.sessions import revoke_sessions

    _not_self(principal, login, _("reset the password of"))
    password = generate_password(app.settings.access)
    with app.ready_catalog().transaction() as session:
        user = _user(session, login)
        set_password(session, user, password, policy=app.settings.access, one_time=True)
        revoke_sessions(session, user.id, actor=principal.actor)
    _change(app, principal, "access.password_change", login, reset=True)
    return password


def _user_model() -> Any:
    from catalog.access_models import User

    return User


def _register_states(group: click.Group, pass_ctx: Decorator) -> None:
    @group.command("lock")
    @click.argument("login")
    @pass_ctx
    def user_lock(ctx: Any, login: str) -> None:
        """Lock an account until unlocked, and end its sessions."""
        set_account_state(ctx, login, "lock")

    @group.command("unlock")
    @click.argument("login")
    @pass_ctx
    def user_unlock(ctx: Any, login: str) -> None:
        """Unlock an account locked by hand or by failed logins."""
        set_account_state(ctx, login, "unlock")

    @group.command("disable")
    @click.argument("login")
    @pass_ctx
    def user_disable(ctx: Any, login: str) -> None:
        """Disable an account for good (a person who left), and end its sessions."""
        set_account_state(ctx, login, "disable")

    @group.command("enable")
    @click.argument("login")
    @pass_ctx
    def user_enable(ctx: Any, login: str) -> None:
        """Enable a disabled account again; a lock it had when disabled still holds."""
        set_account_state(ctx, login, "enable")

    @group.command("logout")
    @click.argument("login")
    @pass_ctx
    def user_logout(ctx: Any, login: str) -> None:
        """Forced logout: end every session of a user now."""
        from access.sessions import revoke_sessions

        app, principal = ctx.app(), _principal(ctx)
        with app.ready_catalog().transaction() as session:
            ended = revoke_sessions(session, _user(session, login).id, actor=principal.actor)
        _change(app, principal, "access.logout", login, forced=True, sessions=ended)
        out.print(
            _("[green]✓[/green] ended {n} session(s) of {login}").format(n=ended, login=login)
        )


def set_account_state(ctx: Any, login: str, change: str) -> None:
    """`liuhen user lock|unlock|disable|enable`: ``change`` a key of
    access.accounts.STATE_CHANGES."""
    from access.accounts import change_state
    from access.audit import STATE_ACTIONS
    from access.sessions import revoke_sessions

    app, principal = ctx.app(), _principal(ctx)
    _not_self(
        principal,
        login,
        {"lock": _("lock"), "unlock": _("unlock"), "disable": _("disable"), "enable": _("enable")}[
            change
        ],
    )
    with app.ready_catalog().transaction() as session:
        user = _user(session, login)
        state = change_state(session, user, change)
        if change in ("lock", "disable"):
            revoke_sessions(session, user.id, actor=principal.actor)
    # The same action and details as the HTTP API's /users/{login}/{change} record.
    _change(app, principal, STATE_ACTIONS[change], login, state=state)
    shown = {"locked": _("locked"), "active": _("active"), "disabled": _("disabled")}[state]
    out.print(_("[green]✓[/green] account {login} is now {state}").format(login=login, state=shown))


def _register_2fa(group: click.Group, pass_ctx: Decorator) -> None:
    @group.group("2fa")
    def twofa_group() -> None:
        """Two-factor login (TOTP): required for the administrators."""

    @twofa_group.command("enroll")
    @click.option("--code", help="A code of the authenticator app, to confirm the new key.")
    @pass_ctx
    def twofa_enroll(ctx: Any, code: str | None) -> None:
        """Turn on two-factor login for your account: first without --code (shows the
        key for the authenticator app), then with --code (shows the recovery codes)."""
        from access.accounts import confirm_totp, sealed_seeds_exist, start_totp, totp_seed
        from access.totp_seal import sealer_for_new_seed

        app, principal = ctx.app(), _principal(ctx)
        with app.ready_catalog().transaction() as session:
            # The seed is kept sealed, under the key every host of the catalog shares.
            sealer = sealer_for_new_seed(app.settings.data_dir, sealed_seeds_exist(session))
            user = session.get(_user_model(), principal.user_id)
            if user.totp_enabled:
                raise UsageProblem(
                    _("two-factor login is on already"),
                    hint=_(
                        "to move it to a new phone, ask the security administrator to "
                        "reset it (liuhen user 2fa reset)"
                    ),
                )
            if code is None:
                uri = start_totp(session, user, sealer=sealer)
                secret = totp_seed(user, sealer)
            else:
                codes = confirm_totp(session, user, code, policy=app.settings.access, sealer=sealer)
        if code is None:
            out.print(_("add this key to your authenticator app (or scan the URI as a QR code):"))
            print(secret)
            print(uri)
            out.print(_("then run `liuhen user 2fa enroll --code CODE` with the code it shows"))
            return
        _change(app, principal, "access.2fa_change", principal.login, enabled=True)
        out.print(
            _(
                "[green]✓[/green] two-factor login is on. Recovery codes, each usable "
                "once, shown only now (keep them apart from the phone):"
            )
        )
        print("\n".join(codes))

    @twofa_group.command("reset")
    @click.argument("login")
    @pass_ctx
    def twofa_reset(ctx: Any, login: str) -> None:
        """Turn off a user's two-factor login (a lost phone) and end their sessions."""
        from access.accounts import reset_totp
        from access.sessions import revoke_sessions

        app, principal = ctx.app(), _principal(ctx)
        _not_self(principal, login, _("reset two-factor login of"))
        with app.ready_catalog().transaction() as session:
            user = _user(session, login)
            reset_totp(session, user)
            revoke_sessions(session, user.id, actor=principal.actor)
        _change(app, principal, "access.2fa_change", login, enabled=False)
        out.print(
            _(
                "[green]✓[/green] two-factor login of {login} is off; they enroll again "
                "at their next login"
            ).format(login=login)
        )


def _register_roles(group: click.Group, pass_ctx: Decorator) -> None:
    @group.group("role")
    def role_group() -> None:
        """Roles of users (security administrator)."""

    @role_group.command("grant")
    @click.argument("login")
    @click.argument("role", type=ROLE_CHOICE)
    @pass_ctx
    def role_grant(ctx: Any, login: str, role: str) -> None:
        """Give a user a role (one administrator role at most per account)."""
        from access.accounts import grant_role

        app, principal = ctx.app(), _principal(ctx)
        _not_self(principal, login, _("change the roles of"))
        with app.ready_catalog().transaction() as session:
            changed = grant_role(session, _user(session, login), Role(role), actor=principal.actor)
        if changed:
            _change(app, principal, "access.role_change", login, granted=role)
        out.print(
            _("[green]✓[/green] {login} holds the role {role}").format(
                login=login, role=_roles_text([role])
            )
        )

    @role_group.command("revoke")
    @click.argument("login")
    @click.argument("role", type=ROLE_CHOICE)
    @pass_ctx
    def role_revoke(ctx: Any, login: str, role: str) -> None:
        """Take a role from a user; it counts from their next command."""
        from access.accounts import revoke_role

        app, principal = ctx.app(), _principal(ctx)
        _not_self(principal, login, _("change the roles of"))
        with app.ready_catalog().transaction() as session:
            changed = revoke_role(session, _user(session, login), Role(role))
        if changed:
            _change(app, principal, "access.role_change", login, revoked=role)
        out.print(
            _("[green]✓[/green] {login} does not hold the role {role}").format(
                login=login, role=_roles_text([role])
            )
        )


def _register_case_grants(group: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @group.group("case")
    def case_group() -> None:
        """Cases granted to a named user for a period."""

    @case_group.command("grant")
    @click.argument("login")
    @click.argument("number")
    @click.option("--from", "starts", help="Start (default: now), station time.")
    @click.option("--until", "ends", required=True, help="End (exclusive), station time.")
    @click.option("--reason", required=True, help="Why (recorded).")
    @pass_ctx
    def case_grant(
        ctx: Any, login: str, number: str, starts: str | None, ends: str, reason: str
    ) -> None:
        """Let a user reach a case and its recordings for a period, with their roles."""
        grant_for(ctx, login, number, starts, ends, reason)

    @case_group.command("revoke")
    @click.argument("login")
    @click.argument("number")
    @pass_ctx
    def case_revoke(ctx: Any, login: str, number: str) -> None:
        """End a user's grants of a case now."""
        from access.grants import revoke_case_grants

        app, principal = ctx.app(), _principal(ctx)
        with app.ready_catalog().transaction() as session:
            ended = revoke_case_grants(
                session, _user(session, login), number, actor=principal.actor
            )
        _change(app, principal, "access.grant_change", login, case=number, revoked=ended)
        out.print(
            _("[green]✓[/green] ended {n} grant(s) of case {case} to {login}").format(
                n=ended, case=escape(number), login=login
            )
        )

    @case_group.command("list")
    @click.argument("login", required=False)
    @json_option
    @pass_ctx
    def case_list(ctx: Any, login: str | None, as_json: bool) -> None:
        """Case grants, of one user or of all."""
        from access.grants import list_grants

        app = ctx.app()
        with app.ready_catalog().session() as session:
            rows = list_grants(session, _user(session, login) if login else None)
        if as_json:
            print_json(_json_times(app, rows))
            return
        for r in rows:
            state = _("revoked") if r["revoked_at"] else ""
            out.print(
                f"{r['login']:16} {r['case']}  {_shown(app, r['starts_at'])} → "
                f"{_shown(app, r['ends_at'])}  {r['reason']} {state}",
                markup=False,
            )


def grant_case_number(session: Any, grant: Any) -> str:
    from catalog.models import Case

    case = session.get(Case, grant.case_id)
    return str(case.number) if case else ""


def register_tokens(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.group("token")
    def token_group() -> None:
        """API tokens for integrations: one role, one unit, an expiry."""

    @token_group.command("issue")
    @click.argument("name")
    @click.option("--role", required=True, type=ROLE_CHOICE, help="The token's one role.")
    @click.option("--unit", default="", help="The unit it reaches.")
    @click.option("--expires", help="Expiry, station time (default: in 90 days).")
    @json_option
    @pass_ctx
    def token_issue(
        ctx: Any, name: str, role: str, unit: str, expires: str | None, as_json: bool
    ) -> None:
        """Issue an API token; its secret is shown only now (give it as LIUHEN_TOKEN or
        an Authorization: Bearer header)."""
        issue_for(ctx, name, role, unit, expires, as_json)

    @token_group.command("list")
    @json_option
    @pass_ctx
    def token_list(ctx: Any, as_json: bool) -> None:
        """Every API token (never its secret)."""
        from access.sessions import list_tokens

        app = ctx.app()
        with app.ready_catalog().session() as session:
            rows = list_tokens(session)
        if as_json:
            print_json(_json_times(app, rows))
            return
        for r in rows:
            state = _("revoked") if r["revoked_at"] else ""
            out.print(
                f"{r['name']:20} {r['role']:14} {r['unit'] or '-':12} "
                f"{_('expires')}: {_shown(app, r['expires_at'])} {state}",
                markup=False,
            )

    @token_group.command("revoke")
    @click.argument("name")
    @pass_ctx
    def token_revoke(ctx: Any, name: str) -> None:
        """End an API token now."""
        from access.sessions import revoke_token

        app, principal = ctx.app(), _principal(ctx)
        with app.ready_catalog().transaction() as session:
            revoke_token(session, name, actor=principal.actor)
        audit(
            app,
            actor=principal.actor,
            action="access.token_change",
            object_type="token",
            object_id=name,
            details={"revoked": True},
        )
        out.print(_("[green]✓[/green] token {name} revoked").format(name=escape(name)))


def grant_for(
    ctx: Any, login: str, number: str, starts: str | None, ends: str, reason: str
) -> None:
    """`liuhen user case grant`."""
    from access.grants import grant_case

    app, principal = ctx.app(), _principal(ctx)
    _not_self(principal, login, _("grant cases to"))
    start = _when(app, starts, "--from") if starts else datetime.now(UTC)
    end = _when(app, ends, "--until")
    with app.ready_catalog().transaction() as session:
        grant = grant_case(
            session,
            _user(session, login),
            number,
            starts_at=start,
            ends_at=end,
            reason=reason,
            actor=principal.actor,
        )
        case_number = grant_case_number(session, grant)
    _change(
        app,
        principal,
        "access.grant_change",
        login,
        case=case_number,
        starts_at=start.isoformat(),
        ends_at=end.isoformat(),
        reason=reason,
    )
    out.print(
        _("[green]✓[/green] case {case} granted to {login} from {start} until {end}").format(
            case=escape(case_number), login=login, start=_shown(app, start), end=_shown(app, end)
        )
    )


def issue_for(
    ctx: Any, name: str, role: str, unit: str, expires: str | None, as_json: bool
) -> None:
    """`liuhen token issue`."""
    from access.sessions import issue_token

    app, principal = ctx.app(), _principal(ctx)
    until = (
        _when(app, expires, "--expires") if expires else (datetime.now(UTC) + timedelta(days=90))
    )
    with app.ready_catalog().transaction() as session:
        secret = issue_token(
            session,
            name=name,
            role=Role(role),
            unit=unit,
            expires_at=until,
            created_by=principal.actor,
            policy=app.settings.access,
        )
    audit(
        app,
        actor=principal.actor,
        action="access.token_change",
        object_type="token",
        object_id=name,
        details={"issued": True, "role": role, "unit": unit, "expires_at": until.isoformat()},
    )
    if as_json:
        print_json({"name": name, "token": secret, "expires_at": _iso(app, until)})
        return
    out.print(
        _(
            "[green]✓[/green] token {name} ({role}, unit {unit}) until {until}; "
            "its secret, shown only now:"
        ).format(
            name=escape(name),
            role=_roles_text([role]),
            unit=escape(unit or "-"),
            until=_shown(app, until),
        )
    )
    print(secret)
