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
