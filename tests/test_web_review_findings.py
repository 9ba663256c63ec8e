"""Reproductions of the findings of the security and correctness review of the web layer
(web/, and the API calls its pages and scripts make). Each test asserts what issues 15
and 16 ask for, and fails on main as reviewed (4cbe7d7): a failing test here is an open
finding, not a broken test. The review's report (branch h/rev) lists them by severity.

Run: LIUHEN_TEST_S3_SERVER=moto python -m pytest tests/test_web_review_findings.py
-k "not postgresql"
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from bench.nginx import proxy_location, running_nginx
from ingest.journal import DockingState, Journal, JournalDocking
from tests import test_web_pages as pages
from tests.api_helpers import PASSWORD, access_events, add_proxy, add_user
from tests.offload_helpers import make_app
from tests.web_helpers import free_port, liuhen_serve
from web.app import create_app

# The page tests' fixtures: a Chinese page client, a recording of 徐汇分局 with a proxy.
zh, web, rec = pages.zh, pages.web, pages.rec
UNIT, _login = pages.UNIT, pages._login

EVIDENCE_FILE = "DCIM/A123456_010203_20261201070000_0001.MP4"


# -- helpers --------------------------------------------------------------------------------


def _reads(app: Any, actor: str) -> list[Any]:
    """The access events that record a read of a recording's content."""
    return [
        e
        for e in access_events(app, actor=actor)
        if e.action in ("access.play", "access.download", "access.view")
    ]


def _docking_with_a_problem(journal_path: Path) -> None:
    """A docking that ended INCOMPLETE, its message as ``Docking.finish`` writes it: the
    problem files' names and why."""
    journal = Journal(journal_path)
    now = datetime.now(UTC).isoformat()
    try:
        journal.add_docking(
            JournalDocking(
                uid="d-review-1",
                slot="1",
                source_path="/media/dock1",
                serial="A123456",
                identity={"officer_number": "010203", "officer_name": "王伟"},
                state=DockingState.INCOMPLETE,
                started_at=now,
                updated_at=now,
                waiting=None,
                message=f"{EVIDENCE_FILE}: unreadable",
            )
        )
    finally:
        journal.close()


def _own_address() -> str:
    """This machine's address on its network (not loopback): a visitor from the LAN."""
    for probe in ("192.0.2.1", "10.255.255.255", "172.16.0.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((probe, 9))
            except OSError:
                continue
            address = str(s.getsockname()[0])
            if not address.startswith("127."):
                return address
    pytest.skip("no non-loopback address to visit from")


def _station_screen(app: Any, host: str | None = None) -> TestClient:
    """A browser on the station opening its own screen: the loopback listener of the
    station screen (its port, [api] station_screen_port), from a loopback peer, naming
    the host ``host`` (default: as a browser on the station names it)."""
    port = app.settings.api.station_screen_port
    headers = {"Host": host} if host else None
    return TestClient(
        create_app(app.settings),
        base_url=f"http://127.0.0.1:{port}",
        client=("127.0.0.1", 40000),
        headers=headers,
    )


@contextmanager
def _nginx(upstream: str, folder: Path, address: str, headers: str) -> Iterator[str]:
    """nginx on ``address`` (a station's reverse proxy) in front of `liuhen serve`."""
    with running_nginx(folder, proxy_location(upstream, headers), address=address) as base:
        yield base


# -- HIGH -----------------------------------------------------------------------------------


def test_a_proxy_streamed_from_its_second_byte_is_audited(
    app: Any, web: TestClient, rec: int
) -> None:
    """api/recordings.py:206: a playback is audited only when the range starts at byte 0,
    so ``Range: bytes=1-`` takes the whole proxy but its first byte with no audit event
    at all (no access.play, no access.download): a reviewer can watch or copy every
    recording of the unit and leave no trace."""
    add_user(app, "li", "reviewer", unit=UNIT)
    _login(web, "li")
    got = web.get(f"/api/v1/recordings/{rec}/media/proxy", headers={"Range": "bytes=1-"})
    assert got.status_code == 206
    assert len(got.content) == 200_000 - 1  # all of it but one byte
    assert _reads(app, "li") != [], "the proxy was read and nothing was audited"


# -- MEDIUM ---------------------------------------------------------------------------------


def test_recording_page_names_cases_its_reader_may_not_see(
    app: Any, web: TestClient, rec: int
) -> None:
    """web/recordings.py:154 (_cases_of) reads case links from the catalog with no
    authorize(): an officer, whose role holds no case.view at all, sees on the page of
    their own recording the case number, the reason it was attached and who attached
    it — the case itself answers them 403."""
    from catalog.cases import create_case

    number = "沪徐市监罚〔2026〕77号"
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number=number, title="涉密案件", unit=UNIT, actor="test")
    add_user(app, "chen", "archivist", unit=UNIT)
    add_user(app, "wang", "officer", unit=UNIT, officer_number="010203")
    csrf = _login(web, "chen")
    attached = web.post(
        f"/api/v1/cases/{number}/attach",
        json={"recording": rec, "reason": "线人举报内容核实"},
        headers={"X-CSRF-Token": csrf},
    )
    assert attached.status_code == 200, attached.text
    _login(web, "wang")
    assert web.get(f"/cases/{number}").status_code == 403  # the case is not theirs to see
    page = web.get(f"/recordings/{rec}")
    assert page.status_code == 200  # their own recording
    assert number not in page.text
    assert "线人举报内容核实" not in page.text
    # Nor does the API's JSON of the same recording name the case (its retention part).
    detail = web.get(f"/api/v1/recordings/{rec}", headers={"Accept-Language": "zh"})
    assert detail.status_code == 200, detail.text
    assert number not in detail.text
    assert "attached to a case you may not see" not in detail.text  # the page's language


