"""How long each recording is kept, why, and expiry.

The rules (STANDARDS.md), first match wins:

1. a legal hold not yet released: never expires while held;
2. marked important on the device and not yet reviewed: kept until reviewed;
3. attached to cases: the longest of their periods (永久 never expires; 30年/10年 run
   from the case's closing, and an open case does not expire);
4. otherwise: ``retention.unattached_days`` from capture (from receipt when the capture
   time is unknown).

Rule 4's period is also a floor for every recording. The sweep deletes only what rule
4 lets go: attached, held and important recordings are never deleted by it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session

from catalog.custody import append_event
from catalog.db import Catalog
from catalog.errors import CatalogError
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
from config.settings import RetentionSettings
from storage import ObjectNotFound, ObjectStore, StorageError
from storage.errors import RetentionRefused, StoreUnavailable

log = logging.getLogger("liuhen.retention")

# States whose original bytes are held; EXPIRED keeps the row (and its tombstone) only.
LIVE_STATES = ("STORED", "PROBED", "DERIVED")
EXPIRED = "EXPIRED"
# The sweep has decided (and committed) the deletion; the store delete may be under way.
EXPIRING = "EXPIRING"
PERMANENT = "永久"
PERIOD_YEARS = {"30年": 30, "10年": 10}


class RetentionError(CatalogError):
    """A hold, release or review that cannot be done as asked."""


def lock_recording(session: Session, rec_id: int) -> Recording | None:
    """The recording, re-read and locked on PostgreSQL, so an attach, a hold or a probe and
    the sweep's deletion of the same recording happen one after the other, each seeing the
    other's outcome. (SQLite write transactions are serial already.)"""
    return session.get(Recording, rec_id, with_for_update=session.get_bind().dialect.name
                       == "postgresql", populate_existing=True)


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
    holds: list[dict[str, Any]] = field(default_factory=list)
    store_retain_until: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "recording": self.recording_id, "sha256": self.sha256, "name": self.name,
            "state": self.state, "rule": self.rule,
            "keep_until": self.keep_until.isoformat() if self.keep_until else None,
            "expired": self.expired, "deletable": self.deletable, "reasons": self.reasons,
            "cases": self.cases, "holds": self.holds,
            "store_retain_until": (self.store_retain_until.isoformat()
                                   if self.store_retain_until else None),
        }


def floor_since(rec: Recording) -> tuple[datetime, str]:
    """Where rule 4's period runs from. Before the probe (state STORED) the capture time is
    only the file name's, unchecked: a recorder whose clock was never set names files 1970,
    and the probe, not the name, rejects that. Until then the receipt counts."""
    if rec.state == "STORED":
        return rec.received_at, "receipt (capture time not yet checked: not probed)"
    if rec.captured_at is None:
        return rec.received_at, "receipt (capture time unknown)"
    return rec.captured_at, "capture"


def floor_date(rec: Recording, policy: RetentionSettings) -> datetime:
    return floor_since(rec)[0] + timedelta(days=policy.unattached_days)


def case_keep_until(case: Case) -> datetime | None:
    """A case's own retention end: None while open or when permanent."""
    years = PERIOD_YEARS.get(case.retention)
    if years is None or case.status == "open":
        return None
    return add_years(case.closed_at or case.updated_at, years)


