"""The station's local journal: durable state of every docking and file.

It lives on the station (SQLite beside the staging area), so offload goes on when the
catalog or the object store is unreachable, and a station killed at any instruction
resumes from it. The catalog is brought up to date from the journal when it is back.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from catalog.chainrule import ChainHead, head_from_json

# File states. PENDING: seen, not yet copied. STAGED: copied, hashed, fsynced in staging.
# DONE: stored, verified and in the catalog. CLEARED: also deleted from the recorder.
# REJECTED: not a recording to store (symlink, empty file ...). QUARANTINED: could not be
# taken (vanished, I/O error, still growing): blocks SAFE_TO_CLEAR.
PENDING, STAGED, DONE, CLEARED, REJECTED, QUARANTINED = (
    "PENDING",
    "STAGED",
    "DONE",
    "CLEARED",
    "REJECTED",
    "QUARANTINED",
)
OFFLOADING, SAFE_TO_CLEAR, INCOMPLETE = "OFFLOADING", "SAFE_TO_CLEAR", "INCOMPLETE"
# Docking state: nothing at all was found on the recorder (an empty or unmounted folder).
# Never safe to clear: 0 of 0 files stored proves nothing about what the recorder holds.
NO_FILES = "NO_FILES"
NO_FILES_MESSAGE = (
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
    state: str
    sha256: str | None
    sm3: str | None
    staged_at: str | None
    reason: str | None
    # JSON, set before a damaged held copy of the file's bytes is replaced: the digests
    # found and where the damaged bytes were kept; the registration's custody event
    # ``repaired`` reads it (also after a restart between the repair and the catalog).
    repair: str | None = None


@dataclass(frozen=True)
class JournalDocking:
    uid: str
    slot: str
    source_path: str
    serial: str | None
    identity: dict[str, Any]
    state: str
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
        for d in reversed(self.dockings((OFFLOADING, INCOMPLETE))):
            if exclude and d.uid in exclude:
                continue
            if serial is not None and d.serial == serial:
                return d
            if serial is None and d.serial is None and d.source_path == source_path:
                return d
        return None

    def set_docking(self, uid: str, **fields: Any) -> None:
        allowed = {"state", "waiting", "message", "source_path", "slot"}
        assert set(fields) <= allowed, fields
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as db:
            db.execute(
                f"UPDATE dockings SET {sets}, updated_at = ? WHERE uid = ?",
                (*fields.values(), now_text(), uid),
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
        return [JournalFile(*r) for r in rows]

    def file(self, file_id: int) -> JournalFile:
        rows = self._rows(
            "SELECT id, docking_uid, relpath, size, mtime_ns, state, sha256, sm3, staged_at, "
            "reason, repair FROM files WHERE id = ?",
            (file_id,),
        )
        return JournalFile(*rows[0])

    def set_file(self, file_id: int, **fields: Any) -> None:
        allowed = {
            "state",
            "sha256",
            "sm3",
            "staged_at",
            "reason",
            "size",
            "mtime_ns",
            "done_bytes",
            "repair",
        }
        assert set(fields) <= allowed, fields
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as db:
            db.execute(f"UPDATE files SET {sets} WHERE id = ?", (*fields.values(), file_id))

    def set_files(self, file_ids: Iterable[int], **fields: Any) -> None:
        """The same fields on many files in one transaction: one commit, one fsync, for a
        batch of files registered together (see Station: the batch is marked DONE at once)."""
        allowed = {"state", "reason"}
        assert set(fields) <= allowed, fields
        ids = list(file_ids)
        if not ids:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        values = tuple(fields.values())
        with self._tx() as db:
            db.executemany(f"UPDATE files SET {sets} WHERE id = ?", [(*values, i) for i in ids])

    def progress(self, uid: str) -> dict[str, Any]:
        """Counts and bytes per state, for status views."""
        rows = self._rows(
            "SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE docking_uid = ? "
            "GROUP BY state",
            (uid,),
        )
        return {state: {"files": n, "bytes": b} for state, n, b in rows}

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
    return JournalDocking(*values)
