"""The one place permission decisions are made (issue 15, point 2).

Every entry point (a CLI command, an HTTP endpoint) says who acts (a :class:`Principal`),
what it wants (a :class:`~access.roles.Permission`) and on what (a :class:`Target`),
and asks :func:`authorize`. :func:`decide` is the pure rule: the principal's roles
hold the permission, and one of those roles reaches the target — its own recordings
(officer: by device assignment), its unit (reviewer, supervisor, archivist), everything
(auditor, administrators) — or a case granted to the user for a period covers it.

A request without a target (``liuhen case list``: may this principal list cases at
all?) needs only the permission; what the list then shows is filtered by
:func:`recording_scope` and :func:`case_scope`, so a list never shows what the
principal may not see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.orm import Session, aliased

from access.roles import (
    LOCAL_PERMISSIONS,
    PERMISSION_TITLES,
    ROLE_PERMISSIONS,
    ROLE_SCOPE,
    ROLE_TITLES,
    SCOPED,
    TARGET_KINDS,
    TOKEN_PERMISSIONS,
    Permission,
    Role,
    Scope,
    roles_holding,
)
from catalog.access_models import CaseGrant
from catalog.models import Case, CaseRecording, Device, Officer, Recording
from config.errors import LiuhenError
from config.i18n import _

EXIT_NOPERM = 77  # BSD sysexits EX_NOPERM


@dataclass(frozen=True)
class Principal:
    """Who acts: a logged-in user, an API token, or the local OS user of an install
    without accounts (``via="local"``)."""

    user_id: int | None
    login: str
    display_name: str
    unit: str | None
    officer_number: str | None
    roles: frozenset[Role]
    via: str  # "session" | "token" | "local"
    session_id: str | None = None
    # What the user must fix before any permission counts (access.accounts: a one-time or
    # expired password, an administrator without a second factor). Empty: nothing.
    pending: frozenset[str] = frozenset()

    @property
    def actor(self) -> str:
        """The name recorded in the custody log and the audit for what this principal does."""
        if self.via == "token":
            return f"token:{self.login}"
        return self.login


@dataclass(frozen=True)
class Target:
    """What a request is about. For a recording: its unit (the device's), the officer
    numbers of its device assignment, the cases it is attached to and their units."""

    kind: str  # "recording" | "case" | "user" | "system" | ...
    id: str | None = None
    unit: str | None = None
    officers: frozenset[str] = frozenset()
    case_numbers: frozenset[str] = frozenset()
    # The units of the cases in case_numbers: a unit's reviewer sees a recording attached
    # to one of the unit's cases even when another unit's device recorded it.
    case_units: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Grant:
    """A case granted to the principal for ``[starts_at, ends_at)``."""

    case_number: str
    starts_at: datetime
    ends_at: datetime

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at


@dataclass(frozen=True)
class Decision:
    allowed: bool
    permission: Permission
    # Why, for logs and the audit: the role (and scope) or the grant that allowed it, or
    # what was missing.
    reason: str
    roles: tuple[Role, ...] = field(default=())


class AccessDenied(LiuhenError):
    """The principal may not do this: exit 77 (EX_NOPERM)."""

    exit_code = EXIT_NOPERM

    def __init__(self, message: str, *, hint: str | None = None, decision: Decision | None = None):
        super().__init__(message, hint=hint)
        self.decision = decision
        # What was refused (set by ``denial``): the audit says it again in English.
        self.target: Target | None = None


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _reaches(
    principal: Principal, scope: Scope, target: Target, grants: Iterable[Grant], now: datetime
) -> str | None:
    """How a role of this scope reaches the target (a reason), or None when it does not."""
    if scope is Scope.ALL or principal.via == "local":
        return "all units"
    if scope is Scope.OWN:
        number = principal.officer_number
        if number and number in target.officers:
            return f"own recording ({number})"
    elif principal.unit:
        if target.unit and target.unit == principal.unit:
            return f"unit {principal.unit}"
        if principal.unit in target.case_units:
            return f"a case of unit {principal.unit}"
    for grant in grants:
        if grant.case_number in target.case_numbers and grant.active(now):
            return f"case grant {grant.case_number} until {grant.ends_at.isoformat()}"
    return None


# Why a token is refused what its role would hold (the audit keeps it in English).
TOKEN_ONLY = "API tokens hold only the integration permissions"


def _token_only(principal: Principal, permission: Permission) -> bool:
    return principal.via == "token" and permission not in TOKEN_PERMISSIONS


def decide(
    principal: Principal,
    permission: Permission,
    target: Target | None = None,
    *,
    grants: Sequence[Grant] = (),
    now: datetime | None = None,
) -> Decision:
    """Whether ``principal`` may use ``permission`` on ``target``: pure, no catalog."""
    holding = tuple(r for r in Role if r in principal.roles and permission in ROLE_PERMISSIONS[r])
    if principal.pending:
        return Decision(
            False, permission, "account must first: " + ", ".join(sorted(principal.pending))
        )
    if _token_only(principal, permission):
        # Whatever role the token was issued with: evidence is for people, logged in.
        return Decision(False, permission, TOKEN_ONLY)
    if principal.via == "local":
        # No accounts yet: the OS user who runs liuhen on the data directory, as before.
        allowed = permission in LOCAL_PERMISSIONS
        return Decision(allowed, permission, "local user, no accounts" if allowed else "admin")
    if not holding:
        return Decision(False, permission, "no role holds it")
    if target is None or permission not in SCOPED or target.kind in ("system", "user"):
        return Decision(True, permission, f"role {holding[0]}", holding)
    when = _now(now)
    for role in holding:
        how = _reaches(principal, ROLE_SCOPE[role], target, grants, when)
        if how is not None:
            return Decision(True, permission, f"role {role}: {how}", (role,))
    return Decision(False, permission, "out of scope", holding)


def grants_of(session: Session, principal: Principal) -> list[Grant]:
    """The case grants of the principal's user (revoked ones left out)."""
    if principal.user_id is None:
        return []
    rows = session.execute(
        select(Case.number, CaseGrant.starts_at, CaseGrant.ends_at)
        .join(Case, Case.id == CaseGrant.case_id)
        .where(CaseGrant.user_id == principal.user_id, CaseGrant.revoked_at.is_(None))
    ).all()
    return [Grant(number, start, end) for number, start, end in rows]


def denial(principal: Principal, permission: Permission, target: Target | None) -> AccessDenied:
    """The error for a refused request: names the permission and the target, and who
    can help."""
    what = ""
    if target is not None:
        kind = _(TARGET_KINDS[target.kind]) if target.kind in TARGET_KINDS else target.kind
        what = f"{kind} {target.id}" if target.id else kind
    holders = ", ".join(_(ROLE_TITLES[r]) for r in roles_holding(permission))
    doing = _(PERMISSION_TITLES[permission])
    if what:
        message = _("{login} may not {what} ({permission}): {target}").format(
            login=principal.actor, what=doing, permission=permission.value, target=what
        )
    else:
        message = _("{login} may not {what} ({permission})").format(
            login=principal.actor, what=doing, permission=permission.value
        )
    if _token_only(principal, permission):
        hint = _(
            "API tokens hold only the integration permissions ({permissions}); log in "
            "as a person to read or export evidence (liuhen login)"
        ).format(permissions=", ".join(sorted(p.value for p in TOKEN_PERMISSIONS)))
    elif principal.pending:
        hint = _(
            "first change your one-time or expired password (liuhen user passwd) and, for "
            "an administrator, turn on two-factor login (liuhen user 2fa enroll)"
        )
    elif principal.roles and any(permission in ROLE_PERMISSIONS[r] for r in principal.roles):
        hint = _(
            "it is outside your unit and your own recordings; the security administrator "
            "can grant you the case for a period (liuhen user case grant)"
        )
    else:
        hint = _("roles that may: {roles}; ask the security administrator").format(
            roles=holders or "-"
        )
    error = AccessDenied(message, hint=hint)
    error.target = target
    return error


def authorize(
    session: Session,
    principal: Principal,
    permission: Permission,
    target: Target | None = None,
    *,
    now: datetime | None = None,
) -> None:
    """Raise :class:`AccessDenied` unless ``principal`` may use ``permission`` on
    ``target``; the principal's case grants are read from the catalog."""
    decision = _decide_in(session, principal, permission, target, now)
    if not decision.allowed:
        error = denial(principal, permission, target)
        error.decision = decision
        raise error


def allowed(
    session: Session,
    principal: Principal,
    permission: Permission,
    target: Target | None = None,
    *,
    now: datetime | None = None,
) -> bool:
    return _decide_in(session, principal, permission, target, now).allowed


def _decide_in(
    session: Session,
    principal: Principal,
    permission: Permission,
    target: Target | None,
    now: datetime | None,
) -> Decision:
    """:func:`decide`, the principal's case grants read from the catalog only when the
    decision turns on them: a grant only ever adds reach, so what the roles allow alone
    stands (a page asks the policy many times; most readers hold no grant that matters)."""
    decision = decide(principal, permission, target, now=now)
    if decision.allowed or target is None or principal.user_id is None:
        return decision
    if decision.reason != "out of scope":
        return decision  # refused whatever the grants: no role, pending, a token
    return decide(principal, permission, target, grants=grants_of(session, principal), now=now)


# --- targets -------------------------------------------------------------------------


def _attached_cases(session: Session, recording_id: int) -> list[tuple[str, str]]:
    return [
        (number, unit)
        for number, unit in session.execute(
            select(Case.number, Case.unit)
            .join(CaseRecording, CaseRecording.case_id == Case.id)
            .where(CaseRecording.recording_id == recording_id, CaseRecording.detached_at.is_(None))
        ).all()
    ]


def target_for_recording(session: Session, recording_id: int | str) -> Target:
    """The recording as the policy sees it; a recording that does not exist is a target
    nobody but an unscoped role reaches (the caller then says it was not found)."""
    from catalog.devices import officer_at

    # Rows by primary key (session.get): a session that goes on to show the recording
    # finds them in its identity map instead of asking again, and the officer who
    # carried the recorder is, as a rule, the recording's own officer (one look-up).
    rec = session.get(Recording, int(recording_id))
    if rec is None:
        return Target("recording", str(recording_id))
    officers: set[str] = set()
    if rec.officer_id is not None:
        officer = session.get(Officer, rec.officer_id)
        if officer is not None and officer.number:
            officers.add(officer.number)
    unit = None
    if rec.device_id is not None:
        device = session.get(Device, rec.device_id)
        unit = (device.unit if device is not None else None) or None
        if rec.captured_at is not None:
            carried = officer_at(session, rec.device_id, rec.captured_at)
            if carried is not None:
                officer = session.get(Officer, carried)
                if officer is not None and officer.number:
                    officers.add(officer.number)
    cases = _attached_cases(session, rec.id)
    return Target(
        "recording",
        str(rec.id),
        unit=unit,
        officers=frozenset(officers),
        case_numbers=frozenset(n for n, _u in cases),
        case_units=frozenset(u for _n, u in cases if u),
    )


def may_change_case(
    session: Session, principal: Principal, number: str, unit_if_new: str | None
) -> bool:
    """Whether the principal may change case ``number`` (an existing case: its unit; a
    case still to be made: the unit it would get), as ``case import`` asks for each row."""
    unit = session.scalar(select(Case.unit).where(Case.number == number))
    if unit is None:  # no such case yet
        unit = unit_if_new or None
    target = Target(
        "case",
        number,
        unit=unit or None,
        case_numbers=frozenset({number}),
        case_units=frozenset({unit}) if unit else frozenset(),
    )
    return allowed(session, principal, Permission.CASE_CHANGE, target)


def may_see_export(session: Session, principal: Principal, scope: Mapping[str, Any]) -> bool:
    """Whether the principal may see a hand-over of this scope: it may export each of
    its cases; a time range (every unit's recordings) needs a role reaching all units."""
    cases = scope.get("cases") or []
    if not cases:
        return allowed(session, principal, Permission.EXPORT, Target("district"))
    return all(
        allowed(session, principal, Permission.EXPORT, target_for_case(session, str(n)))
        for n in cases
    )


def target_for_case(session: Session, number: str) -> Target:
    unit = session.scalar(select(Case.unit).where(Case.number == number))
    return Target(
        "case",
        number,
        unit=unit or None,
        case_numbers=frozenset({number}),
        case_units=frozenset({unit}) if unit else frozenset(),
    )


# --- list filters --------------------------------------------------------------------


def _scopes(principal: Principal, permission: Permission) -> set[Scope]:
    """How far the principal's roles reach with ``permission``; nowhere for what
    :func:`decide` refuses whatever the target (a pending account, a token's evidence)."""
    if principal.pending or _token_only(principal, permission):
        return set()
    return {ROLE_SCOPE[r] for r in principal.roles if permission in ROLE_PERMISSIONS[r]}


def _granted_case_ids(principal: Principal, now: datetime) -> ColumnElement[bool] | None:
    if principal.user_id is None:
        return None
    granted = select(CaseGrant.case_id).where(
        CaseGrant.user_id == principal.user_id,
        CaseGrant.revoked_at.is_(None),
        CaseGrant.starts_at <= now,
        CaseGrant.ends_at > now,
    )
    return Case.id.in_(granted)


def case_scope(
    principal: Principal,
    permission: Permission = Permission.CASE_VIEW,
    *,
    now: datetime | None = None,
) -> ColumnElement[bool] | None:
    """SQL filter on ``cases`` for lists: None = every case; false() = none."""
    scopes = _scopes(principal, permission)
    if Scope.ALL in scopes or (scopes and principal.via == "local"):
        return None
    terms: list[ColumnElement[bool]] = []
    if Scope.UNIT in scopes and principal.unit:
        terms.append(Case.unit == principal.unit)
    if scopes:
        granted = _granted_case_ids(principal, _now(now))
        if granted is not None:
            terms.append(granted)
    return or_(*terms) if terms else false()


def recording_scope(
    principal: Principal,
    permission: Permission = Permission.RECORDING_VIEW,
    *,
    now: datetime | None = None,
) -> ColumnElement[bool] | None:
    """SQL filter on ``recordings`` for searches: None = everything; false() = nothing.
    The same reach as :func:`decide` (own recordings, the unit's devices and cases,
    granted cases)."""
    scopes = _scopes(principal, permission)
    if Scope.ALL in scopes or (scopes and principal.via == "local"):
        return None
    terms: list[ColumnElement[bool]] = []
    if Scope.OWN in scopes and principal.officer_number:
        terms.append(_own_recordings(principal.officer_number))
    attached = select(CaseRecording.recording_id).join(Case, Case.id == CaseRecording.case_id)
    attached = attached.where(CaseRecording.detached_at.is_(None))
    if Scope.UNIT in scopes and principal.unit:
        unit_devices = select(Device.id).where(Device.unit == principal.unit)
        terms.append(Recording.device_id.in_(unit_devices))
        terms.append(Recording.id.in_(attached.where(Case.unit == principal.unit)))
    if scopes:
        granted = _granted_case_ids(principal, _now(now))
        if granted is not None:
            terms.append(Recording.id.in_(attached.where(granted)))
    return or_(*terms) if terms else false()


# The recordings of an officer's assignments, as a second name for the table: made once,
# as a new alias's columns are set up on first use (a recording has thirty), which cost
# most of the 1.7 ms each officer's search spent building its scope.
_CARRIED = aliased(Recording, name="carried")


def _own_recordings(officer_number: str) -> ColumnElement[bool]:
    """Recordings whose officer (set from the device assignment at capture) is this one,
    or captured while the device was assigned to them."""
    from catalog.models import DeviceAssignment

    officer = select(Officer.id).where(Officer.number == officer_number).scalar_subquery()
    # The recordings of the officer's few assignments, found from the assignments (an
    # uncorrelated set), not an EXISTS tried on every recording: at a million
    # recordings that is the difference between ~70 ms and ~500 ms (bench/api).
    held = _CARRIED
    carried = (
        select(held.id)
        .join(DeviceAssignment, DeviceAssignment.device_id == held.device_id)
        .where(
            DeviceAssignment.officer_id == officer,
            DeviceAssignment.start <= held.captured_at,
            or_(DeviceAssignment.end.is_(None), DeviceAssignment.end > held.captured_at),
            held.officer_id.is_distinct_from(officer),  # the first term has those
        )
    )
    return or_(Recording.officer_id == officer, Recording.id.in_(carried))
