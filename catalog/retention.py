"""How long each recording is kept, why, and expiry.

The rules (STANDARDS.md), first match wins:

1. a legal hold not yet released: never expires while held;
2. marked important on the device and not yet reviewed: kept until reviewed;
3. attached to cases: the longest of their periods (永久 never expires; 30年/10年 run
   from the case's closing, and an open case does not expire);
4. otherwise: ``retention.unattached_days`` from the later of capture and receipt (from
   receipt when the capture time is unknown or not yet checked), so that a recorder
   docked months late does not bring files already due for deletion.

Rule 4's period is also a floor for every recording. The sweep deletes only what rule
4 lets go: attached, held and important recordings are never deleted by it.

Objects are content-addressed: one object may be the original of one recording and a
derivative of others, or a derivative of several. An evidence object is deleted only
through :func:`delete_unreferenced`, the one rule: no recording or derivative in any
state short of EXPIRED names it. Whoever adds a reference to an object (a docking, a
worker) and whoever deletes it take the object's key lock (:func:`lock_object_keys`)
first, so the two never interleave (see there for what that guarantees).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select, text
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session

from catalog.custody import append_event
from catalog.db import Catalog
from catalog.errors import CatalogError, RecordingBeingExpired
from catalog.models import (
    Case,
    CaseRecording,
    Derivative,
    LegalHold,
    Recording,
    Tombstone,
    utcnow,
)
from catalog.signing import Signer
from catalog.states import LIVE_STATES, RecordingState
from config.errors import EXIT_USAGE
from config.i18n import N_, _
from config.settings import CHINA_STANDARD_TIME, RetentionSettings
from config.timetext import iso_time, show_time
from storage import ObjectNotFound, ObjectStore, StorageError
from storage.errors import RetentionRefused, StoreUnavailable

log = logging.getLogger("liuhen.retention")

PERMANENT = "永久"
PERIOD_YEARS = {"30年": 30, "10年": 10}


class RetentionError(CatalogError):
    """A hold, release or review that cannot be done as asked."""


class OriginalKept(RetentionRefused):
    """The store refused to delete the original of a recording whose expiry was decided
    (Object Lock, legal hold): nothing was deleted, and the decision is to be undone."""


class HoldNotNamed(RetentionError):
    """A release without --hold on a recording with several holds: which one is meant?"""

    exit_code = EXIT_USAGE


def lock_recording(session: Session, rec_id: int) -> Recording | None:
    """The recording, re-read and locked on PostgreSQL, so an attach, a hold or a probe and
    the sweep's deletion of the same recording happen one after the other, each seeing the
    other's outcome. (SQLite write transactions are serial already.)"""
    return session.get(
        Recording,
        rec_id,
        with_for_update=session.get_bind().dialect.name == "postgresql",
        populate_existing=True,
    )


def add_years(when: datetime, years: int) -> datetime:
    try:
        return when.replace(year=when.year + years)
    except ValueError:  # 29 February into a common year
        return when.replace(year=when.year + years, day=28)


@dataclass
class Decision:
    """Why a recording is kept, and until when (None: indefinitely)."""

    recording_id: int
    sha256: str
    name: str
    state: str
    rule: str  # legal-hold | important | case | unattached | expired
    keep_until: datetime | None
    expired: bool
    deletable: bool
    reasons: list[str] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    # Legal holds in force, and those lifted (history): each with its id, who, when, why.
    holds: list[dict[str, Any]] = field(default_factory=list)
    released_holds: list[dict[str, Any]] = field(default_factory=list)
    store_retain_until: datetime | None = None

    def as_dict(self, zone: tzinfo = UTC) -> dict[str, Any]:
        """For JSON: times ISO 8601 with the offset of ``zone`` (the station's)."""
        return {
            "recording": self.recording_id,
            "sha256": self.sha256,
            "name": self.name,
            "state": self.state,
            "rule": self.rule,
            "keep_until": iso_time(self.keep_until, zone),
            "expired": self.expired,
            "deletable": self.deletable,
            "reasons": self.reasons,
            "cases": self.cases,
            "holds": self.holds,
            "released_holds": self.released_holds,
            "store_retain_until": iso_time(self.store_retain_until, zone),
        }


def floor_since(rec: Recording) -> tuple[datetime, str]:
    """Where rule 4's period runs from: the later of capture and receipt. A recorder docked
    months after it recorded must not bring files already due for deletion: the minimum
    keep is for the people who look at what came in, so it runs from its arrival (and a
    recording restored after expiry counts from its new receipt). Before the probe (state
    STORED) the capture time is only the file name's, unchecked: a recorder whose clock was
    never set names files 1970, or far in the future; only the receipt counts then.
    :func:`_floor_since_sql` is the same rule in SQL."""
    # The text is English in the catalog's records (an expiry's reason); `explain` shows
    # it in the reader's language.
    if rec.state == RecordingState.STORED:
        return rec.received_at, N_("receipt (capture time not yet checked: not probed)")
    if rec.captured_at is None:
        return rec.received_at, N_("receipt (capture time unknown)")
    if rec.captured_at > rec.received_at:
        return rec.captured_at, N_("capture (later than receipt)")
    return rec.received_at, N_("receipt (later than capture)")


