"""One read of a recorder file: the same buffers feed the staging copy, SHA-256 and SM3.

SM3 runs on a helper thread while this thread reads the next chunk, hashes it with
SHA-256 and writes it; both hash functions release the GIL, so on two cores the copy
runs at about the speed of SM3 alone (the slowest part), not of the sum.

The staged file is read back after each flush and compared with the recorder's bytes by
XXH3-128, not by a second SHA-256: the comparison needs no cryptographic strength (both
sides are our own bytes, seconds apart; the custody digests are SHA-256 and SM3 of the
recorder's bytes), and a second SHA-256 pass over a 2 GiB recording costs as many CPU
seconds as the first, which on a two-core station without SHA instructions made one
long recording slower than SM3 alone. There XXH3-128 hashes about 21 GB/s per core
against 0.35 GB/s for SHA-256 and 0.2 GB/s for SM3.
"""

from __future__ import annotations

import errno
import itertools
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import xxhash

from config.errors import EXIT_IOERR, LiuhenError
from config.i18n import N_
from config.message import Msg
from ingest.direct_io import BUFFERS, DirectReader, DirectWriter
from storage.digest import DigestPair, Hasher, LaneStream, SharedLanes, new_hasher

# What the offload says went wrong, kept as English templates (config.message.Msg): the
# docking stores them in its journal, and `ingest` and `station status` read them back
# (config.message.recognised) and show them in the reader's language.
READ_ERROR: Final = N_("read error after {done} bytes: {error}")
CANNOT_WRITE: Final = N_("cannot write staging file {path}: {error}")
CHECK_CABLE: Final = N_("check the recorder and its cable, then dock it again")
SHRANK_WHILE_READ: Final = N_(
    "file shrank while it was read ({expected} bytes expected, {got} read)"
)
CHANGED_WHILE_READ: Final = N_("file changed while it was read ({before} → {after} bytes)")
READ_BACK_SHORT: Final = N_(
    "staging file {path} is shorter than what was written ({got} of {written} bytes read back)"
)
READ_BACK_DIFFERS: Final = N_(
    "staging file {path} reads back different bytes than were written, in bytes 0–{end} "
    "(first difference at byte {first})"
)
READ_BACK_STRETCH_DIFFERS: Final = N_(
    "staging file {path} reads back different bytes than were written, in bytes "
    "{start}–{end} (XXH3-128 {actual}…, recorder {expected}…)"
)
READ_BACK_FAILED: Final = N_("cannot read staging file {path} back: {error}")
DISK_FULL: Final = N_("staging disk full while writing {path}")
DOCK_AGAIN: Final = N_("the recorder may have been pulled or rewritten; dock it again")
STAGED_LENGTH: Final = N_("staging file {path} is {size} bytes long, {written} were written")
CHECK_DISK: Final = N_("check the station's data disk; the file will be copied again")
CHECK_DISK_HEALTH: Final = N_(
    "check the station's data disk (dmesg, SMART); the file is copied again"
)
FREE_SPACE: Final = N_("free space on the station's data disk; the docking resumes by itself")
KEPT: Final = (
    READ_ERROR,
    CANNOT_WRITE,
    CHECK_CABLE,
    SHRANK_WHILE_READ,
    CHANGED_WHILE_READ,
    READ_BACK_SHORT,
    READ_BACK_DIFFERS,
    READ_BACK_STRETCH_DIFFERS,
    READ_BACK_FAILED,
    DISK_FULL,
    DOCK_AGAIN,
    STAGED_LENGTH,
    CHECK_DISK,
    CHECK_DISK_HEALTH,
    FREE_SPACE,
)

# Staged bytes are flushed to disk every this many bytes while they are written.
SYNC_EVERY = 64 << 20

