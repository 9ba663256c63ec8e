"""A reviewer's day in a real browser (Debian's Chromium) on a real `liuhen serve`, over
a station that docked a synthetic recorder and a worker that made its proxy:

- five wrong passwords lock an account (the page says so, the catalog agrees);
- the reviewer logs in, finds the recording by officer and capture time, plays the
  proxy (the video's current time advances; seeking to the middle works), adds a marker
  at the current position and attaches the recording to a case with a reason;
- an archivist opens the case, exports it (progress, then the .tar download and the
  hand-over receipt), and the downloaded bag passes `liuhen verify` and bagit-python;
- the audit names the reviewer for the view, the playback (with what was watched) and
  the attachment, and the archivist for the export and the download; an officer of
  another unit is refused the recording (403) and the auditor sees that too, in the
  access log page; the marker is a custody event; pages fit 1280×800 and 1024×600.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalog.cases import create_case
from catalog.models import Case, CaseRecording, CustodyEvent, Recording
from ingest.synthetic import make_recorder
from tests.api_helpers import PASSWORD, access_events, add_user
from tests.offload_helpers import make_app
from tests.web_helpers import (
    chromium,
    liuhen_serve,
    no_sideways_scroll,
    shot,
    unlabelled_controls,
)

pytestmark = pytest.mark.timeout(600)
CASE = "沪徐市监罚〔2026〕123号"
SIZES = ({"width": 1280, "height": 800}, {"width": 1024, "height": 600})


def _station_with_a_proxy(data: Path, dock: Path) -> tuple[Any, Any]:
    """A station that docked one recorder (one H.264 recording of 8 s, captured
    2026-12-01 07:00 China time) and whose worker made its proxy."""
    app = make_app(data)
    recorder = make_recorder(
        dock / "A123456",
        start=datetime(2026, 12, 1, 7, 0, 0),
        h264=1,
        h265=0,
        wav=0,
        jpeg=0,
        truncated=0,
        segments=0,
        duration_s=8.0,
    )
    station = app.station()
    try:
        assert station.run_docking(recorder.root).state == "SAFE_TO_CLEAR"
    finally:
        station.close()
    env = {**os.environ, "LIUHEN_HOME": str(data)}
    liuhen = Path(sys.executable).with_name("liuhen")
    subprocess.run([str(liuhen), "worker", "--drain"], env=env, check=True, capture_output=True)
    return app, recorder


def _login(page: Any, base: str, login: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#login", login)
    page.fill("#password", password)
    page.get_by_role("button", name="登录", exact=True).click()
    page.wait_for_load_state()


def _log_out(page: Any) -> None:
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url("**/login")


def _logged(page: Any, url: str) -> set[str]:
    """The actions the access log page lists for ``url``'s filters, each row checked
    to be of the user asked for."""
    page.goto(url)
    user = url.split("user=")[1].split("&")[0]
    actors = set(page.locator("td.actor").all_inner_texts())
    assert actors == {user}, actors
    return set(page.locator("td.action").all_inner_texts())


def _fits(page: Any, name: str) -> None:
    """The page at both window sizes, without sideways scrolling, every control
    labelled; screenshots kept."""
    assert unlabelled_controls(page) == []
    for size in SIZES:
        page.set_viewport_size(size)
        no_sideways_scroll(page)
        shot(page, f"{name}-{size['width']}x{size['height']}")
    page.set_viewport_size(SIZES[0])


def test_five_wrong_passwords_lock_the_account(tmp_path: Path) -> None:
    from access.accounts import get_user

    app = make_app(tmp_path / "data")
    add_user(app, "wang", "reviewer", unit="徐汇分局")
    with liuhen_serve(tmp_path / "data") as base, chromium() as browser:
        page = browser.new_page(viewport=SIZES[0])
        for attempt in range(5):
            _login(page, base, "wang", f"wrong-{attempt}")
            assert "错误" in page.locator("#login-error").inner_text()
        _login(page, base, "wang", PASSWORD)  # right, but too late
        refusal = page.locator("#login-error").inner_text()
        assert "锁定" in refusal, refusal
        assert "/login" in page.url
        _fits(page, "login-locked")
    with app.catalog.session() as s:
        assert get_user(s, "wang").state == "locked"
    failed = [e for e in access_events(app) if e.action == "access.login_failed"]
    assert len(failed) == 6
    app.close()


def test_reviewer_finds_plays_marks_and_attaches(tmp_path: Path) -> None:
    app, recorder = _station_with_a_proxy(tmp_path / "data", tmp_path / "dock")
    unit = recorder.device.unit_name
    officer = recorder.device.officer_number
    add_user(app, "li", "reviewer", unit=unit)
    add_user(app, "chen", "archivist", unit=unit)
    add_user(app, "sun", "auditor", unit=unit)
    add_user(app, "zhao", "officer", unit="静安分局", officer_number="999999")
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number=CASE, title="无照经营", unit=unit, actor="test")
        rec = s.scalars(select(Recording).where(Recording.original_name.like("%.MP4"))).one()
        rec_id, rec_name, sha = rec.id, rec.original_name, rec.sha256
    with liuhen_serve(tmp_path / "data") as base, chromium() as browser:
        page = browser.new_page(viewport=SIZES[0])
        _login(page, base, "li", PASSWORD)
        assert page.url.endswith("/recordings")
        _find(page, officer, rec_name)
        _fits(page, "recordings")
        page.get_by_role("link", name=rec_name).click()
        page.wait_for_url(f"**/recordings/{rec_id}")
        middle = _play_and_seek(page)
        _mark(page, "当事人出示营业执照")
        _attach(page, CASE, "现场检查无照经营，证明当事人经营行为")
        _fits(page, "recording")
        _log_out(page)
        _login(page, base, "chen", PASSWORD)
        _hold(page, f"{base}/recordings/{rec_id}", "行政复议期间保全")
        tar = _export(page, tmp_path / "download")
        _log_out(page)
        _login(page, base, "zhao", PASSWORD)
        refused = page.goto(f"{base}/recordings/{rec_id}")
        assert refused is not None and refused.status == 403
        _log_out(page)
        _login(page, base, "sun", PASSWORD)
        assert {"查看", "播放", "关联"} <= _logged(page, f"{base}/audit?user=li&recording={rec_id}")
        _fits(page, "audit")
        assert {"法律保全", "导出", "下载"} <= _logged(page, f"{base}/audit?user=chen")
        assert "拒绝访问" in _logged(page, f"{base}/audit?user=zhao")
        page.get_by_role("link", name="区级").click()
        page.wait_for_url("**/district")
        assert "station-01" in page.locator("main").inner_text()
        _fits(page, "district")
    _check_the_records(app, rec_id, sha, middle)
    _check_the_bag(tar, tmp_path / "bag", rec_name)
    exports = [(e.action, e.object_type) for e in access_events(app, actor="chen")]
    assert {"access.export", "access.download"} <= {action for action, _ in exports}
    assert ("access.view", "export") in exports  # the hand-over receipt was read
    app.close()


def _hold(page: Any, url: str, reason: str) -> None:
    """The archivist places a legal hold on the recording, from its page."""
    page.goto(url)
    page.fill("#hold-reason", reason)
    with page.expect_navigation():
        page.get_by_role("button", name="设置法律保全").click()
    assert reason in page.locator("#holds").inner_text()


def _export(page: Any, into: Path) -> Path:
    """The archivist finds the case, exports it and downloads the bag; the receipt page
    lists the recording handed over."""
    page.get_by_role("link", name="案件", exact=True).click()
    page.get_by_role("link", name=CASE).click()
    page.wait_for_load_state()
    assert "现场检查无照经营" in page.locator("ol.timeline").inner_text()
    _fits(page, "case")
    page.get_by_role("button", name="开始导出").click()
    page.locator("#export-done").wait_for(timeout=120_000)
    assert page.locator("#export-bar").get_attribute("aria-valuenow") == "100"
    assert "四性检测通过" in page.locator("#export-bags").inner_text()
    with page.expect_download() as download:
        page.locator("#export-download").click()
    tar = into / str(download.value.suggested_filename)
    download.value.save_as(tar)
    page.locator("#export-receipt").click()
    page.wait_for_load_state()
    assert "移交回执" in page.locator("h1").inner_text()
    assert CASE in page.locator(".receipt").inner_text()
    _fits(page, "receipt")
    return tar


def _check_the_bag(tar: Path, into: Path, rec_name: str) -> None:
    import tarfile

    import bagit

    liuhen = Path(sys.executable).with_name("liuhen")
    checked = subprocess.run([str(liuhen), "verify", str(tar)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    (bag,) = [p for p in into.iterdir() if p.is_dir()]
    bagit.Bag(str(bag)).validate()
    assert list(bag.rglob(rec_name))


def _find(page: Any, officer: str, name: str) -> None:
    page.fill("#f-officer", officer)
    page.fill("#f-from", "2026-12-01 06:30")
    page.fill("#f-to", "2026-12-01 07:30")
    page.get_by_role("button", name="检索").click()
    page.wait_for_load_state()
    assert page.locator(".result").count() == 1
    assert page.locator(".result .name").inner_text() == name
    # Another hour finds nothing: the times are the station's, not UTC.
    page.fill("#f-from", "2026-12-01 08:00")
    page.fill("#f-to", "2026-12-01 09:00")
    page.get_by_role("button", name="检索").click()
    page.wait_for_load_state()
    assert page.locator(".result").count() == 0
    page.go_back()
    page.wait_for_load_state()


def _play_and_seek(page: Any) -> float:
    video = page.locator("#player")
    assert video.get_attribute("data-kind") == "proxy"
    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    duration = float(video.evaluate("v => v.duration"))
    assert duration > 6
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.getElementById('player').currentTime > 1")
    with page.expect_response(lambda r: r.url.endswith("/playback")) as reported:
        video.evaluate("v => v.pause()")
    assert reported.value.status == 204
    middle = duration / 2
    video.evaluate(f"v => {{ v.currentTime = {middle}; }}")
    page.wait_for_function(
        f"() => {{ const v = document.getElementById('player');"
        f" return !v.seeking && Math.abs(v.currentTime - {middle}) < 0.3; }}"
    )
    return middle


def _mark(page: Any, note: str) -> None:
    page.fill("#marker-note", note)
    page.get_by_role("button", name="添加标记").click()
    page.locator("#markers li", has_text=note).wait_for()
    assert "标记已添加" in page.locator("#marker-status").inner_text()


def _attach(page: Any, number: str, reason: str) -> None:
    page.fill("#attach-case", number)
    page.fill("#attach-reason", reason)
    page.get_by_role("button", name="关联到案件").click()
    page.locator("#attach-status", has_text="已关联到案件").wait_for()
    page.wait_for_load_state()
    page.locator("table td", has_text=number).wait_for()  # the page shows it after reload
    assert reason in page.locator("section", has_text="案件").first.inner_text()


def _check_the_records(app: Any, rec_id: int, sha: str, middle: float) -> None:
    # (The audit names a recording by its SHA-256, as its custody events do.)
    events = access_events(app, actor="li", object_id=sha)
    actions = [e.action for e in events]
    assert "access.view" in actions
    assert "access.attach" in actions
    plays = [e for e in events if e.action == "access.play"]
    watched = [e.details for e in plays if e.details.get("duration_s", 0) > 0]
    assert watched and watched[0]["kind"] == "proxy" and watched[0]["duration_s"] >= 1
    with app.catalog.session() as s:
        marker = s.scalars(
            select(CustodyEvent).where(CustodyEvent.action == "recording.marker")
        ).one()
        assert marker.actor == "li"
        assert "当事人出示营业执照" in marker.details
        link = s.scalars(select(CaseRecording).join(Case).where(Case.number == CASE)).one()
        assert link.recording_id == rec_id and link.method == "manual" and link.actor == "li"
    import json

    position = json.loads(marker.details)["position_s"]
    assert abs(position - middle) < 0.5
