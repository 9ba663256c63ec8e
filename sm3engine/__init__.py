"""SM3 and SHA-256 at the hardware's speed: the C engine, or hashlib when it is missing.

* :func:`new` — an incremental context like ``hashlib.new("sm3")`` for one stream;
  :func:`new_sha256` — the same for SHA-256 (like ``hashlib.sha256()``).
* :func:`update_many` — feed one chunk to each of many contexts; the engine hashes the
  streams side by side, one per SIMD lane (16 with AVX-512, 8 with AVX2), refilling a
  lane as soon as its stream's chunk ends. SM3 and SHA-256 contexts may be mixed in one
  call: each hash's streams go through its own lanes, one hash after the other.
* :func:`hash_many` — digests of many whole buffers, side by side.
* :func:`hash_batch` — digests of many small messages cut from one buffer by offsets,
  returned in one buffer: about a microsecond of Python per message (a call, an object)
  would cancel the lanes' gain.

A single stream cannot be split across lanes (each block depends on the last), so the
gain comes from hashing many streams at once. ``LIUHEN_SM3_PATH=avx512|avx2|scalar``
forces a path for both hashes; :func:`set_path` changes it in a running process (tests,
benchmarks).

SHA-256 where the CPU has the SHA extensions (SHA-NI): a single stream, and the
``scalar`` path, use them (as fast as OpenSSL's); the ``avx512`` path's 16 lanes are
about twice that per core, but with fewer than 8 streams left SHA-NI hashes them one
after another, faster; on the ``avx2`` path SHA-NI beats 8 lanes, so SHA-256 goes
through SHA-NI one stream at a time there. :func:`set_sha_ni` (``False``) makes the
engine hash SHA-256 as on a CPU without SHA-NI (the tests check that code too).
"""

from __future__ import annotations

import hashlib
import itertools
import warnings
from collections.abc import Callable, Sequence
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
    "new_sha256",
    "set_path",
    "set_sha_ni",
    "sha256_native",
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


def new_sha256(data: Buffer = b"") -> SM3Hasher:
    """A fresh SHA-256 context, fed ``data`` first (hashlib's without the engine)."""
    if _c is not None:
        return _c.SHA256(data)
    return hashlib.sha256(data)


def update_many(hashers: Sequence[SM3Hasher], chunks: Sequence[Buffer]) -> None:
    """``hashers[i].update(chunks[i])`` for every i, the streams hashed side by side.

    The hashers must come from :func:`new` or :func:`new_sha256` (both kinds may be
    mixed) and be distinct; the GIL is released meanwhile.
    """
    if len(hashers) != len(chunks):
        raise ValueError("update_many() needs one chunk per hasher")
    if _c is not None:
        _c.update_many(hashers, chunks)
        return
    for h, chunk in zip(hashers, chunks, strict=True):
        h.update(chunk)


def _one(name: str) -> Callable[[Buffer], SM3Hasher]:
    if name == "sm3":
        return _slow
    if name == "sha256":
        return hashlib.sha256
    raise ValueError(f"unknown hash {name} (sm3 or sha256)")


def hash_many(buffers: Sequence[Buffer], name: str = "sm3") -> list[bytes]:
    """The digest of each buffer: SM3, or SHA-256 with ``name="sha256"``."""
    if _c is not None:
        return _c.hash_many(buffers, name)
    new_one = _one(name)
    return [new_one(b).digest() for b in buffers]


def hash_batch(data: Buffer, offsets: Sequence[int], name: str = "sm3") -> bytes:
    """The digests (SM3, or ``name="sha256"``) of ``data[offsets[i]:offsets[i + 1]]``
    (n + 1 offsets), concatenated: digest i is bytes ``32 * i`` to ``32 * i + 32`` of the
    result. ``offsets`` may be a sequence of ints; ``array("q")`` (8-byte integers, read
    as one buffer) is faster."""
    if _c is not None:
        return _c.hash_batch(data, offsets, name)
    new_one = _one(name)
    offs = list(offsets)
    view = memoryview(data).cast("B")
    if not offs or any(b < a for a, b in itertools.pairwise(offs)):
        raise ValueError("offsets must be ascending and within the buffer")
    if offs[0] < 0 or offs[-1] > len(view):
        raise ValueError("offsets must be ascending and within the buffer")
    return b"".join(new_one(view[a:b]).digest() for a, b in itertools.pairwise(offs))


def supported_paths() -> list[str]:
    """The paths this CPU runs, best first (``["hashlib"]`` without the engine)."""
    return _c.supported_paths() if _c is not None else ["hashlib"]


def set_path(name: str) -> None:
    """Hash on ``name`` (avx512, avx2 or scalar) from now on, in this process."""
    if _c is None:
        raise RuntimeError(f"the SM3 engine is not available ({_why})")
    _c.set_path(name)


def set_sha_ni(on: bool) -> bool:
    """Hash SHA-256 with SHA-NI where the CPU has it (the default), or, ``False``, as on a
    CPU without it (portable single-stream code, AVX2 lanes): for tests and benchmarks.
    Returns whether SHA-NI is now used."""
    if _c is None:
        raise RuntimeError(f"the SM3 engine is not available ({_why})")
    return _c.set_sha_ni(on)


def sha256_native() -> bool:
    """Whether one SHA-256 stream in the engine runs on the CPU's SHA extensions (as fast
    as OpenSSL's); without them the engine's portable code is slower than hashlib's for
    a lone stream, and SHA-256 gains only from many streams at once."""
    return _c is not None and _c.sha256_instructions() == "sha-ni"


def lanes() -> int:
    """Streams hashed side by side on the path in use (1: one after another)."""
    return _c.lanes() if _c is not None else 1


def engine_info() -> dict[str, str]:
    """Which engine hashes SM3 and SHA-256, and on which instruction set (for ``liuhen
    doctor``, which shows ``instructions``; ``sha256`` is the SHA-256 part alone)."""
    if _c is None:
        return {
            "engine": "hashlib",
            "path": "hashlib",
            "instructions": "OpenSSL",
            "sm3": "OpenSSL",
            "sha256": "OpenSSL",
            "sha256_isa": "OpenSSL",
            "why": _why,
        }
    path = _c.get_path()
    sm3 = {
        "avx512": "AVX-512 (16 lanes)",
        "avx2": "AVX2 (8 lanes)",
        "scalar": f"scalar ({_c.scalar_instructions()})",
    }[path]
    one = _c.sha256_instructions()
    single = "SHA-NI" if one == "sha-ni" else f"scalar ({one})"
    sha256 = {
        "avx512": "16 lanes, fewer than 8 streams on SHA-NI"
        if one == "sha-ni"
        else f"16 lanes, single streams on {single}",
        "avx2": "SHA-NI" if one == "sha-ni" else f"8 lanes, single streams on {single}",
        "scalar": single,
    }[path]
    # The instruction sets alone (no prose), for ``liuhen doctor``'s translated line.
    sha256_isa = {
        "avx512": f"{sm3}, SHA-NI" if one == "sha-ni" else sm3,
        "avx2": "SHA-NI" if one == "sha-ni" else sm3,
        "scalar": single,
    }[path]
    return {
        "engine": "sm3engine",
        "path": path,
        "instructions": f"{sm3}; SHA-256: {sha256}",
        "sm3": sm3,
        "sha256": sha256,
        "sha256_isa": sha256_isa,
        "why": "",
    }


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
