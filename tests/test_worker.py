"""Media workers end to end: probe, time evidence, derivatives, damaged files, chapters,
crash safety and concurrent workers, on real ffmpeg and real services."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalog import verify_chain
from catalog.models import CustodyEvent, Derivative, Recording, WorkItem
from ingest.media.probe import probe
from ingest.synthetic import make_recorder
from ingest.worker import Worker
from storage import Digest, LocalStore, content_key
from tests.cli_helpers import run_cli
from tests.offload_helpers import file_digests, make_app

LIUHEN = str(Path(sys.executable).with_name("liuhen"))


def docked(tmp_path: Path, **kwargs: Any) -> tuple[Any, Any]:
    rec = make_recorder(tmp_path / "dock" / "A123456", **kwargs)
    app = make_app(tmp_path / "data")
    station = app.station()
    assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    station.close()
    return app, rec


def store_root(app: Any) -> Path:
    assert isinstance(app.store, LocalStore)
    return app.store.root


def drain(app: Any) -> Any:
    worker = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer)
    return worker.run(drain=True, idle_s=0.1)


def test_every_file_is_probed_and_derived(tmp_path: Path) -> None:
    app, rec = docked(tmp_path)
    stats = drain(app)
    assert stats.failed == 0, stats.errors
    by_name = {f.relpath.rsplit("/", 1)[-1]: f for f in rec.files}
    with app.catalog.session() as s:
        recordings = list(s.scalars(select(Recording)))
        derivatives = {(d.recording_id, d.kind): d for d in s.scalars(select(Derivative))}
        assert all(r.state == "DERIVED" for r in recordings)
        for r in recordings:
            synthetic = by_name[r.original_name]
            assert r.probe is not None and r.time_evidence is not None
            if synthetic.kind in ("video-h264", "video-h265", "segment"):
                assert r.media_kind == "video" and r.probe["width"] == 320
                assert abs((r.duration_s or 0) - 2.0) < 0.1
                assert r.captured_at is not None and r.time_evidence["source"] == "file-name"
                access = derivatives[(r.id, "access")]
                expect = "remux" if synthetic.kind != "video-h265" else "reencode"
                assert access.method == expect
                assert {(r.id, "proxy"), (r.id, "poster")} <= set(derivatives)
                for kind in ("access", "proxy"):
                    d = derivatives[(r.id, kind)]
                    got = probe(store_root(app) / d.object_key)
                    assert got.video_codec == "h264" and got.audio_codec == "aac"
                    assert abs((got.duration_s or 0) - (r.duration_s or 0)) <= 0.1
                    assert d.tool_version.startswith("ffmpeg version")
                    assert d.command["argv"][0].endswith("ffmpeg")
                poster = probe(store_root(app) / derivatives[(r.id, "poster")].object_key)
                assert poster.kind == "image"
            elif synthetic.kind == "audio-wav":
                assert r.media_kind == "audio" and r.probe["audio_codec"] == "pcm_s16le"
                audio = probe(store_root(app) / derivatives[(r.id, "audio")].object_key)
                assert audio.audio_codec == "aac"
            elif synthetic.kind == "photo-jpeg":
                assert r.media_kind == "image"
        # Derivation events name the source, the exact command and the ffmpeg version.
        derived = list(s.scalars(select(CustodyEvent).where(CustodyEvent.action == "derived")))
        assert len(derived) == len(derivatives)
        details = json.loads(derived[0].details)
        assert details["source"] in {r.sha256 for r in recordings}
        assert details["command"] and details["ffmpeg"].startswith("ffmpeg version")
        assert verify_chain(s).ok
    # The originals were never touched: still the bytes the recorder had.
    for r in recordings:
        assert (store_root(app) / r.object_key).read_bytes() == (
            rec.root / by_name[r.original_name].relpath
        ).read_bytes()


def test_damaged_and_non_media_files_stay_stored_and_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "dock" / "A123456"
    rec = make_recorder(root, h265=0, wav=0, jpeg=0, segments=0)
    (root / "notes.txt").write_text("not a recording", encoding="utf-8")
    app = make_app(tmp_path / "data")
    station = app.station()
    assert station.run_docking(root).state == "SAFE_TO_CLEAR"
    station.close()
    assert drain(app).failed == 0
    truncated = next(f for f in rec.files if f.kind == "video-truncated")
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    shown = run_cli(capsys, "show", truncated.sha256[:12], "--json")
    report = json.loads(shown.out)
    assert "moov atom not found" in report["flags"]["damaged"]
    assert report["probe"]["ok"] is False
    kinds = {d["kind"]: d for d in report["derivatives"]}
    assert set(kinds) <= {"recovered"}  # never an access copy pretending to be whole
    if kinds:
        assert kinds["recovered"]["method"] == "recovered"
    assert (store_root(app) / report["object_key"]).read_bytes() == (
        root / truncated.relpath
    ).read_bytes()
    text = run_cli(capsys, "show", truncated.sha256[:12])
    assert "moov atom not found" in text.out
    with app.catalog.session() as s:
        notes = s.scalars(select(Recording).where(Recording.original_name == "notes.txt")).one()
        assert "unreadable" in notes.flags and notes.state == "DERIVED"
        assert not s.scalars(select(Derivative).where(Derivative.recording_id == notes.id)).all()


def test_segments_are_grouped_as_chapters(tmp_path: Path) -> None:
    app, rec = docked(tmp_path, h264=0, h265=0, wav=0, jpeg=0, truncated=0, segments=3)
    assert drain(app).failed == 0
    with app.catalog.session() as s:
        segs = [r for r in s.scalars(select(Recording)) if r.media_kind == "video"]
        assert len(segs) == 3
        assert len({r.group_id for r in segs}) == 1 and segs[0].group_id is not None
        assert sorted(r.group_seq or 0 for r in segs) == sorted(
            f.sequence or 0 for f in rec.media()
        )


def test_show_finds_by_digest_prefix_and_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _app, rec = docked(tmp_path, h265=0, wav=0, jpeg=0, truncated=0, segments=0)
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    media = rec.media()[0]
    assert run_cli(capsys, "show", media.sm3[:10]).code == 0
    missing = run_cli(capsys, "show", "ffffffffffff")
    assert missing.code == 66 and "no recording matches" in missing.err


@pytest.mark.fault
@pytest.mark.slow
def test_worker_killed_mid_transcode_leaves_nothing_and_rerun_completes(tmp_path: Path) -> None:
    rec = make_recorder(
        tmp_path / "dock" / "A123456",
        h264=0,
        h265=1,
        wav=0,
        jpeg=0,
        truncated=0,
        segments=0,
        duration_s=20.0,
        size=(640, 480),
    )
    app = make_app(tmp_path / "data")
    station = app.station()
    station.run_docking(rec.root)
    station.close()
    env = {**os.environ, "LIUHEN_HOME": str(tmp_path / "data"), "LIUHEN_MEDIA_LEASE_S": "2"}
    worker = subprocess.Popen(
        [LIUHEN, "worker", "--drain"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        # Generous: on a loaded machine the worker's start and probe may take minutes.
        deadline = time.time() + 240
        while time.time() < deadline and not _ffmpeg_child_of(worker.pid):
            time.sleep(0.05)
        assert _ffmpeg_child_of(worker.pid), "the worker never started ffmpeg"
        time.sleep(0.5)  # mid-transcode
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        for child in _ffmpeg_child_of(worker.pid):
            os.kill(child, signal.SIGKILL)
    finally:
        if worker.poll() is None:
            worker.kill()
    with app.catalog.session() as s:
        assert not s.scalars(select(Derivative)).all()  # nothing half-done recorded
        claimed = s.scalars(
            select(WorkItem).where(WorkItem.kind.startswith("derive:"), WorkItem.state == "CLAIMED")
        ).all()
        # the dead worker's item (one derivative of the recording), waiting for its lease
        assert len(claimed) == 1
    objects = list(app.store.list("sha256/"))  # evidence objects (anchors/ holds chain heads)
    assert len(objects) == len(rec.files)  # only the originals; no partial derivative
    time.sleep(2.1)  # the dead worker's lease lapses
    done = subprocess.run(
        [LIUHEN, "worker", "--drain"], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with app.catalog.session() as s:
        kinds = sorted(d.kind for d in s.scalars(select(Derivative)))
        assert kinds == ["access", "poster", "proxy"]
        assert verify_chain(s).ok
    leftovers = [p for p in (tmp_path / "data" / "work").rglob("*") if p.is_file()]
    assert leftovers == []


def _ffmpeg_child_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and cmd.endswith(b"ffmpeg"):
            found.append(int(entry.name))
    return found


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_on_postgres_never_do_the_same_item_twice(tmp_path: Path, pg_url: str) -> None:
    rec = make_recorder(tmp_path / "dock" / "A123456", h264=3, h265=1, wav=2, jpeg=2, segments=2)
    app = make_app(tmp_path / "data", catalog_url=pg_url)
    station = app.station()
    station.run_docking(rec.root)
    station.close()
    env = {**os.environ, "LIUHEN_HOME": str(tmp_path / "data"), "LIUHEN_CATALOG_URL": pg_url}
    workers = [
        subprocess.Popen(
            [LIUHEN, "worker", "--drain"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    with app.catalog.session() as s:
        probed = Counter(
            e.object_id
            for e in s.scalars(select(CustodyEvent).where(CustodyEvent.action == "probed"))
        )
        assert len(probed) == len(rec.files) and set(probed.values()) == {1}
        derived = Counter(
            (json.loads(e.details)["source"], json.loads(e.details)["kind"])
            for e in s.scalars(select(CustodyEvent).where(CustodyEvent.action == "derived"))
        )
        assert derived and set(derived.values()) == {1}
        assert all(r.state == "DERIVED" for r in s.scalars(select(Recording)))
        assert verify_chain(s).ok
    # Between them the two workers probed every recording once (each prints its count).
    counts = [int(out.rsplit("probed ", 1)[1].split(",")[0]) for out in outputs]
    assert sum(counts) == len(rec.files)


def test_joined_chapter_copy_when_asked(tmp_path: Path) -> None:
    rec = make_recorder(
        tmp_path / "dock" / "A123456", h264=0, h265=0, wav=0, jpeg=0, truncated=0, segments=3
    )
    app = make_app(tmp_path / "data")
    from dataclasses import replace

    app.settings = replace(app.settings, media=replace(app.settings.media, join_chapters=True))
    station = app.station()
    station.run_docking(rec.root)
    station.close()
    assert drain(app).failed == 0
    with app.catalog.session() as s:
        (joined,) = s.scalars(select(Derivative).where(Derivative.kind == "joined")).all()
        segments = [r for r in s.scalars(select(Recording)) if r.media_kind == "video"]
    got = probe(store_root(app) / joined.object_key)
    assert abs((got.duration_s or 0) - sum(r.duration_s or 0 for r in segments)) <= 0.1
    assert len(segments) == 3  # each segment stays its own original


@pytest.mark.postgres
@pytest.mark.fault
def test_worker_waits_out_a_catalog_outage_instead_of_exiting(
    tmp_path: Path, pg_url: str, proxied_pg: tuple[str, Any]
) -> None:
    """PostgreSQL unreachable while a worker runs: the worker keeps running (backing off),
    and when the catalog is back it does every item once."""
    import threading
    from dataclasses import replace

    url, proxy = proxied_pg
    rec = make_recorder(tmp_path / "dock" / "A123456", h265=0, truncated=0, segments=0)
    app = make_app(tmp_path / "data", catalog_url=url)
    station = app.station()
    assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    station.close()
    app.settings = replace(
        app.settings, ingest=replace(app.settings.ingest, retry_initial_s=0.2, retry_max_s=0.5)
    )
    worker = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer)
    proxy.cut()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(stop=stop, idle_s=0.1)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        time.sleep(2.0)
        assert thread.is_alive() and not errors
        proxy.restore()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with app.catalog.session() as s:
                states = s.scalars(select(WorkItem.state)).all()
            if states and all(st == "DONE" for st in states) and len(states) >= 2:
                with app.catalog.session() as s:
                    if all(r.state == "DERIVED" for r in s.scalars(select(Recording))):
                        break
            time.sleep(0.3)
    finally:
        proxy.restore()
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors
    with app.catalog.session() as s:
        recs = s.scalars(select(Recording)).all()
        assert recs and all(r.state == "DERIVED" for r in recs), [r.state for r in recs]
        probed = Counter(
            e.object_id
            for e in s.scalars(select(CustodyEvent).where(CustodyEvent.action == "probed"))
        )
    assert probed and set(probed.values()) == {1}
    app.close()


# --- stored derivatives: digests, completeness, crash safety of _keep ---------------------


def assert_stored_derivatives_are_whole(app: Any) -> list[str]:
    """Every derivative's object: the bytes its catalog row's SHA-256, SM3 and size name,
    under the key its SHA-256 gives, read-only. Returns the derivatives' keys."""
    keys = []
    with app.catalog.session() as s:
        rows = list(s.scalars(select(Derivative)))
        events = {
            e.object_id: json.loads(e.details)
            for e in s.scalars(select(CustodyEvent).where(CustodyEvent.action == "derived"))
        }
    assert rows
    for d in rows:
        path = store_root(app) / d.object_key
        sha, sm3 = file_digests(path)  # computed here, independently of the worker
        assert (d.sha256, d.sm3, d.size) == (sha, sm3, path.stat().st_size), d.kind
        assert d.object_key == content_key(Digest("sha256", sha))
        assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, oct(path.stat().st_mode)
        assert events[d.sha256]["sm3"] == sm3 and events[d.sha256]["size"] == d.size
        keys.append(d.object_key)
    return keys


