"""The device index of recordings answers an officer's "carried" recordings by itself
(migration 0011): the recordings captured on a recorder assigned to the officer whose
officer is someone else are found and tested in the index, not read row by row."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, inspect, select, text

from access.policy import Principal, recording_scope
from access.roles import Role
from catalog.db import Catalog
from catalog.migrate import alembic_config, upgrade
from catalog.models import Recording

INDEX = "ix_recordings_device_captured"


def _recording_indexes(engine: Engine) -> dict[str, dict[str, object]]:
    with engine.connect() as conn:
        return {str(ix["name"]): dict(ix) for ix in inspect(conn).get_indexes("recordings")}


def _downgrade(engine: Engine, revision: str) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def test_device_index_holds_the_officer(catalog: Catalog) -> None:
    index = _recording_indexes(catalog.engine)[INDEX]
    assert index["column_names"] == ["device_id", "captured_at", "officer_id"]
    if catalog.engine.dialect.name == "postgresql":
        # SQLite's indexes hold the rowid (recordings.id) already.
        assert index["dialect_options"] == {"postgresql_include": ["id"]}


def test_carried_recordings_are_read_from_the_index_alone(catalog: Catalog) -> None:
    """The query plan of an officer's scope: the carried term is an index-only walk."""
    officer = Principal(
        None, "o1", "", "第1分局", "100001", frozenset({Role.OFFICER}), via="session"
    )
    stmt = select(Recording.id).where(recording_scope(officer))
    with catalog.engine.begin() as conn:
        compiled = stmt.compile(conn)
        if conn.dialect.name == "sqlite":
            assert compiled.positiontup is not None
            params = tuple(compiled.params[k] for k in compiled.positiontup)
            plan = [r[3] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params)]
            assert any(f"carried USING COVERING INDEX {INDEX}" in step for step in plan), plan
        else:
            # An empty table: make the planner take an index where one serves, as it
            # does at a million recordings (bench/api.py; docs/api.md).
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            conn.execute(text("SET LOCAL enable_bitmapscan = off"))
            plan = [r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)]
            assert any(f"Index Only Scan using {INDEX} on recordings carried" in s for s in plan), (
                plan
            )


def test_upgrade_replaces_the_index_without_adding_one(catalog_url: str) -> None:
    """Ingest pays for every index on recordings: 0011 swaps one, it adds none; and a
    downgrade puts the old one back."""
    cat = Catalog(catalog_url)
    try:
        upgrade(cat.engine, "0010")
        before = _recording_indexes(cat.engine)
        assert before[INDEX]["column_names"] == ["device_id", "captured_at"]
        upgrade(cat.engine, "0011")
        after = _recording_indexes(cat.engine)
        assert set(after) == set(before)
        assert after[INDEX]["column_names"] == ["device_id", "captured_at", "officer_id"]
        _downgrade(cat.engine, "0010")
        assert _recording_indexes(cat.engine)[INDEX]["column_names"] == [
            "device_id",
            "captured_at",
        ]
    finally:
        cat.dispose()
