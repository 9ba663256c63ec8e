"""The access audit (issue 15, point 4): every access is one signed event of the custody
chain, the custody verifier catches an access event tampered with, access events stay
out of a recording's custody history as people read it and out of a bag's excerpt, and
`liuhen audit log` lists them for the auditor only."""

from __future__ import annotations

import csv
import io
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from sqlalchemy import select, text

from access.audit import AuditError, access_events, record_access
from catalog import verify_chain
from catalog.attach import attach_manual
from catalog.cases import create_case
from catalog.models import CustodyEvent, Recording
from config.settings import zone_of
from tests.audit_helpers import act_as
from tests.case_helpers import cst, make_recording
from tests.cli_helpers import run_cli

CASE = "沪徐市监罚〔2026〕77号"
# Each access of point 4, with what its details carry.
KINDS: list[tuple[str, str, dict[str, Any]]] = [
    ("access.login", "user", {}),
    ("access.login_failed", "user", {"reason": "wrong password"}),
    ("access.logout", "user", {}),
    ("access.lock", "user", {"minutes": 15}),
    ("access.view", "recording", {}),
    ("access.play", "recording", {"position_s": 70.5, "duration_s": 30}),
    ("access.download", "recording", {"copy": "access"}),
    ("access.export", "case", {"export": "exp-1"}),
    ("access.attach", "recording", {"case": CASE, "reason": "证据"}),
    ("access.detach", "recording", {"case": CASE, "reason": "误关联"}),
    ("access.hold", "recording", {"reason": "诉讼"}),
    ("access.release", "recording", {"reason": "结案"}),
    ("access.role_change", "user", {"role": "auditor", "change": "grant"}),
    ("access.grant_change", "case", {"user": "wang", "until": "2027-01-01"}),
    ("access.denied", "recording", {"permission": "original.download"}),
]


def _record(app: Any, **kw: Any) -> None:
    with app.catalog.transaction() as s:
        record_access(s, app.signer, **kw)


def _recording(app: Any) -> tuple[int, str]:
    rec_id = make_recording(app, start=cst(2026, 3, 2, 9, 30))
    with app.catalog.session() as s:
        return rec_id, s.get_one(Recording, rec_id).sha256


def test_each_access_is_exactly_one_signed_event_with_its_actor(app: Any) -> None:
    rec_id, sha = _recording(app)
    for n, (action, kind, details) in enumerate(KINDS):
        # A recording named by its catalog id, as an API path names it.
        ident = str(rec_id) if kind == "recording" else (CASE if kind == "case" else "7")
        _record(
            app,
            actor=f"user{n}",
            action=action,
            object_type=kind,
            object_id=ident,
            source=f"10.0.0.{n}",
            details=details,
            result="denied" if action == "access.denied" else "ok",
        )
    with app.catalog.session() as s:
        for n, (action, kind, details) in enumerate(KINDS):
            found = access_events(s, actions=[action])
            assert [e.actor for e in found] == [f"user{n}"], action
            event = found[0]
            assert event.source == f"10.0.0.{n}"
            assert event.result == ("denied" if action == "access.denied" else "ok")
            for key, value in details.items():
                assert event.details[key] == value
            if kind == "recording":
                # One identifier for the recording, as its custody events use.
                assert event.object_id == sha and event.recording_id == rec_id
        assert len(access_events(s)) == len(KINDS)
        assert verify_chain(s).ok


def test_an_access_action_outside_the_namespace_is_refused(app: Any) -> None:
    with pytest.raises(AuditError, match="not an access action"):
        _record(app, actor="li", action="viewed", object_type="recording", object_id="1")
    with pytest.raises(AuditError, match="actor"):
        _record(app, actor="x" * 500, action="access.view", object_type="case", object_id="1")
    with app.catalog.session() as s:
        assert access_events(s) == []


