"""`liuhen serve --workers N`: several server processes on one port, and the state they
share kept where each of them reads it.

Real processes: `liuhen serve --workers 2` started as a subprocess on a free port, on
SQLite and on PostgreSQL; both workers answer (each stopped in turn with SIGSTOP, the
other still answers), the station screen answers, a worker killed with SIGKILL in the
middle of an export leaves the job failed (interrupted) and is replaced, and SIGTERM
(or the supervisor's own death) leaves no process behind. In-process: two applications
on the same data directory and catalog, as two workers are: an export started on one
is followed and downloaded on the other, and the same for the audit page's custody
check.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text, update
from starlette.testclient import TestClient

from catalog.anchors import publish
from catalog.devices import add_device
from catalog.models import CustodyEvent
from config.i18n import set_language
from tests.api_helpers import PASSWORD, add_user, client, served, session_secret
from tests.case_helpers import cst, make_recording
from web.app import create_app

LIUHEN = str(Path(sys.executable).with_name("liuhen"))
UNIT = "徐汇区市场监督管理局"
NUMBER = "沪徐市监罚〔2026〕456号"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(what: str, ready: Callable[[], Any], seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        got = ready()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.1)


def _children(pid: int) -> set[int]:
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return set()
    return {int(p) for p in listed.split()}


def _workers(pid: int) -> set[int]:
    """The supervisor's worker processes."""
    found = set()
    for child in _children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"liuhen.serve_cmds" in cmdline:
            found.add(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Serve:
    def __init__(self, proc: subprocess.Popen[str], base: str, screen: int) -> None:
        self.proc, self.base, self.screen = proc, base, screen

    def answers(self) -> bool:
        """A fresh connection (no keep-alive: any worker may take it) is answered."""
        try:
            return httpx.get(f"{self.base}/api/v1/openapi.json", timeout=10).status_code == 200
        except httpx.TransportError:
            return False


@pytest.fixture
def serve2(app: Any, catalog_url: str) -> Iterator[Serve]:
    port, screen = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "LIUHEN_LANG"}
    env |= {
        "LIUHEN_HOME": str(app.settings.data_dir),
        "LIUHEN_CATALOG_URL": catalog_url,
        "LIUHEN_API_PORT": str(port),
        "LIUHEN_API_STATION_SCREEN_PORT": str(screen),
        "LIUHEN_API_WORKERS": "2",  # [api] workers (--workers: the test below)
        # An export waiting on a catalog lock the test holds waits, not fails.
        "LIUHEN_CATALOG_BUSY_TIMEOUT_MS": "600000",
    }
    proc = subprocess.Popen([LIUHEN, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    served_ = Serve(proc, f"http://127.0.0.1:{port}", screen)
    try:
        _wait("liuhen serve answers", lambda: served_.answers() or proc.poll() is not None)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        _wait("two workers", lambda: len(_workers(proc.pid)) == 2)
        yield served_
    finally:
        if proc.poll() is None:
            proc.kill()  # a test that failed half-way: its workers stop by themselves
            proc.wait(timeout=30)


def test_two_workers_answer_the_station_screen_too_and_sigterm_leaves_none(
    serve2: Serve,
) -> None:
    proc = serve2.proc
    workers = _workers(proc.pid)
    assert len(workers) == 2
    # Each worker in turn stopped: the other answers every request on the one port.
    for stopped in workers:
        os.kill(stopped, signal.SIGSTOP)
        try:
            assert all(serve2.answers() for _ in range(5))
        finally:
            os.kill(stopped, signal.SIGCONT)
    # The station's own screen, served by one worker, on its loopback port.
    status = httpx.get(f"http://127.0.0.1:{serve2.screen}/station/status", timeout=10)
    assert status.status_code == 200
    assert httpx.get(f"{serve2.base}/station/status", timeout=10).status_code == 401
    everyone = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    left = {p: Path(f"/proc/{p}/cmdline").read_bytes() for p in everyone if _alive(p)}
    assert not left, left
    said = proc.stderr.read() if proc.stderr else ""
    assert "2 个服务进程" in said, said


def test_workers_stop_when_their_supervisor_is_killed(serve2: Serve) -> None:
    everyone = _children(serve2.proc.pid)
    serve2.proc.kill()
    serve2.proc.wait(timeout=30)
    _wait("the orphaned workers stop", lambda: not [p for p in everyone if _alive(p)])
    assert not serve2.answers()


@contextmanager
def _flocked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield


@contextmanager
def _catalog_write_lock(catalog_url: str) -> Iterator[None]:
    """No export can record itself in the catalog while this is held."""
    if catalog_url.startswith("sqlite:///"):
        held = sqlite3.connect(catalog_url.removeprefix("sqlite:///"), isolation_level=None)
        held.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            held.execute("ROLLBACK")
            held.close()
        return
    engine = create_engine(catalog_url)
    try:
        with engine.connect() as conn, conn.begin() as tx:
            conn.execute(text("LOCK TABLE exports IN ACCESS EXCLUSIVE MODE"))
            yield
            tx.rollback()
    finally:
        engine.dispose()


def _holder(pids: set[int], path: Path) -> int | None:
    """Which of ``pids`` has ``path`` open."""
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir() if fds.exists() else ():
            try:
                if os.readlink(fd) == str(path):
                    return pid
            except OSError:
                continue
    return None


def _case_with_a_recording(app: Any) -> None:
    with app.catalog.transaction() as s:
        add_device(s, app.signer, serial="DEV-A", unit=UNIT, actor="test")
    rec = make_recording(app, serial="DEV-A", docking_officer="010203", start=cst(2026, 12, 1, 7))
    token = session_secret(app, "archivist", UNIT, name="cms")
    with served(app.settings) as base, client(base, Authorization=f"Bearer {token}") as cms:
        assert cms.post("/api/v1/cases", json={"number": NUMBER, "unit": UNIT}).status_code < 300
        attached = cms.post(
            f"/api/v1/cases/{NUMBER}/attach", json={"recording": rec, "reason": "现场"}
        )
        assert attached.status_code < 300, attached.text


def _finished(person: httpx.Client, job_id: str) -> dict[str, Any]:
    def look() -> dict[str, Any] | None:
        job: dict[str, Any] = person.get(f"/api/v1/exports/jobs/{job_id}").json()
        return job if job["state"] not in ("queued", "running") else None

    finished: dict[str, Any] = _wait("the export job ends", look, 180)
    return finished


def test_a_worker_killed_mid_export_leaves_the_job_interrupted_and_is_replaced(
    app: Any, catalog_url: str, serve2: Serve
) -> None:
    _case_with_a_recording(app)
    folder = app.settings.data_dir / "exports" / "api"
    secret = session_secret(app, "archivist", UNIT, name="xu")
    # A new connection for each request: one kept alive would go to the worker killed.
    fresh = httpx.Limits(max_keepalive_connections=0)
    bearer = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=serve2.base, headers=bearer, limits=fresh, timeout=30) as person:
        # Another export "running" (its lock held here) keeps the new job queued, so
        # the catalog can be locked before the job starts writing to it.
        with ExitStack() as catalog_locked:
            with _flocked(folder / ".export.lock"):
                started = person.post("/api/v1/exports", json={"cases": [NUMBER]})
                assert started.status_code == 202, started.text
                job_id = started.json()["id"]
                assert started.json()["state"] == "queued"
                catalog_locked.enter_context(_catalog_write_lock(catalog_url))
            record = folder / f"{job_id}.json"
            _wait("the job runs", lambda: '"state": "running"' in record.read_text())
            owner = _holder(_workers(serve2.proc.pid), folder / f"{job_id}.lock")
            assert owner is not None
            os.kill(owner, signal.SIGKILL)
            _wait("the worker is dead", lambda: not _alive(owner))

        job = person.get(f"/api/v1/exports/jobs/{job_id}").json()
        assert job["state"] == "failed", job
        assert job["error"]["code"] == "Interrupted"
        assert "中断" in job["error"]["message"]
        assert not list(folder.glob("*.partial"))  # nothing half-written left in sight
        download = person.get(f"/api/v1/exports/jobs/{job_id}/download")
        assert download.status_code == 409
        listed = person.get("/api/v1/exports/jobs").json()
        assert [(j["id"], j["state"]) for j in listed] == [(job_id, "failed")]

        # The supervisor started another worker in its place; a new export then runs.
        _wait(
            "a new worker",
            lambda: len(_workers(serve2.proc.pid)) == 2 and owner not in _workers(serve2.proc.pid),
        )
        again = person.post("/api/v1/exports", json={"cases": [NUMBER]}).json()
        done = _finished(person, again["id"])
        assert done["state"] == "done", done["error"]
    serve2.proc.terminate()
    serve2.proc.wait(timeout=60)
    said = serve2.proc.stderr.read() if serve2.proc.stderr else ""
    assert f"服务进程 {owner} 已停止" in said, said


# -- two applications on one data directory and catalog (as two workers are) --------------


def test_an_export_started_on_one_worker_is_followed_and_downloaded_on_another(
    app: Any,
) -> None:
    _case_with_a_recording(app)
    secret = session_secret(app, "archivist", UNIT, name="xu")
    with (
        served(app.settings) as one,
        served(app.settings) as other,
        client(one, Authorization=f"Bearer {secret}") as a,
        client(other, Authorization=f"Bearer {secret}") as b,
    ):
        job = a.post("/api/v1/exports", json={"cases": [NUMBER]}).json()
        assert [j["id"] for j in b.get("/api/v1/exports/jobs").json()] == [job["id"]]
        done = _finished(b, job["id"])
        assert done["state"] == "done", done["error"]
        got = b.get(f"/api/v1/exports/jobs/{job['id']}/download")
        assert got.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(got.content)) as tar:
            assert any(n.endswith("bagit.txt") for n in tar.getnames())
        assert done["bytes_written"] == len(got.content)
        # Another unit's archivist sees no job of this unit on either.
        other_unit = session_secret(app, "archivist", "黄浦区市场监督管理局")
        with client(other, Authorization=f"Bearer {other_unit}") as elsewhere:
            assert elsewhere.get("/api/v1/exports/jobs").json() == []
    # A server started later (a restart) still knows the job.
    with served(app.settings) as later, client(later, Authorization=f"Bearer {secret}") as c:
        assert c.get(f"/api/v1/exports/jobs/{job['id']}").json()["state"] == "done"


