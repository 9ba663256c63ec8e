"""`liuhen verify`: a bag (directory or tar), a single file, or the whole object store.

One command, several mutually exclusive modes; each mode is one function below and is
chosen by :func:`_mode` from the arguments. Adding a mode (e.g. ``--district``) is one
option, one entry in ``MODES`` and one function.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from archive_export.bagverify import BagReport, BagUnusable, verify_bag
from archive_export.msg import shown
from catalog.signing import load_keyring
from config.errors import EXIT_USAGE, CheckFailed, LiuhenError, Reported
from config.i18n import N_, _
from liuhen.output import out, print_json
from liuhen.progress import job_progress

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class VerifyUsageError(LiuhenError):
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Request:
    """Everything `liuhen verify` was asked, for whichever mode runs."""

    target: Path | None
    as_file: bool
    store: bool
    audit_all: bool
    sample: int | None
    older_than: float | None
    resume: bool
    trust_files: tuple[str, ...]
    workers: int | None
    as_json: bool
    district: bool = False


def _trusted(req: Request) -> dict[str, set[str]]:
    ring: dict[str, set[str]] = {}
    for path in req.trust_files:
        for sid, ids in load_keyring(Path(path)).items():
            ring.setdefault(sid, set()).update(ids)
    return ring


# -- bag ---------------------------------------------------------------------------------------


def run_bag(ctx: Any, req: Request) -> None:
    assert req.target is not None
    try:
        with job_progress(
            _("Verifying {name}").format(name=req.target.name),
            total=None,
            unit="bytes",
            enabled=not req.as_json,
        ) as ticker:
            # A ring given but empty still means "trust no key", never "no ring".
            report = verify_bag(
                req.target,
                trusted=_trusted(req) if req.trust_files else None,
                workers=req.workers,
                progress=ticker.update if ticker.shown else None,
            )
    except BagUnusable as exc:
        if req.as_json:
            print_json(
                {
                    "ok": False,
                    "usable": False,
                    "source": str(req.target),
                    "error": exc.message,
                    "hint": exc.hint,
                }
            )
            raise Reported(exc.message, exit_code=exc.exit_code) from exc
        raise
    _conclude(
        req,
        report,
        lambda: _print_bag(report),
        _("{target}: the bag does not verify").format(target=req.target),
    )


def _conclude(req: Request, report: Any, show: Callable[[], None], failed: str) -> None:
    """A check's end: its report as JSON or for a person, and ``failed`` as the error
    (exit 1) when it found problems."""
    if req.as_json:
        print_json(report.as_dict())
    else:
        show()
    if not report.ok:
        raise CheckFailed(failed)


def _print_bag(r: BagReport) -> None:
    kind = _("留痕 bag") if r.liuhen else _("bag")
    # The bag's path alone on its line: never cut at 80 columns, whatever its length.
    out.print(f"[bold]{kind}[/bold] {_esc(str(r.source))}")
    out.print(
        "  "
        + _("{container}, BagIt {version}").format(
            container=_(_CONTAINERS[r.container]) if r.container in _CONTAINERS else r.container,
            version=r.version or "?",
        ),
        markup=False,
    )
    for f in r.errors:
        out.print(f"  [red]✗[/red] {_esc(f.describe())}")
    for f in r.warnings:
        out.print(f"  [yellow]![/yellow] {_esc(f.describe())}")
    if "too-many" in r.kinds():
        # Listing stopped at a bound: nothing else was checked, so nothing else to show.
        out.print("[red]✗[/red] " + _("INVALID: too many files; the bag was not checked further"))
        return
    out.print(f"  {_esc(_signature_line(r.signature))}")
    if r.custody:
        c = r.custody
        out.print(
            "  "
            + _esc(
                _(
                    "custody excerpt: {events} events from {stations} station(s), {links} "
                    "chain links checked, {verdict}"
                ).format(
                    events=c["events"],
                    stations=len(c["stations"]),
                    links=c["links_checked"],
                    verdict=_("verifies") if c["ok"] else _("PROBLEMS (above)"),
                )
            )
        )
    summary = _(
        "{files} payload files, {mb:,.1f} MB; {algorithms} checked in {seconds:.2f} s"
    ).format(
        files=r.payload_files,
        mb=r.payload_bytes / 1e6,
        algorithms=", ".join(r.algorithms) or _("no digest"),
        seconds=r.seconds,
    )
    if r.ok:
        warned = _(" ({count} warning(s))").format(count=len(r.warnings)) if r.warnings else ""
        out.print(
            "[green]✓[/green] " + _esc(_("valid: {summary}").format(summary=summary) + warned)
        )
    else:
        out.print(
            "[red]✗[/red] "
            + _esc(
                _("INVALID: {count} problem(s); {summary}").format(
                    count=len(r.errors), summary=summary
                )
            )
        )


_CONTAINERS = {
    "directory": N_("directory"),
    "tar": N_("tar"),
    "tar-stream": N_("compressed tar, read as a stream"),
}
_SIGNATURE_STATUS = {
    "valid": N_("valid"),
    "invalid": N_("invalid"),
    "not signed": N_("not signed"),
    "incomplete": N_("incomplete"),
}
_TRUST = {
    "trusted": N_("trusted"),
    "untrusted": N_("untrusted"),
    "self-declared": N_("self-declared"),
}


def _signature_line(sig: dict[str, Any]) -> str:
    status = str(sig.get("status", "?"))
    line = _("signature: {status}").format(
        status=_(_SIGNATURE_STATUS[status]) if status in _SIGNATURE_STATUS else status
    )
    if sig.get("key_id"):
        trust = str(sig.get("trust"))
        line += _(" by {key}…, {trust}").format(
            key=sig["key_id"][:24], trust=_(_TRUST[trust]) if trust in _TRUST else trust
        )
        if sig.get("trusted_by"):
            line += _(" (station {stations})").format(stations=", ".join(sig["trusted_by"]))
    return line


def _esc(text: str) -> str:
    return text.replace("[", "\\[")


# -- one file ---------------------------------------------------------------------------------


def run_file(ctx: Any, req: Request) -> None:
    from archive_export.lookup import lookup_file

    assert req.target is not None
    app = ctx.app()
    with app.ready_catalog().session() as s:
        report = lookup_file(s, req.target)
    target = req.target
    _conclude(
        req,
        report,
        lambda: _print_file(app, target, report),
        _("{target}: not a recording this catalog holds, or not intact").format(target=target),
    )


def _print_file(app: Any, target: Path, report: Any) -> None:
    from config.settings import zone_of
    from config.timetext import show_time

    zone = zone_of(app.settings.station.time_zone)
    out.print(f"[bold]{_esc(str(target))}[/bold]")
    out.print("  " + _("{size} bytes").format(size=report.size), markup=False)
    out.print(f"  sha256 {report.sha256}\n  sm3    {report.sm3}", markup=False)
    if not report.known:
        out.print(
            "[red]✗[/red] "
            + _("not a recording, derivative or deleted original this catalog holds")
        )
    for m in report.matches:
        out.print(f"  [green]✓[/green] {_esc(_(_MATCH.get(m['type'], m['type'])))}")
        # One field a line: object keys and file names are never cut at 80 columns.
        for key, value in m.items():
            if key in {"type", "sm3"} or value is None:
                continue
            text = show_time(value, zone) if key.endswith("_at") else str(value)
            label = _(_FIELDS[key]) if key in _FIELDS else key
            out.print(
                "      " + _("{label}: {value}").format(label=label, value=text), markup=False
            )
    for p in report.problems:
        out.print(f"  [red]✗[/red] {_esc(shown(p))}")
    if report.custody:
        out.print("  " + _("custody history:"))
        for e in report.custody:
            mark = "✓" if e["hash_ok"] and e["signature_ok"] else "✗"
            at = show_time(e["at"], zone) if e["at"] else "—"
            out.print(
                f"    {mark} {at}  {e['station']} #{e['seq']}  {e['action']}  {_esc(e['actor'])}"
            )


_MATCH = {
    "recording": N_("recording"),
    "derivative": N_("derivative"),
    "tombstone": N_("deleted original (tombstone)"),
}
_FIELDS = {
    "id": N_("catalog id"),
    "name": N_("file name"),
    "state": N_("recording state"),
    "size": N_("size (bytes)"),
    "object_key": N_("object key"),
    "captured_at": N_("captured at"),
    "verified_at": N_("last verified at"),
    "kind": N_("derivative kind"),
    "method": N_("derived with"),
    "recording_id": N_("recording"),
    "source_sha256": N_("original's SHA-256"),
    "deleted_at": N_("deleted at"),
    "reason": N_("reason for deletion"),
    "actor": N_("deleted by"),
}


# -- the store --------------------------------------------------------------------------------


def run_store(ctx: Any, req: Request) -> None:
    from archive_export.fixity import audit_store, make_scope
    from archive_export.parallel_hash import default_workers

    if req.sample is not None:
        scope = make_scope("sample", sample=req.sample)
    elif req.older_than is not None:
        scope = make_scope("older-than", older_than_days=req.older_than)
    else:
        scope = make_scope("all")
    app = ctx.app()
    with job_progress(
        _("Store fixity"), total=None, unit="bytes", enabled=not req.as_json
    ) as ticker:

        def show(r: Any) -> None:
            ticker.advance(r.nbytes)
            if not r.ok and not req.as_json:
                out.print(
                    "  [red]✗[/red] "
                    + _esc(
                        _("recording {id} {kind} {key}: {detail}").format(
                            id=r.target.recording_id,
                            kind=r.target.kind,
                            key=r.target.key,
                            detail=shown(r.detail),
                        )
                    )
                )

        report = audit_store(
            app.ready_catalog(),
            app.store,
            app.signer,
            scope=scope,
            actor=f"station:{app.settings.station.id}",
            resume=req.resume,
            workers=req.workers or default_workers(),
            on_result=show,
            on_total=ticker.set_total,
        )
    _conclude(
        req,
        report,
        lambda: _print_store(report),
        _("store fixity: {count} object(s) failed").format(count=report.failed),
    )


def _print_store(report: Any) -> None:
    summary = (
        _("resumed run {run}: {checked} objects, {mb:,.1f} MB checked, {failed} failed")
        if report.resumed
        else _("run {run}: {checked} objects, {mb:,.1f} MB checked, {failed} failed")
    ).format(
        run=report.run_uid, checked=report.checked, mb=report.bytes / 1e6, failed=report.failed
    )
    if report.ok:
        out.print("[green]✓[/green] " + _esc(_("store fixity: {summary}").format(summary=summary)))
    else:
        out.print(
            "[red]✗[/red] "
            + _esc(
                _(
                    "store fixity: {summary} (nothing was deleted; see the custody log's "
                    "fixity-failed events)"
                ).format(summary=summary)
            )
        )


# -- the district -----------------------------------------------------------------------------


def run_district(ctx: Any, req: Request) -> None:
    from archive_export.district_check import CheckOptions, check_district

    app = ctx.app()
    trusted = _trusted(req)
    if app.settings.key_file.exists():  # this installation's own key: an outside anchor
        trusted.setdefault(app.settings.station.id, set()).add(app.signer.key_id)
    # Signed chain heads in this host's station journal (custody: liuhen.anchoring).
    from ingest.journal import read_anchors

    journal_heads = tuple(read_anchors(app.settings.journal_path))
    report = check_district(
        app.ready_catalog(),
        app.store,
        CheckOptions(
            trusted=trusted,
            digest_sample_count=req.sample,
            anchors=journal_heads,
            ring=bool(req.trust_files),
        ),
    )
    if req.as_json:
        print_json(report.as_dict())
    else:
        for v in report.violations:
            out.print(f"  [red]✗[/red] {_esc(shown(v.describe()))}")
        looked = ", ".join(f"{k} {n}" for k, n in report.counts.items())
        if report.ok:
            out.print(
                "[green]✓[/green] "
                + _esc(_("district invariants hold ({counts})").format(counts=looked))
            )
        else:
            out.print(
                "[red]✗[/red] "
                + _esc(
                    _("{count} violation(s) ({counts})").format(
                        count=len(report.violations), counts=looked
                    )
                )
            )
    if not report.ok:
        raise CheckFailed(_("district: {count} violation(s)").format(count=len(report.violations)))


# -- mode selection ---------------------------------------------------------------------------


def run_report(ctx: Any, req: Request) -> None:
    from liuhen.compliance_cmds import run_verify_report

    assert req.target is not None
    run_verify_report(req.target, req.as_json, _trusted(req) if req.trust_files else None)


MODES: dict[str, Callable[[Any, Request], None]] = {
    "report": run_report,
    "bag": run_bag,
    "file": run_file,
    "store": run_store,
    "district": run_district,
}


def _looks_like_bag(path: Path) -> bool:
    if path.is_dir():
        return True
    try:
        return path.is_file() and tarfile.is_tarfile(path)
    except OSError:
        return False


def _mode(req: Request) -> str:
    if req.district:
        if req.target is not None or req.store:
            raise VerifyUsageError(
                _("--district checks the whole catalog and store; give no BUNDLE, FILE or --store")
            )
        if req.audit_all or req.older_than is not None or req.resume:
            raise VerifyUsageError(_("with --district only --sample N applies"))
        return "district"
    store_opts = req.audit_all or req.sample is not None or req.older_than is not None or req.resume
    if req.store:
        if req.target is not None:
            raise VerifyUsageError(_("--store checks the whole store; give no BUNDLE or FILE"))
        if sum([req.audit_all, req.sample is not None, req.older_than is not None]) > 1:
            raise VerifyUsageError(_("choose one of --all, --sample N, --older-than DAYS"))
        return "store"
    if store_opts:
        raise VerifyUsageError(_("--all, --sample, --older-than and --resume go with --store"))
    if req.target is None:
        raise VerifyUsageError(
            _("give a BUNDLE (bag folder or .tar), a FILE, or --store"),
            hint=_("see 'liuhen verify --help'"),
        )
    if req.as_file:
        return "file"
    if not req.target.exists():
        raise BagUnusable(_("{target}: no such file or directory").format(target=req.target))
    if req.target.name.endswith(".sig.json"):
        return "report"  # a signed report's signature file (compliance/report.py)
    return "bag" if _looks_like_bag(req.target) else "file"


# The options of `liuhen verify`, top to bottom as --help lists them: what to verify
# (TARGET, --file, --store, --district), how much of the store, and the key ring.
_VERIFY_OPTIONS: list[Decorator] = [
    click.argument("target", required=False, type=click.Path(path_type=Path)),
    click.option(
        "--file",
        "as_file",
        is_flag=True,
        help="Treat TARGET as a file to look up, even if it is a tar.",
    ),
    click.option("--store", is_flag=True, help="Fixity audit of the object store."),
    click.option(
        "--district",
        is_flag=True,
        help="Catalog and store against each other: "
        "every file stored once, dockings safe or visibly waiting, no stuck work, "
        "custody chains, no orphan or missing objects (--sample N: re-hash about "
        "N objects instead of all).",
    ),
    click.option(
        "--all", "audit_all", is_flag=True, help="With --store: every object (the default)."
    ),
    click.option(
        "--sample",
        type=click.IntRange(min=1),
        metavar="N",
        help="With --store: N recordings drawn at random.",
    ),
    click.option(
        "--older-than",
        type=click.FloatRange(min=0),
        metavar="DAYS",
        help="With --store: recordings not verified for DAYS days.",
    ),
    click.option(
        "--resume", is_flag=True, help="With --store: continue the last unfinished audit."
    ),
    click.option(
        "--trust",
        "trust_files",
        multiple=True,
        type=click.Path(dir_okay=False, exists=True),
        help="Key ring of trusted keys: '<station id> <key id>' per line (repeatable).",
    ),
    click.option(
        "--workers", type=click.IntRange(min=1), help="Hashing threads (default: every core)."
    ),
]


def _verify_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_VERIFY_OPTIONS):  # the last decorator applies first
        f = option(f)
    return f


def register(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.command("verify")
    @_verify_options
    @json_option
    @pass_ctx
    def verify_cmd(
        ctx: Any,
        target: Path | None,
        as_file: bool,
        store: bool,
        district: bool,
        audit_all: bool,
        sample: int | None,
        older_than: float | None,
        resume: bool,
        trust_files: tuple[str, ...],
        workers: int | None,
        as_json: bool,
    ) -> None:
        """Verify a BUNDLE (bag folder or .tar, offline), a FILE against the catalog, the
        object store (--store), or catalog and store together (--district).

        \b
        Exit status: 0 valid; 1 problems found (all listed); 2 unusable input (not a bag,
        unreadable tar, no bagit.txt) or wrong options.
        """
        req = Request(
            target,
            as_file,
            store,
            audit_all,
            sample,
            older_than,
            resume,
            trust_files,
            workers,
            as_json,
            district=district,
        )
        MODES[_mode(req)](ctx, req)
