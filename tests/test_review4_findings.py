"""Reviewer's reproductions for the session 51ba6d9..main (direct I/O, SharedLanes, SHA-256).

Tests named ``test_finding_*`` reproduce a defect: they assert the behaviour the code
should have and FAIL on main as reviewed (each cleans up what the defect leaves stuck).
Tests named ``test_check_*`` cover paths the session's own tests do not reach; they pass.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import os
import queue
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import pytest

import sm3engine
from ingest import direct_io, offload
from ingest.offload import OffloadError
from storage import digest as digest_mod
from storage.digest import SharedLanes
from tests.offload_helpers import copy_listed

CHUNK = 256 << 10


@pytest.fixture
def pools() -> Iterator[tuple[ThreadPoolExecutor, ThreadPoolExecutor]]:
    sm3 = ThreadPoolExecutor(1, thread_name_prefix="review-sm3")
    back = ThreadPoolExecutor(1, thread_name_prefix="review-back")
    yield sm3, back
    _unstick_feeds()
    sm3.shutdown(wait=True)
    back.shutdown(wait=True)


def _unstick_feeds() -> None:
    """End every _Sm3Feed consumer a defect left waiting (so the pools can shut down)."""
    for obj in gc.get_objects():
        if isinstance(obj, offload._Sm3Feed):
            while True:
                try:
                    obj.chunks.get_nowait()
                except queue.Empty:
                    break
            with contextlib.suppress(queue.Full):
                obj.chunks.put_nowait(None)


def _copy(
    src: Path,
    dst: Path,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    engine: SharedLanes | None = None,
) -> offload.Copied:
    return copy_listed(src, dst, pools, chunk=CHUNK, engine=engine)


# ---- 1. error paths of _copy_chunked ----------------------------------------------------


@pytest.mark.parametrize("which", ["writer", "reader"])
def test_finding_a_failed_direct_open_leaves_the_sm3_thread_stuck(
    tmp_path: Path,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    monkeypatch: pytest.MonkeyPatch,
    which: str,
) -> None:
    """An O_DIRECT open failing with anything but EINVAL (EMFILE here: each large copy
    holds four descriptors) once raised with the SM3 consumer blocked on its queue for
    ever. Fixed: the direct descriptor is only an optimisation, so the copy goes through
    the ordinary one, exact, and leaves no thread nor live stream behind."""
    real_open = os.open

    def emfile(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        if flags & os.O_DIRECT and (
            (which == "writer" and flags & os.O_WRONLY) or (which == "reader" and not flags & 3)
        ):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, mode, **kw)

    src = tmp_path / "long.MP4"
    src.write_bytes(os.urandom(4 * CHUNK + 5))
    monkeypatch.setattr(offload.os, "open", emfile)
    with SharedLanes(min_streams=1) as lanes:
        _copy(src, tmp_path / "staged.part", pools, lanes)
        monkeypatch.undo()
        gc.collect()
        assert (tmp_path / "staged.part").read_bytes() == src.read_bytes()
        assert lanes._live == 0
        pools[0].submit(lambda: None).result(timeout=30)


def test_finding_a_copy_failing_before_its_first_chunk_leaves_no_thread_stuck(
    tmp_path: Path,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The chunk buffers cannot be had (ENOMEM from mmap): the copy fails as a staging
    error, and the SM3 thread was never started for it."""

    def no_memory(size: int) -> Any:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    src = tmp_path / "long.MP4"
    src.write_bytes(os.urandom(4 * CHUNK + 5))
    monkeypatch.setattr(offload.BUFFERS, "take", no_memory)
    with SharedLanes(min_streams=1) as lanes:
        with pytest.raises(OffloadError):
            _copy(src, tmp_path / "staged.part", pools, lanes)
        monkeypatch.undo()
        gc.collect()
        live = lanes._live
        try:
            pools[0].submit(lambda: None).result(timeout=30)
            stuck = False
        except FutureTimeout:
            stuck = True
        _unstick_feeds()
        assert not stuck, "the SM3 consumer of the failed copy still holds the pool's thread"
        assert live == 0, "the failed copy's stream still counts as live in the lanes"


