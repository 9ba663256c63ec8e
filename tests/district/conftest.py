"""District simulation tests: sizes from the environment, services required under CI.

Sizes (the CI defaults are the issue's small size; raise them for a run by hand, or use
``python -m tests.district.simulation`` with its options):

* ``LIUHEN_SIM_STATIONS`` (4), ``LIUHEN_SIM_WORKERS`` (2), ``LIUHEN_SIM_DOCKINGS`` (50),
  ``LIUHEN_SIM_CHAOS`` (20, at least this many chaos events), ``LIUHEN_SIM_SEED`` (1),
  ``LIUHEN_SIM_MAX_WALL_S`` (600), ``LIUHEN_SIM_DIGEST_SAMPLE`` (1.0: re-hash every object).
* ``LIUHEN_SIM_PG_BIN``: the PostgreSQL bin folder (initdb, pg_ctl) when not in
  /usr/lib/postgresql/*/bin or on PATH; ``LIUHEN_SIM_PG=proxy``: use the shared server
  (``LIUHEN_TEST_PG_URL``) behind a TCP proxy instead of a private cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import service_missing
from tests.district.simulation import SimConfig, Simulation, SimulationError

SIZE_VARS = {
    "stations": ("LIUHEN_SIM_STATIONS", int, 4),
    "workers": ("LIUHEN_SIM_WORKERS", int, 2),
    "dockings": ("LIUHEN_SIM_DOCKINGS", int, 50),
    "chaos_events": ("LIUHEN_SIM_CHAOS", int, 20),
    "seed": ("LIUHEN_SIM_SEED", int, 1),
    "max_wall_s": ("LIUHEN_SIM_MAX_WALL_S", float, 600.0),
    "digest_sample": ("LIUHEN_SIM_DIGEST_SAMPLE", float, 1.0),
}


def sim_config(root: Path) -> SimConfig:
    values = {
        name: cast(os.environ.get(var, default)) for name, (var, cast, default) in SIZE_VARS.items()
    }
    return SimConfig(root=root, **values)


@pytest.fixture
def district(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Simulation]:
    """A Simulation whose services (private PostgreSQL, S3 server) are up; set up by the test.

    ``request.param`` (indirect) may give SimConfig overrides.
    """
    overrides = getattr(request, "param", {})
    sim = Simulation(SimConfig(root=tmp_path / "district", **overrides))
    services = sim.services()
    try:
        services.__enter__()
    except SimulationError as exc:
        service_missing(str(exc))
    try:
        yield sim
    finally:
        try:
            sim.shutdown()
        finally:
            services.__exit__(None, None, None)
