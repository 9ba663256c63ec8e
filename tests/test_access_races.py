"""Accounts under parallel requests, and an access policy the caller cannot weaken
(issue 15, review findings), on SQLite and PostgreSQL.

Parallel wrong passwords lock the account after exactly ``lockout_failures`` and the
lockout is audited once; one TOTP code opens one session however many logins race with
it; parallel grants never give one account two administrator roles; the environment of
whoever runs a command may make the access policy stricter, never weaker."""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from access.accounts import LOCKED, get_user, roles_of
from access.roles import Role
from tests.api_helpers import PASSWORD, access_events, add_admin, add_user, client, login, served
from tests.cli_helpers import run_cli
from tests.test_access_cli import GOOD, cheap_hashing, user  # noqa: F401

T = TypeVar("T")


@pytest.fixture
def base(app: Any) -> Iterator[str]:
    with served(app.settings) as url:
        yield url


def together(count: int, work: Callable[[int], T]) -> list[T]:
    """``work(i)`` for i < count, in as many threads, all let go at the same moment."""
    barrier = threading.Barrier(count)

    def run(i: int) -> T:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def _api_login(base: str, name: str, password: str, totp: str | None = None) -> tuple[int, str]:
    with client(base) as http:
        r = http.post("/api/v1/session", json={"login": name, "password": password, "totp": totp})
        return r.status_code, r.text


def test_parallel_wrong_passwords_lock_the_account_after_exactly_the_lockout(
    app: Any, base: str
) -> None:
    add_user(app, "alice", "reviewer")
    limit = app.settings.access.lockout_failures
    results = together(20, lambda i: _api_login(base, "alice", f"Wrong-guess-{i}"))
    checked = [text for _code, text in results if "wrong login or password" in text]
    refused = [text for _code, text in results if "is locked" in text]
    assert len(checked) == limit, results
    assert len(refused) == 20 - limit, results
    with app.catalog.session() as s:
        alice = get_user(s, "alice")
        assert (alice.state, alice.failed_logins) == (LOCKED, limit)
    locks = [e for e in access_events(app) if e.action == "access.lock"]
    assert len(locks) == 1
    # Locked: even the right password is refused now.
    assert _api_login(base, "alice", PASSWORD)[0] != 200


def _login_nth(base: str, name: str, code: str, _nth: int) -> tuple[int, str]:
    return _api_login(base, name, PASSWORD, code)


def test_one_totp_code_opens_one_session_among_parallel_logins(app: Any, base: str) -> None:
    for i in range(3):
        name = f"adm{i}"
        code = add_admin(app, name, "audit_admin")
        results = together(6, functools.partial(_login_nth, base, name, code))
        assert [c for c, _t in results].count(200) == 1, results


def test_parallel_grants_never_give_one_account_two_administrator_roles(
    app: Any, base: str
) -> None:
    http, csrf = login(base, "secadm", totp=add_admin(app, "secadm", "security_admin"))
    cookies = dict(http.cookies)
    http.close()
    names = [f"u{i}" for i in range(8)]
    for name in names:
        add_user(app, name)
    jobs = [(n, r) for n in names for r in ("system_admin", "audit_admin")]

    def put(i: int) -> int:
        name, role = jobs[i]
        with client(base, **{"X-CSRF-Token": csrf}) as h:
            h.cookies.update(cookies)
            return h.put(f"/api/v1/users/{name}/roles/{role}").status_code

    codes = together(len(jobs), put)
    assert codes.count(200) == len(names), codes  # one of the two per account
    with app.catalog.session() as s:
        for name in names:
            assert len(roles_of(s, get_user(s, name).id)) == 1, name


def test_reaching_the_lockout_over_the_api_records_one_access_lock(app: Any, base: str) -> None:
    add_user(app, "alice", "reviewer")
    limit = app.settings.access.lockout_failures
    for i in range(limit - 1):
        _api_login(base, "alice", f"Wrong-{i}")
    assert not [e for e in access_events(app) if e.action == "access.lock"]
    for i in range(3):  # the one that locks, then two refused as locked
        _api_login(base, "alice", f"Wrong-again-{i}")
    locks = [e for e in access_events(app) if e.action == "access.lock"]
    assert [(e.object_id, e.actor) for e in locks] == [("alice", "alice")]


def _cli_login(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, password: str
) -> Any:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return run_cli(capsys, "login", "alice", "--password-stdin")


def test_reaching_the_lockout_on_the_command_line_records_one_access_lock(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user(app, "alice", Role.REVIEWER)
    for i in range(app.settings.access.lockout_failures + 2):
        assert _cli_login(capsys, monkeypatch, f"Wrong-guess-{i}").code == 77
    locks = [e for e in access_events(app) if e.action == "access.lock"]
    assert [e.object_id for e in locks] == ["alice"]


def test_the_environment_cannot_weaken_the_lockout_or_sessions(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user(app, "alice", Role.REVIEWER)
    for variable, value in (
        ("LIUHEN_ACCESS_LOCKOUT_FAILURES", "100"),
        ("LIUHEN_ACCESS_SESSION_ABSOLUTE_HOURS", "720"),
        ("LIUHEN_ACCESS_SESSION_IDLE_MINUTES", "600"),
        ("LIUHEN_ACCESS_PASSWORD_MIN_LENGTH", "8"),
        ("LIUHEN_ACCESS_TOKEN_MAX_DAYS", "3650"),
    ):
        with monkeypatch.context() as m:
            m.setenv(variable, value)
            refused = _cli_login(capsys, m, GOOD)
            assert refused.code == 78 and variable in refused.err, refused.err
            assert "stricter" in refused.err
    # With the environment left alone the file's lockout holds: after it, even the
    # right password is refused.
    monkeypatch.setenv("LIUHEN_ACCESS_LOCKOUT_FAILURES", "100")
    assert _cli_login(capsys, monkeypatch, "Wrong-guess-0").code == 78
    monkeypatch.delenv("LIUHEN_ACCESS_LOCKOUT_FAILURES")
    for i in range(app.settings.access.lockout_failures):
        assert _cli_login(capsys, monkeypatch, f"Wrong-guess-{i}").code == 77
    assert _cli_login(capsys, monkeypatch, GOOD).code == 77
    with app.catalog.session() as s:
        assert get_user(s, "alice").state == LOCKED


def test_the_environment_may_make_the_lockout_stricter(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user(app, "alice", Role.REVIEWER)
    monkeypatch.setenv("LIUHEN_ACCESS_LOCKOUT_FAILURES", "2")
    assert app.settings.access.lockout_failures > 2
    for i in range(2):
        assert _cli_login(capsys, monkeypatch, f"Wrong-guess-{i}").code == 77
    refused = _cli_login(capsys, monkeypatch, GOOD)
    assert refused.code == 77 and "locked" in refused.err
