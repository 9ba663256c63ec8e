"""Catalog.run_retrying: a transaction that lost an insert race (or that PostgreSQL rolled
back for a deadlock or a serialization failure) runs again; anything else does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from catalog import Catalog
from catalog.db import RACE_ATTEMPTS


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


@pytest.fixture
def catalog(tmp_path: Path) -> Any:
    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    with cat.transaction() as s:
        s.execute(text("CREATE TABLE t (x INTEGER)"))
    yield cat
    cat.dispose()


def rows(catalog: Catalog) -> list[int]:
    with catalog.session() as s:
        return [x for (x,) in s.execute(text("SELECT x FROM t ORDER BY x"))]


def racing(failures: list[Exception]) -> tuple[list[int], Any]:
    """Work that writes a row, then fails with each of ``failures`` in turn (rolled back)."""
    runs: list[int] = []

    def work(s: Session) -> int:
        runs.append(len(runs) + 1)
        s.execute(text("INSERT INTO t VALUES (:x)"), {"x": len(runs)})
        if len(runs) <= len(failures):
            raise failures[len(runs) - 1]
        return len(runs)

    return runs, work


def integrity() -> IntegrityError:
    return IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))


def pg(sqlstate: str) -> OperationalError:
    return OperationalError("UPDATE", {}, _PgError(sqlstate))


def test_a_lost_race_runs_again_and_only_the_last_run_is_kept(catalog: Catalog) -> None:
    runs, work = racing([integrity(), pg("40P01"), pg("40001")])
    assert catalog.run_retrying(work) == 4
    assert runs == [1, 2, 3, 4] and rows(catalog) == [4]


def test_it_gives_up_after_the_last_attempt(catalog: Catalog) -> None:
    runs, work = racing([integrity()] * RACE_ATTEMPTS)
    with pytest.raises(IntegrityError):
        catalog.run_retrying(work)
    assert len(runs) == RACE_ATTEMPTS and rows(catalog) == []


def test_other_database_errors_are_not_run_again(catalog: Catalog) -> None:
    runs, work = racing([pg("42P01")])  # undefined table: running again cannot help
    with pytest.raises(OperationalError):
        catalog.run_retrying(work)
    runs, work = racing([ValueError("not a database error")])
    with pytest.raises(ValueError):
        catalog.run_retrying(work)
    assert runs == [1] and rows(catalog) == []
