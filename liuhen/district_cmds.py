"""`liuhen doctor` and `liuhen district status`: thin commands over liuhen.doctor and
catalog.district_status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from rich.table import Table

from catalog.district_status import district_status
from config.errors import CheckFailed
from liuhen.doctor import FAIL, OK, ROLES, SKIP, WARN, run_doctor
from liuhen.output import out, print_json

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

_MARKS = {
    OK: "[green]✓[/green]",
    WARN: "[yellow]![/yellow]",
    FAIL: "[red]✗[/red]",
    SKIP: "[dim]-[/dim]",
}


def run_doctor_cmd(ctx: Any, role: str, as_json: bool) -> None:
    report = run_doctor(ctx.data_dir, ctx.config, role=role)
    if as_json:
        print_json(report.as_dict())
    else:
        for c in report.checks:
            out.print(f"{_MARKS[c.status]} {c.name}: {c.detail}", markup=True)
            if c.fix and c.status in (FAIL, WARN):
                out.print(f"    fix: {c.fix}", markup=False)
        problems, warnings = report.count(FAIL), report.count(WARN)
        if report.ok:
            out.print(f"[green]no problems[/green] ({warnings} warning(s))")
        else:
            out.print(f"[red]{problems} problem(s)[/red], {warnings} warning(s)")
    if not report.ok:
        raise CheckFailed(f"doctor: {report.count(FAIL)} problem(s)")


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1000  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def run_status(app: Any, as_json: bool, expiry_days: int) -> None:
    with app.ready_catalog().session() as session:
        status = district_status(
            session, expiry_within_days=expiry_days, retention=app.settings.retention
        )
    if as_json:
        print_json(status)
        return
    out.print(f"[bold]留痕 district[/bold] {app.catalog.display_url} at {status['generated_at']}")
    stations = Table(
        "station", "name", "alive", "last docking", "state", "dockings", title="stations"
    )
    for s in status["stations"]:
        d = s["last_docking"]
        stations.add_row(
            s["id"],
            s["name"],
            "[green]yes[/green]" if s["alive"] else "[dim]no[/dim]",
            d["started_at"][:19] if d else "",
            d["state"] if d else "",
            ", ".join(f"{k} {v}" for k, v in sorted(s["dockings"].items())),
        )
    out.print(stations)
    procs = Table("process", "role", "station", "status", "last seen", "doing", title="processes")
    for p in status["processes"]:
        colour = {"alive": "green", "lost": "red", "died": "yellow"}.get(p["status"], "dim")
        doing = ", ".join(
            f"{k}={v}"
            for k, v in sorted(p["details"].items())
            if k not in ("interval_s", "lease_owner")
        )
        procs.add_row(
            p["process_id"],
            p["role"],
            p["station_id"],
            f"[{colour}]{p['status']}[/{colour}]",
            f"{p['seen_s_ago']:.0f} s ago",
            doing,
        )
    out.print(procs)
    queue = Table("kind", "PENDING", "CLAIMED", "DONE", "FAILED", title="work queue")
    for kind, states in sorted(status["queue"].items()):
        queue.add_row(
            kind, *(str(states.get(k, 0)) for k in ("PENDING", "CLAIMED", "DONE", "FAILED"))
        )
    out.print(queue)
    stuck = status["stuck"]
    if stuck["count"]:
        out.print(f"[red]{stuck['count']} stuck item(s)[/red]")
        for i in stuck["items"]:
            out.print(f"  #{i['id']} {i['kind']} {i['subject']}: {i['reason']}", markup=False)
    fails = status["failures"]
    if fails["count"]:
        out.print(f"[red]{fails['count']} failed item(s)[/red]")
        print_failures_by_recording(fails)
    q = fails["quarantined_files"]
    if q["count"]:
        out.print(f"[yellow]{q['count']} quarantined file(s)[/yellow]")
        for f in q["items"][:10]:
            out.print(f"  {f['station_id']} {f['path']}: {f['reason']}", markup=False)
    st = status["storage"]
    out.print(
        f"storage: {_size(st['total_bytes'])} ({_size(st['originals_bytes'])} originals "
        f"in {sum(v['count'] for v in st['recordings'].values())} recordings, "
        f"{_size(st['derivatives_bytes'])} derivatives)"
    )
    ex = status["expiry"]
    if "due" in ex:
        floor = "at least " if ex.get("capped") else ""
        out.print(
            f"expiry: {floor}{ex['due']['count']} recording(s) due now "
            f"({_size(ex['due']['bytes'])}), {ex['due_soon']['count']} more within "
            f"{ex['within_days']} days"
        )


def register(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.command("doctor")
    @click.option(
        "--role",
        type=click.Choice(ROLES),
        default="all",
        show_default=True,
        help="What this host runs: a station needs no ffmpeg, a worker no dock.",
    )
    @json_option
    @pass_ctx
    def doctor_cmd(ctx: Any, role: str, as_json: bool) -> None:
        """Check this installation end to end (settings, key, catalog, store, ffmpeg,
        clock, space, journal) and say what to fix; exit 1 when anything is broken."""
        run_doctor_cmd(ctx, role, as_json)

    @cli.group("district")
    def district_group() -> None:
        """The district: every station and worker on one catalog."""

    @district_group.command("status")
    @click.option(
        "--expiry-days",
        type=click.IntRange(min=1),
        default=30,
        show_default=True,
        help="Also count recordings due for expiry within this many days.",
    )
    @json_option
    @pass_ctx
    def status_cmd(ctx: Any, expiry_days: int, as_json: bool) -> None:
        """Stations, workers, queue depths, stuck and failed items, storage used and
        recordings due for expiry."""
        run_status(ctx.app(), as_json, expiry_days)


def print_failures_by_recording(fails: dict[str, Any]) -> None:
    """Failed items under their recording (what `liuhen worker retry REC` would redo),
    then any failed item that belongs to no recording."""
    shown: set[int] = set()
    for r in fails["by_recording"]["recordings"]:
        name = f" {r['name']}" if r["name"] else ""
        out.print(f"  recording {r['recording']}{name}:", markup=False)
        for i in r["items"]:
            shown.add(i["id"])
            last = (i["last_error"] or "").strip().splitlines()[-1:] or [""]
            why = f" ({i['failure']})" if i["failure"] else ""
            out.print(
                f"    #{i['id']} {i['kind']}{why} after {i['attempts']} attempt(s): {last[0]}",
                markup=False,
            )
    for i in fails["items"]:
        if i["id"] not in shown:
            last = (i["last_error"] or "").strip().splitlines()[-1:] or [""]
            out.print(
                f"  #{i['id']} {i['kind']} {i['subject']} after {i['attempts']} "
                f"attempt(s): {last[0]}",
                markup=False,
            )


def metrics_port_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--metrics-port`` for the long-running services (overrides station.metrics_port)."""
    return click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        default=None,
        help="Serve Prometheus metrics on this port (127.0.0.1, or "
        "station.metrics_address) [station.metrics_port; 0: off].",
    )(fn)


def apply_metrics_port(app: Any, port: int | None) -> None:
    """Put a --metrics-port given on the command line into the app's settings."""
    if port is not None:
        from dataclasses import replace

        app.settings = replace(
            app.settings, station=replace(app.settings.station, metrics_port=port)
        )
