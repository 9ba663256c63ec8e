"""`liuhen device …`, `liuhen case …`, `liuhen retention …`: thin commands over
catalog/devices, cases, case_import, attach and retention.

Times people type here (``--start``, ``--end``, ``--from``, ``--to``, the times in an
imported CSV or JSON) are read by config.timetext in the station's zone
(``station.time_zone``), and every time shown is in that zone with its offset; JSON
gives ISO 8601 with the offset."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from catalog import attach as A
from catalog import cases as C
from catalog import devices as D
from catalog import retention as R
from config.errors import EXIT_USAGE, CheckFailed, LiuhenError, PartlyRefused
from config.i18n import N_, _
from config.settings import zone_of
from config.timetext import (
    TimeTextError,
    iso_time,
    parse_instant,
    parse_range,
    parse_time,
    show_minutes,
    show_span,
    show_time,
    zone_suffix,
)
from liuhen.access_audit import audit_cli
from liuhen.actor import actor_option, current_principal
from liuhen.output import err, out, print_json
from liuhen.progress import job_progress
from liuhen.screen_table import Column, fit_table

if TYPE_CHECKING:
    from access.policy import Principal

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

# Numbers as both databases hold them, from 1: a row id (an INTEGER column, 32 bits on
# PostgreSQL) and a count (a 64-bit LIMIT). Beyond, the database driver fails
# (OverflowError, DataError) instead of saying which option is wrong.
ROW_ID = click.IntRange(min=1, max=2**31 - 1)
COUNT = click.IntRange(min=1, max=2**63 - 1)

# Field names as `case update` and `case show` print them.
FIELD_LABELS = {
    "title": N_("title"),
    "unit": N_("unit"),
    "retention": N_("retention"),
    "security_class": N_("security class (密级)"),
    "status": N_("status"),
    "source": N_("source"),
}
# Which rule keeps a recording, as `retention explain` names it.
RULE_LABELS = {
    "legal-hold": N_("legal hold"),
    "important": N_("marked important"),
    "case": N_("attached to a case"),
    "unattached": N_("unattached minimum"),
    "expired": N_("expired"),
}


def _reason_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--reason", required=True, help="Why (recorded in the custody log).")(f)


@dataclass(frozen=True)
class TypedTime:
    """A time as typed: read in the station's zone once the settings are known."""

    text: str

    def at(self, zone: tzinfo) -> datetime:
        return parse_instant(self.text, zone)


class _Time(click.ParamType):  # type: ignore[type-arg]
    """A time as people type it (config.timetext); the zone is applied by the command,
    which knows the station's settings."""

    name = "time"

    def convert(self, value: Any, param: Any, ctx: Any) -> TypedTime:
        if isinstance(value, TypedTime):
            return value
        try:
            parse_time(str(value), UTC)  # the form only: the zone comes later
        except TimeTextError:
            self.fail(time_error(str(value)), param, ctx)
        return TypedTime(str(value))


TIME = _Time()


def time_error(text: str) -> str:
    """The refusal of a time that cannot be read, repeating it as typed."""
    return _(
        "{text!r} is not a time: write e.g. 2026-12-01 07:00, 2026/12/01 7:00 or "
        "2026年12月1日 7时30分 (station time unless an offset such as +08:00 is given)"
    ).format(text=text)


def station_zone(app: Any) -> tzinfo:
    """The zone people type and read times in (``station.time_zone``)."""
    return zone_of(app.settings.station.time_zone)


def shown_time(when: datetime | None, zone: tzinfo) -> str:
    """A time echoed back as typed: to the minute when it has no seconds, with its
    offset (``2026-12-01 07:00 +08:00``)."""
    if when is None:
        return "—"
    whole_minute = when.second == 0 and when.microsecond == 0
    return show_time(when, zone, seconds=not whole_minute)


def local_time(app: Any, when: datetime | None) -> str:
    """A time as the station's people read it: in its time zone, with the offset."""
    return "" if when is None else show_time(when, station_zone(app))


def _name_officer(app: Any) -> Callable[[str], str | None]:
    from ingest.identity import NameParser

    parser = NameParser(app.settings.ingest.filename_patterns, app.settings.ingest.important_marker)
    return lambda name: parser.parse(name).officer


