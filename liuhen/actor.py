"""Who acts, for every command: the logged-in account, an API token, or the local user.

- With user accounts in the catalog, a command that needs a permission (or records an
  actor) runs as the principal of ``liuhen login`` (its session secret kept in a 0600
  file under the user's home, one per data directory) or of the API token in
  ``LIUHEN_TOKEN``; without either it fails with exit 77 and "run `liuhen login`".
- While the catalog has no accounts at all (installs and scripts from before accounts),
  commands run as a local principal named after the OS user, as before, and say so once
  on stderr with ``--verbose``.

``--actor`` is no longer free text once accounts exist: the custody log records the
principal's login, and ``--actor`` is accepted only when it names that same login (so
scripts that passed their own name keep working); anything else is a usage error.
Without accounts it is what it was: any name, the OS user by default.

Light at import (``liuhen/cli.py`` imports the option at start-up): the catalog is
loaded only when a command needs a principal.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from config import env
from config.errors import LiuhenError
from config.i18n import _
from config.settings import zone_of

if TYPE_CHECKING:
    from access.policy import AccessDenied, Principal
    from access.roles import Permission
    from config import Settings
    from liuhen.app import App

EXIT_NOPERM = 77
PRINCIPAL = "liuhen.principal"  # click's ctx.meta key: one principal per command line


class ActorType(click.ParamType):  # type: ignore[type-arg]
    """Who acts: refused here, naming --actor, when the catalog could not record it (too
    long for its columns, a NUL), rather than by PostgreSQL mid-command (SQLite would
    silently keep it)."""

    name = "actor"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from catalog.fields import actor_problems

        problems = actor_problems(str(value))
        if problems:
            self.fail(
                _("{problems} (give a shorter name: a user name or 警号)").format(
                    problems="; ".join(problems)
                ),
                param,
                ctx,
            )
        return str(value)


ACTOR = ActorType()


def actor_option(f: Callable[..., Any]) -> Callable[..., Any]:
    # No default here: the invoke hook (liuhen.command_permissions) fills in the principal.
    return click.option(
        "--actor",
        type=ACTOR,
        default=None,
        help="Who does this (recorded in the custody log): your login, the default; "
        "another name only while the catalog has no user accounts.",
    )(f)


class NotLoggedIn(LiuhenError):
    exit_code = EXIT_NOPERM


def app_of(ctx: click.Context) -> App:
    app: App = ctx.find_root().obj.app()
    return app


# --- the session file ------------------------------------------------------------------


def session_file(settings: Settings) -> Path:
    """Where ``liuhen login`` keeps its session secret for this data directory."""
    key = hashlib.sha256(str(settings.data_dir.resolve()).encode("utf-8")).hexdigest()[:32]
    return Path.home() / ".liuhen" / "sessions" / key


def read_session_secret(settings: Settings) -> str | None:
    try:
        return session_file(settings).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def write_session_secret(settings: Settings, secret: str) -> Path:
    """Keep the secret readable by this OS user only (0600 in a 0700 directory)."""
    path = session_file(settings)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(path.name + ".new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    os.replace(tmp, path)
    return path


def forget_session(settings: Settings) -> None:
    session_file(settings).unlink(missing_ok=True)


# --- the principal ---------------------------------------------------------------------


def catalog_has_accounts(app: App) -> bool:
    """Whether any user account exists. A catalog not made yet, or from before accounts
    (no ``users`` table), has none."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from access.accounts import has_accounts

    url = make_url(app.settings.catalog_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or not Path(database).exists():
            return False  # (looking would create an empty file)
    with app.catalog.session() as session:
        if not inspect(session.connection()).has_table("users"):
            return False
        return has_accounts(session)


def current_principal(ctx: click.Context) -> Principal:
    """Who runs this command line: found once, then kept in the click context."""
    meta = ctx.find_root().meta
    if PRINCIPAL not in meta:
        app = app_of(ctx)
        if catalog_has_accounts(app):
            meta[PRINCIPAL] = logged_in(app)
        else:
            from access.accounts import local_principal

            meta[PRINCIPAL] = local_principal()
            if ctx.find_root().obj.verbose:
                from liuhen.output import err

                err.print(
                    _(
                        "note: the catalog has no user accounts: acting as the local user "
                        "{login} with every role but the administrators'"
                    ).format(login=meta[PRINCIPAL].login),
                    markup=False,
                )
    principal: Principal = meta[PRINCIPAL]
    return principal


def logged_in(app: App) -> Principal:
    """The principal of ``LIUHEN_TOKEN`` or of this user's ``liuhen login`` session."""
    from access.sessions import SessionExpired, principal_for_session, principal_for_token

    token = os.environ.get(env.TOKEN)
    secret = None if token else read_session_secret(app.settings)
    if not token and secret is None:
        raise NotLoggedIn(
            _("this command needs a logged-in user: run `liuhen login`"),
            hint=_("or give an API token in {var} (liuhen token issue)").format(var=env.TOKEN),
        )
    with app.ready_catalog().transaction() as session:
        if token:
            return principal_for_token(session, token, zone=zone_of(app.settings.station.time_zone))
        assert secret is not None
        try:
            return principal_for_session(session, secret, policy=app.settings.access)
        except SessionExpired:
            forget_session(app.settings)
            raise


def require_account(principal: Principal) -> None:
    """Commands of one's own account need an account (not the local user, not a token)."""
    if principal.user_id is None:
        raise NotLoggedIn(
            _("{login} is not a user account: this command is about your own account").format(
                login=principal.actor
            ),
            hint=_("run `liuhen login` first"),
        )


def actor_for(ctx: click.Context, principal: Principal, given: str | None) -> str:
    """The actor a command records: the principal's; a different ``--actor`` only while
    the catalog has no accounts."""
    if given is None:
        return principal.actor
    if principal.via == "local" or given == principal.actor:
        return given
    raise click.BadParameter(
        _("{given!r} is not you: you are logged in as {login} (leave --actor out)").format(
            given=given, login=principal.actor
        ),
        ctx=ctx,
        param_hint="'--actor'",
    )


def note_denied(
    ctx: click.Context, principal: Principal, permission: Permission, refused: AccessDenied
) -> None:
    """A refusal is an audit event (access.denied) once the audit exists
    (access/audit.py, issue 15 point 4); until then only the error says it. Its reason is
    stored in English whatever the runner's language, so one refusal reads the same in
    the audit whoever ran it."""
    from access.policy import denial
    from config import i18n
    from liuhen.access_audit import audit

    shown = i18n.language()
    i18n.set_language("en")
    try:
        reason = denial(principal, permission, refused.target).message
    finally:
        i18n.set_language(shown)

    audit(
        app_of(ctx),
        actor=principal.actor,
        action="access.denied",
        object_type="command",
        object_id=command_name(ctx),
        result="denied",
        details={"permission": permission.value, "reason": reason},
    )


def command_name(ctx: click.Context) -> str:
    from liuhen.command_permissions import command_path

    return command_path(ctx)
