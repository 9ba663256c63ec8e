"""Server-side sessions and API tokens (issue 15, point 3).

A session is a row of ``sessions``: revocable, ending ``session_idle_minutes`` after
its last use and ``session_absolute_hours`` after login, whichever comes first; the
security administrator can end every session of a user (forced logout). Its secret
(32 random bytes) is given to the client once and kept only as its SHA-256.

An API token is for an integration (a case-management system pushing cases): scoped to
one role and one unit, never an administrator role (those need a second factor), with
an expiry, shown once and kept as its SHA-256. A 32-byte random secret needs no slow
hash: it cannot be guessed from its digest.

Every look-up reads the session, its user and the user's roles again (one indexed query,
nothing cached):
a revoked session, a role taken away, a lock or a disabled account counts from the next
request on. What is not written on every request is the time of last use: a request
only reads, unless ``LAST_USE_STEP`` has passed since the recorded last use (a write and
a commit per request cost more than the search it authenticates). The idle end is
therefore counted from a last use at most that step older than the real one: a session
may end up to ``LAST_USE_STEP`` early, never late.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from access.accounts import ACTIVE, AccountError, principal_of, role_set
from access.policy import EXIT_NOPERM, Principal
from access.roles import ADMIN_ROLES, ROLE_TITLES, Role
from catalog.access_models import ApiToken, User, UserRole, UserSession
from catalog.fields import column_length, limit_problems
from config.errors import EXIT_NOINPUT, LiuhenError
from config.i18n import _
from config.settings import CHINA_STANDARD_TIME, AccessSettings
from config.timetext import show_time

TOKEN_PREFIX = "lht_"  # recognisable in a leaked file or a secret scanner
SESSION_PREFIX = "lhs_"
# How stale the recorded last use of a session or token may be (see the module's notes).
LAST_USE_STEP: Final = timedelta(seconds=60)


class SessionExpired(LiuhenError):
    """A session or token that ended, was revoked, or never existed: log in again."""

    exit_code = EXIT_NOPERM


class TokenNotFound(LiuhenError):
    exit_code = EXIT_NOINPUT


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _login_again(message: str) -> SessionExpired:
    return SessionExpired(message, hint=_("log in again (liuhen login)"))


def open_session(
    session: Session,
    principal: Principal,
    *,
    source: str | None = None,
    now: datetime | None = None,
    policy: AccessSettings | None = None,
) -> str:
    """A new session of the principal's user; returns its secret (shown only now)."""
    if principal.user_id is None:
        raise ValueError("only a user's principal has a session")
    policy = policy or AccessSettings()
    when = _now(now)
    secret = SESSION_PREFIX + secrets.token_urlsafe(32)
    session.add(
        UserSession(
            id=secrets.token_hex(16),
            secret_hash=digest(secret),
            user_id=principal.user_id,
            created_at=when,
            last_seen_at=when,
            expires_at=when + timedelta(hours=policy.session_absolute_hours),
            source=(source or "")[:200],
        )
    )
    session.flush()
    return secret


def _end(row: UserSession, why: str, when: datetime) -> None:
    row.revoked_at = when
    row.revoked_by = why


def principal_for_session(
    session: Session,
    secret: str,
    *,
    now: datetime | None = None,
    policy: AccessSettings | None = None,
    touch: bool = True,
) -> Principal:
    """The principal of a live session, its last use moved to now (when the recorded one
    is ``LAST_USE_STEP`` old; not with ``touch=False``: a screen polling by itself is not
    a person using the session, and must not keep it from its idle timeout); otherwise
    :class:`SessionExpired` (the session is ended for good: idle, past its absolute end,
    revoked, or its user locked or disabled). Commit the session after."""
    policy = policy or AccessSettings()
    when = _now(now)
    # One statement: a row per role of the user (one row, role None, for a user without).
    found = session.execute(
        select(UserSession, User, UserRole.role)
        .outerjoin(User, User.id == UserSession.user_id)
        .outerjoin(UserRole, UserRole.user_id == User.id)
        .where(UserSession.secret_hash == digest(secret))
    ).all()
    if not found or found[0].UserSession.revoked_at is not None:
        raise _login_again(_("the session has ended or was revoked"))
    row, user = found[0].UserSession, found[0].User
    idle = timedelta(minutes=policy.session_idle_minutes)
    if when >= row.expires_at:
        _end(row, "absolute timeout", when)
        session.commit()  # the end stays recorded whatever the caller does with the error
        raise _login_again(
            _("the session ended {hours} hours after login").format(
                hours=policy.session_absolute_hours
            )
        )
    if when - row.last_seen_at >= idle:
        _end(row, "idle timeout", when)
        session.commit()
        raise _login_again(
            _("the session ended after {minutes} minutes unused").format(
                minutes=policy.session_idle_minutes
            )
        )
    if user is None or user.state != ACTIVE:
        _end(row, "account not active", when)
        session.commit()
        raise _login_again(_("the account is locked or disabled"))
    if touch and when - row.last_seen_at >= LAST_USE_STEP:
        row.last_seen_at = when
        session.flush()
    roles = role_set(f.role for f in found)
    return principal_of(
        session, user, via="session", policy=policy, session_id=row.id, now=when, roles=roles
    )


