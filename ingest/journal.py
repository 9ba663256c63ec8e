"""The station's local journal: durable state of every docking and file.

It lives on the station (SQLite beside the staging area), so offload goes on when the
catalog or the object store is unreachable, and a station killed at any instruction
resumes from it. The catalog is brought up to date from the journal when it is back.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from catalog.chainrule import ChainHead, head_from_json
from catalog.states import DockingState as DockingState  # stored by the catalog too
from config.errors import LiuhenError
from config.i18n import N_
from storage.digest import DigestPair


class IllegalTransition(LiuhenError):
    """A journal move the state machine does not allow (a bug in the station: a file
    marked DONE that was never staged, a finished docking finished again ...). Nothing
    was written: the journal keeps the state it had."""


class FileState(StrEnum):
    """A file's state in the journal (the text stored in ``files.state``)."""

    PENDING = "PENDING"  # seen on the recorder, not yet copied
    STAGED = "STAGED"  # copied, hashed and fsynced in staging
    DONE = "DONE"  # stored, verified and in the catalog
    CLEARED = "CLEARED"  # also deleted from the recorder
    REJECTED = "REJECTED"  # not a recording to store (symlink, empty file ...)
    # Could not be taken (vanished, I/O error, still growing): blocks SAFE_TO_CLEAR.
    QUARANTINED = "QUARANTINED"

    @property
    def is_held(self) -> bool:
        """Stored, verified and registered (and maybe cleared from the recorder since)."""
        return self in (FileState.DONE, FileState.CLEARED)

    @property
    def is_open(self) -> bool:
        """Work is left to do for it on this docking (copy, store or register)."""
        return self in (FileState.PENDING, FileState.STAGED)

    @property
    def is_problem(self) -> bool:
        """Not taken, with a reason the docking reports."""
        return self in (FileState.REJECTED, FileState.QUARANTINED)


def is_safe_to_clear(state: str) -> bool:
    """Whether a docking in ``state`` (its journal text) may be cleared."""
    return state in _SAFE_TO_CLEAR


_SAFE_TO_CLEAR = frozenset(s.value for s in DockingState if s.is_safe_to_clear)
# For queries by state: dockings a docking of the recorder continues; files held.
UNFINISHED: tuple[DockingState, ...] = tuple(s for s in DockingState if s.is_unfinished)
HELD: tuple[FileState, ...] = tuple(s for s in FileState if s.is_held)

# The moves the state machine allows: a journal method names what happened and refuses
# a file or docking found in any other state (IllegalTransition).
_FILE_MOVES: dict[FileState, frozenset[FileState]] = {
    FileState.PENDING: frozenset({FileState.QUARANTINED}),  # docked again: another try
    FileState.STAGED: frozenset({FileState.PENDING}),
    FileState.DONE: frozenset({FileState.STAGED}),
    FileState.CLEARED: frozenset({FileState.DONE}),
    FileState.REJECTED: frozenset({FileState.PENDING}),
    FileState.QUARANTINED: frozenset({FileState.PENDING, FileState.STAGED}),
}
_DOCKING_MOVES: dict[DockingState, frozenset[DockingState]] = {
    DockingState.OFFLOADING: frozenset({DockingState.OFFLOADING, DockingState.INCOMPLETE}),
    DockingState.SAFE_TO_CLEAR: frozenset({DockingState.OFFLOADING}),
    DockingState.CLEARED: frozenset({DockingState.OFFLOADING, DockingState.SAFE_TO_CLEAR}),
    DockingState.INCOMPLETE: frozenset({DockingState.OFFLOADING}),
    DockingState.NO_FILES: frozenset(),  # only add_docking makes it
}

# The message of an unfinished docking that is never resumed (see Journal.superseded).
SUPERSEDED = N_("superseded by a later docking")