def _floor_since_sql() -> Any:
    """:func:`floor_since` as a SQL expression, for listing what is due."""
    return sql_case(
        (
            or_(Recording.state == RecordingState.STORED, Recording.captured_at.is_(None)),
            Recording.received_at,
        ),
        (Recording.captured_at > Recording.received_at, Recording.captured_at),
        else_=Recording.received_at,
    )


def floor_date(rec: Recording, policy: RetentionSettings) -> datetime:
    return floor_since(rec)[0] + timedelta(days=policy.unattached_days)


def case_keep_until(case: Case) -> datetime | None:
    """A case's own retention end: None while open or when permanent."""
    years = PERIOD_YEARS.get(case.retention)
    if years is None or case.status == "open":
        return None
    return add_years(case.closed_at or case.updated_at, years)


def explain(
    session: Session,
    rec: Recording,
    policy: RetentionSettings,
    now: datetime | None = None,
    zone: tzinfo = CHINA_STANDARD_TIME,
) -> Decision:
    """Which rule keeps ``rec``, until when, and the reasons in the reader's language
    (times in ``zone``, the station's)."""
    now = now or datetime.now(UTC)
    all_holds = list(
        session.scalars(
            select(LegalHold).where(LegalHold.recording_id == rec.id).order_by(LegalHold.id)
        )
    )
    # The fields every decision shares (Any: they go to Decision by keyword).
    base: dict[str, Any] = dict(
        recording_id=rec.id,
        sha256=rec.sha256,
        name=rec.original_name,
        state=rec.state,
        store_retain_until=rec.retain_until,
        released_holds=[_hold_dict(h) for h in all_holds if h.released_at is not None],
    )
    gone = _explain_gone(session, rec, base, zone)
    if gone is not None:
        return gone
    floor = floor_date(rec, policy)
    since = floor_since(rec)[1]
    reasons = [
        _("unattached minimum: {days} days from {since} → {until}").format(
            days=policy.unattached_days, since=_(since), until=show_time(floor, zone)
        )
    ]
    holds = [_hold_dict(h) for h in all_holds if h.released_at is None]
    cases = _attached_cases(session, rec)
    rule, keep_until = _rule_of(rec, all_holds, cases, floor, reasons, zone)
    expired = keep_until is not None and keep_until <= now
    deletable = expired and rule == "unattached" and rec.state in LIVE_STATES
    if expired and rule == "case":
        reasons.append(
            _(
                "the case periods have run out; attached recordings are disposed of "
                "with the case file, never by the sweep"
            )
        )
    return Decision(
        **base,
        rule=rule,
        keep_until=keep_until,
        expired=expired,
        deletable=deletable,
        reasons=reasons,
        cases=cases,
        holds=holds,
    )


def _explain_gone(
    session: Session, rec: Recording, base: dict[str, Any], zone: tzinfo
) -> Decision | None:
    """The decision for a recording already expired or being expired; None otherwise."""
    if rec.state == RecordingState.EXPIRED:
        stone = session.scalars(
            select(Tombstone).where(Tombstone.recording_id == rec.id).order_by(Tombstone.id.desc())
        ).first()  # the latest expiry
        why = (
            _("deleted at expiry on {at}: {reason}").format(
                at=show_time(stone.deleted_at, zone), reason=stone.reason
            )
            if stone
            else _("expired")
        )
        return Decision(
            **base,
            rule="expired",
            keep_until=stone.expired_at if stone else None,
            expired=True,
            deletable=False,
            reasons=[why],
        )
    if rec.state == RecordingState.EXPIRING:
        pending = (rec.flags or {}).get("expiry") or {}
        until = pending.get("keep_until")
        return Decision(
            **base,
            rule="expired",
            keep_until=datetime.fromisoformat(until) if until else None,
            expired=True,
            deletable=False,
            reasons=[
                _(
                    "deletion decided on {at} by {actor} ({reason}); not finished: the "
                    "next 'retention sweep --apply' completes it"
                ).format(
                    at=show_time(pending.get("decided_at"), zone),
                    actor=pending.get("actor"),
                    reason=pending.get("reason"),
                )
            ],
        )
    return None


