"""The command line speaks Chinese by default and English on request (issue 14): the
demo through the real entry point, and the core commands (init, config show, store
check, custody verify) as an officer or an auditor reads them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from catalog import Catalog
from config.i18n import set_language
from tests.cli_helpers import Result, run_cli
from tests.i18n_helpers import assert_chinese

LIUHEN = str(Path(sys.executable).with_name("liuhen"))
CJK = re.compile(r"[\u4e00-\u9fff]")


def _liuhen(home: Path, *args: str, lang: str | None) -> subprocess.CompletedProcess[str]:
    """The installed `liuhen` in a process of its own; ``lang`` None: LIUHEN_LANG unset."""
    env = {k: v for k, v in os.environ.items() if k != "LIUHEN_LANG"}
    env["LIUHEN_HOME"] = str(home)
    if lang is not None:
        env["LIUHEN_LANG"] = lang
    done = subprocess.run([LIUHEN, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"liuhen {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def _demo(home: Path, lang: str | None) -> dict[str, str]:
    """What the demo's core steps print: init, the docking demo, custody verify."""
    return {
        step: _liuhen(home, *args, lang=lang).stdout
        for step, args in [
            ("init", ("init",)),
            ("demo", ("demo",)),
            ("verify", ("custody", "verify")),
        ]
    }


def test_the_demo_speaks_chinese_by_default_and_english_with_liuhen_lang_en(
    tmp_path: Path,
) -> None:
    zh = _demo(tmp_path / "zh", lang=None)
    en = _demo(tmp_path / "en", lang="en")

    assert "已创建" in zh["init"] and "设置文件" in zh["init"] and "签名密钥" in zh["init"]
    assert "保管链日志校验通过" in zh["verify"]
    for step in ("init", "verify"):  # the parts of the demo this area speaks
        assert_chinese(zh[step])
    assert "created settings file" in en["init"] and "created signing key" in en["init"]
    assert "custody log verifies" in en["verify"]
    for step in ("init", "verify"):
        assert not CJK.search(en[step]), en[step]  # English means no Chinese left in
    # The docking itself happened in both languages: the same files, stored and verified
    # (read as a program reads it: JSON is the same in every language).
    for home in (tmp_path / "zh", tmp_path / "en"):
        (row,) = json.loads(_liuhen(home, "station", "status", "--json", lang=None).stdout)
        assert row["safe_to_clear"] is True and row["files_total"] == 8, row
    assert en["demo"].count("\n") == zh["demo"].count("\n")


