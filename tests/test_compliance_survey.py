"""Equipment survey (装备摸底) on SQLite and PostgreSQL: holder, last docking, storage and
clock offset then, recordings in the last 30 days; CSV that Excel on Chinese Windows reads."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from catalog import Catalog
from compliance.survey import survey, to_csv
from tests.cli_helpers import run_cli
from tests.compliance_helpers import World, at

UNIT = "徐汇区市场监督管理局"
DAY = 86400


def fill(w: World) -> None:
    w.device("D1", model="DSJ-V9")
    w.device("D2", model="DSJ-X1")
    w.device("X1", unit="城管")
    w.officer("010203", "张三")
    w.assign("D1", "040506", at(-90 * DAY), at(-DAY))
    w.assign("D1", "010203", at(-DAY))  # the current holder
    w.docking("D1", at(-10 * DAY), clock_offset_s=-3, bytes_total=10)
    w.docking("D1", at(-2 * DAY), clock_offset_s=250.5, bytes_total=64_000_000_000)
    for i in range(3):
        w.recording("D1", at(-i * DAY - 3600), at(-i * DAY))
    w.recording("D1", at(-40 * DAY), at(-40 * DAY + 60))  # not in the last 30 days


def test_survey_rows(catalog: Catalog) -> None:
    with catalog.transaction() as s:
        fill(World(s, unit=UNIT))
    with catalog.session() as s:
        rows = survey(s, UNIT, at(0))
    assert [r["serial"] for r in rows] == ["D1", "D2"]
    d1, d2 = rows
    assert d1 == {
        "unit": UNIT,
        "serial": "D1",
        "model": "DSJ-V9",
        "registered": True,
        "assigned": True,
        "officer": "010203",
        "officer_name": "张三",
        "last_docked": at(-2 * DAY).isoformat(),
        "storage_used_bytes": 64_000_000_000,
        "clock_offset_s": 250.5,
        "recordings_30d": 3,
    }
    assert (d2["assigned"], d2["officer"], d2["last_docked"], d2["recordings_30d"]) == (
        False,
        None,
        None,
        0,
    )
    with catalog.session() as s:
        assert len(survey(s, None, at(0))) == 3


def test_csv_has_bom_and_chinese_headers() -> None:
    rows = [
        {
            "unit": UNIT,
            "serial": "D1",
            "model": "DSJ-V9",
            "registered": True,
            "assigned": False,
            "officer": None,
            "officer_name": None,
            "last_docked": None,
            "storage_used_bytes": None,
            "clock_offset_s": None,
            "recordings_30d": 0,
        }
    ]
    data = to_csv(rows)
    assert data.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert table[0][:3] == ["单位", "设备编号", "型号"]
    assert table[1][:5] == [UNIT, "D1", "DSJ-V9", "是", "否"]


def test_cli_survey(app: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with app.catalog.transaction() as s:
        w = World(s, unit=UNIT)
        w.device("D1")
        w.docking("D1", at(0) - timedelta(days=1), clock_offset_s=1)
    target = tmp_path / "摸底.csv"
    r = run_cli(capsys, "compliance", "survey", "--unit", UNIT, "--csv", str(target))
    assert r.code == 0, r.err
    assert target.read_bytes().startswith(b"\xef\xbb\xbf")
    assert "D1" in target.read_text(encoding="utf-8-sig")
    r = run_cli(capsys, "compliance", "survey", "--unit", UNIT, "--json")
    assert [d["serial"] for d in json.loads(r.out)] == ["D1"]
    r = run_cli(capsys, "compliance", "survey", "--csv", "-", "--json")
    assert r.code == 2
