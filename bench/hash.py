"""SM3 and SHA-256 throughput per core: 留痕's engine (sm3engine) on each path against
hashlib's SM3 and SHA-256.

    python -m bench.hash [--repeat 5] [--small] [--no-sha-ni] [--json FILE]

Workloads (all from random bytes made once, in memory, so no disk is timed):

* ``16 × 16 MiB streams``: sixteen streams fed 1 MiB at a time, as verification and
  export feed files (``update_many``; hashlib: one stream after another);
* ``4 KiB messages`` and ``256 B messages``: 64 MiB of messages of that size in one
  buffer (``hash_batch`` with ``array("q")`` offsets, the digests in one buffer;
  hashlib: one ``hashlib.new("sm3", m)`` per message, the digests joined);
* ``one 256 MiB stream``: a single context fed 1 MiB at a time (``new().update``);
* ``SHA-256 16 × 16 MiB streams`` and ``SHA-256 one 256 MiB stream``: the same with
  ``new_sha256()`` against ``hashlib.sha256`` (OpenSSL, with SHA-NI where the CPU has
  it); ``--no-sha-ni`` runs the engine's SHA-256 as on a CPU without SHA-NI
  (``set_sha_ni(False)``: portable single-stream code, AVX2 lanes), hashlib unchanged.

Each workload is timed with the CPU time of the hashing thread (per core, so that other
load on a shared machine stretches both sides alike), hashlib first and then each path
the CPU supports, in the same repetition; the ratio of each repetition is taken, and the
median over ``--repeat`` repetitions is reported. ``--small`` divides every size by 16
and repeats twice: a smoke run of a few seconds.

Targets (issue 18, docs/performance.md): with AVX-512 ≥ 8 × hashlib and with AVX2
≥ 4 × for many messages of ≥ 4 KiB (the 16-stream and 4 KiB rows); a single stream
≥ 1.0 × on every path. The SHA-256 rows have no target: they are printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sm3engine

MiB = 1 << 20
FEED = 1 * MiB
SHOWN_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx2", "bmi2", "sha_ni", "sse4_2")


@dataclass(frozen=True)
class Workload:
    name: str
    size: int  # bytes hashed per run
    hashlib_run: Callable[[], object]
    engine_run: Callable[[], object]
    many: bool  # many messages of >= 4 KiB (the lanes' targets apply)
    single: bool  # one stream (the >= 1.0x target applies)
    targets: bool = True  # False: figures only (the SHA-256 rows)


def cpu_description() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, [f for f in SHOWN_FLAGS if f in flags]


def _streams(
    data: list[memoryview], new: Callable[[], sm3engine.SM3Hasher] = sm3engine.new
) -> Callable[[], object]:
    def run() -> object:
        hashers = [new() for _ in data]
        for start in range(0, len(data[0]), FEED):
            sm3engine.update_many(hashers, [d[start : start + FEED] for d in data])
        return [h.digest() for h in hashers]

    return run


def _streams_hashlib(data: list[memoryview], name: str = "sm3") -> Callable[[], object]:
    def run() -> object:
        out = []
        for d in data:
            h = hashlib.new(name)
            for start in range(0, len(d), FEED):
                h.update(d[start : start + FEED])
            out.append(h.digest())
        return out

    return run


def _one_stream(data: memoryview, new: Callable[[], sm3engine.SM3Hasher]) -> Callable[[], object]:
    def run() -> object:
        h = new()
        for start in range(0, len(data), FEED):
            h.update(data[start : start + FEED])
        return h.digest()

    return run


def _messages(data: memoryview, size: int) -> tuple[Callable[[], object], Callable[[], object]]:
    offsets = array("q", range(0, len(data) + 1, size))
    msgs = [data[a : a + size] for a in offsets[:-1]]

    def engine() -> object:
        return sm3engine.hash_batch(data, offsets)

    def baseline() -> object:
        new = hashlib.new
        return b"".join([new("sm3", m).digest() for m in msgs])

    return engine, baseline


def workloads(scale: int) -> list[Workload]:
    pool = memoryview(os.urandom(256 * MiB // scale))
    streams = [pool[i * (16 * MiB // scale) : (i + 1) * (16 * MiB // scale)] for i in range(16)]
    msgs = pool[: 64 * MiB // scale]
    e4k, h4k = _messages(msgs, 4096)
    e256, h256 = _messages(msgs, 256)
    size = 256 * MiB // scale
    return [
        Workload(
            "16 × 16 MiB streams", size, _streams_hashlib(streams), _streams(streams), True, False
        ),
        Workload("4 KiB messages", len(msgs), h4k, e4k, True, False),
        Workload("256 B messages", len(msgs), h256, e256, False, False),
        Workload(
            "one 256 MiB stream",
            size,
            _one_stream(pool, lambda: hashlib.new("sm3")),
            _one_stream(pool, sm3engine.new),
            False,
            True,
        ),
        Workload(
            "SHA-256 16 × 16 MiB",
            size,
            _streams_hashlib(streams, "sha256"),
            _streams(streams, sm3engine.new_sha256),
            True,
            False,
            targets=False,
        ),
        Workload(
            "SHA-256 one 256 MiB",
            size,
            _one_stream(pool, hashlib.sha256),
            _one_stream(pool, sm3engine.new_sha256),
            False,
            True,
            targets=False,
        ),
    ]


def cpu_seconds(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.thread_time()
    result = fn()
    return max(time.thread_time() - start, 1e-9), result


def measure(
    loads: list[Workload], paths: list[str], repeat: int
) -> dict[str, dict[str, list[float]]]:
    """{workload: {"hashlib": [MB/s...], path: [ratio...], path + " MB/s": [...]}}"""
    figures: dict[str, dict[str, list[float]]] = {w.name: {} for w in loads}
    for _ in range(repeat):
        for w in loads:
            fig = figures[w.name]
            base, want = cpu_seconds(w.hashlib_run)
            fig.setdefault("hashlib", []).append(w.size / base / 1e6)
            for p in paths:
                sm3engine.set_path(p)
                took, got = cpu_seconds(w.engine_run)
                if got != want:
                    raise SystemExit(f"bench.hash: {p} gave other digests than hashlib on {w.name}")
                fig.setdefault(p, []).append(base / took)
                fig.setdefault(p + " MB/s", []).append(w.size / took / 1e6)
    return figures


def verdicts(
    loads: list[Workload], med: dict[str, dict[str, float]], paths: list[str]
) -> list[str]:
    lines = []
    for w in loads:
        if not w.targets:
            continue
        for p in paths:
            want = 8.0 if p == "avx512" and w.many else 4.0 if p == "avx2" and w.many else None
            if w.single:
                want = 1.0
            if want is None:
                continue
            got = med[w.name][p]
            mark = "PASS" if got >= want else "MISS"
            lines.append(f"{mark}  {p:7s} {w.name}: {got:.2f} × hashlib (target ≥ {want:g} ×)")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=None, help="repetitions [5; 2 with --small]")
    ap.add_argument("--small", action="store_true", help="sizes / 16: a smoke run")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument(
        "--no-sha-ni", action="store_true", help="the engine's SHA-256 as without SHA-NI"
    )
    args = ap.parse_args(argv)
    repeat = args.repeat or (2 if args.small else 5)
    if not sm3engine.AVAILABLE:
        print("bench.hash: the SM3 engine is not built; nothing to compare", file=sys.stderr)
        return 1
    model, flags = cpu_description()
    paths = sm3engine.supported_paths()
    default = sm3engine.engine_info()["path"]
    print(f"CPU: {model}; flags: {' '.join(flags) or '-'}")
    print(f"paths: {', '.join(paths)} (default {default}); {repeat} repetitions, medians")
    sha_ni = sm3engine.set_sha_ni(not args.no_sha_ni)
    print(f"SHA-256 single streams: {sm3engine._c.sha256_instructions()}")
    loads = workloads(16 if args.small else 1)
    try:
        figures = measure(loads, paths, repeat)
    finally:
        sm3engine.set_path(default)
        sm3engine.set_sha_ni(True)
    med = {w: {k: statistics.median(v) for k, v in f.items()} for w, f in figures.items()}
    head = f"{'workload':22s} {'hashlib MB/s':>12s}" + "".join(
        f" {p + ' MB/s':>12s} {'×':>6s}" for p in paths
    )
    print(head)
    for w in loads:
        m = med[w.name]
        row = f"{w.name:22s} {m['hashlib']:12.0f}"
        row += "".join(f" {m[p + ' MB/s']:12.0f} {m[p]:6.2f}" for p in paths)
        print(row)
    lines = verdicts(loads, med, paths)
    print("\n".join(lines))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cpu": model,
                    "flags": flags,
                    "paths": paths,
                    "repeat": repeat,
                    "sha_ni": sha_ni,
                    "median": med,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
