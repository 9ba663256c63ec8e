"""`liuhen ingest`, `liuhen station status`, `liuhen demo`: thin commands over ingest/."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from config.errors import Reported
from ingest import journal as J
from ingest.journal import Journal
from ingest.station import DockingResult
from ingest.station import Progress as DockProgress
from ingest.status import status_rows
from liuhen.district_cmds import apply_metrics_port, metrics_port_option
from liuhen.output import err, out, print_json


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
        raise Reported(f"docking {result.uid}: {result.state}", exit_code=result.exit_code)


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
            bars.update(
                task,
                total=p.bytes_total or None,
                completed=p.bytes_done,
                note=f"{p.files_done}/{p.files_total} files"
                + (f"  [yellow]{p.waiting}[/yellow]" if p.waiting else ""),
            )

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
        out.print(f"[yellow]flag[/yellow] {flag}", markup=True)
    for path, state, reason in result.problems:
        out.print(f"[red]{state.lower()}[/red] {path}: {reason}")
    summary = (
        f"docking {result.uid}: {result.stored} of {result.files} files stored and "
        f"verified ({result.bytes / 1e6:.1f} MB)"
    )
    out.print(summary)
    if result.state == J.NO_FILES:
        out.print(f"[bold red]NOT SAFE TO CLEAR[/bold red]: {J.NO_FILES_MESSAGE}")
    elif J.is_safe_to_clear(result.state):
        out.print(f"[bold green]SAFE TO CLEAR[/bold green] ({result.state})")
    else:
        out.print(f"[bold red]NOT SAFE TO CLEAR[/bold red]: docking is {result.state}")


def status_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="留痕 station status", expand=True)
    for col in ("slot", "device", "officer", "files", "MB", "MB/s", "ETA", "problems"):
        table.add_column(col)
    table.add_column("state", no_wrap=True)  # SAFE TO CLEAR must read as one phrase
    for r in rows:
        if r["safe_to_clear"]:
            state = "[bold black on green] SAFE TO CLEAR [/]"
        elif r["state"] == J.NO_FILES:
            # (The whole message is in --json; the table keeps its columns readable.)
            state = "[bold white on red] NO FILES FOUND [/]\n[red]mounted? do not clear[/red]"
        else:
            state = f"[yellow]{r['state']}[/yellow]"
        if r["waiting"]:
            state += f"\n[yellow]{r['waiting']}[/yellow]"
        table.add_row(
            r["slot"],
            r["device"] or "[red]unknown[/red]",
            r["officer"] or "",
            f"{r['files_done']}/{r['files_total']}",
            f"{r['bytes_done'] / 1e6:.1f}/{r['bytes_total'] / 1e6:.1f}",
            f"{r['throughput_mb_s']:.1f}",
            f"{r['eta_s']} s" if r["eta_s"] is not None else "",
            str(r["problems"]) if r["problems"] else "",
            state,
        )
    return table


def run_status(app: Any, as_json: bool, watch: bool) -> None:
    journal = Journal(app.settings.journal_path)
    try:
        if as_json:
            print_json(status_rows(journal))
            return
        if not watch:
            out.print(status_table(status_rows(journal)))
            return
        from rich.live import Live

        with Live(status_table(status_rows(journal)), console=out, refresh_per_second=2) as live:
            while True:
                time.sleep(0.5)
                live.update(status_table(status_rows(journal)))
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

        raise ConfigError("no dock root", hint="pass --dock-root or set ingest.dock_root")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    station = app.station()
    from liuhen.app import clean_store_at_start

    clean_store_at_start(app.store)
    out.print(f"watching {root} (Ctrl-C to stop)")
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
        out.print(f"synthetic recorder with {len(recorder.files)} files in {recorder.root}")
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
    @json_option
    @pass_ctx
    def status_cmd(ctx: Any, watch: bool, as_json: bool) -> None:
        """Each docking: device, officer, files and bytes done, problems, SAFE TO CLEAR."""
        run_status(ctx.app(), as_json, watch)

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
