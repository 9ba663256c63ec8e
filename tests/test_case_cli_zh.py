"""The case, device and retention commands as a Shanghai station's people use them: times
typed and read in Shanghai time (across midnight UTC too), on SQLite and PostgreSQL;
Chinese by default and English with --lang en; every reason an import row is refused;
and `retention sweep --apply` that asks before deleting."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalog.models import DeviceAssignment, EnforcementAction, Recording
from tests.case_helpers import cst, make_recording
from tests.cli_helpers import run_cli
from tests.i18n_helpers import assert_chinese

NUMBER = "沪徐市监处〔2026〕000123号"
SERIAL = "DSJ-A8-2026-000123456"


@pytest.fixture
def zh(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a Chinese reader sees: no LIUHEN_LANG override (Chinese is the default)."""
    from config.i18n import set_language

    monkeypatch.delenv("LIUHEN_LANG", raising=False)
    set_language(None)


class _Terminal(io.StringIO):
    """A person's keyboard: stdin at a terminal, with what they will type."""

    def isatty(self) -> bool:
        return True


def test_assign_times_are_typed_and_echoed_in_shanghai_time(
    app: Any, capsys: pytest.CaptureFixture[str], zh: None
) -> None:
    assert run_cli(capsys, "device", "add", SERIAL).code == 0
    r = run_cli(capsys, "device", "assign", SERIAL, "010203", "--start", "2026-12-01 07:00")
    assert r.code == 0, r.err
    assert "2026-12-01 07:00 +08:00" in r.out and "自" in r.out
    assert_chinese(r.out)
    # Every way a person writes a day, full-width digits included, is the same day.
    for typed in ("2026/12/02 07:00", "2026年12月3日 7点00分", "２０２６－１２－０４　０７：００"):
        r = run_cli(capsys, "device", "assign", SERIAL, "040506", "--start", typed)
        assert r.code == 0 and "07:00 +08:00" in r.out, (typed, r.err)
    with app.catalog.session() as s:
        starts = sorted(s.scalars(select(DeviceAssignment.start)))
    # 07:00 in Shanghai is 23:00 UTC the day before.
    assert starts[0] == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert [t.astimezone(UTC).day for t in starts] == [30, 1, 2, 3]
    devices = json.loads(run_cli(capsys, "device", "list", "--json").out)
    assert devices[0]["assignments"][0]["start"] == "2026-12-01T07:00:00+08:00"
    assert devices[0]["assignments"][0]["end"] == "2026-12-02T07:00:00+08:00"


def test_a_time_that_is_not_one_is_refused_as_typed(
    app: Any, capsys: pytest.CaptureFixture[str], zh: None
) -> None:
    run_cli(capsys, "device", "add", SERIAL)
    r = run_cli(capsys, "device", "assign", SERIAL, "010203", "--start", "12月1日早上")
    assert r.code == 2
    assert "'12月1日早上'" in r.err and "不是时间" in r.err and "2026年12月1日" in r.err
    r = run_cli(
        capsys, "--lang", "en", "device", "assign", SERIAL, "010203", "--start", "2026-13-01"
    )
    assert r.code == 2 and "'2026-13-01' is not a time" in r.err
    # An end before the start is refused with both times as typed.
    r = run_cli(
        capsys,
        "device",
        "assign",
        SERIAL,
        "010203",
        "--start",
        "2026年12月2日 8时00分",
        "--end",
        "2026/12/02 07:00",
    )
    assert r.code == 2 and "'2026/12/02 07:00' 不晚于 --start '2026年12月2日 8时00分'" in r.err
    r = run_cli(capsys, "case", "list", "--from", "昨天")
    assert r.code == 2 and "--from" in r.err and "'昨天' 不是时间" in r.err


def test_an_action_across_midnight_utc_is_on_its_shanghai_day(
    app: Any, capsys: pytest.CaptureFixture[str], zh: None
) -> None:
    """07:30 on 2 December in Shanghai is 23:30 on 1 December in UTC: the day people see,
    filter by and get in JSON is 2 December."""
    assert run_cli(capsys, "case", "create", NUMBER, "--title", "无照经营").code == 0
    r = run_cli(
        capsys,
        "case",
        "action",
        NUMBER,
        "A-1",
        "--officer",
        "010203",
        "--start",
        "2026-12-02 07:30",
        "--end",
        "2026年12月2日 8时30分",
    )
    assert r.code == 0, r.err
    assert "2026-12-02 07:30 +08:00" in r.out and "2026-12-02 08:30 +08:00" in r.out
    with app.catalog.session() as s:
        action = s.scalars(select(EnforcementAction)).one()
        assert action.start == datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    shown = run_cli(capsys, "case", "show", NUMBER)
    assert "2026-12-02 07:30–08:30" in shown.out and "(+08:00)" in shown.out
    assert "2026-12-01" not in shown.out
    assert_chinese(shown.out)
    report = json.loads(run_cli(capsys, "case", "show", NUMBER, "--json").out)
    assert report["actions"][0]["start"] == "2026-12-02T07:30:00+08:00"

    def listed(*bounds: str) -> list[str]:
        r = run_cli(capsys, "case", "list", *bounds, "--json")
        assert r.code == 0, r.err
        return [c["number"] for c in json.loads(r.out)]

    assert listed("--from", "2026-12-02", "--to", "2026-12-03") == [NUMBER]
    assert listed("--from", "2026/12/01", "--to", "2026年12月2日") == []  # --to excluded
    assert listed("--from", "2026-12-02 07:30", "--to", "2026-12-02 07:31") == [NUMBER]


