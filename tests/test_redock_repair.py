"""Docking bytes the store already holds: the held copy is checked, never trusted.

A stored object damaged at rest keeps its size and its key. Docking the recorder that
still holds the good file must not say SAFE TO CLEAR over the damaged copy (the officer
would clear the last good one): the held copy is compared with the recorder's bytes,
replaced from them, the damaged bytes kept aside as evidence, a custody event
``repaired`` names both digests, and ``liuhen verify --store`` passes afterwards. Where
the store forbids the replacement, the docking is not safe to clear and says why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archive_export.fixity import audit_store, make_scope
from catalog import verify_chain
from catalog.models import CustodyEvent, Recording
from ingest import journal as J
from ingest.synthetic import make_bulk_files
from liuhen.app import App
from storage import LocalStore
from storage.base import DAMAGED_PREFIX
from storage.digest import DigestPair
from tests.cli_helpers import run_cli
from tests.offload_helpers import make_app

SERIAL = "A123456"


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data directory `liuhen` commands run in-process use (files settle at once)."""
    data = tmp_path / "data"
    monkeypatch.setenv("LIUHEN_HOME", str(data))
    monkeypatch.setenv("LIUHEN_INGEST_STABLE_S", "0")
    return data


def docked_once(tmp_path: Path, **app_kwargs: Any) -> tuple[App, Path, list[Recording]]:
    app = make_app(tmp_path / "data", **app_kwargs)
    rec = make_bulk_files(tmp_path / "dock" / SERIAL, 3, 40_000)
    station = app.station()
    first = station.run_docking(rec.root)
    station.close()
    assert first.state == J.SAFE_TO_CLEAR, first.problems
    with app.catalog.session() as s:
        recs = list(s.scalars(select(Recording).order_by(Recording.id)))
    return app, rec.root, recs


def flip_one_byte(path: Path) -> bytes:
    """Bit rot or a tampering admin: same size, one byte different. Returns the bytes."""
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    path.chmod(0o444)
    return bytes(data)


def recorder_file(root: Path, rec: Recording) -> Path:
    (path,) = [p for p in root.rglob("*") if p.name == rec.original_name]
    return path


def repaired_events(app: App) -> list[CustodyEvent]:
    with app.catalog.session() as s:
        return list(s.scalars(select(CustodyEvent).where(CustodyEvent.action == "repaired")))


def assert_repaired(app: App, rec: Recording, good: bytes, damaged: bytes, read: Any) -> None:
    """The key holds the good bytes again, the damaged ones are kept aside under the key
    the custody event names, and the event names both digests."""
    damaged_sha = hashlib.sha256(damaged).hexdigest()
    assert read(rec.object_key) == good
    (event,) = repaired_events(app)
    details = json.loads(event.details)
    assert event.object_id == rec.sha256
    assert details["expected"] == {"sha256": rec.sha256, "sm3": rec.sm3}
    assert details["found"] == {
        "sha256": damaged_sha,
        "sm3": hashlib.new("sm3", damaged).hexdigest(),
    }
    assert details["damaged_copy"] == f"{DAMAGED_PREFIX}{rec.object_key}/{damaged_sha}"
    assert read(details["damaged_copy"]) == damaged
    with app.catalog.session() as s:
        report = verify_chain(s, trusted={app.settings.station.id: {app.signer.key_id}})
    assert report.ok, [p.describe() for p in report.problems]
    audit = audit_store(
        app.catalog, app.store, app.signer, scope=make_scope("all"), actor="auditor"
    )
    assert audit.ok and audit.failed == 0, audit.failures


def read_local(app: App) -> Any:
    store = app.store
    assert isinstance(store, LocalStore)
    return lambda key: (store.root / key).read_bytes()


