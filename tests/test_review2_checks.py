"""Review checks (h/review2) of the search UNION, the one-statement authentication and
the shared "carried" alias, on SQLite and PostgreSQL: an officer's scoped search (own
recordings OR the unit's, the "expiring" walk's two branches times the scope's terms)
lists exactly the unscoped search's matches that the scope admits, once each, in order,
whatever the page size; a user's session carries exactly their roles (several, or none)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from access.policy import Principal, recording_scope
from access.roles import Role
from api.app import create_app
from catalog.devices import add_device
from catalog.models import Recording
from catalog.search import SearchQuery, search_recordings
from config.settings import zone_of
from tests.api_helpers import PASSWORD, add_user
from tests.case_helpers import make_recording

ZONE = zone_of("Asia/Shanghai")


def _all_pages(app: Any, size: int, scope: Any, **query: Any) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        with app.catalog.session() as s:
            page = search_recordings(
                s,
                SearchQuery(limit=size, cursor=cursor, **query),
                zone=ZONE,
                policy=app.settings.retention,
                scope=scope,
            )
        assert len(page.items) <= size
        seen += [i["id"] for i in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


@pytest.mark.parametrize("size", [1, 2, 3, 50])
@pytest.mark.parametrize("flags", [(), ("expiring",)])
def test_an_officers_scoped_search_is_the_unscoped_one_filtered(
    app: Any, size: int, flags: tuple[str, ...]
) -> None:
    with app.catalog.transaction() as s:
        add_device(s, app.signer, serial="DEV-U", unit="徐汇分局", actor="test")
        add_device(s, app.signer, serial="DEV-X", unit="黄浦分局", actor="test")
    now = datetime.now(UTC)
    days = app.settings.retention.unattached_days
    old = now - timedelta(days=days - 5)
    made = []
    for i, (serial, officer, probe) in enumerate(
        [
            ("DEV-U", "010203", True),
            ("DEV-X", "010203", True),  # own, another unit's recorder
            ("DEV-X", "040506", True),  # neither
            ("DEV-U", "040506", True),  # the unit's
            ("DEV-X", "010203", False),  # own, STORED (the expiring walk's second branch)
            ("DEV-X", "040506", False),  # neither, STORED
            ("DEV-U", "040506", False),  # the unit's, STORED
            ("DEV-U", "010203", True),
        ]
    ):
        at = old - timedelta(hours=i)
        made.append(
            make_recording(
                app, serial=serial, docking_officer=officer, start=at, received=at, probe=probe
            )
        )
    officer = Principal(
        user_id=1,
        login="o",
        display_name="o",
        unit="徐汇分局",
        officer_number="010203",
        roles=frozenset({Role.OFFICER, Role.SUPERVISOR}),
        via="session",
    )
    scope = recording_scope(officer)
    assert scope is not None
    with app.catalog.session() as s:
        admitted = set(s.scalars(select(Recording.id).where(scope)))
    assert admitted and admitted != set(made)
    unscoped = _all_pages(app, 500, None, flags=flags)
    expected = [i for i in unscoped if i in admitted]
    assert expected
    assert _all_pages(app, size, scope, flags=flags) == expected


@pytest.mark.parametrize("roles", [("officer", "supervisor", "auditor"), ()])
def test_a_sessions_principal_has_exactly_the_users_roles(app: Any, roles: tuple[str, ...]) -> None:
    add_user(app, "multi", *roles, officer_number="010203")
    with TestClient(create_app(app.settings)) as http:
        r = http.post("/api/v1/session", json={"login": "multi", "password": PASSWORD})
        assert r.status_code == 200, r.text
        for _ in range(3):
            who = http.get("/api/v1/session")
            assert who.status_code == 200, who.text
            assert sorted(who.json()["roles"]) == sorted(roles), who.json()


def test_a_disconnect_sqlalchemy_recognises_is_the_catalog_unavailable(tmp_path: Any) -> None:
    """Since beb0877 a pooled connection used within PING_IDLE_S is handed out unpinged,
    and a server or link that dropped it fails the request that finds out: as
    CatalogUnavailable (503, "retry"; TRANSIENT for docking and the worker) only when the
    driver's message is one of _is_connection_error's strings. libpq's words for a
    dropped TLS link are not among them, while SQLAlchemy itself knows the connection is
    gone (connection_invalidated, from psycopg's ``broken``)."""
    from sqlalchemy.exc import OperationalError

    from catalog import Catalog
    from catalog.errors import CatalogUnavailable

    cat = Catalog(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    for words in (
        "consuming input failed: SSL SYSCALL error: EOF detected",
        "consuming input failed: SSL connection has been closed unexpectedly",
    ):
        dropped = OperationalError("SELECT 1", {}, Exception(words), connection_invalidated=True)
        with pytest.raises(CatalogUnavailable), cat._guard():
            raise dropped
    cat.dispose()


def test_the_wrapped_search_route_still_refuses_bad_searches_as_json(app: Any) -> None:
    """The search route is search() wrapped (functools.wraps): a SearchError is the API's
    JSON error, a parameter out of range FastAPI's 422, a caller without the permission
    403, as before the wrapper."""
    add_user(app, "sup", "supervisor")
    add_user(app, "nobody")
    with TestClient(create_app(app.settings)) as http:
        assert http.post("/api/v1/session", json={"login": "sup", "password": PASSWORD})
        bad = http.get("/api/v1/recordings", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"]["code"] == "SearchError", bad.json()
        assert "cursor" in bad.json()["error"]["message"]
        assert http.get("/api/v1/recordings", params={"limit": 0}).status_code == 422
        assert http.get("/api/v1/recordings", params={"state": "LOST"}).status_code == 422
        ok = http.get("/api/v1/recordings", params={"limit": 1})
        assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
        http.post("/api/v1/session", json={"login": "nobody", "password": PASSWORD})
        assert http.get("/api/v1/recordings").status_code == 403