def _attached_cases(session: Session, rec: Recording) -> list[dict[str, Any]]:
    """The cases the recording is attached to now, with each case's keep-until."""
    cases = []
    for cr, case in session.execute(
        select(CaseRecording, Case)
        .join(Case, Case.id == CaseRecording.case_id)
        .where(CaseRecording.recording_id == rec.id, CaseRecording.detached_at.is_(None))
    ):
        until = case_keep_until(case)
        cases.append(
            {
                "case": case.number,
                "retention": case.retention,
                "status": case.status,
                "method": cr.method,
                "keep_until": until.isoformat() if until else None,
            }
        )
    return cases


def _rule_of(
    rec: Recording,
    all_holds: list[LegalHold],
    cases: list[dict[str, Any]],
    floor: datetime,
    reasons: list[str],
    zone: tzinfo,
) -> tuple[str, datetime | None]:
    """Which rule keeps the recording, and until when (None: indefinitely); the reasons
    that rule gives go to the front of ``reasons``. Holds come first, then 'important'
    until reviewed, then the attached cases, then the unattached minimum."""
    holds = [h for h in all_holds if h.released_at is None]
    important = rec.important and rec.reviewed_at is None
    keep_until: datetime | None
    if holds:
        rule, keep_until = "legal-hold", None
        reasons[:0] = [
            _("legal hold ({count} in force): never expires while held").format(count=len(holds)),
            *(describe_hold(h, zone) for h in holds),
        ]
    elif important:
        rule, keep_until = "important", None
        reasons.insert(0, _("marked important on the device: kept until reviewed"))
    elif cases:
        rule = "case"
        ends = [case_keep_until_from(c) for c in cases]
        keep_until = (
            None
            if any(e is None for e in ends)
            else max([floor, *(e for e in ends if e is not None)])
        )
        for c in cases:
            end = (
                show_time(c["keep_until"], zone)
                if c["keep_until"]
                else "永久"
                if c["retention"] == PERMANENT
                else _("{retention} from closing (case is {status})").format(
                    retention=c["retention"], status=_(c["status"])
                )
            )
            reasons.insert(
                0,
                _("attached to {case} ({method}): {retention} → {end}").format(
                    case=c["case"],
                    method=_(_METHOD_TEXT.get(c["method"], c["method"])),
                    retention=c["retention"],
                    end=end,
                ),
            )
    else:
        rule, keep_until = "unattached", floor
    return rule, keep_until


# How a recording came to a case, as `explain` names it.
_METHOD_TEXT = {"rule": N_("by rule"), "manual": N_("by hand")}


def _hold_dict(h: LegalHold) -> dict[str, Any]:
    return {
        "id": h.id,
        "reason": h.reason,
        "by": h.placed_by,
        "at": h.placed_at.isoformat(),
        "released_at": h.released_at.isoformat() if h.released_at else None,
        "released_by": h.released_by,
        "release_reason": h.release_reason,
    }


def case_keep_until_from(c: dict[str, Any]) -> datetime | None:
    return datetime.fromisoformat(c["keep_until"]) if c["keep_until"] else None


# --- the store's own retention (S3 Object Lock) -------------------------------------------


def store_target(
    session: Session, rec: Recording, policy: RetentionSettings, now: datetime | None = None
) -> datetime | None:
    """The retain-until date the store should hold for an attached recording, or None.

    Permanent cases get ``permanent_years`` ahead; an N-year case N years from its
    closing (from now while open: the case file may only close later, so that is a floor
    the next attach or sync raises). The store can only extend, never shorten.
    """
    now = now or datetime.now(UTC)
    best: datetime | None = None
    for case in session.scalars(
        select(Case)
        .join(CaseRecording, CaseRecording.case_id == Case.id)
        .where(CaseRecording.recording_id == rec.id, CaseRecording.detached_at.is_(None))
    ):
        years = PERIOD_YEARS.get(case.retention)
        if years is None:
            until = add_years(now, policy.permanent_years)
        else:
            closed = case.closed_at if case.status != "open" else None
            until = add_years(closed or now, years)
        best = until if best is None or until > best else best
    return best


def sync_store_retention(
    session: Session, store: ObjectStore, rec: Recording, policy: RetentionSettings
) -> datetime | None:
    """Extend the original's retention in the store to what its cases need."""
    target = store_target(session, rec, policy)
    if target is None or (rec.retain_until is not None and rec.retain_until >= target):
        return rec.retain_until
    store.set_retention(rec.object_key, target)
    held = _store_lock(store, rec.object_key)
    if held is not None and (rec.retain_until is None or held > rec.retain_until):
        rec.retain_until = held
    return rec.retain_until


def sync_cases_store_retention(
    session: Session, store: ObjectStore, case_ids: list[int], policy: RetentionSettings
) -> int:
    """After cases closed: their N-year periods now run from the closing, later than the
    date pushed at attach time; extend their recordings' store retention to match."""
    if not case_ids:
        return 0
    rec_ids = sorted(
        set(
            session.scalars(
                select(CaseRecording.recording_id).where(
                    CaseRecording.case_id.in_(case_ids), CaseRecording.detached_at.is_(None)
                )
            )
        )
    )
    for rec_id in rec_ids:
        rec = lock_recording(session, rec_id)
        if rec is not None and rec.state in LIVE_STATES:
            sync_store_retention(session, store, rec, policy)
    return len(rec_ids)


