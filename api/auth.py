"""Who is asking, and may they: the one dependency every endpoint takes.

``caller`` finds the principal of a request; ``Caller.authorize`` asks the access policy
(``access.policy.authorize``, the one place permissions are decided) and audits a refusal.
Phase 1 of issue 15: no accounts yet, every request acts as the local operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from api.context import ApiContext


@dataclass
class Caller:
    ctx: ApiContext
    actor: str
    source: str | None
    principal: Any = None
    details: dict[str, Any] = field(default_factory=dict)

    def authorize(self, permission: str, target: Any = None) -> None:
        """Raise AccessDenied (403, audited) unless the caller holds ``permission``."""

    def audit(self, action: str, object_type: str, object_id: int | str, **details: Any) -> None:
        """Record an access event (point 4 of issue 15)."""

    def recording_target(self, rec_id: int) -> Any:
        """What the policy needs to know of a recording (its unit, officers, cases)."""
        return None

    def case_target(self, number: str) -> Any:
        return None

    def scope(self) -> Any:
        """The SQL filter of the recordings the caller may see (None: all)."""
        return None


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def caller(request: Request) -> Caller:
    ctx = context(request)
    host = request.client.host if request.client else None
    return Caller(ctx, actor="api", source=host)
