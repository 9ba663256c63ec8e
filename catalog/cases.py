"""Cases and their enforcement actions, as the enforcement unit numbers and records them.

Case numbers are kept exactly as written (Unicode, e.g. 沪徐市监罚〔2026〕123号), after
Unicode NFC normalisation and trimming, so the same number typed on two systems is
one case. People type the year's brackets and the digits several ways (〔2026〕, [2026],
（2026）, (2026), 【2026】, full-width digits): :func:`number_key` folds those, and every
lookup and creation compares keys, while the stored number stays as first written.

A case's life cycle: open → closed (the 30年/10年 retention clock starts at
``closed_at``) → reopened (the clock stops) → closed again (it restarts); ``archived``
is closed and handed to the archives. Every change is a signed custody event with
its actor and reason.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session

from catalog.custody import append_event
from catalog.devices import check_officer_number, ensure_officer
from catalog.errors import CatalogError
from catalog.fields import fields_problems, shown
from catalog.models import (
    ActionOfficer,
    Case,
    CaseRecording,
    EnforcementAction,
    Officer,
    Recording,
    utcnow,
)
from catalog.signing import Signer
from config.errors import EXIT_NOINPUT
from config.i18n import N_, _
from config.settings import CHINA_STANDARD_TIME
from config.timetext import iso_time, show_time

STATUSES = ("open", "closed", "archived")
# A status as a person reads it (the stored value stays English: it is the catalog's).
_STATUS_TEXT = {"open": N_("open"), "closed": N_("closed"), "archived": N_("archived")}


def status_text(status: str) -> str:
    """A case status in the reader's language."""
    return _(_STATUS_TEXT[status]) if status in _STATUS_TEXT else status


# 保管期限: archival retention periods (永久 permanent, 定期30年, 定期10年).
RETENTIONS = ("永久", "30年", "10年")
RETENTION_ALIASES = {
    "permanent": "永久",
    "定期30年": "30年",
    "30y": "30年",
    "30": "30年",
    "定期10年": "10年",
    "10y": "10年",
    "10": "10年",
}


class CaseError(CatalogError):
    """A case or action request that cannot be taken as given."""


class CaseNotFound(CatalogError):
    exit_code = EXIT_NOINPUT


class SimilarCase(CaseError):
    """A new case number that only the brackets or digit widths tell from existing ones."""

    def __init__(self, number: str, existing: list[str]) -> None:
        self.number, self.existing = number, existing
        super().__init__(
            _(
                "{number!r} is written like existing case(s) {existing} (brackets or digits "
                "typed differently)"
            ).format(number=number, existing=", ".join(repr(n) for n in existing)),
            hint=_(
                "if it is another case, confirm on a terminal or run again with --yes; "
                "if it is the same case: liuhen case show '{existing}'"
            ).format(existing=existing[0]),
        )


def normalize_number(number: str) -> str:
    return unicodedata.normalize("NFC", number).strip()


# The brackets around a document number's year as people type them (the standard's
# 六角括号 〔〕, ASCII and full-width square and round brackets, 【】) and full-width
# digits, folded to one form for comparison only.
_KEY_TABLE = str.maketrans(
    {
        **{c: "〔" for c in "[(（【［﹝〖"},
        **{c: "〕" for c in "])）】］﹞〗"},
        **{chr(0xFF10 + d): str(d) for d in range(10)},
    }
)


def number_key(number: str) -> str:
    """The form two case numbers are compared in: 沪徐市监罚[２０２６]123号 and
    沪徐市监罚〔2026〕123号 have one key."""
    return normalize_number(number).translate(_KEY_TABLE)


