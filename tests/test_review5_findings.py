"""Reviewer's reproductions for the h/smallfiles work (e206a30..17ac047): the staging
group's thread, the finisher, and Signer.sign through libsodium.

Each test states what it shows; a failing test here is a finding, not a flaky test."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from catalog import signing
from catalog.signing import Signer
from ingest import station as station_mod
from ingest.journal import StagedMove
from ingest.synthetic import make_bulk_files
from tests.offload_helpers import make_app
from tests.test_offload_group import digests, journal_with_files


def _slow_store(station: Any, delay_s: float) -> dict[str, Any]:
    """Wrap the store's put_file: each call takes ``delay_s`` (a remote store, or a slow
    disk), and how many run at once and on which threads is recorded."""
    real = station.store.put_file
    seen: dict[str, Any] = {"now": 0, "max": 0, "threads": set(), "calls": 0}
    lock = threading.Lock()

    def put_file(*args: Any, **kwargs: Any) -> Any:
        with lock:
            seen["now"] += 1
            seen["calls"] += 1
            seen["max"] = max(seen["max"], seen["now"])
            seen["threads"].add(threading.current_thread().name)
        try:
            time.sleep(delay_s)
            return real(*args, **kwargs)
        finally:
            with lock:
                seen["now"] -= 1

    station.store.put_file = put_file
    return seen


def test_store_puts_of_a_docking_run_in_parallel(tmp_path: Path) -> None:
    """FINDING (MEDIUM): every staged file's store_file (put_file: an S3 upload, or a full
    compare with a held copy) now runs on the one station-wide staging-group thread, in
    series, where it ran on the docking's 2 x file_workers worker threads before. With a
    store taking 0.1 s a file and file_workers=4, at most one put runs at a time."""
    rec = make_bulk_files(tmp_path / "dock" / "A1", 16, 4_000)
    app = make_app(tmp_path / "data", file_workers=4)
    station = app.station()
    seen = _slow_store(station, 0.1)
    try:
        result = station.run_docking(rec.root)
    finally:
        station.close()
    assert result.state == "SAFE_TO_CLEAR"
    assert seen["calls"] == len(rec.files)
    assert seen["max"] > 1, f"store puts ran one at a time, on {sorted(seen['threads'])}"


def test_a_slow_store_put_does_not_hold_back_other_files_staged_journal(
    tmp_path: Path,
) -> None:
    """FINDING (MEDIUM): the group thread calls each file's ``then`` (store + hand-off)
    before it flushes the next group, so one slow or hanging store call (S3 away: up to
    connect_timeout x max_attempts per file) holds back the STAGED journal write of every
    file of every docking on the station. Shown at unit level: a file submitted while the
    first file's ``then`` is busy is not journaled STAGED until that ``then`` returns."""
    journal, ids = journal_with_files(tmp_path, 2)
    group = station_mod._StagedGroup(journal)
    folder = tmp_path / "stage"
    folder.mkdir()
    release = threading.Event()
    in_first = threading.Event()
    second_staged = threading.Event()

    def first_then(error: BaseException | None) -> None:
        in_first.set()
        release.wait(10)  # a slow store put of the first file

    def second_then(error: BaseException | None) -> None:
        second_staged.set()

    try:
        group.submit(str(folder), StagedMove(ids[0], digests(ids[0]), "t"), first_then)
        assert in_first.wait(5)
        group.submit(str(folder), StagedMove(ids[1], digests(ids[1]), "t"), second_then)
        # The second file's STAGED (a journal write and an fsync) needs nothing of the first.
        assert second_staged.wait(2), "the second file waited for the first one's store put"
    finally:
        release.set()
        group.close()
        journal.close()


def test_staging_backlog_is_bounded_by_the_copy_slots(tmp_path: Path) -> None:
    """FINDING (MEDIUM): workers no longer wait for their group, and nothing bounds how
    many staged files wait for the group's thread: with a store slower than the copies,
    the whole docking is copied into staging before it is stored (staging space, and the
    files' STAGED journal writes, pile up behind the store). Before (e206a30), a worker
    held its file until it was stored, so few staged copies were waiting at any time.
    Measured: the ``*.staged`` copies present whenever the store is asked for a put."""
    rec = make_bulk_files(tmp_path / "dock" / "A1", 40, 2_000)
    app = make_app(tmp_path / "data", file_workers=2)
    station = app.station()
    staging = tmp_path / "data" / "staging"
    most = {"staged": 0}
    real_put = station.store.put_file

    def put_file(*args: Any, **kwargs: Any) -> Any:
        most["staged"] = max(most["staged"], sum(1 for _ in staging.rglob("*.staged")))
        time.sleep(0.05)  # a store slower than the copies (a remote one)
        return real_put(*args, **kwargs)

    station.store.put_file = put_file
    try:
        result = station.run_docking(rec.root)
    finally:
        station.close()
    assert result.state == "SAFE_TO_CLEAR"
    assert most["staged"] <= 4 * 2 + 4, f"{most['staged']} staged copies waiting at once"


