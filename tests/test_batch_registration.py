"""Batched registration (group commit) of offloaded files, on real catalogs and stations.

* ``register_files`` writes, for a batch, the rows and custody events ``register_file``
  writes for each file in turn: duplicates (of a held recording, of an earlier file of the
  batch), a file quarantined earlier, a file marked important, an expired recording held
  again; a file whose recording is being expired, or whose SHA-256 is held with another
  SM3, gets its error alone while the others are registered.
* A station registers a docking's files in a few catalog and journal transactions; one
  file the catalog refuses, or one whose recording is being expired, does not hold back
  the rest of its batch; a catalog outage makes the docking wait, visibly, with its files
  staged; a station killed between a batch's catalog commit and its journal DONE replays
  it without registering anything twice.
"""

from __future__ import annotations

import contextlib
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, text

from catalog import Catalog, register_station, verify_chain
from catalog.dockings import (
    DockingInfo,
    DockingRef,
    OffloadedFile,
    Registered,
    ensure_docking,
    record_problem_file,
    register_files,
)
from catalog.errors import DigestConflict, RecordingBeingExpired
from catalog.models import CustodyEvent, Docking, DockingFile, Recording, WorkItem
from catalog.retention import sweep
from ingest import journal as J
from ingest.synthetic import make_bulk_files
from storage.digest import DigestPair
from tests.offload_helpers import file_digests, make_app
from tests.registration_oracle import register_file

LIUHEN = Path(sys.executable).with_name("liuhen")
ACTOR = "station:test"


# -- register_files against register_file ------------------------------------------------------


def offloaded(
    data: bytes, path: str, *, important: bool = False, sm3: str | None = None
) -> OffloadedFile:
    sha = hashlib.sha256(data).hexdigest()
    return OffloadedFile(
        relpath_raw=path.encode(),
        size=len(data),
        mtime=datetime(2026, 11, 26, tzinfo=UTC),
        digests=DigestPair.of_hex(sha, sm3 or hashlib.new("sm3", data).hexdigest()),
        object_key=f"sha256/{sha}",
        captured_at=None,
        staged_at=datetime(2026, 11, 26, 1, tzinfo=UTC),
        verified_by="test",
        important=important,
    )


def new_docking(s: Any, signer: Any, uid: str) -> Docking:
    return ensure_docking(
        s,
        signer,
        DockingInfo(
            uid=uid,
            slot="slot",
            source_path=f"/dock/{uid}",
            serial="A123456",
            officer_number="010203",
            officer_name="",
            unit="",
            model="",
            identity_source="folder",
            identity_raw={},
            started_at=datetime(2026, 11, 26, tzinfo=UTC),
        ),
        ACTOR,
    )


HELD = b"bytes held since an earlier docking" * 10
NEW = b"bytes first seen in this docking" * 10
OTHER = b"more new bytes, marked important" * 10
RETAKEN = b"a file quarantined on an earlier try" * 10
BATCH = [
    offloaded(HELD, "DCIM/held.JPG"),
    offloaded(NEW, "DCIM/new.JPG"),
    offloaded(NEW, "DCIM/copy-of-new.JPG"),  # a duplicate of an earlier file of the batch
    offloaded(OTHER, "DCIM/A123456_010203_20261126083000_0001_IMP.MP4", important=True),
    offloaded(RETAKEN, "DCIM/retaken.JPG"),
    offloaded(NEW, "DCIM/new.JPG"),  # the same file handed over twice: registered once
]


def prepare(s: Any, signer: Any) -> Docking:
    """An earlier docking holding HELD; this docking, with RETAKEN quarantined before."""
    first = new_docking(s, signer, "earlier")
    register_file(s, signer, first, offloaded(HELD, "DCIM/held.JPG"), ACTOR)
    docking = new_docking(s, signer, "this")
    record_problem_file(
        s, signer, docking, b"DCIM/retaken.JPG", len(RETAKEN), "QUARANTINED", "vanished", ACTOR
    )
    return docking


