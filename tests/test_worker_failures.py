"""Failure handling of the media worker (issue 13, point 1): each derivative its own work
item; a failure that repeats every time ends at once with its reason, a transient one is
tried again later; `show` and `district status` give every failure with its reason;
`liuhen worker retry` queues failed work again, recorded in the custody log; a queue of
an older version upgrades and its failed work can be retried. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import stat
import struct
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import func, inspect, select

from catalog import queue
from catalog.cases import CaseNotFound
from catalog.errors import RecordingBeingExpired
from catalog.media import STEP_KINDS, work_failures
from catalog.migrate import alembic_config
from catalog.models import CustodyEvent, Derivative, Recording, WorkItem, utcnow
from config.errors import LiuhenError
from ingest.media.derive import DamagedSourceError, DerivationError, DerivationTimeout
from ingest.synthetic import make_recorder
from ingest.worker import (
    DamageFound,
    LeaseLost,
    Worker,
    WorkerStats,
    classify_failure,
)
from storage import Digest
from storage.errors import DigestMismatch, StoreUnavailable
from tests.cli_helpers import run_cli
from tests.fixtures.corpus import corpus_dir
from tests.offload_helpers import make_app

REAL_FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def docked_video(tmp_path: Path, catalog_url: str) -> tuple[Any, int]:
    """One docked H.264 recording; returns the app and the recording's id."""
    rec = make_recorder(
        tmp_path / "dock" / "A123456",
        h264=1,
        h265=0,
        wav=0,
        jpeg=0,
        truncated=0,
        segments=0,
        duration_s=1.0,
    )
    app = make_app(tmp_path / "data", catalog_url=catalog_url)
    station = app.station()
    assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    station.close()
    with app.catalog.session() as s:
        video = s.scalars(select(Recording).where(Recording.original_name.like("%.MP4"))).one()
        return app, video.id


def ffmpeg_that_refuses_posters(tmp_path: Path) -> tuple[str, Path]:
    """An ffmpeg that behaves like one refusing the input, for posters only (a poster of
    a healthy file fails the same way every time): it logs every run, so a test sees
    what was made and how often."""
    calls = tmp_path / "ffmpeg-calls.log"
    wrapper = tmp_path / "ffmpeg-no-posters"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{calls}"\n'
        'case "$*" in\n'
        '  *.poster.*) echo "Invalid data found when processing input" >&2; exit 1;;\n'
        "esac\n"
        f'exec "{REAL_FFMPEG}" "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper), calls


def with_ffmpeg(app: Any, ffmpeg: str) -> None:
    app.settings = replace(app.settings, ffmpeg=replace(app.settings.ffmpeg, ffmpeg=ffmpeg))


def drain(app: Any) -> WorkerStats:
    worker = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer)
    return worker.run(drain=True, idle_s=0.05)


def runs(calls: Path, needle: str) -> int:
    """ffmpeg runs whose output name contains ``needle`` (its -version calls excluded)."""
    return sum(1 for line in calls.read_text().splitlines() if needle in line)


def items_of(app: Any, rec_id: int) -> dict[str, WorkItem]:
    with app.catalog.session() as s:
        return {
            i.kind: i for i in s.scalars(select(WorkItem).where(WorkItem.subject == str(rec_id)))
        }