def explain(session: Session, rec: Recording, policy: RetentionSettings,
            now: datetime | None = None) -> Decision:
    now = now or datetime.now(UTC)
    base = dict(recording_id=rec.id, sha256=rec.sha256, name=rec.original_name, state=rec.state,
                store_retain_until=rec.retain_until)
    if rec.state == EXPIRED:
        stone = session.scalars(select(Tombstone).where(Tombstone.recording_id == rec.id)).first()
        why = f"deleted at expiry on {stone.deleted_at.isoformat()}: {stone.reason}" if stone \
            else "expired"
        return Decision(**base, rule="expired", keep_until=stone.expired_at if stone else None,  # type: ignore[arg-type]
                        expired=True, deletable=False, reasons=[why])
    if rec.state == EXPIRING:
        pending = (rec.flags or {}).get("expiry") or {}
        until = pending.get("keep_until")
        return Decision(**base, rule="expired",  # type: ignore[arg-type]
                        keep_until=datetime.fromisoformat(until) if until else None,
                        expired=True, deletable=False,
                        reasons=[f"deletion decided on {pending.get('decided_at')} by "
                                 f"{pending.get('actor')} ({pending.get('reason')}); not "
                                 "finished: the next 'retention sweep --apply' completes it"])
    floor = floor_date(rec, policy)
    since = floor_since(rec)[1]
    reasons = [f"unattached minimum: {policy.unattached_days} days from {since} → "
               f"{floor.isoformat()}"]
    holds = [{"id": h.id, "reason": h.reason, "by": h.placed_by, "at": h.placed_at.isoformat()}
             for h in session.scalars(select(LegalHold).where(
                 LegalHold.recording_id == rec.id, LegalHold.released_at.is_(None)))]
    cases = []
    for cr, case in session.execute(select(CaseRecording, Case).join(
            Case, Case.id == CaseRecording.case_id).where(
            CaseRecording.recording_id == rec.id, CaseRecording.detached_at.is_(None))):
        until = case_keep_until(case)
        cases.append({"case": case.number, "retention": case.retention, "status": case.status,
                      "method": cr.method, "keep_until": until.isoformat() if until else None})
    important = rec.important and rec.reviewed_at is None
    keep_until: datetime | None
    if holds:
        rule, keep_until = "legal-hold", None
        reasons.insert(0, f"legal hold ({len(holds)}): never expires while held")
    elif important:
        rule, keep_until = "important", None
        reasons.insert(0, "marked important on the device: kept until reviewed")
    elif cases:
        rule = "case"
        ends = [case_keep_until_from(c) for c in cases]
        keep_until = None if any(e is None for e in ends) else max(
            [floor, *(e for e in ends if e is not None)])
        for c in cases:
            end = c["keep_until"] or ("永久" if c["retention"] == PERMANENT else
                                      f"{c['retention']} from closing (case is {c['status']})")
            reasons.insert(0, f"attached to {c['case']} ({c['method']}): {c['retention']} → {end}")
    else:
        rule, keep_until = "unattached", floor
    expired = keep_until is not None and keep_until <= now
    deletable = expired and rule == "unattached" and rec.state in LIVE_STATES
    if expired and rule == "case":
        reasons.append("the case periods have run out; attached recordings are disposed of "
                       "with the case file, never by the sweep")
    return Decision(**base, rule=rule, keep_until=keep_until, expired=expired,  # type: ignore[arg-type]
                    deletable=deletable, reasons=reasons, cases=cases, holds=holds)


def case_keep_until_from(c: dict[str, Any]) -> datetime | None:
    return datetime.fromisoformat(c["keep_until"]) if c["keep_until"] else None


# --- the store's own retention (S3 Object Lock) -------------------------------------------


def store_target(session: Session, rec: Recording, policy: RetentionSettings,
                 now: datetime | None = None) -> datetime | None:
    """The retain-until date the store should hold for an attached recording, or None.

    Permanent cases get ``permanent_years`` ahead; an N-year case N years from its
    closing (from now while open: the case file may only close later, so that is a floor
    the next attach or sync raises). The store can only extend, never shorten.
    """
    now = now or datetime.now(UTC)
    best: datetime | None = None
    for case in session.scalars(select(Case).join(CaseRecording, CaseRecording.case_id == Case.id)
                                .where(CaseRecording.recording_id == rec.id,
                                       CaseRecording.detached_at.is_(None))):
        years = PERIOD_YEARS.get(case.retention)
        if years is None:
            until = add_years(now, policy.permanent_years)
        else:
            closed = case.closed_at if case.status != "open" else None
            until = add_years(closed or now, years)
        best = until if best is None or until > best else best
    return best


