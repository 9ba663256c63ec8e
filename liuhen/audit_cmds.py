"""`liuhen audit`: the access audit (who viewed, played, downloaded, exported or changed
evidence) and the signed "chain of custody and access" report for a recording or a case.

Thin commands over access.audit and access.access_report; who may read the audit is
decided by access.policy (Permission.AUDIT_VIEW), as for every entry point."""

from __future__ import annotations

import getpass
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.errors import EXIT_USAGE, CheckFailed, LiuhenError
from config.i18n import _
from liuhen.output import out, print_json
from liuhen.screen_table import cells

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
# Where the CLI's own accesses come from, for the audit's "from where" (as the access
# helper's liuhen/access_audit.py records it).
LOCAL_SOURCE = "cli"
# Object types of evidence: their accesses are the auditor's (AUDIT_VIEW); the rest
# (logins, users, roles, sessions) the audit administrator's (ADMIN_AUDIT_VIEW).
EVIDENCE_TYPES = ("recording", "derivative", "case", "export")


class AuditUsage(LiuhenError):
    exit_code = EXIT_USAGE


# -- who is asking -------------------------------------------------------------------------


def principal_of(ctx: Any) -> Any:
    """The caller: the logged-in account or API token (liuhen.actor.current_principal,
    the access helper's, which reads the click context), else the local user."""
    import liuhen.actor

    current = getattr(liuhen.actor, "current_principal", None)
    return _local_principal() if current is None else current(click.get_current_context())


def _local_principal() -> Any:
    import access.roles as roles
    from access.policy import Principal

    local = getattr(
        roles, "NON_ADMIN_ROLES", frozenset(r for r in roles.Role if r not in roles.ADMIN_ROLES)
    )
    login = getpass.getuser()
    return Principal(
        user_id=None,
        login=login,
        display_name=login,
        unit=None,
        officer_number=None,
        roles=frozenset(local),
        via="local",
    )


def _actor(principal: Any) -> str:
    """The name the audit records for the principal (a token's is marked as one)."""
    return str(getattr(principal, "actor", principal.login))


def _allowed(session: Session, principal: Any, name: str) -> bool:
    from access.policy import allowed
    from access.roles import Permission

    return bool(allowed(session, principal, Permission[name]))


def _require(app: Any, principal: Any, names: tuple[str, ...], what: tuple[str, str]) -> set[str]:
    """The permissions named in ``names`` the principal holds. Holding none, the refusal
    is itself an audit event (``access.denied`` on ``what``, an object type and id) and
    is raised, naming the first permission."""
    from access.policy import AccessDenied, authorize
    from access.roles import Permission

    refusal: Exception | None = None
    with app.ready_catalog().session() as session:
        held = {n for n in names if _allowed(session, principal, n)}
        if not held:
            try:
                authorize(session, principal, Permission[names[0]])
            except AccessDenied as exc:
                refusal = exc
            else:  # allowed() and authorize() are one rule; kept safe all the same
                held = {names[0]}
    if refusal is None:
        return held
    _record_denied(app, principal, what, ", ".join(str(Permission[n].value) for n in names))
    raise refusal


def _record_denied(app: Any, principal: Any, what: tuple[str, str], permission: str) -> None:
    from access.audit import record_access

    with app.ready_catalog().transaction() as session:
        record_access(
            session,
            app.signer,
            actor=_actor(principal),
            action="access.denied",
            object_type=what[0],
            object_id=what[1],
            result="denied",
            source=LOCAL_SOURCE,
            details={"permission": permission},
        )


# -- audit log -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogQuery:
    user: str | None
    recording: str | None
    case: str | None
    start: str | None
    end: str | None
    actions: tuple[str, ...]
    limit: int
    after: int | None


def _zone(app: Any) -> tzinfo:
    from config.settings import zone_of

    return zone_of(app.settings.station.time_zone)


def _range(q: LogQuery, zone: tzinfo) -> tuple[datetime | None, datetime | None]:
    from config.timetext import TimeTextError, parse_range

    try:
        return parse_range(q.start, q.end, zone)
    except TimeTextError as exc:
        raise AuditUsage(str(exc), hint=_("e.g. --from 2026-12-01 --to 2026-12-02")) from exc


