"""Accounts (issue 15, point 1): users, passwords, lockout, TOTP and roles.

- One account per person, a unique login; no default or shared accounts. The first
  system administrator is made by ``liuhen init`` with a one-time password.
- Passwords are hashed with Argon2id (argon2-cffi); a hash made with other parameters
  than the settings' is rehashed at the next successful login. The policy (length,
  character classes, no reuse of the last N, optional expiry) comes from ``[access]``.
- After ``lockout_failures`` failed logins in a row the account locks for
  ``lockout_minutes``: per account, whatever address the attempts came from. Every
  attempt is a row of ``login_attempts``.
- TOTP (RFC 6238, pyotp) with one-use recovery codes (hashed like passwords); required
  for the three administrator roles, optional for the others.
- The three administrator roles exclude each other on one account (三员分立).
"""

from __future__ import annotations

import getpass
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

import pyotp
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from access.policy import EXIT_NOPERM, Principal
from access.roles import ADMIN_ROLES, NON_ADMIN_ROLES, ROLE_TITLES, Role
from access.totp_seal import PREFIX, SealError, TotpSealer, is_sealed
from catalog.access_models import (
    LoginAttempt,
    PasswordHistory,
    RecoveryCode,
    User,
    UserRole,
)
from catalog.devices import check_officer_number
from catalog.fields import column_length, limit_problems
from config.errors import EXIT_DATAERR, EXIT_NOINPUT, LiuhenError
from config.i18n import _
from config.settings import CHINA_STANDARD_TIME, AccessSettings
from config.timetext import show_time

ACTIVE, LOCKED, DISABLED = "active", "locked", "disabled"
LOGIN_MAX = column_length(User.login) or 64
RECOVERY_CODES = 10
TOTP_ISSUER = "留痕 liuhen"

# Why a principal may do nothing yet but fix its own account.
PENDING_PASSWORD = "password_change"
PENDING_TOTP = "totp_enroll"


class AccountError(LiuhenError):
    """A request about an account the rules refuse (a weak password, two admin roles)."""

    exit_code = EXIT_DATAERR


class UserNotFound(AccountError):
    exit_code = EXIT_NOINPUT


class LoginFailed(LiuhenError):
    """A login refused; ``reason`` is the attempt's result as recorded."""

    exit_code = EXIT_NOPERM

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason
        # True when this very failure locked the account (the caller audits access.lock).
        self.locked = False


@dataclass(frozen=True)
class AuthResult:
    """What a successful login gives: the principal and what the user must fix first."""

    principal: Principal
    pending: frozenset[str]


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def hasher(policy: AccessSettings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=policy.argon2_time_cost,
        memory_cost=policy.argon2_memory_kib,
        parallelism=policy.argon2_parallelism,
        type=Type.ID,
    )


def _verify(ph: PasswordHasher, stored: str, password: str) -> bool:
    try:
        return ph.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# --- password policy -------------------------------------------------------------------

_CLASSES = (
    set(string.ascii_lowercase),
    set(string.ascii_uppercase),
    set(string.digits),
)


def _classes(password: str) -> int:
    found = sum(1 for chars in _CLASSES if any(c in chars for c in password))
    other = any(not (c.isascii() and c.isalnum()) for c in password)
    return found + int(other)


def password_problems(password: str, policy: AccessSettings, *, login: str = "") -> list[str]:
    """Every reason ``password`` breaks the policy (reuse is checked by set_password)."""
    problems = []
    if len(password) < policy.password_min_length:
        problems.append(
            _("the password is shorter than {n} characters").format(n=policy.password_min_length)
        )
    if _classes(password) < policy.password_classes:
        problems.append(
            _(
                "the password has characters of fewer than {n} of the classes lower case, "
                "upper case, digits and others"
            ).format(n=policy.password_classes)
        )
    if login and login.lower() in password.lower():
        problems.append(_("the password contains the login"))
    problems += limit_problems(_("the password"), password, 1024)
    return problems


