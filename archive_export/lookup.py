"""`liuhen verify FILE`: is this file's content a recording (or derivative) we hold?

The file is hashed (SHA-256 and SM3, one read) and looked up by digest in the catalog:
recordings, derivatives, and tombstones of deleted originals. The answer carries the
object's custody history, each event checked by the custody rule (catalog.chainrule: hash,
signature, key, retirement) so that what is printed is what was signed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive_export.parallel_hash import FileSource, Item, hash_items
from catalog.chainrule import ChainChecker
from catalog.custody import catalog_keys, not_access
from catalog.models import CustodyEvent, Derivative, Recording, Tombstone
from config.errors import EXIT_NOINPUT, LiuhenError


class FileUnreadable(LiuhenError):
    exit_code = EXIT_NOINPUT


@dataclass
class FileReport:
    path: str
    size: int
    sha256: str
    sm3: str
    matches: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    custody: list[dict[str, Any]] = field(default_factory=list)

    @property
    def known(self) -> bool:
        return bool(self.matches)

    @property
    def ok(self) -> bool:
        return self.known and not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "known": self.known,
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "sm3": self.sm3,
            "matches": self.matches,
            "problems": self.problems,
            "custody": self.custody,
        }


def hash_file(path: Path) -> tuple[int, str, str]:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FileUnreadable(f"{path}: cannot read: {exc.strerror}") from exc
    if not path.is_file():
        raise FileUnreadable(f"{path}: not a regular file")
    out = hash_items([Item(str(path), FileSource(path, size), ("sha256", "sm3"))])[str(path)]
    if out.error:
        raise FileUnreadable(f"{path}: {out.error}")
    return out.size or 0, out.digests["sha256"], out.digests["sm3"]


def lookup_file(session: Session, path: Path) -> FileReport:
    size, sha256, sm3 = hash_file(path)
    report = FileReport(str(path), size, sha256, sm3)
    _find_matches(session, report, sha256)
    if not report.matches:
        # A digest prefix match would be a different file: only exact digests count.
        return report
    _check_custody(session, report, {sha256})
    return report


def _find_matches(session: Session, report: FileReport, sha256: str) -> None:
    """The recordings, derivatives and tombstones with these bytes, each compared."""
    for rec in session.scalars(select(Recording).where(Recording.sha256 == sha256)):
        report.matches.append(
            {
                "type": "recording",
                "id": rec.id,
                "name": rec.original_name,
                "state": rec.state,
                "size": rec.size,
                "sm3": rec.sm3,
                "object_key": rec.object_key,
                "captured_at": rec.captured_at.isoformat() if rec.captured_at else None,
                "verified_at": rec.verified_at.isoformat() if rec.verified_at else None,
            }
        )
        _compare(report, "recording", rec.id, rec.sm3, rec.size)
    for d in session.scalars(select(Derivative).where(Derivative.sha256 == sha256)):
        source = session.get(Recording, d.recording_id)
        report.matches.append(
            {
                "type": "derivative",
                "id": d.id,
                "kind": d.kind,
                "method": d.method,
                "recording_id": d.recording_id,
                "source_sha256": source.sha256 if source else None,
                "size": d.size,
                "sm3": d.sm3,
                "object_key": d.object_key,
            }
        )
        _compare(report, "derivative", d.id, d.sm3, d.size)
    for t in session.scalars(select(Tombstone).where(Tombstone.sha256 == sha256)):
        report.matches.append(
            {
                "type": "tombstone",
                "recording_id": t.recording_id,
                "name": t.original_name,
                "deleted_at": t.deleted_at.isoformat(),
                "reason": t.reason,
                "actor": t.actor,
            }
        )
        _compare(report, "tombstone of recording", t.recording_id, t.sm3, t.size)


def _check_custody(session: Session, report: FileReport, object_ids: set[str]) -> None:
    """The custody events about the file, each checked by the custody rule."""
    events = list(
        session.scalars(
            select(CustodyEvent)
            .where(CustodyEvent.object_id.in_(object_ids), not_access())
            .order_by(CustodyEvent.at, CustodyEvent.station_id, CustodyEvent.seq)
        )
    )
    # The one custody rule (catalog.chainrule), applied to this excerpt of the chains in
    # (station, seq) order, as `verify BUNDLE` applies it to a bag's excerpt.
    checker = ChainChecker(catalog_keys(session), whole=False)
    found = {ev.id: checker.check(ev) for ev in sorted(events, key=lambda e: (e.station_id, e.seq))}
    for ev in events:
        kinds = {i.kind for i in found[ev.id]}
        for issue in found[ev.id]:
            report.problems.append(
                f"custody event station {ev.station_id} #{ev.seq} "
                f"({ev.action}): {issue.kind}: {issue.detail}"
            )
        report.custody.append(
            {
                "station": ev.station_id,
                "seq": ev.seq,
                "at": ev.at,
                "actor": ev.actor,
                "action": ev.action,
                "object_type": ev.object_type,
                "details": ev.details,
                "hash_ok": "edited" not in kinds,
                "signature_ok": not kinds & {"bad-signature", "unknown-key"},
            }
        )


def _compare(report: FileReport, what: str, ident: int, sm3: str, size: int) -> None:
    if sm3 != report.sm3:
        report.problems.append(
            f"{what} {ident}: SHA-256 matches but SM3 differs (catalog {sm3}, file {report.sm3})"
        )
    if size != report.size:
        report.problems.append(
            f"{what} {ident}: SHA-256 matches but size differs (catalog {size}, file {report.size})"
        )
