"""Who may do what over HTTP, and the audit of it (issue 15 points 2-5), over real TCP on
SQLite and PostgreSQL: a refused range request is 403 and one ``access.denied`` event; a
playback, a view and a download each leave exactly one event with the right actor; login
sets an HttpOnly cookie, changes need the CSRF token, logout ends the session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest

from catalog.devices import add_device, assign_device
from tests.api_helpers import (
    access_events,
    add_admin,
    add_proxy,
    add_user,
    client,
    error_of,
    issue_token,
    login,
    served,
    session_secret,
)
from tests.case_helpers import cst, make_recording


@pytest.fixture
def base(app: Any) -> Iterator[str]:
    with served(app.settings) as url:
        yield url


@pytest.fixture
def rec(app: Any) -> int:
    """A recording of officer 010203 on 徐汇分局's recorder DEV-A, with a proxy."""
    with app.catalog.transaction() as s:
        add_device(s, app.signer, serial="DEV-A", unit="徐汇分局", actor="test")
        assign_device(
            s,
            app.signer,
            serial="DEV-A",
            officer_number="010203",
            officer_name="",
            officer_unit="徐汇分局",
            start=cst(2026, 11, 1),
            end=None,
            actor="test",
        )
    rec_id = make_recording(
        app, serial="DEV-A", docking_officer="010203", start=cst(2026, 12, 1, 7)
    )
    add_proxy(app, rec_id)
    return rec_id


def _person(app: Any, base: str, role: str, unit: str = "徐汇分局") -> httpx.Client:
    """A logged-in user of ``role`` (login ROLE+UNIT), its session secret as Bearer."""
    secret = session_secret(app, role, unit, name=role + unit)
    return client(base, Authorization=f"Bearer {secret}")


def test_a_range_request_without_permission_is_403_and_audited(
    app: Any, base: str, rec: int
) -> None:
    # Another unit's reviewer: may play proxies, not this unit's.
    with _person(app, base, "reviewer", "黄浦分局") as other_unit:
        r = other_unit.get(
            f"/api/v1/recordings/{rec}/media/proxy", headers={"Range": "bytes=1000-1999"}
        )
    assert r.status_code == 403
    error = error_of(r)
    assert "recording.play" in error["message"] and error["code"] == "AccessDenied"
    assert r.content.find(b"\x00") == -1  # an error body, not a byte of the proxy
    denied = access_events(app, actions=["access.denied"])
    assert len(denied) == 1
    assert denied[0].actor == "reviewer黄浦分局"
    assert denied[0].recording_id == rec and denied[0].result == "denied"
    assert denied[0].details["permission"] == "recording.play"


def test_each_access_is_one_audit_event_with_its_actor(app: Any, base: str, rec: int) -> None:
    with _person(app, base, "archivist") as archivist:
        assert archivist.get(f"/api/v1/recordings/{rec}").status_code == 200
        played = archivist.get(f"/api/v1/recordings/{rec}/media/proxy")
        assert played.status_code == 200
        # Seeks of the same playback are not new viewings.
        seek = archivist.get(
            f"/api/v1/recordings/{rec}/media/proxy", headers={"Range": "bytes=5000-"}
        )
        assert seek.status_code == 206
        watched = archivist.post(
            f"/api/v1/recordings/{rec}/playback", json={"position_s": 12.5, "duration_s": 30}
        )
        assert watched.status_code == 204
        got = archivist.get(f"/api/v1/recordings/{rec}/media/proxy", params={"download": "1"})
        assert got.status_code == 200
        assert "attachment" in got.headers["content-disposition"]
        original = archivist.get(f"/api/v1/recordings/{rec}/media/original")
        assert original.status_code == 200 and len(original.content) > 0
    events = access_events(app, actor="archivist徐汇分局")
    assert [e.action for e in events] == [
        "access.view",
        "access.play",
        "access.play",
        "access.download",
        "access.download",
    ]
    assert all(e.recording_id == rec for e in events)
    assert events[2].details["position_s"] == 12.5 and events[2].details["duration_s"] == 30
    assert events[3].details["kind"] == "proxy" and events[4].details["kind"] == "original"


