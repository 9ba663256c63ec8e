"""Catalog engine and sessions, for SQLite (embedded default) and PostgreSQL (district).

SQLite runs in WAL mode with foreign keys on and a busy timeout. Python's sqlite3 module
would otherwise open transactions lazily and upgrade read locks to write locks (a
classic deadlock between two writers), so we take over transaction control: read
sessions begin with BEGIN, write sessions with BEGIN IMMEDIATE.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError, InvalidatePoolError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from catalog.errors import CatalogUnavailable, SchemaOutOfDate
from config.i18n import _
from config.loader import mask_url

_IMMEDIATE = "liuhen_immediate"

log = logging.getLogger("liuhen.catalog")

# Transactions that lost an insert race run again, up to this many times in all.
RACE_ATTEMPTS = 5
# PostgreSQL's "deadlock detected" and "could not serialize": the transaction was rolled
# back whole and can run again like a lost insert race.
RETRYABLE_SQLSTATES = ("40P01", "40001")

T = TypeVar("T")

# PostgreSQL: a pooled connection unused this long is pinged before it is handed out
# (a server restarted or a link dropped meanwhile: a fresh connection instead, nobody
# sees an error). One used more recently is not: under load every connection is, and
# the ping was a round trip of each request's seven. A server that went away within
# that time fails the request that finds out (503, "retry": CatalogUnavailable) and
# the pool drops every connection made before.
PING_IDLE_S: Final = 2.0
_LAST_USE = "liuhen_last_use"


class Catalog:
    def __init__(self, url: str, *, busy_timeout_ms: int = 30_000, echo: bool = False) -> None:
        self.url = url
        parsed: URL = make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        # The file of a SQLite catalog (None: PostgreSQL, or in memory). Its folder is
        # made by `liuhen init` only (liuhen.app.initialize): a catalog.url naming a
        # folder that is not there is an error, not a new empty catalog somewhere.
        self.sqlite_file: Path | None = None
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                self.sqlite_file = Path(parsed.database)
            kwargs["connect_args"] = {"timeout": busy_timeout_ms / 1000, "check_same_thread": False}
        else:
            kwargs["connect_args"] = {"connect_timeout": 10}
        self.engine: Engine = create_engine(parsed, **kwargs)
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine, busy_timeout_ms)
        else:
            _ping_when_idle(self.engine)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(**{_IMMEDIATE: True}), expire_on_commit=False
        )
        # PostgreSQL: each statement commits by itself (see look_up).
        self._look_up = (
            sessionmaker(
                self.engine.execution_options(isolation_level="AUTOCOMMIT"),
                expire_on_commit=False,
            )
            if self.dialect == "postgresql"
            else self._write
        )

    @property
    def display_url(self) -> str:
        return mask_url(self.url)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session (no commit)."""
        with self._guard(), self._read() as s:
            yield s

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back on error."""
        with self._guard(), self._write() as s, s.begin():
            yield s

    @contextmanager
    def look_up(self) -> Iterator[Session]:
        """A session for a short look-up that writes seldom and one statement at a time
        (a request's authentication: its last use once a minute, a session's end): on
        PostgreSQL every statement commits by itself, so no BEGIN, COMMIT or ROLLBACK
        goes to the server (three round trips of a request's five). Reads lose nothing:
        under READ COMMITTED each statement has its own snapshot in a transaction too;
        each write is one UPDATE, atomic alone. Not for work that must commit or fail
        as a whole. SQLite: a write transaction, as :meth:`transaction`."""
        with self._guard(), self._look_up() as s:
            if self._look_up is self._write:
                with s.begin():
                    yield s
            else:
                yield s
                s.commit()  # ends the ORM's transaction; nothing is sent to the server

    def run_retrying(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one write transaction, again if it lost an insert race.

        The catalog functions look a row up and insert it when missing (docking, device,
        officer, recording). On PostgreSQL another writer can insert the same row in
        between; the unique constraint then refuses ours and the whole transaction,
        custody events included, is rolled back. Run again, the look-up finds the other's
        row (a duplicate recording, an existing docking). SQLite never gets here: its
        write transactions do not overlap. A deadlock or serialization failure that
        PostgreSQL resolved by rolling us back is run again too. ``work`` must therefore
        be safe to run more than once (it is given a fresh session each time).
        """
        for attempt in range(1, RACE_ATTEMPTS + 1):
            try:
                with self.transaction() as s:
                    result = work(s)
                return result
            except (IntegrityError, OperationalError) as exc:
                if (
                    isinstance(exc, OperationalError)
                    and getattr(exc.orig, "sqlstate", None) not in RETRYABLE_SQLSTATES
                ):
                    raise
                if attempt == RACE_ATTEMPTS:
                    raise
                log.info(
                    "catalog transaction raced with another writer (%s); running it again",
                    type(exc.orig).__name__,
                )
        raise AssertionError("unreachable")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            if _is_connection_error(exc):
                raise CatalogUnavailable(
                    _("catalog {url} is unreachable: {error}").format(
                        url=self.display_url, error=str(exc.orig).strip()
                    ),
                    hint=_(
                        "check that the database is running and catalog.url is right; "
                        "nothing was lost, retry"
                    ),
                ) from exc
            raise

    # -- schema --------------------------------------------------------------------------

    def current_revision(self) -> str | None:
        from catalog.migrate import current_revision

        with self._guard():
            return current_revision(self.engine)

    def require_current_schema(self) -> None:
        """Refuse to work on a catalog whose schema is not the one this code expects."""
        from catalog.migrate import head_revision

        current = self.current_revision()
        head = head_revision()
        if current == head:
            return
        if current is None:
            raise SchemaOutOfDate(
                _("catalog {url} has no 留痕 schema").format(url=self.display_url),
                hint=_("run 'liuhen init' (new installation) or 'liuhen db upgrade'"),
            )
        raise SchemaOutOfDate(
            _(
                "catalog {url} is at schema revision {current}, this version of 留痕 needs {head}"
            ).format(url=self.display_url, current=current, head=head),
            hint=_("run 'liuhen db upgrade' (back up the catalog first)"),
        )

    def upgrade(self) -> tuple[str | None, str]:
        from catalog.migrate import upgrade

        before = self.current_revision()
        with self._guard():
            upgrade(self.engine)
        return before, self.current_revision() or ""

    def ping(self) -> None:
        with self.session() as s:
            s.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see module doc)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # FULL: a committed custody event survives power loss, not only a crash.
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _ping_when_idle(engine: Engine) -> None:
    """``pool_pre_ping``, for connections idle ``PING_IDLE_S`` or longer only."""

    @event.listens_for(engine.pool, "connect")
    @event.listens_for(engine.pool, "checkin")
    def _used(_dbapi_conn: Any, record: Any) -> None:
        record.info[_LAST_USE] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_LAST_USE, 0.0) < PING_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # As with pool_pre_ping: the pool replaces this connection (a failure to
            # connect is the request's error) and, the server having gone away, drops
            # every connection made before it too, not one failed ping at a time.
            raise InvalidatePoolError(f"pooled connection failed its ping: {exc}") from exc


def _is_connection_error(exc: OperationalError) -> bool:
    if exc.connection_invalidated:
        # SQLAlchemy found the connection broken (psycopg's ``broken``), whatever the
        # driver's words for it (an SSL link cut says "SSL SYSCALL error: EOF detected").
        return True
    msg = str(exc.orig).lower()
    return any(
        s in msg
        for s in (
            "connection refused",
            "could not connect",
            "connection failed",
            "server closed the connection",
            "terminating connection",
            "unable to open database",
            "connection timeout",
            "timeout expired",
            "the database system is",
            "no such host",
        )
    )
