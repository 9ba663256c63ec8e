"""No false "safe to clear", and no false quarantine, at the station.

* a folder holding several recorders is not filed under one device, and a file whose
  name names another device is never attributed silently;
* an empty (or unmounted) recorder folder is "no files found", never SAFE TO CLEAR;
* a full or read-only object store is a named waiting state: no traceback, nothing
  quarantined, and the docking resumes once the store takes writes again;
* staging smaller than one file is a permanent, named error, not a wait for ever.

The store and staging run out of space on real small file systems (tmpfs mounted for
the test; the test is skipped where mounting is not permitted).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalog.models import Device, Recording
from ingest import journal as J
from ingest.station import DockingResult
from ingest.synthetic import DEFAULT_DEVICE, make_bulk_files
from liuhen.app import App
from tests.cli_helpers import run_cli
from tests.offload_helpers import make_app

LIUHEN = Path(sys.executable).with_name("liuhen")
# How long a condition may take to come true on a loaded machine before the test fails.
PATIENCE_S = 120.0


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("LIUHEN_HOME", str(data))
    monkeypatch.setenv("LIUHEN_INGEST_STABLE_S", "0")
    return data


# -- several recorders in one folder ----------------------------------------------------------


def test_a_folder_of_several_recorders_is_refused_naming_them(
    tmp_path: Path,
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    parent = tmp_path / "copied"
    make_bulk_files(parent / "K111111", 2, 5_000, device=replace(DEFAULT_DEVICE, serial="K111111"))
    make_bulk_files(
        parent / "K222222", 2, 5_000, seed=1, device=replace(DEFAULT_DEVICE, serial="K222222")
    )
    make_app(cli_env).close()

    refused = run_cli(capsys, "ingest", str(parent), "--quiet")

    assert refused.code == 2, refused.out + refused.err
    said = refused.out + refused.err
    assert "several recorders" in said and "SAFE TO CLEAR" not in said
    for serial in ("K111111", "K222222"):
        assert f"{serial}/ ({serial})" in said
        assert f"liuhen ingest {parent / serial}" in " ".join(said.split())
    status = json.loads(run_cli(capsys, "station", "status", "--json").out)
    assert status == []  # nothing docked, nothing filed under either device

    # Each folder on its own: each filed under its own device.
    for serial in ("K111111", "K222222"):
        assert run_cli(capsys, "ingest", str(parent / serial), "--quiet").code == 0
    app = make_app(cli_env)
    with app.catalog.session() as s:
        devices = {
            name.split("_")[0]: serial
            for name, serial in s.execute(
                select(Recording.original_name, Device.serial).join(
                    Device, Device.id == Recording.device_id
                )
            )
            if name.endswith(".JPG")
        }
    app.close()
    assert devices == {"K111111": "K111111", "K222222": "K222222"}


def test_a_file_naming_another_device_is_not_filed_under_this_one(tmp_path: Path) -> None:
    rec = make_bulk_files(
        tmp_path / "dock" / "K111111", 2, 5_000, device=replace(DEFAULT_DEVICE, serial="K111111")
    )
    stray = rec.root / "DCIM" / "K222222_010203_20261126083002_0001.JPG"
    stray.write_bytes(b"recorded by another device" * 100)
    app = make_app(tmp_path / "data")
    station = app.station()
    result = station.run_docking(rec.root)
    station.close()

    assert result.state == J.INCOMPLETE and result.exit_code == 3
    ((path, state, reason),) = result.problems
    assert path.endswith(stray.name) and state == J.QUARANTINED
    assert "names device K222222, not this recorder's K111111" in reason
    with app.catalog.session() as s:
        names = [r.original_name for r in s.scalars(select(Recording))]
    app.close()
    assert stray.name not in names and len(names) == len(rec.files)


# -- nothing on the recorder ------------------------------------------------------------------


def test_an_empty_recorder_folder_is_no_files_found_never_safe(
    tmp_path: Path,
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_app(cli_env).close()
    mount_point = tmp_path / "dock" / "slot1"  # nothing mounted on it
    mount_point.mkdir(parents=True)

    docked = run_cli(capsys, "ingest", str(mount_point), "--quiet")

    assert docked.code == 66, docked.out + docked.err
    assert "no files found on the recorder" in docked.out
    assert "NOT SAFE TO CLEAR" in docked.out
    as_json = json.loads(run_cli(capsys, "ingest", str(mount_point), "--json").out)
    assert as_json["state"] == J.NO_FILES and as_json["safe_to_clear"] is False

    (row, _again) = json.loads(run_cli(capsys, "station", "status", "--json").out)
    assert row["state"] == J.NO_FILES and row["safe_to_clear"] is False
    assert row["files_total"] == 0 and "no files found on the recorder" in row["message"]
    table = run_cli(capsys, "station", "status").out
    assert "NO FILES FOUND" in table and "SAFE TO CLEAR" not in table.replace("NOT SAFE", "")


# -- a store or staging that runs out of space ------------------------------------------------


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, str], None]]:
    """``mount(path, size)``: a small real file system at ``path``, unmounted at the end."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small file system here: {done.stderr.strip()}")
        mounted.append(path)

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def wait_for(what: str, condition: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + PATIENCE_S
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {PATIENCE_S:.0f} s: {what}")
        time.sleep(0.05)
    return value


class Docking:
    """A docking running in a thread, as `station watch` runs it."""

    def __init__(self, app: App, root: Path) -> None:
        self.station = app.station()
        self.stop = threading.Event()
        self.result: DockingResult | None = None
        # A daemon: a test that fails while the docking waits must not hang the run.
        self.thread = threading.Thread(target=self._run, args=(root,), daemon=True)
        self.thread.start()

    def _run(self, root: Path) -> None:
        self.result = self.station.run_docking(root, stop=self.stop)

    def waiting(self) -> str | None:
        dockings = self.station.journal.dockings()
        return dockings[0].waiting if dockings else None

    def finish(self) -> DockingResult:
        self.thread.join(PATIENCE_S)
        if self.thread.is_alive():
            self.stop.set()
            self.thread.join()
            raise AssertionError("the docking did not finish once the store took writes")
        self.station.close()
        assert self.result is not None
        return self.result


def assert_waiting_not_quarantined(
    docking: Docking,
    phrase: str,
    caplog: pytest.LogCaptureFixture,
    capsys: Any,
) -> None:
    waiting = wait_for(
        f"waiting state {phrase!r}", lambda: (w := docking.waiting()) and phrase in w and w
    )
    assert "unexpected" not in waiting
    files = docking.station.journal.files(docking.station.journal.dockings()[0].uid)
    assert not [f for f in files if f.state == J.QUARANTINED]
    (row,) = json.loads(run_cli(capsys, "station", "status", "--json").out)
    assert phrase in (row["waiting"] or "") and row["safe_to_clear"] is False
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def assert_all_stored(app: App, result: DockingResult, count: int) -> None:
    assert result.state == J.SAFE_TO_CLEAR and not result.problems, result.problems
    assert result.stored == count
    with app.catalog.session() as s:
        keys = [r.object_key for r in s.scalars(select(Recording))]
    assert len(keys) == count and all(app.store.exists(k) for k in keys)


def test_a_full_store_waits_named_and_resumes_when_space_returns(
    tmp_path: Path,
    cli_env: Path,
    tmpfs: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = tmp_path / "store"
    tmpfs(store, "256k")
    app = make_app(cli_env, store_url=store.as_uri())
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 6, 100_000)  # 600 kB > 256 KiB
    monkeypatch.setenv("LIUHEN_STORE_URL", store.as_uri())
    caplog.set_level(logging.WARNING)
    docking = Docking(app, rec.root)
    assert_waiting_not_quarantined(
        docking, "store full: free space or extend the volume", caplog, capsys
    )
    remount(store, "size=8m")  # the volume extended
    result = docking.finish()
    assert_all_stored(app, result, len(rec.files))
    app.close()


def test_a_read_only_store_waits_named_and_resumes_when_writable(
    tmp_path: Path,
    cli_env: Path,
    tmpfs: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = tmp_path / "store"
    tmpfs(store, "8m")
    app = make_app(cli_env, store_url=store.as_uri())
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 3, 20_000)
    remount(store, "ro")
    monkeypatch.setenv("LIUHEN_STORE_URL", store.as_uri())
    caplog.set_level(logging.WARNING)
    docking = Docking(app, rec.root)
    assert_waiting_not_quarantined(docking, "store read-only", caplog, capsys)
    remount(store, "rw")
    result = docking.finish()
    assert_all_stored(app, result, len(rec.files))
    app.close()


def test_staging_smaller_than_a_file_is_a_permanent_named_error(
    tmp_path: Path,
    cli_env: Path,
    tmpfs: Any,
) -> None:
    tmpfs(cli_env / "staging", "64k")
    make_app(cli_env).close()
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 1, 200_000)
    (big,) = [p for p in rec.root.rglob("*.JPG")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIUHEN_")}
    env.update(
        LIUHEN_HOME=str(cli_env),
        LIUHEN_INGEST_STABLE_S="0",
        LIUHEN_INGEST_RETRY_MAX_S="1",
        LIUHEN_LANG="en",  # the messages it checks, in English
    )

    # A station that waited for space here would wait for ever: the timeout fails it.
    done = subprocess.run(
        [str(LIUHEN), "ingest", str(rec.root), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=PATIENCE_S,
    )

    assert done.returncode == 3, done.stdout + done.stderr
    said = " ".join(done.stdout.split())
    assert big.name in said and "larger than the whole staging disk" in said
    assert "NOT SAFE TO CLEAR" in said and "Traceback" not in done.stderr


@pytest.mark.s3
def test_a_full_s3_store_waits_named_and_resumes_when_the_quota_is_raised(
    tmp_path: Path,
    cli_env: Path,
    s3_endpoint: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bucket whose owner's quota is used up (Ceph RGW answers 403 QuotaExceeded) is a
    full store, as a full volume is: a wait, not "access denied" and a quarantine."""
    import boto3

    rgw = s3_endpoint.rgw
    if rgw is None:
        pytest.skip("needs the Ceph gateway the tests start (its admin tool sets quotas)")
    uid = f"quota-{os.getpid()}-{time.monotonic_ns()}"
    access, secret = uid.upper().replace("-", "")[:20], "quota-secret-" + uid
    rgw.admin(
        "user",
        "create",
        f"--uid={uid}",
        "--display-name=quota test",
        f"--access-key={access}",
        f"--secret-key={secret}",
    )
    # Smaller than any one file: each upload is refused whatever the usage stats say.
    rgw.admin("quota", "set", "--quota-scope=user", f"--uid={uid}", "--max-size=50000")
    rgw.admin("quota", "enable", "--quota-scope=user", f"--uid={uid}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    bucket = "quota-" + uid[6:].replace("_", "-")[:50]
    boto3.client("s3", endpoint_url=s3_endpoint.url).create_bucket(Bucket=bucket)
    store_env = {"LIUHEN_STORE_ENDPOINT_URL": s3_endpoint.url}
    app = make_app(cli_env, store_url=f"s3://{bucket}/ev", store_env=store_env)
    for name, value in {"LIUHEN_STORE_URL": f"s3://{bucket}/ev", **store_env}.items():
        monkeypatch.setenv(name, value)
    rec = make_bulk_files(tmp_path / "dock" / "A123456", 3, 100_000)
    caplog.set_level(logging.WARNING)
    docking = Docking(app, rec.root)
    assert_waiting_not_quarantined(docking, "store full", caplog, capsys)
    rgw.admin("quota", "disable", "--quota-scope=user", f"--uid={uid}")  # room again
    result = docking.finish()
    assert_all_stored(app, result, len(rec.files))
    app.close()


def test_a_recorder_whose_every_file_is_rejected_is_not_safe_to_clear(
    tmp_path: Path,
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Found by the review: a folder holding only a link out of the recorder and a pipe
    said "0 of 2 files stored and verified … SAFE TO CLEAR". Nothing taken is nothing
    vouched for, as with an empty folder."""
    dcim = tmp_path / "dock" / "A123456" / "DCIM"
    dcim.mkdir(parents=True)
    outside = tmp_path / "outside.MP4"
    outside.write_bytes(b"not on the recorder")
    (dcim / "A123456_010203_20261126083000_0001.MP4").symlink_to(outside)
    os.mkfifo(dcim / "A123456_010203_20261126083100_0002.MP4")
    make_app(cli_env).close()

    result = run_cli(capsys, "ingest", str(dcim.parent))

    said = " ".join(result.out.split())
    assert result.code == 3, said
    assert "0 of 2 files stored" in said and "NOT SAFE TO CLEAR" in said
    assert "symbolic link" in said and "not a regular file" in said
    (row,) = json.loads(run_cli(capsys, "station", "status", "--json").out)
    assert row["safe_to_clear"] is False and row["state"] == J.INCOMPLETE
