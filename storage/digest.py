"""Digests as values: a frozen ``Digest(algorithm, hex)`` travels through the code."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import sm3engine
from config.i18n import _ as gettext  # `_` is this module's throwaway name
from sm3engine import Buffer

_HEX_LENGTH = {"sha256": 64, "sm3": 64, "sha512": 128}
_HEX = re.compile(r"^[0-9a-f]+$")
READ_SIZE = 1 << 20


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        want = _HEX_LENGTH.get(self.algorithm)
        if want is None:
            raise ValueError(
                gettext("unknown digest algorithm {name}").format(name=repr(self.algorithm))
            )
        if len(self.hex) != want or not _HEX.match(self.hex):
            raise ValueError(
                gettext("not a {algorithm} digest: {value}").format(
                    algorithm=self.algorithm, value=repr(self.hex)
                )
            )

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def b64(self) -> str:
        """Base64 of the raw digest, the form S3 checksum headers take."""
        return base64.b64encode(bytes.fromhex(self.hex)).decode("ascii")

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algorithm:hex``."""
        alg, _, hexpart = text.partition(":")
        return cls(alg, hexpart.lower())


@dataclass(frozen=True, slots=True)
class DigestPair:
    """A recording's two digests, taken in one read: SHA-256 (its identity and object key)
    and SM3 (the national standard's), carried together from the read to the catalog."""

    sha256: Digest
    sm3: Digest

    def __post_init__(self) -> None:
        if self.sha256.algorithm != "sha256" or self.sm3.algorithm != "sm3":
            raise ValueError(
                gettext("not a SHA-256 and SM3 pair: {sha256}, {sm3}").format(
                    sha256=self.sha256, sm3=self.sm3
                )
            )

    @classmethod
    def of_hex(cls, sha256: str, sm3: str) -> DigestPair:
        return cls(Digest("sha256", sha256), Digest("sm3", sm3))


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hasher. SM3 comes from 留痕's engine (sm3engine), else from OpenSSL."""
    if algorithm == "sm3":
        if sm3engine.AVAILABLE:
            return sm3engine.new()
        try:
            return hashlib.new("sm3")
        except ValueError:  # OpenSSL built without SM3: fall back to `cryptography`
            return _CryptographySM3()
    if algorithm not in _HEX_LENGTH:
        raise ValueError(gettext("unknown digest algorithm {name}").format(name=repr(algorithm)))
    return hashlib.new(algorithm)


class _CryptographySM3:
    def __init__(self) -> None:
        from cryptography.hazmat.primitives import hashes

        self._h = hashes.Hash(hashes.SM3())

    def update(self, data: bytes | memoryview, /) -> None:
        self._h.update(bytes(data))

    def hexdigest(self) -> str:
        return self._h.finalize().hex()


def digest_bytes(data: bytes, algorithm: str = "sha256") -> Digest:
    h = new_hasher(algorithm)
    h.update(data)
    return Digest(algorithm, h.hexdigest())


def digest_stream(stream: BinaryIO, algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, Digest]:
    """Digests of everything left in ``stream``, in one pass."""
    hashers = {alg: new_hasher(alg) for alg in algorithms}
    while chunk := stream.read(READ_SIZE):
        for h in hashers.values():
            h.update(chunk)
    return {alg: Digest(alg, h.hexdigest()) for alg, h in hashers.items()}


# sm3_many reads this much of each file at a time, for twice as many files as the engine
# has lanes: memory stays bounded (32 MiB with AVX-512) and a lane whose file ends is
# refilled from the next file without waiting for the others.
MANY_CHUNK = 1 << 20

# SharedLanes: chunks below this are hashed by the calling thread (a hand-off costs more).
SHARED_MIN = 64 << 10
# SharedLanes: while fewer chunks wait than there are lanes and streams open, the hashing
# thread waits this long at most for more. The engine hashes a part-filled batch at the
# cost of a full one, so without it the lanes ran half empty under a busy station (its
# copying threads slower than the lanes) and SM3 cost twice the CPU it needs.
SHARED_GATHER_S = 0.005

