"""The permission holes an independent review found in the accounts and roles work
(issue 15), each shut: the reviewer's reproductions, asserting the correct behaviour."""

# ruff: noqa: F811 (the fixtures of test_access_cli, imported, are parameters here)

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from access.roles import Role
from tests.cli_helpers import run_cli
from tests.test_access_cli import act_as, cheap_hashing, user, world  # noqa: F401


def test_archivist_of_one_unit_may_not_export_a_time_range(
    app: Any, world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    user(app, "arch", Role.ARCHIVIST, unit="静安")
    act_as(app, "arch")
    out = tmp_path / "all.tar"
    r = run_cli(
        capsys, "export", "--from", "2026-11-01", "--to", "2026-11-05", "--out", str(out),
        "--decode", "none",
    )  # fmt: skip
    assert r.code == 77, r.err
    assert "export.run" in r.err
    assert not out.exists()  # refused before anything was written


def test_archivist_may_not_create_a_case_of_another_unit(
    app: Any, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    user(app, "arch", Role.ARCHIVIST, unit="静安")
    act_as(app, "arch")
    assert run_cli(capsys, "case", "create", "徐-9", "--unit", "徐汇").code == 77
    assert run_cli(capsys, "case", "create", "静-8", "--unit", "静安").code == 0


def test_archivist_may_not_pull_another_units_recordings_by_rule(
    app: Any, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    user(app, "arch", Role.ARCHIVIST, unit="静安")
    act_as(app, "arch")
    assert run_cli(capsys, "show", str(world["loose"])).code == 77
    assert run_cli(capsys, "case", "create", "静-9", "--unit", "静安").code == 0
    pulled = run_cli(
        capsys, "case", "action", "静-9", "X1", "--officer", "010203",
        "--start", "2026-11-02 00:00", "--end", "2026-11-02 23:00",
    )  # fmt: skip
    assert pulled.code == 0, pulled.err
    assert "0 recording(s) attached" in pulled.out
    assert run_cli(capsys, "show", str(world["loose"])).code == 77


def test_archivist_may_not_change_another_units_case_by_import(
    app: Any, world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    user(app, "arch", Role.ARCHIVIST, unit="静安")
    act_as(app, "arch")
    csv = tmp_path / "in.csv"
    csv.write_text(
        "case_number,status,action_id,officers,start,end\n"
        "徐-1,closed,A9,010203,2026-11-02 10:00,2026-11-02 12:00\n",
        encoding="utf-8",
    )
    r = run_cli(capsys, "case", "import", str(csv))
    assert r.code != 0
    assert "徐-1" in r.out + r.err
    user(app, "rev", Role.REVIEWER, unit="徐汇")
    act_as(app, "rev")
    shown = run_cli(capsys, "case", "show", "徐-1", "--json")
    assert shown.code == 0, shown.err
    assert '"closed"' not in shown.out


def test_system_admin_may_not_add_a_user_with_roles(
    app: Any, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    user(app, "root", Role.SYSTEM_ADMIN)
    act_as(app, "root")
    r = run_cli(
        capsys, "user", "add", "puppet", "--role", "auditor", "--role", "archivist",
        "--unit", "徐汇",
    )  # fmt: skip
    assert r.code == 77, r.err
    assert run_cli(capsys, "user", "add", "plain", "--unit", "徐汇").code == 0


def test_other_units_export_history_is_not_shown(
    app: Any, world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import json

    user(app, "a1", Role.ARCHIVIST, unit="徐汇")
    user(app, "a2", Role.ARCHIVIST, unit="静安")
    act_as(app, "a1")
    r = run_cli(
        capsys, "export", "--case", "徐-1", "--out", str(tmp_path / "b.tar"), "--decode", "none"
    )
    assert r.code == 0, r.err
    mine = json.loads(run_cli(capsys, "export", "list", "--json").out)
    assert len(mine) == 1
    act_as(app, "a2")
    lst = run_cli(capsys, "export", "list", "--json")
    assert lst.code == 0, lst.err
    assert json.loads(lst.out) == []
    first = mine[0]
    export_id = str(first.get("export_id") or first.get("id"))
    assert run_cli(capsys, "export", "show", export_id).code != 0


def test_an_api_token_of_an_archivist_reaches_no_evidence(
    app: Any,
    world: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    user(app, "sec", Role.SECURITY_ADMIN)
    act_as(app, "sec")
    issued = run_cli(
        capsys, "token", "issue", "cms", "--role", "archivist", "--unit", "徐汇", "--json"
    )
    assert issued.code == 0, issued.err
    monkeypatch.setenv("LIUHEN_TOKEN", json.loads(issued.out)["token"])
    # The archivist's role would show and export 徐汇's recordings; its token does neither.
    shown = run_cli(capsys, "show", str(world["rec"]))
    assert shown.code == 77, shown.err
    assert "integration permissions" in shown.err
    out = tmp_path / "b.tar"
    exported = run_cli(capsys, "export", "--case", "徐-1", "--out", str(out), "--decode", "none")
    assert exported.code == 77, exported.err
    assert not out.exists()
    # What the token is for still works.
    listed = run_cli(capsys, "case", "list")
    assert listed.code == 0, listed.err
    assert "徐-1" in listed.out


def _user_actions(app: Any, login: str) -> list[str]:
    from access.audit import access_events

    with app.catalog.session() as s:
        return [e.action for e in access_events(s, object_type="user", object_id=login)]


def test_account_states_are_audited_by_their_own_actions(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same actions as the HTTP API records (tests/test_api_users.py).
    user(app, "alice", Role.REVIEWER)
    user(app, "sec", Role.SECURITY_ADMIN)
    user(app, "root", Role.SYSTEM_ADMIN)
    act_as(app, "sec")
    assert run_cli(capsys, "user", "lock", "alice").code == 0
    assert run_cli(capsys, "user", "unlock", "alice").code == 0
    act_as(app, "root")
    assert run_cli(capsys, "user", "disable", "alice").code == 0
    act_as(app, "sec")
    refused = run_cli(capsys, "user", "unlock", "alice")  # a disable is not a lock
    assert refused.code != 0 and "disabled, not locked" in refused.err
    assert _user_actions(app, "alice") == ["access.lock", "access.unlock", "access.user_disable"]


def test_a_password_change_that_locks_the_account_is_audited_as_a_lock(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    from tests.test_access_cli import stdin

    user(app, "alice", Role.REVIEWER)
    act_as(app, "alice")
    for _i in range(app.settings.access.lockout_failures):
        stdin(monkeypatch, "wrong", "Another-Horse-7", "Another-Horse-7")
        assert run_cli(capsys, "user", "passwd", "--password-stdin").code == 77
    from access.audit import access_events

    with app.catalog.session() as s:
        locks = access_events(s, actions=["access.lock"], object_id="alice")
    assert len(locks) == 1
    assert locks[0].details["cause"] == "failed_password_checks"


def test_times_of_accounts_are_told_in_station_time(
    app: Any, world: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    import json

    from tests.test_access_cli import GOOD, stdin

    user(app, "alice", Role.REVIEWER, unit="静安")
    user(app, "sec", Role.SECURITY_ADMIN)
    for _i in range(app.settings.access.lockout_failures):
        stdin(monkeypatch, "wrong")
        assert run_cli(capsys, "login", "alice", "--password-stdin").code == 77
    stdin(monkeypatch, GOOD)
    locked = run_cli(capsys, "login", "alice", "--password-stdin")
    assert locked.code == 77
    # "locked until 2026-12-06 17:15:00 +08:00": Shanghai time, as people read it.
    assert "locked until" in locked.err and " +08:00" in locked.err, locked.err
    assert "+00:00" not in locked.err

    act_as(app, "sec")
    issued = run_cli(
        capsys, "token", "issue", "cms", "--role", "archivist", "--unit", "徐汇",
        "--expires", "2027-01-31 18:00", "--json",
    )  # fmt: skip
    assert issued.code == 0, issued.err
    assert json.loads(issued.out)["expires_at"] == "2027-01-31T18:00:00+08:00"
    tokens = json.loads(run_cli(capsys, "token", "list", "--json").out)
    assert tokens[0]["expires_at"] == "2027-01-31T18:00:00+08:00"
    assert tokens[0]["created_at"].endswith("+08:00") and tokens[0]["last_used_at"] is None
    granted = run_cli(
        capsys, "user", "case", "grant", "alice", "徐-1", "--from", "2026-12-01 08:00",
        "--until", "2026-12-31 18:00", "--reason", "协查",
    )  # fmt: skip
    assert granted.code == 0, granted.err
    grants = json.loads(run_cli(capsys, "user", "case", "list", "--json").out)
    assert grants[0]["starts_at"] == "2026-12-01T08:00:00+08:00"
    assert grants[0]["ends_at"] == "2026-12-31T18:00:00+08:00"


def test_totp_seeds_are_sealed_at_rest_and_logins_still_work(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    import time

    import pyotp
    from sqlalchemy import update

    from access.accounts import get_user
    from catalog.access_models import User
    from tests.test_access_cli import GOOD, stdin

    user(app, "alice", Role.REVIEWER)
    act_as(app, "alice")
    enroll = run_cli(capsys, "user", "2fa", "enroll")
    assert enroll.code == 0, enroll.err
    seed = next(line for line in enroll.out.splitlines() if line.isalnum() and line.isupper())
    totp = pyotp.TOTP(seed)
    with app.catalog.session() as s:
        stored = str(get_user(s, "alice").totp_secret)
    assert seed not in stored and stored.startswith("s1:")
    key = app.settings.data_dir / "keys" / "totp.key"
    assert key.stat().st_mode & 0o777 == 0o600
    # Enrolled with the previous step's code, so that the login's code is a new one.
    previous = totp.at(time.time() - totp.interval)
    assert run_cli(capsys, "user", "2fa", "enroll", "--code", previous).code == 0
    stdin(monkeypatch, GOOD)
    logged = run_cli(capsys, "login", "alice", "--password-stdin", "--totp", totp.now())
    assert logged.code == 0, logged.err

    # A seed stored plain before sealing still logs in, and is sealed by that login.
    with app.catalog.transaction() as s:
        s.execute(
            update(User).where(User.login == "alice").values(totp_secret=seed, totp_last_step=0)
        )
    stdin(monkeypatch, GOOD)
    again = run_cli(capsys, "login", "alice", "--password-stdin", "--totp", totp.now())
    assert again.code == 0, again.err
    with app.catalog.session() as s:
        resealed = str(get_user(s, "alice").totp_secret)
    assert resealed.startswith("s1:") and seed not in resealed
    # A wrong code is still refused.
    stdin(monkeypatch, GOOD)
    assert run_cli(capsys, "login", "alice", "--password-stdin", "--totp", "000000").code == 77
