"""Hash many files with several algorithms on every core, each file read once.

Why it is built this way (see docs/performance.md, bench/verify):

* hashlib releases the GIL while it hashes a buffer larger than 2 KiB, so threads run
  digests truly in parallel; processes would only add pickling and start-up cost.
* A large file gets one job per algorithm, each reading it into its own reused buffer:
  the slow SM3 of one big file does not hold up SHA-256 and SHA-512 of the same file,
  which run on the other core meanwhile (the second read comes from the page cache; a
  copy costs a few per cent of a hash).
* Nothing is memory-mapped: a mapped file that someone truncates kills the process with
  SIGBUS, with no report. A read of a shrunken file just comes back short, and the file
  is named as changed during verification. Reads use ``readinto`` on one buffer per job,
  so memory does not grow with file size.
* A small file is one job: its bytes read once, every algorithm over the same buffer.
  Per-file overhead, not hashing, dominates there; splitting it would only add hand-offs.
* SM3 goes through 留痕's engine (sm3engine), which hashes one stream per SIMD lane
  (16 with AVX-512, 8 with AVX2) but cannot spread one stream over lanes. So SM3 is
  hashed many files at a time: a group of small files hashes its buffers in one
  multi-stream call, and big files' SM3 jobs are grouped, a lane's worth of files per
  job, each file read in chunks that are fed to the lanes side by side.
* Jobs are started longest first (by an estimate of their CPU cost per algorithm), the
  classic LPT rule, so that one big SM3 job started last does not leave a core idle
  at the end.

Sources are either a file or a byte range of a file (a member of an uncompressed tar),
each with the size it had when the bag was listed. A job that cannot read its source,
or finds it changed, records that for the file; the others go on.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import sm3engine
from storage.digest import Hasher, new_hasher

# Files at least this big get one job per algorithm, each reading the file itself.
SPLIT_MIN = 4 << 20
# Bytes read (and hashed by every algorithm of a job) at a time: small enough that the
# second algorithm finds them still in the CPU cache, big enough that per-call overhead
# is noise.
READ_CHUNK = 1 << 20
# Relative CPU cost per byte (measured on the reference machine: SHA-256 with SHA-NI
# ≈ 1.4 GB/s, SHA-512 ≈ 0.65, MD5 ≈ 0.6, SM3 ≈ 0.3); only the order matters.
_COST = {
    "sha1": 0.7,
    "sha256": 0.75,
    "sha224": 0.75,
    "sha512": 1.6,
    "sha384": 1.6,
    "md5": 1.6,
    "sm3": 3.4,
}
_FILE_OVERHEAD = 40_000
GROUP_FILES = 16
LOCKSTEP_SLICE = 16 << 20
GROUP_BYTES = 4 << 20  # bytes-equivalent of opening and reading one file


def hash_names() -> set[str]:
    """Algorithm names this module can compute (manifest spelling)."""
    names = {n.lower() for n in hashlib.algorithms_available if n.isidentifier()}
    names.add("sm3")
    return names


def make_hasher(algorithm: str) -> Hasher:
    if algorithm == "sm3":
        return new_hasher("sm3")
    return hashlib.new(algorithm)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# slots: a bag may hold up to bagparse.MAX_FILES items, each with a source and an outcome.
@dataclass(frozen=True, slots=True)
class FileSource:
    path: Path | str
    size: int


@dataclass(frozen=True, slots=True)
class SliceSource:
    """``size`` bytes at ``offset`` of a file (a member of an uncompressed tar)."""

    path: Path
    offset: int
    size: int


class SourceChanged(Exception):
    """The file no longer has the size it was listed with: changed during verification."""


Source = FileSource | SliceSource


@dataclass(frozen=True, slots=True)
class Item:
    key: str  # what the result is reported under (a path inside the bag)
    source: Source
    algorithms: tuple[str, ...]


@dataclass(slots=True)
class Outcome:
    digests: dict[str, str]
    error: str | None = None
    size: int | None = None  # bytes actually hashed
    changed: bool = False  # the error is "changed during verification", not "cannot read"


def _cost(size: int, algorithms: Iterable[str]) -> float:
    return sum(_COST.get(a, 1.6) for a in algorithms) * size + _FILE_OVERHEAD


def work_units(items: Sequence[Item]) -> int:
    """Total of what ``progress`` callbacks will report: bytes × algorithms, per item."""
    return sum(it.source.size * len(it.algorithms) for it in items)


def hash_items(
    items: Sequence[Item],
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    split_max: int | None = None,
) -> dict[str, Outcome]:
    """Digests of every item, for every algorithm it asks for, computed in parallel."""
    return start_hashing(items, workers=workers, progress=progress, split_max=split_max).result()


class Pending:
    """Hashing under way on a thread pool; :meth:`result` waits for all of it.

    The caller's thread is free meanwhile: the verifier checks signatures and the custody
    excerpt (work that holds the GIL) while the pool hashes (work that releases it).
    """

    def __init__(
        self,
        pool: ThreadPoolExecutor | None,
        futures: list[Future[None]],
        results: dict[str, Outcome],
    ) -> None:
        self._pool, self._futures, self._results = pool, futures, results

    def result(self) -> dict[str, Outcome]:
        try:
            for f in self._futures:
                f.result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
        return self._results


def default_split_max() -> int:
    """Largest file hashed as one job per algorithm: a quarter of physical memory.

    Per-algorithm jobs read the same mapping at different speeds (SHA-256 runs ahead of
    SM3); a file much bigger than memory would have its pages evicted between them and be
    read from disk once per algorithm.
    """
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 1 << 30


def start_hashing(
    items: Sequence[Item],
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    split_max: int | None = None,
) -> Pending:
    workers = workers or default_workers()
    results: dict[str, Outcome] = {it.key: Outcome({}) for it in items}
    lock = threading.Lock()
    jobs: list[tuple[float, Callable[[], None]]] = []

    def record(
        key: str, digests: dict[str, str], error: str | None, size: int, changed: bool = False
    ) -> None:
        with lock:
            out = results[key]
            out.digests.update(digests)
            out.size = size
            if error and not out.error:
                out.error, out.changed = error, changed
        if progress is not None:
            progress(size * max(1, len(digests)))  # in work units, see work_units()

    small: list[Item] = []
    big_sm3: list[Item] = []  # big files whose SM3 is hashed a lane's worth at a time
    limit = split_max if split_max is not None else default_split_max()
    for it in items:
        size = it.source.size
        if size > limit and len(it.algorithms) > 1:
            # Too big to trust the page cache to keep it between separate passes: one
            # job reads each slice once and hashes it on two threads in lockstep.
            jobs.append(
                (_cost(size, it.algorithms) / 2, _job([it], it.algorithms, record, lockstep=True))
            )
        elif size >= SPLIT_MIN and "sm3" in it.algorithms:
            big_sm3.append(it)
            for alg in it.algorithms:
                if alg != "sm3":
                    jobs.append((_cost(size, [alg]), _job([it], (alg,), record)))
        elif size >= SPLIT_MIN and len(it.algorithms) > 1:
            for alg in it.algorithms:
                jobs.append((_cost(size, [alg]), _job([it], (alg,), record)))
        elif size >= SPLIT_MIN:
            jobs.append((_cost(size, it.algorithms), _job([it], it.algorithms, record)))
        else:
            small.append(it)
    # Small files go in groups: one hand-off to the pool per group, not per file (a
    # thread hand-off costs about as much as hashing a few kB).
    group: list[Item] = []
    group_bytes = 0
    for it in sorted(small, key=lambda i: -i.source.size):
        group.append(it)
        group_bytes += it.source.size
        if len(group) >= GROUP_FILES or group_bytes >= GROUP_BYTES:
            jobs.append(
                (sum(_cost(i.source.size, i.algorithms) for i in group), _job(group, None, record))
            )
            group, group_bytes = [], 0
    if group:
        jobs.append(
            (sum(_cost(i.source.size, i.algorithms) for i in group), _job(group, None, record))
        )
    jobs.extend(_sm3_stream_jobs(big_sm3, record))
    # Longest first: list scheduling in this order keeps the cores evenly busy to the end.
    jobs.sort(key=lambda j: -j[0])
    if not jobs:
        return Pending(None, [], results)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash")
    return Pending(pool, [pool.submit(job) for _, job in jobs], results)


Recorder = Callable[..., None]


def _job(
    group: list[Item], algorithms: tuple[str, ...] | None, record: Recorder, lockstep: bool = False
) -> Callable[[], None]:
    """Hash each item of ``group`` with ``algorithms`` (None: the item's own)."""
    if algorithms is None and sum("sm3" in it.algorithms for it in group) > 1:
        return _group_job(group, record)

    def run() -> None:
        buffer = bytearray(min(READ_CHUNK, max((it.source.size for it in group), default=0)) or 1)
        for it in group:
            hashers = {a: make_hasher(a) for a in (algorithms or it.algorithms)}
            try:
                n = _feed(it.source, hashers, buffer, lockstep)
            except SourceChanged as exc:
                record(it.key, {}, str(exc), 0, True)
                continue
            except OSError as exc:
                record(it.key, {}, f"cannot read: {exc.strerror or exc}", 0)
                continue
            record(it.key, {a: h.hexdigest() for a, h in hashers.items()}, None, n)

    return run


def _group_job(group: list[Item], record: Recorder) -> Callable[[], None]:
    """Small files: each read whole into its own buffer, every algorithm but SM3 over it,
    then the SM3 of all of them in one multi-stream call (the files side by side in the
    engine's lanes). A group holds at most GROUP_BYTES plus one file below SPLIT_MIN."""

    def run() -> None:
        read: list[tuple[Item, bytearray, dict[str, str]]] = []
        for it in group:
            buffer = bytearray(it.source.size)
            try:
                _feed(it.source, {}, buffer, False, load=True)
            except SourceChanged as exc:
                record(it.key, {}, str(exc), 0, True)
                continue
            except OSError as exc:
                record(it.key, {}, f"cannot read: {exc.strerror or exc}", 0)
                continue
            digests = {}
            for alg in it.algorithms:
                if alg != "sm3":
                    h = make_hasher(alg)
                    h.update(memoryview(buffer))
                    digests[alg] = h.hexdigest()
            read.append((it, buffer, digests))
        wanted = [(it, buf) for it, buf, _ in read if "sm3" in it.algorithms]
        sm3 = sm3engine.hash_many([buf for _, buf in wanted])
        by_key = {it.key: raw.hex() for (it, _), raw in zip(wanted, sm3, strict=True)}
        for it, buffer, digests in read:
            if it.key in by_key:
                digests["sm3"] = by_key[it.key]
            record(it.key, digests, None, len(buffer))

    return run


def _sm3_stream_jobs(big: list[Item], record: Recorder) -> list[tuple[float, Callable[[], None]]]:
    """Big files' SM3, a lane's worth of files per job, files of like size together (a
    lane whose file ends early idles until the job's longest file ends)."""
    per_job = max(2, sm3engine.lanes())
    ordered = sorted(big, key=lambda i: -i.source.size)
    jobs: list[tuple[float, Callable[[], None]]] = []
    for start in range(0, len(ordered), per_job):
        part = ordered[start : start + per_job]
        # The files run side by side, at about half a lane's count times one stream's speed.
        cost = sum(_cost(i.source.size, ["sm3"]) for i in part) / max(1, per_job // 2)
        jobs.append((cost, _stream_job(part, record)))
    return jobs


def _stream_job(part: list[Item], record: Recorder) -> Callable[[], None]:
    def run() -> None:
        streams: list[tuple[Item, int, int, sm3engine.SM3Hasher]] = []  # fd, bytes done
        buffers = [bytearray(READ_CHUNK) for _ in part]
        try:
            for it in part:
                opened = _open_source(it, record)
                if opened is not None:
                    streams.append((it, opened, 0, sm3engine.new()))
            while streams:
                views, live = [], []
                for (it, fd, done, h), buf in zip(streams, buffers, strict=False):
                    n = min(READ_CHUNK, it.source.size - done)
                    try:
                        _read_exactly(fd, memoryview(buf)[:n], _offset(it.source) + done, _what(it))
                    except (SourceChanged, OSError) as exc:
                        _record_failure(it, exc, record)
                        os.close(fd)
                        continue
                    views.append(memoryview(buf)[:n])
                    live.append((it, fd, done + n, h))
                sm3engine.update_many([h for *_, h in live], views)
                streams = []
                for it, fd, done, h in live:
                    if done < it.source.size:
                        streams.append((it, fd, done, h))
                        continue
                    _finish_stream(it, fd, h, record)
        finally:
            for _, fd, _, _ in streams:
                os.close(fd)

    return run


def _offset(source: Source) -> int:
    return source.offset if isinstance(source, SliceSource) else 0


def _what(it: Item) -> str:
    return "the tar" if isinstance(it.source, SliceSource) else "the file"


def _open_source(it: Item, record: Recorder) -> int | None:
    try:
        fd = os.open(it.source.path, os.O_RDONLY)
    except OSError as exc:
        _record_failure(it, exc, record)
        return None
    try:
        _check_length(fd, _offset(it.source) + it.source.size, _what(it), "before it was read")
    except SourceChanged as exc:
        os.close(fd)
        _record_failure(it, exc, record)
        return None
    return fd


def _finish_stream(it: Item, fd: int, h: sm3engine.SM3Hasher, record: Recorder) -> None:
    try:
        _check_length(fd, _offset(it.source) + it.source.size, _what(it), "while it was read")
    except SourceChanged as exc:
        _record_failure(it, exc, record)
        return
    finally:
        os.close(fd)
    record(it.key, {"sm3": h.hexdigest()}, None, it.source.size)


def _record_failure(it: Item, exc: OSError | SourceChanged, record: Recorder) -> None:
    if isinstance(exc, SourceChanged):
        record(it.key, {}, str(exc), 0, True)
    else:
        record(it.key, {}, f"cannot read: {exc.strerror or exc}", 0)


def _feed(
    source: Source,
    hashers: dict[str, Hasher],
    buffer: bytearray,
    lockstep: bool,
    *,
    load: bool = False,
) -> int:
    """Hash exactly ``source.size`` bytes; SourceChanged when the file is not that size.
    ``load``: read them all into ``buffer`` (exactly that size) instead."""
    path: Path | str = source.path
    offset, what = 0, "the file"
    if isinstance(source, SliceSource):
        offset, what = source.offset, "the tar"
    with open(path, "rb", buffering=0) as f:
        fd = f.fileno()
        _check_length(fd, offset + source.size, what, "before it was read")
        if load:
            with memoryview(buffer) as view:
                _read_exactly(fd, view, offset, what)
        elif lockstep and len(hashers) > 1:
            _feed_lockstep(fd, offset, source.size, hashers, what)
        else:
            _feed_plain(fd, offset, source.size, hashers, buffer, what)
        # Grown or shrunk while being read: the bytes hashed may not be the file's bytes.
        _check_length(fd, offset + source.size, what, "while it was read")
    return source.size


def _check_length(fd: int, needed: int, what: str, when: str) -> None:
    length = os.fstat(fd).st_size
    if what == "the tar" and length >= needed:
        return  # a member's bytes are all there; the tar may hold more after them
    if length != needed:
        raise SourceChanged(
            f"changed during verification: {what} was {needed} bytes when "
            f"the bag was listed, {length} {when} (truncated or written to "
            "by someone else; verify a copy nobody is writing to)"
        )


def _read_exactly(fd: int, view: memoryview, position: int, what: str) -> None:
    """Fill ``view`` from ``position``; a short read means the file shrank under us."""
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], position + done)
        if n == 0:
            raise SourceChanged(
                f"changed during verification: {what} ended at byte "
                f"{position + done}, before the {len(view)} bytes expected "
                "there (truncated while being read)"
            )
        done += n


