"""The SM3 engine (sm3engine): every path this CPU runs gives hashlib's SM3 digests.

Each test runs on each forced path: AVX-512 and AVX2 where /proc/cpuinfo lists them
(skipped, with the reason, where the CPU lacks them), and always scalar. Messages come
from one random buffer at odd offsets, so no lane reads aligned memory.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sm3engine
from archive_export.parallel_hash import FileSource, Item, hash_items
from storage.digest import Digest, new_hasher, sm3_many
from tests import engine_paths as ep

pytestmark = pytest.mark.skipif(not sm3engine.AVAILABLE, reason="the SM3 engine is not built")

ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
ABCD16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


def ref(data: bytes | memoryview) -> bytes:
    return hashlib.new("sm3", data).digest()


@pytest.fixture(params=ep.PATHS)
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    name: str = request.param
    ep.skip_unless_cpu_runs(name)
    with ep.forced_path(name):
        yield name


@pytest.fixture(scope="module")
def pool() -> memoryview:
    return ep.random_pool(32905)


def test_the_path_runs_what_the_cpu_has() -> None:
    """The best path the CPU supports runs unless one is forced."""
    best = "avx512" if ep.NEEDS["avx512"] <= ep.FLAGS else "avx2"
    want = best if best == "avx512" or "avx2" in ep.FLAGS else "scalar"
    if os.environ.get("LIUHEN_SM3_PATH"):
        want = os.environ["LIUHEN_SM3_PATH"]
    assert sm3engine.supported_paths()[0] == best
    assert sm3engine.engine_info()["path"] == want


def test_gbt_32905_vectors(path: str) -> None:
    assert sm3engine.new(b"abc").hexdigest() == ABC
    assert sm3engine.new(b"abcd" * 16).hexdigest() == ABCD16
    assert [d.hex() for d in sm3engine.hash_many([b"abc", b"abcd" * 16])] == [ABC, ABCD16]
    data = b"abc" + b"abcd" * 16
    assert sm3engine.hash_batch(data, [0, 3, 67]).hex() == ABC + ABCD16
    assert sm3engine.hash_batch(data, array("q", [0, 3, 67])).hex() == ABC + ABCD16
    hashers = [sm3engine.new(), sm3engine.new()]
    sm3engine.update_many(hashers, [b"ab", b"abcd" * 8])
    sm3engine.update_many(hashers, [b"c", b"abcd" * 8])
    assert [h.hexdigest() for h in hashers] == [ABC, ABCD16]


def test_every_length_0_to_300_in_one_call(path: str, pool: memoryview) -> None:
    """Lanes refill as the short messages end, and every padding case (a tail of 0 to 63
    bytes, one or two padding blocks) is met in every lane."""
    msgs = [pool[7 + n : 7 + 2 * n] for n in range(301)]
    ep.check_many_and_batch(msgs, [ref(m) for m in msgs])


@pytest.mark.parametrize("streams", [1, 3, 8, 16, 17, 40])
def test_random_messages_unaligned(path: str, pool: memoryview, streams: int) -> None:
    ep.check_random_streams(pool, streams, 10 << 20, sm3engine.new, ref)


def test_very_unequal_lengths_in_one_call(path: str, pool: memoryview) -> None:
    msgs = ep.unequal_messages(pool)
    assert sm3engine.hash_many(msgs) == [ref(m) for m in msgs]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=700), max_size=40), st.sampled_from(ep.PATHS))
def test_property_against_hashlib(msgs: list[bytes], name: str) -> None:
    with ep.forced_path(ep.runnable(name)):
        ep.check_many_and_batch(msgs, [ref(m) for m in msgs])
        ep.check_split_update_and_copy(sm3engine.new, msgs, ref)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=12))
def test_property_incremental_context(chunks: list[bytes]) -> None:
    h, r = sm3engine.new(), hashlib.new("sm3")
    for c in chunks:
        h.update(c)
        r.update(c)
        assert h.hexdigest() == r.hexdigest()
    assert h.digest() == r.digest() and h.name == "sm3" and h.digest_size == 32


def test_misuse_is_refused_and_harmless() -> None:
    h = sm3engine.new(b"ab")
    with pytest.raises(RuntimeError):
        sm3engine.update_many([h, h], [b"c", b"c"])  # two updates in no defined order
    with pytest.raises(ValueError):
        sm3engine.update_many([h], [b"c", b"d"])
    with pytest.raises(ValueError):
        sm3engine.hash_batch(b"abc", [0, 4])
    with pytest.raises(ValueError):
        sm3engine.hash_batch(b"abc", [2, 1])
    with pytest.raises(TypeError):
        sm3engine.hash_batch(b"abc", array("i", [0, 3]))  # 4-byte offsets: refused, not misread
    with pytest.raises(ValueError):
        sm3engine.set_path("sse9")
    h.update(b"c")  # the refused calls left it as it was
    assert h.hexdigest() == ABC


_DROPPED_WHILE_HASHING = """
import hashlib, threading, sm3engine
EMPTY = hashlib.new("sm3").digest()
chunk = bytes(8 << 20)
seen_busy = corrupted = 0
for attempt in range(5):
    hashers = [sm3engine.new() for _ in range(16)]
    fresh, done = [], threading.Event()
    def meddle():
        global seen_busy
        while not done.is_set():
            try:
                hashers[0].digest()
            except RuntimeError:  # busy: update_many runs with the GIL released
                seen_busy += 1
                hashers.clear()  # the list held the only references
                fresh.extend(sm3engine.new() for _ in range(200))
                return
    t = threading.Thread(target=meddle)
    t.start()
    sm3engine.update_many(hashers, [chunk] * 16)
    done.set()
    t.join()
    corrupted += sum(h.digest() != EMPTY for h in fresh)
