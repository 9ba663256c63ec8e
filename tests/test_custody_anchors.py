"""Signed chain heads (anchors) make the end of the custody log evidence too.

A station signs its chain head after every docking into its journal and the store. The
review's scenarios, each of which passed every check before: the newest events deleted
(tail truncation), the whole catalog restored from an earlier copy (rollback), and an
insider erasing the newest docking (rows, object and events). `custody verify`, `verify
--district` and `doctor` report each, naming the last anchored event; an auditor who kept
an exported bag detects it without the station's journal or the store's anchors.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from catalog.models import CustodyEvent, Docking, DockingFile, ExportItem, Recording
from ingest.synthetic import DEFAULT_DEVICE, make_bulk_files
from tests.cli_helpers import Result, run_cli

STATION = "station-01"


def dock(app: Any, tmp_path: Path, name: str, seed: int) -> str:
    """One docking of a small recorder; its journal uid."""
    rec = make_bulk_files(tmp_path / "dock" / name, 2, 4096, seed=seed, device=DEFAULT_DEVICE)
    station = app.station()
    try:
        result = station.run_docking(rec.root)
    finally:
        station.close()
    assert result.state == "SAFE_TO_CLEAR", result.problems
    return str(result.uid)


def head(app: Any) -> int:
    with app.catalog.session() as s:
        return int(
            s.scalar(select(func.max(CustodyEvent.seq)).where(CustodyEvent.station_id == STATION))
            or 0
        )


def custody_verify(capsys: pytest.CaptureFixture[str], *extra: str) -> Result:
    return run_cli(capsys, "custody", "verify", *extra)


def doctor_heads(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    result = run_cli(capsys, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(result.out)["checks"]}
    return dict(checks["custody chain heads"])


def test_chain_head_anchored_after_every_docking(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dock(app, tmp_path, "R1", 1)
    first = head(app)
    dock(app, tmp_path, "R2", 2)
    second = head(app)
    stored = sorted(app.store.list("anchors/"))
    assert [k.split("/")[2].split("-")[0] for k in stored] == [f"{first:012d}", f"{second:012d}"]
    result = custody_verify(capsys)
    assert result.code == 0, result.out
    assert f"last anchored: {STATION} #{second}" in result.out
    assert doctor_heads(capsys)["status"] == "ok"
    assert run_cli(capsys, "verify", "--district").code == 0  # anchors are not orphans


def test_tail_truncation_is_reported_by_every_check(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dock(app, tmp_path, "R1", 1)
    dock(app, tmp_path, "R2", 2)
    anchored = head(app)
    with app.catalog.transaction() as s:  # the newest three events deleted
        s.execute(
            delete(CustodyEvent).where(
                CustodyEvent.station_id == STATION, CustodyEvent.seq > anchored - 3
            )
        )
    result = custody_verify(capsys)
    assert result.code == 1, result.out
    assert "truncated" in result.out
    assert f"events #{anchored - 2}..#{anchored} are missing" in result.out
    assert f"last anchored seq {anchored}" in result.out
    district = run_cli(capsys, "verify", "--district")
    assert district.code == 1 and "truncated" in district.out
    assert f"last anchored seq {anchored}" in district.out
    check = doctor_heads(capsys)
    assert check["status"] == "fail" and f"last anchored seq {anchored}" in check["detail"]


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_catalog_restored_from_an_earlier_copy_is_reported(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = Path(app.settings.catalog_url.removeprefix("sqlite:///"))
    dock(app, tmp_path, "R1", 1)
    app.catalog.dispose()
    shutil.copy(db, tmp_path / "backup.sqlite3")  # the owner's backup
    dock(app, tmp_path, "R2", 2)
    anchored = head(app)
    app.catalog.dispose()
    shutil.copy(tmp_path / "backup.sqlite3", db)  # rolled back: R2's docking forgotten
    for extra in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        extra.unlink(missing_ok=True)
    result = custody_verify(capsys)
    assert result.code == 1 and "truncated" in result.out, result.out
    assert f"last anchored seq {anchored}" in result.out

    # The station goes on docking on the restored catalog: the numbers grow past the
    # anchor again, but the anchored event is not the one the catalog now holds.
    dock(app, tmp_path, "R3", 3)
    assert head(app) >= anchored
    result = custody_verify(capsys)
    assert result.code == 1 and "rollback" in result.out, result.out
    assert f"event #{anchored} in the catalog" in result.out
    district = run_cli(capsys, "verify", "--district")
    assert district.code == 1 and "rollback" in district.out
    assert doctor_heads(capsys)["status"] == "fail"
    # No host signs a head over the rolled-back chain, with its journal or (a host
    # without one) against the newest head in the store: the old head stays the evidence.
    app.settings.journal_path.rename(tmp_path / "journal-aside")
    refused = run_cli(capsys, "custody", "anchor")
    assert refused.code == 1 and f"no longer holds event #{anchored}" in refused.err
    assert len(list(app.store.list("anchors/"))) == 2


def erase_docking(app: Any, uid: str, since_seq: int, *, anchors_too: bool) -> None:
    """What an insider with the catalog and the store does to make a docking never
    have happened: its rows, its objects, its custody events (the newest ones)."""
    with app.catalog.transaction() as s:
        docking = s.scalars(select(Docking).where(Docking.uid == uid)).one()
        recordings = s.scalars(select(Recording).where(Recording.docking_id == docking.id)).all()
        keys = [r.object_key for r in recordings]
        s.execute(delete(ExportItem).where(ExportItem.recording_id.in_([r.id for r in recordings])))
        s.execute(delete(DockingFile).where(DockingFile.docking_id == docking.id))
        for r in recordings:
            s.delete(r)
        s.flush()
        s.delete(docking)
        s.execute(
            delete(CustodyEvent).where(
                CustodyEvent.station_id == STATION, CustodyEvent.seq > since_seq
            )
        )
    root = app.store.root
    for key in keys:
        (root / key).chmod(0o644)
        (root / key).unlink()
    if anchors_too:  # a directory store without Object Lock: the insider can
        shutil.rmtree(root / "anchors")


def test_insider_erasing_the_newest_docking_is_reported(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dock(app, tmp_path, "R1", 1)
    before = head(app)
    uid = dock(app, tmp_path, "R2", 2)
    anchored = head(app)
    erase_docking(app, uid, before, anchors_too=True)
    # Everything the catalog and store say is consistent again...
    with app.catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Docking)) == 1
    # ...but the station's journal kept its signed head.
    result = custody_verify(capsys)
    assert result.code == 1 and "truncated" in result.out, result.out
    assert f"last anchored seq {anchored}" in result.out
    district = run_cli(capsys, "verify", "--district")
    assert district.code == 1 and f"last anchored seq {anchored}" in district.out
    assert doctor_heads(capsys)["status"] == "fail"


def test_auditor_keeping_a_bag_detects_erasure_without_journal_or_store_anchors(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dock(app, tmp_path, "R1", 1)
    before = head(app)
    uid = dock(app, tmp_path, "R2", 2)
    bag = tmp_path / "kept-by-auditor"
    exported = run_cli(
        capsys,
        "export",
        "--from",
        "2026-11-01",
        "--to",
        "2026-12-31",
        "--out",
        str(bag),
        "--decode",
        "none",
    )
    assert exported.code == 0, exported.out + exported.err
    assert run_cli(capsys, "verify", str(bag)).code == 0
    lines = (bag / "data/metadata/anchors.jsonl").read_text().splitlines()
    anchored = json.loads(lines[0])["seq"]
    assert anchored > before
    erase_docking(app, uid, before, anchors_too=True)
    app.settings.journal_path.unlink()  # the station was rebuilt: its journal is gone
    assert custody_verify(capsys).code == 0  # nothing left to compare with
    result = custody_verify(capsys, "--anchors", str(bag))
    assert result.code == 1 and "truncated" in result.out, result.out
    assert f"last anchored seq {anchored}" in result.out and str(bag) in result.out


@pytest.mark.s3
@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_chain_head_in_an_object_lock_bucket_cannot_be_deleted(
    catalog: Any, make_s3_store: Any, s3_lock_bucket: str
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from catalog import Signer, register_station
    from catalog.anchors import publish, store_heads, store_key
    from storage.errors import RetentionRefused

    store = make_s3_store(s3_lock_bucket, "evidence")
    signer = Signer(STATION, Ed25519PrivateKey.generate())
    with catalog.transaction() as s:
        register_station(s, signer)
    with catalog.session() as s:
        signed = publish(s, signer, store=store)
    assert signed is not None and signed.seq == 1
    key = store_key(signed)
    info = store.head(key)
    assert info.retain_until is not None
    assert info.retain_until > datetime.now(UTC) + timedelta(days=365 * 29)
    with pytest.raises(RetentionRefused):
        store.delete(key)
    (read,), bad = store_heads(store)
    assert read == signed and not bad


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_anchored_event_deleted_inside_the_chain_is_missing(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dock(app, tmp_path, "R1", 1)
    first = head(app)
    dock(app, tmp_path, "R2", 2)
    with app.catalog.transaction() as s:
        s.execute(
            delete(CustodyEvent).where(
                CustodyEvent.station_id == STATION, CustodyEvent.seq == first
            )
        )
    result = custody_verify(capsys)
    assert result.code == 1
    assert f"event #{first}: missing: event #{first}, anchored by chain head" in result.out


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_forged_chain_head_in_the_store_is_reported(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A head signed by another key (whoever can write the store can add objects) is
    evidence of tampering, never a head the catalog is held to."""
    import io

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from catalog import Signer
    from catalog.anchors import store_key
    from catalog.chainrule import sign_head
    from storage import digest_bytes

    dock(app, tmp_path, "R1", 1)
    forged = sign_head(Signer(STATION, Ed25519PrivateKey.generate()), 10**6, "f" * 64)
    data = (forged.to_line() + "\n").encode()
    app.store.put(store_key(forged), io.BytesIO(data), expected=digest_bytes(data))
    result = custody_verify(capsys)
    assert result.code == 1 and "bad-anchor" in result.out, result.out
    assert "truncated" not in result.out  # a forged head vouches for nothing