# The names other modules use (``J.STAGED``, ``J.SAFE_TO_CLEAR`` ...).
PENDING, STAGED, DONE = FileState.PENDING, FileState.STAGED, FileState.DONE
CLEARED, REJECTED, QUARANTINED = FileState.CLEARED, FileState.REJECTED, FileState.QUARANTINED
OFFLOADING, SAFE_TO_CLEAR = DockingState.OFFLOADING, DockingState.SAFE_TO_CLEAR
INCOMPLETE, NO_FILES = DockingState.INCOMPLETE, DockingState.NO_FILES
# Stored (and given in --json) in English; shown to a person as _(NO_FILES_MESSAGE).
NO_FILES_MESSAGE = N_(
    "no files found on the recorder: check that it is mounted (or copied) "
    "completely, then dock it again; do not clear it"
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS dockings (
    uid TEXT PRIMARY KEY,
    slot TEXT NOT NULL,
    source_path TEXT NOT NULL,
    serial TEXT,
    identity TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    waiting TEXT,
    message TEXT
);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    docking_uid TEXT NOT NULL REFERENCES dockings(uid),
    relpath BLOB NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    state TEXT NOT NULL,
    sha256 TEXT,
    sm3 TEXT,
    staged_at TEXT,
    reason TEXT,
    done_bytes INTEGER NOT NULL DEFAULT 0,
    repair TEXT,
    UNIQUE (docking_uid, relpath)
);
CREATE INDEX IF NOT EXISTS files_by_state ON files (docking_uid, state);
-- Signed chain heads of the station's custody chain (catalog.anchors): the station's own
-- record of how far its chain had reached, out of reach of the catalog's owner.
CREATE TABLE IF NOT EXISTS anchors (
    station TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_hash TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (station, seq, event_hash)
);
"""


def now_text() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class JournalFile:
    id: int
    docking_uid: str
    relpath: bytes
    size: int
    mtime_ns: int
    state: FileState
    sha256: str | None
    sm3: str | None
    staged_at: str | None
    reason: str | None
    # JSON, set before a damaged held copy of the file's bytes is replaced: the digests
    # found and where the damaged bytes were kept; the registration's custody event
    # ``repaired`` reads it (also after a restart between the repair and the catalog).
    repair: str | None = None

    @property
    def digests(self) -> DigestPair | None:
        """Both digests once staged (None before)."""
        if self.sha256 is None or self.sm3 is None:
            return None
        return DigestPair.of_hex(self.sha256, self.sm3)


@dataclass(frozen=True)
class StagedMove:
    """One file's move to STAGED (see :meth:`Journal.staged_many`)."""

    file_id: int
    digests: DigestPair
    staged_at: str


@dataclass(frozen=True)
class JournalDocking:
    uid: str
    slot: str
    source_path: str
    serial: str | None
    identity: dict[str, Any]
    state: DockingState
    started_at: str
    updated_at: str
    waiting: str | None
    message: str | None


