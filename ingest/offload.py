"""One read of a recorder file: the same buffers feed the staging copy, SHA-256 and SM3.

SM3 runs on a helper thread while this thread reads the next chunk, hashes it with
SHA-256 and writes it; both hash functions release the GIL, so on two cores the copy
runs at about the speed of SM3 alone (the slowest part), not of the sum.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.errors import EXIT_IOERR, LiuhenError
from storage.digest import new_hasher

# Staged bytes are flushed to disk every this many bytes while they are written.
SYNC_EVERY = 64 << 20


class OffloadError(LiuhenError):
    exit_code = EXIT_IOERR


class SourceVanished(OffloadError):
    """The file disappeared or shrank while it was read (recorder pulled?)."""


class SourceChanged(OffloadError):
    """The file grew or was rewritten while it was read: not stable yet."""


class DiskFull(OffloadError):
    """Staging ran out of space: the docking pauses; nothing staged is lost."""


@dataclass(frozen=True)
class Copied:
    size: int
    sha256: str
    sm3: str
    # True when the staged file was read back from disk (page cache) stretch by stretch
    # behind the copy and its SHA-256 matched the bytes read from the recorder.
    read_back: bool = False


@dataclass(frozen=True)
class Entry:
    """Something found on a recorder."""

    relpath: bytes  # raw bytes, '/' separated, relative to the recorder root
    kind: str  # file | symlink | special
    size: int
    mtime_ns: int


def scan(root: Path) -> Iterator[Entry]:
    """Walk the recorder without following symlinks; names are kept as raw bytes."""
    base = os.fsencode(root)
    stack = [b""]
    while stack:
        rel_dir = stack.pop()
        try:
            it = os.scandir(os.path.join(base, rel_dir) if rel_dir else base)
        except (FileNotFoundError, NotADirectoryError):
            continue  # the recorder (or a folder of it) went away mid-scan
        with it:
            for e in sorted(it, key=lambda x: x.name):
                rel = rel_dir + b"/" + e.name if rel_dir else e.name
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISLNK(st.st_mode):
                    yield Entry(rel, "symlink", 0, st.st_mtime_ns)
                elif stat.S_ISDIR(st.st_mode):
                    stack.append(rel)
                elif stat.S_ISREG(st.st_mode):
                    yield Entry(rel, "file", st.st_size, st.st_mtime_ns)
                else:
                    yield Entry(rel, "special", 0, st.st_mtime_ns)


def open_parent(root: Path, relpath: bytes) -> tuple[int, bytes]:
    """A descriptor of the folder holding ``relpath`` and the file's name in it.

    Each folder below the root is opened with O_NOFOLLOW, so a symlinked folder planted
    on the recorder cannot lead the station out of it. The caller closes the descriptor.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    parent, _, name = relpath.rpartition(b"/")
    try:
        for part in parent.split(b"/") if parent else []:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd, name