print(seen_busy, corrupted)
"""


def test_update_many_keeps_the_objects_it_writes_to() -> None:
    """Another thread dropping the hashers while update_many runs must not make the
    engine write into whatever reuses their memory (here: fresh SM3 objects)."""
    done = subprocess.run(
        [sys.executable, "-c", _DROPPED_WHILE_HASHING], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    seen_busy, corrupted = map(int, done.stdout.split())
    assert seen_busy > 0  # the other thread did drop them mid-call
    assert corrupted == 0


def test_tuples_and_lists_both_hash() -> None:
    """The engine copies the caller's sequences: a tuple or a list gives the same digests."""
    hashers = [sm3engine.new(), sm3engine.new()]
    sm3engine.update_many(tuple(hashers), [b"a", bytearray(b"abc")])
    assert [h.hexdigest() for h in hashers] == [ref(b"a").hex(), ABC]
    assert sm3engine.hash_many((b"abc",)) == [bytes.fromhex(ABC)]
    assert sm3engine.hash_batch(b"abc", (0, 3)) == bytes.fromhex(ABC)


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )


def test_environment_forces_the_path() -> None:
    out = _python(
        "import sm3engine; i = sm3engine.engine_info(); print(i['path'], i['instructions'])",
        LIUHEN_SM3_PATH="scalar",
    )
    assert out.stdout.startswith("scalar scalar")


def test_without_the_extension_hashlib_hashes_with_a_warning() -> None:
    code = (
        "import sys; sys.modules['sm3engine._sm3engine'] = None\n"
        "import sm3engine\n"
        "print(sm3engine.engine_info()['engine'], sm3engine.new(b'abc').hexdigest(),\n"
        "      sm3engine.hash_batch(b'abcabc', [0, 3, 6])[32:].hex())\n"
        "from liuhen.doctor import _sm3_engine\n"
        "print(_sm3_engine().status)\n"
    )
    out = _python(code)
    assert out.stdout.split() == ["hashlib", ABC, ABC, "warn"]
    assert "the SM3 engine is not available" in out.stderr


def test_doctor_names_the_engine_and_instruction_set() -> None:
    from liuhen.doctor import _sm3_engine

    check = _sm3_engine()
    assert check.status == "ok"
    info = sm3engine.engine_info()
    assert check.detail == f"sm3engine on {info['sm3']}; SHA-256 on {info['sha256_isa']}"