def same_key_cases(session: Session, number: str) -> list[Case]:
    """The cases whose number has ``number``'s key, the exact match first."""
    number = normalize_number(number)
    key = number_key(number)
    exact = session.scalars(select(Case).where(Case.number == number)).first()
    # Folded brackets and digits cannot be matched in SQL portably; the case list is
    # small (thousands), so the numbers are compared here.
    others = [
        case_id
        for case_id, n in session.execute(select(Case.id, Case.number))
        if n != number and number_key(n) == key
    ]
    found = [exact] if exact is not None else []
    if others:
        found += session.scalars(select(Case).where(Case.id.in_(others)).order_by(Case.id))
    return found


def closest_number(session: Session, number: str) -> str | None:
    """The existing case number nearest to ``number`` (a near miss), if any is near."""
    keys = {number_key(n): n for n in session.scalars(select(Case.number))}
    best = difflib.get_close_matches(number_key(number), list(keys), n=1, cutoff=0.8)
    return keys[best[0]] if best else None


def normalize_retention(value: str) -> str:
    value = value.strip()
    return RETENTION_ALIASES.get(value.lower(), value)


def case_problems(
    number: str,
    status: str,
    retention: str,
    *,
    title: str = "",
    unit: str = "",
    security_class: str = "",
) -> list[str]:
    """Every reason a case cannot be stored as given."""
    problems = []
    if not number:
        problems.append(_("case number is empty"))
    elif any(not c.isprintable() for c in number):
        problems.append(
            _("case number {number!r} holds control characters").format(number=shown(number))
        )
    problems += fields_problems(
        {
            _("case number"): (number, Case.number),
            _("title"): (title, Case.title),
            _("unit"): (unit, Case.unit),
            _("security class (密级)"): (security_class, Case.security_class),
        }
    )
    if status not in STATUSES:
        problems.append(
            _("status {status!r} is not one of {choices}").format(
                status=shown(status), choices=", ".join(STATUSES)
            )
        )
    if retention not in RETENTIONS:
        problems.append(
            _("retention {retention!r} is not one of {choices}").format(
                retention=shown(retention), choices=", ".join(RETENTIONS)
            )
        )
    return problems


def action_problems(
    external_id: str,
    officers: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    *,
    place: str = "",
    times_required: bool = True,
    zone: tzinfo = CHINA_STANDARD_TIME,
) -> list[str]:
    """Every reason an action cannot be stored as given. ``times_required=False`` when the
    caller has already reported times it could not read (one reason, not two)."""
    problems = []
    if not external_id:
        problems.append(_("action id is empty"))
    problems += fields_problems(
        {
            _("action id"): (external_id, EnforcementAction.external_id),
            _("place"): (place, EnforcementAction.place),
        }
    )
    if not officers:
        problems.append(_("action has no officers"))
    problems += [p for o in officers if (p := check_officer_number(o))]
    if start is None or end is None:
        if times_required:
            problems.append(_("action start and end are both required"))
    elif end < start:
        problems.append(
            _("action ends ({end}) before it starts ({start})").format(
                end=show_time(end, zone), start=show_time(start, zone)
            )
        )
    return problems


def get_case(session: Session, number: str) -> Case:
    """The case ``number`` names: written exactly so, or with the same key; a near miss
    is refused with the case it probably meant."""
    number = normalize_number(number)
    exact = session.scalars(select(Case).where(Case.number == number)).first()
    if exact is not None:  # as written: no need to compare every number
        return exact
    found = same_key_cases(session, number)
    if len(found) == 1:
        return found[0]
    if found:
        raise CaseError(
            _("{number!r} names {count} cases written differently: {cases}").format(
                number=number, count=len(found), cases=", ".join(repr(c.number) for c in found)
            ),
            hint=_("give the case number exactly as one of them is written"),
        )
    near = closest_number(session, number)
    raise CaseNotFound(
        _("no case {number!r}; did you mean {near!r}?").format(number=number, near=near)
        if near
        else _("no case {number!r}").format(number=number),
        hint=f"liuhen case show '{near}'"
        if near
        else _("list cases with 'liuhen case list', or create it"),
    )


