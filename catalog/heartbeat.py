"""Heartbeats: each running station or worker process says, in the catalog, that it lives.

A process upserts its own :class:`~catalog.models.Heartbeat` row every ``interval_s``
seconds and marks it ``stopped`` when it exits cleanly. A process counts as *alive*
while its row is ``running`` and was seen within ``ALIVE_FACTOR`` × its interval; a
``running`` row older than that is *lost* (killed, hung, or cut off from the catalog).

Heartbeats are advisory: a write that fails (catalog down) is logged and tried again at
the next beat, and never stops the work itself. A station keeps offloading into
staging while PostgreSQL is away.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from importlib import metadata
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from catalog.db import Catalog
from catalog.models import Heartbeat, utcnow

log = logging.getLogger("liuhen.heartbeat")

# Missed beats after which a running process counts as lost.
ALIVE_FACTOR = 3
DEFAULT_INTERVAL_S = 30.0
ALIVE, LOST, STOPPED, DIED = "alive", "lost", "stopped", "died"
RUNNING = "running"
# Rows not seen for this long are deleted when a process starts (decommissioned hosts).
FORGET_AFTER = timedelta(days=30)


def software_version() -> str:
    try:
        return metadata.version("liuhen")
    except metadata.PackageNotFoundError:  # running from a source tree
        return ""


def make_process_id(role: str, host: str | None = None, pid: int | None = None) -> str:
    """``host:pid:role``: one row per process, found again by the same process."""
    return f"{host or socket.gethostname()}:{pid if pid is not None else os.getpid()}:{role}"


def beat(
    session: Session,
    *,
    process_id: str,
    role: str,
    station_id: str,
    host: str,
    pid: int,
    started_at: datetime,
    interval_s: float,
    details: Mapping[str, Any] | None = None,
    version: str = "",
    now: datetime | None = None,
) -> Heartbeat:
    """Insert or refresh this process's row (it is the only writer of its own row)."""
    now = now or utcnow()
    doc = {**(details or {}), "interval_s": float(interval_s)}
    row = session.get(Heartbeat, process_id)
    if row is None:
        row = Heartbeat(
            process_id=process_id,
            role=role,
            station_id=station_id,
            host=host,
            pid=pid,
            version=version,
            state=RUNNING,
            started_at=started_at,
            last_seen=now,
            details=doc,
        )
        session.add(row)
    else:
        # A restarted process can reuse a pid (pid 1 in a container): it takes the row over.
        row.role, row.station_id, row.host, row.pid = role, station_id, host, pid
        row.version, row.state, row.started_at = version, RUNNING, started_at
        row.last_seen, row.details = now, doc
    session.flush()
    return row


def mark_stopped(
    session: Session,
    process_id: str,
    *,
    now: datetime | None = None,
    details: Mapping[str, Any] | None = None,
) -> bool:
    """Say this process ended cleanly (with its final details); False when it never beat."""
    row = session.get(Heartbeat, process_id)
    if row is None:
        return False
    row.state = STOPPED
    row.last_seen = now or utcnow()
    if details is not None:
        row.details = {**details, "interval_s": interval_of(row)}
    return True


def reap(
    session: Session,
    *,
    host: str,
    own_pid: int,
    pid_alive: Callable[[int], bool],
    now: datetime | None = None,
) -> list[str]:
    """Mark ``died`` the rows of this host that say running but whose process is gone
    (killed, or its host rebooted), and forget rows not seen for FORGET_AFTER.

    Only this host can tell whether one of its pids lives, so each process does this for
    its own host when it starts. Returns the process ids marked died.
    """
    now = now or utcnow()
    died = []
    for row in session.scalars(
        select(Heartbeat).where(
            Heartbeat.host == host, Heartbeat.state == RUNNING, Heartbeat.pid != own_pid
        )
    ):
        if not pid_alive(row.pid):
            row.state = DIED
            row.details = {**(row.details or {}), "found_dead_at": now.isoformat()}
            died.append(row.process_id)
    session.execute(delete(Heartbeat).where(Heartbeat.last_seen < now - FORGET_AFTER))
    return died


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def interval_of(row: Heartbeat) -> float:
    try:
        return float((row.details or {}).get("interval_s", DEFAULT_INTERVAL_S))
    except (TypeError, ValueError):
        return DEFAULT_INTERVAL_S


