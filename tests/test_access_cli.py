"""Accounts from the command line, through the real `liuhen` entry point: the first
administrator of `liuhen init --admin`, login with its one-time password and second
factor, exit 77 without a login, LIUHEN_TOKEN, the session file, the actor recorded
from the account, the installs without accounts that work as before, and the CLI side
of the permission matrix: every role × commands of every permission, on SQLite and
PostgreSQL."""

from __future__ import annotations

import io
import json
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pyotp
import pytest
from sqlalchemy import select, update

from access.accounts import create_user, get_user
from access.roles import ADMIN_ROLES, Permission, Role
from access.sessions import issue_token, open_session
from catalog.access_models import User
from catalog.models import CustodyEvent, Device
from config.settings import AccessSettings
from liuhen.actor import session_file, write_session_secret
from liuhen.cli import cli
from liuhen.command_permissions import COMMANDS
from tests.case_helpers import cst, make_recording
from tests.cli_helpers import run_cli
from tests.test_access_policy import EXPECTED

GOOD = "Correct-Horse-9"
CHEAP_ARGON2 = {
    "LIUHEN_ACCESS_ARGON2_TIME_COST": "1",
    "LIUHEN_ACCESS_ARGON2_MEMORY_KIB": "1024",
    "LIUHEN_ACCESS_ARGON2_PARALLELISM": "1",
}


