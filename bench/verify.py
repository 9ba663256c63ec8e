"""Bag verification benchmark: bagit-python against `liuhen verify`, on the same bag.

    python -m bench.verify [--small-count 2000] [--small-kb 100] [--big-count 2]
                           [--big-mb 215] [--repeat 5] [--workdir DIR] [--keep] [--quick]

It writes a 留痕-layout BagIt 1.0 bag (``write_bag``: payload manifests and tag manifests
for SHA-256, SHA-512 and SM3, bag-info with Payload-Oxum and the signing key id, a signed
``tagmanifest-sha256.txt``, a custody excerpt of three signed events per original) of
``--small-count`` files of ``--small-kb`` kB and ``--big-count`` files of ``--big-mb`` MB
(defaults: 2,002 files, 630 MB, the bag of the design notes' reference figure), then
times, in the same run and with the page cache warm (every command run once untimed
first), ``--repeat`` rounds in which every command runs once in turn, each in a fresh
process (so a change of the machine's load hits all of them alike); the median of the
rounds is reported, and the ratio to bagit-python is taken per round and its median
printed:

* ``python -m bagit --validate BAG`` (bagit-python, one process): SHA-256 and SHA-512
  (it skips ``manifest-sm3.txt``, an algorithm it does not know, silently);
* ``python -m bagit --validate --processes 2 BAG``;
* ``liuhen verify BAG``: everything — SHA-256, SHA-512 **and SM3** of every payload and
  tag file, completeness, Oxum, the signature, the custody excerpt;
* breakdowns: ``verify_bag`` limited to SHA-256 + SHA-512 (``only_algorithms``: the
  digests bagit-python computes, plus the signature and custody checks); the start-up
  of the ``liuhen`` command alone; the bag checks without any fixity (parsing, signature,
  custody excerpt) — each in a fresh process, start-up included;
* ``verify_bag`` in-process, warm (the whole check without the command's start-up);
* the custody excerpt's check alone, in-process (``check_excerpt``: canonical bytes,
  hash, Ed25519 signature and link of every event), wall and CPU time, against the
  0.3 s target for 6,000 events (issue 18), naming the library that verifies;
* floors: SM3 of every byte spread over all cores (threads, each file once), SHA-256 +
  SHA-512 the same way, and ``cat`` of every file (reading the bytes once).

Target (issue 18, docs/performance.md): ``liuhen verify`` ≥ 2 × faster than
single-process bagit-python. ``--quick`` makes a small bag (200 × 100 kB + 2 × 20 MB)
for a smoke run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import sm3engine
from archive_export.bagverify import verify_bag
from archive_export.parallel_hash import FileSource, Item, default_workers, hash_items
from catalog.canonical import GENESIS, canonical_bytes, canonical_json
from catalog.chainrule import check_excerpt
from catalog.signing import key_id_of, public_raw, signature_engine

REPO = Path(__file__).resolve().parents[1]
MB = 1_000_000
TARGET = 2.0
CUSTODY_TARGET_S = 0.3  # for 6,000 events
ALGORITHMS = ("sha256", "sha512", "sm3")


# -- a 留痕-layout bag (also used by the tests) ---------------------------------------------------


def encode_path(path: str) -> str:
    """RFC 8493 §2.1.3: only %, CR and LF are percent-encoded in manifest paths."""
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def manifest_text(digests: Mapping[str, str]) -> str:
    return "".join(f"{d}  {encode_path(p)}\n" for p, d in sorted(digests.items()))


def write_bag(
    root: Path,
    *,
    key: Ed25519PrivateKey | None,
    custody: Sequence[Mapping[str, Any]] | None = None,
    keys: Sequence[Mapping[str, Any]] | None = None,
    info: Mapping[str, str] | None = None,
    algorithms: Sequence[str] = ALGORITHMS,
) -> Path:
    """Make ``root`` (whose ``data/`` is already filled) a signed 留痕-layout bag.

    Writes ``data/metadata/custody.jsonl`` and ``keys.json`` when given, then bagit.txt,
    bag-info.txt (Payload-Oxum, Liuhen-* labels), payload manifests, VERIFY.txt, the
    public key, tag manifests and the signature over ``tagmanifest-sha256.txt``.
    """
    meta = root / "data" / "metadata"
    if custody is not None:
        meta.mkdir(parents=True, exist_ok=True)
        (meta / "custody.jsonl").write_text(
            "".join(
                json.dumps(dict(e), ensure_ascii=False, sort_keys=True) + "\n" for e in custody
            ),
            encoding="utf-8",
        )
    if keys is not None:
        meta.mkdir(parents=True, exist_ok=True)
        (meta / "keys.json").write_text(
            json.dumps({"keys": list(keys)}, indent=1), encoding="utf-8"
        )
    payload = sorted(p for p in (root / "data").rglob("*") if p.is_file())
    rel = {str(p.relative_to(root)): p for p in payload}
    digests = _digests(rel, algorithms)
    (root / "bagit.txt").write_bytes(b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    size = sum(p.stat().st_size for p in payload)
    labels = {
        "Source-Organization": "留痕 bench",
        "External-Identifier": "bench-export",
        "Bagging-Date": time.strftime("%Y-%m-%d"),
        "Payload-Oxum": f"{size}.{len(payload)}",
        "Bag-Size": f"{size / MB:.1f} MB",
        "Liuhen-Export-Id": "00000000-0000-0000-0000-000000000000",
    }
    if key is not None:
        labels["Liuhen-Signing-Key-Id"] = key_id_of(public_raw(key.public_key()))
    labels.update(info or {})
    (root / "bag-info.txt").write_text(
        "".join(f"{k}: {v}\n" for k, v in labels.items()), encoding="utf-8"
    )
    for alg in algorithms:
        (root / f"manifest-{alg}.txt").write_text(
            manifest_text({p: d[alg] for p, d in digests.items()}), encoding="utf-8"
        )
    (root / "VERIFY.txt").write_text(
        "sha256sum -c manifest-sha256.txt\n"
        "openssl pkeyutl -verify -pubin -inkey signing-key.pem -rawin "
        "-in tagmanifest-sha256.txt -sigfile tagmanifest-sha256.txt.sig\n"
        "liuhen verify .\n",
        encoding="utf-8",
    )
    if key is not None:
        (root / "signing-key.pem").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    tags = ["bagit.txt", "bag-info.txt", "VERIFY.txt", *(f"manifest-{a}.txt" for a in algorithms)]
    if key is not None:
        tags.append("signing-key.pem")
    tag_digests = _digests({t: root / t for t in tags}, algorithms)
    for alg in algorithms:
        (root / f"tagmanifest-{alg}.txt").write_text(
            manifest_text({p: d[alg] for p, d in tag_digests.items()}), encoding="utf-8"
        )
    if key is not None:
        (root / "tagmanifest-sha256.txt.sig").write_bytes(
            key.sign((root / "tagmanifest-sha256.txt").read_bytes())
        )
    return root


def _digests(files: Mapping[str, Path], algorithms: Sequence[str]) -> dict[str, dict[str, str]]:
    items = [Item(r, FileSource(p, p.stat().st_size), tuple(algorithms)) for r, p in files.items()]
    return {k: v.digests for k, v in hash_items(items).items()}


def signed_events(
    key: Ed25519PrivateKey, station: str, objects: Sequence[tuple[str, str, int]]
) -> list[dict[str, Any]]:
    """A chain of offloaded/stored/verified events per (sha256, sm3, size), as custody.jsonl
    lines (for the benchmark; the tests make theirs with the real catalog)."""
    key_id = key_id_of(public_raw(key.public_key()))
    prev, seq, out = GENESIS, 0, []
    for sha, sm3, size in objects:
        for action, details in (
            ("offloaded", {"sm3": sm3, "size": size}),
            ("stored", {"key": f"sha256/{sha[:2]}/{sha[2:4]}/{sha}"}),
            ("verified", {"method": "re-read"}),
        ):
            seq += 1
            fields = {
                "station_id": station,
                "seq": seq,
                "at": "2026-11-26T01:00:00.000000Z",
                "actor": f"station:{station}",
                "action": action,
                "object_type": "recording",
                "object_id": sha,
                "details": canonical_json(details),
                "prev_hash": prev,
                "key_id": key_id,
            }
            data = canonical_bytes(**fields)  # type: ignore[arg-type]
            ev = fields | {
                "event_hash": hashlib.sha256(data).hexdigest(),
                "signature": key.sign(data).hex(),
            }
            out.append(ev)
            prev = str(ev["event_hash"])
    return out


def key_row(key: Ed25519PrivateKey, station: str) -> dict[str, Any]:
    raw = public_raw(key.public_key())
    return {
        "key_id": key_id_of(raw),
        "station_id": station,
        "public_key_hex": raw.hex(),
        "created_at": "2026-11-01T00:00:00Z",
        "retired_at": None,
    }


# -- the benchmark bag ------------------------------------------------------------------------


def _write_random(path: Path, size: int, pool: bytes, index: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = index.to_bytes(8, "big")
    with path.open("wb") as f:
        written = 0
        while written < size:
            off = (index * 7919 + written) % (len(pool) // 2)
            n = min(size - written, len(pool) // 2)
            chunk = pool[off : off + n]
            if written == 0:
                chunk = header + chunk[len(header) :]
            f.write(chunk)
            written += n


def make_bench_bag(
    root: Path, small_count: int, small_size: int, big_count: int, big_size: int
) -> Path:
    pool = os.urandom(16 << 20)
    n = 0
    for i in range(big_count):
        _write_random(
            root / "data" / "originals" / "A123456" / "2026-11-26" / f"VID_{i:04d}.MP4",
            big_size,
            pool,
            n,
        )
        n += 1
    for i in range(small_count):
        _write_random(
            root / "data" / "originals" / "A123456" / "2026-11-26" / f"IMG_{i:05d}.JPG",
            small_size,
            pool,
            n,
        )
        n += 1
    originals = sorted((root / "data" / "originals").rglob("*"))
    files = {str(p): p for p in originals if p.is_file()}
    digests = _digests(files, ("sha256", "sm3"))
    key = Ed25519PrivateKey.generate()
    events = signed_events(
        key,
        "bench-01",
        [(d["sha256"], d["sm3"], files[p].stat().st_size) for p, d in sorted(digests.items())],
    )
    return write_bag(root, key=key, custody=events, keys=[key_row(key, "bench-01")])


# -- timing -----------------------------------------------------------------------------------


@dataclass
class Timing:
    name: str
    runs: list[float]
    ok: bool
    note: str = ""
    cpu: list[float] = field(default_factory=list)  # CPU seconds of each run, all threads

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu) if self.cpu else float("nan")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str]) -> tuple[float, float, int, str]:
    """Wall and CPU seconds (the child and its own children, all threads) of a command.
    CPU time barely moves with the machine's load, wall time does."""
    c0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    return wall, cpu, proc.returncode, proc.stderr[-2000:] + proc.stdout[-2000:]


