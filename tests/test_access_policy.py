"""The permission matrix of issue 15 point 2, written out here from the issue's words (not
read from access/roles.py), and the reach of each role: own recordings by device
assignment, the unit, everything; time-limited case grants before, during and after.

Pure decisions (access.policy.decide) for every Role × every Permission, and the same
decisions through the catalog (targets of real recordings and cases, SQL list filters)
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from access.policy import (
    Grant,
    Principal,
    Target,
    allowed,
    case_scope,
    decide,
    recording_scope,
    target_for_case,
    target_for_recording,
)
from access.roles import ADMIN_ROLES, Permission, Role
from catalog.access_models import CaseGrant, User
from catalog.attach import attach_manual, get_recording
from catalog.cases import create_case
from catalog.models import Case, Device, Recording
from tests.case_helpers import cst, make_recording

P = Permission
EVIDENCE_READ = {P.RECORDING_VIEW, P.RECORDING_PLAY}

# Issue 15 point 2, role by role ("no access to evidence content" for the three
# administrators; "changes nothing" for the auditor and the audit administrator).
EXPECTED: dict[Role, set[Permission]] = {
    # own recordings and their metadata; view proxies
    Role.OFFICER: EVIDENCE_READ,
    # the unit's recordings and cases; marks and notes; attach and detach with a reason
    # (and the unit's 全过程记录 figures and 案卷评查)
    Role.REVIEWER: EVIDENCE_READ
    | {P.RECORDING_MARK, P.CASE_VIEW, P.CASE_ATTACH, P.COMPLIANCE_VIEW, P.REVIEW_RUN},
    Role.SUPERVISOR: EVIDENCE_READ
    | {P.RECORDING_MARK, P.CASE_VIEW, P.CASE_ATTACH, P.COMPLIANCE_VIEW, P.REVIEW_RUN},
    # cases, retention, holds, exports and hand-over receipts
    Role.ARCHIVIST: EVIDENCE_READ
    | {
        P.RECORDING_DOWNLOAD,
        P.ORIGINAL_DOWNLOAD,
        P.CASE_VIEW,
        P.CASE_CHANGE,
        P.CASE_ATTACH,
        P.HOLD_CHANGE,
        P.RETENTION_CHANGE,
        P.EXPORT,
        P.CUSTODY_VIEW,
    },
    # read everything, verify, fixity, custody; changes nothing
    Role.AUDITOR: EVIDENCE_READ
    | {
        P.CASE_VIEW,
        P.VERIFY,
        P.CUSTODY_VIEW,
        P.AUDIT_VIEW,
        P.COMPLIANCE_VIEW,
        P.DISTRICT_STATUS,
    },
    # stations, devices, settings, users' existence; no evidence content
    Role.SYSTEM_ADMIN: {
        P.STATION_ADMIN,
        P.DEVICE_ADMIN,
        P.SETTINGS_ADMIN,
        P.USER_ADMIN,
        P.DISTRICT_STATUS,
    },
    # roles, grants, password and lockout policy; no evidence content
    Role.SECURITY_ADMIN: {P.ROLE_ADMIN, P.SESSION_REVOKE},
    # reads the other administrators' audit trail; changes nothing
    Role.AUDIT_ADMIN: {P.AUDIT_VIEW, P.ADMIN_AUDIT_VIEW},
}

CONTENT = {P.RECORDING_VIEW, P.RECORDING_PLAY, P.RECORDING_DOWNLOAD, P.ORIGINAL_DOWNLOAD}
CHANGING = {
    P.RECORDING_MARK,
    P.CASE_CHANGE,
    P.CASE_ATTACH,
    P.HOLD_CHANGE,
    P.RETENTION_CHANGE,
    P.EXPORT,
    P.STATION_ADMIN,
    P.DEVICE_ADMIN,
    P.USER_ADMIN,
    P.ROLE_ADMIN,
    P.SETTINGS_ADMIN,
    P.SESSION_REVOKE,
    P.REVIEW_RUN,
}


def who(
    role: Role, *, unit: str | None = "徐汇", number: str | None = None, uid: int = 1
) -> Principal:
    return Principal(uid, role.value, role.value, unit, number, frozenset({role}), "session")


def test_the_expectation_keeps_the_issues_rules() -> None:
    # The table above, read against the issue's two blanket rules.
    for role in ADMIN_ROLES:
        assert not EXPECTED[role] & CONTENT, role
    for role in (Role.AUDITOR, Role.AUDIT_ADMIN):
        assert not EXPECTED[role] & CHANGING, role


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_every_role_and_permission(role: Role, permission: Permission) -> None:
    decision = decide(who(role), permission)
    assert decision.allowed == (permission in EXPECTED[role]), decision


A_REC = Target("recording", "1", unit="徐汇", officers=frozenset({"010203"}))
B_REC = Target(
    "recording",
    "2",
    unit="静安",
    officers=frozenset({"040506"}),
    case_numbers=frozenset({"静-1"}),
    case_units=frozenset({"静安"}),
)


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.SUPERVISOR, Role.ARCHIVIST])
def test_unit_roles_reach_their_unit_only(role: Role) -> None:
    assert decide(who(role), P.RECORDING_VIEW, A_REC).allowed
    assert not decide(who(role), P.RECORDING_VIEW, B_REC).allowed
    assert decide(who(role, unit="静安"), P.RECORDING_VIEW, B_REC).allowed
    # A user without a unit reaches no unit's evidence.
    assert not decide(who(role, unit=None), P.RECORDING_VIEW, A_REC).allowed


def test_a_units_case_brings_its_recordings_along() -> None:
    # A recording made by another unit's device, attached to one of 徐汇's cases.
    attached = Target(
        "recording",
        "3",
        unit="静安",
        case_numbers=frozenset({"徐-9"}),
        case_units=frozenset({"徐汇"}),
    )
    assert decide(who(Role.REVIEWER), P.RECORDING_PLAY, attached).allowed


def test_an_officer_reaches_own_recordings_only() -> None:
    officer = who(Role.OFFICER, number="010203")
    assert decide(officer, P.RECORDING_PLAY, A_REC).allowed
    same_unit_other_officer = Target("recording", "4", unit="徐汇", officers=frozenset({"070809"}))
    assert not decide(officer, P.RECORDING_PLAY, same_unit_other_officer).allowed
    assert not decide(officer, P.RECORDING_DOWNLOAD, A_REC).allowed
    assert not decide(who(Role.OFFICER, number=None), P.RECORDING_VIEW, A_REC).allowed


def test_the_auditor_reads_every_unit_and_changes_nothing() -> None:
    auditor = who(Role.AUDITOR, unit="徐汇")
    assert decide(auditor, P.RECORDING_PLAY, B_REC).allowed
    assert decide(auditor, P.CUSTODY_VIEW, B_REC).allowed
    assert not decide(auditor, P.CASE_ATTACH, B_REC).allowed
    assert not decide(auditor, P.RECORDING_DOWNLOAD, A_REC).allowed


@pytest.mark.parametrize("role", sorted(ADMIN_ROLES))
def test_administrators_see_no_evidence_anywhere(role: Role) -> None:
    for target in (A_REC, B_REC, None):
        for permission in CONTENT | {P.CASE_VIEW}:
            assert not decide(who(role), permission, target).allowed


NOW = datetime(2026, 12, 6, 8, tzinfo=UTC)
GRANT = Grant("静-1", NOW, NOW + timedelta(days=7))


@pytest.mark.parametrize(
    ("when", "reaches"),
    [
        (NOW - timedelta(seconds=1), False),  # before
        (NOW, True),  # from its first moment
        (NOW + timedelta(days=3), True),  # during
        (NOW + timedelta(days=7), False),  # its end is exclusive
        (NOW + timedelta(days=30), False),  # after
    ],
)
def test_a_case_grant_reaches_only_within_its_period(when: datetime, reaches: bool) -> None:
    outsider = who(Role.REVIEWER, unit="徐汇")
    decision = decide(outsider, P.RECORDING_PLAY, B_REC, grants=[GRANT], now=when)
    assert decision.allowed is reaches
    case = Target("case", "静-1", unit="静安", case_numbers=frozenset({"静-1"}))
    assert decide(outsider, P.CASE_VIEW, case, grants=[GRANT], now=when).allowed is reaches


def test_a_grant_widens_reach_not_permissions() -> None:
    # A granted case lets an officer watch it, never attach to it or download it.
    officer = who(Role.OFFICER, number="999999")
    assert decide(officer, P.RECORDING_PLAY, B_REC, grants=[GRANT], now=NOW).allowed
    assert not decide(officer, P.CASE_ATTACH, B_REC, grants=[GRANT], now=NOW).allowed
    assert not decide(officer, P.RECORDING_DOWNLOAD, B_REC, grants=[GRANT], now=NOW).allowed


def test_a_principal_with_something_pending_may_do_nothing() -> None:
    admin = Principal(
        1,
        "root",
        "root",
        None,
        None,
        frozenset({Role.SYSTEM_ADMIN}),
        "session",
        pending=frozenset({"totp_enroll"}),
    )
    assert not decide(admin, P.DEVICE_ADMIN).allowed


# --- through the catalog -------------------------------------------------------------------


def _world(app: Any) -> dict[str, Any]:
    """Two units: 徐汇 (device A111111 carried by 010203, case 徐-1) and 静安 (device
    B222222 carried by 040506, case 静-1), one recording attached to each case."""
    rec_a = make_recording(
        app, serial="A111111", docking_officer="010203", start=cst(2026, 11, 2, 9)
    )
    rec_b = make_recording(
        app, serial="B222222", docking_officer="040506", start=cst(2026, 11, 3, 9)
    )
    with app.catalog.transaction() as s:
        s.execute(update(Device).where(Device.serial == "A111111").values(unit="徐汇"))
        s.execute(update(Device).where(Device.serial == "B222222").values(unit="静安"))
        for number, unit, rec_id in (("徐-1", "徐汇", rec_a), ("静-1", "静安", rec_b)):
            create_case(s, app.signer, number=number, unit=unit, actor="test")
            attach_manual(
                s,
                app.signer,
                case_number=number,
                rec=get_recording(s, str(rec_id)),
                reason="test",
                actor="test",
                policy=app.settings.retention,
            )
        s.add(User(login="outside", unit="外单位", password_hash="!"))
    with app.catalog.session() as s:
        outsider = s.scalar(select(User.id).where(User.login == "outside"))
    return {"a": rec_a, "b": rec_b, "outsider": outsider}


def _visible(app: Any, principal: Principal, now: datetime | None = None) -> set[int]:
    with app.catalog.session() as s:
        query = select(Recording.id)
        scope = recording_scope(principal, now=now)
        if scope is not None:
            query = query.where(scope)
        return set(s.scalars(query))


def _cases(app: Any, principal: Principal, now: datetime | None = None) -> set[str]:
    with app.catalog.session() as s:
        query = select(Case.number)
        scope = case_scope(principal, now=now)
        if scope is not None:
            query = query.where(scope)
        return set(s.scalars(query))


def test_targets_and_list_filters_agree_on_real_recordings(app: Any) -> None:
    w = _world(app)
    with app.catalog.session() as s:
        t_a = target_for_recording(s, w["a"])
        assert t_a.unit == "徐汇" and "010203" in t_a.officers and t_a.case_numbers == {"徐-1"}
        assert target_for_case(s, "静-1").unit == "静安"
        officer = who(Role.OFFICER, number="010203", uid=None)  # type: ignore[arg-type]
        assert allowed(s, officer, P.RECORDING_PLAY, t_a)
        assert not allowed(s, officer, P.RECORDING_PLAY, target_for_recording(s, w["b"]))
    assert _visible(app, who(Role.OFFICER, number="010203", uid=None)) == {w["a"]}  # type: ignore[arg-type]
    assert _visible(app, who(Role.REVIEWER, unit="静安", uid=None)) == {w["b"]}  # type: ignore[arg-type]
    assert _visible(app, who(Role.AUDITOR, uid=None)) == {w["a"], w["b"]}  # type: ignore[arg-type]
    assert _visible(app, who(Role.SYSTEM_ADMIN, uid=None)) == set()  # type: ignore[arg-type]
    assert _cases(app, who(Role.ARCHIVIST, unit="徐汇", uid=None)) == {"徐-1"}  # type: ignore[arg-type]


def test_an_officer_sees_what_their_device_assignment_covers(app: Any) -> None:
    # The recording's own officer field is someone else; the device was assigned to
    # 070809 at capture time, so 070809 sees it.
    from catalog.devices import assign_device

    w = _world(app)
    with app.catalog.transaction() as s:
        assign_device(
            s,
            app.signer,
            serial="A111111",
            officer_number="070809",
            start=cst(2026, 11, 1),
            end=cst(2026, 11, 5),
            actor="test",
        )
    carrier = who(Role.OFFICER, number="070809", uid=None)  # type: ignore[arg-type]
    assert w["a"] in _visible(app, carrier)
    with app.catalog.session() as s:
        assert allowed(s, carrier, P.RECORDING_VIEW, target_for_recording(s, w["a"]))


def test_a_case_grant_in_the_catalog_before_during_and_after(app: Any) -> None:
    w = _world(app)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    with app.catalog.transaction() as s:
        case_id = s.scalar(select(Case.id).where(Case.number == "静-1"))
        s.add(
            CaseGrant(
                user_id=w["outsider"],
                case_id=case_id,
                starts_at=start,
                ends_at=start + timedelta(days=7),
                reason="法制审核",
                granted_by="sec",
            )
        )
    outsider = Principal(
        w["outsider"], "outside", "outside", "外单位", None, frozenset({Role.REVIEWER}), "session"
    )
    before, during, after = (
        start - timedelta(hours=1),
        start + timedelta(days=1),
        start + timedelta(days=8),
    )
    assert _visible(app, outsider, before) == set()
    assert _visible(app, outsider, during) == {w["b"]}
    assert _visible(app, outsider, after) == set()
    assert _cases(app, outsider, during) == {"静-1"}
    with app.catalog.session() as s:
        target = target_for_recording(s, w["b"])
        assert not allowed(s, outsider, P.RECORDING_PLAY, target, now=before)
        assert allowed(s, outsider, P.RECORDING_PLAY, target, now=during)
        assert not allowed(s, outsider, P.RECORDING_PLAY, target, now=after)
        assert not allowed(
            s, outsider, P.RECORDING_PLAY, target_for_recording(s, w["a"]), now=during
        )


def test_list_filters_reach_nothing_where_decide_refuses_everything() -> None:
    """A token (evidence is for people) and a pending account (a one-time password not
    yet changed) are refused any recording by decide(); the search filters agree, so a
    list never shows what a detail would refuse."""
    from dataclasses import replace

    from sqlalchemy.sql.elements import False_

    auditor = Principal(9, "aud", "aud", None, None, frozenset({Role.AUDITOR}), "session")
    assert recording_scope(auditor) is None  # every unit
    token = replace(auditor, via="token")
    pending = replace(auditor, pending=frozenset({"password_change"}))
    for who in (token, pending):
        assert isinstance(recording_scope(who), False_)
        assert not decide(who, Permission.RECORDING_VIEW).allowed