# What the CLI reads from CHEAP_ARGON2 (the app fixture's settings ignore the environment).
CHEAP = AccessSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory of its own, on SQLite, not made yet."""
    data = tmp_path / "data"
    monkeypatch.setenv("LIUHEN_HOME", str(data))
    return data


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CHEAP_ARGON2.items():
        monkeypatch.setenv(name, value)


def stdin(monkeypatch: pytest.MonkeyPatch, *lines: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(line + "\n" for line in lines)))


def user(app: Any, login: str, role: Role, *, unit: str = "徐汇", number: str | None = None) -> int:
    """An account ready to work: its own password, and a second factor for an admin."""
    with app.catalog.transaction() as s:
        made, _pw = create_user(
            s,
            login=login,
            unit="" if role in ADMIN_ROLES else unit,
            officer_number=number,
            roles=[role],
            actor="test",
            policy=CHEAP,
            password=GOOD,
        )
        made.totp_enabled = role in ADMIN_ROLES
        return made.id


def act_as(app: Any, login: str) -> None:
    """Log `login` in (a session, its secret in the session file) without the CLI."""
    from access.accounts import principal_of

    with app.catalog.transaction() as s:
        principal = principal_of(s, get_user(s, login), via="session", policy=app.settings.access)
        secret = open_session(s, principal, policy=app.settings.access)
    write_session_secret(app.settings, secret)


# --- without accounts: as before ------------------------------------------------------------


def test_without_accounts_commands_run_as_the_local_user(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = run_cli(capsys, "device", "add", "A123456")
    assert quiet.code == 0, quiet.err
    assert "no user accounts" not in quiet.err
    loud = run_cli(capsys, "-v", "device", "add", "A765432", "--actor", "张三")
    assert loud.code == 0, loud.err
    assert loud.err.count("no user accounts") == 1 and "local user" in loud.err
    with app.catalog.session() as s:
        actors = set(
            s.scalars(select(CustodyEvent.actor).where(CustodyEvent.action.like("device%")))
        )
    import getpass

    assert actors == {getpass.getuser(), "张三"}  # the OS user by default; free text allowed
    # Administering accounts begins with the first administrator, not with the local user.
    refused = run_cli(capsys, "user", "add", "alice", "--unit", "徐汇", "--role", "reviewer")
    assert refused.code == 77 and "user.admin" in refused.err


def test_init_says_how_to_make_the_first_administrator(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_cli(capsys, "init")
    assert first.code == 0 and "liuhen init --admin LOGIN" in first.err


# --- the first administrator and the login ----------------------------------------------------


def test_first_administrator_login_password_change_and_second_factor(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    made = run_cli(capsys, "init", "--admin", "root", "--json")
    assert made.code == 0, made.err
    one_time = json.loads(made.out)["admin"]["one_time_password"]
    again = run_cli(capsys, "init", "--admin", "root2", "--json")
    assert "admin" not in json.loads(again.out)  # once only: accounts exist now
    # No login: a command needing a permission fails with 77 and says what to do.
    refused = run_cli(capsys, "device", "list")
    assert refused.code == 77 and "run `liuhen login`" in refused.err
    stdin(monkeypatch, "not-it")
    wrong = run_cli(capsys, "login", "root", "--password-stdin")
    assert wrong.code == 77 and "wrong login or password" in wrong.err
    stdin(monkeypatch, one_time)
    logged = run_cli(capsys, "login", "root", "--password-stdin")
    assert logged.code == 0, logged.err
    assert "user passwd" in logged.err and "2fa enroll" in logged.err
    # The one-time password and the missing second factor hold everything else back.
    held = run_cli(capsys, "device", "list")
    assert held.code == 77 and "liuhen user passwd" in held.err
    stdin(monkeypatch, one_time, "New-Admin-Pass-1", "New-Admin-Pass-1")
    assert run_cli(capsys, "user", "passwd", "--password-stdin").code == 0
    enroll = run_cli(capsys, "user", "2fa", "enroll")
    assert enroll.code == 0, enroll.err
    seed = next(line for line in enroll.out.splitlines() if line.isalnum() and line.isupper())
    done = run_cli(capsys, "user", "2fa", "enroll", "--code", pyotp.TOTP(seed).now())
    assert done.code == 0, done.err
    recovery = [line for line in done.out.splitlines() if line.count("-") == 2]
    assert len(recovery) == 10
    assert run_cli(capsys, "device", "list").code == 0
    # Logging in again needs the second factor.
    assert run_cli(capsys, "logout").code == 0
    assert run_cli(capsys, "device", "list").code == 77
    stdin(monkeypatch, "New-Admin-Pass-1")
    no_code = run_cli(capsys, "login", "root", "--password-stdin")
    assert no_code.code == 77 and "two-factor code" in no_code.err
    stdin(monkeypatch, "New-Admin-Pass-1")
    with_code = run_cli(capsys, "login", "root", "--password-stdin", "--totp", recovery[0])
    assert with_code.code == 0, with_code.err
    assert run_cli(capsys, "device", "list").code == 0


def test_the_session_file_is_private(app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    user(app, "alice", Role.REVIEWER)
    act_as(app, "alice")
    path = session_file(app.settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert str(Path.home()) in str(path)
    who = run_cli(capsys, "whoami", "--json")
    assert json.loads(who.out)["login"] == "alice"


def test_a_revoked_session_is_refused_at_the_next_command(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    user(app, "sec", Role.SECURITY_ADMIN)
    user(app, "alice", Role.REVIEWER)
    act_as(app, "alice")
    assert run_cli(capsys, "case", "list").code == 0
    alice_secret = session_file(app.settings).read_text()
    act_as(app, "sec")
    forced = run_cli(capsys, "user", "logout", "alice")
    assert forced.code == 0 and "ended 1 session" in forced.out
    session_file(app.settings).write_text(alice_secret)
    after = run_cli(capsys, "case", "list")
    assert after.code == 77 and "revoked" in after.err
    assert not session_file(app.settings).exists()  # a dead session is forgotten


def test_an_api_token_in_the_environment(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user(app, "root", Role.SYSTEM_ADMIN)  # accounts exist
    with app.catalog.transaction() as s:
        token = issue_token(
            s,
            name="cms",
            role=Role.ARCHIVIST,
            unit="徐汇",
            expires_at=datetime.now(UTC) + timedelta(days=1),
            created_by="sec",
        )
    monkeypatch.setenv("LIUHEN_TOKEN", token)
    made = run_cli(capsys, "case", "create", "徐-7", "--unit", "徐汇")
    assert made.code == 0, made.err
    with app.catalog.session() as s:
        actors = set(s.scalars(select(CustodyEvent.actor).where(CustodyEvent.object_id == "徐-7")))
    assert actors == {"token:cms"}
    assert run_cli(capsys, "device", "add", "A123456").code == 77  # not an archivist's
    monkeypatch.setenv("LIUHEN_TOKEN", token + "x")
    bad = run_cli(capsys, "case", "list")
    assert bad.code == 77 and "API token" in bad.err


# --- the actor --------------------------------------------------------------------------------


def test_the_actor_is_the_logged_in_account(app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    user(app, "root", Role.SYSTEM_ADMIN)
    act_as(app, "root")
    assert run_cli(capsys, "device", "add", "A123456").code == 0
    same = run_cli(capsys, "device", "add", "A765432", "--actor", "root")
    assert same.code == 0, same.err
    other = run_cli(capsys, "device", "add", "A999999", "--actor", "somebody")
    assert other.code == 2 and "--actor" in other.err and "logged in as root" in other.err
    with app.catalog.session() as s:
        assert set(
            s.scalars(select(CustodyEvent.actor).where(CustodyEvent.action.like("device%")))
        ) == {"root"}
        assert s.scalar(select(Device.id).where(Device.serial == "A999999")) is None


def test_every_command_taking_actor_is_in_the_permission_table() -> None:
    from tests.test_actor_option import _commands

    taking = {
        name
        for name, command in _commands(cli)
        if any("--actor" in getattr(p, "opts", []) for p in command.params)
    }
    # `export` is a group that runs itself; its --actor is on the group.
    export = cli.get_command(click.Context(cli), "export")
    assert export is not None and any("--actor" in getattr(p, "opts", []) for p in export.params)
    assert taking and taking <= set(COMMANDS)


def test_every_listed_command_exists() -> None:
    from tests.test_actor_option import _commands

    names = {name for name, _c in _commands(cli)} | {"export"}
    assert set(COMMANDS) <= names


@pytest.mark.parametrize("role", list(Role))
def test_the_command_table_grants_what_the_issue_says(role: Role) -> None:
    from access.policy import Principal, decide

    principal = Principal(1, "x", "x", "徐汇", "010203", frozenset({role}), "session")
    for path, rule in COMMANDS.items():
        if rule.own is not None:
            continue  # self-service: checked in the CLI matrix below
        expected = any(p in EXPECTED[role] for p in rule.permissions)
        assert any(decide(principal, p).allowed for p in rule.permissions) == expected, path


# --- the CLI permission matrix ----------------------------------------------------------------


@pytest.fixture
def world(app: Any, capsys: pytest.CaptureFixture[str]) -> Iterator[dict[str, Any]]:
    """Unit 徐汇: device A111111 carried by officer 010203, recordings rec (in case 徐-1) and
    loose; unit 静安: recording far, in case 静-1."""
    rec = make_recording(app, serial="A111111", docking_officer="010203", start=cst(2026, 11, 2, 9))
    loose = make_recording(
        app, serial="A111111", docking_officer="010203", start=cst(2026, 11, 2, 11)
    )
    far = make_recording(app, serial="B222222", docking_officer="040506", start=cst(2026, 11, 3, 9))
    with app.catalog.transaction() as s:
        s.execute(update(Device).where(Device.serial == "A111111").values(unit="徐汇"))
        s.execute(update(Device).where(Device.serial == "B222222").values(unit="静安"))
    for number, unit, rec_id in (("徐-1", "徐汇", rec), ("静-1", "静安", far)):
        assert run_cli(capsys, "case", "create", number, "--unit", unit).code == 0
        assert run_cli(capsys, "case", "attach", number, str(rec_id), "--reason", "t").code == 0
    yield {"rec": rec, "loose": loose, "far": far}


def matrix(w: dict[str, Any], out: Path) -> list[tuple[Permission, tuple[str, ...]]]:
    """One command of each permission, every target in unit 徐汇 (rec: officer 010203's)."""
    rec, loose = str(w["rec"]), str(w["loose"])
    return [
        (Permission.RECORDING_VIEW, ("show", rec)),
        (Permission.RECORDING_MARK, ("retention", "review", rec, "--reason", "checked")),
        (Permission.HOLD_CHANGE, ("retention", "hold", rec, "--reason", "court")),
        (Permission.RETENTION_CHANGE, ("retention", "sweep")),
        (Permission.CASE_VIEW, ("case", "show", "徐-1")),
        (Permission.CASE_CHANGE, ("case", "update", "徐-1", "--title", "t", "--reason", "typo")),
        (Permission.CASE_ATTACH, ("case", "attach", "徐-1", loose, "--reason", "seen")),
        (Permission.EXPORT, ("export", "--case", "徐-1", "--out", str(out))),
        (Permission.CUSTODY_VIEW, ("custody", "verify")),
        (Permission.VERIFY, ("verify", "--store", "--sample", "1")),
        (Permission.COMPLIANCE_VIEW, ("compliance", "summary", "--unit", "徐汇", "--from", "2026")),
        (Permission.DEVICE_ADMIN, ("device", "add", "C333333")),
        (Permission.DISTRICT_STATUS, ("district", "status")),
        (Permission.USER_ADMIN, ("user", "disable", "nobody-here")),
        (Permission.ROLE_ADMIN, ("token", "list")),
        (Permission.SESSION_REVOKE, ("user", "logout", "nobody-here")),
    ]


@pytest.mark.parametrize("role", list(Role))
def test_cli_permission_matrix(
    app: Any, world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path, role: Role
) -> None:
    user(app, "actor", role, number="010203" if role is Role.OFFICER else None)
    act_as(app, "actor")
    for permission, argv in matrix(world, tmp_path / "bags"):
        result = run_cli(capsys, *argv)
        expected = permission in EXPECTED[role]
        refused = result.code == 77 and "may not" in result.err
        assert refused is not expected, (role, argv, result.code, result.err)


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.ARCHIVIST, Role.OFFICER])
def test_cli_refuses_another_units_evidence(
    app: Any, world: dict[str, Any], capsys: pytest.CaptureFixture[str], role: Role
) -> None:
    user(app, "outsider", role, unit="静安", number="040506" if role is Role.OFFICER else None)
    act_as(app, "outsider")
    own = run_cli(capsys, "show", str(world["far"]))
    assert own.code == 0, own.err
    other = run_cli(capsys, "show", str(world["rec"]))
    assert other.code == 77 and f"recording {world['rec']}" in other.err
    if role is not Role.OFFICER:
        assert run_cli(capsys, "case", "show", "徐-1").code == 77
        assert run_cli(capsys, "case", "show", "静-1").code == 0
        # A list shows what its reader may see, not every unit's cases.
        listed = run_cli(capsys, "case", "list", "--json")
        assert listed.code == 0, listed.err
        assert [c["number"] for c in json.loads(listed.out)] == ["静-1"]


