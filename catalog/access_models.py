"""Catalog tables of people and their access (issue 15): accounts, roles, password
history, login attempts, sessions, API tokens and time-limited case grants.

Secrets are never stored: passwords as Argon2id hashes, recovery codes as Argon2id
hashes, session and API token secrets as SHA-256 digests (they are 32 random bytes, so
a fast hash is enough). The TOTP seed is the one secret the server must read back to
check a code; it is kept as given (protect the catalog like the signing key).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from catalog.models import Base, utcnow


class User(Base):
    """One person's account. There are no shared or default accounts."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    officer_number: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    unit: Mapped[str] = mapped_column(String(200), default="")
    # active | locked | disabled. A lock after failed logins ends at locked_until; a lock
    # by the security administrator (locked_until None) lasts until unlocked.
    state: Mapped[str] = mapped_column(String(16), default="active")
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    # The state a disabled account had when it was disabled ("locked" keeps its lock and
    # locked_until through a disable and enable); None while not disabled.
    disabled_from: Mapped[str | None] = mapped_column(String(16), default=None)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    password_hash: Mapped[str] = mapped_column(Text)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A one-time password given by an administrator must be changed at first login.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    totp_secret: Mapped[str | None] = mapped_column(String(64), default=None)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # The time step of the last TOTP code accepted: a code is good once (no replay of a
    # code seen over someone's shoulder within its 30 seconds).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    granted_by: Mapped[str] = mapped_column(String(200), default="")
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)


class PasswordHistory(Base):
    """Earlier password hashes of a user: a new password may not be one of the last N."""

    __tablename__ = "password_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RecoveryCode(Base):
    """A one-use code that stands in for a TOTP code when the phone is lost."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class LoginAttempt(Base):
    """Every login attempt, successful or not, with what was typed as the login."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_user_at", "user_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    login: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(200), default="")
    # ok | bad_password | bad_totp | totp_required | locked | disabled | unknown_user
    result: Mapped[str] = mapped_column(String(32))


class UserSession(Base):
    """A server-side login session: revocable, with an idle and an absolute end."""

    __tablename__ = "sessions"

    # A public id (logs, audit, forced logout); the secret itself is only hashed.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()  # the absolute end
    source: Mapped[str] = mapped_column(String(200), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_by: Mapped[str | None] = mapped_column(String(200), default=None)


class ApiToken(Base):
    """A token for an integration, scoped to one role and one unit, with an expiry."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    unit: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_by: Mapped[str | None] = mapped_column(String(200), default=None)


class CaseGrant(Base):
    """One case granted to a named user for a period [starts_at, ends_at): the user's
    roles then reach that case and its recordings, whatever their unit."""

    __tablename__ = "case_grants"
    __table_args__ = (Index("ix_case_grants_user", "user_id", "ends_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(Text, default="")
    granted_by: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_by: Mapped[str | None] = mapped_column(String(200), default=None)