def test_a_poster_that_always_fails_fails_once_alone_and_is_shown_then_retried(
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, rec_id = docked_video(tmp_path, catalog_url)
    ffmpeg, calls = ffmpeg_that_refuses_posters(tmp_path)
    with_ffmpeg(app, ffmpeg)
    stats = drain(app)  # finishes: nothing waits on a retry

    # The poster was tried once; the access copy and proxy were made once each, kept.
    assert runs(calls, ".poster.") == 1
    assert runs(calls, ".access.") == 1 and runs(calls, ".proxy.") == 1
    assert stats.failed == 1 and "derive:poster" in stats.errors[0]
    with app.catalog.session() as s:
        made = {d.kind: d for d in s.scalars(select(Derivative))}
        rec = s.get(Recording, rec_id)
        assert rec is not None and rec.state == "PROBED"  # its derivatives are incomplete
    assert set(made) == {"access", "proxy"}
    assert "crf=" in made["access"].profile and "max_height=" in made["proxy"].profile
    items = items_of(app, rec_id)
    poster = items["derive:poster"]
    assert (poster.state, poster.failure, poster.attempts) == ("FAILED", "deterministic", 1)
    assert "Invalid data found" in (poster.last_error or "")
    assert items["derive:access"].state == items["derive:proxy"].state == "DONE"

    # show, as JSON and as text, gives the failure with its reason.
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    shown = run_cli(capsys, "show", str(rec_id), "--json")
    assert shown.code == 0, shown.err
    (failure,) = json.loads(shown.out)["failures"]
    assert failure["kind"] == "derive:poster" and failure["failure"] == "deterministic"
    assert failure["state"] == "FAILED" and "Invalid data found" in failure["error"]
    text = run_cli(capsys, "show", str(rec_id)).out
    assert "derive:poster" in text and "Invalid data found" in text
    assert f"liuhen worker retry {rec_id}" in text

    # district status lists the failure under its recording.
    status = json.loads(run_cli(capsys, "district", "status", "--json").out)
    (by_rec,) = status["failures"]["by_recording"]["recordings"]
    assert by_rec["recording"] == rec_id and by_rec["name"].endswith(".MP4")
    assert [i["kind"] for i in by_rec["items"]] == ["derive:poster"]
    assert by_rec["items"][0]["failure"] == "deterministic"
    text = run_cli(capsys, "district", "status").out
    assert f"recording {rec_id} " in text and "derive:poster (deterministic)" in text

    # Fixed (here: a working ffmpeg), the operator retries the recording.
    retried = run_cli(capsys, "worker", "retry", str(rec_id), "--actor", "警号001")
    assert retried.code == 0, retried.err
    assert "requeued 1 failed item(s) of 1 recording(s)" in retried.out
    assert f"recording {rec_id}: derive:poster" in retried.out
    with app.catalog.session() as s:
        (event,) = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "work-requeued"))
        assert event.actor == "警号001"
        assert json.loads(event.details)["items"][0]["kind"] == "derive:poster"
    with_ffmpeg(app, REAL_FFMPEG)
    assert drain(app).failed == 0
    with app.catalog.session() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None and rec.state == "DERIVED"
        kinds = sorted(d.kind for d in s.scalars(select(Derivative)))
        derived_events = s.scalar(
            select(func.count()).select_from(CustodyEvent).where(CustodyEvent.action == "derived")
        )
    assert kinds == ["access", "poster", "proxy"] and derived_events == 3  # none redone
    assert json.loads(run_cli(capsys, "show", str(rec_id), "--json").out)["failures"] == []
    again = run_cli(capsys, "worker", "retry", str(rec_id))
    assert again.code == 0 and "nothing to retry" in again.out
    app.close()


def test_retry_needs_a_recording_or_all_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _rec_id = docked_video(tmp_path, "")
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    neither = run_cli(capsys, "worker", "retry")
    assert neither.code == 2 and "--all-failed" in neither.err
    assert run_cli(capsys, "worker", "retry", "1", "--all-failed").code == 2
    app.close()


def run_claimable(worker: Worker) -> WorkerStats:
    """Do every item claimable now, once (a drain would also wait for retries)."""
    stats = WorkerStats()
    while True:
        with worker.catalog.transaction() as s:
            claimed = [
                (i.id, i.kind, int(i.subject))
                for i in queue.claim(s, ["probe", "derive", *STEP_KINDS], worker.owner)
            ]
        if not claimed:
            return stats
        for item_id, kind, rec_id in claimed:
            worker._run_item(item_id, kind, rec_id, stats)


def test_a_killed_ffmpeg_is_tried_again_later_and_then_succeeds(
    tmp_path: Path, catalog_url: str
) -> None:
    app, rec_id = docked_video(tmp_path, catalog_url)
    # ffmpeg killed (as by the OOM killer) on its first poster run only.
    once = tmp_path / "killed-once"
    wrapper = tmp_path / "ffmpeg-killed-once"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case "$*" in *.poster.*)\n'
        f'  if [ ! -e "{once}" ]; then touch "{once}"; kill -9 $$; fi;;\n'
        "esac\n"
        f'exec "{REAL_FFMPEG}" "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    with_ffmpeg(app, str(wrapper))
    worker = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer)
    stats = run_claimable(worker)
    assert stats.failed == 0 and stats.retrying == 1
    poster = items_of(app, rec_id)["derive:poster"]
    assert (poster.state, poster.failure) == ("PENDING", "transient")
    assert poster.not_before > utcnow() + timedelta(seconds=20)  # later, not at once
    assert "status -9" in (poster.last_error or "")
    with app.catalog.session() as s:
        (failure,) = work_failures(s, [rec_id])[rec_id]
    assert failure["retry_at"] is not None and failure["state"] == "PENDING"
    # When its time comes it is done, and the recording is complete.
    with app.catalog.transaction() as s:
        item = s.get(WorkItem, poster.id)
        assert item is not None
        item.not_before = utcnow()
    assert run_claimable(worker).failed == 0
    with app.catalog.session() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None and rec.state == "DERIVED"
    assert items_of(app, rec_id)["derive:poster"].state == "DONE"
    app.close()


