"""`liuhen doctor` on healthy and broken installations, as an operator runs it: every
problem named with its fix, all of them in one run, exit 1 when anything is broken."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from catalog import Catalog
from catalog.migrate import alembic_config
from tests.cli_helpers import Result, run_cli
from tests.fixtures.s3server import free_closed_port


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "liuhen"
    monkeypatch.setenv("LIUHEN_HOME", str(data))
    dock = tmp_path / "dock"
    dock.mkdir()
    monkeypatch.setenv("LIUHEN_INGEST_DOCK_ROOT", str(dock))
    return data


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[Result, dict[str, Any]]:
    result = run_cli(capsys, "doctor", "--json", *args)
    report = json.loads(result.out)
    assert result.code == (0 if report["ok"] else 1), result
    return result, report


def checks(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in report["checks"]}


def failed(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in report["checks"] if c["status"] == "fail"}


def test_healthy_installation(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "init").code == 0
    result, report = doctor(capsys)
    assert result.code == 0 and report["ok"] and report["problems"] == 0
    by_name = checks(report)
    for name in (
        "settings",
        "data directory",
        "signing key",
        "catalog",
        "catalog schema",
        "key registered",
        "clock",
        "store reachable",
        "store round trip",
        "ffmpeg",
        "ffprobe",
        "ffmpeg encoders",
        "staging space",
        "station journal",
        "dock root",
        "services",
    ):
        assert by_name[name]["status"] == "ok", by_name[name]
    assert "mode 600" in by_name["signing key"]["detail"]
    human = run_cli(capsys, "doctor")
    assert human.code == 0 and "no problems" in human.out


@pytest.mark.postgres
@pytest.mark.s3
def test_broken_installation_every_problem_and_its_fix_in_one_run(
    home: Path,
    capsys: pytest.CaptureFixture[str],
    s3_endpoint: Any,
) -> None:
    """The acceptance case: missing key, wrong bucket, unreachable catalog, no ffmpeg."""
    home.mkdir()
    port = free_closed_port()
    (home / "liuhen.toml").write_text(
        f"""
