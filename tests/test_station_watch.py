"""`liuhen station watch` as a service: a recorder folder appears, it is offloaded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from ingest.synthetic import DEFAULT_DEVICE, make_bulk_files


def test_watch_offloads_a_docked_recorder_and_stops_cleanly(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("liuhen"))
    env = {
        **os.environ,
        "LIUHEN_HOME": str(tmp_path / "data"),
        "LIUHEN_INGEST_STABLE_S": "0.2",
        "LIUHEN_INGEST_OBSERVER": "poll",
        "LIUHEN_INGEST_POLL_INTERVAL_S": "0.2",
    }
    subprocess.run([exe, "init"], env=env, check=True, capture_output=True)
    dock = tmp_path / "dock"
    dock.mkdir()
    before = make_bulk_files(dock / "A111111", 3, 10_000)  # docked while the service was down
    service = subprocess.Popen(
        [exe, "station", "watch", "--dock-root", str(dock)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        staging = tmp_path / "incoming"
        after = make_bulk_files(
            staging, 4, 10_000, device=replace(DEFAULT_DEVICE, serial="B222222")
        )
        os.rename(staging, dock / "B222222")  # a recorder docks while it runs
        deadline = time.time() + 120  # ends as soon as both are safe; the machine is loaded
        rows: list[dict[str, object]] = []
        while time.time() < deadline:
            done = subprocess.run(
                [exe, "station", "status", "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            rows = json.loads(done.stdout)
            if len(rows) == 2 and all(r["safe_to_clear"] for r in rows):
                break
            time.sleep(0.3)
        assert len(rows) == 2 and all(r["safe_to_clear"] for r in rows), rows
        assert sorted(r["files_total"] for r in rows) == [len(before.files), len(after.files)]
    finally:
        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=30)
    assert service.returncode == 0, output
    verify = subprocess.run([exe, "custody", "verify"], env=env, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout


def test_watch_shows_an_empty_recorder_and_refuses_a_folder_of_several(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("liuhen"))
    env = {
        **os.environ,
        "LIUHEN_HOME": str(tmp_path / "data"),
        "LIUHEN_INGEST_STABLE_S": "0.2",
        "LIUHEN_INGEST_OBSERVER": "poll",
        "LIUHEN_INGEST_POLL_INTERVAL_S": "0.2",
    }
    subprocess.run([exe, "init"], env=env, check=True, capture_output=True)
    dock = tmp_path / "dock"
    (dock / "slot1").mkdir(parents=True)  # a mount point with no recorder mounted on it
    copied = tmp_path / "copied"
    for serial in ("K111111", "K222222"):
        make_bulk_files(copied / serial, 2, 5_000, device=replace(DEFAULT_DEVICE, serial=serial))
    service = subprocess.Popen(
        [exe, "station", "watch", "--dock-root", str(dock)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []  # the service's output, read as it comes
    assert service.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(service.stdout or ()), daemon=True)
    reader.start()
    refusal = "holds several recorders: K111111/ (K111111), K222222/ (K222222)"
    try:
        os.rename(copied, dock / "copied")  # two recorders' folders dropped in as one
        deadline = time.time() + 120
        rows: list[dict[str, object]] = []
        while time.time() < deadline:
            done = subprocess.run(
                [exe, "station", "status", "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            rows = json.loads(done.stdout)
            if rows and any(refusal in line for line in list(lines)):
                break
            time.sleep(0.3)
        (row,) = rows  # the empty folder; nothing of the refused one
        assert row["state"] == "NO_FILES" and row["safe_to_clear"] is False, row
        assert "no files found on the recorder" in str(row["message"])
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)
        reader.join(timeout=30)
    output = "".join(lines)
    assert service.returncode == 0, output
    assert refusal in output and "Traceback" not in output