# What a copy made with a verify pool checked, for the custody event's ``verified_by``.
READ_BACK_CHECK: Final[str] = (
    "staged file read back after each flush to disk and compared with the recorder's "
    "bytes (in full for a file of one chunk, by XXH3-128 per flushed stretch for a "
    "larger one); SHA-256 and SM3 of the recorder's bytes"
)


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
    digests: DigestPair  # of the recorder's bytes, taken in the read that copied them
    # True when the staged file was read back (past the page cache where the filesystem
    # allows) after each flush to disk and every stretch's XXH3-128 matched the bytes
    # read from the recorder.
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


class SourceFolders:
    """Opens a docking's recorder files, keeping the descriptors of the folders it has
    walked (each opened once with O_NOFOLLOW by :func:`open_parent`).

    A photo folder of thousands of files otherwise costs a walk from the root per file
    (here three opens and two closes before the file's own open, each a system call and
    a hand-off of the interpreter lock). A kept descriptor is the folder that was
    walked: a link put in its place later is never followed, as on a fresh walk. At most
    ``limit`` folders are kept (a recorder of many folders cannot use up descriptors);
    past that a file's folder is walked as :func:`open_source` does, and so is a file
    the kept folder cannot open (a folder put back at its path: a remount). :meth:`close` once
    no thread opens files with it any more (the docking's copies are done)."""

    def __init__(self, root: Path, limit: int = 64) -> None:
        self.root = root
        self.limit = limit
        self._fds: dict[bytes, int] = {}
        self._lock = threading.Lock()
        self._closed = False

    def open(self, relpath: bytes) -> int:
        """Like :func:`open_source` (same errors): a descriptor of the file for reading."""
        parent, _, name = relpath.rpartition(b"/")
        folder = self._fds.get(parent)
        if folder is None:
            walked, _name = open_parent(self.root, relpath)
            with self._lock:
                keep = not self._closed and parent not in self._fds
                if keep and len(self._fds) < self.limit:
                    self._fds[parent] = folder = walked
            if folder is None:  # not kept: used for this file alone
                try:
                    return os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=walked)
                finally:
                    os.close(walked)
        try:
            return os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
        except OSError:
            # The kept folder may no longer be the one at its path (the recorder mounted
            # again there mid-docking): a fresh walk decides, with the same errors. The
            # stale descriptor stays kept until close(): another thread may be using it.
            return open_source(self.root, relpath)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)


def unlink_source(
    root: Path, relpath: bytes, *, size: int | None = None, mtime_ns: int | None = None
) -> bool:
    """Delete a recorder file (clearing), by the same link-refusing path walk.

    With ``size`` and ``mtime_ns`` (those of the bytes that were stored), a file that is
    no longer that file (the recorder wrote other bytes under the name since) is kept and
    False returned: clearing deletes only what was stored. True: deleted or already gone.
    """
    fd, name = open_parent(root, relpath)
    try:
        if size is not None and mtime_ns is not None:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return True
            if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
                return False
        os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)
    return True