@pytest.mark.parametrize("tamper", ["details", "actor", "delete"])
def test_tampering_with_an_access_event_is_caught_by_custody_verify(
    app: Any, capsys: pytest.CaptureFixture[str], tamper: str
) -> None:
    rec_id, _sha = _recording(app)
    for who in ("zhang", "li", "wang"):
        _record(
            app, actor=who, action="access.view", object_type="recording", object_id=str(rec_id)
        )
    assert run_cli(capsys, "custody", "verify").code == 0
    with app.catalog.transaction() as s:
        ev = s.scalars(select(CustodyEvent).where(CustodyEvent.actor == "li")).one()
        if tamper == "details":
            # Hide where the view came from, straight in the database.
            s.execute(
                text("UPDATE custody_events SET details = :d WHERE id = :i"),
                {"d": ev.details.replace('"result":"ok"', '"result":"denied"'), "i": ev.id},
            )
        elif tamper == "actor":
            s.execute(
                text("UPDATE custody_events SET actor = 'nobody' WHERE id = :i"), {"i": ev.id}
            )
        else:
            s.execute(text("DELETE FROM custody_events WHERE id = :i"), {"i": ev.id})
        seq = ev.seq
    result = run_cli(capsys, "custody", "verify")
    assert result.code == 1, result.out
    expected = "gap" if tamper == "delete" else "edited"
    assert f"event #{seq if tamper != 'delete' else seq + 1}" in result.out
    assert expected in result.out
    if tamper != "delete":
        assert "access.view" in result.out


def _case_with_views(app: Any) -> tuple[int, str]:
    """A recording attached to a case, with views recorded before and after the
    attachment: access events sit between its custody events in the station's chain."""
    rec_id, sha = _recording(app)
    _record(app, actor="zhang", action="access.view", object_type="recording", object_id=sha)
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number=CASE, retention="30年", actor="li")
        attach_manual(
            s,
            app.signer,
            case_number=CASE,
            rec=s.get_one(Recording, rec_id),
            reason="证据",
            actor="li",
            policy=app.settings.retention,
            store=app.store,
        )
    for action in ("access.view", "access.download"):
        _record(app, actor="wang", action=action, object_type="recording", object_id=sha)
    _record(app, actor="wang", action="access.view", object_type="case", object_id=CASE)
    return rec_id, sha


