"""A request authenticated by a session or token reads and does not write, unless the
recorded last use is ``LAST_USE_STEP`` old (issue 15's search latency: a write and a
commit per request cost more than the search); a revoked session is still refused on
its very next request, and a busy session stays alive (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from access.roles import Role
from access.sessions import (
    LAST_USE_STEP,
    SessionExpired,
    issue_token,
    open_session,
    principal_for_session,
    principal_for_token,
    revoke_sessions,
)
from catalog import Catalog
from catalog.access_models import ApiToken, UserSession
from tests.test_access_accounts import POLICY, T0, add, login


def _open(catalog: Catalog, name: str) -> str:
    principal = login(catalog, name, at=T0)
    with catalog.transaction() as s:
        return open_session(s, principal, now=T0, policy=POLICY)


def test_a_busy_session_writes_its_last_use_once_a_step(catalog: Catalog) -> None:
    add(catalog, "mona", Role.REVIEWER)
    secret = _open(catalog, "mona")
    written: set[datetime] = set()
    at = T0
    end = T0 + timedelta(minutes=POLICY.session_idle_minutes * 3)
    while at < end:  # a request every 10 s, for three idle periods
        at += timedelta(seconds=10)
        with catalog.transaction() as s:
            assert principal_for_session(s, secret, now=at, policy=POLICY).login == "mona"
        with catalog.session() as s:
            written.add(s.scalars(select(UserSession.last_seen_at)).one())
    requests = (end - T0) // timedelta(seconds=10)
    # One write per step, not one per request; and the recorded use is never a step old.
    assert len(written) <= (end - T0) // LAST_USE_STEP + 1 < requests
    assert end - max(written) < LAST_USE_STEP


def test_a_revoked_session_is_refused_a_second_after_its_last_request(
    catalog: Catalog,
) -> None:
    uid = add(catalog, "nick", Role.REVIEWER)
    secret = _open(catalog, "nick")
    with catalog.transaction() as s:
        assert principal_for_session(s, secret, now=T0 + timedelta(seconds=1), policy=POLICY)
    with catalog.transaction() as s:
        revoke_sessions(s, uid, actor="security")
    with pytest.raises(SessionExpired, match="revoked"), catalog.transaction() as s:
        principal_for_session(s, secret, now=T0 + timedelta(seconds=2), policy=POLICY)


def test_the_idle_end_is_at_most_a_step_early(catalog: Catalog) -> None:
    add(catalog, "olga", Role.REVIEWER)
    secret = _open(catalog, "olga")
    idle = timedelta(minutes=POLICY.session_idle_minutes)
    last = T0 + LAST_USE_STEP - timedelta(seconds=1)  # too soon to be written
    with catalog.transaction() as s:
        principal_for_session(s, secret, now=last, policy=POLICY)
    ended = T0 + idle  # idle since the recorded use, the login
    assert idle - LAST_USE_STEP < ended - last < idle
    with pytest.raises(SessionExpired, match="unused"), catalog.transaction() as s:
        principal_for_session(s, secret, now=ended, policy=POLICY)


def test_a_tokens_last_use_is_written_once_a_step(catalog: Catalog) -> None:
    with catalog.transaction() as s:
        secret = issue_token(
            s,
            name="cms",
            role=Role.REVIEWER,
            unit="徐汇",
            expires_at=T0 + timedelta(days=30),
            created_by="test",
            now=T0,
            policy=POLICY,
        )
    seen = []
    for seconds in (1, 20, 59, 62, 100):
        with catalog.transaction() as s:
            principal_for_token(s, secret, now=T0 + timedelta(seconds=seconds))
        with catalog.session() as s:
            seen.append(s.scalar(select(ApiToken.last_used_at)))
    first, at62 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=62)
    assert seen == [first, first, first, at62, at62]


def test_a_polling_screen_keeps_no_session_alive(catalog: Catalog) -> None:
    """A page's script polling by itself (the station screen off the station, twice a
    second) is not a person using the session: the idle timeout ends it all the same."""
    add(catalog, "pete", Role.AUDITOR)
    secret = _open(catalog, "pete")
    idle = timedelta(minutes=POLICY.session_idle_minutes)
    at = T0
    while at < T0 + idle - timedelta(seconds=30):
        at += timedelta(seconds=30)
        with catalog.transaction() as s:
            principal_for_session(s, secret, now=at, policy=POLICY, touch=False)
    with pytest.raises(SessionExpired, match="unused"), catalog.transaction() as s:
        principal_for_session(s, secret, now=T0 + idle, policy=POLICY, touch=False)