def _actions(names: tuple[str, ...]) -> list[str] | None:
    from access.audit import ACTIONS

    if not names:
        return None
    full = [n if n.startswith("access.") else f"access.{n}" for n in names]
    unknown = [n for n in full if n not in ACTIONS]
    if unknown:
        raise AuditUsage(
            _("unknown audit action {action}").format(action=", ".join(unknown)),
            hint=_("known actions: {names}").format(
                names=", ".join(a.removeprefix("access.") for a in ACTIONS)
            ),
        )
    return full


def _objects(session: Session, q: LogQuery) -> list[str] | None:
    """The custody object ids --recording and --case name (None: any object)."""
    from catalog.attach import get_recording
    from catalog.cases import get_case
    from catalog.models import CaseRecording, Derivative, Recording

    if q.recording is None and q.case is None:
        return None
    rec_ids: list[int] = []
    ids: list[str] = []
    if q.recording is not None:
        rec_ids.append(get_recording(session, q.recording).id)
    if q.case is not None:
        case = get_case(session, q.case)
        ids.append(case.number)
        rec_ids += session.scalars(
            select(CaseRecording.recording_id).where(CaseRecording.case_id == case.id)
        )
    if rec_ids:
        ids += session.scalars(select(Recording.sha256).where(Recording.id.in_(rec_ids)))
        ids += session.scalars(
            select(Derivative.sha256).where(Derivative.recording_id.in_(rec_ids))
        )
    return ids


def _visible(events: list[Any], evidence: bool, admin: bool) -> list[Any]:
    """The events the caller may read: evidence accesses with AUDIT_VIEW, the rest
    (logins, users, roles) with ADMIN_AUDIT_VIEW."""
    return [
        e
        for e in events
        if (e.object_type in EVIDENCE_TYPES and evidence)
        or (e.object_type not in EVIDENCE_TYPES and admin)
    ]


def run_log(ctx: Any, q: LogQuery, as_json: bool, csv_path: Path | None) -> None:
    from access.audit import access_events

    app = ctx.app()
    zone = _zone(app)
    since, until = _range(q, zone)
    actions = _actions(q.actions)
    principal = principal_of(ctx)
    held = _require(app, principal, ("AUDIT_VIEW", "ADMIN_AUDIT_VIEW"), ("command", "audit log"))
    evidence, admin = "AUDIT_VIEW" in held, "ADMIN_AUDIT_VIEW" in held
    with app.ready_catalog().session() as session:
        events = access_events(
            session,
            actor=q.user,
            object_id=_objects(session, q),
            since=since,
            until=until,
            actions=actions,
            limit=q.limit,
            after_id=q.after,
        )
    full_page = len(events) == q.limit
    next_after = events[-1].id if full_page and events else None
    events = _visible(events, evidence, admin)
    if csv_path is not None:
        from access.access_report import events_csv

        _write(csv_path, events_csv(events, zone))
    if as_json:
        print_json({"events": [e.as_json(zone) for e in events], "next_after": next_after})
        return
    _print_log(events, zone)
    if csv_path is not None:
        out.print(_("CSV written to {path}").format(path=csv_path), markup=False)
    if next_after is not None:
        out.print(_("more events: run again with --after {id}").format(id=next_after), markup=False)


