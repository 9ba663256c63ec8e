"""What the engine's tests (test_sm3_engine, test_sha256_lanes) share: which paths this
CPU runs, forcing one for a test, and the message shapes both hashes are checked on.

The tests force each path themselves (set_path), so one run covers every path the CPU
has; a path the CPU lacks is skipped with the reason, not silently replaced.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

import sm3engine

Message = bytes | memoryview
Hasher = sm3engine.SM3Hasher


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


FLAGS = _cpu_flags()
NEEDS = {"avx512": {"avx512f", "avx512bw"}, "avx2": {"avx2"}, "scalar": set()}
HAS_SHA_NI = "sha_ni" in FLAGS
PATHS = ["avx512", "avx2", "scalar"]


def skip_unless_cpu_runs(name: str) -> None:
    missing = NEEDS[name] - FLAGS
    if missing:
        pytest.skip(f"this CPU lacks {', '.join(sorted(missing))}")


def runnable(name: str) -> str:
    """The path, or scalar where the CPU lacks it (for property tests, which cannot skip)."""
    return "scalar" if NEEDS[name] - FLAGS else name


@contextmanager
def forced_path(name: str) -> Iterator[str]:
    """The engine on this path meanwhile; the path in use before is put back after."""
    before = sm3engine.engine_info()["path"]
    sm3engine.set_path(name)
    try:
        yield name
    finally:
        sm3engine.set_path(before)


def random_pool(seed: int) -> memoryview:
    """12 MB of random bytes that a test module slices its messages from."""
    return memoryview(random.Random(seed).randbytes(12 << 20))


def offsets_of(msgs: Sequence[Message]) -> list[int]:
    """hash_batch's offsets for the messages joined end to end."""
    offsets = [0]
    for m in msgs:
        offsets.append(offsets[-1] + len(m))
    return offsets


def check_many_and_batch(msgs: Sequence[Message], want: list[bytes], *name: str) -> None:
    """hash_many and hash_batch (offsets as a list and as array('q')) give `want`."""
    assert sm3engine.hash_many(msgs, *name) == want
    joined, offsets = b"".join(msgs), offsets_of(msgs)
    assert sm3engine.hash_batch(joined, offsets, *name) == b"".join(want)
    assert sm3engine.hash_batch(joined, array("q", offsets), *name) == b"".join(want)


def unaligned_messages(
    pool: memoryview, rnd: random.Random, streams: int, largest: int
) -> list[memoryview]:
    """One message up to `largest` bytes, the rest up to 256 kB (the tests stay quick), at
    odd offsets in the pool so that no lane reads aligned memory."""
    sizes = [rnd.randrange(largest)] + [rnd.randrange(256 << 10) for _ in range(streams - 1)]
    rnd.shuffle(sizes)
    return [pool[(off := rnd.randrange(1, 1 << 20) | 1) : off + n] for n in sizes]


def feed_in_random_chunks(
    hashers: Sequence[Hasher], msgs: Sequence[Message], rnd: random.Random
) -> None:
    """The messages as streams, fed through update_many in chunks of random sizes (empty,
    around a block, several MB), over several calls."""
    done = [0] * len(msgs)
    while any(d < len(m) for d, m in zip(done, msgs, strict=True)):
        chunks = []
        for i, m in enumerate(msgs):
            n = rnd.choice([0, 1, 63, 64, 65, 4095, 1 << 20, 3 << 20])
            chunks.append(m[done[i] : done[i] + n])
            done[i] = min(len(m), done[i] + n)
        sm3engine.update_many(hashers, chunks)


def check_random_streams(
    pool: memoryview,
    streams: int,
    largest: int,
    new: Callable[[], Hasher],
    ref: Callable[[Message], bytes],
    *name: str,
) -> None:
    """Random unaligned messages through hash_many, then the same messages as streams
    fed in chunks of random sizes; the random choices are seeded by `streams`."""
    rnd = random.Random(streams)
    msgs = unaligned_messages(pool, rnd, streams, largest)
    want = [ref(m) for m in msgs]
    assert sm3engine.hash_many(msgs, *name) == want
    hashers = [new() for _ in msgs]
    feed_in_random_chunks(hashers, msgs, rnd)
    assert [h.digest() for h in hashers] == want


def unequal_messages(pool: memoryview) -> list[memoryview]:
    """Sixteen messages of very unequal lengths (empty, around the padding limits, up to
    5 MB), one per lane of the widest path, each at its own unaligned offset."""
    sizes = [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 4096, 65537, 1 << 20, 5 << 20, 9]
    return [pool[3 + i : 3 + i + n] for i, n in enumerate(sizes)]


def check_split_update_and_copy(
    new: Callable[[], Hasher], msgs: Sequence[bytes], ref: Callable[[Message], bytes]
) -> None:
    """A third of each message through update_many, a copy of each context taken there,
    the rest through update_many again and through each copy's own update."""
    want = [ref(m) for m in msgs]
    hashers = [new() for _ in msgs]
    thirds = [len(m) // 3 for m in msgs]
    sm3engine.update_many(hashers, [m[:t] for m, t in zip(msgs, thirds, strict=True)])
    copies = [h.copy() for h in hashers]
    sm3engine.update_many(hashers, [m[t:] for m, t in zip(msgs, thirds, strict=True)])
    assert [h.digest() for h in hashers] == want
    for c, m, t in zip(copies, msgs, thirds, strict=True):
        c.update(m[t:])
        assert c.digest() == ref(m)
