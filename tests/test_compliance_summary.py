"""The unit's picture on a constructed history, on SQLite and PostgreSQL: actions by
status per month and officer, median and worst gap, unattached recordings, devices not
docked, clocks found off."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from catalog import Catalog
from catalog.models import CaseRecording
from compliance.coverage import Rules
from compliance.periods import period
from compliance.summary import Housekeeping, summarize
from tests.cli_helpers import run_cli
from tests.compliance_helpers import World, at

UNIT = "徐汇区市场监督管理局"
OTHER = "徐汇区城管执法局"
DAY = 86400


def fill(w: World) -> None:
    w.officer("010203", "张三")
    w.officer("040506", "李四")
    w.officer("070809", "王五", unit=OTHER)
    w.device("D1")
    w.device("D2")
    w.device("D3")  # never docked
    w.device("X1", unit=OTHER)
    w.assign("D1", "010203", at(-30 * DAY))
    w.assign("D2", "040506", at(-30 * DAY))
    w.assign("X1", "070809", at(-30 * DAY))
    # November (at(0) is 2026-11-03 09:00 CST):
    w.recording("D1", at(0), at(3600))  # A-1 complete for 010203
    w.action("A-1", ["010203"], at(0), at(3600))
    w.recording("D1", at(DAY), at(DAY + 1000))  # 2600 s gap at the end
    w.action("A-2", ["010203"], at(DAY), at(DAY + 3600))
    w.recording("D1", at(2 * DAY), at(2 * DAY + 3500))  # 100 s gap
    w.action("A-3", ["010203"], at(2 * DAY), at(2 * DAY + 3600))
    w.action("A-4", ["040506"], at(3 * DAY), at(3 * DAY + 600))  # nothing recorded
    w.recording("D2", at(4 * DAY), at(4 * DAY + 600), time_flags=["clock not set"])
    w.action("A-5", ["040506"], at(4 * DAY), at(4 * DAY + 600))  # uncertain
    # December (CST): 2026-12-01 09:00 is at(28 days)
    w.recording("D2", at(28 * DAY), at(28 * DAY + 600))
    w.action("A-6", ["040506"], at(28 * DAY), at(28 * DAY + 600))
    # another unit's action
    w.case("沪徐城管〔2026〕9号", unit=OTHER)
    w.action("B-1", ["070809"], at(0), at(600), case="沪徐城管〔2026〕9号")
    # unattached recordings: two old ones on D1 (one attached to the case), one recent
    old = w.recording("D1", at(5 * DAY), at(5 * DAY + 60))
    w.recording("D1", at(6 * DAY), at(6 * DAY + 60))
    w.s.add(CaseRecording(case_id=w.case(), recording_id=old, method="manual"))
    # dockings: D1 docked 2 days before the as-of time with its clock 300 s ahead,
    # D2 docked 20 days before it with its clock right
    w.docking("D1", at(30 * DAY), clock_offset_s=300)
    w.docking("D1", at(31 * DAY), clock_offset_s=-150)
    w.docking("D2", at(13 * DAY), clock_offset_s=1.5)


def picture(catalog: Catalog, unit: str | None) -> dict[str, Any]:
    start, _ = period("2026-11")
    _, end = period("2026-12")
    with catalog.transaction() as s:
        w = World(s, unit=UNIT)
        fill(w)
    with catalog.session() as s:
        return summarize(
            s, Rules(), Housekeeping(), unit=unit, start=start, end=end, now=at(33 * DAY)
        )


def test_unit_picture_by_month_and_officer(catalog: Catalog) -> None:
    data = picture(catalog, UNIT)
    assert [u["unit"] for u in data["units"]] == [UNIT]
    u = data["units"][0]
    assert (u["actions"], u["complete"], u["partial"], u["none"], u["uncertain"]) == (6, 2, 2, 1, 1)
    assert u["complete_share"] == 2 / 6
    # Longest gaps of the recorded actions: 0, 2600, 100, 0 → median 50, worst 2600.
    assert (u["median_gap_s"], u["worst_gap_s"]) == (50.0, 2600.0)
    months = {m["month"]: m for m in u["months"]}
    assert (months["2026-11"]["actions"], months["2026-12"]["actions"]) == (5, 1)
    assert months["2026-12"]["complete"] == 1
    officers = {(o["officer"], o["month"]): o for o in u["officers"]}
    assert officers[("010203", "2026-11")]["complete"] == 1
    assert officers[("010203", "2026-11")]["partial"] == 2
    assert officers[("010203", "2026-11")]["name"] == "张三"
    assert officers[("040506", "2026-11")]["none"] == 1
    assert officers[("040506", "2026-11")]["uncertain"] == 1
    # As of 2026-12-06 09:00, 30 days back is 11-06 09:00: the recordings of
    # (no rule attached them in this constructed history) count; the one of 11-08 is
    # attached, the one of 11-07 and 11-09 are not 30 days old.
    assert u["unattached_recordings"] == {"count": 3, "by_officer": {"010203": 3}}
    assert [d["serial"] for d in u["undocked_devices"]] == ["D2", "D3"]
    assert u["undocked_devices"][1]["last_docked"] is None
    assert u["clock_off_devices"] == [{"serial": "D1", "dockings": 2, "worst_offset_s": 300.0}]
    assert data["district"] is None


def test_district_picture_has_every_unit(catalog: Catalog) -> None:
    data = picture(catalog, None)
    assert [u["unit"] for u in data["units"]] == sorted([UNIT, OTHER])
    assert data["district"]["actions"] == 7


def test_cli_summary_table_and_json(app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with app.catalog.transaction() as s:
        w = World(s, unit=UNIT)
        w.assign("D1", "010203", at(-30 * DAY))
        w.recording("D1", at(0), at(3600))
        w.action("A-1", ["010203"], at(0), at(3600))
        w.docking("D1", at(0) - timedelta(days=1))
    r = run_cli(capsys, "compliance", "summary", "--unit", UNIT, "--from", "2026-11", "--json")
    assert r.code == 0, r.err
    u = json.loads(r.out)["units"][0]
    assert (u["actions"], u["complete"]) == (1, 1)
    r = run_cli(capsys, "compliance", "summary", "--unit", UNIT, "--from", "2026-11")
    assert r.code == 0, r.err
    assert "2026-11" in r.out and "100.0%" in r.out and "complete" in r.out
    r = run_cli(capsys, "compliance", "summary", "--from", "2026-13")
    assert r.code == 2 and "not a year, month or day" in r.err
