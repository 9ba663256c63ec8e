"""Prometheus metrics of a station or worker process, served on an optional local port.

A small registry of counters, gauges and histograms rendered in the Prometheus text
exposition format (version 0.0.4), and a ``http.server`` on a daemon thread that serves
it at ``/metrics``. No dependency: the format is a few lines of text. ``prometheus_client``
would do the same job (with a ``CollectorRegistry`` of our own rather than its
process-global default one, since state here lives in objects handed down, not in
modules), but nothing it adds beyond that (multiprocess mode, push gateway, OpenMetrics)
is needed here.

Each process builds one :class:`ServiceMetrics` and hands it to its station or worker;
the service updates it as it works, and a scrape reads it. Values only live in the
process: Prometheus keeps the history.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from catalog import Catalog
from catalog.district_status import queue_counts
from catalog.heartbeat import Heartbeater, software_version
from config import Settings
from config.errors import ConfigError
from config.i18n import _
from ingest import journal as J
from ingest.journal import Journal

log = logging.getLogger("liuhen.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: from a small photo's commit (tens of ms) to a long re-encode (tens of minutes).
DEFAULT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

LabelValues = tuple[str, ...]


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Family:
    """One metric name with its label names; children are keyed by label values."""

    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:  # pragma: no cover - every family overrides it
        raise NotImplementedError


class Counter(_Family):
    """A count that only goes up (files, bytes, failures)."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[LabelValues, float] = {} if labelnames else {(): 0.0}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter cannot go down ({amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def touch(self, **labels: str) -> None:
        """Show the series at 0 before anything happened (rates need a starting point)."""
        key = self._key(labels)
        with self._lock:
            self._values.setdefault(key, 0.0)

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def total(self, **labels: str) -> float:
        """The sum over every series matching the given labels (e.g. all kinds)."""
        idx = {self.labelnames.index(n): str(v) for n, v in labels.items()}
        with self._lock:
            return sum(
                v for k, v in self._values.items() if all(k[i] == want for i, want in idx.items())
            )

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.labelnames, k)} {_format_value(v)}" for k, v in items]


class Gauge(_Family):
    """A value that goes up and down (queue depth, whether the catalog answers)."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[LabelValues, float] = {} if labelnames else {(): 0.0}

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def replace(self, values: dict[LabelValues, float]) -> None:
        """Set every series at once, dropping series no longer reported (a drained state)."""
        for key in values:
            if len(key) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {key}")
        with self._lock:
            self._values = {tuple(map(str, k)): float(v) for k, v in values.items()}

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.labelnames, k)} {_format_value(v)}" for k, v in items]


@dataclass
class _Buckets:
    counts: list[int]
    total: float = 0.0
    count: int = 0


class Histogram(_Family):
    """Durations in cumulative buckets, with their sum and count (Prometheus histogram)."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self.bounds = tuple(sorted(float(b) for b in buckets))
        self._data: dict[LabelValues, _Buckets] = {}
        if not labelnames:
            self._data[()] = _Buckets([0] * len(self.bounds))

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            data = self._data.setdefault(key, _Buckets([0] * len(self.bounds)))
            for i, bound in enumerate(self.bounds):
                if value <= bound:
                    data.counts[i] += 1
            data.total += value
            data.count += 1

    def count(self, **labels: str) -> int:
        with self._lock:
            data = self._data.get(self._key(labels))
            return data.count if data else 0

    def samples(self) -> list[str]:
        lines: list[str] = []
        with self._lock:
            items = sorted(
                (k, _Buckets(list(d.counts), d.total, d.count)) for k, d in self._data.items()
            )
        for key, data in items:
            for bound, n in zip(self.bounds, data.counts, strict=True):
                le = f'le="{_format_value(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {n}")
            inf = 'le="+Inf"'
            lines.append(f"{self.name}_bucket{_labels(self.labelnames, key, inf)} {data.count}")
            lines.append(
                f"{self.name}_sum{_labels(self.labelnames, key)} {_format_value(data.total)}"
            )
            lines.append(f"{self.name}_count{_labels(self.labelnames, key)} {data.count}")
        return lines


