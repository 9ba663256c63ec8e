"""Import of cases and actions from case-management exports (CSV, JSON), and of device
assignments: good rows land, bad rows are reported with line and reason, twice is a no-op."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from catalog.case_import import import_actions, import_devices
from catalog.models import (
    ActionOfficer,
    Case,
    CaseRecording,
    CustodyEvent,
    DeviceAssignment,
    EnforcementAction,
    Officer,
)
from tests.case_helpers import CST, cst, make_recording
from tests.cli_helpers import run_cli

HEADER = [
    "案件编号",
    "案件名称",
    "办案单位",
    "案件状态",
    "保管期限",
    "密级",
    "执法活动编号",
    "执法人员",
    "开始时间",
    "结束时间",
    "地点",
]


def big_csv(n_actions: int, seed: int = 7) -> tuple[bytes, dict[int, str]]:
    """A case-management export of ``n_actions`` actions over n/5 cases, with malformed
    rows sprinkled in. Returns the bytes and {line number: expected reason fragment}."""
    rng = random.Random(seed)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(HEADER)
    bad: dict[int, str] = {}
    line = 1
    base = cst(2026, 1, 5, 8, 0)
    for i in range(n_actions):
        case = i // 5
        start = base + timedelta(minutes=37 * i)
        row = [
            f"沪徐市监罚〔2026〕{case + 1}号",
            f"案件{case + 1}",
            "徐汇区市场监督管理局",
            "open" if case % 3 else "已结案",
            ["永久", "30年", "10年"][case % 3],
            "",
            f"ACT-{i:05d}",
            f"{10000 + (rng.randrange(50) if i else 0):06d};{10100 + rng.randrange(50):06d}",
            start.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S"),
            (start + timedelta(minutes=30)).isoformat(),
            f"地点{i}",
        ]
        line += 1
        w.writerow(row)
        if i % 997 == 13:  # a malformed row after this one
            kind = (i // 997) % 5
            broken = list(row)
            broken[6] = f"BAD-{i:05d}"
            reason = {
                0: "not a time",
                1: "ends",
                2: "retention",
                3: "no officers",
                4: "case number is empty",
            }[kind]
            if kind == 0:
                broken[8] = "2026-13-45 25:00"
            elif kind == 1:
                broken[9] = "2026-01-01T00:00:00+08:00"
            elif kind == 2:
                broken[4] = "5年"
            elif kind == 3:
                broken[7] = ""
            else:
                broken[0] = ""
            line += 1
            w.writerow(broken)
            bad[line] = reason
    return out.getvalue().encode("utf-8-sig"), bad


def counts(app: Any) -> tuple[int, int, int, int]:
    with app.catalog.session() as s:
        return (
            s.scalar(select(func.count()).select_from(Case)) or 0,
            s.scalar(select(func.count()).select_from(EnforcementAction)) or 0,
            s.scalar(select(func.count()).select_from(ActionOfficer)) or 0,
            s.scalar(select(func.count()).select_from(CustodyEvent)) or 0,
        )


def test_ten_thousand_actions_with_bad_rows(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, bad = big_csv(10_000)
    path = tmp_path / "actions.csv"
    path.write_bytes(data)
    # One recording that an imported action covers: it is attached by the import.
    rec = make_recording(app, start=cst(2026, 1, 5, 8, 5), docking_officer="010000", seconds=60)
    before = counts(app)
    r = run_cli(capsys, "case", "import", str(path), "--json", "--actor", "档案员")
    assert r.code == 3, r.err  # partial: some rows refused
    report = json.loads(r.out)
    assert report["actions_created"] == 10_000 and report["cases_created"] == 2000
    assert len(report["errors"]) == len(bad) == 11
    for error, (line, reason) in zip(report["errors"], sorted(bad.items()), strict=True):
        assert error.startswith(f"line {line}: "), (error, line)
        assert reason in error, (error, reason)
    after = counts(app)
    assert after[:2] == (before[0] + 2000, before[1] + 10_000)
    assert after[2] == before[2] + 20_000
    with app.catalog.session() as s:
        case = s.scalars(select(Case).where(Case.number == "沪徐市监罚〔2026〕1号")).one()
        assert case.status == "closed" and case.retention == "永久" and case.closed_at
        first = s.scalars(
            select(EnforcementAction).where(EnforcementAction.external_id == "ACT-00000")
        ).one()
        assert first.start == cst(2026, 1, 5, 8, 0) and first.end == cst(2026, 1, 5, 8, 30)
        attached = s.scalars(select(CaseRecording).where(CaseRecording.recording_id == rec)).all()
        # The one action of officer 010000 at 08:00-08:30 covers the 08:05 recording.
        assert [(a.method, a.rule["actions"]) for a in attached] == [("rule", ["ACT-00000"])]
    # Importing the same file again changes nothing: no rows, no custody events.
    r = run_cli(capsys, "case", "import", str(path), "--json")
    again = json.loads(r.out)
    assert again["actions_created"] == again["cases_created"] == again["actions_updated"] == 0
    assert again["unchanged"] == 10_000 and again["errors"] == report["errors"]
    assert counts(app) == after


def test_json_export_and_updates(app: Any, tmp_path: Path) -> None:
    doc = {
        "cases": [
            {
                "number": "沪徐市监罚〔2026〕77号",
                "title": "食品安全",
                "unit": "徐汇",
                "status": "open",
                "retention": "定期30年",
                "security_class": "内部",
                "actions": [
                    {
                        "id": "a1",
                        "officers": ["010203", "040506"],
                        "start": "2026-02-01T09:00:00+08:00",
                        "end": "2026-02-01T10:00:00+08:00",
                        "place": "漕宝路",
                    },
                    {
                        "id": "a2",
                        "officers": [],
                        "start": "2026-02-01 11:00",
                        "end": "2026-02-01 12:00",
                    },
                ],
            },
            {"number": "沪徐市监罚〔2026〕78号", "retention": "10年"},
            "not a case",
        ]
    }
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    with app.catalog.transaction() as s:
        report = import_actions(s, app.signer, path, actor="a")
    assert (report.cases_created, report.actions_created) == (2, 1)
    assert report.errors == [
        "cases[0].actions[1]: action has no officers",
        "cases[2]: not an object",
    ]
    with app.catalog.session() as s:
        case = s.scalars(select(Case).where(Case.number == "沪徐市监罚〔2026〕77号")).one()
        assert (case.retention, case.security_class, case.title) == ("30年", "内部", "食品安全")
    # The case system closes the case and moves the action: the import follows it.
    doc["cases"][0]["status"] = "closed"  # type: ignore[index]
    doc["cases"][0]["actions"][0]["end"] = "2026-02-01T10:30:00+08:00"  # type: ignore[index]
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    with app.catalog.transaction() as s:
        report = import_actions(s, app.signer, path, actor="a")
    assert (report.cases_updated, report.actions_updated, report.actions_created) == (1, 1, 0)
    with app.catalog.session() as s:
        case = s.scalars(select(Case).where(Case.number == "沪徐市监罚〔2026〕77号")).one()
        action = s.scalars(
            select(EnforcementAction).where(EnforcementAction.external_id == "a1")
        ).one()
        assert case.status == "closed" and case.closed_at is not None
        assert action.end == cst(2026, 2, 1, 10, 30)


def test_conflicting_rows_in_one_file_are_refused(app: Any, tmp_path: Path) -> None:
    rows = [
        HEADER,
        [
            "沪徐市监罚〔2026〕9号",
            "甲",
            "",
            "open",
            "永久",
            "",
            "x1",
            "010203",
            "2026-02-01 09:00",
            "2026-02-01 10:00",
            "",
        ],
        [
            "沪徐市监罚〔2026〕9号",
            "乙",
            "",
            "open",
            "永久",
            "",
            "x2",
            "010203",
            "2026-02-01 09:00",
            "2026-02-01 10:00",
            "",
        ],
        [
            "沪徐市监罚〔2026〕9号",
            "甲",
            "",
            "open",
            "永久",
            "",
            "x1",
            "040506",
            "2026-02-01 09:00",
            "2026-02-01 10:00",
            "",
        ],
        [
            "沪徐市监罚〔2026〕9号",
            "甲",
            "",
            "open",
            "永久",
            "",
            "x1",
            "010203",
            "2026-02-01 09:00",
            "2026-02-01 10:00",
            "",
        ],
    ]
    path = tmp_path / "a.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    with app.catalog.transaction() as s:
        report = import_actions(s, app.signer, path, actor="a")
    assert report.actions_created == 1 and report.unchanged == 1
    assert [e.split(":")[0] for e in report.errors] == ["line 3", "line 4"]
    assert "described differently on line 2" in report.errors[0]
    assert "appears on line 2 with other values" in report.errors[1]


def test_unusable_files_name_what_is_wrong(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.csv"
    path.write_text("foo,bar\n1,2\n", encoding="utf-8")
    r = run_cli(capsys, "case", "import", str(path))
    assert r.code == 66 and "no column for case_number" in r.err and "案件编号" in r.err
    path.write_bytes(b"\xff\xfe\x00garbage")
    r = run_cli(capsys, "case", "import", str(path))
    assert r.code == 66 and "not UTF-8" in r.err


def test_device_assignment_import(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "devices.csv"
    path.write_text(
        "serial,model,unit,officer_number,officer_name,start,end\n"
        "A123456,DSJ-V9,徐汇,010203,张三,2026-03-02 07:00:00,\n"
        "A123456,DSJ-V9,徐汇,040506,李四,2026-03-02 12:00:00,\n"
        "B000001,DSJ-V9,徐汇,,,,\n"
        "bad serial!,DSJ-V9,徐汇,010203,张三,2026-03-02 07:00:00,\n"
        "C000001,DSJ-V9,徐汇,010203,张三,yesterday,\n",
        encoding="utf-8",
    )
    # A recording from before the assignments were known: re-resolved by the import.
    rec = make_recording(app, start=cst(2026, 3, 2, 13, 0), docking_officer="010203")
    r = run_cli(capsys, "device", "import", str(path))
    assert r.code == 3
    assert "line 5: device serial 'bad serial!'" in r.err
    assert "line 6: start 'yesterday' is not a time" in r.err
    with app.catalog.session() as s:
        spans = [
            (a.start, a.end)
            for a in s.scalars(select(DeviceAssignment).order_by(DeviceAssignment.start))
        ]
        assert spans == [(cst(2026, 3, 2, 7), cst(2026, 3, 2, 12)), (cst(2026, 3, 2, 12), None)]
        from catalog.models import Officer, Recording

        recording = s.get(Recording, rec)
        assert recording is not None
        officer = s.get(Officer, recording.officer_id)
        assert officer is not None and officer.number == "040506"
        assert recording.flags["officer_mismatch"]["file_name"] == "010203"
    events = counts(app)[3]
    r = run_cli(capsys, "device", "import", str(path))
    assert counts(app)[3] == events  # a second import records nothing new
    r = run_cli(capsys, "device", "list", "--json")
    listed = {d["serial"]: d for d in json.loads(r.out)}
    assert [a["officer"] for a in listed["A123456"]["assignments"]] == ["010203", "040506"]
    assert listed["B000001"]["registered"] and listed["B000001"]["assignments"] == []
    with app.catalog.transaction() as s:
        again = import_devices(s, app.signer, path, actor="a")
    assert again.assignments == 0 and again.unchanged == 2


def test_a_row_spanning_lines_is_reported_at_its_first_line(tmp_path: Path) -> None:
    """A quoted field with a line break (an address typed on two lines, as Excel exports
    it) makes one row span two lines: a bad row is named by the line it starts on."""
    from catalog.case_import import read_actions

    data = (
        "案件编号,执法活动编号,执法人员,开始时间,结束时间,地点\n"
        '沪徐市监罚〔2026〕1号,a1,010203,2026-03-01 09:00,2026-03-01 10:00,"徐汇区\n漕溪路"\n'
        "沪徐市监罚〔2026〕1号,a2,010203,昨天,2026-03-01 10:00,p\n"
    ).encode("utf-8-sig")
    rows = list(read_actions(tmp_path / "cases.csv", data))
    assert not isinstance(rows[0], str) and rows[0].where == "line 2"
    assert rows[0].place == "徐汇区\n漕溪路"
    assert not isinstance(rows[1], str) and rows[1].where == "line 4"
    assert rows[1].problems[0].startswith("start '昨天'")


# -- values the catalog's columns cannot hold ---------------------------------------------------


def write_rows(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def test_long_and_nul_values_are_row_errors_and_the_good_rows_land(
    app: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On PostgreSQL such a value used to fail the whole import (DataError, exit 70); on
    SQLite it landed as given. Now each row is judged alone, the same on both."""

    def row(
        number: str,
        action: str,
        *,
        unit: str = "徐汇",
        security: str = "",
        title: str = "案件",
        place: str = "漕溪路",
        start: str = "2026-02-01 09:00",
    ) -> list[str]:
        return [
            number,
            title,
            unit,
            "open",
            "永久",
            security,
            action,
            "010203",
            start,
            "2026-02-01 10:00",
            place,
        ]

    path = write_rows(
        tmp_path / "cases.csv",
        [
            HEADER,
            row("沪徐市监罚〔2026〕1号", "g1"),  # line 2: good
            row(
                "沪徐市监罚〔2026〕2号",
                "b1",
                unit="单" * 201,
                security="密" * 33,
                place="漕溪\x00路",
            ),  # line 3: three reasons
            row("号" * 201, "b2"),  # line 4
            row("沪徐市监罚〔2026〕4号", "g2"),  # line 5: good
            row("沪徐市监罚〔2026〕5号", "b\x004", start="昨天"),  # line 6: two reasons
        ],
    )
    r = run_cli(capsys, "case", "import", str(path), "--json")
    assert r.code == 3, r.out + r.err  # partial: the good rows landed, the bad ones named
    report = json.loads(r.out)
    assert (report["cases_created"], report["actions_created"]) == (2, 2)
    errors = report["errors"]
    assert [e.split(":")[0] for e in errors] == ["line 3", "line 4", "line 6"]
    assert "unit is 201 characters long, more than the 200" in errors[0]
    assert "security class (密级) is 33 characters long, more than the 32" in errors[0]
    assert "place contains a NUL character" in errors[0]
    assert "case number is 201 characters long, more than the 200" in errors[1]
    assert "start '昨天' is not a time" in errors[2]
    assert "action id contains a NUL character" in errors[2]
    with app.catalog.session() as s:
        assert sorted(s.scalars(select(Case.number))) == [
            "沪徐市监罚〔2026〕1号",
            "沪徐市监罚〔2026〕4号",
        ]
        assert sorted(s.scalars(select(EnforcementAction.external_id))) == ["g1", "g2"]


