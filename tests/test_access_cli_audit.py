"""Every command-line access to evidence is an access event (issue 15 point 4): `show`,
`case show`, `case attach`/`detach`, `retention hold`/`release` and `export` each record
one event, by the principal, named as the API names the object, so the access report of
the recording (and of its case) lists them; the stored reason of a refusal is the same
whatever the runner's language. SQLite and PostgreSQL (the app fixture)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import pytest

from access.access_report import ACCESS, access_report
from access.roles import Role
from catalog.models import Recording
from config import i18n
from tests.api_helpers import access_events
from tests.cli_helpers import run_cli
from tests.test_access_cli import act_as, cheap_hashing, user  # noqa: F401
from tests.test_access_cli import world as world


def _sha(app: Any, rec_id: int) -> str:
    with app.catalog.session() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None
        return str(rec.sha256)


def _one_new(app: Any, before: int, *argv: str, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the command; it must succeed and add exactly one access event."""
    done = run_cli(capsys, *argv)
    assert done.code == 0, (argv, done.out, done.err)
    new = access_events(app)[before:]
    assert len(new) == 1, (argv, [(e.action, e.object_type, e.object_id) for e in new])
    return new[0]


def test_each_cli_access_is_one_event_by_the_logged_in_user(
    app: Any, world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    user(app, "arch", Role.ARCHIVIST, unit="徐汇")
    act_as(app, "arch")
    rec, loose = world["rec"], world["loose"]
    sha, loose_sha = _sha(app, rec), _sha(app, loose)
    expected: list[tuple[tuple[str, ...], str, str, str, dict[str, Any]]] = [
        (("show", str(rec)), "access.view", "recording", sha, {}),
        (("case", "show", "徐-1"), "access.view", "case", "徐-1", {}),
        (
            ("case", "attach", "徐-1", str(loose), "--reason", "seen"),
            "access.attach",
            "recording",
            loose_sha,
            {"case": "徐-1", "reason": "seen"},
        ),
        (
            ("case", "detach", "徐-1", str(loose), "--reason", "wrong"),
            "access.detach",
            "recording",
            loose_sha,
            {"case": "徐-1", "reason": "wrong"},
        ),
        (
            ("retention", "hold", str(rec), "--reason", "court"),
            "access.hold",
            "recording",
            sha,
            {"reason": "court"},
        ),
        (
            ("retention", "release", str(rec), "--reason", "done"),
            "access.release",
            "recording",
            sha,
            {"reason": "done"},
        ),
        (
            ("export", "--case", "徐-1", "--out", str(tmp_path / "b.tar"), "--decode", "none"),
            "access.export",
            "case",
            "徐-1",
            {"recordings": 1},
        ),
    ]
    for argv, action, object_type, object_id, details in expected:
        event = _one_new(app, len(access_events(app)), *argv, capsys=capsys)
        assert (event.actor, event.action, event.object_type, event.object_id) == (
            "arch",
            action,
            object_type,
            object_id,
        ), argv
        assert event.result == "ok" and event.source == "cli"
        for key, value in details.items():
            assert event.details[key] == value, (argv, event.details)


def test_the_access_report_lists_the_cli_view_and_export(
    app: Any, world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    user(app, "arch", Role.ARCHIVIST, unit="徐汇")
    act_as(app, "arch")
    rec = world["rec"]
    assert run_cli(capsys, "show", str(rec)).code == 0
    out = tmp_path / "b.tar"
    assert (
        run_cli(capsys, "export", "--case", "徐-1", "--out", str(out), "--decode", "none").code == 0
    )
    with app.catalog.session() as s:
        of_rec = access_report(s, recording_id=rec)
        of_case = access_report(s, case_number="徐-1")
    seen = [(r.kind, r.actor, r.action) for r in of_rec.rows]
    assert (ACCESS, "arch", "access.view") in seen
    # The recording's own line of the export is its custody event; the access is the case's.
    assert ("arch", "exported") in [(r.actor, r.action) for r in of_rec.rows]
    in_case = [(r.kind, r.actor, r.action) for r in of_case.rows]
    assert (ACCESS, "arch", "access.export") in in_case
    assert (ACCESS, "arch", "access.view") in in_case


def test_a_date_range_export_is_one_event_with_its_counts(
    app: Any, world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Without accounts: the local OS user, and the audit is as complete.
    argv = ("export", "--from", "2026-11-02", "--to", "2026-11-03", "--out", str(tmp_path / "r"))
    event = _one_new(app, len(access_events(app)), *argv, "--decode", "none", capsys=capsys)
    assert (event.actor, event.action, event.object_type) == (
        getpass.getuser(),
        "access.export",
        "export",
    )
    assert event.details["recordings"] == 2 and event.object_id == event.details["export"]


def test_a_refusal_is_stored_in_english_whatever_the_language(
    app: Any,
    world: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user(app, "off", Role.OFFICER, unit="静安", number="040506")
    act_as(app, "off")
    assert run_cli(capsys, "show", str(world["rec"])).code == 77
    monkeypatch.setenv("LIUHEN_LANG", "zh")
    i18n.set_language(None)
    shown = run_cli(capsys, "show", str(world["rec"]))
    assert shown.code == 77 and "off" in shown.err
    denied = [e for e in access_events(app) if e.action == "access.denied"]
    assert len(denied) == 2
    reasons = {e.details["reason"] for e in denied}
    assert len(reasons) == 1 and "off may not" in reasons.pop()
    assert {e.details["permission"] for e in denied} == {"recording.view"}
    # The refused command line itself was in Chinese.
    assert "off may not" not in shown.err
