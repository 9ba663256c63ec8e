"""`liuhen device …`, `liuhen case …`, `liuhen retention …`: thin commands over
catalog/devices, cases, case_import, attach and retention."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from catalog import attach as A
from catalog import case_import as I
from catalog import cases as C
from catalog import devices as D
from catalog import retention as R
from config.errors import CheckFailed, PartlyRefused
from config.settings import zone_of
from liuhen.actor import actor_option
from liuhen.output import err, out, print_json

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

# Numbers as both databases hold them, from 1: a row id (an INTEGER column, 32 bits on
# PostgreSQL) and a count (a 64-bit LIMIT). Beyond, the database driver fails
# (OverflowError, DataError) instead of saying which option is wrong.
ROW_ID = click.IntRange(min=1, max=2**31 - 1)
COUNT = click.IntRange(min=1, max=2**63 - 1)


def _reason_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--reason", required=True, help="Why (recorded in the custody log).")(f)


class _Time(click.ParamType):  # type: ignore[type-arg]
    name = "time"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return I.parse_time(str(value))
        except ValueError:
            self.fail(
                f"{value!r} is not a time (ISO 8601; without a zone: China Standard Time)",
                param,
                ctx,
            )


TIME = _Time()


def _name_officer(app: Any) -> Callable[[str], str | None]:
    from ingest.identity import NameParser

    parser = NameParser(app.settings.ingest.filename_patterns, app.settings.ingest.important_marker)
    return lambda name: parser.parse(name).officer


def _print_errors(errors: list[str]) -> None:
    for line in errors:
        err.print(f"[red]refused[/red] {line}", markup=True, highlight=False)


# --- device ------------------------------------------------------------------------------


def run_device_assign(
    app: Any,
    serial: str,
    officer: str,
    name: str,
    unit: str,
    start: datetime,
    end: datetime | None,
    actor: str,
) -> None:
    catalog = app.ready_catalog()
    with catalog.transaction() as s:
        row, changed = D.assign_device(
            s,
            app.signer,
            serial=serial,
            officer_number=officer,
            officer_name=name,
            officer_unit=unit,
            start=start,
            end=end,
            actor=actor,
        )
        looked = (
            A.after_assignment(
                s,
                app.signer,
                row,
                name_officer=_name_officer(app),
                policy=app.settings.retention,
                actor=actor,
                store=app.store,
            )
            if changed
            else 0
        )
    out.print(
        f"{serial} → {officer} from {start.isoformat()}"
        + (f" to {row.end.isoformat()}" if row.end else "")
        + ("" if changed else " (already recorded)")
        + (f"; {looked} recording(s) re-resolved" if looked else "")
    )


def run_device_import(app: Any, path: Path, actor: str, as_json: bool) -> None:
    catalog = app.ready_catalog()
    with catalog.transaction() as s:
        report = I.import_devices(s, app.signer, path, actor=actor)
        for row in report.new_assignments:
            A.after_assignment(
                s,
                app.signer,
                row,
                name_officer=_name_officer(app),
                policy=app.settings.retention,
                actor=actor,
                store=app.store,
            )
    if as_json:
        print_json(report.as_dict())
    else:
        out.print(
            f"{report.rows} rows: {report.devices} devices registered or updated, "
            f"{report.assignments} assignments, {report.unchanged} unchanged, "
            f"{len(report.errors)} refused"
        )
        _print_errors(report.errors)
    if report.errors:
        raise PartlyRefused(f"{len(report.errors)} row(s) refused")


# --- case ---------------------------------------------------------------------------------


def run_case_import(app: Any, path: Path, actor: str, as_json: bool) -> None:
    catalog = app.ready_catalog()
    with catalog.transaction() as s:
        report = I.import_actions(s, app.signer, path, actor=actor)
        report.attached = A.attach_for_actions(
            s,
            app.signer,
            report.new_action_ids,
            policy=app.settings.retention,
            actor=actor,
            store=app.store,
        )
        R.sync_cases_store_retention(s, app.store, report.closed_case_ids, app.settings.retention)
    if as_json:
        print_json(report.as_dict())
    else:
        out.print(
            f"{report.rows} rows: {report.cases_created} cases created, "
            f"{report.cases_updated} updated; {report.actions_created} actions created, "
            f"{report.actions_updated} updated, {report.unchanged} unchanged; "
            f"{report.attached} recordings attached; {len(report.errors)} refused"
        )
        _print_errors(report.errors)
    if report.errors:
        raise PartlyRefused(f"{len(report.errors)} row(s) refused")


def local_time(app: Any, when: datetime | None) -> str:
    """A time as the station's people read it: in its time zone, with the offset."""
    if when is None:
        return ""
    zone = zone_of(app.settings.station.time_zone)
    return when.astimezone(zone).isoformat(sep=" ", timespec="seconds")


