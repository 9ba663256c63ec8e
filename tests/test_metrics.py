"""Prometheus metrics: the exposition text, the HTTP endpoint, and values that move when a
station offloads and a worker works (real station watch, real catalog and store)."""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from catalog.models import Heartbeat, WorkItem
from ingest.metrics import CONTENT_TYPE, MetricsServer, Registry, ServiceMetrics
from ingest.service import watch
from ingest.synthetic import make_recorder
from ingest.worker import Worker
from tests.offload_helpers import make_app

# One sample line of the text format: name, optional {labels}, value (no timestamps).
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """An independent reader of the exposition format (not the module's own code)."""
    out: Samples = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        pairs = []
        if labels:
            consumed = "".join(x.group(0) for x in LABEL.finditer(labels))
            assert consumed == labels, f"bad labels in {line!r}"
            for lm in LABEL.finditer(labels):
                raw = lm.group(2)
                unescaped = re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e.group(1), e.group(1)), raw)
                pairs.append((lm.group(1), unescaped))
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, f"sample {name} has no TYPE line"
        key = (name, frozenset(pairs))
        assert key not in out, f"duplicate series {line!r}"
        out[key] = float(value.replace("+Inf", "inf"))
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["Content-Type"] == CONTENT_TYPE
        return parse(resp.read().decode("utf-8"))


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_exposition_format_counters_gauges_histograms() -> None:
    r = Registry()
    files = r.counter("t_files_total", "Files.\nSecond line \\ backslash.", ("result",))
    depth = r.gauge("t_depth", "Depth.", ("kind", "state"))
    took = r.histogram("t_seconds", "Durations.", buckets=(0.1, 1, 10))
    r.counter("t_plain_total", "No labels.")
    files.inc(result="stored")
    files.inc(2, result="stored")
    files.inc(result='odd "name"\nwith\\slash')
    depth.set(7, kind="probe", state="PENDING")
    depth.set(1.5, kind="derive", state="CLAIMED")
    for v in (0.05, 0.5, 0.5, 5, 50):
        took.observe(v)
    text = r.render()
    assert "# HELP t_files_total Files.\\nSecond line \\\\ backslash." in text
    samples = parse(text)
    assert value(samples, "t_files_total", result="stored") == 3
    assert value(samples, "t_files_total", result='odd "name"\nwith\\slash') == 1
    assert value(samples, "t_plain_total") == 0  # present before anything happened
    assert value(samples, "t_depth", kind="probe", state="PENDING") == 7
    assert value(samples, "t_depth", kind="derive", state="CLAIMED") == 1.5
    # Cumulative buckets; +Inf equals the count; the sum is the sum.
    assert [value(samples, "t_seconds_bucket", le=le) for le in ("0.1", "1", "10", "+Inf")] == [
        1,
        3,
        4,
        5,
    ]
    assert value(samples, "t_seconds_count") == 5
    assert value(samples, "t_seconds_sum") == pytest.approx(56.05)
    depth.replace({("probe", "PENDING"): 2})
    samples = parse(r.render())
    assert ("t_depth", frozenset({("kind", "derive"), ("state", "CLAIMED")})) not in samples
    with pytest.raises(ValueError):
        files.inc(-1, result="stored")
    with pytest.raises(ValueError):
        files.inc(reason="x")
    with pytest.raises(ValueError):
        r.counter("t_plain_total", "again")


def test_endpoint_serves_metrics_and_only_metrics() -> None:
    metrics = ServiceMetrics()
    with MetricsServer(metrics.registry, port=0) as server:
        metrics.files.inc(result="stored")
        samples = scrape(server.url)
        assert value(samples, "liuhen_offload_files_total", result="stored") == 1
        assert value(samples, "liuhen_process_start_time_seconds") > 1.7e9
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(server.url.replace("/metrics", "/other"), timeout=10)
        assert exc.value.code == 404
    with pytest.raises(OSError):  # closed: nothing listens any more
        urllib.request.urlopen(server.url, timeout=2)


def test_port_in_use_is_a_configuration_error() -> None:
    from config import ConfigError

    with MetricsServer(Registry(), port=0) as server:
        with pytest.raises(ConfigError) as exc:
            MetricsServer(Registry(), port=server.port)
        assert str(server.port) in exc.value.message and "metrics_port" in (exc.value.hint or "")


