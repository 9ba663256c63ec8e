"""The pages over HTTP (no browser): language, login and logout over the API's session,
what a role may see, markers, and every page text in the Chinese catalog."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from catalog.devices import add_device, assign_device
from config.i18n import load_catalog, set_language
from tests.api_helpers import PASSWORD, access_events, add_proxy, add_user
from tests.case_helpers import cst, make_recording
from tests.i18n_helpers import assert_chinese
from web.app import create_app
from web.render import TEMPLATES

UNIT = "徐汇分局"


@pytest.fixture
def zh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIUHEN_LANG", "zh")
    set_language(None)


@pytest.fixture
def web(app: Any, zh: None) -> Iterator[TestClient]:
    with TestClient(create_app(app.settings), follow_redirects=False) as http:
        yield http


@pytest.fixture
def rec(app: Any) -> int:
    """A recording of officer 010203 on 徐汇分局's recorder DEV-A, with a proxy."""
    with app.catalog.transaction() as s:
        add_device(s, app.signer, serial="DEV-A", unit=UNIT, actor="test")
        assign_device(
            s,
            app.signer,
            serial="DEV-A",
            officer_number="010203",
            officer_unit=UNIT,
            start=cst(2026, 11, 1),
            actor="test",
        )
    rec_id = make_recording(
        app, serial="DEV-A", docking_officer="010203", start=cst(2026, 12, 1, 7)
    )
    add_proxy(app, rec_id)
    return rec_id


def _login(web: TestClient, login: str) -> str:
    r = web.post("/login", data={"login": login, "password": PASSWORD, "next": "/recordings"})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/recordings"
    return str(web.cookies["liuhen_csrf"])


def _text(html: str) -> str:
    """What a reader sees: the page without its tags, scripts and attributes."""
    html = re.sub(r"(?s)<(script|style|template)\b.*?</\1>", " ", html)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_every_page_text_has_its_chinese() -> None:
    catalog = load_catalog()
    pattern = re.compile(r"""_\(\s*(?:"([^"]+)"|'([^']+)')\s*\)""")
    texts = {a or b for t in TEMPLATES.glob("*.html") for a, b in pattern.findall(t.read_text())}
    assert len(texts) > 50
    missing = sorted(t for t in texts if catalog.gettext(t) == t)
    assert missing == []


def test_chinese_first_and_english_on_request(web: TestClient) -> None:
    page = web.get("/login")
    assert page.status_code == 200
    assert '<html lang="zh-CN">' in page.text
    assert "登录名" in page.text and "密码" in page.text
    assert_chinese(_text(page.text))
    english = web.get("/login?lang=en")
    assert "Password" in english.text and "密码" not in english.text
    assert web.cookies["liuhen_lang"] == "en"
    assert "Password" in web.get("/login").text  # remembered
    assert "密码" in web.get("/login?lang=zh").text


def test_login_logout_and_wrong_password(app: Any, web: TestClient, rec: int) -> None:
    add_user(app, "li", "reviewer", unit=UNIT)
    assert web.get("/recordings").headers["location"] == "/login?next=/recordings"
    wrong = web.post("/login", data={"login": "li", "password": "nope", "next": "/"})
    assert wrong.status_code == 401
    assert "错误" in wrong.text and "liuhen_session" not in web.cookies
    csrf = _login(web, "li")
    listing = web.get("/recordings?officer=010203")
    assert listing.status_code == 200
    assert f'href="/recordings/{rec}"' in listing.text
    assert "2026-12-01 07:00:00 +08:00" in listing.text  # the station's zone
    # Without the session's CSRF token a logout form from elsewhere does not end it.
    web.post("/logout", data={"csrf": "forged"})
    assert web.get("/recordings").status_code == 200
    actions = [e.action for e in access_events(app, actor="li")]
    assert "access.logout" not in actions
    out = web.post("/logout", data={"csrf": csrf})
    assert out.headers.get("location") == "/login", out.text
    assert web.get("/recordings").status_code == 303
    actions = [e.action for e in access_events(app, actor="li")]
    assert actions.count("access.login") == 1 and actions.count("access.logout") == 1


