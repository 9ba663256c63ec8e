"""bench/compliance.py at its --small size: it builds a district's year, and the figures it
times agree with themselves (no timing assertion: machine speed is not tested)."""

from __future__ import annotations

from bench.compliance import SMALL, run


def test_small_bench_runs_on_both_databases(catalog_url: str) -> None:
    result = run(catalog_url, SMALL, 20, 1, False)
    assert result["actions"] == SMALL.actions
    assert result["district_actions"] == SMALL.actions
    assert sum(result["statuses"].values()) == SMALL.actions
    assert result["built"]["recordings"] >= SMALL.recordings
    assert result["single_ms"]["p95"] is not None
