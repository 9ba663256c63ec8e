"""SM3 at the hardware's speed: the C engine, or hashlib when the engine is missing.

* :func:`new` — an incremental context like ``hashlib.new("sm3")`` for one stream.
* :func:`update_many` — feed one chunk to each of many contexts; the engine hashes the
  streams side by side, one per SIMD lane (16 with AVX-512, 8 with AVX2), refilling a
  lane as soon as its stream's chunk ends.
* :func:`hash_many` — digests of many whole buffers, side by side.
* :func:`hash_batch` — digests of many small messages cut from one buffer by offsets,
  returned in one buffer: about a microsecond of Python per message (a call, an object)
  would cancel the lanes' gain.

A single stream cannot be split across lanes (each block depends on the last), so the
gain comes from hashing many streams at once. ``LIUHEN_SM3_PATH=avx512|avx2|scalar``
forces a path; :func:`set_path` changes it in a running process (tests, benchmarks).
"""

from __future__ import annotations

import hashlib
import itertools
import warnings
from collections.abc import Sequence
from typing import Protocol

# What the engine hashes (collections.abc.Buffer arrives with Python 3.12).
Buffer = bytes | bytearray | memoryview

try:
    from sm3engine import _sm3engine as _c
except ImportError as exc:  # not built (no compiler at install time) or a bad forced path
    _c = None  # type: ignore[assignment]  # checked through AVAILABLE below
    _why = str(exc)
    warnings.warn(
        f"the SM3 engine is not available ({exc}); hashing SM3 with hashlib, "
        "several times slower (reinstall 留痕 with a C compiler: bash scripts/setup.sh)",
        RuntimeWarning,
        stacklevel=2,
    )
else:
    _why = ""

# True when the C engine runs; False when SM3 falls back to hashlib.
AVAILABLE = _c is not None

__all__ = [
    "AVAILABLE",
    "SM3Hasher",
    "engine_info",
    "hash_batch",
    "hash_many",
    "lanes",
    "new",
    "set_path",
    "supported_paths",
    "update_many",
]


class SM3Hasher(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def digest_size(self) -> int: ...
    @property
    def block_size(self) -> int: ...

    def update(self, data: Buffer, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> SM3Hasher: ...


def new(data: Buffer = b"") -> SM3Hasher:
    """A fresh SM3 context, fed ``data`` first."""
    if _c is not None:
        return _c.SM3(data)
    return _slow(data)


def update_many(hashers: Sequence[SM3Hasher], chunks: Sequence[Buffer]) -> None:
    """``hashers[i].update(chunks[i])`` for every i, the streams hashed side by side.

    The hashers must come from :func:`new` and be distinct; the GIL is released meanwhile.
    """
    if len(hashers) != len(chunks):
        raise ValueError("update_many() needs one chunk per hasher")
    if _c is not None:
        _c.update_many(hashers, chunks)
        return
    for h, chunk in zip(hashers, chunks, strict=True):
        h.update(chunk)


def hash_many(buffers: Sequence[Buffer]) -> list[bytes]:
    """The SM3 digest of each buffer."""
    if _c is not None:
        return _c.hash_many(buffers)
    return [_slow(b).digest() for b in buffers]


def hash_batch(data: Buffer, offsets: Sequence[int]) -> bytes:
    """The SM3 digests of ``data[offsets[i]:offsets[i + 1]]`` (n + 1 offsets), concatenated:
    digest i is bytes ``32 * i`` to ``32 * i + 32`` of the result. ``offsets`` may be a
    sequence of ints; ``array("q")`` (8-byte integers, read as one buffer) is faster."""
    if _c is not None:
        return _c.hash_batch(data, offsets)
    offs = list(offsets)
    view = memoryview(data).cast("B")
    if not offs or any(b < a for a, b in itertools.pairwise(offs)):
        raise ValueError("offsets must be ascending and within the buffer")
    if offs[0] < 0 or offs[-1] > len(view):
        raise ValueError("offsets must be ascending and within the buffer")
    return b"".join(_slow(view[a:b]).digest() for a, b in itertools.pairwise(offs))


def supported_paths() -> list[str]:
    """The paths this CPU runs, best first (``["hashlib"]`` without the engine)."""
    return _c.supported_paths() if _c is not None else ["hashlib"]


def set_path(name: str) -> None:
    """Hash on ``name`` (avx512, avx2 or scalar) from now on, in this process."""
    if _c is None:
        raise RuntimeError(f"the SM3 engine is not available ({_why})")
    _c.set_path(name)


def lanes() -> int:
    """Streams hashed side by side on the path in use (1: one after another)."""
    return _c.lanes() if _c is not None else 1


def engine_info() -> dict[str, str]:
    """Which engine hashes SM3, and on which instruction set (for ``liuhen doctor``)."""
    if _c is None:
        return {"engine": "hashlib", "path": "hashlib", "instructions": "OpenSSL", "why": _why}
    path = _c.get_path()
    instructions = {
        "avx512": "AVX-512 (16 lanes)",
        "avx2": "AVX2 (8 lanes)",
        "scalar": f"scalar ({_c.scalar_instructions()})",
    }[path]
    return {"engine": "sm3engine", "path": path, "instructions": instructions, "why": ""}


def _slow(data: Buffer) -> SM3Hasher:
    """Without the engine: OpenSSL's SM3 through hashlib, else the `cryptography` one."""
    try:
        h: SM3Hasher = hashlib.new("sm3")
    except ValueError:  # OpenSSL built without SM3
        h = _CryptographySM3()
    h.update(data)
    return h


class _CryptographySM3:
    name, digest_size, block_size = "sm3", 32, 64

    def __init__(self, ctx: object = None) -> None:
        from cryptography.hazmat.primitives import hashes

        self._h = ctx if isinstance(ctx, hashes.Hash) else hashes.Hash(hashes.SM3())

    def update(self, data: Buffer, /) -> None:
        self._h.update(bytes(data))

    def digest(self) -> bytes:
        return self._h.copy().finalize()

    def hexdigest(self) -> str:
        return self.digest().hex()

    def copy(self) -> _CryptographySM3:
        return _CryptographySM3(self._h.copy())