def test_failures_are_classified_by_whether_they_would_repeat() -> None:
    mismatch = DigestMismatch("s3://b/k", Digest("sha256", "a" * 64), Digest("sha256", "b" * 64))
    rejected = DerivationError("x.poster.jpg: ffmpeg exited with status 1: Invalid data")
    short = DerivationError("x.access.mp4: output lasts 1.2 s, less than the expected 9 s")
    killed = DerivationError("x.proxy.mp4: ffmpeg exited with status -9: (no output)")
    table: list[tuple[BaseException, str | None]] = [
        (rejected, "deterministic"),
        (short, "deterministic"),
        (killed, "transient"),
        (DerivationTimeout("ffmpeg timeout: killed after 60 s"), "transient"),
        (StoreUnavailable("store away"), "transient"),
        (mismatch, "transient"),
        (OSError(28, "No space left on device"), "transient"),
        (RecordingBeingExpired("being expired"), "transient"),
        (CaseNotFound("no case 12"), "deterministic"),
        (KeyError("video_codec"), None),  # a bug of ours: recorded, then raised
    ]
    for exc, expected in table:
        assert classify_failure(exc) == expected, exc
    assert issubclass(LeaseLost, LiuhenError) and issubclass(DamageFound, LiuhenError)


def test_an_unexpected_error_is_recorded_then_raised(
    tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, rec_id = docked_video(tmp_path, catalog_url)
    worker = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer)

    def broken(self: Worker, kind: str, source: Any) -> Any:
        raise KeyError("a bug in planning")

    monkeypatch.setattr(Worker, "_plan", broken)
    with pytest.raises(KeyError):
        run_claimable(worker)
    failed = [i for i in items_of(app, rec_id).values() if i.state == "FAILED"]
    assert len(failed) == 1 and "KeyError" in (failed[0].last_error or "")
    app.close()


def test_damage_found_flags_the_recording_and_plans_recovery_not_copies(
    tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, rec_id = docked_video(tmp_path, catalog_url)
    worker = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer)
    real_plan = Worker._plan

    def access_finds_damage(self: Worker, kind: str, source: Any) -> Any:
        plan = real_plan(self, kind, source)
        if kind != "access":
            return plan

        def check(src: Path, out: Path) -> Any:
            raise DamageFound("stco: chunk offsets point 812 KiB past the end of the file")

        return replace(plan, make=check)

    monkeypatch.setattr(Worker, "_plan", access_finds_damage)
    stats = run_claimable(worker)
    assert stats.failed == 0
    items = items_of(app, rec_id)
    assert all(i.state == "DONE" for i in items.values()), {
        k: (i.state, i.last_error) for k, i in items.items()
    }
    assert "derive:recovered" in items  # its recovery attempt was queued and made
    with app.catalog.session() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None
        assert "past the end of the file" in rec.flags["damaged"]
        assert "recovery" in rec.flags  # why nothing was recovered (no reference)
        assert rec.state == "DERIVED"
        (event,) = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "flagged-damaged"))
        assert "stco" in json.loads(event.details)["reason"]
        # Nothing pretending to be whole was made after the damage was found.
        assert not s.scalars(select(Derivative).where(Derivative.kind == "access")).all()
    app.close()


def test_a_copy_shorter_than_the_streams_flags_damage_not_a_failure(
    tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """derive's DamagedSourceError (a DerivationError: the copy came out shorter than the
    streams say) is damage: DAMAGED with the reason and its custody event, never FAILED."""
    app, rec_id = docked_video(tmp_path, catalog_url)
    worker = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer)
    real_plan = Worker._plan

    def proxy_comes_out_short(self: Worker, kind: str, source: Any) -> Any:
        plan = real_plan(self, kind, source)
        if kind != "proxy":
            return plan

        def short(src: Path, out: Path) -> Any:
            raise DamagedSourceError(
                "proxy.mp4 lasts 0.4 s, the streams 1.0 s",
                reason="the media data ends after 0.4 s of the 1.0 s the streams claim",
            )

        return replace(plan, make=short)

    monkeypatch.setattr(Worker, "_plan", proxy_comes_out_short)
    stats = run_claimable(worker)
    assert stats.failed == 0
    items = items_of(app, rec_id)
    assert items["derive:proxy"].state == "DONE" and items["derive:proxy"].failure is None
    with app.catalog.session() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None
        assert rec.flags["damaged"].startswith("the media data ends after 0.4 s")
        (event,) = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "flagged-damaged"))
        assert "0.4 s" in json.loads(event.details)["reason"]
    assert work_failures_of(app, rec_id) == []
    app.close()


