"""The compliance commands as a Chinese reader and an English one see them, on SQLite and
PostgreSQL: periods typed as people type dates (2026/11/03, 2026年11月3日, full-width
digits), times read back in Shanghai time with their offset, Chinese by default and
English with --lang en, and no progress noise in scripts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from compliance.periods import PeriodError, canonical_period, period
from config.i18n import set_language
from tests.cli_helpers import run_cli
from tests.compliance_helpers import World, at
from tests.i18n_helpers import assert_chinese

UNIT = "徐汇区市场监督管理局"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


# -- periods as people type them ------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["2026-12-01", "2026/12/01", "2026/12/1", "2026年12月1日", "２０２６年１２月１日"]
)
def test_a_day_typed_any_way_is_the_same_shanghai_day(text: str) -> None:
    # 1 December in Shanghai starts at 16:00 UTC the day before.
    assert period(text, SHANGHAI) == (utc(2026, 11, 30, 16), utc(2026, 12, 1, 16))
    assert canonical_period(text) == "2026-12-01"


@pytest.mark.parametrize("text", ["2026-11", "2026/11", "2026年11月", "２０２６年１１月"])
def test_a_month_typed_any_way(text: str) -> None:
    assert period(text, SHANGHAI) == (utc(2026, 10, 31, 16), utc(2026, 11, 30, 16))
    assert canonical_period(text) == "2026-11"


def test_a_year_and_december_roll_over() -> None:
    assert period("2026", SHANGHAI) == (utc(2025, 12, 31, 16), utc(2026, 12, 31, 16))
    assert period("2026-12", SHANGHAI)[1] == utc(2026, 12, 31, 16)
    assert canonical_period("２０２６") == "2026"
    # The zone is the station's: the same day in UTC starts at midnight UTC.
    assert period("2026-12-01", ZoneInfo("UTC"))[0] == utc(2026, 12, 1)


@pytest.mark.parametrize("text", ["2026-13", "2026/02/30", "yesterday", "2026-12-01 07:00"])
def test_a_period_that_is_none_repeats_what_was_typed(text: str) -> None:
    with pytest.raises(PeriodError) as caught:
        period(text, SHANGHAI)
    assert repr(text) in str(caught.value)
    assert "not a year, month or day" in str(caught.value)


# -- the commands ----------------------------------------------------------------------------


def _history(app: Any) -> None:
    with app.catalog.transaction() as s:
        w = World(s, unit=UNIT)
        w.officer("010203", "张三")
        w.assign("D1", "010203", at(-86400))
        # at(0) is 2026-11-03 09:00 in Shanghai; a 100 s gap at 09:16:40.
        w.recording("D1", at(0), at(1000))
        w.recording("D1", at(1100), at(3600))
        w.action("A-1", ["010203"], at(0), at(3600))
        w.docking("D1", at(-3600), clock_offset_s=2)


def chinese(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a reader with no language set sees: Chinese."""
    monkeypatch.delenv("LIUHEN_LANG", raising=False)
    set_language(None)