def _print_errors(errors: list[str]) -> None:
    for line in errors:
        err.print(_("[red]refused[/red] {problem}").format(problem=line), highlight=False)


def _import_done(report: Any, summary: str, as_json: bool) -> None:
    """What an import of a CSV (devices, cases) says when done: the report as JSON, or
    its summary and each refused row; refused rows make the command fail."""
    if as_json:
        print_json(report.as_dict())
    else:
        out.print(summary, markup=False)
        _print_errors(report.errors)
    if report.errors:
        raise PartlyRefused(_("{count} row(s) refused").format(count=len(report.errors)))


def _ticker(label: str, as_json: bool) -> Any:
    """A progress bar over rows (items, rate, time left) at a terminal; none in scripts."""
    return job_progress(label, total=None, unit="items", enabled=not as_json)


# --- device ------------------------------------------------------------------------------


def run_device_assign(
    app: Any,
    serial: str,
    officer: str,
    name: str,
    unit: str,
    times: tuple[TypedTime, TypedTime | None],
    actor: str,
) -> None:
    zone = station_zone(app)
    start, end = times[0].at(zone), times[1].at(zone) if times[1] else None
    if end is not None and end <= start:
        raise click.BadParameter(
            _("--end {end!r} is not after --start {start!r}").format(
                end=times[1].text if times[1] else "", start=times[0].text
            ),
            param_hint="--end",
        )
    with app.ready_catalog().transaction() as s:
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
            zone=zone,
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
    line = _("{serial} → {officer} from {start}").format(
        serial=serial, officer=officer, start=shown_time(start, zone)
    )
    if row.end:
        line += _(" until {end}").format(end=shown_time(row.end, zone))
    if not changed:
        line += _(" (already recorded)")
    if looked:
        line += _("; {count} recording(s) re-resolved").format(count=looked)
    out.print(line, markup=False)


def run_device_import(app: Any, path: Path, actor: str, as_json: bool) -> None:
    from catalog.device_import import import_device_file  # the one import, also the page's

    zone = station_zone(app)
    with app.ready_catalog().transaction() as s, _ticker(_("Importing devices"), as_json) as bar:
        report = import_device_file(
            s,
            app.signer,
            path,
            actor=actor,
            zone=zone,
            settings=app.settings,
            store=app.store,
            progress=bar.update,
        )
    summary = _(
        "{rows} rows: {devices} devices registered or updated, {assignments} "
        "assignments, {unchanged} unchanged, {refused} refused"
    ).format(
        rows=report.rows,
        devices=report.devices,
        assignments=report.assignments,
        unchanged=report.unchanged,
        refused=len(report.errors),
    )
    _import_done(report, summary, as_json)


def run_device_list(app: Any, as_json: bool) -> None:
    zone = station_zone(app)
    with app.ready_catalog().session() as s:
        devices = D.list_devices(s, zone)
    if as_json:
        print_json(devices)
        return
    rows: list[list[str]] = []
    for d in devices:
        fixed = [d["serial"], d["model"], d["unit"], _("yes") if d["registered"] else _("no")]
        spans = d["assignments"] or [None]
        for i, a in enumerate(spans):
            lead = fixed if i == 0 else ["", "", "", ""]
            if a is None:
                rows.append([*lead, "—", "", "", ""])
                continue
            start = datetime.fromisoformat(a["start"])
            end = datetime.fromisoformat(a["end"]) if a["end"] else None
            rows.append(
                [*lead, a["officer"], a["name"], show_minutes(start, zone), show_minutes(end, zone)]
            )
    offset = zone_suffix(zone)
    columns = [
        Column(_("serial"), whole=True),
        Column(_("model"), drop=2),
        Column(_("unit"), drop=3),
        Column(_("registered"), drop=4),
        Column(_("officer number (警号)"), whole=True),
        Column(_("name"), drop=1),
        Column(_("from") + offset, whole=True),
        Column(_("until") + offset, whole=True),
    ]
    out.print(fit_table(columns, rows, out.width))


# --- case ---------------------------------------------------------------------------------


