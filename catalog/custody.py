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
from operator import itemgetter
from typing import Any

from sqlalchemy import ColumnElement, Table, func, select
from sqlalchemy.orm import Session

from catalog.bulk import BulkInsert
from catalog.canonical import FORMAT_VERSION as FORMAT_VERSION
from catalog.canonical import GENESIS as GENESIS
from catalog.canonical import canonical_bytes as canonical_bytes
from catalog.canonical import canonical_json as canonical_json
from catalog.canonical import format_time as format_time
from catalog.chainrule import (
    EVENT_FIELDS,
    KEY_RETIRED,
    ChainChecker,
    ChainHead,
    Issue,
    Key,
    Trust,
    check_heads,
    compare_heads,
    key_issues,
    kind_label,
    retired_text,
    with_retirements,
)
from catalog.errors import CatalogError
from catalog.models import CustodyEvent, SigningKey, Station
from catalog.signing import Signer
from config.i18n import _

# The actions of the access audit (access/audit.py): views, playbacks, downloads, logins…
# They are custody events of the same signed chain (one mechanism, one verifier), but not
# part of a recording's chain of custody as people read it: see :func:`not_access`.
ACCESS_NAMESPACE = "access."


def not_access() -> ColumnElement[bool]:
    """SQL condition: a custody event proper, not an access-audit event. Where a
    recording's custody history is shown (`liuhen show`, `verify FILE`, a bag's custody
    excerpt) access events are left out: they belong to the access report, read by
    auditors. An excerpt with them left out still verifies (only consecutive events of
    an excerpt must link, catalog.chainrule)."""
    return CustodyEvent.action.not_like(ACCESS_NAMESPACE + "%")


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


def retire_key(
    session: Session,
    signer: Signer,
    key_id: str,
    *,
    actor: str,
    reason: str,
    at: datetime | None = None,
) -> tuple[SigningKey, bool]:
    """Set a key's ``retired_at`` and record it as a ``key-retired`` event signed by
    ``signer``; from then on every event the key signs is reported (catalog.chainrule).
    Idempotent (False when it was retired already). The key the signer itself uses cannot
    be retired this way: rotate to a new key first (docs/operations.md)."""
    key = session.get(SigningKey, key_id)
    if key is None:
        raise CatalogError(
            _("no signing key {key} in the catalog").format(key=key_id),
            hint=_("liuhen custody verify --json lists the keys events name"),
        )
    if key_id == signer.key_id:
        raise CatalogError(
            _(
                "{key} is the key this host signs with; retiring it would "
                "make its own events invalid"
            ).format(key=key_id),
            hint=_(
                "rotate this host to a new key first (docs/operations.md, "
                "'Signing-key rotation'), then retire the old one"
            ),
        )
    if key.retired_at is not None:
        return key, False
    when = at or datetime.now(UTC)
    key.retired_at = when
    append_event(
        session,
        signer,
        actor=actor,
        action=KEY_RETIRED,
        object_type="key",
        object_id=key_id,
        details={"station": key.station_id, "reason": reason, "retired_at": format_time(when)},
    )
    return key, True


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
    fields, data = _chained_fields(
        signer,
        signer.key_id,
        seq,
        prev,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        details=details,
        at=at,
    )
    fields["signature"] = signer.sign(data).hex()
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
        session.execute(
            select(Station.id).where(Station.id == station_id).with_for_update(key_share=True)
        )
    # (On SQLite the caller's write transaction, BEGIN IMMEDIATE, is the lock.)
    head = session.execute(
        select(CustodyEvent.seq, CustodyEvent.event_hash)
        .where(CustodyEvent.station_id == station_id)
        .order_by(CustodyEvent.seq.desc())
        .limit(1)
    ).first()
    return (head[0] + 1, head[1]) if head else (1, GENESIS)


def _chained_fields(
    signer: Signer,
    key_id: str,
    seq: int,
    prev: str,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: Mapping[str, Any] | None,
    at: datetime | None,
) -> tuple[dict[str, Any], bytes]:
    """One event's canonical fields and hash (the chain links by the hash, which the
    signature is not part of), and the bytes to sign."""
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
    return fields, data


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
        self._unsigned: list[bytes] = []  # the canonical bytes of the rows, signed at flush

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
        fields, data = _chained_fields(
            self._signer,
            self._key_id,
            self._seq,
            self._prev,
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            details=details,
            at=at,
        )
        self._rows.append(fields)
        self._unsigned.append(data)
        self._seq += 1
        self._prev = fields["event_hash"]

    def __len__(self) -> int:
        return len(self._rows)

    def flush(self) -> None:
        """Sign the events added so far, all at once (spread over the cores where
        libsodium signs), and insert them (Core executemany; no ORM objects)."""
        if self._rows:
            signatures = self._signer.sign_many(self._unsigned)
            for row, signature in zip(self._rows, signatures, strict=True):
                row["signature"] = signature.hex()
            _INSERT_EVENTS.run(
                self._session.connection(),
                list(map(_EVENT_VALUES, self._rows)),
            )
            self._rows, self._unsigned = [], []  # together: a failed insert keeps both


# ChainBatch's insert, straight to the driver (catalog.bulk: no per-row Core work).
_EVENTS = table_of(CustodyEvent)
_EVENT_COLUMNS = EVENT_FIELDS  # the fields of an event are the columns of its row
_INSERT_EVENTS = BulkInsert(_EVENTS, _EVENT_COLUMNS)
_EVENT_VALUES = itemgetter(*_EVENT_COLUMNS)