def test_stored_derivatives_carry_the_digests_of_their_bytes(tmp_path: Path) -> None:
    app, _rec = docked(tmp_path, h264=1, h265=1, wav=1, jpeg=0, truncated=0, segments=0)
    assert drain(app).failed == 0
    keys = assert_stored_derivatives_are_whole(app)
    assert len(keys) == 3 + 3 + 1  # access, proxy, poster twice; the audio access copy
    with app.catalog.session() as s:
        for d in s.scalars(select(Derivative).where(Derivative.kind.in_(["access", "proxy"]))):
            got = probe(store_root(app) / d.object_key)  # whole: it opens and lasts the length
            assert got.ok and abs((got.duration_s or 0) - (d.duration_s or 0)) <= 0.1
    # Nothing is left in the scratch folders once the worker has stopped.
    assert [p for p in (tmp_path / "data" / "work").rglob("*") if p.is_file()] == []


@pytest.mark.s3
def test_derivatives_on_s3_carry_the_digests_of_their_bytes(
    tmp_path: Path, s3_endpoint: Any, s3_bucket: str, s3_client: Any
) -> None:
    rec = make_recorder(
        tmp_path / "dock" / "A123456", h264=1, h265=0, wav=0, jpeg=0, truncated=0, segments=0
    )
    app = make_app(
        tmp_path / "data",
        store_url=f"s3://{s3_bucket}/ev",
        store_env={"LIUHEN_STORE_ENDPOINT_URL": s3_endpoint.url},
    )
    station = app.station()
    assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    station.close()
    assert drain(app).failed == 0
    with app.catalog.session() as s:
        rows = list(s.scalars(select(Derivative)))
    assert sorted(d.kind for d in rows) == ["access", "poster", "proxy"]
    for d in rows:
        body = s3_client.get_object(Bucket=s3_bucket, Key=f"ev/{d.object_key}")["Body"].read()
        assert (d.sha256, d.sm3, d.size) == (
            hashlib.sha256(body).hexdigest(),
            hashlib.new("sm3", body).hexdigest(),
            len(body),
        )


