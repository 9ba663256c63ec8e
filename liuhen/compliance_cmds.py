"""`liuhen coverage`, `liuhen compliance …`, `liuhen review …`, `liuhen report …`: thin
commands over the compliance package (docs/compliance.md)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from config.errors import CheckFailed
from liuhen.actor import actor_option
from liuhen.output import out, print_json

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
ROW_ID = click.IntRange(min=1, max=2**31 - 1)


def _secs(value: float) -> str:
    return f"{value:g} s"


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def print_coverage(cov: Any) -> None:
    from compliance.coverage import STATUS_ZH

    a = cov.action
    out.print(
        f"[bold]action {a.id}[/bold] {a.external_id} of {a.case_number} "
        f"{a.start.isoformat()} → {a.end.isoformat()} ({_secs(cov.together.window_s)})"
        + (f" at {a.place}" if a.place else ""),
        markup=True,
    )
    out.print(
        f"  {cov.status} ({STATUS_ZH[cov.status]}), rule {cov.rules.rule}: share "
        f"{_pct(cov.share)}, longest gap {_secs(cov.longest_gap_s)}"
    )
    for why in cov.reasons:
        out.print(f"  [yellow]uncertain[/yellow] {why}", markup=True)
    for o in cov.officers:
        lay = o.layout
        out.print(
            f"  officer {o.officer.number} {o.officer.name}: {_pct(lay.share)} "
            f"({len(o.recordings)} recording(s)), started late {_secs(lay.started_late_s)}, "
            f"stopped early {_secs(lay.stopped_early_s)}"
        )
        for g in lay.gaps(cov.rules.gap_threshold_s):
            out.print(f"    gap {g.start.isoformat()} → {g.end.isoformat()} ({_secs(g.seconds)})")
    if not cov.officers:
        out.print("  no officers recorded for this action")


def run_coverage(app: Any, action: str | None, case: str | None, as_json: bool) -> None:
    from compliance.coverage import Rules, action_coverage, case_coverage

    if (action is None) == (case is None):
        raise click.UsageError("give either ACTION or --case NUMBER")
    rules = Rules.of(app.settings.compliance)
    with app.ready_catalog().session() as s:
        found = (
            [action_coverage(s, action, rules)]
            if action is not None
            else case_coverage(s, case or "", rules)
        )
    if as_json:
        print_json(found[0].as_dict() if action is not None else [c.as_dict() for c in found])
        return
    for cov in found:
        print_coverage(cov)
    if not found:
        out.print(f"case {case} has no enforcement actions")


class _Period(click.ParamType):  # type: ignore[type-arg]
    name = "period"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[Any, Any]:
        from compliance.periods import period

        try:
            return period(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a year, month or day (2026, 2026-11, 2026-11-03)")


PERIOD = _Period()


def _stats_row(label: list[str], d: dict[str, Any]) -> list[str]:
    def share(key: str) -> str:
        return "-" if d[key] is None else _pct(d[key])

    def gap(key: str) -> str:
        return "-" if d[key] is None else f"{d[key]:g}"

    return [
        *label,
        str(d["actions"]),
        share("complete_share"),
        share("partial_share"),
        share("none_share"),
        share("uncertain_share"),
        gap("median_gap_s"),
        gap("worst_gap_s"),
    ]


STATS_HEAD = ["actions", "完整", "部分", "未记录", "存疑", "median gap s", "worst gap s"]


def print_summary(data: dict[str, Any]) -> None:
    out.print(f"全过程记录 {data['from']} → {data['to']} (rule {data['rules']['rule']})")
    if data["district"] is not None:
        out.print(_table(["district", *STATS_HEAD], [_stats_row(["全区"], data["district"])]))
    for u in data["units"]:
        out.print(f"\n[bold]{u['unit'] or '(no unit)'}[/bold]", markup=True)
        rows = [_stats_row([m["month"]], m) for m in u["months"]]
        out.print(_table(["month", *STATS_HEAD], [*rows, _stats_row(["total"], u)]))
        rows = [_stats_row([o["officer"], o["name"], o["month"]], o) for o in u["officers"]]
        if rows:
            out.print(_table(["officer", "name", "month", *STATS_HEAD], rows))
        house = data["housekeeping"]
        out.print(
            f"recordings attached to no case after {house['unattached_days']} days: "
            f"{u['unattached_recordings']['count']}"
        )
        undocked = ", ".join(d["serial"] for d in u["undocked_devices"]) or "none"
        out.print(f"devices not docked for {house['undocked_days']} days: {undocked}")
        off = ", ".join(
            f"{d['serial']} ({d['worst_offset_s']:+g} s)" for d in u["clock_off_devices"]
        )
        out.print(
            f"devices whose clock was off by over {house['clock_off_s']:g} s: {off or 'none'}"
        )


def run_summary(
    app: Any, unit: str | None, start: Any, end: Any, as_json: bool, now: Any = None
) -> None:
    from datetime import UTC, datetime

    from compliance.coverage import Rules
    from compliance.summary import Housekeeping, summarize

    settings = app.settings.compliance
    with app.ready_catalog().session() as s:
        data = summarize(
            s,
            Rules.of(settings),
            Housekeeping.of(settings),
            unit=unit,
            start=start,
            end=end,
            now=now or datetime.now(UTC),
        )
    if as_json:
        print_json(data)
    else:
        print_summary(data)


def print_sample(data: dict[str, Any]) -> None:
    out.print(
        f"review sample {data['sample']}: {data['unit']} {data['period']}, "
        f"{len(data['actions'])} of {data['population']} action(s), seed {data['seed']}, "
        f"population {data['population_hash'][:16]}…, drawn by {data['drawn_by']}"
    )
    rows = [
        [
            a["case"],
            a["external_id"],
            str(a["action"] or "gone"),
            a["verdict"] or "-",
            ("rectified: " + a["rectification"]) if a.get("rectification") else "",
        ]
        for a in data["actions"]
    ]
    out.print(_table(["case", "action", "row id", "verdict", "rectification"], rows))
    check = data["check"]
    if check["population_changed"]:
        out.print(f"[yellow]population changed since the draw:[/yellow] {check['changes_text']}")
    if not check["redraw_matches"] or not check["population_hash_matches"]:
        out.print("[red]✗[/red] the recorded sample does not redraw from its seed and population")


def run_sample(
    app: Any,
    unit: str,
    period_text: str,
    count: int,
    seed: str | None,
    redraw: bool,
    actor: str,
    as_json: bool,
) -> None:
    from compliance.review import sample_report, take_sample

    with app.ready_catalog().transaction() as s:
        sample, new = take_sample(
            s,
            app.signer,
            unit=unit,
            period_text=period_text,
            count=count,
            seed=seed,
            actor=actor,
            redraw=redraw,
        )
        data = sample_report(s, sample) | {"new": new}
    if as_json:
        print_json(data)
        return
    if not new:
        out.print(f"same seed, same population: the sample drawn before (#{data['sample']})")
    print_sample(data)


def run_show_sample(app: Any, sample_id: int, as_json: bool) -> None:
    from compliance.review import get_sample, sample_report

    with app.ready_catalog().session() as s:
        data = sample_report(s, get_sample(s, sample_id))
    if as_json:
        print_json(data)
    else:
        print_sample(data)
    if not data["check"]["redraw_matches"] or not data["check"]["population_hash_matches"]:
        raise CheckFailed("review sample: the sample no longer redraws from its population")


def run_survey(app: Any, unit: str | None, csv_path: str | None, as_json: bool) -> None:
    from datetime import UTC, datetime

    from compliance.survey import COLUMNS, survey, to_csv

    if csv_path == "-" and as_json:
        raise click.UsageError("--csv - and --json both write to standard output: choose one")
    with app.ready_catalog().session() as s:
        rows = survey(s, unit, datetime.now(UTC))
    if csv_path == "-":
        sys.stdout.buffer.write(to_csv(rows))
        sys.stdout.flush()
    elif csv_path is not None:
        Path(csv_path).write_bytes(to_csv(rows))
        out.print(f"{len(rows)} device(s) written to {csv_path}")
    if as_json:
        print_json(rows)
    elif csv_path is None:
        cells = [["" if r[k] is None else str(r[k]) for k, _ in COLUMNS] for r in rows]
        out.print(_table([head for _, head in COLUMNS], cells))


def run_report(
    app: Any, unit: str | None, year: int, out_dir: Path, actor: str, as_json: bool
) -> None:
    from datetime import UTC, datetime

    from catalog.custody import append_event
    from compliance.coverage import Rules
    from compliance.report import report_data, write_report
    from compliance.summary import Housekeeping

    settings = app.settings.compliance
    with app.ready_catalog().session() as s:
        data = report_data(
            s,
            Rules.of(settings),
            Housekeeping.of(settings),
            unit=unit,
            year=year,
            now=datetime.now(UTC),
        )
    stem = f"自查报告-{unit}-{year}" if unit else f"全区汇总-{year}"
    files, signature = write_report(data, out_dir, stem.replace("/", "_"), app.signer)
    # The custody log keeps the report's digests too: a report replaced whole, and signed
    # again with another key, still differs from what the station recorded.
    with app.ready_catalog().transaction() as s:
        append_event(
            s,
            app.signer,
            actor=actor,
            action="report-signed",
            object_type="report",
            object_id=signature["files"][files.pdf.name]["sha256"],
            details={"unit": unit, "year": year, "files": signature["files"]},
        )
    if as_json:
        print_json(signature | {"written": {k: str(v) for k, v in files.__dict__.items()}})
        return
    for path in (files.pdf, files.html, files.json, files.signature):
        out.print(f"wrote {path}")


def run_verify_report(path: Path, as_json: bool, trusted: dict[str, set[str]] | None) -> None:
    """`liuhen verify REPORT.sig.json`: the signature, whose key it is, every file it names."""
    from compliance.report import verify_report

    result = verify_report(path, trusted)
    if as_json:
        print_json(result)
    else:
        _print_report_check(result)
    if not result["ok"]:
        raise CheckFailed("report signature check failed")


def _print_report_check(result: dict[str, Any]) -> None:
    for name, ok in result["files"].items():
        out.print(f"{'[green]✓[/green]' if ok else '[red]✗[/red]'} {escape(name)}", markup=True)
    for p in result["problems"]:
        out.print(f"[red]✗[/red] {escape(p)}", markup=True)
    if not result["ok"]:
        return
    signed = f"report signed at {result['signed_at']} by key {result['key_id']}"
    if result["trust"] == "trusted":
        out.print(
            f"[green]✓[/green] {escape(signed)} of {escape(', '.join(result['trusted_by']))} "
            "(trusted: in the key ring) verifies",
            markup=True,
        )
        return
    # Like a bag without --trust: the signature file names its own key and station, so it
    # shows the files are as that key's holder signed them, not who that was.
    out.print(
        f"[yellow]![/yellow] {escape(signed)}, naming station {escape(str(result['station']))}: "
        "self-declared; the files match it, but anyone can sign with a key of their own "
        "(give --trust KEYRING to check whose key it is)",
        markup=True,
    )


def _table(columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    return table


def register(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.command("coverage")
    @click.argument("action", required=False)
    @click.option("--case", "case", help="Every action of this case (its number).")
    @json_option
    @pass_ctx
    def coverage_cmd(ctx: Any, action: str | None, case: str | None, as_json: bool) -> None:
        """Is ACTION (row id or external id) recorded from start to finish? Covered share,
        gaps, late start and early stop per officer (docs/compliance.md)."""
        run_coverage(ctx.app(), action, case, as_json)

    @cli.group("compliance")
    def compliance_group() -> None:
        """全过程记录 figures of a unit or the district: summary, equipment survey."""

    @compliance_group.command("summary")
    @click.option("--unit", help="The enforcement unit (default: every unit, the district).")
    @click.option("--from", "start", type=PERIOD, required=True, help="2026, 2026-11 or a day.")
    @click.option("--to", "end", type=PERIOD, help="Last year, month or day (default: --from).")
    @json_option
    @pass_ctx
    def summary_cmd(ctx: Any, unit: str | None, start: Any, end: Any, as_json: bool) -> None:
        """Per unit, month and officer: actions fully, partly, not recorded or uncertain;
        median and worst gap; unattached recordings, undocked devices, clocks found off."""
        run_summary(ctx.app(), unit, start[0], (end or start)[1], as_json)

    @compliance_group.command("survey")
    @click.option("--unit", help="The enforcement unit (default: every unit).")
    @click.option(
        "--csv",
        "csv_path",
        type=click.Path(dir_okay=False, allow_dash=True),
        help="Write CSV (UTF-8 with BOM, for Excel) to this file ('-': standard output).",
    )
    @json_option
    @pass_ctx
    def survey_cmd(ctx: Any, unit: str | None, csv_path: str | None, as_json: bool) -> None:
        """Equipment survey (装备摸底): each recorder's model, serial, holder, last docking,
        storage used and clock offset then, and recordings in the last 30 days."""
        run_survey(ctx.app(), unit, csv_path, as_json)

    _register_review(cli, pass_ctx, json_option)

    @cli.group("report")
    def report_group() -> None:
        """Reports a unit sends to the 区司法局 (自查报告), signed."""

    @report_group.command("self-inspection")
    @click.option("--unit", help="The enforcement unit (default: the district, every unit).")
    @click.option("--year", type=click.IntRange(2000, 2999), required=True)
    @click.option(
        "--out",
        "out_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("."),
        show_default=True,
        help="Folder to write the report to.",
    )
    @actor_option
    @json_option
    @pass_ctx
    def self_inspection_cmd(
        ctx: Any, unit: str | None, year: int, out_dir: Path, actor: str, as_json: bool
    ) -> None:
        """Write the self-inspection report (自查报告) of UNIT for YEAR as JSON, HTML and
        PDF, signed (check it with `liuhen verify <file>.sig.json`); without --unit, the
        district-wide summary across units."""
        run_report(ctx.app(), unit, year, out_dir, actor, as_json)


def _register_review(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.group("review")
    def review_group() -> None:
        """Sampling review (案卷评查): draw a sample, record verdicts, mark rectifications."""

    @review_group.command("sample")
    @click.option("--unit", required=True, help="The enforcement unit reviewed.")
    @click.option("--period", "period_text", required=True, help="2026, 2026-11 or a day.")
    @click.option("--count", type=click.IntRange(min=1, max=100_000), required=True)
    @click.option("--seed", help="Seed of the draw (default: a random one, recorded).")
    @click.option("--redraw", is_flag=True, help="Draw again on a population that changed since.")
    @actor_option
    @json_option
    @pass_ctx
    def sample_cmd(
        ctx: Any,
        unit: str,
        period_text: str,
        count: int,
        seed: str | None,
        redraw: bool,
        actor: str,
        as_json: bool,
    ) -> None:
        """Draw a reproducible random sample of the unit's actions in the period; the
        seed and the population are recorded in a signed custody event."""
        run_sample(ctx.app(), unit, period_text, count, seed, redraw, actor, as_json)

    @review_group.command("show")
    @click.argument("sample_id", type=ROW_ID)
    @json_option
    @pass_ctx
    def show_cmd(ctx: Any, sample_id: int, as_json: bool) -> None:
        """A sample's actions and verdicts; redraws it from its seed to check it."""
        run_show_sample(ctx.app(), sample_id, as_json)

    _register_verdicts(review_group, pass_ctx)