class Registry:
    """The metrics of one process, rendered in registration order."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}
        self._collectors: list[Callable[[], object]] = []
        self._lock = threading.Lock()

    def _add(self, family: _Family) -> Any:
        with self._lock:
            if family.name in self._families:
                raise ValueError(f"metric {family.name} registered twice")
            self._families[family.name] = family
        return family

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help_text, labelnames))  # type: ignore[no-any-return]

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help_text, labelnames))  # type: ignore[no-any-return]

    def histogram(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        return self._add(  # type: ignore[no-any-return]
            Histogram(name, help_text, labelnames, buckets)
        )

    def on_collect(self, collector: Callable[[], object]) -> None:
        """Run ``collector`` before each rendering (to read a value at scrape time)."""
        with self._lock:
            self._collectors.append(collector)

    def render(self) -> str:
        with self._lock:
            collectors = list(self._collectors)
            families = list(self._families.values())
        for collect in collectors:
            try:
                collect()
            except Exception:  # a scrape shows the last values rather than failing
                log.warning("a metrics collector failed", exc_info=True)
        lines: list[str] = []
        for family in families:
            lines.extend(family.header())
            lines.extend(family.samples())
        return "\n".join(lines) + "\n"


@dataclass
class ServiceMetrics:
    """Every metric a station or worker process exposes (each role fills its own)."""

    registry: Registry = field(default_factory=Registry)

    def __post_init__(self) -> None:
        r = self.registry
        self.build_info = r.gauge(
            "liuhen_build_info", "Version of 留痕 running.", ("version", "role", "station")
        )
        self.start_time = r.gauge(
            "liuhen_process_start_time_seconds", "Start time of the process since the epoch."
        )
        self.start_time.set(time.time())
        # -- station: offload
        self.files = r.counter(
            "liuhen_offload_files_total",
            "Files stored and verified (or linked as duplicates) and registered in the catalog.",
            ("result",),
        )
        self.bytes = r.counter(
            "liuhen_offload_bytes_total",
            "Bytes of files stored and verified (or linked as duplicates).",
        )
        self.failures = r.counter(
            "liuhen_offload_failures_total",
            "Files quarantined, and waits for an unreachable catalog or store.",
            ("reason",),
        )
        for result in ("stored", "duplicate"):
            self.files.touch(result=result)
        for reason in ("quarantined", "unavailable"):
            self.failures.touch(reason=reason)
        self.stage_seconds = r.histogram(
            "liuhen_offload_stage_seconds",
            "Reading one file from the recorder with its digests into staging.",
        )
        self.store_seconds = r.histogram(
            "liuhen_offload_store_seconds", "Storing, verifying and registering one staged file."
        )
        self.dockings = r.counter(
            "liuhen_dockings_total", "Dockings finished, by state.", ("state",)
        )
        self.docking_seconds = r.histogram(
            "liuhen_docking_duration_seconds", "One docking, from docked to its final state."
        )
        self.station_files = r.gauge(
            "liuhen_station_files",
            "Files of unfinished dockings in the station journal, by "
            "state (PENDING: not yet read; STAGED: waiting for the "
            "store or catalog).",
            ("state",),
        )
        # -- worker: the catalog work queue
        self.work_items = r.counter(
            "liuhen_work_items_total", "Work items finished by this worker.", ("kind", "result")
        )
        self.work_seconds = r.histogram(
            "liuhen_work_duration_seconds",
            "Time to do one work item (probe or derivatives).",
            ("kind",),
        )
        self.derived_bytes = r.counter("liuhen_derived_bytes_total", "Bytes of derivatives stored.")
        self.queue_depth = r.gauge(
            "liuhen_queue_depth",
            "Work items in the catalog queue by kind and state, as of the last heartbeat.",
            ("kind", "state"),
        )
        # -- both: heartbeat and catalog reachability
        self.catalog_up = r.gauge(
            "liuhen_catalog_up", "1 when the last heartbeat reached the catalog, else 0."
        )
        self.heartbeat_failures = r.counter(
            "liuhen_heartbeat_failures_total", "Heartbeats that could not be written."
        )
        self.last_heartbeat = r.gauge(
            "liuhen_heartbeat_last_success_timestamp_seconds",
            "When a heartbeat last reached the catalog.",
        )

    def beat_result(self, ok: bool) -> None:
        """Record the outcome of one heartbeat (the catalog answered or not)."""
        self.catalog_up.set(1 if ok else 0)
        if ok:
            self.last_heartbeat.set(time.time())
        else:
            self.heartbeat_failures.inc()


class _Handler(BaseHTTPRequestHandler):
    server: MetricsHTTPServer

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404, "only /metrics is served here")
            return
        body = self.server.registry.render().encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics: " + format, *args)


class MetricsHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: Registry) -> None:
        self.registry = registry
        super().__init__(address, _Handler)


class MetricsServer:
    """``/metrics`` on ``address:port`` from a daemon thread; ``close()`` stops it."""

    def __init__(self, registry: Registry, *, address: str = "127.0.0.1", port: int = 0) -> None:
        try:
            self._http = MetricsHTTPServer((address, port), registry)
        except OSError as exc:
            raise ConfigError(
                _("cannot serve metrics on {address}:{port}: {error}").format(
                    address=address, port=port, error=exc.strerror or exc
                ),
                hint=_(
                    "choose another port (--metrics-port, station.metrics_port) or stop "
                    "the process using it"
                ),
            ) from exc
        self.address = address
        self.port = int(self._http.server_address[1])
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="metrics-http",
            daemon=True,
        )
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", address, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/metrics"

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_if_configured(metrics: ServiceMetrics, address: str, port: int) -> MetricsServer | None:
    """The metrics server when a port is configured (0 means no endpoint)."""
    if not port:
        return None
    return MetricsServer(metrics.registry, address=address, port=port)


def journal_files(journal: Journal) -> dict[str, int]:
    """Files of unfinished dockings by state (what the station still has to do)."""
    totals: dict[str, int] = {J.PENDING: 0, J.STAGED: 0}
    for d in journal.dockings(J.UNFINISHED):
        for state, figures in journal.progress(d.uid).items():
            if state in totals:
                totals[state] += int(figures.get("files", 0))
    return totals


def station_details(journal: Journal, metrics: ServiceMetrics) -> Callable[[], dict[str, Any]]:
    """What a station's heartbeat publishes; the journal gauge is refreshed with each beat
    and each scrape."""

    def refresh() -> dict[str, int]:
        files = journal_files(journal)
        metrics.station_files.replace({(k,): v for k, v in files.items()})
        return files

    metrics.registry.on_collect(refresh)

    def details() -> dict[str, Any]:
        files = refresh()
        return {
            "files_pending": files[J.PENDING],
            "files_staged": files[J.STAGED],
            "files_offloaded": int(
                sum(metrics.files.value(result=r) for r in ("stored", "duplicate"))
            ),
            "bytes_offloaded": int(metrics.bytes.value()),
        }

    return details


def worker_details(
    catalog: Catalog, metrics: ServiceMetrics, owner: str
) -> Callable[[], dict[str, Any]]:
    """What a worker's heartbeat publishes; it also refreshes the queue-depth gauge."""

    def details() -> dict[str, Any]:
        with catalog.session() as s:
            counts = queue_counts(s)
        metrics.queue_depth.replace(
            {(kind, state): n for kind, states in counts.items() for state, n in states.items()}
        )
        return {
            "lease_owner": owner,
            "items_done": int(metrics.work_items.total(result="done")),
            "items_failed": int(metrics.work_items.total(result="failed")),
        }

    return details


@contextlib.contextmanager
def service_health(
    catalog: Catalog,
    settings: Settings,
    role: str,
    metrics: ServiceMetrics,
    details: Callable[[], Mapping[str, Any]] | None = None,
) -> Iterator[Heartbeater]:
    """Heartbeats (and the metrics endpoint, when configured) for as long as a service runs.

    The heartbeat row is marked stopped on the way out; a crash leaves it running, and
    `district status` shows it lost after three intervals.
    """
    st = settings.station
    metrics.build_info.set(1, version=software_version() or "dev", role=role, station=st.id)
    server = serve_if_configured(metrics, st.metrics_address, st.metrics_port)
    beater = Heartbeater(
        catalog,
        role=role,
        station_id=st.id,
        interval_s=st.heartbeat_s,
        details=details,
        on_result=metrics.beat_result,
    )
    beater.start()
    try:
        yield beater
    finally:
        beater.stop()
        if server is not None:
            server.close()