def copy_and_hash(
    src_fd: int,
    dst: str | Path,
    *,
    expected_size: int,
    expected_mtime_ns: int,
    chunk_size: int,
    sm3_pool: ThreadPoolExecutor,
    verify_pool: ThreadPoolExecutor | None = None,
    on_bytes: Callable[[int], None] | None = None,
    sm3_engine: SharedLanes | None = None,
) -> Copied:
    """Copy ``src_fd`` to ``dst`` (created, fsynced) hashing on the way; raise on change.

    With ``verify_pool``, the staged file is read back after each flush to disk and
    compared with the recorder's bytes written there (see :data:`READ_BACK_CHECK`): the
    check a store would otherwise make by reading the whole file again after the copy.
    SHA-256 and SM3 are computed once, over the bytes read from the recorder. Memory use
    is a few chunks whatever the file size.

    A file of at most one chunk (a photo, a short clip) is read, hashed, written, read
    back and compared byte for byte on the calling thread: handing one chunk to pool
    threads costs more in thread switches than the hashing itself, and the whole file is
    in memory anyway. A larger file hashes SM3 on ``sm3_pool`` and reads each flushed
    stretch back on ``verify_pool`` (compared by XXH3-128, overlapped with the copy)
    while this thread reads, hashes SHA-256 and writes.

    With ``sm3_engine`` (a station's one shared multi-stream engine), the file's SM3 is a
    stream of that engine: the chunks of every file copied at the same moment are
    hashed side by side in its SIMD lanes instead of one file per core.
    """
    try:
        # Read and write: the small-file path reads back through this same descriptor.
        out = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise _staging_error(dst, exc) from exc
    try:
        if expected_size <= chunk_size:
            total, sha, sm3 = _copy_whole(
                src_fd, out, dst, expected_size, verify_pool is not None, on_bytes, sm3_engine
            )
        else:
            total, sha, sm3 = _copy_chunked(
                src_fd, out, dst, chunk_size, sm3_pool, verify_pool, on_bytes, sm3_engine
            )
    finally:
        os.close(out)
    _check_source(src_fd, total, expected_size, expected_mtime_ns)
    return Copied(total, DigestPair.of_hex(sha, sm3), read_back=verify_pool is not None)


def _copy_whole(
    src_fd: int,
    out: int,
    dst: str | Path,
    expected_size: int,
    verify: bool,
    on_bytes: Callable[[int], None] | None,
    sm3_engine: SharedLanes | None,
) -> tuple[int, str, str]:
    """The one-chunk file: every step inline, no pool hand-off (but the shared SM3
    engine's, which hashes it beside the other files copied now). Returns size and
    digests."""
    buf = _read_listed(src_fd, expected_size)
    sha = new_hasher("sha256")
    sm3 = _sm3_hasher(sm3_engine)
    sha.update(buf)
    sm3.update(buf)
    _write_all(out, dst, buf)
    if on_bytes is not None:
        on_bytes(len(buf))
    try:
        os.fsync(out)
    except OSError as exc:
        raise _staging_error(dst, exc) from exc
    if verify:
        _read_back_whole(dst, out, buf)
    return len(buf), sha.hexdigest(), sm3.hexdigest()


