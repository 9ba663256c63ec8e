"""`liuhen verify --store`: fixity audit of the real object store against the real catalog.

Recordings get into the store the normal way (a docking through the real station), then
objects are damaged behind the store's back (a flipped byte in the directory store, an
overwrite in the S3 server) and the audit must report them, leave them in place, record
rows and custody events, and resume a killed run where it stopped.
"""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from archive_export.fixity import audit_store, make_scope
from catalog import verify_chain
from catalog.media import DerivedObject, record_derivative
from catalog.models import CustodyEvent, FixityCheck, FixityRun, Recording
from ingest.synthetic import make_bulk_files
from liuhen.app import App
from storage import Digest, LocalStore, content_key, digest_bytes
from tests.cli_helpers import run_cli
from tests.offload_helpers import make_app

COUNT = 5


def docked(tmp_path: Path, count: int = COUNT, **kwargs: Any) -> App:
    app = make_app(tmp_path / "data", **kwargs)
    rec = make_bulk_files(tmp_path / "dock" / "A123456", count, 40_000)
    station = app.station()
    result = station.run_docking(rec.root)
    station.close()
    assert result.state == "SAFE_TO_CLEAR", result.problems
    return app


def recordings(app: App) -> list[Recording]:
    with app.catalog.session() as s:
        return list(s.scalars(select(Recording).order_by(Recording.id)))


def damage_local(app: App, key: str) -> None:
    store = app.store
    assert isinstance(store, LocalStore)
    path = store.root / key
    os.chmod(path, 0o644)  # stored objects are read-only; an attacker would not care
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))


def audit(app: App, **kwargs: Any) -> Any:
    scope = kwargs.pop("scope", make_scope("all"))
    return audit_store(app.catalog, app.store, app.signer, scope=scope, actor="auditor", **kwargs)


def test_clean_store_verifies_everything(tmp_path: Path, catalog_url: str) -> None:
    app = docked(tmp_path, catalog_url=catalog_url)
    before = {r.id: r.verified_at for r in recordings(app)}
    report = audit(app)
    assert report.ok and report.state == "DONE"
    assert report.checked == COUNT + 1  # the files and DEVICE.INF
    assert report.bytes == sum(r.size for r in recordings(app))
    with app.catalog.session() as s:
        run = s.scalars(select(FixityRun)).one()
        assert run.state == "DONE" and run.checked == COUNT + 1 and run.finished_at
        assert s.scalar(select(func.count()).select_from(FixityCheck)) == COUNT + 1
        (event,) = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "fixity-run"))
        assert event.object_id == run.uid and json.loads(event.details)["checked"] == COUNT + 1
    for r in recordings(app):
        prior = before[r.id]
        assert r.verified_at is not None and (prior is None or r.verified_at > prior)