def _store_lock(store: ObjectStore, key: str) -> datetime | None:
    """The date the store itself now holds (None: a directory store, an S3 bucket without
    Object Lock). The catalog records what is held: the target, or the latest date the
    server keeps when the target is later (storage.s3.MAX_RETAIN_UNTIL)."""
    return store.head(key).retain_until


# --- holds and reviews ----------------------------------------------------------------


def hold(
    session: Session,
    signer: Signer,
    store: ObjectStore | None,
    rec: Recording,
    *,
    reason: str,
    actor: str,
) -> LegalHold:
    if not reason.strip():
        raise RetentionError(_("a legal hold needs a reason"), hint=_("give --reason TEXT"))
    rec = lock_recording(session, rec.id) or rec
    if rec.state not in LIVE_STATES:
        raise RetentionError(
            _("recording {id} is {state}: nothing left to hold").format(id=rec.id, state=rec.state)
        )
    row = LegalHold(recording_id=rec.id, reason=reason, placed_by=actor)
    session.add(row)
    session.flush()
    on_store = _set_store_hold(store, rec.object_key, True)
    append_event(
        session,
        signer,
        actor=actor,
        action="legal-hold-placed",
        object_type="recording",
        object_id=rec.sha256,
        details={"hold": row.id, "reason": reason, "store": on_store},
    )
    return row


def open_holds(session: Session, rec_id: int) -> list[LegalHold]:
    return list(
        session.scalars(
            select(LegalHold)
            .where(LegalHold.recording_id == rec_id, LegalHold.released_at.is_(None))
            .order_by(LegalHold.id)
        )
    )


def describe_hold(h: LegalHold, zone: tzinfo = CHINA_STANDARD_TIME) -> str:
    """One hold, as a person finds it again: its id, who placed it, when (in ``zone``)
    and why."""
    text_ = _("hold {id}: placed by {by} at {at}: {reason}").format(
        id=h.id, by=h.placed_by, at=show_time(h.placed_at, zone), reason=h.reason
    )
    if h.released_at is not None:
        text_ += _("; released by {by} at {at}: {reason}").format(
            by=h.released_by, at=show_time(h.released_at, zone), reason=h.release_reason
        )
    return text_


def release(
    session: Session,
    signer: Signer,
    store: ObjectStore | None,
    rec: Recording,
    *,
    reason: str,
    actor: str,
    hold_id: int | None = None,
) -> LegalHold:
    """Lift one legal hold: the one named, or the recording's only one. Each hold is a
    person's decision for a reason of its own (two proceedings, say); lifting one leaves
    the others, and the store's hold stays on while any remains."""
    if not reason.strip():
        raise RetentionError(
            _("releasing a legal hold needs a reason"), hint=_("give --reason TEXT")
        )
    rec = lock_recording(session, rec.id) or rec
    holds = open_holds(session, rec.id)
    which = _("recording {id} ({sha})").format(id=rec.id, sha=rec.sha256[:16])
    listing = "".join(f"\n  {describe_hold(h)}" for h in holds)
    if not holds:
        raise RetentionError(
            _("{which} has no legal hold in force").format(which=which),
            hint=_("see 'liuhen retention explain'"),
        )
    if hold_id is None:
        if len(holds) > 1:
            raise HoldNotNamed(
                _("{which} has {count} legal holds in force, and a release lifts one:").format(
                    which=which, count=len(holds)
                )
                + listing,
                hint=_("name the one to lift with --hold ID"),
            )
        row = holds[0]
    else:
        found = [h for h in holds if h.id == hold_id]
        if not found:
            other = session.get(LegalHold, hold_id)
            why = (
                _("hold {id} is not a hold of this recording").format(id=hold_id)
                if other is None or other.recording_id != rec.id
                else _("hold {id} was already released by {by} at {at}").format(
                    id=hold_id,
                    by=other.released_by,
                    at=show_time(other.released_at, CHINA_STANDARD_TIME),
                )
            )
            raise RetentionError(
                _("{which}: {why}; in force:").format(which=which, why=why) + listing,
                hint=_("name one of the holds in force with --hold ID"),
            )
        row = found[0]
    row.released_at, row.released_by, row.release_reason = utcnow(), actor, reason
    remaining = [h.id for h in holds if h.id != row.id]
    on_store = ""
    if rec.state in LIVE_STATES:
        on_store = (
            _set_store_hold(store, rec.object_key, False)
            if not remaining
            else "kept on: other holds remain"
        )
    append_event(
        session,
        signer,
        actor=actor,
        action="legal-hold-released",
        object_type="recording",
        object_id=rec.sha256,
        details={
            "hold": row.id,
            "placed_by": row.placed_by,
            "hold_reason": row.reason,
            "reason": reason,
            "remaining": remaining,
            "store": on_store,
        },
    )
    return row


