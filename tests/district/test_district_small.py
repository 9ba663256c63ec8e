"""The district simulation at CI size: 4 stations, 2 workers, >= 50 dockings, >= 20 chaos
events (stations and workers killed, PostgreSQL stopped, the S3 server frozen), ending
with the district invariant checker reporting zero violations."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import service_missing
from tests.district.conftest import sim_config
from tests.district.simulation import SimulationError, run_simulation

pytestmark = [
    pytest.mark.district,
    pytest.mark.slow,
    pytest.mark.fault,
    pytest.mark.s3,
    pytest.mark.postgres,
    pytest.mark.timeout(1200),
]


def test_district_under_chaos_ends_with_zero_violations(tmp_path: Path) -> None:
    cfg = sim_config(tmp_path / "district")
    try:
        result = run_simulation(cfg)
    except SimulationError as exc:
        service_missing(str(exc))
    summary = result.summary()
    print(summary)  # shown with -s, and kept in the report of a failed run
    if not result.ok:
        pytest.fail(f"{summary}\n\n{result.log_tails()}", pytrace=False)

    # The run was as large and as rough as asked, and the faults really hit it.
    assert result.dockings_placed >= cfg.dockings
    counts = result.chaos.counts()
    assert len(result.chaos.events) >= cfg.chaos_events
    assert counts.get("pg-outage-long") == 1  # the 10-second outage during dockings
    assert result.report is not None
    assert result.report.counts["dockings"] == result.dockings_placed
    assert result.report.counts["objects_rehashed"] >= result.report.counts["recordings"]
