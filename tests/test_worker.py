"""Media workers end to end: probe, time evidence, derivatives, damaged files, chapters,
crash safety and concurrent workers, on real ffmpeg and real services."""

from __future__ import annotations

import json
import os
import signal
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
from tests.cli_helpers import run_cli
from tests.offload_helpers import make_app

LIUHEN = str(Path(sys.executable).with_name("liuhen"))


def docked(tmp_path: Path, **kwargs: Any) -> tuple[Any, Any]:
    rec = make_recorder(tmp_path / "dock" / "A123456", **kwargs)
    app = make_app(tmp_path / "data")
    station = app.station()
    assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    station.close()
    return app, rec


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
                    got = probe(app.store.root / d.object_key)
                    assert got.video_codec == "h264" and got.audio_codec == "aac"
                    assert abs((got.duration_s or 0) - (r.duration_s or 0)) <= 0.1
                    assert d.tool_version.startswith("ffmpeg version")
                    assert d.command["argv"][0].endswith("ffmpeg")
                poster = probe(app.store.root / derivatives[(r.id, "poster")].object_key)
                assert poster.kind == "image"
            elif synthetic.kind == "audio-wav":
                assert r.media_kind == "audio" and r.probe["audio_codec"] == "pcm_s16le"
                audio = probe(app.store.root / derivatives[(r.id, "audio")].object_key)
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
        assert (app.store.root / r.object_key).read_bytes() == (
            rec.root / by_name[r.original_name].relpath).read_bytes()


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
    assert (app.store.root / report["object_key"]).read_bytes() == (
        root / truncated.relpath).read_bytes()
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
            f.sequence or 0 for f in rec.media())


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
    rec = make_recorder(tmp_path / "dock" / "A123456", h264=0, h265=1, wav=0, jpeg=0,
                        truncated=0, segments=0, duration_s=20.0, size=(640, 480))
    app = make_app(tmp_path / "data")
    station = app.station()
    station.run_docking(rec.root)
    station.close()
    env = {**os.environ, "LIUHEN_HOME": str(tmp_path / "data"), "LIUHEN_MEDIA_LEASE_S": "2"}
    worker = subprocess.Popen([LIUHEN, "worker", "--drain"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
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
        claimed = s.scalars(select(WorkItem).where(WorkItem.kind == "derive",
                                                   WorkItem.state == "CLAIMED")).all()
        assert len(claimed) == 1  # the dead worker's item, waiting for its lease to lapse
    objects = list(app.store.list())
    assert len(objects) == len(rec.files)  # only the originals; no partial derivative
    time.sleep(2.1)  # the dead worker's lease lapses
    done = subprocess.run([LIUHEN, "worker", "--drain"], env=env, capture_output=True,
                          text=True, timeout=240)
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
    rec = make_recorder(tmp_path / "dock" / "A123456", h264=3, h265=1, wav=2, jpeg=2,
                        segments=2)
    app = make_app(tmp_path / "data", catalog_url=pg_url)
    station = app.station()
    station.run_docking(rec.root)
    station.close()
    env = {**os.environ, "LIUHEN_HOME": str(tmp_path / "data"), "LIUHEN_CATALOG_URL": pg_url}
    workers = [subprocess.Popen([LIUHEN, "worker", "--drain"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    with app.catalog.session() as s:
        probed = Counter(e.object_id for e in s.scalars(
            select(CustodyEvent).where(CustodyEvent.action == "probed")))
        assert len(probed) == len(rec.files) and set(probed.values()) == {1}
        derived = Counter((json.loads(e.details)["source"], json.loads(e.details)["kind"])
                          for e in s.scalars(
                              select(CustodyEvent).where(CustodyEvent.action == "derived")))
        assert derived and set(derived.values()) == {1}
        assert all(r.state == "DERIVED" for r in s.scalars(select(Recording)))
        assert verify_chain(s).ok
    # Between them the two workers probed every recording once (each prints its count).
    counts = [int(out.rsplit("probed ", 1)[1].split(",")[0]) for out in outputs]
    assert sum(counts) == len(rec.files)


def test_joined_chapter_copy_when_asked(tmp_path: Path) -> None:
    rec = make_recorder(tmp_path / "dock" / "A123456", h264=0, h265=0, wav=0, jpeg=0,
                        truncated=0, segments=3)
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
    got = probe(app.store.root / joined.object_key)
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
    app.settings = replace(app.settings, ingest=replace(app.settings.ingest,
                                                        retry_initial_s=0.2, retry_max_s=0.5))
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
        probed = Counter(e.object_id for e in s.scalars(
            select(CustodyEvent).where(CustodyEvent.action == "probed")))
    assert probed and set(probed.values()) == {1}
    app.close()