def test_an_empty_range_says_to_is_exclusive(
    app: Any, capsys: pytest.CaptureFixture[str], zh: None
) -> None:
    r = run_cli(capsys, "case", "list", "--from", "2026-12-02", "--to", "2026-12-02")
    assert r.code == 2
    assert "'2026-12-02'" in r.err and "--to 不含当时" in r.err and "次日" in r.err
    r = run_cli(
        capsys, "--lang", "en", "case", "list", "--from", "2026-12-02", "--to", "2026-12-02"
    )
    assert r.code == 2 and "--to is exclusive" in r.err
    help_text = run_cli(capsys, "--lang", "en", "case", "list", "--help").out
    assert "exclusive" in " ".join(help_text.split())


CSV = (
    "案件编号,案件名称,保管期限,执法活动编号,执法人员,开始时间,结束时间,地点\n"
    f"{NUMBER},无照经营,30年,A-1,010203;040506,2026-12-02 08:55,2026/12/02 09:40,漕溪北路\n"
    f"{NUMBER},无照经营,30年,A-2,010203,２０２６年１２月３日 ７时３０分,2026-12-03 08:00,徐家汇\n"
    "沪徐市监处〔2026〕000124号,无照经营,5年,A-1,,12月1日早上,2026-12-01 09:00,\n"
)


def test_csv_times_are_shown_as_written_and_every_reason_is_reported(
    app: Any, capsys: pytest.CaptureFixture[str], zh: None, tmp_path: Path
) -> None:
    path = tmp_path / "export.csv"
    path.write_text(CSV, encoding="utf-8")
    r = run_cli(capsys, "case", "import", str(path))
    assert r.code == 3
    assert_chinese(r.out + r.err)
    [refused] = [line for line in r.err.splitlines() if "第 4 行" in line]
    # The bad row names all three of its problems at once, the time as it was typed.
    assert "'12月1日早上'" in refused and "5年" in refused and "没有执法人员" in refused
    shown = run_cli(capsys, "case", "show", NUMBER)
    assert "2026-12-02 08:55–09:40" in shown.out and "2026-12-03 07:30–08:00" in shown.out
    report = json.loads(run_cli(capsys, "case", "show", NUMBER, "--json").out)
    assert [a["start"] for a in report["actions"]] == [
        "2026-12-02T08:55:00+08:00",
        "2026-12-03T07:30:00+08:00",
    ]
    english = run_cli(capsys, "--lang", "en", "case", "import", str(path), "--json")
    [error] = json.loads(english.out)["errors"]
    assert error.startswith("line 4: ")
    assert "'12月1日早上' is not a time" in error and "action has no officers" in error
    assert "retention '5年' is not one of" in error


def test_device_import_reads_times_in_station_time(
    app: Any, capsys: pytest.CaptureFixture[str], zh: None, tmp_path: Path
) -> None:
    path = tmp_path / "devices.csv"
    path.write_text(
        "设备编号,警号,姓名,开始时间\n"
        f"{SERIAL},010203,张三,2026年12月1日 7时00分\n"
        f"{SERIAL},040506,李四,2026-12-01 25:00\n",
        encoding="utf-8",
    )
    r = run_cli(capsys, "device", "import", str(path))
    assert r.code == 3 and "'2026-12-01 25:00'" in r.err and "第 3 行" in r.err
    assert_chinese(r.out + r.err)
    devices = json.loads(run_cli(capsys, "device", "list", "--json").out)
    assert devices[0]["assignments"][0]["start"] == "2026-12-01T07:00:00+08:00"


def _due_recording(app: Any) -> tuple[int, str]:
    rec_id = make_recording(
        app, serial=SERIAL, docking_officer="0102030405", start=cst(2025, 1, 10, 9)
    )
    with app.catalog.session() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None
        return rec_id, rec.original_name


def _state(app: Any, rec_id: int) -> str:
    with app.catalog.session() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None
        return str(rec.state)


