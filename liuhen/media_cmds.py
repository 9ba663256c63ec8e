"""`liuhen worker` and `liuhen show`: thin commands over ingest/worker and catalog/media."""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Callable
from datetime import tzinfo
from typing import Any

import click
from rich.markup import escape
from rich.padding import Padding
from rich.text import Text

from catalog.attach import describe_choices, recordings_named
from catalog.errors import CatalogError
from catalog.media import find_recording, recording_report, requeue_failures
from config.errors import EXIT_NOINPUT, EXIT_USAGE, CheckFailed
from config.i18n import N_, _, ngettext
from config.message import is_message, shown
from config.settings import zone_of
from config.timetext import show_time
from formats.filenames import NameParser
from liuhen.actor import actor_option
from liuhen.district_cmds import apply_metrics_port, metrics_port_option
from liuhen.output import err, out, print_json
from liuhen.progress import Ticker, job_progress
from liuhen.screen_table import cells

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class RecordingNotFound(CatalogError):
    exit_code = EXIT_NOINPUT


class RetryUsage(CatalogError):
    exit_code = EXIT_USAGE


def run_worker(app: Any, drain: bool) -> None:
    from ingest.worker import Worker

    # Quiet by default; --verbose shows what each item does. A worker that runs as a
    # service (no --drain) keeps its log: it is where its operators look.
    verbose = bool(getattr(click.get_current_context().find_root().obj, "verbose", False))
    shown = drain and err.is_terminal
    if shown:  # log lines go above the progress bar, not through it
        from rich.logging import RichHandler

        handler = RichHandler(console=err, show_path=False, markup=False)
        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
    else:
        level = logging.INFO if verbose or not drain else logging.WARNING
        logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from liuhen.app import clean_store_at_start

    clean_store_at_start(app.store)
    catalog = app.ready_catalog()
    with job_progress(_("media work"), total=None, unit="items", enabled=shown) as bar:
        worker_class = _counting(Worker, bar, catalog) if bar.shown else Worker
        worker = worker_class(app.settings, catalog=catalog, store=app.store, signer=app.signer)
        stats = worker.run(drain=drain, stop=stop)
    said = _("probed {probed}, derived {derived}, failed {failed}").format(
        probed=stats.probed, derived=stats.derived, failed=stats.failed
    )
    if stats.retrying:
        said += _(", {n} to be tried again").format(n=stats.retrying)
    out.print(said)
    for line in stats.errors:
        out.print("[red]" + _("failed") + f"[/red] {escape(line)}", markup=True)
    if stats.failed:
        raise CheckFailed(
            ngettext(
                "worker: {n} work item failed", "worker: {n} work items failed", stats.failed
            ).format(n=stats.failed)
        )


def _counting(worker_class: Any, bar: Ticker, catalog: Any) -> Any:
    """The worker, ticking ``bar`` after each item. The total is what is done plus what
    is still queued, counted again after each item: a plan adds its steps as it goes."""
    from sqlalchemy import func, select

    from catalog import queue
    from catalog.media import MEDIA_WORK_KINDS
    from catalog.models import WorkItem

    def left() -> int:
        with catalog.session() as s:
            return int(
                s.scalar(
                    select(func.count(WorkItem.id)).where(
                        WorkItem.kind.in_(MEDIA_WORK_KINDS),
                        WorkItem.state.in_([queue.PENDING, queue.CLAIMED]),
                    )
                )
                or 0
            )

    done = [0]
    bar.set_total(left())

    class Counting(worker_class):  # type: ignore[misc]
        def _run_item(self, item_id: int, kind: str, rec_id: int, stats: Any) -> None:
            bar.describe(_("media work: recording {id}").format(id=rec_id))
            try:
                super()._run_item(item_id, kind, rec_id, stats)
            finally:
                done[0] += 1
                bar.update(done[0], done[0] + left())

    return Counting


