"""SHA-256 in the engine (sm3engine): every path this CPU runs gives hashlib's digests.

Each test runs on each forced path (AVX-512 and AVX2 where /proc/cpuinfo lists them,
always scalar), and, where the CPU has SHA-NI, once with it and once without it
(``set_sha_ni(False)``: the portable single-stream code, and the AVX2 lanes, which the
engine skips when SHA-NI is there). Messages come from one random buffer at odd
offsets, so no lane reads aligned memory.
"""

from __future__ import annotations

import hashlib
import random
from array import array
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sm3engine
from tests import engine_paths as ep

pytestmark = pytest.mark.skipif(not sm3engine.AVAILABLE, reason="the SM3 engine is not built")

ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
M448 = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
M448_HEX = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
MILLION_A = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"


def ref(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def sm3_ref(data: bytes | memoryview) -> bytes:
    return hashlib.new("sm3", data).digest()


@pytest.fixture(
    params=[
        ("avx512", True),
        ("avx512", False),
        ("avx2", True),
        ("avx2", False),
        ("scalar", True),
        ("scalar", False),
    ],
    ids=lambda p: f"{p[0]}-{'shani' if p[1] else 'noshani'}",
)
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    name, shani = request.param
    ep.skip_unless_cpu_runs(name)
    if shani and not ep.HAS_SHA_NI:
        pytest.skip("this CPU lacks sha_ni")
    with ep.forced_path(name):
        assert sm3engine.set_sha_ni(shani) == shani
        yield name
        sm3engine.set_sha_ni(True)


@pytest.fixture(scope="module")
def pool() -> memoryview:
    return ep.random_pool(1804)


def test_sha_ni_is_used_where_the_cpu_has_it() -> None:
    want = "sha-ni" if ep.HAS_SHA_NI else ("bmi2" if "bmi2" in ep.FLAGS else "generic")
    assert sm3engine._c.sha256_instructions() == want
    assert ("SHA-NI" in sm3engine.engine_info()["sha256"]) == ep.HAS_SHA_NI
    assert "SHA-256" in sm3engine.engine_info()["instructions"]


def test_nist_vectors(path: str) -> None:
    assert sm3engine.new_sha256(b"abc").hexdigest() == ABC
    assert sm3engine.new_sha256(M448).hexdigest() == M448_HEX
    million = b"a" * 1_000_000
    assert sm3engine.new_sha256(million).hexdigest() == MILLION_A
    h = sm3engine.new_sha256()
    for _ in range(1000):
        h.update(b"a" * 1000)
    assert h.hexdigest() == MILLION_A
    assert [d.hex() for d in sm3engine.hash_many([b"abc", M448, million], "sha256")] == [
        ABC,
        M448_HEX,
        MILLION_A,
    ]
    data = b"abc" + M448
    assert sm3engine.hash_batch(data, [0, 3, 59], "sha256").hex() == ABC + M448_HEX
    assert sm3engine.hash_batch(data, array("q", [0, 3, 59]), "sha256").hex() == ABC + M448_HEX
    hashers = [sm3engine.new_sha256(), sm3engine.new_sha256(), sm3engine.new_sha256()]
    sm3engine.update_many(hashers, [b"ab", M448[:30], million[:333_333]])
    sm3engine.update_many(hashers, [b"c", M448[30:], million[333_333:]])
    assert [h.hexdigest() for h in hashers] == [ABC, M448_HEX, MILLION_A]


def test_the_context_is_like_hashlibs() -> None:
    h = sm3engine.new_sha256(b"ab")
    assert (h.name, h.digest_size, h.block_size) == ("sha256", 32, 64)
    c = h.copy()
    h.update(b"c")
    assert type(c) is type(h) and c.name == "sha256"
    assert h.hexdigest() == ABC and c.digest() == ref(b"ab")
    assert h.digest() == h.digest()  # digest() does not finish the context
    assert sm3engine.new().name == "sm3"  # new() stays SM3


def test_every_length_0_to_300_in_one_call(path: str, pool: memoryview) -> None:
    """Lanes refill as the short messages end, and every padding case (a tail of 0 to 63
    bytes, one or two padding blocks) is met in every lane."""
    msgs = [pool[7 + n : 7 + 2 * n] for n in range(301)]
    want = [ref(m) for m in msgs]
    hashers = [sm3engine.new_sha256() for _ in msgs]
    sm3engine.update_many(hashers, msgs)
    assert [h.digest() for h in hashers] == want
    ep.check_many_and_batch(msgs, want, "sha256")


@pytest.mark.parametrize("streams", [1, 3, 8, 16, 17, 40])
def test_random_messages_unaligned(path: str, pool: memoryview, streams: int) -> None:
    ep.check_random_streams(pool, streams, 4 << 20, sm3engine.new_sha256, ref, "sha256")


def test_very_unequal_lengths_in_one_call(path: str, pool: memoryview) -> None:
    msgs = ep.unequal_messages(pool)
    assert sm3engine.hash_many(msgs, "sha256") == [ref(m) for m in msgs]
    hashers = [sm3engine.new_sha256(b"x") for _ in msgs]
    sm3engine.update_many(hashers, msgs)
    assert [h.digest() for h in hashers] == [ref(b"x" + bytes(m)) for m in msgs]


def test_incremental_updates_split_at_random_points(path: str, pool: memoryview) -> None:
    rnd = random.Random(256)
    for _ in range(20):
        msg = pool[rnd.randrange(1, 999) :][: rnd.randrange(0, 200_000)]
        cuts = sorted(rnd.randrange(len(msg) + 1) for _ in range(rnd.randrange(6)))
        h = sm3engine.new_sha256()
        last = 0
        for c in [*cuts, len(msg)]:
            h.update(msg[last:c])
            last = c
        assert h.digest() == ref(msg)


def test_sm3_and_sha256_mixed_in_one_call(path: str, pool: memoryview) -> None:
    """Each hash's streams go through its own kernel; every context gets its own digest."""
    rnd = random.Random(3)
    msgs = [pool[rnd.randrange(1, 999) :][: rnd.randrange(0, 700_000)] for _ in range(37)]
    kinds = [rnd.choice(["sm3", "sha256"]) for _ in msgs]
    hashers = [sm3engine.new() if k == "sm3" else sm3engine.new_sha256() for k in kinds]
    half = [len(m) // 2 + rnd.randrange(-50, 50) for m in msgs]
    half = [max(0, min(len(m), h)) for m, h in zip(msgs, half, strict=True)]
    sm3engine.update_many(hashers, [m[:h] for m, h in zip(msgs, half, strict=True)])
    sm3engine.update_many(hashers, [m[h:] for m, h in zip(msgs, half, strict=True)])
    for h, k, m in zip(hashers, kinds, msgs, strict=True):
        assert h.name == k
        assert h.digest() == (sm3_ref(m) if k == "sm3" else ref(m))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(max_size=700), max_size=40),
    st.sampled_from(ep.PATHS),
    st.booleans(),
)
def test_property_against_hashlib(msgs: list[bytes], name: str, shani: bool) -> None:
    with ep.forced_path(ep.runnable(name)):
        sm3engine.set_sha_ni(shani)
        try:
            ep.check_many_and_batch(msgs, [ref(m) for m in msgs], "sha256")
            ep.check_split_update_and_copy(sm3engine.new_sha256, msgs, ref)
        finally:
            sm3engine.set_sha_ni(True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=12))
