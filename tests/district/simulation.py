"""The district simulation: N stations and M workers on one PostgreSQL and one S3 store.

Real processes on loopback: ``liuhen station watch`` per station (own data dir, station
id and signing key), ``liuhen worker`` per worker, a PostgreSQL cluster of the
simulation's own (so it can be stopped without touching anyone else's server) and an S3
server process (moto; or ``LIUHEN_TEST_S3_URL`` behind a proxy that can be cut).

Synthetic recorders dock at random stations at random times (a recorder folder appears
in the station's dock root, as a drop folder or a mount does); an officer undocks each
one when the station's status says SAFE TO CLEAR. Meanwhile the chaos driver, from a
seeded RNG, SIGKILLs stations and workers (a supervisor restarts them after a moment,
as systemd would), stops PostgreSQL for seconds (one 10-second outage during the
dockings), and freezes the S3 server for seconds (SIGSTOP/SIGCONT: moto keeps objects in
memory, so it is never killed). The run is bounded in dockings, chaos events and wall
time; it then drains (every docking SAFE_TO_CLEAR, the work queue empty), stops the
processes and runs the district invariant checker against its own ground truth.

Used by tests/district/test_district_small.py (CI size), bench/district.py (no chaos,
growing sizes), and by hand at large size::

    python -m tests.district.simulation --stations 16 --workers 6 --dockings 1000 \\
        --chaos 300 --max-wall 3600
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from archive_export.district_check import CheckOptions, DistrictReport, check_district

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Fake credentials for the moto server; an external endpoint keeps the caller's.
MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
# Variables that would send boto somewhere other than the server under test.
CLEARED_AWS = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)
TEST_S3_URL = "LIUHEN_TEST_S3_URL"


class SimulationError(RuntimeError):
    """The simulation could not run (a service would not start): not a test verdict."""


# -- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SimConfig:
    root: Path
    stations: int = 4
    workers: int = 2
    dockings: int = 50
    # At least this many chaos events; 0 turns chaos off (the benchmark).
    chaos_events: int = 20
    # One PostgreSQL outage of this length while recorders are docking (0: none).
    long_pg_outage_s: float = 10.0
    # Mean time between two dockings (exponential), over the whole district.
    docking_interval_s: float = 1.0
    # Bounds: the whole run, and the drain after the last docking and chaos event.
    max_wall_s: float = 600.0
    drain_timeout_s: float = 240.0
    seed: int = 1
    # Work-item lease: longer than a PostgreSQL outage plus a renewal interval, so a live
    # worker does not lose its item to another one while the catalog is away.
    lease_s: float = 20.0
    digest_sample: float = 1.0
    # Files per docking: (min, max) of each kind, drawn per docking.
    videos: tuple[int, int] = (1, 2)
    photos: tuple[int, int] = (0, 2)
    audio: tuple[int, int] = (0, 1)
    devices_per_station: int = 4
    # Chaos: gap between events, and outage lengths (uniform ranges, seconds).
    chaos_gap_s: tuple[float, float] = (0.5, 2.5)
    outage_s: tuple[float, float] = (1.0, 4.0)
    restart_delay_s: tuple[float, float] = (0.3, 2.0)


@dataclass
class ChaosLog:
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (t, kind, target)

    def counts(self) -> dict[str, int]:
        return dict(Counter(kind for _t, kind, _x in self.events))


@dataclass
class SimResult:
    config: SimConfig
    report: DistrictReport | None = None
    chaos: ChaosLog = field(default_factory=ChaosLog)
    dockings_placed: int = 0
    files_placed: int = 0
    bytes_placed: int = 0
    unplanned_exits: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    drained: bool = False
    problems: list[str] = field(default_factory=list)  # simulation-level failures
    timings: dict[str, float] = field(default_factory=dict)
    waits: dict[str, dict[str, float]] = field(default_factory=dict)
    # CPU seconds by component over the run (stations, workers with their ffmpeg,
    # PostgreSQL, the S3 server, this driver), for "where the time goes".
    cpu: dict[str, float] = field(default_factory=dict)
    pg_mode: str = ""
    s3_mode: str = ""
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.drained and not self.problems and self.report is not None and self.report.ok

    def summary(self) -> str:
        t = self.timings
        lines = [
            f"district simulation: {self.config.stations} stations, {self.config.workers} "
            f"workers, seed {self.config.seed}; PostgreSQL: {self.pg_mode}; S3: {self.s3_mode}",
            f"  dockings {self.dockings_placed}, files {self.files_placed}, "
            f"{self.bytes_placed / 1e6:.1f} MB; wall {t.get('wall_s', 0):.1f} s "
            f"(docking phase {t.get('feed_s', 0):.1f} s, drain {t.get('drain_s', 0):.1f} s, "
            f"check {t.get('check_s', 0):.1f} s)",
            f"  chaos events {len(self.chaos.events)}: {self.chaos.counts()}",
            f"  process restarts {self.restarts}; exits not caused by chaos: "
            f"{self.unplanned_exits or 'none'}",
            f"  drained: {self.drained}",
        ]
        if self.cpu:
            lines.append("  cpu seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.cpu.items()))
        if self.report is not None:
            lines.append(
                f"  invariant checker: {len(self.report.violations)} violation(s); "
                f"looked at {self.report.counts}"
            )
            lines += [f"    ✗ {v.describe()}" for v in self.report.violations[:200]]
        lines += [f"  ✗ {p}" for p in self.problems]
        return "\n".join(lines)

    def log_tails(self, lines: int = 40) -> str:
        out = []
        for name, path in sorted(self.logs.items()):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()
                out.append(f"----- {name} ({path}), last {lines} lines -----")
                out += text[-lines:]
        return "\n".join(out)


# -- small helpers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _clean_env() -> dict[str, str]:
    """The caller's environment without settings overrides (each process gets its own)."""
    keep = {TEST_S3_URL, "LIUHEN_TEST_PG_URL"}
    return {k: v for k, v in os.environ.items() if not k.startswith("LIUHEN_") or k in keep}