def test_json_values_with_nul_or_a_lone_surrogate_are_row_errors(app: Any, tmp_path: Path) -> None:
    path = tmp_path / "cases.json"
    # json.dumps writes "\u0000" and "\ud800": valid JSON that decodes to text neither
    # database can store.
    path.write_text(
        json.dumps(
            {
                "cases": [
                    {
                        "number": "沪徐市监罚〔2026〕8号",
                        "title": "坏\ud800题名",
                        "retention": "10年",
                    },
                    {
                        "number": "沪徐市监罚〔2026〕9号",
                        "retention": "10年",
                        "actions": [
                            {
                                "id": "a1",
                                "officers": ["010203"],
                                "start": "2026-02-01 09:00",
                                "end": "2026-02-01 10:00",
                                "place": "漕\u0000溪路",
                            }
                        ],
                    },
                    {"number": "沪徐市监罚〔2026〕10号", "retention": "10年"},
                ]
            }
        ),
        encoding="utf-8",
    )
    with app.catalog.transaction() as s:
        report = import_actions(s, app.signer, path, actor="a")
    assert report.errors == [
        "cases[0]: title is not valid Unicode (it holds a lone surrogate)",
        "cases[1].actions[0]: place contains a NUL character",
    ]
    with app.catalog.session() as s:
        assert list(s.scalars(select(Case.number))) == ["沪徐市监罚〔2026〕10号"]