SM3Source = bytes | bytearray | memoryview | str | os.PathLike[str]


def sm3_many(sources: Sequence[SM3Source]) -> list[Digest]:
    """The SM3 digest of each source, a buffer or a file's path, hashed side by side.

    This is how to hash many things at once: SM3 cannot spread one stream over the
    engine's SIMD lanes, but it hashes one stream per lane (16 with AVX-512). A file that
    cannot be read raises OSError, as ``open`` would.
    """
    out: list[Digest | None] = [None] * len(sources)
    buffers = [
        (i, s) for i, s in enumerate(sources) if isinstance(s, bytes | bytearray | memoryview)
    ]
    for (i, _), raw in zip(buffers, sm3engine.hash_many([b for _, b in buffers]), strict=True):
        out[i] = Digest("sm3", raw.hex())
    paths = [
        (i, s) for i, s in enumerate(sources) if not isinstance(s, bytes | bytearray | memoryview)
    ]
    for i, hexdigest in _sm3_files(paths):
        out[i] = Digest("sm3", hexdigest)
    return [d for d in out if d is not None]


def _sm3_files(paths: list[tuple[int, str | os.PathLike[str]]]) -> list[tuple[int, str]]:
    window = 2 * max(1, sm3engine.lanes())
    queue = list(reversed(paths))
    open_files: list[tuple[int, BinaryIO, sm3engine.SM3Hasher]] = []
    done: list[tuple[int, str]] = []
    try:
        while queue or open_files:
            while queue and len(open_files) < window:
                i, path = queue.pop()
                open_files.append((i, open(path, "rb", buffering=0), sm3engine.new()))  # noqa: SIM115
            chunks = [f.read(MANY_CHUNK) or b"" for _, f, _ in open_files]
            sm3engine.update_many([h for _, _, h in open_files], chunks)
            still = []
            for (i, f, h), chunk in zip(open_files, chunks, strict=True):
                if chunk:
                    still.append((i, f, h))
                else:
                    f.close()
                    done.append((i, h.hexdigest()))
            open_files = still
    finally:
        for _, f, _ in open_files:
            f.close()
    return done


