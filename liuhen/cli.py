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

from config import LiuhenError, Settings, load_settings, settings_as_dict
from config.errors import EXIT_SOFTWARE, CheckFailed
from config.i18n import _, normalise_language, set_language, translate_click
from liuhen import __version__
from liuhen.actor import actor_option
from liuhen.localized import LocalizedGroup
from liuhen.output import configure_logging, err, mark, out, print_json

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

    def app(self, *, create: bool = False) -> App:
        """The station's wiring, for a command that works on the data directory: one
        that is not there is refused before anything is opened (the journal, the
        catalog, the key), because only ``init`` (``create``) makes it."""
        if self._app is None:
            from liuhen.app import App

            self._app = App(self.settings())
        if not create:
            self._app.require_data_dir()
        return self._app

    def settings(self) -> Settings:
        """The effective settings, without touching the data directory."""
        return load_settings(self.data_dir, self.config)


pass_ctx = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data directory [LIUHEN_HOME].")
@click.option("--config", type=click.Path(dir_okay=False), help="Settings file [LIUHEN_CONFIG].")
@click.option("-v", "--verbose", is_flag=True, help="Log every step, and show the cause of errors.")
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

    report = initialize(ctx.app(create=True))
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
        out.print(_("[green]created[/green] {what}").format(what=line))
    for line in report.kept:
        out.print(_("[dim]kept[/dim]    {what}").format(what=line))
    show_first_admin(admin)
    if report.store and not report.store.ok:
        failed = [c for c in report.store.checks if not c.ok]
        for c in failed:
            err.print(
                _("[yellow]warning[/yellow] store check '{name}': {detail}").format(
                    name=check_name(c.name), detail=c.detail
                )
            )


@cli.group("config")
def config_group() -> None:
    """Inspect settings."""


@config_group.command("show")
@json_option
@pass_ctx
def config_show(ctx: Context, as_json: bool) -> None:
    """Print the effective settings (file, then environment), secrets masked."""
    data = settings_as_dict(ctx.settings())
    if as_json:
        print_json(data)
        return
    out.print(_("# data directory: {path}").format(path=data.pop("data_dir")))
    source = data.pop("source")
    out.print(
        _("# settings file:  {path}").format(path=source)
        if source
        else _("# settings file:  (none: defaults)")
    )
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
        out.print(
            _("catalog {url} is up to date (schema {schema})").format(
                url=catalog.display_url, schema=after
            )
        )
    else:
        out.print(
            _("catalog {url}: schema {before} → {after}").format(
                url=catalog.display_url, before=before or _("none"), after=after
            )
        )


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
        out.print(_("store {url}").format(url=report.url))
        for c in report.checks:
            line = _("{name}: {detail}").format(name=check_name(c.name), detail=c.detail)
            out.print(f"  {mark(c.ok)} {line}")
    if not report.ok:
        raise CheckFailed(_("store {url}: some checks failed").format(url=report.url))


def check_name(name: str) -> str:
    """A store check's name for people (JSON keeps the English name programs match)."""
    header = name.removeprefix("verifies ")
    if header != name:  # the S3 upload probes: "verifies Content-MD5" and such
        return _("verifies {header}").format(header=header)
    return _(name)


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
    from api.custody_check import check_custody, reachable_anchors, trusted_keys

    app = ctx.app()
    # The check the audit page runs too (api.custody_check): one implementation.
    trusted = trusted_keys(app.settings, lambda: app.signer, trust_files)
    reached = reachable_anchors(app.settings, app.store, anchor_files)
    with app.ready_catalog().session() as session:
        report = check_custody(session, reached, trusted, station=station, ring=bool(trust_files))
    if as_json:
        print_json(
            report.as_dict()
            | {"anchor_sources": reached.sources, "anchors_unreachable": reached.unreachable}
        )
    else:
        _show_custody_report(report, reached.unreachable)
    if not report.ok:
        raise CheckFailed(_("custody log: {count} problem(s)").format(count=len(report.problems)))


def _show_custody_report(report: Any, unreachable: list[str]) -> None:
    for p in report.problems:
        out.print(f"[red]✗[/red] {p.describe()}")
    for where in unreachable:
        out.print(_("[yellow]![/yellow] anchors not read: {where}").format(where=where))
    summary = _("{events} events in {chains} station chain(s)").format(
        events=report.events, chains=len(report.stations)
    )
    anchored = ", ".join(f"{s} #{n}" for s, n in sorted(report.last_anchored.items()))
    summary += (
        _("; last anchored: {anchored} ({heads} signed chain heads)").format(
            anchored=anchored, heads=report.heads_verified
        )
        if anchored
        else _("; no signed chain head found")
    )
    if report.ok:
        out.print(_("[green]✓[/green] custody log verifies: {summary}").format(summary=summary))
    else:
        out.print(
            _("[red]✗[/red] {count} problem(s) in {summary}").format(
                count=len(report.problems), summary=summary
            )
        )


