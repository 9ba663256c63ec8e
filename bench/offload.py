"""Offload benchmark: dock → SAFE_TO_CLEAR through the real station, against baselines.

    python -m bench.offload [--big-gb 2] [--big-count 2] [--small-count 5000]
                            [--small-kb 100] [--lanes-count 16] [--lanes-mb 64]
                            [--mem-mb 20] [--repeat 2] [--repeat-fast 3]
                            [--workdir DIR] [--keep] [--profile] [--json FILE]
                            [--wait-idle S] [--baseline-tree DIR]

It writes its own recorders with :func:`ingest.synthetic.make_bulk_files` in a temporary
folder (under ``./bench-data`` of the repository when writable, else the system temp
folder, or under ``--workdir``) and removes them at the end (``--keep`` leaves them).

For each workload (a few multi-GB files; many small files; 16 recordings of 64 MB docked
at once, which fill the SM3 engine's lanes) it measures, interleaved in
rounds and with the page cache warmed the same way before every timed run (``sync``,
then every recorder file read once):

* ``cat`` of the files to /dev/null (a subprocess): reading the bytes once;
* SM3 over the bytes (``hashlib.new("sm3")``, 4 MiB chunks, one thread);
* (not for the lanes workload, whose baseline is SM3 alone) a naive copy-then-hash:
  ``shutil.copyfile`` to a scratch folder, then a SHA-256 pass, then an SM3 pass over the
  copy, file after file (no fsync);
* ``shutil.copyfile`` + ``fsync`` of each copy, no hashing: the disk's durable write speed
  (a reference: the pipeline must write the bytes durably, the target's floor does not);
* with ``--profile``, ``ingest.offload.copy_and_hash`` alone, one file at a time into a
  scratch folder (the pipeline's one-read copy without the station around it);
* the pipeline: a fresh data dir made by ``initialize(App(load_settings(...)))`` (SQLite
  catalog, LocalStore), ``ingest.stable_s = 0``, ``Station.run_docking`` timed from start
  to SAFE_TO_CLEAR in a child process, which also reports its peak RSS (VmHWM).

Times are the best of the runs (all runs are printed). Targets (docs/performance.md):
pipeline ≤ 1.15 × max(cat, SM3) for big files; ≥ 700 files/s for small files; pipeline ≤
0.35 × SM3 (hashlib, one thread) for the 16 recordings docked at once; peak RSS
of a docking of multi-GB files within 50 MB of the same docking with 20 MB files.
``--profile`` adds one instrumented pipeline run per workload and prints where the time
goes (seconds summed over the station's threads). On a shared machine, ``--wait-idle S``
waits (up to S seconds) before each timed run for other load to stop; the "other CPU"
column shows how busy the machine was outside the measured process anyway.
``--baseline-tree DIR`` times the same dockings with the code of another checkout (e.g.
``git archive`` of an earlier commit, with its ``sm3engine`` built or copied in) in the
same rounds, alternating which goes first: before/after figures taken under the same
load.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config import load_settings
from config.settings import IngestSettings
from ingest.synthetic import make_bulk_files

REPO = Path(__file__).resolve().parents[1]
MB = 1_000_000  # figures are in decimal megabytes (MB/s), sizes in GiB as given
GIB = 1 << 30
CHUNK = 4 << 20
CAT_BATCH = 1000  # file names per cat command (stays far below ARG_MAX)
CHILD_FLAG = "--_child-docking"  # hidden: run one docking in this process, print JSON
CHILD_TIMEOUT_S = 3600

TARGET_RATIO = 1.15
TARGET_FILES_S = 700.0
TARGET_LANES = 0.35
TARGET_MEM_MB = 50.0

CAT = "cat > /dev/null"
SM3 = "SM3 (hashlib, 4 MiB, 1 thread)"
NAIVE = "naive copyfile → SHA-256 → SM3"
ONE_READ = "copy_and_hash only (1 file at a time)"
DURABLE = "copyfile + fsync (no hashing)"
PIPELINE = "pipeline: dock → SAFE_TO_CLEAR"
BASELINE = "same, code of --baseline-tree"


# -- workloads -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    root: Path  # the recorder
    relpaths: tuple[str, ...]
    sha256: tuple[str, ...]
    nbytes: int
    manifest: Path  # JSON list of the expected SHA-256 digests, for the child

    @property
    def count(self) -> int:
        return len(self.relpaths)

    def paths(self) -> list[Path]:
        return [self.root / r for r in self.relpaths]


def make_workload(base: Path, name: str, title: str, count: int, size: int, seed: int) -> Workload:
    t0 = time.perf_counter()
    rec = make_bulk_files(base / "recorder", count, size, seed=seed)
    manifest = base / "expected-sha256.json"
    manifest.write_text(json.dumps([f.sha256 for f in rec.files]), encoding="utf-8")
    w = Workload(
        name=name,
        title=title,
        root=rec.root,
        relpaths=tuple(f.relpath for f in rec.files),
        sha256=tuple(f.sha256 for f in rec.files),
        nbytes=sum(f.size for f in rec.files),
        manifest=manifest,
    )
    _say(f"  made {w.count} files, {w.nbytes / MB:,.1f} MB in {time.perf_counter() - t0:.1f} s")
    return w


class CpuMeter:
    """The share of the machine's CPU used by anything but this process (and the children
    it waited for) during the block: other work on a shared machine, and kernel threads
    (page-cache writeback) working for us. A noise indicator, not a measurement."""

    def __init__(self) -> None:
        self.other = 0.0

    @staticmethod
    def _machine_busy() -> float:
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except OSError:
            return 0.0
        ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
        busy = sum(ticks) - ticks[3] - ticks[4]
        return busy / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self) -> CpuMeter:
        self._busy, self._self, self._wall = self._machine_busy(), self._own(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.monotonic() - self._wall, 1e-9)
        other = (self._machine_busy() - self._busy) - (self._own() - self._self)
        # Clock ticks are 10 ms: too coarse for short blocks.
        share = max(0.0, other) / (wall * (os.cpu_count() or 1))
        self.other = share if wall >= 0.5 else float("nan")


IDLE_SHARE = 0.10  # "idle": less than this share of the machine busy over half a second
WAIT_IDLE_S = 0.0  # set from --wait-idle
BASELINE_TREE: Path | None = None  # set from --baseline-tree


def wait_idle(limit_s: float) -> bool:
    """Wait up to ``limit_s`` for the machine to be idle (other users of a shared machine)."""
    deadline = time.monotonic() + limit_s
    while True:
        with CpuMeter() as meter:
            time.sleep(0.5)
        if meter.other < IDLE_SHARE:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(1.0)


def settle(w: Workload) -> None:
    """The same starting state before every timed run: nothing dirty, the recorder cached."""
    os.sync()
    buf = bytearray(CHUNK)
    for path in w.paths():
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    if WAIT_IDLE_S > 0 and not wait_idle(WAIT_IDLE_S):
        _say(f"  (the machine was still busy after waiting {WAIT_IDLE_S:.0f} s; measuring anyway)")


# -- baselines -------------------------------------------------------------------------------


def run_cat(w: Workload, _scratch: Path) -> float:
    rel = list(w.relpaths)
    t0 = time.perf_counter()
    for i in range(0, len(rel), CAT_BATCH):
        subprocess.run(
            ["cat", "--", *rel[i : i + CAT_BATCH]],
            cwd=w.root,
            stdout=subprocess.DEVNULL,
            check=True,
        )
    return time.perf_counter() - t0


def _hash_file(path: Path, algorithm: str, buf: bytearray) -> str:
    h = hashlib.new(algorithm)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def run_sm3(w: Workload, _scratch: Path) -> float:
    buf = bytearray(CHUNK)
    paths = w.paths()
    t0 = time.perf_counter()
    for path in paths:
        _hash_file(path, "sm3", buf)
    return time.perf_counter() - t0


def run_naive(w: Workload, scratch: Path) -> float:
    scratch.mkdir(parents=True)
    buf = bytearray(CHUNK)
    digests: list[str] = []
    t0 = time.perf_counter()
    for i, src in enumerate(w.paths()):
        dst = scratch / str(i)
        shutil.copyfile(src, dst)
        digests.append(_hash_file(dst, "sha256", buf))
        _hash_file(dst, "sm3", buf)
    seconds = time.perf_counter() - t0
    if digests != list(w.sha256):
        raise AssertionError("naive copy: SHA-256 differs from what make_bulk_files wrote")
    return seconds


def run_durable_copy(w: Workload, scratch: Path) -> float:
    """The disk's floor: the same bytes written and fsynced, file after file, no hashing."""
    scratch.mkdir(parents=True)
    t0 = time.perf_counter()
    for i, src in enumerate(w.paths()):
        dst = scratch / str(i)
        shutil.copyfile(src, dst)
        fd = os.open(dst, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - t0


def run_one_read_copy(w: Workload, scratch: Path) -> float:
    from ingest.offload import copy_and_hash

    scratch.mkdir(parents=True)
    chunk = IngestSettings().chunk_mb << 20
    digests: list[str] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sm3") as pool:
        t0 = time.perf_counter()
        for i, src in enumerate(w.paths()):
            fd = os.open(src, os.O_RDONLY)
            try:
                st = os.fstat(fd)
                copied = copy_and_hash(
                    fd,
                    scratch / f"{i}.part",
                    expected_size=st.st_size,
                    expected_mtime_ns=st.st_mtime_ns,
                    chunk_size=chunk,
                    sm3_pool=pool,
                )
            finally:
                os.close(fd)
            digests.append(copied.digests.sha256.hex)
        seconds = time.perf_counter() - t0
    if digests != list(w.sha256):
        raise AssertionError("copy_and_hash: SHA-256 differs from what make_bulk_files wrote")
    return seconds


# -- the pipeline, in a child process ----------------------------------------------------------


@dataclass
class Docked:
    """What one child docking reported."""

    seconds: float
    state: str
    files: int
    stored: int
    rss_before_kb: int
    hwm_kb: int
    maxrss_kb: int
    other_cpu: float = 0.0
    cpu_user: float = 0.0  # CPU seconds of the docking process during the docking
    cpu_sys: float = 0.0
    profile: dict[str, list[float]] = field(default_factory=dict)
    sm3_engine: str = ""  # which SM3 engine and path the station ran


def _child_env(tree: Path) -> dict[str, str]:
    # Only this benchmark's settings: no catalog or store URL from the caller's shell.
    # LIUHEN_SM3_PATH stays: it forces the SM3 engine's path (avx512, avx2, scalar).
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("LIUHEN_") or k == "LIUHEN_SM3_PATH"
    }
    env["LIUHEN_INGEST_STABLE_S"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH")) if p)
    return env


def run_pipeline(
    w: Workload, data_dir: Path, *, profile: bool = False, tree: Path = REPO
) -> Docked:
    """One docking in a child process running the code of ``tree`` (this repository, or
    another checkout for a before/after comparison in the same run: --baseline-tree)."""
    spec = {
        "root": str(w.root),
        "data_dir": str(data_dir),
        "manifest": str(w.manifest),
        "profile": profile,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bench.offload", CHILD_FLAG, json.dumps(spec)],
        cwd=tree,
        env=_child_env(tree),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"pipeline child failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    out = json.loads(lines[-1])
    if out["state"] != "SAFE_TO_CLEAR":
        raise AssertionError(f"docking ended {out['state']}, not SAFE_TO_CLEAR: {out}")
    if out["problems"] or out["stored"] != w.count or out["files"] != w.count:
        raise AssertionError(f"expected {w.count} files stored, child reported {out}")
    if out["missing_objects"] or out["recordings"] != w.count:
        raise AssertionError(f"store or catalog incomplete after the docking: {out}")
    return Docked(
        seconds=out["seconds"],
        state=out["state"],
        files=out["files"],
        stored=out["stored"],
        rss_before_kb=out["rss_before_kb"],
        hwm_kb=out["hwm_kb"],
        maxrss_kb=out["maxrss_kb"],
        other_cpu=out["other_cpu"],
        cpu_user=out["cpu_user"],
        cpu_sys=out["cpu_sys"],
        profile=out.get("profile", {}),
        sm3_engine=out.get("sm3_engine", ""),
    )


def _proc_status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


class Profiler:
    """Wall time per wrapped function, summed over every thread that calls it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stats: dict[str, list[float]] = {}  # label -> [calls, seconds]

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original: Callable[..., Any] | None = getattr(owner, attr, None)
        if original is None:  # the code changed under the benchmark: leave this row empty
            return
        self.stats.setdefault(label, [0, 0.0])

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                with self._lock:
                    entry = self.stats[label]
                    entry[0] += 1
                    entry[1] += dt

        setattr(owner, attr, timed)

    def count(self, label: str, calls: int, amount: float) -> None:
        with self._lock:
            entry = self.stats.setdefault(label, [0, 0.0])
            entry[0] += calls
            entry[1] += amount


def _batch_label(size: int) -> str:
    for lo, hi in BATCH_BUCKETS:
        if lo <= size <= hi:
            return BATCH_LABEL.format(lo=lo, hi=hi if hi < 1 << 30 else "")
    return BATCH_LABEL.format(lo=size, hi=size)


# Labels in display order; indentation shows what is inside what.
PROFILE_LABELS = (
    "RecorderDocking.stage: one file to staging (file workers)",
    "  copy_and_hash: read + SHA-256 + SM3 + write + fsync",
    "Station.store_file: store + verify (file workers)",
    "  LocalStore.adopt: link (+ re-read)",
    "    verify re-read (SHA-256 of the staged file)",
    "Station._commit_batch: one batch (committer thread)",
    "  LocalStore.make_durable: the batch's store folders fsynced",
    "  Catalog.run_retrying: the catalog write transaction",
    "    register_files (Core bulk rows + custody events)",
    "      custody events: chained + signed (ChainBatch.add)",
    "      custody events: bulk insert (ChainBatch.flush)",
    "      work-queue enqueue (probe jobs, bulk)",
    "  journal DONE of the batch (one transaction)",
    "catalog COMMIT (SQLite WAL, synchronous=FULL)",
    "journal writes (SQLite WAL, synchronous=FULL)",
    "journal reads",
    "os.fsync calls (files and directories)",
    "RecorderDocking.finish: outcome, custody, SAFE_TO_CLEAR",
)
# Batch sizes of the committer (calls: batches of that size, seconds: files in them).
BATCH_BUCKETS = ((1, 1), (2, 3), (4, 7), (8, 15), (16, 31), (32, 63), (64, 1 << 30))
BATCH_LABEL = "registration batches of {lo}-{hi} files"


def _install_profiler(prof: Profiler, app: Any) -> None:
    import catalog.queue as queue_mod
    import ingest.station as station_mod
    import storage.local as local_mod
    from catalog import Catalog
    from catalog.custody import ChainBatch
    from ingest.docking import RecorderDocking
    from ingest.journal import Journal
    from ingest.station import Station
    from storage import LocalStore

    # The batch sizes first: the timing wrapper below then wraps this one.
    commit_batch = Station._commit_batch

    def sized(self: Any, batch: list[Any]) -> None:
        prof.count(_batch_label(len(batch)), 1, len(batch))
        commit_batch(self, batch)

    Station._commit_batch = sized  # type: ignore[method-assign]
    L = iter(PROFILE_LABELS)
    prof.wrap(RecorderDocking, "stage", next(L))
    prof.wrap(station_mod, "copy_and_hash", next(L))
    prof.wrap(Station, "store_file", next(L))
    prof.wrap(LocalStore, "adopt", next(L))
    prof.wrap(local_mod, "_hash_path", next(L))
    prof.wrap(Station, "_commit_batch", next(L))
    prof.wrap(LocalStore, "make_durable", next(L))
    prof.wrap(Catalog, "run_retrying", next(L))
    prof.wrap(station_mod, "register_files", next(L))
    prof.wrap(ChainBatch, "add", next(L))
    prof.wrap(ChainBatch, "flush", next(L))
    prof.wrap(queue_mod, "enqueue_many", next(L))
    prof.wrap(Journal, "done", next(L))
    prof.wrap(app.catalog.engine.dialect, "do_commit", next(L))
    label = next(L)
    journal_writes = (
        "staged",
        "staged_many",
        "done",
        "quarantined",
        "rejected",
        "grew",
        "waiting",
        "finished",
    )
    for name in (*journal_writes, "add_files", "add_docking"):
        prof.wrap(Journal, name, label)
    label = next(L)
    for name in ("file", "files", "docking", "dockings"):
        prof.wrap(Journal, name, label)
    prof.wrap(os, "fsync", next(L))
    prof.wrap(RecorderDocking, "finish", next(L))


def child_main(spec_text: str) -> int:
    """One docking in this process (a fresh interpreter): time it, check it, report JSON."""
    from sqlalchemy import func, select

    import sm3engine
    from catalog.models import Recording
    from liuhen.app import App, initialize
    from storage import Digest, content_key

    spec = json.loads(spec_text)
    settings = load_settings(data_dir=spec["data_dir"])
    if settings.ingest.stable_s != 0:
        raise SystemExit("the child expects LIUHEN_INGEST_STABLE_S=0")
    app = App(settings)
    initialize(app)
    station = app.station()
    prof = Profiler() if spec["profile"] else None
    if prof is not None:
        _install_profiler(prof, app)
    rss_before = _proc_status_kb("VmRSS")
    cpu0 = os.times()
    with CpuMeter() as meter:
        t0 = time.perf_counter()
        result = station.run_docking(Path(spec["root"]))
        seconds = time.perf_counter() - t0
    cpu1 = os.times()
    hwm = _proc_status_kb("VmHWM")
    expected: list[str] = json.loads(Path(spec["manifest"]).read_text(encoding="utf-8"))
    missing = [h for h in expected if not app.store.exists(content_key(Digest("sha256", h)))]
    with app.catalog.session() as s:
        recordings = s.scalar(select(func.count()).select_from(Recording))
    station.close()
    app.close()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "state": result.state,
                "files": result.files,
                "stored": result.stored,
                "problems": result.problems,
                "missing_objects": len(missing),
                "recordings": recordings,
                "rss_before_kb": rss_before,
                "hwm_kb": hwm,
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "other_cpu": meter.other,
                "cpu_user": cpu1.user - cpu0.user,
                "cpu_sys": cpu1.system - cpu0.system,
                "profile": prof.stats if prof is not None else {},
                "sm3_engine": "{engine} on {instructions}".format(**sm3engine.engine_info()),
            }
        )
    )
    return 0


# -- measuring and reporting -----------------------------------------------------------------


@dataclass
class Measure:
    label: str
    runs: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)  # CpuMeter.other of each run
    docked: list[Docked] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def other_at_best(self) -> float:
        return self.other[self.runs.index(self.best)]


@dataclass
class WorkloadResult:
    workload: Workload
    measures: dict[str, Measure]
    profiled: Docked | None = None  # the instrumented run (--profile)

    def best(self, label: str) -> float:
        return self.measures[label].best

    @property
    def floor(self) -> float:
        """The slower of reading the bytes once and SM3 over them."""
        return max(self.best(CAT), self.best(SM3))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def measure_workload(
    w: Workload,
    scratch_base: Path,
    repeat: int,
    repeat_fast: int,
    profile: bool,
    *,
    copies: bool = True,
) -> WorkloadResult:
    """Baselines and pipeline in rounds; ``copies``: the copy baselines too (the lanes
    workload is judged against SM3 alone)."""
    fast: list[tuple[str, Callable[[Workload, Path], float]]] = [(CAT, run_cat), (SM3, run_sm3)]
    slow: list[tuple[str, Callable[[Workload, Path], float]]] = (
        [(NAIVE, run_naive), (DURABLE, run_durable_copy)] if copies else []
    )
    if profile and copies:  # the one-read copy without the station around it, for the profile
        slow.append((ONE_READ, run_one_read_copy))
    # The pipeline, and with --baseline-tree the same docking by other code (before/after
    # in one run), alternating which goes first from round to round.
    pipelines = [(PIPELINE, REPO)] + ([(BASELINE, BASELINE_TREE)] if BASELINE_TREE else [])
    labels = [label for label, _fn in fast + slow] + [label for label, _tree in pipelines]
    measures = {label: Measure(label) for label in labels}
    n = 0
    done = _Leftovers(w)
    # Rounds, so that drift on a shared machine touches every measurement alike.
    for rnd in range(max(repeat, repeat_fast)):
        todo = (fast if rnd < repeat_fast else []) + (slow if rnd < repeat else [])
        for label, fn in todo:
            n += 1
            scratch = scratch_base / f"run-{n}"
            settle(w)
            with CpuMeter() as meter:
                seconds = fn(w, scratch)
            done.drop(scratch)
            measures[label].runs.append(seconds)
            measures[label].other.append(meter.other)
            _say(f"  round {rnd + 1}: {label}: {seconds:.3f} s")
        for label, tree in pipelines[:: -1 if rnd % 2 else 1] if rnd < repeat else ():
            n += 1
            data_dir = scratch_base / f"run-{n}" / "data"
            data_dir.parent.mkdir(parents=True)
            settle(w)
            docked = run_pipeline(w, data_dir, tree=tree)
            done.drop(data_dir.parent)
            measures[label].runs.append(docked.seconds)
            measures[label].other.append(docked.other_cpu)
            measures[label].docked.append(docked)
            _say(
                f"  round {rnd + 1}: {label}: {docked.seconds:.3f} s "
                f"(peak RSS {docked.hwm_kb / 1024:.1f} MiB)"
            )
    result = WorkloadResult(w, measures)
    if profile:
        n += 1
        data_dir = scratch_base / f"run-{n}" / "data"
        data_dir.parent.mkdir(parents=True)
        settle(w)
        docked = run_pipeline(w, data_dir, profile=True)
        done.drop(data_dir.parent)
        result.profiled = docked
        _say(f"  profiled run: {docked.seconds:.3f} s")
    done.remove_all()
    return result


class _Leftovers:
    """The runs' copies of a workload of many files, removed only once the workload is
    measured (while the disk has room for them).

    On ext4 without a journal (this benchmark's usual virtual disk), every file created
    looks past the inodes freed in the last ~30 s (``recently_deleted``): removing a run's
    thousands of files just before the next run put 1–1.5 ms of kernel time per file into
    that run (3,001 × 100 kB: 0.6–1.0 ms of system CPU per file with nothing removed
    before it, 1.5–2.3 ms right after a removal). A station does not free thousands of
    inodes before each docking; a big workload's few files are removed at once."""

    MANY_FILES = 100

    def __init__(self, w: Workload) -> None:
        self.w = w
        self.kept: list[Path] = []

    def drop(self, folder: Path) -> None:
        if not folder.exists():
            return  # a run that wrote nothing (cat, SM3)
        free = shutil.disk_usage(folder.parent).free
        if self.w.count >= self.MANY_FILES and free > 4 * self.w.nbytes:
            self.kept.append(folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)

    def remove_all(self) -> None:
        for folder in self.kept:
            shutil.rmtree(folder, ignore_errors=True)
        self.kept.clear()


def _share(x: float) -> str:
    return f"{x:8.0%}" if x == x else "       –"  # NaN: too short to tell


def _row(label: str, m: Measure, w: Workload, floor: float | None) -> str:
    runs = " ".join(f"{r:.2f}" for r in m.runs)
    ratio = f"{m.best / floor:6.2f}×" if floor else "      –"
    return (
        f"  {label:<38} {m.best:9.3f}  {runs:<20} {w.nbytes / m.best / MB:9.1f}"
        f" {w.count / m.best:9.1f}  {ratio:>14}  {_share(m.other_at_best)}"
    )


def print_table(r: WorkloadResult) -> None:
    w = r.workload
    print(f"\n{w.title}: {w.count} files, {w.nbytes / MB:,.1f} MB")
    print(
        f"  {'measurement':<38} {'best s':>9}  {'runs (s)':<20} {'MB/s':>9} {'files/s':>9}"
        f"  {'÷ max(cat,SM3)':>14}  {'other CPU'}"
    )
    for label, m in r.measures.items():
        print(_row(label, m, w, r.floor))
    print("  (other CPU: share of the machine busy outside the measured process during the best")
    print("   run: other users of a shared machine, and kernel writeback working for it)")
    pipe = r.measures[PIPELINE]
    d = pipe.docked[pipe.runs.index(pipe.best)]
    avail = d.seconds * (os.cpu_count() or 1)
    print(
        f"  pipeline process CPU during its best run: user {d.cpu_user:.2f} s + sys "
        f"{d.cpu_sys:.2f} s of {avail:.2f} CPU-s available"
    )


def print_profile(r: WorkloadResult) -> None:
    d = r.profiled
    if d is None:
        return
    print(
        f"\n  profile of one instrumented docking ({r.workload.title}): wall {d.seconds:.3f} s, "
        f"process CPU user {d.cpu_user:.2f} s + sys {d.cpu_sys:.2f} s "
        f"(of {d.seconds * (os.cpu_count() or 1):.2f} CPU-s available); "
        "seconds below are summed over threads, nested rows are inside the row above"
    )
    print(f"    {'where':<56} {'calls':>7} {'seconds':>9} {'ms/call':>9}")
    for label in PROFILE_LABELS:
        calls, seconds = d.profile.get(label, [0, 0.0])
        per = f"{seconds / calls * 1000:9.2f}" if calls else "        –"
        print(f"    {label:<56} {int(calls):7d} {seconds:9.3f} {per}")
    sizes = {k: v for k, v in d.profile.items() if k.startswith(BATCH_LABEL[:20])}
    batches = sum(int(c) for c, _files in sizes.values())
    if batches:
        files = sum(int(n) for _c, n in sizes.values())
        print(
            f"    registration batches: {batches}, {files / batches:.1f} files each on "
            "average; batches (files) by size:"
        )
        for lo, hi in BATCH_BUCKETS:
            calls, n = sizes.get(_batch_label(lo), [0, 0])
            span = f"{lo}" if lo == hi else f"{lo}-{hi}" if hi < 1 << 30 else f"{lo}+"
            print(f"      {span:>6} files: {int(calls):6d} ({int(n)})")


def machine_info(workdir: Path) -> dict[str, str]:
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    fs = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["df", "-PT", str(workdir)], capture_output=True, text=True, check=True, timeout=10
        ).stdout.splitlines()
        fs = f"{out[-1].split()[1]} ({out[-1].split()[0]})"
    return {
        "cpus": f"{len(os.sched_getaffinity(0))} usable of {os.cpu_count()} ({cpu})",
        "memory": mem,
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "kernel": platform.release(),
        "workdir": f"{workdir} on {fs}",
    }


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def lanes_verdict(lanes: WorkloadResult | None) -> list[str]:
    """Many recordings docked at once against hashlib's SM3 over their bytes, one thread."""
    if lanes is None:
        return ["SKIP  offload, recordings at once (--lanes-count 0)"]
    pipe, sm3 = lanes.measures[PIPELINE], lanes.measures[SM3]
    ratio = pipe.best / sm3.best
    median = _median(pipe.runs) / _median(sm3.runs)
    engine = pipe.docked[0].sm3_engine if pipe.docked else "?"
    return [
        f"{_verdict(ratio <= TARGET_LANES)}  offload, {lanes.workload.title} at once: "
        f"pipeline {pipe.best:.2f} s / SM3 (hashlib, 1 thread) {sm3.best:.2f} s = {ratio:.2f} "
        f"(medians {_median(pipe.runs):.2f} / {_median(sm3.runs):.2f} s = {median:.2f}; "
        f"target ≤ {TARGET_LANES}); station SM3: {engine}"
    ]


def verdicts(
    big: WorkloadResult | None, small: WorkloadResult | None, mem_small: Docked | None
) -> list[str]:
    lines: list[str] = []
    verdict = _verdict

    if big is not None:
        ratio = big.best(PIPELINE) / big.floor
        lines.append(
            f"{verdict(ratio <= TARGET_RATIO)}  offload, big files: pipeline "
            f"{big.best(PIPELINE):.2f} s / max(cat {big.best(CAT):.2f} s, SM3 "
            f"{big.best(SM3):.2f} s) = {ratio:.2f} (target ≤ {TARGET_RATIO})"
        )
        disk = max(big.floor, big.best(DURABLE))
        lines.append(
            f"info  big files: pipeline / max(cat, SM3, copyfile + fsync "
            f"{big.best(DURABLE):.2f} s) = {big.best(PIPELINE) / disk:.2f} "
            "(the floor with the disk's durable write speed in it)"
        )
        vs = big.best(PIPELINE) / big.best(NAIVE)
        lines.append(
            f"info  big files: pipeline / naive copy-then-hash = {vs:.2f} "
            f"({big.best(NAIVE) / big.best(PIPELINE):.2f}× as fast; naive has no fsync, "
            "no verify re-read, no catalog)"
        )
    else:
        lines.append("SKIP  offload, big files (--big-count 0)")
    if small is not None:
        rate = small.workload.count / small.best(PIPELINE)
        median = small.workload.count / _median(small.measures[PIPELINE].runs)
        lines.append(
            f"{verdict(rate >= TARGET_FILES_S)}  offload, small files: {rate:.0f} files/s "
            f"({small.workload.count} files in {small.best(PIPELINE):.2f} s; median "
            f"{median:.0f} files/s; target ≥ {TARGET_FILES_S:.0f} files/s)"
        )
        lines.append(
            f"info  small files: pipeline / max(cat, SM3) = "
            f"{small.best(PIPELINE) / small.floor:.1f}; pipeline / naive = "
            f"{small.best(PIPELINE) / small.best(NAIVE):.2f}; copyfile + fsync alone "
            f"{small.workload.count / small.best(DURABLE):.0f} files/s"
        )
        if BASELINE in small.measures:
            base = small.best(BASELINE)
            lines.append(
                f"info  small files, same run: --baseline-tree {small.workload.count / base:.0f} "
                f"files/s, this tree {rate:.0f} files/s ({base / small.best(PIPELINE):.2f}× as "
                f"many); each ÷ copyfile + fsync: {small.best(DURABLE) / base:.2f} and "
                f"{small.best(DURABLE) / small.best(PIPELINE):.2f}"
            )
    else:
        lines.append("SKIP  offload, small files (--small-count 0)")
    if big is not None and mem_small is not None:
        hwm_big = max(d.hwm_kb for d in big.measures[PIPELINE].docked) / 1024
        hwm_small = mem_small.hwm_kb / 1024
        diff = hwm_big - hwm_small
        lines.append(
            f"{verdict(abs(diff) * 1.048576 <= TARGET_MEM_MB)}  memory: peak RSS (VmHWM of the "
            f"docking process) {hwm_small:.1f} MiB with small files vs {hwm_big:.1f} MiB with "
            f"big files: difference {diff:+.1f} MiB (target within {TARGET_MEM_MB:.0f} MB)"
        )
    else:
        lines.append("SKIP  memory (needs the big-file workload)")
    return lines


# -- main --------------------------------------------------------------------------------------


def _default_workdir_base() -> Path:
    base = REPO / "bench-data"
    try:
        base.mkdir(exist_ok=True)
        probe = base / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
        return base
    except OSError:
        return Path(tempfile.gettempdir())


@contextlib.contextmanager
def workdir(base: Path | None, keep: bool) -> Iterator[Path]:
    parent = base or _default_workdir_base()
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="offload-", dir=parent))
    try:
        yield path
    finally:
        if keep:
            _say(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def _check_space(path: Path, need: int) -> None:
    free = shutil.disk_usage(path).free
    if free < need:
        raise SystemExit(
            f"{path}: {free / GIB:.1f} GiB free, the benchmark needs about {need / GIB:.1f} GiB; "
            "use --workdir elsewhere or smaller --big-gb"
        )


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.offload",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--big-gb", type=float, default=2.0, help="size of each big file, GiB")
    p.add_argument("--big-count", type=int, default=2, help="number of big files (0: skip)")
    p.add_argument("--small-count", type=int, default=5000, help="number of small files (0: skip)")
    p.add_argument("--small-kb", type=float, default=100.0, help="size of each small file, kB")
    p.add_argument(
        "--lanes-count",
        type=int,
        default=16,
        help="recordings docked at once for the SM3 lanes target (0: skip)",
    )
    p.add_argument("--lanes-mb", type=float, default=64.0, help="size of each of them, MB")
    p.add_argument(
        "--mem-mb",
        type=float,
        default=20.0,
        help="file size (MB) of the small-file docking compared for peak RSS",
    )
    p.add_argument("--repeat", type=int, default=2, help="runs of the slow measurements")
    p.add_argument("--repeat-fast", type=int, default=3, help="runs of cat and SM3")
    p.add_argument("--workdir", type=Path, help="make the temporary work folder in DIR")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument(
        "--profile",
        action="store_true",
        help="one more, instrumented docking per workload: where the time goes",
    )
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument(
        "--baseline-tree",
        type=Path,
        metavar="DIR",
        help="also time each docking with the code of the checkout DIR (e.g. `git archive` "
        "of an earlier commit, its sm3engine built or copied in), alternated round by round",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="before each timed run, wait up to S seconds for other load on the machine to stop",
    )
    args = p.parse_args(argv)
    if args.repeat < 1 or args.repeat_fast < 1:
        p.error("--repeat and --repeat-fast must be at least 1")
    if (
        min(args.big_count, args.small_count, args.lanes_count) < 0
        or min(args.big_gb, args.small_kb, args.lanes_mb) <= 0
    ):
        p.error("counts must not be negative and sizes must be positive")
    return args


