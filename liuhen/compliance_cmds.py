"""`liuhen coverage`, `liuhen compliance …`, `liuhen review …`, `liuhen report …`: thin
commands over the compliance package (docs/compliance.md)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from config.errors import CheckFailed
from config.i18n import N_, _
from config.settings import CHINA_STANDARD_TIME, zone_of
from config.timetext import iso_time, offset_text, show_clock, show_day, show_time
from liuhen.actor import actor_option
from liuhen.output import out, print_json
from liuhen.progress import job_progress
from liuhen.screen_table import print_rows

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
ROW_ID = click.IntRange(min=1, max=2**31 - 1)


def say(*objects: Any, markup: bool = False) -> None:
    """Print for a person: at a terminal, wrapped between words at its width (a number,
    a time or an id is never split across lines); in a pipe, one line per message."""
    out.print(*objects, markup=markup, soft_wrap=not out.is_terminal)


def station_zone(app: Any) -> tzinfo:
    """The zone people at this station read and type times in (station.time_zone)."""
    return zone_of(app.settings.station.time_zone)


def _secs(value: float) -> str:
    return _("{n:g} s").format(n=value)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _rule(rule: str) -> str:
    return _("each officer") if rule == "each" else _("any officer")


def print_coverage(cov: Any, zone: tzinfo) -> None:
    from compliance.coverage import STATUS_TEXT

    a = cov.action
    head = _("[bold]action {id}[/bold] {external} of {case}").format(
        id=a.id, external=escape(a.external_id), case=escape(a.case_number)
    )
    say(head, markup=True)
    span = _("{start} → {end} ({seconds})").format(
        start=show_time(a.start, zone),
        end=show_time(a.end, zone),
        seconds=_secs(cov.together.window_s),
    )
    say("  " + span + (_(" at {place}").format(place=a.place) if a.place else ""))
    say(
        "  "
        + _("{status}, rule: {rule}; share {share}, longest gap {gap}").format(
            status=_(STATUS_TEXT[cov.status]),
            rule=_rule(cov.rules.rule),
            share=_pct(cov.share),
            gap=_secs(cov.longest_gap_s),
        )
    )
    for why in cov.reasons:
        say("  " + _("[yellow]uncertain[/yellow] {why}").format(why=escape(why)), markup=True)
    for o in cov.officers:
        _print_officer(o, cov.rules.gap_threshold_s, zone)
    if not cov.officers:
        say("  " + _("no officers recorded for this action"))


def _print_officer(o: Any, threshold: float, zone: tzinfo) -> None:
    lay = o.layout
    say(
        "  "
        + _(
            "officer {number} {name}: {share} ({n} recording(s)), started late {late}, "
            "stopped early {early}"
        ).format(
            number=o.officer.number,
            name=o.officer.name,
            share=_pct(lay.share),
            n=len(o.recordings),
            late=_secs(lay.started_late_s),
            early=_secs(lay.stopped_early_s),
        )
    )
    for g in lay.gaps(threshold):
        say(
            "    "
            + _("gap {start} → {end} ({seconds})").format(
                start=show_time(g.start, zone), end=show_time(g.end, zone), seconds=_secs(g.seconds)
            )
        )


def run_coverage(app: Any, action: str | None, case: str | None, as_json: bool) -> None:
    from compliance.coverage import Rules, action_coverage, case_coverage

    if (action is None) == (case is None):
        raise click.UsageError(_("give either ACTION or --case NUMBER"))
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
    zone = station_zone(app)
    for cov in found:
        print_coverage(cov, zone)
    if not found:
        say(_("case {number} has no enforcement actions").format(number=case))


class _Period(click.ParamType):  # type: ignore[type-arg]
    """A year, month or day as typed (2026, 2026-11, 2026/11/03, 2026年11月3日): checked
    here, read in the station's zone by the command (compliance.periods)."""

    name = "period"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from compliance.periods import canonical_period

        try:
            return canonical_period(str(value))
        except ValueError as exc:
            self.fail(str(exc))


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