def catalog_view(s: Any, docking_uid: str) -> dict[str, Any]:
    """What a reader sees of the docking: rows, recordings, queued work and the custody
    events written for it (timestamps left out), recording ids shown as their SHA-256."""
    sha_of = {r.id: r.sha256 for r in s.scalars(select(Recording))}
    docking = s.scalars(select(Docking).where(Docking.uid == docking_uid)).one()
    rows = sorted(
        (f.relpath, f.state, f.size, f.reason, sha_of.get(f.recording_id))
        for f in s.scalars(select(DockingFile).where(DockingFile.docking_id == docking.id))
    )
    recordings = sorted(
        (
            r.sha256,
            r.state,
            r.original_name,
            r.original_name_raw,
            r.important,
            r.flags,
            r.size,
            r.object_key,
        )
        for r in s.scalars(select(Recording))
    )
    work = sorted((w.kind, sha_of[int(w.subject)], w.state) for w in s.scalars(select(WorkItem)))
    events = []
    for e in s.scalars(select(CustodyEvent).order_by(CustodyEvent.seq)):
        details = json.loads(e.details)
        if "recording" in details:
            details["recording"] = sha_of[details["recording"]]
        events.append((e.action, e.object_type, e.object_id, details))
    return {"rows": rows, "recordings": recordings, "work": work, "events": events}


def test_register_files_writes_what_register_file_writes_file_by_file(
    app: Any,
    tmp_path: Path,
) -> None:
    with app.catalog.transaction() as s:
        docking = prepare(s, app.signer)
        results = register_files(s, app.signer, [(DockingRef.of(docking), f) for f in BATCH], ACTOR)
    assert results == [
        Registered(duplicate=True),
        Registered(),
        Registered(duplicate=True),
        Registered(),
        Registered(),
        Registered(),
    ]

    # The same files through register_file, one at a time, into a catalog of their own.
    reference = Catalog(f"sqlite:///{tmp_path / 'reference.sqlite3'}")
    reference.upgrade()
    try:
        with reference.transaction() as s:
            register_station(s, app.signer)
        with reference.transaction() as s:
            docking = prepare(s, app.signer)
            one_by_one = [register_file(s, app.signer, docking, f, ACTOR)[1] for f in BATCH]
        assert [r.duplicate for r in results] == one_by_one
        with reference.session() as s:
            expected = catalog_view(s, "this")
    finally:
        reference.dispose()
    with app.catalog.session() as s:
        got = catalog_view(s, "this")
        report = verify_chain(s, trusted={app.signer.station_id: {app.signer.key_id}})
    assert report.ok, [p.describe() for p in report.problems]
    assert got == expected
    # What a reader would check first: each path once, each content once with one probe
    # job (HELD's from the earlier docking), each file offloaded once.
    assert [r[0] for r in got["rows"]].count("DCIM/new.JPG") == 1
    assert Counter(state for _p, state, *_ in got["rows"]) == {"STORED": 3, "DUPLICATE": 2}
    assert len(got["recordings"]) == len(got["work"]) == 4
    actions = [a for a, *_ in got["events"]]
    assert actions.count("offloaded") == 1 + 5 and actions.count("marked-important") == 1


def test_a_file_that_cannot_be_registered_now_leaves_the_rest_of_its_batch(app: Any) -> None:
    expiring = b"bytes whose recording a sweep is deleting" * 10
    held = b"bytes held with their SM3" * 10
    with app.catalog.transaction() as s:
        first = new_docking(s, app.signer, "earlier")
        for data in (expiring, held):
            register_file(s, app.signer, first, offloaded(data, f"DCIM/{len(data)}.JPG"), ACTOR)
        rec = s.scalars(
            select(Recording).where(Recording.sha256 == hashlib.sha256(expiring).hexdigest())
        ).one()
        rec.state = "EXPIRING"
        ref = DockingRef.of(new_docking(s, app.signer, "this"))
    batch = [
        offloaded(expiring, "DCIM/again.MP4"),
        offloaded(NEW, "DCIM/new.JPG"),
        offloaded(held, "DCIM/forged.JPG", sm3="0" * 64),
        offloaded(OTHER, "DCIM/other.JPG"),
    ]
    with app.catalog.transaction() as s:
        results = register_files(s, app.signer, [(ref, f) for f in batch], ACTOR)
    assert isinstance(results[0].error, RecordingBeingExpired)
    assert "expiry" in results[0].error.message
    assert isinstance(results[2].error, DigestConflict) and "SM3" in str(results[2].error)
    assert results[1] == results[3] == Registered()
    with app.catalog.session() as s:
        rows = {
            f.relpath: f.state
            for f in s.scalars(select(DockingFile).where(DockingFile.docking_id == ref.id))
        }
        paths = [json.loads(e.details).get("path") for e in s.scalars(select(CustodyEvent))]
    assert rows == {"DCIM/new.JPG": "STORED", "DCIM/other.JPG": "STORED"}
    assert "DCIM/again.MP4" not in paths and "DCIM/forged.JPG" not in paths

    # Once the expiry has finished (EXPIRED), the same file holds the bytes again.
    with app.catalog.transaction() as s:
        rec = s.scalars(
            select(Recording).where(Recording.sha256 == hashlib.sha256(expiring).hexdigest())
        ).one()
        rec.state = "EXPIRED"
    with app.catalog.transaction() as s:
        again = register_files(s, app.signer, [(ref, batch[0]), (ref, batch[1])], ACTOR)
    assert again == [Registered(), Registered()]  # revived; new.JPG was registered already
    with app.catalog.session() as s:
        rec = s.scalars(
            select(Recording).where(Recording.sha256 == hashlib.sha256(expiring).hexdigest())
        ).one()
        assert rec.state == "STORED" and "restored_after_expiry" in rec.flags
        actions = [
            e.action
            for e in s.scalars(
                select(CustodyEvent)
                .where(CustodyEvent.object_id == rec.sha256)
                .order_by(CustodyEvent.seq)
            )
        ]
        assert actions[-4:] == ["offloaded", "restored-after-expiry", "stored", "verified"]
        assert s.scalars(select(WorkItem).where(WorkItem.subject == str(rec.id))).one()
        assert verify_chain(s).ok