def _set_store_hold(store: ObjectStore | None, key: str, on: bool) -> str:
    """Mirror the hold in the store where it can hold one; the catalog's hold is the rule."""
    if store is None:
        return "not set (no store)"
    try:
        store.set_legal_hold(key, on)
    except (ObjectNotFound, StoreUnavailable):
        raise
    except StorageError as exc:  # e.g. an S3 bucket without Object Lock
        log.warning("legal hold kept in the catalog only: %s", exc.message)
        return f"not set: {exc.message}"
    return "on" if on else "off"


def review(session: Session, signer: Signer, rec: Recording, *, reason: str, actor: str) -> None:
    """A reviewer has looked at an important recording: the other rules apply again."""
    if not reason.strip():
        raise RetentionError(_("a review needs a reason"), hint=_("give --reason TEXT"))
    rec = lock_recording(session, rec.id) or rec
    if not rec.important or rec.reviewed_at is not None:
        raise RetentionError(
            _("recording {id} is not awaiting review").format(id=rec.id),
            hint=_("only recordings marked important are reviewed"),
        )
    rec.reviewed_at = utcnow()
    append_event(
        session,
        signer,
        actor=actor,
        action="reviewed",
        object_type="recording",
        object_id=rec.sha256,
        details={"reason": reason},
    )


# --- objects: who still needs them ---------------------------------------------------------

_KEY_LOCKS = "liuhen_object_key_locks"


def _lock_id(key: str) -> int:
    """The advisory lock number of an object key (64 bits of its SHA-256: two keys sharing
    one only wait for each other needlessly)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def lock_object_keys(session: Session, keys: Iterable[str]) -> None:
    """Take, for the rest of this transaction, the lock of each object key.

    Whoever adds a reference to an object (a docking registering a recording whose object
    it has just stored, a worker recording a derivative) and whoever deletes an object
    (:func:`delete_unreferenced`) hold its lock from their check to their commit, so:

    * a reference committed before the deleter takes the lock is seen by its check, and
      the object is kept;
    * a writer that takes the lock after a deleter committed checks that the object is
      still in the store (:func:`confirm_objects`) and stores it again if not, before
      its reference commits.

    Either way no committed reference names a deleted object. On PostgreSQL these are
    transaction-scoped advisory locks; SQLite's write transactions (BEGIN IMMEDIATE) are
    serial already. Lock order, against deadlocks: object keys first (in lock-number
    order), then recording rows, then the custody chain head.
    """
    held = _locked_keys(session)
    todo = sorted(set(keys) - held, key=_lock_id)
    if not todo:
        return
    if session.get_bind().dialect.name == "postgresql":
        ids = sorted({_lock_id(k) for k in todo})
        # Taken in the sorted subquery's order, one after the other (sorted outside, the
        # projection could take them before sorting).
        session.execute(
            text(
                "SELECT pg_advisory_xact_lock(x) FROM (SELECT x FROM "
                "unnest(CAST(:ids AS bigint[])) AS t(x) ORDER BY x) AS sorted"
            ),
            {"ids": ids},
        )
    held.update(todo)


def _locked_keys(session: Session) -> set[str]:
    """The keys locked in the session's current transaction (the locks end with it)."""
    session.connection()  # the transaction has begun: its locks are its own
    txn = session.get_transaction()
    entry = session.info.get(_KEY_LOCKS)
    if entry is None or entry[0] is not txn:
        entry = session.info[_KEY_LOCKS] = (txn, set())
    keys: set[str] = entry[1]
    return keys


def live_references(
    session: Session, key: str, *, besides: int | None = None, limit: int = 5
) -> list[str]:
    """Who still needs the object ``key``: each recording (its original) and each derivative
    naming it whose recording is in any state short of EXPIRED. EXPIRING counts: its
    expiry may yet be undone (the store refusing it). ``besides``: a recording whose own
    references do not count (the one being expired)."""
    not_gone = Recording.state != RecordingState.EXPIRED
    originals = select(Recording.id).where(Recording.object_key == key, not_gone)
    derivatives = (
        select(Derivative.kind, Derivative.recording_id)
        .join(Recording, Recording.id == Derivative.recording_id)
        .where(Derivative.object_key == key, not_gone)
    )
    if besides is not None:
        originals = originals.where(Recording.id != besides)
        derivatives = derivatives.where(Derivative.recording_id != besides)
    refs = [
        f"original of recording {rec_id}"
        for rec_id in session.scalars(originals.order_by(Recording.id).limit(limit))
    ]
    refs += [
        f"{kind} of recording {rec_id}"
        for kind, rec_id in session.execute(derivatives.order_by(Derivative.id).limit(limit))
    ]
    return refs[:limit]


