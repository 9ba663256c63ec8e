"""Catalog behaviour on SQLite and PostgreSQL (the `catalog` fixture runs both)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text

from catalog import (
    Catalog,
    SchemaOutOfDate,
    Signer,
    append_event,
    queue,
    register_station,
    verify_chain,
)
from catalog.models import CustodyEvent, WorkItem


def make_signer(station: str = "st-1") -> Signer:
    return Signer(station, Ed25519PrivateKey.generate())


def test_fresh_catalog_is_refused_until_upgraded(catalog_url: str) -> None:
    cat = Catalog(catalog_url)
    try:
        with pytest.raises(SchemaOutOfDate, match="liuhen init"):
            cat.require_current_schema()
        before, after = cat.upgrade()
        assert before is None and after
        cat.require_current_schema()
        assert cat.upgrade() == (after, after)  # idempotent
    finally:
        cat.dispose()


def test_older_schema_names_the_upgrade_command(catalog: Catalog) -> None:
    with catalog.transaction() as s:
        s.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(SchemaOutOfDate, match="liuhen db upgrade"):
        catalog.require_current_schema()


def test_sqlite_runs_wal_with_foreign_keys(tmp_path: Path) -> None:
    cat = Catalog(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    with cat.session() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1
    cat.dispose()


def test_custody_chain_appends_and_verifies(catalog: Catalog) -> None:
    signer = make_signer()
    with catalog.transaction() as s:
        register_station(s, signer, name="徐汇采集站")
        for i in range(5):
            append_event(
                s,
                signer,
                actor="officer:010203",
                action="offloaded",
                object_type="recording",
                object_id=f"r{i}",
                details={"名": "值", "i": i},
            )
    with catalog.session() as s:
        report = verify_chain(s, trusted={"st-1": {signer.key_id}})
        seqs = list(s.scalars(select(CustodyEvent.seq).order_by(CustodyEvent.seq)))
    assert report.ok, report.problems
    assert report.events == 6 and seqs == [1, 2, 3, 4, 5, 6]


def test_concurrent_appends_never_fork_the_chain(catalog: Catalog) -> None:
    signer = make_signer()
    with catalog.transaction() as s:
        register_station(s, signer)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                with catalog.transaction() as s:
                    append_event(
                        s, signer, actor="t", action="x", object_type="t", object_id=f"{n}-{i}"
                    )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with catalog.session() as s:
        report = verify_chain(s)
    assert report.ok, [p.describe() for p in report.problems]
    assert report.events == 1 + 4 * 15


def test_queue_claims_each_item_once_and_recovers_expired_leases(catalog: Catalog) -> None:
    with catalog.transaction() as s:
        for i in range(3):
            queue.enqueue(s, "probe", f"rec-{i}")
        queue.enqueue(s, "probe", "rec-0")  # idempotent
    with catalog.transaction() as s:
        a = [i.id for i in queue.claim(s, ["probe"], "worker-a", limit=2)]
    with catalog.transaction() as s:
        b = [i.id for i in queue.claim(s, ["probe"], "worker-b", limit=5)]
    assert len(a) == 2 and len(b) == 1 and not set(a) & set(b)
    with catalog.transaction() as s:  # worker-a "dies": its lease expires
        for item in s.scalars(select(WorkItem).where(WorkItem.id.in_(a))):
            item.lease_expires_at = item.lease_expires_at - timedelta(hours=1)  # type: ignore[operator]
    with catalog.transaction() as s:
        c = [i.id for i in queue.claim(s, ["probe"], "worker-c", limit=5)]
    assert sorted(c) == sorted(a)
    with catalog.transaction() as s:
        assert not queue.complete(s, a[0], "worker-a")  # lost its lease: may not finish
        assert queue.complete(s, a[0], "worker-c")
    with catalog.session() as s:
        states = {i.id: (i.state, i.attempts) for i in s.scalars(select(WorkItem))}
    assert states[a[0]] == ("DONE", 2)


def test_failed_work_is_retried_then_given_up(catalog: Catalog) -> None:
    with catalog.transaction() as s:
        item_id = queue.enqueue(s, "derive", "r1").id
    for attempt in range(1, 4):
        with catalog.transaction() as s:
            (item,) = queue.claim(s, ["derive"], "w")
            queue.fail(s, item.id, "w", f"boom {attempt}", retry_after=timedelta(0), max_attempts=3)
    with catalog.session() as s:
        item = s.get(WorkItem, item_id)
        assert item is not None
        assert (item.state, item.attempts, item.last_error) == ("FAILED", 3, "boom 3")


@pytest.mark.postgres
def test_skip_locked_claims_are_disjoint_under_concurrency(pg_url: str) -> None:
    cat = Catalog(pg_url)
    cat.upgrade()
    with cat.transaction() as s:
        for i in range(200):
            queue.enqueue(s, "probe", f"rec-{i}")
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def worker(name: str) -> None:
        barrier.wait()
        got: list[int] = []
        while True:
            with cat.transaction() as s:
                items = queue.claim(s, ["probe"], name, limit=7)
                if not items:
                    break
                got += [i.id for i in items]
        claimed[name] = got

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for ids in claimed.values() for i in ids]
    assert len(everything) == 200 == len(set(everything))
    assert sum(1 for ids in claimed.values() if ids) >= 2  # the work really was shared
    cat.dispose()
