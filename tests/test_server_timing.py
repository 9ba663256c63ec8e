"""Server-Timing (api/timing.py): every HTTP answer says how long the server took, a
page, an API call, a streamed proxy and a refusal alike; the benches read it."""

from __future__ import annotations

import time
from typing import Any

from starlette.testclient import TestClient

from api.timing import server_ms
from tests import test_web_pages as pages
from tests.api_helpers import add_user

zh, web, rec = pages.zh, pages.web, pages.rec


def _timed(web: TestClient, path: str, **kwargs: Any) -> tuple[Any, float, float]:
    """The answer, the server's duration from its header, and the client's own."""
    t0 = time.perf_counter()
    r = web.get(path, **kwargs)
    client_ms = (time.perf_counter() - t0) * 1000
    server = server_ms(r.headers.get("server-timing"))
    assert server is not None, (path, r.status_code, dict(r.headers))
    return r, server, client_ms


def test_pages_and_api_calls_say_how_long_the_server_took(
    app: Any, web: TestClient, rec: int
) -> None:
    refused, ms, seen = _timed(web, "/api/v1/recordings")  # not logged in: 401, timed too
    assert refused.status_code == 401
    assert 0 <= ms <= seen
    add_user(app, "timed", "auditor", unit=pages.UNIT)
    pages._login(web, "timed")
    for path in (
        f"/recordings/{rec}",
        "/recordings",
        "/api/v1/recordings",
        f"/api/v1/recordings/{rec}",
    ):
        r, ms, seen = _timed(web, path)
        assert r.status_code == 200, r.text
        # The server's part of what the client waited for: a positive duration, never
        # more than the whole exchange.
        assert 0 < ms <= seen, (path, ms, seen)
    # A streamed proxy: the header goes out with the answer's start, before the bytes.
    r, ms, seen = _timed(
        web, f"/api/v1/recordings/{rec}/media/proxy", headers={"Range": "bytes=0-99"}
    )
    assert r.status_code == 206 and len(r.content) == 100
    assert 0 < ms <= seen
    # A login is not timed for its caller (a right and a wrong password are kept alike).
    wrong = web.post("/login", data={"login": "timed", "password": "wrong", "next": "/"})
    assert wrong.status_code in (200, 401, 303) and "server-timing" not in wrong.headers
    api = web.post("/api/v1/session", json={"login": "timed", "password": "wrong"})
    assert api.status_code == 401 and "server-timing" not in api.headers


def test_server_timing_header_is_read_as_written() -> None:
    assert server_ms("app;dur=12.5") == 12.5
    assert server_ms('db;dur=3, app;desc="x";dur=7') == 7.0
    assert server_ms("db;dur=3") is None
    assert server_ms(None) is None
    assert server_ms("app;dur=oops") is None