def status_of(row: Heartbeat, now: datetime | None = None, factor: float = ALIVE_FACTOR) -> str:
    """alive, lost (running but silent for ``factor`` intervals), stopped (ended cleanly)
    or died (its host found the process gone)."""
    if row.state in (STOPPED, DIED):
        return row.state
    now = now or utcnow()
    if now - row.last_seen <= timedelta(seconds=factor * interval_of(row)):
        return ALIVE
    return LOST


class Heartbeater:
    """A daemon thread that beats every ``interval_s`` until :meth:`stop`.

    ``details`` is called at each beat for what to publish (what the process is doing);
    ``on_result`` is told whether the beat reached the catalog (for metrics). Neither may
    stop the beating: their errors are logged.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        role: str,
        station_id: str,
        interval_s: float,
        details: Callable[[], Mapping[str, Any]] | None = None,
        on_result: Callable[[bool], None] | None = None,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.catalog = catalog
        self.role = role
        self.station_id = station_id
        self.interval_s = interval_s
        self.host = host or socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.process_id = make_process_id(role, self.host, self.pid)
        self.started_at = utcnow()
        self.version = software_version()
        self._details = details or (lambda: {})
        self._on_result = on_result or (lambda _ok: None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def beat_once(self) -> bool:
        """One beat; True when it reached the catalog."""
        details = self._collect()
        try:
            with self.catalog.transaction() as s:
                beat(
                    s,
                    process_id=self.process_id,
                    role=self.role,
                    station_id=self.station_id,
                    host=self.host,
                    pid=self.pid,
                    started_at=self.started_at,
                    interval_s=self.interval_s,
                    details=details,
                    version=self.version,
                )
            ok = True
        except Exception as exc:  # the catalog may be down: the work goes on regardless
            self.failures += 1
            log.warning(
                "heartbeat not written (retrying in %.0f s): %s",
                self.interval_s,
                getattr(exc, "message", None) or exc,
            )
            ok = False
        try:
            self._on_result(ok)
        except Exception:
            log.warning("heartbeat result callback failed", exc_info=True)
        return ok

    def _collect(self) -> dict[str, Any]:
        try:
            return dict(self._details())
        except Exception as exc:  # what the process publishes is optional, the beat is not
            log.warning("heartbeat details failed: %s", exc)
            return {"details_error": f"{type(exc).__name__}: {exc}"}

    def start(self) -> Heartbeater:
        self._thread = threading.Thread(
            target=self._loop, name=f"heartbeat-{self.role}", daemon=True
        )
        self._thread.start()
        return self

    def _reap(self) -> None:
        try:
            with self.catalog.transaction() as s:
                died = reap(s, host=self.host, own_pid=self.pid, pid_alive=pid_alive)
            for process_id in died:
                log.warning("process %s of this host ended without saying so", process_id)
        except Exception as exc:  # housekeeping only; the next start tries again
            log.warning("could not tidy heartbeats: %s", getattr(exc, "message", None) or exc)

    def _loop(self) -> None:
        self._reap()
        while True:
            self.beat_once()
            if self._stop.wait(self.interval_s):
                return

    def stop(self) -> None:
        """Stop beating and mark the row stopped (best effort: the catalog may be down)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        details = self._collect()  # the final figures, e.g. items done in a --drain run
        try:
            with self.catalog.transaction() as s:
                mark_stopped(s, self.process_id, details=details)
        except Exception as exc:
            log.warning(
                "could not mark heartbeat %s stopped: %s",
                self.process_id,
                getattr(exc, "message", None) or exc,
            )

    def __enter__(self) -> Heartbeater:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