def _copy_chunked(
    src_fd: int,
    out: int,
    dst: str | Path,
    chunk_size: int,
    sm3_pool: ThreadPoolExecutor,
    verify_pool: ThreadPoolExecutor | None,
    on_bytes: Callable[[int], None] | None,
    sm3_engine: SharedLanes | None,
) -> tuple[int, str, str]:
    """The chunked copy: SM3 fed from ``sm3_pool`` (hashed there, or in the shared
    engine's lanes), read-back of each stretch on ``verify_pool``."""
    stream = sm3_engine.open_stream() if sm3_engine is not None else None
    in_lanes = sm3_engine is not None and sm3_engine.in_lanes()
    sha: Hasher | None = new_hasher("sha256")
    if stream is not None and in_lanes and sm3_engine is not None and sm3_engine.sha256:
        # 16 lanes hash SHA-256 about twice as fast per core as the SHA extensions: the
        # file's SHA-256 goes with its SM3, fed the same chunks on the SM3 thread. Only
        # for a file begun among enough others: one on its own keeps the two hashes on
        # two threads (should it end up alone, they run one after the other).
        stream.add_sha256()
        sha = None
    sm3: Hasher = stream if stream is not None else new_hasher("sm3")
    # The lanes hash several times faster than a core: a lag of one chunk is enough for
    # SM3 never to hold the copy up, and it keeps memory down with many files at once.
    # A file begun with too few others to fill them hashes on its own thread at first.
    lag = SHARED_SM3_LAG if in_lanes else SM3_LAG
    # Chunks are read into a ring of buffers, reused, rather than into a fresh ``bytes``
    # each: a new 4 MiB object is fresh memory from the kernel, and faulting in the pages
    # of every byte copied cost about a third of the copy's system time. A buffer is read
    # into again only once SM3 is done with it: SM3 holds at most ``lag`` queued chunks
    # and the one it hashes, and SHA-256 and the write are done with a chunk before the
    # next read.
    # The buffers are page-aligned, so the copy can be written past the page cache
    # (ingest/direct_io.py). Everything that may fail to open is opened before the SM3
    # thread starts, so that a failure here leaves no thread waiting for chunks.
    try:
        ring = [BUFFERS.take(chunk_size) for _ in range(lag + 2)]
        writer = DirectWriter(dst, out)
    except OSError as exc:
        raise _staging_error(dst, exc) from exc
    try:
        back = _ReadBack(dst, out, chunk_size, verify_pool) if verify_pool is not None else None
    except OSError as exc:
        writer.close()
        raise _staging_error(dst, exc) from exc
    sm3_feed = _Sm3Feed(sm3, sm3_pool, lag)
    # XXH3-128 of the recorder's bytes of the stretch not yet flushed; the read-back
    # compares the staged file's stretch with it.
    stretch = xxhash.xxh3_128() if back is not None else None
    total = synced = 0
    with _suppress_fadvise():
        os.posix_fadvise(src_fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    try:
        for turn in itertools.count():
            slot = ring[turn % len(ring)]
            try:
                n = os.readv(src_fd, [slot])
            except OSError as exc:
                raise _read_error(total, exc) from exc
            if not n:
                break
            buf = memoryview(slot)[:n]
            sm3_feed.put(buf)
            if sha is not None:
                sha.update(buf)
            if stretch is not None:
                stretch.update(buf)
            try:
                writer.write_at(buf, total)
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
                if back is not None and stretch is not None:
                    back.submit(synced, total, stretch.digest())
                    stretch.reset()
                synced = total
            if on_bytes is not None:
                on_bytes(len(buf))
        sm3_feed.finish()
        # Both digests now: the stream ends here, not after the fsync and read-back, so
        # the shared lanes stop counting (and waiting for) a file with no more chunks.
        sm3_hex = sm3.hexdigest()
        sha_hex = sha.hexdigest() if sha is not None else _lane_sha256(stream)
        try:
            os.fsync(out)
        except OSError as exc:
            raise _staging_error(dst, exc) from exc
        if back is not None and stretch is not None:
            back.submit(synced, total, stretch.digest())
            back.finish(total)
    finally:
        sm3_feed.close()
        writer.close()
        if back is not None:
            back.close()  # before the caller closes ``out``, which the read-back reads
    # Only a copy that ended well gives its chunks back: after a failure SM3's thread may
    # still be hashing one of them.
    BUFFERS.give(ring)
    return total, sha_hex, sm3_hex


def _lane_sha256(stream: LaneStream | None) -> str:
    if stream is None:
        raise RuntimeError("no SHA-256 context for this copy")
    return stream.sha256_hexdigest()


def _sm3_hasher(engine: SharedLanes | None) -> Hasher:
    return engine.open_stream() if engine is not None else new_hasher("sm3")


def _read_listed(fd: int, size: int) -> bytes:
    """The ``size`` bytes listed for the file, in one read when the filesystem allows.

    One byte more is asked for: a file that grew since it was listed returns it, and the
    source check refuses the copy without reading the rest. Fewer bytes are read on until
    the end of the file (a short read on some filesystems, or a file that shrank); the
    source check after the copy compares size and mtime with the listing either way.
    """
    parts: list[bytes] = []
    got = 0
    while True:
        try:
            buf = os.read(fd, size + 1 - got)
        except OSError as exc:
            raise _read_error(got, exc) from exc
        parts.append(buf)
        got += len(buf)
        if got >= size or not buf:
            return parts[0] if len(parts) == 1 else b"".join(parts)


def _read_error(done: int, exc: OSError) -> SourceVanished:
    return SourceVanished(
        Msg(READ_ERROR, done=done, error=exc.strerror),
        hint=Msg(CHECK_CABLE),
    )


def _write_all(out: int, dst: str | Path, buf: bytes | memoryview) -> None:
    try:
        view = memoryview(buf)
        while view:
            n = os.write(out, view)
            view = view[n:]
    except OSError as exc:
        raise _staging_error(dst, exc) from exc


def _check_source(src_fd: int, total: int, expected_size: int, expected_mtime_ns: int) -> None:
    """Refuse the copy when the recorder's file is not what was listed and read."""
    st = os.fstat(src_fd)
    if total < expected_size or st.st_size < expected_size:
        raise SourceVanished(
            Msg(
                SHRANK_WHILE_READ,
                expected=expected_size,
                got=total,
            ),
            hint=Msg(DOCK_AGAIN),
        )
    if total != st.st_size or st.st_size != expected_size or st.st_mtime_ns != expected_mtime_ns:
        raise SourceChanged(
            Msg(
                CHANGED_WHILE_READ,
                before=expected_size,
                after=st.st_size,
            )
        )


# Chunks SM3 may fall behind the copy: enough that it never waits while the copy
# stalls in a write or an fdatasync (SM3 is the slowest step and cannot be split), few
# enough that memory stays a few chunks per file whatever the file's size.
SM3_LAG = 4
SHARED_SM3_LAG = 1


class _Sm3Feed:
    """Feeds chunks, in order, to one SM3 consumer running on ``pool`` for this file.

    The pool must have a thread for every file copied at once (the station sizes it
    so); a file whose consumer waits for a thread only waits, it does not deadlock.
    """

    def __init__(self, sm3: Any, pool: ThreadPoolExecutor, lag: int) -> None:
        self.sm3 = sm3
        self.chunks: queue.Queue[bytes | memoryview | None] = queue.Queue(maxsize=lag)
        self.done = pool.submit(self._consume)
        self.closed = False

    def _consume(self) -> None:
        try:
            while (buf := self.chunks.get()) is not None:
                self.sm3.update(buf)
        except BaseException:
            # Keep emptying the queue until the copy closes it, so that the copying
            # thread never waits on a full queue; it sees the error at its next put.
            while self.chunks.get() is not None:
                pass
            raise

    def put(self, buf: bytes | memoryview) -> None:
        if self.done.done():
            self.done.result()  # the hashing failed: raise its error, copy no further
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


# Bytes read back per pread: smaller than a chunk, so the read-back holds little memory
# (a 1 MiB piece costs about 50 µs of XXH3 here; the syscalls are few either way).
READ_BACK_PIECE = 1 << 20


class _ReadBack:
    """Reads flushed stretches of a staging file back on a pool thread and compares each
    with the XXH3-128 of the recorder's bytes written there.

    One stretch at a time per file (each waits for the one before), so a file's read-back
    holds one piece in memory however far it lags; a stretch found different fails the
    copy at the next flush, naming its byte range, rather than at the end.
    """

    def __init__(
        self, path: str | Path, fd: int, chunk_size: int, pool: ThreadPoolExecutor
    ) -> None:
        self.path = path
        self.piece = min(chunk_size, READ_BACK_PIECE)
        # Past the page cache where the filesystem allows, else through the copy's own
        # descriptor (pread does not move its offset). Stretches are read one at a time.
        self.reader = DirectReader(path, fd, self.piece)
        self.fd = fd
        self.pool = pool
        self.pending: list[Future[None]] = []

    def submit(self, start: int, end: int, expected: bytes) -> None:
        still: list[Future[None]] = []
        for done in self.pending:
            if done.done():
                done.result()  # raises the mismatch of an earlier stretch
            else:
                still.append(done)
        self.pending = still
        if end > start:
            before = self.pending[-1] if self.pending else None
            self.pending.append(self.pool.submit(self._check, before, start, end, expected))

    def _check(self, before: Future[None] | None, start: int, end: int, expected: bytes) -> None:
        if before is not None:
            # Submitted earlier, so already running on another thread (or cancelled).
            before.result()
        _read_back_stretch(self.path, self.reader, start, end, self.piece, expected)

    def finish(self, written: int) -> None:
        for pending in self.pending:
            pending.result()
        self.pending = []
        # The stretches cover what was written; bytes beyond it would be stored too.
        size = os.fstat(self.fd).st_size
        if size != written:
            raise StagingReadBackMismatch(
                Msg(
                    STAGED_LENGTH,
                    path=self.path,
                    size=size,
                    written=written,
                ),
                hint=Msg(CHECK_DISK),
            )

    def close(self) -> None:
        # The copy failed (or finished): stretches not started are not worth reading, and
        # those under way must end before the caller closes the descriptor they read.
        for pending in self.pending:
            pending.cancel()
        futures.wait(self.pending)
        self.pending = []
        self.reader.close(reuse=True)  # no stretch is being read any more


def _read_back_whole(path: str | Path, fd: int, written: bytes) -> None:
    """Read the staged file of one chunk back and compare it with ``written`` byte for
    byte: exact, and cheaper than hashing both (each XXH3 call over 64 KiB would also let
    go of the GIL, and on a busy station getting it back costs up to a switch interval)."""
    # One byte more than was written: a longer file is a difference too.
    back = os.pread(fd, len(written) + 1, 0)
    while len(back) < len(written):  # a short read (some filesystems): read on
        more = os.pread(fd, len(written) + 1 - len(back), len(back))
        if not more:
            break
        back += more
    if len(back) < len(written):
        raise StagingReadBackMismatch(
            Msg(
                READ_BACK_SHORT,
                path=path,
                got=len(back),
                written=len(written),
            ),
            hint=Msg(CHECK_DISK),
        )
    if back != written:
        pairs = enumerate(zip(back, written, strict=False))
        first = next((i for i, (a, b) in pairs if a != b), len(written))
        raise StagingReadBackMismatch(
            Msg(
                READ_BACK_DIFFERS,
                path=path,
                end=len(written),
                first=first,
            ),
            hint=Msg(CHECK_DISK_HEALTH),
        )


def _read_back_stretch(
    path: str | Path, reader: DirectReader, start: int, end: int, piece: int, expected: bytes
) -> None:
    """Read bytes ``start``–``end`` of the staged file back; raise unless their XXH3-128
    is ``expected``, that of the recorder's bytes written there."""
    back = xxhash.xxh3_128()
    offset = start
    while offset < end:
        try:
            buf = reader.read(offset, min(piece, end - offset))
        except OSError as exc:
            # The disk could not give the bytes back (EIO on a bad block): the copy is
            # not verified and is made again, as for bytes that read back different.
            raise StagingReadBackMismatch(
                Msg(READ_BACK_FAILED, path=path, error=exc.strerror),
                hint=Msg(CHECK_DISK_HEALTH),
            ) from exc
        if not buf:
            raise StagingReadBackMismatch(
                Msg(
                    READ_BACK_SHORT,
                    path=path,
                    got=offset,
                    written=end,
                ),
                hint=Msg(CHECK_DISK),
            )
        back.update(buf)
        offset += len(buf)
    actual = back.digest()
    if actual != expected:
        raise StagingReadBackMismatch(
            Msg(
                READ_BACK_STRETCH_DIFFERS,
                path=path,
                start=start,
                end=end,
                actual=actual.hex()[:16],
                expected=expected.hex()[:16],
            ),
            hint=Msg(CHECK_DISK_HEALTH),
        )


def _staging_error(dst: str | Path, exc: OSError) -> OffloadError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(
            Msg(DISK_FULL, path=dst),
            hint=Msg(FREE_SPACE),
        )
    return OffloadError(Msg(CANNOT_WRITE, path=dst, error=exc.strerror))


class _suppress_fadvise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)  # type: ignore[arg-type]