def test_a_poster_thumbnail_is_not_audited_as_a_playback(
    app: Any, web: TestClient, rec: int
) -> None:
    """recordings.html:33 shows each search result's poster from
    /api/v1/recordings/{id}/media/poster, which api/recordings.py:206 audits as
    ``access.play`` (position 0): a search page of 50 results writes 50 playbacks that
    never happened, and a recording page's poster and preload write two more beside its
    view — the access log no longer says what was watched."""
    add_user(app, "li", "reviewer", unit=UNIT)
    add_proxy(app, rec, size=600, kind="poster")  # a poster frame, as the worker makes one
    _login(web, "li")
    listing = web.get("/recordings?officer=010203")
    assert f'src="/api/v1/recordings/{rec}/media/poster"' in listing.text
    assert web.get(f"/api/v1/recordings/{rec}/media/poster").status_code == 200  # the <img>
    plays = [e for e in access_events(app, actor="li") if e.action == "access.play"]
    assert plays == [], [e.details for e in plays]


def test_station_status_json_names_no_evidence_file(app: Any) -> None:
    """web/station.py:129 answers ``{**row}`` — every field of status_rows — to anyone on
    loopback without a login, including ``message``, where a finished docking names its
    problem files (ingest/docking.py:526); docs/web.md promises "no file names"."""
    _docking_with_a_problem(Path(app.settings.journal_path))
    local = _station_screen(app)
    with local:
        page = local.get("/station")
        assert page.status_code == 200  # the station's own screen: no login
        status = local.get("/station/status")
        assert status.status_code == 200
    assert "A123456" in status.text  # the recorder's serial: shown, as it should be
    assert EVIDENCE_FILE not in status.text
    assert "/media/dock1" not in status.text


@pytest.mark.timeout(180)
def test_station_screen_through_a_plain_reverse_proxy_asks_for_a_login(tmp_path: Path) -> None:
    """web/auth.py:77 takes a request as the station's own screen when its peer address
    is loopback. nginx sends no X-Forwarded-For unless told to (the project's own nginx
    in bench/api.py does not), so behind `location / { proxy_pass ...; }` on the station
    every visitor's peer is 127.0.0.1 and the screen and its JSON open without a login."""
    data = tmp_path / "data"
    app = make_app(data)
    _docking_with_a_problem(app.settings.journal_path)
    app.close()
    address = _own_address()
    screen = free_port()
    with liuhen_serve(data, station_port=screen) as upstream:
        # The station's own browser opens its own listener, which is on loopback only.
        direct = httpx.get(f"http://127.0.0.1:{screen}/station/status")
        assert direct.status_code == 200
        assert httpx.get(f"{upstream}/station/status").status_code == 401  # the main one
        with _nginx(upstream, tmp_path / "nginx", address, "proxy_set_header Host $host;") as front:
            away = httpx.get(f"{front}/station/status")  # a visitor from the LAN
            assert away.status_code == 401, away.text
        # A proxy put in front of the screen's own port passes the visitor's host name:
        # refused too.
        station = f"http://127.0.0.1:{screen}"
        with _nginx(station, tmp_path / "nginx2", address, "proxy_set_header Host $host;") as front:
            away = httpx.get(f"{front}/station/status")
            assert away.status_code == 421, away.text


