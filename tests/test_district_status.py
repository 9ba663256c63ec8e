"""`liuhen district status` on SQLite and PostgreSQL: real docked recordings, live, lost
and stopped processes, a stuck item (lease expired), an item whose owner is gone, a
failed item, storage used and recordings due for expiry; the JSON shape."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from catalog import queue
from catalog.district_status import district_status
from catalog.heartbeat import beat, make_process_id, mark_stopped
from catalog.models import Derivative, Recording, WorkItem, utcnow
from ingest.synthetic import make_recorder
from tests.cli_helpers import run_cli
from tests.offload_helpers import make_app


def _setup(tmp_path: Path, catalog_url: str) -> tuple[Any, dict[str, Any]]:
    app = make_app(tmp_path / "data", catalog_url=catalog_url)
    rec = make_recorder(
        tmp_path / "dock" / "A123456", h264=1, h265=0, wav=1, jpeg=2, truncated=0, segments=0
    )
    station = app.station()
    assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    station.close()
    now = utcnow()
    facts: dict[str, Any] = {"files": sum(1 for p in rec.root.rglob("*") if p.is_file())}
    with app.catalog.transaction() as s:
        recs = list(s.scalars(select(Recording).order_by(Recording.id)))
        facts["bytes"] = sum(r.size for r in recs)
        facts["recordings"] = len(recs)
        # A live worker, a worker that went silent (lost), and one that stopped cleanly.
        for host, pid, seen, interval in (
            ("w-live", 11, now, 30.0),
            ("w-lost", 12, now - timedelta(minutes=10), 30.0),
            ("w-gone", 13, now - timedelta(minutes=5), 30.0),
        ):
            beat(
                s,
                process_id=make_process_id("worker", host, pid),
                role="worker",
                station_id="station-01",
                host=host,
                pid=pid,
                started_at=now - timedelta(hours=1),
                interval_s=interval,
                details={"lease_owner": f"{host}:{pid}:abc"},
                now=seen,
            )
        mark_stopped(s, make_process_id("worker", "w-gone", 13))
        beat(
            s,
            process_id=make_process_id("station", "st-host", 7),
            role="station",
            station_id="station-01",
            host="st-host",
            pid=7,
            started_at=now,
            interval_s=30.0,
            details={"files_staged": 0},
            now=now,
        )
        # The docking queued one probe per recording. Claim four of them:
        items = list(
            s.scalars(select(WorkItem).where(WorkItem.kind == "probe").order_by(WorkItem.id))
        )
        assert len(items) == len(recs) >= 4
        # 1. claimed by the live worker, lease valid: progressing, not stuck;
        (live,) = queue.claim(s, ["probe"], "w-live:11:abc", lease=timedelta(minutes=10))
        # 2. claimed by the lost worker, lease lapsed: stuck;
        (expired,) = queue.claim(s, ["probe"], "w-lost:12:abc", lease=timedelta(minutes=10))
        # 3. claimed with a valid lease by an owner nobody hears from: stuck;
        (orphan,) = queue.claim(s, ["probe"], "w-none:99:abc", lease=timedelta(minutes=10))
        # 4. failed for good, with its error.
        (failed,) = queue.claim(s, ["probe"], "w-live:11:abc")
        queue.fail(
            s,
            failed.id,
            "w-live:11:abc",
            "FfprobeError: ffprobe could not read the file\nmoov atom not found",
            failure=queue.DETERMINISTIC,
        )
        # (lapsed after the other claims, which would otherwise take it over)
        expired.lease_expires_at = now - timedelta(minutes=1)
        facts.update(live=live.id, expired=expired.id, orphan=orphan.id, failed=failed.id)
        # Expiry by the retention rules (183 days from the later of capture and receipt
        # when attached to no case): one long past, one due in about two weeks.
        # (probed: before the probe the capture time is unchecked and the receipt counts)
        recs[0].captured_at = recs[0].received_at = now - timedelta(days=400)
        recs[1].captured_at = recs[1].received_at = now - timedelta(days=170)
        recs[0].state = recs[1].state = "PROBED"
        facts["due_bytes"] = recs[0].size
        facts["soon_bytes"] = recs[1].size
        # A derivative counts in storage used.
        s.add(
            Derivative(
                recording_id=recs[2].id,
                kind="poster",
                sha256="ab" * 32,
                sm3="cd" * 32,
                size=12345,
                object_key="sha256/ab/ab/" + "ab" * 32,
            )
        )
    return app, facts


def test_district_status_from_a_real_catalog(
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, facts = _setup(tmp_path, catalog_url)
    with app.catalog.session() as s:
        status = district_status(s, retention=app.settings.retention)
    assert set(status) == {
        "generated_at",
        "stations",
        "workers",
        "processes",
        "queue",
        "stuck",
        "failures",
        "storage",
        "expiry",
    }
    (station,) = status["stations"]
    assert station["id"] == "station-01" and station["alive"] is True
    assert station["last_docking"]["state"] == "SAFE_TO_CLEAR"
    assert station["last_docking"]["files"] == facts["files"]
    assert station["dockings"] == {"SAFE_TO_CLEAR": 1}
    assert station["keys"] == {"total": 1, "active": 1}
    workers = {w["host"]: w for w in status["workers"]}
    assert {h: w["status"] for h, w in workers.items()} == {
        "w-live": "alive",
        "w-lost": "lost",
        "w-gone": "stopped",
    }
    assert len(status["processes"]) == 4
    probe = status["queue"]["probe"]
    assert probe == {"PENDING": facts["recordings"] - 4, "CLAIMED": 3, "FAILED": 1}
    stuck = {i["id"]: i for i in status["stuck"]["items"]}
    assert status["stuck"]["count"] == 2 and set(stuck) == {facts["expired"], facts["orphan"]}
    assert "lease expired" in stuck[facts["expired"]]["reason"]
    assert "no live heartbeat" in stuck[facts["orphan"]]["reason"]
    assert stuck[facts["orphan"]]["lease_owner"] == "w-none:99:abc"
    (failure,) = status["failures"]["items"]
    assert status["failures"]["count"] == 1 and failure["id"] == facts["failed"]
    assert "moov atom not found" in failure["last_error"] and failure["attempts"] == 1
    assert failure["failure"] == "deterministic"
    # ...and under its recording, named, with the reason.
    (by_rec,) = status["failures"]["by_recording"]["recordings"]
    assert status["failures"]["by_recording"]["count"] == 1
    assert by_rec["recording"] == int(failure["subject"]) and by_rec["name"]
    assert [i["id"] for i in by_rec["items"]] == [facts["failed"]]
    assert "moov atom not found" in by_rec["items"][0]["last_error"]
    assert status["failures"]["quarantined_files"]["count"] == 0
    storage = status["storage"]
    assert storage["originals_bytes"] == facts["bytes"]
    assert sum(v["count"] for v in storage["recordings"].values()) == facts["recordings"]
    assert storage["derivatives"] == {"poster": {"count": 1, "bytes": 12345}}
    assert storage["total_bytes"] == facts["bytes"] + 12345
    expiry = status["expiry"]
    assert expiry["source"] == "retention rules"
    assert expiry["due"] == {"count": 1, "bytes": facts["due_bytes"]}
    assert expiry["due_soon"] == {"count": 1, "bytes": facts["soon_bytes"]}

    # The command: the same picture as JSON, and a readable one.
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    result = run_cli(capsys, "district", "status", "--json")
    assert result.code == 0, result.err
    shown = json.loads(result.out)
    assert shown["stuck"]["count"] == 2 and shown["queue"]["probe"]["FAILED"] == 1
    assert shown["expiry"]["due"]["count"] == 1
    text = run_cli(capsys, "district", "status")
    assert text.code == 0, text.err
    for needle in (
        "station-01",
        "2 stuck item(s)",
        "1 failed item(s)",
        f"recording {failure['subject']} ",
        "probe (deterministic) after 1 attempt(s)",
        "moov atom not found",
        "lost",
        "1 recording(s) due now",
    ):
        assert needle in text.out, needle
    app.close()


def test_expiry_without_a_policy_reads_retain_until(tmp_path: Path, catalog_url: str) -> None:
    app, _facts = _setup(tmp_path, catalog_url)
    now = utcnow()
    with app.catalog.transaction() as s:
        recs = list(s.scalars(select(Recording).order_by(Recording.id)))
        recs[0].retain_until = now - timedelta(days=1)
        recs[1].retain_until = now + timedelta(days=5)
        recs[2].retain_until = now + timedelta(days=90)
        sizes = (recs[0].size, recs[1].size)
    with app.catalog.session() as s:
        expiry = district_status(s)["expiry"]
        n = s.scalar(select(func.count()).select_from(Recording))
    assert expiry["source"] == "recordings.retain_until"
    assert expiry["due"] == {"count": 1, "bytes": sizes[0]}
    assert expiry["due_soon"] == {"count": 1, "bytes": sizes[1]}
    assert n is not None and n >= 4
    app.close()