class Journal:
    """One SQLite connection shared by the station's threads, behind a lock."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a file marked STAGED or DONE stays so after a power cut.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        # Journals written before the repair column existed get it (SQLite adds it in
        # place; existing rows read NULL).
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
        if "repair" not in columns:
            self._db.execute("ALTER TABLE files ADD COLUMN repair TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args))

    # -- dockings ---------------------------------------------------------------------------

    def add_docking(self, d: JournalDocking) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO dockings VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    d.uid,
                    d.slot,
                    d.source_path,
                    d.serial,
                    json.dumps(d.identity, ensure_ascii=False),
                    d.state,
                    d.started_at,
                    d.updated_at,
                    d.waiting,
                    d.message,
                ),
            )

    def docking(self, uid: str) -> JournalDocking | None:
        rows = self._rows("SELECT * FROM dockings WHERE uid = ?", (uid,))
        return _docking(rows[0]) if rows else None

    def dockings(self, states: tuple[str, ...] | None = None) -> list[JournalDocking]:
        if states:
            marks = ",".join("?" * len(states))
            rows = self._rows(
                f"SELECT * FROM dockings WHERE state IN ({marks}) ORDER BY started_at", states
            )
        else:
            rows = self._rows("SELECT * FROM dockings ORDER BY started_at")
        return [_docking(r) for r in rows]

    def resumable(
        self, source_path: str, serial: str | None, exclude: set[str] | None = None
    ) -> JournalDocking | None:
        """An unfinished docking this recorder continues: same device, else same folder."""
        for d in reversed(self.dockings(UNFINISHED)):
            if (exclude and d.uid in exclude) or (d.message or "").startswith(SUPERSEDED):
                continue
            if serial is not None and d.serial == serial:
                return d
            if serial is None and d.serial is None and d.source_path == source_path:
                return d
        return None

    def superseded(self, uid: str, changed: list[str]) -> None:
        """The recorder changed a file this unfinished docking holds: it is never resumed
        (a new docking takes the recorder); its state stays, saying why."""
        message = f"{SUPERSEDED}: {', '.join(changed)} changed on the recorder afterwards"
        current = self.docking(uid)
        if current is not None and current.state == DockingState.OFFLOADING:
            self._move_docking(uid, DockingState.INCOMPLETE, message=message)
            return
        with self._tx() as db:
            db.execute(
                "UPDATE dockings SET message = ?, updated_at = ? WHERE uid = ?",
                (message, now_text(), uid),
            )

    def resumed(self, uid: str, *, source_path: str, slot: str) -> None:
        """Docked again before it finished: it goes on, from where the recorder is now."""
        self._move_docking(
            uid, DockingState.OFFLOADING, source_path=source_path, slot=slot, message=None
        )

    def finished(self, uid: str, *, state: DockingState, message: str | None) -> None:
        """The docking's outcome (SAFE_TO_CLEAR, INCOMPLETE or CLEARED), with its problems."""
        if state == DockingState.OFFLOADING:
            raise IllegalTransition(f"docking {uid}: OFFLOADING is not an outcome")
        self._move_docking(uid, state, waiting=None, message=message)

    def recorder_cleared(self, uid: str) -> None:
        """A docking safe to clear whose recorder was cleared (outside the station)."""
        self._move_docking(uid, DockingState.CLEARED)

    def waiting(self, uid: str, reason: str | None) -> None:
        """What the docking waits for (a service, disk space), or None: no longer waiting."""
        with self._tx() as db:
            db.execute(
                "UPDATE dockings SET waiting = ?, updated_at = ? WHERE uid = ?",
                (reason, now_text(), uid),
            )

    def _move_docking(self, uid: str, to: DockingState, **fields: Any) -> None:
        sets = "".join(f", {k} = ?" for k in fields)
        allowed = sorted(_DOCKING_MOVES[to])
        marks = ",".join("?" * len(allowed))
        with self._tx() as db:
            moved = db.execute(
                f"UPDATE dockings SET state = ?{sets}, updated_at = ? "
                f"WHERE uid = ? AND state IN ({marks})",
                (to.value, *fields.values(), now_text(), uid, *allowed),
            ).rowcount
            if moved != 1:
                row = db.execute("SELECT state FROM dockings WHERE uid = ?", (uid,)).fetchone()
                raise IllegalTransition(
                    f"docking {uid} is {row[0] if row else 'not in the journal'}: "
                    f"it cannot become {to.value}"
                )

    # -- files ------------------------------------------------------------------------------

    def add_files(self, uid: str, entries: list[tuple[bytes, int, int]]) -> None:
        """Record files seen on the recorder (relpath, size, mtime_ns); known ones are kept."""
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO files (docking_uid, relpath, size, mtime_ns, state) "
                "VALUES (?,?,?,?,?)",
                [(uid, rel, size, mtime, PENDING) for rel, size, mtime in entries],
            )

    def files(self, uid: str, states: tuple[str, ...] | None = None) -> list[JournalFile]:
        cols = (
            "id, docking_uid, relpath, size, mtime_ns, state, sha256, sm3, staged_at, "
            "reason, repair"
        )
        if states:
            marks = ",".join("?" * len(states))
            rows = self._rows(
                f"SELECT {cols} FROM files WHERE docking_uid = ? AND state IN ({marks}) "
                "ORDER BY id",
                (uid, *states),
            )
        else:
            rows = self._rows(f"SELECT {cols} FROM files WHERE docking_uid = ? ORDER BY id", (uid,))
        return [_file(r) for r in rows]

    def file(self, file_id: int) -> JournalFile:
        rows = self._rows(
            "SELECT id, docking_uid, relpath, size, mtime_ns, state, sha256, sm3, staged_at, "
            "reason, repair FROM files WHERE id = ?",
            (file_id,),
        )
        return _file(rows[0])

    def grew(self, file_id: int, *, size: int, mtime_ns: int) -> None:
        """A pending file found larger or newer than listed (still being written)."""
        self._move_files(
            [file_id], FileState.PENDING, {FileState.PENDING}, size=size, mtime_ns=mtime_ns
        )

    def staged(self, file_id: int, *, digests: DigestPair, staged_at: str) -> None:
        """Copied, hashed and fsynced in staging (a repair noted for an earlier staged
        copy is judged again for this one)."""
        self._move_files(
            [file_id],
            FileState.STAGED,
            sha256=digests.sha256.hex,
            sm3=digests.sm3.hex,
            staged_at=staged_at,
            repair=None,
        )

    def staged_many(self, moves: Sequence[StagedMove]) -> dict[int, IllegalTransition]:
        """Many files STAGED in one transaction (one commit, one fsync), for files staged
        at about the same moment. Each move is checked on its own, as :meth:`staged`
        checks it: a file that may not become STAGED is left as it is and its refusal
        returned (by journal id), and the others move."""
        if not moves:
            return {}
        ids = list(dict.fromkeys(m.file_id for m in moves))
        sources = {s.value for s in _FILE_MOVES[FileState.STAGED]}
        marks = ",".join("?" * len(ids))
        refused: dict[int, IllegalTransition] = {}
        with self._tx() as db:
            found = dict(
                db.execute(f"SELECT id, state FROM files WHERE id IN ({marks})", ids).fetchall()
            )
            rows = []
            for m in moves:
                if found.get(m.file_id) not in sources:
                    refused[m.file_id] = _refused(db, m.file_id, FileState.STAGED)
                    continue
                found[m.file_id] = FileState.STAGED.value  # a second move of it is refused
                rows.append(
                    (
                        FileState.STAGED.value,
                        m.digests.sha256.hex,
                        m.digests.sm3.hex,
                        m.staged_at,
                        m.file_id,
                    )
                )
            db.executemany(
                "UPDATE files SET state = ?, sha256 = ?, sm3 = ?, staged_at = ?, repair = NULL "
                "WHERE id = ?",
                rows,
            )
        return refused

    def repair_noted(self, file_id: int, repair: str) -> None:
        """Before a damaged held copy of a staged file's bytes is replaced: what was found
        (JSON), read by the registration's custody event ``repaired``."""
        self._move_files([file_id], FileState.STAGED, {FileState.STAGED}, repair=repair)

    def done(self, file_ids: Iterable[int]) -> None:
        """Stored, verified and registered: many files in one transaction (one commit, one
        fsync, for a batch registered together)."""
        self._move_files(file_ids, FileState.DONE)

    def cleared(self, file_id: int) -> None:
        """Deleted from the recorder, its stored copy checked again first."""
        self._move_files([file_id], FileState.CLEARED)

    def rejected(self, file_id: int, reason: str) -> None:
        """Not a recording to store (a link, a pipe, an empty file)."""
        self._move_files([file_id], FileState.REJECTED, reason=reason)

    def quarantined(self, file_id: int, reason: str) -> None:
        """Could not be taken: blocks SAFE_TO_CLEAR until the recorder is docked again."""
        self._move_files([file_id], FileState.QUARANTINED, reason=reason)

    def retry_quarantined(self, uid: str) -> None:
        """Docked again: what could not be taken last time gets another try."""
        with self._tx() as db:
            db.execute(
                "UPDATE files SET state = ?, reason = NULL WHERE docking_uid = ? AND state = ?",
                (FileState.PENDING.value, uid, FileState.QUARANTINED.value),
            )

    def _move_files(
        self,
        file_ids: Iterable[int],
        to: FileState,
        allowed: set[FileState] | frozenset[FileState] | None = None,
        **fields: Any,
    ) -> None:
        """Set ``to`` (and ``fields``) on files found in an allowed state, all or none."""
        ids = list(dict.fromkeys(file_ids))
        if not ids:
            return
        sources = {s.value for s in (_FILE_MOVES[to] if allowed is None else allowed)}
        sets = ", ".join(["state = ?", *(f"{k} = ?" for k in fields)])
        marks = ",".join("?" * len(ids))
        sql = f"UPDATE files SET {sets} WHERE id = ?"
        head = (to.value, *fields.values())
        with self._tx() as db:
            found = dict(
                db.execute(f"SELECT id, state FROM files WHERE id IN ({marks})", ids).fetchall()
            )
            for file_id in ids:
                if found.get(file_id) not in sources:
                    raise _refused(db, file_id, to)
            db.executemany(sql, [(*head, i) for i in ids])

    def progress(self, uid: str) -> dict[str, Any]:
        """Counts and bytes per state, for status views."""
        rows = self._rows(
            "SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE docking_uid = ? "
            "GROUP BY state",
            (uid,),
        )
        return {state: {"files": n, "bytes": b} for state, n, b in rows}

    def summary(self) -> JournalSummary:
        with self._lock:
            return _summary(self._db)

    # -- signed chain heads (catalog.anchors) -----------------------------------------------

    def add_anchor(self, head: ChainHead) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO anchors VALUES (?,?,?,?)",
                (head.station_id, head.seq, head.event_hash, head.to_line()),
            )

    def anchors(self, station_id: str | None = None, newest: int | None = None) -> list[ChainHead]:
        with self._lock:
            return _read_anchors(self._db, station_id, newest, str(self.path))


