"""Cases, actions, attach/detach, exports, fixity audits and district status over the
HTTP API (real TCP, SQLite and PostgreSQL): the same catalog functions as the CLI, the
same words in errors, and what an archivist then finds in the catalog and the bag."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalog.devices import add_device
from tests.api_helpers import access_events, client, error_of, issue_token, served, session_secret
from tests.case_helpers import cst, make_recording
from tests.cli_helpers import run_cli

NUMBER = "沪徐市监罚〔2026〕123号"
DEMO_CASES = Path(__file__).resolve().parents[1] / "scripts" / "demo" / "cases.csv"


@pytest.fixture
def base(app: Any) -> Iterator[str]:
    with served(app.settings) as url:
        yield url


@pytest.fixture
def archivist(app: Any, base: str) -> Iterator[httpx.Client]:
    """The case-management integration: an archivist's API token (cases, actions,
    attachments)."""
    token = issue_token(app, "archivist", "徐汇区市场监督管理局", name="cms")
    with client(base, Authorization=f"Bearer {token}") as http:
        yield http


@pytest.fixture
def person(app: Any, base: str) -> Iterator[httpx.Client]:
    """An archivist of the same unit, logged in as xu: exports are for people."""
    secret = session_secret(app, "archivist", "徐汇区市场监督管理局", name="xu")
    with client(base, Authorization=f"Bearer {secret}") as http:
        yield http


@pytest.fixture
def rec(app: Any) -> int:
    with app.catalog.transaction() as s:
        add_device(s, app.signer, serial="DEV-A", unit="徐汇区市场监督管理局", actor="test")
    return make_recording(app, serial="DEV-A", docking_officer="010203", start=cst(2026, 12, 1, 7))


def test_cases_are_created_listed_changed_closed(
    app: Any, base: str, archivist: httpx.Client
) -> None:
    made = archivist.post(
        "/api/v1/cases",
        json={"number": NUMBER, "title": "无照经营", "unit": "徐汇区市场监督管理局"},
    )
    assert made.status_code == 201 and made.json() == {"number": NUMBER}
    # The same number with other brackets is another spelling of this case: 409, and
    # the CLI's words.
    similar = archivist.post(
        "/api/v1/cases", json={"number": "沪徐市监罚[2026]123号", "unit": "徐汇区市场监督管理局"}
    )
    assert similar.status_code in (400, 409)
    assert NUMBER in error_of(similar)["message"]

    listed = archivist.get("/api/v1/cases").json()
    assert [c["number"] for c in listed] == [NUMBER]
    changed = archivist.patch(
        f"/api/v1/cases/{NUMBER}", json={"retention": "30年", "reason": "法制审核意见"}
    )
    assert changed.json()["changes"] == {"retention": ["永久", "30年"]}
    closed = archivist.post(f"/api/v1/cases/{NUMBER}/close", json={"reason": "结案"}).json()
    assert closed["status"] == "closed" and closed["keep_until"].startswith("2056-")
    detail = archivist.get("/api/v1/cases/沪徐市监罚（2026）123号").json()
    assert detail["number"] == NUMBER and detail["status"] == "closed"
    # A case that does not exist is in no unit: a unit's archivist is refused; the
    # auditor (every unit) learns it does not exist, and which case was probably meant.
    assert archivist.get("/api/v1/cases/沪徐市监罚〔2026〕124号").status_code == 403
    with client(base, Authorization=f"Bearer {issue_token(app, 'auditor')}") as auditor:
        missing = auditor.get("/api/v1/cases/沪徐市监罚〔2026〕124号")
    assert missing.status_code == 404
    assert "did you mean" in error_of(missing)["message"]


def test_import_action_attach_detach_and_the_audit(
    app: Any, archivist: httpx.Client, rec: int
) -> None:
    content = DEMO_CASES.read_text(encoding="utf-8")
    report = archivist.post(
        "/api/v1/cases/import", json={"name": "cases.csv", "content": content}
    ).json()
    assert report["cases_created"] >= 1 and report["errors"] == []

    action = archivist.post(
        f"/api/v1/cases/{NUMBER}/actions",
        json={
            "id": "XH-API-1",
            "officers": ["010203"],
            "start": "2026-12-01 06:55",
            "end": "2026年12月1日 07:30",
            "place": "漕溪北路",
        },
    )
    assert action.status_code == 201 and action.json()["attached"] == 1
    detached = archivist.post(
        f"/api/v1/cases/{NUMBER}/detach", json={"recording": rec, "reason": "不相关"}
    )
    assert detached.status_code == 200
    attached = archivist.post(
        f"/api/v1/cases/{NUMBER}/attach", json={"recording": rec, "reason": "现场记录"}
    )
    assert attached.json()["changed"] is True
    no_reason = archivist.post(f"/api/v1/cases/{NUMBER}/attach", json={"recording": rec})
    assert no_reason.status_code == 422 and "reason" in error_of(no_reason)["message"]

    why = archivist.get(f"/api/v1/cases/{NUMBER}").json()["recordings"]
    assert [r["recording"] for r in why] == [rec]
    events = access_events(app, actor="token:cms", actions=["access.attach", "access.detach"])
    assert [(e.action, e.details["reason"]) for e in events] == [
        ("access.detach", "不相关"),
        ("access.attach", "现场记录"),
    ]
    bad = archivist.post(
        f"/api/v1/cases/{NUMBER}/actions",
        json={"id": "X", "officers": ["010203"], "start": "tomorrow", "end": "2026-12-01"},
    )
    assert bad.status_code == 400 and "tomorrow" in error_of(bad)["message"]


def test_an_export_runs_in_the_background_and_downloads_as_tar(
    app: Any,
    archivist: httpx.Client,
    person: httpx.Client,
    rec: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archivist.post("/api/v1/cases", json={"number": NUMBER, "unit": "徐汇区市场监督管理局"})
    archivist.post(f"/api/v1/cases/{NUMBER}/attach", json={"recording": rec, "reason": "现场"})
    # The integration's token does not export: evidence leaves with a person.
    assert archivist.post("/api/v1/exports", json={"cases": [NUMBER]}).status_code == 403
    started = person.post("/api/v1/exports", json={"cases": [NUMBER]})
    assert started.status_code == 202
    job = started.json()
    deadline = time.monotonic() + 120
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        job = person.get(f"/api/v1/exports/jobs/{job['id']}").json()
    assert job["state"] == "done", job["error"]
    assert job["bags"][0]["four_properties_ok"] is True
    got = person.get(f"/api/v1/exports/jobs/{job['id']}/download")
    assert got.status_code == 200 and got.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(got.content)) as tar:
        names = tar.getnames()
    assert any(n.endswith("bagit.txt") for n in names)
    assert any(n.endswith("manifest-sha256.txt") for n in names)
    assert job["bytes_written"] == len(got.content)
    # The export is the CLI's export: in its hand-over history, and verified offline.
    history = person.get("/api/v1/exports").json()
    assert [h["export"] for h in history] == [job["export"]]
    tar_path = app.settings.data_dir / "exports" / "api" / f"{job['id']}.tar"
    assert run_cli(capsys, "verify", str(tar_path)).code == 0
    actions = [e.action for e in access_events(app, actor="xu")]
    assert actions.count("access.export") == 1 and actions.count("access.download") == 1
    # Another unit's archivist neither sees the job nor downloads its bag.
    other = session_secret(app, "archivist", "黄浦区市场监督管理局")
    with client(str(person.base_url), Authorization=f"Bearer {other}") as elsewhere:
        assert elsewhere.get("/api/v1/exports/jobs").json() == []
        assert elsewhere.get(f"/api/v1/exports/jobs/{job['id']}/download").status_code == 403
        assert elsewhere.get("/api/v1/exports").json() == []


def test_export_requests_that_cannot_run_say_why(person: httpx.Client) -> None:
    neither = person.post("/api/v1/exports", json={})
    assert neither.status_code == 400 and "not both nor neither" in error_of(neither)["message"]
    # A time range takes every unit's recordings: not for a unit's archivist.
    ranged = person.post("/api/v1/exports", json={"from": "2026-12-01"})
    assert ranged.status_code == 403
    unknown = person.get(f"/api/v1/exports/jobs/{'0' * 32}")
    assert unknown.status_code == 404 and error_of(unknown)["hint"]


def test_district_status_and_fixity_audits_for_the_auditor(
    app: Any, base: str, rec: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "verify", "--store", "--all").code == 0
    token = issue_token(app, "auditor")
    with client(base, Authorization=f"Bearer {token}") as auditor:
        status = auditor.get("/api/v1/district/status").json()
        assert "queue" in status and "stations" in status
        runs = auditor.get("/api/v1/verify/runs").json()
        assert len(runs) == 1 and runs[0]["checked"] >= 1 and runs[0]["failed"] == 0
        one = auditor.get(f"/api/v1/verify/runs/{runs[0]['uid']}").json()
        assert one["failures"] == []
        # The auditor changes nothing.
        refused = auditor.post("/api/v1/cases", json={"number": "X-1"})
        assert refused.status_code == 403