def measure_rounds(commands: Sequence[tuple[str, list[str]]], repeat: int) -> list[Timing]:
    """Each command once untimed (page cache, imports, .pyc), then ``repeat`` rounds of
    every command in turn."""
    timings = [Timing(name, [], True) for name, _ in commands]
    for _name, argv in commands:
        _run(argv)
    for r in range(repeat):
        for t, (_name, argv) in zip(timings, commands, strict=True):
            dt, cpu, rc, text = _run(argv)
            t.runs.append(dt)
            t.cpu.append(cpu)
            if rc != 0:
                t.ok, t.note = False, (text.strip().splitlines() or ["?"])[-1]
        _say(f"  round {r + 1}: " + ", ".join(f"{t.runs[-1]:.2f}" for t in timings))
    return timings


def _in_process(name: str, fn: Callable[[], bool], repeat: int) -> tuple[Timing, list[float]]:
    """Wall and CPU seconds (all threads) of ``fn``, run once untimed first."""
    fn()
    runs, cpu, ok = [], [], True
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        ok = fn() and ok
        runs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return Timing(name, runs, ok, "in-process", cpu), cpu


def custody_alone(bag: Path, repeat: int) -> tuple[Timing, list[float], int]:
    meta = bag / "data" / "metadata"
    events, keys = (meta / "custody.jsonl").read_bytes(), (meta / "keys.json").read_bytes()
    count = [0]

    def check() -> bool:
        result = check_excerpt(events, keys)
        count[0] = len(result.events)
        return not result.issues

    timing, cpu = _in_process("custody excerpt check alone (check_excerpt)", check, repeat)
    return timing, cpu, count[0]


