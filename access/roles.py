"""Roles, permissions and the one table that joins them (issue 15, point 2).

Who may do what is decided in :mod:`access.policy`; this module only names the roles,
the permissions, which role holds which permission, and how far each role reaches
(its *scope*: its own recordings, its unit, or everything). Nothing else in 留痕 lists
permissions of roles: the CLI, the HTTP API and docs/security.md read this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from config.i18n import N_


class Role(StrEnum):
    OFFICER = "officer"
    REVIEWER = "reviewer"
    SUPERVISOR = "supervisor"
    ARCHIVIST = "archivist"
    AUDITOR = "auditor"
    SYSTEM_ADMIN = "system_admin"
    SECURITY_ADMIN = "security_admin"
    AUDIT_ADMIN = "audit_admin"


# 三员分立 (GB/T 22239-2019 level 3): one account holds at most one of these.
ADMIN_ROLES = frozenset({Role.SYSTEM_ADMIN, Role.SECURITY_ADMIN, Role.AUDIT_ADMIN})

# Everything but the administrator roles: what a local principal holds while the
# catalog has no accounts yet (installs from before issue 15).
NON_ADMIN_ROLES = frozenset(set(Role) - ADMIN_ROLES)


class Permission(StrEnum):
    RECORDING_VIEW = "recording.view"  # metadata and page of a recording; searches
    RECORDING_PLAY = "recording.play"  # the proxy or access copy, streamed
    RECORDING_DOWNLOAD = "recording.download"  # the access copy, as a file
    ORIGINAL_DOWNLOAD = "original.download"  # the original's bytes
    RECORDING_MARK = "recording.mark"  # marks (important, reviewed) and notes
    CASE_VIEW = "case.view"
    CASE_CHANGE = "case.change"  # create, update, close, reopen, import cases and actions
    CASE_ATTACH = "case.attach"  # attach and detach recordings, with a reason
    HOLD_CHANGE = "hold.change"  # place and release legal holds
    RETENTION_CHANGE = "retention.change"  # retention review and sweep
    EXPORT = "export.run"  # archive exports, hand-over lists and receipts
    VERIFY = "verify.run"  # verify, fixity audits, four-properties checks
    CUSTODY_VIEW = "custody.view"
    AUDIT_VIEW = "audit.view"  # the access audit of evidence
    ADMIN_AUDIT_VIEW = "audit.admin_view"  # what the administrators did
    STATION_ADMIN = "station.admin"
    DEVICE_ADMIN = "device.admin"  # devices, officers and who carries which device
    USER_ADMIN = "user.admin"  # users' existence: add, disable, list
    ROLE_ADMIN = "role.admin"  # roles, case grants, password and lockout policy, locks
    SETTINGS_ADMIN = "settings.admin"
    DISTRICT_STATUS = "district.status"
    SESSION_REVOKE = "session.revoke"  # forced logout
    COMPLIANCE_VIEW = "compliance.view"  # coverage, 全过程记录 figures, self-inspection
    REVIEW_RUN = "review.run"  # 案卷评查: sampling, verdicts, rectification


class Scope(StrEnum):
    """How far a role's permissions on evidence reach."""

    OWN = "own"  # recordings of the devices the officer carried (device assignment)
    UNIT = "unit"  # the unit's recordings and cases
    ALL = "all"  # every unit


P = Permission

# Evidence content: what no administrator role may hold (三员分立: the administrators
# run the system, they do not see what it keeps).
EVIDENCE_CONTENT = frozenset(
    {
        P.RECORDING_VIEW,
        P.RECORDING_PLAY,
        P.RECORDING_DOWNLOAD,
        P.ORIGINAL_DOWNLOAD,
        P.CASE_VIEW,
    }
)

