"""`liuhen ingest`, `liuhen station status`, `liuhen demo`: thin commands over ingest/."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from config.errors import Reported
from config.i18n import _, ngettext
from config.message import is_message, recognised, shown
from config.settings import zone_of
from config.timetext import offset_text, show_clock
from ingest import journal as J
from ingest.docking import STORED_TEXTS
from ingest.journal import Journal
from ingest.station import DockingResult
from ingest.station import Progress as DockProgress
from ingest.status import status_rows
from liuhen.district_cmds import apply_metrics_port, metrics_port_option
from liuhen.output import err, out, print_json
from liuhen.screen_table import cells


def run_ingest(app: Any, path: Path, as_json: bool, quiet: bool) -> None:
    station = app.station()
    try:
        if as_json or quiet or not sys.stderr.isatty():
            result = station.run_docking(path)
        else:
            result = _with_bars(station, path)
    finally:
        station.close()
    _print_result(result, as_json)
    if result.exit_code:
        raise Reported(
            _("docking {uid}: {state}").format(uid=result.uid, state=_state_name(result.state)),
            exit_code=result.exit_code,
        )


def stored_text(text: str) -> str:
    """A message the journal stored in English (a reason, what a docking waits for), in
    the reader's language when the catalog knows it; as stored otherwise. A kept message
    (config.message: template and fields) is translated with its fields."""
    if is_message(text):
        return shown(text)
    reason = recognised(text, STORED_TEXTS) if text else text  # kept as English text
    return shown(reason) if is_message(reason) else _(text) if text else text


def _state_name(state: str) -> str:
    """A docking state as a person reads it (the journal's own word in --json)."""
    names: dict[str, str] = {
        J.OFFLOADING: _("offloading"),
        J.SAFE_TO_CLEAR: _("SAFE TO CLEAR"),
        J.CLEARED: _("recorder cleared"),
        J.INCOMPLETE: _("incomplete"),
        J.NO_FILES: _("NO FILES FOUND"),
    }
    return names.get(state, state)


def _with_bars(station: Any, path: Path) -> DockingResult:
    bars = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=err,
        transient=False,
    )
    with bars:
        task = bars.add_task(path.name, total=None, note="")

        def update(p: DockProgress) -> None:
            note = ngettext("{done}/{total} file", "{done}/{total} files", p.files_total).format(
                done=p.files_done, total=p.files_total
            )
            if p.waiting:
                note += f"  [yellow]{escape(stored_text(p.waiting))}[/yellow]"
            bars.update(task, total=p.bytes_total or None, completed=p.bytes_done, note=note)

        return station.run_docking(path, on_progress=update)  # type: ignore[no-any-return]


def _print_result(result: DockingResult, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "docking": result.uid,
                "state": result.state,
                "files": result.files,
                "stored": result.stored,
                "bytes": result.bytes,
                "problems": [{"path": p, "state": s, "reason": r} for p, s, r in result.problems],
                "identity_flags": list(result.identity_flags),
                "safe_to_clear": J.is_safe_to_clear(result.state),
                "message": J.NO_FILES_MESSAGE if result.state == J.NO_FILES else None,
            }
        )
        return
    for flag in result.identity_flags:
        out.print(
            _("[yellow]flag[/yellow] {flag}").format(flag=escape(stored_text(flag))), markup=True
        )
    for path, state, reason in result.problems:
        what = _("quarantined") if state == J.QUARANTINED else _("rejected")
        out.print(f"[red]{what}[/red] {escape(path)}: {escape(stored_text(reason))}")
    summary = _(
        "docking {uid}: {stored} of {files} files stored and verified ({mb:.1f} MB)"
    ).format(uid=result.uid, stored=result.stored, files=result.files, mb=result.bytes / 1e6)
    out.print(summary)
    if result.state == J.NO_FILES:
        out.print(
            _("[bold red]NOT SAFE TO CLEAR[/bold red]: {why}").format(why=_(J.NO_FILES_MESSAGE))
        )
    elif J.is_safe_to_clear(result.state):
        out.print(
            _(
                "[bold green]SAFE TO CLEAR[/bold green] (every file stored and verified; "
                "the recorder may be unplugged and cleared)"
            )
        )
    else:
        out.print(
            _("[bold red]NOT SAFE TO CLEAR[/bold red]: docking is {state}").format(
                state=_state_name(result.state)
            )
        )


