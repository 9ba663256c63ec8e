"""The administrators' pages (issue 16 point 5): devices and assignments, users.

Over HTTP (no browser): a reviewer is refused both pages (403, recorded as
access.denied) and sees no link to them; an import without the form's CSRF token
imports nothing; the service's refusal of a second administrator role on one account
is shown in the page.

In a real browser (Debian's Chromium) on a real `liuhen serve`: the system
administrator imports an assignment list with one bad row (the page names the row and
what to fix, the other rows land), fixes it and imports again; the devices page shows
the officer now carrying each recorder and a recorder's history; the system
administrator adds a user, whose one-time password is shown once; the security
administrator grants a case to a reviewer of another unit for a period, and that
reviewer, refused the case before, then opens it; every control is labelled and the
pages fit 1280×800 (screenshots kept).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from catalog.cases import create_case
from catalog.models import CustodyEvent, DeviceAssignment
from config.i18n import set_language
from config.settings import zone_of
from config.timetext import show_time
from tests.api_helpers import PASSWORD, access_events, add_admin, add_user
from tests.offload_helpers import make_app
from tests.web_helpers import chromium, liuhen_serve, no_sideways_scroll, shot, unlabelled_controls
from web.app import create_app

pytestmark = pytest.mark.timeout(600)
UNIT = "徐汇分局"
OTHER_UNIT = "静安分局"
CASE = "沪徐市监罚〔2026〕77号"
SIZE = {"width": 1280, "height": 800}
HEADER = "serial,model,unit,officer_number,officer_name,officer_unit,start,end\n"
GOOD_ROWS = (
    "DEV-A1,DSJ-V8,徐汇分局,010203,张伟,徐汇分局,2026-11-01 07:00,\n"
    "DEV-B2,DSJ-V8,徐汇分局,010204,李娜,徐汇分局,2026-11-01 07:00,\n"
)
BAD_ROW = "DEV-C3,DSJ-V8,徐汇分局,010205,王强,徐汇分局,2026-13-45 07:00,\n"
FIXED_ROW = "DEV-C3,DSJ-V8,徐汇分局,010205,王强,徐汇分局,2026-11-02 07:00,\n"


def _totp(app: Any, login: str) -> str:
    """The current code of an administrator's authenticator (tests.api_helpers.add_admin
    turned two-factor login on)."""
    import pyotp

    from access.accounts import get_user

    with app.catalog.session() as s:
        return str(pyotp.TOTP(str(get_user(s, login).totp_secret)).now())


# --- over HTTP ----------------------------------------------------------------------------


@pytest.fixture
def web(app: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("LIUHEN_LANG", "zh")
    set_language(None)
    with TestClient(create_app(app.settings), follow_redirects=False) as http:
        yield http


def _login(web: TestClient, login: str, totp: str | None = None) -> str:
    form = {"login": login, "password": PASSWORD, "next": "/recordings", "totp": totp or ""}
    r = web.post("/login", data=form)
    assert r.status_code == 303, r.text
    return str(web.cookies["liuhen_csrf"])


def test_a_reviewer_is_refused_the_admin_pages(app: Any, web: TestClient) -> None:
    add_user(app, "li", "reviewer", unit=UNIT)
    _login(web, "li")
    assert 'href="/admin/' not in web.get("/recordings").text
    for url, permission in (
        ("/admin/devices", "device.admin"),
        ("/admin/devices/DEV-A1", "device.admin"),
        ("/admin/users", "user.admin"),
    ):
        r = web.get(url)
        assert r.status_code == 403, url
        assert "无权" in r.text and f"（{permission}）" in r.text and "安全管理员" in r.text
    denied = [e for e in access_events(app, actor="li") if e.action == "access.denied"]
    assert {e.details["permission"] for e in denied} == {"device.admin", "user.admin"}
    assert len(denied) == 3


def test_an_import_without_the_forms_token_imports_nothing(app: Any, web: TestClient) -> None:
    from catalog.devices import list_devices

    add_admin(app, "admin", "system_admin")
    csrf = _login(web, "admin", _totp(app, "admin"))
    page = web.get("/admin/devices")
    assert page.status_code == 200 and 'href="/admin/devices"' in page.text
    csv = (HEADER + GOOD_ROWS).encode()
    forged = web.post("/admin/devices/import", files={"file": ("a.csv", csv, "text/csv")})
    assert forged.status_code == 403
    with app.catalog.session() as s:
        assert list_devices(s) == []
    gbk = web.post(
        "/admin/devices/import",
        data={"csrf": csrf},
        files={"file": ("gbk.csv", (HEADER + GOOD_ROWS).encode("gbk"), "text/csv")},
    )
    assert gbk.status_code == 422 and "UTF-8" in gbk.text  # the file's problem, shown
    assert 'id="import-error"' in gbk.text
    done = web.post(
        "/admin/devices/import",
        data={"csrf": csrf},
        files={"file": ("分配表.csv", csv, "text/csv")},
    )
    assert done.status_code == 200, done.text
    assert "张伟" in done.text and "010203" in done.text
    english = web.get("/admin/devices?lang=en").text
    assert "Import an assignment list" in english and "Officer now" in english
    with app.catalog.session() as s:
        officers = {a["officer"] for d in list_devices(s) for a in d["assignments"]}
        notes = set(s.scalars(select(DeviceAssignment.note)))
    assert officers == {"010203", "010204"}
    # Named by the file's name as uploaded, as the command line names its file.
    assert notes == {"import 分配表.csv line 2", "import 分配表.csv line 3"}


def test_a_body_of_many_tiny_parts_is_refused_unread(app: Any, web: TestClient) -> None:
    """A form of ours has a few fields and one file: thousands of tiny parts are refused
    before the MIME parser spends the server's time on them (nothing imported)."""
    from catalog.devices import list_devices

    add_admin(app, "admin", "system_admin")
    csrf = _login(web, "admin", _totp(app, "admin"))
    many = {f"f{i}": str(i) for i in range(500)}
    refused = web.post(
        "/admin/devices/import",
        data={"csrf": csrf, **many},
        files={"file": ("a.csv", (HEADER + GOOD_ROWS).encode(), "text/csv")},
    )
    assert refused.status_code == 413
    with app.catalog.session() as s:
        assert list_devices(s) == []