def _register_verdicts(review_group: click.Group, pass_ctx: Decorator) -> None:
    from compliance.review import CHECKLIST, VERDICTS

    @review_group.command("verdict")
    @click.argument("sample_id", type=ROW_ID)
    @click.argument("action")
    @click.option("--verdict", type=click.Choice(VERDICTS), required=True)
    @click.option(
        "--check",
        "checks",
        multiple=True,
        help=f"A checklist item and its result, e.g. 全程记录=是 (items: {', '.join(CHECKLIST)}).",
    )
    @click.option("--notes", default="", help="The reviewer's notes.")
    @actor_option
    @pass_ctx
    def verdict_cmd(
        ctx: Any,
        sample_id: int,
        action: str,
        verdict: str,
        checks: tuple[str, ...],
        notes: str,
        actor: str,
    ) -> None:
        """Record the verdict on ACTION (row id or external id) of sample SAMPLE_ID."""
        from compliance.review import parse_checklist, record_verdict

        checklist = parse_checklist(list(checks))
        app = ctx.app()
        with app.ready_catalog().transaction() as s:
            row = record_verdict(
                s,
                app.signer,
                sample_id=sample_id,
                action_ref=action,
                verdict=verdict,
                checklist=checklist,
                notes=notes,
                reviewer=actor,
            )
            vid = row.id
        out.print(f"verdict {vid}: action {action} of sample {sample_id} is {verdict}")

    @review_group.command("rectify")
    @click.argument("verdict_id", type=ROW_ID)
    @click.option("--what", required=True, help="What was done to rectify the finding.")
    @actor_option
    @pass_ctx
    def rectify_cmd(ctx: Any, verdict_id: int, what: str, actor: str) -> None:
        """Mark the finding of VERDICT_ID rectified, with what was done."""
        from compliance.review import rectify

        app = ctx.app()
        with app.ready_catalog().transaction() as s:
            rectify(s, app.signer, verdict_id=verdict_id, what=what, actor=actor)
        out.print(f"verdict {verdict_id} marked rectified")
