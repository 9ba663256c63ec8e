"""Attaching recordings to cases: by rule, and by hand; and resolving a recording's officer.

The rule: a recording attaches to a case when the recording's officer is among the
officers of one of the case's enforcement actions and its capture interval overlaps
the action's window widened by the margin on each side. Both ends are inclusive: a
recording that ends exactly ``margin`` before the action starts attaches.

Rule attachment is idempotent, and never attaches a recording again to a case a person
detached it from: the detached row stays and the rule sees it. Every attach and detach
is a custody event with its actor and reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from catalog.cases import CaseError, get_case
from catalog.custody import append_event
from catalog.devices import officer_at
from catalog.models import (
    ActionOfficer,
    Case,
    CaseRecording,
    DeviceAssignment,
    Docking,
    EnforcementAction,
    Export,
    ExportItem,
    Officer,
    Recording,
    utcnow,
)
from catalog.retention import lock_recording, sync_store_retention
from catalog.signing import Signer
from catalog.states import LIVE_STATES
from config.errors import EXIT_NOINPUT
from config.i18n import _
from config.settings import CHINA_STANDARD_TIME, RetentionSettings
from config.timetext import show_time
from storage import ObjectStore

# Recordings are looked for this far before an action's window: no recorder segment is
# longer (recorders split files far sooner), and it bounds the query on a big catalog.
LONGEST_RECORDING = timedelta(hours=24)
NameOfficer = Callable[[str], "str | None"]


def capture_interval(rec: Recording) -> tuple[datetime, datetime] | None:
    if rec.captured_at is None:
        return None
    return rec.captured_at, rec.capture_end or rec.captured_at


def attach_by_rule(
    session: Session,
    signer: Signer,
    rec: Recording,
    *,
    policy: RetentionSettings,
    actor: str,
    store: ObjectStore | None = None,
) -> list[str]:
    """Attach ``rec`` to every case whose actions match it. Returns the case numbers."""
    span = capture_interval(rec)
    if rec.officer_id is None or span is None or rec.state not in LIVE_STATES:
        return []
    margin = timedelta(seconds=policy.attach_margin_s)
    start, end = span
    rows = session.execute(
        select(EnforcementAction, Case)
        .join(ActionOfficer, ActionOfficer.action_id == EnforcementAction.id)
        .join(Case, Case.id == EnforcementAction.case_id)
        .where(
            ActionOfficer.officer_id == rec.officer_id,
            EnforcementAction.start <= end + margin,
            EnforcementAction.end >= start - margin,
        )
        .order_by(EnforcementAction.start, EnforcementAction.id)
    ).all()
    if not rows:
        return []
    existing = set(
        session.scalars(select(CaseRecording.case_id).where(CaseRecording.recording_id == rec.id))
    )
    by_case: dict[int, tuple[Case, list[EnforcementAction]]] = {}
    for action, case in rows:
        by_case.setdefault(case.id, (case, []))[1].append(action)
    officer = session.get(Officer, rec.officer_id)
    number = officer.number if officer else None
    attached = []
    for case_id, (case, actions) in by_case.items():
        if case_id in existing:
            continue  # attached already, or detached by a person: the rule never overrides
        rule = {
            "actions": [a.external_id for a in actions],
            "action_ids": [a.id for a in actions],
            "officer": number,
            "margin_s": policy.attach_margin_s,
        }
        session.add(
            CaseRecording(
                case_id=case_id, recording_id=rec.id, method="rule", rule=rule, actor=actor
            )
        )
        session.flush()
        append_event(
            session,
            signer,
            actor=actor,
            action="attached",
            object_type="recording",
            object_id=rec.sha256,
            details={"case": case.number, "method": "rule"} | rule,
        )
        attached.append(case.number)
    if attached and store is not None:
        sync_store_retention(session, store, rec, policy)
    return attached


def attach_for_actions(
    session: Session,
    signer: Signer,
    action_ids: Iterable[int],
    *,
    policy: RetentionSettings,
    actor: str,
    store: ObjectStore | None = None,
    only: ColumnElement[bool] | None = None,
) -> int:
    """After actions were created or changed: attach the recordings they match.

    ``only``: a filter on the recordings that may be attached (the recordings the one
    who changed the actions may see, access.policy.recording_scope): a unit's archivist
    must not pull another unit's recordings into its case by naming their officer.

    Returns the number of new attachments. Candidates come from one query over the
    actions' officers and time range; each is then matched against all actions, so the
    result is the same as if the recording had been probed after the import.
    """
    ids = list(action_ids)
    if not ids:
        return 0
    margin = timedelta(seconds=policy.attach_margin_s)
    windows: dict[int, list[tuple[datetime, datetime]]] = {}
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start : chunk_start + 500]
        for officer_id, start, end in session.execute(
            select(ActionOfficer.officer_id, EnforcementAction.start, EnforcementAction.end)
            .join(EnforcementAction, EnforcementAction.id == ActionOfficer.action_id)
            .where(EnforcementAction.id.in_(chunk))
        ):
            windows.setdefault(officer_id, []).append((start - margin, end + margin))
    if not windows:
        return 0
    lo = min(s for spans in windows.values() for s, _ in spans) - LONGEST_RECORDING
    hi = max(e for spans in windows.values() for _, e in spans)
    officer_ids = list(windows)
    candidates: list[int] = []
    for chunk_start in range(0, len(officer_ids), 500):
        chunk = officer_ids[chunk_start : chunk_start + 500]
        for rec_id, rec_officer, rec_start, rec_end in session.execute(
            select(
                Recording.id, Recording.officer_id, Recording.captured_at, Recording.capture_end
            ).where(
                Recording.officer_id.in_(chunk),
                Recording.captured_at >= lo,
                Recording.captured_at <= hi,
                Recording.state.in_(LIVE_STATES),
                *(() if only is None else (only,)),
            )
        ):
            if rec_officer is None or rec_start is None:
                continue
            stop = rec_end or rec_start
            if any(s <= stop and rec_start <= e for s, e in windows[rec_officer]):
                candidates.append(rec_id)
    count = 0
    for rec_id in sorted(candidates):
        rec = lock_recording(session, rec_id)
        if rec is not None:
            count += len(
                attach_by_rule(session, signer, rec, policy=policy, actor=actor, store=store)
            )
    return count


def attach_manual(
    session: Session,
    signer: Signer,
    *,
    case_number: str,
    rec: Recording,
    reason: str,
    actor: str,
    policy: RetentionSettings,
    store: ObjectStore | None = None,
) -> bool:
    """Attach by hand. False when it was attached already (nothing changes)."""
    if not reason.strip():
        raise CaseError(_("attaching needs a reason"), hint=_("give --reason TEXT"))
    case = get_case(session, case_number)
    locked = lock_recording(session, rec.id)
    assert locked is not None
    rec = locked
    if rec.state not in LIVE_STATES:
        raise CaseError(
            _("recording {id} ({sha}) is {state}: its bytes are not held").format(
                id=rec.id, sha=rec.sha256[:16], state=rec.state
            ),
            hint=_("see 'liuhen retention explain'"),
        )
    row = session.scalars(
        select(CaseRecording).where(
            CaseRecording.case_id == case.id, CaseRecording.recording_id == rec.id
        )
    ).first()
    if row is not None and row.detached_at is None:
        return False
    if row is None:
        row = CaseRecording(case_id=case.id, recording_id=rec.id, method="manual")
        session.add(row)
    # A re-attach after a detach reuses the row (one per case and recording); the
    # custody log keeps the whole history.
    row.method, row.rule, row.actor, row.reason = "manual", {}, actor, reason
    row.attached_at = utcnow()
    row.detached_at = row.detached_by = row.detach_reason = None
    session.flush()
    append_event(
        session,
        signer,
        actor=actor,
        action="attached",
        object_type="recording",
        object_id=rec.sha256,
        details={"case": case.number, "method": "manual", "reason": reason},
    )
    if store is not None:
        sync_store_retention(session, store, rec, policy)
    return True


def detach(
    session: Session,
    signer: Signer,
    *,
    case_number: str,
    rec: Recording,
    reason: str,
    actor: str,
    force_exported: bool = False,
) -> dict[str, Any]:
    """Detach by hand. A recording already exported needs ``force_exported``."""
    if not reason.strip():
        raise CaseError(_("detaching needs a reason"), hint=_("give --reason TEXT"))
    case = get_case(session, case_number)
    row = session.scalars(
        select(CaseRecording).where(
            CaseRecording.case_id == case.id, CaseRecording.recording_id == rec.id
        )
    ).first()
    if row is None or row.detached_at is not None:
        raise CaseError(
            _("recording {id} ({sha}) is not attached to {case}").format(
                id=rec.id, sha=rec.sha256[:16], case=case.number
            ),
            hint=f"liuhen case show '{case.number}'",
        )
    exports = list(
        session.scalars(
            select(Export.uid)
            .join(ExportItem, ExportItem.export_id == Export.id)
            .where(ExportItem.recording_id == rec.id)
        )
    )
    if exports and not force_exported:
        raise CaseError(
            _(
                "recording {id} ({sha}) was exported ({exports}); detaching it leaves the "
                "exported package disagreeing with the catalog"
            ).format(id=rec.id, sha=rec.sha256[:16], exports=", ".join(exports)),
            hint=_("if that is intended, run again with --force-exported"),
        )
    row.detached_at = utcnow()
    row.detached_by, row.detach_reason = actor, reason
    details = {
        "case": case.number,
        "reason": reason,
        "was": row.method,
        "exports": exports,
        "override": bool(exports),
    }
    append_event(
        session,
        signer,
        actor=actor,
        action="detached",
        object_type="recording",
        object_id=rec.sha256,
        details=details,
    )
    return details


# --- officer of a recording -------------------------------------------------------------


def resolve_officer(
    session: Session, signer: Signer, rec: Recording, name_officer: str | None, actor: str
) -> None:
    """Set the recording's officer from the device's assignment at capture time.

    Without an assignment the docking's officer (device file) stays. A file-name 警号 (or
    a device-file 警号) that disagrees is flagged in ``flags["officer_mismatch"]``; it is
    never preferred over the assignment.
    """
    docking = session.get(Docking, rec.docking_id) if rec.docking_id else None
    docked = docking.officer_id if docking else None
    assigned = None
    if rec.device_id is not None and rec.captured_at is not None:
        assigned = officer_at(session, rec.device_id, rec.captured_at)
    chosen, source = (
        (assigned, "assignment") if assigned else (docked or rec.officer_id, "device-info")
    )
    numbers = {
        o.id: o.number
        for o in session.scalars(
            select(Officer).where(Officer.id.in_([i for i in (chosen, docked) if i is not None]))
        )
    }
    number = numbers.get(chosen) if chosen else None
    mismatch: dict[str, Any] = {}
    if name_officer and name_officer != number:
        mismatch["file_name"] = name_officer
    if source == "assignment" and docked is not None and docked != chosen:
        mismatch["device_info"] = numbers.get(docked)
    flags = dict(rec.flags or {})
    if mismatch:
        flags["officer_mismatch"] = {"officer": number, "source": source, **mismatch}
    else:
        flags.pop("officer_mismatch", None)
    changed = chosen != rec.officer_id or flags != (rec.flags or {})
    rec.flags = flags
    if not changed:
        return
    rec.officer_id = chosen
    append_event(
        session,
        signer,
        actor=actor,
        action="officer-resolved",
        object_type="recording",
        object_id=rec.sha256,
        details={"officer": number, "source": source, "mismatch": mismatch},
    )


def after_probe(
    session: Session,
    signer: Signer,
    rec: Recording,
    *,
    name_officer: str | None,
    important: bool,
    policy: RetentionSettings,
    actor: str,
    store: ObjectStore | None = None,
) -> list[str]:
    """What follows once a recording's capture time is known: the important mark, its
    officer, and attachment by rule. Idempotent (a replayed work item changes nothing)."""
    if rec.state not in LIVE_STATES:
        return []
    if important and not rec.important and rec.reviewed_at is None:
        rec.important = True
        append_event(
            session,
            signer,
            actor=actor,
            action="marked-important",
            object_type="recording",
            object_id=rec.sha256,
            details={"source": "file-name", "name": rec.original_name},
        )
    if store is not None and rec.retain_until is None:
        # The station set the store's retention when it stored the original (Object Lock);
        # the catalog mirrors what the store holds, so `retention explain` can show it.
        rec.retain_until = store.head(rec.object_key).retain_until
    resolve_officer(session, signer, rec, name_officer, actor)
    return attach_by_rule(session, signer, rec, policy=policy, actor=actor, store=store)


def after_assignment(
    session: Session,
    signer: Signer,
    assignment: DeviceAssignment,
    *,
    name_officer: NameOfficer,
    policy: RetentionSettings,
    actor: str,
    store: ObjectStore | None = None,
) -> int:
    """An assignment recorded after the fact: re-resolve the recordings it covers and
    attach them by rule. Returns the number of recordings looked at."""
    query = select(Recording.id).where(
        Recording.device_id == assignment.device_id,
        Recording.captured_at >= assignment.start,
        Recording.state.in_(LIVE_STATES),
    )
    if assignment.end is not None:
        query = query.where(Recording.captured_at < assignment.end)
    ids = list(session.scalars(query.order_by(Recording.id)))
    for rec_id in ids:
        rec = lock_recording(session, rec_id)
        assert rec is not None
        before = rec.officer_id
        resolve_officer(session, signer, rec, name_officer(rec.original_name), actor)
        if rec.officer_id != before:
            release_stale_rule_attachments(session, signer, rec, policy=policy, actor=actor)
        attach_by_rule(session, signer, rec, policy=policy, actor=actor, store=store)
    return len(ids)


def release_stale_rule_attachments(
    session: Session, signer: Signer, rec: Recording, *, policy: RetentionSettings, actor: str
) -> list[str]:
    """Rule attachments made for the officer the recording was first thought to have.

    Once an assignment recorded after the fact names another officer, the rule no longer
    matches them: they are detached, with a custody event saying why. Attachments made
    by hand are a person's decision and stay; an exported recording stays attached and
    is flagged for a person to decide (detaching it needs --force-exported).
    """
    margin = timedelta(seconds=policy.attach_margin_s)
    span = capture_interval(rec)
    rows = session.execute(
        select(CaseRecording, Case)
        .join(Case, Case.id == CaseRecording.case_id)
        .where(
            CaseRecording.recording_id == rec.id,
            CaseRecording.method == "rule",
            CaseRecording.detached_at.is_(None),
        )
    ).all()
    released = []
    for row, case in rows:
        still = (
            span is not None
            and rec.officer_id is not None
            and session.scalars(
                select(EnforcementAction.id)
                .join(ActionOfficer, ActionOfficer.action_id == EnforcementAction.id)
                .where(
                    EnforcementAction.case_id == case.id,
                    ActionOfficer.officer_id == rec.officer_id,
                    EnforcementAction.start <= span[1] + margin,
                    EnforcementAction.end >= span[0] - margin,
                )
                .limit(1)
            ).first()
            is not None
        )
        if still:
            continue
        exported = (
            session.scalars(
                select(ExportItem.export_id).where(ExportItem.recording_id == rec.id).limit(1)
            ).first()
            is not None
        )
        if exported:
            flags = dict(rec.flags or {})
            flags["stale_rule_attachment"] = sorted(
                {*flags.get("stale_rule_attachment", []), case.number}
            )
            rec.flags = flags
            continue
        reason = (
            "the rule no longer matches: the recording's officer was re-resolved "
            "from a device assignment"
        )
        # The row stays detached, for history; like a person's detach, the rule does not
        # attach this recording to this case again.
        row.detached_at, row.detached_by, row.detach_reason = utcnow(), actor, reason
        append_event(
            session,
            signer,
            actor=actor,
            action="detached",
            object_type="recording",
            object_id=rec.sha256,
            details={
                "case": case.number,
                "reason": reason,
                "was": "rule",
                "exports": [],
                "override": False,
            },
        )
        released.append(case.number)
    return released


def get_recording(session: Session, ref: str) -> Recording:
    """One recording by id, digest prefix or file name; an error naming the choices
    otherwise."""
    from catalog.media import find_recording
    from catalog.retention import RetentionError

    found = find_recording(session, ref)
    by_name = not found
    if by_name:
        found = recordings_named(session, ref)
    if len(found) == 1:
        return found[0]
    if not found:
        raise RecordingNotFound(
            _("no recording matches {ref!r}").format(ref=ref),
            hint=_(
                "give a recording id, at least 6 hex digits of its SHA-256 or SM3, or its file name"
            ),
        )
    if by_name:
        raise RetentionError(
            _("{count} recordings are named {ref!r}: {choices}").format(
                count=len(found), ref=ref, choices=describe_choices(found)
            ),
            hint=_("give the recording's id (the number after #) instead of its name"),
        )
    raise RetentionError(
        _("{ref!r} matches {count} recordings").format(ref=ref, count=len(found)),
        hint=_("give more digits: {choices}").format(
            choices=", ".join(r.sha256[:16] for r in found)
        ),
    )


def recordings_named(session: Session, name: str) -> list[Recording]:
    """The recordings whose file name is ``name`` (exactly, else ignoring letter case:
    recorders write upper case, people type either). At most 20, oldest first."""
    name = name.strip()
    if not name:
        return []
    # No index on the name: this runs only once an id or digest did not match.
    for column, value in (
        (Recording.original_name, name),
        (func.lower(Recording.original_name), name.lower()),
    ):
        found = list(
            session.scalars(
                select(Recording).where(column == value).order_by(Recording.id).limit(20)
            )
        )
        if found:
            return found
    return []


def describe_choices(recs: Iterable[Recording], zone: tzinfo = CHINA_STANDARD_TIME) -> str:
    """Candidates as a person picks one: id, name, capture start (in ``zone``), SHA-256
    prefix."""
    return _("; ").join(
        _("#{id} {name} (captured {at}, sha256 {sha})").format(
            id=r.id,
            name=r.original_name,
            at=show_time(r.captured_at, zone) if r.captured_at else "?",
            sha=r.sha256[:16],
        )
        for r in recs
    )


class RecordingNotFound(CaseError):
    exit_code = EXIT_NOINPUT