def _one_recording(session: Any, ref: str) -> Any:
    found = find_recording(session, ref)
    if not found and (named := recordings_named(session, ref)):
        if len(named) > 1:
            raise RecordingNotFound(
                _("{n} recordings are named {ref}: {choices}").format(
                    n=len(named), ref=repr(ref), choices=describe_choices(named)
                ),
                hint=_("give the recording's id (the number after #) instead of its name"),
            )
        return named[0]
    if not found:
        raise RecordingNotFound(
            _("no recording matches {ref}").format(ref=repr(ref)),
            hint=_(
                "give a recording id, at least 6 hex digits of its SHA-256 or SM3, or its file name"
            ),
        )
    if len(found) > 1:
        raise RecordingNotFound(
            _("{ref} matches {n} recordings").format(ref=repr(ref), n=len(found)),
            hint=_("give more digits: {choices}").format(
                choices=", ".join(r.sha256[:16] for r in found)
            ),
        )
    return found[0]


def run_retry(app: Any, ref: str | None, all_failed: bool, actor: str) -> None:
    """Put failed media work back in the queue, for one recording or all, with a signed
    ``work-requeued`` event per recording; say what was requeued."""
    if (ref is None) == (not all_failed):
        raise RetryUsage(
            _("name one recording, or give --all-failed"),
            hint=_("liuhen worker retry REC_ID, or liuhen worker retry --all-failed"),
        )
    with app.ready_catalog().transaction() as s:
        rec = _one_recording(s, ref) if ref is not None else None
        items = requeue_failures(s, app.signer, actor, rec=rec)
        requeued = [(i.subject, i.kind, i.last_error or "") for i in items]
    if not requeued:
        if rec is not None:
            out.print(_("nothing to retry: no failed work for recording {id}").format(id=rec.id))
        else:
            out.print(_("nothing to retry: no failed work for any recording"))
        return
    subjects = sorted({subject for subject, _k, _e in requeued}, key=lambda x: (len(x), x))
    out.print(
        _(
            "requeued {items} failed item(s) of {recordings} recording(s); "
            "a running worker (or liuhen worker --drain) does them now"
        ).format(items=len(requeued), recordings=len(subjects))
    )
    for subject, kind, error in requeued:
        last = error.strip().splitlines()[-1:] or [""]
        out.print(
            "  "
            + _("recording {id}: {kind} (last error: {error})").format(
                id=subject, kind=kind, error=last[0]
            ),
            markup=False,
        )


# The names people read for the identifiers the catalog stores (shown as they are when
# not listed: a newer flag or source still reads, in its own words).
_RECORDING_STATES = {
    "STORED": N_("stored"),
    "PROBED": N_("probed"),
    "DERIVED": N_("probed, copies made"),
    "EXPIRING": N_("being deleted (retention ended)"),
    "EXPIRED": N_("deleted (retention ended)"),
}
_FILE_STATES = {
    "STORED": N_("stored"),
    "DUPLICATE": N_("already held (same bytes)"),
    "CLEARED": N_("stored, cleared from the recorder"),
    "QUARANTINED": N_("quarantined"),
    "REJECTED": N_("rejected"),
}
# A flag's name as stored is what English shows (scripts and people search for it); the
# catalog gives other languages a name of their own for it.
_FLAGS = {
    "damaged": N_("flag name: damaged"),
    "unsupported": N_("flag name: unsupported"),
    "unreadable": N_("flag name: unreadable"),
    "time": N_("flag name: time"),
    "identity_conflict": N_("flag name: identity_conflict"),
    "officer_mismatch": N_("flag name: officer_mismatch"),
    "stale_rule_attachment": N_("flag name: stale_rule_attachment"),
    "unsafe_name": N_("flag name: unsafe_name"),
    "expiry": N_("flag name: expiry"),
}
# A custody action's stored name is what English shows (the log's own word); the catalog
# gives other languages a name for it.
_ACTIONS = {
    "offloaded": N_("custody action: offloaded"),
    "stored": N_("custody action: stored"),
    "verified": N_("custody action: verified"),
    "probed": N_("custody action: probed"),
    "derived": N_("custody action: derived"),
    "duplicate-linked": N_("custody action: duplicate-linked"),
    "identity-from-sighting": N_("custody action: identity-from-sighting"),
    "flagged-identity-conflict": N_("custody action: flagged-identity-conflict"),
    "flagged-damaged": N_("custody action: flagged-damaged"),
    "repaired": N_("custody action: repaired"),
    "marked-important": N_("custody action: marked-important"),
    "work-requeued": N_("custody action: work-requeued"),
    "attached": N_("custody action: attached"),
    "detached": N_("custody action: detached"),
    "officer-resolved": N_("custody action: officer-resolved"),
    "reviewed": N_("custody action: reviewed"),
    "legal-hold-placed": N_("custody action: legal-hold-placed"),
    "legal-hold-released": N_("custody action: legal-hold-released"),
    "expiry-decided": N_("custody action: expiry-decided"),
    "expiry-undone": N_("custody action: expiry-undone"),
    "expired-deleted": N_("custody action: expired-deleted"),
    "restored-after-expiry": N_("custody action: restored-after-expiry"),
    "exported": N_("custody action: exported"),
    "cleared-from-recorder": N_("custody action: cleared-from-recorder"),
    "fixity-failed": N_("custody action: fixity-failed"),
}
_KINDS = {
    "video": N_("video"),
    "audio": N_("audio"),
    "image": N_("photo"),
    "access": N_("access copy"),
    "proxy": N_("proxy"),
    "poster": N_("poster"),
}
_TIME_SOURCES = {
    "file-name": N_("the file name"),
    "embedded": N_("the time inside the file"),
    "file-mtime-minus-duration": N_("the file's modification time minus its duration"),
    "file-mtime": N_("the file's modification time"),
    "received": N_("the time the station received it"),
}
_RAW_TIMES = {
    "file_name": N_("file name says"),
    "embedded": N_("inside the file"),
    "file_mtime": N_("modified"),
    "received": N_("received"),
    "clock_offset_s": N_("clock offset"),
    "duration_s": N_("duration"),
}


