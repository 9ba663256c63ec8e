"""An assignment list imported: `liuhen device import` and the devices page's upload
run this one function, so a file lands alike whoever brings it.

The rows land as ``catalog.case_import.import_devices`` lands them (each row its own
savepoint: a bad row is reported with its line and reasons, the good rows land), and
each new assignment re-resolves the officer of the recordings it covers
(``catalog.attach.after_assignment``): a hand-over recorded after the fact names the
right officer on what was already docked.
"""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path

from sqlalchemy.orm import Session

from catalog.attach import after_assignment
from catalog.case_import import DeviceImportReport, Progress, import_devices
from catalog.signing import Signer
from config import Settings
from formats.filenames import NameParser
from storage import ObjectStore


def import_device_file(
    session: Session,
    signer: Signer,
    path: Path,
    *,
    actor: str,
    zone: tzinfo,
    settings: Settings,
    store: ObjectStore | None,
    progress: Progress | None = None,
) -> DeviceImportReport:
    """Devices and assignments from the CSV at ``path`` (times without an offset in
    ``zone``); the report names each refused row and why."""
    report = import_devices(session, signer, path, actor=actor, zone=zone, progress=progress)
    parser = NameParser(settings.ingest.filename_patterns, settings.ingest.important_marker)
    for row in report.new_assignments:
        after_assignment(
            session,
            signer,
            row,
            name_officer=lambda name: parser.parse(name).officer,
            policy=settings.retention,
            actor=actor,
            store=store,
        )
    return report