# Permissions that change something: an auditor and an audit administrator hold none.
CHANGES = frozenset(
    {
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
)

# Permissions whose decision depends on the target's unit, officers and cases; the
# others are about the system as a whole (a station, a user, the settings).
SCOPED = frozenset(
    {
        P.RECORDING_VIEW,
        P.RECORDING_PLAY,
        P.RECORDING_DOWNLOAD,
        P.ORIGINAL_DOWNLOAD,
        P.RECORDING_MARK,
        P.CASE_VIEW,
        P.CASE_CHANGE,
        P.CASE_ATTACH,
        P.HOLD_CHANGE,
        P.RETENTION_CHANGE,
        P.EXPORT,
        P.CUSTODY_VIEW,
        P.COMPLIANCE_VIEW,
        P.REVIEW_RUN,
    }
)

_UNIT_REVIEW = frozenset(
    {
        P.RECORDING_VIEW,
        P.RECORDING_PLAY,
        P.RECORDING_MARK,
        P.CASE_VIEW,
        P.CASE_ATTACH,
        P.COMPLIANCE_VIEW,
        P.REVIEW_RUN,
    }
)

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType(
    {
        # Own recordings and their metadata; proxies to watch.
        Role.OFFICER: frozenset({P.RECORDING_VIEW, P.RECORDING_PLAY}),
        # 法制审核 and 监督: the unit's recordings and cases, marks and notes, attach and
        # detach with a reason, and the unit's 案卷评查.
        Role.REVIEWER: _UNIT_REVIEW,
        Role.SUPERVISOR: _UNIT_REVIEW,
        # Cases, retention, holds, exports and hand-over receipts. Building a case file
        # (组卷) is the archivist's work, so attaching is too; an export carries the
        # originals, so the archivist may take an original.
        Role.ARCHIVIST: frozenset(
            {
                P.RECORDING_VIEW,
                P.RECORDING_PLAY,
                P.RECORDING_DOWNLOAD,
                P.ORIGINAL_DOWNLOAD,
                P.CASE_VIEW,
                P.CASE_CHANGE,
                P.CASE_ATTACH,
                P.HOLD_CHANGE,
                P.RETENTION_CHANGE,
                P.EXPORT,
                P.CUSTODY_VIEW,
            }
        ),
        # Reads everything, verifies, custody; changes nothing and copies nothing out.
        Role.AUDITOR: frozenset(
            {
                P.RECORDING_VIEW,
                P.RECORDING_PLAY,
                P.CASE_VIEW,
                P.VERIFY,
                P.CUSTODY_VIEW,
                P.AUDIT_VIEW,
                P.COMPLIANCE_VIEW,
                P.DISTRICT_STATUS,
            }
        ),
        # Stations, devices, settings, users' existence; no evidence content.
        Role.SYSTEM_ADMIN: frozenset(
            {P.STATION_ADMIN, P.DEVICE_ADMIN, P.SETTINGS_ADMIN, P.USER_ADMIN, P.DISTRICT_STATUS}
        ),
        # Roles, grants, password and lockout policy, forced logout; no evidence content.
        Role.SECURITY_ADMIN: frozenset({P.ROLE_ADMIN, P.SESSION_REVOKE}),
        # Reads the audit trail, the other administrators' included; changes nothing.
        Role.AUDIT_ADMIN: frozenset({P.AUDIT_VIEW, P.ADMIN_AUDIT_VIEW}),
    }
)

ROLE_SCOPE: Mapping[Role, Scope] = MappingProxyType(
    {
        Role.OFFICER: Scope.OWN,
        Role.REVIEWER: Scope.UNIT,
        Role.SUPERVISOR: Scope.UNIT,
        Role.ARCHIVIST: Scope.UNIT,
        Role.AUDITOR: Scope.ALL,
        Role.SYSTEM_ADMIN: Scope.ALL,
        Role.SECURITY_ADMIN: Scope.ALL,
        Role.AUDIT_ADMIN: Scope.ALL,
    }
)

# What a role is called to people (translated when shown: config.i18n._).
ROLE_TITLES: Mapping[Role, str] = MappingProxyType(
    {
        Role.OFFICER: N_("Officer"),
        Role.REVIEWER: N_("Reviewer"),
        Role.SUPERVISOR: N_("Supervisor"),
        Role.ARCHIVIST: N_("Archivist"),
        Role.AUDITOR: N_("Auditor"),
        Role.SYSTEM_ADMIN: N_("System administrator"),
        Role.SECURITY_ADMIN: N_("Security administrator"),
        Role.AUDIT_ADMIN: N_("Audit administrator"),
    }
)


# What the local principal may do while the catalog has no accounts (installs from before
# issue 15): everything it could do then, but the administration of accounts, which
# begins with the first administrator (`liuhen init --admin LOGIN`).
LOCAL_PERMISSIONS = frozenset(
    set().union(*(ROLE_PERMISSIONS[r] for r in NON_ADMIN_ROLES))
    | {P.STATION_ADMIN, P.DEVICE_ADMIN, P.SETTINGS_ADMIN, P.DISTRICT_STATUS}
)


# What an API token may do whatever roles it was issued with: the integrations tokens
# exist for (case management pushing cases, actions and attachments; a monitor reading
# the district status; a verifier). Evidence is read and exported by people, logged in
# (a token can be issued by the security administrator to itself, so a token's roles
# alone must not open evidence).
TOKEN_PERMISSIONS = frozenset(
    {P.CASE_VIEW, P.CASE_CHANGE, P.CASE_ATTACH, P.DISTRICT_STATUS, P.VERIFY}
)


# What a permission lets one do, for messages (translated when shown).
PERMISSION_TITLES: Mapping[Permission, str] = MappingProxyType(
    {
        P.RECORDING_VIEW: N_("view recordings"),
        P.RECORDING_PLAY: N_("play recordings"),
        P.RECORDING_DOWNLOAD: N_("download access copies"),
        P.ORIGINAL_DOWNLOAD: N_("download originals"),
        P.RECORDING_MARK: N_("mark recordings"),
        P.CASE_VIEW: N_("view cases"),
        P.CASE_CHANGE: N_("change cases"),
        P.CASE_ATTACH: N_("attach and detach recordings"),
        P.HOLD_CHANGE: N_("place and release legal holds"),
        P.RETENTION_CHANGE: N_("change retention"),
        P.EXPORT: N_("export"),
        P.VERIFY: N_("verify"),
        P.CUSTODY_VIEW: N_("read the custody log"),
        P.AUDIT_VIEW: N_("read the access audit"),
        P.ADMIN_AUDIT_VIEW: N_("read the administrators' audit"),
        P.STATION_ADMIN: N_("administer stations"),
        P.DEVICE_ADMIN: N_("administer devices"),
        P.USER_ADMIN: N_("administer users"),
        P.ROLE_ADMIN: N_("administer roles and grants"),
        P.SETTINGS_ADMIN: N_("administer settings"),
        P.DISTRICT_STATUS: N_("read the district status"),
        P.SESSION_REVOKE: N_("end other users' sessions"),
        P.COMPLIANCE_VIEW: N_("read compliance figures"),
        P.REVIEW_RUN: N_("run case reviews"),
    }
)

# What a policy target is called (translated when shown).
TARGET_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "recording": N_("recording"),
        "case": N_("case"),
        "unit": N_("unit"),
        "district": N_("the district"),
        "user": N_("user"),
        "system": N_("the system"),
    }
)


def roles_holding(permission: Permission) -> list[Role]:
    """The roles that hold ``permission``, in the order of :class:`Role`."""
    return [r for r in Role if permission in ROLE_PERMISSIONS[r]]


def _check_table() -> None:
    """The table keeps the rules it is built on; checked at import, so a change that
    breaks them fails every test at once rather than silently widening a role."""
    assert set(ROLE_PERMISSIONS) == set(Role) == set(ROLE_SCOPE) == set(ROLE_TITLES)
    assert set(PERMISSION_TITLES) == set(Permission)
    for role in ADMIN_ROLES:
        assert not ROLE_PERMISSIONS[role] & EVIDENCE_CONTENT, role
    for role in (Role.AUDITOR, Role.AUDIT_ADMIN):
        assert not ROLE_PERMISSIONS[role] & CHANGES, role


_check_table()