def _pad(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal cells (a Chinese character is two)."""
    return text + " " * max(0, width - cells(text))


def _print_log(events: list[Any], zone: tzinfo) -> None:
    """Two lines an event, within 80 columns: when, what, who, on what, result; then
    from where and the details."""
    from access.access_report import clock_text, details_text
    from access.audit import POSITION_KEY, WATCHED_KEY, action_label, result_label
    from config.timetext import show_time

    if not events:
        out.print(_("no access events match"), markup=False)
        return
    for e in events:
        result = result_label(e.result)
        mark = "[green]✓[/green]" if e.result == "ok" else "[red]✗[/red]"
        head = f"{show_time(e.at, zone)}  {_pad(action_label(e.action), 10)} "
        out.print(head, end="", markup=False)
        out.print(f"{mark} {result}", end="  ")
        out.print(f"{e.actor}  {e.object_text()}", markup=False)
        extra = [_("from {source}").format(source=e.source or "—")]
        details = dict(e.details)
        details.pop("recording_id", None)
        pos, watched = details.pop(POSITION_KEY, None), details.pop(WATCHED_KEY, None)
        if pos is not None or watched is not None:
            extra.append(
                _("position {pos}, watched {watched}").format(
                    pos=clock_text(_num(pos)) or "—", watched=clock_text(_num(watched)) or "—"
                )
            )
        if details:
            extra.append(details_text(details))
        out.print("    " + " · ".join(extra), markup=False)
    out.print(_("{n} event(s)").format(n=len(events)), markup=False)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _write(path: Path, data: bytes) -> None:
    """Write a file whole or not at all (a report cut short must not be handed on)."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# -- report --------------------------------------------------------------------------------


def run_report(ctx: Any, recording: str | None, case: str | None, out_path: Path) -> None:
    from access.access_report import access_report
    from access.audit import record_access
    from catalog.attach import get_recording

    suffix = out_path.suffix.lower()
    if suffix not in (".html", ".htm", ".csv"):
        raise AuditUsage(
            _("cannot tell the report's format from {path}").format(path=out_path),
            hint=_("name the file REPORT.html (signed, printable) or REPORT.csv (Excel)"),
        )
    if (recording is None) == (case is None):
        raise AuditUsage(
            _("name one recording or one case"),
            hint=_("liuhen audit report --recording ID --out FILE.html, or --case NUMBER"),
        )
    app = ctx.app()
    principal = principal_of(ctx)
    subject = ("recording", recording) if recording is not None else ("case", str(case))
    _require(app, principal, ("AUDIT_VIEW",), subject)
    with app.ready_catalog().session() as session:
        rec_id = get_recording(session, recording).id if recording is not None else None
        report = access_report(
            session,
            recording_id=rec_id,
            case_number=case,
            zone=_zone(app),
            signer=app.signer,
            generated_by=_actor(principal),
        )
        data = report.to_csv() if suffix == ".csv" else report.to_html().encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    part = out_path.with_name(out_path.name + ".part")
    part.write_bytes(data)
    # The report is itself an access to the evidence's history; its digest in the
    # signed chain ties the file handed out to this moment and this person. The file
    # is put in place only once that is recorded.
    with app.ready_catalog().transaction() as session:
        record_access(
            session,
            app.signer,
            actor=_actor(principal),
            action="access.report",
            object_type=report.subject_kind,
            object_id=report.subject,
            source=LOCAL_SOURCE,
            details={"format": suffix.lstrip("."), "sha256": digest},
        )
    os.replace(part, out_path)
    out.print(
        _("{what}: {access} access event(s), {custody} custody event(s) → {path}").format(
            what=_subject(report),
            access=len(report.access_rows),
            custody=len(report.custody_rows),
            path=out_path,
        ),
        markup=False,
    )
    out.print(f"SHA-256 {digest}", markup=False)
    if report.problems:
        raise CheckFailed(
            _("{n} event(s) of the report fail the custody check: see the report").format(
                n=len(report.problems)
            )
        )


def _subject(report: Any) -> str:
    if report.subject_kind == "case":
        return _("case {number}").format(number=report.subject)
    return _("recording #{id}").format(id=report.subject)


# -- verify-report -------------------------------------------------------------------------


def run_verify_report(ctx: Any, path: Path, trust_files: tuple[Path, ...], as_json: bool) -> None:
    from access.report_signature import check_report
    from config.timetext import iso_time, show_time

    zone = _zone(ctx.app())
    data = path.read_bytes()
    check = check_report(data)
    written = None
    if check.ok:
        if trust_files:
            _trust_by_keyring(check, trust_files)
        else:
            written = _trust_by_catalog(ctx.app(), check, hashlib.sha256(data).hexdigest())
    if as_json:
        print_json(
            {
                "ok": check.ok,
                "file": str(path),
                "sha256": check.sha256,
                "subject": check.subject,
                "station": check.station,
                "key_id": check.key_id,
                "signed_at": iso_time(check.at, zone) if check.at else None,
                "trusted_by": check.trusted_by,
                "written": written.as_json(zone) if written is not None else None,
                "problems": check.problems,
            }
        )
    elif check.ok:
        out.print(
            "[green]✓[/green] "
            + _("{file}: signed report on {subject} verifies").format(
                file=path, subject=check.subject
            )
        )
        out.print("  " + _("content SHA-256 {sha}").format(sha=check.sha256), markup=False)
        out.print(
            "  "
            + _("signed by station {station} with key {key} at {at}").format(
                station=check.station, key=check.key_id, at=show_time(check.at, zone)
            ),
            markup=False,
        )
        if written is not None:
            out.print(
                "  "
                + _("written by {actor} at {at} (custody event {station} #{seq})").format(
                    actor=written.actor,
                    at=show_time(written.at, zone),
                    station=written.station_id,
                    seq=written.seq,
                ),
                markup=False,
            )
    else:
        out.print("[red]✗[/red] " + _("{file} does not verify:").format(file=path))
        for p in check.problems:
            out.print(f"  {p}", markup=False)
    if not check.ok:
        raise CheckFailed(_("report {file} does not verify").format(file=path))


def _trust_by_keyring(check: Any, files: tuple[Path, ...]) -> None:
    from catalog.signing import load_keyring

    ring: dict[str, set[str]] = {}
    for f in files:
        for sid, ids in load_keyring(f).items():
            ring.setdefault(sid, set()).update(ids)
    if check.key_id not in ring.get(check.station, set()):
        check.problems.append(
            _("key {key} is not a trusted key of station {station} in the key ring").format(
                key=check.key_id, station=check.station
            )
        )
    else:
        check.trusted_by = "keyring"


def _trust_by_catalog(app: Any, check: Any, file_sha256: str) -> Any:
    """Judge the key by the catalog's keys; the ``access.report`` event that recorded
    the writing of this very file, when the catalog holds it (None otherwise)."""
    from catalog.models import SigningKey

    with app.ready_catalog().session() as session:
        written = _report_event(session, file_sha256)
        key = session.get(SigningKey, check.key_id)
        if key is None or key.station_id != check.station:
            check.problems.append(
                _("key {key} is not a key of station {station} in this catalog").format(
                    key=check.key_id, station=check.station
                )
            )
            return written
        if key.retired_at is not None:
            from catalog.canonical import format_time

            if check.at > format_time(key.retired_at):
                check.problems.append(
                    _("signed with key {key} after its retirement").format(key=check.key_id)
                )
                return written
    check.trusted_by = "catalog"
    return written


def _report_event(session: Session, file_sha256: str) -> Any:
    from access.audit import event_of
    from catalog.models import CustodyEvent

    for ev in session.scalars(
        select(CustodyEvent).where(
            CustodyEvent.action == "access.report",
            CustodyEvent.details.contains(f'"sha256":"{file_sha256}"'),
        )
    ):
        return event_of(ev)
    return None


# -- commands ------------------------------------------------------------------------------


def register(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.group("audit")
    def audit_group() -> None:
        """Access audit: who viewed, played, downloaded or changed evidence."""

    @audit_group.command("log")
    @click.option("--user", help="Only this account's events (its login).")
    @click.option("--recording", help="Only events of this recording (id, digest or name).")
    @click.option("--case", "case", help="Only events of this case and its recordings.")
    @click.option("--from", "start", help="From this time (station's zone), inclusive.")
    @click.option("--to", "end", help="Up to this time (station's zone), exclusive.")
    @click.option(
        "--action",
        "actions",
        multiple=True,
        help="Only this action, e.g. view, play, download (repeatable).",
    )
    @click.option(
        "--limit",
        type=click.IntRange(1, 100_000),
        default=1000,
        show_default=True,
        help="At most this many events.",
    )
    @click.option("--after", type=int, help="Events after this event id (the next page).")
    @click.option(
        "--csv",
        "csv_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write the events to this CSV file (Excel).",
    )
    @json_option
    @pass_ctx
    def log_cmd(ctx: Any, as_json: bool, csv_path: Path | None, **kw: Any) -> None:
        """List access events, oldest first."""
        run_log(ctx, LogQuery(**kw), as_json, csv_path)

    @audit_group.command("report")
    @click.option("--recording", help="The recording (id, digest or file name).")
    @click.option("--case", "case", help="The case (its number).")
    @click.option(
        "--out",
        "out_path",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="The report file: .html (signed, printable) or .csv (Excel).",
    )
    @pass_ctx
    def report_cmd(ctx: Any, recording: str | None, case: str | None, out_path: Path) -> None:
        """Write the chain of custody and access report of a recording or a case."""
        run_report(ctx, recording, case, out_path)

    @audit_group.command("verify-report")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option(
        "--trust",
        "trust_files",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Key ring of trusted keys ('<station id> <key id>' per line) instead of the "
        "catalog's keys (repeatable).",
    )
    @json_option
    @pass_ctx
    def verify_report_cmd(
        ctx: Any, path: Path, trust_files: tuple[Path, ...], as_json: bool
    ) -> None:
        """Check a signed HTML report: its content is as signed, by a key of its station."""
        run_verify_report(ctx, path, trust_files, as_json)
