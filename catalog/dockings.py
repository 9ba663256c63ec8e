"""Catalog side of a docking: register dockings, offloaded files and their custody events.

Every function runs inside the caller's transaction and is idempotent, because a
station killed at any instruction replays its journal on restart: registering the same
file of the same docking again changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from catalog import queue
from catalog.bulk import BulkInsert
from catalog.custody import ChainBatch, append_event, table_of
from catalog.errors import DigestConflict, RecordingBeingExpired
from catalog.media import MEDIA_WORK_KINDS
from catalog.models import (
    Derivative,
    Device,
    Docking,
    DockingFile,
    Officer,
    Recording,
    WorkItem,
    utcnow,
)
from catalog.sightings import note_sightings
from catalog.signing import Signer
from catalog.states import RecordingState
from config.i18n import _
from storage.digest import DigestPair

T = TypeVar("T")


@dataclass(frozen=True)
class DockingInfo:
    uid: str
    slot: str
    source_path: str
    serial: str | None
    officer_number: str | None
    officer_name: str
    unit: str
    model: str
    identity_source: str
    identity_raw: dict[str, Any]
    started_at: datetime


@dataclass(frozen=True)
class OffloadedFile:
    relpath_raw: bytes
    size: int
    mtime: datetime | None
    digests: DigestPair  # of the recorder's bytes, as read when they were staged
    object_key: str
    captured_at: datetime | None
    staged_at: datetime
    verified_by: str  # how the stored copy was verified
    important: bool = False  # marked important on the recorder (kept until reviewed)
    # The held copy of these bytes was found damaged and replaced from this file: the
    # digests found ("sha256", "sm3") and the key keeping the damaged bytes ("kept_at").
    repaired: dict[str, str] | None = None

    @property
    def sha256(self) -> str:
        return self.digests.sha256.hex

    @property
    def sm3(self) -> str:
        return self.digests.sm3.hex


def repaired_details(f: OffloadedFile, docking_uid: str, name: str) -> dict[str, Any]:
    """The custody event ``repaired``: both digests of the bytes expected (the recorder's)
    and of those the store held, and where the damaged bytes are kept."""
    assert f.repaired is not None
    return {
        "key": f.object_key,
        "docking": docking_uid,
        "path": name,
        "expected": {"sha256": f.sha256, "sm3": f.sm3},
        "found": {"sha256": f.repaired["sha256"], "sm3": f.repaired["sm3"]},
        "damaged_copy": f.repaired["kept_at"],
        "method": f.verified_by,
    }


def path_key(relpath_raw: bytes) -> str:
    return hashlib.sha256(relpath_raw).hexdigest()


def display_name(relpath_raw: bytes) -> str:
    """Readable text for any name: invalid UTF-8 and control characters are escaped."""
    text = relpath_raw.decode("utf-8", errors="backslashreplace")
    if text.isprintable():  # the usual name: nothing to escape (one C call, not per char)
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _get_or_create(session: Session, model: type[T], where: Any, make: Callable[[], T]) -> T:
    """The row matching ``where``, created if missing; safe when another process races us.

    On PostgreSQL two stations (or two threads) may insert the same device at once; the
    loser's insert fails on the unique key inside a savepoint, and it reads the winner's.
    """
    row = session.scalars(select(model).where(where)).first()
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = make()
            session.add(row)
    except IntegrityError:
        row = session.scalars(select(model).where(where)).one()
    return row


def ensure_docking(session: Session, signer: Signer, info: DockingInfo, actor: str) -> Docking:
    docking = session.scalars(select(Docking).where(Docking.uid == info.uid)).first()
    if docking is not None:
        return docking
    device = None
    if info.serial:
        serial = info.serial
        device = _get_or_create(
            session,
            Device,
            Device.serial == serial,
            lambda: Device(serial=serial, model=info.model, unit=info.unit, registered=False),
        )
    officer = None
    if info.officer_number:
        number = info.officer_number
        officer = _get_or_create(
            session,
            Officer,
            Officer.number == number,
            lambda: Officer(number=number, name=info.officer_name, unit=info.unit),
        )
    docking = Docking(
        uid=info.uid,
        station_id=signer.station_id,
        device_id=device.id if device else None,
        officer_id=officer.id if officer else None,
        slot=info.slot,
        source_path=info.source_path,
        identity_source=info.identity_source,
        identity_raw=info.identity_raw,
        started_at=info.started_at,
    )
    session.add(docking)
    session.flush()
    flags = []
    if device is None or not device.registered:
        flags.append("unregistered-device" if device else "unknown-device")
    append_event(
        session,
        signer,
        actor=actor,
        action="docked",
        object_type="docking",
        object_id=info.uid,
        details={
            "slot": info.slot,
            "serial": info.serial,
            "officer": info.officer_number,
            "identity": info.identity_source,
            "flags": flags,
        },
        at=info.started_at,
    )
    return docking


@dataclass(frozen=True)
class DockingRef:
    """What registering files needs of their catalog docking; none of it changes once the
    docking exists, so one look-up serves a whole batch."""

    id: int
    uid: str
    device_id: int | None
    officer_id: int | None

    @classmethod
    def of(cls, docking: Docking) -> DockingRef:
        return cls(docking.id, docking.uid, docking.device_id, docking.officer_id)


# The batch's statements, built once: Core on the tables (no ORM entity loading), with
# expanding IN parameters, so that a batch pays for executing them and nothing else.
_DOCKINGS = table_of(Docking)
_FILES = table_of(DockingFile)
_RECORDINGS = table_of(Recording)
_DOCKING_REFS = select(
    _DOCKINGS.c.id,
    _DOCKINGS.c.uid,
    _DOCKINGS.c.device_id,
    _DOCKINGS.c.officer_id,
).where(_DOCKINGS.c.uid.in_(bindparam("uids", expanding=True)))
_KNOWN_FILES = select(
    _FILES.c.id,
    _FILES.c.docking_id,
    _FILES.c.path_key,
    _FILES.c.state,
).where(
    _FILES.c.docking_id.in_(bindparam("dockings", expanding=True)),
    _FILES.c.path_key.in_(bindparam("keys", expanding=True)),
)
# FOR UPDATE (PostgreSQL; SQLite's write transaction is the lock), in SHA-256 order.
_HELD = (
    select(
        _RECORDINGS.c.id,
        _RECORDINGS.c.sha256,
        _RECORDINGS.c.sm3,
        _RECORDINGS.c.size,
        _RECORDINGS.c.state,
        _RECORDINGS.c.original_name,
    )
    .where(_RECORDINGS.c.sha256.in_(bindparam("shas", expanding=True)))
    .order_by(_RECORDINGS.c.sha256)
    .with_for_update()
)
# The inserts of a batch go straight to the driver (catalog.bulk): Core's per-row work was
# a quarter of the committer's CPU for small files.
_RECORDING_COLUMNS = (
    "sha256",
    "sm3",
    "size",
    "object_key",
    "state",
    "original_name",
    "original_name_raw",
    "device_id",
    "officer_id",
    "docking_id",
    "captured_at",
    "received_at",
    "stored_at",
    "verified_at",
    "flags",
    "important",
)
_NEW_RECORDINGS = BulkInsert(_RECORDINGS, _RECORDING_COLUMNS)
_NEW_RECORDING_IDS = select(_RECORDINGS.c.id, _RECORDINGS.c.sha256).where(
    _RECORDINGS.c.sha256.in_(bindparam("shas", expanding=True))
)
_NEW_FILES = BulkInsert(
    _FILES,
    (
        "docking_id",
        "path_key",
        "relpath",
        "relpath_raw",
        "size",
        "mtime",
        "state",
        "recording_id",
    ),
)


def docking_refs(session: Session, uids: Iterable[str]) -> dict[str, DockingRef]:
    """The catalog dockings of these journal uids that exist, in one query."""
    rows = session.connection().execute(_DOCKING_REFS, {"uids": sorted(set(uids))})
    return {r.uid: DockingRef(r.id, r.uid, r.device_id, r.officer_id) for r in rows}


@dataclass(frozen=True)
class Registered:
    """What became of one file given to :func:`register_files`."""

    duplicate: bool = False  # its bytes were already held: linked, not stored again
    error: Exception | None = None  # not registered (nothing written for it); the rest were


@dataclass
class _Held:
    """A recording as the batch sees it: read at its start, or made by it (id None until
    the insert)."""

    id: int | None
    sm3: str
    size: int
    state: str
    original_name: str


def register_files(
    session: Session,
    signer: Signer,
    files: Sequence[tuple[DockingRef, OffloadedFile]],
    actor: str,
) -> list[Registered]:
    """Register many stored, verified files in ``session``'s transaction, with a few bulk
    statements instead of an ORM flush per row: the rows and custody events are those a
    registration of each file in turn would write (the tests keep that one-file version
    as their oracle), in the same order.

    Two look-ups for the whole batch (its docking-file rows; its recordings by SHA-256,
    locked on PostgreSQL), one insert of the new
    recordings (RETURNING their ids), one of the docking-file rows, one of the probe jobs
    and one of the custody events, whose chain is read once and linked in Python. The rare
    cases are handled as for one file: a path already registered in its docking is not
    registered again; bytes already held are linked as a duplicate (also when an earlier
    file of the batch holds them); an expired recording is revived; a file quarantined
    earlier and taken now updates its row.

    A file that cannot be registered now has its error in its result and nothing written
    for it, and the others are registered: bytes of a recording whose expiry is under way
    (RecordingBeingExpired: retry later), or a SHA-256 already held with another SM3 or
    size (DigestConflict). Any other error ends the transaction for the whole batch.
    """
    if not files:
        return []
    session.flush()  # what the ORM holds pending goes first: the rest is Core
    conn = session.connection()
    batch = _look_up(conn, files)
    now = utcnow()
    _decide(batch, now)
    if batch.new_rows:
        shas = sorted(batch.new_rows)  # inserted in SHA-256 order, as locked above
        _NEW_RECORDINGS.run(conn, [batch.new_rows[sha] for sha in shas])
        for rec_id, sha in conn.execute(_NEW_RECORDING_IDS, {"shas": shas}):
            batch.held[sha].id = rec_id
    _write(session, signer, actor, batch, now)
    duplicates = [batch.files[i] for i, how in batch.plan if how == "duplicate"]
    note_sightings(session, signer, duplicates, actor)
    return batch.outcome()


@dataclass
class _Batch:
    """A batch of files being registered, as :func:`register_files` works through it."""

    files: Sequence[tuple[DockingRef, OffloadedFile]]
    keys: list[str]  # each file's path_key
    known: dict[tuple[int, str], Any]  # its docking-file rows: (docking id, path key) → row
    todo: list[int]  # indexes of the files not registered before
    held: dict[str, _Held]  # recordings by SHA-256: read, or made by this batch
    results: list[Registered | None]
    plan: list[tuple[int, str]] = field(default_factory=list)  # (index, new|duplicate|revive)
    first: dict[tuple[int, str], int] = field(default_factory=dict)  # a file given twice
    new_rows: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # by SHA-256

    def outcome(self) -> list[Registered]:
        for i in self.todo:  # a file given twice: as its first
            if self.results[i] is None:
                d, _f = self.files[i]
                self.results[i] = self.results[self.first[(d.id, self.keys[i])]]
        assert all(r is not None for r in self.results)
        return [r for r in self.results if r is not None]


def _look_up(conn: Any, files: Sequence[tuple[DockingRef, OffloadedFile]]) -> _Batch:
    """The batch's two look-ups: its docking-file rows (a path registered before is not
    registered again) and its recordings by SHA-256 (locked, in SHA-256 order, so that
    two stations' batches cannot deadlock on them)."""
    results: list[Registered | None] = [None] * len(files)
    keys = [path_key(f.relpath_raw) for _d, f in files]
    known = {
        (r.docking_id, r.path_key): r
        for r in conn.execute(
            _KNOWN_FILES, {"dockings": sorted({d.id for d, _f in files}), "keys": sorted(set(keys))}
        )
    }
    todo = [
        i
        for i, ((d, _f), key) in enumerate(zip(files, keys, strict=True))
        if (r := known.get((d.id, key))) is None or r.state in ("REJECTED", "QUARANTINED")
    ]
    for i in set(range(len(files))) - set(todo):  # registered before: nothing to do
        results[i] = Registered(duplicate=known[(files[i][0].id, keys[i])].state == "DUPLICATE")
    shas = sorted({files[i][1].sha256 for i in todo})
    held = {
        r.sha256: _Held(r.id, r.sm3, r.size, r.state, r.original_name)
        for r in (conn.execute(_HELD, {"shas": shas}) if shas else ())
    }
    return _Batch(files, keys, known, todo, held, results)


def _decide(batch: _Batch, now: datetime) -> None:
    """Decide, file after file, what each one is (new, a duplicate, or an expired
    recording revived); the batch's own new recordings count."""
    for i in batch.todo:
        d, f = batch.files[i]
        if (d.id, batch.keys[i]) in batch.first:
            continue
        name = display_name(f.relpath_raw)
        rec = batch.held.get(f.sha256)
        if rec is not None and rec.state == RecordingState.EXPIRING:
            assert rec.id is not None
            batch.results[i] = Registered(error=_being_expired(name, rec.id))
            continue
        if rec is not None and (rec.sm3 != f.sm3 or rec.size != f.size):
            batch.results[i] = Registered(error=_digest_conflict(name, f.sha256))
            continue
        batch.first[(d.id, batch.keys[i])] = i
        if rec is None:
            batch.held[f.sha256] = _Held(
                None, f.sm3, f.size, RecordingState.STORED, name.rsplit("/", 1)[-1]
            )
            batch.new_rows[f.sha256] = _recording_row(d, f, name, now)
            batch.plan.append((i, "new"))
        elif rec.state == RecordingState.EXPIRED:
            rec.state = (
                RecordingState.STORED
            )  # held again from here on: later copies are duplicates
            batch.plan.append((i, "revive"))
        else:
            batch.plan.append((i, "duplicate"))


def _recording_row(d: DockingRef, f: OffloadedFile, name: str, now: datetime) -> tuple[Any, ...]:
    """A new recording's values, in the order of ``_RECORDING_COLUMNS``."""
    return (
        f.sha256,
        f.sm3,
        f.size,
        f.object_key,
        RecordingState.STORED.value,  # plain text for the driver
        name.rsplit("/", 1)[-1],
        f.relpath_raw,
        d.device_id,
        d.officer_id,
        d.id,
        f.captured_at,
        f.staged_at,
        now,
        now,
        _name_flags(name, f.relpath_raw),
        f.important,
    )


def _write(session: Session, signer: Signer, actor: str, batch: _Batch, now: datetime) -> None:
    """The planned files' docking-file rows, probe jobs and custody events, in bulk."""
    conn = session.connection()
    chain = ChainBatch(session, signer)  # after every ORM append of this transaction
    file_rows: list[tuple[Any, ...]] = []
    probes: list[str] = []
    for i, how in batch.plan:
        d, f = batch.files[i]
        rec = batch.held[f.sha256]
        assert rec.id is not None
        name = display_name(f.relpath_raw)
        if how == "revive":
            recording = session.get(Recording, rec.id)
            assert recording is not None
            _revive(session, recording, d.id, f, now)
        elif how == "new":
            probes.append(str(rec.id))  # media work is queued with the registration
        state = "DUPLICATE" if how == "duplicate" else "STORED"
        earlier = batch.known.get((d.id, batch.keys[i]))
        if earlier is not None:  # quarantined on an earlier try, taken now
            conn.execute(
                update(_FILES)
                .where(_FILES.c.id == earlier.id)
                .values(size=f.size, mtime=f.mtime, reason=None, recording_id=rec.id, state=state)
            )
        else:
            file_rows.append(
                (d.id, batch.keys[i], name, f.relpath_raw, f.size, f.mtime, state, rec.id)
            )
        _chain_events(chain, actor, d.uid, f, name, how, rec)
        batch.results[i] = Registered(duplicate=how == "duplicate")
    _NEW_FILES.run(conn, file_rows)
    queue.enqueue_many(session, "probe", probes)
    chain.flush()


def _chain_events(
    chain: ChainBatch,
    actor: str,
    docking_uid: str,
    f: OffloadedFile,
    name: str,
    how: str,
    rec: _Held,
) -> None:
    """A registered file's custody events, in the order one file's registration writes
    them: offloaded, repaired (if it replaced a damaged copy), then duplicate-linked, or
    restored-after-expiry (if revived), stored, verified and marked-important."""

    def add(action: str, details: dict[str, Any], at: datetime | None = None) -> None:
        chain.add(
            actor=actor,
            action=action,
            object_type="recording",
            object_id=f.sha256,
            details=details,
            at=at,
        )

    common = {"docking": docking_uid, "path": name, "size": f.size}
    add("offloaded", common | {"sm3": f.sm3}, f.staged_at)
    if f.repaired is not None:
        add("repaired", repaired_details(f, docking_uid, name))
    if how == "duplicate":
        add("duplicate-linked", common | {"recording": rec.id})
        return
    if how == "revive":
        add("restored-after-expiry", {"recording": rec.id, "docking": docking_uid})
    add("stored", {"key": f.object_key})
    add("verified", {"method": f.verified_by})
    if f.important:  # kept until reviewed: the chain says why (as after the probe)
        add("marked-important", {"source": "file-name", "name": rec.original_name})


def _name_flags(name: str, relpath_raw: bytes) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    if name != relpath_raw.decode("utf-8", errors="replace") or len(name) > 255:
        flags["unsafe_name"] = True
    return flags


def _being_expired(name: str, recording_id: int) -> RecordingBeingExpired:
    return RecordingBeingExpired(
        _(
            "{name}: its bytes are those of recording {id}, whose expiry is under way; the "
            "file is kept staged and registered when that has finished"
        ).format(name=name, id=recording_id),
        hint=_(
            "the station retries by itself; if it keeps waiting, finish the expiry "
            "with `liuhen retention sweep --apply`"
        ),
    )


def _digest_conflict(name: str, sha256: str) -> DigestConflict:
    # Same SHA-256, different SM3 or size: impossible for honest bytes. Refuse loudly.
    return DigestConflict(
        _("{name}: SHA-256 {sha256} already held with a different SM3/size").format(
            name=name, sha256=sha256
        )
    )


def _revive(
    session: Session, rec: Recording, docking_id: int, f: OffloadedFile, now: datetime
) -> None:
    """Hold again the bytes of an expired, deleted recording that came back on a recorder.

    They were offloaded and stored again just now, so they are evidence in hand: the
    recording is live again (its tombstone stays, as history) and goes through the
    probe and derivatives again; the derivative rows of before point at deleted objects
    (the tombstone lists them) and are dropped, so they are made anew.
    """
    for d in session.scalars(select(Derivative).where(Derivative.recording_id == rec.id)):
        session.delete(d)
    rec.state = RecordingState.STORED
    rec.object_key = f.object_key
    rec.docking_id = docking_id
    rec.received_at = f.staged_at
    rec.stored_at = rec.verified_at = now
    rec.important = rec.important or f.important
    rec.reviewed_at = None
    rec.retain_until = None
    rec.flags = {k: v for k, v in (rec.flags or {}).items() if k != "expiry"} | {
        "restored_after_expiry": f.staged_at.isoformat()
    }
    for item in session.scalars(
        select(WorkItem).where(WorkItem.subject == str(rec.id), WorkItem.kind.in_(MEDIA_WORK_KINDS))
    ):
        session.delete(item)
    session.flush()
    queue.enqueue(session, "probe", str(rec.id))


def record_problem_file(
    session: Session,
    signer: Signer,
    docking: Docking,
    relpath_raw: bytes,
    size: int,
    state: str,
    reason: str,
    actor: str,
) -> None:
    """A file that was not stored (rejected or quarantined), with the reason, once."""
    key = path_key(relpath_raw)
    row = session.scalars(
        select(DockingFile).where(DockingFile.docking_id == docking.id, DockingFile.path_key == key)
    ).first()
    if row is not None:
        if row.state == state and row.reason == reason:
            return
        row.state, row.reason = state, reason
    else:
        session.add(
            DockingFile(
                docking_id=docking.id,
                path_key=key,
                relpath=display_name(relpath_raw),
                relpath_raw=relpath_raw,
                size=size,
                state=state,
                reason=reason,
            )
        )
    session.flush()
    append_event(
        session,
        signer,
        actor=actor,
        action=state.lower(),
        object_type="docking-file",
        object_id=f"{docking.uid}/{key[:16]}",
        details={"path": display_name(relpath_raw), "reason": reason},
    )


def finish_docking(
    session: Session,
    signer: Signer,
    docking: Docking,
    state: str,
    *,
    files: int,
    size: int,
    problems: dict[str, Any],
    actor: str,
) -> None:
    if docking.state == state:
        return
    docking.state = state
    docking.files_total = files
    docking.bytes_total = size
    docking.problems = problems
    docking.finished_at = utcnow()
    append_event(
        session,
        signer,
        actor=actor,
        action=state.lower().replace("_", "-"),
        object_type="docking",
        object_id=docking.uid,
        details={"files": files, "bytes": size, "problems": len(problems)},
    )


def mark_cleared(
    session: Session,
    signer: Signer,
    docking: Docking,
    relpath_raw: bytes,
    sha256: str,
    actor: str,
) -> None:
    row = session.scalars(
        select(DockingFile).where(
            DockingFile.docking_id == docking.id, DockingFile.path_key == path_key(relpath_raw)
        )
    ).one()
    if row.state == "CLEARED":
        return
    row.state = "CLEARED"
    append_event(
        session,
        signer,
        actor=actor,
        action="cleared-from-recorder",
        object_type="recording",
        object_id=sha256,
        details={"docking": docking.uid, "path": row.relpath},
    )