def test_a_job_left_running_by_a_dead_process_is_failed_with_its_partial_bag_removed(
    app: Any,
) -> None:
    """What a worker killed mid-export leaves (its record says running, nobody holds
    its lock, a .partial bag), found by the next look."""
    from api.jobs import ExportJob

    folder = app.settings.data_dir / "exports" / "api"
    folder.mkdir(parents=True)
    job_id = "ab" * 16
    left = ExportJob(job_id, {"cases": [NUMBER]}, "xu", folder / f"{job_id}.tar", "running")
    left.save()
    left.partial.write_bytes(b"half a bag")
    secret = session_secret(app, "archivist", UNIT, name="xu")
    with served(app.settings) as base, client(base, Authorization=f"Bearer {secret}") as http:
        job = http.get(f"/api/v1/exports/jobs/{job_id}", headers={"Accept-Language": "en"}).json()
        # Kept as a message: each reader reads it in their language.
        chinese = http.get(f"/api/v1/exports/jobs/{job_id}", headers={"Accept-Language": "zh"})
    assert job["state"] == "failed" and job["error"]["code"] == "Interrupted"
    assert "was interrupted" in job["error"]["message"] and job["error"]["hint"]
    assert "已中断" in chinese.json()["error"]["message"]
    assert not left.partial.exists()