def work_failures_of(app: Any, rec_id: int) -> list[dict[str, Any]]:
    with app.catalog.session() as s:
        return work_failures(s, [rec_id]).get(rec_id, [])


def test_a_queue_of_the_older_version_upgrades_and_its_failures_can_be_retried(
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before 0006: one `derive` item per recording, FAILED after five tries with its
    error, and no failure column. After the upgrade it is shown, retried with
    --all-failed, and the recording gets every derivative."""
    app, rec_id = docked_video(tmp_path, catalog_url)
    worker = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer)
    with app.catalog.transaction() as s:
        probes = [(i.id, int(i.subject)) for i in queue.claim(s, ["probe"], worker.owner, limit=9)]
    for item_id, subject in probes:
        worker.probe_recording(subject, item_id=item_id)
    engine = app.catalog.engine
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    assert "failure" not in {c["name"] for c in inspect(engine).get_columns("work_items")}
    with engine.begin() as conn:  # what the older worker left: five tries, then FAILED
        conn.exec_driver_sql(
            "UPDATE work_items SET state = 'FAILED', attempts = 5, last_error = "
            "'DerivationError: x.poster.jpg: ffmpeg exited with status 1' "
            f"WHERE kind = 'derive' AND subject = '{rec_id}'"
        )
    app.catalog.upgrade()
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    (failure,) = json.loads(run_cli(capsys, "show", str(rec_id), "--json").out)["failures"]
    assert failure["kind"] == "derive" and failure["failure"] is None
    assert failure["attempts"] == 5 and "status 1" in failure["error"]
    retried = run_cli(capsys, "worker", "retry", "--all-failed")
    assert retried.code == 0, retried.err
    assert "requeued 1 failed item(s) of 1 recording(s)" in retried.out
    assert drain(app).failed == 0
    with app.catalog.session() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None and rec.state == "DERIVED"
        kinds = sorted(d.kind for d in s.scalars(select(Derivative)))
    assert kinds == ["access", "poster", "proxy"]
    assert {k for k in items_of(app, rec_id)} >= {"derive:access", "derive:poster"}
    app.close()


def test_a_truncated_gopro_file_is_recovered_with_its_own_devices_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recorder (known device) that wrote a whole GoPro clip and one cut at 60 % (its
    index lost): the cut one is flagged damaged, and recovered from the whole one."""
    corpus = corpus_dir()
    rec = make_recorder(
        tmp_path / "dock" / "A123456", h264=0, h265=0, wav=0, jpeg=0, truncated=0, segments=0
    )
    folder = rec.root / "DCIM" / "100RECORD"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("gopro_karma.mp4", "gopro_karma_trunc60.mp4"):
        shutil.copyfile(corpus / name, folder / name)
    app = make_app(tmp_path / "data")
    station = app.station()
    assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    station.close()
    assert drain(app).failed == 0
    with app.catalog.session() as s:
        cut = s.scalars(
            select(Recording).where(Recording.original_name == "gopro_karma_trunc60.mp4")
        ).one()
        assert cut.device_id is not None and "damaged" in (cut.flags or {})
        (recovered,) = s.scalars(select(Derivative).where(Derivative.recording_id == cut.id))
        assert recovered.kind == recovered.method == "recovered"
        cut_id = cut.id
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    shown = json.loads(run_cli(capsys, "show", str(cut_id), "--json").out)
    assert shown["failures"] == [] and "recovery" not in shown["flags"]
    app.close()


def test_a_structure_check_without_an_answer_leaves_the_probe_standing(
    tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes the structure check cannot make sense of (it raises) are no finding: the
    recording is probed and derived on ffprobe's word, not failed or crashed."""
    app, rec_id = docked_video(tmp_path, catalog_url)

    def confused(path: Path) -> str | None:
        raise struct.error("unpack requires a buffer of 8 bytes")

    monkeypatch.setattr("ingest.worker.damage_reason", confused)
    stats = drain(app)
    assert stats.failed == 0
    with app.catalog.session() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None and rec.state == "DERIVED"
        assert "damaged" not in (rec.flags or {})
    app.close()