# Column heads of the figures tables, translated when shown.
STATS_HEAD = (
    N_("actions"),
    N_("complete"),
    N_("partial"),
    N_("not recorded"),
    N_("uncertain"),
    N_("median gap (s)"),
    N_("worst gap (s)"),
)


def _heads(*heads: str) -> list[str]:
    return [_(h) for h in heads]


def print_summary(data: dict[str, Any], zone: tzinfo) -> None:
    from compliance.render import last_day

    say(
        _("Full-process record {first} to {last}, rule: {rule}").format(
            first=show_day(data["from"], zone),
            last=last_day(data["to"], zone),
            rule=_rule(data["rules"]["rule"]),
        )
    )
    if data["district"] is not None:
        head = _heads(N_("unit"), *STATS_HEAD)
        print_rows(out, head, [_stats_row([_("whole district")], data["district"])])
    for u in data["units"]:
        _print_unit(u, data["housekeeping"])


def _print_unit(u: dict[str, Any], house: dict[str, Any]) -> None:
    say(f"\n[bold]{escape(u['unit'] or _('(no unit)'))}[/bold]", markup=True)
    rows = [_stats_row([m["month"]], m) for m in u["months"]]
    print_rows(out, _heads(N_("month"), *STATS_HEAD), [*rows, _stats_row([_("total")], u)])
    # One month: the month column says nothing the table above does not (and 80 columns
    # are few for eleven).
    months = {o["month"] for o in u["officers"]}
    if len(months) == 1:
        rows = [_stats_row([o["officer"], o["name"]], o) for o in u["officers"]]
        heads = _heads(N_("officer number"), N_("officer name"), *STATS_HEAD)
    else:
        rows = [_stats_row([o["officer"], o["name"], o["month"]], o) for o in u["officers"]]
        heads = _heads(N_("officer number"), N_("officer name"), N_("month"), *STATS_HEAD)
    if rows:
        print_rows(out, heads, rows, keys=(0,))
    say(
        _("recordings attached to no case after {days} days: {n}").format(
            days=house["unattached_days"], n=u["unattached_recordings"]["count"]
        )
    )
    undocked = ", ".join(d["serial"] for d in u["undocked_devices"]) or _("none")
    say(
        _("devices not docked for {days} days: {serials}").format(
            days=house["undocked_days"], serials=undocked
        )
    )
    off = ", ".join(
        _("{serial} ({seconds})").format(
            serial=d["serial"], seconds=_("{n:+g} s").format(n=d["worst_offset_s"])
        )
        for d in u["clock_off_devices"]
    )
    say(
        _("devices whose clock was off by over {seconds}: {serials}").format(
            seconds=_secs(house["clock_off_s"]), serials=off or _("none")
        )
    )


def run_summary(
    app: Any, unit: str | None, first: str, last: str, as_json: bool, now: Any = None
) -> None:
    from compliance.coverage import Rules
    from compliance.periods import period
    from compliance.summary import Housekeeping, summarize

    zone = station_zone(app)
    start, end = period(first, zone)[0], period(last, zone)[1]
    if end <= start:
        raise click.BadParameter(
            _("--to {last} is before --from {first}").format(first=first, last=last),
            param_hint="'--to'",
        )
    settings = app.settings.compliance
    # A district's year is 100,000 actions and half a minute: a bar at a terminal.
    steps = job_progress(_("Judging enforcement actions"), total=None, enabled=not as_json)
    with steps as p, app.ready_catalog().session() as s:
        data = summarize(
            s,
            Rules.of(settings),
            Housekeeping.of(settings),
            unit=unit,
            start=start,
            end=end,
            now=now or datetime.now(UTC),
            zone=zone,
            progress=p.update,
        )
    if as_json:
        print_json(data)
    else:
        print_summary(data, zone)


