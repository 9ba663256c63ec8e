"""The one-read copy (ingest.offload.copy_and_hash) on real files: digests, read-back, faults.

The read-back is proved by really changing the staged file on disk between the copy's
write and its read-back (through the copy's ``on_bytes`` progress hook, which runs after
each write, and for flushed stretches with the read-back held back until the change is
made), never by tampering with a hash.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ingest import direct_io, offload
from ingest.offload import (
    READ_BACK_CHECK,
    Copied,
    DiskFull,
    SourceChanged,
    SourceVanished,
    StagingReadBackMismatch,
    copy_and_hash,
)
from storage.digest import DigestPair
from tests.offload_helpers import copy_listed

CHUNK = 64 << 10  # small chunks keep the chunked path's files small here


@pytest.fixture(autouse=True, params=["direct", "cached"])
def staging_io(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every copy test runs twice: written and read back past the page cache (O_DIRECT,
    this filesystem allowing), and through it, as on a filesystem without direct I/O."""
    monkeypatch.setattr(direct_io, "ENABLED", request.param == "direct")
    return str(request.param)


@pytest.fixture
def pools() -> Iterator[tuple[ThreadPoolExecutor, ThreadPoolExecutor]]:
    with (
        ThreadPoolExecutor(1, thread_name_prefix="sm3") as sm3,
        ThreadPoolExecutor(1, thread_name_prefix="read-back") as back,
    ):
        yield sm3, back


def digests(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), hashlib.new("sm3", data).hexdigest()


def copy(
    src: Path,
    dst: Path,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    *,
    chunk: int = CHUNK,
    verify: bool = True,
    on_bytes: Callable[[int], None] | None = None,
    expected_size: int | None = None,
) -> Copied:
    return copy_listed(
        src, dst, pools, chunk=chunk, verify=verify, on_bytes=on_bytes, expected_size=expected_size
    )


def flip_byte(path: Path, offset: int) -> None:
    """Change one byte of a file on disk (written and flushed, as a failing disk would)."""
    fd = os.open(path, os.O_RDWR)
    try:
        (old,) = os.pread(fd, 1, offset)
        os.pwrite(fd, bytes([old ^ 0x40]), offset)
        os.fdatasync(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "size",
    [0, 1, 100_000, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 7],
    ids=lambda n: f"{n}B",
)
def test_every_size_gives_the_recorders_digests_and_bytes(
    tmp_path: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor], size: int
) -> None:
    data = os.urandom(size)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    seen: list[int] = []
    copied = copy(src, tmp_path / "dst.part", pools, on_bytes=seen.append)
    assert (copied.digests.sha256.hex, copied.digests.sm3.hex) == digests(data)
    assert copied.size == size and copied.read_back
    assert (tmp_path / "dst.part").read_bytes() == data
    assert sum(seen) == size  # progress counts every byte once


def test_one_chunk_and_chunked_copies_agree(
    tmp_path: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor]
) -> None:
    data = os.urandom(3 * CHUNK + 123)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    whole = copy(src, tmp_path / "whole.part", pools, chunk=len(data))
    chunked = copy(src, tmp_path / "chunked.part", pools, chunk=CHUNK)
    unverified = copy(src, tmp_path / "plain.part", pools, chunk=CHUNK, verify=False)
    assert whole == chunked == Copied(len(data), DigestPair.of_hex(*digests(data)), read_back=True)
    assert unverified == Copied(len(data), DigestPair.of_hex(*digests(data)), read_back=False)
    for name in ("whole.part", "chunked.part", "plain.part"):
        assert (tmp_path / name).read_bytes() == data


def test_a_one_chunk_file_is_copied_without_the_pools(tmp_path: Path) -> None:
    """A small file is hashed and read back inline: pools that take no work do not stop it."""
    data = os.urandom(100_000)
    src = tmp_path / "photo.jpg"
    src.write_bytes(data)
    sm3_pool, verify_pool = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    sm3_pool.shutdown()
    verify_pool.shutdown()  # submitting to either now raises RuntimeError
    copied = copy(src, tmp_path / "dst.part", (sm3_pool, verify_pool), chunk=4 << 20)
    assert copied == Copied(len(data), DigestPair.of_hex(*digests(data)), read_back=True)