# Where the worker process is killed, by SIGKILL, inside _keep: while it hashes (the
# derivative only in its scratch, unsynced), before the store links it (hashed and
# synced), and after the link but before the catalog row commits.
_KILL_AT = {
    "hashing": "import ingest.worker as w; w._digest_durably = die",
    "adopt": "import storage.local as l; l.LocalStore.adopt = die",
    "record": "import ingest.worker as w; w.record_derivative = die",
}


@pytest.mark.fault
@pytest.mark.parametrize("point", sorted(_KILL_AT))
def test_worker_killed_in_keep_leaves_nothing_partial_and_rerun_completes(
    tmp_path: Path, point: str
) -> None:
    rec = make_recorder(
        tmp_path / "dock" / "A123456", h264=1, h265=0, wav=0, jpeg=0, truncated=0, segments=0
    )
    app = make_app(tmp_path / "data")
    station = app.station()
    assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    station.close()
    originals = set(app.store.list("sha256/"))
    script = (
        "import os, signal\n"
        "def die(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"{_KILL_AT[point]}\n"
        "from liuhen.cli import main\n"
        "main(['worker', '--drain'])\n"
    )
    env = {**os.environ, "LIUHEN_HOME": str(tmp_path / "data"), "LIUHEN_MEDIA_LEASE_S": "2"}
    killed = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    with app.catalog.session() as s:
        assert not s.scalars(select(Derivative)).all()  # nothing recorded
        assert s.scalars(
            select(WorkItem).where(WorkItem.kind.startswith("derive:"), WorkItem.state == "CLAIMED")
        ).all()
    # The store holds the originals and, killed after the link, the one derivative the
    # link made visible: whole (its bytes hash to its key), never a partial file.
    extra = set(app.store.list("sha256/")) - originals
    assert len(extra) == (1 if point == "record" else 0), extra
    for key in extra:
        sha, _ = file_digests(store_root(app) / key)
        assert key == content_key(Digest("sha256", sha))
    # The dead worker's scratch, with the derivative it was keeping, is still there...
    assert [p for p in (tmp_path / "data" / "work").rglob("*") if p.is_file()]
    time.sleep(2.1)  # ...until its lease lapses and a new worker starts
    assert drain(app).failed == 0
    with app.catalog.session() as s:
        assert sorted(d.kind for d in s.scalars(select(Derivative))) == [
            "access",
            "poster",
            "proxy",
        ]
        assert verify_chain(s).ok
    keys = assert_stored_derivatives_are_whole(app)
    assert set(app.store.list("sha256/")) == originals | set(keys)  # the orphan was the same remux
    assert [p for p in (tmp_path / "data" / "work").rglob("*") if p.is_file()] == []


def test_scratch_of_dead_workers_of_this_host_is_cleared_at_start(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data")
    work = app.settings.work_dir
    host = socket.gethostname()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)  # exited: no process has this pid now (or soon reused)
    dead = work / f"{host}-{dead_pid}-abc123" / "rec1-x"
    alive = work / f"{host}-{os.getpid()}-def456" / "rec2-y"
    other_host = work / f"other-station-{dead_pid}-0a0b0c" / "rec3-z"
    stray = work / "orig-leftover"
    for folder in (dead, alive, other_host):
        folder.mkdir(parents=True)
        kept = folder / "A.access.mp4"
        kept.write_bytes(b"derivative being kept")
        kept.chmod(0o444)  # as _keep leaves it
    stray.write_bytes(b"x")
    worker = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer)
    assert not dead.parent.exists()  # a killed worker of this host: garbage
    assert (alive / "A.access.mp4").exists()  # a running worker's: untouched
    assert (other_host / "A.access.mp4").exists()  # another host's pid means nothing here
    assert not stray.exists()
    assert worker.scratch.is_dir()