def test_access_events_stay_out_of_show_and_verify_file(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rec_id, _sha = _case_with_views(app)
    shown = run_cli(capsys, "show", str(rec_id), "--json")
    assert shown.code == 0, shown.err
    actions = [e["action"] for e in json.loads(shown.out)["custody"]]
    assert "attached" in actions  # its chain of custody is there
    assert not [a for a in actions if a.startswith("access.")]
    with app.catalog.session() as s:
        events = access_events(s)
    # The four recorded before, then this `show` itself (recorded once it has printed).
    assert len(events) == 5
    assert (events[-1].action, events[-1].source) == ("access.view", "cli")


def test_a_bag_excerpt_leaves_access_events_out_and_still_verifies(
    app: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _case_with_views(app)
    out = tmp_path / "bags"
    made = run_cli(capsys, "export", "--case", CASE, "--out", str(out))
    assert made.code == 0, made.out + made.err
    bag = out
    excerpt = (bag / "data" / "metadata" / "custody.jsonl").read_text(encoding="utf-8")
    events = [json.loads(line) for line in excerpt.splitlines() if line.strip()]
    assert events and not [e for e in events if e["action"].startswith("access.")]
    own = sorted(e["seq"] for e in events if e["station_id"] == app.signer.station_id)
    with app.catalog.session() as s:
        access_seqs = {e.seq for e in access_events(s)}
    # The excerpt skips the access events between its custody events: gaps …
    assert any(b - a > 1 for a, b in itertools.pairwise(own))
    assert access_seqs & set(range(own[0], own[-1]))
    # … and verifies all the same (only consecutive events of an excerpt must link).
    verified = run_cli(capsys, "verify", str(bag))
    assert verified.code == 0, verified.out + verified.err
    assert run_cli(capsys, "four-properties", str(bag)).code == 0


def test_access_events_filter_and_page(app: Any) -> None:
    _rec_id, sha = _case_with_views(app)
    now = datetime.now(UTC)
    with app.catalog.session() as s:
        assert [e.actor for e in access_events(s, actor="wang")] == ["wang"] * 3
        assert len(access_events(s, object_id=sha)) == 3
        assert [e.object_id for e in access_events(s, object_type="case")] == [CASE]
        assert len(access_events(s, actions=["access.download"])) == 1
        assert len(access_events(s, since=now - timedelta(hours=1))) == 4
        assert access_events(s, since=now + timedelta(hours=1)) == []
        assert access_events(s, until=now - timedelta(hours=1)) == []
        first = access_events(s, limit=3)
        rest = access_events(s, limit=3, after_id=first[-1].id)
        assert len(first) == 3 and len(rest) == 1
        assert [e.id for e in first + rest] == [e.id for e in access_events(s)]


def test_audit_log_lists_events_for_the_auditor_in_80_columns(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rec_id, _sha = _case_with_views(app)
    _record(
        app,
        actor="zhao",
        action="access.play",
        object_type="recording",
        object_id=str(rec_id),
        source="192.168.10.23",
        details={"position_s": 70, "duration_s": 95.5},
    )
    act_as(monkeypatch, "auditor1", "auditor")
    listed = run_cli(capsys, "audit", "log", "--recording", str(rec_id))
    assert listed.code == 0, listed.err
    lines = listed.out.splitlines()
    assert max(cell_len(line) for line in lines) <= 80, listed.out
    assert "zhao" in listed.out and "192.168.10.23" in listed.out
    assert "position 0:01:10, watched 0:01:35.5" in listed.out
    assert f"recording #{rec_id}" in listed.out and "+08:00" in listed.out
    assert "4 event(s)" in listed.out  # 2 views, a download, the playback; not the case view
    day = datetime.now(zone_of("Asia/Shanghai")).date()
    today = run_cli(
        capsys,
        "audit",
        "log",
        "--from",
        day.isoformat(),
        "--to",
        str(day + timedelta(1)),
        "--json",
        "--user",
        "wang",
    )
    assert today.code == 0, today.err
    doc = json.loads(today.out)
    assert [e["action"] for e in doc["events"]] == ["access.view", "access.download", "access.view"]
    assert doc["events"][0]["at"].endswith("+08:00")
    before = run_cli(capsys, "audit", "log", "--to", day.isoformat(), "--json")
    assert json.loads(before.out)["events"] == []
    sheet = tmp_path / "log.csv"
    written = run_cli(capsys, "audit", "log", "--action", "download", "--csv", str(sheet))
    assert written.code == 0, written.err
    data = sheet.read_bytes()
    assert (
        data.startswith(b"\xef\xbb\xbf")
        and b"\r\n" in data
        and b"\n" not in data.replace(b"\r\n", b"")
    )
    rows = list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline="")))
    assert len(rows) == 2 and rows[1][1] == "wang"