def test_property_incremental_context(chunks: list[bytes]) -> None:
    h, r = sm3engine.new_sha256(), hashlib.sha256()
    for c in chunks:
        h.update(c)
        r.update(c)
        assert h.hexdigest() == r.hexdigest()
    assert h.digest() == r.digest()


def test_misuse_is_refused_and_harmless() -> None:
    h = sm3engine.new_sha256(b"ab")
    with pytest.raises(RuntimeError):
        sm3engine.update_many([h, h], [b"c", b"c"])  # two updates in no defined order
    with pytest.raises(TypeError):
        sm3engine.update_many([h, hashlib.sha256()], [b"c", b"c"])  # not an engine context
    with pytest.raises(ValueError):
        sm3engine.hash_many([b"abc"], "md5")
    with pytest.raises(ValueError):
        sm3engine.hash_batch(b"abc", [0, 3], "sha1")
    h.update(b"c")  # the refused calls left it as it was
    assert h.hexdigest() == ABC


def test_without_the_extension_hashlib_hashes_sha256() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['sm3engine._sm3engine'] = None\n"
        "import sm3engine\n"
        "h = sm3engine.new_sha256(b'ab'); c = h.copy(); h.update(b'c')\n"
        "sm3engine.update_many([c], [b'c'])\n"
        "print(h.hexdigest(), c.hexdigest(), sm3engine.hash_many([b'abc'], 'sha256')[0].hex(),\n"
        "      sm3engine.hash_batch(b'xabc', [1, 4], 'sha256').hex(),\n"
        "      sm3engine.engine_info()['sha256'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=True,
    )
    assert out.stdout.split() == [ABC, ABC, ABC, ABC, "OpenSSL"]


def test_a_context_being_hashed_is_busy_for_other_threads() -> None:
    """update_many releases the GIL: meanwhile another thread's digest() of one of its
    contexts is refused (RuntimeError), not computed from half-updated state."""
    import threading

    chunk = bytes(8 << 20)
    seen = 0
    for _ in range(5):
        hashers = [sm3engine.new_sha256() for _ in range(16)]
        done = threading.Event()

        def run(hs: list[sm3engine.SM3Hasher] = hashers, ev: threading.Event = done) -> None:
            sm3engine.update_many(hs, [chunk] * 16)
            ev.set()

        t = threading.Thread(target=run)
        t.start()
        while not done.is_set():
            try:
                hashers[5].digest()
            except RuntimeError as exc:
                assert "SHA-256 object is being updated" in str(exc)
                seen += 1
                break
        t.join()
        assert [h.digest() for h in hashers] == [ref(chunk)] * 16
        if seen:
            break
    assert seen
