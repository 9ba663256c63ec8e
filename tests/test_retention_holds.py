"""Legal holds are individual: each has its own id, who placed it, when and why; a release
lifts the hold it names and no other; `retention explain` lists every hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from catalog import verify_chain
from catalog.models import CustodyEvent, LegalHold, Recording
from tests.case_helpers import make_recording
from tests.cli_helpers import run_cli

DAYS = 183


def test_two_holds_are_lifted_one_at_a_time(app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Two holds for two proceedings: a release that names neither is refused and lists
    both; releasing one leaves the other in force (the sweep keeps the recording, the
    store keeps its hold); a recording with one hold left is released without naming it."""
    old = datetime.now(UTC) - timedelta(days=DAYS + 30)
    rec_id = make_recording(app, start=old, received=old + timedelta(hours=1))
    with app.catalog.session() as s:
        key = s.get_one(Recording, rec_id).object_key
    r = run_cli(
        capsys,
        "retention",
        "hold",
        str(rec_id),
        "--reason",
        "行政诉讼 2026-001",
        "--actor",
        "法务甲",
    )
    assert r.code == 0, r.err
    r = run_cli(
        capsys,
        "retention",
        "hold",
        str(rec_id),
        "--reason",
        "信访复查 2026-017",
        "--actor",
        "法务乙",
    )
    assert r.code == 0, r.err
    with app.catalog.session() as s:
        first, second = s.scalars(
            select(LegalHold).where(LegalHold.recording_id == rec_id).order_by(LegalHold.id)
        ).all()
        first_id, second_id = first.id, second.id
    assert f"legal hold {second_id} placed" in r.out

    # Which one? Refused, both listed with who and why; nothing released.
    r = run_cli(capsys, "retention", "release", str(rec_id), "--reason", "结案")
    assert r.code == 2, r.out + r.err
    for text in (
        f"hold {first_id}",
        "法务甲",
        "行政诉讼 2026-001",
        f"hold {second_id}",
        "法务乙",
        "信访复查 2026-017",
        "--hold ID",
    ):
        assert text in r.err, (text, r.err)
    # A hold that is not this recording's.
    r = run_cli(capsys, "retention", "release", str(rec_id), "--hold", "999", "--reason", "x")
    assert r.code == 65 and "hold 999 is not a hold of this recording" in r.err, r.err

    r = run_cli(
        capsys,
        "retention",
        "release",
        str(rec_id),
        "--hold",
        str(first_id),
        "--reason",
        "诉讼结案",
        "--actor",
        "法务甲",
    )
    assert r.code == 0, r.err
    assert f"legal hold {first_id} released" in r.out and "1 still in force" in r.out
    assert app.store.head(key).legal_hold  # the other hold still holds it in the store

    # explain lists every hold: the one in force and the one lifted, who, when, why.
    r = run_cli(capsys, "retention", "explain", str(rec_id))
    assert r.code == 0 and "rule: legal hold" in r.out
    assert f"hold {second_id}: placed by 法务乙" in r.out and "信访复查 2026-017" in r.out
    assert f"released: hold {first_id}: placed by 法务甲" in r.out and "诉讼结案" in r.out
    r = run_cli(capsys, "retention", "explain", str(rec_id), "--json")
    doc = json.loads(r.out)
    assert [(h["id"], h["by"], h["reason"]) for h in doc["holds"]] == [
        (second_id, "法务乙", "信访复查 2026-017")
    ]
    assert [(h["id"], h["released_by"], h["release_reason"]) for h in doc["released_holds"]] == [
        (first_id, "法务甲", "诉讼结案")
    ]

    # Still held: the sweep keeps it, though its period has run out.
    r = run_cli(capsys, "retention", "sweep", "--apply", "--yes", "--json")
    assert r.code == 0 and json.loads(r.out)["deleted"] == []
    assert app.store.exists(key)
    # A releasing the lifted hold again is refused, naming who lifted it.
    r = run_cli(
        capsys, "retention", "release", str(rec_id), "--hold", str(first_id), "--reason", "x"
    )
    assert r.code == 65 and f"hold {first_id} was already released by 法务甲" in r.err, r.err

    # One hold left: a release need not name it.
    r = run_cli(
        capsys, "retention", "release", str(rec_id), "--reason", "复查结束", "--actor", "法务乙"
    )
    assert r.code == 0, r.err
    assert f"legal hold {second_id} released" in r.out and "no hold left" in r.out
    assert not app.store.head(key).legal_hold
    r = run_cli(capsys, "retention", "release", str(rec_id), "--reason", "x")
    assert r.code == 65 and "no legal hold in force" in r.err
    with app.catalog.session() as s:
        events = [
            json.loads(e.details)
            for e in s.scalars(
                select(CustodyEvent)
                .where(CustodyEvent.action == "legal-hold-released")
                .order_by(CustodyEvent.id)
            )
        ]
        assert [(e["hold"], e["reason"], e["remaining"]) for e in events] == [
            (first_id, "诉讼结案", [second_id]),
            (second_id, "复查结束", []),
        ]
        assert verify_chain(s).ok


@pytest.mark.parametrize(
    "args",
    [
        ("retention", "release", "{rec}", "--hold", "99999999999999999999999", "--reason", "x"),
        ("retention", "release", "{rec}", "--hold", "0", "--reason", "x"),
        ("retention", "release", "{rec}", "--hold", str(2**31), "--reason", "x"),
        ("retention", "sweep", "--limit", "99999999999999999999999"),
        ("retention", "sweep", "--limit", "-5"),
    ],
)
def test_out_of_range_numbers_are_usage_errors(
    app: Any, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    """A number no id or count can be is refused by name (exit 2), not an internal error
    from the database (exit 70)."""
    rec_id = make_recording(app, start=datetime.now(UTC), received=datetime.now(UTC))
    assert run_cli(capsys, "retention", "hold", str(rec_id), "--reason", "a").code == 0
    r = run_cli(capsys, *(a.format(rec=rec_id) for a in args))
    assert r.code == 2, (r.code, r.out, r.err)
    option = next(a for a in args if a in ("--hold", "--limit"))
    assert f"'{option}'" in r.err and "internal error" not in r.err, r.err
    with app.catalog.session() as s:  # nothing released
        assert s.scalars(select(LegalHold).where(LegalHold.released_at.is_(None))).all()


def test_a_large_hold_id_is_not_a_hold_of_the_recording(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rec_id = make_recording(app, start=datetime.now(UTC), received=datetime.now(UTC))
    assert run_cli(capsys, "retention", "hold", str(rec_id), "--reason", "a").code == 0
    r = run_cli(
        capsys, "retention", "release", str(rec_id), "--hold", str(2**31 - 1), "--reason", "x"
    )
    assert r.code == 65 and f"hold {2**31 - 1} is not a hold of this recording" in r.err, r.err
