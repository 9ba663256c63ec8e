"""The audit page's custody chains and store fixity (``/audit/integrity``), over HTTP:

- an auditor sees each station's chain (events, its signed chain heads with their
  times), starts the custody check with the button, follows it to the end and reads
  "verifies"; after a custody event is edited behind the catalog's back, the next check
  names the station's broken event;
- the fixity audits of the store (`liuhen verify --store`) are listed with their counts,
  and a missing object with its key and what to do;
- a reviewer and an archivist are refused (403, audited), and the access log's filters
  (user, recording, case, time) narrow what it lists.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient

from archive_export.fixity import audit_store, make_scope
from catalog.anchors import publish
from catalog.models import CustodyEvent, Recording
from config.i18n import set_language
from tests.api_helpers import PASSWORD, access_events, add_user
from tests.case_helpers import cst, make_recording
from web.app import create_app

UNIT = "徐汇分局"


@pytest.fixture
def web(app: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("LIUHEN_LANG", "zh")
    set_language(None)
    with TestClient(create_app(app.settings), follow_redirects=False) as http:
        yield http


def _login(web: TestClient, login: str) -> str:
    r = web.post("/login", data={"login": login, "password": PASSWORD, "next": "/audit"})
    assert r.status_code == 303, r.text
    return str(web.cookies["liuhen_csrf"])


def _check_custody(web: TestClient, csrf: str) -> dict[str, Any]:
    """Press the button, then follow the check as the page's script does."""
    started = web.post("/audit/integrity/custody", data={"csrf": csrf})
    assert started.status_code == 303
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run: dict[str, Any] = web.get("/audit/integrity/custody").json()
        assert run["state"] in ("running", "done"), run
        if run["state"] == "done":
            return run
        time.sleep(0.1)
    raise AssertionError("the custody check did not finish in 60 s")


def _row(html: str, station: str) -> str:
    found = re.search(rf'<tr data-station="{re.escape(station)}">(.*?)</tr>', html, re.S)
    assert found, html
    return found.group(1)


def test_custody_chains_checked_from_the_page(app: Any, web: TestClient) -> None:
    make_recording(app, start=cst(2026, 12, 1, 7))
    with app.catalog.session() as s:
        head = publish(s, app.signer, store=app.store)
    assert head is not None
    add_user(app, "sun", "auditor", unit=UNIT)
    csrf = _login(web, "sun")
    station = app.settings.station.id

    page = web.get("/audit/integrity")
    assert page.status_code == 200, page.text
    row = _row(page.text, station)
    assert f"#{head.seq}" in row and "对象存储" in row  # the signed head, where it was read
    assert "+08:00" in row  # its time, in the station's zone
    assert "尚未校验" in row
    assert 'href="/audit/integrity"' in web.get("/audit").text  # linked from the access log

    run = _check_custody(web, csrf)
    assert run["ok"] and run["stations_done"] == run["stations_total"] >= 1
    mine = next(r for r in run["results"] if r["station"] == station)
    assert mine["ok"] and mine["last_anchored"] == head.seq and mine["events"] >= head.seq
    row = _row(web.get("/audit/integrity").text, station)
    assert "✓ 校验通过" in row and f"#{head.seq}" in row

    # An event edited behind the catalog's back: the next check names it.
    with app.catalog.transaction() as s:
        s.execute(
            update(CustodyEvent)
            .where(CustodyEvent.station_id == station, CustodyEvent.seq == 2)
            .values(actor="someone-else")
        )
    run = _check_custody(web, csrf)
    assert not run["ok"]
    mine = next(r for r in run["results"] if r["station"] == station)
    assert any("#2" in p for p in mine["problems"]), mine
    row = _row(web.get("/audit/integrity").text, station)
    assert "✗" in row and "#2" in row