[station]
id = "xh-01"
[catalog]
url = "postgresql+psycopg://liuhen@127.0.0.1:{port}/liuhen"
[store]
url = "s3://no-such-bucket-{port}/evidence"
endpoint_url = "{s3_endpoint.url}"
[ffmpeg]
ffmpeg = "/opt/missing/ffmpeg"
ffprobe = "/opt/missing/ffprobe"
""",
        encoding="utf-8",
    )
    result, report = doctor(capsys)
    assert result.code == 1 and not report["ok"]
    bad = failed(report)
    assert {"signing key", "catalog", "store reachable", "ffmpeg", "ffprobe"} <= set(bad)
    assert "not found" in bad["signing key"]["detail"]
    assert "liuhen init" in bad["signing key"]["fix"]
    assert f"127.0.0.1:{port}" in bad["catalog"]["detail"]
    assert "unreachable" in bad["catalog"]["detail"]
    assert f"127.0.0.1:{port}" in bad["catalog"]["fix"] and "PGPASSWORD" in bad["catalog"]["fix"]
    assert f"no-such-bucket-{port} does not exist" in bad["store reachable"]["detail"]
    assert "create bucket" in bad["store reachable"]["fix"]
    assert "Object Lock" in bad["store reachable"]["fix"]
    assert "/opt/missing/ffmpeg" in bad["ffmpeg"]["detail"]
    assert "apt install ffmpeg" in bad["ffmpeg"]["fix"] and "ffmpeg.ffmpeg" in bad["ffmpeg"]["fix"]
    assert "ffmpeg.ffprobe" in bad["ffprobe"]["fix"]
    # What depends on a broken part is reported as not checked, and says why.
    by_name = checks(report)
    assert by_name["catalog schema"]["status"] == "skip"
    assert by_name["key registered"]["status"] == "skip"
    # The checks that do not depend on them still ran.
    assert by_name["clock"]["status"] == "ok" and by_name["staging space"]["status"] == "ok"
    assert report["problems"] == len(bad)
    # People get the same list, each problem with its fix.
    human = run_cli(capsys, "doctor")
    assert human.code == 1
    for name, check in bad.items():
        # The check's name on a line of its own, what it found and what to do under it.
        assert f"✗ {name}\n    {check['detail'].splitlines()[0]}" in human.out
        assert f"    What to do: {check['fix']}\n" in human.out
    assert f"{len(bad)} problem(s)" in human.out


def test_key_readable_by_others(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "init").code == 0
    key = home / "keys" / "station.pem"
    os.chmod(key, 0o644)
    _, report = doctor(capsys)
    bad = failed(report)
    assert set(bad) == {"signing key"}
    assert "readable by others (mode 644)" in bad["signing key"]["detail"]
    assert bad["signing key"]["fix"] == f"run 'chmod 600 {key}'"
    # The key still parses, so its registration is checked all the same.
    assert checks(report)["key registered"]["status"] == "ok"


def test_key_of_another_station(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(capsys, "init").code == 0
    monkeypatch.setenv("LIUHEN_STATION_ID", "renamed-02")
    _, report = doctor(capsys)
    bad = failed(report)
    assert set(bad) == {"key registered"}
    assert "belongs to station station-01" in bad["key registered"]["detail"]
    assert 'station.id = "station-01"' in bad["key registered"]["fix"]


def test_out_of_date_schema(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "init").code == 0
    # A catalog one migration behind this code, as after upgrading the software only.
    cat = Catalog(f"sqlite:///{home / 'catalog.sqlite3'}")
    config = alembic_config()
    with cat.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
    cat.dispose()
    _, report = doctor(capsys)
    bad = failed(report)
    assert set(bad) == {"catalog schema"}
    assert "schema revision 0003" in bad["catalog schema"]["detail"]
    assert "liuhen db upgrade" in bad["catalog schema"]["fix"]
    assert checks(report)["key registered"]["status"] == "skip"
    assert run_cli(capsys, "db", "upgrade").code == 0
    _, report = doctor(capsys)
    assert report["ok"]


def test_no_ffmpeg_on_path(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert run_cli(capsys, "init").code == 0
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    _, report = doctor(capsys)
    bad = failed(report)
    assert set(bad) == {"ffmpeg", "ffprobe"}
    assert bad["ffmpeg"]["detail"] == "'ffmpeg' not found on PATH"
    assert "apt install ffmpeg" in bad["ffmpeg"]["fix"]
    assert "ffmpeg encoders" not in checks(report)
    # A station does not run ffmpeg: the same host passes as a station, with a warning.
    result, report = doctor(capsys, "--role", "station")
    assert result.code == 0 and checks(report)["ffmpeg"]["status"] == "warn"
    assert "station journal" in checks(report)


def test_unreadable_settings_still_checks_what_it_can(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home.mkdir()
    (home / "liuhen.toml").write_text("[station\nid = 1\n", encoding="utf-8")
    _, report = doctor(capsys)
    bad = failed(report)
    assert set(bad) == {"settings"}
    assert "not valid TOML" in bad["settings"]["detail"]
    by_name = checks(report)
    assert by_name["catalog"]["status"] == "skip" and by_name["store"]["status"] == "skip"
    assert by_name["ffmpeg"]["status"] == "ok"  # the default binary, found on PATH


@pytest.mark.postgres
@pytest.mark.s3
def test_healthy_district_postgres_and_object_lock_bucket(
    home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    pg_url: str,
    s3_endpoint: Any,
    s3_lock_bucket: str,
    s3_bucket: str,
) -> None:
    if s3_endpoint.is_moto:
        pytest.skip("moto verifies no upload: doctor's store check rightly fails there")
    monkeypatch.setenv("LIUHEN_CATALOG_URL", pg_url)
    monkeypatch.setenv("LIUHEN_STORE_URL", f"s3://{s3_lock_bucket}/ev")
    monkeypatch.setenv("LIUHEN_STORE_ENDPOINT_URL", s3_endpoint.url)
    monkeypatch.setenv("LIUHEN_STATION_ID", "xh-kangjian-01")
    assert run_cli(capsys, "init").code == 0
    result, report = doctor(capsys, "--role", "station")
    assert result.code == 0, report
    by_name = checks(report)
    assert by_name["catalog"]["detail"].startswith("PostgreSQL")
    assert "catalog server" in by_name["clock"]["detail"]
    assert by_name["store object lock"]["status"] == "ok"
    assert by_name["store object lock"]["detail"].startswith("enabled")
    assert by_name["store round trip"]["status"] == "ok"
    # The same station on a bucket without Object Lock: it works, with a warning.
    monkeypatch.setenv("LIUHEN_STORE_URL", f"s3://{s3_bucket}/ev")
    result, report = doctor(capsys, "--role", "station")
    assert result.code == 0
    lock = checks(report)["store object lock"]
    assert lock["status"] == "warn" and "Object Lock" in lock["fix"]


def test_a_retired_key_is_reported_even_when_its_row_was_cleared(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """doctor judges this host's key by the custody rule: retired by its row or, when the
    row was cleared, by its signed key-retired event (custody verify would report every
    event the host signs from now on)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from catalog import Signer, register_station
    from catalog.custody import retire_key
    from catalog.models import SigningKey
    from catalog.signing import load_key_file

    assert run_cli(capsys, "init").code == 0
    own = Signer("station-01", load_key_file(home / "keys" / "station.pem"))
    admin = Signer("admin-01", Ed25519PrivateKey.generate())
    catalog = Catalog(f"sqlite:///{home / 'catalog.sqlite3'}")
    with catalog.transaction() as s:
        register_station(s, admin)
        retire_key(s, admin, own.key_id, actor="admin", reason="leaked")
    with catalog.transaction() as s:
        row = s.get(SigningKey, own.key_id)
        assert row is not None
        row.retired_at = None
    catalog.dispose()
    _, report = doctor(capsys)
    bad = failed(report)
    assert "key registered" in bad and "was retired at" in bad["key registered"]["detail"], bad
