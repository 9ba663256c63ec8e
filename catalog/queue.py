"""The catalog work queue: enqueue idempotently, claim with a lease, finish or fail.

A claim takes PENDING items, and CLAIMED items whose lease expired (their worker died).
On PostgreSQL the claiming SELECT uses FOR UPDATE SKIP LOCKED, so concurrent workers
never take the same row and never wait on each other; on SQLite the write transaction
(BEGIN IMMEDIATE) already admits one claimer at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Table, and_, bindparam, or_, select
from sqlalchemy.orm import Session

from catalog.bulk import BulkInsert
from catalog.models import WorkItem, utcnow

PENDING, CLAIMED, DONE, FAILED = "PENDING", "CLAIMED", "DONE", "FAILED"
# Why an item failed (``WorkItem.failure``). Deterministic: the same input fails the same
# way every time (ffmpeg rejects it, the output is empty or short), so it is not tried
# again until an operator asks. Transient: the input is not to blame (a service was
# away, a time limit ran out, a process was killed), so it is tried again later.
DETERMINISTIC, TRANSIENT = "deterministic", "transient"
# A transient failure is tried again after RETRY_FIRST, then twice as long each time up
# to RETRY_LONGEST, MAX_ATTEMPTS tries in all.
RETRY_FIRST = timedelta(seconds=30)
RETRY_LONGEST = timedelta(minutes=30)
MAX_ATTEMPTS = 5


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
    rows = [(kind, s, when) for s in wanted if s not in queued]
    _INSERT.run(conn, rows)  # straight to the driver, with the columns' defaults
    return len(rows)


_ITEMS = WorkItem.__table__
assert isinstance(_ITEMS, Table)
_QUEUED = select(_ITEMS.c.subject).where(
    _ITEMS.c.kind == bindparam("kind"), _ITEMS.c.subject.in_(bindparam("subjects", expanding=True))
)
_INSERT = BulkInsert(_ITEMS, ("kind", "subject", "not_before"))


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
    item.failure = None
    item.lease_owner = None
    item.lease_expires_at = None
    return True


def fail(
    session: Session,
    item_id: int,
    owner: str,
    error: str,
    *,
    failure: str = TRANSIENT,
    retry_after: timedelta | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> WorkItem | None:
    """Record a failure with its reason. A deterministic one ends the item FAILED at once;
    a transient one goes back to the queue, after ``retry_after`` (by default a delay that
    doubles with each attempt), until ``max_attempts`` have been made. Returns the item,
    or None when we no longer hold it (another worker took it over: its outcome stands)."""
    item = session.get(WorkItem, item_id, with_for_update=True)
    if item is None or item.lease_owner != owner:
        return None
    item.last_error = error[-4000:]
    item.failure = failure
    item.lease_owner = None
    item.lease_expires_at = None
    if failure == TRANSIENT and item.attempts < max_attempts:
        item.state = PENDING
        delay = retry_delay(item.attempts) if retry_after is None else retry_after
        item.not_before = utcnow() + delay
    else:
        item.state = FAILED
    return item


def retry_delay(attempts: int) -> timedelta:
    """How long a transient failure waits after its ``attempts``-th try."""
    delay: timedelta = RETRY_FIRST * (2 ** max(0, attempts - 1))
    return min(delay, RETRY_LONGEST)


def requeue_failed(session: Session, items: Iterable[WorkItem]) -> list[WorkItem]:
    """Put FAILED items back to be done now, with a fresh count of attempts; the last
    error stays until the next outcome replaces it. Returns the items requeued."""
    now = utcnow()
    requeued = []
    for item in items:
        if item.state != FAILED:
            continue
        item.state = PENDING
        item.attempts = 0
        item.not_before = now
        item.failure = None
        requeued.append(item)
    session.flush()
    return requeued