@custody_group.command("retire-key")
@click.argument("key_id")
@actor_option
@click.option("--reason", required=True, help="Why (recorded in the custody log).")
@pass_ctx
def custody_retire_key(ctx: Context, key_id: str, actor: str, reason: str) -> None:
    """Retire a station's old or leaked signing key: every event it signs from now on is
    reported by `custody verify`, `verify BUNDLE` and `four-properties`."""
    from catalog.custody import retire_key
    from config.settings import zone_of
    from config.timetext import show_time

    app = ctx.app()
    with app.ready_catalog().transaction() as session:
        key, changed = retire_key(session, app.signer, key_id, actor=actor, reason=reason)
        station, when = key.station_id, key.retired_at
    shown = show_time(when, zone_of(app.settings.station.time_zone))
    if changed:
        out.print(
            _("key {key} of station {station} retired at {when}").format(
                key=key_id, station=station, when=shown
            )
        )
    else:
        out.print(
            _("key {key} of station {station} was already retired at {when}").format(
                key=key_id, station=station, when=shown
            )
        )


@custody_group.command("anchor")
@json_option
@pass_ctx
def custody_anchor(ctx: Context, as_json: bool) -> None:
    """Sign this host's custody chain head now and write it to the store (and the station
    journal on a station). Stations do this by themselves; a worker or an admin host can
    run it from cron. Prints the signed head (keep a copy: it is evidence)."""
    from catalog.anchors import publish
    from config.settings import zone_of
    from config.timetext import show_time
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
        out.print(
            _("station {station} has no custody events yet").format(station=app.signer.station_id)
        )
    elif as_json:
        print_json(head.as_json())
    else:
        shown = show_time(head.at, zone_of(app.settings.station.time_zone))
        out.print(
            _("signed chain head of {station}: #{seq} {hash} at {when}").format(
                station=head.station_id, seq=head.seq, hash=head.event_hash, when=shown
            )
        )
        print(head.to_line())


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: the one place errors become exit codes and one-line messages.
    Commands raise (a :class:`~config.errors.Reported` when their report has said what
    failed) and never exit by themselves. With ``--json`` an error is one JSON object on
    stdout (``{"error": {...}}``) with the same text as the message people read."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args or "--verbose" in args
    as_json = "--json" in args
    set_language(_early_language(args))
    translate_click()
    configure_logging(verbose)
    try:
        cli.main(args=args, prog_name="liuhen", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _report_usage(exc, as_json)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail(as_json, _("aborted"), 130, "Abort")
        sys.exit(130)
    except LiuhenError as exc:
        if not exc.reported:  # (a command's own report said it already)
            _report(exc, verbose, as_json)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _fail(as_json, _("interrupted"), 130, "KeyboardInterrupt")
        sys.exit(130)
    except Exception as exc:  # a bug: say so plainly, keep the traceback for --verbose
        message = _("internal error: {kind}: {error}").format(kind=type(exc).__name__, error=exc)
        hint = None if verbose else _("run again with --verbose for the traceback, and report it")
        if as_json:
            _print_error_json(message, hint, EXIT_SOFTWARE, "internal")
        else:
            err.print(_("liuhen: {message}").format(message=message), markup=False)
        if verbose:
            traceback.print_exc()
        elif not as_json:
            err.print(hint, markup=False)
        sys.exit(EXIT_SOFTWARE)
    sys.exit(0)


def _early_language(args: list[str]) -> str | None:
    """The --lang given, read before click parses anything: click builds some of its own
    texts (the --help option's help) before an eager option's callback runs."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        value = arg.partition("=")[2] if arg.startswith("--lang=") else None
        if arg == "--lang" and i + 1 < len(args):
            value = args[i + 1]
        if value:
            try:
                return normalise_language(value)
            except ValueError:
                return None  # click says what --lang accepts
    return None


def _fail(as_json: bool, message: str, code: int, kind: str) -> None:
    if as_json:
        _print_error_json(message, None, code, kind)
    else:
        err.print(message, markup=False)


def _print_error_json(message: str, hint: str | None, code: int, kind: str) -> None:
    print_json({"error": {"message": message, "hint": hint, "exit_code": code, "kind": kind}})


def _report_usage(exc: click.ClickException, as_json: bool) -> None:
    """Click's message (a usage mistake, a bad file name) as people or programs read it."""
    if not as_json:
        exc.show()
        return
    hint = None
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        names = ctx.command.get_help_option_names(ctx)
        hint = _("Try '{command} {option}' for help.").format(
            command=ctx.command_path, option=max(names, key=len)
        )
    _print_error_json(exc.format_message(), hint, exc.exit_code, type(exc).__name__)


def _report(exc: LiuhenError, verbose: bool, as_json: bool) -> None:
    if as_json:
        _print_error_json(exc.message, exc.hint, exc.exit_code, type(exc).__name__)
        return
    err.print(_("liuhen: error: {message}").format(message=exc.message), markup=False)
    if exc.hint:
        err.print(_("  what to do: {hint}").format(hint=exc.hint), markup=False)
    if verbose:
        cause = exc.__cause__
        while cause is not None:
            err.print(
                _("  cause: {kind}: {error}").format(kind=type(cause).__name__, error=cause),
                markup=False,
            )
            cause = cause.__cause__
