"""The minimum keep period runs from the later of capture and receipt; a recording restored
after its expiry counts from its new receipt; and `liuhen verify --district` is clean after
ordinary sweeps and restores, while a real loss is still reported."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalog.models import Derivative, FixityCheck, Recording, Tombstone
from catalog.retention import sweep
from ingest.synthetic import DEFAULT_DEVICE, make_recorder
from ingest.worker import Worker
from tests.case_helpers import make_recording
from tests.cli_helpers import run_cli
from tests.offload_helpers import make_app

DAYS = 183


def test_a_recorder_docked_months_late_is_kept_from_its_receipt(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Recorded 200 days ago, docked today: nothing is due on arrival; the minimum keep
    runs 183 days from today, and explain says from what."""
    now = datetime.now(UTC)
    captured = now - timedelta(days=DAYS + 17)
    rec_id = make_recording(app, start=captured, received=now - timedelta(minutes=5))
    with app.catalog.session() as s:
        key = s.get_one(Recording, rec_id).object_key
    r = run_cli(capsys, "retention", "sweep", "--apply", "--yes", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["due"] == [] and json.loads(r.out)["deleted"] == []
    assert app.store.exists(key)
    r = run_cli(capsys, "retention", "explain", str(rec_id), "--json")
    doc = json.loads(r.out)
    assert doc["rule"] == "unattached" and not doc["expired"]
    assert datetime.fromisoformat(doc["keep_until"]) == now - timedelta(minutes=5) + timedelta(
        days=DAYS
    )
    assert "from receipt (later than capture)" in doc["reasons"][0]
    # A recorder whose clock runs ahead: the capture is the later one, and counts.
    ahead = make_recording(app, start=now + timedelta(days=3), received=now)
    r = run_cli(capsys, "retention", "explain", str(ahead), "--json")
    assert datetime.fromisoformat(json.loads(r.out)["keep_until"]) == now + timedelta(days=3 + DAYS)


def dock(app: Any, root: Path) -> None:
    station = app.station()
    try:
        assert station.run_docking(root).state == "SAFE_TO_CLEAR"
    finally:
        station.close()
    stats = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer).run(
        drain=True, idle_s=0.1
    )
    assert stats.failed == 0, stats.errors


def test_district_is_clean_after_sweeps_and_restores_and_a_real_loss_is_named(
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two recorders docked and derived; half a year on, a sweep expires everything; one
    recorder (never cleared) is docked again: its recordings are restored, derived anew,
    counted from the new receipt (tonight's sweep deletes nothing) and audited by `verify
    --store`. Half a year later they expire again (a second tombstone each), and are
    docked a third time. After each step `verify --district` finds no violation: expired
    objects are gone as they should be, restored recordings stored, probed and derived
    once per life. Then a live recording's object is lost behind the catalog's back: that
    is named."""
    old = datetime.now(UTC) - timedelta(days=2 * DAYS)
    restored = make_recorder(
        tmp_path / "dock" / "A123456",
        h264=1,
        h265=0,
        wav=0,
        jpeg=1,
        truncated=0,
        segments=0,
        duration_s=1.0,
        start=old,
    )
    gone = make_recorder(
        tmp_path / "dock" / "B654321",
        h264=0,
        h265=0,
        wav=1,
        jpeg=1,
        truncated=0,
        segments=0,
        duration_s=1.0,
        start=old,
        seed=7,
        device=replace(DEFAULT_DEVICE, serial="B654321", officer_number="040506"),
    )
    app = make_app(tmp_path / "data", catalog_url=catalog_url)
    data = ["--data-dir", str(tmp_path / "data")]
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)

    def district_clean() -> None:
        r = run_cli(capsys, *data, "verify", "--district", "--json")
        assert r.code == 0, r.out + r.err
        assert json.loads(r.out)["violations"] == []

    def states() -> list[str]:
        with app.catalog.session() as s:
            return sorted(r.state for r in s.scalars(select(Recording)))

    dock(app, restored.root)
    dock(app, gone.root)
    district_clean()
    later = datetime.now(UTC) + timedelta(days=DAYS + 1)
    first = sweep(
        app.catalog,
        app.signer,
        app.store,
        app.settings.retention,
        actor="sweeper",
        apply=True,
        now=later,
    )
    assert len(first.deleted) == len(restored.files) + len(gone.files) and not first.refused
    district_clean()

    dock(app, restored.root)
    tonight = sweep(
        app.catalog, app.signer, app.store, app.settings.retention, actor="sweeper", apply=True
    )
    assert tonight.due == [] and tonight.deleted == []
    assert states() == sorted(["DERIVED"] * len(restored.files) + ["EXPIRED"] * len(gone.files))
    with app.catalog.session() as s:
        live = {
            r.id: r.object_key
            for r in s.scalars(select(Recording).where(Recording.state != "EXPIRED"))
        }
        for r in s.scalars(select(Recording).where(Recording.state == "EXPIRED")):
            assert not app.store.exists(r.object_key)
    for key in live.values():
        assert app.store.exists(key)
    r = run_cli(capsys, *data, "verify", "--store", "--all", "--json")
    assert r.code == 0, r.out + r.err
    with app.catalog.session() as s:  # the restored recordings were audited too
        audited = {c.recording_id for c in s.scalars(select(FixityCheck))}
    assert set(live) <= audited
    district_clean()

    # Expired a second time (its new half year has run out): a second tombstone.
    again = sweep(
        app.catalog,
        app.signer,
        app.store,
        app.settings.retention,
        actor="sweeper",
        apply=True,
        now=later + timedelta(days=1),
    )
    assert sorted(d["recording"] for d in again.deleted) == sorted(live) and not again.refused
    with app.catalog.session() as s:
        for rec_id in live:
            assert (
                len(s.scalars(select(Tombstone).where(Tombstone.recording_id == rec_id)).all()) == 2
            )
    district_clean()
    dock(app, restored.root)  # and docked a third time
    district_clean()

    # A real loss: a restored recording's derivative disappears. (Not a JPEG's access
    # copy: that is the photo's own bytes, under the original's key, so its loss is
    # the original's too and both are named.)
    with app.catalog.session() as s:
        derivative = s.scalars(
            select(Derivative)
            .where(
                Derivative.recording_id.in_(list(live)),
                Derivative.object_key.not_in(select(Recording.object_key)),
            )
            .order_by(Derivative.id)
        ).first()
        assert derivative is not None
    app.store.delete(derivative.object_key)
    bad = run_cli(capsys, *data, "verify", "--district", "--json")
    assert bad.code == 1
    found = json.loads(bad.out)["violations"]
    assert [(v["kind"], derivative.object_key in v["detail"]) for v in found] == [
        ("object-missing", True)
    ], found
    app.close()