def _principal() -> Principal | None:
    """Who runs this command line (None outside one)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    return current_principal(ctx)


def _attachable(principal: Principal | None) -> Any:
    """The recordings an action changed by ``principal`` may attach by rule: those within
    its reach for attaching (an integration's token holds that, not the view)."""
    if principal is None:
        return None
    from access.policy import recording_scope
    from access.roles import Permission

    return recording_scope(principal, Permission.CASE_ATTACH)


def _may_change(session: Any, principal: Principal | None) -> Any:
    """For ``case import``: whether the principal may change a row's case."""
    if principal is None:
        return None
    from access.policy import may_change_case

    return lambda number, unit: may_change_case(session, principal, number, unit)


def run_case_import(app: Any, path: Path, actor: str, as_json: bool) -> None:
    from catalog.case_intake import import_and_attach

    zone = station_zone(app)
    who = _principal()
    with app.ready_catalog().transaction() as s, _ticker(_("Importing cases"), as_json) as bar:
        report = import_and_attach(
            s,
            app.signer,
            app.store,
            app.settings.retention,
            path,
            actor=actor,
            zone=zone,
            progress=bar.update,
            may_change=_may_change(s, who),
            attachable=_attachable(who),
            attaching=lambda: bar.describe(_("Attaching recordings")),
        )
    summary = _(
        "{rows} rows: {cases_created} cases created, {cases_updated} updated; "
        "{actions_created} actions created, {actions_updated} updated, {unchanged} "
        "unchanged; {attached} recordings attached; {refused} refused"
    ).format(
        rows=report.rows,
        cases_created=report.cases_created,
        cases_updated=report.cases_updated,
        actions_created=report.actions_created,
        actions_updated=report.actions_updated,
        unchanged=report.unchanged,
        attached=report.attached,
        refused=len(report.errors),
    )
    _import_done(report, summary, as_json)


def _confirm_similar(exc: C.SimilarCase, yes: bool) -> bool:
    """Whether to create a case whose number only brackets or digit widths tell from an
    existing one: --yes, or a person's answer on a terminal; never silently."""
    if yes:
        return True
    if not sys.stdin.isatty():
        return False
    err.print(f"{exc.message}", markup=False)
    return click.confirm(_("create it as another case?"), default=False, err=True)


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
    out.print(_("case {number} created").format(number=created), markup=False)


def _keep_line(app: Any, case: Any) -> str:
    until = R.case_keep_until(case)
    if case.status == "open":
        return _("retention {retention}: the clock stops while the case is open").format(
            retention=case.retention
        )
    if until is None:
        return _("retention {retention}: kept for ever").format(retention=case.retention)
    return _("retention {retention} from the closing: kept until {until}").format(
        retention=case.retention, until=local_time(app, until)
    )


def run_case_close(app: Any, number: str, reason: str, actor: str) -> None:
    with app.ready_catalog().transaction() as s:
        case = C.close_case(
            s, app.signer, number, reason=reason, actor=actor, zone=station_zone(app)
        )
        R.sync_cases_store_retention(s, app.store, [case.id], app.settings.retention)
        line = _("case {number} closed at {at}; {keep}").format(
            number=case.number, at=local_time(app, case.closed_at), keep=_keep_line(app, case)
        )
    out.print(line, markup=False)


def run_case_reopen(app: Any, number: str, reason: str, actor: str) -> None:
    with app.ready_catalog().transaction() as s:
        case = C.reopen_case(s, app.signer, number, reason=reason, actor=actor)
        line = _("case {number} reopened; {keep}").format(
            number=case.number, keep=_keep_line(app, case)
        )
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
        out.print(_("case {number}: nothing to change").format(number=case.number), markup=False)
        return
    out.print(_("case {number} updated:").format(number=case.number), markup=False)
    for field, (old, new) in changes.items():
        label = _(FIELD_LABELS.get(field, field))
        out.print(f"  {label}: {old!r} → {new!r}", markup=False)
    if "retention" in changes:
        out.print(f"  {keep}", markup=False)


def run_case_action(
    app: Any,
    number: str,
    action_id: str,
    *,
    officers: tuple[str, ...],
    times: tuple[TypedTime, TypedTime],
    place: str,
    actor: str,
) -> None:
    zone = station_zone(app)
    start, end = times[0].at(zone), times[1].at(zone)
    if end < start:
        raise click.BadParameter(
            _("--end {end!r} is before --start {start!r}").format(
                end=times[1].text, start=times[0].text
            ),
            param_hint="--end",
        )
    with app.ready_catalog().transaction() as s:
        action, _new = C.add_action(
            s,
            app.signer,
            case=C.get_case(s, number),
            external_id=action_id,
            officers=officers,
            start=start,
            end=end,
            place=place,
            actor=actor,
            zone=zone,
        )
        n = A.attach_for_actions(
            s,
            app.signer,
            [action.id],
            policy=app.settings.retention,
            actor=actor,
            store=app.store,
            only=_attachable(_principal()),
        )
    out.print(
        _(
            "action {action} of {number} recorded ({start} – {end}); {count} recording(s) attached"
        ).format(
            action=action_id,
            number=number,
            start=shown_time(start, zone),
            end=shown_time(end, zone),
            count=n,
        ),
        markup=False,
    )


def action_range(app: Any, start: str | None, end: str | None) -> tuple[Any, Any]:
    """``--from``/``--to`` as the half-open range [from, to) in UTC; ``--to`` is the first
    moment not included, and a range that holds nothing is refused saying so."""
    for option, text in (("--from", start), ("--to", end)):
        if text and _unreadable(text):
            raise click.BadParameter(time_error(text), param_hint=option)
    try:
        return parse_range(start, end, station_zone(app))
    except TimeTextError as exc:
        raise click.BadParameter(
            _(
                "--from {start!r} is not before --to {end!r}; --to is exclusive (the "
                "first moment left out): for one day, give the next day as --to"
            ).format(start=start, end=end),
            param_hint="--to",
        ) from exc


def _unreadable(text: str) -> bool:
    try:
        parse_time(text, UTC)
    except TimeTextError:
        return True
    return False


def run_case_list(
    app: Any, status: str | None, between: tuple[Any, Any], as_json: bool, *, scope: Any = None
) -> None:
    with app.ready_catalog().session() as s:
        cases = C.list_cases(s, status, actions_from=between[0], actions_to=between[1], scope=scope)
    if as_json:
        print_json(cases)
        return
    if not cases:
        out.print(_("no case found"), markup=False)
        return
    rows = [
        [
            c["number"],
            c["title"],
            c["unit"],
            C.status_text(c["status"]),
            c["retention"],
            c["security_class"],
            str(c["recordings"]),
        ]
        for c in cases
    ]
    columns = [
        Column(_("case number"), whole=True),
        Column(_("title"), fold_width=16),
        Column(_("unit"), drop=3, fold_width=12),
        Column(_("status"), whole=True),
        Column(_("retention"), whole=True, drop=1),
        Column(_("security class (密级)"), drop=2),
        Column(_("recordings"), whole=True, justify="right"),
    ]
    out.print(fit_table(columns, rows, out.width))


def run_case_show(app: Any, number: str, as_json: bool) -> None:
    zone = station_zone(app)
    with app.ready_catalog().session() as s:
        report = C.case_report(s, number, zone)
    if as_json:
        print_json(report)
        return
    _show_case_head(app, report)
    _show_actions(report["actions"], zone)
    _show_recordings(report, zone)


def _show_case_head(app: Any, report: dict[str, Any]) -> None:
    out.print(_("case {number}").format(number=report["number"]), markup=False)
    fields = [
        (_(FIELD_LABELS["title"]), report["title"]),
        (_(FIELD_LABELS["unit"]), report["unit"]),
        (_(FIELD_LABELS["status"]), C.status_text(report["status"])),
        (_(FIELD_LABELS["retention"]), report["retention"]),
        (_(FIELD_LABELS["security_class"]), report["security_class"]),
        (_(FIELD_LABELS["source"]), _source_text(report["source"])),
    ]
    if report["closed_at"]:
        closed = datetime.fromisoformat(report["closed_at"])
        fields.append((_("closed at"), local_time(app, closed)))
    for label, value in fields:
        # At a terminal a long title wraps at a space, not wherever the screen ends; in a
        # pipe each field stays one line.
        line = _("{label}: {value}").format(label=label, value=value or "—")
        out.print(f"  {line}", markup=False, soft_wrap=not out.is_terminal)


def _source_text(source: str) -> str:
    """Where a case came from: typed in (``manual``), or the export file it was imported
    from."""
    return _("entered by hand") if source == "manual" else source


def _show_actions(actions: list[dict[str, Any]], zone: tzinfo) -> None:
    if not actions:
        return
    rows = [
        [
            a["id"],
            show_span(datetime.fromisoformat(a["start"]), datetime.fromisoformat(a["end"]), zone),
            ", ".join(a["officers"]),
            a["place"],
        ]
        for a in actions
    ]
    columns = [
        Column(_("id"), whole=True),
        Column(_("time") + zone_suffix(zone), whole=True),
        Column(
            _("officers (警号)"),
            fold_width=1 + max(len(o) for a in actions for o in a["officers"] or [""]),
        ),
        Column(_("place"), drop=1, fold_width=10),
    ]
    title = _("enforcement actions ({count})").format(count=len(actions))
    out.print(fit_table(columns, rows, out.width, title=title))


def _show_recordings(report: dict[str, Any], zone: tzinfo) -> None:
    # One block per recording rather than a table: digests and reasons are too wide for
    # a terminal's columns, and these lines are what an auditor copies. Each digest has
    # a line of its own so that 80 columns hold it whole.
    out.print(_("recordings ({count}):").format(count=len(report["recordings"])), markup=False)
    for r in report["recordings"]:
        start = datetime.fromisoformat(r["capture_start"]) if r["capture_start"] else None
        end = datetime.fromisoformat(r["capture_end"]) if r["capture_end"] else None
        out.print(f"  #{r['recording']} {r['name']}", markup=False)
        out.print(
            "      "
            + _("officer {officer}, recorded {span} ({offset})").format(
                officer=r["officer"] or "?",
                span=show_span(start, end, zone),
                offset=zone_suffix(zone).strip(" ()"),
            ),
            markup=False,
            soft_wrap=not out.is_terminal,
        )
        out.print(f"      sha256 {r['sha256']}", markup=False)
        out.print(f"      sm3    {r['sm3']}", markup=False)
        out.print(
            "      " + _("why: {why}").format(why=r["why"]),
            markup=False,
            soft_wrap=not out.is_terminal,
        )
    for r in report["detached"]:
        out.print(
            "  "
            + _("detached #{id} {name} by {by} at {at}: {reason}").format(
                id=r["recording"],
                name=r["name"],
                by=r["detached_by"],
                at=show_time(r["detached_at"], zone),
                reason=r["detach_reason"],
            ),
            markup=False,
            soft_wrap=not out.is_terminal,
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
        name = rec.original_name
    text = (
        _("recording {id} {name} ({sha}) attached to {number}")
        if changed
        else _("recording {id} {name} ({sha}) was already attached to {number}")
    )
    out.print(
        text.format(id=rec.id, name=name, sha=rec.sha256[:16], number=number),
        markup=False,
        soft_wrap=not out.is_terminal,
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
    line = _("recording {id} ({sha}) detached from {number}").format(
        id=rec.id, sha=rec.sha256[:16], number=number
    )
    if details["override"]:
        line += _(" (exported in {exports}: override recorded)").format(
            exports=", ".join(details["exports"])
        )
    out.print(line, markup=False, soft_wrap=not out.is_terminal)


# --- retention ------------------------------------------------------------------------------


def run_explain(app: Any, ref: str, as_json: bool) -> None:
    zone = station_zone(app)
    with app.ready_catalog().session() as s:
        decision = R.explain(s, A.get_recording(s, ref), app.settings.retention, zone=zone)
    if as_json:
        print_json(decision.as_dict(zone))
        return
    rule = _(RULE_LABELS.get(decision.rule, decision.rule))
    head = (
        _("recording {id} {name} ({state}): kept until {until} (rule: {rule})").format(
            id=decision.recording_id,
            name=decision.name,
            state=decision.state,
            until=show_time(decision.keep_until, zone),
            rule=rule,
        )
        if decision.keep_until
        else _("recording {id} {name} ({state}): kept indefinitely (rule: {rule})").format(
            id=decision.recording_id, name=decision.name, state=decision.state, rule=rule
        )
    )
    if decision.expired:
        head += _("; expired")
    out.print(head, markup=False, soft_wrap=not out.is_terminal)
    for line in decision.reasons:
        out.print(f"  - {line}", markup=False, soft_wrap=not out.is_terminal)
    for h in decision.released_holds:
        out.print(
            "  - "
            + _(
                "released: hold {id}: placed by {by} at {at}: {reason}; released by "
                "{released_by} at {released_at}: {release_reason}"
            ).format(
                id=h["id"],
                by=h["by"],
                at=show_time(h["at"], zone),
                reason=h["reason"],
                released_by=h["released_by"],
                released_at=show_time(h["released_at"], zone),
                release_reason=h["release_reason"],
            ),
            markup=False,
            soft_wrap=not out.is_terminal,
        )
    if decision.store_retain_until:
        out.print(
            "  - "
            + _("object store retention until {until}").format(
                until=show_time(decision.store_retain_until, zone)
            ),
            markup=False,
        )


def run_hold(app: Any, ref: str, reason: str, actor: str) -> None:
    with app.ready_catalog().transaction() as s:
        rec = A.get_recording(s, ref)
        row = R.hold(s, app.signer, app.store, rec, reason=reason, actor=actor)
        held = len(R.open_holds(s, rec.id))
    out.print(
        _(
            "recording {id} ({sha}): legal hold {hold} placed ({count} in force; lift it "
            "with {command})"
        ).format(
            id=rec.id,
            sha=rec.sha256[:16],
            hold=row.id,
            count=held,
            command=f"'liuhen retention release {rec.id} --hold {row.id} --reason ...'",
        ),
        markup=False,
        soft_wrap=not out.is_terminal,
    )


def run_release(app: Any, ref: str, hold_id: int | None, reason: str, actor: str) -> None:
    with app.ready_catalog().transaction() as s:
        rec = A.get_recording(s, ref)
        row = R.release(s, app.signer, app.store, rec, reason=reason, actor=actor, hold_id=hold_id)
        left = R.open_holds(s, rec.id)
    line = _("recording {id} ({sha}): legal hold {hold} released (placed by {by}: {reason}); ")
    line = line.format(
        id=rec.id, sha=rec.sha256[:16], hold=row.id, by=row.placed_by, reason=row.reason
    )
    line += (
        _("{count} still in force: {holds}").format(
            count=len(left), holds=", ".join(str(h.id) for h in left)
        )
        if left
        else _("no hold left")
    )
    out.print(line, markup=False, soft_wrap=not out.is_terminal)


def run_review(app: Any, ref: str, reason: str, actor: str) -> None:
    with app.ready_catalog().transaction() as s:
        rec = A.get_recording(s, ref)
        R.review(s, app.signer, rec, reason=reason, actor=actor)
    out.print(
        _("recording {id} ({sha}) reviewed; the other rules apply again").format(
            id=rec.id, sha=rec.sha256[:16]
        ),
        markup=False,
    )


class SweepNotConfirmed(LiuhenError):
    """`retention sweep --apply` with nobody to confirm it and no --yes."""

    exit_code = EXIT_USAGE


def _due_table(due: list[R.Decision], zone: tzinfo, title: str) -> Any:
    rows = [
        [str(d.recording_id), d.name, d.sha256[:16], show_minutes(d.keep_until, zone)] for d in due
    ]
    columns = [
        Column(_("id"), whole=True, justify="right"),
        Column(_("file name"), whole=True),
        Column("sha256", whole=True, drop=2),
        Column(_("kept until") + zone_suffix(zone), whole=True, drop=1),
    ]
    return fit_table(columns, rows, out.width, title=title)


def _sweep_scope() -> Any:
    """The recordings this command line's principal may sweep: a unit's archivist, the
    unit's (its devices' and its cases'); a role reaching every unit, all of them."""
    principal = _principal()
    if principal is None:
        return None
    from access.policy import recording_scope
    from access.roles import Permission

    return recording_scope(principal, Permission.RETENTION_CHANGE)


def _confirm_sweep(app: Any, limit: int | None, zone: tzinfo, scope: Any) -> list[int] | None:
    """What a person at a terminal agreed to delete (None: nothing, they said no)."""
    listing = R.sweep(
        app.ready_catalog(),
        app.signer,
        app.store,
        app.settings.retention,
        actor="",
        apply=False,
        limit=limit,
        now=datetime.now(UTC),
        scope=scope,
    )
    if not listing.due:
        return []
    title = _("to be deleted ({count}), with their derivatives:").format(count=len(listing.due))
    err.print(_due_table(listing.due, zone, title))
    question = _("Delete these {count} recordings? They cannot be brought back").format(
        count=len(listing.due)
    )
    if not click.confirm(question, default=False, err=True):
        return None
    return [d.recording_id for d in listing.due]


def run_sweep(
    app: Any, apply: bool, limit: int | None, yes: bool, actor: str, as_json: bool
) -> None:
    zone = station_zone(app)
    scope = _sweep_scope()
    confirmed: list[int] | None = None
    if apply and not yes:
        if as_json or not sys.stdin.isatty():
            raise SweepNotConfirmed(
                _(
                    "retention sweep --apply deletes recordings, and there is no terminal "
                    "to confirm it on"
                ),
                hint=_(
                    "see what is due with 'liuhen retention sweep', then run "
                    "'liuhen retention sweep --apply --yes'"
                ),
            )
        confirmed = _confirm_sweep(app, limit, zone, scope)
        if confirmed is None:
            out.print(_("nothing deleted (not confirmed)"), markup=False)
            return
    with job_progress(
        _("Deleting"), total=None, unit="items", enabled=apply and not as_json
    ) as bar:
        report = R.sweep(
            app.ready_catalog(),
            app.signer,
            app.store,
            app.settings.retention,
            actor=actor,
            apply=apply,
            limit=limit,
            now=datetime.now(UTC),
            only=confirmed,
            progress=bar.update,
            scope=scope,
        )
    _print_sweep(report, apply, zone, as_json)
    if report.refused:
        raise CheckFailed(
            _("{count} deletion(s) refused by the store").format(count=len(report.refused))
        )


def _print_sweep(report: R.SweepReport, apply: bool, zone: tzinfo, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "applied": report.applied,
                "due": [d.as_dict(zone) for d in report.due],
                "deleted": [
                    {**d, "keep_until": iso_time(d.get("keep_until"), zone)} for d in report.deleted
                ],
                "refused": report.refused,
            }
        )
        return
    if report.due:
        title = _("due ({count})").format(count=len(report.due))
        out.print(_due_table(report.due, zone, title))
    else:
        out.print(_("no recording is due for expiry"), markup=False)
    if apply:
        out.print(
            _("deleted {deleted}, refused by the store {refused}").format(
                deleted=len(report.deleted), refused=len(report.refused)
            ),
            markup=False,
        )
        for r in report.refused:
            err.print(
                _("refused {id} {name}: {error}").format(
                    id=r["recording"], name=r["name"], error=r["error"]
                ),
                markup=False,
                soft_wrap=not out.is_terminal,
            )
    else:
        out.print(_("dry run: nothing deleted (run with --apply to delete)"), markup=False)


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
            _device, changed = D.add_device(
                s, app.signer, serial=serial, model=model, unit=unit, actor=actor
            )
        text = (
            _("device {serial} registered") if changed else _("device {serial} already registered")
        )
        out.print(text.format(serial=serial), markup=False)

    @device_group.command("assign")
    @click.argument("serial")
    @click.argument("officer")
    @click.option("--name", default="", help="Officer's name.")
    @click.option("--unit", default="", help="Officer's unit.")
    @click.option(
        "--start",
        type=TIME,
        required=True,
        help="Hand-over time, station time (e.g. 2026-12-01 07:00, 2026年12月1日 7时30分).",
    )
    @click.option(
        "--end",
        type=TIME,
        default=None,
        help="End, station time (default: the next hand-over).",
    )
    @actor_option
    @pass_ctx
    def device_assign(
        ctx: Any,
        serial: str,
        officer: str,
        name: str,
        unit: str,
        start: TypedTime,
        end: TypedTime | None,
        actor: str,
    ) -> None:
        """Give recorder SERIAL to officer OFFICER (警号) from --start."""
        run_device_assign(ctx.app(), serial, officer, name, unit, (start, end), actor)

    @device_group.command("list")
    @json_option
    @pass_ctx
    def device_list(ctx: Any, as_json: bool) -> None:
        """Recorders and their assignment history."""
        run_device_list(ctx.app(), as_json)

    @device_group.command("import")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @actor_option
    @json_option
    @pass_ctx
    def device_import(ctx: Any, path: Path, actor: str, as_json: bool) -> None:
        """Devices and assignments from CSV (times in station time unless they give an
        offset)."""
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
    @click.option(
        "--start", type=TIME, required=True, help="Start, station time (e.g. 2026-12-01 09:00)."
    )
    @click.option("--end", type=TIME, required=True, help="End, station time.")
    @click.option("--place", default="")
    @actor_option
    @pass_ctx
    def case_action(
        ctx: Any,
        number: str,
        action_id: str,
        officers: tuple[str, ...],
        start: TypedTime,
        end: TypedTime,
        place: str,
        actor: str,
    ) -> None:
        """Record enforcement action ACTION_ID of case NUMBER; attach matching recordings."""
        run_case_action(
            ctx.app(),
            number,
            action_id,
            officers=officers,
            times=(start, end),
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
    @click.option(
        "--from",
        "start",
        default=None,
        help="Only cases with an enforcement action from this day or time on (station "
        "time, e.g. 2026-12-01 or 2026年12月1日).",
    )
    @click.option(
        "--to",
        "end",
        default=None,
        help="…and before this day or time: --to is exclusive (--from 2026-12-01 --to "
        "2026-12-02 is the whole of 1 December).",
    )
    @json_option
    @pass_ctx
    def case_list(
        ctx: Any, status: str | None, start: str | None, end: str | None, as_json: bool
    ) -> None:
        """Cases, with how many recordings each holds."""
        from access.policy import case_scope
        from liuhen.actor import current_principal

        app = ctx.app()
        # Only the cases the reader may see: the policy's filter, as the API lists them.
        scope = case_scope(current_principal(click.get_current_context()))
        run_case_list(app, status, action_range(app, start, end), as_json, scope=scope)

    @case_group.command("show")
    @click.argument("number")
    @json_option
    @pass_ctx
    def case_show(ctx: Any, number: str, as_json: bool) -> None:
        """A case, its actions and its recordings (digests, times, officer, why attached)."""
        run_case_show(ctx.app(), number, as_json)
        audit_cli("access.view", "case", number)

    @case_group.command("import")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @actor_option
    @json_option
    @pass_ctx
    def case_import(ctx: Any, path: Path, actor: str, as_json: bool) -> None:
        """Cases and actions from a case-management export (.csv or .json); times in
        station time unless they give an offset. Every reason a row is refused is listed."""
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
        audit_cli("access.attach", "recording", recording, actor=actor, case=number, reason=reason)

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
        audit_cli("access.detach", "recording", recording, actor=actor, case=number, reason=reason)


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
        audit_cli("access.hold", "recording", recording, actor=actor, reason=reason)

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
        audit_cli(
            "access.release", "recording", recording, actor=actor, hold=hold_id, reason=reason
        )

    @retention_group.command("review")
    @click.argument("recording")
    @_reason_option
    @actor_option
    @pass_ctx
    def retention_review(ctx: Any, recording: str, reason: str, actor: str) -> None:
        """Mark an important RECORDING reviewed (the other rules apply again)."""
        run_review(ctx.app(), recording, reason, actor)

    @retention_group.command("sweep")
    @click.option(
        "--apply",
        is_flag=True,
        help="Delete what is due (default: list only); on a terminal it lists them and asks first.",
    )
    @click.option(
        "--yes",
        is_flag=True,
        help="With --apply: delete without asking (for scripts; without a terminal "
        "--apply needs it).",
    )
    @click.option("--limit", type=COUNT, default=None, help="At most this many recordings.")
    @actor_option
    @json_option
    @pass_ctx
    def retention_sweep(
        ctx: Any, apply: bool, yes: bool, limit: int | None, actor: str, as_json: bool
    ) -> None:
        """List unattached, unheld, unimportant originals past their retention; --apply
        deletes them (and their derivatives), with a tombstone and a custody event each."""
        run_sweep(ctx.app(), apply, limit, yes, actor, as_json)
