"""The station screen in a real browser: a recorder docks, the screen shows its progress
and 请勿拔出 while the docking is under way, and 可安全拔出 only once the station journal
says SAFE_TO_CLEAR; at 1024×600 nothing scrolls sideways; no login on loopback."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.journal import Journal
from ingest.synthetic import make_recorder
from tests.offload_helpers import make_app
from tests.web_helpers import (
    chromium,
    liuhen_serve,
    no_sideways_scroll,
    shot,
    unlabelled_controls,
)

pytestmark = pytest.mark.timeout(300)


def _docking_state(journal_path: Path) -> str:
    journal = Journal(journal_path)
    try:
        return str(journal.dockings()[-1].state)
    finally:
        journal.close()


def _held_before_the_verdict(
    station: Any, root: Path
) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """Dock ``root`` in a thread that stops just before the station writes the
    docking's final state (every file may be copied by then) until released: the
    moment a screen that guessed from the counts would say "safe" too early."""
    paused, release = threading.Event(), threading.Event()
    finish = station.journal.finished

    def held(uid: str, **kwargs: Any) -> None:
        paused.set()
        release.wait(timeout=120)
        finish(uid, **kwargs)

    station.journal.finished = held
    thread = threading.Thread(target=lambda: station.run_docking(root))
    thread.start()
    return thread, paused, release


def test_station_screen_shows_progress_then_safe_to_clear(tmp_path: Path) -> None:
    data = tmp_path / "data"
    app = make_app(data)
    journal_path = app.settings.journal_path
    recorder = make_recorder(tmp_path / "dock" / "A123456")
    station = app.station()
    with liuhen_serve(data) as base, chromium() as browser:
        page = browser.new_page(viewport={"width": 1024, "height": 600})
        page.goto(f"{base}/station")  # loopback: no login
        assert "/login" not in page.url
        page.get_by_text("还没有执法记录仪接入").wait_for()
        thread, paused, release = _held_before_the_verdict(station, recorder.root)
        try:
            assert paused.wait(timeout=60), "the docking never finished"
            card = page.locator("article.slot")
            card.wait_for()
            # Several polls while the docking is held before its verdict: never safe.
            for _ in range(4):
                with page.expect_response(lambda r: r.url.endswith("/station/status")):
                    pass
                text = card.inner_text()
                assert "请勿拔出" in text, text
                assert "可安全拔出" not in text, text
                assert card.get_attribute("data-state") == "OFFLOADING"
            done, total = (int(n) for n in card.locator(".files").inner_text().split("/"))
            assert total > 0 and 0 <= done <= total
            assert card.locator(".device").inner_text() == "A123456"
            assert recorder.device.officer_number in card.locator(".officer").inner_text()
            shot(page, "station-1024x600-offloading")
            no_sideways_scroll(page)
        finally:
            release.set()
            thread.join(timeout=120)
        card.locator(".verdict", has_text="可安全拔出").wait_for(timeout=30_000)
        assert _docking_state(journal_path) == "SAFE_TO_CLEAR"
        assert card.get_attribute("data-state") == "SAFE_TO_CLEAR"
        assert card.locator(".files").inner_text().replace(" ", "") == f"{total}/{total}"
        assert card.locator(".bar").get_attribute("aria-valuenow") == "100"
        shot(page, "station-1024x600-safe")
        no_sideways_scroll(page)
        assert unlabelled_controls(page) == []
    station.close()
    app.close()


def test_station_screen_needs_a_login_from_elsewhere(tmp_path: Path) -> None:
    """Off the station (here: a forwarded address, as a reverse proxy on the station
    sends it), the screen asks for a login, and its data answers 401."""
    data = tmp_path / "data"
    make_app(data).close()
    with liuhen_serve(data) as base:
        away = {"X-Forwarded-For": "10.1.2.3"}
        page = httpx.get(f"{base}/station", headers=away, follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/login?next=/station")
        assert httpx.get(f"{base}/station/status", headers=away).status_code == 401
        assert httpx.get(f"{base}/station/status").status_code == 200
