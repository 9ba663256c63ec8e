"""`liuhen export` and `liuhen four-properties`: thin commands over archive_export."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from config.errors import EXIT_USAGE, CheckFailed, LiuhenError
from config.i18n import N_, _, ngettext
from liuhen.actor import actor_option
from liuhen.output import err, mark, out, print_json

if TYPE_CHECKING:  # (the command imports the export package only when it runs)
    from archive_export.export import ExportResult

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
DECODE_MODES = ("keyframes", "full", "none")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)


class BadSize(LiuhenError):
    exit_code = EXIT_USAGE


def parse_size(text: str) -> int:
    """``500M``, ``4G``, ``4GiB``, ``1000000`` → bytes (powers of 1024 for K/M/G/T)."""
    m = _SIZE.match(text)
    if not m:
        raise BadSize(
            _("--max-bag-size {text!r} is not a size").format(text=text),
            hint=_("e.g. 500M, 4G or 1000000"),
        )
    scale = 1024 ** " KMGT".index((m.group(2) or " ").upper())
    return int(float(m.group(1)) * scale)


def run_export(
    app: Any,
    *,
    out_path: str,
    cases: tuple[str, ...],
    date_from: str | None,
    date_to: str | None,
    with_access: bool,
    max_bag_size: str | None,
    fonds: str,
    retention: str,
    security_class: str,
    organization: str,
    decode: str,
    as_json: bool,
    actor: str,
) -> None:
    from archive_export.export import ExportRequest, export_bundle, reconcile_interrupted
    from archive_export.fourprops import Options
    from archive_export.msg import shown
    from liuhen.access_audit import audit_cli
    from liuhen.progress import job_progress

    s = app.settings
    lo, hi = _date_range(app, date_from, date_to)
    catalog = app.ready_catalog()
    # Exports of this host killed mid-way are settled first, and said on stderr whatever
    # becomes of this export (it may need the --out an interrupted one left behind).
    reconciled = reconcile_interrupted(catalog, app.signer, actor=actor)
    for note in reconciled:
        err.print(
            _("reconciled an interrupted export: {note}").format(note=shown(note)), markup=False
        )
    # The total is known only once the recordings are chosen: export_bundle sets it.
    with job_progress(_("Exporting"), total=None, unit="bytes", enabled=not as_json) as tick:
        req = ExportRequest(
            out=Path(out_path),
            cases=cases,
            date_from=lo,
            date_to=hi,
            with_access=with_access,
            max_bag_bytes=parse_size(max_bag_size) if max_bag_size else None,
            organization=organization or s.station.unit or s.station.name,
            fonds=fonds,
            retention=retention,
            security_class=security_class,
            actor=actor,
            options=Options(ffmpeg=s.ffmpeg.ffmpeg, ffprobe=s.ffmpeg.ffprobe, decode=decode),
            progress=tick,
            zone=_zone(app),
        )
        result = export_bundle(catalog, app.store, app.signer, req)
    # The access audit: one event per case exported, or one for the time range.
    counts = {"export": result.uid, "recordings": result.recordings, "bags": len(result.bags)}
    for number in cases:
        audit_cli("access.export", "case", number, actor=actor, **counts)
    if not cases:
        span = {"from": lo.isoformat() if lo else None, "to": hi.isoformat() if hi else None}
        audit_cli("access.export", "export", result.uid, actor=actor, **counts, **span)
    _print_export(result, reconciled, as_json)


class BadDate(LiuhenError):
    exit_code = EXIT_USAGE


def _date_range(
    app: Any, date_from: str | None, date_to: str | None
) -> tuple[datetime | None, datetime | None]:
    """--from/--to as the station's people type them, as a half-open UTC interval."""
    from config.settings import zone_of
    from config.timetext import TimeTextError, parse_range

    try:
        return parse_range(date_from, date_to, zone_of(app.settings.station.time_zone))
    except TimeTextError as exc:
        raise BadDate(
            str(exc),
            hint=_("--to is exclusive: --from 2026-12-01 --to 2026-12-02 is all of 1 December"),
        ) from exc


