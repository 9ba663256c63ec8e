"""`liuhen doctor` and `liuhen district status`: thin commands over liuhen.doctor and
catalog.district_status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from rich.markup import escape
from rich.text import Text

from catalog.district_status import district_status
from config.errors import CheckFailed
from config.i18n import N_, _
from config.settings import zone_of
from config.timetext import offset_text, show_clock, show_time
from liuhen.doctor import FAIL, OK, ROLES, SKIP, WARN, check_title, run_doctor
from liuhen.output import out, print_json
from liuhen.screen_table import print_rows

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
        print_doctor(report)
    if not report.ok:
        raise CheckFailed(_("doctor: {n} problem(s)").format(n=report.count(FAIL)))


def print_doctor(report: Any) -> None:
    """Each check on a line of its own, its detail and what to do under it, indented:
    readable at 80 columns (long paths and URLs wrap between words, not inside them)."""
    for c in report.checks:
        out.print(f"{_MARKS[c.status]} [bold]{escape(check_title(c.name))}[/bold]", markup=True)
        _indented(Text(c.detail))
        if c.fix and c.status in (FAIL, WARN):
            _indented(Text(_("What to do: "), style="bold") + Text(c.fix))
    problems, warnings = report.count(FAIL), report.count(WARN)
    if report.ok:
        out.print(_("[green]no problems[/green] ({n} warning(s))").format(n=warnings), markup=True)
    else:
        out.print(
            _("[red]{problems} problem(s)[/red], {n} warning(s)").format(
                problems=problems, n=warnings
            ),
            markup=True,
        )


def _indented(text: Text, indent: int = 4) -> None:
    """``text`` indented; at a terminal, wrapped between words to its width with every
    line indented (a script reading the output gets one line per message)."""
    text.expand_tabs(4)
    width = max(20, out.width - indent) if out.is_terminal else 10**6
    for line in text.wrap(out, width):
        line.rstrip()
        out.print(Text(" " * indent) + line, soft_wrap=True)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1000
    return str(n)  # pragma: no cover


# Docking states and process states as people read them (catalog.states, catalog.heartbeat).
DOCKING_STATES = {
    "OFFLOADING": N_("offloading"),
    "SAFE_TO_CLEAR": N_("SAFE TO CLEAR"),
    "CLEARED": N_("cleared"),
    "INCOMPLETE": N_("incomplete: do not clear"),
    "NO_FILES": N_("no files found"),
}
PROCESS_STATES = {
    "alive": N_("alive"),
    "lost": N_("lost"),
    "died": N_("died"),
    "stopped": N_("stopped"),
}
PROCESS_ROLES = {"station": N_("station"), "worker": N_("worker")}
QUEUE_STATES = (
    ("PENDING", N_("pending")),
    ("CLAIMED", N_("claimed")),
    ("DONE", N_("done")),
    ("FAILED", N_("failed")),
)


def _docking_state(state: str) -> str:
    return _(DOCKING_STATES[state]) if state in DOCKING_STATES else state


def run_status(app: Any, as_json: bool, expiry_days: int) -> None:
    with app.ready_catalog().session() as session:
        status = district_status(
            session, expiry_within_days=expiry_days, retention=app.settings.retention
        )
    if as_json:
        print_json(status)
        return
    zone = zone_of(app.settings.station.time_zone)
    out.print(
        _("[bold]留痕 district[/bold], as of {when}").format(
            when=show_time(status["generated_at"], zone)
        ),
        markup=True,
        soft_wrap=False,
    )
    # The catalog on a line of its own: a long URL wraps alone.
    out.print(_("catalog: {url}").format(url=app.catalog.display_url), markup=False)
    _print_stations(status["stations"], zone)
    _print_processes(status["processes"])
    _print_queue(status["queue"])
    _print_stuck(status["stuck"], zone)
    fails = status["failures"]
    if fails["count"]:
        out.print()
        out.print(_("[red]{n} failed item(s)[/red]").format(n=fails["count"]), markup=True)
        print_failures_by_recording(fails)
    _print_quarantined(fails["quarantined_files"])
    _print_storage(status["storage"], status["expiry"])


def _print_stations(stations: list[dict[str, Any]], zone: Any) -> None:
    rows = []
    for s in stations:
        d = s["last_docking"]
        rows.append(
            [
                s["id"],
                s["name"] or "",
                _("yes") if s["alive"] else _("no"),
                show_clock(d["started_at"], zone) if d else "",
                _docking_state(d["state"]) if d else "",
                ", ".join(f"{_docking_state(k)} {v}" for k, v in sorted(s["dockings"].items())),
            ]
        )
    heads = [
        _("station"),
        _("station name"),
        _("online"),
        # The clock column leaves the offset out to stay narrow: the heading names it.
        _("last docking ({offset})").format(offset=_offset(zone)),
        _("state"),
        _("dockings"),
    ]
    print_rows(out, heads, rows, keys=(0,), title=_("stations"))


def _offset(zone: Any) -> str:
    from datetime import UTC, datetime

    return offset_text(datetime.now(UTC).astimezone(zone))


def _print_processes(processes: list[dict[str, Any]]) -> None:
    rows = []
    for p in processes:
        doing = ", ".join(
            f"{k}={v}"
            for k, v in sorted(p["details"].items())
            if k not in ("interval_s", "lease_owner")
        )
        status = p["status"]
        rows.append(
            [
                p["process_id"],
                p["station_id"],
                _(PROCESS_ROLES[p["role"]]) if p["role"] in PROCESS_ROLES else p["role"],
                _(PROCESS_STATES[status]) if status in PROCESS_STATES else status,
                _("{n:.0f} s ago").format(n=p["seen_s_ago"]),
                doing,
            ]
        )
    heads = [_("process"), _("station"), _("role"), _("status"), _("last seen"), _("doing")]
    print_rows(out, heads, rows, keys=(0, 1), title=_("processes"))


def _print_queue(queue: dict[str, dict[str, int]]) -> None:
    rows = [
        [kind, *(str(states.get(k, 0)) for k, _label in QUEUE_STATES)]
        for kind, states in sorted(queue.items())
    ]
    heads = [_("kind"), *(_(label) for _key, label in QUEUE_STATES)]
    print_rows(out, heads, rows, keys=(0,), title=_("work queue"))


def _stuck_reason(item: dict[str, Any], zone: Any) -> str:
    """Why an item is stuck, in the reader's language (catalog.district_status says it in
    English for the JSON)."""
    if item["reason"].startswith("lease expired") and item["lease_expires_at"]:
        return _("lease expired at {when}: its worker died or hung").format(
            when=show_time(item["lease_expires_at"], zone)
        )
    if item["reason"].startswith("claimed without"):
        return _("claimed without a lease")
    if item["reason"].startswith("no live heartbeat"):
        return _("no live heartbeat from its owner {owner}").format(owner=item["lease_owner"])
    return str(item["reason"])


def _print_stuck(stuck: dict[str, Any], zone: Any) -> None:
    if not stuck["count"]:
        return
    out.print()
    out.print(_("[red]{n} stuck item(s)[/red]").format(n=stuck["count"]), markup=True)
    for i in stuck["items"]:
        out.print(
            f"  #{i['id']} {i['kind']} {i['subject']}: {_stuck_reason(i, zone)}",
            markup=False,
            soft_wrap=False,
        )


def _print_quarantined(q: dict[str, Any]) -> None:
    from liuhen.ingest_cmds import stored_text  # a reason kept in English, read back

    if not q["count"]:
        return
    out.print()
    out.print(_("[yellow]{n} quarantined file(s)[/yellow]").format(n=q["count"]), markup=True)
    for f in q["items"][:10]:
        # The file on a line of its own: a long path is never broken by the reason.
        out.print(f"  {f['station_id']}:", markup=False, soft_wrap=False)
        out.print(f"    {f['path']}", markup=False, soft_wrap=False)
        out.print(f"      {stored_text(f['reason'] or '')}", markup=False, soft_wrap=False)


def _print_storage(st: dict[str, Any], ex: dict[str, Any]) -> None:
    out.print()
    out.print(
        _(
            "storage: {total} ({originals} originals in {n} recordings, {derivatives} derivatives)"
        ).format(
            total=_size(st["total_bytes"]),
            originals=_size(st["originals_bytes"]),
            n=sum(v["count"] for v in st["recordings"].values()),
            derivatives=_size(st["derivatives_bytes"]),
        ),
        soft_wrap=False,
    )
    if "due" not in ex:
        return
    text = (
        _("expiry: at least {n} recording(s) due now ({size}), {soon} more within {days} days")
        if ex.get("capped")
        else _("expiry: {n} recording(s) due now ({size}), {soon} more within {days} days")
    )
    out.print(
        text.format(
            n=ex["due"]["count"],
            size=_size(ex["due"]["bytes"]),
            soon=ex["due_soon"]["count"],
            days=ex["within_days"],
        ),
        soft_wrap=False,
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
        out.print(
            _("  recording {id}{name}:").format(id=r["recording"], name=name),
            markup=False,
            soft_wrap=False,
        )
        for i in r["items"]:
            shown.add(i["id"])
            last = (i["last_error"] or "").strip().splitlines()[-1:] or [""]
            why = f" ({_failure(i['failure'])})" if i["failure"] else ""
            out.print(
                _("    #{id} {kind}{why} after {n} attempt(s): {error}").format(
                    id=i["id"], kind=i["kind"], why=why, n=i["attempts"], error=last[0]
                ),
                markup=False,
                soft_wrap=False,
            )
    for i in fails["items"]:
        if i["id"] not in shown:
            last = (i["last_error"] or "").strip().splitlines()[-1:] or [""]
            out.print(
                _("  #{id} {kind} {subject} after {n} attempt(s): {error}").format(
                    id=i["id"],
                    kind=i["kind"],
                    subject=i["subject"],
                    n=i["attempts"],
                    error=last[0],
                ),
                markup=False,
                soft_wrap=False,
            )


def _failure(kind: str) -> str:
    """Deterministic (fails the same way again) or transient, in the reader's language."""
    return {"deterministic": _("deterministic"), "transient": _("transient")}.get(kind, kind)


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
