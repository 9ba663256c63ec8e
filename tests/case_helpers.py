"""Recordings for case and retention tests: real objects in a real store, real catalog rows,
registered and probed through the same catalog functions the station and worker call."""

from __future__ import annotations

import hashlib
import io
import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from catalog.attach import after_probe
from catalog.devices import add_device
from catalog.dockings import DockingInfo, OffloadedFile, ensure_docking
from catalog.models import Recording
from storage import Digest, content_key
from storage.digest import DigestPair
from tests.registration_oracle import register_file

CST = timezone(timedelta(hours=8))
_counter = itertools.count(1)


def cst(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    """A China Standard Time wall-clock time, as UTC."""
    return datetime(year, month, day, hour, minute, second, tzinfo=CST).astimezone(UTC)


def put_object(app: Any, data: bytes, retain_until: datetime | None = None) -> str:
    sha = hashlib.sha256(data).hexdigest()
    key = content_key(Digest("sha256", sha))
    app.store.put(
        key,
        io.BytesIO(data),
        expected=Digest("sha256", sha),
        size=len(data),
        retain_until=retain_until,
    )
    return key


def make_recording(
    app: Any,
    *,
    serial: str = "A123456",
    docking_officer: str | None = "010203",
    start: datetime,
    seconds: float = 60.0,
    name_officer: str | None = None,
    important: bool = False,
    received: datetime | None = None,
    probe: bool = True,
    retain_until: datetime | None = None,
    data: bytes | None = None,
) -> int:
    """Dock, store, register and (unless ``probe`` is False) probe one recording; returns its id.

    The file name carries ``name_officer`` (default: the docking officer) as a recorder
    writes it; the probe step runs ``after_probe`` as the worker does.
    """
    n = next(_counter)
    data = data or f"recording {n} {start.isoformat()} {serial}".encode() * 8
    key = put_object(app, data, retain_until)
    stamp = start.astimezone(CST).strftime("%Y%m%d%H%M%S")
    officer = name_officer or docking_officer or "000000"
    name = f"{serial}_{officer}_{stamp}_{n % 10000:04d}{'_IMP' if important else ''}.MP4"
    received = received or start + timedelta(hours=8)
    with app.catalog.transaction() as s:
        add_device(s, app.signer, serial=serial, actor="test")
        docking = ensure_docking(
            s,
            app.signer,
            DockingInfo(
                uid=f"dock-{serial}-{n}",
                slot="slot",
                source_path="/dock",
                serial=serial,
                officer_number=docking_officer,
                officer_name="",
                unit="",
                model="",
                identity_source="device-info",
                identity_raw={},
                started_at=received,
            ),
            "test",
        )
        row, _ = register_file(
            s,
            app.signer,
            docking,
            OffloadedFile(
                relpath_raw=f"DCIM/{name}".encode(),
                size=len(data),
                mtime=None,
                digests=DigestPair.of_hex(
                    hashlib.sha256(data).hexdigest(), hashlib.new("sm3", data).hexdigest()
                ),
                object_key=key,
                captured_at=start,
                staged_at=received,
                verified_by="test",
                important=important,
            ),
            "test",
        )
        rec = s.get(Recording, row.recording_id)
        assert rec is not None
        rec_id: int = rec.id
    if probe:
        probe_recording(
            app,
            rec_id,
            start,
            start + timedelta(seconds=seconds),
            name_officer=officer,
            important=important,
        )
    return rec_id


def probe_recording(
    app: Any,
    rec_id: int,
    start: datetime,
    end: datetime,
    *,
    name_officer: str | None,
    important: bool = False,
) -> list[str]:
    with app.catalog.transaction() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None
        rec.captured_at, rec.capture_end, rec.state = start, end, "PROBED"
        return after_probe(
            s,
            app.signer,
            rec,
            name_officer=name_officer,
            important=important,
            policy=app.settings.retention,
            actor="worker:test",
            store=app.store,
        )
