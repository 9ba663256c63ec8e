"""The hand-over history the catalog keeps (``liuhen export list`` / ``export show``).

Read from the catalog's ``exports`` rows and their signed ``export-finished`` custody
events: who exported, when, which bags, and each bag's signed digest (the SHA-256 of
``tagmanifest-sha256.txt``, which the bag's detached signature signs), so a receipt can
be reprinted after the bags have left the station. Kept apart from
:mod:`archive_export.handover`, which the offline four-properties check imports without
the catalog.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog.errors import CatalogError
from catalog.models import CustodyEvent, Export, ExportItem, Recording
from config.errors import EXIT_NOINPUT
from config.i18n import _


class ExportNotFound(CatalogError):
    exit_code = EXIT_NOINPUT


def _bag_path(out_path: str, name: str) -> Path:
    out = Path(out_path)
    return out if out.name == name else out.with_name(name)


def _signed_digest(row: Export, name: str) -> tuple[str | None, str]:
    """A bag's signed digest and where it was read: the catalog (recorded at export), or
    a directory bag still on disk (exports made before the catalog recorded it)."""
    recorded = (row.bags or {}).get("signed_digest", {}).get(name)
    if recorded:
        return recorded, "catalog"
    manifest = _bag_path(row.out_path, name) / "tagmanifest-sha256.txt"
    if manifest.is_file():
        return hashlib.sha256(manifest.read_bytes()).hexdigest(), "bag on disk"
    return None, "not recorded"


def _finished_event(session: Session, uid: str) -> CustodyEvent | None:
    return session.scalars(
        select(CustodyEvent)
        .where(
            CustodyEvent.object_type == "export",
            CustodyEvent.object_id == uid,
            CustodyEvent.action == "export-finished",
        )
        .order_by(CustodyEvent.id.desc())
    ).first()


def _export_entry(session: Session, row: Export, items: int) -> dict[str, Any]:
    bags = row.bags or {}
    event = _finished_event(session, row.uid)
    entries = []
    for name in bags.get("names") or bags.get("planned") or []:
        digest, source = _signed_digest(row, name)
        entries.append(
            {
                "name": name,
                "path": str(_bag_path(row.out_path, name)),
                "oxum": (bags.get("oxum") or {}).get(name),
                "four_properties_ok": (bags.get("four_properties") or {}).get(name),
                "signed_digest": digest,
                "signed_digest_from": source,
            }
        )
    return {
        "export": row.uid,
        "state": row.state,
        "actor": row.actor,
        "started_at": row.started_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "scope": dict(row.scope or {}),
        "out": row.out_path,
        "files": row.files,
        "bytes": row.bytes,
        "recordings": items,
        "key_id": bags.get("key_id"),
        "bags": entries,
        "event": None
        if event is None
        else {
            "at": event.at,
            "station": event.station_id,
            "seq": event.seq,
            "event_hash": event.event_hash,
            "key_id": event.key_id,
            "signature": event.signature,
        },
        "error": row.error,
    }


def _item_counts(session: Session, export_ids: list[int]) -> dict[int, int]:
    return dict(
        session.execute(
            select(ExportItem.export_id, func.count())
            .where(ExportItem.export_id.in_(export_ids))
            .group_by(ExportItem.export_id)
        ).all()
    )


def handover_history(session: Session, *, include_failed: bool = False) -> list[dict[str, Any]]:
    """Every finished export (hand-over), newest first; with ``include_failed`` the
    failed and unfinished ones too."""
    query = select(Export).order_by(Export.started_at.desc(), Export.id.desc())
    if not include_failed:
        query = query.where(Export.state == "DONE")
    rows = list(session.scalars(query))
    counts = _item_counts(session, [r.id for r in rows])
    return [_export_entry(session, r, counts.get(r.id, 0)) for r in rows]


def find_export(session: Session, ref: str) -> Export:
    """An export by its id, or a unique prefix of it (at least 4 characters)."""
    ref = ref.strip().lower()
    found = (
        list(session.scalars(select(Export).where(Export.uid.startswith(ref)).limit(5)))
        if len(ref) >= 4
        else []
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise ExportNotFound(
            _("no export {ref!r}").format(ref=ref), hint=_("list them with 'liuhen export list'")
        )
    raise ExportNotFound(
        _("{ref!r} names {count} exports: {ids}").format(
            ref=ref, count=len(found), ids=", ".join(e.uid for e in found)
        ),
        hint=_("give more of the export id"),
    )


def handover_receipt(session: Session, ref: str) -> dict[str, Any]:
    """What a hand-over receipt reprints: the export as :func:`handover_history` has it,
    and each recording handed over (id, file name, digests, bag path)."""
    row = find_export(session, ref)
    items = session.execute(
        select(ExportItem.path, Recording)
        .join(Recording, Recording.id == ExportItem.recording_id)
        .where(ExportItem.export_id == row.id)
        .order_by(ExportItem.path, Recording.id)
    ).all()
    entry = _export_entry(session, row, len(items))
    entry["items"] = [
        {
            "recording": rec.id,
            "name": rec.original_name,
            "path": path,
            "sha256": rec.sha256,
            "sm3": rec.sm3,
            "size": rec.size,
        }
        for path, rec in items
    ]
    return entry
