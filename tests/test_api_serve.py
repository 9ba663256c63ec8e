"""`liuhen serve`, the real entry point as its own process: it answers on its port with
the OpenAPI description and JSON errors (in Chinese by default); and bench/api.py runs at
a small size (its figures agree with themselves; no timing is asserted)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.i18n_helpers import assert_chinese

LIUHEN = str(Path(sys.executable).with_name("liuhen"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def serve(app: Any, catalog_url: str) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "LIUHEN_LANG"}  # the default: zh
    # The port from the settings ([api] port, here by its environment variable).
    env |= {
        "LIUHEN_HOME": str(app.settings.data_dir),
        "LIUHEN_CATALOG_URL": catalog_url,
        "LIUHEN_API_PORT": str(port),
        "LIUHEN_API_STATION_SCREEN_PORT": str(_free_port()),
        "FORWARDED_ALLOW_IPS": "*",  # uvicorn's own variable: [api] forwarded_allow_ips rules
    }
    proc = subprocess.Popen([LIUHEN, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/api/v1/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "liuhen serve did not start"
                time.sleep(0.1)
        yield base, int(env["LIUHEN_API_STATION_SCREEN_PORT"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    said = proc.stderr.read() if proc.stderr else ""
    assert f"127.0.0.1:{port}/api/v1" in said


def test_serve_answers_with_its_description_and_json_errors(serve: tuple[str, int]) -> None:
    base, _screen = serve
    described = httpx.get(f"{base}/api/v1/openapi.json").json()
    assert described["openapi"].startswith("3.")
    assert "/api/v1/recordings/{rec_id}/media/{kind}" in described["paths"]
    refused = httpx.get(f"{base}/api/v1/recordings")
    assert refused.status_code == 401
    message = refused.json()["error"]["message"]
    assert_chinese(message)


def test_serve_refuses_half_a_tls_setting(app: Any, tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not used")
    env = {**os.environ, "LIUHEN_HOME": str(app.settings.data_dir)}
    done = subprocess.run(
        [LIUHEN, "serve", "--tls-cert", str(cert)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "--tls-key" in done.stderr


@pytest.mark.slow
def test_the_api_bench_runs_small(pg_server: str) -> None:
    from bench.api import run

    result = run(None, recordings=500, clients=4, searches=10, proxy_mb=2, think_s=0.01)
    assert result["recordings"] == 500
    assert result["search"]["one_client_ms"]["n"] >= 10
    assert result["search"]["4_clients_ms"]["n"] >= 20
    # People pausing between searches, beside the closed loop (every query once).
    assert result["search"]["4_clients_0.01s_think_ms"]["n"] == 10
    # The server's own time (Server-Timing) beside each client-side figure.
    assert result["search"]["4_clients_server_ms"]["n"] >= 20
    assert result["auth"]["session_server_ms"]["n"]
    assert result["streaming"]["one_client"]["clients"] == 1
    assert result["officer_search"]["one_client_ms"]["n"] >= 10  # the own-recordings scope
    assert result["auth"]["token_ms"]["n"] and result["auth"]["session_ms"]["n"]
    assert result["streaming"]["proxy_mib"] == 2.0
    assert result["streaming"]["ratio"] > 0


def test_serve_opens_the_station_screen_on_its_own_loopback_port(serve: tuple[str, int]) -> None:
    """[api] station_screen_port: the station's own screen, no login, on 127.0.0.1 and
    that port; the main port asks for a login whatever a forwarded header claims."""
    base, screen = serve
    assert httpx.get(f"http://127.0.0.1:{screen}/station/status").status_code == 200
    claimed = {"X-Forwarded-For": "127.0.0.1"}
    assert httpx.get(f"{base}/station/status", headers=claimed).status_code == 401
    assert httpx.get(f"http://127.0.0.1:{screen}/api/v1/recordings").status_code == 404
