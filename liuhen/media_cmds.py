"""`liuhen worker` and `liuhen show`: thin commands over ingest/worker and catalog/media."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import click
from rich.table import Table

from catalog.attach import describe_choices, recordings_named
from catalog.errors import CatalogError
from catalog.media import find_recording, recording_report, requeue_failures
from config.errors import EXIT_NOINPUT, EXIT_USAGE, CheckFailed
from formats.filenames import NameParser
from liuhen.actor import actor_option
from liuhen.district_cmds import apply_metrics_port, metrics_port_option
from liuhen.output import out, print_json

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class RecordingNotFound(CatalogError):
    exit_code = EXIT_NOINPUT


class RetryUsage(CatalogError):
    exit_code = EXIT_USAGE


def run_worker(app: Any, drain: bool) -> None:
    from ingest.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = Worker(app.settings, catalog=app.ready_catalog(), store=app.store, signer=app.signer)
    from liuhen.app import clean_store_at_start

    clean_store_at_start(app.store)
    stats = worker.run(drain=drain, stop=stop)
    out.print(
        f"probed {stats.probed}, derived {stats.derived}, failed {stats.failed}"
        + (f", {stats.retrying} to be tried again" if stats.retrying else "")
    )
    for line in stats.errors:
        out.print(f"[red]failed[/red] {line}", markup=True)
    if stats.failed:
        raise CheckFailed(f"worker: {stats.failed} work item(s) failed")


def _one_recording(session: Any, ref: str) -> Any:
    found = find_recording(session, ref)
    if not found and (named := recordings_named(session, ref)):
        if len(named) > 1:
            raise RecordingNotFound(
                f"{len(named)} recordings are named {ref!r}: " + describe_choices(named),
                hint="give the recording's id (the number after #) instead of its name",
            )
        return named[0]
    if not found:
        raise RecordingNotFound(
            f"no recording matches {ref!r}",
            hint="give a recording id, at least 6 hex digits of its SHA-256 or SM3, "
            "or its file name",
        )
    if len(found) > 1:
        raise RecordingNotFound(
            f"{ref!r} matches {len(found)} recordings",
            hint="give more digits: " + ", ".join(r.sha256[:16] for r in found),
        )
    return found[0]


def run_retry(app: Any, ref: str | None, all_failed: bool, actor: str) -> None:
    """Put failed media work back in the queue, for one recording or all, with a signed
    ``work-requeued`` event per recording; say what was requeued."""
    if (ref is None) == (not all_failed):
        raise RetryUsage(
            "name one recording, or give --all-failed",
            hint="liuhen worker retry REC_ID, or liuhen worker retry --all-failed",
        )
    with app.ready_catalog().transaction() as s:
        rec = _one_recording(s, ref) if ref is not None else None
        items = requeue_failures(s, app.signer, actor, rec=rec)
        requeued = [(i.subject, i.kind, i.last_error or "") for i in items]
    if not requeued:
        what = f"recording {rec.id}" if rec is not None else "any recording"
        out.print(f"nothing to retry: no failed work for {what}")
        return
    subjects = sorted({subject for subject, _, _ in requeued}, key=lambda x: (len(x), x))
    out.print(
        f"requeued {len(requeued)} failed item(s) of {len(subjects)} recording(s); "
        "a running worker (or liuhen worker --drain) does them now"
    )
    for subject, kind, error in requeued:
        last = error.strip().splitlines()[-1:] or [""]
        out.print(f"  recording {subject}: {kind} (last error: {last[0]})", markup=False)


def run_show(app: Any, ref: str, as_json: bool) -> None:
    # "The file name says" must read names as ingest read them: this installation's
    # patterns, in its time zone.
    parser = NameParser(
        app.settings.ingest.filename_patterns,
        app.settings.ingest.important_marker,
        zone=app.settings.station.time_zone,
    )
    with app.ready_catalog().session() as s:
        report = recording_report(s, _one_recording(s, ref), parser)
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
        elif probe.get("unsupported"):
            out.print(f"  {'probe':14} [yellow]{probe.get('unsupported')}[/yellow]", markup=True)
        else:
            out.print(f"  {'probe':14} [red]ffprobe could not read it:[/red] {probe.get('error')}")
    for flag, value in (report["flags"] or {}).items():
        out.print(f"  [yellow]flag {flag}[/yellow]: {value}")
    _print_failures(report["failures"], report["id"])
    if report["time_evidence"]:
        te = report["time_evidence"]
        out.print(f"  {'time source':14} {te.get('source')}  raw={te.get('raw')}")
    if report["chapters"]:
        out.print(
            "  chapters: " + ", ".join(f"#{c['seq']} {c['name']}" for c in report["chapters"])
        )
    _print_sightings(out, report["seen_in"])
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


def _print_sightings(out: Any, sightings: list[dict[str, Any]]) -> None:
    """Each docking the bytes were seen in, with the identity it gave (issue 13 point 9)."""
    for v in sightings:
        gave = f"device {v['device'] or '-'}, officer {v['officer'] or '-'}"
        says = " ".join(
            f"{k}={v['name'][k]}" for k in ("serial", "officer", "start") if v["name"][k]
        )
        out.print(
            f"  {'seen in':14} {v['path']} ({v['state']}, docked {v['docked_at'][:19]}): {gave}"
            + (f"; the name says {says}" if says else ""),
            markup=False,
        )


def _print_failures(failures: list[dict[str, Any]], rec_id: int) -> None:
    """Each derivative or probe that failed, with its reason and what happens next."""
    for f in failures:
        last = (f["error"] or "").strip().splitlines()[-1:] or [""]
        if f["state"] == "FAILED":
            why = (
                "fails the same way each time"
                if f["failure"] == "deterministic"
                else (f"gave up after {f['attempts']} attempt(s)")
            )
            status = f"[red]failed[/red] ({why}; liuhen worker retry {rec_id})"
        elif f["retry_at"]:
            status = f"[yellow]failed, tried again at {f['retry_at'][:19]}[/yellow]"
        else:
            status = "[yellow]failed before, queued again[/yellow]"
        out.print(f"  {f['kind']:14} {status}: ", markup=True, end="")
        out.print(last[0], markup=False)


def register(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.group("worker", invoke_without_command=True)
    @click.option("--drain", is_flag=True, help="Do all pending work, then exit.")
    @metrics_port_option
    @pass_ctx
    @click.pass_context
    def worker_cmd(
        click_ctx: click.Context, ctx: Any, drain: bool, metrics_port: int | None
    ) -> None:
        """Probe stored originals and make derivatives (access copy, proxy, poster).

        With a subcommand (retry), manage the work instead of doing it."""
        if click_ctx.invoked_subcommand is not None:
            return
        apply_metrics_port(ctx.app(), metrics_port)
        run_worker(ctx.app(), drain)

    @worker_cmd.command("retry")
    @click.argument("recording", required=False)
    @click.option(
        "--all-failed", is_flag=True, help="Every recording's failed work (after an upgrade)."
    )
    @actor_option
    @pass_ctx
    def retry_cmd(ctx: Any, recording: str | None, all_failed: bool, actor: str) -> None:
        """Queue the failed work of RECORDING (id or digest prefix) again, or of every
        recording with --all-failed. Recorded in the custody log."""
        run_retry(ctx.app(), recording, all_failed, actor)

    @cli.command("show")
    @click.argument("recording")
    @json_option
    @pass_ctx
    def show_cmd(ctx: Any, recording: str, as_json: bool) -> None:
        """A recording (id or digest prefix): digests, probe, times, flags, derivatives,
        custody."""
        run_show(ctx.app(), recording, as_json)
