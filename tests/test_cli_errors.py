"""Mistakes are cheap (issue 14): with --json an error is one JSON object on stdout with
the message people read and the exit code; a data directory that is not there is an error
naming it, and nothing is created; logs stay quiet unless -v asks for them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config.i18n import set_language
from tests.cli_helpers import run_cli
from tests.i18n_helpers import assert_chinese

LIUHEN = str(Path(sys.executable).with_name("liuhen"))
DIGEST = re.compile(r"\b[0-9a-f]{64}\b")


def _error(out: str) -> dict[str, object]:
    document = json.loads(out)  # the whole of stdout is the one object
    assert set(document) == {"error"}, document
    error = document["error"]
    assert isinstance(error, dict) and set(error) == {"message", "hint", "exit_code", "kind"}
    return error


def test_a_json_error_says_what_the_message_says_with_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-dir"
    human = run_cli(capsys, "--data-dir", str(missing), "custody", "verify")
    program = run_cli(capsys, "--data-dir", str(missing), "custody", "verify", "--json")

    assert human.code == program.code == 78
    error = _error(program.out)
    assert error["exit_code"] == 78 and error["kind"] == "DataDirMissing"
    assert human.err.splitlines() == [
        f"liuhen: error: {error['message']}",
        f"  what to do: {error['hint']}",
    ]
    assert str(missing) in str(error["message"])
    assert program.err == ""


def test_a_usage_mistake_with_json_is_json_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "init", "--json", "--no-such-option")
    assert result.code == 2 and result.err == ""
    error = _error(result.out)
    assert error["exit_code"] == 2 and error["kind"] == "NoSuchOption"
    assert "--no-such-option" in str(error["message"])
    assert error["hint"] == "Try 'liuhen init --help' for help."
    # Without --json the same mistake is click's usage text on stderr, stdout untouched.
    human = run_cli(capsys, "init", "--no-such-option")
    assert human.code == 2 and human.out == "" and "No such option" in human.err


def test_a_json_error_is_in_the_readers_language(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIUHEN_LANG")
    set_language(None)
    missing = tmp_path / "缺少"
    result = run_cli(capsys, "--data-dir", str(missing), "store", "check", "--json")
    error = _error(result.out)
    assert result.code == 78 and error["exit_code"] == 78
    assert error["message"] == f"数据目录 {missing} 不存在"
    assert f"liuhen init --data-dir {missing}" in str(error["hint"])
    assert_chinese(f"{error['message']}\n{error['hint']}")


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "command",
    [
        ("custody", "verify"),
        ("store", "check"),
        ("db", "upgrade"),
        ("custody", "anchor"),
        ("station", "status"),
        ("case", "list"),
    ],
    ids=" ".join,
)
def test_a_missing_data_dir_is_an_error_and_nothing_is_created(
    command: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree(tmp_path)
    typo = tmp_path / "liuhen-dta"
    result = run_cli(capsys, "--data-dir", str(typo), *command)
    assert result.code == 78, result.out + result.err
    assert f"data directory {typo} does not exist" in result.err
    assert f"run `liuhen init --data-dir {typo}` to create it" in result.err
    assert not typo.exists()
    assert _tree(tmp_path) == before  # no catalog, store, key or journal anywhere


def test_liuhen_home_that_does_not_exist_is_named_and_init_creates_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "station"
    monkeypatch.setenv("LIUHEN_HOME", str(home))
    refused = run_cli(capsys, "custody", "verify")
    assert refused.code == 78 and f"data directory {home} does not exist" in refused.err
    assert not home.exists()
    assert run_cli(capsys, "init").code == 0  # only init creates
    assert (home / "liuhen.toml").is_file() and (home / "catalog.sqlite3").is_file()
    assert run_cli(capsys, "custody", "verify").code == 0


def test_a_file_where_the_data_dir_should_be_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "liuhen"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("LIUHEN_HOME", str(blocker))  # (click itself checks --data-dir)
    result = run_cli(capsys, "custody", "verify")
    assert result.code == 78 and f"data directory {blocker} is not a directory" in result.err
    assert blocker.read_text(encoding="utf-8") == "not a folder"


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIUHEN_HOME": str(home), "LIUHEN_LANG": "en"}
    return subprocess.run([LIUHEN, *args], env=env, capture_output=True, text=True, timeout=300)


def test_logs_are_quiet_unless_verbose(tmp_path: Path) -> None:
    quiet = _run(tmp_path / "a", "init")
    # Only what a person must read: the note that no account exists yet, no log lines.
    assert quiet.returncode == 0
    assert [line for line in quiet.stderr.splitlines() if "init --admin" not in line] == []
    loud = _run(tmp_path / "b", "-v", "init")
    assert loud.returncode == 0
    assert "Running upgrade" in loud.stderr and "Context impl SQLiteImpl" in loud.stderr
    assert "setup plugin" not in loud.stderr  # alembic's plugin list says nothing even to -v

    # A worker's housekeeping is logged at INFO: shown with -v only. (A stale temporary
    # file, as a put killed midway leaves it, is what it removes.)
    for home in (tmp_path / "a", tmp_path / "b"):
        stale = home / "objects" / "sha256" / "aa" / ".tmp-left-behind"
        stale.parent.mkdir(parents=True)
        stale.write_bytes(b"x")
        os.utime(stale, (0, 0))
    drained = _run(tmp_path / "a", "worker", "--drain")
    assert drained.returncode == 0 and drained.stderr == "", drained.stderr
    detailed = _run(tmp_path / "b", "-v", "worker", "--drain")
    assert detailed.returncode == 0
    assert "removed 1 stale temporary file(s)" in detailed.stderr


def test_the_demo_logs_no_digests_by_default(tmp_path: Path) -> None:
    assert _run(tmp_path, "init").returncode == 0
    demo = _run(tmp_path, "demo")
    assert demo.returncode == 0, demo.stderr
    assert demo.stderr == "" and not DIGEST.search(demo.stdout + demo.stderr)


def test_an_internal_error_is_json_with_exit_70_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import liuhen.app

    def broken(app: object) -> None:
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(liuhen.app, "initialize", broken)
    home = str(tmp_path / "liuhen")
    human = run_cli(capsys, "--data-dir", home, "init")
    assert human.code == 70 and human.out == ""
    assert human.err.splitlines() == [
        "liuhen: internal error: RuntimeError: the disk caught fire",
        "run again with --verbose for the traceback, and report it",
    ]
    program = run_cli(capsys, "--data-dir", home, "init", "--json")
    assert program.code == 70 and program.err == ""
    assert _error(program.out) == {
        "message": "internal error: RuntimeError: the disk caught fire",
        "hint": "run again with --verbose for the traceback, and report it",
        "exit_code": 70,
        "kind": "internal",
    }


def test_a_catalog_url_naming_a_missing_folder_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "liuhen"
    assert run_cli(capsys, "--data-dir", str(home), "init").code == 0
    typo = tmp_path / "catlog" / "catalog.sqlite3"
    monkeypatch.setenv("LIUHEN_CATALOG_URL", f"sqlite:///{typo}")
    result = run_cli(capsys, "--data-dir", str(home), "custody", "verify")
    assert result.code == 69 and f"catalog sqlite:///{typo} is unreachable" in result.err
    assert not typo.parent.exists()  # no empty catalog started in a mistyped folder
