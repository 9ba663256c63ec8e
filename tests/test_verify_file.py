"""`liuhen verify FILE`: is this file a recording we hold, and what happened to it."""

from __future__ import annotations

import json
import tarfile
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from archive_export.lookup import lookup_file
from catalog import Catalog
from catalog.models import CustodyEvent, Recording, SigningKey
from ingest.synthetic import make_bulk_files
from tests.cli_helpers import run_cli
from tests.offload_helpers import file_digests, make_app


@pytest.fixture
def station_with_files(
    tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, list[Path]]:
    app = make_app(tmp_path / "data", catalog_url=catalog_url)
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 3, 30_000)
    station = app.station()
    assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    station.close()
    app.close()
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    return tmp_path / "data", [rec.root / f.relpath for f in rec.files]


def test_known_file_shows_its_custody_history(
    station_with_files: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    data, files = station_with_files
    target = files[1]
    sha, sm3 = file_digests(target)
    result = run_cli(capsys, "--data-dir", str(data), "verify", "--json", str(target))
    assert result.code == 0, result.out + result.err
    doc = json.loads(result.out)
    assert doc["known"] and doc["ok"] and doc["sha256"] == sha and doc["sm3"] == sm3
    (match,) = doc["matches"]
    assert match["type"] == "recording" and match["name"] == target.name
    actions = [e["action"] for e in doc["custody"]]
    assert actions == ["offloaded", "stored", "verified"]
    assert all(e["hash_ok"] and e["signature_ok"] for e in doc["custody"])
    human = run_cli(capsys, "--data-dir", str(data), "verify", str(target))
    assert human.code == 0 and "offloaded" in human.out and sha in human.out


def test_unknown_or_altered_file_exit_1(
    station_with_files: tuple[Path, list[Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, files = station_with_files
    altered = tmp_path / "altered.jpg"
    content = bytearray(files[0].read_bytes())
    content[-1] ^= 1
    altered.write_bytes(bytes(content))
    result = run_cli(capsys, "--data-dir", str(data), "verify", str(altered))
    assert result.code == 1 and "not a recording" in result.out
    doc = json.loads(run_cli(capsys, "--data-dir", str(data), "verify", "--json", str(altered)).out)
    assert doc == doc | {"known": False, "ok": False, "matches": []}


def test_tampered_custody_event_is_flagged(
    station_with_files: tuple[Path, list[Path]],
    catalog_url: str,
) -> None:
    _, files = station_with_files
    sha, _ = file_digests(files[2])
    catalog = Catalog(catalog_url)
    with catalog.transaction() as s:
        ev = s.scalars(
            select(CustodyEvent).where(
                CustodyEvent.object_id == sha, CustodyEvent.action == "stored"
            )
        ).one()
        ev.actor = "station:somewhere-else"
    with catalog.session() as s:
        report = lookup_file(s, files[2])
        rec = s.scalars(select(Recording).where(Recording.sha256 == sha)).one()
    catalog.dispose()
    assert report.known and not report.ok
    assert any("stored" in p and "hash" in p for p in report.problems)
    assert report.matches[0]["id"] == rec.id


def test_file_mode_forced_for_a_tar(
    station_with_files: tuple[Path, list[Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, files = station_with_files
    tar = tmp_path / "x.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(files[0], arcname="x")
    # As a bundle: not a bag (exit 2). As a file: an unknown file (exit 1).
    assert run_cli(capsys, "--data-dir", str(data), "verify", str(tar)).code == 2
    assert run_cli(capsys, "--data-dir", str(data), "verify", "--file", str(tar)).code == 1


def test_a_derivative_is_found_with_its_source(
    station_with_files: tuple[Path, list[Path]],
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from catalog.media import DerivedObject, record_derivative
    from catalog.signing import Signer, load_key_file

    data, files = station_with_files
    sha, _ = file_digests(files[0])
    copy = tmp_path / "access.mp4"
    copy.write_bytes(b"an access copy of it" * 500)
    dsha, dsm3 = file_digests(copy)
    catalog = Catalog(catalog_url)
    signer = Signer("station-01", load_key_file(data / "keys" / "station.pem"))
    with catalog.transaction() as s:
        rec = s.scalars(select(Recording).where(Recording.sha256 == sha)).one()
        record_derivative(
            s,
            signer,
            rec,
            DerivedObject(
                kind="access",
                sha256=dsha,
                sm3=dsm3,
                size=copy.stat().st_size,
                object_key=f"sha256/{dsha[:2]}/{dsha[2:4]}/{dsha}",
                method="remux",
                command=["ffmpeg"],
                tool_version="test",
                duration_s=None,
            ),
            actor="test",
        )
    catalog.dispose()
    doc = json.loads(run_cli(capsys, "--data-dir", str(data), "verify", "--json", str(copy)).out)
    assert doc["ok"] and doc["matches"][0]["type"] == "derivative"
    assert doc["matches"][0]["source_sha256"] == sha
    assert [e["action"] for e in doc["custody"]] == ["derived"]


def test_custody_signed_by_a_retired_key_is_flagged(
    station_with_files: tuple[Path, list[Path]],
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`verify FILE` judges the file's custody history by the one custody rule: events
    the station's key signed after the key was retired are not a verified history."""
    data, files = station_with_files
    catalog = Catalog(catalog_url)
    with catalog.transaction() as s:  # retired before it signed this docking's events
        first = s.scalars(select(CustodyEvent).order_by(CustodyEvent.seq)).first()
        assert first is not None
        key = s.get(SigningKey, first.key_id)
        assert key is not None
        key.retired_at = datetime.fromisoformat(first.at.replace("Z", "+00:00"))
    catalog.dispose()
    result = run_cli(capsys, "--data-dir", str(data), "verify", "--json", str(files[0]))
    assert result.code == 1, result.out
    doc = json.loads(result.out)
    assert doc["known"] and not doc["ok"]
    assert any("offloaded" in p and "retired" in p for p in doc["problems"]), doc["problems"]