def test_a_case_grant_from_the_command_line(
    app: Any, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    user(app, "sec", Role.SECURITY_ADMIN)
    user(app, "outsider", Role.REVIEWER, unit="外单位")
    act_as(app, "outsider")
    assert run_cli(capsys, "show", str(world["rec"])).code == 77
    act_as(app, "sec")
    until = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%d")
    granted = run_cli(
        capsys,
        "user",
        "case",
        "grant",
        "outsider",
        "徐-1",
        "--until",
        until,
        "--reason",
        "法制审核",
    )
    assert granted.code == 0, granted.err
    assert "徐-1 granted to outsider" in granted.out and "[green]" not in granted.out
    act_as(app, "outsider")
    assert run_cli(capsys, "show", str(world["rec"])).code == 0
    assert run_cli(capsys, "show", str(world["loose"])).code == 77  # not in the case
    act_as(app, "sec")
    assert run_cli(capsys, "user", "case", "revoke", "outsider", "徐-1").code == 0
    act_as(app, "outsider")
    assert run_cli(capsys, "show", str(world["rec"])).code == 77


def test_admin_roles_refused_on_one_account_from_the_command_line(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    user(app, "root", Role.SYSTEM_ADMIN)
    user(app, "sec", Role.SECURITY_ADMIN)
    act_as(app, "sec")
    refused = run_cli(capsys, "user", "role", "grant", "root", "audit_admin")
    assert refused.code == 65 and "三员分立" in refused.err
    self_grant = run_cli(capsys, "user", "role", "grant", "sec", "archivist")
    assert self_grant.code == 2 and "your own account" in self_grant.err
    with app.catalog.session() as s:
        from access.accounts import roles_of

        root = s.scalar(select(User).where(User.login == "root"))
        assert root is not None and roles_of(s, root.id) == {Role.SYSTEM_ADMIN}


def test_lockout_from_the_command_line(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user(app, "alice", Role.REVIEWER)
    user(app, "sec", Role.SECURITY_ADMIN)
    for _i in range(app.settings.access.lockout_failures):
        stdin(monkeypatch, "wrong")
        assert run_cli(capsys, "login", "alice", "--password-stdin").code == 77
    stdin(monkeypatch, GOOD)
    locked = run_cli(capsys, "login", "alice", "--password-stdin")
    assert locked.code == 77 and "locked until" in locked.err
    act_as(app, "sec")
    listed = run_cli(capsys, "user", "list", "--json")
    assert {u["login"]: u["state"] for u in json.loads(listed.out)}["alice"] == "locked"
    assert run_cli(capsys, "user", "unlock", "alice").code == 0
    stdin(monkeypatch, GOOD)
    assert run_cli(capsys, "login", "alice", "--password-stdin").code == 0


def test_disable_and_enable_keep_a_lockout(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The system administrator's disable and enable do not lift the lock after failed
    logins: only the security administrator's unlock (or its end) does (三员分立)."""
    user(app, "alice", Role.REVIEWER)
    user(app, "root", Role.SYSTEM_ADMIN)
    user(app, "sec", Role.SECURITY_ADMIN)
    for _i in range(app.settings.access.lockout_failures):
        stdin(monkeypatch, "wrong")
        assert run_cli(capsys, "login", "alice", "--password-stdin").code == 77
    act_as(app, "root")
    assert run_cli(capsys, "user", "disable", "alice").code == 0
    enabled = run_cli(capsys, "--lang", "en", "user", "enable", "alice")
    assert enabled.code == 0 and "is now locked" in enabled.out, enabled.err
    act_as(app, "sec")
    listed = run_cli(capsys, "user", "list", "--json")
    assert {u["login"]: u["state"] for u in json.loads(listed.out)}["alice"] == "locked"
    stdin(monkeypatch, GOOD)
    locked = run_cli(capsys, "--lang", "en", "login", "alice", "--password-stdin")
    assert locked.code == 77 and "locked until" in locked.err
    act_as(app, "sec")
    assert run_cli(capsys, "user", "unlock", "alice").code == 0
    stdin(monkeypatch, GOOD)
    assert run_cli(capsys, "login", "alice", "--password-stdin").code == 0


def test_a_denial_reads_in_chinese(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.i18n_helpers import assert_chinese

    user(app, "alice", Role.REVIEWER)
    act_as(app, "alice")
    monkeypatch.setenv("LIUHEN_LANG", "zh")
    refused = run_cli(capsys, "device", "add", "A123456")
    assert refused.code == 77
    # (The "error:" and "what to do:" labels are the command line's own, liuhen/cli.py.)
    labels = re.compile(r"^\s*(liuhen: )?(error|what to do):")
    body = [labels.sub("", line) for line in refused.err.splitlines()]
    assert "device.admin" in refused.err
    assert_chinese("\n".join(body))


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("LIUHEN_ACCESS_SESSION_IDLE_MINUTES", "800", "longer than the absolute session end"),
        ("LIUHEN_ACCESS_PASSWORD_MIN_LENGTH", "4", "password_min_length"),
        ("LIUHEN_ACCESS_LOCKOUT_FAILURES", "0", "lockout_failures"),
    ],
)
def test_access_settings_are_checked_at_start(
    home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    why: str,
) -> None:
    monkeypatch.setenv(variable, value)
    result = run_cli(capsys, "config", "show")
    assert result.code == 78 and why in result.err and variable in result.err, result.err
