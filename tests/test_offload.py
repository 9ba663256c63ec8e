"""Station offload end to end, and every kind of bad input, on real files and services."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import sm3engine
from catalog import verify_chain
from catalog.models import CustodyEvent, Docking, DockingFile, Recording
from ingest import journal as J
from ingest import station as station_mod
from ingest.synthetic import make_bulk_files, make_recorder
from storage import digest as digest_mod
from tests.offload_helpers import file_digests, make_app


def recorder_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def assert_stored_exactly(app: Any, root: Path, expect_state: str = "SAFE_TO_CLEAR") -> None:
    """Every recorder file is in the catalog and store with independently computed digests."""
    with app.catalog.session() as s:
        recs = {r.sha256: r for r in s.scalars(select(Recording))}
        (docking,) = s.scalars(select(Docking)).all()
        assert docking.state == expect_state
        report = verify_chain(s, trusted={app.settings.station.id: {app.signer.key_id}})
    assert report.ok, [p.describe() for p in report.problems]
    for path in recorder_files(root):
        sha, sm3 = file_digests(path)
        assert sha in recs, f"{path} not in the catalog"
        assert recs[sha].sm3 == sm3
        with app.store.open(recs[sha].object_key) as f:
            assert f.read() == path.read_bytes()


def test_synthetic_recorder_sqlite_local(tmp_path: Path) -> None:
    rec = make_recorder(tmp_path / "dock" / "A123456")
    app = make_app(tmp_path / "data")
    station = app.station()
    result = station.run_docking(rec.root)
    station.close()
    assert result.state == "SAFE_TO_CLEAR" and result.exit_code == 0
    assert result.stored == len(rec.files) and not result.problems
    assert_stored_exactly(app, rec.root)
    with app.catalog.session() as s:
        (docking,) = s.scalars(select(Docking)).all()
        assert docking.identity_source == "device-info"
        actions = [e.action for e in s.scalars(select(CustodyEvent).order_by(CustodyEvent.seq))]
    assert actions[-1] == "safe-to-clear"
    assert actions.count("verified") == len(rec.files)
    assert not any((tmp_path / "data" / "staging").rglob("*.staged"))


@pytest.mark.postgres
@pytest.mark.s3
def test_synthetic_recorder_postgres_s3(
    tmp_path: Path, pg_url: str, s3_endpoint: Any, s3_bucket: str, s3_client: Any
) -> None:
    rec = make_recorder(tmp_path / "dock" / "A123456")
    app = make_app(
        tmp_path / "data",
        catalog_url=pg_url,
        store_url=f"s3://{s3_bucket}/ev",
        store_env={"LIUHEN_STORE_ENDPOINT_URL": s3_endpoint.url},
    )
    station = app.station()
    result = station.run_docking(rec.root)
    station.close()
    assert result.state == "SAFE_TO_CLEAR", result.problems
    assert_stored_exactly(app, rec.root)
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="ev/sha256/")
    assert listed["KeyCount"] == len(rec.files)


def test_duplicate_bytes_are_linked_not_stored_again(tmp_path: Path) -> None:
    first = make_bulk_files(tmp_path / "dock" / "first", 3, 10_000)
    second = tmp_path / "dock" / "second"
    shutil.copytree(first.root, second)
    app = make_app(tmp_path / "data")
    station = app.station()
    station.run_docking(first.root)
    station.journal.recorder_cleared(station.journal.dockings()[0].uid)
    result = station.run_docking(second)
    station.close()
    assert result.state == "SAFE_TO_CLEAR"
    with app.catalog.session() as s:
        assert len(s.scalars(select(Recording)).all()) == len(first.files)
        states = [f.state for f in s.scalars(select(DockingFile))]
        linked = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "duplicate-linked"))
        assert len(linked.all()) == len(first.files)
    assert states.count("DUPLICATE") == len(first.files)
    assert len(list(app.store.list("sha256/"))) == len(first.files)


def test_unknown_device_is_ingested_and_flagged(tmp_path: Path) -> None:
    root = tmp_path / "dock" / "mystery"
    root.mkdir(parents=True)
    (root / "VID0001.MP4").write_bytes(b"not really a video" * 100)
    app = make_app(tmp_path / "data")
    station = app.station()
    result = station.run_docking(root)
    station.close()
    assert result.state == "SAFE_TO_CLEAR"
    assert any("unknown device" in f for f in result.identity_flags)
    with app.catalog.session() as s:
        (docking,) = s.scalars(select(Docking)).all()
        assert docking.device_id is None and docking.identity_raw["raw"]["folder"] == "mystery"


def test_device_identity_from_file_names(tmp_path: Path) -> None:
    rec = make_recorder(
        tmp_path / "dock" / "slot3", with_device_info=False, h265=0, wav=0, segments=0, truncated=0
    )
    app = make_app(tmp_path / "data")
    station = app.station()
    station.run_docking(rec.root)
    station.close()
    with app.catalog.session() as s:
        (docking,) = s.scalars(select(Docking)).all()
        assert docking.identity_source == "file-name"
        rec_row = s.scalars(select(Recording)).first()
        assert rec_row is not None and rec_row.captured_at is not None


def test_hostile_names_and_special_files(tmp_path: Path) -> None:
    """Control characters, invalid UTF-8, long names, symlinks, FIFOs, empty files."""
    root = tmp_path / "dock" / "B7654321"
    root.mkdir(parents=True)
    base = os.fsencode(root)
    hostile = {
        b"bad\x07\x1bname.MP4": b"bell and escape",
        b"latin1-\xe9\xff.MP4": b"not utf-8",
        b"x" * 240 + b".MP4": b"long name",
        "中文名称.MP4".encode(): b"utf-8 is fine",
    }
    for name, data in hostile.items():
        with open(os.path.join(base, name), "wb") as f:
            f.write(data)
    (root / "empty.MP4").write_bytes(b"")
    secret = tmp_path / "outside-secret.txt"
    secret.write_text("must never be read", encoding="utf-8")
    (root / "link.MP4").symlink_to(secret)
    (root / "dirlink").symlink_to(tmp_path)
    os.mkfifo(root / "pipe.MP4")
    app = make_app(tmp_path / "data")
    station = app.station()
    result = station.run_docking(root)
    station.close()
    problems = {p: (s, r) for p, s, r in result.problems}
    assert problems["empty.MP4"][0] == "REJECTED" and "zero-byte" in problems["empty.MP4"][1]
    assert "symbolic link" in problems["link.MP4"][1]
    assert "symbolic link" in problems["dirlink"][1]
    assert "not a regular file" in problems["pipe.MP4"][1]
    assert result.state == "SAFE_TO_CLEAR"  # nothing here could be lost by clearing
    assert result.exit_code == 3  # but the officer is told about the rejected entries
    with app.catalog.session() as s:
        raw = {r.original_name_raw for r in s.scalars(select(Recording))}
        names = {r.relpath for r in s.scalars(select(DockingFile))}
    assert set(hostile) == raw  # every original name kept byte for byte
    assert "bad\\x07\\x1bname.MP4" in names and "latin1-\\xe9\\xff.MP4" in names
    stored = [app.store.open(k).read() for k in app.store.list("sha256/")]
    assert b"must never be read" not in stored


def test_file_vanishing_or_shrinking_mid_copy_is_quarantined(tmp_path: Path) -> None:
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 4, 3 << 20)
    reading, shrunk, vanished, _intact = sorted(rec.media(), key=lambda f: f.relpath)
    app = make_app(tmp_path / "data", chunk_mb=1, file_workers=1)
    station = app.station()
    done = {"hit": False}

    def sabotage(p: Any) -> None:
        # One megabyte into the first file: it is cut short under the reader (battery
        # died, card pulled), the next one shrinks and the third disappears.
        if not done["hit"] and p.bytes_done >= 1 << 20:
            done["hit"] = True
            os.truncate(rec.root / reading.relpath, 1000)
            os.truncate(rec.root / shrunk.relpath, 1000)
            (rec.root / vanished.relpath).unlink()

    result = _run_with_byte_hook(station, rec.root, sabotage)
    station.close()
    problems = {p: r for p, _s, r in result.problems}
    assert "shrank while it was read" in problems[reading.relpath]
    assert "shrank from" in problems[shrunk.relpath]
    assert "vanished" in problems[vanished.relpath]
    assert result.state == "INCOMPLETE" and result.exit_code == 3
    assert result.stored == len(rec.files) - 3  # the others are stored all the same


def _run_with_byte_hook(station: Any, root: Path, hook: Any) -> Any:
    from ingest import docking as station_module

    real = station_module.Progress.add_bytes

    def add_bytes(self: Any, n: int) -> None:
        real(self, n)
        hook(self)

    station_module.Progress.add_bytes = add_bytes  # type: ignore[method-assign]
    try:
        return station.run_docking(root)
    finally:
        station_module.Progress.add_bytes = real  # type: ignore[method-assign]


def test_growing_file_waits_then_is_taken_or_quarantined(tmp_path: Path) -> None:
    root = tmp_path / "dock" / "A123456"
    root.mkdir(parents=True)
    (root / "done.MP4").write_bytes(b"finished" * 1000)
    os.utime(root / "done.MP4", (time.time() - 60, time.time() - 60))
    growing = root / "growing.MP4"
    growing.write_bytes(b"start")
    stop = threading.Event()

    def grow() -> None:
        while not stop.is_set():
            with open(growing, "ab") as f:
                f.write(b"more")
            time.sleep(0.05)

    writer = threading.Thread(target=grow)
    writer.start()
    app = make_app(tmp_path / "data", stable_s=0.5, growing_timeout_s=1.5)
    station = app.station()
    try:
        result = station.run_docking(root)
    finally:
        stop.set()
        writer.join()
    problems = {p: r for p, _s, r in result.problems}
    assert "still growing" in problems["growing.MP4"]
    assert result.state == "INCOMPLETE"
    # Docked again once the recorder has finished writing: the same docking resumes.
    os.utime(growing, (time.time() - 60, time.time() - 60))
    uid = result.uid
    again = station.run_docking(root)
    station.close()
    assert again.uid == uid and again.state == "SAFE_TO_CLEAR"


def test_recorder_pulled_early_then_resumed_on_next_docking(tmp_path: Path) -> None:
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 6, 2 << 20)
    app = make_app(tmp_path / "data", chunk_mb=1, file_workers=1)
    station = app.station()
    pulled = tmp_path / "pulled"

    def pull(p: Any) -> None:
        # Two files in, the officer pulls the recorder (its folder goes away).
        if p.bytes_done >= 5 << 20 and not pulled.exists():
            shutil.copytree(rec.root, pulled)
            shutil.rmtree(rec.root)

    first = _run_with_byte_hook(station, rec.root, pull)
    assert first.state == "INCOMPLETE" and first.stored < len(rec.files)
    with app.catalog.session() as s:
        assert s.scalars(select(Docking)).one().state == "INCOMPLETE"
    # Docked again (another mount point): the same docking resumes and completes.
    again = station.run_docking(pulled)
    station.close()
    assert again.uid == first.uid and again.state == "SAFE_TO_CLEAR"
    assert_stored_exactly(app, pulled)


def test_full_disk_pauses_then_resumes(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs as the staging disk")
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 4, 2 << 20)
    data = tmp_path / "data"
    app = make_app(data, retry_initial_s=0.2, retry_max_s=0.3)
    staging = app.settings.staging_dir
    staging.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(staging)], check=True)
    try:
        # Staging and the store are on different filesystems now: adopt falls back to a copy.
        station = app.station()
        box: dict[str, Any] = {}
        waits: list[str] = []

        def run() -> None:
            box["result"] = station.run_docking(
                rec.root, on_progress=lambda p: waits.append(p.waiting or "")
            )

        t = threading.Thread(target=run)
        t.start()
        deadline = time.time() + 120  # ends as soon as it shows; the CI machine is loaded
        while not any("disk full" in w for w in waits) and time.time() < deadline:
            time.sleep(0.05)
        assert any("disk full" in w for w in waits), "the pause was never shown"
        subprocess.run(["mount", "-o", "remount,size=64m", str(staging)], check=True)
        t.join(120)
        assert not t.is_alive()
        station.close()
        assert box["result"].state == "SAFE_TO_CLEAR"
        assert_stored_exactly(app, rec.root)
    finally:
        subprocess.run(["umount", "-l", str(staging)], check=False)


def test_ingest_command_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.cli_helpers import run_cli

    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LIUHEN_INGEST_STABLE_S", "0")
    assert run_cli(capsys, "init").code == 0
    good = make_bulk_files(tmp_path / "dock" / "good", 3, 1000)
    result = run_cli(capsys, "ingest", str(good.root), "--json")
    assert result.code == 0, result.err
    assert '"state": "SAFE_TO_CLEAR"' in result.out
    bad = tmp_path / "dock" / "bad"
    bad.mkdir()
    (bad / "empty.MP4").write_bytes(b"")
    (bad / "ok.MP4").write_bytes(b"ok")
    result = run_cli(capsys, "ingest", str(bad))
    assert result.code == 3 and "empty.MP4" in result.out and "zero-byte" in result.out
    status = run_cli(capsys, "station", "status", "--json")
    assert status.code == 0 and '"safe_to_clear": true' in status.out
    missing = run_cli(capsys, "ingest", str(tmp_path / "nope"))
    assert missing.code == 2


def test_clearing_deletes_only_after_recheck(tmp_path: Path) -> None:
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 3, 5000)
    app = make_app(tmp_path / "data", clear_recorder=True)
    station = app.station()
    result = station.run_docking(rec.root)
    station.close()
    assert result.state == "CLEARED"
    assert recorder_files(rec.root) == []
    with app.catalog.session() as s:
        cleared = s.scalars(
            select(CustodyEvent).where(CustodyEvent.action == "cleared-from-recorder")
        ).all()
    assert len(cleared) == len(rec.files)
    assert len(list(app.store.list("sha256/"))) == len(rec.files)
    assert J.CLEARED == "CLEARED"


def test_recorder_clock_ahead_of_the_station_does_not_stall(tmp_path: Path) -> None:
    """A recorder whose clock runs ahead writes mtimes in the future; files still settle."""
    root = tmp_path / "dock" / "A123456"
    root.mkdir(parents=True)
    future = time.time() + 3 * 86400
    for i in range(3):
        (root / f"A123456_010203_20261126083000_000{i}.MP4").write_bytes(b"v" * 1000 * (i + 1))
        os.utime(root / f"A123456_010203_20261126083000_000{i}.MP4", (future, future))
    # A stall would end at the growing timeout with the files refused as still growing:
    # the state says so, with no clock in the test (the CI machine is loaded).
    app = make_app(tmp_path / "data", stable_s=0.3, growing_timeout_s=60)
    station = app.station()
    result = station.run_docking(root)
    station.close()
    assert result.state == "SAFE_TO_CLEAR"


def test_copy_reads_the_staged_file_back_behind_the_copy(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from ingest.offload import SYNC_EVERY, copy_and_hash

    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(SYNC_EVERY + 12345))  # two flushed stretches
    st = src.stat()
    fd = os.open(src, os.O_RDONLY)
    try:
        with ThreadPoolExecutor(1) as sm3_pool, ThreadPoolExecutor(1) as verify_pool:
            copied = copy_and_hash(
                fd,
                tmp_path / "dst.part",
                expected_size=st.st_size,
                expected_mtime_ns=st.st_mtime_ns,
                chunk_size=1 << 20,
                sm3_pool=sm3_pool,
                verify_pool=verify_pool,
            )
    finally:
        os.close(fd)
    assert copied.read_back
    assert (copied.digests.sha256.hex, copied.digests.sm3.hex) == file_digests(src)
    assert (tmp_path / "dst.part").read_bytes() == src.read_bytes()


def test_staged_bytes_that_read_back_different_fail_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A station disk that returns other bytes than were written (the only thing here that
    cannot be made real: the read-back is made to see a flipped bit)."""
    from concurrent.futures import ThreadPoolExecutor

    from ingest import offload

    real_pread = os.pread
    real_preadv = os.preadv

    def flipped(fd: int, n: int, offset: int) -> bytes:
        data = bytearray(real_pread(fd, n, offset))
        if offset == 0 and data:
            data[0] ^= 1
        return bytes(data)

    def flipped_into(fd: int, buffers: list[memoryview], offset: int) -> int:
        # The read-back past the page cache reads into its own aligned buffer.
        got = real_preadv(fd, buffers, offset)
        if offset == 0 and got:
            buffers[0][0] ^= 1
        return got

    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 << 20))
    st = src.stat()
    monkeypatch.setattr(offload.os, "pread", flipped)
    monkeypatch.setattr(offload.os, "preadv", flipped_into)
    fd = os.open(src, os.O_RDONLY)
    try:
        with (
            ThreadPoolExecutor(1) as sm3_pool,
            ThreadPoolExecutor(1) as verify_pool,
            pytest.raises(offload.StagingReadBackMismatch) as info,
        ):
            offload.copy_and_hash(
                fd,
                tmp_path / "dst.part",
                expected_size=st.st_size,
                expected_mtime_ns=st.st_mtime_ns,
                chunk_size=1 << 20,
                sm3_pool=sm3_pool,
                verify_pool=verify_pool,
            )
    finally:
        os.close(fd)
    assert "dst.part" in info.value.message and "reads back different bytes" in info.value.message