def test_small_file_changed_on_disk_before_read_back_fails(
    tmp_path: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor]
) -> None:
    data = os.urandom(100_000)
    src = tmp_path / "photo.jpg"
    src.write_bytes(data)
    dst = tmp_path / "dst.part"
    with pytest.raises(StagingReadBackMismatch) as info:
        copy(src, dst, pools, chunk=4 << 20, on_bytes=lambda _n: flip_byte(dst, 54_321))
    message = info.value.message
    assert str(dst) in message and "reads back different bytes" in message
    assert "bytes 0–100000 (first difference at byte 54321)" in message
    assert "copied again" in (info.value.hint or "")
    assert src.read_bytes() == data  # the recorder's file is untouched


def test_small_staged_file_cut_short_before_read_back_fails(
    tmp_path: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor]
) -> None:
    src = tmp_path / "photo.jpg"
    src.write_bytes(os.urandom(100_000))
    dst = tmp_path / "dst.part"
    with pytest.raises(StagingReadBackMismatch) as info:
        copy(src, dst, pools, chunk=4 << 20, on_bytes=lambda _n: os.truncate(dst, 40_000))
    assert f"staging file {dst} is shorter than what was written" in info.value.message
    assert "(40000 of 100000 bytes read back)" in info.value.message


def append_to(path: Path) -> None:
    with path.open("ab") as f:
        f.write(b"extra")


def test_small_staged_file_grown_before_read_back_fails(
    tmp_path: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor]
) -> None:
    """Bytes after the recorder's would be stored with them: the copy must not pass."""
    src = tmp_path / "photo.jpg"
    src.write_bytes(os.urandom(100_000))
    dst = tmp_path / "dst.part"
    with pytest.raises(StagingReadBackMismatch, match="first difference at byte 100000"):
        copy(src, dst, pools, chunk=4 << 20, on_bytes=lambda _n: append_to(dst))


def test_long_staged_file_grown_before_read_back_fails(
    tmp_path: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor]
) -> None:
    size = 3 * CHUNK + 500
    src = tmp_path / "long.MP4"
    src.write_bytes(os.urandom(size))
    dst = tmp_path / "dst.part"
    copied_bytes = 0

    def grow(n: int) -> None:
        nonlocal copied_bytes
        copied_bytes += n
        if copied_bytes == size:  # after the last write, before the fsync and read-back
            append_to(dst)

    with pytest.raises(StagingReadBackMismatch) as info:
        copy(src, dst, pools, on_bytes=grow)
    assert f"staging file {dst} is {size + 5} bytes long, {size} were written" in (
        info.value.message
    )


def test_flushed_stretch_changed_on_disk_fails_and_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stretch already flushed by fdatasync changes on disk before it is read back."""
    monkeypatch.setattr(offload, "SYNC_EVERY", 4 * CHUNK)  # stretches of 256 KiB
    stretch = 4 * CHUNK
    data = os.urandom(4 * stretch + 999)
    src = tmp_path / "long.MP4"
    src.write_bytes(data)
    dst = tmp_path / "dst.part"
    gate = threading.Event()
    copied_bytes = 0

    def corrupt_second_stretch(n: int) -> None:
        nonlocal copied_bytes
        copied_bytes += n
        if copied_bytes == 2 * stretch:  # the second stretch is flushed and queued
            flip_byte(dst, stretch + 1000)
            gate.set()

    with ThreadPoolExecutor(1) as sm3_pool, ThreadPoolExecutor(1) as verify_pool:
        # The read-back pool's one thread waits for the change: no race with the copy.
        verify_pool.submit(gate.wait, 60)
        with pytest.raises(StagingReadBackMismatch) as info:
            copy(src, dst, (sm3_pool, verify_pool), on_bytes=corrupt_second_stretch)
    assert gate.is_set()
    message = info.value.message
    assert str(dst) in message and "reads back different bytes" in message
    assert f"bytes {stretch}–{2 * stretch}" in message  # where on disk, for the operator
    assert src.read_bytes() == data


def test_last_stretch_cut_short_before_read_back_fails(
    tmp_path: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor]
) -> None:
    size = 3 * CHUNK + 500
    src = tmp_path / "long.MP4"
    src.write_bytes(os.urandom(size))
    dst = tmp_path / "dst.part"
    copied_bytes = 0

    def cut(n: int) -> None:
        nonlocal copied_bytes
        copied_bytes += n
        if copied_bytes == size:  # the last chunk is written, not yet fsynced nor read back
            os.truncate(dst, size - 100)

    with pytest.raises(StagingReadBackMismatch) as info:
        copy(src, dst, pools, on_bytes=cut)
    assert f"({size - 100} of {size} bytes read back)" in info.value.message


@pytest.mark.parametrize("size", [100_000, 5 * CHUNK + 7], ids=["one-chunk", "chunked"])
def test_source_shrunk_since_listed_is_refused(
    tmp_path: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor], size: int
) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(size))
    with pytest.raises(SourceVanished, match="shrank while it was read"):
        copy(src, tmp_path / "dst.part", pools, expected_size=size + 10)


def test_source_cut_short_mid_copy_is_refused(
    tmp_path: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor]
) -> None:
    """The recorder's battery dies or its card is pulled while the file is read."""
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(5 * CHUNK))
    with pytest.raises(SourceVanished, match=r"\(327680 bytes expected, 131072 read\)"):
        copy(src, tmp_path / "dst.part", pools, on_bytes=lambda _n: os.truncate(src, 2 * CHUNK))


