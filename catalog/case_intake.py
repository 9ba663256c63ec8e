"""A case-management export taken in: its rows landed, the recordings of its new
actions attached by rule, and the store's retention brought in line with the cases it
closed, in the caller's one transaction. The command line (`liuhen case import`) and
the HTTP API (`POST /api/v1/cases/import`) both take cases in through here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from catalog.attach import attach_for_actions
from catalog.case_import import ImportReport, Progress, import_actions
from catalog.retention import sync_cases_store_retention
from catalog.signing import Signer
from config.settings import RetentionSettings
from storage import ObjectStore


def import_and_attach(
    session: Session,
    signer: Signer,
    store: ObjectStore,
    policy: RetentionSettings,
    path: Path,
    *,
    actor: str,
    zone: tzinfo,
    data: bytes | None = None,
    may_change: Callable[[str, str], bool] | None = None,
    attachable: ColumnElement[bool] | None = None,
    progress: Progress | None = None,
    attaching: Callable[[], None] | None = None,
) -> ImportReport:
    """Import ``path`` (or ``data``, named by it); ``may_change`` refuses rows of cases the
    importer may not change, ``attachable`` limits the recordings attached by rule to
    those the importer may see; ``attaching()`` is called when the rows are in and the
    attaching begins (a progress bar's new label)."""
    report = import_actions(
        session,
        signer,
        path,
        actor=actor,
        data=data,
        zone=zone,
        progress=progress,
        may_change=may_change,
    )
    if attaching is not None:
        attaching()
    report.attached = attach_for_actions(
        session,
        signer,
        report.new_action_ids,
        policy=policy,
        actor=actor,
        store=store,
        only=attachable,
    )
    sync_cases_store_retention(session, store, report.closed_case_ids, policy)
    return report
