"""The `liuhen` command. Each command parses its arguments and calls one function;
errors become exit codes and one-line messages in one place, :func:`main`."""

from __future__ import annotations

import importlib
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from config import LiuhenError, load_settings, settings_as_dict
from config.errors import EXIT_SOFTWARE, CheckFailed
from config.i18n import set_language, translate_click
from liuhen import __version__
from liuhen.actor import actor_option
from liuhen.localized import LocalizedGroup
from liuhen.output import err, mark, out, print_json

if TYPE_CHECKING:
    from liuhen.app import App

# Commands that live in their own modules, loaded only when named (or for --help): a
# command then pays only for the libraries it uses (`liuhen verify BUNDLE` does not
# load SQLAlchemy, boto3 or the station).
LAZY_COMMANDS = {
    "audit": "audit_cmds",
    "case": "case_cmds",
    "compliance": "compliance_cmds",
    "coverage": "compliance_cmds",
    "demo": "ingest_cmds",
    "device": "case_cmds",
    "district": "district_cmds",
    "doctor": "district_cmds",
    "export": "export_cmds",
    "four-properties": "export_cmds",
    "ingest": "ingest_cmds",
    "login": "user_cmds",
    "logout": "user_cmds",
    "report": "compliance_cmds",
    "retention": "case_cmds",
    "serve": "serve_cmds",
    "review": "compliance_cmds",
    "show": "media_cmds",
    "station": "ingest_cmds",
    "token": "user_cmds",
    "user": "user_cmds",
    "verify": "verify_cmds",
    "whoami": "user_cmds",
    "worker": "media_cmds",
}


class LazyGroup(LocalizedGroup):
    group_class = LocalizedGroup  # subgroups list only their own commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            module = importlib.import_module(f"liuhen.{LAZY_COMMANDS[cmd_name]}")
            module.register(self, pass_ctx, json_option)
        return self.commands.get(cmd_name)


@dataclass
class Context:
    data_dir: str | None
    config: str | None
    verbose: bool
    _app: App | None = None

    def app(self) -> App:
        if self._app is None:
            from liuhen.app import App

            self._app = App(load_settings(self.data_dir, self.config))
        return self._app


pass_ctx = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data directory [LIUHEN_HOME].")
@click.option("--config", type=click.Path(dir_okay=False), help="Settings file [LIUHEN_CONFIG].")
@click.option("-v", "--verbose", is_flag=True, help="Show the cause of errors.")
@click.option(
    "--lang",
    type=click.Choice(["zh", "en"], case_sensitive=False),
    is_eager=True,
    expose_value=False,
    callback=lambda _ctx, _param, value: set_language(value) if value else None,
    help="Language of messages: zh (中文, the default) or en [LIUHEN_LANG].",
)
@click.version_option(__version__, prog_name="liuhen")
@click.pass_context
def cli(ctx: click.Context, data_dir: str | None, config: str | None, verbose: bool) -> None:
    """留痕 (liuhen): evidence-recording ingestion for body-worn cameras."""
    ctx.obj = Context(data_dir, config, verbose)
    ctx.call_on_close(lambda: ctx.obj._app.close() if ctx.obj._app else None)


@cli.command()
@click.option(
    "--admin",
    "admin_login",
    help="Create the first system administrator with this login; its one-time password "
    "is printed once.",
)
@json_option
@pass_ctx
def init(ctx: Context, admin_login: str | None, as_json: bool) -> None:
    """Create the data directory, settings file, signing key, catalog and store."""
    from liuhen.app import initialize
    from liuhen.user_cmds import first_admin, show_first_admin

    report = initialize(ctx.app())
    admin = first_admin(ctx.app(), admin_login, report)
    if as_json:
        print_json(
            {
                "data_dir": str(report.data_dir),
                "created": report.created,
                "kept": report.kept,
                "schema": report.schema,
                "store_ok": report.store.ok if report.store else None,
            }
            | admin
        )
        return
    for line in report.created:
        out.print(f"[green]created[/green] {line}")
    for line in report.kept:
        out.print(f"[dim]kept[/dim]    {line}")
    show_first_admin(admin)
    if report.store and not report.store.ok:
        failed = [c for c in report.store.checks if not c.ok]
        for c in failed:
            err.print(f"[yellow]warning[/yellow] store check '{c.name}': {c.detail}")


