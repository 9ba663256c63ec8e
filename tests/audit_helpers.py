"""Who runs `liuhen audit` in the audit's tests.

The audit asks access.policy (the access helper's) whether the caller holds
Permission.AUDIT_VIEW, and liuhen.actor.current_principal who the caller is. Until both
are merged onto this branch, :func:`use_policy` installs a stand-in for access.roles and
access.policy that follows the contract (docs: /work/notes/access-contract.md); once the
real modules are there, they are used and the stand-in is not installed."""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pytest

import liuhen.actor
from config.errors import LiuhenError


def _shim_modules() -> tuple[types.ModuleType, types.ModuleType]:
    roles = types.ModuleType("access.roles")
    policy = types.ModuleType("access.policy")

    class Role(StrEnum):
        OFFICER = "officer"
        REVIEWER = "reviewer"
        SUPERVISOR = "supervisor"
        ARCHIVIST = "archivist"
        AUDITOR = "auditor"
        SYSTEM_ADMIN = "system_admin"
        SECURITY_ADMIN = "security_admin"
        AUDIT_ADMIN = "audit_admin"

    class Permission(StrEnum):
        AUDIT_VIEW = "audit.view"
        ADMIN_AUDIT_VIEW = "audit.admin_view"

    table = {
        Role.AUDITOR: {Permission.AUDIT_VIEW},
        Role.AUDIT_ADMIN: {Permission.AUDIT_VIEW, Permission.ADMIN_AUDIT_VIEW},
    }

    @dataclass(frozen=True)
    class Principal:
        user_id: int | None
        login: str
        display_name: str
        unit: str | None
        officer_number: str | None
        roles: frozenset[Role]
        via: str
        session_id: str | None = None

    class AccessDenied(LiuhenError):
        exit_code = 77

    def allowed(session: Any, principal: Any, permission: Any, target: Any = None) -> bool:
        return any(permission in table.get(r, set()) for r in principal.roles)

    def authorize(session: Any, principal: Any, permission: Any, target: Any = None) -> None:
        if not allowed(session, principal, permission, target):
            raise AccessDenied(f"{principal.login} may not use {permission}")

    roles.Role, roles.Permission = Role, Permission  # type: ignore[attr-defined]
    roles.ADMIN_ROLES = frozenset(  # type: ignore[attr-defined]
        {Role.SYSTEM_ADMIN, Role.SECURITY_ADMIN, Role.AUDIT_ADMIN}
    )
    for name, value in (
        ("Principal", Principal),
        ("AccessDenied", AccessDenied),
        ("allowed", allowed),
        ("authorize", authorize),
    ):
        setattr(policy, name, value)
    return roles, policy


def use_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real access.policy when it is there, else the stand-in."""
    if "access.policy" in sys.modules:
        return  # the real one, or the stand-in installed already by this test
    if importlib.util.find_spec("access.policy") is None:
        roles, policy = _shim_modules()
        monkeypatch.setitem(sys.modules, "access.roles", roles)
        monkeypatch.setitem(sys.modules, "access.policy", policy)


def act_as(monkeypatch: pytest.MonkeyPatch, login: str, *role_names: str) -> Any:
    """Make ``login`` with these roles the caller of every `liuhen` command."""
    use_policy(monkeypatch)
    from access.policy import Principal
    from access.roles import Role

    principal = Principal(
        user_id=None,
        login=login,
        display_name=login,
        unit=None,
        officer_number=None,
        roles=frozenset(Role(r) for r in role_names),
        via="session",
    )
    monkeypatch.setattr(liuhen.actor, "current_principal", lambda ctx: principal, raising=False)
    return principal