def _web(app: Any) -> TestClient:
    return TestClient(create_app(app.settings), follow_redirects=False)


def test_a_custody_check_started_on_one_worker_shows_on_another_in_each_language(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIUHEN_LANG", "zh")
    set_language(None)
    make_recording(app, start=cst(2026, 12, 1, 7))
    with app.catalog.session() as s:
        assert publish(s, app.signer, store=app.store) is not None
    station = app.settings.station.id
    with app.catalog.transaction() as s:  # an event edited behind the catalog's back
        s.execute(
            update(CustodyEvent)
            .where(CustodyEvent.station_id == station, CustodyEvent.seq == 2)
            .values(actor="someone-else")
        )
    add_user(app, "sun", "auditor", unit=UNIT)
    with _web(app) as one, _web(app) as other:
        r = one.post("/login", data={"login": "sun", "password": PASSWORD, "next": "/audit"})
        assert r.status_code == 303, r.text
        other.cookies = one.cookies
        assert "本服务器尚未运行过保管链校验" in other.get("/audit/integrity").text
        csrf = str(one.cookies["liuhen_csrf"])
        assert one.post("/audit/integrity/custody", data={"csrf": csrf}).status_code == 303

        def finished() -> dict[str, Any] | None:
            run: dict[str, Any] = other.get("/audit/integrity/custody").json()
            return run if run["state"] != "running" else None

        run = _wait("the custody check ends", finished)
        assert run["state"] == "done" and not run["ok"]
        zh = other.get("/audit/integrity").text
        assert f"采集站 {station} 事件 #2" in zh and "内容被改动" in zh
        # The walk's own detail in Chinese too (it is made as text: walked again in zh).
        assert "内容与其哈希不符" in zh and "does not match its hash" not in zh
        en = other.get("/audit/integrity?lang=en").text
        assert f"station {station} event #2" in en and ": edited:" in en
        assert "content does not match its hash" in en
        assert "内容被改动" not in en and "内容与其哈希不符" not in en
        english = other.get("/audit/integrity/custody").json()  # the page's language: en now
        mine = next(r for r in english["results"] if r["station"] == station)
        assert any(re.search(r"event #2 .*edited", p) for p in mine["problems"]), mine


def test_a_custody_check_whose_process_died_shows_as_interrupted(app: Any) -> None:
    from api.filestate import write_json

    add_user(app, "sun", "auditor", unit=UNIT)
    folder = app.settings.data_dir / "custody_checks"
    write_json(
        folder / "run.json",
        {
            "actor": "sun",
            "stations": ["S1", "S2"],
            "started_at": "2026-12-06T01:00:00+00:00",
            "current": "S1",
            "done": [],
        },
    )
    with _web(app) as web:
        r = web.post("/login", data={"login": "sun", "password": PASSWORD, "next": "/audit"})
        assert r.status_code == 303, r.text
        run = web.get("/audit/integrity/custody?lang=en").json()
        assert run["state"] == "failed" and "interrupted" in run["error"], run
        assert "已中断" in web.get("/audit/integrity?lang=zh").text
        # The button works again: a new check starts.
        csrf = str(web.cookies["liuhen_csrf"])
        assert web.post("/audit/integrity/custody", data={"csrf": csrf}).status_code == 303
        assert web.get("/audit/integrity/custody").json()["state"] in ("running", "done")
        # Let the check end before the catalog is dropped under it (a PostgreSQL
        # schema dropped beside a running check deadlocks the teardown).
        _wait(
            "the custody check's end",
            lambda: web.get("/audit/integrity/custody").json()["state"] != "running",
            seconds=240,
        )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_station_screen_answers_its_first_request_only_once_started(
    app: Any, catalog_url: str, workers: str
) -> None:
    """Asked from the moment `liuhen serve` starts: the station screen's listener waits
    for the application's start-up before it answers, so its first answer is the page."""
    screen = _free_port()
    env = {
        **os.environ,
        "LIUHEN_HOME": str(app.settings.data_dir),
        "LIUHEN_CATALOG_URL": catalog_url,
        "LIUHEN_API_PORT": str(_free_port()),
        "LIUHEN_API_STATION_SCREEN_PORT": str(screen),
        "LIUHEN_API_WORKERS": "3",  # the option wins
    }
    proc = subprocess.Popen(
        [LIUHEN, "serve", "--workers", workers], env=env, stderr=subprocess.DEVNULL
    )
    try:

        def first() -> httpx.Response | None:
            assert proc.poll() is None
            try:
                return httpx.get(f"http://127.0.0.1:{screen}/station/status", timeout=30)
            except httpx.TransportError:
                return None

        answer: httpx.Response = _wait("the station screen answers", first)
        assert answer.status_code == 200, answer.text
        # --workers, not the setting: 1 is this very process, 2 are two children.
        assert len(_workers(proc.pid)) == (0 if workers == "1" else 2)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)  # the catalog plays no part
def test_workers_that_cannot_start_make_serve_give_up(app: Any, tmp_path: Path) -> None:
    """A certificate file that is no certificate: every worker fails as it starts; the
    supervisor does not restart them forever, says so, and leaves no process behind."""
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate\n")
    env = {
        **os.environ,
        "LIUHEN_HOME": str(app.settings.data_dir),
        "LIUHEN_LANG": "en",
        "LIUHEN_API_PORT": str(_free_port()),
        "LIUHEN_API_STATION_SCREEN_PORT": "0",
    }
    proc = subprocess.Popen(
        [LIUHEN, "serve", "--workers", "2", "--tls-cert", str(bad), "--tls-key", str(bad)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[int] = set()

    def ended() -> bool:
        seen.update(_children(proc.pid))
        return proc.poll() is not None

    _wait("serve gives up", ended, 180)
    said = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode != 0
    assert "cannot start" in said, said
    assert not [p for p in seen if _alive(p)]
