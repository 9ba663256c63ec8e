"""The district invariant checker finds each kind of violation and names the object.

A real docking (station, store, catalog on SQLite and PostgreSQL) and a real worker run
make a consistent district; it verifies clean, through the library and through `liuhen
verify --district`. Then each invariant is broken behind the pipeline's back, and the
checker must report it, naming the docking, recording, object key or work item.
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from archive_export.district_check import CheckOptions, check_district
from catalog.custody import append_event
from catalog.models import CustodyEvent, Derivative, Docking, Recording, WorkItem, utcnow
from ingest.synthetic import make_recorder
from ingest.worker import Worker
from storage import LocalStore, content_key, digest_bytes
from tests.cli_helpers import run_cli
from tests.offload_helpers import make_app


def district(tmp_path: Path, catalog_url: str) -> tuple[Any, set[str]]:
    rec = make_recorder(
        tmp_path / "dock" / "A123456",
        h264=1,
        h265=0,
        wav=0,
        jpeg=1,
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
    stats = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer).run(
        drain=True, idle_s=0.1
    )
    assert stats.failed == 0, stats.errors
    return app, {f.sha256 for f in rec.files}


def kinds(report: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for v in report.violations:
        found.setdefault(v.kind, []).append(f"{v.object} {v.detail}")
    return found


def test_clean_district_verifies_and_every_broken_invariant_is_named(
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, expected = district(tmp_path, catalog_url)
    store = app.store
    assert isinstance(store, LocalStore)
    report = check_district(app.catalog, store, CheckOptions(expected_sha256=frozenset(expected)))
    assert report.ok, [v.describe() for v in report.violations]
    assert report.counts["recordings"] == len(expected)
    assert report.counts["derivatives"] >= 3  # access copy, proxy, poster of the video
    assert (
        report.counts["objects_rehashed"]
        == report.counts["recordings"] + report.counts["derivatives"]
    )

    data = ["--data-dir", str(tmp_path / "data")]
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)  # the CLI reads the same catalog
    ok = run_cli(capsys, *data, "verify", "--district")
    assert ok.code == 0, ok.out + ok.err
    assert "district invariants hold" in ok.out

    with app.catalog.session() as s:
        video = s.scalars(select(Recording).where(Recording.media_kind == "video")).one()
        photo = s.scalars(select(Recording).where(Recording.media_kind == "image")).one()
        derivs = list(
            s.scalars(
                select(Derivative)
                .where(Derivative.recording_id == video.id)
                .order_by(Derivative.id)
            )
        )
        docking = s.scalars(select(Docking)).one()
    # An object nobody names.
    stray = b"not evidence"
    stray_key = content_key(digest_bytes(stray))
    store.put(stray_key, io.BytesIO(stray), expected=digest_bytes(stray))
    # A derivative's object gone, and an original's bytes changed (same size).
    (store.root / derivs[0].object_key).unlink()
    photo_path = store.root / photo.object_key
    photo_path.chmod(0o644)
    data_bytes = bytearray(photo_path.read_bytes())
    data_bytes[-1] ^= 0xFF
    photo_path.write_bytes(bytes(data_bytes))
    with app.catalog.transaction() as s:
        # A work item claimed by a worker that died an hour ago, never taken over.
        s.execute(
            update(WorkItem)
            .where(WorkItem.kind == "derive", WorkItem.subject == str(video.id))
            .values(
                state="CLAIMED",
                lease_owner="host:999999:dead",
                lease_expires_at=utcnow() - timedelta(hours=1),
            )
        )
        # The same derivative made twice to completion (a second, validly signed
        # 'derived' event: the derivatives table itself refuses a second row).
        twin = derivs[1]
        append_event(
            s,
            app.signer,
            actor="worker:test",
            action="derived",
            object_type="derivative",
            object_id=twin.sha256,
            details={"source": video.sha256, "kind": twin.kind},
        )
        # A docking left OFFLOADING an hour ago, its station silent since.
        s.execute(
            update(Docking)
            .where(Docking.id == docking.id)
            .values(state="OFFLOADING", updated_at=utcnow() - timedelta(hours=1))
        )
        # A custody event edited after the fact.
        ev = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "stored")).first()
        assert ev is not None
        ev.details = ev.details.replace("sha256/", "sha256/x")
    extra = "0" * 64
    report = check_district(
        app.catalog, store, CheckOptions(expected_sha256=frozenset(expected | {extra}))
    )

    found = kinds(report)
    assert stray_key in " ".join(found["orphan-object"])
    assert derivs[0].object_key in " ".join(found["object-missing"])
    assert any(photo.object_key in t and "sha256" in t for t in found["object-digest"])
    assert any("work item" in t and "host:999999:dead" in t for t in found["work-stuck"])
    assert any(video.sha256 in t and twin.kind in t for t in found["processed-twice"])
    assert docking.uid in " ".join(found["docking-stalled"])
    assert found["custody"], report.violations
    assert extra in " ".join(found["file-not-stored"])
    assert set(found) == {
        "orphan-object",
        "object-missing",
        "object-digest",
        "work-stuck",
        "processed-twice",
        "docking-stalled",
        "custody",
        "file-not-stored",
    }

    bad = run_cli(capsys, *data, "verify", "--district", "--json")
    assert bad.code == 1
    assert stray_key in bad.out and derivs[0].object_key in bad.out and docking.uid in bad.out


def test_digest_sampling_rereads_a_deterministic_share(tmp_path: Path) -> None:
    app, _expected = district(tmp_path, f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    none = check_district(app.catalog, app.store, CheckOptions(digest_sample=0.0))
    assert none.ok and "objects_rehashed" not in none.counts
    some = check_district(app.catalog, app.store, CheckOptions(digest_sample_count=2))
    again = check_district(app.catalog, app.store, CheckOptions(digest_sample_count=2))
    assert some.ok and some.counts.get("objects_rehashed") == again.counts.get("objects_rehashed")
    total = some.counts["recordings"] + some.counts["derivatives"]
    assert some.counts.get("objects_rehashed", 0) < total