# -- a station registering in batches ------------------------------------------------------------


@pytest.fixture
def patient_committer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The committer gathers files for as long as more are on their way: batches are then
    decided by the files alone (64, or what is left), not by how fast this machine is."""
    monkeypatch.setattr("ingest.station.COMMIT_WINDOW_S", 3600.0)


def count_commits(app: Any, station: Any) -> dict[str, int]:
    counts = {"catalog": 0, "journal": 0}

    def catalog_commit(_conn: Any) -> None:
        counts["catalog"] += 1

    def journal_statement(sql: str) -> None:
        if sql.strip().upper() == "COMMIT":
            counts["journal"] += 1

    event.listen(app.catalog.engine, "commit", catalog_commit)
    station.journal._db.set_trace_callback(journal_statement)
    return counts


def test_a_docking_registers_its_files_in_a_few_transactions(
    tmp_path: Path,
    patient_committer: None,
) -> None:
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 150, 3000)
    app = make_app(tmp_path / "data")
    station = app.station()
    counts = count_commits(app, station)
    done: list[int] = []
    result = station.run_docking(rec.root, on_progress=lambda p: done.append(p.files_done))
    station.close()
    files = len(rec.files)  # 150 and DEVICE.INF
    assert (result.state, result.stored, result.problems) == ("SAFE_TO_CLEAR", files, [])
    # 151 files: batches of 64, 64 and 23, besides the docking's own transactions (it
    # was one transaction per file, and a journal DONE per file, before).
    assert counts["catalog"] <= 6, counts
    assert counts["journal"] <= files + 10, counts  # one STAGED per file, DONE per batch
    assert done[-1] == files and done == sorted(done)  # progress moved as batches finished
    assert not any((tmp_path / "data" / "staging").rglob("*.staged"))
    with app.catalog.session() as s:
        report = verify_chain(s, trusted={app.settings.station.id: {app.signer.key_id}})
        actions = Counter(e.action for e in s.scalars(select(CustodyEvent)))
        recordings = {r.sha256: r.sm3 for r in s.scalars(select(Recording))}
        assert len(s.scalars(select(WorkItem)).all()) == files
    assert report.ok, [p.describe() for p in report.problems]
    assert actions["offloaded"] == actions["stored"] == actions["verified"] == files
    for f in rec.files:
        sha, sm3 = file_digests(rec.root / f.relpath)
        assert recordings[sha] == sm3
    assert station.metrics.files.value(result="stored") == files
    app.close()


def test_no_recording_is_committed_before_its_object_survives_a_power_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers link objects into the store without their folders' fsync; the
    committer fsyncs the batch's folders together, and every catalog commit that
    registers a recording comes after its object's folder was fsynced."""
    import storage.local

    lock = threading.Lock()
    synced: set[Path] = set()
    unsynced_at_commit: list[str] = []
    real_fsync_dir = storage.local.fsync_dir

    def fsync_dir(folder: Path | str) -> None:
        time.sleep(0.02)  # a slow disk: a commit that did not wait for it is seen
        real_fsync_dir(folder)
        with lock:
            synced.add(Path(folder))  # (the store's hot path passes text)

    monkeypatch.setattr(storage.local, "fsync_dir", fsync_dir)
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 90, 3000)
    app = make_app(tmp_path / "data")
    objects = Path(app.store.root)
    station = app.station()

    dialect = app.catalog.engine.dialect
    real_commit = dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        # The rows about to be committed (the batch's are Core inserts), read in the
        # transaction itself, just before it commits.
        cursor = dbapi_connection.cursor()
        keys = [row[0] for row in cursor.execute("SELECT object_key FROM recordings")]
        cursor.close()
        with lock:
            unsynced_at_commit.extend(
                k for k in keys if objects / k.rsplit("/", 1)[0] not in synced
            )
        real_commit(dbapi_connection)

    monkeypatch.setattr(dialect, "do_commit", do_commit)
    result = station.run_docking(rec.root)
    station.close()
    assert (result.state, result.stored) == ("SAFE_TO_CLEAR", len(rec.files))
    assert unsynced_at_commit == []
    with app.catalog.session() as s:
        keys = s.scalars(select(Recording.object_key)).all()
    assert len(keys) == len(rec.files)
    assert {objects / k.rsplit("/", 1)[0] for k in keys} <= synced
    app.close()