def liuhen_argv() -> list[str]:
    """The real `liuhen` entry point of this interpreter's environment."""
    script = Path(sys.executable).parent / "liuhen"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from liuhen.cli import main; main()"]


# -- PostgreSQL: a private cluster (or, without its binaries, a proxy that can be cut) ---------


class PrivatePostgres:
    """A PostgreSQL cluster of the simulation's own, in a temp dir, trust auth, loopback.

    Stopped with ``pg_ctl stop -m immediate`` (no shutdown checkpoint: crash recovery on
    the next start), started again on the same port. Run as the ``postgres`` user when
    we are root (PostgreSQL refuses to run as root).
    """

    mode = "private cluster (pg_ctl stop -m immediate / start)"

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        # Not under pytest's tmp dir: its parents are mode 0700 root, out of the
        # postgres user's reach.
        self.dir = Path(tempfile.mkdtemp(prefix="liuhen-sim-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/district"
        self.running = False

    @staticmethod
    def find_bindir() -> Path | None:
        env_dir = os.environ.get("LIUHEN_SIM_PG_BIN")
        candidates = [Path(env_dir)] if env_dir else []
        candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(Path(on_path).parent)
        for c in candidates:
            if (c / "initdb").exists() and (c / "pg_ctl").exists():
                return c
        return None

    def _run(self, *argv: str, timeout: float = 60) -> None:
        proc = subprocess.run(
            [*self._as, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise SimulationError(
                f"{' '.join(argv[:2])} failed ({proc.returncode}): "
                f"{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
            )

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self.start()
        from sqlalchemy import create_engine, text

        admin = create_engine(
            self.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE district"))
        admin.dispose()

    def start(self) -> None:
        # fsync off: the cluster's processes are killed, never the machine, so the page
        # cache keeps what was written. synchronous_commit stays on: with it off, a
        # commit acknowledged just before `stop -m immediate` is lost (the checker
        # found such a "lost" recording when it was off).
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c max_connections=300 -c fsync=off"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "start",
        )
        self.running = True

    def stop(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
        )
        self.running = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.running:
                self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class ProxiedPostgres:
    """Fallback without PostgreSQL binaries: a fresh schema on the shared server, reached
    through a TCP proxy whose cut() resets every connection (the server itself is never
    stopped: other tests use it)."""

    mode = "shared server behind a TCP proxy (cut / restore)"

    def __init__(self, base_url: str) -> None:
        from sqlalchemy.engine import make_url

        from tests.fixtures.s3server import TcpProxy

        self.base = make_url(base_url)
        self.schema = f"sim_{uuid.uuid4().hex[:12]}"
        self.proxy = TcpProxy(self.base.host or "127.0.0.1", self.base.port or 5432)
        via = self.base.set(host="127.0.0.1", port=self.proxy.port)
        rendered = via.render_as_string(hide_password=False)
        sep = "&" if "?" in rendered else "?"
        self.url = f"{rendered}{sep}options=-csearch_path%3D{self.schema}"
        self.running = True

    def init(self) -> None:
        from sqlalchemy import create_engine, text

        admin = create_engine(self.base)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        admin.dispose()

    def start(self) -> None:
        self.proxy.restore()
        self.running = True

    def stop(self) -> None:
        self.proxy.cut()
        self.running = False

    def close(self) -> None:
        from sqlalchemy import create_engine, text

        self.proxy.close()
        with contextlib.suppress(Exception):
            admin = create_engine(self.base)
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            admin.dispose()


def open_postgres() -> PrivatePostgres | ProxiedPostgres:
    """A private cluster when PostgreSQL's binaries work here; else the shared server
    behind a proxy (the reason is kept in ``mode``)."""
    why = "no initdb/pg_ctl found"
    bindir = PrivatePostgres.find_bindir()
    if os.environ.get("LIUHEN_SIM_PG") == "proxy":  # to exercise the fallback on purpose
        bindir, why = None, "LIUHEN_SIM_PG=proxy"
    if bindir is not None:
        private = PrivatePostgres(bindir)
        try:
            private.init()
            return private
        except Exception as exc:
            private.close()
            why = f"private cluster failed: {exc}"
    base = os.environ.get("LIUHEN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    proxied = ProxiedPostgres(base)
    try:
        proxied.init()
    except Exception as exc:
        proxied.close()
        raise SimulationError(
            f"cannot start PostgreSQL for the simulation ({why}), nor reach {base}: {exc}"
        ) from exc
    proxied.mode += f" [{why[:200]}]"
    return proxied


# -- S3: a moto server of our own (frozen with SIGSTOP), or an external one behind a proxy ----


class MotoS3:
    mode = "moto server process (SIGSTOP / SIGCONT)"

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(MOTO_ENV)
        self._log = log.open("ab")
        env = {k: v for k, v in _clean_env().items() if k not in CLEARED_AWS} | MOTO_ENV
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + 30
        while not _answers_http(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise SimulationError(
                    f"the moto S3 server on {self.url} did not start (log: {log})"
                )
            time.sleep(0.1)
        self.running = True

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)
        self.running = False

    def start(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.running = True

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class ProxiedS3:
    mode = "external S3 (LIUHEN_TEST_S3_URL) behind a TCP proxy (cut / restore)"

    def __init__(self, external: str) -> None:
        from urllib.parse import urlsplit

        from tests.fixtures.s3server import TcpProxy

        parts = urlsplit(external)
        if parts.scheme != "http":
            raise SimulationError(
                f"{TEST_S3_URL}={external}: the simulation's proxy passes plain HTTP only"
            )
        self.proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 80)
        self.url = self.proxy.url
        self.env: dict[str, str] = {}
        self.running = True

    def stop(self) -> None:
        self.proxy.cut()
        self.running = False

    def start(self) -> None:
        self.proxy.restore()
        self.running = True

    def close(self) -> None:
        self.proxy.close()


def _s3_client(url: str, env: dict[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    return session, session.client(
        "s3",
        endpoint_url=url,
        config=Config(
            s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 3}
        ),
    )


# -- processes under a supervisor --------------------------------------------------------------


class Supervised:
    """One station or worker process; restarted like a systemd unit with Restart=always."""

    def __init__(
        self, name: str, role: str, argv: list[str], env: dict[str, str], log: Path
    ) -> None:
        self.name, self.role, self.argv, self.env, self.log = name, role, argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.restart_at: float | None = None
        self.killed_by_chaos = False
        self.starts = 0

    def start(self) -> None:
        with self.log.open("ab") as f:
            f.write(f"\n=== start #{self.starts + 1} at {time.time():.3f}\n".encode())
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(self.log.parent),
            )
        self.starts += 1
        self.restart_at = None
        self.killed_by_chaos = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, restart_after: float) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.killed_by_chaos = True
        self.restart_at = time.monotonic() + restart_after

    def terminate(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Supervisor(threading.Thread):
    RESTART_S = 1.0  # RestartSec for a process that exited by itself

    def __init__(self, procs: list[Supervised], result: SimResult) -> None:
        super().__init__(name="supervisor", daemon=True)
        self.procs = procs
        self.result = result
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            with self.lock:
                now = time.monotonic()
                for p in self.procs:
                    if p.alive():
                        continue
                    if p.restart_at is None:  # exited by itself (e.g. catalog gone at start)
                        code = p.proc.returncode if p.proc else None
                        key = f"{p.name} (exit {code})"
                        self.result.unplanned_exits[key] = (
                            self.result.unplanned_exits.get(key, 0) + 1
                        )
                        p.restart_at = now + self.RESTART_S
                    if now >= p.restart_at:
                        p.start()
                        self.result.restarts += 1

    def stop_all(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
        with self.lock:
            for p in self.procs:
                p.terminate()


# -- synthetic recorders ----------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    ext: str  # MP4, WAV, JPG
    folder: str
    data: bytes
    # The file-name stem the media carry inside (MP4 and WAV title, JPEG comment); every
    # copy gets its own name there, so its derivatives differ from every other copy's.
    stem: str


def render_templates(where: Path) -> list[Template]:
    """A few tiny real media files, made once; every docking copies them with a unique tail
    (ffmpeg for every docking would dominate the run on a small machine)."""
    from ingest.synthetic import make_recorder

    rec = make_recorder(
        where,
        h264=1,
        h265=0,
        wav=1,
        jpeg=1,
        truncated=0,
        segments=0,
        duration_s=1.0,
        size=(160, 120),
        with_device_info=False,
        seed=7,
    )
    out = []
    for f in rec.media():
        folder, name = f.relpath.rsplit("/", 1)
        ext = name.rsplit(".", 1)[1].upper()
        stem = name.rsplit(".", 1)[0]
        out.append(Template(ext, folder, (where / f.relpath).read_bytes(), stem))
    return out


def unique_copy(t: Template, tag: bytes, stem: str) -> bytes:
    """The template's bytes made unique by ``tag``, still a well-formed file of its type,
    with ``stem`` (the copy's name, as long as the template's) for the name inside."""
    assert len(stem) == len(t.stem), (stem, t.stem)
    t = Template(t.ext, t.folder, t.data.replace(t.stem.encode(), stem.encode()), stem)
    if t.ext == "MP4":  # a trailing 'free' box: skipped by every MP4 reader
        return t.data + struct.pack(">I", 8 + len(tag)) + b"free" + tag
    if t.ext == "WAV":  # an extra RIFF chunk (even length), and the RIFF size updated
        body = tag + (b"\0" if len(tag) % 2 else b"")
        data = bytearray(t.data + b"lhid" + struct.pack("<I", len(tag)) + body)
        data[4:8] = struct.pack("<I", len(data) - 8)
        return bytes(data)
    return t.data + tag  # JPEG: bytes after the end-of-image marker are ignored


@dataclass
class PlacedDocking:
    station: int
    serial: str
    path: Path
    files: int
    placed_at: float
    safe_at: float | None = None


class Feeder:
    """Docks synthetic recorders at random stations at random times."""

    def __init__(
        self,
        cfg: SimConfig,
        rng: random.Random,
        templates: list[Template],
        docks: list[Path],
        prep: Path,
    ) -> None:
        from ingest.synthetic import DeviceInfo

        self.cfg, self.rng, self.templates, self.docks, self.prep = cfg, rng, templates, docks, prep
        self.devices = {
            (s, d): DeviceInfo(
                serial=f"SIM{s:02d}{d:02d}",
                officer_number=f"7{s:02d}{d:02d}0",
                officer_name=f"警员{s:02d}{d:02d}",
                unit_number="310104000000",
                unit_name="模拟分局",
                model="DSJ-SIM",
            )
            for s in range(cfg.stations)
            for d in range(cfg.devices_per_station)
        }
        self.counters: Counter[str] = Counter()
        self.docked: set[str] = set()  # serials now at a station
        self.placed: list[PlacedDocking] = []
        self.expected: set[str] = set()
        self.bytes = 0
        self.lock = threading.Lock()
        self.base = datetime(2026, 11, 1, 8, 0, 0)

    def free_device(self, station: int) -> Any:
        with self.lock:
            free = [
                dev
                for (s, _d), dev in self.devices.items()
                if s == station and dev.serial not in self.docked
            ]
        return self.rng.choice(free) if free else None

    def dock(self, station: int) -> PlacedDocking | None:
        import hashlib

        from ingest.synthetic import DEVICE_INFO_NAME, recorder_filename

        device = self.free_device(station)
        if device is None:
            return None
        n = len(self.placed)
        folder = self.prep / f"{device.serial}-{n:05d}"
        (folder).mkdir(parents=True)
        files: list[tuple[str, bytes]] = [(DEVICE_INFO_NAME, device.info_text().encode())]
        start = self.base + timedelta(hours=n)
        counts = {
            "MP4": self.rng.randint(*self.cfg.videos),
            "JPG": self.rng.randint(*self.cfg.photos),
            "WAV": self.rng.randint(*self.cfg.audio),
        }
        for t in self.templates:
            for _ in range(counts.get(t.ext, 0)):
                self.counters[device.serial] += 1
                counter = (self.counters[device.serial] - 1) % 9999 + 1
                start += timedelta(seconds=30)
                name = recorder_filename(device, start, counter, t.ext)
                tag = f"liuhen-sim {uuid.uuid4()} {name}".encode()
                files.append((f"{t.folder}/{name}", unique_copy(t, tag, name.rsplit(".", 1)[0])))
        past = time.time() - 3600  # finished recordings: their mtime is well in the past
        for rel, data in files:
            p = folder / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            os.utime(p, (past, past))
            self.expected.add(hashlib.sha256(data).hexdigest())
            self.bytes += len(data)
        target = self.docks[station] / folder.name
        os.rename(folder, target)  # appears at once, like a mount
        placed = PlacedDocking(station, device.serial, target, len(files), time.monotonic())
        with self.lock:
            self.docked.add(device.serial)
            self.placed.append(placed)
        return placed


class Officer(threading.Thread):
    """Looks at each station's status and undocks recorders shown SAFE TO CLEAR."""

    def __init__(self, feeder: Feeder, journals: list[Path]) -> None:
        super().__init__(name="officer", daemon=True)
        self.feeder = feeder
        self.journals = journals
        self.stopping = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        from ingest.journal import Journal
        from ingest.status import status_rows  # what `liuhen station status --json` shows

        opened: dict[int, Journal] = {}
        try:
            while not self.stopping.wait(0.3):
                for station, path in enumerate(self.journals):
                    if station not in opened:
                        if not path.exists():
                            continue
                        opened[station] = Journal(path)
                    try:
                        rows = status_rows(opened[station])
                    except Exception as exc:  # a station restarting mid-write: look again
                        self.errors.append(f"station {station}: {exc}")
                        continue
                    safe = {r["docking"] for r in rows if r["safe_to_clear"]}
                    by_path = {}
                    for d in opened[station].dockings():
                        if d.uid in safe:
                            by_path[d.source_path] = d
                    with self.feeder.lock:
                        waiting = [
                            p
                            for p in self.feeder.placed
                            if p.station == station and p.safe_at is None
                        ]
                    for p in waiting:
                        if str(p.path) in by_path:
                            shutil.rmtree(p.path)  # undocked
                            p.safe_at = time.monotonic()
                            with self.feeder.lock:
                                self.feeder.docked.discard(p.serial)
        finally:
            for j in opened.values():
                j.close()


# -- chaos ------------------------------------------------------------------------------------


class Chaos(threading.Thread):
    def __init__(self, cfg: SimConfig, rng: random.Random, sim: Simulation) -> None:
        super().__init__(name="chaos", daemon=True)
        self.cfg, self.rng, self.sim = cfg, rng, sim
        self.log = sim.result.chaos
        self.stopping = threading.Event()
        self.long_outage_done = cfg.long_pg_outage_s <= 0
        self.error: BaseException | None = None
        self.t0 = time.monotonic()

    def note(self, kind: str, target: str) -> None:
        self.log.events.append((round(time.monotonic() - self.t0, 2), kind, target))

    def done(self) -> bool:
        return (
            self.sim.feeding_done.is_set()
            and len(self.log.events) >= self.cfg.chaos_events
            and self.long_outage_done
        )

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the simulation, never silently lost
            self.error = exc
        finally:
            # Whatever happened, leave every service running.
            self.sim.pg_up()
            self.sim.s3_up()

    def _run(self) -> None:
        cfg, rng = self.cfg, self.rng
        if cfg.chaos_events <= 0 and self.long_outage_done:
            return
        while not self.stopping.is_set() and not self.done():
            if self.stopping.wait(rng.uniform(*cfg.chaos_gap_s)):
                return
            placed = len(self.sim.feeder.placed)
            if not self.long_outage_done and placed >= cfg.dockings * 0.3:
                self.note("pg-outage-long", f"{cfg.long_pg_outage_s:.0f} s")
                self.sim.pg_down()
                self.stopping.wait(cfg.long_pg_outage_s)
                self.sim.pg_up()
                self.long_outage_done = True
                continue
            if cfg.chaos_events <= 0 or (
                len(self.log.events) >= cfg.chaos_events and self.sim.feeding_done.is_set()
            ):
                continue
            kind = rng.choices(
                ["kill-station", "kill-worker", "pg-outage", "s3-outage"], weights=[35, 25, 20, 20]
            )[0]
            if kind in ("kill-station", "kill-worker"):
                role = "station" if kind == "kill-station" else "worker"
                procs = [p for p in self.sim.procs if p.role == role]
                victim = rng.choice(procs)
                with self.sim.supervisor.lock:
                    victim.kill(rng.uniform(*cfg.restart_delay_s))
                self.note(kind, victim.name)
            elif kind == "pg-outage":
                seconds = rng.uniform(*cfg.outage_s)
                self.note(kind, f"{seconds:.1f} s")
                self.sim.pg_down()
                self.stopping.wait(seconds)
                self.sim.pg_up()
            else:
                seconds = rng.uniform(*cfg.outage_s)
                self.note(kind, f"{seconds:.1f} s")
                self.sim.s3_down()
                self.stopping.wait(seconds)
                self.sim.s3_up()


# -- the simulation ---------------------------------------------------------------------------


class Simulation:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.result = SimResult(cfg)
        self.rng = random.Random(cfg.seed)
        self.root = cfg.root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs = self.root / "logs"
        self.logs.mkdir(exist_ok=True)
        self.procs: list[Supervised] = []
        self.feeding_done = threading.Event()
        self._svc_lock = threading.Lock()
        self.pg: PrivatePostgres | ProxiedPostgres | None = None
        self.s3: MotoS3 | ProxiedS3 | None = None

    def shutdown(self) -> None:
        """Stop every station and worker process this simulation started."""
        supervisor = getattr(self, "supervisor", None)
        if supervisor is not None:
            supervisor.stop_all()
        for p in self.procs:
            p.terminate()

    # services, toggled by chaos (and always brought back)
    def pg_down(self) -> None:
        with self._svc_lock:
            assert self.pg is not None
            if self.pg.running:
                self.pg.stop()

    def pg_up(self) -> None:
        with self._svc_lock:
            if self.pg is not None and not self.pg.running:
                self.pg.start()

    def s3_down(self) -> None:
        with self._svc_lock:
            assert self.s3 is not None
            if self.s3.running:
                self.s3.stop()

    def s3_up(self) -> None:
        with self._svc_lock:
            if self.s3 is not None and not self.s3.running:
                self.s3.start()

    @contextlib.contextmanager
    def services(self) -> Iterator[None]:
        self.pg = open_postgres()
        self.result.pg_mode = self.pg.mode
        try:
            external = os.environ.get(TEST_S3_URL)
            self.s3 = ProxiedS3(external) if external else MotoS3(self.logs / "moto.log")
            self.result.s3_mode = self.s3.mode
            try:
                yield
            finally:
                self.s3.close()
        finally:
            self.pg.close()

    def process_env(self, data_dir: Path, station_id: str, bucket: str) -> dict[str, str]:
        assert self.pg is not None and self.s3 is not None
        env = {k: v for k, v in _clean_env().items() if k not in CLEARED_AWS} | self.s3.env
        env |= {
            "LIUHEN_HOME": str(data_dir),
            "LIUHEN_STATION_ID": station_id,
            "LIUHEN_CATALOG_URL": self.pg.url,
            "LIUHEN_STORE_URL": f"s3://{bucket}",
            "LIUHEN_STORE_ENDPOINT_URL": self.s3.url,
            "LIUHEN_STORE_OBJECT_LOCK_DAYS": "0",
            # An outage is waited out by the station's own retries, not boto's.
            "LIUHEN_STORE_MAX_ATTEMPTS": "2",
            "LIUHEN_STORE_CONNECT_TIMEOUT_S": "2",
            "LIUHEN_STORE_READ_TIMEOUT_S": "5",
            "LIUHEN_INGEST_STABLE_S": "0.5",
            "LIUHEN_INGEST_POLL_INTERVAL_S": "0.5",
            "LIUHEN_INGEST_RETRY_INITIAL_S": "0.25",
            "LIUHEN_INGEST_RETRY_MAX_S": "2",
            # One docking thread per dock slot: a docking waiting for the catalog holds
            # its thread, and a recorder beyond docking_workers would not even be staged
            # until one frees (see docs/district-simulation.md).
            "LIUHEN_INGEST_DOCKING_WORKERS": str(self.cfg.devices_per_station),
            "LIUHEN_MEDIA_LEASE_S": str(self.cfg.lease_s),
            "PYTHONUNBUFFERED": "1",
        }
        return env

    def setup(self) -> tuple[Any, str]:
        """Bucket, catalog schema, one data dir, key and catalog entry per process."""
        from config import load_settings
        from liuhen.app import App, initialize

        assert self.s3 is not None
        session, client = _s3_client(self.s3.url, dict(os.environ) | self.s3.env)
        bucket = f"liuhen-sim-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        argv = liuhen_argv()
        self.docks: list[Path] = []
        self.journals: list[Path] = []
        for kind, count in (("station", self.cfg.stations), ("worker", self.cfg.workers)):
            for i in range(count):
                name = f"sim-{kind[0]}{i + 1:02d}"
                data = self.root / kind / name
                env = self.process_env(data, name, bucket)
                # `liuhen init`, in this process (the same function; saves a start-up each).
                with _environ(env):
                    settings = load_settings(data_dir=data, environ=env)
                    app = App(settings)
                    try:
                        initialize(app)
                    finally:
                        app.close()
                log = self.logs / f"{name}.log"
                self.result.logs[name] = log
                if kind == "station":
                    dock = self.root / "docks" / name
                    dock.mkdir(parents=True)
                    self.docks.append(dock)
                    self.journals.append(settings.journal_path)
                    cmd = [*argv, "station", "watch", "--dock-root", str(dock)]
                else:
                    cmd = [*argv, "worker"]
                self.procs.append(Supervised(name, kind, cmd, env, log))
        return session, bucket

    def run(self) -> SimResult:
        cfg, res = self.cfg, self.result
        t0 = time.monotonic()
        with self.services():
            session, bucket = self.setup()
            templates = render_templates(self.root / "templates")
            prep = self.root / "prep"
            self.feeder = Feeder(cfg, self.rng, templates, self.docks, prep)
            cpu0, t_procs = _own_cpu(), time.monotonic()
            for p in self.procs:
                p.start()
            self.supervisor = Supervisor(self.procs, res)
            self.supervisor.start()
            officer = Officer(self.feeder, self.journals)
            officer.start()
            chaos = Chaos(cfg, random.Random(cfg.seed + 1), self)
            chaos.t0 = t0
            chaos.start()
            deadline = t0 + cfg.max_wall_s
            try:
                self._feed(deadline)
                res.timings["feed_s"] = time.monotonic() - t0
                while chaos.is_alive() and time.monotonic() < deadline:
                    chaos.join(timeout=0.5)
                chaos.stopping.set()
                chaos.join()
                if chaos.error is not None:
                    res.problems.append(f"chaos driver failed: {chaos.error!r}")
                t_drain = time.monotonic()
                res.drained = self._drain(
                    min(deadline + cfg.drain_timeout_s, time.monotonic() + cfg.drain_timeout_s)
                )
                res.timings["drain_s"] = time.monotonic() - t_drain
            finally:
                officer.stopping.set()
                chaos.stopping.set()
                with contextlib.suppress(Exception):
                    res.cpu = self._cpu(cpu0)
                    res.timings["cpu_wall_s"] = time.monotonic() - t_procs
                self.supervisor.stop_all()
                officer.join(timeout=5)
            res.dockings_placed = len(self.feeder.placed)
            res.files_placed = sum(p.files for p in self.feeder.placed)
            res.bytes_placed = self.feeder.bytes
            if res.dockings_placed < cfg.dockings:
                res.problems.append(
                    f"only {res.dockings_placed} of {cfg.dockings} dockings "
                    f"placed within {cfg.max_wall_s:.0f} s"
                )
            if len(res.chaos.events) < cfg.chaos_events:
                res.problems.append(
                    f"only {len(res.chaos.events)} of {cfg.chaos_events} chaos events happened"
                )
            if not res.drained:
                res.problems.append(self._not_drained())
            self._check_staging()
            t_check = time.monotonic()
            res.report = self._check(session, bucket)
            res.timings["check_s"] = time.monotonic() - t_check
            self._measure(t0)
        res.timings["wall_s"] = time.monotonic() - t0
        return res

    def _cpu(self, driver_start: float) -> dict[str, float]:
        """CPU seconds used so far by each component (live processes and their reaped
        children: ffmpeg under the workers, backends under the postmaster)."""
        cpu: dict[str, float] = {"stations": 0.0, "workers": 0.0}
        for p in self.procs:
            if p.proc is not None and p.proc.poll() is None:
                cpu[p.role + "s"] += _proc_cpu(p.proc.pid, children=True)
        if isinstance(self.pg, PrivatePostgres):
            pid_file = self.pg.data / "postmaster.pid"
            with contextlib.suppress(OSError, ValueError):
                master = int(pid_file.read_text().split()[0])
                total = _proc_cpu(master, children=True)
                for child in _children(master):
                    total += _proc_cpu(child, children=True)
                cpu["postgresql"] = total
        if isinstance(self.s3, MotoS3):
            cpu["s3 (moto)"] = _proc_cpu(self.s3.proc.pid, children=True)
        cpu["driver"] = _own_cpu() - driver_start
        return cpu

    def _feed(self, deadline: float) -> None:
        cfg = self.cfg
        while len(self.feeder.placed) < cfg.dockings and time.monotonic() < deadline:
            gap = (
                self.rng.expovariate(1.0 / cfg.docking_interval_s)
                if cfg.docking_interval_s > 0
                else 0.0
            )
            time.sleep(min(gap, 5 * cfg.docking_interval_s))
            station = self.rng.randrange(cfg.stations)
            if self.feeder.dock(station) is None:
                time.sleep(0.2)  # every recorder of that station is still docked
        self.feeding_done.set()

    def _queue_state(self) -> tuple[int, int, int]:
        """(work items open, catalog dockings not safe, catalog dockings)."""
        from sqlalchemy import func, select

        from catalog import Catalog
        from catalog.models import Docking, WorkItem

        assert self.pg is not None
        cat = Catalog(self.pg.url)
        try:
            with cat.session() as s:
                open_items = (
                    s.scalar(
                        select(func.count())
                        .select_from(WorkItem)
                        .where(WorkItem.state.in_(["PENDING", "CLAIMED"]))
                    )
                    or 0
                )
                unsafe = (
                    s.scalar(
                        select(func.count())
                        .select_from(Docking)
                        .where(Docking.state.not_in(["SAFE_TO_CLEAR", "CLEARED"]))
                    )
                    or 0
                )
                total = s.scalar(select(func.count()).select_from(Docking)) or 0
        finally:
            cat.dispose()
        return open_items, unsafe, total

    def _drain(self, deadline: float) -> bool:
        self.pg_up()
        self.s3_up()
        while time.monotonic() < deadline:
            pending = [p for p in self.feeder.placed if p.safe_at is None]
            if not pending:
                try:
                    open_items, unsafe, total = self._queue_state()
                except Exception:
                    open_items, unsafe, total = -1, -1, -1
                # Without workers (an offload-only benchmark) the queue just fills.
                queue_done = open_items == 0 or self.cfg.workers == 0
                if queue_done and unsafe == 0 and total == len(self.feeder.placed):
                    self.drained_at = time.monotonic()
                    return True
            time.sleep(0.5)
        return False

    def _not_drained(self) -> str:
        pending = [
            f"{p.path.name}@station{p.station + 1}" for p in self.feeder.placed if p.safe_at is None
        ]
        try:
            state = self._queue_state()
        except Exception as exc:
            state = (-1, -1, -1)
            pending.append(f"(catalog unreadable: {exc})")
        return (
            f"not drained within {self.cfg.drain_timeout_s:.0f} s: {len(pending)} "
            f"dockings never shown SAFE TO CLEAR {pending[:20]}; work items open "
            f"{state[0]}, catalog dockings not safe {state[1]} of {state[2]}"
        )

    def _check_staging(self) -> None:
        """Station-local: nothing left in any journal or staging area once drained."""
        from ingest import journal as J
        from ingest.journal import Journal

        for path in self.journals:
            j = Journal(path)
            try:
                for d in j.dockings():
                    left = j.files(d.uid, (J.PENDING, J.STAGED))
                    if left:
                        self.result.problems.append(
                            f"{path}: docking {d.uid} ({d.state}) still has {len(left)} "
                            "files pending or staged"
                        )
            finally:
                j.close()
            staging = path.parent / "staging"
            leftovers = [p for p in staging.rglob("*") if p.is_file()] if staging.is_dir() else []
            if leftovers:
                self.result.problems.append(
                    f"{staging}: {len(leftovers)} staged copies left: "
                    f"{[str(p) for p in leftovers[:5]]}"
                )

    def _check(self, session: Any, bucket: str) -> DistrictReport:
        from catalog import Catalog
        from config.settings import StoreSettings
        from storage.s3 import S3Store

        assert self.pg is not None and self.s3 is not None
        cat = Catalog(self.pg.url)
        store = S3Store(
            bucket,
            "",
            StoreSettings(url=f"s3://{bucket}", endpoint_url=self.s3.url, max_attempts=5),
            session=session,
        )
        try:
            return check_district(
                cat,
                store,
                CheckOptions(
                    digest_sample=self.cfg.digest_sample,
                    expected_sha256=frozenset(self.feeder.expected),
                    # The lease plus the drain's own margin; after the drain nothing is claimed.
                    lease_grace=timedelta(seconds=5),
                ),
            )
        finally:
            cat.dispose()

    def _measure(self, t0: float) -> None:
        """Throughput and the time dockings and recordings spent in each state."""
        from sqlalchemy import select

        from catalog import Catalog
        from catalog.models import CustodyEvent, Docking

        res = self.result
        placed = self.feeder.placed
        if not placed:
            return
        first = min(p.placed_at for p in placed)
        safe = [p.safe_at for p in placed if p.safe_at is not None]
        if safe:
            span = max(safe) - first
            res.timings["offload_span_s"] = span
            res.timings["files_per_s"] = res.files_placed / span if span > 0 else math.nan
            res.timings["bytes_per_s"] = res.bytes_placed / span if span > 0 else math.nan
        if getattr(self, "drained_at", None):
            res.timings["all_derived_s"] = self.drained_at - first
        assert self.pg is not None
        cat = Catalog(self.pg.url)
        try:
            with cat.session() as s:
                dock_waits = [
                    (d.finished_at - d.started_at).total_seconds()
                    for d in s.scalars(select(Docking))
                    if d.finished_at is not None
                ]
                at: dict[tuple[str, str], datetime] = {}
                for action, obj, when in s.execute(
                    select(CustodyEvent.action, CustodyEvent.object_id, CustodyEvent.at).where(
                        CustodyEvent.action.in_(["stored", "probed", "derived"])
                    )
                ):
                    ts = datetime.fromisoformat(when.replace("Z", "+00:00"))
                    key = (action, obj)
                    at[key] = max(at.get(key, ts), ts)
                derived_of: dict[str, datetime] = {}
                for ev in s.scalars(select(CustodyEvent).where(CustodyEvent.action == "derived")):
                    src = json.loads(ev.details).get("source")
                    ts = datetime.fromisoformat(ev.at.replace("Z", "+00:00"))
                    if src:
                        derived_of[src] = max(derived_of.get(src, ts), ts)
        finally:
            cat.dispose()
        stored_to_probed = [
            (at[("probed", o)] - t).total_seconds()
            for (a, o), t in at.items()
            if a == "stored" and ("probed", o) in at
        ]
        probed_to_derived = [
            (derived_of[o] - at[("probed", o)]).total_seconds()
            for (a, o) in at
            if a == "probed" and o in derived_of
        ]
        res.waits = {
            name: _stats(values)
            for name, values in (
                ("docked→SAFE_TO_CLEAR (catalog)", dock_waits),
                (
                    "placed→undocked (officer)",
                    [p.safe_at - p.placed_at for p in placed if p.safe_at is not None],
                ),
                ("stored→probed", stored_to_probed),
                ("probed→last derivative", probed_to_derived),
            )
        }


def _own_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _proc_cpu(pid: int, *, children: bool) -> float:
    """utime + stime (and reaped children's) of a live process, from /proc (Linux)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    values = sorted(values)
    p95 = values[min(len(values) - 1, math.ceil(0.95 * len(values)) - 1)]
    return {"n": len(values), "p50": statistics.median(values), "p95": p95, "max": values[-1]}


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    """boto reads credentials from os.environ; set them while `init` runs in-process."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_simulation(cfg: SimConfig) -> SimResult:
    return Simulation(cfg).run()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stations", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dockings", type=int, default=50)
    ap.add_argument("--chaos", type=int, default=20, help="at least this many chaos events")
    ap.add_argument("--long-pg-outage", type=float, default=10.0)
    ap.add_argument(
        "--interval", type=float, default=1.0, help="mean seconds between dockings (district-wide)"
    )
    ap.add_argument("--max-wall", type=float, default=600.0)
    ap.add_argument("--drain-timeout", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--digest-sample", type=float, default=1.0)
    ap.add_argument("--root", type=Path, default=None, help="work folder (kept)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="liuhen-district-"))
    cfg = SimConfig(
        root=root,
        stations=args.stations,
        workers=args.workers,
        dockings=args.dockings,
        chaos_events=args.chaos,
        long_pg_outage_s=args.long_pg_outage,
        docking_interval_s=args.interval,
        max_wall_s=args.max_wall,
        drain_timeout_s=args.drain_timeout,
        seed=args.seed,
        digest_sample=args.digest_sample,
    )
    res = run_simulation(cfg)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": res.ok,
                    "timings": res.timings,
                    "waits": res.waits,
                    "chaos": res.chaos.counts(),
                    "report": res.report.as_dict() if res.report else None,
                    "problems": res.problems,
                },
                indent=2,
            )
        )
    else:
        print(res.summary())
        print(f"work folder (logs, data): {root}")
    if not res.ok:
        print(res.log_tails(), file=sys.stderr)
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