def sync_store_retention(session: Session, store: ObjectStore, rec: Recording,
                         policy: RetentionSettings) -> datetime | None:
    """Extend the original's retention in the store to what its cases need."""
    target = store_target(session, rec, policy)
    if target is None or (rec.retain_until is not None and rec.retain_until >= target):
        return rec.retain_until
    store.set_retention(rec.object_key, target)
    held = _store_lock(store, rec.object_key)
    if held is not None and (rec.retain_until is None or held > rec.retain_until):
        rec.retain_until = held
    return rec.retain_until


def sync_cases_store_retention(session: Session, store: ObjectStore, case_ids: list[int],
                               policy: RetentionSettings) -> int:
    """After cases closed: their N-year periods now run from the closing, later than the
    date pushed at attach time; extend their recordings' store retention to match."""
    if not case_ids:
        return 0
    rec_ids = sorted(set(session.scalars(select(CaseRecording.recording_id).where(
        CaseRecording.case_id.in_(case_ids), CaseRecording.detached_at.is_(None)))))
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


def hold(session: Session, signer: Signer, store: ObjectStore | None, rec: Recording, *,
         reason: str, actor: str) -> LegalHold:
    if not reason.strip():
        raise RetentionError("a legal hold needs a reason", hint="give --reason TEXT")
    rec = lock_recording(session, rec.id) or rec
    if rec.state not in LIVE_STATES:
        raise RetentionError(f"recording {rec.id} is {rec.state}: nothing left to hold")
    row = LegalHold(recording_id=rec.id, reason=reason, placed_by=actor)
    session.add(row)
    session.flush()
    on_store = _set_store_hold(store, rec.object_key, True)
    append_event(session, signer, actor=actor, action="legal-hold-placed",
                 object_type="recording", object_id=rec.sha256,
                 details={"hold": row.id, "reason": reason, "store": on_store})
    return row


def release(session: Session, signer: Signer, store: ObjectStore | None, rec: Recording, *,
            reason: str, actor: str) -> list[int]:
    if not reason.strip():
        raise RetentionError("releasing a legal hold needs a reason", hint="give --reason TEXT")
    rec = lock_recording(session, rec.id) or rec
    rows = list(session.scalars(select(LegalHold).where(
        LegalHold.recording_id == rec.id, LegalHold.released_at.is_(None))))
    if not rows:
        raise RetentionError(f"recording {rec.id} ({rec.sha256[:16]}) has no legal hold",
                             hint="see 'liuhen retention explain'")
    now = utcnow()
    for row in rows:
        row.released_at, row.released_by, row.release_reason = now, actor, reason
    on_store = _set_store_hold(store, rec.object_key, False) if rec.state in LIVE_STATES else ""
    append_event(session, signer, actor=actor, action="legal-hold-released",
                 object_type="recording", object_id=rec.sha256,
                 details={"holds": [r.id for r in rows], "reason": reason, "store": on_store})
    return [r.id for r in rows]


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


def review(session: Session, signer: Signer, rec: Recording, *, reason: str,
           actor: str) -> None:
    """A reviewer has looked at an important recording: the other rules apply again."""
    if not reason.strip():
        raise RetentionError("a review needs a reason", hint="give --reason TEXT")
    rec = lock_recording(session, rec.id) or rec
    if not rec.important or rec.reviewed_at is not None:
        raise RetentionError(f"recording {rec.id} is not awaiting review",
                             hint="only recordings marked important are reviewed")
    rec.reviewed_at = utcnow()
    append_event(session, signer, actor=actor, action="reviewed", object_type="recording",
                 object_id=rec.sha256, details={"reason": reason})


# --- expiry -----------------------------------------------------------------------------