def test_roles_reach_what_point_2_says(app: Any, base: str, rec: int) -> None:
    # role: (view, play the proxy, download the proxy, take the original, place a hold)
    expected = {
        "officer": (403, 403, 403, 403, 403),  # 警号 999999 did not carry DEV-A
        "reviewer": (200, 200, 403, 403, 403),
        "supervisor": (200, 200, 403, 403, 403),
        "archivist": (200, 200, 200, 200, 201),
        "auditor": (200, 200, 403, 403, 403),
    }
    for role, codes in expected.items():
        with _person(app, base, role) as http:
            assert _reach(http, rec) == codes, role
    # The administrators (logged in with two factors) reach no evidence content.
    for role in ("system_admin", "security_admin", "audit_admin"):
        code = add_admin(app, f"admin-{role}", role)
        http, csrf = login(base, f"admin-{role}", totp=code)
        with closing(http):
            http.headers["X-CSRF-Token"] = csrf
            assert _reach(http, rec) == (403, 403, 403, 403, 403), role


def test_an_api_token_reaches_no_evidence_whatever_its_role(app: Any, base: str, rec: int) -> None:
    # The archivist's role holds everything _reach tries; its token holds none of it.
    token = issue_token(app, "archivist", name="cms")
    with client(base, Authorization=f"Bearer {token}") as http:
        assert _reach(http, rec) == (403, 403, 403, 403, 403)
        refused = error_of(http.get(f"/api/v1/recordings/{rec}/media/original"))
        assert "integration permissions" in refused["hint"]
        # What tokens are for still works: the case list of an integration.
        assert http.get("/api/v1/cases").status_code == 200
    denied = access_events(app, actor="token:cms", actions=["access.denied"])
    assert len(denied) == 6  # the five of _reach, and the original again
    assert {e.details["permission"] for e in denied} == {
        "recording.view",
        "recording.play",
        "recording.download",
        "original.download",
        "hold.change",
    }


def _reach(http: httpx.Client, rec: int) -> tuple[int, ...]:
    url = f"/api/v1/recordings/{rec}"
    return (
        http.get(url).status_code,
        http.get(f"{url}/media/proxy").status_code,
        http.get(f"{url}/media/proxy", params={"download": "1"}).status_code,
        http.get(f"{url}/media/original").status_code,
        http.post(f"{url}/holds", json={"reason": "court"}).status_code,
    )


def test_an_officer_sees_only_own_recordings(app: Any, base: str, rec: int) -> None:
    other = make_recording(app, serial="DEV-A", docking_officer="040506", start=cst(2026, 10, 1))
    add_user(app, "zhang", "officer", officer_number="010203")
    http, _csrf = login(base, "zhang")
    with closing(http):
        listed = http.get("/api/v1/recordings").json()["items"]
        assert [i["id"] for i in listed] == [rec]
        assert http.get(f"/api/v1/recordings/{rec}/media/proxy").status_code == 200
        assert http.get(f"/api/v1/recordings/{other}").status_code == 403
        assert http.get(f"/api/v1/recordings/{rec}/media/original").status_code == 403


def test_cookie_sessions_need_the_csrf_token_to_change_anything(
    app: Any, base: str, rec: int
) -> None:
    add_user(app, "li", "archivist")
    http, csrf = login(base, "li")
    with closing(http):
        cookie = http.cookies.jar
        session_cookie = next(c for c in cookie if c.name == "liuhen_session")
        assert session_cookie.has_nonstandard_attr("HttpOnly")
        assert http.get("/api/v1/session").json()["roles"] == ["archivist"]
        refused = http.post(f"/api/v1/recordings/{rec}/holds", json={"reason": "court"})
        assert refused.status_code == 403
        assert "CSRF" in error_of(refused)["message"]
        placed = http.post(
            f"/api/v1/recordings/{rec}/holds",
            json={"reason": "court"},
            headers={"X-CSRF-Token": csrf},
        )
        assert placed.status_code == 201
        assert http.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
        # The session is over on the server, whatever the client kept.
        http.cookies.set("liuhen_session", session_cookie.value or "", path="/api/")
        after = http.get("/api/v1/recordings")
        assert after.status_code == 401
    actions = [e.action for e in access_events(app, actor="li")]
    assert actions == ["access.login", "access.hold", "access.logout"]


def test_a_wrong_password_is_401_and_audited(app: Any, base: str) -> None:
    add_user(app, "wang", "reviewer")
    with client(base) as http:
        r = http.post("/api/v1/session", json={"login": "wang", "password": "wrong-password"})
        assert r.status_code == 401
        assert "liuhen_session" not in r.cookies
        error_of(r)
    failed = access_events(app, actions=["access.login_failed"])
    assert [(e.actor, e.result) for e in failed] == [("wang", "bad_password")]