# `station status` shows the dockings of the last day by default, at most this many.
RECENT = timedelta(hours=24)
RECENT_MAX = 20
# From this many columns the table has room for the slot, the bytes and the time left.
WIDE = 110


def recent_rows(
    rows: list[dict[str, Any]], *, show_all: bool, now: datetime | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The rows to show, newest first, and how many are left out.

    By default: the dockings of the last 24 hours (at most the newest 20), and every
    docking still under way however old (a person must never miss one to wait for)."""
    newest = sorted(rows, key=lambda r: r["started_at"], reverse=True)
    if show_all:
        return newest, 0
    since = (now or datetime.now(UTC)) - RECENT
    recent = [
        r
        for r in newest
        if r["state"] == J.OFFLOADING or datetime.fromisoformat(r["started_at"]) >= since
    ]
    shown = recent[:RECENT_MAX] + [r for r in recent[RECENT_MAX:] if r["state"] == J.OFFLOADING]
    return shown, len(rows) - len(shown)


def _size(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} KB"


def _duration(seconds: int) -> str:
    if seconds < 60:
        return _("{s} s").format(s=seconds)
    if seconds < 3600:
        return _("{m} min {s} s").format(m=seconds // 60, s=seconds % 60)
    return _("{h} h {m} min").format(h=seconds // 3600, m=seconds % 3600 // 60)


def _verdict(r: dict[str, Any]) -> str:
    """The big state: exactly the station's verdict, then what it is doing or why not."""
    if r["safe_to_clear"]:
        lines = ["[bold black on green] " + _("SAFE TO CLEAR") + " [/]"]
        if r["state"] == J.CLEARED:
            lines.append("[green]" + _("recorder cleared") + "[/green]")
    else:
        lines = ["[bold white on red] " + _("DO NOT UNPLUG") + " [/]"]
        if r["state"] == J.NO_FILES:
            # (The whole message is in --json; the table keeps its columns readable.)
            lines += ["[red]" + _("NO FILES FOUND") + "[/red]", _("mounted? do not clear")]
        elif r["state"] == J.OFFLOADING:
            lines.append("[yellow]" + _("offloading") + "[/yellow]")
        else:
            lines.append("[yellow]" + _("incomplete") + "[/yellow]")
    if r["problems"]:
        lines.append(
            "[red]"
            + ngettext("{n} file not taken", "{n} files not taken", r["problems"]).format(
                n=r["problems"]
            )
            + "[/red]"
        )
    if r["waiting"]:
        lines.append("[yellow]" + escape(stored_text(r["waiting"])) + "[/yellow]")
    for flag in r.get("identity_flags") or []:
        lines.append("[yellow]" + escape(stored_text(flag)) + "[/yellow]")
    return "\n".join(lines)


def _docked_cell(r: dict[str, Any], zone: tzinfo) -> str:
    uid: str = r["docking"]
    return show_clock(r["started_at"], zone) + "\n[dim]#" + uid[:8] + "[/dim]"


def _device_cell(r: dict[str, Any], with_officer: bool = False) -> str:
    text = escape(r["device"]) if r["device"] else "[red]" + _("unknown") + "[/red]"
    if with_officer:  # a screen too narrow for a column of its own
        text += "\n" + _("officer no. {officer}").format(officer=escape(r["officer"] or "—"))
    if (r["device_dockings"] or 0) > 1:
        text += "\n[cyan]" + _("docking {n}").format(n=r["device_docking"]) + "[/cyan]"
    return text


def _files_cell(r: dict[str, Any], wide: bool) -> str:
    files = f"{r['files_done']}/{r['files_total']}"
    if wide:
        return files
    return files + "\n" + _size(r["bytes_total"])


def status_table(rows: list[dict[str, Any]], zone: tzinfo, width: int) -> Table:
    """Newest first. Serials, officer numbers and dock times are never cut or folded: the
    less important columns only exist on a wide screen, and on a very narrow one the
    officer number goes under the serial; the verdict is never cut (what it waits for
    may wrap under it)."""
    wide = width >= WIDE
    table = Table(
        title=_("留痕 station status"), box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False
    )
    serial_w = max((cells(r["device"] or "") for r in rows), default=1)
    officer_w = max((cells(r["officer"] or "") for r in rows), default=1)
    verdict_w = max(cells(_("SAFE TO CLEAR")), cells(_("DO NOT UNPLUG"))) + 2
    # Beside the serial and the 警号: the dock time, the files (e.g. "1234.5 MB") and the
    # verdict, and a gap of three between each two of the five columns.
    stacked = 11 + 9 + verdict_w + 4 * 3 + serial_w + officer_w > width
    table.add_column(_("Docked"), no_wrap=True)
    if wide:
        table.add_column(_("Slot"), overflow="fold")
    table.add_column(_("Device"), no_wrap=True, min_width=serial_w)
    if not stacked:
        table.add_column(_("Officer no."), no_wrap=True, min_width=officer_w)
    table.add_column(_("Files"), no_wrap=True, justify="right")
    if wide:
        table.add_column(_("Data"), justify="right")
        table.add_column(_("Time left"), justify="right")
    table.add_column(_("State"), min_width=verdict_w, overflow="fold")
    for r in rows:
        row = [_docked_cell(r, zone)]
        if wide:
            row.append(escape(r["slot"]))
        row.append(_device_cell(r, with_officer=stacked))
        if not stacked:
            row.append(escape(r["officer"] or "—"))
        row.append(_files_cell(r, wide))
        if wide:
            rate = f"{r['throughput_mb_s']:.1f} MB/s" if r["state"] == J.OFFLOADING else ""
            data = f"{_size(r['bytes_done'])} / {_size(r['bytes_total'])}"
            row += [data + ("\n" + rate if rate else ""), _eta(r)]
        row.append(_verdict(r))
        table.add_row(*row)
    return table


def _eta(r: dict[str, Any]) -> str:
    return _duration(r["eta_s"]) if r["eta_s"] is not None else ""


def status_view(journal: Journal, zone: tzinfo, *, show_all: bool, width: int) -> RenderableType:
    """The table and a line under it saying what is shown and what is left out."""
    rows = status_rows(journal, zone)
    if not rows:
        return Text(_("no dockings at this station yet"))
    shown, hidden = recent_rows(rows, show_all=show_all)
    now = datetime.now(UTC).astimezone(zone)
    if show_all:
        note = ngettext(
            "{n} docking, newest first", "all {n} dockings, newest first", len(shown)
        ).format(n=len(shown))
    else:
        note = ngettext(
            "{n} docking of the last 24 hours, newest first",
            "{n} dockings of the last 24 hours, newest first",
            len(shown),
        ).format(n=len(shown))
    note += "\n" + _("times in {zone} ({offset})").format(
        zone=getattr(zone, "key", str(zone)), offset=offset_text(now)
    )
    if hidden:
        note += "\n" + ngettext(
            "{n} older docking not shown (--all shows every docking)",
            "{n} older dockings not shown (--all shows every docking)",
            hidden,
        ).format(n=hidden)
    if not shown:
        return Text(note)
    return Group(status_table(shown, zone, width), Text(note))


def run_status(app: Any, as_json: bool, watch: bool, show_all: bool = False) -> None:
    journal = Journal(app.settings.journal_path)
    zone = zone_of(app.settings.station.time_zone)
    try:
        if as_json:
            print_json(status_rows(journal, zone))
            return

        def view() -> RenderableType:
            return status_view(journal, zone, show_all=show_all, width=out.width)

        if not watch:
            out.print(view())
            return
        from rich.live import Live

        with Live(view(), console=out, refresh_per_second=2) as live:
            while True:
                time.sleep(0.5)
                live.update(view())
    finally:
        journal.close()


def run_watch(app: Any, dock_root: Path | None) -> None:
    import logging
    import signal
    import threading

    from ingest.service import watch

    root = dock_root or (
        Path(app.settings.ingest.dock_root) if app.settings.ingest.dock_root else None
    )
    if root is None:
        from config import ConfigError

        raise ConfigError(_("no dock root"), hint=_("pass --dock-root or set ingest.dock_root"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    station = app.station()
    from liuhen.app import clean_store_at_start

    clean_store_at_start(app.store)
    out.print(_("watching {root} (Ctrl-C to stop)").format(root=root), markup=False)
    try:
        watch(station, root, stop)
    finally:
        station.close()


def run_demo(app: Any, keep: bool) -> None:
    """Make a synthetic recorder, dock it, and show what the catalog now holds."""
    from ingest.synthetic import make_recorder

    dock = Path(tempfile.mkdtemp(prefix="liuhen-dock-"))
    try:
        recorder = make_recorder(dock / "A123456")
        out.print(
            ngettext(
                "synthetic recorder with {n} file in {root}",
                "synthetic recorder with {n} files in {root}",
                len(recorder.files),
            ).format(n=len(recorder.files), root=recorder.root),
            markup=False,
        )
        # Synthetic files are brand new; they are finished, so do not wait for them to settle.
        station = app.station()
        station.ingest = station.ingest.__class__(**{**station.ingest.__dict__, "stable_s": 0.0})
        try:
            result = (
                _with_bars(station, recorder.root)
                if sys.stderr.isatty()
                else station.run_docking(recorder.root)
            )
        finally:
            station.close()
        _print_result(result, as_json=False)
    finally:
        if not keep:
            shutil.rmtree(dock, ignore_errors=True)


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def register(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.command("ingest")
    @click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
    @json_option
    @pass_ctx
    def ingest_cmd(ctx: Any, path: Path, quiet: bool, as_json: bool) -> None:
        """Offload one recorder folder; exit 0 when every file is stored and verified,
        3 when some were quarantined or rejected (listed), 66 when no files were found
        on the recorder (nothing is safe to clear)."""
        run_ingest(ctx.app(), path, as_json, quiet)

    @cli.group("station")
    def station_group() -> None:
        """The docking station."""

    @station_group.command("status")
    @click.option("--watch", is_flag=True, help="Keep the view live until Ctrl-C.")
    @click.option(
        "--all",
        "show_all",
        is_flag=True,
        help="Every docking, not only those of the last 24 hours (at most 20).",
    )
    @json_option
    @pass_ctx
    def status_cmd(ctx: Any, watch: bool, show_all: bool, as_json: bool) -> None:
        """Each docking, newest first, with its dock time: device, officer, files done,
        problems, and SAFE TO CLEAR or DO NOT UNPLUG. Shows the dockings of the last 24
        hours (at most 20) unless --all; --json lists every docking."""
        run_status(ctx.app(), as_json, watch, show_all)

    @station_group.command("watch")
    @click.option(
        "--dock-root",
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder where recorders appear [ingest.dock_root].",
    )
    @metrics_port_option
    @pass_ctx
    def watch_cmd(ctx: Any, dock_root: Path | None, metrics_port: int | None) -> None:
        """Watch the dock root and offload every recorder docked there (until Ctrl-C)."""
        apply_metrics_port(ctx.app(), metrics_port)
        run_watch(ctx.app(), dock_root)

    @cli.command("demo")
    @click.option("--keep", is_flag=True, help="Keep the synthetic recorder folder.")
    @pass_ctx
    def demo_cmd(ctx: Any, keep: bool) -> None:
        """Simulate a docking end to end with a synthetic recorder."""
        run_demo(ctx.app(), keep)