def due(session: Session, policy: RetentionSettings, now: datetime,
        limit: int | None = None) -> list[Decision]:
    """Recordings the sweep may delete now, oldest first."""
    cutoff = now - timedelta(days=policy.unattached_days)
    # floor_since() in SQL.
    since = sql_case((Recording.state == "STORED", Recording.received_at),
                     else_=func.coalesce(Recording.captured_at, Recording.received_at))
    attached = exists().where(CaseRecording.recording_id == Recording.id,
                              CaseRecording.detached_at.is_(None))
    held = exists().where(LegalHold.recording_id == Recording.id, LegalHold.released_at.is_(None))
    query = (select(Recording).where(
        Recording.state.in_(LIVE_STATES),
        since <= cutoff,
        ~attached, ~held,
        or_(Recording.important.is_(False), and_(Recording.important.is_(True),
                                                 Recording.reviewed_at.is_not(None))))
             .order_by(since, Recording.id))
    if limit:
        query = query.limit(limit)
    # The query applies rules 1-3 (nothing attached, held or awaiting review); what is
    # left is under rule 4. expire_one() runs explain() again under the row lock before
    # deleting anything, so a change after this listing is never overlooked.
    listed = []
    # Deletions decided by a sweep that did not finish come first, whatever the rules
    # say now: the decision is taken, and the bytes may already be gone.
    for rec in session.scalars(select(Recording).where(Recording.state == EXPIRING)
                               .order_by(Recording.id)):
        listed.append(explain(session, rec, policy, now))
    for rec in session.scalars(query):
        until = floor_date(rec, policy)
        if until > now:  # rounding at the cutoff
            continue
        listed.append(Decision(
            recording_id=rec.id, sha256=rec.sha256, name=rec.original_name, state=rec.state,
            rule="unattached", keep_until=until, expired=True, deletable=True,
            reasons=[f"unattached minimum: {policy.unattached_days} days from "
                     f"{floor_since(rec)[1]} → {until.isoformat()}"],
            store_retain_until=rec.retain_until))
    return listed


@dataclass
class SweepReport:
    applied: bool
    due: list[Decision] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)


def decide_expiry(session: Session, store: ObjectStore, signer: Signer, rec_id: int,
                  policy: RetentionSettings, now: datetime, actor: str) -> bool:
    """Phase 1, in the caller's transaction: decide the deletion, durably, before any byte
    goes. The rules are checked again under the row lock, so an attach or hold that raced
    the listing wins; once committed the recording is EXPIRING, which no attach, hold or
    probe accepts, and the next sweep finishes it whatever the rules say by then. (Deleting
    first and recording after left, when killed in between, a recording anyone could
    still attach although its bytes were gone, with no tombstone.)"""
    rec = lock_recording(session, rec_id)
    if rec is None:
        return False
    if rec.state == EXPIRING:
        return True
    decision = explain(session, rec, policy, now)
    if not decision.deletable:
        return False
    try:
        info = store.head(rec.object_key)
    except ObjectNotFound:
        info = None
    if info is not None and (info.legal_hold or (info.retain_until is not None
                                                 and info.retain_until > now)):
        # The store's own lock outlasts the catalog's rule: decide nothing.
        raise RetentionRefused(f"{rec.object_key}: the store keeps it (retained until "
                               f"{info.retain_until}, legal hold {info.legal_hold})")
    until = decision.keep_until.isoformat() if decision.keep_until else None
    reason = (f"unattached, unheld, not important; kept {policy.unattached_days} days from "
              f"{floor_since(rec)[1]} until {until or '?'}")
    rec.flags = {**(rec.flags or {}), "expiry": {
        "from_state": rec.state, "keep_until": until, "reason": reason,
        "decided_at": now.isoformat(), "actor": actor}}
    rec.state = EXPIRING
    append_event(session, signer, actor=actor, action="expiry-decided", object_type="recording",
                 object_id=rec.sha256, details={"reason": reason, "keep_until": until})
    return True


