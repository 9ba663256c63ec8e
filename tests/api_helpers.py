"""The HTTP API served for real: uvicorn on a free loopback port in a thread, and httpx
over TCP, as a client on another machine would talk to it."""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from catalog.media import DerivedObject, record_derivative
from catalog.models import Recording
from config import Settings
from tests.case_helpers import put_object


@contextmanager
def served(settings: Settings, **options: Any) -> Iterator[str]:
    """The API of ``settings`` listening on 127.0.0.1; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, **options), log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def client(base: str, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers=headers, timeout=30)


def add_proxy(
    app: Any, rec_id: int, size: int = 200_000, seed: int = 1, kind: str = "proxy"
) -> bytes:
    """A proxy (or another derivative ``kind``: a poster) of ``size`` bytes for the
    recording, stored and recorded as the worker records one; returns its bytes."""
    data = random.Random(seed).randbytes(size)
    key = put_object(app, data)
    with app.catalog.transaction() as s:
        rec = s.get(Recording, rec_id)
        record_derivative(
            s,
            app.signer,
            rec,
            DerivedObject(
                kind=kind,
                sha256=hashlib.sha256(data).hexdigest(),
                sm3=hashlib.new("sm3", data).hexdigest(),
                size=len(data),
                object_key=key,
                method="reencode",
                command=["ffmpeg", "-i", "in", "out.mp4"],
                tool_version="test",
                duration_s=60.0,
            ),
            "worker:test",
        )
    return data


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error body every failure carries: message, hint, code."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "hint", "code"}, body
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def issue_token(app: Any, role: str, unit: str = "徐汇分局", name: str | None = None) -> str:
    """An API token of ``role`` for ``unit``, as `liuhen token issue` makes one."""
    from datetime import UTC, datetime, timedelta

    from access.roles import Role
    from access.sessions import issue_token as issue

    with app.catalog.transaction() as s:
        return issue(
            s,
            name=name or f"{role}-{unit}-{random.randrange(10**9)}",
            role=Role(role),
            unit=unit,
            expires_at=datetime.now(UTC) + timedelta(days=1),
            created_by="test",
            policy=app.settings.access,
        )


PASSWORD = "Zhifa-jilu-2026!"


def session_secret(
    app: Any,
    role: str,
    unit: str = "徐汇分局",
    name: str | None = None,
    officer_number: str | None = None,
) -> str:
    """A person of ``role`` for ``unit``, logged in: a new user (an officer gets 警号
    999999 unless told) with a session; returns the session's secret, to send as
    ``Authorization: Bearer`` as `liuhen login` keeps it. Evidence is read by people,
    not by API tokens, so a test reading evidence acts as one."""
    from access.accounts import create_user, principal_of
    from access.roles import Role
    from access.sessions import open_session

    login = name or f"{role}-{random.randrange(10**9)}"
    if officer_number is None and Role(role) is Role.OFFICER:
        officer_number = "999999"
    with app.catalog.transaction() as s:
        user, _one_time = create_user(
            s,
            login=login,
            display_name=login,
            unit=unit,
            officer_number=officer_number,
            roles=[Role(role)],
            actor="test",
            policy=app.settings.access,
            password=PASSWORD,
        )
        principal = principal_of(s, user, via="session", policy=app.settings.access)
        return open_session(s, principal, source="test", policy=app.settings.access)


def add_user(
    app: Any,
    login: str,
    *roles: str,
    unit: str = "徐汇分局",
    officer_number: str | None = None,
) -> str:
    """A user with ``roles`` and the password PASSWORD (not one-time); returns the login."""
    from access.accounts import create_user
    from access.roles import Role

    with app.catalog.transaction() as s:
        create_user(
            s,
            login=login,
            display_name=login,
            unit=unit,
            officer_number=officer_number,
            roles=[Role(r) for r in roles],
            actor="test",
            policy=app.settings.access,
            password=PASSWORD,
        )
    return login


def access_events(app: Any, **filters: Any) -> list[Any]:
    """The access events recorded so far (access.audit.access_events)."""
    from access.audit import access_events as read

    with app.catalog.session() as s:
        return list(read(s, **filters))


def login(base: str, name: str, totp: str | None = None) -> tuple[httpx.Client, str]:
    """A client logged in as ``name`` (cookie session) and its CSRF token."""
    http = client(base)
    r = http.post("/api/v1/session", json={"login": name, "password": PASSWORD, "totp": totp})
    assert r.status_code == 200, r.text
    return http, str(r.json()["csrf_token"])


def add_admin(app: Any, name: str, role: str) -> str:
    """An administrator with two-factor login turned on; returns a current TOTP code."""
    import pyotp

    from access.accounts import confirm_totp, get_user, start_totp

    add_user(app, name, role)
    with app.catalog.transaction() as s:
        user = get_user(s, name)
        start_totp(s, user)
        secret = str(user.totp_secret)
        # Enrolled with the previous step's code: a code is accepted once, and the
        # login that follows uses the current one.
        totp = pyotp.TOTP(secret)
        confirm_totp(s, user, totp.at(time.time() - totp.interval), policy=app.settings.access)
    return str(totp.now())