class SharedLanes:
    """One multi-stream engine (SM3, and SHA-256 where it pays) shared by many threads,
    each hashing its own stream.

    Meant for a station copying several files at once (of one or several dockings): each
    copying thread opens a stream and calls :meth:`LaneStream.update` with the chunk it
    has just read; one hashing thread takes every chunk waiting at that moment, from every
    stream, and hashes them side by side in the engine's lanes (``update_many``). The
    lanes fill by themselves: while one batch is hashed the next one gathers, so no
    thread waits on a timer. ``update`` returns once its chunk is hashed, so the caller
    may reuse its buffer. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, min_streams: int = 1) -> None:
        # Below this many open streams each hashes on its caller's thread, chunk by chunk
        # (the same contexts, so a stream moves between the two as others open and end):
        # the engine hashes a batch of a few streams at the cost of a full one, on one
        # core, so one or two long recordings hash faster each on its own core.
        self.min_streams = min_streams
        # SHA-256 joins the lanes only where 16 of them beat the SHA extensions (about
        # 2 x per core) and a stream hashed alone in the engine is as fast as OpenSSL's:
        # AVX-512 with SHA-NI. Elsewhere a file's SHA-256 stays with hashlib.
        self.sha256 = sm3engine.lanes() >= 16 and sm3engine.sha256_native()
        self._cond = threading.Condition()
        self._pending: list[tuple[tuple[sm3engine.SM3Hasher, ...], Buffer, _Waiter]] = []
        self._closed = False
        self._live = 0  # streams opened and not yet finished (hexdigest) nor dropped
        self._thread = threading.Thread(target=self._run, name="hash-lanes", daemon=True)
        self._thread.start()

    def in_lanes(self) -> bool:
        """Whether chunks go to the lanes now (enough streams are open)."""
        return self._live >= self.min_streams

    def open_stream(self) -> LaneStream:
        """A stream hashing SM3 (and SHA-256 too once :meth:`LaneStream.add_sha256`)."""
        ended = [False]
        with self._cond:
            self._live += 1
        stream = LaneStream(self, (sm3engine.new(),), ended)
        weakref.finalize(stream, self._ended, ended)  # a stream dropped unfinished
        return stream

    def _ended(self, ended: list[bool]) -> None:
        with self._cond:
            if not ended[0]:
                ended[0] = True
                self._live -= 1

    def _submit(self, hashers: tuple[sm3engine.SM3Hasher, ...], chunk: Buffer) -> None:
        waiter = _Waiter()
        with self._cond:
            if self._closed:
                raise RuntimeError("these hash lanes are closed")
            self._pending.append((hashers, chunk, waiter))
            self._cond.notify()
        waiter.done.wait()
        if waiter.error is not None:
            # This batch failed (its streams' digests are lost); later batches are not
            # affected.
            raise RuntimeError("the shared hash lanes failed") from waiter.error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                # Fill the lanes: chunks of the other open streams are on their way.
                deadline = time.monotonic() + SHARED_GATHER_S
                want = min(sm3engine.lanes(), self._live)
                while len(self._pending) < want and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch, self._pending = self._pending, []
            # A stream has at most one chunk waiting (update blocks until it is hashed),
            # so every context in a batch is distinct, as update_many requires; a chunk
            # feeds each of its stream's contexts (SM3 and SHA-256 go through their own
            # lanes in the one call).
            hashers = [h for hs, _, _ in batch for h in hs]
            chunks = [c for hs, c, _ in batch for _ in hs]
            error: BaseException | None = None
            try:
                sm3engine.update_many(hashers, chunks)
            except BaseException as exc:  # handed to every caller of this batch
                error = exc
            for _, _, waiter in batch:
                waiter.error = error
                waiter.done.set()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def __enter__(self) -> SharedLanes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Waiter:
    """One chunk handed to the lanes: set when hashed, with the batch's error if any."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class LaneStream:
    """One stream of a :class:`SharedLanes`: a file's SM3 context (a Hasher) and, when
    opened so, its SHA-256 context, fed the same chunks; used by one thread at a time."""

    def __init__(
        self,
        shared: SharedLanes,
        hashers: tuple[sm3engine.SM3Hasher, ...],
        ended: list[bool] | None = None,
    ) -> None:
        self._shared, self._hashers = shared, hashers
        self._ended = ended if ended is not None else [True]
        self._fed = False

    def update(self, data: bytes | memoryview, /) -> None:
        self._fed = True
        if len(data) < SHARED_MIN or not self._shared.in_lanes():
            # Not worth a hand-off to the hashing thread, or too few streams open for
            # the lanes to beat this thread's own core.
            for h in self._hashers:
                h.update(data)
        else:
            self._shared._submit(self._hashers, data)

    def hexdigest(self) -> str:
        """The SM3 digest; the stream takes no more chunks."""
        self._shared._ended(self._ended)  # no more chunks: the lanes stop waiting for it
        return self._hashers[0].hexdigest()

    def add_sha256(self) -> None:
        """Hash SHA-256 of the stream too, in the lanes beside SM3; only before the first
        chunk, and only where :attr:`SharedLanes.sha256` says the lanes take it."""
        if not self._shared.sha256:
            raise ValueError("SHA-256 does not go through these lanes (see SharedLanes.sha256)")
        if self._fed:
            raise ValueError("SHA-256 must be added before the stream's first chunk")
        if len(self._hashers) == 1:
            self._hashers = (self._hashers[0], sm3engine.new_sha256())

    def sha256_hexdigest(self) -> str:
        """The SHA-256 digest, for a stream opened with ``sha256``."""
        if len(self._hashers) < 2:
            raise ValueError("this stream hashes SM3 only")
        self._shared._ended(self._ended)
        return self._hashers[1].hexdigest()