def test_a_login_returns_only_to_this_site(app: Any, web: TestClient) -> None:
    add_user(app, "li", "reviewer", unit=UNIT)
    r = web.post("/login", data={"login": "li", "password": PASSWORD, "next": "//evil.example/"})
    assert r.headers["location"] == "/recordings"


def test_another_units_recording_is_refused_and_audited(
    app: Any, web: TestClient, rec: int
) -> None:
    add_user(app, "zhao", "officer", unit="静安分局", officer_number="999999")
    _login(web, "zhao")
    page = web.get(f"/recordings/{rec}")
    assert page.status_code == 403
    assert "错误" in page.text
    listing = web.get("/recordings")
    assert f'href="/recordings/{rec}"' not in listing.text
    denied = [e for e in access_events(app, actor="zhao") if e.action == "access.denied"]
    assert len(denied) == 1


def test_recording_page_shows_the_player_and_audits_the_view(
    app: Any, web: TestClient, rec: int
) -> None:
    add_user(app, "li", "reviewer", unit=UNIT)
    _login(web, "li")
    page = web.get(f"/recordings/{rec}")
    assert page.status_code == 200
    assert f'src="/api/v1/recordings/{rec}/media/proxy"' in page.text
    assert "添加标记" in page.text and "关联到案件" in page.text
    assert "2026-12-01 07:00:00 +08:00" in page.text
    views = [e for e in access_events(app, actor="li") if e.action == "access.view"]
    assert len(views) == 1


def test_markers_are_custody_events_in_position_order(app: Any, web: TestClient, rec: int) -> None:
    add_user(app, "li", "reviewer", unit=UNIT)
    add_user(app, "auditor1", "auditor", unit=UNIT)
    csrf = _login(web, "li")
    url = f"/api/v1/recordings/{rec}/markers"
    for at, note in ((42.5, "出示证件"), (3.0, "到达现场")):
        r = web.post(url, json={"position_s": at, "note": note}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 201, r.text
        assert r.json()["actor"] == "li"
    assert web.post(url, json={"position_s": 1, "note": "x"}).status_code == 403  # no CSRF
    listed = web.get(url).json()
    assert [(m["position_s"], m["note"]) for m in listed] == [(3.0, "到达现场"), (42.5, "出示证件")]
    csrf = _login(web, "auditor1")  # reads everything, changes nothing
    refused = web.post(url, json={"position_s": 5, "note": "x"}, headers={"X-CSRF-Token": csrf})
    assert refused.status_code == 403
    assert len(web.get(url).json()) == 2
    with app.catalog.session() as s:
        from sqlalchemy import select

        from catalog.models import CustodyEvent

        events = list(
            s.scalars(select(CustodyEvent).where(CustodyEvent.action == "recording.marker"))
        )
    assert sorted(json.loads(e.details)["note"] for e in events) == ["出示证件", "到达现场"]


def test_station_screen_without_a_journal(app: Any, web: TestClient) -> None:
    """Off the station's own screen (the main listener) a login is needed, and the
    district status permission (a reviewer's is refused); a server without a station
    journal says it is not a station."""
    assert web.get("/station").status_code == 303
    add_user(app, "li", "reviewer", unit=UNIT)
    _login(web, "li")
    assert web.get("/station").status_code == 403
    add_user(app, "sun", "auditor", unit=UNIT)
    _login(web, "sun")
    Path(app.settings.journal_path).unlink(missing_ok=True)
    page = web.get("/station")
    assert page.status_code == 200
    assert "本服务器不是采集站" in page.text


def test_cases_list_and_case_page(app: Any, web: TestClient, rec: int) -> None:
    from catalog.cases import create_case

    add_user(app, "chen", "archivist", unit=UNIT)
    add_user(app, "zhao", "reviewer", unit="静安分局")
    number = "沪徐市监罚〔2026〕7号"
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number=number, title="无照经营", unit=UNIT, actor="test")
    _login(web, "chen")
    listing = web.get("/cases?status=open")
    assert listing.status_code == 200 and number in listing.text
    assert number not in web.get("/cases?q=不存在").text
    page = web.get(f"/cases/{number}")
    assert page.status_code == 200
    assert "开始导出" in page.text and "结案" in page.text
    assert_chinese(_text(page.text))
    _login(web, "zhao")  # another unit's reviewer: not listed, not shown
    assert number not in web.get("/cases").text
    assert web.get(f"/cases/{number}").status_code == 403
    assert web.get("/exports/no-such-export/receipt").status_code in (403, 404)


