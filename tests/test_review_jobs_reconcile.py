"""Review reproductions (h/review): the catalog reconciled from a GET of an interrupted
export job (api/jobs.py ``_reconcile_catalog``) must leave alone an export that this
very server process is running in its export thread.

``archive_export.export._gone`` counts an export recorded with the caller's own pid as
gone ("our own pid, reused"): true where only the export thread reconciled (before its
own export), not on a request thread of a process whose export thread is exporting.
"""

from __future__ import annotations

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