def create_case(
    session: Session,
    signer: Signer,
    *,
    number: str,
    title: str = "",
    unit: str = "",
    status: str = "open",
    retention: str = "永久",
    security_class: str = "",
    actor: str,
    source: str = "manual",
    allow_similar: bool = False,
) -> Case:
    """A new case. One whose number differs from an existing case's only in the way the
    brackets or digits are typed is refused (:class:`SimilarCase`) unless
    ``allow_similar``: a person has confirmed it is another case."""
    number = normalize_number(number)
    retention = normalize_retention(retention)
    if problems := case_problems(
        number, status, retention, title=title, unit=unit, security_class=security_class
    ):
        raise CaseError(_("; ").join(problems), hint=_("correct the case and run it again"))
    same = same_key_cases(session, number)
    if same and same[0].number == number:
        raise CaseError(
            _("case {number!r} already exists").format(number=number),
            hint=f"liuhen case show '{number}'",
        )
    if same and not allow_similar:
        raise SimilarCase(number, [c.number for c in same])
    case = Case(
        number=number,
        title=title,
        unit=unit,
        status=status,
        retention=retention,
        security_class=security_class,
        source=source,
        closed_at=utcnow() if status != "open" else None,
    )
    session.add(case)
    session.flush()
    append_event(
        session,
        signer,
        actor=actor,
        action="case-created",
        object_type="case",
        object_id=number,
        details={
            "title": title,
            "unit": unit,
            "status": status,
            "retention": retention,
            "security_class": security_class,
            "source": source,
        },
    )
    return case


def add_action(
    session: Session,
    signer: Signer,
    *,
    case: Case,
    external_id: str,
    officers: Sequence[str],
    start: datetime,
    end: datetime,
    place: str = "",
    actor: str,
    zone: tzinfo = CHINA_STANDARD_TIME,
) -> tuple[EnforcementAction, bool]:
    """Record an enforcement action; the same action again changes nothing."""
    if problems := action_problems(external_id, officers, start, end, place=place, zone=zone):
        raise CaseError(_("; ").join(problems), hint=_("correct the action and run it again"))
    existing = session.scalars(
        select(EnforcementAction).where(
            EnforcementAction.case_id == case.id, EnforcementAction.external_id == external_id
        )
    ).first()
    officer_ids = {ensure_officer(session, o).id for o in officers}
    if existing is not None:
        current = set(
            session.scalars(
                select(ActionOfficer.officer_id).where(ActionOfficer.action_id == existing.id)
            )
        )
        if (existing.start, existing.end, existing.place, current) == (
            start,
            end,
            place,
            officer_ids,
        ):
            return existing, False
        raise CaseError(
            _("case {number}: action {action!r} exists with other values").format(
                number=case.number, action=external_id
            ),
            hint=_("import the case-management export to update actions"),
        )
    action = EnforcementAction(
        case_id=case.id, external_id=external_id, start=start, end=end, place=place
    )
    session.add(action)
    session.flush()
    session.add_all(ActionOfficer(action_id=action.id, officer_id=o) for o in officer_ids)
    session.flush()
    append_event(
        session,
        signer,
        actor=actor,
        action="action-recorded",
        object_type="case",
        object_id=case.number,
        details={
            "action": external_id,
            "officers": sorted(officers),
            "start": start.isoformat(),
            "end": end.isoformat(),
            "place": place,
        },
    )
    return action, True


# --- life cycle ---------------------------------------------------------------------------

UPDATABLE = ("title", "unit", "retention", "security_class")


# What needs a reason, as the refusal names it.
_NEEDS_REASON = {
    "closing": N_("closing a case needs a reason"),
    "reopening": N_("reopening a case needs a reason"),
    "updating": N_("updating a case needs a reason"),
}


def _need_reason(reason: str, what: str) -> None:
    if not reason.strip():
        raise CaseError(_(_NEEDS_REASON[what]), hint=_("give --reason TEXT"))