def _print_export(result: ExportResult, reconciled: list[str], as_json: bool) -> None:
    """What became of the export: its bags, and each one's four-properties verdict."""
    from archive_export.fourprops import summary_lines

    if as_json:
        print_json(
            {
                "export": result.uid,
                "recordings": result.recordings,
                "reconciled": reconciled,
                "bytes": result.bytes,
                "bags": [
                    {
                        "name": b.name,
                        "path": str(b.path),
                        "files": b.files,
                        "bytes": b.bytes,
                        "recordings": b.recordings,
                        "four_properties_ok": b.four_properties["ok"],
                    }
                    for b in result.bags
                ],
            }
        )
        return
    out.print(
        _("export {uid}: {recordings} recordings, {size}, {bags} bag(s)").format(
            uid=result.uid,
            recordings=result.recordings,
            size=_size(result.bytes),
            bags=len(result.bags),
        ),
        markup=False,
    )
    for b in result.bags:
        verdict = _("pass") if b.four_properties["ok"] else _("FAIL")
        out.print(f"  {mark(b.four_properties['ok'])} {_esc(str(b.path))}")
        out.print(
            "     "
            + _("{files} files, {size}; four-properties check {verdict}").format(
                files=b.files, size=_size(b.bytes), verdict=verdict
            ),
            markup=False,
        )
        for line in summary_lines(b.four_properties, failures_only=True):
            err.print(f"   {line}", markup=False)
    if any(not b.four_properties["ok"] for b in result.bags):
        err.print(
            "   "
            + _(
                "the bags are complete and signed; the four-properties report in each "
                "(data/metadata/four-properties.html) lists every finding"
            ),
            markup=False,
        )


def _size(n: int) -> str:
    """Bytes as people read them, with the exact count for comparing with a receipt."""
    from archive_export.bagwriter import human_size

    return ngettext("{n} byte", "{n} bytes", n).format(n=n) + (
        f" ({human_size(n)})" if n >= 1024 else ""
    )


def _esc(text: str) -> str:
    return text.replace("[", "\\[")


def run_four_properties(
    app: Any | None, bundle: str, *, as_json: bool, html_out: str | None, decode: str
) -> None:
    from archive_export.bagview import open_checked
    from archive_export.fourprops import (
        Options,
        check_bag,
        report_html,
        report_json,
        summary_lines,
    )
    from config.settings import CHINA_STANDARD_TIME, zone_of

    lookup = None
    opts = Options(decode=decode)
    zone: Any = CHINA_STANDARD_TIME
    if app is not None:
        from archive_export.export import catalog_lookup

        lookup = catalog_lookup(app.ready_catalog())
        opts = Options(
            ffmpeg=app.settings.ffmpeg.ffmpeg, ffprobe=app.settings.ffmpeg.ffprobe, decode=decode
        )
        zone = zone_of(app.settings.station.time_zone)
    bag = open_checked(Path(bundle))  # not a bag: exit 2 before any check, as verify
    report = check_bag(bag, catalog=lookup, options=opts)
    if html_out:
        target = Path(html_out)
        target.parent.mkdir(parents=True, exist_ok=True)  # --html into a new folder
        target.write_bytes(report_html(report, zone))
    if as_json:
        sys.stdout.write(report_json(report).decode("utf-8"))
    else:
        out.print(
            mark(report["ok"])
            + " "
            + _esc(_("four-properties check of {bag}").format(bag=report["location"]))
        )
        for line in summary_lines(report):
            out.print(line, markup=False)
    if not report["ok"]:
        raise CheckFailed(_("four-properties check of {bag} failed").format(bag=report["location"]))


def _zone(app: Any) -> Any:
    from config.settings import zone_of

    return zone_of(app.settings.station.time_zone)


def _local(app: Any, when: str | None) -> str:
    """A time as the station's people read it: in its zone, with the offset."""
    from config.timetext import show_time

    return show_time(when, _zone(app))


def _zoned(app: Any, entry: dict[str, Any]) -> dict[str, Any]:
    """An export's times for JSON: ISO 8601 with the station zone's offset."""
    from config.timetext import iso_time

    zone = _zone(app)
    entry = dict(entry)
    for key in ("started_at", "finished_at"):
        entry[key] = iso_time(entry.get(key), zone)
    if entry.get("event"):
        entry["event"] = dict(entry["event"], at=iso_time(entry["event"]["at"], zone))
    return entry


def _scope_text(app: Any, scope: dict[str, Any]) -> str:
    if scope.get("cases"):
        return _("cases {numbers}").format(numbers=", ".join(scope["cases"]))
    return _("from {start} to {end} (exclusive)").format(
        start=_local(app, scope.get("from")) if scope.get("from") else "…",
        end=_local(app, scope.get("to")) if scope.get("to") else "…",
    )


_STATES = {"DONE": N_("done"), "FAILED": N_("failed"), "RUNNING": N_("running")}