def close_session(session: Session, secret: str, *, now: datetime | None = None) -> None:
    """Log out: the session ends now (no error when it had ended already)."""
    row = session.scalar(select(UserSession).where(UserSession.secret_hash == digest(secret)))
    if row is not None and row.revoked_at is None:
        _end(row, "logout", _now(now))
        session.flush()


def revoke_sessions(
    session: Session, user_id: int, *, actor: str = "", now: datetime | None = None
) -> int:
    """Forced logout: end every live session of the user; returns how many."""
    done = session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(
            revoked_at=_now(now), revoked_by=(f"revoked by {actor}" if actor else "revoked")[:200]
        )
    )
    return int(getattr(done, "rowcount", 0) or 0)


def live_sessions(
    session: Session, user_id: int, *, now: datetime | None = None
) -> list[UserSession]:
    when = _now(now)
    return list(
        session.scalars(
            select(UserSession).where(
                UserSession.user_id == user_id,
                UserSession.revoked_at.is_(None),
                UserSession.expires_at > when,
            )
        )
    )


# --- API tokens ------------------------------------------------------------------------


def token_problems(
    name: str, role: Role, unit: str, expires_at: datetime, policy: AccessSettings, now: datetime
) -> list[str]:
    problems = limit_problems(_("token name"), name, column_length(ApiToken.name) or 100)
    if not name.strip():
        problems.append(_("the token needs a name"))
    problems += limit_problems(_("unit"), unit, column_length(ApiToken.unit) or 200)
    if role in ADMIN_ROLES:
        problems.append(
            _(
                "a token may not hold the {role} role (administrators log in with two factors)"
            ).format(role=_(ROLE_TITLES[role]))
        )
    if expires_at <= now:
        problems.append(_("the expiry is in the past"))
    elif expires_at > now + timedelta(days=policy.token_max_days):
        problems.append(
            _("the expiry is more than {days} days away (access.token_max_days)").format(
                days=policy.token_max_days
            )
        )
    return problems


def issue_token(
    session: Session,
    *,
    name: str,
    role: Role,
    unit: str,
    expires_at: datetime,
    created_by: str,
    now: datetime | None = None,
    policy: AccessSettings | None = None,
) -> str:
    """A new API token; returns its secret (shown only now)."""
    policy = policy or AccessSettings()
    when = _now(now)
    problems = token_problems(name, Role(role), unit, expires_at, policy, when)
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        problems.append(_("a token named {name!r} exists").format(name=name))
    if problems:
        raise AccountError("; ".join(problems))
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            name=name,
            secret_hash=digest(secret),
            role=Role(role).value,
            unit=unit,
            created_by=created_by,
            created_at=when,
            expires_at=expires_at,
        )
    )
    session.flush()
    return secret


def principal_for_token(
    session: Session,
    secret: str,
    *,
    now: datetime | None = None,
    zone: tzinfo = CHINA_STANDARD_TIME,
) -> Principal:
    """The principal of a live API token (its one role, its unit); otherwise
    :class:`SessionExpired` (its expiry said in ``zone``, the station's)."""
    when = _now(now)
    row = session.scalar(select(ApiToken).where(ApiToken.secret_hash == digest(secret)))
    if row is None or row.revoked_at is not None:
        raise SessionExpired(
            _("the API token is unknown or was revoked"),
            hint=_("ask the security administrator for a new token (liuhen token issue)"),
        )
    if when >= row.expires_at:
        raise SessionExpired(
            _("the API token {name} expired at {at}").format(
                name=row.name, at=show_time(row.expires_at, zone)
            ),
            hint=_("ask the security administrator for a new token (liuhen token issue)"),
        )
    if row.last_used_at is None or when - row.last_used_at >= LAST_USE_STEP:
        row.last_used_at = when
        session.flush()
    return Principal(
        user_id=None,
        login=row.name,
        display_name=row.name,
        unit=row.unit or None,
        officer_number=None,
        roles=frozenset({Role(row.role)}),
        via="token",
    )


def revoke_token(session: Session, name: str, *, actor: str, now: datetime | None = None) -> bool:
    """End a token now; False when it had ended already."""
    row = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None:
        raise TokenNotFound(_("no API token named {name!r}").format(name=name))
    if row.revoked_at is not None:
        return False
    row.revoked_at = _now(now)
    row.revoked_by = actor
    session.flush()
    return True


def list_tokens(session: Session) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "role": t.role,
            "unit": t.unit,
            "created_by": t.created_by,
            "created_at": t.created_at,
            "expires_at": t.expires_at,
            "last_used_at": t.last_used_at,
            "revoked_at": t.revoked_at,
        }
        for t in session.scalars(select(ApiToken).order_by(ApiToken.name))
    ]