def _confirm_similar(exc: C.SimilarCase, yes: bool) -> bool:
    """Whether to create a case whose number only brackets or digit widths tell from an
    existing one: --yes, or a person's answer on a terminal; never silently."""
    if yes:
        return True
    if not sys.stdin.isatty():
        return False
    err.print(f"{exc.message}", markup=False)
    return click.confirm("create it as another case?", default=False, err=True)


def run_case_create(app: Any, *, number: str, actor: str, yes: bool, **fields: str) -> None:
    catalog = app.ready_catalog()

    def create(allow_similar: bool) -> str:
        with catalog.transaction() as s:
            case = C.create_case(
                s,
                app.signer,
                number=number,
                actor=actor,
                title=fields["title"],
                unit=fields["unit"],
                status=fields["status"],
                retention=fields["retention"],
                security_class=fields["security_class"],
                allow_similar=allow_similar,
            )
            return case.number

    try:
        created = create(False)
    except C.SimilarCase as exc:
        if not _confirm_similar(exc, yes):
            raise
        created = create(True)
    out.print(f"case {created} created", markup=False)


def _keep_line(app: Any, case: Any) -> str:
    until = R.case_keep_until(case)
    if case.status == "open":
        return f"retention {case.retention}: the clock stops while the case is open"
    if until is None:
        return f"retention {case.retention}: kept for ever"
    return f"retention {case.retention} from the closing: kept until {local_time(app, until)}"


def run_case_close(app: Any, number: str, reason: str, actor: str) -> None:
    with app.ready_catalog().transaction() as s:
        case = C.close_case(s, app.signer, number, reason=reason, actor=actor)
        R.sync_cases_store_retention(s, app.store, [case.id], app.settings.retention)
        line = f"case {case.number} closed at {local_time(app, case.closed_at)}; "
        line += _keep_line(app, case)
    out.print(line, markup=False)


def run_case_reopen(app: Any, number: str, reason: str, actor: str) -> None:
    with app.ready_catalog().transaction() as s:
        case = C.reopen_case(s, app.signer, number, reason=reason, actor=actor)
        line = f"case {case.number} reopened; " + _keep_line(app, case)
    out.print(line, markup=False)


def run_case_update(
    app: Any, number: str, reason: str, actor: str, values: dict[str, str | None]
) -> None:
    with app.ready_catalog().transaction() as s:
        case, changes = C.update_case(s, app.signer, number, reason=reason, actor=actor, **values)
        if "retention" in changes:
            R.sync_cases_store_retention(s, app.store, [case.id], app.settings.retention)
        keep = _keep_line(app, case)
    if not changes:
        out.print(f"case {case.number}: nothing to change", markup=False)
        return
    out.print(f"case {case.number} updated:", markup=False)
    for field, (old, new) in changes.items():
        out.print(f"  {field:15} {old!r} → {new!r}", markup=False)
    if "retention" in changes:
        out.print(f"  {keep}", markup=False)


def run_case_action(
    app: Any,
    number: str,
    action_id: str,
    *,
    officers: tuple[str, ...],
    start: datetime,
    end: datetime,
    place: str,
    actor: str,
) -> None:
    with app.ready_catalog().transaction() as s:
        action, _ = C.add_action(
            s,
            app.signer,
            case=C.get_case(s, number),
            external_id=action_id,
            officers=officers,
            start=start,
            end=end,
            place=place,
            actor=actor,
        )
        n = A.attach_for_actions(
            s,
            app.signer,
            [action.id],
            policy=app.settings.retention,
            actor=actor,
            store=app.store,
        )
    out.print(f"action {action_id} of {number} recorded; {n} recording(s) attached")


def run_case_list(app: Any, status: str | None, as_json: bool) -> None:
    with app.ready_catalog().session() as s:
        cases = C.list_cases(s, status)
    if as_json:
        print_json(cases)
        return
    table = Table("number", "title", "status", "retention", "密级", "recordings")
    for c in cases:
        table.add_row(
            c["number"],
            c["title"],
            c["status"],
            c["retention"],
            c["security_class"],
            str(c["recordings"]),
        )
    out.print(table)


