"""Accounts, sessions and tokens on a real catalog (SQLite and PostgreSQL): lockout after N
failures and not before, unlock after M minutes, every attempt recorded, TOTP required
for the administrator roles, the three administrator roles refused on one account, the
password policy and reuse, Argon2 rehash, idle and absolute session ends, a revoked
session refused on its next use, token expiry."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import func, select

from access.accounts import (
    PENDING_PASSWORD,
    PENDING_TOTP,
    AccountError,
    LoginFailed,
    authenticate,
    confirm_totp,
    create_user,
    get_user,
    grant_role,
    set_password,
    start_totp,
)
from access.policy import decide
from access.roles import Permission, Role
from access.sessions import (
    SessionExpired,
    close_session,
    issue_token,
    open_session,
    principal_for_session,
    principal_for_token,
    revoke_sessions,
)
from catalog import Catalog
from catalog.access_models import LoginAttempt, User, UserSession
from config.settings import AccessSettings

# Cheap Argon2 so that the tests spend their time on the rules, not on hashing.
POLICY = AccessSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
T0 = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
GOOD = "Correct-Horse-9"


def add(catalog: Catalog, login: str, *roles: Role, unit: str = "徐汇", **kw: Any) -> int:
    with catalog.transaction() as s:
        user, _pw = create_user(
            s,
            login=login,
            unit=unit,
            roles=roles,
            actor="test",
            policy=POLICY,
            password=GOOD,
            now=T0,
            **kw,
        )
        return user.id


def login(
    catalog: Catalog,
    name: str,
    password: str = GOOD,
    *,
    at: datetime,
    totp: str | None = None,
    policy: AccessSettings = POLICY,
) -> Any:
    with catalog.transaction() as s:
        return authenticate(s, name, password, totp=totp, source="test", now=at, policy=policy)


def row(s: Any, uid: int) -> User:
    found: User | None = s.get(User, uid)
    assert found is not None
    return found


def attempts(catalog: Catalog, name: str) -> list[str]:
    with catalog.session() as s:
        return list(
            s.scalars(
                select(LoginAttempt.result)
                .where(LoginAttempt.login == name)
                .order_by(LoginAttempt.id)
            )
        )


def test_lockout_after_n_failures_and_not_before(catalog: Catalog) -> None:
    add(catalog, "alice", Role.REVIEWER)
    for i in range(POLICY.lockout_failures - 1):
        with pytest.raises(LoginFailed) as failed:
            login(catalog, "alice", "wrong", at=T0 + timedelta(seconds=i))
        assert failed.value.reason == "bad_password"
    # N-1 failures: the right password still works, and resets the count.
    assert login(catalog, "alice", at=T0 + timedelta(minutes=1)).login == "alice"
    for i in range(POLICY.lockout_failures):
        with pytest.raises(LoginFailed):
            login(catalog, "alice", "wrong", at=T0 + timedelta(minutes=2, seconds=i))
    # The N-th failure locked it: even the right password is refused, without being read.
    with pytest.raises(LoginFailed) as locked:
        login(catalog, "alice", at=T0 + timedelta(minutes=3))
    assert locked.value.reason == "locked" and "locked until" in locked.value.message
    with pytest.raises(LoginFailed):
        login(catalog, "alice", at=T0 + timedelta(minutes=2 + POLICY.lockout_minutes - 1))
    # M minutes after the lock it opens by itself.
    opened = T0 + timedelta(minutes=2 + POLICY.lockout_minutes, seconds=10)
    assert login(catalog, "alice", at=opened).login == "alice"
    results = attempts(catalog, "alice")
    assert results.count("bad_password") == 2 * POLICY.lockout_failures - 1
    assert results.count("locked") == 2 and results.count("ok") == 2
    assert len(results) == (2 * POLICY.lockout_failures - 1) + 2 + 2  # every attempt


def test_the_lockout_is_per_account_not_per_address(catalog: Catalog) -> None:
    add(catalog, "bob", Role.REVIEWER)
    add(catalog, "carol", Role.REVIEWER)
    for i in range(POLICY.lockout_failures):
        with pytest.raises(LoginFailed), catalog.transaction() as s:
            authenticate(s, "bob", "wrong", source=f"10.0.0.{i}", now=T0, policy=POLICY)
    with pytest.raises(LoginFailed, match="locked"):
        login(catalog, "bob", at=T0)
    assert login(catalog, "carol", at=T0).login == "carol"


def test_an_unknown_login_reads_like_a_wrong_password_and_is_recorded(catalog: Catalog) -> None:
    add(catalog, "dave", Role.REVIEWER)
    with pytest.raises(LoginFailed) as unknown:
        login(catalog, "nobody", at=T0)
    with pytest.raises(LoginFailed) as wrong:
        login(catalog, "dave", "nope", at=T0)
    assert unknown.value.message.replace("nobody", "X") == wrong.value.message.replace("dave", "X")
    assert attempts(catalog, "nobody") == ["unknown_user"]


@pytest.mark.parametrize("first", [Role.SYSTEM_ADMIN, Role.SECURITY_ADMIN, Role.AUDIT_ADMIN])
def test_the_three_administrator_roles_are_refused_on_one_account(
    catalog: Catalog, first: Role
) -> None:
    uid = add(catalog, f"adm-{first.value}", first, unit="")
    for other in {Role.SYSTEM_ADMIN, Role.SECURITY_ADMIN, Role.AUDIT_ADMIN} - {first}:
        with pytest.raises(AccountError, match="三员分立"), catalog.transaction() as s:
            grant_role(s, row(s, uid), other, actor="test")
        with pytest.raises(AccountError, match="only one of the administrator roles"):
            add(catalog, f"two-{first.value}-{other.value}", first, other, unit="")
    with catalog.session() as s:
        from access.accounts import roles_of

        assert roles_of(s, uid) == {first}


def test_totp_is_required_for_administrators(catalog: Catalog) -> None:
    add(catalog, "root", Role.SYSTEM_ADMIN, unit="")
    principal = login(catalog, "root", at=T0)
    # Logged in with the password alone, an administrator may do nothing but enroll.
    assert principal.pending == {PENDING_TOTP}
    assert not decide(principal, Permission.DEVICE_ADMIN).allowed
    with catalog.transaction() as s:
        user = get_user(s, "root")
        start_totp(s, user)
        secret = user.totp_secret
        assert secret
        codes = confirm_totp(s, user, pyotp.TOTP(secret).at(T0), policy=POLICY, now=T0)
    assert len(codes) == 10
    later = T0 + timedelta(minutes=5)
    with pytest.raises(LoginFailed) as missing:
        login(catalog, "root", at=later)
    assert missing.value.reason == "totp_required"
    with pytest.raises(LoginFailed) as wrong:
        login(
            catalog,
            "root",
            at=later,
            totp="000000" if pyotp.TOTP(secret).at(later) != "000000" else "111111",
        )
    assert wrong.value.reason == "bad_totp"
    full = login(catalog, "root", at=later, totp=pyotp.TOTP(secret).at(later))
    assert full.pending == frozenset() and decide(full, Permission.DEVICE_ADMIN).allowed
    # A code is good once: seen over a shoulder, it cannot be replayed within its 30 s.
    with pytest.raises(LoginFailed) as replayed:
        login(catalog, "root", at=later + timedelta(seconds=5), totp=pyotp.TOTP(secret).at(later))
    assert replayed.value.reason == "bad_totp"
    nxt = later + timedelta(seconds=30)
    assert login(catalog, "root", at=nxt, totp=pyotp.TOTP(secret).at(nxt)).login == "root"
    # A recovery code stands in once, and only once.
    assert login(catalog, "root", at=later, totp=codes[0]).login == "root"
    with pytest.raises(LoginFailed):
        login(catalog, "root", at=later, totp=codes[0])
    assert attempts(catalog, "root").count("bad_totp") == 3


def test_totp_is_optional_for_the_others(catalog: Catalog) -> None:
    add(catalog, "erin", Role.ARCHIVIST)
    principal = login(catalog, "erin", at=T0)
    assert principal.pending == frozenset()
    assert decide(principal, Permission.EXPORT).allowed


def test_password_policy_and_reuse(catalog: Catalog) -> None:
    uid = add(catalog, "frank", Role.REVIEWER)
    policy = replace(POLICY, password_history=3)
    for weak, why in [
        ("Short-1", "shorter than 12"),
        ("alllowercaseletters", "fewer than 3 of the classes"),
        ("Frank-is-9-great", "contains the login"),
    ]:
        with pytest.raises(AccountError, match=why), catalog.transaction() as s:
            set_password(s, row(s, uid), weak, policy=policy)
    news = ["Second-Pass-22", "Third-Pass-333", "Fourth-Pass-4444"]
    for new in news:
        with catalog.transaction() as s:
            set_password(s, row(s, uid), new, policy=policy)
    for reused in news:  # the last 3, the current one included
        with (
            pytest.raises(AccountError, match="one of the last 3 passwords"),
            catalog.transaction() as s,
        ):
            set_password(s, row(s, uid), reused, policy=policy)
    with catalog.transaction() as s:  # the 4th back may come again
        set_password(s, row(s, uid), GOOD, policy=policy)


def test_a_one_time_or_expired_password_must_be_changed_first(catalog: Catalog) -> None:
    with catalog.transaction() as s:
        _u, one_time = create_user(
            s, login="gina", unit="徐汇", roles=[Role.REVIEWER], actor="test", policy=POLICY
        )
    assert one_time
    assert login(catalog, "gina", one_time, at=T0).pending == {PENDING_PASSWORD}
    with catalog.transaction() as s:
        set_password(s, get_user(s, "gina"), "Brand-New-Pass-1", policy=POLICY, now=T0)
    assert login(catalog, "gina", "Brand-New-Pass-1", at=T0).pending == frozenset()
    aging = replace(POLICY, password_max_age_days=90)
    assert (
        login(catalog, "gina", "Brand-New-Pass-1", at=T0 + timedelta(days=89), policy=aging).pending
        == frozenset()
    )
    assert login(
        catalog, "gina", "Brand-New-Pass-1", at=T0 + timedelta(days=90), policy=aging
    ).pending == {PENDING_PASSWORD}


def test_a_hash_of_other_argon2_parameters_is_rehashed_at_login(catalog: Catalog) -> None:
    add(catalog, "hank", Role.REVIEWER)
    with catalog.session() as s:
        before = get_user(s, "hank").password_hash
    stronger = replace(POLICY, argon2_time_cost=2)
    login(catalog, "hank", at=T0, policy=stronger)
    with catalog.session() as s:
        after = get_user(s, "hank").password_hash
    assert "t=1" in before and "t=2" in after and after.startswith("$argon2id$")
    assert login(catalog, "hank", at=T0, policy=stronger).login == "hank"


def _session(catalog: Catalog, name: str, at: datetime) -> str:
    principal = login(catalog, name, at=at)
    with catalog.transaction() as s:
        return open_session(s, principal, now=at, policy=POLICY)


def _use(catalog: Catalog, secret: str, at: datetime) -> Any:
    with catalog.transaction() as s:
        return principal_for_session(s, secret, now=at, policy=POLICY)


def test_session_idle_timeout(catalog: Catalog) -> None:
    add(catalog, "ivy", Role.REVIEWER)
    secret = _session(catalog, "ivy", T0)
    idle = timedelta(minutes=POLICY.session_idle_minutes)
    at = T0
    for _step in range(3):  # used within the idle time, it lives on
        at += idle - timedelta(seconds=1)
        assert _use(catalog, secret, at).login == "ivy"
    with pytest.raises(SessionExpired, match="unused"):
        _use(catalog, secret, at + idle)
    with pytest.raises(SessionExpired):  # and it stays ended
        _use(catalog, secret, at + idle + timedelta(seconds=1))


def test_session_absolute_timeout(catalog: Catalog) -> None:
    add(catalog, "jack", Role.REVIEWER)
    secret = _session(catalog, "jack", T0)
    at = T0
    end = T0 + timedelta(hours=POLICY.session_absolute_hours)
    while at + timedelta(minutes=20) < end:  # busy all day
        at += timedelta(minutes=20)
        assert _use(catalog, secret, at).login == "jack"
    with pytest.raises(SessionExpired, match="hours after login"):
        _use(catalog, secret, end)


def test_a_revoked_session_is_refused_on_its_next_use(catalog: Catalog) -> None:
    uid = add(catalog, "kate", Role.REVIEWER)
    first, second = _session(catalog, "kate", T0), _session(catalog, "kate", T0)
    assert _use(catalog, first, T0 + timedelta(minutes=1)).session_id
    with catalog.transaction() as s:
        assert revoke_sessions(s, uid, actor="security") == 2
    for secret in (first, second):
        with pytest.raises(SessionExpired, match="revoked"):
            _use(catalog, secret, T0 + timedelta(minutes=2))
    third = _session(catalog, "kate", T0)
    with catalog.transaction() as s:
        close_session(s, third)
    with pytest.raises(SessionExpired):
        _use(catalog, third, T0 + timedelta(minutes=1))


def test_a_locked_users_session_ends(catalog: Catalog) -> None:
    from access.accounts import set_state

    add(catalog, "liam", Role.REVIEWER)
    secret = _session(catalog, "liam", T0)
    with catalog.transaction() as s:
        set_state(s, get_user(s, "liam"), "locked")
    with pytest.raises(SessionExpired, match="locked or disabled"):
        _use(catalog, secret, T0 + timedelta(minutes=1))


def test_sessions_and_tokens_are_stored_hashed(catalog: Catalog) -> None:
    add(catalog, "mia", Role.REVIEWER)
    secret = _session(catalog, "mia", T0)
    with catalog.transaction() as s:
        token = issue_token(
            s,
            name="case-system",
            role=Role.ARCHIVIST,
            unit="徐汇",
            expires_at=T0 + timedelta(days=30),
            created_by="sec",
            now=T0,
        )
    with catalog.session() as s:
        stored = " ".join(str(v) for v in s.execute(select(UserSession.secret_hash)).scalars())
        assert secret not in stored and token[4:] not in stored
        assert s.scalar(select(func.count()).select_from(UserSession)) == 1


def test_token_scope_and_expiry(catalog: Catalog) -> None:
    expires = T0 + timedelta(days=30)
    with catalog.transaction() as s:
        token = issue_token(
            s,
            name="cms",
            role=Role.ARCHIVIST,
            unit="徐汇",
            expires_at=expires,
            created_by="sec",
            now=T0,
        )
    with catalog.transaction() as s:
        principal = principal_for_token(s, token, now=expires - timedelta(seconds=1))
    assert principal.roles == {Role.ARCHIVIST} and principal.unit == "徐汇"
    assert principal.via == "token" and principal.actor == "token:cms"
    with pytest.raises(SessionExpired, match="expired") as gone, catalog.transaction() as s:
        principal_for_token(s, token, now=expires)
    # When it expired is said in the station's time, as people read times.
    shown = (expires + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")
    assert f"expired at {shown} +08:00" in gone.value.message
    with pytest.raises(SessionExpired, match="unknown"), catalog.transaction() as s:
        principal_for_token(s, token + "x", now=T0)


@pytest.mark.parametrize(
    ("role", "days", "why"),
    [
        (Role.SYSTEM_ADMIN, 30, "may not hold"),
        (Role.ARCHIVIST, 366, "more than 365 days"),
        (Role.ARCHIVIST, -1, "in the past"),
    ],
)
def test_tokens_refused(catalog: Catalog, role: Role, days: int, why: str) -> None:
    with pytest.raises(AccountError, match=why), catalog.transaction() as s:
        issue_token(
            s,
            name="x",
            role=role,
            unit="徐汇",
            expires_at=T0 + timedelta(days=days),
            created_by="sec",
            now=T0,
        )


def test_a_locked_account_gives_every_password_the_same_answer(catalog: Catalog) -> None:
    """While locked, failures are not counted: an answer that told the right password
    from a wrong one would let guesses go on without limit. Every password gets the
    same answer, that the account is locked and until when."""
    add(catalog, "alice", Role.REVIEWER)
    for i in range(POLICY.lockout_failures):
        with pytest.raises(LoginFailed):
            login(catalog, "alice", "wrong", at=T0 + timedelta(seconds=i))
    answers = []
    for n, password in enumerate(["another-guess", GOOD]):
        with pytest.raises(LoginFailed) as refused:
            login(catalog, "alice", password, at=T0 + timedelta(minutes=1, seconds=n))
        answers.append((refused.value.reason, refused.value.message))
    assert answers[0] == answers[1]
    assert answers[0][0] == "locked" and "locked until" in answers[0][1]


# --- disable and enable keep a lock (三员分立) ----------------------------------------------


def _change(catalog: Catalog, name: str, *changes: str) -> str:
    from access.accounts import change_state

    with catalog.transaction() as s:
        state = ""
        for change in changes:
            state = change_state(s, get_user(s, name), change)
        return state


def test_enabling_keeps_a_lockout_in_force(catalog: Catalog) -> None:
    """The system administrator disables and enables an account locked after failed
    logins: it is locked as before, until its lockout ends."""
    now = datetime.now(UTC)
    uid = add(catalog, "dora", Role.REVIEWER)
    for i in range(POLICY.lockout_failures):
        with pytest.raises(LoginFailed):
            login(catalog, "dora", "wrong", at=now + timedelta(seconds=i))
    with catalog.session() as s:
        until = row(s, uid).locked_until
    assert until is not None and until > now
    assert _change(catalog, "dora", "disable") == "disabled"
    assert _change(catalog, "dora", "enable") == "locked"
    with catalog.session() as s:
        assert row(s, uid).locked_until == until
    with pytest.raises(LoginFailed) as refused:
        login(catalog, "dora", at=now + timedelta(minutes=1))
    assert refused.value.reason == "locked" and "locked until" in refused.value.message
    # The lockout still ends when it was to end.
    assert login(catalog, "dora", at=until + timedelta(seconds=1)).login == "dora"


def test_enabling_keeps_the_security_administrators_lock(catalog: Catalog) -> None:
    add(catalog, "erik", Role.REVIEWER)
    assert _change(catalog, "erik", "lock", "disable", "enable") == "locked"
    with pytest.raises(LoginFailed) as refused:
        login(catalog, "erik", at=datetime.now(UTC) + timedelta(days=365))
    assert refused.value.reason == "locked"
    assert _change(catalog, "erik", "unlock") == "active"
    assert login(catalog, "erik", at=datetime.now(UTC)).login == "erik"


def test_a_lockout_that_ended_while_disabled_is_over(catalog: Catalog) -> None:
    now = datetime.now(UTC)
    uid = add(catalog, "fay", Role.REVIEWER)
    long_ago = now - timedelta(minutes=POLICY.lockout_minutes + 5)
    for i in range(POLICY.lockout_failures):
        with pytest.raises(LoginFailed):
            login(catalog, "fay", "wrong", at=long_ago + timedelta(seconds=i))
    assert _change(catalog, "fay", "disable", "enable") == "active"
    with catalog.session() as s:
        assert row(s, uid).locked_until is None and row(s, uid).failed_logins == 0
    assert login(catalog, "fay", at=now).login == "fay"


def test_an_active_account_disabled_and_enabled_is_active(catalog: Catalog) -> None:
    add(catalog, "gus", Role.REVIEWER)
    assert _change(catalog, "gus", "disable") == "disabled"
    with pytest.raises(LoginFailed) as refused:
        login(catalog, "gus", at=datetime.now(UTC))
    assert refused.value.reason == "disabled"
    assert _change(catalog, "gus", "enable") == "active"
    assert login(catalog, "gus", at=datetime.now(UTC)).login == "gus"