def delete_unreferenced(
    session: Session, store: ObjectStore, key: str, *, besides: int | None = None
) -> str:
    """Delete an evidence object unless something live still needs it (the one rule, see
    :func:`live_references`); the caller holds the key's lock (:func:`lock_object_keys`)
    until it commits. Returns what was done, for the custody event: ``deleted``,
    ``already gone``, or ``kept: also the original of recording N, ...``. A store that
    refuses the delete (Object Lock) raises RetentionRefused."""
    if key not in _locked_keys(session):
        raise RuntimeError(f"deleting {key} without its key lock (lock_object_keys first)")
    refs = live_references(session, key, besides=besides)
    if refs:
        return "kept: also the " + ", ".join(refs)
    try:
        store.delete(key)
    except ObjectNotFound:
        return "already gone"  # an earlier sweep deleted it and was killed before recording
    return "deleted"


class ObjectGoneWhileReferenced(RecordingBeingExpired):
    """An object stored a moment ago was deleted (its other users expired) before the
    reference to it committed: the writer stores it again and retries."""


def confirm_objects(session: Session, store: ObjectStore, keys: Iterable[str]) -> None:
    """Before references to ``keys`` commit (they are locked by the caller, who stored the
    objects before it took the locks): check each object is still in the store. A sweep
    that deleted one in between (it needed nothing else) committed before our lock was
    granted; raising rolls our references back, and the caller stores the bytes again."""
    held = _locked_keys(session)
    for key in sorted(set(keys)):
        if key not in held:
            raise RuntimeError(f"confirming {key} without its key lock (lock_object_keys first)")
        if not store.exists(key):
            raise ObjectGoneWhileReferenced(
                f"{key}: the object was deleted by a retention sweep (it was another, "
                "expired recording's) after it was stored for this reference",
                hint="it is stored again and registered on the next try, by itself",
            )


# --- expiry -----------------------------------------------------------------------------


def due(
    session: Session,
    policy: RetentionSettings,
    now: datetime,
    limit: int | None = None,
    *,
    scope: ColumnElement[bool] | None = None,
) -> list[Decision]:
    """Recordings the sweep may delete now, oldest first; ``scope`` (an SQL filter on
    recordings, None for all) keeps a unit's archivist to the unit's recordings."""
    cutoff = now - timedelta(days=policy.unattached_days)
    since = _floor_since_sql()
    attached = exists().where(
        CaseRecording.recording_id == Recording.id, CaseRecording.detached_at.is_(None)
    )
    held = exists().where(LegalHold.recording_id == Recording.id, LegalHold.released_at.is_(None))
    query = (
        select(Recording)
        .where(
            Recording.state.in_(LIVE_STATES),
            since <= cutoff,
            ~attached,
            ~held,
            or_(
                Recording.important.is_(False),
                and_(Recording.important.is_(True), Recording.reviewed_at.is_not(None)),
            ),
        )
        .order_by(since, Recording.id)
    )
    expiring = select(Recording).where(Recording.state == RecordingState.EXPIRING)
    if scope is not None:
        query = query.where(scope)
        expiring = expiring.where(scope)
    if limit:
        query = query.limit(limit)
    # The query applies rules 1-3 (nothing attached, held or awaiting review); what is
    # left is under rule 4. expire_one() runs explain() again under the row lock before
    # deleting anything, so a change after this listing is never overlooked.
    listed = []
    # Deletions decided by a sweep that did not finish come first, whatever the rules
    # say now: the decision is taken, and the bytes may already be gone.
    for rec in session.scalars(expiring.order_by(Recording.id)):
        listed.append(explain(session, rec, policy, now))
    for rec in session.scalars(query):
        until = floor_date(rec, policy)
        if until > now:  # rounding at the cutoff
            continue
        listed.append(
            Decision(
                recording_id=rec.id,
                sha256=rec.sha256,
                name=rec.original_name,
                state=rec.state,
                rule="unattached",
                keep_until=until,
                expired=True,
                deletable=True,
                reasons=[
                    f"unattached minimum: {policy.unattached_days} days from "
                    f"{floor_since(rec)[1]} → {until.isoformat()}"
                ],
                store_retain_until=rec.retain_until,
            )
        )
    return listed


@dataclass
class SweepReport:
    applied: bool
    due: list[Decision] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)