@pytest.mark.parametrize(
    "size",
    [0, 100_000, CHUNK, 5 * CHUNK + 7],
    ids=["empty", "one-chunk", "exactly-one-chunk", "chunked"],
)
def test_source_grown_since_listed_is_refused(
    tmp_path: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor], size: int
) -> None:
    """Still being recorded: more bytes than were listed."""
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(size))
    st = src.stat()
    with src.open("ab") as f:
        f.write(b"more")
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime
    with pytest.raises(SourceChanged, match=f"{size} → {size + 4} bytes"):
        copy(src, tmp_path / "dst.part", pools, expected_size=size)


@pytest.mark.parametrize("size", [100_000, 5 * CHUNK + 7], ids=["one-chunk", "chunked"])
def test_source_rewritten_in_place_is_refused(
    tmp_path: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor], size: int
) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(size))
    listed = src.stat().st_mtime_ns
    src.write_bytes(os.urandom(size))  # same size, new bytes
    os.utime(src, ns=(listed + 10**9, listed + 10**9))
    fd = os.open(src, os.O_RDONLY)
    try:
        with pytest.raises(SourceChanged):
            copy_and_hash(
                fd,
                tmp_path / "dst.part",
                expected_size=size,
                expected_mtime_ns=listed,
                chunk_size=CHUNK,
                sm3_pool=pools[0],
                verify_pool=pools[1],
            )
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [100_000, 5 * CHUNK + 7], ids=["one-chunk", "chunked"])
def test_read_error_on_the_source_is_refused(
    tmp_path: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor], size: int
) -> None:
    """A descriptor whose read fails (a folder: EISDIR) stands for a failing card."""
    folder = tmp_path / "folder"
    folder.mkdir()
    fd = os.open(folder, os.O_RDONLY)
    try:
        with pytest.raises(SourceVanished, match="read error after 0 bytes"):
            copy_and_hash(
                fd,
                tmp_path / "dst.part",
                expected_size=size,
                expected_mtime_ns=0,
                chunk_size=CHUNK,
                sm3_pool=pools[0],
                verify_pool=pools[1],
            )
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [100_000, 5 * CHUNK + 7], ids=["one-chunk", "chunked"])
def test_full_staging_disk_is_reported_as_disk_full(
    tmp_path: Path, pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor], size: int
) -> None:
    """/dev/full answers every write with ENOSPC, as a full station disk does."""
    if not os.access("/dev/full", os.W_OK):
        pytest.skip("no writable /dev/full here")
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(size))
    with pytest.raises(DiskFull, match="staging disk full while writing /dev/full"):
        copy(src, Path("/dev/full"), pools)


def test_read_back_check_says_what_was_checked() -> None:
    """The sentence goes into custody events: it must name the read-back and all digests."""
    for name in ("read back", "XXH3-128", "SHA-256", "SM3"):
        assert name in READ_BACK_CHECK
