"""catalog.bulk.BulkInsert: rows handed to the driver read back as Core would have written
them, on SQLite and PostgreSQL: the columns' defaults applied, times aware UTC, JSON as
JSON, and the same statement serving another engine's dialect correctly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

from catalog import queue
from catalog.bulk import BulkInsert
from catalog.custody import table_of
from catalog.models import WorkItem


def test_enqueue_many_rows_carry_the_columns_defaults(app: Any) -> None:
    later = datetime(2026, 12, 6, 20, 0, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    with app.catalog.transaction() as s:
        assert queue.enqueue_many(s, "probe", ["1", "2", "1"], not_before=later) == 2
        assert queue.enqueue_many(s, "probe", ["2", "3"]) == 1  # "2" is queued already
    with app.catalog.session() as s:
        items = {w.subject: w for w in s.scalars(select(WorkItem))}
    assert sorted(items) == ["1", "2", "3"]
    for item in items.values():
        assert (item.kind, item.state, item.attempts, item.lease_owner) == (
            "probe",
            "PENDING",
            0,
            None,
        )
        assert item.created_at.tzinfo is not None and item.updated_at.tzinfo is not None
    assert items["1"].not_before == later and items["1"].not_before.utcoffset() == timedelta(0)
    assert items["3"].not_before <= datetime.now(UTC)


def test_json_and_binary_values_read_back(app: Any) -> None:
    from catalog.models import Recording

    insert = BulkInsert(
        table_of(Recording), ("sha256", "sm3", "size", "object_key", "original_name", "flags")
    )
    sha = "ab" * 32
    with app.catalog.transaction() as s:
        insert.run(
            s.connection(), [(sha, "cd" * 32, 5, f"sha256/ab/ab/{sha}", "A.MP4", {"x": [1]})]
        )
    with app.catalog.session() as s:
        rec = s.scalars(select(Recording).where(Recording.sha256 == sha)).one()
    assert (rec.flags, rec.state, rec.important, rec.size) == ({"x": [1]}, "STORED", False, 5)
    assert rec.received_at.tzinfo is not None  # a callable default, applied