def test_a_stopped_docking_does_not_store_its_whole_backlog_first(tmp_path: Path) -> None:
    """FINDING (MEDIUM, same cause): a docking stopped (SIGTERM, recorder pulled) still
    stores and registers every file its workers had already handed to the staging group,
    one after the other on the group's thread, before run_docking returns; with nothing
    bounding that queue, the whole docking. Before (e206a30), only the files in the
    workers' hands (2 x file_workers) were finished."""
    rec = make_bulk_files(tmp_path / "dock" / "A1", 40, 2_000)
    app = make_app(tmp_path / "data", file_workers=2)
    station = app.station()
    stop = threading.Event()
    after_stop = {"puts": 0, "calls": 0}
    real_put = station.store.put_file

    def put_file(*args: Any, **kwargs: Any) -> Any:
        if stop.is_set():
            after_stop["puts"] += 1
        after_stop["calls"] += 1
        if after_stop["calls"] == 3:
            stop.set()  # stopped as the third file is stored
        time.sleep(0.05)  # a store slower than the copies (a remote one)
        return real_put(*args, **kwargs)

    station.store.put_file = put_file
    try:
        station.run_docking(rec.root, stop=stop)
    finally:
        station.close()
    assert after_stop["puts"] <= 2 * 2 + 2, f"{after_stop['puts']} files stored after the stop"


def test_finisher_failure_reaches_each_file_and_close_does_not_hang(
    tmp_path: Path,
) -> None:
    """Checks (3): a journal failure on the finisher thread (journal.done) settles every
    file's future with it, the docking ends (not SAFE_TO_CLEAR, not hanging), and
    Station.close() returns."""
    rec = make_bulk_files(tmp_path / "dock" / "A1", 6, 2_000)
    app = make_app(tmp_path / "data", file_workers=2)
    station = app.station()

    def done(file_ids: Any) -> None:
        raise OSError("journal disk gone")

    station.journal.done = done  # type: ignore[method-assign]
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = station.run_docking(rec.root)
        except BaseException as exc:
            outcome["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the docking hangs after a finisher failure"
    result = outcome.get("result")
    assert result is None or result.state != "SAFE_TO_CLEAR"
    closer = threading.Thread(target=station.close, daemon=True)
    closer.start()
    closer.join(30)
    assert not closer.is_alive(), "Station.close() hangs"


def test_sodium_signer_is_made_once_under_concurrent_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FINDING (LOW): Signer._sodium_signing is a functools.cached_property, which (Python
    3.12+) has no lock: threads signing at once on a fresh Signer each expand the key into
    a 64-byte secret buffer of their own; all but one are dropped unzeroed."""
    if not signing.fast_verify_available():
        pytest.skip("libsodium not installed")
    made: list[object] = []
    real_of = signing._SodiumSign.of.__func__  # type: ignore[attr-defined]

    def of(cls: type, lib: Any, key: Ed25519PrivateKey) -> Any:
        time.sleep(0.05)  # widen the window a first use has anyway
        made.append(key)
        return real_of(cls, lib, key)

    monkeypatch.setattr(signing._SodiumSign, "of", classmethod(of))
    signer = Signer("station", Ed25519PrivateKey.generate())
    start = threading.Barrier(4)

    def sign() -> None:
        start.wait()
        signer.sign(b"event")

    threads = [threading.Thread(target=sign) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1, f"the secret key was expanded {len(made)} times"


def test_openssl_env_keeps_signing_on_openssl(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks (5): LIUHEN_ED25519=openssl (read when libsodium is first looked for) leaves
    Signer.sign on OpenSSL."""
    monkeypatch.setenv(signing.ENGINE_ENV, "openssl")
    monkeypatch.setattr(signing, "_sodium_state", [])
    key = Ed25519PrivateKey.generate()
    signer = Signer("station", key)
    assert signer._sodium_signing is None
    assert signer.sign(b"x") == key.sign(b"x")