def run_case_show(app: Any, number: str, as_json: bool) -> None:
    with app.ready_catalog().session() as s:
        report = C.case_report(s, number)
    if as_json:
        print_json(report)
        return
    out.print(f"{report['number']}  {report['title']}", markup=False)
    for key in ("unit", "status", "retention", "security_class", "source"):
        out.print(f"  {key:15} {report[key] or ''}", markup=False)
    if report["closed_at"]:
        closed = datetime.fromisoformat(report["closed_at"])
        out.print(f"  {'closed_at':15} {local_time(app, closed)}", markup=False)
    if report["actions"]:
        table = Table("action", "start", "end", "officers", "place", title="enforcement actions")
        for a in report["actions"]:
            table.add_row(a["id"], a["start"], a["end"], ", ".join(a["officers"]), a["place"])
        out.print(table)
    # One block per recording rather than a table: digests and reasons are too wide for
    # a terminal's columns, and these lines are what an auditor copies.
    out.print(f"recordings ({len(report['recordings'])}):")
    for r in report["recordings"]:
        out.print(
            f"  #{r['recording']} {r['name']}  officer {r['officer'] or '?'}  "
            f"{r['capture_start'] or '?'} → {r['capture_end'] or '?'}",
            markup=False,
        )
        out.print(f"      sha256 {r['sha256']}  sm3 {r['sm3']}", markup=False)
        out.print(f"      why: {r['why']}", markup=False)
    for r in report["detached"]:
        out.print(
            f"  detached #{r['recording']} {r['name']} by {r['detached_by']} at "
            f"{r['detached_at']}: {r['detach_reason']}",
            markup=False,
        )


def run_attach(app: Any, number: str, ref: str, reason: str, actor: str) -> None:
    with app.ready_catalog().transaction() as s:
        rec = A.get_recording(s, ref)
        changed = A.attach_manual(
            s,
            app.signer,
            case_number=number,
            rec=rec,
            reason=reason,
            actor=actor,
            policy=app.settings.retention,
            store=app.store,
        )
    out.print(
        f"recording {rec.id} ({rec.sha256[:16]}) "
        + ("attached to " if changed else "was already attached to ")
        + number
    )


def run_detach(app: Any, number: str, ref: str, reason: str, actor: str, force: bool) -> None:
    with app.ready_catalog().transaction() as s:
        rec = A.get_recording(s, ref)
        details = A.detach(
            s,
            app.signer,
            case_number=number,
            rec=rec,
            reason=reason,
            actor=actor,
            force_exported=force,
        )
    out.print(
        f"recording {rec.id} ({rec.sha256[:16]}) detached from {number}"
        + (
            f" (exported in {', '.join(details['exports'])}: override recorded)"
            if details["override"]
            else ""
        )
    )


# --- retention ------------------------------------------------------------------------------


def run_explain(app: Any, ref: str, as_json: bool) -> None:
    with app.ready_catalog().session() as s:
        decision = R.explain(s, A.get_recording(s, ref), app.settings.retention)
    if as_json:
        print_json(decision.as_dict())
        return
    until = f"until {decision.keep_until.isoformat()}" if decision.keep_until else "indefinitely"
    out.print(
        f"recording {decision.recording_id} {decision.name} ({decision.state}): "
        f"kept {until} (rule: {decision.rule})" + ("; expired" if decision.expired else ""),
        markup=False,
    )
    for line in decision.reasons:
        out.print(f"  - {line}", markup=False)
    for h in decision.released_holds:
        out.print(
            f"  - released: hold {h['id']}: placed by {h['by']} at {h['at']}: "
            f"{h['reason']}; released by {h['released_by']} at {h['released_at']}: "
            f"{h['release_reason']}",
            markup=False,
        )
    if decision.store_retain_until:
        out.print(f"  - object store retention until {decision.store_retain_until.isoformat()}")


def run_hold(app: Any, ref: str, reason: str, actor: str) -> None:
    with app.ready_catalog().transaction() as s:
        rec = A.get_recording(s, ref)
        row = R.hold(s, app.signer, app.store, rec, reason=reason, actor=actor)
        held = len(R.open_holds(s, rec.id))
    out.print(
        f"recording {rec.id} ({rec.sha256[:16]}): legal hold {row.id} placed "
        f"({held} in force; lift it with 'liuhen retention release {rec.id} "
        f"--hold {row.id} --reason ...')",
        markup=False,
    )


