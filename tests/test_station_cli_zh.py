"""The station's commands speak Chinese by default and English on request (issue 14):
`ingest`, `station status`, `worker --drain`, `show`'s errors and `demo`, run through the
real entry point as the officer at the station runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.i18n import set_language
from tests.cli_helpers import run_cli
from tests.i18n_helpers import assert_chinese
from tests.offload_helpers import make_app
from tests.test_station_status_layout import FIRST, write_recorder
from tests.tmux_helpers import screen

LIUHEN = str(Path(sys.executable).with_name("liuhen"))


@pytest.fixture
def chinese(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A station whose commands run with no language chosen: Chinese."""
    data = tmp_path / "data"
    monkeypatch.setenv("LIUHEN_HOME", str(data))
    monkeypatch.setenv("LIUHEN_INGEST_STABLE_S", "0")
    monkeypatch.delenv("LIUHEN_LANG")
    set_language(None)
    make_app(data).close()
    return data


def test_ingest_and_status_speak_chinese(
    chinese: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_recorder(tmp_path / "dock" / "slot1", FIRST, ["徐汇区现场取证_0001.MP4"])

    docked = run_cli(capsys, "ingest", str(root), "--quiet")
    assert docked.code == 0, docked.out + docked.err
    assert_chinese(docked.out)
    assert "可安全拔出" in docked.out and "个已存储并校验" in docked.out

    status = run_cli(capsys, "station", "status")
    assert_chinese(status.out)
    assert "留痕 采集站状态" in status.out and "可安全拔出" in status.out
    assert "最近 24 小时内的 1 次接入" in status.out and "时间为 Asia/Shanghai" in status.out

    english = run_cli(capsys, "--lang", "en", "station", "status")
    assert "SAFE TO CLEAR" in english.out and "可安全拔出" not in english.out
    assert "1 docking of the last 24 hours, newest first" in english.out


def test_an_empty_folder_says_do_not_unplug_in_chinese(
    chinese: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "dock" / "slot9"
    empty.mkdir(parents=True)

    docked = run_cli(capsys, "ingest", str(empty), "--quiet")
    assert docked.code == 66
    assert_chinese(docked.out)
    assert "请勿拔出" in docked.out and "记录仪上未找到文件" in docked.out
    assert "可安全拔出" not in docked.out
    # Scripts read the journal's own words, whatever the language.
    as_json = json.loads(run_cli(capsys, "ingest", str(empty), "--json").out)
    assert as_json["state"] == "NO_FILES" and as_json["message"].startswith("no files found")

    status = run_cli(capsys, "station", "status")
    assert_chinese(status.out)
    assert status.out.count("请勿拔出") == 2 and "未找到文件" in status.out


def test_worker_and_show_errors_speak_chinese(
    chinese: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_recorder(tmp_path / "dock" / "slot1", FIRST, ["现场_0001.MP4"])
    assert run_cli(capsys, "ingest", str(root), "--quiet").code == 0

    drained = run_cli(capsys, "worker", "--drain")
    assert drained.code == 0, drained.err
    assert_chinese(drained.out)
    assert "已探测" in drained.out and "失败 0" in drained.out
    assert "媒体处理" not in drained.err  # no progress bar where no one watches it

    missing = run_cli(capsys, "show", "没有这个文件.MP4")
    assert missing.code == 66
    assert "没有与 '没有这个文件.MP4' 匹配的记录" in missing.err
    assert "请给出记录编号" in missing.err


def test_demo_in_chinese_and_in_english(tmp_path: Path) -> None:
    """The demo as a newcomer runs it: with no language set, and with LIUHEN_LANG=en."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIUHEN_")}
    env["LIUHEN_HOME"] = str(tmp_path / "data")
    subprocess.run([LIUHEN, "init"], env=env, check=True, capture_output=True)

    zh = subprocess.run([LIUHEN, "demo"], env=env, capture_output=True, text=True, timeout=600)
    assert zh.returncode == 0, zh.stdout + zh.stderr
    assert_chinese(zh.stdout)
    assert "模拟执法记录仪" in zh.stdout and "可安全拔出" in zh.stdout

    en = subprocess.run(
        [LIUHEN, "demo"],
        env={**env, "LIUHEN_LANG": "en"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert en.returncode == 0, en.stdout + en.stderr
    assert "synthetic recorder with" in en.stdout and "SAFE TO CLEAR" in en.stdout
    assert "可安全拔出" not in en.stdout


def test_worker_drain_at_a_terminal_counts_its_items(
    chinese: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At a terminal the drain shows its progress (and ends with the same summary)."""
    root = write_recorder(tmp_path / "dock" / "slot1", FIRST, ["现场_0001.MP4", "现场_0002.MP4"])
    assert run_cli(capsys, "ingest", str(root), "--quiet").code == 0

    text = screen([LIUHEN, "worker", "--drain"], width=80, env={"LIUHEN_HOME": str(chinese)})
    assert "已探测 3，已制作衍生文件 0，失败 0" in text, text
    assert "Traceback" not in text
