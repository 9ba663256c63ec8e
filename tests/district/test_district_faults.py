"""Focused district faults, on real processes against a private PostgreSQL and an S3 server:

* a worker SIGKILLed mid-item: the item is taken over once its lease lapses, by another
  worker, and completed exactly once (one derivative and one custody event per kind);
* PostgreSQL down for 10 s while recorders dock: stations keep offloading into staging
  (the station journal) and everything lands in the catalog when it is back.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from sqlalchemy import select

from archive_export.district_check import CheckOptions, DistrictReport, check_district
from catalog import Catalog
from catalog.models import CustodyEvent, Derivative, Recording, WorkItem
from config.settings import StoreSettings
from ingest import journal as J
from ingest.journal import Journal
from ingest.synthetic import DeviceInfo, make_recorder
from tests.district.simulation import (
    Feeder,
    Officer,
    Simulation,
    Supervisor,
    render_templates,
)

pytestmark = [
    pytest.mark.district,
    pytest.mark.slow,
    pytest.mark.fault,
    pytest.mark.s3,
    pytest.mark.postgres,
    pytest.mark.timeout(600),
]


def wait_for(what: str, condition: Any, timeout: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def check(sim: Simulation, session: Any, bucket: str, expected: set[str]) -> DistrictReport:
    from storage.s3 import S3Store

    assert sim.pg is not None and sim.s3 is not None
    cat = Catalog(sim.pg.url)
    store = S3Store(
        bucket, "", StoreSettings(url=f"s3://{bucket}", endpoint_url=sim.s3.url), session=session
    )
    try:
        return check_district(cat, store, CheckOptions(expected_sha256=frozenset(expected)))
    finally:
        cat.dispose()


def failure_text(sim: Simulation, report: DistrictReport | None = None) -> str:
    lines = [v.describe() for v in report.violations] if report else []
    return "\n".join(lines) + "\n" + sim.result.log_tails()


@pytest.mark.parametrize("district", [{"stations": 1, "workers": 2, "lease_s": 4.0}], indirect=True)
def test_killed_worker_item_is_taken_over_after_its_lease_and_done_once(
    district: Simulation,
) -> None:
    sim = district
    session, bucket = sim.setup()
    station, worker_a, worker_b = sim.procs
    # Slow encodes, so that the kill lands while ffmpeg works on the item.
    for w in (worker_a, worker_b):
        w.env = w.env | {"LIUHEN_MEDIA_PRESET": "veryslow"}
    recorder = make_recorder(
        sim.root / "prep" / "HEVC0001",
        h264=0,
        h265=1,
        wav=0,
        jpeg=0,
        truncated=0,
        segments=0,
        duration_s=10.0,
        size=(320, 240),
        device=DeviceInfo(
            serial="KILLW01",
            officer_number="700001",
            officer_name="警员",
            unit_number="310104000000",
            unit_name="模拟分局",
            model="DSJ-SIM",
        ),
    )
    expected = {f.sha256 for f in recorder.files}
    station.start()
    os.rename(recorder.root, sim.docks[0] / recorder.root.name)
    assert sim.pg is not None
    cat = Catalog(sim.pg.url)
    try:

        def hevc_id() -> int | None:
            with cat.session() as s:
                return s.scalar(select(Recording.id).where(Recording.original_name.like("%.MP4")))

        rec_id = wait_for("the HEVC recording in the catalog", hevc_id, 60)
        worker_a.start()
        assert worker_a.proc is not None
        pid_a = worker_a.proc.pid

        def derive_claimed_by_a() -> WorkItem | None:
            with cat.session() as s:
                item = s.scalars(
                    select(WorkItem).where(
                        # the access copy: its own item (veryslow), since each
                        # derivative is one
                        WorkItem.kind == "derive:access",
                        WorkItem.subject == str(rec_id),
                    )
                ).first()
            if (
                item is not None
                and item.state == "CLAIMED"
                and f":{pid_a}:" in (item.lease_owner or "")
            ):
                return item
            return None

        claimed = wait_for("worker A to claim the derive item", derive_claimed_by_a, 90, 0.05)
        time.sleep(0.5)  # ffmpeg is running now (veryslow access copy)
        worker_a.kill(restart_after=0)
        # Killed mid-item: the item is still A's, not done.
        assert derive_claimed_by_a() is not None, "worker A finished the item before the kill"
        lease_end = claimed.lease_expires_at
        assert lease_end is not None
        worker_b.start()

        # Until A's lease lapses nobody takes the item; then B does, and finishes it.
        def owner() -> tuple[str, str | None, int]:
            with cat.session() as s:
                item = s.get(WorkItem, claimed.id)
                assert item is not None
                return item.state, item.lease_owner, item.attempts

        while time.time() < lease_end.timestamp() - 0.5:
            state, lease_owner, _ = owner()
            assert state == "CLAIMED" and f":{pid_a}:" in (lease_owner or ""), (state, lease_owner)
            time.sleep(0.2)
        wait_for("worker B to complete the item", lambda: owner()[0] == "DONE", 240, 0.5)
        state, _, attempts = owner()
        assert attempts == 2, "claimed once by A and once by B, never more"
        with cat.session() as s:
            kinds = [
                d.kind
                for d in s.scalars(select(Derivative).where(Derivative.recording_id == rec_id))
            ]
            events = [
                json.loads(e.details).get("kind")
                for e in s.scalars(select(CustodyEvent).where(CustodyEvent.action == "derived"))
            ]
            rec = s.get(Recording, rec_id)
            assert rec is not None
            probed = s.scalars(
                select(CustodyEvent).where(
                    CustodyEvent.action == "probed", CustodyEvent.object_id == rec.sha256
                )
            ).all()
        assert sorted(kinds) == sorted(set(kinds)) and "access" in kinds, kinds
        assert sorted(events) == sorted(kinds), (events, kinds)
        assert len(probed) == 1
        # Every item done; then the whole district verifies.
        wait_for(
            "the queue to empty", lambda: all(i.state == "DONE" for i in _items(cat)), 120, 0.5
        )
    finally:
        cat.dispose()
        sim.shutdown()
    report = check(sim, session, bucket, expected)
    assert report.ok, failure_text(sim, report)


def _items(cat: Catalog) -> list[WorkItem]:
    with cat.session() as s:
        return list(s.scalars(select(WorkItem)))


@pytest.mark.parametrize("district", [{"stations": 2, "workers": 0}], indirect=True)
def test_postgres_down_10s_stations_stage_then_catch_up(district: Simulation) -> None:
    sim = district
    session, bucket = sim.setup()
    templates = render_templates(sim.root / "templates")
    feeder = Feeder(sim.cfg, sim.rng, templates, sim.docks, sim.root / "prep")
    sim.feeder = feeder
    supervisor = Supervisor(sim.procs, sim.result)
    sim.supervisor = supervisor
    for p in sim.procs:
        p.start()
    supervisor.start()
    officer = Officer(feeder, sim.journals)
    officer.start()
    try:
        # One docking per station while all is well: the stations are up and working.
        for st in range(sim.cfg.stations):
            feeder.dock(st)
        wait_for(
            "the first dockings to be safe to clear",
            lambda: all(p.safe_at for p in feeder.placed),
            90,
        )

        sim.pg_down()
        down_at = time.monotonic()
        docked = [feeder.dock(st % sim.cfg.stations) for st in range(6)]
        during = [p for p in docked if p is not None]
        assert len(during) == len(docked)

        def staged_everywhere() -> bool:
            for station, path in enumerate(sim.journals):
                mine = [p for p in during if p.station == station]
                j = Journal(path)
                try:
                    by_path = {d.source_path: d for d in j.dockings()}
                    for p in mine:
                        d = by_path.get(str(p.path))
                        if d is None:
                            return False
                        files = j.files(d.uid)
                        if len(files) != p.files or any(f.state != J.STAGED for f in files):
                            return False
                finally:
                    j.close()
            return True

        # The stations copy every file off the recorders into staging meanwhile.
        wait_for("every file of the new dockings to be staged", staged_everywhere, 9.0)
        time.sleep(max(0.0, 10.0 - (time.monotonic() - down_at)))
        assert staged_everywhere(), "staged files changed state while the catalog was down"
        for station, path in enumerate(sim.journals):
            j = Journal(path)
            try:
                waiting = [d for d in j.dockings() if d.state == J.OFFLOADING]
                assert waiting and all(d.waiting for d in waiting), (
                    f"station {station}: the wait for the catalog is not shown"
                )
            finally:
                j.close()
        assert not any(p.safe_at for p in during), "safe to clear without the catalog"
        assert all(p.alive() for p in sim.procs), "a station died while the catalog was down"
        sim.pg_up()

        wait_for(
            "every docking to be safe to clear after the outage",
            lambda: all(p.safe_at for p in feeder.placed),
            120,
        )
        assert not sim.result.unplanned_exits, sim.result.unplanned_exits
    except BaseException:
        print(failure_text(sim))
        raise
    finally:
        officer.stopping.set()
        officer.join(timeout=5)
        sim.shutdown()
    sim._check_staging()
    assert not sim.result.problems, sim.result.problems
    report = check(sim, session, bucket, feeder.expected)
    assert report.ok, failure_text(sim, report)
    assert report.counts["dockings"] == len(feeder.placed) == 8