def _feed_plain(
    fd: int, offset: int, size: int, hashers: dict[str, Hasher], buffer: bytearray, what: str
) -> None:
    view = memoryview(buffer)
    try:
        for start in range(0, size, len(buffer)):
            part = view[: min(len(buffer), size - start)]
            _read_exactly(fd, part, offset + start, what)
            for h in hashers.values():
                h.update(part)
            part.release()
    finally:
        view.release()


def _feed_lockstep(fd: int, offset: int, size: int, hashers: dict[str, Hasher], what: str) -> None:
    """The costliest algorithm on a helper thread, the others here, both over the same
    slice before the next is read, so that each slice of a file bigger than the page
    cache holds is read from disk once."""
    slow = max(hashers, key=lambda a: _COST.get(a, 1.6))
    rest = [h for a, h in hashers.items() if a != slow]
    buffer = bytearray(min(LOCKSTEP_SLICE, size) or 1)
    view = memoryview(buffer)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash-lane") as lane:
            for start in range(0, size, LOCKSTEP_SLICE):
                part = view[: min(LOCKSTEP_SLICE, size - start)]
                _read_exactly(fd, part, offset + start, what)
                pending = lane.submit(hashers[slow].update, part)
                for h in rest:
                    h.update(part)
                pending.result()
                part.release()
    finally:
        view.release()
