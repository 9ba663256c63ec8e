"""Crash and outage safety of a docking (issue: station offload).

* The station process is killed with SIGKILL at many different points of dockings and
  restarted until it finishes: every original ends up stored exactly once, catalogued
  with the right SHA-256 and SM3, the custody chain verifies, nothing is left in staging
  and SAFE_TO_CLEAR never shows before every file of the docking is verified.
* The S3 server goes away in the middle of a docking and comes back: the docking waits
  (and says so), then finishes with every file in the bucket.
* Two dockings at once on one station, and two stations on one PostgreSQL catalog and
  one shared object store, with files in common: nothing stored twice, no custody event
  lost, every chain verifies.

Stations run as real processes (`liuhen ingest`) where a kill must be real, in-process
(Station.run_docking in threads) where the test needs to watch from inside.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalog import Catalog, verify_chain
from catalog.models import CustodyEvent, Docking, DockingFile, Recording
from config import load_settings
from ingest import journal as J
from ingest.journal import Journal
from ingest.station import DockingResult, Station
from ingest.status import status_rows
from ingest.synthetic import (
    DEFAULT_DEVICE,
    KIND_DEVICE_INFO,
    PHOTO_DIR,
    make_bulk_files,
    make_recorder,
)
from liuhen.app import App, initialize
from storage import Digest, LocalStore, content_key
from tests.fixtures.killpoints import BOOT as KILL_BOOT
from tests.fixtures.killpoints import ENV as KILL_ENV
from tests.fixtures.killpoints import KillPoint
from tests.fixtures.s3server import TcpProxy

LIUHEN = Path(sys.executable).with_name("liuhen")
MB = 1_000_000
JOURNAL_NAME = "station-journal.sqlite3"


# -- recorders and their independently computed digests ----------------------------------


@dataclass
class Recorder:
    root: Path
    sha256: dict[str, str]  # relpath -> SHA-256, computed here, never by the station

    @property
    def files(self) -> int:
        return len(self.sha256)


@dataclass
class Contents:
    """Every distinct content the recorders of a test hold: SHA-256 -> (SM3, size)."""

    by_sha256: dict[str, tuple[str, int]] = field(default_factory=dict)
    _inodes: dict[tuple[int, int], str] = field(default_factory=dict)

    def digest(self, path: Path) -> str:
        st = path.stat()
        ino = (st.st_dev, st.st_ino)
        if ino in self._inodes:  # a hard link to a file already hashed
            return self._inodes[ino]
        sha, sm3 = hashlib.sha256(), hashlib.new("sm3")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                sha.update(chunk)
                sm3.update(chunk)
        self.by_sha256[sha.hexdigest()] = (sm3.hexdigest(), st.st_size)
        self._inodes[ino] = sha.hexdigest()
        return sha.hexdigest()

    def recorder(self, root: Path) -> Recorder:
        files: dict[str, str] = {}
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                path = Path(dirpath) / name
                files[path.relative_to(root).as_posix()] = self.digest(path)
        return Recorder(root.absolute(), files)


def build_recorder(
    root: Path,
    serial: str,
    *,
    small: int = 150,
    big: tuple[Path, ...] = (),
    big_unique_mb: int = 0,
    seed: int = 0,
) -> None:
    """make_recorder media, ``small`` bulk files of 20 KB, hard links to shared big files
    and optionally one big file of this recorder's own. Recorders built with the same
    ``seed`` hold the same bulk bytes (duplicates of each other)."""
    device = dataclasses.replace(DEFAULT_DEVICE, serial=serial)
    make_recorder(root, device=device)
    scratch = root.with_name(root.name + ".bulk")
    if small:
        make_bulk_files(scratch / "small", small, 20_000, device=device, seed=seed)
        (scratch / "small" / PHOTO_DIR).rename(root / "DCIM" / "101BULK")
    big_dir = root / "DCIM" / "102BULK"
    if big or big_unique_mb:
        big_dir.mkdir()
    # Every name carries this recorder's serial: a name naming another device is not
    # filed under this one (the station quarantines it).
    for path in big:
        os.link(path, big_dir / path.name.replace(SHARED_SERIAL, serial))
    if big_unique_mb:
        made = make_bulk_files(scratch / "big", 1, big_unique_mb * MB, device=device, seed=seed)
        src = scratch / "big" / made.files[-1].relpath
        src.rename(big_dir / src.name)
    shutil.rmtree(scratch, ignore_errors=True)


SHARED_SERIAL = "SHARED0"


def shared_big_files(where: Path, count: int = 1, size_mb: int = 30) -> tuple[Path, ...]:
    """Big files several recorders hold (hard links): stored once, then duplicates."""
    device = dataclasses.replace(DEFAULT_DEVICE, serial=SHARED_SERIAL)
    made = make_bulk_files(where, count, size_mb * MB, device=device)
    return tuple(where / f.relpath for f in made.files if f.kind != KIND_DEVICE_INFO)


# -- running the station as a process ------------------------------------------------------


def station_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIUHEN_")}
    env.update(LIUHEN_HOME=str(home), LIUHEN_INGEST_STABLE_S="0")
    env.update(extra)
    return env


def liuhen(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LIUHEN), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def start_ingest(env: dict[str, str], root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(LIUHEN), "ingest", str(root), "--quiet", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ingest_until_done(env: dict[str, str], root: Path, attempts: int = 3) -> dict[str, Any]:
    """Run `liuhen ingest` again until it exits 0 (it should the first time)."""
    for _ in range(attempts):
        done = liuhen(env, "ingest", str(root), "--quiet", "--json")
        if done.returncode == 0:
            result: dict[str, Any] = json.loads(done.stdout)
            return result
    raise AssertionError(
        f"ingest of {root} still exits {done.returncode}: {done.stdout}{done.stderr}"
    )


REPO = Path(__file__).resolve().parent.parent


def kill_at(env: dict[str, str], root: Path, point: KillPoint) -> None:
    """Run `liuhen ingest` with SIGKILL at ``point``; fail if the point was not reached."""
    env = {
        **env,
        KILL_ENV: str(point),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", KILL_BOOT, "ingest", str(root), "--quiet", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, (
        f"kill point {point} was not reached: exit {done.returncode}\n{done.stdout}{done.stderr}"
    )


# -- what the station left behind at a kill ----------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """Where a docking was when the station died: journal, staging and catalog."""

    docking: str  # journal docking state; "-" before the docking was journaled
    files: tuple[tuple[str, int], ...]  # journal files per state
    parts: int  # staging copies in progress (.part)
    staged: int  # staged copies (.staged)
    catalog: str  # catalog docking state; "-" before the catalog knew the docking
    registered: int  # catalog docking_files rows

    def count(self, state: str) -> int:
        return dict(self.files).get(state, 0)

    def __str__(self) -> str:
        files = " ".join(f"{s}={n}" for s, n in self.files) or "no files"
        return (
            f"journal {self.docking} [{files}] staging .part={self.parts} "
            f".staged={self.staged} catalog {self.catalog} registered={self.registered}"
        )


def observe(home: Path, root: Path) -> Seen:
    uid, state, files = None, "-", ()
    journal = home / JOURNAL_NAME
    if journal.exists():
        with contextlib.closing(sqlite3.connect(journal, timeout=30)) as db:
            tables = {t for (t,) in db.execute("SELECT name FROM sqlite_master")}
            row = None
            if {"dockings", "files"} <= tables:  # else killed before the schema was made
                row = db.execute(
                    "SELECT uid, state FROM dockings WHERE source_path = ?", (str(root),)
                ).fetchone()
            if row is not None:
                uid, state = row
                files = tuple(
                    sorted(
                        db.execute(
                            "SELECT state, COUNT(*) FROM files WHERE docking_uid = ? "
                            "GROUP BY state",
                            (uid,),
                        )
                    )
                )
    parts = staged = 0
    catalog, registered = "-", 0
    if uid is not None:
        stage = home / "staging" / uid
        if stage.is_dir():
            names = os.listdir(stage)
            parts = sum(n.endswith(".part") for n in names)
            staged = sum(n.endswith(".staged") for n in names)
        with contextlib.closing(sqlite3.connect(home / "catalog.sqlite3", timeout=30)) as db:
            row = db.execute(
                "SELECT state, (SELECT COUNT(*) FROM docking_files f WHERE f.docking_id = d.id) "
                "FROM dockings d WHERE uid = ?",
                (uid,),
            ).fetchone()
            if row is not None:
                catalog, registered = row
    return Seen(state, files, parts, staged, catalog, registered)


def file_state(home: Path, relpath: str) -> str | None:
    if not (home / JOURNAL_NAME).exists():
        return None
    with contextlib.closing(sqlite3.connect(home / JOURNAL_NAME, timeout=30)) as db:
        try:
            row = db.execute(
                "SELECT state FROM files WHERE relpath = ?", (relpath.encode(),)
            ).fetchone()
        except sqlite3.OperationalError:  # the schema is being made
            return None
    return None if row is None else str(row[0])


def check_kill_point(seen: Seen, rec: Recorder) -> None:
    """What must hold wherever the station died."""
    done = seen.count(J.DONE)
    # A file is DONE in the journal only once the catalog has it.
    assert done <= seen.registered, seen
    if seen.docking == J.SAFE_TO_CLEAR:
        assert done == rec.files, seen
    if seen.catalog == J.SAFE_TO_CLEAR:
        assert seen.registered == rec.files, f"SAFE_TO_CLEAR before every file was verified: {seen}"
        assert seen.count(J.PENDING) == 0, seen
    assert seen.catalog in ("-", J.OFFLOADING, J.SAFE_TO_CLEAR), seen
    assert seen.count(J.QUARANTINED) == 0 and seen.count(J.REJECTED) == 0, seen


# -- checks after all dockings ------------------------------------------------------------------


def assert_custody_order(session: Any, station_id: str, docking_uid: str) -> dict[str, str]:
    """Each file's verified / duplicate-linked event comes before the docking's
    safe-to-clear event. Returns the files the chain records as offloaded in the docking
    (path -> SHA-256)."""
    events = session.scalars(
        select(CustodyEvent).where(CustodyEvent.station_id == station_id).order_by(CustodyEvent.seq)
    ).all()
    by_seq = {e.seq: e for e in events}
    safe = [e for e in events if e.action == "safe-to-clear" and e.object_id == docking_uid]
    assert len(safe) == 1, f"{len(safe)} safe-to-clear events for docking {docking_uid}"
    offloaded = [
        e
        for e in events
        if e.action == "offloaded" and json.loads(e.details)["docking"] == docking_uid
    ]
    for ev in offloaded:
        nxt = by_seq[ev.seq + 1]
        assert nxt.object_id == ev.object_id
        if nxt.action == "duplicate-linked":
            assert json.loads(nxt.details)["docking"] == docking_uid
            last = nxt
        else:
            assert nxt.action == "stored", nxt.action
            last = by_seq[ev.seq + 2]
            assert (last.action, last.object_id) == ("verified", ev.object_id)
        assert last.seq < safe[0].seq, (
            f"safe-to-clear (#{safe[0].seq}) before {json.loads(ev.details)['path']} was "
            f"verified (#{last.seq})"
        )
    paths = {json.loads(e.details)["path"]: e.object_id for e in offloaded}
    assert len(paths) == len(offloaded), "a file was offloaded twice in one docking"
    return paths


def assert_all_stored_once(
    catalog: Catalog,
    store: LocalStore,
    contents: Contents,
    recorders: list[Recorder],
    stations: dict[str, str],
    redocked: dict[str, int] | None = None,
) -> None:
    """One object and one recording per distinct content, with the right digests; every
    recorder file registered in its (single) docking, custody complete and in order.
    ``stations``: recorder root -> station id that docked it; ``redocked``: recorder root
    -> how many dockings it had, when more than one."""
    redocked = redocked or {}
    # The store: exactly the expected objects, no temp files, bytes that hash right.
    keys = sorted(store.list("sha256/"))  # evidence (anchors/ holds signed chain heads)
    assert not [k for k in keys if ".tmp-" in k]
    for dirpath, _dirs, names in os.walk(store.root):
        assert not [n for n in names if n.startswith(".tmp-")], dirpath
    wanted = {content_key(Digest("sha256", h)): h for h in contents.by_sha256}
    assert sorted(wanted) == keys, "objects missing or extra objects in the store"
    for key, sha in wanted.items():
        digest, size = hashlib.sha256(), 0
        with open(store.root / key, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        assert (digest.hexdigest(), size) == (sha, contents.by_sha256[sha][1]), key

    with catalog.session() as s:
        recordings = s.scalars(select(Recording)).all()
        shas = [r.sha256 for r in recordings]
        assert len(shas) == len(set(shas)) == len(contents.by_sha256)
        for r in recordings:
            sm3, size = contents.by_sha256[r.sha256]
            assert (r.sm3, r.size, r.object_key) == (
                sm3,
                size,
                content_key(Digest("sha256", r.sha256)),
            )
        by_id = {r.id: r for r in recordings}
        for rec in recorders:
            dockings = s.scalars(select(Docking).where(Docking.source_path == str(rec.root))).all()
            # One docking per recorder, or one per time it was docked again once finished.
            assert len(dockings) == redocked.get(str(rec.root), 1), rec.root
            for d in dockings:
                assert d.state == J.SAFE_TO_CLEAR and d.station_id == stations[str(rec.root)]
                rows = s.scalars(select(DockingFile).where(DockingFile.docking_id == d.id)).all()
                assert len(rows) == rec.files
                got = {
                    row.relpath: by_id[row.recording_id].sha256
                    for row in rows
                    if row.recording_id is not None and row.state in ("STORED", "DUPLICATE")
                }
                assert got == rec.sha256
                # Every file's offloaded event is in the chain: no custody event lost.
                assert assert_custody_order(s, d.station_id, d.uid) == rec.sha256
        report = verify_chain(s)
        assert report.ok, [p.describe() for p in report.problems]
        assert set(report.stations) == set(stations.values())


def assert_staging_empty(home: Path) -> None:
    left = [os.path.join(d, n) for d, _dirs, names in os.walk(home / "staging") for n in names]
    assert not left, f"left in staging: {left[:5]}"


# -- 1. kill -9 anywhere -------------------------------------------------------------------------


def point(target: str, when: str, n: int = 1, **match: str) -> KillPoint:
    return KillPoint(target, when, n, tuple(match.items()))


JOURNAL = "ingest.journal.Journal"
STATION = "ingest.station.Station"
# Each chain is one recorder: a fresh docking killed at its first point, the resumed
# docking at the next, and so on; then it runs to the end. A kill comes at the n-th call
# of a named step, and every run must die by the signal: n is always within what that
# run surely does, whatever the machine's speed. A fresh docking of a recorder with
# bytes of its own (160 files: 150 small ones registered in batches of at most 64, media,
# a big file of its own, one shared) renames 160 files into staging and links 159 new
# objects; so does one killed before it made any progress (the start-up chain). A
# resumed docking that is not finished always registers a batch and ends SAFE TO CLEAR.
CHAINS: tuple[tuple[KillPoint, ...], ...] = (
    # Start-up: before the docking is in the journal, just after, with its files listed;
    # then a copy complete but not yet renamed into staging.
    (
        point(f"{JOURNAL}.add_docking", "before"),
        point(f"{JOURNAL}.add_docking", "after"),
        point(f"{JOURNAL}.add_files", "after"),
        point("os.replace", "before", 20),
        point(f"{STATION}._register_batch", "after"),
    ),
    # A file just renamed into staging; then the catalog has a batch the journal has not.
    (point("os.replace", "after", 5), point(f"{JOURNAL}.done", "before")),
    # Storing: before the first object is linked into place (the resumed docking still
    # has all but at most one to store), and after the 40th.
    (
        point("os.link", "before"),
        point("os.link", "after", 40),
        point(f"{JOURNAL}.done", "after"),
    ),
    # The staging group's thread journals at most 64 files a transaction (STAGED_GROUP_MAX)
    # and takes whatever waits: 160 files are surely at least three groups, not eight.
    (
        point(f"{JOURNAL}.staged_many", "after", 2),
        point(f"{STATION}._register_batch", "before"),
    ),
    # In the middle of a batch: its objects linked into the store but their folders not
    # yet fsynced (the committer's make_durable); then fsynced, the catalog not committed.
    (
        point("storage.local.LocalStore.make_durable", "before", 2),
        point("storage.local.LocalStore.make_durable", "after"),
    ),
    # Registering: after the first batch is DONE, before the second is registered.
    (
        point(f"{JOURNAL}.done", "after"),
        point(f"{JOURNAL}.finished", "before", state="SAFE_TO_CLEAR"),
    ),
    (
        point(f"{STATION}._register_batch", "before", 2),
        point(f"{JOURNAL}.finished", "after", state="SAFE_TO_CLEAR"),
    ),
    # The end: just before and just after the journal says SAFE TO CLEAR.
    (point(f"{JOURNAL}.finished", "before", state="SAFE_TO_CLEAR"),),
    (point(f"{JOURNAL}.finished", "after", state="SAFE_TO_CLEAR"),),
)


@pytest.mark.fault
@pytest.mark.slow
@pytest.mark.timeout(1200)  # some 29 station runs; slow on a loaded machine, never stuck
def test_kill_9_anywhere_in_a_docking_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    home = tmp_path / "station"
    env = station_env(home)
    init = liuhen(env, "init")
    assert init.returncode == 0, init.stderr
    contents = Contents()
    big = shared_big_files(tmp_path / "shared-big")
    recorders: list[Recorder] = []
    seen: list[tuple[KillPoint, Seen]] = []

    for n, chain in enumerate(CHAINS):
        serial = f"K{n:06d}"
        root = tmp_path / "dock" / serial
        # Media, 150 small files, a big file of its own and one every recorder holds.
        build_recorder(root, serial, big=big, big_unique_mb=8, seed=n + 1)
        rec = contents.recorder(root)
        recorders.append(rec)
        for kill in chain:
            kill_at(env, rec.root, kill)
            where = observe(home, rec.root)
            check_kill_point(where, rec)
            seen.append((kill, where))
        if observe(home, rec.root).docking != J.SAFE_TO_CLEAR:
            result = ingest_until_done(env, rec.root)
            assert (result["state"], result["stored"], result["files"]) == (
                J.SAFE_TO_CLEAR,
                rec.files,
                rec.files,
            ), result
        assert observe(home, rec.root).catalog == J.SAFE_TO_CLEAR
    # Docking a finished recorder again is a new docking of duplicates: nothing stored.
    redock = recorders[0]
    assert liuhen(env, "ingest", str(redock.root), "--quiet", "--json").returncode == 0

    report = "\n".join(f"  {kill!s:60} {where}" for kill, where in seen)
    print("\n" + report)
    record_property("kill_points", report)
    states = [where for _kill, where in seen]
    # The kills hit copying, storing and registering, not only start-up and the end.
    assert any(p.parts for p in states) and any(p.staged for p in states), report
    assert any(0 < p.count(J.DONE) < rec.files for p in states), report
    assert any(p.docking == "-" for p in states), report
    assert any(p.catalog == J.SAFE_TO_CLEAR for p in states), report

    assert_staging_empty(home)
    verify = liuhen(env, "custody", "verify", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    settings = load_settings(home, environ=env)
    catalog = Catalog(settings.catalog_url)
    try:
        assert_all_stored_once(
            catalog,
            LocalStore(home / "objects"),
            contents,
            recorders,
            {str(r.root): settings.station.id for r in recorders},
            {str(redock.root): 2},
        )
    finally:
        catalog.dispose()
    with contextlib.closing(Journal(settings.journal_path)) as journal:
        dockings = Counter(d.state for d in journal.dockings())
    assert dockings == {J.SAFE_TO_CLEAR: len(recorders) + 1}


# -- 2. the object store goes away mid-docking ------------------------------------------------


def wait_for(what: str, check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class DockingThread(threading.Thread):
    def __init__(self, station: Station, root: Path) -> None:
        super().__init__(daemon=True)
        self.station, self.root = station, root
        self.result: DockingResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.station.run_docking(self.root)
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def outcome(self, timeout: float = 120) -> DockingResult:
        self.join(timeout)
        assert not self.is_alive(), f"docking of {self.root} did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def status_of(journal_path: Path, root: Path) -> dict[str, Any] | None:
    with contextlib.closing(Journal(journal_path)) as journal:
        rows = [
            r
            for r in status_rows(journal)
            if journal.docking(r["docking"]).source_path == str(root)
        ]  # type: ignore[union-attr]
    return rows[0] if rows else None


@pytest.mark.fault
@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.parametrize("cut", ["before", "during"])
def test_store_outage_mid_docking_waits_then_finishes(
    tmp_path: Path,
    s3_proxy: TcpProxy,
    s3_bucket: str,
    s3_client: Any,
    cut: str,
) -> None:
    home = tmp_path / "station"
    environ = station_env(
        home,
        LIUHEN_STORE_URL=f"s3://{s3_bucket}/evidence",
        LIUHEN_STORE_ENDPOINT_URL=s3_proxy.url,
        LIUHEN_STORE_MAX_ATTEMPTS="2",
        LIUHEN_STORE_CONNECT_TIMEOUT_S="1",
        LIUHEN_STORE_READ_TIMEOUT_S="5",
        LIUHEN_STORE_MULTIPART_THRESHOLD_MB="5",
        LIUHEN_STORE_MULTIPART_CHUNK_MB="5",
        LIUHEN_INGEST_RETRY_INITIAL_S="0.2",
        LIUHEN_INGEST_RETRY_MAX_S="1",
    )
    settings = load_settings(home, environ=environ)
    app = App(settings)
    initialize(app)
    contents = Contents()
    root = tmp_path / "dock" / "S000001"
    build_recorder(root, "S000001", small=40, big_unique_mb=12)
    rec = contents.recorder(root)

    station = app.station()
    try:
        docking = DockingThread(station, rec.root)
        big = next(p for p in rec.sha256 if p.startswith("DCIM/102BULK/"))
        if cut == "before":
            s3_proxy.cut()
        docking.start()
        if cut == "during":
            # Cut as the big file (multipart) goes up, if we catch it; else a little later.
            wait_for("the big file staged", lambda: file_state(home, big) in (J.STAGED, J.DONE))
            s3_proxy.cut()
        cut_during = file_state(home, big)
        try:
            # Everything is copied to staging meanwhile, and the status says why it waits.
            row = wait_for(
                "the docking to wait for the store",
                lambda: (
                    (r := status_of(settings.journal_path, rec.root)) is not None
                    and r["waiting"]
                    and observe(home, rec.root).count(J.PENDING) == 0
                    and r
                ),
            )
            assert not row["safe_to_clear"] and row["state"] == J.OFFLOADING
            assert "object store" in row["waiting"], row["waiting"]
            done = observe(home, rec.root).count(J.DONE)
            time.sleep(2.0)  # several retry rounds while the store is down
            during = observe(home, rec.root)
            assert docking.is_alive()
            assert during.count(J.DONE) == done and during.count(J.STAGED) > 0, during
            assert during.catalog == J.OFFLOADING and during.docking == J.OFFLOADING, during
        finally:
            s3_proxy.restore()
        result = docking.outcome()
    finally:
        station.close()
    assert (result.state, result.stored, result.files, result.problems) == (
        J.SAFE_TO_CLEAR,
        rec.files,
        rec.files,
        [],
    )
    after = status_of(settings.journal_path, rec.root)
    assert after is not None and after["waiting"] is None and after["safe_to_clear"]

    # Every file is in the bucket, read back with a plain client, bytes hashing right.
    listed: list[str] = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(
        Bucket=s3_bucket, Prefix="evidence/sha256/"
    ):
        listed += [o["Key"] for o in page.get("Contents") or ()]
    assert sorted(listed) == sorted(
        f"evidence/{content_key(Digest('sha256', h))}" for h in contents.by_sha256
    )
    for key in listed:
        body = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == key.rsplit("/", 1)[-1]
    # An upload cut off cannot be aborted while the store is away; such leftovers are
    # invisible parts (no object), removed by remove_stale_temp_files later.
    uploads = s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads") or []
    print(f"\ncut with the big file {cut_during}; {len(uploads)} multipart upload(s) left")
    assert_staging_empty(home)
    with app.catalog.session() as s:
        recordings = {r.sha256: (r.sm3, r.size) for r in s.scalars(select(Recording))}
        assert recordings == contents.by_sha256
        (d,) = s.scalars(select(Docking)).all()
        assert d.state == J.SAFE_TO_CLEAR
        assert assert_custody_order(s, settings.station.id, d.uid) == rec.sha256
        report = verify_chain(s)
        assert report.ok, [p.describe() for p in report.problems]
    app.close()


# -- 3. dockings at once, stations at once ---------------------------------------------------------


def recorders_with_files_in_common(
    contents: Contents,
    where: Path,
    serials: tuple[str, ...],
    *,
    small: int = 40,
    shared: int = 12,
) -> list[Recorder]:
    """Recorders whose first recorder's media and ``shared`` small files are copied into
    every other (same folders, names with the other's serial), plus one big file all of
    them hold."""
    big = shared_big_files(where / "big", size_mb=12)
    roots = [where / s for s in serials]
    for root, serial in zip(roots, serials, strict=True):
        build_recorder(root, serial, small=small, big=big)
    first = roots[0]
    common = sorted((first / "DCIM" / "101BULK").iterdir())[:shared]
    common += sorted((first / "DCIM" / "100RECORD").iterdir())
    for root, serial in zip(roots[1:], serials[1:], strict=True):
        for path in common:
            # The same bytes, named as this recorder names them (a name naming another
            # device is not filed under this one).
            rel = path.relative_to(first)
            shutil.copy2(path, root / rel.parent / rel.name.replace(serials[0], serial))
    return [contents.recorder(root) for root in roots]


def assert_shared_files_linked(catalog: Catalog, recs: list[Recorder]) -> None:
    """Each content held by n recorder files has one STORED and n - 1 DUPLICATE rows."""
    holders = Counter(sha for r in recs for sha in r.sha256.values())
    with catalog.session() as s:
        rows = s.execute(
            select(Recording.sha256, DockingFile.state).join(
                DockingFile, DockingFile.recording_id == Recording.id
            )
        ).all()
    states = {sha: Counter(state for h, state in rows if h == sha) for sha in holders}
    assert sum(n > 1 for n in holders.values()) > 10  # the recorders do share files
    for sha, n in holders.items():
        assert states[sha] == Counter({"STORED": 1} | ({"DUPLICATE": n - 1} if n > 1 else {}))


@pytest.mark.fault
@pytest.mark.slow
def test_two_dockings_at_once_on_one_station(tmp_path: Path, catalog_url: str) -> None:
    home = tmp_path / "station"
    environ = station_env(home, LIUHEN_CATALOG_URL=catalog_url)
    settings = load_settings(home, environ=environ)
    app = App(settings)
    initialize(app)
    contents = Contents()
    recs = recorders_with_files_in_common(contents, tmp_path / "dock", ("A000001", "B000002"))
    station = app.station()
    try:
        threads = [DockingThread(station, r.root) for r in recs]
        for t in threads:
            t.start()
        results = [t.outcome() for t in threads]
    finally:
        station.close()
    for rec, result in zip(recs, results, strict=True):
        assert (result.state, result.stored, result.problems) == (J.SAFE_TO_CLEAR, rec.files, []), (
            result
        )
    assert_staging_empty(home)
    assert_all_stored_once(
        app.catalog,
        LocalStore(home / "objects"),
        contents,
        recs,
        {str(r.root): settings.station.id for r in recs},
    )
    assert_shared_files_linked(app.catalog, recs)
    app.close()


@pytest.mark.fault
@pytest.mark.slow
@pytest.mark.postgres
def test_two_stations_on_one_postgres_catalog_and_one_store(tmp_path: Path, pg_url: str) -> None:
    objects = tmp_path / "shared" / "objects"
    envs = {
        sid: station_env(
            tmp_path / sid,
            LIUHEN_STATION_ID=sid,
            LIUHEN_CATALOG_URL=pg_url,
            LIUHEN_STORE_URL=objects.as_uri(),
        )
        for sid in ("station-a", "station-b")
    }
    for env in envs.values():
        init = liuhen(env, "init")
        assert init.returncode == 0, init.stderr
    contents = Contents()
    recs = recorders_with_files_in_common(contents, tmp_path / "dock", ("A000001", "B000002"))
    docked_by = dict(zip((str(r.root) for r in recs), envs, strict=True))
    procs = [start_ingest(envs[docked_by[str(r.root)]], r.root) for r in recs]
    for proc, rec in zip(procs, recs, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err
        assert json.loads(out)["stored"] == rec.files
    for sid, env in envs.items():
        assert_staging_empty(tmp_path / sid)
        verify = liuhen(env, "custody", "verify", "--json")
        assert verify.returncode == 0, verify.stdout + verify.stderr
    catalog = Catalog(pg_url)
    try:
        assert_all_stored_once(catalog, LocalStore(objects), contents, recs, docked_by)
        assert_shared_files_linked(catalog, recs)
        with catalog.session() as s:
            for sid in envs:
                assert verify_chain(s, station_id=sid).ok
    finally:
        catalog.dispose()