def test_damaged_and_missing_objects_are_reported_never_deleted(
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = docked(tmp_path, catalog_url=catalog_url)
    recs = recordings(app)
    damaged, missing = recs[1], recs[3]
    damage_local(app, damaged.object_key)
    store = app.store
    assert isinstance(store, LocalStore)
    (store.root / missing.object_key).unlink()
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    result = run_cli(capsys, "--data-dir", str(tmp_path / "data"), "verify", "--store")
    assert result.code == 1, result.out + result.err
    assert damaged.object_key in result.out and missing.object_key in result.out
    assert "2 failed" in result.out
    assert (store.root / damaged.object_key).exists()  # reported, never deleted or repaired
    with app.catalog.session() as s:
        failed = {
            c.object_key: c.detail
            for c in s.scalars(select(FixityCheck).where(FixityCheck.ok.is_(False)))
        }
        assert failed[damaged.object_key].startswith("mismatch: sha256")
        assert "sm3" in failed[damaged.object_key]
        assert failed[missing.object_key].startswith("missing")
        events = {
            e.object_id: e
            for e in s.scalars(select(CustodyEvent).where(CustodyEvent.action == "fixity-failed"))
        }
        assert set(events) == {damaged.sha256, missing.sha256}
        assert json.loads(events[damaged.sha256].details)["key"] == damaged.object_key
        assert verify_chain(s).ok
        # The damaged ones keep their old verified_at; the others were just verified.
        fresh = {r.id: r.verified_at for r in s.scalars(select(Recording))}
    assert fresh[damaged.id] == damaged.verified_at
    assert fresh[recs[0].id] != recs[0].verified_at
    as_json = run_cli(capsys, "--data-dir", str(tmp_path / "data"), "verify", "--store", "--json")
    doc = json.loads(as_json.out)
    assert as_json.code == 1 and doc["failed"] == 2
    assert {f["key"] for f in doc["failures"]} == {damaged.object_key, missing.object_key}


def test_killed_run_resumes_where_it_stopped(
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = docked(tmp_path, catalog_url=catalog_url)
    recs = recordings(app)
    damage_local(app, recs[-1].object_key)
    first = audit(app, batch=2, stop_after=1)  # stands for a run killed after one batch
    assert first.state == "RUNNING" and first.checked == 2
    with app.catalog.session() as s:
        assert s.scalars(select(FixityRun)).one().cursor == recs[1].id
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    result = run_cli(
        capsys, "--data-dir", str(tmp_path / "data"), "verify", "--store", "--resume", "--json"
    )
    doc = json.loads(result.out)
    assert result.code == 1 and doc["resumed"] and doc["run"] == first.run_uid
    assert doc["checked"] == len(recs) and doc["failed"] == 1 and doc["state"] == "DONE"
    with app.catalog.session() as s:
        keys = list(s.scalars(select(FixityCheck.object_key)))
        assert sorted(keys) == sorted(r.object_key for r in recs)  # each checked once
        assert s.scalars(select(FixityRun)).one().state == "DONE"
    # A finished run is not resumed: the next audit is a new run.
    again = audit(app)
    assert not again.resumed and again.run_uid != first.run_uid


def test_sample_and_older_than(tmp_path: Path) -> None:
    app = docked(tmp_path)
    recs = recordings(app)
    sample = audit(app, scope=make_scope("sample", sample=2))
    assert sample.checked == 2 and sample.ok
    assert len(sample.scope["ids"]) == 2
    # Everything was verified at offload, moments ago: nothing is older than a day.
    assert audit(app, scope=make_scope("older-than", older_than_days=1)).checked == 0
    with app.catalog.transaction() as s:
        old = s.get(Recording, recs[2].id)
        assert old is not None
        old.verified_at = datetime.now(UTC) - timedelta(days=40)
    stale = audit(app, scope=make_scope("older-than", older_than_days=30))
    assert stale.checked == 1 and stale.ok
    assert audit(app, scope=make_scope("older-than", older_than_days=30)).checked == 0


def test_derivatives_are_checked_with_their_recording(tmp_path: Path) -> None:
    app = docked(tmp_path, count=2)
    rec = recordings(app)[0]
    data = b"an access copy" * 1000
    sha = digest_bytes(data, "sha256")
    key = content_key(sha)
    app.store.put(key, io.BytesIO(data), expected=sha)
    with app.catalog.transaction() as s:
        row = s.get(Recording, rec.id)
        assert row is not None
        record_derivative(
            s,
            app.signer,
            row,
            DerivedObject(
                kind="access",
                sha256=sha.hex,
                sm3=digest_bytes(data, "sm3").hex,
                size=len(data),
                object_key=key,
                method="remux",
                command=["ffmpeg"],
                tool_version="test",
                duration_s=None,
            ),
            actor="test",
        )
    assert audit(app).checked == 4  # 2 files + DEVICE.INF + the derivative
    damage_local(app, key)
    report = audit(app)
    assert [f["object"] for f in report.failures] == ["derivative:access"]
    with app.catalog.session() as s:
        (event,) = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "fixity-failed"))
        assert event.object_type == "derivative" and event.object_id == sha.hex


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docked(tmp_path, count=1)
    data = str(tmp_path / "data")
    for args in (
        ("verify", "--store", "--sample", "2", "--older-than", "3"),
        ("verify", "--sample", "2"),
        ("verify", "--store", str(tmp_path)),
        ("verify",),
    ):
        assert run_cli(capsys, "--data-dir", data, *args).code == 2, args


@pytest.mark.s3
def test_s3_store_overwritten_object(
    tmp_path: Path, s3_endpoint: Any, s3_bucket: str, s3_client: Any
) -> None:
    app = docked(
        tmp_path,
        store_url=f"s3://{s3_bucket}/ev",
        store_env={"LIUHEN_STORE_ENDPOINT_URL": s3_endpoint.url},
    )
    recs = recordings(app)
    assert audit(app).ok
    victim = recs[2]
    body = bytearray(
        s3_client.get_object(Bucket=s3_bucket, Key=f"ev/{victim.object_key}")["Body"].read()
    )
    body[7] ^= 0x10
    s3_client.put_object(Bucket=s3_bucket, Key=f"ev/{victim.object_key}", Body=bytes(body))
    s3_client.delete_object(Bucket=s3_bucket, Key=f"ev/{recs[0].object_key}")
    report = audit(app)
    assert report.failed == 2
    details = {f["key"]: f["detail"] for f in report.failures}
    assert details[victim.object_key].startswith("mismatch")
    assert details[recs[0].object_key].startswith("missing")
    assert app.store.exists(victim.object_key)
    assert Digest("sha256", victim.sha256) != digest_bytes(bytes(body), "sha256")


@pytest.mark.s3
def test_unreachable_store_stops_the_run_resumable(
    tmp_path: Path,
    s3_proxy: Any,
    s3_bucket: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store going away is not 'every object failed': the run stops and resumes."""
    env = {
        "LIUHEN_STORE_ENDPOINT_URL": s3_proxy.url,
        "LIUHEN_STORE_MAX_ATTEMPTS": "1",
        "LIUHEN_STORE_CONNECT_TIMEOUT_S": "1",
        "LIUHEN_STORE_READ_TIMEOUT_S": "2",
    }
    app = docked(tmp_path, store_url=f"s3://{s3_bucket}/ev", store_env=env)
    s3_proxy.cut()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LIUHEN_STORE_URL", f"s3://{s3_bucket}/ev")
    result = run_cli(capsys, "--data-dir", str(tmp_path / "data"), "verify", "--store")
    assert result.code == 69, result.out + result.err
    with app.catalog.session() as s:
        run = s.scalars(select(FixityRun)).one()
        assert run.state == "RUNNING" and run.failed == 0
        assert not s.scalars(
            select(CustodyEvent).where(CustodyEvent.action == "fixity-failed")
        ).all()
    s3_proxy.restore()
    again = run_cli(capsys, "--data-dir", str(tmp_path / "data"), "verify", "--store", "--json")
    doc = json.loads(again.out)
    assert again.code == 0 and doc["resumed"] and doc["checked"] == COUNT + 1