def test_audit_log_is_refused_to_an_officer_and_paged(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _case_with_views(app)
    act_as(monkeypatch, "officer7", "officer")
    refused = run_cli(capsys, "audit", "log")
    assert refused.code == 77, refused.out + refused.err
    assert "wang" not in refused.out
    with app.catalog.session() as s:
        (denied,) = access_events(s, actor="officer7")
    assert (denied.action, denied.object_type, denied.object_id, denied.result) == (
        "access.denied",
        "command",
        "audit log",
        "denied",
    )
    act_as(monkeypatch, "auditor1", "auditor")
    page = run_cli(capsys, "audit", "log", "--limit", "2", "--json")
    doc = json.loads(page.out)
    assert len(doc["events"]) == 2 and doc["next_after"] == doc["events"][-1]["id"]
    rest = run_cli(capsys, "audit", "log", "--after", str(doc["next_after"]), "--json")
    assert len(json.loads(rest.out)["events"]) == 2
    bad = run_cli(capsys, "audit", "log", "--action", "peek")
    assert bad.code == 2 and "unknown audit action access.peek" in bad.err


def _settings_file(tmp_path: Path, keep_days: int) -> Path:
    path = tmp_path / "liuhen.toml"
    path.write_text(f"[audit]\nkeep_days = {keep_days}\n", encoding="utf-8")
    return path


def test_keep_days_below_180_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    short = run_cli(capsys, "--config", str(_settings_file(tmp_path, 90)), "config", "show")
    assert short.code == 78, short.out
    assert "audit.keep_days" in short.err and "at least 180 days" in short.err
    assert "got 90" in short.err
    ok = run_cli(capsys, "--config", str(_settings_file(tmp_path, 365)), "config", "show", "--json")
    assert ok.code == 0 and json.loads(ok.out)["audit"]["keep_days"] == 365
    monkeypatch.setenv("LIUHEN_AUDIT_KEEP_DAYS", "179")
    env = run_cli(capsys, "config", "show")
    assert env.code == 78 and "LIUHEN_AUDIT_KEEP_DAYS" in env.err
    monkeypatch.delenv("LIUHEN_AUDIT_KEEP_DAYS")
    default = run_cli(capsys, "--data-dir", str(tmp_path / "d"), "config", "show", "--json")
    assert json.loads(default.out)["audit"]["keep_days"] == 180


def test_keep_days_refusal_reads_in_chinese(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.i18n import set_language

    monkeypatch.setenv("LIUHEN_LANG", "zh")
    set_language(None)
    short = run_cli(capsys, "--config", str(_settings_file(tmp_path, 30)), "config", "show")
    assert short.code == 78
    assert "180" in short.err and "六个月" in short.err


def test_audit_log_reads_in_chinese(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.i18n import set_language
    from tests.i18n_helpers import assert_chinese

    rec_id, _sha = _case_with_views(app)
    _record(
        app,
        actor="zhao",
        action="access.play",
        object_type="recording",
        object_id=str(rec_id),
        source="192.168.10.23",
        details={"position_s": 5, "duration_s": 60},
    )
    act_as(monkeypatch, "auditor1", "auditor")
    monkeypatch.setenv("LIUHEN_LANG", "zh")
    set_language(None)
    listed = run_cli(capsys, "audit", "log")
    assert listed.code == 0, listed.err
    assert_chinese(listed.out)
    assert "播放位置 0:00:05，观看时长 0:01:00" in listed.out and "来自 192.168.10.23" in listed.out
    assert f"音视频记录 #{rec_id}" in listed.out and "下载" in listed.out
    assert max(cell_len(line) for line in listed.out.splitlines()) <= 80
    helped = run_cli(capsys, "audit", "log", "--help")
    assert (
        helped.code == 0 and "只列出此账号" in helped.out and "起始时间（采集站时区）" in helped.out
    )


def test_logins_and_role_changes_are_for_the_audit_administrator(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rec_id, _sha = _recording(app)
    _record(app, actor="sec1", action="access.role_change", object_type="user", object_id="9")
    _record(app, actor="zhang", action="access.login", object_type="user", object_id="3")
    _record(
        app, actor="zhang", action="access.view", object_type="recording", object_id=str(rec_id)
    )
    act_as(monkeypatch, "auditor1", "auditor")
    auditor = json.loads(run_cli(capsys, "audit", "log", "--json").out)["events"]
    assert [e["action"] for e in auditor] == ["access.view"]
    act_as(monkeypatch, "auditadmin1", "audit_admin")
    admin = json.loads(run_cli(capsys, "audit", "log", "--json").out)["events"]
    assert [e["action"] for e in admin] == ["access.role_change", "access.login", "access.view"]