def test_a_file_the_catalog_refuses_is_quarantined_and_its_batch_goes_on(
    tmp_path: Path,
    patient_committer: None,
) -> None:
    """A recording row forged with a recorder file's SHA-256 and another SM3: that file
    is refused (quarantined, the docking INCOMPLETE), every other file of the batch is
    registered."""
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 20, 3000)
    app = make_app(tmp_path / "data")
    victim = rec.files[5]
    sha, _sm3 = file_digests(rec.root / victim.relpath)
    with app.catalog.transaction() as s:
        s.add(
            Recording(
                sha256=sha,
                sm3="0" * 64,
                size=3000,
                object_key=f"sha256/{sha}",
                original_name="forged",
                received_at=datetime.now(UTC),
            )
        )
    station = app.station()
    result = station.run_docking(rec.root)
    station.close()
    assert result.state == "INCOMPLETE" and result.stored == len(rec.files) - 1
    ((path, state, reason),) = result.problems
    assert (path, state) == (victim.relpath, "QUARANTINED") and "different SM3" in reason
    assert "DigestConflict" in reason  # a catalog error of the tree, named as such
    with app.catalog.session() as s:
        rows = s.scalars(select(DockingFile)).all()
        assert Counter(r.state for r in rows) == {"STORED": len(rec.files) - 1, "QUARANTINED": 1}
        assert verify_chain(s).ok
    app.close()


def test_a_file_whose_recording_is_being_expired_waits_and_its_batch_goes_on(
    tmp_path: Path,
    patient_committer: None,
) -> None:
    first = make_bulk_files(tmp_path / "first" / "A123456", 3, 3000)
    app = make_app(tmp_path / "data", retry_initial_s=0.1, retry_max_s=0.2)
    station = app.station()
    assert station.run_docking(first.root).state == "SAFE_TO_CLEAR"
    kept = first.files[1]
    sha, _sm3 = file_digests(first.root / kept.relpath)
    with app.catalog.transaction() as s:
        video = s.scalars(select(Recording).where(Recording.sha256 == sha)).one()
        video.state = "EXPIRING"  # what a sweep killed between its two phases leaves
        video.flags = {**video.flags, "expiry": {"reason": "test", "from_state": "STORED"}}
    # Another recorder: new files, and a copy of the file whose recording is being expired.
    second = make_bulk_files(tmp_path / "second" / "B7654321", 20, 3000, seed=7)
    copy = second.root / "DCIM" / "KEPT.JPG"
    shutil.copyfile(first.root / kept.relpath, copy)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(station.run_docking(second.root)))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            waiting = [d.waiting for d in station.journal.dockings() if d.waiting]
            if any("expiry" in w for w in waiting):
                break
            thread.join(0.05)
        assert any("expiry" in w for w in waiting), waiting
        (jd,) = [d for d in station.journal.dockings() if d.source_path == str(second.root)]
        states = {f.relpath: f.state for f in station.journal.files(jd.uid)}
        assert states.pop(b"DCIM/KEPT.JPG") == J.STAGED
        assert set(states.values()) == {J.DONE}  # the rest of its batch is registered
        assert thread.is_alive()  # and the docking is not SAFE TO CLEAR meanwhile
        sweep(
            app.catalog, app.signer, app.store, app.settings.retention, actor="sweeper", apply=True
        )
    finally:
        thread.join(60)
    assert result and result[0].state == "SAFE_TO_CLEAR" and not result[0].problems
    station.close()
    with app.catalog.session() as s:
        again = s.scalars(select(Recording).where(Recording.sha256 == sha)).one()
        assert again.state == "STORED" and app.store.exists(again.object_key)
        assert verify_chain(s).ok
    app.close()


