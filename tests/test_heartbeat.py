"""Heartbeats: rows in the catalog (SQLite and PostgreSQL), alive/lost/stopped, and a
station that goes on offloading while the catalog is down and its heartbeats fail."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from catalog import Catalog
from catalog.heartbeat import (
    ALIVE,
    LOST,
    STOPPED,
    Heartbeater,
    beat,
    make_process_id,
    mark_stopped,
    status_of,
)
from catalog.models import Heartbeat, utcnow
from ingest import journal as J
from ingest.service import watch
from ingest.synthetic import make_recorder
from tests.fixtures.s3server import TcpProxy, free_closed_port
from tests.offload_helpers import make_app


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_beat_upserts_and_status_follows_the_interval(catalog: Catalog) -> None:
    start = utcnow()
    pid = make_process_id("worker", "host-a", 42)
    assert pid == "host-a:42:worker"
    with catalog.transaction() as s:
        beat(
            s,
            process_id=pid,
            role="worker",
            station_id="w-01",
            host="host-a",
            pid=42,
            started_at=start,
            interval_s=10,
            details={"items_done": 1},
            now=start,
        )
    with catalog.transaction() as s:
        beat(
            s,
            process_id=pid,
            role="worker",
            station_id="w-01",
            host="host-a",
            pid=42,
            started_at=start,
            interval_s=10,
            details={"items_done": 5},
            now=start + timedelta(seconds=10),
        )
    with catalog.session() as s:
        (row,) = s.scalars(select(Heartbeat)).all()
        assert row.details == {"items_done": 5, "interval_s": 10.0}
        assert row.last_seen == start + timedelta(seconds=10)
        # Alive within 3 intervals of the last beat, lost after.
        assert status_of(row, start + timedelta(seconds=39)) == ALIVE
        assert status_of(row, start + timedelta(seconds=41)) == LOST
    with catalog.transaction() as s:
        assert mark_stopped(s, pid)
        assert not mark_stopped(s, "elsewhere:1:worker")
    with catalog.session() as s:
        stopped = s.get(Heartbeat, pid)
        assert stopped is not None and stopped.state == "stopped"
        assert status_of(stopped, start + timedelta(days=1)) == STOPPED


def test_heartbeater_beats_and_marks_stopped(catalog: Catalog) -> None:
    results: list[bool] = []
    hb = Heartbeater(
        catalog,
        role="station",
        station_id="s-01",
        interval_s=0.05,
        details=lambda: {"files_staged": 0},
        on_result=results.append,
    )
    with hb:
        wait_for(lambda: results.count(True) >= 3)
        with catalog.session() as s:
            row = s.get(Heartbeat, hb.process_id)
            assert row is not None and row.state == "running"
            assert row.details["files_staged"] == 0 and row.version
    with catalog.session() as s:
        row = s.get(Heartbeat, hb.process_id)
        assert row is not None and row.state == "stopped"


def test_heartbeats_never_raise_when_the_catalog_is_unreachable(tmp_path: Path) -> None:
    down = Catalog(f"postgresql+psycopg://postgres@127.0.0.1:{free_closed_port()}/test")
    results: list[bool] = []

    def details() -> dict[str, int]:
        raise RuntimeError("details broke too")

    hb = Heartbeater(
        down,
        role="worker",
        station_id="w",
        interval_s=0.05,
        details=details,
        on_result=results.append,
    )
    with hb:
        wait_for(lambda: len(results) >= 3)
    assert not any(results) and hb.failures >= 3
    down.dispose()


@pytest.mark.postgres
@pytest.mark.fault
def test_station_offloads_while_the_catalog_is_down_and_heartbeats_fail(
    tmp_path: Path, proxied_pg: tuple[str, TcpProxy]
) -> None:
    """Cut PostgreSQL: heartbeats fail (logged, counted) and the docking goes on into
    staging; restore it: the staged files are registered, the docking becomes SAFE TO
    CLEAR and the heartbeat is alive again."""
    url, proxy = proxied_pg
    app = make_app(tmp_path / "data", catalog_url=url)
    app.settings = replace(app.settings, station=replace(app.settings.station, heartbeat_s=0.1))
    station = app.station()
    dock = tmp_path / "dock"
    dock.mkdir()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            watch(station, dock, stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for(lambda: station.metrics.catalog_up.value() == 1)
        proxy.cut()
        failures = station.metrics.heartbeat_failures.value()
        wait_for(lambda: station.metrics.heartbeat_failures.value() >= failures + 2)
        rec = make_recorder(tmp_path / "outside" / "A123456", h265=0, truncated=0, segments=0)
        n_files = sum(1 for p in rec.root.rglob("*") if p.is_file())
        rec.root.rename(dock / "A123456")

        def staged() -> int:
            return sum(
                len(station.journal.files(d.uid, (J.STAGED,))) for d in station.journal.dockings()
            )

        # Every file is read, hashed and staged although the catalog does not answer.
        wait_for(lambda: staged() == n_files)
        assert station.metrics.catalog_up.value() == 0
        assert thread.is_alive() and not errors
        proxy.restore()
        wait_for(lambda: any(d.state == J.SAFE_TO_CLEAR for d in station.journal.dockings()))

        def published() -> dict[str, int]:
            with app.catalog.session() as s:
                (row,) = s.scalars(select(Heartbeat)).all()
                assert status_of(row) in (ALIVE, LOST)
                return dict(row.details) if status_of(row) == ALIVE else {}

        wait_for(lambda: published().get("files_offloaded") == n_files)
        assert published()["files_staged"] == 0
    finally:
        proxy.restore()
        stop.set()
        thread.join(timeout=60)
        station.close()
    assert not errors, errors
    with app.catalog.session() as s:
        assert s.scalars(select(Heartbeat.state)).one() == "stopped"
    app.close()


def test_a_restart_marks_dead_processes_of_its_host_and_forgets_old_rows(
    catalog: Catalog,
) -> None:
    """A process killed without a word stays 'running' in the catalog; the next process
    on the same host sees its pid is gone and marks it died. Rows of other hosts are
    theirs to judge; rows silent for 30 days are forgotten."""
    import socket
    import subprocess
    import sys

    host = socket.gethostname()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    now = utcnow()
    rows = {
        "dead": (host, dead_pid, now - timedelta(minutes=5)),
        "parent": (host, os.getppid(), now),  # alive: left alone
        "elsewhere": ("other-host", dead_pid, now - timedelta(minutes=5)),
        "ancient": ("retired-host", 5, now - timedelta(days=31)),
    }
    with catalog.transaction() as s:
        for name, (h, pid, seen) in rows.items():
            beat(
                s,
                process_id=f"{h}:{pid}:{name}",
                role="worker",
                station_id="w",
                host=h,
                pid=pid,
                started_at=seen,
                interval_s=30,
                now=seen,
            )
    hb = Heartbeater(catalog, role="worker", station_id="w", interval_s=30)
    with hb:
        wait_for(lambda: _state(catalog, hb.process_id) == "running")
    states = {name: _state(catalog, f"{h}:{pid}:{name}") for name, (h, pid, _) in rows.items()}
    assert states == {"dead": "died", "parent": "running", "elsewhere": "running", "ancient": None}
    with catalog.session() as s:
        row = s.get(Heartbeat, f"{host}:{dead_pid}:dead")
        assert row is not None and status_of(row) == "died" and row.details["found_dead_at"]


def _state(catalog: Catalog, process_id: str) -> str | None:
    with catalog.session() as s:
        row = s.get(Heartbeat, process_id)
        return row.state if row is not None else None
