"""`liuhen worker` and `liuhen show`: thin commands over ingest/worker and catalog/media."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import click
from rich.table import Table

from catalog.errors import CatalogError
from catalog.media import find_recording, recording_report
from config.errors import EXIT_NOINPUT, CheckFailed
from liuhen.district_cmds import apply_metrics_port, metrics_port_option
from liuhen.output import out, print_json

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class RecordingNotFound(CatalogError):
    exit_code = EXIT_NOINPUT


def run_worker(app: Any, drain: bool) -> None:
    from ingest.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = Worker(app.settings, catalog=app.ready_catalog(), store=app.store, signer=app.signer)
    stats = worker.run(drain=drain, stop=stop)
    out.print(f"probed {stats.probed}, derived {stats.derived}, failed {stats.failed}")
    for line in stats.errors:
        out.print(f"[red]failed[/red] {line}", markup=True)
    if stats.failed:
        raise CheckFailed(f"worker: {stats.failed} work item(s) failed")


def run_show(app: Any, ref: str, as_json: bool) -> None:
    with app.ready_catalog().session() as s:
        found = find_recording(s, ref)
        if not found:
            raise RecordingNotFound(
                f"no recording matches {ref!r}",
                hint="give a recording id, or at least 6 hex digits of its SHA-256 or SM3",
            )
        if len(found) > 1:
            raise RecordingNotFound(
                f"{ref!r} matches {len(found)} recordings",
                hint="give more digits: " + ", ".join(r.sha256[:16] for r in found),
            )
        report = recording_report(s, found[0])
    if as_json:
        print_json(report)
        return
    out.print(f"[bold]recording {report['id']}[/bold]  {report['name']}  ({report['state']})")
    for key in (
        "sha256",
        "sm3",
        "size",
        "device",
        "officer",
        "capture_start",
        "capture_end",
        "media_kind",
        "duration_s",
    ):
        out.print(f"  {key:14} {report[key]}")
    probe = report["probe"]
    if probe:
        if probe.get("ok"):
            out.print(
                f"  {'format':14} {probe.get('container')} video={probe.get('video_codec')}"
                f" {probe.get('width')}x{probe.get('height')}"
                f" audio={probe.get('audio_codec')}"
            )
        else:
            out.print(f"  {'probe':14} [red]ffprobe could not read it:[/red] {probe.get('error')}")
    for flag, value in (report["flags"] or {}).items():
        out.print(f"  [yellow]flag {flag}[/yellow]: {value}")
    if report["time_evidence"]:
        te = report["time_evidence"]
        out.print(f"  {'time source':14} {te.get('source')}  raw={te.get('raw')}")
    if report["chapters"]:
        out.print(
            "  chapters: " + ", ".join(f"#{c['seq']} {c['name']}" for c in report["chapters"])
        )
    if report["derivatives"]:
        table = Table("kind", "method", "sha256", "bytes", "duration", title="derivatives")
        for d in report["derivatives"]:
            table.add_row(
                d["kind"],
                d["method"],
                d["sha256"][:16],
                str(d["size"]),
                f"{d['duration_s']:.2f}" if d["duration_s"] else "",
            )
        out.print(table)
    table = Table("at", "station", "#", "action", title="custody")
    for e in report["custody"]:
        table.add_row(e["at"], e["station"], str(e["seq"]), e["action"])
    out.print(table)


def register(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.command("worker")
    @click.option("--drain", is_flag=True, help="Do all pending work, then exit.")
    @metrics_port_option
    @pass_ctx
    def worker_cmd(ctx: Any, drain: bool, metrics_port: int | None) -> None:
        """Probe stored originals and make derivatives (access copy, proxy, poster)."""
        apply_metrics_port(ctx.app(), metrics_port)
        run_worker(ctx.app(), drain)

    @cli.command("show")
    @click.argument("recording")
    @json_option
    @pass_ctx
    def show_cmd(ctx: Any, recording: str, as_json: bool) -> None:
        """A recording (id or digest prefix): digests, probe, times, flags, derivatives,
        custody."""
        run_show(ctx.app(), recording, as_json)