def print_sample(data: dict[str, Any]) -> None:
    say(
        _(
            "review sample {sample}: {unit} {period}, {n} of {population} action(s), "
            "seed {seed}, population {digest}…, drawn by {who}"
        ).format(
            sample=data["sample"],
            unit=data["unit"],
            period=data["period"],
            n=len(data["actions"]),
            population=data["population"],
            seed=data["seed"],
            digest=data["population_hash"][:16],
            who=data["drawn_by"],
        ),
        markup=False,
    )
    rows = [
        [
            a["case"],
            a["external_id"],
            str(a["action"] or _("gone")),
            a["verdict"] or "-",
            _("rectified: {what}").format(what=a["rectification"])
            if a.get("rectification")
            else "",
        ]
        for a in data["actions"]
    ]
    heads = _heads(
        N_("case number"), N_("action"), N_("row id"), N_("verdict"), N_("rectification")
    )
    print_rows(out, heads, rows, keys=(0, 1, 2))
    check = data["check"]
    if check["population_changed"]:
        say(
            _("[yellow]population changed since the draw:[/yellow] {changes}").format(
                changes=escape(check["changes_text"])
            ),
            markup=True,
        )
    if not check["redraw_matches"] or not check["population_hash_matches"]:
        say(
            _("[red]✗[/red] the recorded sample does not redraw from its seed and population"),
            markup=True,
        )


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
        say(
            _("same seed, same population: the sample drawn before (#{sample})").format(
                sample=data["sample"]
            )
        )
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
        raise CheckFailed(_("review sample: the sample no longer redraws from its population"))


def run_survey(app: Any, unit: str | None, csv_path: str | None, as_json: bool) -> None:
    from compliance.survey import survey, to_csv

    if csv_path == "-" and as_json:
        raise click.UsageError(_("--csv - and --json both write to standard output: choose one"))
    zone = station_zone(app)
    with app.ready_catalog().session() as s:
        rows = survey(s, unit, datetime.now(UTC))
    if csv_path == "-":
        sys.stdout.buffer.write(to_csv(rows, zone))
        sys.stdout.flush()
    elif csv_path is not None:
        Path(csv_path).write_bytes(to_csv(rows, zone))
        say(_("{n} device(s) written to {path}").format(n=len(rows), path=csv_path), markup=False)
    if as_json:
        print_json([r | {"last_docked": iso_time(r["last_docked"], zone)} for r in rows])
    elif csv_path is None:
        print_survey(rows, zone)


SURVEY_HEAD = (
    N_("serial"),
    N_("model"),
    N_("holder"),
    N_("last docked"),
    N_("storage used"),
    N_("clock off s"),
    N_("recordings 30 d"),
)


def print_survey(rows: list[dict[str, Any]], zone: tzinfo) -> None:
    """One table per unit; serials and officer numbers are never cut (they are looked up)."""
    units: dict[str, list[list[str]]] = {}
    for r in rows:
        holder = " ".join(x for x in (r["officer"], r["officer_name"]) if x) or "-"
        units.setdefault(r["unit"] or "", []).append(
            [
                r["serial"],
                r["model"] or "",
                holder,
                show_clock(r["last_docked"], zone) if r["last_docked"] else _("never"),
                "-"
                if r["storage_used_bytes"] is None
                else f"{r['storage_used_bytes'] / 1e9:.1f} GB",
                "-" if r["clock_offset_s"] is None else f"{r['clock_offset_s']:+g}",
                str(r["recordings_30d"]),
            ]
        )
    if not units:
        say(_("no devices"))
    # The clock column leaves the offset out to stay narrow: the unit's line names it.
    offset = offset_text(datetime.now(UTC).astimezone(zone))
    for name, cells in units.items():
        say(
            f"[bold]{escape(name or _('(no unit)'))}[/bold] "
            + escape(_("(times {offset})").format(offset=offset)),
            markup=True,
        )
        print_rows(out, [_(h) for h in SURVEY_HEAD], cells, keys=(0, 2))


