"""Commands that act on a unit's evidence through something other than a case or
recording argument (an action id, a review sample, a verdict, or nothing at all: the
retention sweep) reach no further than the principal's unit."""

# ruff: noqa: F811 (the fixtures of test_access_cli, imported, are parameters here)

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from access.roles import Role
from catalog.models import Device, Recording
from tests.case_helpers import make_recording
from tests.cli_helpers import run_cli
from tests.test_access_cli import act_as, cheap_hashing, user, world  # noqa: F401


def test_a_units_archivist_sweeps_only_the_units_recordings(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=3 * 365)
    ours = make_recording(app, serial="A111111", start=long_ago, data=b"xuhui" * 100)
    theirs = make_recording(app, serial="B222222", start=long_ago, data=b"jingan" * 100)
    with app.catalog.transaction() as s:
        s.execute(update(Device).where(Device.serial == "A111111").values(unit="徐汇"))
        s.execute(update(Device).where(Device.serial == "B222222").values(unit="静安"))
    user(app, "arch", Role.ARCHIVIST, unit="静安")
    act_as(app, "arch")
    listed = run_cli(capsys, "retention", "sweep", "--json")
    assert listed.code == 0, listed.err
    assert [d["recording"] for d in json.loads(listed.out)["due"]] == [theirs]
    applied = run_cli(capsys, "retention", "sweep", "--apply", "--yes", "--json")
    assert applied.code == 0, applied.err
    with app.catalog.session() as s:
        assert s.get(Recording, theirs).state == "EXPIRED"
        assert s.get(Recording, ours).state != "EXPIRED"  # another unit's: untouched
    # A role reaching every unit would have listed both; the auditor may not sweep at all.
    user(app, "aud", Role.AUDITOR)
    act_as(app, "aud")
    assert run_cli(capsys, "retention", "sweep").code == 77


def _action_and_sample(app: Any, capsys: pytest.CaptureFixture[str]) -> tuple[str, int]:
    act_as(app, "arch")  # the unit's archivist records the action; its reviewer samples
    made = run_cli(
        capsys, "case", "action", "徐-1", "X1", "--officer", "010203",
        "--start", "2026-11-02 08:00", "--end", "2026-11-02 10:00",
    )  # fmt: skip
    assert made.code == 0, made.err
    act_as(app, "rev")
    cov = run_cli(capsys, "coverage", "--case", "徐-1", "--json")
    assert cov.code == 0, cov.err
    action = str(json.loads(cov.out)[0]["action"])
    drawn = run_cli(
        capsys, "review", "sample", "--unit", "徐汇", "--period", "2026-11", "--count", "1",
        "--seed", "s", "--json",
    )  # fmt: skip
    assert drawn.code == 0, drawn.err
    return action, int(json.loads(drawn.out)["sample"])


def test_coverage_and_review_of_another_units_action_are_refused(
    app: Any, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    user(app, "rev", Role.REVIEWER, unit="徐汇")
    user(app, "arch", Role.ARCHIVIST, unit="徐汇")
    user(app, "outsider", Role.REVIEWER, unit="静安")
    action, sample = _action_and_sample(app, capsys)
    verdict = run_cli(capsys, "review", "verdict", str(sample), action, "--verdict", "不完整")
    assert verdict.code == 0, verdict.err
    verdict_id = verdict.out.split()[1].rstrip(":")
    act_as(app, "outsider")
    refused = [
        ("coverage", action),
        ("review", "show", str(sample)),
        ("review", "verdict", str(sample), action, "--verdict", "完整"),
        ("review", "rectify", verdict_id, "--what", "重新培训"),
    ]
    for argv in refused:
        r = run_cli(capsys, *argv)
        assert r.code == 77 and "may not" in r.err, (argv, r.code, r.err)
    act_as(app, "rev")
    for argv in refused:
        r = run_cli(capsys, *argv)
        assert r.code == 0, (argv, r.code, r.err)
