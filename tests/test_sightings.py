"""Sightings (issue 13 point 9): the same bytes docked again under another identity.

A file copied off a card under a generic name is filed with no device; when the body-worn
camera that made it docks later with the same bytes under its own name (serial, 警号,
start time), the recording takes that device and officer with a custody event, every
sighting shows the identity it gave, and a sighting naming another device is flagged.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalog.dockings import (
    DockingInfo,
    DockingRef,
    OffloadedFile,
    ensure_docking,
    register_files,
)
from catalog.models import CustodyEvent, Device, Recording
from storage.digest import DigestPair
from tests.cli_helpers import run_cli
from tests.registration_oracle import register_file

BYTES = b"the same recording, docked twice\n" * 64
BODY_CAM_NAME = "A123456_010203_20261126083000_0001.MP4"  # serial, 警号, 08:30:00 local


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Path:
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LIUHEN_INGEST_STABLE_S", "0")
    assert run_cli(capsys, "init").code == 0
    return tmp_path / "dock"


def dock(capsys: Any, folder: Path, name: str) -> None:
    folder.mkdir(parents=True)
    (folder / name).write_bytes(BYTES)
    result = run_cli(capsys, "ingest", str(folder), "--json")
    assert result.code == 0, result.out + result.err


def show(capsys: Any) -> dict[str, Any]:
    result = run_cli(capsys, "show", "1", "--json")
    assert result.code == 0, result.err
    report: dict[str, Any] = json.loads(result.out)
    return report


def test_body_cam_sighting_gives_its_identity_to_a_recording_without_one(
    station: Path, capsys: Any
) -> None:
    dock(capsys, station / "card", "VID_0001.MP4")
    first = show(capsys)
    assert (first["device"], first["officer"]) == (None, None)

    dock(capsys, station / "A123456", BODY_CAM_NAME)
    report = show(capsys)

    assert (report["device"], report["officer"]) == ("A123456", "010203")
    assert report["name"] == "VID_0001.MP4"  # the first name stays the recording's name
    actions = [e["action"] for e in report["custody"]]
    assert actions.count("identity-from-sighting") == 1
    assert actions.index("identity-from-sighting") > actions.index("duplicate-linked")
    generic, body_cam = report["seen_in"]
    assert (generic["path"], generic["state"], generic["device"]) == (
        "VID_0001.MP4",
        "STORED",
        None,
    )
    assert generic["name"] == {"serial": None, "officer": None, "start": None}
    assert (body_cam["path"], body_cam["state"]) == (BODY_CAM_NAME, "DUPLICATE")
    assert (body_cam["device"], body_cam["officer"]) == ("A123456", "010203")
    # 08:30:00 in the recorder's zone (UTC+8) = 00:30:00 UTC.
    assert body_cam["name"] == {
        "serial": "A123456",
        "officer": "010203",
        "start": "2026-11-26T00:30:00+00:00",
    }
    assert "identity_conflict" not in (report["flags"] or {})

    # The human form lists both sightings with what each name says.
    text = run_cli(capsys, "show", "1").out
    assert "seen in these dockings" in text and "VID_0001.MP4" in text
    said = (
        "the file name says: device A123456, officer no. 010203, start 2026-11-26 08:30:00 +08:00"
    )
    assert said in " ".join(text.split())


def test_a_sighting_naming_another_device_is_flagged_not_taken(station: Path, capsys: Any) -> None:
    dock(capsys, station / "A123456", BODY_CAM_NAME)
    dock(capsys, station / "B765432", "B765432_020304_20261126083000_0001.MP4")
    report = show(capsys)

    assert (report["device"], report["officer"]) == ("A123456", "010203")
    [conflict] = report["flags"]["identity_conflict"]
    assert conflict["path"] == "B765432_020304_20261126083000_0001.MP4"
    assert conflict["conflict"] == (
        "device B765432 here, A123456 on the recording; officer 020304 here, 010203 on the "
        "recording"
    )
    actions = [e["action"] for e in report["custody"]]
    assert actions.count("flagged-identity-conflict") == 1
    assert "identity-from-sighting" not in actions


def test_a_sighting_that_knows_nobody_changes_nothing(station: Path, capsys: Any) -> None:
    dock(capsys, station / "A123456", BODY_CAM_NAME)
    dock(capsys, station / "card", "VID_0001.MP4")
    report = show(capsys)

    assert (report["device"], report["officer"]) == ("A123456", "010203")
    assert "identity_conflict" not in (report["flags"] or {})
    assert [v["path"] for v in report["seen_in"]] == [BODY_CAM_NAME, "VID_0001.MP4"]


def test_register_file_and_register_files_take_the_identity_alike(app: Any) -> None:
    """Both registration paths (one file; a station's batch) note the sighting alike."""

    def docking(s: Any, uid: str, serial: str | None) -> Any:
        info = DockingInfo(
            uid=uid,
            slot="slot",
            source_path=f"/dock/{uid}",
            serial=serial,
            officer_number=None,
            officer_name="",
            unit="",
            model="",
            identity_source="file-name" if serial else "folder",
            identity_raw={},
            started_at=datetime(2026, 11, 26, tzinfo=UTC),
        )
        return ensure_docking(s, app.signer, info, "station:test")

    def offloaded(data: bytes, name: str) -> OffloadedFile:
        sha = hashlib.sha256(data).hexdigest()
        return OffloadedFile(
            relpath_raw=name.encode(),
            size=len(data),
            mtime=None,
            digests=DigestPair.of_hex(sha, hashlib.new("sm3", data).hexdigest()),
            object_key=f"sha256/{sha}",
            captured_at=None,
            staged_at=datetime(2026, 11, 26, 1, tzinfo=UTC),
            verified_by="test",
        )

    one, batch = b"registered one by one" * 8, b"registered in a batch" * 8
    with app.catalog.transaction() as s:
        generic = docking(s, "generic", None)
        register_file(s, app.signer, generic, offloaded(one, "VID_0001.MP4"), "station:test")
        register_file(s, app.signer, generic, offloaded(batch, "VID_0002.MP4"), "station:test")
        body_cam = docking(s, "body-cam", "A123456")
        register_file(s, app.signer, body_cam, offloaded(one, BODY_CAM_NAME), "station:test")
        ref = DockingRef.of(body_cam)
        register_files(s, app.signer, [(ref, offloaded(batch, "A123456_x.MP4"))], "station:test")
    with app.catalog.session() as s:
        device = s.scalars(select(Device).where(Device.serial == "A123456")).one()
        recordings = list(s.scalars(select(Recording).order_by(Recording.id)))
        assert [r.device_id for r in recordings] == [device.id, device.id]
        adopted = s.scalars(
            select(CustodyEvent.object_id).where(CustodyEvent.action == "identity-from-sighting")
        ).all()
        assert sorted(adopted) == sorted(r.sha256 for r in recordings)


def test_show_reads_file_names_by_the_configured_patterns_and_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """`show`'s "the file name says" reads names as ingest did: by this installation's
    ``ingest.filename_patterns``, its local times in ``station.time_zone``."""
    config = tmp_path / "liuhen.toml"
    pattern = r"^CAM-(?P<serial>[A-Z0-9]+)-P(?P<officer>[0-9]+)-(?P<start>[0-9]{8}T[0-9]{6})"
    config.write_text(
        f"[station]\ntime_zone = \"UTC\"\n\n[ingest]\nfilename_patterns = ['{pattern}']\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LIUHEN_CONFIG", str(config))
    monkeypatch.setenv("LIUHEN_INGEST_STABLE_S", "0")
    assert run_cli(capsys, "init").code == 0

    dock(capsys, tmp_path / "dock" / "B777777", "CAM-B777777-P4711-20261126T083000.MP4")
    report = show(capsys)

    (sighting,) = report["seen_in"]
    assert sighting["name"] == {
        "serial": "B777777",
        "officer": "4711",
        "start": "2026-11-26T08:30:00+00:00",  # 08:30 local, the station's zone being UTC
    }