def _state(state: str) -> str:
    return _(_STATES[state]) if state in _STATES else state


def run_export_list(app: Any, include_failed: bool, as_json: bool) -> None:
    from archive_export.history import handover_history

    with app.ready_catalog().session() as s:
        history = handover_history(s, include_failed=include_failed)
        # Only the hand-overs the reader may export itself (as GET /api/v1/exports).
        history = [h for h in history if _may_see(s, h.get("scope") or {})]
    if as_json:
        print_json([_zoned(app, h) for h in history])
        return
    if not history:
        out.print(_("no hand-over yet ('liuhen export --out …' makes one)"), markup=False)
        return
    # One block per export, each value on a line of its own: bag paths and 64-hex
    # digests are wider than a docking station's screen, and are never cut.
    for h in history:
        out.print(
            f"{h['export']}  {_state(h['state'])}",
            markup=False,
        )
        lines = [
            _("  when    {at}").format(at=_local(app, h["finished_at"] or h["started_at"])),
            _("  by      {actor}").format(actor=h["actor"]),
            _("  scope   {scope}").format(scope=_scope_text(app, h["scope"])),
            _("  content {recordings} recordings, {files} files, {bytes} bytes").format(
                recordings=h["recordings"], files=h["files"], bytes=h["bytes"]
            ),
        ]
        for b in h["bags"]:
            lines += [
                _("  bag     {name}").format(name=b["name"]),
                f"          {b['path']}",
                _("  signed digest (SHA-256 of tagmanifest-sha256.txt):"),
                f"          {b['signed_digest'] or '(' + _digest_from(b) + ')'}",
            ]
        for line in lines:
            out.print(line, markup=False)


_DIGEST_FROM = {
    "catalog": N_("catalog"),
    "bag on disk": N_("bag on disk"),
    "not recorded": N_("not recorded"),
}


def _digest_from(bag: dict[str, Any]) -> str:
    source = bag["signed_digest_from"]
    return _(_DIGEST_FROM[source]) if source in _DIGEST_FROM else source


def _may_see(session: Any, scope: dict[str, Any]) -> bool:
    from access.policy import may_see_export
    from liuhen.actor import current_principal

    return may_see_export(session, current_principal(click.get_current_context()), scope)


def _refuse_export(ref: str) -> None:
    from access.policy import Target, denial
    from access.roles import Permission
    from liuhen.actor import current_principal

    principal = current_principal(click.get_current_context())
    raise denial(principal, Permission.EXPORT, Target("export", ref))


def run_export_show(app: Any, ref: str, as_json: bool) -> None:
    from archive_export.history import handover_receipt

    with app.ready_catalog().session() as s:
        r = handover_receipt(s, ref)
        if not _may_see(s, r.get("scope") or {}):
            _refuse_export(ref)
    if as_json:
        print_json(_zoned(app, r))
        return
    for line in _receipt_lines(app, r):
        out.print(line, markup=False)


def _receipt_lines(app: Any, r: dict[str, Any]) -> list[str]:
    """The receipt, a label and its value per line; long values (paths, digests) on a
    line of their own so that nothing is cut at 80 columns."""
    verdicts = {True: _("pass"), False: _("FAIL"), None: "?"}
    lines = [
        _("hand-over receipt (移交回执)"),
        _("export        {uid} ({state})").format(uid=r["export"], state=_state(r["state"])),
        _("handed over   {at}").format(at=_local(app, r["finished_at"])),
        _("by            {actor}").format(actor=r["actor"]),
        _("started       {at}").format(at=_local(app, r["started_at"])),
        _("scope         {scope}").format(scope=_scope_text(app, r["scope"])),
        _("content       {recordings} recordings, {files} files, {bytes} bytes").format(
            recordings=r["recordings"], files=r["files"], bytes=r["bytes"]
        ),
        _("signing key   {key}").format(key=r["key_id"] or "—"),
    ]
    for b in r["bags"]:
        lines += [
            _("bag           {name}").format(name=b["name"]),
            _("  contents    {oxum} (bytes.files); four-properties check {verdict}").format(
                oxum=b["oxum"] or "?", verdict=verdicts[b["four_properties_ok"]]
            ),
            _("  at          {path}").format(path=b["path"]),
            _("  signed digest ({source}):").format(source=_digest_from(b)),
            f"    {b['signed_digest'] or '—'}",
        ]
    if r["event"]:
        e = r["event"]
        lines += [
            _("custody event {station} #{seq} at {at}").format(
                station=e["station"], seq=e["seq"], at=_local(app, e["at"])
            ),
            _("  hash:"),
            f"    {e['event_hash']}",
            _("  signature (key {key}):").format(key=e["key_id"]),
            f"    {e['signature']}",
        ]
    lines.append(_("recordings ({count}):").format(count=len(r["items"])))
    for i in r["items"]:
        lines += [
            f"  #{i['recording']} {i['name']}",
            f"      {i['path']}",
            f"      sha256 {i['sha256']}",
        ]
    return lines


