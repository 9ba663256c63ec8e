"""The catalog work queue: enqueue idempotently, claim with a lease, finish or fail.

A claim takes PENDING items, and CLAIMED items whose lease expired (their worker died).
On PostgreSQL the claiming SELECT uses FOR UPDATE SKIP LOCKED, so concurrent workers
never take the same row and never wait on each other; on SQLite the write transaction
(BEGIN IMMEDIATE) already admits one claimer at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Table, and_, bindparam, insert, or_, select
from sqlalchemy.orm import Session

from catalog.models import WorkItem, utcnow

PENDING, CLAIMED, DONE, FAILED = "PENDING", "CLAIMED", "DONE", "FAILED"


def enqueue(
    session: Session, kind: str, subject: str, *, not_before: datetime | None = None
) -> WorkItem:
    """Add work unless the same (kind, subject) is already queued; returns the item."""
    item = session.scalars(
        select(WorkItem).where(WorkItem.kind == kind, WorkItem.subject == subject)
    ).first()
    if item is None:
        item = WorkItem(kind=kind, subject=subject, not_before=not_before or utcnow())
        session.add(item)
        session.flush()
    return item


def enqueue_many(
    session: Session, kind: str, subjects: Iterable[str], *, not_before: datetime | None = None
) -> int:
    """:func:`enqueue` for many subjects with two statements (one look-up, one executemany
    insert of the missing ones) instead of two per subject. Returns how many were added."""
    wanted = list(dict.fromkeys(subjects))
    if not wanted:
        return 0
    session.flush()  # an item the ORM holds pending must be seen
    conn = session.connection()
    queued = set(conn.scalars(_QUEUED, {"kind": kind, "subjects": wanted}))
    when = not_before or utcnow()
    rows = [{"kind": kind, "subject": s, "not_before": when} for s in wanted if s not in queued]
    if rows:
        conn.execute(_INSERT, rows)  # Core: the column defaults apply, no ORM objects
    return len(rows)


_ITEMS = WorkItem.__table__
assert isinstance(_ITEMS, Table)
_QUEUED = select(_ITEMS.c.subject).where(
    _ITEMS.c.kind == bindparam("kind"), _ITEMS.c.subject.in_(bindparam("subjects", expanding=True))
)
_INSERT = insert(_ITEMS)


def claim(
    session: Session,
    kinds: Sequence[str],
    owner: str,
    *,
    lease: timedelta = timedelta(minutes=10),
    limit: int = 1,
) -> list[WorkItem]:
    now = utcnow()
    query = (
        select(WorkItem)
        .where(
            WorkItem.kind.in_(list(kinds)),
            WorkItem.not_before <= now,
            or_(
                WorkItem.state == PENDING,
                and_(WorkItem.state == CLAIMED, WorkItem.lease_expires_at < now),
            ),
        )
        .order_by(WorkItem.not_before, WorkItem.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    items = list(session.scalars(query))
    for item in items:
        item.state = CLAIMED
        item.lease_owner = owner
        item.lease_expires_at = now + lease
        item.attempts += 1
    session.flush()
    return items


def renew(session: Session, item_id: int, owner: str, lease: timedelta) -> bool:
    """Extend a lease we still hold; False when it was lost (expired and taken)."""
    item = session.get(WorkItem, item_id, with_for_update=True)
    if item is None or item.state != CLAIMED or item.lease_owner != owner:
        return False
    item.lease_expires_at = utcnow() + lease
    return True


def complete(session: Session, item_id: int, owner: str) -> bool:
    """Mark done if we still hold the lease. False means another worker took it over."""
    item = session.get(WorkItem, item_id, with_for_update=True)
    if item is None or item.state != CLAIMED or item.lease_owner != owner:
        return False
    item.state = DONE
    item.lease_owner = None
    item.lease_expires_at = None
    return True


def fail(
    session: Session,
    item_id: int,
    owner: str,
    error: str,
    *,
    retry_after: timedelta | None = None,
    max_attempts: int = 5,
) -> None:
    """Record a failure; the item is retried after ``retry_after`` until attempts run out."""
    item = session.get(WorkItem, item_id, with_for_update=True)
    if item is None or item.lease_owner != owner:
        return
    item.last_error = error[-4000:]
    item.lease_owner = None
    item.lease_expires_at = None
    if retry_after is not None and item.attempts < max_attempts:
        item.state = PENDING
        item.not_before = utcnow() + retry_after
    else:
        item.state = FAILED