def test_a_login_form_too_large_is_not_read(web: TestClient) -> None:
    """A login form is a few hundred bytes; a huge body, sent before any login, is read
    no further than the limit and answered as an empty form."""
    r = web.post("/login", data={"login": "x" * 200_000, "password": "y"})
    assert r.status_code == 400


def test_accounts_locked_ended_and_disabled_each_by_their_administrator(
    app: Any, web: TestClient
) -> None:
    from access.accounts import get_user

    add_admin(app, "admin", "system_admin")
    add_admin(app, "anquan", "security_admin")
    add_user(app, "li", "reviewer", unit=UNIT)
    with TestClient(create_app(app.settings), follow_redirects=False) as li:
        _login(li, "li")
        assert li.get("/recordings").status_code == 200
        csrf = _login(web, "anquan", _totp(app, "anquan"))
        ended = web.post("/admin/users/li/logout", data={"csrf": csrf})
        assert ended.status_code == 200 and "已结束 li 的 1 个会话" in ended.text
        assert li.get("/recordings").status_code == 303  # back to the login page
    for change, state in (("lock", "locked"), ("unlock", "active")):
        r = web.post("/admin/users/li/state", data={"csrf": csrf, "change": change})
        assert r.status_code == 200, r.text
        with app.catalog.session() as s:
            assert get_user(s, "li").state == state
    assert (
        web.post("/admin/users/li/state", data={"csrf": csrf, "change": "disable"}).status_code
        == 403
    )
    own = web.post("/admin/users/anquan/state", data={"csrf": csrf, "change": "lock"})
    assert own.status_code == 403 and "另一位管理员" in own.text
    csrf = _login(web, "admin", _totp(app, "admin"))
    for change, state in (("disable", "disabled"), ("enable", "active")):
        r = web.post("/admin/users/li/state", data={"csrf": csrf, "change": change})
        assert r.status_code == 200, r.text
        with app.catalog.session() as s:
            assert get_user(s, "li").state == state
    assert web.post("/admin/users/li/logout", data={"csrf": csrf}).status_code == 403
    actions = [e.action for e in access_events(app, actor="anquan")]
    assert "access.logout" in actions and "access.lock" in actions