def _result_json(r: WorkloadResult) -> dict[str, Any]:
    w = r.workload
    return {
        "files": w.count,
        "bytes": w.nbytes,
        "measures": {
            k: {
                "runs": m.runs,
                "best": m.best,
                "mb_s": w.nbytes / m.best / MB,
                "files_s": w.count / m.best,
                "peak_rss_kib": [d.hwm_kb for d in m.docked],
                # process CPU seconds (user, system) of each docking run
                "cpu_s": [[d.cpu_user, d.cpu_sys] for d in m.docked],
            }
            for k, m in r.measures.items()
        },
        "floor": r.floor,
        "profiled": vars(r.profiled) if r.profiled else None,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CHILD_FLAG]:
        return child_main(argv[1])
    args = parse_args(argv)
    global WAIT_IDLE_S, BASELINE_TREE
    WAIT_IDLE_S = args.wait_idle
    BASELINE_TREE = args.baseline_tree.absolute() if args.baseline_tree else None
    big_size = int(args.big_gb * GIB)
    small_size = int(args.small_kb * 1000)
    mem_size = int(args.mem_mb * MB)
    started = time.perf_counter()
    with workdir(args.workdir, args.keep) as wd:
        info = machine_info(wd)
        lanes_size = int(args.lanes_mb * MB)
        need = (
            2
            * max(
                big_size * args.big_count,
                small_size * args.small_count,
                lanes_size * args.lanes_count,
            )
            + GIB
        )
        _check_space(wd, need)
        big = small = lanes = None
        mem_small: Docked | None = None
        if args.big_count:
            title = f"big: {args.big_count} × {args.big_gb:g} GiB"
            _say(f"{title}: writing the recorder…")
            w = make_workload(wd / "big", "big", title, args.big_count, big_size, seed=1)
            big = measure_workload(w, wd / "big", args.repeat, args.repeat_fast, args.profile)
            shutil.rmtree(wd / "big")
            title = f"memory reference: {args.big_count} × {args.mem_mb:g} MB"
            _say(f"{title}: writing the recorder…")
            w = make_workload(wd / "mem", "mem", title, args.big_count, mem_size, seed=3)
            (wd / "mem" / "run").mkdir()
            settle(w)
            mem_small = run_pipeline(w, wd / "mem" / "run" / "data")
            _say(
                f"  {PIPELINE}: {mem_small.seconds:.3f} s "
                f"(peak RSS {mem_small.hwm_kb / 1024:.1f} MiB)"
            )
            shutil.rmtree(wd / "mem")
        if args.lanes_count:
            title = f"lanes: {args.lanes_count} × {args.lanes_mb:g} MB"
            _say(f"{title}: writing the recorder…")
            w = make_workload(wd / "lanes", "lanes", title, args.lanes_count, lanes_size, seed=4)
            lanes = measure_workload(
                w, wd / "lanes", args.repeat, args.repeat_fast, False, copies=False
            )
            shutil.rmtree(wd / "lanes")
        if args.small_count:
            title = f"small: {args.small_count} × {args.small_kb:g} kB"
            _say(f"{title}: writing the recorder…")
            w = make_workload(wd / "small", "small", title, args.small_count, small_size, seed=2)
            small = measure_workload(w, wd / "small", args.repeat, args.repeat_fast, args.profile)

    print("offload benchmark (python -m bench.offload); MB = 10^6 bytes; best of the runs")
    for k, v in info.items():
        print(f"  {k:<8} {v}")
    print(
        f"  settings: defaults (file_workers {IngestSettings().file_workers}, chunk_mb "
        f"{IngestSettings().chunk_mb}), stable_s 0, SQLite catalog, LocalStore"
    )
    print("  each recorder also holds DEVICE.INF, counted as a file")
    for r in (big, lanes, small):
        if r is not None:
            print_table(r)
            print_profile(r)
    if big is not None and mem_small is not None:
        hwm = [d.hwm_kb / 1024 for d in big.measures[PIPELINE].docked]
        before = [d.rss_before_kb / 1024 for d in big.measures[PIPELINE].docked]
        print(
            f"\npeak RSS of the docking process (VmHWM): {big.workload.title}: "
            f"{', '.join(f'{h:.1f}' for h in hwm)} MiB (RSS before the docking "
            f"{', '.join(f'{b:.1f}' for b in before)} MiB); "
            f"{args.big_count} × {args.mem_mb:g} MB: {mem_small.hwm_kb / 1024:.1f} MiB "
            f"(before {mem_small.rss_before_kb / 1024:.1f} MiB)"
        )
    lines = verdicts(big, small, mem_small) + lanes_verdict(lanes)
    if lanes is not None:
        hwm = [d.hwm_kb / 1024 for d in lanes.measures[PIPELINE].docked]
        print(
            f"\npeak RSS of the docking process (VmHWM), {lanes.workload.title}: "
            f"{', '.join(f'{h:.1f}' for h in hwm)} MiB"
        )
    print()
    for line in lines:
        print(line)
    print(f"\ntotal benchmark time {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "big": _result_json(big) if big else None,
                    "small": _result_json(small) if small else None,
                    "lanes": _result_json(lanes) if lanes else None,
                    "memory_small": vars(mem_small) if mem_small else None,
                    "verdicts": lines,
                },
                indent=2,
                ensure_ascii=False,
            ),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
