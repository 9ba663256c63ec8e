"""What a station is doing now, one row per docking: files and bytes done, rate, ETA,
problems and whether the recorder is safe to clear (DockingState.is_safe_to_clear, the
one rule). `liuhen station status` prints these rows; the web station screen shows them."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

from config.message import from_stored
from config.settings import StationSettings, zone_of
from config.timetext import iso_time
from ingest import journal as J
from ingest.journal import Journal


def status_rows(journal: Journal, zone: tzinfo | None = None) -> list[dict[str, Any]]:
    """Every docking, oldest first, as ``station status --json`` gives it."""
    zone = zone or zone_of(StationSettings.time_zone)
    rows = []
    seen: dict[str, int] = {}
    for d in journal.dockings():
        prog = journal.progress(d.uid)
        total_files = sum(v["files"] for v in prog.values())
        total_bytes = sum(v["bytes"] for v in prog.values())
        done = {k: v for k, v in prog.items() if k in J.HELD}
        done_files = sum(v["files"] for v in done.values())
        done_bytes = sum(v["bytes"] for v in done.values())
        problems = sum(prog.get(k, {}).get("files", 0) for k in (J.QUARANTINED, J.REJECTED))
        start = datetime.fromisoformat(d.started_at)
        end = datetime.now(UTC) if d.state == J.OFFLOADING else datetime.fromisoformat(d.updated_at)
        elapsed = max((end - start).total_seconds(), 1e-3)
        rate = done_bytes / elapsed
        eta = (total_bytes - done_bytes) / rate if d.state == J.OFFLOADING and rate > 0 else None
        # The nth docking of this device at this station: what tells its dockings apart.
        number = None
        if d.serial:
            number = seen[d.serial] = seen.get(d.serial, 0) + 1
        rows.append(
            {
                "throughput_mb_s": round(rate / 1e6, 2),
                "eta_s": round(eta) if eta else None,
                "docking": d.uid,
                "slot": d.slot,
                "device": d.serial,
                "officer": d.identity.get("officer_number"),
                "officer_name": d.identity.get("officer_name") or None,
                "state": d.state,
                "files_done": done_files,
                "files_total": total_files,
                "bytes_done": done_bytes,
                "bytes_total": total_bytes,
                "problems": problems,
                "waiting": d.waiting,
                # What the device file and the file names disagree on: English in --json
                # (each a str), translated where a person reads it (config.message).
                "identity_flags": [from_stored(f) for f in d.identity.get("flags") or []],
                "message": d.message,
                "started_at": d.started_at,
                "updated_at": d.updated_at,
                "docked_at": iso_time(d.started_at, zone),
                "device_docking": number,
                "safe_to_clear": d.state.is_safe_to_clear,
            }
        )
    for r in rows:  # how many times its device docked here in all
        r["device_dockings"] = seen.get(r["device"] or "", 0) or None
    return rows
