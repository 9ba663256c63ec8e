"""Review reproductions (h/review): the catalog reconciled from a GET of an interrupted
export job (api/jobs.py ``_reconcile_catalog``) must leave alone an export that this
very server process is running in its export thread.

``archive_export.export._gone`` counts an export recorded with the caller's own pid as
gone ("our own pid, reused"): true where only the export thread reconciled (before its
own export), not on a request thread of a process whose export thread is exporting.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from typing import Any

import pytest
from sqlalchemy import select

import archive_export.export as export_module
from api.jobs import ExportJob
from catalog.models import CustodyEvent, Export
from tests.api_helpers import client, served, session_secret
from tests.test_serve_workers import NUMBER, UNIT, _case_with_a_recording, _finished, _wait


def test_looking_at_an_interrupted_job_leaves_the_running_export_of_this_process_alone(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _case_with_a_recording(app)
    # The running export is held just before it is recorded DONE (its row RUNNING, with
    # this process's pid, its bag written as <name>.partial).
    reached, release = threading.Event(), threading.Event()
    real_check = export_module._check_finals_free

    def held(writers: Any) -> None:
        reached.set()
        release.wait(120)
        real_check(writers)

    monkeypatch.setattr(export_module, "_check_finals_free", held)
    secret = session_secret(app, "archivist", UNIT, name="xu")
    with served(app.settings) as base, client(base, Authorization=f"Bearer {secret}") as http:
        job = http.post("/api/v1/exports", json={"cases": [NUMBER]}).json()
        try:
            _wait("the export is writing", reached.is_set, 120)
            # A job an earlier, killed server process left running (nobody holds its lock).
            folder = app.settings.data_dir / "exports" / "api"
            old_id = "ab" * 16
            old = ExportJob(old_id, {"cases": [NUMBER]}, "li", folder / f"{old_id}.tar")
            old.state = "running"
            old.save()
            # Anyone looking at the job list settles it (and, since 3b9f12a, the catalog).
            looked = http.get(f"/api/v1/exports/jobs/{old_id}").json()
            assert looked["state"] == "failed"
            with app.catalog.session() as s:
                (row,) = s.scalars(select(Export)).all()
                after_look = row.state
        finally:
            release.set()
        done = _finished(http, job["id"])
    with app.catalog.session() as s:
        trail = [
            e.action
            for e in s.scalars(select(CustodyEvent).order_by(CustodyEvent.id))
            if e.object_type == "export"
        ]
    # The export this process was running is untouched by the look, ends done, and its
    # custody trail says it once: started, then finished.
    assert (after_look, done["state"], trail) == (
        "RUNNING",
        "done",
        ["access.export", "export-started", "export-finished"],
    ), (after_look, done, trail)


def _dead_job_and_dead_cli_export(app: Any) -> str:
    """xu's job left running by a killed server process, and wang's `liuhen export` on
    this station, killed outright (its row RUNNING, its process gone); the job's id."""
    folder = app.settings.data_dir / "exports" / "api"
    folder.mkdir(parents=True)
    job_id = "ab" * 16
    ExportJob(job_id, {"cases": [NUMBER]}, "xu", folder / f"{job_id}.tar", "running").save()
    dead = subprocess.Popen(["true"])
    dead.wait()
    process = {"host": socket.gethostname(), "pid": dead.pid, "start": None}
    with app.catalog.transaction() as s:
        s.add(
            Export(
                uid="c" * 32,
                actor="wang",
                out_path=str(app.settings.data_dir / "wang.tar"),
                scope={"cases": [NUMBER]},
                state="RUNNING",
                bags={"planned": ["wang.tar"], "process": process},
            )
        )
    return job_id


def _failed_events(app: Any) -> list[tuple[str, str]]:
    with app.catalog.session() as s:
        failed = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "export-failed"))
        return [(e.object_id, e.actor) for e in failed]


def test_looking_at_a_job_puts_no_other_persons_export_failure_in_its_starters_name(
    app: Any,
) -> None:
    """The GET reconciles every export of this host whose process is gone, each with an
    ``export-failed`` event in the name of the looked-at job's starter: wang's CLI
    export is recorded as failed by xu, who neither ran it nor touched it."""
    job_id = _dead_job_and_dead_cli_export(app)
    secret = session_secret(app, "archivist", UNIT, name="xu")
    with served(app.settings) as base, client(base, Authorization=f"Bearer {secret}") as http:
        assert http.get(f"/api/v1/exports/jobs/{job_id}").json()["state"] == "failed"
    assert [who for uid, who in _failed_events(app) if uid == "c" * 32] in ([], ["wang"])


def test_a_refused_look_at_a_job_writes_nothing_to_the_custody_trail(app: Any) -> None:
    """A reader refused the job (403: the job's case is not theirs) still has the catalog
    reconciled, with custody events, by that refused request (jobs.get settles before
    api/ops.py _own_job authorizes)."""
    job_id = _dead_job_and_dead_cli_export(app)
    reader = session_secret(app, "archivist", UNIT, name="zhao")
    with served(app.settings) as base, client(base, Authorization=f"Bearer {reader}") as http:
        looked = http.get(f"/api/v1/exports/jobs/{job_id}")
    assert looked.status_code == 403
    assert _failed_events(app) == []