_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _stored_name(table: dict[str, str], key: str) -> str:
    """A stored identifier as is in English; its name in the catalog in other languages."""
    if key not in table:
        return key
    name = _(table[key])
    return key if name == table[key] else name


def _named(table: dict[str, str], key: str | None) -> str:
    if key is None:
        return "—"
    return _(table[key]) if key in table else key


class _Fields:
    """``label  value`` lines whose values line up; a value too long for the line (a
    digest, a long file name) goes whole on a line of its own instead of being cut."""

    def __init__(self, labels: list[str], indent: int = 2) -> None:
        self.indent = indent
        self.width = max(cells(label) for label in labels) + 2

    def line(self, label: str, value: str, *, style: str = "") -> None:
        head = " " * self.indent + label + " " * (self.width - cells(label))
        if cells(head) + cells(value) <= out.width:
            out.print(Text.assemble(head, (value, style)))
        else:
            out.print(Text(" " * self.indent + label))
            _say(Text(value, style=style), self.indent + 4)


def _say(text: str | Text, indent: int) -> None:
    """A line that wraps at the width of the terminal under its own indent (at spaces;
    a name longer than the whole line is folded, never cut)."""
    line = Text(text) if isinstance(text, str) else text
    out.print(Padding(line, (0, 0, 0, indent), expand=False), soft_wrap=False)


def _size_text(size: int | None) -> str:
    if size is None:
        return "—"
    if size >= 1e9:
        short = f"{size / 1e9:.2f} GB"
    elif size >= 1e6:
        short = f"{size / 1e6:.1f} MB"
    else:
        short = f"{size / 1e3:.1f} KB"
    return _("{n} bytes ({short})").format(n=f"{size:,}", short=short)


def _seconds(value: float | None) -> str:
    return "—" if value is None else _("{s:.2f} s").format(s=value)


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
    zone = zone_of(app.settings.station.time_zone)
    # One column of labels for the fields of the recording, so that their values line up.
    labels = [_("file name"), "SHA-256", "SM3", _("size"), _("device"), _("officer no.")]
    labels += [_("capture start"), _("capture end"), _("media"), _("duration")]
    labels += [_("format"), _("probe"), _("time from")]
    fields = _Fields(labels)
    _print_identity(report, zone, fields)
    _print_probe(report, zone, fields)
    _print_failures(report["failures"], report["id"], zone)
    _print_chapters(report["chapters"], zone)
    _print_sightings(report["seen_in"], zone)
    _print_derivatives(report["derivatives"])
    _print_custody(report["custody"], zone)