def run_release(app: Any, ref: str, hold_id: int | None, reason: str, actor: str) -> None:
    with app.ready_catalog().transaction() as s:
        rec = A.get_recording(s, ref)
        row = R.release(s, app.signer, app.store, rec, reason=reason, actor=actor, hold_id=hold_id)
        left = R.open_holds(s, rec.id)
    out.print(
        f"recording {rec.id} ({rec.sha256[:16]}): legal hold {row.id} released "
        f"(placed by {row.placed_by}: {row.reason}); "
        + (
            f"{len(left)} still in force: " + ", ".join(str(h.id) for h in left)
            if left
            else "no hold left"
        ),
        markup=False,
    )


def run_review(app: Any, ref: str, reason: str, actor: str) -> None:
    with app.ready_catalog().transaction() as s:
        rec = A.get_recording(s, ref)
        R.review(s, app.signer, rec, reason=reason, actor=actor)
    out.print(f"recording {rec.id} ({rec.sha256[:16]}) reviewed; the other rules apply again")


def run_sweep(app: Any, apply: bool, limit: int | None, actor: str, as_json: bool) -> None:
    report = R.sweep(
        app.ready_catalog(),
        app.signer,
        app.store,
        app.settings.retention,
        actor=actor,
        apply=apply,
        limit=limit,
        now=datetime.now(UTC),
    )
    if as_json:
        print_json(
            {
                "applied": report.applied,
                "due": [d.as_dict() for d in report.due],
                "deleted": report.deleted,
                "refused": report.refused,
            }
        )
    else:
        if report.due:
            table = Table("id", "name", "sha256", "kept until", title=f"due ({len(report.due)})")
            for d in report.due:
                table.add_row(
                    str(d.recording_id),
                    d.name,
                    d.sha256[:16],
                    d.keep_until.isoformat() if d.keep_until else "",
                )
            out.print(table)
        else:
            out.print("no recording is due for expiry")
        if apply:
            out.print(f"deleted {len(report.deleted)}, refused by the store {len(report.refused)}")
            for r in report.refused:
                err.print(f"refused {r['recording']} {r['name']}: {r['error']}", markup=False)
        else:
            out.print("dry run: nothing deleted (run with --apply to delete)")
    if report.refused:
        raise CheckFailed(f"{len(report.refused)} deletion(s) refused by the store")


