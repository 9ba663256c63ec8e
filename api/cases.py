"""``/api/v1/cases``: cases and their enforcement actions (list, detail, create, update,
close, reopen, import) and attaching or detaching recordings by hand, with a reason."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query

from access.policy import Target, recording_scope
from access.roles import Permission
from api import services
from api.auth import Caller, caller
from api.errors import ApiError
from api.models import (
    ERRORS,
    ActionCreate,
    AttachBody,
    CaseCreate,
    CaseImport,
    CaseUpdate,
    DetachBody,
    ReasonBody,
)
from config.i18n import _
from config.timetext import TimeTextError, parse_instant

router = APIRouter(prefix="/cases", tags=["cases"], responses=ERRORS)
Who = Annotated[Caller, Depends(caller)]
Number = Annotated[
    str,
    Path(
        min_length=1,
        max_length=200,
        description="The case number as written (URL-encoded), e.g. 沪徐市监罚〔2026〕123号.",
    ),
]


@router.get("", summary="List cases")
def list_cases(
    who: Who, status: Annotated[Literal["open", "closed", "archived"] | None, Query()] = None
) -> list[dict[str, Any]]:
    """Cases, with how many recordings each holds."""
    who.authorize("case.view")
    return services.list_cases(who.ctx, status, scope=who.case_scope())


@router.post("", status_code=201, summary="Create a case")
def create_case(who: Who, body: CaseCreate) -> dict[str, Any]:
    who.authorize("case.change")
    # A case of a unit: that unit's roles, or one reaching all units (as the CLI).
    who.authorize(
        "case.change",
        Target("unit", body.unit, unit=body.unit) if body.unit else Target("district"),
    )
    number = services.create_case(
        who.ctx,
        actor=who.actor,
        allow_similar=body.allow_similar,
        number=body.number,
        title=body.title,
        unit=body.unit,
        status=body.status,
        retention=body.retention,
        security_class=body.security_class,
    )
    return {"number": number}


@router.post("/import", summary="Import cases and actions")
def import_cases(who: Who, body: CaseImport) -> dict[str, Any]:
    """A case-management export (CSV or JSON, as `liuhen case import` reads it): the
    good rows land, the refused ones are listed in ``errors``; matching recordings are
    attached by rule."""
    who.authorize("case.change")
    return services.import_cases(
        who.ctx, body.name, body.content.encode("utf-8"), actor=who.actor, principal=who.principal
    )


@router.get("/{number}", summary="One case")
def case_detail(who: Who, number: Number) -> dict[str, Any]:
    """The case, its actions and its recordings with digests, times, officer and why
    each is attached."""
    who.authorize("case.view", who.case_target(number))
    report = services.case_report(who.ctx, number)
    who.audit("access.view", "case", report["number"])
    return report


@router.patch("/{number}", summary="Change a case")
def update_case(who: Who, number: Number, body: CaseUpdate) -> dict[str, Any]:
    """Title, unit, retention or 密级 (null: unchanged); returns what changed."""
    who.authorize("case.change", who.case_target(number))
    values = body.model_dump(exclude={"reason"})
    changes = services.update_case(
        who.ctx, number, reason=body.reason, actor=who.actor, values=values
    )
    return {"changes": changes}


@router.post("/{number}/close", summary="Close a case")
def close_case(who: Who, number: Number, body: ReasonBody) -> dict[str, Any]:
    """Its 30年/10年 retention runs from now."""
    who.authorize("case.change", who.case_target(number))
    services.close_case(who.ctx, number, reason=body.reason, actor=who.actor)
    return services.case_summary(who.ctx, number)


@router.post("/{number}/reopen", summary="Reopen a case")
def reopen_case(who: Who, number: Number, body: ReasonBody) -> dict[str, Any]:
    who.authorize("case.change", who.case_target(number))
    services.reopen_case(who.ctx, number, reason=body.reason, actor=who.actor)
    return services.case_summary(who.ctx, number)


@router.post("/{number}/actions", status_code=201, summary="Record an enforcement action")
def add_action(who: Who, number: Number, body: ActionCreate) -> dict[str, Any]:
    """Times as people type them, in the station's zone; the recordings it matches are
    attached by rule."""
    who.authorize("case.change", who.case_target(number))
    start, end = _instant(body.start, "start", who), _instant(body.end, "end", who)
    attached = services.add_action(
        who.ctx,
        number,
        external_id=body.id,
        officers=tuple(body.officers),
        start=start,
        end=end,
        place=body.place,
        actor=who.actor,
        only=recording_scope(who.principal, Permission.CASE_ATTACH),
    )
    return {"action": body.id, "attached": attached}


def _instant(text: str, name: str, who: Caller) -> Any:
    try:
        return parse_instant(text, who.ctx.zone)
    except TimeTextError as exc:
        raise ApiError(f"{name}: {exc}", hint=_("e.g. 2026-12-01 07:00")) from exc


@router.post("/{number}/attach", summary="Attach a recording")
def attach(who: Who, number: Number, body: AttachBody) -> dict[str, Any]:
    who.authorize("case.attach", who.case_target(number))
    # The recording must be within reach too, as `liuhen case attach` checks it: by the
    # attach permission, which an integration's token holds (not recording.view).
    who.authorize("case.attach", who.recording_target(body.recording))
    changed = services.attach(who.ctx, number, body.recording, reason=body.reason, actor=who.actor)
    who.audit("access.attach", "recording", body.recording, case=number, reason=body.reason)
    return {"recording": body.recording, "case": number, "changed": changed}


@router.post("/{number}/detach", summary="Detach a recording")
def detach(who: Who, number: Number, body: DetachBody) -> dict[str, Any]:
    """The rule will not attach it again; a recording already exported needs
    ``force_exported`` (the override is recorded)."""
    who.authorize("case.attach", who.case_target(number))
    details = services.detach(
        who.ctx,
        number,
        body.recording,
        reason=body.reason,
        actor=who.actor,
        force=body.force_exported,
    )
    who.audit("access.detach", "recording", body.recording, case=number, reason=body.reason)
    return {"recording": body.recording, "case": number, **details}