def test_sweep_apply_without_a_terminal_needs_yes(
    app: Any, capsys: pytest.CaptureFixture[str], zh: None
) -> None:
    rec_id, _name = _due_recording(app)
    r = run_cli(capsys, "retention", "sweep", "--apply")
    assert r.code == 2 and "--yes" in r.err and "没有可供确认的终端" in r.err
    assert _state(app, rec_id) != "EXPIRED"
    r = run_cli(capsys, "--lang", "en", "retention", "sweep", "--apply", "--json")
    # With --json the error is a JSON object on stdout (the same fields as the message).
    error = json.loads(r.out)["error"]
    assert r.code == 2 and error["exit_code"] == 2
    assert "--apply --yes" in error["message"] + " " + (error["hint"] or "")
    assert _state(app, rec_id) != "EXPIRED"


def test_sweep_apply_on_a_terminal_lists_full_names_and_asks(
    app: Any, capsys: pytest.CaptureFixture[str], zh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec_id, name = _due_recording(app)
    monkeypatch.setattr(sys, "stdin", _Terminal("n\n"))
    r = run_cli(capsys, "retention", "sweep", "--apply")
    assert r.code == 0, r.err
    assert name in r.err and "删除这 1 条记录？" in r.err
    assert "未删除任何记录" in r.out and _state(app, rec_id) != "EXPIRED"
    assert_chinese(r.out + r.err)
    monkeypatch.setattr(sys, "stdin", _Terminal("y\n"))
    r = run_cli(capsys, "retention", "sweep", "--apply")
    assert r.code == 0, r.err
    assert "已删除 1 条" in r.out and _state(app, rec_id) == "EXPIRED"
    assert_chinese(r.out + r.err)


def test_sweep_yes_deletes_without_asking_and_english_on_request(
    app: Any, capsys: pytest.CaptureFixture[str], zh: None
) -> None:
    rec_id, name = _due_recording(app)
    dry = run_cli(capsys, "retention", "sweep")
    assert dry.code == 0 and name in dry.out and "试运行" in dry.out
    assert_chinese(dry.out)
    r = run_cli(capsys, "--lang", "en", "retention", "sweep", "--apply", "--yes")
    assert r.code == 0, r.err
    assert "deleted 1, refused by the store 0" in r.out and _state(app, rec_id) == "EXPIRED"


def test_case_life_messages_in_chinese_and_english(
    app: Any, capsys: pytest.CaptureFixture[str], zh: None
) -> None:
    created = run_cli(capsys, "case", "create", NUMBER, "--retention", "30年")
    assert created.code == 0 and f"案件 {NUMBER} 已创建" in created.out
    closed = run_cli(capsys, "case", "close", NUMBER, "--reason", "已结案")
    assert closed.code == 0 and "+08:00" in closed.out and "保管至" in closed.out
    assert_chinese(closed.out)
    missing = run_cli(capsys, "case", "show", "沪徐市监处〔2026〕000128号")
    assert missing.code != 0 and "您是否指" in missing.err and NUMBER in missing.err
    listing = run_cli(capsys, "case", "list")
    assert "已结案" in listing.out and "案号" in listing.out
    assert_chinese(listing.out)
    english = run_cli(capsys, "--lang", "en", "case", "list")
    assert "case number" in english.out and "closed" in english.out


def test_imports_show_progress_at_a_terminal_only(
    app: Any,
    capsys: pytest.CaptureFixture[str],
    zh: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.console import Console

    import liuhen.progress

    path = tmp_path / "export.csv"
    path.write_text(CSV, encoding="utf-8")
    screen = io.StringIO()
    monkeypatch.setattr(liuhen.progress, "err", Console(file=screen, force_terminal=True, width=80))
    r = run_cli(capsys, "case", "import", str(path), "--json")
    assert r.code == 3 and json.loads(r.out)["rows"] == 3
    assert screen.getvalue() == ""  # --json: for programs, no bar
    r = run_cli(capsys, "case", "import", str(path))
    assert "正在导入案件" in screen.getvalue()


def test_retention_explain_and_holds_in_chinese(
    app: Any, capsys: pytest.CaptureFixture[str], zh: None
) -> None:
    rec_id, name = _due_recording(app)
    explained = run_cli(capsys, "retention", "explain", str(rec_id))
    assert explained.code == 0 and name in explained.out
    assert "未关联最短保管期" in explained.out and "+08:00" in explained.out
    assert_chinese(explained.out)
    held = run_cli(capsys, "retention", "hold", name, "--reason", "行政诉讼 2026-001")
    assert held.code == 0 and "已施加法律保全" in held.out
    assert_chinese(held.out)
    again = run_cli(capsys, "retention", "hold", str(rec_id), "--reason", "行政复议")
    refused = run_cli(capsys, "retention", "release", str(rec_id), "--reason", "结案")
    assert again.code == 0 and refused.code == 2 and "--hold ID" in refused.err
    assert "行政诉讼 2026-001" in refused.err and "+08:00" in refused.err
    # (the "what to do" label is the command line's own, translated in its area)
    assert_chinese(refused.err.replace("what to do:", ""))
    data = json.loads(run_cli(capsys, "retention", "explain", str(rec_id), "--json").out)
    assert data["rule"] == "legal-hold" and data["holds"][0]["reason"] == "行政诉讼 2026-001"