def test_redocking_over_a_damaged_held_copy_repairs_it(
    tmp_path: Path,
    catalog_url: str,
    cli_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    app, root, recs = docked_once(tmp_path, catalog_url=catalog_url)
    victim = recs[1]
    good = recorder_file(root, victim).read_bytes()
    damaged = flip_one_byte(read_local_path(app, victim.object_key))

    again = run_cli(capsys, "ingest", str(root), "--quiet")

    assert again.code == 0, again.out + again.err
    assert "SAFE TO CLEAR" in again.out and "NOT SAFE" not in again.out
    assert_repaired(app, victim, good, damaged, read_local(app))
    assert run_cli(capsys, "verify", "--store").code == 0
    district = run_cli(capsys, "verify", "--district")  # the damaged copy is no orphan
    assert district.code == 0, district.out + district.err
    app.close()


def read_local_path(app: App, key: str) -> Path:
    store = app.store
    assert isinstance(store, LocalStore)
    return store.root / key


def test_a_repair_interrupted_after_the_replacement_still_records_the_event(
    tmp_path: Path,
) -> None:
    """The station dies right after the good copy replaced the damaged one, before the
    catalog heard of it: on restart the journal still knows what was found."""
    app, root, recs = docked_once(tmp_path)
    victim = recs[0]
    good = recorder_file(root, victim).read_bytes()
    damaged = flip_one_byte(read_local_path(app, victim.object_key))
    store = app.store
    assert isinstance(store, LocalStore)
    real = store.replace_damaged

    def replaced_then_killed(*args: Any, **kwargs: Any) -> str:
        real(*args, **kwargs)
        raise KeyboardInterrupt  # (a BaseException: nothing in the station handles it)

    store.replace_damaged = replaced_then_killed  # type: ignore[method-assign]
    station = app.station()
    with pytest.raises(KeyboardInterrupt):
        station.run_docking(root)
    station.close()
    store.replace_damaged = real  # type: ignore[method-assign]
    assert not repaired_events(app)

    restarted = app.station()
    restarted.flush_journal()
    result = restarted.run_docking(root)
    restarted.close()
    assert result.state == J.SAFE_TO_CLEAR, result.problems
    assert_repaired(app, victim, good, damaged, read_local(app))
    app.close()


@pytest.fixture
def immutable() -> Iterator[Any]:
    """Set the immutable attribute on a file (a WORM directory store); lifted at the end."""
    marked: list[Path] = []
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")

    def mark(path: Path, on: bool = True) -> None:
        done = subprocess.run(
            ["chattr", "+i" if on else "-i", str(path)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot set the immutable attribute here: {done.stderr.strip()}")
        if on:
            marked.append(path)

    yield mark
    for path in marked:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


def test_a_damaged_copy_the_store_will_not_replace_is_not_safe_to_clear(
    tmp_path: Path,
    cli_env: Path,
    immutable: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app, root, recs = docked_once(tmp_path)
    victim = recs[2]
    path = read_local_path(app, victim.object_key)
    damaged = flip_one_byte(path)
    immutable(path)

    refused = run_cli(capsys, "ingest", str(root), "--quiet")

    assert refused.code == 3, refused.out + refused.err
    assert "NOT SAFE TO CLEAR" in refused.out
    line = next(x for x in refused.out.splitlines() if victim.original_name in x)
    assert "damaged" in line and "refused to replace" in line
    assert "dock the recorder again" in refused.out
    assert path.read_bytes() == damaged  # nothing half-done: the damage is still there
    assert not repaired_events(app)

    # The protection lifted, the next docking of the recorder repairs it.
    immutable(path, on=False)
    again = run_cli(capsys, "ingest", str(root), "--quiet")
    assert again.code == 0, again.out
    assert_repaired(app, victim, recorder_file(root, victim).read_bytes(), damaged, read_local(app))
    app.close()


@pytest.mark.s3
@pytest.mark.parametrize("lock", [False, True], ids=["plain-bucket", "object-lock-bucket"])
def test_s3_redocking_over_a_damaged_held_copy_repairs_it(
    tmp_path: Path,
    lock: bool,
    s3_endpoint: Any,
    s3_client: Any,
    request: pytest.FixtureRequest,
) -> None:
    bucket = request.getfixturevalue("s3_lock_bucket" if lock else "s3_bucket")
    app, root, recs = docked_once(
        tmp_path,
        store_url=f"s3://{bucket}/ev",
        store_env={"LIUHEN_STORE_ENDPOINT_URL": s3_endpoint.url},
    )
    victim = recs[1]
    key = f"ev/{victim.object_key}"
    good = recorder_file(root, victim).read_bytes()
    held = s3_client.get_object(Bucket=bucket, Key=key)
    damaged = bytearray(held["Body"].read())
    damaged[len(damaged) // 2] ^= 0x01
    # Overwritten behind the store's back, its recorded digest kept: the store's metadata
    # still vouches for the good bytes.
    s3_client.put_object(Bucket=bucket, Key=key, Body=bytes(damaged), Metadata=held["Metadata"])

    station = app.station()
    result = station.run_docking(root)
    station.close()

    assert result.state == J.SAFE_TO_CLEAR, result.problems

    def read(k: str) -> bytes:
        return bytes(s3_client.get_object(Bucket=bucket, Key=f"ev/{k}")["Body"].read())

    assert_repaired(app, victim, good, bytes(damaged), read)
    app.close()


def test_a_journal_written_before_repairs_were_journaled_opens_and_keeps_its_files(
    tmp_path: Path,
) -> None:
    """A station upgraded in place keeps its journal: the column that remembers a repair
    is added, and the files already journaled read back unchanged."""
    path = tmp_path / "station-journal.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(J.SCHEMA.replace("    repair TEXT,\n", ""))
        db.execute(
            "INSERT INTO dockings VALUES ('d1', 'slot', '/dock/A', 'A123456', '{}', "
            "'OFFLOADING', 't', 't', NULL, NULL)"
        )
        db.execute(
            "INSERT INTO files (docking_uid, relpath, size, mtime_ns, state) "
            "VALUES ('d1', X'412E4A5047', 5, 1, 'PENDING')"
        )
        db.commit()
    journal = J.Journal(path)
    try:
        (f,) = journal.files("d1")
        assert (f.relpath, f.state, f.repair) == (b"A.JPG", J.PENDING, None)
        journal.staged(f.id, digests=DigestPair.of_hex("a" * 64, "b" * 64), staged_at="t")
        journal.repair_noted(f.id, '{"sha256": "found"}')
        assert journal.file(f.id).repair == '{"sha256": "found"}'
    finally:
        journal.close()