def test_a_header_naming_a_column_twice_is_refused(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_rows(
        tmp_path / "cases.csv",
        [
            ["案件编号", "案件名称", "case_number"],
            ["沪徐市监罚〔2026〕1号", "甲", "沪徐市监罚〔2026〕2号"],
        ],
    )
    r = run_cli(capsys, "case", "import", str(path))
    assert r.code == 66, r.out + r.err
    assert "names the column case_number twice" in r.err
    assert "column 1 '案件编号' and column 3 'case_number'" in r.err
    path = write_rows(tmp_path / "devices.csv", [["serial", "设备编号"], ["A1", "A2"]])
    r = run_cli(capsys, "device", "import", str(path))
    assert r.code == 66 and "names the column serial twice" in r.err
    assert counts(app)[0] == 0


def test_device_import_reports_long_and_nul_values_per_row(
    app: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_rows(
        tmp_path / "devices.csv",
        [
            ["serial", "model", "unit", "officer_number", "officer_name", "officer_unit", "start"],
            ["A000001", "DSJ-V9", "徐汇", "010203", "张三", "", "2026-03-02 07:00:00"],
            ["A000002", "型" * 101, "徐\x00汇", "010203", "名" * 101, "", "2026-03-02 07:00:00"],
            ["A" * 65, "DSJ-V9", "徐汇", "", "", "", ""],
            ["A000003", "DSJ-V9", "徐汇", "0" * 33, "李四", "单" * 201, "2026-03-02 07:00:00"],
            ["A000005", "DSJ-V9", "徐汇", "", "", "", ""],
        ],
    )
    r = run_cli(capsys, "device", "import", str(path), "--json")
    assert r.code == 3, r.out + r.err
    report = json.loads(r.out)
    errors = report["errors"]
    assert [e.split(":")[0] for e in errors] == ["line 3", "line 4", "line 5"]
    assert "device model is 101 characters long, more than the 100" in errors[0]
    assert "device unit contains a NUL character" in errors[0]
    assert "officer name is 101 characters long, more than the 100" in errors[0]
    assert "is not 1-64 letters/digits" in errors[1]
    assert "is not 1-32 letters/digits" in errors[2]
    assert "officer unit is 201 characters long, more than the 200" in errors[2]
    assert (report["devices"], report["assignments"]) == (2, 1)
    r = run_cli(capsys, "device", "list", "--json")
    assert sorted(d["serial"] for d in json.loads(r.out)) == ["A000001", "A000005"]


def test_a_field_over_the_csv_limit_is_a_row_error(
    app: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The csv module stops at a field over 128 KiB; such a field, even inside quotes over
    several lines that look like rows, is that one row's error and the rest land."""
    huge = "长" * 100_000 + "\n沪徐市监罚〔2026〕6号,x\n" + "长" * 100_000
    path = write_rows(
        tmp_path / "cases.csv",
        [
            ["案件编号", "案件名称", "保管期限"],
            ["沪徐市监罚〔2026〕1号", "甲", "永久"],
            ["沪徐市监罚〔2026〕2号", huge, "永久"],
            ["沪徐市监罚〔2026〕3号", "丙", "永久"],
        ],
    )
    r = run_cli(capsys, "case", "import", str(path), "--json")
    assert r.code == 3, r.out + r.err
    report = json.loads(r.out)
    assert report["errors"] == [
        "line 3: title is 200017 characters long, more than the 131072 it may have"
    ]
    with app.catalog.session() as s:
        assert sorted(s.scalars(select(Case.number))) == [
            "沪徐市监罚〔2026〕1号",
            "沪徐市监罚〔2026〕3号",
        ]
    path = write_rows(
        tmp_path / "devices.csv",
        [["serial", "unit"], ["A000001", "x" * 200_000], ["A000002", "徐汇"]],
    )
    r = run_cli(capsys, "device", "import", str(path), "--json")
    assert r.code == 3, r.out + r.err
    assert json.loads(r.out)["errors"] == [
        "line 2: device unit is 200000 characters long, more than the 200 it may have"
    ]


def test_json_values_of_the_wrong_type_are_row_errors(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A list or an object where text belongs is a row error naming the field (it used to
    land as its Python repr, "['x']"), officers that are not a list or text too (they were
    an internal error, exit 70); the good rows land."""
    path = tmp_path / "cases.json"
    path.write_text(
        json.dumps(
            {
                "cases": [
                    {"number": ["沪徐市监罚〔2026〕1号"], "title": {"a": 1}, "retention": "10年"},
                    {
                        "number": "沪徐市监罚〔2026〕2号",
                        "retention": "10年",
                        "actions": [
                            {
                                "id": "a1",
                                "officers": 5,
                                "start": "2026-02-01 09:00",
                                "end": "2026-02-01 10:00",
                            }
                        ],
                    },
                    {
                        "number": "沪徐市监罚〔2026〕3号",
                        "retention": "10年",
                        "actions": [
                            {
                                "id": 7,
                                "officers": ["010203"],
                                "start": "2026-02-01 09:00",
                                "end": "2026-02-01 10:00",
                            }
                        ],
                    },
                    {
                        "number": "沪徐市监罚〔2026〕4号",
                        "retention": "10年",
                        "actions": [
                            {
                                "id": "a4",
                                "officers": ["010203", 10204],
                                "start": "2026-02-01 09:00",
                                "end": "2026-02-01 10:00",
                            }
                        ],
                    },
                ]
            }
        ),
        encoding="utf-8",
    )
    r = run_cli(capsys, "case", "import", str(path))
    assert r.code == 3, (r.code, r.out, r.err)
    said = r.out + r.err
    assert "cases[0]: case number is not text (a list); title is not text (an object)" in said, said
    assert "cases[1].actions[0]: officers is not a list of officer numbers (a number; " in said
    assert (
        "cases[3].actions[0]: officers is not a list of officer numbers (a list holding "
        "something other than text; write each as text, its leading zeros count)" in said
    )
    with app.catalog.session() as s:
        assert list(s.scalars(select(Case.number))) == ["沪徐市监罚〔2026〕3号"]
        assert list(s.scalars(select(EnforcementAction.external_id))) == ["7"]
        assert list(
            s.scalars(
                select(Officer.number).join(ActionOfficer, ActionOfficer.officer_id == Officer.id)
            )
        ) == ["010203"]


def test_json_nested_too_deep_is_an_unusable_file(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cases.json"
    path.write_text("[" * 100_000, encoding="utf-8")
    r = run_cli(capsys, "case", "import", str(path))
    assert r.code == 66 and "cases.json" in r.err and "internal error" not in r.err, r.err


def test_a_time_before_year_1_in_utc_is_a_row_error(
    app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Midnight of year 1 in China Standard Time is before year 1 in UTC: an OverflowError
    (exit 70) that failed the whole import, cases and devices alike. Now a row error
    naming the field; the good rows land."""
    when = "0001-01-01 00:00"
    cases = write_rows(
        tmp_path / "cases.csv",
        [
            ["case_number", "action_id", "officers", "start", "end", "retention"],
            ["C-1", "A1", "010203", "2026-01-01 10:00", when, "永久"],
            ["C-2", "A2", "010203", "2026-01-01 10:00", "2026-01-01 11:00", "永久"],
        ],
    )
    r = run_cli(capsys, "case", "import", str(cases))
    assert r.code == 3, (r.code, r.err)
    assert f"line 2: end '{when}' is not a time" in r.err, r.err
    devices = write_rows(
        tmp_path / "devices.csv",
        [
            ["serial", "model", "unit", "officer_number", "officer_name", "start", "end"],
            ["A111111", "m", "u", "010203", "张三", when, ""],
            ["A222222", "m", "u", "010203", "张三", "2026-03-02 07:00:00", ""],
        ],
    )
    r = run_cli(capsys, "device", "import", str(devices))
    assert r.code == 3, (r.code, r.err)
    assert f"line 2: start '{when}' is not a time" in r.err, r.err
    with app.catalog.session() as s:
        assert list(s.scalars(select(Case.number))) == ["C-2"]
        assert len(s.scalars(select(DeviceAssignment)).all()) == 1