# -- verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    station_id: str
    seq: int | None
    event_id: int | None
    kind: str  # see catalog.chainrule: edited, bad-signature, gap, truncated, rollback, ...
    detail: str

    def describe(self) -> str:
        if not self.station_id:  # an anchor that could not even be read names no station
            return _("{kind}: {detail}").format(kind=kind_label(self.kind), detail=self.detail)
        where = _("station {station}").format(station=self.station_id)
        if self.seq is not None:
            where += _(" event #{seq}").format(seq=self.seq)
        if self.event_id is not None:
            where += _(" (row id {id})").format(id=self.event_id)
        return _("{where}: {kind}: {detail}").format(
            where=where, kind=kind_label(self.kind), detail=self.detail
        )


@dataclass
class CustodyReport:
    events: int = 0
    stations: dict[str, int] = field(default_factory=dict)  # station -> events checked
    problems: list[Problem] = field(default_factory=list)
    # Station -> the highest event number a signed chain head (anchor) vouches for.
    last_anchored: dict[str, int] = field(default_factory=dict)
    heads_verified: int = 0  # chain heads read whose signature verified (forged ones are not)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "stations": self.stations,
            "last_anchored": self.last_anchored,
            "chain_heads_verified": self.heads_verified,
            "problems": [p.__dict__ | {"message": p.describe()} for p in self.problems],
        }


def verify_chain(
    session: Session,
    *,
    trusted: Mapping[str, Iterable[str]] | None = None,
    station_id: str | None = None,
    ring: bool = False,
    anchors: Iterable[ChainHead] | None = None,
) -> CustodyReport:
    """Walk every station's chain and report every broken link, not just the first.

    ``trusted`` pins, per station, the key ids the verifier accepts from outside the
    catalog (the station's own key file, an auditor's key ring): a key row replaced in
    the database, even with every event re-signed, is then caught. ``ring``: an auditor's
    key ring was given, so a station it does not name is untrusted. ``anchors``: signed
    chain heads kept outside the catalog (:func:`check_anchors`). The rule itself is
    :mod:`catalog.chainrule`, shared with the bag verifiers.
    """
    report = CustodyReport()
    trust = Trust.of(trusted, ring)
    keys = catalog_keys(session)
    report.problems += [
        _problem(i)
        for i in key_issues(keys.values())
        if station_id is None or i.station_id == station_id
    ]
    checker = ChainChecker(keys, trust, whole=True)
    query = select(CustodyEvent).order_by(CustodyEvent.station_id, CustodyEvent.seq)
    if station_id is not None:
        query = query.where(CustodyEvent.station_id == station_id)
    for ev in session.scalars(query.execution_options(yield_per=2000)):
        report.events += 1
        report.problems += [_problem(i, ev.id) for i in checker.check(ev)]
    report.stations = dict(checker.stations)
    report.problems += [
        _problem(i) for i in checker.finish() if station_id is None or i.station_id == station_id
    ]
    if anchors is not None:
        heads = [h for h in anchors if station_id is None or h.station_id == station_id]
        problems, report.last_anchored, report.heads_verified = check_anchors(
            session, heads, keys=keys, trust=trust
        )
        report.problems += problems
    return report


def catalog_keys(session: Session) -> dict[str, Key]:
    """Every signing key of the catalog, as the rule sees keys: retired as its row says
    or, when earlier, as its signed ``key-retired`` event says (a row can be edited)."""
    keys = {
        k.key_id: Key(k.key_id, k.station_id, k.public_key, retired_text(k.retired_at))
        for k in session.scalars(select(SigningKey))
    }
    return with_retirements(
        keys, session.scalars(select(CustodyEvent).where(CustodyEvent.action == KEY_RETIRED))
    )


def check_anchors(
    session: Session,
    heads: Iterable[ChainHead],
    *,
    keys: Mapping[str, Key] | None = None,
    trust: Trust | None = None,
) -> tuple[list[Problem], dict[str, int], int]:
    """Signed chain heads (anchors) kept outside the catalog against the catalog's chains:
    a head that does not verify, tail truncation, rollback, missing events, forks. The one
    check behind `custody verify`, `verify --district` and `doctor`; with the last
    anchored event number of each station and how many heads verified."""
    keys = catalog_keys(session) if keys is None else keys
    good, issues = check_heads(heads, keys, trust)
    found, last = compare_heads(good, _CatalogChains(session))
    return [_problem(i) for i in issues + found], last, len(good)


class _CatalogChains:
    """The catalog's chains as :func:`catalog.chainrule.compare_heads` reads them."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def last_seq(self, station_id: str) -> int:
        top = self._session.scalar(
            select(func.max(CustodyEvent.seq)).where(CustodyEvent.station_id == station_id)
        )
        return int(top or 0)

    def hashes(self, station_id: str, seqs: Iterable[int]) -> dict[int, str]:
        wanted = sorted(set(seqs))
        found: dict[int, str] = {}
        for i in range(0, len(wanted), 500):
            rows = self._session.execute(
                select(CustodyEvent.seq, CustodyEvent.event_hash).where(
                    CustodyEvent.station_id == station_id, CustodyEvent.seq.in_(wanted[i : i + 500])
                )
            )
            found.update({seq: h for seq, h in rows})
        return found


def _problem(issue: Issue, event_id: int | None = None) -> Problem:
    return Problem(issue.station_id, issue.seq, event_id, issue.kind, issue.detail)