def expire_one(session: Session, signer: Signer, store: ObjectStore, rec_id: int,
               now: datetime, actor: str) -> dict[str, Any] | None:
    """Phase 2, in the caller's transaction: delete an EXPIRING original and its
    derivatives, then write the tombstone and the custody events. Killed part-way, the
    recording stays EXPIRING and the next sweep completes it (objects already gone are
    noted as such). Where the store refuses the original (Object Lock, legal hold),
    nothing was deleted: the recording returns to its earlier state."""
    rec = lock_recording(session, rec_id)
    if rec is None or rec.state != EXPIRING:
        return None
    pending = dict((rec.flags or {}).get("expiry") or {})
    keep_until = pending.get("keep_until")
    reason = str(pending.get("reason") or "expired")
    derivatives = list(session.scalars(select(Derivative).where(
        Derivative.recording_id == rec.id).order_by(Derivative.id)))
    objects = {"original": {"key": rec.object_key, "sha256": rec.sha256, "sm3": rec.sm3,
                            "size": rec.size},
               "derivatives": [{"kind": d.kind, "key": d.object_key, "sha256": d.sha256,
                                "sm3": d.sm3, "size": d.size} for d in derivatives]}
    # The original first: where the store refuses it, nothing is deleted.
    try:
        original = _delete(store, rec.object_key)
    except RetentionRefused as exc:
        rec.state = str(pending.get("from_state") or "STORED")
        rec.flags = {k: v for k, v in (rec.flags or {}).items() if k != "expiry"}
        append_event(session, signer, actor=actor, action="expiry-undone",
                     object_type="recording", object_id=rec.sha256,
                     details={"error": exc.message})
        return {"refused": exc.message}
    gone = [_delete(store, d.object_key) if not _shared(session, d.object_key, rec.id)
            else "kept: shared with another recording" for d in derivatives]
    session.add(Tombstone(
        recording_id=rec.id, sha256=rec.sha256, sm3=rec.sm3, size=rec.size,
        original_name=rec.original_name, captured_at=rec.captured_at,
        received_at=rec.received_at,
        expired_at=datetime.fromisoformat(keep_until) if keep_until else None, deleted_at=now,
        reason=reason, actor=actor, objects=objects))
    rec.state = EXPIRED
    for d, how in zip(derivatives, gone, strict=True):
        append_event(session, signer, actor=actor, action="expired-deleted",
                     object_type="derivative", object_id=d.sha256,
                     details={"source": rec.sha256, "kind": d.kind, "key": d.object_key,
                              "store": how})
    append_event(session, signer, actor=actor, action="expired-deleted", object_type="recording",
                 object_id=rec.sha256,
                 details={"key": rec.object_key, "sm3": rec.sm3, "size": rec.size,
                          "reason": reason, "store": original,
                          "derivatives": [d.sha256 for d in derivatives]})
    session.flush()
    return {"recording": rec.id, "sha256": rec.sha256, "name": rec.original_name,
            "keep_until": keep_until, "derivatives": len(derivatives)}


def _shared(session: Session, key: str, rec_id: int) -> bool:
    """Another live recording's derivative with the same bytes (content-addressed key)."""
    return session.scalars(select(Derivative.id).join(
        Recording, Recording.id == Derivative.recording_id).where(
        Derivative.object_key == key, Derivative.recording_id != rec_id,
        Recording.state.in_(LIVE_STATES)).limit(1)).first() is not None


def _delete(store: ObjectStore, key: str) -> str:
    try:
        store.delete(key)
    except ObjectNotFound:
        return "already gone"  # an earlier sweep deleted it and was killed before recording
    return "deleted"


def sweep(catalog: Catalog, signer: Signer, store: ObjectStore, policy: RetentionSettings, *,
          actor: str, apply: bool = False, now: datetime | None = None,
          limit: int | None = None) -> SweepReport:
    """List what is due; with ``apply``, delete it, one transaction per recording."""
    now = now or datetime.now(UTC)
    with catalog.session() as s:
        listed = due(s, policy, now, limit)
    report = SweepReport(applied=apply, due=listed)
    if not apply:
        return report
    for d in listed:
        try:
            with catalog.transaction() as s:
                decided = decide_expiry(s, store, signer, d.recording_id, policy, now, actor)
            done = None
            if decided:
                with catalog.transaction() as s:
                    done = expire_one(s, signer, store, d.recording_id, now, actor)
        except RetentionRefused as exc:
            # The store's own lock outlasts the catalog's rule (it was set from receipt,
            # or extended on an attach since undone): the store wins; try a later sweep.
            report.refused.append({"recording": d.recording_id, "sha256": d.sha256,
                                   "name": d.name, "error": exc.message})
            continue
        if done is not None and "refused" in done:
            report.refused.append({"recording": d.recording_id, "sha256": d.sha256,
                                   "name": d.name, "error": done["refused"]})
        elif done is not None:
            report.deleted.append(done)
    return report
