"""The review's holes over the HTTP API (issue 15): no one changes their own roles, and
the system administrator's enable does not undo the security administrator's lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from tests.api_helpers import PASSWORD, add_admin, add_user, client, login, served


@pytest.fixture
def base(app: Any) -> Iterator[str]:
    with served(app.settings) as url:
        yield url


def test_security_admin_may_not_grant_itself_a_role(app: Any, base: str) -> None:
    http, csrf = login(base, "secadm", totp=add_admin(app, "secadm", "security_admin"))
    with closing(http):
        http.headers["X-CSRF-Token"] = csrf
        assert http.put("/api/v1/users/secadm/roles/auditor").status_code == 403


def test_system_admin_enable_does_not_undo_a_lock(app: Any, base: str) -> None:
    sys_http, sys_csrf = login(base, "sysadm", totp=add_admin(app, "sysadm", "system_admin"))
    sec_http, sec_csrf = login(base, "secadm", totp=add_admin(app, "secadm", "security_admin"))
    with closing(sys_http), closing(sec_http):
        sys_http.headers["X-CSRF-Token"] = sys_csrf
        sec_http.headers["X-CSRF-Token"] = sec_csrf
        add_user(app, "alice", "reviewer")
        assert sec_http.post("/api/v1/users/alice/lock").json()["state"] == "locked"
        assert sys_http.post("/api/v1/users/alice/enable").status_code == 409
        with client(base) as alice:
            r = alice.post("/api/v1/session", json={"login": "alice", "password": PASSWORD})
            assert r.status_code != 200
        assert sys_http.post("/api/v1/users/alice/disable").json()["state"] == "disabled"
        # Nor does a disable and an enable: the lock is still in force afterwards.
        assert sys_http.post("/api/v1/users/alice/enable").json()["state"] == "locked"
        with client(base) as alice:
            r = alice.post("/api/v1/session", json={"login": "alice", "password": PASSWORD})
            assert r.status_code != 200
        assert sec_http.post("/api/v1/users/alice/unlock").json()["state"] == "active"


def test_a_locked_accounts_end_of_lock_is_told_in_station_time(app: Any, base: str) -> None:
    add_user(app, "alice", "reviewer")
    with client(base) as alice:
        for _i in range(app.settings.access.lockout_failures):
            r = alice.post("/api/v1/session", json={"login": "alice", "password": "wrong"})
            assert r.status_code == 401
        r = alice.post("/api/v1/session", json={"login": "alice", "password": PASSWORD})
    assert r.status_code == 401
    message = r.json()["error"]["message"]
    assert "locked until" in message and " +08:00" in message, message
    assert "+00:00" not in message