def _register_history(group: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @group.command("list")
    @click.option("--all", "include_failed", is_flag=True, help="Also failed exports.")
    @json_option
    @pass_ctx
    def export_list(ctx: Any, include_failed: bool, as_json: bool) -> None:
        """The hand-overs made: who, when, which bags, each bag's signed digest."""
        run_export_list(ctx.app(), include_failed, as_json)

    @group.command("show")
    @click.argument("export_id")
    @json_option
    @pass_ctx
    def export_show(ctx: Any, export_id: str, as_json: bool) -> None:
        """Reprint the hand-over receipt of EXPORT_ID (its id, or 4+ leading characters)."""
        run_export_show(ctx.app(), export_id, as_json)


def register(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    """The `export` and `four-properties` commands."""
    _register_export(cli, pass_ctx, json_option)
    _register_four_properties(cli, pass_ctx, json_option)


def _register_export(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.group("export", invoke_without_command=True)
    @click.option("--case", "cases", multiple=True, help="Case number (repeatable).")
    @click.option(
        "--from",
        "date_from",
        help="Start of a date range, station time, included "
        "(2026-12-01, 2026/12/01, 2026年12月1日, or with a time: 2026-12-01 07:00).",
    )
    @click.option(
        "--to",
        "date_to",
        help="End of the date range, exclusive: the first moment not exported "
        "(--from 2026-12-01 --to 2026-12-02 is all of 1 December).",
    )
    @click.option(
        "--out",
        "out_path",
        type=click.Path(),
        help="Bag directory to create, or a .tar file (required to export).",
    )
    @click.option("--with-access", is_flag=True, help="Include access copies (data/access).")
    @click.option(
        "--max-bag-size", help="Split into numbered bags of at most this payload size (e.g. 4G)."
    )
    @click.option("--fonds", default="", help="Fonds number (全宗号) label.")
    @click.option("--retention", default="", help="保管期限 for recordings in no case.")
    @click.option("--security-class", default="", help="密级 for recordings in no case.")
    @click.option(
        "--organization", default="", help="Source-Organization (default: the station's unit)."
    )
    @click.option(
        "--decode",
        type=click.Choice(DECODE_MODES),
        default="keyframes",
        show_default=True,
        help="Four-properties decode check: key frames, every frame, or not run.",
    )
    @actor_option
    @json_option
    @pass_ctx
    @click.pass_context
    def export_cmd(click_ctx: click.Context, /, ctx: Any, **options: Any) -> None:
        """Export cases or a date range as BagIt retention bundles, with the four-properties
        report; 'export list' and 'export show' for the hand-overs made."""
        if click_ctx.invoked_subcommand is not None:
            return
        if not options["out_path"]:
            raise click.UsageError("Missing option '--out'.", click_ctx)
        run_export(ctx.app(), **options)

    _register_history(export_cmd, pass_ctx, json_option)


def _register_four_properties(
    cli: click.Group, pass_ctx: Decorator, json_option: Decorator
) -> None:
    @cli.command("four-properties")
    @click.argument("bundle", type=click.Path(exists=True))
    @click.option(
        "--html",
        "html_out",
        type=click.Path(dir_okay=False),
        help="Also write the HTML report (Chinese and English) here.",
    )
    @click.option("--with-catalog", is_flag=True, help="Also compare digests with the catalog.")
    @click.option(
        "--decode",
        type=click.Choice(DECODE_MODES),
        default="keyframes",
        show_default=True,
        help="Decode check: key frames, every frame, or not run.",
    )
    @json_option
    @pass_ctx
    def four_properties_cmd(
        ctx: Any, bundle: str, html_out: str | None, with_catalog: bool, decode: str, as_json: bool
    ) -> None:
        """DA/T 70 four-properties check (四性检测) of a bundle, offline by default."""
        run_four_properties(
            ctx.app() if with_catalog else None,
            bundle,
            as_json=as_json,
            html_out=html_out,
            decode=decode,
        )