def test_summary_of_days_typed_in_chinese_reads_back_in_shanghai_time(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _history(app)
    r = run_cli(
        capsys,
        "compliance",
        "summary",
        "--unit",
        UNIT,
        "--from",
        "2026年11月3日",
        "--to",
        "２０２６/11/3",
        "--json",
    )
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert (data["from"], data["to"]) == ("2026-11-03T00:00:00+08:00", "2026-11-04T00:00:00+08:00")
    assert data["units"][0]["actions"] == 1
    # The day before in Shanghai holds nothing, though it overlaps 3 November in UTC.
    r = run_cli(capsys, "compliance", "summary", "--unit", UNIT, "--from", "2026/11/02", "--json")
    assert json.loads(r.out)["units"][0]["actions"] == 0
    r = run_cli(capsys, "compliance", "summary", "--from", "2026-11-04", "--to", "2026-11-03")
    assert r.code == 2 and "--to 2026-11-03 is before --from 2026-11-04" in r.err


def test_coverage_in_chinese_by_default_and_english_on_request(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _history(app)
    chinese(monkeypatch)
    r = run_cli(capsys, "coverage", "A-1")
    assert r.code == 0, r.err
    assert "执法活动" in r.out and "部分记录" in r.out and "最长间断 100 秒" in r.out
    assert "间断 2026-11-03 09:16:40 +08:00 → 2026-11-03 09:18:20 +08:00（100 秒）" in r.out
    assert_chinese(r.out)
    r = run_cli(capsys, "--lang", "en", "coverage", "A-1")
    assert "partly recorded" in r.out and "longest gap 100 s" in r.out
    assert "gap 2026-11-03 09:16:40 +08:00 → 2026-11-03 09:18:20 +08:00 (100 s)" in r.out
    r = run_cli(capsys, "coverage", "NO-SUCH")
    assert r.code == 66 and "没有执法活动 'NO-SUCH'" in r.err


def test_summary_and_survey_in_chinese(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _history(app)
    chinese(monkeypatch)
    r = run_cli(capsys, "compliance", "summary", "--unit", UNIT, "--from", "2026年11月")
    assert r.code == 0, r.err
    assert "全过程记录 2026-11-01 至 2026-11-30" in r.out
    for text in ("部分记录", "警号", "010203", "超过 7 天未接入的设备"):
        assert text in r.out, text
    assert_chinese(r.out)
    r = run_cli(capsys, "compliance", "survey", "--unit", UNIT)
    assert r.code == 0, r.err
    assert "设备编号" in r.out and "D1" in r.out and "010203 张三" in r.out
    # The last docking (2026-11-03 08:00 in Shanghai) in station time.
    assert "11-03 08:00" in r.out
    assert_chinese(r.out)
    r = run_cli(capsys, "compliance", "survey", "--unit", UNIT, "--json")
    assert json.loads(r.out)[0]["last_docked"] == "2026-11-03T08:00:00+08:00"
    r = run_cli(
        capsys, "--lang", "en", "compliance", "summary", "--unit", UNIT, "--from", "2026-11"
    )
    assert "Full-process record 2026-11-01 to 2026-11-30, rule: each officer" in r.out


def test_survey_csv_shows_the_last_docking_in_station_time(
    app: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _history(app)
    target = tmp_path / "摸底.csv"
    r = run_cli(capsys, "compliance", "survey", "--unit", UNIT, "--csv", str(target))
    assert r.code == 0, r.err
    text = target.read_text(encoding="utf-8-sig")
    assert "2026-11-03 08:00:00 +08:00" in text


def test_review_periods_typed_differently_are_one_sample(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _history(app)
    base = ["review", "sample", "--unit", UNIT, "--count", "1", "--seed", "s1", "--json"]
    first = run_cli(capsys, *base, "--period", "2026年11月")
    assert first.code == 0, first.err
    again = run_cli(capsys, *base, "--period", "2026/11")
    assert again.code == 0, again.err
    a, b = json.loads(first.out), json.loads(again.out)
    assert a["period"] == b["period"] == "2026-11"
    assert a["sample"] == b["sample"] and a["new"] and not b["new"]
    chinese(monkeypatch)
    r = run_cli(capsys, "review", "show", str(a["sample"]))
    assert r.code == 0, r.err
    assert f"评查样本 {a['sample']}：{UNIT} 2026-11" in r.out and "案号" in r.out
    assert_chinese(r.out)
    r = run_cli(capsys, *base, "--period", "2026年13月")
    # base has --json: the error is a JSON object on stdout
    assert r.code == 2 and "不是年、月或日" in json.loads(r.out)["error"]["message"]


def test_report_is_quiet_in_scripts_and_speaks_chinese(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _history(app)
    chinese(monkeypatch)
    r = run_cli(
        capsys,
        "report",
        "self-inspection",
        "--unit",
        UNIT,
        "--year",
        "2026",
        "--out",
        str(tmp_path),
    )
    assert r.code == 0, r.err
    # Not a terminal: no progress bar, nothing on stderr.
    assert r.err == ""
    assert "已写入" in r.out and ".pdf" in r.out
    html = next(tmp_path.glob("*.html")).read_text(encoding="utf-8")
    # The report's times in Shanghai time, with the offset.
    assert "（北京时间）" in html and "+08:00" in html
    r = run_cli(capsys, "verify", str(next(tmp_path.glob("*.sig.json"))))
    assert "+08:00" in r.out
