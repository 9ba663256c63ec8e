"""`liuhen verify`: a bag (directory or tar), a single file, or the whole object store.

One command, several mutually exclusive modes; each mode is one function below and is
chosen by :func:`_mode` from the arguments. Adding a mode (e.g. ``--district``) is one
option, one entry in ``MODES`` and one function.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from archive_export.bagverify import BagReport, BagUnusable, verify_bag
from catalog.signing import load_keyring
from config.errors import EXIT_USAGE, CheckFailed, LiuhenError, Reported
from liuhen.output import err, out, print_json

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
        with _progress(enabled=not req.as_json) as tick:
            # A ring given but empty still means "trust no key", never "no ring".
            report = verify_bag(
                req.target,
                trusted=_trusted(req) if req.trust_files else None,
                workers=req.workers,
                progress=tick,
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
    if req.as_json:
        print_json(report.as_dict())
    else:
        _print_bag(report)
    if not report.ok:
        raise CheckFailed(f"{req.target}: the bag does not verify")


@contextmanager
def _progress(*, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr while a bag is hashed, only for a person at a terminal."""
    if not enabled or not err.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("hashing"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("hashing", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield tick


def _print_bag(r: BagReport) -> None:
    kind = "留痕 bag" if r.liuhen else "bag"
    out.print(
        f"[bold]{kind}[/bold] {r.source} ({r.container}, BagIt {r.version or '?'})", markup=True
    )
    for f in r.errors:
        out.print(f"  [red]✗[/red] {_esc(f.describe())}")
    for f in r.warnings:
        out.print(f"  [yellow]![/yellow] {_esc(f.describe())}")
    if "too-many" in r.kinds():
        # Listing stopped at a bound: nothing else was checked, so nothing else to show.
        out.print("[red]✗[/red] INVALID: too many files; the bag was not checked further")
        return
    sig = r.signature
    line = f"signature: {sig.get('status', '?')}"
    if sig.get("key_id"):
        line += f" by {sig['key_id'][:24]}…, {sig.get('trust')}"
        if sig.get("trusted_by"):
            line += f" (station {', '.join(sig['trusted_by'])})"
    out.print(f"  {_esc(line)}")
    if r.custody:
        c = r.custody
        out.print(
            f"  custody excerpt: {c['events']} events from {len(c['stations'])} "
            f"station(s), {c['links_checked']} chain links checked, "
            f"{'verifies' if c['ok'] else 'PROBLEMS (above)'}"
        )
    mb = r.payload_bytes / 1e6
    summary = (
        f"{r.payload_files} payload files, {mb:,.1f} MB; "
        f"{', '.join(r.algorithms) or 'no'} checked in {r.seconds:.2f} s"
    )
    if r.ok:
        out.print(
            f"[green]✓[/green] valid: {summary}"
            + (f" ({len(r.warnings)} warning(s))" if r.warnings else "")
        )
    else:
        out.print(f"[red]✗[/red] INVALID: {len(r.errors)} problem(s); {summary}")


def _esc(text: str) -> str:
    return text.replace("[", "\\[")


# -- one file ---------------------------------------------------------------------------------


def run_file(ctx: Any, req: Request) -> None:
    from archive_export.lookup import lookup_file

    assert req.target is not None
    with ctx.app().ready_catalog().session() as s:
        report = lookup_file(s, req.target)
    if req.as_json:
        print_json(report.as_dict())
    else:
        out.print(f"[bold]{_esc(str(req.target))}[/bold]  {report.size} bytes")
        out.print(f"  sha256 {report.sha256}\n  sm3    {report.sm3}")
        if not report.known:
            out.print(
                "[red]✗[/red] not a recording, derivative or deleted original this catalog holds"
            )
        for m in report.matches:
            desc = ", ".join(f"{k}={v}" for k, v in m.items() if k not in {"type", "sm3"})
            out.print(f"  [green]✓[/green] {m['type']}: {_esc(desc)}")
        for p in report.problems:
            out.print(f"  [red]✗[/red] {_esc(p)}")
        if report.custody:
            out.print("  custody history:")
            for e in report.custody:
                mark = "✓" if e["hash_ok"] and e["signature_ok"] else "✗"
                out.print(
                    f"    {mark} {e['at']}  {e['station']} #{e['seq']}  {e['action']}  "
                    f"{_esc(e['actor'])}"
                )
    if not report.ok:
        raise CheckFailed(f"{req.target}: not a recording this catalog holds, or not intact")


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

    def show(r: Any) -> None:
        if not r.ok and not req.as_json:
            out.print(
                f"  [red]✗[/red] recording {r.target.recording_id} {r.target.kind} "
                f"{r.target.key}: {_esc(r.detail)}"
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
    )
    if req.as_json:
        print_json(report.as_dict())
    else:
        what = "resumed run" if report.resumed else "run"
        summary = (
            f"{what} {report.run_uid}: {report.checked} objects, "
            f"{report.bytes / 1e6:,.1f} MB checked, {report.failed} failed"
        )
        if report.ok:
            out.print(f"[green]✓[/green] store fixity: {summary}")
        else:
            out.print(
                f"[red]✗[/red] store fixity: {summary} (nothing was deleted; see the "
                "custody log's fixity-failed events)"
            )
    if not report.ok:
        raise CheckFailed(f"store fixity: {report.failed} object(s) failed")


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
            out.print(f"  [red]✗[/red] {_esc(v.describe())}")
        looked = ", ".join(f"{k} {n}" for k, n in report.counts.items())
        if report.ok:
            out.print(f"[green]✓[/green] district invariants hold ({looked})")
        else:
            out.print(f"[red]✗[/red] {len(report.violations)} violation(s) ({looked})")
    if not report.ok:
        raise CheckFailed(f"district: {len(report.violations)} violation(s)")


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
                "--district checks the whole catalog and store; give no BUNDLE, FILE or --store"
            )
        if req.audit_all or req.older_than is not None or req.resume:
            raise VerifyUsageError("with --district only --sample N applies")
        return "district"
    store_opts = req.audit_all or req.sample is not None or req.older_than is not None or req.resume
    if req.store:
        if req.target is not None:
            raise VerifyUsageError("--store checks the whole store; give no BUNDLE or FILE")
        if sum([req.audit_all, req.sample is not None, req.older_than is not None]) > 1:
            raise VerifyUsageError("choose one of --all, --sample N, --older-than DAYS")
        return "store"
    if store_opts:
        raise VerifyUsageError("--all, --sample, --older-than and --resume go with --store")
    if req.target is None:
        raise VerifyUsageError(
            "give a BUNDLE (bag folder or .tar), a FILE, or --store", hint="liuhen verify --help"
        )
    if req.as_file:
        return "file"
    if not req.target.exists():
        raise BagUnusable(f"{req.target}: no such file or directory")
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
