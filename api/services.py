"""What each endpoint does, as the command line does it: the same catalog functions, in
the same transactions and order (``liuhen/case_cmds.py`` composes them for the CLI; the
API may not import it). No rule of the evidence system is decided here; these functions
only put the catalog's calls together and return JSON-ready values."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import Session

from api.context import ApiContext
from catalog import attach as A
from catalog import cases as C
from catalog import retention as R
from catalog.models import CustodyEvent, Derivative, LegalHold, Recording
from config.timetext import iso_time

if TYPE_CHECKING:
    from access.policy import Principal


def recording(ctx: ApiContext, rec_id: int, session: Session | None = None) -> dict[str, Any]:
    """What `liuhen show --json` prints, with the retention decision (``session``: the
    caller's, which may hold the recording's rows already; else one of its own)."""
    if session is None:
        with ctx.catalog.session() as s:
            return recording(ctx, rec_id, s)
    from catalog.media import recording_report
    from ingest.identity import NameParser

    parser = NameParser(ctx.settings.ingest.filename_patterns, ctx.settings.ingest.important_marker)
    rec = get_recording(session, rec_id)
    # Without the custody history: its own endpoint, with paging.
    report = recording_report(session, rec, parser, custody=False)
    del report["custody"]
    report["retention"] = R.explain(session, rec, ctx.settings.retention).as_dict()
    report["holds"] = [_hold(h, ctx) for h in _holds(session, rec.id)]
    return report


def get_recording(session: Any, rec_id: int) -> Recording:
    """The recording by id; RecordingNotFound (404) with the CLI's words otherwise. (Not
    ``attach.get_recording``: there a number of 6 digits reads as a digest prefix.)"""
    rec: Recording | None = session.get(Recording, rec_id) if 0 < rec_id < 2**31 else None
    if rec is None:
        raise A.RecordingNotFound(
            f"no recording matches {str(rec_id)!r}",
            hint="give a recording id, at least 6 hex digits of its SHA-256 or SM3, "
            "or its file name",
        )
    return rec


def custody(
    ctx: ApiContext,
    rec_id: int,
    *,
    after: int,
    limit: int,
    with_access: bool,
    objects: list[str] | None = None,
) -> dict[str, Any]:
    """The custody events of the recording and its derivatives, oldest first, paged by
    event id; ``with_access``: its access events too (who viewed, played, downloaded:
    for the auditors only). ``objects``: the events' object ids (the recording's SHA-256
    and id, its derivatives' SHA-256) when the caller has just read them."""
    from catalog.custody import not_access

    with ctx.catalog.session() as s:
        ids = objects
        if ids is None:
            rec = get_recording(s, rec_id)
            ids = [rec.sha256, str(rec.id)]
            ids += list(
                s.scalars(select(Derivative.sha256).where(Derivative.recording_id == rec.id))
            )
        rows = list(
            s.scalars(
                select(CustodyEvent)
                .where(CustodyEvent.object_id.in_(ids), CustodyEvent.id > after)
                .where(true() if with_access else not_access())
                .order_by(CustodyEvent.id)
                .limit(limit + 1)
            )
        )
    events = [_event(e) for e in rows[:limit]]
    return {"events": events, "next_after": rows[limit - 1].id if len(rows) > limit else None}


def _event(e: CustodyEvent) -> dict[str, Any]:
    import json

    return {
        "id": e.id,
        "station": e.station_id,
        "seq": e.seq,
        "at": e.at,
        "actor": e.actor,
        "action": e.action,
        "object_type": e.object_type,
        "object_id": e.object_id,
        "details": json.loads(e.details),
        "event_hash": e.event_hash,
    }


def _holds(session: Any, rec_id: int) -> list[LegalHold]:
    return list(
        session.scalars(
            select(LegalHold).where(LegalHold.recording_id == rec_id).order_by(LegalHold.id)
        )
    )


def _hold(h: LegalHold, ctx: ApiContext) -> dict[str, Any]:
    return {
        "id": h.id,
        "reason": h.reason,
        "placed_by": h.placed_by,
        "placed_at": iso_time(h.placed_at, ctx.zone),
        "released_at": iso_time(h.released_at, ctx.zone),
        "released_by": h.released_by,
        "release_reason": h.release_reason,
    }


def holds(ctx: ApiContext, rec_id: int) -> list[dict[str, Any]]:
    with ctx.catalog.session() as s:
        rec = get_recording(s, rec_id)
        return [_hold(h, ctx) for h in _holds(s, rec.id)]


def place_hold(ctx: ApiContext, rec_id: int, *, reason: str, actor: str) -> dict[str, Any]:
    with ctx.catalog.transaction() as s:
        rec = get_recording(s, rec_id)
        row = R.hold(s, ctx.signer, ctx.store, rec, reason=reason, actor=actor)
        return _hold(row, ctx)


def release_hold(
    ctx: ApiContext, rec_id: int, hold_id: int, *, reason: str, actor: str
) -> dict[str, Any]:
    with ctx.catalog.transaction() as s:
        rec = get_recording(s, rec_id)
        row = R.release(s, ctx.signer, ctx.store, rec, reason=reason, actor=actor, hold_id=hold_id)
        return _hold(row, ctx)


