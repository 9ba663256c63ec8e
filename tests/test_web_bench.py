"""bench/web.py at a small size: the search page (with its second page) and recording
pages answered to one client and to several at once, on PostgreSQL; a kept catalog is
measured again as it is (--reuse). No timing is asserted: machine speed is not tested."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_the_web_bench_runs_small(pg_server: str) -> None:
    from bench.web import run

    first = run(None, recordings=300, clients=3, requests=10, keep=True)
    kept = first["catalog"]
    try:
        assert first["recordings"] == 300
        assert first["search_page"]["one_client_ms"]["n"] >= 10
        assert first["search_page"]["3_clients_ms"]["n"] >= 20
        assert first["recording_page"]["one_client_ms"]["n"] == 10
        # Beside each client-side figure, the server's own (its Server-Timing header).
        assert first["recording_page"]["one_client_server_ms"]["n"] == 10
        assert first["search_page"]["3_clients_server_ms"]["n"] >= 20
        again = run(kept, recordings=5000, clients=2, requests=10, reuse=True, think_s=0.01)
        assert again["recordings"] == 300  # measured as built, not built again
        assert again["recording_page"]["2_clients_ms"]["n"] == 20
        # Browsers pausing between pages: every page asked once, by one of the two.
        assert again["recording_page"]["2_browsers_0.01s_think_ms"]["n"] == 10
        assert again["recording_page"]["2_browsers_0.01s_think_server_ms"]["n"] == 10
    finally:
        schema = kept.split("search_path%3D")[1]
        engine = create_engine(pg_server)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