def open_source(root: Path, relpath: bytes) -> int:
    """Open a recorder file for reading, refusing symlinks at every level below root."""
    fd, name = open_parent(root, relpath)
    try:
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def unlink_source(root: Path, relpath: bytes) -> None:
    """Delete a recorder file (clearing), by the same link-refusing path walk."""
    fd, name = open_parent(root, relpath)
    try:
        os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_and_hash(
    src_fd: int,
    dst: Path,
    *,
    expected_size: int,
    expected_mtime_ns: int,
    chunk_size: int,
    sm3_pool: ThreadPoolExecutor,
    verify_pool: ThreadPoolExecutor | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Copied:
    """Copy ``src_fd`` to ``dst`` (created, fsynced) hashing on the way; raise on change.

    With ``verify_pool``, every flushed stretch of ``dst`` is read back and hashed on that
    pool while the copy goes on, and the copy fails unless the staged file's SHA-256
    equals the recorder's bytes': the verification a store would otherwise do by reading
    the whole file again after the copy, overlapped with the copy instead (the copy is
    bound by SM3 on another core). Memory use is a few chunks whatever the file size.
    """
    sha = new_hasher("sha256")
    sm3 = new_hasher("sm3")
    sm3_feed = _Sm3Feed(sm3, sm3_pool)
    total = synced = 0
    with _suppress_fadvise():
        os.posix_fadvise(src_fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    try:
        out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise _staging_error(dst, exc) from exc
    back = _ReadBack(dst, chunk_size, verify_pool) if verify_pool is not None else None
    try:
        while True:
            try:
                buf = os.read(src_fd, chunk_size)
            except OSError as exc:
                raise SourceVanished(
                    f"read error after {total} bytes: {exc.strerror}",
                    hint="check the recorder and its cable, then dock it again",
                ) from exc
            if not buf:
                break
            sm3_feed.put(buf)
            sha.update(buf)
            try:
                view = memoryview(buf)
                while view:
                    n = os.write(out, view)
                    view = view[n:]
            except OSError as exc:
                raise _staging_error(dst, exc) from exc
            total += len(buf)
            if total - synced >= SYNC_EVERY:
                # Flush as we go: the final fsync then waits for the last stretch only,
                # not for gigabytes of dirty pages at once, and memory pressure stays low.
                try:
                    os.fdatasync(out)
                except OSError as exc:
                    raise _staging_error(dst, exc) from exc
                if back is not None:
                    back.submit(synced, total)
                synced = total
            if on_bytes is not None:
                on_bytes(len(buf))
        sm3_feed.finish()
        try:
            os.fsync(out)
        except OSError as exc:
            raise _staging_error(dst, exc) from exc
        if back is not None:
            back.submit(synced, total)
            back.finish(sha.hexdigest())
    finally:
        sm3_feed.close()
        if back is not None:
            back.close()
        os.close(out)
    st = os.fstat(src_fd)
    if total < expected_size or st.st_size < expected_size:
        raise SourceVanished(
            f"file shrank while it was read ({expected_size} bytes expected, {total} read)",
            hint="the recorder may have been pulled or rewritten; dock it again",
        )
    if total != st.st_size or st.st_size != expected_size or st.st_mtime_ns != expected_mtime_ns:
        raise SourceChanged(
            f"file changed while it was read ({expected_size} → {st.st_size} bytes)"
        )
    return Copied(total, sha.hexdigest(), sm3.hexdigest(), read_back=back is not None)


# Chunks SM3 may fall behind the copy: enough that it never waits while the copy
# stalls in a write or an fdatasync (SM3 is the slowest step and cannot be split), few
# enough that memory stays a few chunks per file whatever the file's size.
SM3_LAG = 4


class _Sm3Feed:
    """Feeds chunks, in order, to one SM3 consumer running on ``pool`` for this file.

    The pool must have a thread for every file copied at once (the station sizes it
    so); a file whose consumer waits for a thread only waits, it does not deadlock.
    """

    def __init__(self, sm3: Any, pool: ThreadPoolExecutor) -> None:
        self.sm3 = sm3
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=SM3_LAG)
        self.done = pool.submit(self._consume)
        self.closed = False

    def _consume(self) -> None:
        while (buf := self.chunks.get()) is not None:
            self.sm3.update(buf)

    def put(self, buf: bytes) -> None:
        self.chunks.put(buf)

    def finish(self) -> None:
        self.close()
        self.done.result()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.chunks.put(None)


class StagingReadBackMismatch(OffloadError):
    exit_code = EXIT_IOERR


class _ReadBack:
    """Hashes flushed stretches of a staging file, in order, on a pool thread."""

    def __init__(self, path: Path, chunk_size: int, pool: ThreadPoolExecutor) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.pool = pool
        self.sha = new_hasher("sha256")
        self.pending: Future[None] | None = None
        self.fd = os.open(path, os.O_RDONLY)

    def submit(self, start: int, end: int) -> None:
        if end <= start:
            return
        before = self.pending
        self.pending = self.pool.submit(self._hash, before, start, end)

    def _hash(self, before: Future[None] | None, start: int, end: int) -> None:
        if before is not None:
            before.result()  # stretches are hashed in file order
        offset = start
        while offset < end:
            buf = os.pread(self.fd, min(self.chunk_size, end - offset), offset)
            if not buf:
                raise StagingReadBackMismatch(
                    f"staging file {self.path} is shorter than what was written "
                    f"({offset} of {end} bytes read back)",
                    hint="check the station's data disk; the file will be copied again",
                )
            self.sha.update(buf)
            offset += len(buf)

    def finish(self, expected_sha256: str) -> None:
        if self.pending is not None:
            self.pending.result()
        actual = self.sha.hexdigest()
        if actual != expected_sha256:
            raise StagingReadBackMismatch(
                f"staging file {self.path} reads back different bytes than were written "
                f"(SHA-256 {actual[:16]}…, recorder {expected_sha256[:16]}…)",
                hint="check the station's data disk (dmesg, SMART); the file is copied again",
            )

    def close(self) -> None:
        if self.pending is not None:
            # Its error, if any, already reached the caller or lost to the copy's own.
            with contextlib.suppress(Exception):
                self.pending.result()
        os.close(self.fd)


def _staging_error(dst: Path, exc: OSError) -> OffloadError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(
            f"staging disk full while writing {dst}",
            hint="free space on the station's data disk; the docking resumes by itself",
        )
    return OffloadError(f"cannot write staging file {dst}: {exc.strerror}")


class _suppress_fadvise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)  # type: ignore[arg-type]