def test_a_second_administrator_role_is_refused_in_the_page(app: Any, web: TestClient) -> None:
    from access.accounts import get_user, roles_of
    from access.roles import Role

    add_admin(app, "admin", "system_admin")
    add_admin(app, "anquan", "security_admin")
    csrf = _login(web, "anquan", _totp(app, "anquan"))
    page = web.get("/admin/users")
    assert page.status_code == 200
    assert "Add a user" not in page.text and "添加用户" not in page.text  # not their part
    r = web.post(
        "/admin/roles", data={"csrf": csrf, "login": "admin", "role": "audit_admin", "op": "grant"}
    )
    assert 400 <= r.status_code < 500, r.status_code
    assert 'id="admin-error"' in r.text and "三员分立" in r.text
    with app.catalog.session() as s:
        assert roles_of(s, get_user(s, "admin").id) == {Role.SYSTEM_ADMIN}


# --- in the browser -----------------------------------------------------------------------


def _browser_login(page: Any, base: str, login: str, totp: str | None = None) -> None:
    page.goto(f"{base}/login")
    page.fill("#login", login)
    page.fill("#password", PASSWORD)
    if totp:
        page.fill("#totp", totp)
    page.get_by_role("button", name="登录", exact=True).click()
    page.wait_for_load_state()
    assert "/login" not in page.url, page.locator("main").inner_text()


def _log_out(page: Any) -> None:
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url("**/login")


def _fits(page: Any, name: str) -> None:
    assert unlabelled_controls(page) == []
    no_sideways_scroll(page)
    shot(page, f"{name}-1280x800")


def _import(page: Any, csv: Path) -> None:
    page.locator("#import-file").set_input_files(str(csv))
    with page.expect_navigation():
        page.get_by_role("button", name="导入", exact=True).click()