@pytest.mark.timeout(180)
def test_station_screen_with_forwarded_allow_ips_star_ignores_a_spoofed_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented nginx (docs/api.md: $proxy_add_x_forwarded_for), with uvicorn told
    to trust forwarded addresses (FORWARDED_ALLOW_IPS=*, read by uvicorn from the
    environment, common in containers): uvicorn then takes the LEFTMOST address, which
    the visitor wrote, so ``X-Forwarded-For: 127.0.0.1`` makes anyone the station."""
    data = tmp_path / "data"
    make_app(data).close()
    address = _own_address()
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    headers = (
        "proxy_set_header Host $host;\n"
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "proxy_set_header X-Forwarded-Proto $scheme;"
    )
    with (
        liuhen_serve(data) as upstream,
        _nginx(upstream, tmp_path / "nginx", address, headers) as front,
    ):
        honest = httpx.get(f"{front}/station/status")
        assert honest.status_code == 401  # the visitor's own address is used
        spoofed = httpx.get(f"{front}/station/status", headers={"X-Forwarded-For": "127.0.0.1"})
        assert spoofed.status_code == 401, spoofed.text


# -- LOW ------------------------------------------------------------------------------------


def test_station_screen_off_the_station_asks_the_policy(app: Any, web: TestClient) -> None:
    """web/station.py:100: away from the station any session opens the screen (officer
    names, numbers, recorder serials) — an account with no role at all, never asking
    access.policy and leaving no audit event."""
    _docking_with_a_problem(Path(app.settings.journal_path))
    add_user(app, "nobody")  # an account, no role
    _login(web, "nobody")
    status = web.get("/station/status")
    assert status.status_code in (401, 403), status.text
    assert web.get("/station").status_code == 403
    refusals = [e for e in access_events(app, actor="nobody") if e.action == "access.denied"]
    assert refusals, "the refusal was not audited"
    add_user(app, "zhao", "auditor", unit=UNIT)  # who may read the district status may
    _login(web, "zhao")
    assert web.get("/station/status").status_code == 200


def test_station_screen_refuses_a_foreign_host_name(app: Any) -> None:
    """No Host check: a page of another site that rebinds its name to 127.0.0.1 (DNS
    rebinding) in a browser on the station reads /station/status as same-origin."""
    _docking_with_a_problem(Path(app.settings.journal_path))
    port = app.settings.api.station_screen_port
    with _station_screen(app, host=f"rebind.attacker.example:{port}") as local:
        status = local.get("/station/status")
    assert status.status_code in (400, 421), status.text
    with _station_screen(app) as local:  # named as the station's browser names it
        assert local.get("/station/status").status_code == 200
        assert local.get("/api/v1/recordings").status_code == 404  # only the screen there


def test_an_odd_digit_in_the_access_log_paging_is_a_bad_request(app: Any, zh: None) -> None:
    """web/audit.py:48 and :105 trust str.isdigit(), which is true for '²': int('²')
    raises ValueError, the page answers 500 (JSON) instead of saying what is wrong."""
    add_user(app, "sun", "auditor", unit=UNIT)
    with TestClient(create_app(app.settings), raise_server_exceptions=False) as http:
        r = http.post("/login", data={"login": "sun", "password": PASSWORD, "next": "/audit"})
        assert r.status_code in (200, 303)
        assert http.get("/audit?after=²").status_code < 500
        assert http.get("/audit/report?recording=²").status_code < 500


def test_a_recording_id_beyond_the_catalog_is_not_found(app: Any, zh: None) -> None:
    """web/recordings.py:102 takes any int from the path and calls the API's handler
    directly, past its Path(le=2**31-1) check: on SQLite the catalog's OverflowError
    becomes a 500 where the API answers 422."""
    add_user(app, "li", "reviewer", unit=UNIT)
    with TestClient(create_app(app.settings), raise_server_exceptions=False) as http:
        r = http.post("/login", data={"login": "li", "password": PASSWORD, "next": "/"})
        assert r.status_code in (200, 303)
        assert http.get("/api/v1/recordings/99999999999999999999").status_code == 422
        assert http.get("/recordings/99999999999999999999").status_code < 500


def test_a_login_form_posted_from_another_site_is_refused(app: Any, web: TestClient) -> None:
    """POST /login (web/pages.py:268) has no CSRF token and checks no Origin: another
    site's page can log the station's browser into an account of its choosing (login
    CSRF), and what the officer then marks or attaches is recorded under that account."""
    add_user(app, "mallory", "reviewer", unit=UNIT)
    r = web.post(
        "/login",
        data={"login": "mallory", "password": PASSWORD, "next": "/recordings"},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert r.status_code == 403, r.headers
    assert "liuhen_session" not in web.cookies


@pytest.mark.timeout(180)
def test_another_sites_page_cannot_log_the_browser_in(tmp_path: Path) -> None:
    """The same in Debian's Chromium: a page of another site auto-posts the login form;
    the SameSite=Strict cookies of its answer ARE stored, and the next time the officer
    opens 留痕 the browser is logged in as the attacker's account."""
    import functools
    import http.server
    import socketserver
    import threading

    from tests.web_helpers import chromium

    data = tmp_path / "data"
    app = make_app(data)
    add_user(app, "mallory", "reviewer")
    app.close()
    address = _own_address()
    evil = tmp_path / "evil"
    evil.mkdir()
    with liuhen_serve(data) as base, chromium() as browser:
        (evil / "index.html").write_text(
            f'<form id="f" method="post" action="{base}/login">'
            f'<input name="login" value="mallory"><input name="password" value="{PASSWORD}">'
            '<input name="next" value="/recordings"></form>'
            '<script>document.getElementById("f").submit()</script>'
        )
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(evil))
        with socketserver.TCPServer((address, free_port()), handler) as site:
            threading.Thread(target=site.serve_forever, daemon=True).start()
            try:
                context = browser.new_context()
                page = context.new_page()
                page.goto(f"http://{address}:{site.server_address[1]}/index.html")
                page.wait_for_timeout(3000)  # the form posts itself
                page.goto(f"{base}/recordings")  # later, the officer opens 留痕
                assert "/login" in page.url, "logged in as mallory by another site's page"
            finally:
                site.shutdown()
