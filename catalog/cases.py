"""Cases and their enforcement actions, as the enforcement unit numbers and records them.

Case numbers are kept exactly as written (Unicode, e.g. 沪徐市监罚〔2026〕123号), after
Unicode NFC normalisation and trimming, so the same number typed on two systems is
one case.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog.custody import append_event
from catalog.devices import check_officer_number, ensure_officer
from catalog.errors import CatalogError
from catalog.fields import fields_problems, shown
from catalog.models import (
    ActionOfficer,
    Case,
    CaseRecording,
    EnforcementAction,
    Officer,
    Recording,
    utcnow,
)
from catalog.signing import Signer
from config.errors import EXIT_NOINPUT

STATUSES = ("open", "closed", "archived")
# 保管期限: archival retention periods (永久 permanent, 定期30年, 定期10年).
RETENTIONS = ("永久", "30年", "10年")
RETENTION_ALIASES = {
    "permanent": "永久",
    "定期30年": "30年",
    "30y": "30年",
    "30": "30年",
    "定期10年": "10年",
    "10y": "10年",
    "10": "10年",
}


class CaseError(CatalogError):
    """A case or action request that cannot be taken as given."""


class CaseNotFound(CatalogError):
    exit_code = EXIT_NOINPUT


def normalize_number(number: str) -> str:
    return unicodedata.normalize("NFC", number).strip()


def normalize_retention(value: str) -> str:
    value = value.strip()
    return RETENTION_ALIASES.get(value.lower(), value)


def case_problems(
    number: str,
    status: str,
    retention: str,
    *,
    title: str = "",
    unit: str = "",
    security_class: str = "",
) -> list[str]:
    """Every reason a case cannot be stored as given."""
    problems = []
    if not number:
        problems.append("case number is empty")
    elif any(not c.isprintable() for c in number):
        problems.append(f"case number {shown(number)!r} holds control characters")
    problems += fields_problems(
        {
            "case number": (number, Case.number),
            "title": (title, Case.title),
            "unit": (unit, Case.unit),
            "security class (密级)": (security_class, Case.security_class),
        }
    )
    if status not in STATUSES:
        problems.append(f"status {shown(status)!r} is not one of {', '.join(STATUSES)}")
    if retention not in RETENTIONS:
        problems.append(f"retention {shown(retention)!r} is not one of {', '.join(RETENTIONS)}")
    return problems


def action_problems(
    external_id: str,
    officers: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    *,
    place: str = "",
    times_required: bool = True,
) -> list[str]:
    """Every reason an action cannot be stored as given. ``times_required=False`` when the
    caller has already reported times it could not read (one reason, not two)."""
    problems = []
    if not external_id:
        problems.append("action id is empty")
    problems += fields_problems(
        {
            "action id": (external_id, EnforcementAction.external_id),
            "place": (place, EnforcementAction.place),
        }
    )
    if not officers:
        problems.append("action has no officers")
    problems += [p for o in officers if (p := check_officer_number(o))]
    if start is None or end is None:
        if times_required:
            problems.append("action start and end are both required")
    elif end < start:
        problems.append(f"action ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    return problems


def get_case(session: Session, number: str) -> Case:
    number = normalize_number(number)
    case = session.scalars(select(Case).where(Case.number == number)).first()
    if case is None:
        raise CaseNotFound(
            f"no case {number!r}", hint="list cases with 'liuhen case list', or create it"
        )
    return case


def create_case(
    session: Session,
    signer: Signer,
    *,
    number: str,
    title: str = "",
    unit: str = "",
    status: str = "open",
    retention: str = "永久",
    security_class: str = "",
    actor: str,
    source: str = "manual",
) -> Case:
    number = normalize_number(number)
    retention = normalize_retention(retention)
    if problems := case_problems(
        number, status, retention, title=title, unit=unit, security_class=security_class
    ):
        raise CaseError("; ".join(problems), hint="correct the case and run it again")
    if session.scalars(select(Case.id).where(Case.number == number)).first() is not None:
        raise CaseError(f"case {number!r} already exists", hint=f"liuhen case show '{number}'")
    case = Case(
        number=number,
        title=title,
        unit=unit,
        status=status,
        retention=retention,
        security_class=security_class,
        source=source,
        closed_at=utcnow() if status != "open" else None,
    )
    session.add(case)
    session.flush()
    append_event(
        session,
        signer,
        actor=actor,
        action="case-created",
        object_type="case",
        object_id=number,
        details={
            "title": title,
            "unit": unit,
            "status": status,
            "retention": retention,
            "security_class": security_class,
            "source": source,
        },
    )
    return case


def add_action(
    session: Session,
    signer: Signer,
    *,
    case: Case,
    external_id: str,
    officers: Sequence[str],
    start: datetime,
    end: datetime,
    place: str = "",
    actor: str,
) -> tuple[EnforcementAction, bool]:
    """Record an enforcement action; the same action again changes nothing."""
    if problems := action_problems(external_id, officers, start, end, place=place):
        raise CaseError("; ".join(problems), hint="correct the action and run it again")
    existing = session.scalars(
        select(EnforcementAction).where(
            EnforcementAction.case_id == case.id, EnforcementAction.external_id == external_id
        )
    ).first()
    officer_ids = {ensure_officer(session, o).id for o in officers}
    if existing is not None:
        current = set(
            session.scalars(
                select(ActionOfficer.officer_id).where(ActionOfficer.action_id == existing.id)
            )
        )
        if (existing.start, existing.end, existing.place, current) == (
            start,
            end,
            place,
            officer_ids,
        ):
            return existing, False
        raise CaseError(
            f"case {case.number}: action {external_id!r} exists with other values",
            hint="import the case-management export to update actions",
        )
    action = EnforcementAction(
        case_id=case.id, external_id=external_id, start=start, end=end, place=place
    )
    session.add(action)
    session.flush()
    session.add_all(ActionOfficer(action_id=action.id, officer_id=o) for o in officer_ids)
    session.flush()
    append_event(
        session,
        signer,
        actor=actor,
        action="action-recorded",
        object_type="case",
        object_id=case.number,
        details={
            "action": external_id,
            "officers": sorted(officers),
            "start": start.isoformat(),
            "end": end.isoformat(),
            "place": place,
        },
    )
    return action, True


def list_cases(session: Session, status: str | None = None) -> list[dict[str, Any]]:
    query = select(Case).order_by(Case.number)
    if status:
        query = query.where(Case.status == status)
    cases = list(session.scalars(query))
    counts: dict[int, int] = {
        case_id: n
        for case_id, n in session.execute(
            select(CaseRecording.case_id, func.count())
            .where(CaseRecording.detached_at.is_(None))
            .group_by(CaseRecording.case_id)
        )
    }
    return [
        {
            "number": c.number,
            "title": c.title,
            "unit": c.unit,
            "status": c.status,
            "retention": c.retention,
            "security_class": c.security_class,
            "recordings": counts.get(c.id, 0),
        }
        for c in cases
    ]


def case_report(session: Session, number: str) -> dict[str, Any]:
    """Everything `liuhen case show` prints: the case, its actions, and its recordings with
    digests, times, officer and why each is attached (which rule, or who)."""
    case = get_case(session, number)
    # Three queries whatever the size of the case (actions with their officers, and
    # recordings with theirs), not one per row.
    crew: dict[int, list[str]] = {}
    for action_id, officer_number in session.execute(
        select(ActionOfficer.action_id, Officer.number)
        .join(Officer, Officer.id == ActionOfficer.officer_id)
        .join(EnforcementAction, EnforcementAction.id == ActionOfficer.action_id)
        .where(EnforcementAction.case_id == case.id)
    ):
        crew.setdefault(action_id, []).append(officer_number)
    actions = [
        {
            "id": a.external_id,
            "start": a.start.isoformat(),
            "end": a.end.isoformat(),
            "place": a.place,
            "officers": sorted(crew.get(a.id, [])),
        }
        for a in session.scalars(
            select(EnforcementAction)
            .where(EnforcementAction.case_id == case.id)
            .order_by(EnforcementAction.start)
        )
    ]
    recordings = []
    history = []
    rows = session.execute(
        select(CaseRecording, Recording, Officer.number)
        .join(Recording, Recording.id == CaseRecording.recording_id)
        .outerjoin(Officer, Officer.id == Recording.officer_id)
        .where(CaseRecording.case_id == case.id)
        .order_by(Recording.captured_at, Recording.id)
    )
    for cr, rec, officer_number in rows:
        entry = {
            "recording": rec.id,
            "name": rec.original_name,
            "state": rec.state,
            "sha256": rec.sha256,
            "sm3": rec.sm3,
            "size": rec.size,
            "capture_start": rec.captured_at.isoformat() if rec.captured_at else None,
            "capture_end": rec.capture_end.isoformat() if rec.capture_end else None,
            "officer": officer_number,
            "method": cr.method,
            "why": attachment_reason(cr),
            "attached_at": cr.attached_at.isoformat(),
            "attached_by": cr.actor,
        }
        if cr.detached_at is None:
            recordings.append(entry)
        else:
            history.append(
                entry
                | {
                    "detached_at": cr.detached_at.isoformat(),
                    "detached_by": cr.detached_by,
                    "detach_reason": cr.detach_reason,
                }
            )
    return {
        "number": case.number,
        "title": case.title,
        "unit": case.unit,
        "status": case.status,
        "retention": case.retention,
        "security_class": case.security_class,
        "source": case.source,
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
        "actions": actions,
        "recordings": recordings,
        "detached": history,
    }


def attachment_reason(cr: CaseRecording) -> str:
    if cr.method == "rule":
        rule = cr.rule or {}
        return (
            f"rule: officer {rule.get('officer')} in action(s) "
            f"{', '.join(rule.get('actions', []))} ± {rule.get('margin_s')} s"
        )
    return f"by hand: {cr.actor}: {cr.reason}"