def _refused(db: sqlite3.Connection, file_id: int, to: FileState) -> IllegalTransition:
    row = db.execute("SELECT state, relpath FROM files WHERE id = ?", (file_id,)).fetchone()
    if row is None:
        return IllegalTransition(f"file {file_id} is not in the journal: it cannot become {to}")
    name = bytes(row[1]).decode("utf-8", errors="backslashreplace")
    return IllegalTransition(f"file {file_id}: {name} is {row[0]}: it cannot become {to}")


# -- a summary, for `liuhen doctor` ------------------------------------------------------------


@dataclass(frozen=True)
class JournalSummary:
    damage: str | None  # what SQLite's quick check found wrong, None when whole
    unfinished_dockings: int  # OFFLOADING or INCOMPLETE
    staged_files: int  # waiting for the store or the catalog


class JournalUnreadable(LiuhenError):
    """The journal could not be opened (``opening``) or read."""

    def __init__(self, message: str, *, opening: bool) -> None:
        super().__init__(message)
        self.opening = opening


def _summary(db: sqlite3.Connection) -> JournalSummary:
    check = db.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        return JournalSummary(check, 0, 0)
    unfinished = [s.value for s in UNFINISHED]
    (open_dockings,) = db.execute(
        f"SELECT count(*) FROM dockings WHERE state IN ({','.join('?' * len(unfinished))})",
        unfinished,
    ).fetchone()
    (staged,) = db.execute(
        "SELECT count(*) FROM files WHERE state = ?", (FileState.STAGED.value,)
    ).fetchone()
    return JournalSummary(None, open_dockings, staged)


