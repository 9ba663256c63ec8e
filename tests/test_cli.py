"""The foundation commands as a user runs them."""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from catalog import Catalog
from tests.cli_helpers import run_cli


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "liuhen"))
    return tmp_path / "liuhen"


def test_init_creates_everything_and_is_safe_to_repeat(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_cli(capsys, "init")
    assert first.code == 0, first.err
    key = home / "keys" / "station.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (home / "liuhen.toml").read_text(encoding="utf-8").startswith("# 留痕")
    assert (home / "objects").is_dir()
    key_bytes = key.read_bytes()
    second = run_cli(capsys, "init", "--json")
    assert second.code == 0
    report = json.loads(second.out)
    assert report["created"] == [] and report["store_ok"] is True
    assert key.read_bytes() == key_bytes  # never replaced
    verify = run_cli(capsys, "custody", "verify", "--json")
    assert verify.code == 0 and json.loads(verify.out)["events"] == 1  # one key registration


def test_init_refuses_a_key_readable_by_others(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "init").code == 0
    os.chmod(home / "keys" / "station.pem", 0o644)
    result = run_cli(capsys, "init")
    assert result.code == 78
    assert "readable by others" in result.err and "chmod 600" in result.err


def test_commands_refuse_an_out_of_date_schema(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "init").code == 0
    cat = Catalog(f"sqlite:///{home / 'catalog.sqlite3'}")
    with cat.transaction() as s:
        s.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    cat.dispose()
    result = run_cli(capsys, "custody", "verify")
    assert result.code == 78 and "liuhen db upgrade" in result.err
    # 'db upgrade' from an unknown revision must not pretend: alembic refuses, we say so.
    with Catalog(f"sqlite:///{home / 'catalog.sqlite3'}").transaction() as s:
        s.execute(text("DELETE FROM alembic_version"))
    result = run_cli(capsys, "custody", "verify")
    assert result.code == 78 and "no 留痕 schema" in result.err


def test_config_show_masks_the_catalog_password(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIUHEN_CATALOG_URL", "postgresql+psycopg://liuhen:s3cret@db/liuhen")
    result = run_cli(capsys, "config", "show")
    assert result.code == 0
    assert "liuhen:***@db" in result.out and "s3cret" not in result.out
    shown = json.loads(run_cli(capsys, "config", "show", "--json").out)
    assert shown["catalog"]["url"].endswith("***@db/liuhen")


def test_bad_settings_file_exit_code_and_message(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home.mkdir(parents=True)
    (home / "liuhen.toml").write_text("[store]\nmultipart_chunk_mb = 1\n", encoding="utf-8")
    result = run_cli(capsys, "config", "show")
    assert result.code == 78
    assert str(home / "liuhen.toml") in result.err and "store.multipart_chunk_mb" in result.err


def test_unreachable_catalog_is_a_clear_error(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home.mkdir()  # the data directory exists (only init creates it); the catalog does not
    monkeypatch.setenv("LIUHEN_CATALOG_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    result = run_cli(capsys, "db", "upgrade")
    assert result.code == 69
    assert "unreachable" in result.err and "what to do" in result.err
    verbose = run_cli(capsys, "--verbose", "db", "upgrade")
    assert "cause: OperationalError" in verbose.err


def test_store_check_reports_each_check(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "init").code == 0
    result = run_cli(capsys, "store", "check", "--json")
    report = json.loads(result.out)
    assert result.code == 0 and report["ok"]
    assert {c["name"] for c in report["checks"]} >= {"reachable", "writable", "round trip"}


def test_store_check_fails_on_an_unusable_store(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home.mkdir()  # the data directory exists (only init creates it); the store does not
    blocker = home.parent / "not-a-directory"
    blocker.write_text("x", encoding="utf-8")
    monkeypatch.setenv("LIUHEN_STORE_URL", (blocker / "objects").as_uri())
    result = run_cli(capsys, "store", "check")
    assert result.code == 1
    assert "✗ reachable" in result.out and str(blocker) in result.out
    assert result.err == ""  # the report said what failed: no error line repeats it


def _exits(tree: ast.AST) -> list[int]:
    """Lines that end the process: sys.exit(), exit(), os._exit(), raise SystemExit."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in {"exit", "_exit"}:
                lines.append(node.lineno)
        elif isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "SystemExit":
                lines.append(node.lineno)
    return lines


def test_only_main_turns_errors_into_exit_codes() -> None:
    """Commands raise (a Reported when their own report said what failed) and
    liuhen.cli.main alone exits: one place maps every error to its message and code."""
    found = []
    for path in sorted((Path(__file__).parents[1] / "liuhen").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        allowed: set[int] = set()
        # A process's own main: the CLI's, and a `liuhen serve --workers` worker's.
        own_main = {"cli.py": "main", "serve_cmds.py": "_worker_entry"}.get(path.name)
        if own_main is not None:
            (main,) = [
                n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == own_main
            ]
            allowed = set(_exits(main))
            assert allowed, f"{own_main} no longer exits: is the test still looking there?"
        found += [f"{path.name}:{line}" for line in _exits(tree) if line not in allowed]
    assert found == []


def test_installed_console_script_runs(home: Path) -> None:
    """The `liuhen` script on PATH, as a newcomer calls it."""
    exe = Path(sys.executable).with_name("liuhen")
    done = subprocess.run(
        [str(exe), "init"], capture_output=True, text=True, check=False, env={**os.environ}
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [str(exe), "custody", "verify"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
    )
    assert done.returncode == 0 and "verifies" in done.stdout


def test_worker_start_removes_what_killed_puts_left_in_the_store(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A put killed midway leaves a temporary file in the directory store; the next
    service start removes it once it is an hour old (a younger one may be a put still
    running in another process) and never touches an object."""
    assert run_cli(capsys, "init").code == 0
    objects = home / "objects"
    shard = objects / "sha256" / "ab"
    shard.mkdir(parents=True)
    stale, fresh = shard / ".tmp-killed", shard / ".tmp-running"
    stale.write_bytes(b"half a recording")
    fresh.write_bytes(b"a put in progress")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    result = run_cli(capsys, "worker", "--drain")
    assert result.code == 0, result.err
    assert not stale.exists()
    assert fresh.exists()
