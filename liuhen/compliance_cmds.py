"""`liuhen coverage`, `liuhen compliance …`, `liuhen review …`, `liuhen report …`: thin
commands over the compliance package (docs/compliance.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from rich.table import Table

from liuhen.output import out, print_json

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


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