@pytest.mark.postgres
def test_a_catalog_outage_keeps_the_files_staged_and_the_docking_waiting(
    tmp_path: Path,
    proxied_pg: tuple[str, Any],
) -> None:
    url, proxy = proxied_pg
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 30, 3000)
    app = make_app(tmp_path / "data", catalog_url=url, retry_initial_s=0.1, retry_max_s=0.3)
    station = app.station()
    proxy.cut()
    waits: list[str] = []
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(
            station.run_docking(rec.root, on_progress=lambda p: waits.append(p.waiting or ""))
        )
    )
    thread.start()

    def all_staged() -> bool:  # every file of the docking copied, none registered
        journal = station.journal
        return {f.state for d in journal.dockings() for f in journal.files(d.uid)} == {J.STAGED}

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            any("catalog" in w for w in waits) and all_staged()
        ):
            thread.join(0.05)
        assert any("catalog" in w and "unreachable" in w for w in waits), set(waits)
        time.sleep(0.5)  # retry rounds while it is away: nothing is lost, nothing is DONE
        assert all_staged() and staged_count(app) == len(rec.files) and thread.is_alive()
    finally:
        proxy.restore()
        thread.join(60)
    station.close()
    assert result and result[0].state == "SAFE_TO_CLEAR" and result[0].stored == len(rec.files)
    assert staged_count(app) == 0
    with app.catalog.session() as s:
        assert len(s.scalars(select(DockingFile)).all()) == len(rec.files)
        assert verify_chain(s).ok
    app.close()


@pytest.mark.postgres
def test_a_batch_that_loses_an_insert_race_runs_again_and_links_the_winner(
    tmp_path: Path,
    pg_url: str,
    patient_committer: None,
) -> None:
    """Another station inserts a recording of the same bytes while this station's batch
    registers them: the batch's insert waits for the other transaction, fails on the
    unique SHA-256 when it commits, and the batch runs again, finding the other's row: that
    file is a duplicate, the others of the batch are stored, nothing is lost."""
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 10, 3000)
    app = make_app(tmp_path / "data", catalog_url=pg_url)
    contested = rec.files[3]
    sha, sm3 = file_digests(rec.root / contested.relpath)
    other = Catalog(pg_url)
    watcher = Catalog(pg_url)
    station = app.station()
    try:
        with other.transaction() as s:  # the other station's registration, held open
            s.add(
                Recording(
                    sha256=sha,
                    sm3=sm3,
                    size=3000,
                    object_key=f"sha256/{sha}",
                    original_name="other-station.JPG",
                    received_at=datetime.now(UTC),
                )
            )
            s.flush()
            holder = s.scalar(text("SELECT pg_backend_pid()"))
            result: list[Any] = []
            thread = threading.Thread(target=lambda: result.append(station.run_docking(rec.root)))
            thread.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not blocked_by(watcher, holder):
                thread.join(0.05)
            assert blocked_by(watcher, holder), "the batch never waited on the other's insert"
        thread.join(60)  # the other transaction committed as the block ended
        assert result and result[0].state == "SAFE_TO_CLEAR", result
        with app.catalog.session() as s:
            rows = {f.relpath: f.state for f in s.scalars(select(DockingFile))}
            winner = s.scalars(select(Recording).where(Recording.sha256 == sha)).one()
            assert winner.original_name == "other-station.JPG"
            linked = s.scalars(
                select(CustodyEvent).where(CustodyEvent.action == "duplicate-linked")
            ).all()
            assert [json.loads(e.details)["recording"] for e in linked] == [winner.id]
            assert verify_chain(s).ok
        assert rows.pop(contested.relpath) == "DUPLICATE"
        assert set(rows.values()) == {"STORED"} and len(rows) == len(rec.files) - 1
    finally:
        station.close()
        other.dispose()
        watcher.dispose()
        app.close()


