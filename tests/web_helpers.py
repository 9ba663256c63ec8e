"""The web application for real: `liuhen serve` as its own process on a free loopback
port, and Debian's Chromium driven by Playwright (never a browser Playwright downloads).

Under CI=true a missing Chromium or Playwright is a failure, elsewhere a skip: a CI
machine that cannot run the browser tests must not pass them silently."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("LIUHEN_WEB_SHOTS", "test-artifacts/web"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def liuhen_serve(
    data_dir: Path, *, catalog_url: str | None = None, station_port: int = 0
) -> Iterator[str]:
    """`liuhen serve` on the station in ``data_dir``, in Chinese (the default); yields
    its base URL. Its output goes to serve.log beside the data for a failing test.
    ``station_port``: the station's own screen's listener (0: none, so that tests side
    by side do not contend for its default port)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "LIUHEN_LANG"}
    env["LIUHEN_HOME"] = str(data_dir)
    if catalog_url:
        env["LIUHEN_CATALOG_URL"] = catalog_url
    liuhen = Path(sys.executable).with_name("liuhen")
    log = (data_dir.parent / "serve.log").open("wb")
    proc = subprocess.Popen(
        [
            *(str(liuhen), "serve", "--host", "127.0.0.1", "--port", str(port)),
            *("--station-port", str(station_port)),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, proc)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_until_up(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"liuhen serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/login", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("liuhen serve did not answer within 60 s")


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium under Playwright."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (scripts/setup.sh installs Debian's chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[test]')"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            # Containers have no user namespaces for Chromium's sandbox; the player is
            # started by the test, not by a click, so autoplay must not need one.
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            yield browser
        finally:
            browser.close()


def no_sideways_scroll(page: Any) -> None:
    """The page fits its window's width (nothing to scroll sideways)."""
    width, inner = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{page.url}: {width} px wide in a {inner} px window"


def shot(page: Any, name: str) -> None:
    """A screenshot kept as a test artifact (LIUHEN_WEB_SHOTS, default test-artifacts/web)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def unlabelled_controls(page: Any) -> list[str]:
    """Controls a screen reader could not name (no label, aria-label or text): an
    accessibility basic checked on every page (axe-core is not installed here)."""
    found: list[str] = page.evaluate(
        """() => Array.from(document.querySelectorAll(
              'input:not([type=hidden]), select, textarea, button, video'))
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                         && !(e.textContent || '').trim())
            .map(e => e.outerHTML.slice(0, 120))"""
    )
    return found
