"""The station's large copies written and read back past the page cache (O_DIRECT).

Real files on the test machine's filesystem (ext4 here, which allows direct I/O); where a
filesystem refuses it, or a recorder returns short reads that leave offsets unaligned,
the copy must still be byte for byte the recorder's, fsynced and read back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import mmap
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ingest import direct_io, offload
from ingest.offload import Copied
from tests.offload_helpers import copy_listed

CHUNK = 256 << 10


@pytest.fixture
def pools() -> Iterator[tuple[ThreadPoolExecutor, ThreadPoolExecutor]]:
    with ThreadPoolExecutor(1) as sm3, ThreadPoolExecutor(1) as back:
        yield sm3, back


def copy(src: Path, dst: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor]) -> Copied:
    return copy_listed(src, dst, pools, chunk=CHUNK)


def assert_same(copied: Copied, src: Path, dst: Path) -> None:
    data = src.read_bytes()
    assert dst.read_bytes() == data
    assert copied.digests.sha256.hex == hashlib.sha256(data).hexdigest()
    assert copied.digests.sm3.hex == hashlib.new("sm3", data).hexdigest()
    assert copied.read_back


def cached_pages(path: Path) -> int:
    """How many of the file's pages are in the page cache: mincore(2) over a mapping
    that is never touched (so the check itself brings nothing in)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            raise OSError(ctypes.get_errno(), "mmap")
        try:
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(b & 1 for b in vec)


def honours_direct_io(folder: Path) -> bool:
    """Whether a file written with O_DIRECT in ``folder`` stays out of the page cache:
    tmpfs (and some FUSE filesystems) accept the flag and cache anyway."""
    probe = folder / "direct-probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    try:
        buf = direct_io.aligned_buffer(2 * direct_io.ALIGN)
        os.pwrite(fd, memoryview(buf), 0)
    finally:
        os.close(fd)
    try:
        return cached_pages(probe) == 0
    finally:
        probe.unlink()


@pytest.mark.parametrize("size", [3 * CHUNK, 3 * CHUNK + 1, 5 * CHUNK + 4095, 2 * CHUNK + 7])
def test_a_large_copy_bypasses_the_page_cache_and_is_exact(
    tmp_path: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor], size: int
) -> None:
    if not honours_direct_io(tmp_path):
        pytest.skip(f"{tmp_path} caches O_DIRECT writes (tmpfs?): nothing to observe")
    src = tmp_path / "long.MP4"
    src.write_bytes(os.urandom(size))
    dst = tmp_path / "staged.part"
    copied = copy(src, dst, pools)
    # Written past the cache: at most the unaligned end went through it.
    assert cached_pages(dst) <= 1
    assert_same(copied, src, dst)


def test_the_same_copy_through_the_cache_is_seen_in_it(
    tmp_path: Path,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control for the test above: the page count does see a cached copy."""
    monkeypatch.setattr(direct_io, "ENABLED", False)
    src = tmp_path / "long.MP4"
    src.write_bytes(os.urandom(3 * CHUNK))
    dst = tmp_path / "staged.part"
    copied = copy(src, dst, pools)
    assert cached_pages(dst) == 3 * CHUNK // mmap.PAGESIZE
    assert_same(copied, src, dst)


def test_a_filesystem_refusing_direct_io_gets_the_cached_copy(
    tmp_path: Path,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As on a filesystem without O_DIRECT (open fails with EINVAL): the fault is made
    at the system call, the copy is real."""
    real_open = os.open

    def refusing(path: str | Path, flags: int, mode: int = 0o777, **kw: object) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(offload.os, "open", refusing)
    src = tmp_path / "long.MP4"
    src.write_bytes(os.urandom(4 * CHUNK + 123))
    dst = tmp_path / "staged.part"
    copied = copy(src, dst, pools)
    monkeypatch.undo()
    assert cached_pages(dst) == -(-(4 * CHUNK + 123) // mmap.PAGESIZE)  # all through the cache
    assert_same(copied, src, dst)


def test_a_write_refused_midway_is_rewritten_through_the_cache(
    tmp_path: Path,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A device wanting a larger alignment refuses the second direct write: the rest of
    the file, that piece included, goes through the ordinary descriptor."""
    real_pwrite = os.pwrite
    direct_writes = 0

    def picky(fd: int, buf: memoryview, offset: int) -> int:
        nonlocal direct_writes
        if fcntl_flags(fd) & os.O_DIRECT:
            direct_writes += 1
            if direct_writes == 2:
                raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, buf, offset)

    monkeypatch.setattr(offload.os, "pwrite", picky)
    src = tmp_path / "long.MP4"
    src.write_bytes(os.urandom(6 * CHUNK + 10))
    dst = tmp_path / "staged.part"
    copied = copy(src, dst, pools)
    monkeypatch.undo()
    assert direct_writes == 2
    if honours_direct_io(tmp_path):  # else which bytes went past the cache cannot be seen
        # The first chunk went past the cache, the rest through it.
        assert cached_pages(dst) == -(-(5 * CHUNK + 10) // mmap.PAGESIZE)
    assert_same(copied, src, dst)


def fcntl_flags(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_GETFL)


def test_short_reads_from_the_recorder_leave_offsets_unaligned_and_the_copy_exact(
    tmp_path: Path,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A recorder (USB, FUSE) may return fewer bytes than asked mid-file: every write
    after that is at an unaligned offset and must still land where it belongs."""
    real_readv = os.readv
    calls = 0

    def short(fd: int, buffers: list[memoryview]) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:  # one short read, then whole chunks again at an odd offset
            return real_readv(fd, [memoryview(buffers[0])[:1000]])
        return real_readv(fd, buffers)

    monkeypatch.setattr(offload.os, "readv", short)
    src = tmp_path / "long.MP4"
    src.write_bytes(os.urandom(5 * CHUNK + 77))
    dst = tmp_path / "staged.part"
    copied = copy(src, dst, pools)
    monkeypatch.undo()
    assert calls >= 7
    assert_same(copied, src, dst)