def close_case(
    session: Session,
    signer: Signer,
    number: str,
    *,
    reason: str,
    actor: str,
    now: datetime | None = None,
    zone: tzinfo = CHINA_STANDARD_TIME,
) -> Case:
    """Close an open case: its 30年/10年 retention period runs from now."""
    _need_reason(reason, "closing")
    case = get_case(session, number)
    if case.status != "open":
        raise CaseError(
            _("case {number} is {status} already (since {since})").format(
                number=case.number,
                status=status_text(case.status),
                since=show_time(case.closed_at, zone),
            ),
            hint=f"liuhen case show '{case.number}'",
        )
    case.status, case.closed_at = "closed", now or utcnow()
    session.flush()
    append_event(
        session,
        signer,
        actor=actor,
        action="case-closed",
        object_type="case",
        object_id=case.number,
        details={"reason": reason, "closed_at": case.closed_at.isoformat()},
    )
    return case


def reopen_case(session: Session, signer: Signer, number: str, *, reason: str, actor: str) -> Case:
    """Reopen a closed case: its retention clock stops until it is closed again. An
    archived case is in the archives' hands and is not reopened here."""
    _need_reason(reason, "reopening")
    case = get_case(session, number)
    if case.status != "closed":
        raise CaseError(
            _("case {number} is {status}: only a closed case can be reopened").format(
                number=case.number, status=status_text(case.status)
            ),
            hint=f"liuhen case show '{case.number}'",
        )
    was = case.closed_at
    case.status, case.closed_at = "open", None
    session.flush()
    append_event(
        session,
        signer,
        actor=actor,
        action="case-reopened",
        object_type="case",
        object_id=case.number,
        details={"reason": reason, "was_closed_at": was.isoformat() if was else None},
    )
    return case


def update_case(
    session: Session,
    signer: Signer,
    number: str,
    *,
    reason: str,
    actor: str,
    **values: str | None,
) -> tuple[Case, dict[str, list[str]]]:
    """Change a case's title, unit, retention or security class (``None``: unchanged).
    Returns the case and ``{field: [old, new]}`` for what changed; nothing changed, no
    event."""
    _need_reason(reason, "updating")
    unknown = set(values) - set(UPDATABLE)
    assert not unknown, f"not updatable: {unknown}"
    case = get_case(session, number)
    if values.get("retention") is not None:
        values["retention"] = normalize_retention(str(values["retention"]))
    new = {f: v if (v := values.get(f)) is not None else getattr(case, f) for f in UPDATABLE}
    if problems := case_problems(
        case.number,
        case.status,
        new["retention"],
        title=new["title"],
        unit=new["unit"],
        security_class=new["security_class"],
    ):
        raise CaseError(_("; ").join(problems), hint=_("correct the values and run it again"))
    changes = {f: [getattr(case, f), new[f]] for f in UPDATABLE if getattr(case, f) != new[f]}
    if not changes:
        return case, {}
    for f, (_old, value) in changes.items():
        setattr(case, f, value)
    session.flush()
    append_event(
        session,
        signer,
        actor=actor,
        action="case-updated",
        object_type="case",
        object_id=case.number,
        details={"reason": reason, "changes": changes},
    )
    return case, changes


def list_cases(
    session: Session,
    status: str | None = None,
    *,
    actions_from: datetime | None = None,
    actions_to: datetime | None = None,
    scope: ColumnElement[bool] | None = None,
) -> list[dict[str, Any]]:
    """Cases by number with their recording counts; ``actions_from``/``actions_to``: only
    cases with an enforcement action starting in [from, to) (``to`` excluded); ``scope``:
    only the cases the reader may see (access.policy.case_scope; None: every case)."""
    query = select(Case).order_by(Case.number)
    if scope is not None:
        query = query.where(scope)
    if status:
        query = query.where(Case.status == status)
    if actions_from is not None or actions_to is not None:
        within = [EnforcementAction.case_id == Case.id]
        if actions_from is not None:
            within.append(EnforcementAction.start >= actions_from)
        if actions_to is not None:
            within.append(EnforcementAction.start < actions_to)
        query = query.where(exists().where(*within))
    cases = list(session.scalars(query))
    counts: dict[int, int] = {
        case_id: n
        for case_id, n in session.execute(
            select(CaseRecording.case_id, func.count())
            .where(CaseRecording.detached_at.is_(None))
            .group_by(CaseRecording.case_id)
        )
    }
    return [
        {
            "number": c.number,
            "title": c.title,
            "unit": c.unit,
            "status": c.status,
            "retention": c.retention,
            "security_class": c.security_class,
            "recordings": counts.get(c.id, 0),
        }
        for c in cases
    ]