def derivative(ctx: ApiContext, rec_id: int, kind: str) -> tuple[Recording, Derivative | None]:
    """The recording and its derivative of ``kind`` (None when not made)."""
    with ctx.catalog.session() as s:
        rec = get_recording(s, rec_id)
        d = s.scalars(
            select(Derivative).where(Derivative.recording_id == rec.id, Derivative.kind == kind)
        ).first()
        s.expunge(rec)
        if d is not None:
            s.expunge(d)
        return rec, d


# -- cases -----------------------------------------------------------------------------


def list_cases(
    ctx: ApiContext, status: str | None, *, scope: ColumnElement[bool] | None
) -> list[dict[str, Any]]:
    """`liuhen case list`, narrowed to the cases ``scope`` (the access policy) lets the
    caller see."""
    with ctx.catalog.session() as s:
        return C.list_cases(s, status, scope=scope)


def case_report(ctx: ApiContext, number: str) -> dict[str, Any]:
    with ctx.catalog.session() as s:
        return C.case_report(s, number)


def create_case(ctx: ApiContext, *, actor: str, allow_similar: bool, **fields: str) -> str:
    with ctx.catalog.transaction() as s:
        case = C.create_case(
            s,
            ctx.signer,
            actor=actor,
            allow_similar=allow_similar,
            **fields,
        )
        return case.number


def update_case(
    ctx: ApiContext, number: str, *, reason: str, actor: str, values: dict[str, str | None]
) -> dict[str, list[str]]:
    with ctx.catalog.transaction() as s:
        case, changes = C.update_case(s, ctx.signer, number, reason=reason, actor=actor, **values)
        if "retention" in changes:
            R.sync_cases_store_retention(s, ctx.store, [case.id], ctx.settings.retention)
        return changes


def close_case(ctx: ApiContext, number: str, *, reason: str, actor: str) -> None:
    with ctx.catalog.transaction() as s:
        case = C.close_case(s, ctx.signer, number, reason=reason, actor=actor)
        R.sync_cases_store_retention(s, ctx.store, [case.id], ctx.settings.retention)


def reopen_case(ctx: ApiContext, number: str, *, reason: str, actor: str) -> None:
    with ctx.catalog.transaction() as s:
        C.reopen_case(s, ctx.signer, number, reason=reason, actor=actor)


def add_action(
    ctx: ApiContext,
    number: str,
    *,
    external_id: str,
    officers: tuple[str, ...],
    start: datetime,
    end: datetime,
    place: str,
    actor: str,
    only: ColumnElement[bool] | None = None,
) -> int:
    """Record the action and attach the recordings it matches (of those ``only`` lets
    through: the caller's reach); how many were attached."""
    with ctx.catalog.transaction() as s:
        action, _ = C.add_action(
            s,
            ctx.signer,
            case=C.get_case(s, number),
            external_id=external_id,
            officers=officers,
            start=start,
            end=end,
            place=place,
            actor=actor,
        )
        return A.attach_for_actions(
            s,
            ctx.signer,
            [action.id],
            policy=ctx.settings.retention,
            actor=actor,
            store=ctx.store,
            only=only,
        )


def import_cases(
    ctx: ApiContext, name: str, data: bytes, *, actor: str, principal: Principal
) -> dict[str, Any]:
    """Cases and actions from a case-management export, as `liuhen case import`: rows of
    cases the principal may not change are refused, and only recordings it may see are
    attached by rule."""
    from pathlib import Path

    from access.policy import may_change_case, recording_scope
    from access.roles import Permission
    from catalog.case_intake import import_and_attach

    with ctx.catalog.transaction() as s:
        report = import_and_attach(
            s,
            ctx.signer,
            ctx.store,
            ctx.settings.retention,
            Path(name),
            actor=actor,
            zone=ctx.zone,
            data=data,
            may_change=lambda number, unit: may_change_case(s, principal, number, unit),
            attachable=recording_scope(principal, Permission.CASE_ATTACH),
        )
    return report.as_dict()


def attach(ctx: ApiContext, number: str, rec_id: int, *, reason: str, actor: str) -> bool:
    with ctx.catalog.transaction() as s:
        rec = get_recording(s, rec_id)
        return A.attach_manual(
            s,
            ctx.signer,
            case_number=number,
            rec=rec,
            reason=reason,
            actor=actor,
            policy=ctx.settings.retention,
            store=ctx.store,
        )


def detach(
    ctx: ApiContext, number: str, rec_id: int, *, reason: str, actor: str, force: bool
) -> dict[str, Any]:
    with ctx.catalog.transaction() as s:
        rec = get_recording(s, rec_id)
        return A.detach(
            s,
            ctx.signer,
            case_number=number,
            rec=rec,
            reason=reason,
            actor=actor,
            force_exported=force,
        )


def case_summary(ctx: ApiContext, number: str) -> dict[str, Any]:
    """The case's row as `case list` shows it, and its retention end."""
    with ctx.catalog.session() as s:
        case = C.get_case(s, number)
        return {
            "number": case.number,
            "status": case.status,
            "retention": case.retention,
            "closed_at": iso_time(case.closed_at, ctx.zone),
            "keep_until": iso_time(R.case_keep_until(case), ctx.zone),
        }
