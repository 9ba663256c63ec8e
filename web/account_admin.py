"""What the users page does that the HTTP API has no endpoint for: the forced logout
and case grants (the security administrator's). The same functions as `liuhen user
logout` and `liuhen user case grant|revoke` (``access.sessions.revoke_sessions``,
``access.grants``), authorized by the policy and audited with the command line's
actions and details (``access.logout`` forced, ``access.grant_change``).

Adding users, their states and roles are ``api.users``' handlers, called as they are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api.auth import Caller
from api.errors import ApiError
from config.i18n import _
from config.timetext import TimeTextError, parse_instant


def _not_self(who: Caller, login: str) -> None:
    """No one ends their own sessions or grants themselves cases: another
    administrator must (as ``api.users`` and the command line refuse)."""
    if who.principal.login == login:
        raise ApiError(
            _("you may not change your own account's roles or state"),
            hint=_("another administrator must do it"),
            status=403,
        )


def force_logout(who: Caller, login: str) -> int:
    """End every session of ``login`` now; returns how many ended."""
    from access.accounts import get_user
    from access.sessions import revoke_sessions

    who.authorize("session.revoke")
    _not_self(who, login)
    with who.ctx.catalog.transaction() as s:
        ended = revoke_sessions(s, get_user(s, login).id, actor=who.actor)
    who.audit("access.logout", "user", login, forced=True, sessions=ended)
    return ended


def _instant(text: str, label: str, who: Caller) -> datetime:
    try:
        return parse_instant(text, who.ctx.zone)
    except TimeTextError as exc:
        raise ApiError(
            _("{label}: {problem}").format(label=label, problem=exc),
            hint=_("write e.g. 2026-12-01 08:00 (station time)"),
            status=422,
        ) from exc


def grant_case_to(
    who: Caller, login: str, number: str, starts: str, ends: str, reason: str
) -> dict[str, Any]:
    """Let ``login`` reach case ``number`` and its recordings with their roles for
    ``[starts, ends)`` (station time; ``starts`` empty: now). Returns the grant."""
    from access.accounts import get_user
    from access.grants import grant_case
    from catalog.models import Case

    who.authorize("role.admin")
    _not_self(who, login)
    start = _instant(starts, _("Valid from"), who) if starts.strip() else datetime.now(UTC)
    if not ends.strip():
        raise ApiError(
            _("give the end of the grant"), hint=_("a grant is for a period"), status=422
        )
    end = _instant(ends, _("Valid until"), who)
    with who.ctx.catalog.transaction() as s:
        grant = grant_case(
            s,
            get_user(s, login),
            number.strip(),
            starts_at=start,
            ends_at=end,
            reason=reason.strip(),
            actor=who.actor,
        )
        case = s.get(Case, grant.case_id)
        case_number = case.number if case is not None else number
    who.audit(
        "access.grant_change",
        "user",
        login,
        case=case_number,
        starts_at=start.isoformat(),
        ends_at=end.isoformat(),
        reason=reason.strip(),
    )
    return {"login": login, "case": case_number, "starts_at": start, "ends_at": end}


def end_case_grants(who: Caller, login: str, number: str) -> int:
    """End ``login``'s grants of case ``number`` now; returns how many ended."""
    from access.accounts import get_user
    from access.grants import revoke_case_grants

    who.authorize("role.admin")
    with who.ctx.catalog.transaction() as s:
        ended = revoke_case_grants(s, get_user(s, login), number, actor=who.actor)
    who.audit("access.grant_change", "user", login, case=number, revoked=ended)
    return ended


def grants(who: Caller) -> list[dict[str, Any]]:
    """Every case grant (``access.grants.list_grants``), the current ones marked."""
    from access.grants import list_grants

    now = datetime.now(UTC)
    with who.ctx.catalog.session() as s:
        rows = list_grants(s)
    for r in rows:
        ends = r["ends_at"] if r["ends_at"].tzinfo else r["ends_at"].replace(tzinfo=UTC)
        r["current"] = r["revoked_at"] is None and ends > now
    return rows


def live_session_counts(who: Caller) -> dict[int, int]:
    """How many live sessions each user has (user id → count)."""
    from sqlalchemy import func, select

    from catalog.access_models import UserSession

    now = datetime.now(UTC)  # as access.sessions.live_sessions compares
    with who.ctx.catalog.session() as s:
        rows = s.execute(
            select(UserSession.user_id, func.count())
            .where(UserSession.revoked_at.is_(None), UserSession.expires_at > now)
            .group_by(UserSession.user_id)
        ).all()
    return {int(uid): int(n) for uid, n in rows}
