"""The custody log: append-only, hash-chained, signed events, one chain per station.

Each event's canonical bytes (sorted-key compact JSON of its fields, UTF-8) are hashed
with SHA-256 and signed with the acting station's Ed25519 key; each event carries the
hash of the station's previous event. The canonical form includes the sequence number,
the previous hash and the key id, so editing, deleting, inserting or reordering a row,
or swapping a key, breaks a hash, a signature or the sequence.

Events are appended inside the caller's transaction, so a state change and its custody
event commit together or not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from catalog.canonical import FORMAT_VERSION as FORMAT_VERSION
from catalog.canonical import GENESIS as GENESIS
from catalog.canonical import canonical_bytes as canonical_bytes
from catalog.canonical import canonical_json as canonical_json
from catalog.canonical import format_time as format_time
from catalog.models import CustodyEvent, SigningKey, Station
from catalog.signing import Signer, key_id_of, verify_signature


def event_bytes(ev: CustodyEvent) -> bytes:
    return canonical_bytes(
        station_id=ev.station_id,
        seq=ev.seq,
        at=ev.at,
        actor=ev.actor,
        action=ev.action,
        object_type=ev.object_type,
        object_id=ev.object_id,
        details=ev.details,
        prev_hash=ev.prev_hash,
        key_id=ev.key_id,
    )


def register_station(
    session: Session, signer: Signer, *, name: str = "", unit: str = "", role: str = "station"
) -> bool:
    """Record the station and its public key; idempotent. True when the key is new."""
    station = session.get(Station, signer.station_id)
    if station is None:
        session.add(Station(id=signer.station_id, name=name, unit=unit, role=role))
        session.flush()
    elif (name and station.name != name) or (unit and station.unit != unit):
        station.name = name or station.name
        station.unit = unit or station.unit
    if session.get(SigningKey, signer.key_id) is not None:
        return False
    session.add(
        SigningKey(key_id=signer.key_id, station_id=signer.station_id, public_key=signer.public_key)
    )
    session.flush()
    append_event(
        session,
        signer,
        actor=f"station:{signer.station_id}",
        action="key-registered",
        object_type="key",
        object_id=signer.key_id,
        details={"public_key": signer.public_key.hex(), "role": role},
    )
    return True


def table_of(model: type[Any]) -> Table:
    """The Core table of a mapped class, for bulk statements without the ORM's per-row work."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def append_event(
    session: Session,
    signer: Signer,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> CustodyEvent:
    """Append one signed event to the signer's station chain, in ``session``'s transaction."""
    seq, prev = _lock_and_read_head(session, signer.station_id)
    fields = _signed_fields(signer, signer.key_id, seq, prev, actor=actor, action=action,
                            object_type=object_type, object_id=object_id, details=details, at=at)
    ev = CustodyEvent(**fields)
    session.add(ev)
    session.flush()
    return ev