def case_report(
    session: Session, number: str, zone: tzinfo = CHINA_STANDARD_TIME
) -> dict[str, Any]:
    """Everything `liuhen case show` prints: the case, its actions, and its recordings with
    digests, times, officer and why each is attached (which rule, or who). Times are ISO
    8601 with the offset of ``zone`` (the station's)."""
    case = get_case(session, number)
    # Three queries whatever the size of the case (actions with their officers, and
    # recordings with theirs), not one per row.
    crew: dict[int, list[str]] = {}
    for action_id, officer_number in session.execute(
        select(ActionOfficer.action_id, Officer.number)
        .join(Officer, Officer.id == ActionOfficer.officer_id)
        .join(EnforcementAction, EnforcementAction.id == ActionOfficer.action_id)
        .where(EnforcementAction.case_id == case.id)
    ):
        crew.setdefault(action_id, []).append(officer_number)
    actions = [
        {
            "id": a.external_id,
            "start": iso_time(a.start, zone),
            "end": iso_time(a.end, zone),
            "place": a.place,
            "officers": sorted(crew.get(a.id, [])),
        }
        for a in session.scalars(
            select(EnforcementAction)
            .where(EnforcementAction.case_id == case.id)
            .order_by(EnforcementAction.start)
        )
    ]
    recordings = []
    history = []
    rows = session.execute(
        select(CaseRecording, Recording, Officer.number)
        .join(Recording, Recording.id == CaseRecording.recording_id)
        .outerjoin(Officer, Officer.id == Recording.officer_id)
        .where(CaseRecording.case_id == case.id)
        .order_by(Recording.captured_at, Recording.id)
    )
    for cr, rec, officer_number in rows:
        entry = {
            "recording": rec.id,
            "name": rec.original_name,
            "state": rec.state,
            "sha256": rec.sha256,
            "sm3": rec.sm3,
            "size": rec.size,
            "capture_start": iso_time(rec.captured_at, zone),
            "capture_end": iso_time(rec.capture_end, zone),
            "officer": officer_number,
            "method": cr.method,
            "why": attachment_reason(cr),
            "attached_at": iso_time(cr.attached_at, zone),
            "attached_by": cr.actor,
        }
        if cr.detached_at is None:
            recordings.append(entry)
        else:
            history.append(
                entry
                | {
                    "detached_at": iso_time(cr.detached_at, zone),
                    "detached_by": cr.detached_by,
                    "detach_reason": cr.detach_reason,
                }
            )
    return {
        "number": case.number,
        "title": case.title,
        "unit": case.unit,
        "status": case.status,
        "retention": case.retention,
        "security_class": case.security_class,
        "source": case.source,
        "closed_at": iso_time(case.closed_at, zone),
        "actions": actions,
        "recordings": recordings,
        "detached": history,
    }


def attachment_reason(cr: CaseRecording) -> str:
    """Why a recording is attached, as a person reads it: the rule that matched, or who
    attached it by hand and why."""
    if cr.method == "rule":
        rule = cr.rule or {}
        return _("rule: officer {officer} in action(s) {actions} ± {margin} s").format(
            officer=rule.get("officer"),
            actions=", ".join(rule.get("actions", [])),
            margin=rule.get("margin_s"),
        )
    return _("by hand: {actor}: {reason}").format(actor=cr.actor, reason=cr.reason)
