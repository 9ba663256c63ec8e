"""A probe and the completion of its work item are one transaction, so a worker killed
between them cannot leave the item to be claimed and the recording probed again; and a
worker whose lease was taken over records nothing (the new holder does the work)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from catalog import queue
from catalog.models import CustodyEvent, Recording, WorkItem
from ingest.synthetic import make_recorder
from ingest.worker import LeaseLost, Worker
from tests.offload_helpers import make_app


def setup(tmp_path: Path, catalog_url: str) -> tuple[Worker, int, int, str]:
    rec = make_recorder(
        tmp_path / "dock" / "A123456",
        h264=1,
        h265=0,
        wav=0,
        jpeg=0,
        truncated=0,
        segments=0,
        duration_s=1.0,
    )
    app = make_app(tmp_path / "data", catalog_url=catalog_url)
    station = app.station()
    try:
        assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    finally:
        station.close()
    worker = Worker(
        app.settings, catalog=app.catalog, store=app.store, signer=app.signer, owner="host:1:a"
    )
    with app.catalog.session() as s:
        video = s.scalars(select(Recording).where(Recording.original_name.like("%.MP4"))).one()
        item = s.scalars(
            select(WorkItem).where(WorkItem.kind == "probe", WorkItem.subject == str(video.id))
        ).one()
        return worker, video.id, item.id, video.sha256


def probed_events(worker: Worker, sha256: str) -> int:
    with worker.catalog.session() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(CustodyEvent)
                .where(CustodyEvent.action == "probed", CustodyEvent.object_id == sha256)
            )
            or 0
        )


def claim_as(worker: Worker, item_id: int, owner: str) -> None:
    with worker.catalog.transaction() as s:
        item = s.get(WorkItem, item_id)
        assert item is not None
        item.state, item.lease_owner = queue.CLAIMED, owner
        item.lease_expires_at = item.not_before + timedelta(hours=1)


def test_probe_completes_its_item_in_the_same_transaction(
    tmp_path: Path,
    catalog_url: str,
) -> None:
    worker, rec_id, item_id, sha = setup(tmp_path, catalog_url)
    claim_as(worker, item_id, worker.owner)
    assert worker.probe_recording(rec_id, item_id=item_id) is True
    with worker.catalog.session() as s:
        item = s.get(WorkItem, item_id)
        rec = s.get(Recording, rec_id)
        assert item is not None and rec is not None
        assert (item.state, rec.state) == (queue.DONE, "PROBED")
    assert probed_events(worker, sha) == 1
    # The item is not there to claim, so no other worker probes the recording again
    # (only the device file's probe item is left).
    with worker.catalog.transaction() as s:
        claimed = queue.claim(s, ["probe"], "host:2:b", limit=10)
        assert item_id not in [i.id for i in claimed] and len(claimed) == 1


def test_a_lease_taken_over_rolls_the_probe_back(tmp_path: Path, catalog_url: str) -> None:
    worker, rec_id, item_id, sha = setup(tmp_path, catalog_url)
    claim_as(worker, item_id, "host:2:b")  # our lease lapsed and B holds it now
    try:
        worker.probe_recording(rec_id, item_id=item_id)
    except LeaseLost as exc:
        assert str(item_id) in str(exc)
    else:
        raise AssertionError("probe recorded under a lease another worker holds")
    with worker.catalog.session() as s:
        item = s.get(WorkItem, item_id)
        rec = s.get(Recording, rec_id)
        assert item is not None and rec is not None
        assert (item.state, item.lease_owner, rec.state) == (queue.CLAIMED, "host:2:b", "STORED")
    assert probed_events(worker, sha) == 0
