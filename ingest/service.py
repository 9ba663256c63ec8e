"""`liuhen station watch`: the station service. Watches the dock root and runs dockings.

Each recorder folder that appears is docked on a pool of ``ingest.docking_workers``
threads. At start-up, what the journal holds from before a crash is finished first
(staged files stored and registered), and the watcher's start-up scan re-docks every
recorder still present, so a killed station resumes where it stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from config.errors import ConfigError, LiuhenError
from config.i18n import _
from ingest.metrics import service_health, station_details
from ingest.station import Station
from ingest.watcher import DockEvent, DockWatcher, RecorderDocked, RecorderUndocked

log = logging.getLogger("liuhen.service")


def watch(station: Station, dock_root: Path, stop: threading.Event) -> None:
    """Run until ``stop`` is set."""
    if not dock_root.is_dir():
        raise ConfigError(
            _("dock root {root} is not a folder").format(root=dock_root),
            hint=_("create it, or set ingest.dock_root / pass --dock-root"),
        )
    # Heartbeats and metrics never stop offloading: a beat the catalog refuses is retried
    # at the next one, while dockings go on into staging.
    with service_health(
        station.catalog,
        station.settings,
        "station",
        station.metrics,
        station_details(station.journal, station.metrics),
    ):
        _watch(station, dock_root, stop)


def _watch(station: Station, dock_root: Path, stop: threading.Event) -> None:
    settings = station.ingest
    station.flush_journal(stop)
    running: dict[Path, Future[object]] = {}
    lock = threading.Lock()
    with ThreadPoolExecutor(settings.docking_workers, thread_name_prefix="docking") as pool:

        def on_event(event: DockEvent) -> None:
            if isinstance(event, RecorderUndocked):
                log.info("recorder left the dock: %s", event.path)
                return
            assert isinstance(event, RecorderDocked)
            with lock:
                current = running.get(event.path)
                if current is not None and not current.done():
                    return
                log.info("recorder docked: %s", event.path)
                running[event.path] = pool.submit(_dock, station, event.path, stop)

        with DockWatcher(
            dock_root,
            mode=settings.observer,
            poll_interval_s=settings.poll_interval_s,
            on_event=on_event,
        ):
            # Idle too, the chain head is anchored every few minutes: other processes
            # (case commands, exports on this host) append to this station's chain.
            interval = max(station.settings.station.anchor_interval_s, 1.0)
            while not stop.wait(interval):
                station.anchor_chain_head(due_only=True)


def _dock(station: Station, path: Path, stop: threading.Event) -> object:
    started = time.monotonic()
    try:
        result = station.run_docking(path, stop=stop)
        log.info("docking %s of %s: %s", result.uid, path, result.state)
        station.metrics.dockings.inc(state=result.state)
        station.metrics.docking_seconds.observe(time.monotonic() - started)
        return result
    except LiuhenError as exc:  # e.g. a folder of several recorders: said, no traceback
        log.error("docking of %s refused: %s", path, exc)
        return None
    except Exception:
        log.exception("docking of %s failed", path)
        return None
