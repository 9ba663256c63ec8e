"""Shared fixtures: an isolated environment, and a catalog on SQLite or PostgreSQL.

Real services over real connections: the PostgreSQL at 127.0.0.1:5432 (or
LIUHEN_TEST_PG_URL) and an S3 server process (tests/fixtures/s3server.py). Under CI=true
a missing service fails the test; elsewhere it skips, so a laptop without PostgreSQL can
still run the rest.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text

from catalog import Catalog
from config import env

if TYPE_CHECKING:
    from tests.fixtures.s3server import TcpProxy

pytest_plugins = ["tests.fixtures.s3server"]

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# The test suite's own variables, kept when a test clears LIUHEN_* around it.
TEST_ENV = frozenset({env.TEST_S3_URL, env.TEST_PG_URL, "LIUHEN_TEST_S3_SERVER"})


def service_missing(what: str) -> None:
    """Fail under CI (a missing service is a broken run), skip elsewhere."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true", pytrace=False)
    pytest.skip(f"{what} not available")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads the developer's home, settings or LIUHEN_* variables."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(env.XDG_DATA_HOME, raising=False)
    for name in list(os.environ):
        if name.startswith(env.PREFIX) and name not in TEST_ENV:
            monkeypatch.delenv(name)
    # Tests written before the Chinese catalog read English messages; a test of what a
    # Chinese reader sees sets LIUHEN_LANG=zh (or unsets it: Chinese is the default).
    monkeypatch.setenv("LIUHEN_LANG", "en")
    from config.i18n import set_language

    set_language(None)
    return home


def pg_base_url() -> str:
    return os.environ.get(env.TEST_PG_URL, DEFAULT_PG_URL)


@pytest.fixture(scope="session")
def pg_server() -> str:
    url = pg_base_url()
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        service_missing(f"PostgreSQL at {url} ({type(exc).__name__}: {exc})")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A PostgreSQL catalog URL of its own: a fresh schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_server else "?"
    yield f"{pg_server}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def proxied_pg(pg_url: str) -> Iterator[tuple[str, TcpProxy]]:
    """The test PostgreSQL behind a TCP proxy whose cut() makes the catalog unreachable."""
    # Imported here: the plugin module must be loaded by pytest_plugins first, so that
    # pytest rewrites its asserts.
    from tests.fixtures.s3server import TcpProxy

    parts = urlsplit(pg_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = (
        parts.netloc.replace(f":{parts.port}", f":{proxy.port}")
        if parts.port
        else f"{parts.netloc}:{proxy.port}"
    )
    yield parts._replace(netloc=netloc).geturl(), proxy
    proxy.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    cat = Catalog(catalog_url)
    cat.upgrade()
    yield cat
    cat.dispose()


@pytest.fixture
def app(tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An initialised station on the parametrised catalog; commands run in-process (see
    tests/cli_helpers.py) find the same data directory and catalog in the environment."""
    from tests.offload_helpers import make_app

    monkeypatch.setenv(env.HOME, str(tmp_path / "data"))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    a = make_app(tmp_path / "data", catalog_url=catalog_url)
    yield a
    a.close()
