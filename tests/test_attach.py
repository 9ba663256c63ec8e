"""Attachment of recordings to cases: by rule (officer at capture time, window ± margin),
by hand, detach with reason and the exported override; officer resolution and the
important mark through the real worker."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalog import verify_chain
from catalog.attach import attach_for_actions, attach_manual, detach
from catalog.cases import CaseError, add_action, create_case, get_case
from catalog.devices import assign_device
from catalog.models import CaseRecording, CustodyEvent, Export, ExportItem, Recording
from ingest.synthetic import DEFAULT_DEVICE, make_recorder
from ingest.worker import Worker
from tests.case_helpers import cst, make_recording
from tests.cli_helpers import run_cli
from tests.offload_helpers import make_app

MARGIN = 300  # the default retention.attach_margin_s


def cases_of(app: Any, rec_id: int) -> set[str]:
    with app.catalog.session() as s:
        from catalog.models import Case

        return set(
            s.scalars(
                select(Case.number)
                .join(CaseRecording, CaseRecording.case_id == Case.id)
                .where(CaseRecording.recording_id == rec_id, CaseRecording.detached_at.is_(None))
            )
        )


def test_rule_attachment_on_a_synthetic_day(app: Any) -> None:
    """Two officers share recorder A123456 (hand-over at 12:00); each has actions.

    Every recording lands in exactly the expected case, including recordings that end
    exactly at the margin boundary (attached) and one second outside it (not attached).
    """
    day = (2026, 3, 2)
    with app.catalog.transaction() as s:
        from catalog.devices import add_device

        add_device(s, app.signer, serial="A123456", model="DSJ-V9", actor="admin")
        assign_device(
            s,
            app.signer,
            serial="A123456",
            officer_number="010203",
            officer_name="张三",
            start=cst(*day, 7, 0),
            actor="admin",
        )
        assign_device(
            s,
            app.signer,
            serial="A123456",
            officer_number="040506",
            officer_name="李四",
            start=cst(*day, 12, 0),
            actor="admin",
        )
        morning = create_case(
            s,
            app.signer,
            number="沪徐市监罚〔2026〕123号",
            title="无照经营",
            retention="30年",
            actor="admin",
        )
        afternoon = create_case(s, app.signer, number="沪徐市监罚〔2026〕124号", actor="admin")
        other = create_case(s, app.signer, number="沪徐市监罚〔2026〕125号", actor="admin")
        add_action(
            s,
            app.signer,
            case=morning,
            external_id="A-1",
            officers=["010203"],
            start=cst(*day, 9, 0),
            end=cst(*day, 10, 0),
            place="漕溪路",
            actor="admin",
        )
        add_action(
            s,
            app.signer,
            case=afternoon,
            external_id="B-1",
            officers=["040506"],
            start=cst(*day, 14, 0),
            end=cst(*day, 15, 0),
            actor="admin",
        )
        # The same window as A-1, but another officer: 010203's recordings do not belong.
        add_action(
            s,
            app.signer,
            case=other,
            external_id="C-1",
            officers=["070809"],
            start=cst(*day, 9, 0),
            end=cst(*day, 10, 0),
            actor="admin",
        )
    m = timedelta(seconds=MARGIN)
    minute = timedelta(seconds=60)
    expected = {
        # (start, expected cases)
        cst(*day, 9, 30): {"沪徐市监罚〔2026〕123号"},  # inside A-1
        cst(*day, 9, 0) - m - minute: {"沪徐市监罚〔2026〕123号"},  # ends exactly at start - margin
        cst(*day, 9, 0) - m - minute - timedelta(seconds=1): set(),  # one second too early
        cst(*day, 10, 0) + m: {"沪徐市监罚〔2026〕123号"},  # starts exactly at end + margin
        cst(*day, 10, 0) + m + timedelta(seconds=1): set(),  # one second too late
        # 14:30 is inside B-1: the recorder is 040506's since noon, so B-1, not A-1.
        cst(*day, 14, 30): {"沪徐市监罚〔2026〕124号"},
        # 11:58, before the hand-over: 010203's, and no action of theirs then.
        cst(*day, 11, 58): set(),
    }
    ids = {}
    for start, _ in expected.items():
        # The device file at docking says 010203 all day (the recorder was set up in the
        # morning); the assignment decides.
        ids[start] = make_recording(app, start=start, seconds=60, docking_officer="010203")
    for start, want in expected.items():
        assert cases_of(app, ids[start]) == want, start
    with app.catalog.session() as s:
        afternoon_rec = s.get(Recording, ids[cst(*day, 14, 30)])
        assert afternoon_rec is not None
        from catalog.models import Officer

        officer = s.get(Officer, afternoon_rec.officer_id)
        assert officer is not None and officer.number == "040506"
        # The file name and device file say 010203: flagged, not preferred.
        mismatch = afternoon_rec.flags["officer_mismatch"]
        assert mismatch == {
            "officer": "040506",
            "source": "assignment",
            "file_name": "010203",
            "device_info": "010203",
        }
        morning_rec = s.get(Recording, ids[cst(*day, 9, 30)])
        assert morning_rec is not None and "officer_mismatch" not in morning_rec.flags
        row = s.scalars(
            select(CaseRecording).where(CaseRecording.recording_id == ids[cst(*day, 9, 30)])
        ).one()
        assert row.method == "rule"
        assert row.rule["actions"] == ["A-1"] and row.rule["officer"] == "010203"
        assert row.rule["margin_s"] == MARGIN
        events = list(s.scalars(select(CustodyEvent).where(CustodyEvent.action == "attached")))
        assert len(events) == 4
        assert verify_chain(s).ok


def test_actions_imported_after_the_recordings_attach_them(app: Any) -> None:
    rec = make_recording(app, start=cst(2026, 3, 3, 9, 30))
    assert cases_of(app, rec) == set()
    with app.catalog.transaction() as s:
        case = create_case(s, app.signer, number="沪徐市监罚〔2026〕200号", actor="admin")
        action, _ = add_action(
            s,
            app.signer,
            case=case,
            external_id="X",
            officers=["010203"],
            start=cst(2026, 3, 3, 9, 0),
            end=cst(2026, 3, 3, 10, 0),
            actor="admin",
        )
        assert (
            attach_for_actions(
                s, app.signer, [action.id], policy=app.settings.retention, actor="admin"
            )
            == 1
        )
        # Idempotent: running the rule again attaches nothing more.
        assert (
            attach_for_actions(
                s, app.signer, [action.id], policy=app.settings.retention, actor="admin"
            )
            == 0
        )
    assert cases_of(app, rec) == {"沪徐市监罚〔2026〕200号"}


def test_detach_is_final_for_the_rule_and_exported_needs_override(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    number = "沪徐市监罚〔2026〕300号"
    with app.catalog.transaction() as s:
        case = create_case(s, app.signer, number=number, actor="admin")
        add_action(
            s,
            app.signer,
            case=case,
            external_id="1",
            officers=["010203"],
            start=cst(2026, 3, 4, 9, 0),
            end=cst(2026, 3, 4, 10, 0),
            actor="admin",
        )
    first = make_recording(app, start=cst(2026, 3, 4, 9, 10))
    second = make_recording(app, start=cst(2026, 3, 4, 9, 20))
    assert cases_of(app, first) == {number}
    data = str(app.settings.data_dir)
    r = run_cli(
        capsys,
        "--data-dir",
        data,
        "case",
        "detach",
        number,
        str(first),
        "--reason",
        "another officer's scene",
        "--actor",
        "王五",
    )
    assert r.code == 0, r.err
    assert cases_of(app, first) == set()
    # The rule never attaches it again, even when the actions are matched anew.
    with app.catalog.transaction() as s:
        ids = [a.id for a in get_case_actions(s, number)]
        attach_for_actions(s, app.signer, ids, policy=app.settings.retention, actor="admin")
    assert cases_of(app, first) == set()
    # A person may attach it again; the reason is required and recorded.
    r = run_cli(
        capsys,
        "--data-dir",
        data,
        "case",
        "attach",
        number,
        str(first),
        "--reason",
        "复核后确认",
        "--actor",
        "王五",
    )
    assert r.code == 0, r.err
    assert cases_of(app, first) == {number}
    # Exported: detaching needs the explicit override, which is recorded.
    with app.catalog.transaction() as s:
        export = Export(uid="exp-1", actor="archivist", out_path="/tmp/x")
        s.add(export)
        s.flush()
        s.add(ExportItem(export_id=export.id, recording_id=second, path="data/x.mp4"))
    r = run_cli(
        capsys, "--data-dir", data, "case", "detach", number, str(second), "--reason", "wrong case"
    )
    assert r.code == 65 and "exported" in r.err and "--force-exported" in r.err
    assert cases_of(app, second) == {number}
    r = run_cli(
        capsys,
        "--data-dir",
        data,
        "case",
        "detach",
        number,
        str(second),
        "--reason",
        "wrong case",
        "--force-exported",
        "--actor",
        "王五",
    )
    assert r.code == 0, r.err
    assert cases_of(app, second) == set()
    with app.catalog.session() as s:
        events = [
            (e.action, e.actor, e.details)
            for e in s.scalars(
                select(CustodyEvent)
                .where(CustodyEvent.action.in_(["attached", "detached"]))
                .order_by(CustodyEvent.seq)
            )
        ]
        assert [(a, who) for a, who, _ in events] == [
            ("attached", "worker:test"),
            ("attached", "worker:test"),
            ("detached", "王五"),
            ("attached", "王五"),
            ("detached", "王五"),
        ]
        assert '"override":true' in events[-1][2] and '"exp-1"' in events[-1][2]
        assert '"reason":"复核后确认"' in events[3][2]
        assert verify_chain(s).ok
    # `case show` lists the attached recording with digest, times, officer and why.
    r = run_cli(capsys, "--data-dir", data, "case", "show", number, "--json")
    assert r.code == 0, r.err
    import json

    shown = json.loads(r.out)
    assert [x["recording"] for x in shown["recordings"]] == [first]
    entry = shown["recordings"][0]
    assert entry["officer"] == "010203" and entry["method"] == "manual"
    assert entry["why"] == "by hand: 王五: 复核后确认" and len(entry["sha256"]) == 64
    assert [x["recording"] for x in shown["detached"]] == [second]


def get_case_actions(s: Any, number: str) -> list[Any]:
    from catalog.models import EnforcementAction

    case = get_case(s, number)
    return list(s.scalars(select(EnforcementAction).where(EnforcementAction.case_id == case.id)))


def test_manual_attach_needs_reason_and_existing_case(app: Any) -> None:
    rec_id = make_recording(app, start=cst(2026, 3, 5, 8, 0))
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number="沪徐市监罚〔2026〕400号", actor="admin")
    with app.catalog.transaction() as s:
        rec = s.get(Recording, rec_id)
        with pytest.raises(CaseError, match="reason"):
            attach_manual(
                s,
                app.signer,
                case_number="沪徐市监罚〔2026〕400号",
                rec=rec,
                reason=" ",
                actor="a",
                policy=app.settings.retention,
            )
        assert attach_manual(
            s,
            app.signer,
            case_number="沪徐市监罚〔2026〕400号",
            rec=rec,
            reason="证据",
            actor="a",
            policy=app.settings.retention,
        )
        assert not attach_manual(
            s,
            app.signer,
            case_number="沪徐市监罚〔2026〕400号",
            rec=rec,
            reason="证据",
            actor="a",
            policy=app.settings.retention,
        )
    with app.catalog.transaction() as s:
        rec = s.get(Recording, rec_id)
        detach(s, app.signer, case_number="沪徐市监罚〔2026〕400号", rec=rec, reason="x", actor="a")
        with pytest.raises(CaseError, match="not attached"):
            detach(
                s, app.signer, case_number="沪徐市监罚〔2026〕400号", rec=rec, reason="x", actor="a"
            )


def test_worker_resolves_officer_marks_important_and_attaches(tmp_path: Path) -> None:
    """The real path: dock a synthetic recorder, run the worker; the recorder was handed
    to another officer before the shift, and one file carries the important tag."""
    root = tmp_path / "dock" / "A123456"
    rec = make_recorder(root, start=None, h264=2, h265=0, wav=0, jpeg=0, truncated=0, segments=0)
    videos = sorted(rec.media(), key=lambda f: f.relpath)
    tagged = root / videos[1].relpath
    tagged.rename(tagged.with_name(tagged.stem + "_IMP" + tagged.suffix))
    first = videos[0].start
    assert first is not None
    start = cst(first.year, first.month, first.day, first.hour, first.minute, first.second)
    app = make_app(tmp_path / "data")
    with app.catalog.transaction() as s:
        from catalog.devices import add_device

        add_device(s, app.signer, serial=DEFAULT_DEVICE.serial, actor="admin")
        assign_device(
            s,
            app.signer,
            serial=DEFAULT_DEVICE.serial,
            officer_number="999001",
            start=start - timedelta(hours=1),
            actor="admin",
        )
        case = create_case(s, app.signer, number="沪徐市监罚〔2026〕500号", actor="admin")
        add_action(
            s,
            app.signer,
            case=case,
            external_id="1",
            officers=["999001"],
            start=start - timedelta(minutes=30),
            end=start + timedelta(minutes=1),
            actor="admin",
        )
    station = app.station()
    assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    station.close()
    stats = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer).run(
        drain=True, idle_s=0.1
    )
    assert stats.failed == 0, stats.errors
    with app.catalog.session() as s:
        recs = {r.original_name: r for r in s.scalars(select(Recording))}
        plain = recs[videos[0].relpath.rsplit("/", 1)[-1]]
        important = next(r for n, r in recs.items() if n.endswith("_IMP.MP4"))
        assert important.important and not plain.important
        assert important.captured_at is not None  # the tag did not hide the time in the name
        assert plain.flags["officer_mismatch"]["file_name"] == DEFAULT_DEVICE.officer_number
        assert plain.flags["officer_mismatch"]["officer"] == "999001"
    assert cases_of(app, plain.id) == {"沪徐市监罚〔2026〕500号"}
    app.close()


def test_assignment_recorded_late_moves_rule_attachments(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probed while only the device file (010203) was known, the recording attached to
    010203's case; the hand-over to 040506 recorded afterwards moves it to 040506's case,
    and a recording attached by hand stays where the person put it."""
    day = (2026, 3, 6)
    with app.catalog.transaction() as s:
        a = create_case(s, app.signer, number="沪徐市监罚〔2026〕601号", actor="admin")
        b = create_case(s, app.signer, number="沪徐市监罚〔2026〕602号", actor="admin")
        for case, officer in ((a, "010203"), (b, "040506")):
            add_action(
                s,
                app.signer,
                case=case,
                external_id="1",
                officers=[officer],
                start=cst(*day, 14, 0),
                end=cst(*day, 15, 0),
                actor="admin",
            )
    moved = make_recording(app, start=cst(*day, 14, 10))
    kept = make_recording(app, start=cst(*day, 14, 20))
    assert cases_of(app, moved) == cases_of(app, kept) == {"沪徐市监罚〔2026〕601号"}
    with app.catalog.transaction() as s:
        case = get_case(s, "沪徐市监罚〔2026〕601号")
        row = s.scalars(
            select(CaseRecording).where(
                CaseRecording.recording_id == kept, CaseRecording.case_id == case.id
            )
        ).one()
        row.method = "manual"  # as if a person had attached it
    r = run_cli(
        capsys,
        "--data-dir",
        str(app.settings.data_dir),
        "device",
        "assign",
        "A123456",
        "040506",
        "--start",
        "2026-03-06 12:00",
        "--actor",
        "调度",
    )
    assert r.code == 0 and "2 recording(s) re-resolved" in r.out, r.err
    assert cases_of(app, moved) == {"沪徐市监罚〔2026〕602号"}
    assert cases_of(app, kept) == {"沪徐市监罚〔2026〕601号", "沪徐市监罚〔2026〕602号"}
    with app.catalog.session() as s:
        detached = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "detached")).one()
        assert detached.actor == "调度" and "re-resolved" in detached.details
        assert verify_chain(s).ok