def read_summary(path: Path) -> JournalSummary:
    """The summary of the journal at ``path``, read-only (a check never writes to it)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        raise JournalUnreadable(f"{path}: cannot open: {exc}", opening=True) from exc
    try:
        return _summary(db)
    except sqlite3.Error as exc:
        raise JournalUnreadable(f"{path}: cannot read: {exc}", opening=False) from exc
    finally:
        db.close()


# -- signed chain heads (catalog.anchors) -----------------------------------------------------


def _read_anchors(
    db: sqlite3.Connection, station_id: str | None, newest: int | None, where: str
) -> list[ChainHead]:
    """Newest first, per station when ``newest`` is given."""
    sql = (
        "SELECT doc FROM (SELECT doc, row_number() OVER (PARTITION BY station ORDER BY "
        "seq DESC) AS n, seq FROM anchors WHERE (? IS NULL OR station = ?)) "
        "WHERE (? IS NULL OR n <= ?) ORDER BY seq DESC"
    )
    heads = []
    for (doc,) in db.execute(sql, (station_id, station_id, newest, newest)):
        try:
            heads.append(head_from_json(json.loads(doc), f"station journal {where}"))
        except ValueError:
            continue  # written by this code; a damaged row is simply not evidence
    return heads


def read_anchors(path: Path, newest: int = 16) -> list[ChainHead]:
    """The newest anchors of each station in a station journal, read-only (a verifier
    never creates a journal); none when there is no journal or it predates anchors."""
    if not path.is_file():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return _read_anchors(db, None, newest, str(path))
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def _docking(row: tuple[Any, ...]) -> JournalDocking:
    values = list(row)
    values[4] = json.loads(values[4])
    values[5] = DockingState(values[5])
    return JournalDocking(*values)


def _file(row: tuple[Any, ...]) -> JournalFile:
    values = list(row)
    values[5] = FileState(values[5])
    return JournalFile(*values)
