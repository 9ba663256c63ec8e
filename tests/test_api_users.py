"""Users and roles over the HTTP API, for the administrators (三员分立), on SQLite and
PostgreSQL: the system administrator adds a user (one-time password, to be changed at
first login), the security administrator grants roles (two administrator roles refused
on one account) and locks; each needs its own role, and the changes are audited."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from tests.api_helpers import (
    PASSWORD,
    access_events,
    add_admin,
    add_user,
    client,
    error_of,
    issue_token,
    login,
    served,
    session_secret,
)


@pytest.fixture
def base(app: Any) -> Iterator[str]:
    with served(app.settings) as url:
        yield url


def test_administrators_manage_users_each_in_their_part(app: Any, base: str) -> None:
    sys_http, sys_csrf = login(base, "sysadm", totp=add_admin(app, "sysadm", "system_admin"))
    sec_http, sec_csrf = login(base, "secadm", totp=add_admin(app, "secadm", "security_admin"))
    with closing(sys_http), closing(sec_http):
        sys_http.headers["X-CSRF-Token"] = sys_csrf
        sec_http.headers["X-CSRF-Token"] = sec_csrf
        made = sys_http.post(
            "/api/v1/users",
            json={
                "login": "zhao",
                "display_name": "赵",
                "unit": "徐汇分局",
                "officer_number": "010203",
            },
        )
        assert made.status_code == 201
        one_time = made.json()["one_time_password"]
        assert one_time and made.json()["roles"] == []
        # Roles are the security administrator's, not the system administrator's.
        assert sys_http.put("/api/v1/users/zhao/roles/officer").status_code == 403
        granted = sec_http.put("/api/v1/users/zhao/roles/officer")
        assert granted.status_code == 200 and granted.json()["roles"] == ["officer"]
        # No one changes their own roles (another administrator must).
        both = sec_http.put("/api/v1/users/secadm/roles/audit_admin")
        assert both.status_code == 403 and error_of(both)["message"]
        assert [u["login"] for u in sys_http.get("/api/v1/users").json()] == [
            "secadm",
            "sysadm",
            "zhao",
        ]
        assert sec_http.get("/api/v1/users").status_code == 403

        # Zhao's first login: nothing but changing the one-time password is allowed.
        with client(base) as zhao:
            r = zhao.post("/api/v1/session", json={"login": "zhao", "password": one_time})
            csrf = r.json()["csrf_token"]
            assert r.json()["pending"] == ["password_change"]
            assert zhao.get("/api/v1/recordings").status_code == 403
            changed = zhao.post(
                "/api/v1/session/password",
                json={"current": one_time, "new": PASSWORD},
                headers={"X-CSRF-Token": csrf},
            )
            assert changed.status_code == 204
            assert zhao.get("/api/v1/recordings").status_code == 200

        locked = sec_http.post("/api/v1/users/zhao/lock")
        assert locked.json()["state"] == "locked"
    with client(base) as zhao:
        r = zhao.post("/api/v1/session", json={"login": "zhao", "password": PASSWORD})
        assert r.status_code == 401
    changes = access_events(app, object_type="user", object_id="zhao")
    assert [e.action for e in changes if e.actor != "zhao"] == [
        "access.user_change",  # added, as `liuhen user add` records it
        "access.role_change",
        "access.lock",
    ]


def test_tokens_and_evidence_roles_do_not_manage_users(app: Any, base: str) -> None:
    for secret in (issue_token(app, "auditor"), session_secret(app, "auditor")):
        with client(base, Authorization=f"Bearer {secret}") as auditor:
            assert auditor.get("/api/v1/users").status_code == 403
            assert auditor.post("/api/v1/users", json={"login": "x"}).status_code == 403
            assert auditor.put("/api/v1/users/x/roles/auditor").status_code == 403


def test_account_states_are_audited_by_their_own_actions(app: Any, base: str) -> None:
    # The same actions as `liuhen user lock|unlock|disable` (test_access_review_fixes.py).
    sys_http, sys_csrf = login(base, "sysadm", totp=add_admin(app, "sysadm", "system_admin"))
    sec_http, sec_csrf = login(base, "secadm", totp=add_admin(app, "secadm", "security_admin"))
    add_user(app, "alice", "reviewer")
    with closing(sys_http), closing(sec_http):
        sys_http.headers["X-CSRF-Token"] = sys_csrf
        sec_http.headers["X-CSRF-Token"] = sec_csrf
        assert sec_http.post("/api/v1/users/alice/lock").status_code == 200
        assert sec_http.post("/api/v1/users/alice/unlock").status_code == 200
        assert sys_http.post("/api/v1/users/alice/disable").status_code == 200
        refused = sec_http.post("/api/v1/users/alice/unlock")  # a disable is not a lock
        assert refused.status_code == 409
        assert "disabled, not locked" in error_of(refused)["message"]
        assert sys_http.post("/api/v1/users/alice/enable").json()["state"] == "active"
    events = access_events(app, object_type="user", object_id="alice")
    assert [(e.action, e.details["state"]) for e in events] == [
        ("access.lock", "locked"),
        ("access.unlock", "active"),
        ("access.user_disable", "disabled"),
        ("access.user_enable", "active"),
    ]


def test_a_password_change_that_locks_the_account_is_audited_as_a_lock(app: Any, base: str) -> None:
    add_user(app, "alice", "reviewer")
    http, csrf = login(base, "alice")
    with closing(http):
        http.headers["X-CSRF-Token"] = csrf
        for _i in range(app.settings.access.lockout_failures):
            r = http.post(
                "/api/v1/session/password", json={"current": "wrong", "new": "Another-Horse-7"}
            )
            assert r.status_code == 401
    locks = access_events(app, actions=["access.lock"], object_id="alice")
    assert len(locks) == 1 and locks[0].actor == "alice"
    assert locks[0].details["cause"] == "failed_password_checks"
