"""The third review's findings (session 8), each reproduced: every test failed before its fix."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from access.accounts import StateConflict, change_state, create_user, get_user
from access.roles import Role
from catalog import Catalog
from catalog.access_models import User
from config.settings import AccessSettings

POLICY = AccessSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)


# -- serve --workers: the worker's interpreter puts the working directory first ----------


def test_a_worker_imports_nothing_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m liuhen.serve_cmds` puts the current directory at sys.path[0]: a
    `uvicorn.py` (or `config.py`, `api/`, `storage/` …) in the folder `liuhen serve
    --workers N` was started from is imported by every worker, with the server's
    settings and secrets in hand."""
    from config import Settings
    from liuhen.serve_cmds import ServeSpec, Supervisor

    marker = tmp_path / "shadowed"
    (tmp_path / "uvicorn.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nraise SystemExit(9)\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    spec = ServeSpec(
        settings=Settings(data_dir=tmp_path / "data"),
        language="zh_CN",
        certfile=None,
        keyfile=None,
        accel_redirect=None,
        screen_port=0,
    )
    sup = Supervisor(spec, 1, sock, None)
    worker = sup._launch(0)
    try:
        worker.process.wait(10)  # started and serving: past its imports
    except subprocess.TimeoutExpired:
        worker.process.kill()
        worker.process.wait()
    finally:
        os.close(worker.ready_fd)
        sock.close()
    assert not marker.exists(), "the worker imported uvicorn.py from the working directory"


# -- api.filestate.write_json: one temporary name per process, shared by its threads ------


def test_write_json_from_two_threads_of_one_process(tmp_path: Path) -> None:
    """Two request threads settling the same job (ExportJobs._settled, owner gone and
    lock file gone) write its record at once: both use `.<name>.<pid>.tmp`, one's
    os.replace finds the file gone (an error to the client) or the two writes interleave
    in one file (a record that is no JSON: the job disappears from the list)."""
    from api.filestate import read_json, write_json

    path = tmp_path / "job.json"
    errors: list[BaseException] = []
    big = {"k": "x" * 200_000}

    def writer() -> None:
        for _ in range(40):
            try:
                write_json(path, big)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert read_json(path) == big


# -- account state: lock and disable at the same moment (PostgreSQL) ---------------------


def test_a_lock_racing_a_disable_does_not_let_an_unlock_undo_the_disable(pg_url: str) -> None:
    """change_state reads the account's state without holding its row: the security
    administrator's lock, checked against a row read before the system administrator's
    disable committed, overwrites 'disabled' with 'locked' (disabled_from left
    'active'); the security administrator's unlock then opens an account the system
    administrator disabled (三员分立)."""
    catalog = Catalog(pg_url)
    catalog.upgrade()
    try:
        with catalog.transaction() as s:
            create_user(
                s,
                login="hal",
                unit="徐汇",
                roles=[Role.REVIEWER],
                actor="t",
                policy=POLICY,
                password="Correct-Horse-9",
            )
        conflict = False
        with catalog.transaction() as sec:  # the security administrator's request
            user = get_user(sec, "hal")  # as api/users.set_state and the CLI read it
            with catalog.transaction() as sysadm:  # the system administrator's, meanwhile
                change_state(sysadm, get_user(sysadm, "hal"), "disable")
            try:
                change_state(sec, user, "lock")
            except StateConflict:
                conflict = True
        if not conflict:
            with catalog.transaction() as s:
                change_state(s, get_user(s, "hal"), "unlock")
        with catalog.session() as s:
            state = s.query(User.state).filter(User.login == "hal").scalar()
        assert state == "disabled", f"disabled by the system administrator, now {state}"
    finally:
        catalog.dispose()


# -- the audit page's custody check: what it keeps is English, shown to Chinese readers ----


def _walk_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> Any:
    from types import SimpleNamespace

    import api.custody_check
    import web.audit_checks
    from config import Settings
    from storage.errors import ObjectNotFound
    from web.audit_checks import CustodyChecks, CustodyRun

    def unreachable(*_a: Any, **_k: Any) -> Any:
        raise ObjectNotFound("s3://evidence", "anchors/heads.json")

    monkeypatch.setattr(
        api.custody_check if where == "store" else web.audit_checks,
        "store_heads" if where == "store" else "trusted_keys",
        unreachable,
    )
    ctx = SimpleNamespace(
        settings=Settings(data_dir=tmp_path / "data"),
        store=SimpleNamespace(url="s3://evidence"),
        signer=None,
    )
    checks = CustodyChecks(ctx)  # type: ignore[arg-type]
    run = CustodyRun(actor="auditor", stations=[])
    checks._check(run, _HeldStub())  # as the button's thread runs it
    return checks


class _HeldStub:
    def release(self, **_k: Any) -> None:
        pass


@pytest.mark.parametrize("where", ["store", "error"])
def test_a_custody_checks_kept_problems_read_in_chinese(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The check runs in English and keeps what it found for readers of either language.
    An unreachable store (``reached.unreachable``: text made by _() in English) and a
    LiuhenError (``exc.message`` is already plain text, so ``isinstance(exc.message,
    Msg)`` is never true: ``exc.kept`` holds the Msg) are kept as English strings and
    shown so on the Chinese page."""
    from config.i18n import language_for

    checks = _walk_failing(tmp_path, monkeypatch, where)
    with language_for("zh"):
        run = checks.run
        assert run is not None
        said = run.general if where == "store" else [run.error or ""]
    assert said and all("not found" not in s for s in said), said
    assert any("未找到对象" in s for s in said), said