def generate_password(policy: AccessSettings) -> str:
    """A random one-time password that meets the policy (every class, long enough)."""
    alphabet = string.ascii_letters + string.digits + "-_.!@#%+="
    length = max(policy.password_min_length, 16)
    while True:
        candidate = "".join(secrets.choice(alphabet) for _i in range(length))
        if _classes(candidate) == 4:
            return candidate


def set_password(
    session: Session,
    user: User,
    password: str,
    *,
    policy: AccessSettings,
    one_time: bool = False,
    now: datetime | None = None,
) -> None:
    """Give ``user`` a new password: the policy's rules, and none of the last N again.
    ``one_time``: set by an administrator, to be changed at the next login."""
    problems = password_problems(password, policy, login=user.login)
    if problems:
        raise AccountError(
            "; ".join(problems), hint=_("choose another password (docs/security.md)")
        )
    ph = hasher(policy)
    if policy.password_history and not one_time:
        earlier = session.scalars(
            select(PasswordHistory.password_hash)
            .where(PasswordHistory.user_id == user.id)
            .order_by(PasswordHistory.id.desc())
            .limit(policy.password_history)
        ).all()
        if any(_verify(ph, h, password) for h in earlier):
            raise AccountError(
                _("the password was one of the last {n} passwords of {login}").format(
                    n=policy.password_history, login=user.login
                ),
                hint=_("choose a password not used before"),
            )
    user.password_hash = ph.hash(password)
    user.password_changed_at = _now(now)
    user.must_change_password = one_time
    session.add(
        PasswordHistory(user_id=user.id, password_hash=user.password_hash, created_at=_now(now))
    )
    session.flush()


# --- users -----------------------------------------------------------------------------


def has_accounts(session: Session) -> bool:
    """Whether the catalog has any user account (before any, the CLI runs as a local
    principal, as it did before accounts existed)."""
    return bool(session.scalar(select(func.count()).select_from(User)))


def get_user(session: Session, login: str) -> User:
    user = session.scalar(select(User).where(User.login == login))
    if user is None:
        raise UserNotFound(
            _("no user {login!r}").format(login=login), hint=_("see liuhen user list")
        )
    return user


def user_problems(
    login: str, display_name: str, unit: str, officer_number: str | None
) -> list[str]:
    problems = []
    if not login or not all(c.isalnum() or c in "._-" for c in login) or len(login) > LOGIN_MAX:
        problems.append(
            _("login {login!r} is not 1-{n} letters, digits, '.', '_' or '-'").format(
                login=login, n=LOGIN_MAX
            )
        )
    problems += limit_problems(
        _("display name"), display_name, column_length(User.display_name) or 200
    )
    problems += limit_problems(_("unit"), unit, column_length(User.unit) or 200)
    if officer_number:
        problem = check_officer_number(officer_number)
        if problem:
            problems.append(problem)
    return problems


def check_roles(roles: Iterable[Role]) -> None:
    """三员分立: at most one administrator role on one account."""
    admin = sorted(r for r in set(roles) if r in ADMIN_ROLES)
    if len(admin) > 1:
        raise AccountError(
            _("one account may hold only one of the administrator roles, not {roles}").format(
                roles=", ".join(_(ROLE_TITLES[r]) for r in admin)
            ),
            hint=_(
                "the system, security and audit administrators are different people "
                "(三员分立); make another account"
            ),
        )


def roles_of(session: Session, user_id: int) -> frozenset[Role]:
    return role_set(session.scalars(select(UserRole.role).where(UserRole.user_id == user_id)))


def role_set(names: Iterable[str | None]) -> frozenset[Role]:
    """The roles named by ``user_roles`` rows (a name this version does not know grants
    nothing)."""
    return frozenset(Role(n) for n in names if n is not None and n in Role.__members__.values())