def blocked_by(catalog: Catalog, pid: int) -> bool:
    """Whether a session waits for a lock the backend ``pid`` holds."""
    with catalog.session() as s:
        return bool(
            s.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
                ),
                {"pid": pid},
            )
        )


def staged_count(app: Any) -> int:
    return sum(1 for _ in app.settings.staging_dir.rglob("*.staged"))


# -- killed between a batch's catalog commit and its journal DONE --------------------------------

# `liuhen ingest`, killed (SIGKILL) as it is about to mark its first batch DONE: the batch
# is committed in the catalog and its staged copies are gone, the journal says STAGED.
KILLED_AT_FIRST_DONE = """
import os, signal, sys
from ingest import journal
def done(self, ids):
    os.kill(os.getpid(), signal.SIGKILL)
journal.Journal.done = done
from liuhen.cli import main
main()
"""


@pytest.mark.fault
def test_killed_between_a_batch_commit_and_its_journal_done_replays_once(
    tmp_path: Path,
) -> None:
    home = tmp_path / "station"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIUHEN_")}
    env.update(LIUHEN_HOME=str(home), LIUHEN_INGEST_STABLE_S="0")
    assert (
        subprocess.run([str(LIUHEN), "init"], env=env, capture_output=True, check=False).returncode
        == 0
    )
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 40, 3000)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AT_FIRST_DONE, "ingest", str(rec.root), "--quiet", "--json"],
        env=env,
        cwd=Path.cwd(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with contextlib.closing(sqlite3.connect(home / "station-journal.sqlite3")) as db:
        journal = {
            bytes(rel): (state, home / "staging" / uid / f"{i}.staged")
            for i, uid, rel, state in db.execute(
                "SELECT id, docking_uid, relpath, state FROM files"
            )
        }
    with contextlib.closing(sqlite3.connect(home / "catalog.sqlite3")) as db:
        registered = {bytes(r) for (r,) in db.execute("SELECT relpath_raw FROM docking_files")}
    assert registered and not any(state == J.DONE for state, _p in journal.values())
    for rel, (state, staged) in journal.items():
        if rel in registered:  # the batch: committed, its staged copies gone, not DONE yet
            assert state == J.STAGED and not staged.exists(), rel
        elif state == J.STAGED:  # staged, waiting for a batch: the copy is kept
            assert staged.exists(), rel

    again = subprocess.run(
        [str(LIUHEN), "ingest", str(rec.root), "--quiet", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["stored"] == len(rec.files)
    assert not any((home / "staging").rglob("*.staged"))
    catalog = Catalog(f"sqlite:///{home / 'catalog.sqlite3'}")
    try:
        with catalog.session() as s:
            (docking,) = s.scalars(select(Docking)).all()
            assert docking.state == "SAFE_TO_CLEAR"
            rows = s.scalars(select(DockingFile)).all()
            assert len(rows) == len({r.path_key for r in rows}) == len(rec.files)
            assert len(s.scalars(select(Recording)).all()) == len(rec.files)
            offloaded_paths = Counter(
                json.loads(e.details)["path"]
                for e in s.scalars(select(CustodyEvent).where(CustodyEvent.action == "offloaded"))
            )
            assert set(offloaded_paths.values()) == {1}  # the replay wrote no event twice
            assert len(offloaded_paths) == len(rec.files)
            assert verify_chain(s).ok
    finally:
        catalog.dispose()


def test_timestamps_of_batch_events_are_those_of_single_events(app: Any) -> None:
    """The offloaded event carries the staging time; the others the registration time."""
    before = datetime.now(UTC) - timedelta(seconds=1)
    with app.catalog.transaction() as s:
        ref = DockingRef.of(new_docking(s, app.signer, "this"))
        register_files(s, app.signer, [(ref, offloaded(NEW, "DCIM/new.JPG"))], ACTOR)
    with app.catalog.session() as s:
        events = {
            e.action: e.at
            for e in s.scalars(
                select(CustodyEvent).where(
                    CustodyEvent.object_id == hashlib.sha256(NEW).hexdigest()
                )
            )
        }
    assert events["offloaded"] == "2026-11-26T01:00:00.000000Z"
    assert all(
        datetime.fromisoformat(events[a].replace("Z", "+00:00")) >= before
        for a in ("stored", "verified")
    )
