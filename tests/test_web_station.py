"""The station screen in a real browser: a recorder docks, the screen shows its progress
and 请勿拔出 while the docking is under way, and 可安全拔出 only once the station journal
says SAFE_TO_CLEAR; at 1024×600 nothing scrolls sideways; no login on the station's own
loopback listener, a login and the district status permission on the main one."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.journal import Journal
from ingest.synthetic import make_recorder
from tests.api_helpers import PASSWORD, add_user
from tests.offload_helpers import make_app
from tests.web_helpers import (
    chromium,
    free_port,
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


class Gate:
    """Stops the first call of a journal method until opened: a docking held at a
    known point, whatever the speed of the machine."""

    def __init__(self, journal: Journal, method: str) -> None:
        self.reached, self.opened = threading.Event(), threading.Event()
        original = getattr(journal, method)

        def held(*args: Any, **kwargs: Any) -> Any:
            if not self.reached.is_set():
                self.reached.set()
                self.opened.wait(timeout=120)
            return original(*args, **kwargs)

        setattr(journal, method, held)

    def hold(self) -> None:
        assert self.reached.wait(timeout=60), "the docking never got there"

    def open(self) -> None:
        self.opened.set()


def _polls(page: Any, card: Any, n: int = 3) -> str:
    """The card after ``n`` more answers of the station (the screen polls twice a
    second); each time it must say 请勿拔出, never 可安全拔出."""
    text = ""
    for _ in range(n):
        with page.expect_response(lambda r: r.url.endswith("/station/status")):
            pass
        text = card.inner_text()
        assert "请勿拔出" in text and "可安全拔出" not in text, text
        assert card.get_attribute("data-state") == "OFFLOADING"
    return text


def _files(card: Any) -> tuple[int, int]:
    done, total = (int(n) for n in card.locator(".files").inner_text().split("/"))
    return done, total


def test_station_screen_shows_progress_then_safe_to_clear(tmp_path: Path) -> None:
    """Held first before any file is marked stored (0 of N), then just before the
    station writes the docking's final state (every file may be stored by then: the
    moment a screen guessing from the counts would say "safe" too early)."""
    data = tmp_path / "data"
    app = make_app(data)
    recorder = make_recorder(tmp_path / "dock" / "A123456")
    station = app.station()
    stored, verdict = Gate(station.journal, "done"), Gate(station.journal, "finished")
    docking = threading.Thread(target=lambda: station.run_docking(recorder.root))
    screen = free_port()
    with liuhen_serve(data, station_port=screen), chromium() as browser:
        page = browser.new_page(viewport={"width": 1024, "height": 600})
        page.goto(f"http://127.0.0.1:{screen}/station")  # the station's own screen: no login
        assert "/login" not in page.url
        page.get_by_text("还没有执法记录仪接入").wait_for()
        docking.start()
        try:
            stored.hold()
            card = page.locator("article.slot")
            card.wait_for()
            _polls(page, card)
            done, total = _files(card)
            assert done == 0 and total == len(recorder.files)
            assert card.locator(".device").inner_text() == "A123456"
            assert recorder.device.officer_number in card.locator(".officer").inner_text()
            shot(page, "station-1024x600-offloading")
            no_sideways_scroll(page)
            stored.open()
            verdict.hold()
            _polls(page, card)
            assert _files(card)[0] > 0  # progress, and still not safe
        finally:
            stored.open()
            verdict.open()
            docking.join(timeout=120)
        card.locator(".verdict", has_text="可安全拔出").wait_for(timeout=30_000)
        assert _docking_state(app.settings.journal_path) == "SAFE_TO_CLEAR"
        assert card.get_attribute("data-state") == "SAFE_TO_CLEAR"
        assert _files(card) == (total, total)
        assert card.locator(".bar").get_attribute("aria-valuenow") == "100"
        shot(page, "station-1024x600-safe")
        no_sideways_scroll(page)
        assert unlabelled_controls(page) == []
    station.close()
    app.close()


def test_station_screen_needs_a_login_from_elsewhere(tmp_path: Path) -> None:
    """On the main listener (where a reverse proxy sends everyone, with whatever
    forwarded address), the screen asks for a login, and its data answers 401 — even to
    a request that claims to come from the station; on the station's own loopback
    listener it opens with no login, and serves nothing else."""
    data = tmp_path / "data"
    app = make_app(data)
    add_user(app, "sun", "auditor")  # may read the district status
    add_user(app, "li", "reviewer")  # may not
    app.close()
    screen = free_port()
    with liuhen_serve(data, station_port=screen) as base:
        for claimed in ({}, {"X-Forwarded-For": "127.0.0.1"}, {"X-Forwarded-For": "10.1.2.3"}):
            page = httpx.get(f"{base}/station", headers=claimed, follow_redirects=False)
            assert page.status_code == 303
            assert page.headers["location"].startswith("/login?next=/station")
            assert httpx.get(f"{base}/station/status", headers=claimed).status_code == 401
        own = f"http://127.0.0.1:{screen}"
        assert httpx.get(f"{own}/station/status").status_code == 200
        assert httpx.get(f"{own}/station").status_code == 200
        assert httpx.get(f"{own}/recordings").status_code == 404  # the screen only
        rebound = httpx.get(f"{own}/station/status", headers={"Host": f"evil.example:{screen}"})
        assert rebound.status_code == 421
        for login, expected in (("li", 403), ("sun", 200)):
            with httpx.Client(base_url=base) as browser:
                browser.post("/login", data={"login": login, "password": PASSWORD})
                assert browser.get("/station/status").status_code == expected, login
                assert browser.get("/station").status_code == expected, login