def create_user(
    session: Session,
    *,
    login: str,
    display_name: str = "",
    unit: str = "",
    officer_number: str | None = None,
    roles: Iterable[Role] = (),
    actor: str,
    policy: AccessSettings,
    password: str | None = None,
    now: datetime | None = None,
) -> tuple[User, str | None]:
    """Add a user; without ``password`` a one-time password is made and returned (shown
    once, to be changed at first login)."""
    problems = user_problems(login, display_name, unit, officer_number)
    if problems:
        raise AccountError("; ".join(problems))
    wanted = frozenset(roles)
    check_roles(wanted)
    problems = role_problems(wanted, unit=unit, officer_number=officer_number)
    if problems:
        raise AccountError("; ".join(problems))
    if session.scalar(select(User.id).where(User.login == login)) is not None:
        raise AccountError(_("login {login!r} is taken").format(login=login))
    when = _now(now)
    user = User(
        login=login,
        display_name=display_name,
        unit=unit,
        officer_number=officer_number or None,
        state=ACTIVE,
        password_hash="!",  # replaced below; never matches a password
        created_at=when,
        created_by=actor,
    )
    session.add(user)
    session.flush()
    one_time = password is None
    secret = generate_password(policy) if password is None else password
    set_password(session, user, secret, policy=policy, one_time=one_time, now=when)
    for role in sorted(wanted):
        session.add(UserRole(user_id=user.id, role=role.value, granted_by=actor, granted_at=when))
    session.flush()
    return user, secret if one_time else None


def lock_user_row(session: Session, user_id: int) -> None:
    """Hold the user's row until the transaction ends, so two requests about one account
    (two grants, two logins) run one after the other, the second seeing what the first
    committed. PostgreSQL: SELECT … FOR UPDATE; SQLite ignores it, its write
    transactions (BEGIN IMMEDIATE) already run one at a time."""
    session.execute(select(User.id).where(User.id == user_id).with_for_update())


def grant_role(
    session: Session, user: User, role: Role, *, actor: str, now: datetime | None = None
) -> bool:
    """Give ``user`` a role; False when it had it. Refuses a second administrator role."""
    lock_user_row(session, user.id)  # else two grants each see one admin role and add theirs
    held = roles_of(session, user.id)
    if role in held:
        return False
    check_roles(held | {role})
    problems = role_problems({role}, unit=user.unit, officer_number=user.officer_number)
    if problems:
        raise AccountError("; ".join(problems))
    session.add(UserRole(user_id=user.id, role=role.value, granted_by=actor, granted_at=_now(now)))
    session.flush()
    return True


def revoke_role(session: Session, user: User, role: Role) -> bool:
    done = session.execute(
        delete(UserRole).where(UserRole.user_id == user.id, UserRole.role == role.value)
    )
    return bool(getattr(done, "rowcount", 0))


def set_state(session: Session, user: User, state: str) -> None:
    """Lock (until unlocked), unlock or disable an account; unlocking clears the count
    of failed logins."""
    user.state = state
    user.locked_until = None
    if state == ACTIVE:
        user.failed_logins = 0
    session.flush()


# What each change of an account's state makes it (the access action that records it:
# access.audit.STATE_ACTIONS). Lock and unlock are the security administrator's,
# disable and enable (the account's existence) the system administrator's.
STATE_CHANGES = {"lock": LOCKED, "unlock": ACTIVE, "disable": DISABLED, "enable": ACTIVE}


class StateConflict(AccountError):
    """A state change that does not fit the account's state (unlocking a disabled
    account, enabling one that is not disabled)."""