def decide_expiry(
    session: Session,
    store: ObjectStore,
    signer: Signer,
    rec_id: int,
    policy: RetentionSettings,
    now: datetime,
    actor: str,
) -> bool:
    """Phase 1, in the caller's transaction: decide the deletion, durably, before any byte
    goes. The rules are checked again under the row lock, so an attach or hold that raced
    the listing wins; once committed the recording is EXPIRING, which no attach, hold or
    probe accepts, and the next sweep finishes it whatever the rules say by then. (Deleting
    first and recording after left, when killed in between, a recording anyone could
    still attach although its bytes were gone, with no tombstone.)"""
    rec = lock_recording(session, rec_id)
    if rec is None:
        return False
    if rec.state == RecordingState.EXPIRING:
        return True
    decision = explain(session, rec, policy, now)
    if not decision.deletable:
        return False
    try:
        info = store.head(rec.object_key)
    except ObjectNotFound:
        info = None
    if info is not None and (
        info.legal_hold or (info.retain_until is not None and info.retain_until > now)
    ):
        # The store's own lock outlasts the catalog's rule: decide nothing.
        raise RetentionRefused(
            _("{key}: the store keeps it (retained until {until}, legal hold {hold})").format(
                key=rec.object_key,
                until=show_time(info.retain_until, CHINA_STANDARD_TIME),
                hold=_("on") if info.legal_hold else _("off"),
            )
        )
    until = decision.keep_until.isoformat() if decision.keep_until else None
    reason = (
        f"unattached, unheld, not important; kept {policy.unattached_days} days from "
        f"{floor_since(rec)[1]} until {until or '?'}"
    )
    rec.flags = {
        **(rec.flags or {}),
        "expiry": {
            "from_state": rec.state,
            "keep_until": until,
            "reason": reason,
            "decided_at": now.isoformat(),
            "actor": actor,
        },
    }
    rec.state = RecordingState.EXPIRING
    append_event(
        session,
        signer,
        actor=actor,
        action="expiry-decided",
        object_type="recording",
        object_id=rec.sha256,
        details={"reason": reason, "keep_until": until},
    )
    return True


def expire_one(
    session: Session, signer: Signer, store: ObjectStore, rec_id: int, now: datetime, actor: str
) -> dict[str, Any] | None:
    """Phase 2, in the caller's transaction: delete an EXPIRING original and its
    derivatives, then write the tombstone and the custody events. Killed part-way, the
    recording stays EXPIRING and the next sweep completes it (objects already gone are
    noted as such). Where the store refuses the original (Object Lock, legal hold),
    nothing was deleted and :class:`OriginalKept` is raised: the caller rolls back and
    gives the recording its earlier state with :func:`undo_expiry`. An object something live
    still names (the same bytes are another recording's original or derivative) is kept,
    and the tombstone and custody event say by whom."""
    first = session.get(Recording, rec_id)
    if first is None or first.state != RecordingState.EXPIRING:
        return None
    # The keys are locked before the row, the order every writer keeps (lock_object_keys).
    # They cannot change meanwhile: no derivative is recorded for an EXPIRING recording,
    # and only an EXPIRED one is restored with a new key.
    lock_object_keys(
        session,
        [
            first.object_key,
            *session.scalars(
                select(Derivative.object_key).where(Derivative.recording_id == rec_id)
            ),
        ],
    )
    rec = lock_recording(session, rec_id)
    if rec is None or rec.state != RecordingState.EXPIRING:
        return None
    pending = dict((rec.flags or {}).get("expiry") or {})
    keep_until = pending.get("keep_until")
    reason = str(pending.get("reason") or "expired")
    derivatives = list(
        session.scalars(
            select(Derivative).where(Derivative.recording_id == rec.id).order_by(Derivative.id)
        )
    )
    lock_object_keys(session, [rec.object_key, *(d.object_key for d in derivatives)])
    # The original first: where the store refuses it, nothing is deleted.
    try:
        original = delete_unreferenced(session, store, rec.object_key, besides=rec.id)
    except RetentionRefused as exc:
        raise OriginalKept(exc.message, hint=exc.hint) from exc
    gone = [delete_unreferenced(session, store, d.object_key, besides=rec.id) for d in derivatives]
    _bury(session, signer, rec, derivatives, original, gone, keep_until, reason, now, actor)
    session.flush()
    return {
        "recording": rec.id,
        "sha256": rec.sha256,
        "name": rec.original_name,
        "keep_until": keep_until,
        "derivatives": len(derivatives),
    }