def test_a_workers_events_are_anchored_when_it_drains(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probe and derive events go on the host's chain after the docking's anchor: the
    worker anchors them itself, so deleting them is truncation, not a clean chain (a
    worker-only host has no station loop to do it)."""
    from ingest.worker import Worker

    dock(app, tmp_path, "R1", 1)
    docked = head(app)
    Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer).run(
        drain=True, idle_s=0.1
    )
    worked = head(app)
    assert worked > docked  # the probes added events after the docking's anchor
    newest = sorted(app.store.list("anchors/"))[-1]
    assert newest.split("/")[2].startswith(f"{worked:012d}-")
    with app.catalog.transaction() as s:  # the worker's events deleted
        s.execute(
            delete(CustodyEvent).where(
                CustodyEvent.station_id == STATION, CustodyEvent.seq > docked
            )
        )
    result = custody_verify(capsys)
    assert result.code == 1 and "truncated" in result.out, result.out
    assert f"last anchored seq {worked}" in result.out


def test_a_truncated_compressed_bag_given_as_anchors_is_a_usage_error(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kept .tar.gz cut off inside its anchors.jsonl: an error naming the file (exit
    2), not "aborted" (exit 130, as if the user had pressed Ctrl-C): gzip raises EOFError."""
    import os
    import tarfile

    dock(app, tmp_path, "R1", 1)
    member = tmp_path / "kept" / "bag" / "data" / "metadata" / "anchors.jsonl"
    member.parent.mkdir(parents=True)
    member.write_bytes(os.urandom(1 << 20).hex().encode())  # 2 MB that gzip cannot shrink much
    kept = tmp_path / "kept.tar.gz"
    with tarfile.open(kept, "w:gz") as tf:
        tf.add(tmp_path / "kept" / "bag", arcname="bag")
    data = kept.read_bytes()
    kept.write_bytes(data[: len(data) // 2])
    result = custody_verify(capsys, "--anchors", str(kept))
    assert result.code == 2, (result.code, result.out, result.err)
    assert str(kept) in result.err and "cannot read" in result.err, result.err


def test_a_hostile_tar_given_as_anchors_is_refused_within_bounded_memory(
    app: Any, tmp_path: Path
) -> None:
    """A bag handed to an auditor may be hostile too: a .tar.gz of a few hundred kB that
    declares a 300 MB pax header took `custody verify --anchors` to 950 MB. Now the file
    is refused by name (exit 2) before the header is read."""
    from tests.test_verify_bounds import PEAK_LIMIT_MB, _pax_header_bomb, run_measured

    dock(app, tmp_path, "R1", 1)
    kept = tmp_path / "kept.tar.gz"
    _pax_header_bomb(kept, gz=True)
    run = run_measured(tmp_path, "custody", "verify", "--anchors", str(kept))
    assert run.code == 2, (run.code, run.out, run.err[-2000:])
    assert str(kept) in run.err and "too large" in run.err, run.err
    assert run.peak_mb < PEAK_LIMIT_MB, f"peak RSS {run.peak_mb:.0f} MB"


def test_the_summary_counts_only_chain_heads_that_verify(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forged head is reported, and not counted among the signed chain heads the
    summary says the chain was checked against."""
    import io

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from catalog import Signer
    from catalog.anchors import store_key
    from catalog.chainrule import sign_head
    from storage import digest_bytes

    dock(app, tmp_path, "R1", 1)
    genuine = custody_verify(capsys)
    # The journal's head and the store's copy of it.
    assert genuine.code == 0 and "(2 signed chain heads)" in genuine.out, genuine.out
    forged = sign_head(Signer(STATION, Ed25519PrivateKey.generate()), 10**6, "f" * 64)
    data = (forged.to_line() + "\n").encode()
    app.store.put(store_key(forged), io.BytesIO(data), expected=digest_bytes(data))
    result = custody_verify(capsys)
    assert result.code == 1 and "bad-anchor" in result.out, result.out
    assert "(2 signed chain heads)" in result.out, result.out
    doc = json.loads(custody_verify(capsys, "--json").out)
    assert doc["chain_heads_verified"] == 2, doc


def test_an_anchors_file_with_no_chain_head_is_said_not_passed(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An auditor who names the wrong file (empty, /dev/null) has checked nothing: the
    verdict says so instead of passing in silence (found by the review)."""
    dock(app, tmp_path, "R1", 1)
    empty = tmp_path / "kept-heads.jsonl"
    empty.write_bytes(b"\n")
    result = custody_verify(capsys, "--anchors", str(empty))
    assert result.code == 1, result.out
    assert f"{empty}: holds no chain heads" in " ".join(result.out.split())