def test_storage_digests_go_through_the_engine(tmp_path: Path, pool: memoryview) -> None:
    h = new_hasher("sm3")
    h.update(pool[1:100_001])
    assert h.hexdigest() == ref(pool[1:100_001]).hex()
    assert type(h).__module__ == "sm3engine._sm3engine"
    files = []
    for i, n in enumerate([0, 5, 3 << 20, 64, 1 << 20]):
        f = tmp_path / f"f{i}"
        f.write_bytes(pool[i : i + n])
        files.append(f)
    got = sm3_many([*files, b"abc", pool[5:70]])
    assert got == [Digest("sm3", ref(Path(f).read_bytes()).hex()) for f in files] + [
        Digest("sm3", ABC),
        Digest("sm3", ref(pool[5:70]).hex()),
    ]


def test_parallel_hash_many_files_side_by_side(tmp_path: Path, pool: memoryview) -> None:
    """Big files' SM3 in multi-stream jobs, small ones in groups; a file truncated
    after listing is named as changed and the others are still hashed."""
    items = []
    sizes = [5 << 20, 4 << 20, 6 << 20, 100, 0, 3000, 4 << 20, 70]
    for i, n in enumerate(sizes):
        f = tmp_path / f"f{i}"
        f.write_bytes(pool[i : i + n])
        items.append(Item(f"f{i}", FileSource(f, n), ("sha256", "sm3")))
    (tmp_path / "f6").write_bytes(b"short")  # listed at 4 MiB, now 5 bytes
    (tmp_path / "f7").write_bytes(b"x" * 71)
    out = hash_items(items, workers=2)
    for i, n in enumerate(sizes):
        o = out[f"f{i}"]
        if i in (6, 7):
            assert o.changed and "changed during verification" in (o.error or "")
            continue
        data = pool[i : i + n]
        assert o.error is None
        assert o.digests == {"sha256": hashlib.sha256(data).hexdigest(), "sm3": ref(data).hex()}


def test_bench_hash_small_runs_every_path(capsys: pytest.CaptureFixture[str]) -> None:
    """bench/hash --small compares every path's digests with hashlib's (it stops on a
    mismatch) and names the CPU's flags; its figures are not asserted."""
    from bench.hash import main

    before = sm3engine.engine_info()["path"]
    assert main(["--small", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CPU: ") and "flags: " in out
    for p in sm3engine.supported_paths():
        assert f"{p} MB/s" in out
    assert sm3engine.engine_info()["path"] == before  # the default path is put back


def test_shared_engine_many_threads_one_stream_each(pool: memoryview) -> None:
    """A station's copying threads share one multi-stream engine: each gets its own
    stream's digest, whatever the interleaving and chunk sizes."""
    from concurrent.futures import ThreadPoolExecutor

    from storage.digest import SharedLanes

    rnd = random.Random(7)
    messages = [pool[rnd.randrange(1, 99) : rnd.randrange(100, 3 << 20)] for _ in range(24)]

    def copy(shared: SharedLanes, data: memoryview, seed: int) -> str:
        r, stream, done = random.Random(seed), shared.open_stream(), 0
        while done < len(data):
            n = r.choice([1, 100, 65536, 300_000, 1 << 20])
            stream.update(data[done : done + n])
            done += n
        return stream.hexdigest()

    with SharedLanes() as shared, ThreadPoolExecutor(max_workers=12) as threads:
        got = list(threads.map(copy, [shared] * len(messages), messages, range(len(messages))))
    assert got == [ref(m).hex() for m in messages]
    with pytest.raises(RuntimeError):
        shared.open_stream().update(pool[: 1 << 20])  # closed: refused, not lost


def test_without_the_extension_nor_openssl_sm3_cryptography_hashes() -> None:
    code = (
        "import sys, hashlib; sys.modules['sm3engine._sm3engine'] = None\n"
        "real = hashlib.new\n"
        "def new(name, *a):\n"
        "    if name == 'sm3': raise ValueError('unsupported hash type sm3')\n"
        "    return real(name, *a)\n"
        "hashlib.new = new\n"
        "import sm3engine\n"
        "h = sm3engine.new(b'ab'); c = h.copy(); h.update(b'c'); c.update(b'c')\n"
        "print(h.hexdigest(), c.hexdigest(), sm3engine.hash_many([b'abc'])[0].hex())\n"
    )
    assert _python(code).stdout.split() == [ABC, ABC, ABC]