def test_finding_an_sm3_consumer_error_hangs_the_copy(
    tmp_path: Path,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the SM3 consumer raises (here: the shared lanes' update_many fails once), the
    copying thread is never told: it blocks in _Sm3Feed.put once the queue is full, for
    ever (pre-existing in _Sm3Feed, reachable through SharedLanes' errors)."""
    calls = 0
    real = digest_mod.sm3engine.update_many

    def failing(hashers: Any, chunks: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise MemoryError("injected")
        real(hashers, chunks)

    monkeypatch.setattr(digest_mod.sm3engine, "update_many", failing)
    src = tmp_path / "long.MP4"
    src.write_bytes(os.urandom(8 * CHUNK))
    outcome: list[BaseException | None] = []
    with SharedLanes(min_streams=1) as lanes:

        def run() -> None:
            try:
                _copy(src, tmp_path / "staged.part", pools, lanes)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(60)  # a hang, not slowness: the copy takes milliseconds
        hung = t.is_alive()
        deadline = time.monotonic() + 10
        while t.is_alive() and time.monotonic() < deadline:  # free the stuck copy
            _unstick_feeds()
            t.join(0.2)
    assert not hung, "the copy hung after its SM3 consumer failed"
    assert outcome and outcome[0] is not None


@pytest.mark.skipif(not sm3engine.AVAILABLE, reason="needs the engine")
def test_finding_one_failed_lanes_batch_fails_every_later_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SharedLanes._error is set by a failed batch and never cleared: every later chunk
    of every stream that goes to the lanes raises, until the station restarts
    (pre-existing in SharedSM3)."""
    real = digest_mod.sm3engine.update_many
    calls = 0

    def failing_once(hashers: Any, chunks: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise MemoryError("injected")
        real(hashers, chunks)

    monkeypatch.setattr(digest_mod.sm3engine, "update_many", failing_once)
    chunk = bytes(1 << 20)
    with SharedLanes(min_streams=1) as lanes:
        first = lanes.open_stream()
        with pytest.raises(RuntimeError):
            first.update(chunk)
        later = lanes.open_stream()
        later.update(chunk)  # a batch of its own, hashed fine: should not raise
        assert later.hexdigest() == hashlib.new("sm3", chunk).hexdigest()


# ---- 2. direct I/O paths the session's tests do not reach -------------------------------


@pytest.mark.parametrize("fail_at", [1, 3])
def test_check_read_back_refused_midway_falls_back_to_the_cache(
    tmp_path: Path,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    monkeypatch: pytest.MonkeyPatch,
    fail_at: int,
) -> None:
    """DirectReader's EINVAL branch (no test of the session injects it on preadv)."""
    monkeypatch.setattr(offload, "SYNC_EVERY", CHUNK)  # several stretches
    real_preadv = os.preadv
    calls = 0

    def refusing(fd: int, buffers: list[memoryview], offset: int) -> int:
        nonlocal calls
        calls += 1
        if calls == fail_at:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(offload.os, "preadv", refusing)
    src = tmp_path / "long.MP4"
    data = os.urandom(5 * CHUNK + 999)
    src.write_bytes(data)
    dst = tmp_path / "staged.part"
    copied = _copy(src, dst, pools)
    monkeypatch.undo()
    assert calls >= fail_at and copied.read_back
    assert dst.read_bytes() == data
    assert copied.digests.sha256.hex == hashlib.sha256(data).hexdigest()


def test_check_read_back_detects_a_flip_in_a_later_stretch_via_direct_reads(
    tmp_path: Path,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A byte that differs on disk deep in the file (not at offset 0, the only case the
    session's test flips), read back through O_DIRECT at an unaligned stretch start."""
    monkeypatch.setattr(offload, "SYNC_EVERY", CHUNK)
    real_readv = os.readv
    reads = 0

    def short_once(fd: int, buffers: list[memoryview]) -> int:
        nonlocal reads
        reads += 1
        if reads == 2:
            return real_readv(fd, [memoryview(buffers[0])[:777]])
        return real_readv(fd, buffers)

    real_preadv = os.preadv
    target = 3 * CHUNK + 1234

    def flipped(fd: int, buffers: list[memoryview], offset: int) -> int:
        got = real_preadv(fd, buffers, offset)
        if offset <= target < offset + got:
            buffers[0][target - offset] ^= 0x40
        return got

    monkeypatch.setattr(offload.os, "readv", short_once)
    monkeypatch.setattr(offload.os, "preadv", flipped)
    src = tmp_path / "long.MP4"
    src.write_bytes(os.urandom(6 * CHUNK + 3))
    with pytest.raises(offload.StagingReadBackMismatch):
        _copy(src, tmp_path / "staged.part", pools)


def test_check_buffers_are_not_shared_between_concurrent_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many copies at once through one BUFFERS pool, lanes on: every copy exact."""
    monkeypatch.setattr(offload, "SYNC_EVERY", CHUNK)
    files = []
    rnd = random.Random(5)
    for i in range(10):
        p = tmp_path / f"f{i}.MP4"
        p.write_bytes(rnd.randbytes(rnd.choice([2 * CHUNK + 1, 3 * CHUNK, 4 * CHUNK + 4095])))
        files.append(p)
    with (
        ThreadPoolExecutor(10) as sm3,
        ThreadPoolExecutor(10) as back,
        ThreadPoolExecutor(10) as copiers,
        SharedLanes(min_streams=3) as lanes,
    ):
        for _round in range(3):
            results = list(
                copiers.map(lambda p: _copy(p, p.with_suffix(".part"), (sm3, back), lanes), files)
            )
            for p, c in zip(files, results, strict=True):
                data = p.read_bytes()
                assert p.with_suffix(".part").read_bytes() == data
                assert c.digests.sha256.hex == hashlib.sha256(data).hexdigest()
                assert c.digests.sm3.hex == hashlib.new("sm3", data).hexdigest()


# ---- 3. SharedLanes: streams moving between lanes and caller, SHA-256 in the lanes ------


@pytest.mark.skipif(not sm3engine.AVAILABLE, reason="needs the engine")
def test_check_streams_switch_modes_mid_file_with_sha256_in_lanes() -> None:
    lanes = SharedLanes(min_streams=3)
    if not lanes.sha256:
        lanes.close()
        pytest.skip("SHA-256 does not join the lanes on this CPU/path")
    rnd = random.Random(11)
    pool = rnd.randbytes(6 << 20)
    try:

        def one(seed: int) -> tuple[str, str, bytes]:
            r = random.Random(seed)
            data = pool[r.randrange(1, 999) :][: r.randrange(1 << 20, 4 << 20)]
            s = lanes.open_stream()
            s.add_sha256()
            done = 0
            while done < len(data):
                n = r.choice([1, 63, 65, 4096 + 7, 65536, 65537, 300_001, 1 << 20])
                s.update(memoryview(data)[done : done + n])
                done += n
                if r.random() < 0.1:
                    time.sleep(0.002)  # others open and end meanwhile
            return s.sha256_hexdigest(), s.hexdigest(), data

        with ThreadPoolExecutor(6) as ex:
            for sha, sm3, data in ex.map(one, range(24)):
                assert sha == hashlib.sha256(data).hexdigest()
                assert sm3 == hashlib.new("sm3", data).hexdigest()
        assert lanes._live == 0
    finally:
        lanes.close()


# ---- 4. the engine: single updates and update_many interleaved on one context ---------


@pytest.mark.skipif(not sm3engine.AVAILABLE, reason="needs the engine")
@pytest.mark.parametrize("path", ["avx512", "avx2", "scalar"])
@pytest.mark.parametrize("shani", [True, False])
def test_check_update_and_update_many_interleaved(path: str, shani: bool) -> None:
    if path not in sm3engine.supported_paths():
        pytest.skip("path not supported here")
    before = sm3engine.engine_info()["path"]
    sm3engine.set_path(path)
    sm3engine.set_sha_ni(shani)
    try:
        rnd = random.Random(hash((path, shani)) & 0xFFFF)
        pool = rnd.randbytes(3 << 20)
        for _ in range(6):
            k = rnd.randrange(1, 40)
            msgs = [pool[rnd.randrange(1, 4000) :][: rnd.randrange(0, 600_000)] for _ in range(k)]
            kinds = [rnd.choice(["sm3", "sha256"]) for _ in msgs]
            hs = [sm3engine.new() if t == "sm3" else sm3engine.new_sha256() for t in kinds]
            done = [0] * k
            while any(d < len(m) for d, m in zip(done, msgs, strict=True)):
                picks = [i for i in range(k) if rnd.random() < 0.7]
                chunks = []
                for i in picks:
                    n = rnd.choice([0, 1, 55, 56, 63, 64, 65, 127, 129, 4097, 70_000, 250_001])
                    chunks.append(msgs[i][done[i] : done[i] + n])
                    done[i] = min(len(msgs[i]), done[i] + n)
                if rnd.random() < 0.5:
                    sm3engine.update_many([hs[i] for i in picks], chunks)
                else:
                    for i, c in zip(picks, chunks, strict=True):
                        hs[i].update(c)
            for h, t, m in zip(hs, kinds, msgs, strict=True):
                want = hashlib.new("sm3", m) if t == "sm3" else hashlib.sha256(m)
                assert h.hexdigest() == want.hexdigest()
    finally:
        sm3engine.set_path(before)
        sm3engine.set_sha_ni(True)


def test_check_direct_io_enabled_here(tmp_path: Path) -> None:
    """The checks above run the O_DIRECT code only where the filesystem allows it."""
    fd = direct_io.open_direct(tmp_path / "x", os.O_WRONLY | os.O_CREAT)
    assert fd is not None
    os.close(fd)


def test_check_unaligned_stretches_read_back_clean(
    tmp_path: Path,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stretches starting at unaligned offsets (a short recorder read, then a flush)
    read back through O_DIRECT from the block below: the slice hashed must start at the
    stretch, not at the block (a wrong ``lo`` would fail this copy)."""
    monkeypatch.setattr(offload, "SYNC_EVERY", CHUNK)
    real_readv = os.readv
    reads = 0

    def short_twice(fd: int, buffers: list[memoryview]) -> int:
        nonlocal reads
        reads += 1
        if reads in (2, 5):
            return real_readv(fd, [memoryview(buffers[0])[: 777 * reads]])
        return real_readv(fd, buffers)

    monkeypatch.setattr(offload.os, "readv", short_twice)
    src = tmp_path / "long.MP4"
    data = os.urandom(7 * CHUNK + 3)
    src.write_bytes(data)
    dst = tmp_path / "staged.part"
    copied = _copy(src, dst, pools)
    monkeypatch.undo()
    assert dst.read_bytes() == data and copied.read_back


def test_check_verify_signatures_matches_one_by_one_for_odd_sizes() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from catalog import signing

    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    rnd = random.Random(9)
    for n in (signing.CHUNK - 1, signing.CHUNK + 1, 3 * signing.CHUNK, 257):
        jobs = []
        for i in range(n):
            data = b"%d" % i
            sig = key.sign(data)
            if rnd.random() < 0.2:
                sig = bytes([sig[0] ^ 1]) + sig[1:]
            jobs.append((pub, sig, data))
        want = [signing.verify_signature(*j) for j in jobs]
        for workers in (2, 3, 7):
            assert signing.verify_signatures(jobs, workers=workers) == want


def test_finding_a_read_back_io_error_escapes_as_a_bare_oserror(
    tmp_path: Path,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The read-back now reaches the device (O_DIRECT), where a bad block answers EIO;
    _read_back_stretch lets the OSError out unmapped, so the docking takes it as an
    "unexpected error" (quarantine, .part left behind) rather than a staging fault
    (StagingReadBackMismatch: retried, CHECK_DISK_HEALTH). Same as before for pread, but
    before the read came from the page cache and practically never failed."""
    real_preadv = os.preadv

    def eio(fd: int, buffers: list[memoryview], offset: int) -> int:
        if offset > 0:
            raise OSError(errno.EIO, "Input/output error")
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(offload, "SYNC_EVERY", CHUNK)
    monkeypatch.setattr(offload.os, "preadv", eio)
    src = tmp_path / "long.MP4"
    src.write_bytes(os.urandom(4 * CHUNK + 1))
    with pytest.raises(Exception) as info:
        _copy(src, tmp_path / "staged.part", pools)
    assert isinstance(info.value, OffloadError), f"got {type(info.value).__name__}"