def test_access_log_for_the_auditor_only(app: Any, web: TestClient, rec: int) -> None:
    add_user(app, "li", "reviewer", unit=UNIT)
    add_user(app, "sun", "auditor", unit=UNIT)
    _login(web, "li")
    assert web.get(f"/recordings/{rec}").status_code == 200  # a view, audited
    assert web.get("/audit").status_code == 403  # a reviewer reads no audit (audited)
    _login(web, "sun")
    log = web.get(f"/audit?user=li&recording={rec}")
    assert log.status_code == 200
    rows = re.findall(r'<td class="actor">([^<]*)</td><td class="action">([^<]*)</td>', log.text)
    assert ("li", "查看") in rows, rows
    assert all(actor == "li" for actor, _ in rows)
    assert "访问日志" in web.get("/recordings").text  # offered in the navigation
    bad = web.get("/audit?from=not-a-time")
    assert bad.status_code == 400


def test_chain_of_custody_and_access_report(app: Any, web: TestClient, rec: int) -> None:
    add_user(app, "li", "reviewer", unit=UNIT)
    add_user(app, "sun", "auditor", unit=UNIT)
    _login(web, "li")
    assert web.get(f"/recordings/{rec}").status_code == 200
    assert web.get(f"/audit/report?recording={rec}").status_code == 403
    _login(web, "sun")
    assert f'href="/audit/report?recording={rec}"' in web.get(f"/recordings/{rec}").text
    report = web.get(f"/audit/report?recording={rec}")
    assert report.status_code == 200
    assert "li" in report.text  # the reviewer's view is in it
    assert web.get("/audit/report").status_code == 400  # neither recording nor case
    reported = [e for e in access_events(app, actor="sun") if e.action == "access.report"]
    assert len(reported) == 1 and len(reported[0].details["sha256"]) == 64


def test_district_status_page(app: Any, web: TestClient, rec: int) -> None:
    add_user(app, "sun", "auditor", unit=UNIT)
    add_user(app, "li", "reviewer", unit=UNIT)
    _login(web, "li")
    assert web.get("/district").status_code == 403  # auditors and system administrators
    assert 'href="/district"' not in web.get("/recordings").text
    _login(web, "sun")
    page = web.get("/district")
    assert page.status_code == 200, page.text
    assert app.settings.station.id in page.text and "处理节点" in page.text
    assert_chinese(_text(page.text))


def test_a_wrong_page_address_answers_an_error_page(app: Any, web: TestClient) -> None:
    """A page address that does not exist answers the error page in the reader's
    language, naming no path or exception; the API's own addresses still answer JSON."""
    add_user(app, "li", "reviewer", unit=UNIT)
    _login(web, "li")
    for address in ("/no-such-page", "/recordings/not-a-number"):
        got = web.get(address)
        assert got.status_code == 404
        assert got.headers["content-type"].startswith("text/html")
        assert "没有这个页面" in got.text
        assert address not in got.text
    english = web.get("/no-such-page?lang=en")
    assert "There is no such page." in english.text
    api = web.get("/api/v1/no-such-endpoint")
    assert api.status_code == 404
    assert api.headers["content-type"].startswith("application/json")