def floors(bag: Path, repeat: int) -> list[Timing]:
    files = [p for p in sorted(bag.rglob("*")) if p.is_file()]
    items = [Item(str(p), FileSource(p, p.stat().st_size), ("sm3",)) for p in files]
    cases: list[tuple[str, list[Item]]] = [
        (f"floor: SM3 of every byte, {default_workers()} threads", items),
        (
            "floor: SHA-256 + SHA-512 of every byte, same engine",
            [Item(i.key, i.source, ("sha256", "sha512")) for i in items],
        ),
    ]
    out = [
        _in_process(
            "liuhen verify_bag in-process (no start-up)", lambda: verify_bag(bag).ok, repeat
        )[0]
    ]
    for name, batch in cases:
        out.append(_in_process(name, _hashing(batch), repeat)[0])
    return out


def _hashing(batch: list[Item]) -> Callable[[], bool]:
    return lambda: bool(hash_items(batch))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextmanager
def workdir(base: Path | None, keep: bool) -> Iterator[Path]:
    parent = base or (REPO / "bench-data" if os.access(REPO, os.W_OK) else None)
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    wd = Path(tempfile.mkdtemp(prefix="bench-verify-", dir=parent))
    try:
        yield wd
    finally:
        if keep:
            _say(f"kept {wd}")
        else:
            shutil.rmtree(wd, ignore_errors=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.verify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--small-count", type=int, default=2000)
    p.add_argument("--small-kb", type=float, default=100.0, help="size of small files, kB")
    p.add_argument("--big-count", type=int, default=2)
    p.add_argument("--big-mb", type=float, default=215.0, help="size of big files, MB")
    p.add_argument("--repeat", type=int, default=5, help="timed rounds (median of)")
    p.add_argument("--workdir", type=Path, help="make the temporary work folder in DIR")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--quick", action="store_true", help="a small bag, for a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.small_count, args.big_mb = 200, 20.0
    if args.repeat < 1 or min(args.small_count, args.big_count) < 0:
        p.error("--repeat must be at least 1 and counts not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    py = sys.executable
    with workdir(args.workdir, args.keep) as wd:
        bag = wd / "bag"
        t0 = time.perf_counter()
        make_bench_bag(
            bag, args.small_count, int(args.small_kb * 1000), args.big_count, int(args.big_mb * MB)
        )
        payload = [p for p in (bag / "data").rglob("*") if p.is_file()]
        nbytes = sum(p.stat().st_size for p in payload)
        _say(
            f"bag: {len(payload)} payload files, {nbytes / MB:,.1f} MB, made in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        script = Path(py).parent / "liuhen"  # the installed command, as a user runs it
        liuhen = (
            [str(script)] if script.exists() else [py, "-c", "from liuhen.cli import main; main()"]
        ) + ["verify", str(bag)]
        only = [
            py,
            "-c",
            "import sys; from archive_export.bagverify import verify_bag; "
            f"r = verify_bag({str(bag)!r}, only_algorithms=('sha256', 'sha512')); "
            "sys.exit(0 if r.ok else 1)",
        ]
        commands = [
            ("bagit-python --validate (1 process)", [py, "-m", "bagit", "--validate", str(bag)]),
            (
                "bagit-python --validate --processes 2",
                [py, "-m", "bagit", "--validate", "--processes", "2", str(bag)],
            ),
            ("liuhen verify (SHA-256 + SHA-512 + SM3, signature, custody)", liuhen),
            ("breakdown: liuhen, SHA-256 + SHA-512 only (+ signature, custody)", only),
            (
                "breakdown: liuhen start-up alone (import liuhen.cli)",
                [py, "-c", "import liuhen.cli"],
            ),
            (
                "breakdown: bag checks without fixity (parse, signature, custody)",
                [
                    py,
                    "-c",
                    "from archive_export.bagverify import verify_bag; "
                    f"verify_bag({str(bag)!r}, only_algorithms=())",
                ],
            ),
        ]
        timings = measure_rounds(commands, args.repeat)
        custody, custody_cpu, n_events = custody_alone(bag, args.repeat)
        timings += [custody, *floors(bag, args.repeat)]
        cat = ["sh", "-c", f"find {bag} -type f -print0 | xargs -0 cat > /dev/null"]
        timings += measure_rounds([("floor: cat every file (read once)", cat)], args.repeat)
    report(timings, args.repeat, len(payload), nbytes)
    ratios = [b / o for b, o in zip(timings[0].runs, timings[2].runs, strict=True)]
    ratio = statistics.median(ratios)
    verdict = "PASS" if ratio >= TARGET and timings[2].ok else "MISS"
    print(
        f"\n{verdict}: liuhen verify is {ratio:.2f}× as fast as bagit-python (1 process), "
        f"median of the per-round ratios ({', '.join(f'{r:.2f}' for r in ratios)}); "
        f"target ≥ {TARGET}×"
    )
    print(
        f"  in CPU seconds (less sensitive to the machine's load): bagit-python "
        f"{timings[0].median_cpu:.2f}, liuhen verify {timings[2].median_cpu:.2f}, "
        f"{timings[0].median_cpu / timings[2].median_cpu:.2f}×"
    )
    per_6000 = custody.median * 6000 / max(1, n_events)
    verdict = "PASS" if per_6000 < CUSTODY_TARGET_S and custody.ok else "MISS"
    print(
        f"{verdict}: custody excerpt of {n_events:,} events checked in {custody.median:.3f} s "
        f"(median; CPU {statistics.median(custody_cpu):.3f} s), {per_6000:.3f} s per 6,000 "
        f"events; target < {CUSTODY_TARGET_S} s. Signatures: {signature_engine()}"
    )
    print(f"(benchmark wall time {time.perf_counter() - started:.0f} s)")
    return 0


def report(timings: Sequence[Timing], repeat: int, files: int, nbytes: int) -> None:
    base = timings[0].median
    sm3 = sm3engine.engine_info()
    print(
        f"\nBag verification: {files} payload files, {nbytes / MB:,.1f} MB "
        f"(+ tag files), median of {repeat} rounds, page cache warm"
    )
    print(
        f"  {platform.python_implementation()} {platform.python_version()}, "
        f"{default_workers()} cores, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"SM3: {sm3['engine']} {sm3['path']}; Ed25519: {signature_engine()}"
    )
    print(f"\n| {'what':66} | median s | runs s | vs bagit 1 proc | CPU s | CPU vs bagit |")
    print(f"|{'-' * 68}|---------:|--------|---------------:|------:|-------------:|")
    for t in timings:
        runs = " ".join(f"{r:.2f}" for r in t.runs)
        flag = "" if t.ok else f" (FAILED: {t.note})"
        cpu = t.median_cpu
        print(
            f"| {t.name + flag:66} | {t.median:8.3f} | {runs} | {base / t.median:13.2f}× "
            f"| {cpu:5.2f} | {timings[0].median_cpu / cpu:11.2f}× |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