def change_state(session: Session, user: User, change: str) -> str:
    """Lock, unlock, disable or enable ``user`` (a key of :data:`STATE_CHANGES`); returns
    the new state. Unlocking does not undo a disable, nor enabling a lock: each is lifted
    by the administrator who may set it (enabling an account disabled while locked gives
    it back locked, while its lock lasts)."""
    # The row as it is now, held to the end of the transaction: checked on a row read
    # before, a lock racing a disable (or a disable racing a lock) would pass on the
    # stale state, and a later unlock or enable would undo the other administrator's.
    session.refresh(user, with_for_update=True)
    if change == "unlock" and user.state == DISABLED:
        raise StateConflict(
            _("account {login} is disabled, not locked").format(login=user.login),
            hint=_("a disabled account is enabled by the system administrator"),
        )
    if change == "lock" and user.state == DISABLED:
        # Else lock then unlock would reopen it: a disabled account is the system
        # administrator's to enable (三员分立), not the security administrator's.
        raise StateConflict(
            _("account {login} is disabled, not active").format(login=user.login),
            hint=_("a disabled account is enabled by the system administrator"),
        )
    if change == "enable" and user.state != DISABLED:
        raise StateConflict(
            _("user {login} is not disabled ({state})").format(login=user.login, state=user.state),
            hint=_("a locked account is unlocked by the security administrator"),
        )
    if change == "disable":
        _disable(session, user)
    elif change == "enable":
        _enable(session, user, _now(None))
    else:
        set_state(session, user, STATE_CHANGES[change])
    return user.state


def _disable(session: Session, user: User) -> None:
    """Disabled, the lock (and its end) kept for :func:`_enable`: the system
    administrator's disable and enable never lift the security administrator's lock
    nor a lockout after failed logins (三员分立)."""
    if user.state != DISABLED:
        user.disabled_from = user.state
    user.state = DISABLED
    session.flush()


def _enable(session: Session, user: User, now: datetime) -> None:
    """Back to what it was before it was disabled: still locked if the lock is in force
    (a lockout that ended meanwhile is over, as at a login after it)."""
    was_locked = user.disabled_from == LOCKED
    user.disabled_from = None
    if was_locked and (user.locked_until is None or user.locked_until > now):
        user.state = LOCKED
        session.flush()
        return
    set_state(session, user, ACTIVE)


def local_principal() -> Principal:
    """The OS user, with every non-administrator role: how commands run while the
    catalog has no accounts (installs and scripts from before issue 15)."""
    name = getpass.getuser()
    return Principal(
        user_id=None,
        login=name,
        display_name=name,
        unit=None,
        officer_number=None,
        roles=NON_ADMIN_ROLES,
        via="local",
    )


# --- principals ------------------------------------------------------------------------


def pending_of(
    user: User, roles: frozenset[Role], policy: AccessSettings, now: datetime
) -> frozenset[str]:
    """What the user must fix before any permission counts: a one-time or expired
    password, or an administrator role without a second factor."""
    pending = set()
    expired = policy.password_max_age_days and (
        user.password_changed_at + timedelta(days=policy.password_max_age_days) <= now
    )
    if user.must_change_password or expired:
        pending.add(PENDING_PASSWORD)
    if roles & ADMIN_ROLES and not user.totp_enabled:
        pending.add(PENDING_TOTP)
    return frozenset(pending)


def principal_of(
    session: Session,
    user: User,
    *,
    via: str,
    policy: AccessSettings,
    session_id: str | None = None,
    now: datetime | None = None,
    roles: frozenset[Role] | None = None,
) -> Principal:
    """``roles``: the user's roles when the caller read them with the user (one query)."""
    if roles is None:
        roles = roles_of(session, user.id)
    return Principal(
        user_id=user.id,
        login=user.login,
        display_name=user.display_name or user.login,
        unit=user.unit or None,
        officer_number=user.officer_number,
        roles=roles,
        via=via,
        session_id=session_id,
        pending=pending_of(user, roles, policy, _now(now)),
    )


# --- login -----------------------------------------------------------------------------


def _record(
    session: Session, login: str, user: User | None, result: str, source: str | None, now: datetime
) -> None:
    session.add(
        LoginAttempt(
            user_id=user.id if user else None,
            login=login[:200],
            at=now,
            source=(source or "")[:200],
            result=result,
        )
    )
    session.flush()


