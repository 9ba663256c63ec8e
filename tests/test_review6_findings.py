"""Reviewer's reproductions for 09fe037 (batch signing at flush), a8710ab (review5 fixes:
the staging group's `then` pool, the docking's `room` bound, a stopped docking leaving
its files STAGED) and 1d302bc (sm3engine macros).

Each test states what it shows; a failing test here is a finding, not a flaky test."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from catalog import signing
from catalog.signing import Signer
from ingest import journal as J
from ingest import station as station_mod
from ingest.synthetic import make_bulk_files
from tests.offload_helpers import make_app


def test_committer_does_not_wait_its_window_for_files_held_back_by_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FINDING (MEDIUM): take_files declares every file of the docking ``coming`` up
    front, but only IN_FLIGHT_PER_SLOT x file_workers of them may be copied before the
    committer registers some (``room``). With fewer than 16 slots that is fewer than a
    batch (64): the committer holds its batch for the whole window waiting for files
    that cannot come until it commits. Every batch then costs a full window. Shown
    with a 1 s window, file_workers=1 (room 4) and 16 files: 3 batches each wait 1 s;
    with the default 50 ms and file_workers=2 a docking is capped near 8 / 0.05 s =
    160 files/s whatever the disks can do."""
    monkeypatch.setattr(station_mod, "COMMIT_WINDOW_S", 1.0)
    rec = make_bulk_files(tmp_path / "dock" / "A1", 16, 1_000)
    app = make_app(tmp_path / "data", file_workers=1)
    station = app.station()
    sizes: list[int] = []
    real = station._commit_batch

    def commit_batch(batch: Any) -> None:
        sizes.append(len(batch))
        real(batch)

    station._commit_batch = commit_batch  # type: ignore[method-assign]
    try:
        started = time.monotonic()
        result = station.run_docking(rec.root)
        elapsed = time.monotonic() - started
    finally:
        station.close()
    assert result.state == "SAFE_TO_CLEAR"
    assert elapsed < 2.0, f"{elapsed:.1f} s for 16 tiny files; batches {sizes}"


def test_a_stopped_docking_leaves_its_staged_files_resumable(tmp_path: Path) -> None:
    """Checks (2): a docking stopped while files are staged and the store is slow leaves
    every file PENDING, STAGED (its staged copy in place) or DONE, is not SAFE TO CLEAR,
    and the next docking of the recorder holds every file once."""
    rec = make_bulk_files(tmp_path / "dock" / "A1", 30, 2_000)
    app = make_app(tmp_path / "data", file_workers=2)
    station = app.station()
    stop = threading.Event()
    calls = {"n": 0}
    real_put = station.store.put_file

    def put_file(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            stop.set()
        time.sleep(0.05)
        return real_put(*args, **kwargs)

    station.store.put_file = put_file
    try:
        first = station.run_docking(rec.root, stop=stop)
        assert first.state != "SAFE_TO_CLEAR"
        files = station.journal.files(first.uid)
        states = {f.state for f in files}
        assert states <= {J.FileState.PENDING, J.FileState.STAGED, J.FileState.DONE}, states
        staging = tmp_path / "data" / "staging"
        for f in files:
            if f.state == J.FileState.STAGED:
                assert list(staging.rglob(f"{f.id}.staged")), f"{f.relpath!r}: staged copy gone"
        assert any(f.state != J.FileState.DONE for f in files), "the stop came too late"
        assert station.committer._coming == 0, "the committer still expects files"
        station.store.put_file = real_put
        second = station.run_docking(rec.root)
    finally:
        station.close()
    assert second.state == "SAFE_TO_CLEAR", second
    assert second.stored == len(rec.files)
    assert not second.problems


def test_identical_files_stored_side_by_side_register_once(tmp_path: Path) -> None:
    """Checks (2): puts now run side by side on the `then` pool; files with the same
    bytes (the same content key) put at once are one recording and duplicates, nothing
    quarantined."""
    rec = make_bulk_files(tmp_path / "dock" / "A1", 12, 3_000)
    same = rec.files[0].read_bytes() if hasattr(rec.files[0], "read_bytes") else None
    paths = sorted(p for p in rec.root.rglob("*") if p.is_file())
    data = same or paths[0].read_bytes()
    for p in paths:
        p.write_bytes(data)
    app = make_app(tmp_path / "data", file_workers=4)
    station = app.station()
    real_put = station.store.put_file

    def put_file(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.02)
        return real_put(*args, **kwargs)

    station.store.put_file = put_file
    try:
        result = station.run_docking(rec.root)
    finally:
        station.close()
    assert result.state == "SAFE_TO_CLEAR", result.problems
    assert not result.problems


def test_sign_many_raises_a_helper_threads_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks (1): an error signing on a helper thread of _spread reaches the caller."""
    if not signing.fast_verify_available():
        pytest.skip("libsodium not installed")
    signer = Signer("station", Ed25519PrivateKey.generate())
    sodium = signer._sodium_signing
    assert sodium is not None
    real = sodium.sign
    main = threading.get_ident()

    def sign(data: bytes) -> bytes:
        if threading.get_ident() != main:
            raise RuntimeError("libsodium could not sign")
        return real(data)

    monkeypatch.setattr(sodium, "sign", sign)
    monkeypatch.setattr(signing.os, "cpu_count", lambda: 4)
    with pytest.raises(RuntimeError):
        signer.sign_many([i.to_bytes(4, "big") for i in range(1_000)])


def test_then_pool_runs_each_then_and_close_waits_for_them(tmp_path: Path) -> None:
    """Checks (2): files submitted just before close() each get their `then` (after the
    group's flush), and close() returns only once they have run."""
    from tests.test_offload_group import digests, journal_with_files

    journal, ids = journal_with_files(tmp_path, 20)
    group = station_mod._StagedGroup(journal, after_workers=3)
    folder = tmp_path / "stage"
    folder.mkdir()
    ran: list[int] = []
    lock = threading.Lock()

    def then_of(i: int) -> Any:
        def then(error: BaseException | None) -> None:
            assert error is None
            time.sleep(0.02)
            with lock:
                ran.append(i)

        return then

    for i in ids:
        group.submit(str(folder), J.StagedMove(i, digests(i), "t"), then_of(i))
    group.close()
    assert sorted(ran) == sorted(ids)
    journal.close()