def _lock_and_read_head(session: Session, station_id: str) -> tuple[int, str]:
    """The next sequence number and the previous hash of the station's chain, with the
    chain locked against other appenders until the caller's transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        # Serialise appends per station across processes: the row lock is held until
        # the caller's transaction ends, so two appends cannot fork the chain.
        # FOR NO KEY UPDATE, not FOR UPDATE: inserting a row that references the station
        # (a docking, an event) takes FOR KEY SHARE on it, which FOR UPDATE conflicts
        # with; two transactions that each inserted one then deadlocked upgrading to FOR
        # UPDATE (seen in the district simulation). NO KEY UPDATE still excludes itself.
        session.execute(select(Station.id).where(Station.id == station_id)
                        .with_for_update(key_share=True))
    # (On SQLite the caller's write transaction, BEGIN IMMEDIATE, is the lock.)
    head = session.execute(
        select(CustodyEvent.seq, CustodyEvent.event_hash)
        .where(CustodyEvent.station_id == station_id)
        .order_by(CustodyEvent.seq.desc())
        .limit(1)
    ).first()
    return (head[0] + 1, head[1]) if head else (1, GENESIS)


def _signed_fields(
    signer: Signer, key_id: str, seq: int, prev: str, *, actor: str, action: str,
    object_type: str, object_id: str, details: Mapping[str, Any] | None, at: datetime | None,
) -> dict[str, Any]:
    """The columns of one event: its canonical fields, their hash and signature."""
    fields: dict[str, Any] = {
        "station_id": signer.station_id,
        "seq": seq,
        "at": format_time(at or datetime.now(UTC)),
        "actor": actor,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "details": canonical_json(dict(details or {})),
        "prev_hash": prev,
        "key_id": key_id,
    }
    data = canonical_bytes(**fields)
    fields["event_hash"] = hashlib.sha256(data).hexdigest()
    fields["signature"] = signer.sign(data).hex()
    return fields


class ChainBatch:
    """Many events appended to the signer's chain in one go, in ``session``'s transaction.

    The chain head is locked and read once, each event is linked to the one before it in
    Python, and :meth:`flush` inserts them all with one executemany. The events are the
    same, byte for byte, as the same calls of :func:`append_event` would write. Between
    creating a batch and flushing it nothing else may append to this station's chain in
    the same transaction (it would read a head the batch has moved on from); the lock
    keeps other transactions out.
    """

    def __init__(self, session: Session, signer: Signer) -> None:
        self._session = session
        self._signer = signer
        self._key_id = signer.key_id  # a property that hashes the key: once, not per event
        session.flush()  # an ORM-appended event still pending would be missed as the head
        # Once per batch, so append_event's own lock and head read serve.
        self._seq, self._prev = _lock_and_read_head(session, signer.station_id)
        self._rows: list[dict[str, Any]] = []

    def add(
        self,
        *,
        actor: str,
        action: str,
        object_type: str,
        object_id: str,
        details: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        fields = _signed_fields(self._signer, self._key_id, self._seq, self._prev, actor=actor,
                                action=action, object_type=object_type, object_id=object_id,
                                details=details, at=at)
        self._rows.append(fields)
        self._seq += 1
        self._prev = fields["event_hash"]

    def __len__(self) -> int:
        return len(self._rows)

    def flush(self) -> None:
        """Insert the events added so far (Core executemany; no ORM objects)."""
        if self._rows:
            self._session.connection().execute(_INSERT_EVENTS, self._rows)
            self._rows = []


# ChainBatch's statements, built once (Core: no ORM work per batch).
_EVENTS = table_of(CustodyEvent)
_INSERT_EVENTS = insert(_EVENTS)


# -- verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    station_id: str
    seq: int | None
    event_id: int | None
    kind: str  # edited | bad-signature | unknown-key | untrusted-key | gap | broken-link | ...
    detail: str

    def describe(self) -> str:
        where = f"station {self.station_id}"
        if self.seq is not None:
            where += f" event #{self.seq}"
        if self.event_id is not None:
            where += f" (row id {self.event_id})"
        return f"{where}: {self.kind}: {self.detail}"


@dataclass
class CustodyReport:
    events: int = 0
    stations: dict[str, int] = field(default_factory=dict)  # station -> events checked
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "stations": self.stations,
            "problems": [p.__dict__ | {"message": p.describe()} for p in self.problems],
        }


def verify_chain(
    session: Session,
    *,
    trusted: Mapping[str, Iterable[str]] | None = None,
    station_id: str | None = None,
) -> CustodyReport:
    """Walk every station's chain and report every broken link, not just the first.

    ``trusted`` pins, per station, the key ids the verifier accepts from outside the
    catalog (the station's own key file, an auditor's key ring): a key row replaced in
    the database, even with every event re-signed, is then caught.
    """
    report = CustodyReport()
    keys: dict[str, SigningKey] = {}
    for k in session.scalars(select(SigningKey)):
        keys[k.key_id] = k
        if key_id_of(k.public_key) != k.key_id:
            report.problems.append(
                Problem(
                    k.station_id,
                    None,
                    None,
                    "key-mismatch",
                    f"public key stored under {k.key_id} does not match that id "
                    "(the key row was replaced)",
                )
            )
    pinned = {s: set(ids) for s, ids in (trusted or {}).items()}

    query = select(CustodyEvent).order_by(CustodyEvent.station_id, CustodyEvent.seq)
    if station_id is not None:
        query = query.where(CustodyEvent.station_id == station_id)
    current: str | None = None
    expect_seq, prev_hash = 1, GENESIS
    for ev in session.scalars(query.execution_options(yield_per=2000)):
        if ev.station_id != current:
            current, expect_seq, prev_hash = ev.station_id, 1, GENESIS
            report.stations[current] = 0
        report.events += 1
        report.stations[current] += 1
        _check_event(ev, expect_seq, prev_hash, keys, pinned, report.problems)
        expect_seq, prev_hash = ev.seq + 1, ev.event_hash
    for sid in pinned:
        if sid not in report.stations and (station_id is None or sid == station_id):
            report.problems.append(
                Problem(sid, None, None, "missing-chain", "no custody events for a trusted station")
            )
    return report


def _check_event(
    ev: CustodyEvent,
    expect_seq: int,
    prev_hash: str,
    keys: Mapping[str, SigningKey],
    pinned: Mapping[str, set[str]],
    problems: list[Problem],
) -> None:
    def problem(kind: str, detail: str) -> None:
        problems.append(Problem(ev.station_id, ev.seq, ev.id, kind, detail))

    if ev.seq > expect_seq:
        problem("gap", f"events #{expect_seq}..#{ev.seq - 1} are missing (deleted rows?)")
    elif ev.seq < expect_seq:
        problem("duplicate", f"sequence number {ev.seq} repeats")
    if ev.prev_hash != prev_hash:
        problem(
            "broken-link",
            "does not follow the previous event (a row was inserted, deleted or reordered)",
        )
    data = event_bytes(ev)
    if hashlib.sha256(data).hexdigest() != ev.event_hash:
        problem(
            "edited",
            f"content does not match its hash (action {ev.action!r} on "
            f"{ev.object_type} {ev.object_id})",
        )
    key = keys.get(ev.key_id)
    if key is None:
        problem("unknown-key", f"signed by {ev.key_id}, which the catalog does not know")
        return
    if key.station_id != ev.station_id:
        problem("unknown-key", f"signed by {ev.key_id}, a key of station {key.station_id}")
    if ev.station_id in pinned and ev.key_id not in pinned[ev.station_id]:
        problem(
            "untrusted-key",
            f"signed by {ev.key_id}, which is not a trusted key of the station (key replaced?)",
        )
    try:
        signature = bytes.fromhex(ev.signature)
    except ValueError:
        signature = b""
    if not verify_signature(key.public_key, signature, data):
        problem("bad-signature", f"signature does not verify with {ev.key_id}")
