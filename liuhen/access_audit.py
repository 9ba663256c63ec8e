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


def audit_cli(
    action: str, object_type: str, ref: str, *, actor: str | None = None, **details: Any
) -> None:
    """One access event for a command line that just read or handled evidence (issue 15
    point 4): named as the API names it (a recording by its catalog id, turned into its
    SHA-256 by the audit; a case by its number), so the access report finds both alike.
    ``actor``: the command's ``--actor`` once settled; the principal's otherwise. Also
    without user accounts (the local OS user then), so the audit misses no access."""
    import click

    from liuhen.actor import app_of, current_principal

    ctx = click.get_current_context()
    app = app_of(ctx)
    object_id = ref
    if object_type in ("recording", "case"):
        object_id = _canonical(app, object_type, ref)
    audit(
        app,
        actor=actor or current_principal(ctx).actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        details=details,
    )


def _canonical(app: App, object_type: str, ref: str) -> str:
    """The id the API uses: a recording's catalog id (``ref``: id, digest prefix or file
    name), a case's number as stored."""
    from catalog.attach import get_recording
    from catalog.cases import get_case

    with app.ready_catalog().session() as session:
        if object_type == "recording":
            return str(get_recording(session, ref).id)
        return get_case(session, ref).number