def _bury(
    session: Session,
    signer: Signer,
    rec: Recording,
    derivatives: list[Derivative],
    original: str,
    gone: list[str],
    keep_until: str | None,
    reason: str,
    now: datetime,
    actor: str,
) -> None:
    """After the deletes: the tombstone (what was held, and what the store did with each
    object), the EXPIRED state and the custody events, in the caller's transaction."""
    objects = {
        "original": {
            "key": rec.object_key,
            "sha256": rec.sha256,
            "sm3": rec.sm3,
            "size": rec.size,
            "store": original,
        },
        "derivatives": [
            {
                "kind": d.kind,
                "key": d.object_key,
                "sha256": d.sha256,
                "sm3": d.sm3,
                "size": d.size,
                "store": how,
            }
            for d, how in zip(derivatives, gone, strict=True)
        ],
    }
    session.add(
        Tombstone(
            recording_id=rec.id,
            sha256=rec.sha256,
            sm3=rec.sm3,
            size=rec.size,
            original_name=rec.original_name,
            captured_at=rec.captured_at,
            received_at=rec.received_at,
            expired_at=datetime.fromisoformat(keep_until) if keep_until else None,
            deleted_at=now,
            reason=reason,
            actor=actor,
            objects=objects,
        )
    )
    rec.state = RecordingState.EXPIRED
    for d, how in zip(derivatives, gone, strict=True):
        append_event(
            session,
            signer,
            actor=actor,
            action="expired-deleted",
            object_type="derivative",
            object_id=d.sha256,
            details={"source": rec.sha256, "kind": d.kind, "key": d.object_key, "store": how},
        )
    append_event(
        session,
        signer,
        actor=actor,
        action="expired-deleted",
        object_type="recording",
        object_id=rec.sha256,
        details={
            "key": rec.object_key,
            "sm3": rec.sm3,
            "size": rec.size,
            "reason": reason,
            "store": original,
            "derivatives": [d.sha256 for d in derivatives],
        },
    )


def undo_expiry(session: Session, signer: Signer, rec_id: int, error: str, actor: str) -> None:
    """The store refused to delete an EXPIRING recording's original (``error`` says why):
    nothing was deleted, so the recording returns to the state it had before the
    decision, and the custody log says why. A recording no longer EXPIRING is left."""
    rec = lock_recording(session, rec_id)
    if rec is None or rec.state != RecordingState.EXPIRING:
        return
    pending = dict((rec.flags or {}).get("expiry") or {})
    rec.state = str(pending.get("from_state") or RecordingState.STORED)
    rec.flags = {k: v for k, v in (rec.flags or {}).items() if k != "expiry"}
    append_event(
        session,
        signer,
        actor=actor,
        action="expiry-undone",
        object_type="recording",
        object_id=rec.sha256,
        details={"error": error},
    )


def _expire(
    catalog: Catalog,
    signer: Signer,
    store: ObjectStore,
    rec_id: int,
    policy: RetentionSettings,
    now: datetime,
    actor: str,
) -> dict[str, Any] | None:
    """Both phases for one recording, one transaction each; None when nothing is due
    after all. Where the store refuses the original's deletion, the decision is undone
    in a transaction of its own (the refused one rolled back) and the refusal goes on to
    the caller; killed before the undo, the recording stays EXPIRING and the next sweep
    meets the same refusal. (A refusal after the original went, of a derivative, undoes
    nothing: the recording stays EXPIRING until a sweep can finish it.)"""
    with catalog.transaction() as s:
        if not decide_expiry(s, store, signer, rec_id, policy, now, actor):
            return None
    try:
        with catalog.transaction() as s:
            return expire_one(s, signer, store, rec_id, now, actor)
    except OriginalKept as exc:
        with catalog.transaction() as s:
            undo_expiry(s, signer, rec_id, exc.message, actor)
        raise


def sweep(
    catalog: Catalog,
    signer: Signer,
    store: ObjectStore,
    policy: RetentionSettings,
    *,
    actor: str,
    apply: bool = False,
    now: datetime | None = None,
    limit: int | None = None,
    only: Iterable[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    scope: ColumnElement[bool] | None = None,
) -> SweepReport:
    """List what is due; with ``apply``, delete it, one transaction per recording.

    ``only``: the recordings a person confirmed from an earlier listing; what has come due
    since is left for the next sweep (nobody saw it listed). ``progress(done, total)`` is
    called as the deletions go (a long sweep's bar)."""
    now = now or datetime.now(UTC)
    with catalog.session() as s:
        listed = due(s, policy, now, limit, scope=scope)
    if only is not None:
        confirmed = set(only)
        listed = [d for d in listed if d.recording_id in confirmed]
    report = SweepReport(applied=apply, due=listed)
    if not apply:
        return report
    for done, d in enumerate(listed):
        if progress is not None:
            progress(done, len(listed))
        try:
            expired = _expire(catalog, signer, store, d.recording_id, policy, now, actor)
        except RetentionRefused as exc:
            # The store's own lock outlasts the catalog's rule (it was set from receipt,
            # or extended on an attach since undone): the store wins; try a later sweep.
            report.refused.append(
                {
                    "recording": d.recording_id,
                    "sha256": d.sha256,
                    "name": d.name,
                    "error": exc.message,
                }
            )
            continue
        if expired is not None:
            report.deleted.append(expired)
    if progress is not None:
        progress(len(listed), len(listed))
    return report