def _print_identity(report: dict[str, Any], zone: tzinfo, f: _Fields) -> None:
    out.print(
        Text.assemble(
            (_("recording #{id}").format(id=report["id"]), "bold"),
            "  ",
            _named(_RECORDING_STATES, report["state"]),
        )
    )
    f.line(_("file name"), report["name"] or "—")
    f.line("SHA-256", report["sha256"])
    f.line("SM3", report["sm3"] or "—")
    f.line(_("size"), _size_text(report["size"]))
    f.line(_("device"), report["device"] or "—")
    f.line(_("officer no."), report["officer"] or "—")
    f.line(_("capture start"), show_time(report["capture_start"], zone))
    f.line(_("capture end"), show_time(report["capture_end"], zone))
    f.line(_("media"), _named(_KINDS, report["media_kind"]))
    f.line(_("duration"), _seconds(report["duration_s"]))


def _print_probe(report: dict[str, Any], zone: tzinfo, f: _Fields) -> None:
    probe = report["probe"]
    if probe and probe.get("ok"):
        parts = [str(probe.get("container") or "—")]
        if probe.get("video_codec"):
            parts.append(
                _("video {codec} {w}×{h}").format(
                    codec=probe["video_codec"], w=probe.get("width"), h=probe.get("height")
                )
            )
        if probe.get("audio_codec"):
            parts.append(_("audio {codec}").format(codec=probe["audio_codec"]))
        f.line(_("format"), _(", ").join(parts))
    elif probe and probe.get("unsupported"):
        f.line(_("probe"), str(probe["unsupported"]), style="yellow")
    elif probe:
        f.line(
            _("probe"),
            _("ffprobe could not read it: {error}").format(error=probe.get("error")),
            style="red",
        )
    te = report["time_evidence"]
    if te:
        f.line(_("time from"), _named(_TIME_SOURCES, te.get("source")))
        _print_raw_times(te.get("raw") or {}, zone)
    for flag, value in (report["flags"] or {}).items():
        _print_flag(flag, value, zone)


def _print_raw_times(raw: dict[str, Any], zone: tzinfo) -> None:
    """Every time the sources gave, each on its own line, in the station's zone."""
    shown = {k: v for k, v in raw.items() if v is not None}
    if not shown:
        return
    f = _Fields([_named(_RAW_TIMES, k) for k in shown], indent=4)
    for key, value in shown.items():
        text = _seconds(float(value)) if key.endswith("_s") else _time_or_text(value, zone)
        f.line(_named(_RAW_TIMES, key), text)


def _time_or_text(value: Any, zone: tzinfo) -> str:
    """An ISO time in the station's zone; any other value as it is."""
    if isinstance(value, str) and _ISO_TIME.match(value):
        try:
            return show_time(value, zone)
        except ValueError:
            return value
    return str(value)


def _print_flag(flag: str, value: Any, zone: tzinfo) -> None:
    """A flag and its reason as lines a person reads (a list: one line each; a mapping:
    ``name: value`` lines), never a Python structure."""
    head = _("flag {flag}").format(flag=_stored_name(_FLAGS, flag))
    if isinstance(value, str) or is_message(value):
        out.print(Text.assemble("  ", (head, "yellow"), ": ", shown(value, zone)))
        return
    if value is True or value is None:
        out.print(Text.assemble("  ", (head, "yellow")))
        return
    out.print(Text.assemble("  ", (head, "yellow"), ":"))
    items = value if isinstance(value, list) else [value]
    for item in items:
        if is_message(item):  # a kept message: in the reader's language
            _say(f"- {shown(item, zone)}", 4)
        elif isinstance(item, dict):
            for n, (k, v) in enumerate(item.items()):
                line = f"{k}: {_time_or_text(v, zone)}"
                if n == 0:
                    _say("- " + line, 4)
                else:
                    _say(line, 6)
        else:
            _say(f"- {_time_or_text(item, zone)}", 4)