def register(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    """The `device`, `case` and `retention` command groups."""
    _register_devices(cli, pass_ctx, json_option)
    case_group = _register_cases(cli, pass_ctx, json_option)
    _register_case_links(case_group, pass_ctx, json_option)
    _register_case_life(case_group, pass_ctx)
    _register_retention(cli, pass_ctx, json_option)


def _register_devices(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.group("device")
    def device_group() -> None:
        """Recorders and who carries them."""

    @device_group.command("add")
    @click.argument("serial")
    @click.option("--model", default="")
    @click.option("--unit", default="")
    @actor_option
    @pass_ctx
    def device_add(ctx: Any, serial: str, model: str, unit: str, actor: str) -> None:
        """Register a recorder by its serial."""
        app = ctx.app()
        with app.ready_catalog().transaction() as s:
            _, changed = D.add_device(
                s, app.signer, serial=serial, model=model, unit=unit, actor=actor
            )
        out.print(f"device {serial} " + ("registered" if changed else "already registered"))

    @device_group.command("assign")
    @click.argument("serial")
    @click.argument("officer")
    @click.option("--name", default="", help="Officer's name.")
    @click.option("--unit", default="", help="Officer's unit.")
    @click.option("--start", type=TIME, required=True, help="Hand-over time.")
    @click.option("--end", type=TIME, default=None, help="End (default: the next hand-over).")
    @actor_option
    @pass_ctx
    def device_assign(
        ctx: Any,
        serial: str,
        officer: str,
        name: str,
        unit: str,
        start: datetime,
        end: datetime | None,
        actor: str,
    ) -> None:
        """Give recorder SERIAL to officer OFFICER (警号) from --start."""
        run_device_assign(ctx.app(), serial, officer, name, unit, start, end, actor)

    @device_group.command("list")
    @json_option
    @pass_ctx
    def device_list(ctx: Any, as_json: bool) -> None:
        """Recorders and their assignment history."""
        with ctx.app().ready_catalog().session() as s:
            devices = D.list_devices(s)
        if as_json:
            print_json(devices)
            return
        table = Table("serial", "model", "unit", "registered", "assignments")
        for d in devices:
            table.add_row(
                d["serial"],
                d["model"],
                d["unit"],
                "yes" if d["registered"] else "no",
                "\n".join(
                    f"{a['officer']} {a['name']} {a['start']} → {a['end'] or '…'}"
                    for a in d["assignments"]
                ),
            )
        out.print(table)

    @device_group.command("import")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @actor_option
    @json_option
    @pass_ctx
    def device_import(ctx: Any, path: Path, actor: str, as_json: bool) -> None:
        """Devices and assignments from CSV."""
        run_device_import(ctx.app(), path, actor, as_json)


def _register_cases(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> click.Group:
    """`case create`, `action`; the group, for the commands that list, show and link
    (:func:`_register_case_links`) and close, reopen and update (:func:`_register_case_life`)."""

    @cli.group("case")
    def case_group() -> None:
        """Cases, enforcement actions and attached recordings."""

    @case_group.command("create")
    @click.argument("number")
    @click.option("--title", default="")
    @click.option("--unit", default="")
    @click.option("--status", type=click.Choice(C.STATUSES), default="open")
    @click.option("--retention", default="永久", help="保管期限: 永久, 30年 or 10年.")
    @click.option("--security-class", default="", help="密级.")
    @click.option(
        "--yes",
        is_flag=True,
        help="Create it even though an existing case's number differs only in its "
        "brackets or digit widths (otherwise asked on a terminal, refused in scripts).",
    )
    @actor_option
    @pass_ctx
    def case_create(
        ctx: Any,
        number: str,
        title: str,
        unit: str,
        status: str,
        retention: str,
        security_class: str,
        yes: bool,
        actor: str,
    ) -> None:
        """Create case NUMBER (as the unit writes it, e.g. 沪徐市监罚〔2026〕123号)."""
        run_case_create(
            ctx.app(),
            number=number,
            yes=yes,
            title=title,
            unit=unit,
            status=status,
            retention=retention,
            security_class=security_class,
            actor=actor,
        )

    @case_group.command("action")
    @click.argument("number")
    @click.argument("action_id")
    @click.option("--officer", "officers", multiple=True, required=True, help="警号 (repeat).")
    @click.option("--start", type=TIME, required=True)
    @click.option("--end", type=TIME, required=True)
    @click.option("--place", default="")
    @actor_option
    @pass_ctx
    def case_action(
        ctx: Any,
        number: str,
        action_id: str,
        officers: tuple[str, ...],
        start: datetime,
        end: datetime,
        place: str,
        actor: str,
    ) -> None:
        """Record enforcement action ACTION_ID of case NUMBER; attach matching recordings."""
        run_case_action(
            ctx.app(),
            number,
            action_id,
            officers=officers,
            start=start,
            end=end,
            place=place,
            actor=actor,
        )

    return case_group


def _register_case_links(
    case_group: click.Group, pass_ctx: Decorator, json_option: Decorator
) -> None:
    """`case list`, `show`, `import`, `attach`, `detach`."""

    @case_group.command("list")
    @click.option("--status", type=click.Choice(C.STATUSES), default=None)
    @json_option
    @pass_ctx
    def case_list(ctx: Any, status: str | None, as_json: bool) -> None:
        """Cases, with how many recordings each holds."""
        run_case_list(ctx.app(), status, as_json)

    @case_group.command("show")
    @click.argument("number")
    @json_option
    @pass_ctx
    def case_show(ctx: Any, number: str, as_json: bool) -> None:
        """A case, its actions and its recordings (digests, times, officer, why attached)."""
        run_case_show(ctx.app(), number, as_json)

    @case_group.command("import")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @actor_option
    @json_option
    @pass_ctx
    def case_import(ctx: Any, path: Path, actor: str, as_json: bool) -> None:
        """Cases and actions from a case-management export (.csv or .json)."""
        run_case_import(ctx.app(), path, actor, as_json)

    @case_group.command("attach")
    @click.argument("number")
    @click.argument("recording")
    @_reason_option
    @actor_option
    @pass_ctx
    def case_attach(ctx: Any, number: str, recording: str, reason: str, actor: str) -> None:
        """Attach RECORDING (id, digest prefix or file name) to case NUMBER by hand."""
        run_attach(ctx.app(), number, recording, reason, actor)

    @case_group.command("detach")
    @click.argument("number")
    @click.argument("recording")
    @_reason_option
    @click.option(
        "--force-exported",
        is_flag=True,
        help="Detach even though the recording was already exported.",
    )
    @actor_option
    @pass_ctx
    def case_detach(
        ctx: Any, number: str, recording: str, reason: str, force_exported: bool, actor: str
    ) -> None:
        """Detach RECORDING from case NUMBER (the rule will not attach it again)."""
        run_detach(ctx.app(), number, recording, reason, actor, force_exported)


def _register_case_life(case_group: click.Group, pass_ctx: Decorator) -> None:
    """`case close`, `reopen`, `update`: each with a reason, each a custody event."""

    @case_group.command("close")
    @click.argument("number")
    @_reason_option
    @actor_option
    @pass_ctx
    def case_close(ctx: Any, number: str, reason: str, actor: str) -> None:
        """Close case NUMBER: its 30年/10年 retention period runs from now."""
        run_case_close(ctx.app(), number, reason, actor)

    @case_group.command("reopen")
    @click.argument("number")
    @_reason_option
    @actor_option
    @pass_ctx
    def case_reopen(ctx: Any, number: str, reason: str, actor: str) -> None:
        """Reopen closed case NUMBER: its retention clock stops until it is closed again."""
        run_case_reopen(ctx.app(), number, reason, actor)

    @case_group.command("update")
    @click.argument("number")
    @click.option("--title", default=None)
    @click.option("--unit", default=None)
    @click.option("--retention", default=None, help="保管期限: 永久, 30年 or 10年.")
    @click.option("--security-class", default=None, help="密级.")
    @_reason_option
    @actor_option
    @pass_ctx
    def case_update(
        ctx: Any,
        number: str,
        title: str | None,
        unit: str | None,
        retention: str | None,
        security_class: str | None,
        reason: str,
        actor: str,
    ) -> None:
        """Change the title, unit, retention or 密级 of case NUMBER."""
        values = {
            "title": title,
            "unit": unit,
            "retention": retention,
            "security_class": security_class,
        }
        run_case_update(ctx.app(), number, reason, actor, values)


def _register_retention(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.group("retention")
    def retention_group() -> None:
        """How long recordings are kept: explain, holds, reviews, expiry."""

    @retention_group.command("explain")
    @click.argument("recording")
    @json_option
    @pass_ctx
    def retention_explain(ctx: Any, recording: str, as_json: bool) -> None:
        """Until when RECORDING is kept, and by which rule."""
        run_explain(ctx.app(), recording, as_json)

    @retention_group.command("hold")
    @click.argument("recording")
    @_reason_option
    @actor_option
    @pass_ctx
    def retention_hold(ctx: Any, recording: str, reason: str, actor: str) -> None:
        """Place a legal hold on RECORDING (each hold has its own id, and is lifted alone)."""
        run_hold(ctx.app(), recording, reason, actor)

    @retention_group.command("release")
    @click.argument("recording")
    @click.option(
        "--hold",
        "hold_id",
        type=ROW_ID,
        default=None,
        help="The id of the hold to lift (see 'retention explain'); may be left "
        "out when the recording has one hold only.",
    )
    @_reason_option
    @actor_option
    @pass_ctx
    def retention_release(
        ctx: Any, recording: str, hold_id: int | None, reason: str, actor: str
    ) -> None:
        """Lift one legal hold of RECORDING; its other holds stay in force."""
        run_release(ctx.app(), recording, hold_id, reason, actor)

    @retention_group.command("review")
    @click.argument("recording")
    @_reason_option
    @actor_option
    @pass_ctx
    def retention_review(ctx: Any, recording: str, reason: str, actor: str) -> None:
        """Mark an important RECORDING reviewed (the other rules apply again)."""
        run_review(ctx.app(), recording, reason, actor)

    @retention_group.command("sweep")
    @click.option("--apply", is_flag=True, help="Delete what is due (default: list only).")
    @click.option("--limit", type=COUNT, default=None, help="At most this many recordings.")
    @actor_option
    @json_option
    @pass_ctx
    def retention_sweep(
        ctx: Any, apply: bool, limit: int | None, actor: str, as_json: bool
    ) -> None:
        """List unattached, unheld, unimportant originals past their retention; --apply
        deletes them (and their derivatives), with a tombstone and a custody event each."""
        run_sweep(ctx.app(), apply, limit, actor, as_json)
