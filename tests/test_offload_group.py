"""Files staged at about the same moment share one staging-folder fsync and one journal
transaction (ingest.station._StagedGroup, Journal.staged_many), each file still checked
and answered on its own."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import storage
from ingest import journal as J
from ingest import station as station_mod
from ingest.journal import FileState, IllegalTransition, Journal, JournalDocking, StagedMove
from storage.digest import DigestPair


def journal_with_files(tmp_path: Path, n: int) -> tuple[Journal, list[int]]:
    journal = Journal(tmp_path / "journal.sqlite3")
    now = J.now_text()
    journal.add_docking(
        JournalDocking(
            uid="d1",
            slot="s",
            source_path=str(tmp_path),
            serial="A1",
            identity={},
            state=J.OFFLOADING,
            started_at=now,
            updated_at=now,
            waiting=None,
            message=None,
        )
    )
    journal.add_files("d1", [(f"f{i}".encode(), 10 + i, 1) for i in range(n)])
    return journal, [f.id for f in journal.files("d1")]


def digests(i: int) -> DigestPair:
    return DigestPair.of_hex(f"{i:064x}", f"{i + 1000:064x}")


def test_staged_many_moves_each_file_that_may_move_and_returns_the_refusals(
    tmp_path: Path,
) -> None:
    journal, ids = journal_with_files(tmp_path, 4)
    journal.quarantined(ids[1], "pulled")  # not PENDING: it may not become STAGED
    refused = journal.staged_many([StagedMove(i, digests(i), "t") for i in ids])
    assert set(refused) == {ids[1]} and isinstance(refused[ids[1]], IllegalTransition)
    by_id = {f.id: f for f in journal.files("d1")}
    assert by_id[ids[1]].state == FileState.QUARANTINED and by_id[ids[1]].sha256 is None
    for i in (ids[0], ids[2], ids[3]):
        assert by_id[i].state == FileState.STAGED and by_id[i].digests == digests(i)
    # A second move of a staged file is refused, and changes nothing.
    again = journal.staged_many([StagedMove(ids[0], digests(99), "t2")])
    assert set(again) == {ids[0]}
    assert journal.file(ids[0]).digests == digests(ids[0])
    journal.close()


def test_files_staged_at_once_are_journaled_after_their_folders_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal, ids = journal_with_files(tmp_path, 24)
    journal.quarantined(ids[5], "pulled")
    events: list[tuple[str, Any]] = []
    lock = threading.Lock()
    real_staged_many = journal.staged_many

    def fsync_dir(folder: Path) -> None:
        storage.fsync_dir(folder)
        with lock:
            events.append(("fsync", folder))

    def staged_many(moves: list[StagedMove]) -> dict[int, IllegalTransition]:
        with lock:
            events.append(("journal", [m.file_id for m in moves]))
        return real_staged_many(moves)

    monkeypatch.setattr("ingest.station.fsync_dir", fsync_dir)
    monkeypatch.setattr(journal, "staged_many", staged_many)
    group = station_mod._StagedGroup(journal)
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
    errors: dict[int, BaseException] = {}
    start = threading.Barrier(len(ids))

    def stage(n: int, file_id: int) -> None:
        start.wait()
        try:
            group.staged(folders[n % 2], StagedMove(file_id, digests(file_id), "t"))
        except IllegalTransition as exc:
            errors[file_id] = exc

    threads = [threading.Thread(target=stage, args=(n, i)) for n, i in enumerate(ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Only the file that could not move saw an error, and only its own.
    assert set(errors) == {ids[5]}
    states = {f.id: f.state for f in journal.files("d1")}
    assert all(states[i] == FileState.STAGED for i in ids if i != ids[5])
    # Each file's folder was fsynced before the journal transaction that staged it.
    for n, file_id in enumerate(ids):
        at = next(k for k, (what, x) in enumerate(events) if what == "journal" and file_id in x)
        assert ("fsync", folders[n % 2]) in events[:at]
    journal.close()
