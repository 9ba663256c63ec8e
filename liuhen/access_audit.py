"""The CLI's access events (logins, logouts, refusals, role and grant changes) handed to
the access audit, ``access.audit.record_access`` (issue 15 point 4: custody events in
the ``access.`` namespace of this host's signed chain).

The audit is built alongside the accounts; until ``access/audit.py`` is there, this
records nothing, and the commands work the same."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liuhen.app import App


def audit(
    app: App,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    result: str = "ok",
    source: str | None = "cli",
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record one access event in its own transaction (a refused command rolls its own
    work back; the refusal must stay recorded)."""
    try:
        module = importlib.import_module("access.audit")
    except ModuleNotFoundError:
        return
    if not app.settings.key_file.exists():
        return  # no signing key: nothing can sign the event (before `liuhen init`)
    with app.ready_catalog().transaction() as session:
        module.record_access(
            session,
            app.signer,
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            result=result,
            source=source,
            details=dict(details or {}),
        )
