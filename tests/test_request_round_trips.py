"""What an authenticated request costs the catalog before its handler runs (issue 15's
search latency): the session or token, its user and the user's roles are one statement,
and on PostgreSQL nothing else goes to the server (no BEGIN, no COMMIT, no ping of a
connection just used), so "who am I" is one round trip. Nothing of the security is
traded for it: a revoked session is refused on its next request, a session's end and its
last use (once a minute) are recorded, and a connection the server closed is replaced
(idle) or fails one request with the catalog's own error and the next is served."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, select, text, update
from starlette.testclient import TestClient

import catalog.db
from api.app import create_app
from api.auth import SESSION_COOKIE
from catalog.access_models import UserSession
from tests.api_helpers import PASSWORD, add_user, issue_token

WHOAMI = "/api/v1/session"


@pytest.fixture
def api(app: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    # No ping of a pooled connection here unless a test asks: how long the test machine
    # takes between two requests must not change what is counted.
    monkeypatch.setattr(catalog.db, "PING_IDLE_S", 3600.0)
    add_user(app, "aud", "auditor")
    with TestClient(create_app(app.settings)) as http:
        r = http.post(WHOAMI, json={"login": "aud", "password": PASSWORD})
        assert r.status_code == 200, r.text
        yield http


def _engine(api: TestClient) -> Engine:
    engine: Engine = api.app.state.ctx.catalog.engine  # type: ignore[attr-defined]
    return engine


def _counted(api: TestClient, path: str, **headers: str) -> tuple[Any, list[str], int | None]:
    """The answer, the SQL statements (SQLite's BEGIN aside) and, on PostgreSQL, the round
    trips of one request: the Query and Sync messages the client sent (libpq's trace)."""
    engine = _engine(api)
    statements: list[str] = []
    pg = engine.dialect.name == "postgresql"
    with tempfile.TemporaryFile("w+") as trace:

        def on_statement(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
            if not statement.startswith("BEGIN"):
                statements.append(" ".join(statement.split()))

        def on_checkout(dbapi_conn: Any, *_a: Any) -> None:
            dbapi_conn.pgconn.trace(trace.fileno())

        def on_checkin(dbapi_conn: Any, *_a: Any) -> None:
            if dbapi_conn is not None:
                dbapi_conn.pgconn.untrace()

        hooks: list[tuple[Any, str, Any]] = [(engine, "before_cursor_execute", on_statement)]
        if pg:
            hooks += [(engine.pool, "checkout", on_checkout), (engine.pool, "checkin", on_checkin)]
        for target, name, fn in hooks:
            event.listen(target, name, fn)
        try:
            answer = api.get(path, headers=headers)
        finally:
            for target, name, fn in hooks:
                event.remove(target, name, fn)
        if not pg:
            return answer, statements, None
        os.fsync(trace.fileno())
        trace.seek(0)
        sent = [line.split("\t") for line in trace.read().splitlines()]
    frontend = [f[3] for f in sent if len(f) > 3 and f[1] == "F"]
    return answer, statements, sum(1 for m in frontend if m.startswith(("Query", "Sync")))


def test_who_am_i_is_one_statement_and_one_round_trip(app: Any, api: TestClient) -> None:
    token = issue_token(app, "archivist", name="cms")
    session_secret = api.cookies[SESSION_COOKIE]
    ways = {
        "cookie": {},
        "session as bearer": {"authorization": f"Bearer {session_secret}"},
        "API token": {"authorization": f"Bearer {token}"},
    }
    for way, headers in ways.items():
        api.get(WHOAMI, headers=headers)  # the last use is recorded: this one only reads
        answer, statements, trips = _counted(api, WHOAMI, **headers)
        assert answer.status_code == 200, (way, answer.text)
        assert len(statements) == 1, (way, statements)
        assert statements[0].startswith("SELECT"), (way, statements)
        if trips is not None:  # PostgreSQL: no BEGIN, COMMIT or ping around it
            assert trips == 1, way


def _session_row(app: Any) -> UserSession:
    with app.catalog.session() as s:
        return s.scalars(select(UserSession)).one()


def _age_session(app: Any, by: timedelta) -> None:
    with app.catalog.transaction() as s:
        row = s.scalars(select(UserSession)).one()
        row.last_seen_at -= by


def test_a_last_use_a_minute_old_is_written_and_stays_written(app: Any, api: TestClient) -> None:
    _age_session(app, timedelta(minutes=2))
    before = _session_row(app).last_seen_at
    answer, statements, _trips = _counted(api, WHOAMI)
    assert answer.status_code == 200
    assert [s for s in statements if s.startswith("UPDATE sessions")], statements
    assert _session_row(app).last_seen_at > before + timedelta(minutes=1)


def test_a_revoked_or_idle_session_is_refused_and_its_end_recorded(
    app: Any, api: TestClient
) -> None:
    assert api.get(WHOAMI).status_code == 200
    with app.catalog.transaction() as s:
        s.execute(update(UserSession).values(revoked_at=datetime.now(UTC), revoked_by="test"))
    assert api.get(WHOAMI).status_code == 401  # the very next request
    with app.catalog.transaction() as s:
        s.execute(update(UserSession).values(revoked_at=None, revoked_by=None))
    _age_session(app, timedelta(minutes=app.settings.access.session_idle_minutes + 1))
    assert api.get(WHOAMI).status_code == 401
    assert _session_row(app).revoked_by == "idle timeout"
    assert api.get(WHOAMI).status_code == 401


@pytest.mark.postgres
@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_an_idle_connection_the_server_closed_is_replaced_unseen(
    app: Any, api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    api_engine = _engine(api)
    monkeypatch.setattr(catalog.db, "PING_IDLE_S", 0.0)  # every connection counts as idle
    assert api.get(WHOAMI).status_code == 200
    _terminate_pool(api_engine)
    assert api.get(WHOAMI).status_code == 200


@pytest.mark.postgres
@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_a_busy_connection_the_server_closed_fails_one_request_clearly(
    app: Any, api: TestClient
) -> None:
    api_engine = _engine(api)
    assert api.get(WHOAMI).status_code == 200
    _terminate_pool(api_engine)
    failed = api.get(WHOAMI)
    assert failed.status_code == 503, failed.text
    assert "unreachable" in failed.text and "retry" in failed.text
    assert api.get(WHOAMI).status_code == 200  # the pool dropped the dead connections


def _terminate_pool(engine: Engine) -> None:
    """End the server processes of ``engine``'s pooled connections, as a server restart
    would (the pool keeps them and learns it only when it uses them)."""
    # Every connection the pool holds, checked out at once so each is a separate one.
    conns = [engine.raw_connection() for _ in range(engine.pool.checkedin())]  # type: ignore[attr-defined]
    pids = [conn.driver_connection.info.backend_pid for conn in conns]  # type: ignore[union-attr]
    for conn in conns:
        conn.close()
    admin = engine.url.set(query={k: v for k, v in engine.url.query.items() if k != "options"})
    other = create_engine(admin)
    try:
        with other.begin() as c:
            for pid in pids:
                c.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        other.dispose()
