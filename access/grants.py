"""Time-limited case grants: a case given to a named user for a period (e.g. an outside
法制审核 reviewer), so that the user's roles reach that case and its recordings
whatever the user's unit. The policy reads them (access.policy.grants_of)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access.accounts import AccountError
from catalog.access_models import CaseGrant, User
from catalog.cases import get_case
from config.i18n import _


def grant_case(
    session: Session,
    user: User,
    case_number: str,
    *,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    actor: str,
    now: datetime | None = None,
) -> CaseGrant:
    """Give ``user`` the case for ``[starts_at, ends_at)``; a reason is required."""
    if ends_at <= starts_at:
        raise AccountError(_("the grant must end after it starts"))
    if not reason.strip():
        raise AccountError(_("a case grant needs a reason (--reason)"))
    case = get_case(session, case_number)
    grant = CaseGrant(
        user_id=user.id,
        case_id=case.id,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        granted_by=actor,
        granted_at=now or datetime.now(UTC),
    )
    session.add(grant)
    session.flush()
    return grant


def revoke_case_grants(
    session: Session, user: User, case_number: str, *, actor: str, now: datetime | None = None
) -> int:
    """End every unrevoked grant of the case to the user now; returns how many."""
    case = get_case(session, case_number)
    rows = session.scalars(
        select(CaseGrant).where(
            CaseGrant.user_id == user.id,
            CaseGrant.case_id == case.id,
            CaseGrant.revoked_at.is_(None),
        )
    ).all()
    for row in rows:
        row.revoked_at = now or datetime.now(UTC)
        row.revoked_by = actor
    session.flush()
    return len(rows)


def list_grants(session: Session, user: User | None = None) -> list[dict[str, Any]]:
    from catalog.models import Case

    query = (
        select(CaseGrant, User.login, Case.number)
        .join(User, User.id == CaseGrant.user_id)
        .join(Case, Case.id == CaseGrant.case_id)
        .order_by(CaseGrant.id)
    )
    if user is not None:
        query = query.where(CaseGrant.user_id == user.id)
    return [
        {
            "login": login,
            "case": number,
            "starts_at": g.starts_at,
            "ends_at": g.ends_at,
            "reason": g.reason,
            "granted_by": g.granted_by,
            "revoked_at": g.revoked_at,
        }
        for g, login, number in session.execute(query).all()
    ]