@pytest.fixture
def chinese(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader who set nothing: Chinese, the default."""
    monkeypatch.delenv("LIUHEN_LANG", raising=False)
    set_language(None)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "liuhen"))
    return tmp_path / "liuhen"


def _ok(result: Result) -> str:
    assert result.code == 0, result.out + result.err
    return result.out


def test_init_config_show_and_custody_verify_in_chinese_and_english(
    home: Path, chinese: None, capsys: pytest.CaptureFixture[str]
) -> None:
    init = _ok(run_cli(capsys, "init"))
    assert f"已创建 设置文件 {home / 'liuhen.toml'}" in init
    assert "已创建 签名密钥" in init and "已创建 目录库" in init and "已创建 对象存储" in init
    assert_chinese(init)
    again = _ok(run_cli(capsys, "init"))
    assert f"已保留 设置文件 {home / 'liuhen.toml'}" in again
    assert_chinese(again)
    shown = _ok(run_cli(capsys, "config", "show"))
    assert f"# 数据目录：{home}" in shown and "[station]" in shown  # keys stay as in the file
    assert_chinese(shown)
    verified = _ok(run_cli(capsys, "custody", "verify"))
    assert "✓ 保管链日志校验通过：1 条采集站保管链中的 1 个事件" in verified
    assert_chinese(verified)
    checked = _ok(run_cli(capsys, "store", "check"))
    assert "✓ 可访问：文件夹" in checked and "✓ 往返测试：" in checked
    assert_chinese(checked)

    english = _ok(run_cli(capsys, "--lang", "en", "init"))
    assert f"kept    settings file {home / 'liuhen.toml'}" in english
    assert not CJK.search(english), english
    shown_en = _ok(run_cli(capsys, "--lang", "en", "config", "show"))
    assert f"# data directory: {home}" in shown_en
    verified_en = _ok(run_cli(capsys, "--lang", "en", "custody", "verify"))
    assert "✓ custody log verifies: 1 events in 1 station chain(s)" in verified_en


def test_a_tampered_custody_log_is_reported_in_chinese(
    home: Path, chinese: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _ok(run_cli(capsys, "init"))
    catalog = Catalog(f"sqlite:///{home / 'catalog.sqlite3'}")
    with catalog.transaction() as s:
        s.execute(text("UPDATE custody_events SET actor = 'someone else' WHERE seq = 1"))
    catalog.dispose()
    result = run_cli(capsys, "custody", "verify")
    assert result.code == 1
    assert "station-01 事件 #1" in result.out and "内容与其哈希不符" in result.out, result.out
    assert "签名用 ed25519:" in result.out  # the edited event's signature fails too
    assert "✗ 发现 2 个问题：" in result.out
    assert_chinese(result.out)


def test_help_and_usage_mistakes_in_chinese_and_english(
    home: Path, chinese: None, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = _ok(run_cli(capsys, "init", "--help"))
    assert "用法：" in shown and "创建数据目录、设置文件、签名密钥、目录库和存储。" in shown
    assert "显示本帮助并退出。" in shown
    retire = _ok(run_cli(capsys, "custody", "retire-key", "--help"))
    assert "操作人（记入保管链日志）：默认为您的登录名" in retire
    assert_chinese(retire)
    wrong = run_cli(capsys, "custody", "retire-key")
    assert wrong.code == 2 and "错误：缺少参数 'KEY_ID'" in wrong.err, wrong.err
    english = run_cli(capsys, "--lang", "en", "custody", "retire-key")
    assert english.code == 2 and "Error: Missing argument 'KEY_ID'" in english.err
    # --lang before anything else is read: click's own --help text follows it too.
    assert "Show this message and exit." in _ok(run_cli(capsys, "--lang", "en", "--help"))


def test_the_settings_file_init_writes_is_commented_in_the_readers_language(
    tmp_path: Path, chinese: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import tomllib

    _ok(run_cli(capsys, "--data-dir", str(tmp_path / "zh"), "init"))
    _ok(run_cli(capsys, "--lang", "en", "--data-dir", str(tmp_path / "en"), "init"))
    zh = (tmp_path / "zh" / "liuhen.toml").read_text(encoding="utf-8")
    en = (tmp_path / "en" / "liuhen.toml").read_text(encoding="utf-8")
    assert zh.startswith("# 留痕（liuhen）本机设置。") and "# 数据目录：" in zh
    assert en.startswith("# 留痕 (liuhen) settings for this installation.")
    assert_chinese("\n".join(line for line in zh.splitlines() if line.startswith("# ")))
    # Only the comments differ: the same keys and values, whichever language wrote it.
    assert tomllib.loads(zh) == tomllib.loads(en)


def test_an_s3_store_check_reads_in_chinese(
    home: Path,
    chinese: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    s3_endpoint: Any,
    s3_bucket: str,
) -> None:
    monkeypatch.setenv("LIUHEN_STORE_URL", f"s3://{s3_bucket}/ev")
    monkeypatch.setenv("LIUHEN_STORE_ENDPOINT_URL", s3_endpoint.url)
    home.mkdir()
    result = run_cli(capsys, "store", "check")
    # moto stores bytes whatever their signed SHA-256 says: that one check fails there.
    assert result.code == (1 if s3_endpoint.is_moto else 0), result.out + result.err
    assert f"存储 s3://{s3_bucket}/ev" in result.out
    assert f"可访问：{s3_endpoint.url} 上的存储桶 {s3_bucket}" in result.out
    assert "对象锁定：存储桶未启用" in result.out and "版本控制：" in result.out
    assert "校验 x-amz-content-sha256：" in result.out and "往返测试：" in result.out
    assert_chinese(result.out)


def test_settings_mistakes_are_explained_in_chinese(
    home: Path, chinese: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _ok(run_cli(capsys, "init"))
    settings = home / "liuhen.toml"
    settings.write_text('[station]\ntime_zone = "Mars/Olympus"\n', encoding="utf-8")
    zone = run_cli(capsys, "custody", "verify")
    assert zone.code == 78
    assert zone.err.splitlines() == [
        f"liuhen：错误：{settings}：'station.time_zone' 必须是 IANA 时区名称，"
        "实际为 'Mars/Olympus'",
        "  处理办法：例如 Asia/Shanghai 或 UTC",
    ]
    settings.write_text("[store]\nmultipart_chunk_mb = 1\n", encoding="utf-8")
    small = run_cli(capsys, "custody", "verify")
    assert small.code == 78
    assert f"{settings}：'store.multipart_chunk_mb' 必须在 5 与 5120 之间，实际为 1" in small.err
    settings.unlink()
    monkeypatch.setenv("LIUHEN_INGEST_STABLE_S", "abc")
    env = run_cli(capsys, "custody", "verify")
    assert env.code == 78 and "环境变量 LIUHEN_INGEST_STABLE_S 必须是数字，实际为 'abc'" in env.err
    for result in (zone, small, env):
        assert_chinese(result.err)
