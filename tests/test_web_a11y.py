"""Every page of the web application through axe-core in a real browser (Debian's
Chromium, a real `liuhen serve`), failing on any violation of impact "serious" or
"critical"; each page's screenshot at 1280×800 (the station screen at 1024×600 too) is
kept as a test artifact. The custody check of the audit page is run from its button
on the way, as an auditor would.

axe-core comes from the npm registry into .cache/axe (scripts/setup.sh), never into the
repository; without it the test skips, and under CI=true fails. A new page is one line
in PAGES.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyotp
import pytest
from sqlalchemy import select

from access.accounts import get_user
from archive_export.fixity import audit_store, make_scope
from catalog.cases import create_case
from catalog.models import Recording
from ingest.synthetic import make_bulk_files
from storage import LocalStore
from tests.api_helpers import PASSWORD, add_admin, add_user
from tests.case_helpers import cst, make_recording
from tests.offload_helpers import make_app
from tests.web_helpers import chromium, liuhen_serve, shot

pytestmark = pytest.mark.timeout(600)

AXE = Path(__file__).resolve().parents[1] / ".cache/axe/node_modules/axe-core/axe.min.js"
BLOCKING = ("serious", "critical")
UNIT = "徐汇分局"
CASE = "沪徐市监罚〔2026〕5号"
DESKTOP = {"width": 1280, "height": 800}
STATION_SCREEN = {"width": 1024, "height": 600}
TOTP_SECRETS: dict[str, str] = {}  # login -> two-factor secret, for the administrators


@dataclass(frozen=True)
class Page:
    name: str  # of the screenshot, and in the failure
    path: str  # {rec} is the recording's id
    login: str | None  # who looks at it (None: nobody logged in)
    sizes: tuple[dict[str, int], ...] = (DESKTOP,)


PAGES = (
    Page("login", "/login", None),
    Page("station", "/station", None, (DESKTOP, STATION_SCREEN)),
    Page("recordings", "/recordings", "sun"),
    Page("recording", "/recordings/{rec}", "sun"),
    Page("cases", "/cases", "sun"),
    Page("case", f"/cases/{quote(CASE)}", "sun"),
    Page("audit", "/audit", "sun"),
    Page("audit-integrity", "/audit/integrity", "sun"),
    Page("district", "/district", "sun"),
    Page("admin-devices", "/admin/devices", "admin"),
    Page("admin-device", "/admin/devices/A123456", "admin"),
    Page("admin-users", "/admin/users", "admin"),
)


def _axe_source() -> str:
    if not AXE.is_file():
        missing = f"{AXE} is missing (scripts/setup.sh installs axe-core with npm)"
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    return AXE.read_text(encoding="utf-8")


def blocking_violations(page: Any, axe: str) -> list[dict[str, Any]]:
    """axe-core's violations of impact serious or critical on the page as it is."""
    page.add_script_tag(content=axe)
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [v for v in found if v.get("impact") in BLOCKING]


def readable(name: str, violations: list[dict[str, Any]]) -> str:
    """The violations as a person reads them: rule, impact, what is wrong, where."""
    lines = []
    for v in violations:
        lines.append(f"{name}: [{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"][:5]:
            lines.append(f"    at {' '.join(map(str, node['target']))}: {node['html'][:160]}")
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"       {summary[:300]}")
        if len(v["nodes"]) > 5:
            lines.append(f"    … and {len(v['nodes']) - 5} more")
    return "\n".join(lines)


def _prepare(data: Path) -> int:
    """A station that docked a recorder A123456 (its card on the station screen), a
    recording, a case, a fixity audit that found an object missing, an auditor and a
    system administrator; returns the recording's id."""
    app = make_app(data)
    try:
        recorder = make_bulk_files(data.parent / "dock" / "A123456", 3, 20_000)
        station = app.station()
        try:
            assert station.run_docking(recorder.root).state == "SAFE_TO_CLEAR"
        finally:
            station.close()
        rec = make_recording(app, start=cst(2026, 12, 1, 7))
        with app.catalog.transaction() as s:
            create_case(s, app.signer, number=CASE, title="无照经营", unit=UNIT, actor="test")
            key = s.scalars(select(Recording.object_key).where(Recording.id == rec)).one()
        store = app.store
        assert isinstance(store, LocalStore)
        (store.root / key).chmod(0o644)
        (store.root / key).unlink()  # gone behind the store's back
        audit_store(app.catalog, app.store, app.signer, scope=make_scope("all"), actor="test")
        add_user(app, "sun", "auditor", unit=UNIT)
        add_admin(app, "admin", "system_admin")  # administrators log in with a code
        with app.catalog.session() as s:
            TOTP_SECRETS["admin"] = str(get_user(s, "admin").totp_secret)
    finally:
        app.close()
    return rec


def _login(page: Any, base: str, login: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#login", login)
    page.fill("#password", PASSWORD)
    if login in TOTP_SECRETS:
        page.fill("#totp", pyotp.TOTP(TOTP_SECRETS[login]).now())
    page.get_by_role("button", name="登录", exact=True).click()
    page.wait_for_load_state()
    assert "/login" not in page.url, f"{login} could not log in"


def _check_custody_from_the_page(page: Any) -> None:
    """The auditor presses the button; the page follows the check and shows the result."""
    page.get_by_role("button", name="立即校验保管链").click()
    page.locator("#chains td.check", has_text="校验通过").first.wait_for(timeout=60_000)
    assert "所有保管链校验通过" in page.locator("#custody-status").inner_text()


def test_every_page_passes_axe(tmp_path: Path) -> None:
    axe = _axe_source()
    rec = _prepare(tmp_path / "data")
    report: list[str] = []
    with liuhen_serve(tmp_path / "data") as base, chromium() as browser:
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        logged_in: str | None = None
        for p in sorted(PAGES, key=lambda p: p.login or ""):
            if p.login != logged_in:
                context.clear_cookies()
                if p.login:
                    _login(page, base, p.login)
                logged_in = p.login
            answer = page.goto(base + p.path.format(rec=rec))
            assert answer is not None and answer.status == 200, f"{p.name}: {p.path}"
            page.wait_for_load_state("networkidle")
            if p.name == "audit-integrity":
                _check_custody_from_the_page(page)
            for size in p.sizes:
                page.set_viewport_size(size)
                found = blocking_violations(page, axe)
                if found:
                    report.append(readable(f"{p.name} {size['width']}x{size['height']}", found))
                shot(page, f"page-{p.name}-{size['width']}x{size['height']}")
            page.set_viewport_size(DESKTOP)
    assert not report, "axe-core found serious or critical violations:\n" + "\n".join(report)


def test_the_check_finds_what_it_must() -> None:
    """A page without a language, a label or an image text fails the check: a check
    that finds nothing anywhere would pass every page too."""
    axe = _axe_source()
    with chromium() as browser:
        page = browser.new_page()
        page.set_content('<html><body><img src="x.png"><input></body></html>')
        found = {v["id"] for v in blocking_violations(page, axe)}
    assert {"html-has-lang", "label", "image-alt"} <= found, found