def _refuse(
    session: Session,
    login: str,
    user: User | None,
    result: str,
    source: str | None,
    now: datetime,
    error: LoginFailed,
) -> LoginFailed:
    """Record the attempt, commit it (the caller's transaction would otherwise roll it
    back with the error: a failed attempt must stay recorded) and return the error."""
    _record(session, login, user, result, source, now)
    session.commit()
    return error


def _wrong(login: str) -> LoginFailed:
    # The same words for an unknown login and a wrong password: a login cannot be probed.
    return LoginFailed(
        _("login {login!r}: wrong login or password").format(login=login), reason="bad_password"
    )


def _check_open(session: Session, user: User, now: datetime) -> str | None:
    """The result that refuses this account before its password is read, or None."""
    if user.state == DISABLED:
        return "disabled"
    if user.state == LOCKED:
        if user.locked_until is not None and user.locked_until <= now:
            set_state(session, user, ACTIVE)  # a lockout ends by itself
            return None
        return "locked"
    return None


def _closed_error(user: User, result: str, zone: tzinfo) -> LoginFailed:
    if result == "disabled":
        return LoginFailed(
            _("account {login} is disabled").format(login=user.login),
            reason=result,
            hint=_("ask the system administrator"),
        )
    if user.locked_until is not None:
        message = _("account {login} is locked until {until} after too many failed logins")
        until = show_time(user.locked_until, zone)  # the station's time, as people read it
        return LoginFailed(
            message.format(login=user.login, until=until),
            reason=result,
            hint=_("wait, or ask the security administrator to unlock it"),
        )
    return LoginFailed(
        _("account {login} is locked").format(login=user.login),
        reason=result,
        hint=_("ask the security administrator to unlock it"),
    )


def _failed(
    session: Session, user: User, policy: AccessSettings, now: datetime, error: LoginFailed
) -> LoginFailed:
    """Count a failure; the N-th in a row locks the account for M minutes (then
    ``error.locked``). The caller holds the user's row (:func:`lock_user_row`)."""
    user.failed_logins += 1
    if user.failed_logins >= policy.lockout_failures and user.state != LOCKED:
        user.state = LOCKED
        user.locked_until = now + timedelta(minutes=policy.lockout_minutes)
        error.locked = True
    session.flush()
    return error