def test_administrators_manage_devices_users_and_grants(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data")
    add_admin(app, "admin", "system_admin")
    add_admin(app, "anquan", "security_admin")
    add_user(app, "wu", "reviewer", unit=OTHER_UNIT)
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number=CASE, title="无照经营", unit=UNIT, actor="test")
    bad, fixed = tmp_path / "分配表.csv", tmp_path / "分配表-改.csv"
    bad.write_text(HEADER + GOOD_ROWS + BAD_ROW, encoding="utf-8")
    fixed.write_text(HEADER + GOOD_ROWS + FIXED_ROW, encoding="utf-8")
    with liuhen_serve(tmp_path / "data") as base, chromium() as browser:
        page = browser.new_page(viewport=SIZE)
        # A reviewer of another unit: no administration, and not the case (yet).
        _browser_login(page, base, "wu")
        assert page.locator("nav a", has_text="设备").count() == 0
        assert page.locator("nav a", has_text="用户").count() == 0
        for url in ("/admin/devices", "/admin/users"):
            refused = page.goto(f"{base}{url}")
            assert refused is not None and refused.status == 403, url
        refused = page.goto(f"{base}/cases/{CASE}")
        assert refused is not None and refused.status == 403
        _log_out(page)

        _browser_login(page, base, "admin", _totp(app, "admin"))
        page.get_by_role("link", name="设备", exact=True).click()
        page.wait_for_url("**/admin/devices")
        _import(page, bad)
        errors = page.locator("#import-errors").inner_text()
        assert "第 4 行" in errors and "2026-13-45 07:00" in errors, errors  # the row, the text
        assert "2026-12-01 08:55" in errors  # how to write it
        _fits(page, "admin-devices-refused-row")
        _import(page, fixed)
        assert page.locator("#import-errors").count() == 0
        report = page.locator("#import-report").inner_text()
        assert "领用记录 1 条" in report and "未变 2 行" in report and "拒绝 0 行" in report
        row = page.locator("#devices tr", has_text="DEV-C3")
        assert "王强" in row.inner_text() and "010205" in row.inner_text()
        assert "张伟" in page.locator("#devices tr", has_text="DEV-A1").inner_text()
        _fits(page, "admin-devices")
        page.get_by_role("link", name="DEV-C3").click()
        page.wait_for_url("**/admin/devices/DEV-C3")
        assert "王强 (010205)" in page.locator("#current-officer").inner_text()
        start = show_time(
            datetime(2026, 11, 1, 23, 0, tzinfo=UTC), zone_of(app.settings.station.time_zone)
        )
        assert start in page.locator("#history").inner_text()
        _fits(page, "admin-device")

        page.get_by_role("link", name="用户", exact=True).click()
        page.wait_for_url("**/admin/users")
        page.fill("#new-login", "zhou")
        page.fill("#new-name", "周明")
        page.fill("#new-unit", OTHER_UNIT)
        with page.expect_navigation():
            page.get_by_role("button", name="添加用户").click()
        one_time = page.locator("#one-time-password").inner_text().strip()
        assert len(one_time) >= app.settings.access.password_min_length
        _fits(page, "admin-users-added")
        page.goto(f"{base}/admin/users")
        assert one_time not in page.content()  # shown once
        assert page.locator("#user-zhou").count() == 1
        _log_out(page)

        _browser_login(page, base, "anquan", _totp(app, "anquan"))
        page.get_by_role("link", name="用户", exact=True).click()
        page.wait_for_url("**/admin/users")
        page.select_option("#role-user", "admin")
        page.select_option("#role-role", "audit_admin")
        with page.expect_navigation():
            page.get_by_role("button", name="授予角色").click()
        assert "三员分立" in page.locator("#admin-error").inner_text()
        until = datetime.now(UTC) + timedelta(days=7)
        page.select_option("#grant-user", "wu")
        page.fill("#grant-case", CASE)
        page.fill("#grant-until", show_time(until, zone_of(app.settings.station.time_zone)))
        page.fill("#grant-reason", "跨单位法制审核")
        with page.expect_navigation():
            page.get_by_role("button", name="授权案件").click()
        assert CASE in page.locator("#admin-notice").inner_text()
        assert "wu" in page.locator("#grants").inner_text()
        assert "密码最短长度" in page.locator("#policy dt").first.inner_text()
        shortest = page.locator("#policy dd").first.inner_text()
        assert shortest == str(app.settings.access.password_min_length)
        _fits(page, "admin-users-security")
        _log_out(page)

        _browser_login(page, base, "wu")
        opened = page.goto(f"{base}/cases/{CASE}")
        assert opened is not None and opened.status == 200
        assert CASE in page.locator("h1").inner_text()
    _check_the_records(app)
    app.close()


def _check_the_records(app: Any) -> None:
    """The import is in the custody log under the administrator's name; the grant and
    the refusals are in the access audit."""
    with app.catalog.session() as s:
        assigned = s.scalars(
            select(CustodyEvent).where(CustodyEvent.action == "device-assigned")
        ).all()
    assert {e.actor for e in assigned} == {"admin"}
    assert len(assigned) == 3  # the two good rows once, the fixed row once
    grants = [e for e in access_events(app, actor="anquan") if e.action == "access.grant_change"]
    assert len(grants) == 1 and grants[0].details["case"] == CASE
    denied = [e for e in access_events(app, actor="wu") if e.action == "access.denied"]
    assert {e.details["permission"] for e in denied} >= {"device.admin", "user.admin"}