@cli.group("config")
def config_group() -> None:
    """Inspect settings."""


@config_group.command("show")
@json_option
@pass_ctx
def config_show(ctx: Context, as_json: bool) -> None:
    """Print the effective settings (file, then environment), secrets masked."""
    data = settings_as_dict(ctx.app().settings)
    if as_json:
        print_json(data)
        return
    out.print(f"# data directory: {data.pop('data_dir')}")
    out.print(f"# settings file:  {data.pop('source') or '(none: defaults)'}")
    for section, values in data.items():
        out.print(f"\n[bold]\\[{section}][/bold]")
        for key, value in values.items():
            out.print(f"{key} = {_toml_value(value)}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


@cli.group("db")
def db_group() -> None:
    """Catalog schema."""


@db_group.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Bring the catalog schema up to this version of 留痕."""
    catalog = ctx.app().catalog
    before, after = catalog.upgrade()
    if before == after:
        out.print(f"catalog {catalog.display_url} is up to date (schema {after})")
    else:
        out.print(f"catalog {catalog.display_url}: schema {before or 'none'} → {after}")


@cli.group("store")
def store_group() -> None:
    """Object store."""


@store_group.command("check")
@json_option
@pass_ctx
def store_check(ctx: Context, as_json: bool) -> None:
    """Check connectivity, permissions, Object Lock and a write/read/verify round trip."""
    report = ctx.app().store.check()
    if as_json:
        print_json(
            {
                "url": report.url,
                "ok": report.ok,
                "object_lock": report.object_lock,
                "checks": [c.__dict__ for c in report.checks],
            }
        )
    else:
        out.print(f"store {report.url}")
        for c in report.checks:
            out.print(f"  {mark(c.ok)} {c.name}: {c.detail}")
    if not report.ok:
        raise CheckFailed(f"store {report.url}: some checks failed")


@cli.group("custody")
def custody_group() -> None:
    """Custody log."""


@custody_group.command("verify")
@click.option("--station", help="Verify only this station's chain.")
@click.option(
    "--trust",
    "trust_files",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True),
    help="Key ring of trusted keys: '<station id> <key id>' per line (repeatable). A "
    "station it does not name is untrusted.",
)
@click.option(
    "--anchors",
    "anchor_files",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Signed chain heads kept outside the catalog: an exported bag (folder or .tar) or "
    "an anchors file (repeatable). The station journal and the store are always read.",
)
@json_option
@pass_ctx
def custody_verify(
    ctx: Context,
    station: str | None,
    trust_files: tuple[str, ...],
    anchor_files: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Walk every custody chain; report every broken link, bad signature or unknown key,
    and every event the signed chain heads vouch for that the catalog lacks."""
    from catalog import verify_chain
    from catalog.custody import Problem
    from catalog.signing import load_keyring
    from liuhen.anchoring import reachable_anchors

    app = ctx.app()
    trusted: dict[str, set[str]] = {}
    for path in trust_files:
        for sid, ids in load_keyring(Path(path)).items():
            trusted.setdefault(sid, set()).update(ids)
    if app.settings.key_file.exists():
        # This station's own key file is a trust anchor outside the catalog.
        trusted.setdefault(app.settings.station.id, set()).add(app.signer.key_id)
    reached = reachable_anchors(app.settings, app.store, anchor_files)
    with app.ready_catalog().session() as session:
        report = verify_chain(
            session,
            trusted=trusted,
            station_id=station,
            ring=bool(trust_files),
            anchors=reached.heads,
        )
    report.problems += [
        Problem(i.station_id, i.seq, None, i.kind, i.detail) for i in reached.issues
    ]
    if as_json:
        print_json(
            report.as_dict()
            | {"anchor_sources": reached.sources, "anchors_unreachable": reached.unreachable}
        )
    else:
        for p in report.problems:
            out.print(f"[red]✗[/red] {p.describe()}")
        for where in reached.unreachable:
            out.print(f"[yellow]![/yellow] anchors not read: {where}")
        summary = f"{report.events} events in {len(report.stations)} station chain(s)"
        anchored = ", ".join(f"{s} #{n}" for s, n in sorted(report.last_anchored.items()))
        summary += (
            f"; last anchored: {anchored} ({report.heads_verified} signed chain heads)"
            if anchored
            else "; no signed chain head found"
        )
        if report.ok:
            out.print(f"[green]✓[/green] custody log verifies: {summary}")
        else:
            out.print(f"[red]✗[/red] {len(report.problems)} problem(s) in {summary}")
    if not report.ok:
        raise CheckFailed(f"custody log: {len(report.problems)} problem(s)")


@custody_group.command("retire-key")
@click.argument("key_id")
@actor_option
@click.option("--reason", required=True, help="Why (recorded in the custody log).")
@pass_ctx
def custody_retire_key(ctx: Context, key_id: str, actor: str, reason: str) -> None:
    """Retire a station's old or leaked signing key: every event it signs from now on is
    reported by `custody verify`, `verify BUNDLE` and `four-properties`."""
    from catalog.custody import retire_key

    app = ctx.app()
    with app.ready_catalog().transaction() as session:
        key, changed = retire_key(session, app.signer, key_id, actor=actor, reason=reason)
        station, when = key.station_id, key.retired_at
    if changed:
        out.print(f"key {key_id} of station {station} retired at {when}")
    else:
        out.print(f"key {key_id} of station {station} was already retired at {when}")


@custody_group.command("anchor")
@json_option
@pass_ctx
def custody_anchor(ctx: Context, as_json: bool) -> None:
    """Sign this host's custody chain head now and write it to the store (and the station
    journal on a station). Stations do this by themselves; a worker or an admin host can
    run it from cron. Prints the signed head (keep a copy: it is evidence)."""
    from catalog.anchors import publish
    from ingest.journal import Journal

    app = ctx.app()
    journal = Journal(app.settings.journal_path) if app.settings.journal_path.exists() else None
    try:
        with app.ready_catalog().session() as session:
            head = publish(session, app.signer, journal=journal, store=app.store)
    finally:
        if journal is not None:
            journal.close()
    if head is None:
        out.print(f"station {app.signer.station_id} has no custody events yet")
    elif as_json:
        print_json(head.as_json())
    else:
        out.print(
            f"signed chain head of {head.station_id}: #{head.seq} {head.event_hash} at {head.at}"
        )
        print(head.to_line())


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: the one place errors become exit codes and one-line messages.
    Commands raise (a :class:`~config.errors.Reported` when their report has said what
    failed) and never exit by themselves."""
    verbose = "-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:])
    set_language(None)
    translate_click()
    try:
        cli.main(args=argv, prog_name="liuhen", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except LiuhenError as exc:
        if not exc.reported:  # (a command's own report said it already)
            _report(exc, verbose)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug: say so plainly, keep the traceback for --verbose
        err.print(f"liuhen: internal error: {type(exc).__name__}: {exc}", markup=False)
        if verbose:
            traceback.print_exc()
        else:
            err.print("run again with --verbose for the traceback, and report it", markup=False)
        sys.exit(EXIT_SOFTWARE)
    sys.exit(0)


def _report(exc: LiuhenError, verbose: bool) -> None:
    err.print(f"liuhen: error: {exc.message}", markup=False)
    if exc.hint:
        err.print(f"  what to do: {exc.hint}", markup=False)
    if verbose:
        cause = exc.__cause__
        while cause is not None:
            err.print(f"  cause: {type(cause).__name__}: {cause}", markup=False)
            cause = cause.__cause__