def run_report(
    app: Any, unit: str | None, year: int, out_dir: Path, actor: str, as_json: bool
) -> None:
    from compliance.coverage import Rules
    from compliance.report import report_data, write_report
    from compliance.summary import Housekeeping

    settings = app.settings.compliance
    steps = job_progress(_("Self-inspection report"), total=None, enabled=not as_json)
    with steps as p, app.ready_catalog().session() as s:
        p.describe(_("Judging enforcement actions"))
        data = report_data(
            s,
            Rules.of(settings),
            Housekeeping.of(settings),
            unit=unit,
            year=year,
            now=datetime.now(UTC),
            time_zone=app.settings.station.time_zone,
            progress=p.update,
        )
        p.describe(_("Writing the PDF, HTML and JSON"))
        stem = f"自查报告-{unit}-{year}" if unit else f"全区汇总-{year}"
        files, signature = write_report(data, out_dir, stem.replace("/", "_"), app.signer)
    _record_report(app, actor, unit, year, files, signature)
    if as_json:
        print_json(signature | {"written": {k: str(v) for k, v in files.__dict__.items()}})
        return
    for path in (files.pdf, files.html, files.json, files.signature):
        say(_("wrote {path}").format(path=path), markup=False)


def _record_report(
    app: Any, actor: str, unit: str | None, year: int, files: Any, signature: dict[str, Any]
) -> None:
    """The custody log keeps the report's digests too: a report replaced whole, and signed
    again with another key, still differs from what the station recorded."""
    from catalog.custody import append_event

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


def run_verify_report(
    path: Path, as_json: bool, trusted: dict[str, set[str]] | None, zone: tzinfo | None = None
) -> None:
    """`liuhen verify REPORT.sig.json`: the signature, whose key it is, every file it names."""
    from compliance.report import verify_report

    result = verify_report(path, trusted)
    if as_json:
        print_json(result)
    else:
        _print_report_check(result, zone or CHINA_STANDARD_TIME)
    if not result["ok"]:
        raise CheckFailed(_("report signature check failed"))


def _print_report_check(result: dict[str, Any], zone: tzinfo) -> None:
    for name, ok in result["files"].items():
        say(f"{'[green]✓[/green]' if ok else '[red]✗[/red]'} {escape(name)}", markup=True)
    for p in result["problems"]:
        say(f"[red]✗[/red] {escape(p)}", markup=True)
    if not result["ok"]:
        return
    signed = _("report signed at {when} by key {key}").format(
        when=show_time(result["signed_at"], zone), key=result["key_id"]
    )
    if result["trust"] == "trusted":
        say(
            _("[green]✓[/green] {signed} of {stations} (trusted: in the key ring) verifies").format(
                signed=escape(signed), stations=escape(", ".join(result["trusted_by"]))
            ),
            markup=True,
        )
        return
    # Like a bag without --trust: the signature file names its own key and station, so it
    # shows the files are as that key's holder signed them, not who that was.
    say(
        _(
            "[yellow]![/yellow] {signed}, naming station {station}: self-declared; the files "
            "match it, but anyone can sign with a key of their own (give --trust KEYRING to "
            "check whose key it is)"
        ).format(signed=escape(signed), station=escape(str(result["station"]))),
        markup=True,
    )


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
    @click.option(
        "--from",
        "start",
        type=PERIOD,
        required=True,
        help="First year, month or day (station time): 2026, 2026-11, 2026-11-03, "
        "2026/11/03 or 2026年11月3日.",
    )
    @click.option(
        "--to",
        "end",
        type=PERIOD,
        help="Last year, month or day, itself included (default: --from).",
    )
    @json_option
    @pass_ctx
    def summary_cmd(ctx: Any, unit: str | None, start: str, end: str | None, as_json: bool) -> None:
        """Per unit, month and officer: actions fully, partly, not recorded or uncertain;
        median and worst gap; unattached recordings, undocked devices, clocks found off."""
        run_summary(ctx.app(), unit, start, end or start, as_json)

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
    @click.option(
        "--period",
        "period_text",
        type=PERIOD,
        required=True,
        help="The year, month or day reviewed (station time): 2026, 2026-11, 2026-11-03, "
        "2026/11/03 or 2026年11月3日.",
    )
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
        say(
            _("verdict {id}: action {action} of sample {sample} is {verdict}").format(
                id=vid, action=action, sample=sample_id, verdict=verdict
            ),
            markup=False,
        )

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
            rectify(
                s,
                app.signer,
                verdict_id=verdict_id,
                what=what,
                actor=actor,
                zone=station_zone(app),
            )
        say(_("verdict {id} marked rectified").format(id=verdict_id))