def test_station_watch_metrics_move_after_an_offload(tmp_path: Path) -> None:
    """`station watch` with a metrics port: scraped over HTTP, the offload counters move
    by the files and bytes of the docked recorder, and the heartbeat shows the station."""
    port = free_port()
    app = make_app(tmp_path / "data")
    app.settings = replace(
        app.settings, station=replace(app.settings.station, metrics_port=port, heartbeat_s=0.2)
    )
    station = app.station()
    dock = tmp_path / "dock"
    dock.mkdir()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            watch(station, dock, stop)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: _answers(url))
        before = scrape(url)
        assert value(before, "liuhen_offload_files_total", result="stored") == 0
        assert (
            value(
                before,
                "liuhen_build_info",
                version=_version(before),
                role="station",
                station="station-01",
            )
            == 1
        )
        # Made beside the dock and moved in whole, as a recorder appears when mounted.
        rec = make_recorder(tmp_path / "outside" / "A123456", h265=0, truncated=0, segments=0)
        files = [p for p in rec.root.rglob("*") if p.is_file()]
        expected_bytes = sum(p.stat().st_size for p in files)
        rec.root.rename(dock / "A123456")
        wait_for(lambda: value(scrape(url), "liuhen_dockings_total", state="SAFE_TO_CLEAR") >= 1)
        after = scrape(url)
        offloaded = value(after, "liuhen_offload_files_total", result="stored") + value(
            after, "liuhen_offload_files_total", result="duplicate"
        )
        assert offloaded == len(files)
        assert value(after, "liuhen_offload_bytes_total") == expected_bytes
        assert value(after, "liuhen_offload_store_seconds_count") == len(files)
        assert value(after, "liuhen_offload_stage_seconds_count") == len(files)
        assert value(after, "liuhen_docking_duration_seconds_count") == 1
        assert value(after, "liuhen_offload_failures_total", reason="quarantined") == 0
        wait_for(lambda: value(scrape(url), "liuhen_catalog_up") == 1)
        assert value(scrape(url), "liuhen_station_files", state="STAGED") == 0
        with app.catalog.session() as s:
            (hb,) = s.scalars(select(Heartbeat)).all()
            assert (hb.role, hb.station_id, hb.state) == ("station", "station-01", "running")
    finally:
        stop.set()
        thread.join(timeout=60)
        station.close()
    assert not errors, errors
    assert not _answers(url)  # the endpoint goes with the service
    with app.catalog.session() as s:
        assert s.scalars(select(Heartbeat.state)).one() == "stopped"
    app.close()


def test_worker_metrics_count_items_by_kind_and_result(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data")
    rec = make_recorder(
        tmp_path / "dock" / "A123456", h264=1, h265=0, wav=0, jpeg=1, truncated=0, segments=0
    )
    station = app.station()
    assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    station.close()
    metrics = ServiceMetrics()
    worker = Worker(
        app.settings, catalog=app.catalog, store=app.store, signer=app.signer, metrics=metrics
    )
    stats = worker.run(drain=True, idle_s=0.1)
    assert stats.failed == 0, stats.errors
    samples = parse(metrics.registry.render())
    with app.catalog.session() as s:
        done = dict(
            s.execute(
                select(WorkItem.kind, func.count())
                .where(WorkItem.state == "DONE")
                .group_by(WorkItem.kind)
            ).all()
        )
    assert done["probe"] >= 2 and done["derive"] >= 2
    for kind, n in done.items():
        assert value(samples, "liuhen_work_items_total", kind=kind, result="done") == n
        assert value(samples, "liuhen_work_duration_seconds_count", kind=kind) == n
    assert stats.probed == done["probe"]
    assert value(samples, "liuhen_derived_bytes_total") > 0
    # The heartbeat refreshed the queue depth from the catalog at least once.
    assert any(name == "liuhen_queue_depth" for name, _ in samples)
    with app.catalog.session() as s:
        (hb,) = s.scalars(select(Heartbeat)).all()
        assert hb.role == "worker" and hb.state == "stopped"
        assert hb.details["lease_owner"] == worker.owner
        # Stopping publishes the final figures.
        assert hb.details["items_done"] == sum(done.values())
    app.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _version(samples: Samples) -> str:
    for name, labels in samples:
        if name == "liuhen_build_info":
            return dict(labels)["version"]
    raise AssertionError("no liuhen_build_info")