def _load_locked(session: Session, login: str) -> User | None:
    """The user of ``login`` with its row held for the whole login (see lock_user_row):
    without it parallel wrong passwords each read the same count of failures and pass
    the lockout, and parallel logins accept one TOTP code more than once."""
    return session.scalar(
        select(User)
        .where(User.login == login)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def authenticate(
    session: Session,
    login: str,
    password: str,
    *,
    totp: str | None = None,
    source: str | None = None,
    now: datetime | None = None,
    policy: AccessSettings | None = None,
    zone: tzinfo = CHINA_STANDARD_TIME,
    sealer: TotpSealer | None = None,
) -> Principal:
    """The principal of ``login`` when the password (and the TOTP or a recovery code,
    when the account has a second factor) is right; otherwise :class:`LoginFailed`.
    Every attempt is recorded; a failed one is committed before the error is raised, so
    call this in a transaction you may commit. ``principal.pending`` says what the user
    must fix before any permission counts. ``zone``: the station's, in which a lock's
    end is told; ``sealer``: of the TOTP seeds (access.totp_seal)."""
    policy = policy or AccessSettings()
    when = _now(now)
    ph = hasher(policy)
    user = _load_locked(session, login)
    if user is None:
        ph.hash(password)  # as slow as a real check: timing does not tell a login exists
        raise _refuse(session, login, None, "unknown_user", source, when, _wrong(login))
    closed = _check_open(session, user, when)
    if closed:
        # The password of a closed account is never read: every password gets the same
        # answer, so a lock is no oracle for guessing it (its failures are not counted;
        # an answer that told the right password apart would allow unlimited guesses).
        # The answer says that the account is locked (until when) or disabled: that an
        # account exists is less than what a guess could learn.
        ph.hash(password)  # as slow as a check: timing tells nothing either
        raise _refuse(session, login, user, closed, source, when, _closed_error(user, closed, zone))
    if not _verify(ph, user.password_hash, password):
        error = _failed(session, user, policy, when, _wrong(login))
        raise _refuse(session, login, user, "bad_password", source, when, error)
    if user.totp_enabled:
        if not totp:
            error = LoginFailed(
                _("account {login} needs its two-factor code").format(login=login),
                reason="totp_required",
                hint=_("give the 6-digit code of your authenticator app, or a recovery code"),
            )
            raise _refuse(session, login, user, "totp_required", source, when, error)
        if not check_second_factor(session, user, totp, policy=policy, now=when, sealer=sealer):
            error = LoginFailed(
                _("account {login}: wrong two-factor code").format(login=login), reason="bad_totp"
            )
            _failed(session, user, policy, when, error)
            raise _refuse(session, login, user, "bad_totp", source, when, error)
    if ph.check_needs_rehash(user.password_hash):
        user.password_hash = ph.hash(password)  # the settings' Argon2 parameters changed
    user.failed_logins = 0
    user.last_login_at = when
    _record(session, login, user, "ok", source, when)
    return principal_of(session, user, via="session", policy=policy, now=when)


# --- two-factor ------------------------------------------------------------------------


def totp_seed(user: User, sealer: TotpSealer | None) -> str | None:
    """The user's Base32 TOTP seed; a seed still stored plain (from before sealing) is
    sealed now when a sealer is given (the caller's transaction keeps it)."""
    stored = user.totp_secret
    if not stored:
        return None
    if is_sealed(stored):
        if sealer is None:
            raise SealError(
                _("the two-factor seed is sealed and this host has no keys/totp.key"),
                hint=_(
                    "copy keys/totp.key (mode 0600) from the host that enrolled it; "
                    "meanwhile a recovery code logs in"
                ),
            )
        return sealer.open(user.id, stored)
    if sealer is not None:
        user.totp_secret = sealer.seal(user.id, stored)
    return stored


def sealed_seeds_exist(session: Session) -> bool:
    """Whether any two-factor seed in the catalog is sealed (by some host's TOTP key)."""
    found = session.scalar(select(User.id).where(User.totp_secret.like(PREFIX + "%")).limit(1))
    return found is not None


def start_totp(session: Session, user: User, *, sealer: TotpSealer | None = None) -> str:
    """A new TOTP seed for ``user`` (sealed by ``sealer``), not active until confirmed
    with a code from it (:func:`confirm_totp`); returns the otpauth:// URI for the
    authenticator app, which holds the seed."""
    seed = pyotp.random_base32()
    user.totp_secret = sealer.seal(user.id, seed) if sealer is not None else seed
    user.totp_enabled = False
    user.totp_last_step = None
    session.flush()
    return pyotp.TOTP(seed).provisioning_uri(name=user.login, issuer_name=TOTP_ISSUER)


def confirm_totp(
    session: Session,
    user: User,
    code: str,
    *,
    policy: AccessSettings,
    now: datetime | None = None,
    sealer: TotpSealer | None = None,
) -> list[str]:
    """Turn the second factor on when ``code`` matches the new seed; returns the
    recovery codes (shown once, stored hashed)."""
    seed = totp_seed(user, sealer)
    if not seed or not _totp_step_ok(user, seed, code.strip(), _now(now)):
        raise AccountError(
            _("the code does not match: two-factor is not turned on"),
            hint=_("check the phone's clock and type the code shown now"),
        )
    user.totp_enabled = True
    return new_recovery_codes(session, user, policy=policy, now=now)


def new_recovery_codes(
    session: Session, user: User, *, policy: AccessSettings, now: datetime | None = None
) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    ph = hasher(policy)
    codes = ["-".join(secrets.token_hex(3) for _i in range(3)) for _j in range(RECOVERY_CODES)]
    for code in codes:
        session.add(RecoveryCode(user_id=user.id, code_hash=ph.hash(code), created_at=_now(now)))
    session.flush()
    return codes


def reset_totp(session: Session, user: User) -> None:
    """Turn the second factor off (a lost phone); an administrator must enroll again."""
    user.totp_secret = None
    user.totp_enabled = False
    user.totp_last_step = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    session.flush()


def _totp_step_ok(user: User, seed: str, code: str, now: datetime) -> bool:
    """Whether ``code`` is the TOTP code of the step of ``now`` or a neighbour (a phone
    clock 30 s off), and later than the last code accepted; the step is then kept."""
    totp = pyotp.TOTP(seed)
    for offset in (0, -1, 1):
        when = now + timedelta(seconds=offset * totp.interval)
        if secrets.compare_digest(totp.at(when), code):
            step = totp.timecode(when)
            if user.totp_last_step is not None and step <= user.totp_last_step:
                return False  # this code (or an older one) was used already
            user.totp_last_step = step
            return True
    return False


def check_second_factor(
    session: Session,
    user: User,
    code: str,
    *,
    policy: AccessSettings,
    now: datetime,
    sealer: TotpSealer | None = None,
) -> bool:
    """A current TOTP code (±30 s), or an unused recovery code, which is then used up."""
    code = code.strip()
    if code.isdigit() and len(code) == 6:
        # Only a TOTP code opens the seed: a recovery code works even on a host whose
        # TOTP key does not open it (the way back in for an administrator).
        seed = totp_seed(user, sealer)
        return bool(seed) and _totp_step_ok(user, seed or "", code, now)
    ph = hasher(policy)
    for row in session.scalars(
        select(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    ):
        if _verify(ph, row.code_hash, code):
            row.used_at = now
            session.flush()
            return True
    return False


def role_problems(roles: Iterable[Role], *, unit: str, officer_number: str | None) -> list[str]:
    """What the roles need of the account: a unit for every role reaching a unit, a
    警号 for an officer (their own recordings are found by it)."""
    from access.roles import ROLE_SCOPE, Scope

    held = set(roles)
    problems = []
    if not unit and any(ROLE_SCOPE[r] is not Scope.ALL for r in held):
        problems.append(
            _("a user with the roles {roles} needs a unit (--unit)").format(
                roles=", ".join(_(ROLE_TITLES[r]) for r in sorted(held))
            )
        )
    if Role.OFFICER in held and not officer_number:
        problems.append(_("an officer needs a 警号 (--officer)"))
    return problems


def change_password(
    session: Session,
    user: User,
    current: str,
    new: str,
    *,
    policy: AccessSettings,
    source: str | None = None,
    now: datetime | None = None,
) -> None:
    """One's own password changed: the current one again (:func:`verify_password`: a
    wrong one counts towards the lockout, and the failure that reaches it raises
    LoginFailed with ``locked`` set, for the caller to audit ``access.lock``), then the
    new one under the policy."""
    verify_password(session, user, current, policy=policy, source=source, now=now)
    set_password(session, user, new, policy=policy, now=now)


def verify_password(
    session: Session,
    user: User,
    password: str,
    *,
    policy: AccessSettings,
    source: str | None = None,
    now: datetime | None = None,
) -> None:
    """Check a logged-in user's current password again (before changing it): a wrong
    one counts towards the lockout like a failed login, and is recorded."""
    when = _now(now)
    lock_user_row(session, user.id)
    session.refresh(user)  # the count of failures as committed by anyone before the lock
    if _verify(hasher(policy), user.password_hash, password):
        return
    error = _failed(session, user, policy, when, _wrong(user.login))
    raise _refuse(session, user.login, user, "bad_password", source, when, error)