def lanes_batches(monkeypatch: pytest.MonkeyPatch, kinds: set[str] | None = None) -> list[int]:
    """The number of SM3 streams in each batch the station's shared engine hashes in its
    lanes, and in ``kinds`` the hashes seen there (the engine itself runs; only the sizes
    and names are noted)."""
    batches: list[int] = []
    update_many = sm3engine.update_many

    def noted(hashers: Any, chunks: Any) -> None:
        batches.append(sum(h.name == "sm3" for h in hashers))
        if kinds is not None:
            kinds.update(h.name for h in hashers)
        update_many(hashers, chunks)

    monkeypatch.setattr(digest_mod.sm3engine, "update_many", noted)
    return batches


@pytest.mark.skipif(not sm3engine.AVAILABLE, reason="needs the SM3 engine (scripts/setup.sh)")
def test_files_docked_at_once_share_the_stations_sm3_lanes_and_hash_as_hashlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 40 recordings of very unequal lengths (some of one 1 MiB chunk or less, some of
    # several), 16 copied at once: more files than the engine has lanes, so lanes whose
    # file ends are refilled by the next file's chunks while the others go on.
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 40, 100)
    rng = random.Random(18)
    for i, f in enumerate(f for f in rec.files if f.kind != "device-info"):
        size = rng.choice([1, 63 << 10, 64 << 10, 700_001, 1 << 20, (1 << 20) + 1, 3_333_333])
        (rec.root / f.relpath).write_bytes(i.to_bytes(8, "big") + rng.randbytes(size))
    kinds: set[str] = set()
    batches = lanes_batches(monkeypatch, kinds)

    # The first 16 copies start together (each waits for the others), so that the count
    # of files copied at once does not depend on how fast this machine is.
    together = threading.Barrier(16)
    started = iter(range(10**6))
    copy = station_mod.copy_and_hash

    def gathered(*args: Any, **kwargs: Any) -> Any:
        if next(started) < 16:
            together.wait(timeout=60)
        return copy(*args, **kwargs)

    monkeypatch.setattr(station_mod, "copy_and_hash", gathered)
    app = make_app(tmp_path / "data", chunk_mb=1, file_workers=16)
    station = app.station()
    result = station.run_docking(rec.root)
    station.close()
    assert result.state == "SAFE_TO_CLEAR" and result.stored == len(rec.files)  # + DEVICE.INF
    # Chunks of many files were hashed side by side in the lanes; their SHA-256 too
    # where the lanes take it (AVX-512 with SHA-NI), else on the copying threads.
    assert max(batches) >= station_mod.SHARED_SM3_FROM
    lanes = station._sm3_engine
    assert kinds == ({"sm3", "sha256"} if lanes is not None and lanes.sha256 else {"sm3"})
    assert_stored_exactly(app, rec.root)  # SHA-256 and SM3 as hashlib computes them


@pytest.mark.skipif(not sm3engine.AVAILABLE, reason="needs the SM3 engine (scripts/setup.sh)")
def test_a_few_long_recordings_hash_each_on_its_own_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two recordings (and DEVICE.INF): mostly empty lanes would hash them on one core
    # slower than a core each, so the shared engine is left alone.
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 2, (3 << 20) + 5)
    batches = lanes_batches(monkeypatch)
    app = make_app(tmp_path / "data", chunk_mb=1, file_workers=16)
    station = app.station()
    result = station.run_docking(rec.root)
    station.close()
    assert result.state == "SAFE_TO_CLEAR" and result.stored == len(rec.files)
    assert batches == []  # nothing went to the lanes
    assert_stored_exactly(app, rec.root)