def _print_chapters(chapters: list[dict[str, Any]], zone: tzinfo) -> None:
    if not chapters:
        return
    out.print("  " + _("chapters (one recording split by the recorder):"))
    for c in chapters:
        _say(f"#{c['seq']}  {c['name']}  {show_time(c['start'], zone)}", 4)


def _print_sightings(sightings: list[dict[str, Any]], zone: tzinfo) -> None:
    """Each docking the bytes were seen in, with the identity it gave (issue 13 point 9)."""
    if not sightings:
        return
    out.print("  " + _("seen in these dockings:"))
    for v in sightings:
        _say(v["path"], 4)
        docked = _("docked {at}, file {state}").format(
            at=show_time(v["docked_at"], zone), state=_named(_FILE_STATES, v["state"])
        )
        gave = _("device {device}, officer no. {officer}").format(
            device=v["device"] or "—", officer=v["officer"] or "—"
        )
        lines = [docked, _("the docking gave: {identity}").format(identity=gave)]
        name = v["name"]
        says = []
        if name["serial"]:
            says.append(_("device {device}").format(device=name["serial"]))
        if name["officer"]:
            says.append(_("officer no. {officer}").format(officer=name["officer"]))
        if name["start"]:
            says.append(_("start {at}").format(at=show_time(name["start"], zone)))
        if says:
            lines.append(_("the file name says: {what}").format(what=_(", ").join(says)))
        for line in lines:
            _say(line, 6)


def _print_failures(failures: list[dict[str, Any]], rec_id: int, zone: tzinfo) -> None:
    """Each derivative or probe that failed, with its reason and what happens next."""
    for f in failures:
        last = (f["error"] or "").strip().splitlines()[-1:] or [""]
        if f["state"] == "FAILED":
            why = (
                _("fails the same way each time")
                if f["failure"] == "deterministic"
                else ngettext(
                    "gave up after {n} attempt", "gave up after {n} attempts", f["attempts"]
                ).format(n=f["attempts"])
            )
            status = (
                "[red]"
                + _("failed")
                + "[/red] "
                + _("({why}; to try again: liuhen worker retry {id})").format(why=why, id=rec_id)
            )
        elif f["retry_at"]:
            again = _("failed, tried again at {at}").format(at=show_time(f["retry_at"], zone))
            status = f"[yellow]{again}[/yellow]"
        else:
            status = "[yellow]" + _("failed before, queued again") + "[/yellow]"
        kind = _named(_KINDS, f["kind"])
        out.print(f"  {escape(kind)}  {status}: ", markup=True, end="")
        out.print(last[0], markup=False)


def _print_derivatives(derivatives: list[dict[str, Any]]) -> None:
    """Each derivative with its digests whole (on a line of their own when needed)."""
    if not derivatives:
        return
    out.print("  " + _("derivatives (copies made from the original):"))
    for d in derivatives:
        what = [_named(_KINDS, d["kind"]), d["method"] or "—", _size_text(d["size"])]
        if d["duration_s"]:
            what.append(_seconds(d["duration_s"]))
        _say(" · ".join(what), 4)
        f = _Fields(["SHA-256", "SM3"], indent=6)
        f.line("SHA-256", d["sha256"])
        if d.get("sm3"):
            f.line("SM3", d["sm3"])


def _print_custody(events: list[dict[str, Any]], zone: tzinfo) -> None:
    out.print("  " + _("custody log (oldest first):"))
    for e in events:
        action = _stored_name(_ACTIONS, e["action"])
        line = f"{show_time(e['at'], zone)}  {action}  ({e['station']} #{e['seq']})"
        actor = _("by {actor}").format(actor=e["actor"]) if e.get("actor") else ""
        if actor and 4 + cells(line) + 2 + cells(actor) <= out.width:
            line, actor = f"{line}  {actor}", ""
        _say(line, 4)
        if actor:
            _say(actor, 6)


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
        """A recording (id, digest prefix or file name): digests, probe, times, flags,
        derivatives, custody."""
        from liuhen.access_audit import audit_cli

        run_show(ctx.app(), recording, as_json)
        audit_cli("access.view", "recording", recording)