def test_fixity_runs_and_failures(
    app: Any, web: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec_id = make_recording(app, start=cst(2026, 12, 1, 7))
    make_recording(app, start=cst(2026, 12, 1, 8))
    first = audit_store(app.catalog, app.store, app.signer, scope=make_scope("all"), actor="test")
    assert first.ok
    with app.catalog.session() as s:
        key = s.scalars(select(Recording.object_key).where(Recording.id == rec_id)).one()
    app.store.root.joinpath(key).chmod(0o644)
    app.store.root.joinpath(key).unlink()  # gone behind the store's back
    second = audit_store(app.catalog, app.store, app.signer, scope=make_scope("all"), actor="test")
    assert second.failed == 1
    add_user(app, "sun", "auditor", unit=UNIT)
    _login(web, "sun")

    page = web.get("/audit/integrity")
    assert page.status_code == 200, page.text
    runs = re.search(r'<table class="audit" id="fixity-runs">(.*?)</table>', page.text, re.S)
    assert runs is not None
    assert runs.group(1).count("<tr") == 3  # the header and the two runs
    assert second.run_uid in runs.group(1) and first.run_uid in runs.group(1)
    assert "✗ 1" in runs.group(1)
    failures = re.search(
        r'<table class="audit" id="fixity-failures">(.*?)</table>', page.text, re.S
    )
    assert failures is not None
    assert key in failures.group(1) and f'href="/recordings/{rec_id}"' in failures.group(1)
    assert "缺失：存储中没有该对象" in failures.group(1)  # the problem, in Chinese
    assert "从副本或备份恢复" in failures.group(1)  # what to do, in the reader's language
    english = web.get("/audit/integrity?lang=en").text
    assert "restore it from the replica or the backup" in english
    # A run with more failures than a page shows says how many more, and where to read them.
    monkeypatch.setattr("web.audit.FIXITY_FAILURES", 0)
    capped = web.get("/audit/integrity?lang=zh").text
    assert "另有 1 项失败" in capped and key not in capped


def test_only_the_auditor_reads_custody_and_fixity(app: Any, web: TestClient) -> None:
    add_user(app, "li", "reviewer", unit=UNIT)
    add_user(app, "chen", "archivist", unit=UNIT)
    for login in ("li", "chen"):
        csrf = _login(web, login)
        assert web.get("/audit/integrity").status_code == 403
        assert web.get("/audit/integrity/custody").status_code == 403
        refused = web.post("/audit/integrity/custody", data={"csrf": csrf})
        assert refused.status_code == 403
    denied = [e for e in access_events(app) if e.action == "access.denied"]
    assert {e.actor for e in denied} == {"li", "chen"}


def test_access_log_filters(app: Any, web: TestClient) -> None:
    from catalog.attach import attach_manual
    from catalog.cases import create_case

    number = "沪徐市监罚〔2026〕9号"
    first = make_recording(app, start=cst(2026, 12, 1, 7))
    second = make_recording(app, start=cst(2026, 12, 1, 8))
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number=number, title="无照经营", unit=UNIT, actor="test")
        attach_manual(
            s,
            app.signer,
            case_number=number,
            rec=s.get(Recording, second),
            reason="证据",
            actor="test",
            policy=app.settings.retention,
        )
    # Auditors (every unit's recordings), since these recordings' recorder has no unit.
    add_user(app, "li", "auditor", unit=UNIT)
    add_user(app, "wang", "auditor", unit=UNIT)
    add_user(app, "sun", "auditor", unit=UNIT)
    _login(web, "li")
    assert web.get(f"/recordings/{first}").status_code == 200
    _login(web, "wang")
    assert web.get(f"/recordings/{second}").status_code == 200
    _login(web, "sun")

    def listed(query: str) -> list[tuple[str, str, str]]:
        html = web.get(f"/audit?{query}").text
        return re.findall(
            r'<td class="actor">([^<]*)</td><td class="action">([^<]*)</td>'
            r'<td class="wrap">([^<]*)</td>',
            html,
        )

    assert {a for a, _, _ in listed("user=li")} == {"li"}
    assert {o for _, _, o in listed(f"recording={first}")} == {f"#{first}"}
    by_case = listed(f"case={number}")
    assert ("wang", "查看", f"#{second}") in by_case
    assert all(o in (f"#{second}", number) for _, _, o in by_case)
    assert listed("from=2000-01-01&to=2000-01-02") == []
    assert listed("from=2000-01-01")  # everything since


def test_the_check_shows_its_progress_while_it_runs(
    app: Any, web: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check held inside its first station (as a long chain would keep it): the page
    and its progress answer say which station, how many are done, and the button waits."""
    import threading

    from api.custody_check import check_custody as real

    reached, opened = threading.Event(), threading.Event()

    def held(*args: Any, **kwargs: Any) -> Any:
        reached.set()
        opened.wait(timeout=60)
        return real(*args, **kwargs)

    monkeypatch.setattr("web.audit_checks.check_custody", held)
    make_recording(app, start=cst(2026, 12, 1, 7))
    add_user(app, "sun", "auditor", unit=UNIT)
    csrf = _login(web, "sun")
    station = app.settings.station.id
    try:
        assert web.post("/audit/integrity/custody", data={"csrf": csrf}).status_code == 303
        assert reached.wait(timeout=30)
        run = web.get("/audit/integrity/custody").json()
        assert run["state"] == "running" and run["current"] == station
        assert (run["stations_done"], run["stations_total"]) == (0, 1)
        page = web.get("/audit/integrity").text
        assert f"正在校验采集站 {station}：已完成 0 / 1 个采集站" in page
        assert re.search(r'id="custody-start"\s+disabled', page)
        # Pressed again while it runs: the same check goes on, no second one starts.
        web.post("/audit/integrity/custody", data={"csrf": csrf})
        assert web.get("/audit/integrity/custody").json()["started_at"] == run["started_at"]
    finally:
        opened.set()
    done = _check_custody_finished(web)
    assert done["ok"] and done["stations_done"] == 1


def _check_custody_finished(web: TestClient) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run: dict[str, Any] = web.get("/audit/integrity/custody").json()
        if run["state"] != "running":
            return run
        time.sleep(0.1)
    raise AssertionError("the custody check did not finish in 60 s")
