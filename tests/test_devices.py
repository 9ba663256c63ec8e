"""Device registry: recorders, and their assignment to officers over time."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from catalog import verify_chain
from catalog.devices import DeviceError, DeviceNotFound, add_device, assign_device, officer_at
from catalog.models import CustodyEvent, Device, DeviceAssignment, Officer
from tests.case_helpers import cst
from tests.cli_helpers import run_cli


def officer_number_at(app: Any, serial: str, at: Any) -> str | None:
    with app.catalog.session() as s:
        device = s.scalars(select(Device).where(Device.serial == serial)).one()
        oid = officer_at(s, device.id, at)
        return s.get(Officer, oid).number if oid else None


def test_hand_overs_make_a_history(app: Any) -> None:
    with app.catalog.transaction() as s:
        add_device(s, app.signer, serial="A123456", model="DSJ-V9", unit="徐汇", actor="admin")
        assign_device(
            s,
            app.signer,
            serial="A123456",
            officer_number="010203",
            officer_name="张三",
            start=cst(2026, 3, 2, 7),
            actor="admin",
        )
        assign_device(
            s,
            app.signer,
            serial="A123456",
            officer_number="040506",
            officer_name="李四",
            start=cst(2026, 3, 2, 12),
            actor="admin",
        )
        # An assignment recorded late, between two known ones: it ends at the next hand-over.
        assign_device(
            s,
            app.signer,
            serial="A123456",
            officer_number="070809",
            start=cst(2026, 3, 2, 10),
            actor="admin",
        )
    noon = cst(2026, 3, 2, 12)
    assert officer_number_at(app, "A123456", cst(2026, 3, 2, 6, 59)) is None
    assert officer_number_at(app, "A123456", cst(2026, 3, 2, 7)) == "010203"
    assert officer_number_at(app, "A123456", cst(2026, 3, 2, 10)) == "070809"
    assert officer_number_at(app, "A123456", noon - timedelta(microseconds=1)) == "070809"
    assert officer_number_at(app, "A123456", noon) == "040506"  # [start, end)
    assert officer_number_at(app, "A123456", cst(2027, 1, 1)) == "040506"
    with app.catalog.session() as s:
        spans = [
            (a.start, a.end)
            for a in s.scalars(select(DeviceAssignment).order_by(DeviceAssignment.start))
        ]
        assert spans == [
            (cst(2026, 3, 2, 7), cst(2026, 3, 2, 10)),
            (cst(2026, 3, 2, 10), noon),
            (noon, None),
        ]
        assert s.scalars(select(Officer).where(Officer.number == "010203")).one().name == "张三"
        events = [
            e.action
            for e in s.scalars(select(CustodyEvent).where(CustodyEvent.object_type == "device"))
        ]
        assert events == ["device-registered"] + ["device-assigned"] * 3
        assert verify_chain(s).ok


def test_assignments_are_idempotent_and_conflicts_refused(app: Any) -> None:
    with app.catalog.transaction() as s:
        add_device(s, app.signer, serial="A123456", actor="admin")
        _, changed = add_device(s, app.signer, serial="A123456", actor="admin")
        assert not changed
        _, new = assign_device(
            s,
            app.signer,
            serial="A123456",
            officer_number="010203",
            start=cst(2026, 3, 2, 7),
            end=cst(2026, 3, 2, 9),
            actor="a",
        )
        assert new
        _, again = assign_device(
            s,
            app.signer,
            serial="A123456",
            officer_number="010203",
            start=cst(2026, 3, 2, 7),
            end=cst(2026, 3, 2, 9),
            actor="a",
        )
        assert not again
        with pytest.raises(DeviceError, match="already assigned"):
            assign_device(
                s,
                app.signer,
                serial="A123456",
                officer_number="040506",
                start=cst(2026, 3, 2, 7),
                actor="a",
            )
        with pytest.raises(DeviceError, match="overlaps"):
            assign_device(
                s,
                app.signer,
                serial="A123456",
                officer_number="040506",
                start=cst(2026, 3, 2, 6),
                end=cst(2026, 3, 2, 8),
                actor="a",
            )
        with pytest.raises(DeviceNotFound, match="B999999"):
            assign_device(
                s,
                app.signer,
                serial="B999999",
                officer_number="040506",
                start=cst(2026, 3, 2, 6),
                actor="a",
            )
        # Every problem of a request is named, not only the first.
        with pytest.raises(DeviceError) as err:
            assign_device(
                s,
                app.signer,
                serial="bad serial",
                officer_number="0 1",
                start=cst(2026, 3, 2, 6),
                end=cst(2026, 3, 2, 5),
                actor="a",
            )
        assert "serial" in err.value.message and "officer number" in err.value.message
        assert "not after start" in err.value.message


def test_device_commands(app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    r = run_cli(
        capsys,
        "device",
        "add",
        "A123456",
        "--model",
        "DSJ-V9",
        "--unit",
        "徐汇",
        "--actor",
        "管理员",
    )
    assert r.code == 0 and "registered" in r.out, r.err
    r = run_cli(
        capsys,
        "device",
        "assign",
        "A123456",
        "010203",
        "--name",
        "张三",
        "--start",
        "2026-03-02 07:00",
    )
    assert r.code == 0, r.err
    r = run_cli(
        capsys, "device", "assign", "A123456", "040506", "--start", "2026-03-02T12:00+08:00"
    )
    assert r.code == 0, r.err
    r = run_cli(capsys, "device", "assign", "A123456", "040506", "--start", "noon")
    assert r.code == 2 and "not a time" in r.err
    r = run_cli(capsys, "device", "assign", "Z000000", "040506", "--start", "2026-03-02 12:00")
    assert r.code == 66 and "liuhen device add Z000000" in r.err
    r = run_cli(capsys, "device", "list", "--json")
    devices = json.loads(r.out)
    assert devices == [
        {
            "serial": "A123456",
            "model": "DSJ-V9",
            "unit": "徐汇",
            "registered": True,
            "assignments": [
                {
                    "officer": "010203",
                    "name": "张三",
                    "unit": "",
                    "start": "2026-03-02T07:00:00+08:00",
                    "end": "2026-03-02T12:00:00+08:00",
                },
                {
                    "officer": "040506",
                    "name": "",
                    "unit": "",
                    "start": "2026-03-02T12:00:00+08:00",
                    "end": None,
                },
            ],
        }
    ]
    r = run_cli(capsys, "device", "list")
    assert "A123456" in r.out and "010203" in r.out
    with app.catalog.session() as s:
        actor = s.scalars(
            select(CustodyEvent.actor).where(CustodyEvent.action == "device-registered")
        ).one()
        assert actor == "管理员"


def test_values_the_columns_cannot_hold_are_refused_by_the_commands_too(
    app: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same rule as the imports (catalog.fields): by hand, one clear refusal naming
    every field, not a database error (PostgreSQL) or a silent overlong row (SQLite)."""
    r = run_cli(capsys, "device", "add", "A123456", "--model", "型" * 101, "--unit", "徐\x00汇")
    assert r.code == 65, r.out + r.err
    assert "device model is 101 characters long, more than the 100" in r.err
    assert "device unit contains a NUL character" in r.err
    r = run_cli(capsys, "device", "add", "A123456")
    r = run_cli(
        capsys,
        "device",
        "assign",
        "A123456",
        "010203",
        "--name",
        "名" * 101,
        "--start",
        "2026-03-02 07:00",
    )
    assert r.code == 65 and "officer name is 101 characters long" in r.err, r.out + r.err
    r = run_cli(capsys, "case", "create", "沪徐市监罚〔2026〕1号", "--unit", "单" * 201)
    assert r.code == 65 and "unit is 201 characters long, more than the 200" in r.err
    r = run_cli(capsys, "device", "list", "--json")
    assert json.loads(r.out)[0]["model"] == "" and json.loads(r.out)[0]["assignments"] == []
