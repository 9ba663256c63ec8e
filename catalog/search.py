"""Recording search: by officer (警号), recorder serial, unit, case, capture time, state
and flags, a page at a time, newest capture first.

Pages are cut by keyset, not by offset: the cursor names the last recording shown
(its capture start and id), and the next page starts strictly after it in the one stable
order ``captured_at DESC, id DESC``. Page 1000 costs what page 1 costs, and a recording
docked while someone pages is neither shown twice nor skipped. Recordings whose capture
time is unknown (not probed, no time in the name) come after all the others, by id.

Every filter is one SQL condition on ``recordings`` (subqueries on small tables or on
indexed columns), so that PostgreSQL walks the capture-time index and stops after one
page; bench/api.py measures it on a million recordings (docs/api.md and
docs/performance.md have the figures and the indexes it relies on).

An access scope that is an OR of terms (an officer's own recordings, or those of the
cases granted to them) is searched one term at a time and the pages merged: under an
OR, PostgreSQL can only walk every recording newest first and test each against every
term (at a million recordings, tens of thousands of rows for an officer's page); one
term alone it walks by its own index (``officer_id, captured_at``) or reads as the
small set it is, and stops after a page. The terms' walks are the branches of one
UNION in one statement (:func:`_timed_page`), each still walked on its own.

A recording's unit is its recorder's unit, or, for a recorder registered without one,
the unit of the officer it was resolved to.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Final

from sqlalchemy import (
    BooleanClauseList,
    ColumnElement,
    Select,
    and_,
    exists,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    union,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators

from catalog.cases import get_case
from catalog.errors import CatalogError
from catalog.models import CaseRecording, Device, LegalHold, Officer, Recording, utcnow
from catalog.retention import _floor_since_sql
from catalog.states import LIVE_STATES, RecordingState
from config.errors import EXIT_USAGE
from config.i18n import N_, _
from config.settings import RetentionSettings
from config.timetext import TimeTextError, iso_time, parse_range

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
# The flags a search may ask for, by the name the API and docs give them.
FLAGS: Final = ("damaged", "time_disagreement", "unattached", "expiring", "on_hold")
STATES: Final = tuple(s.value for s in RecordingState)
# The keys of ``recordings.flags`` the worker writes for damage and disagreeing times.
_JSON_FLAG: Final = {"damaged": "damaged", "time_disagreement": "time"}


class SearchError(CatalogError):
    """A search that cannot be run as asked (a bad time, cursor, flag or state)."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class SearchQuery:
    """What to look for; every field left empty matches everything."""

    officer: str | None = None  # 警号
    device: str | None = None  # recorder serial
    unit: str | None = None
    case: str | None = None  # case number, as people write it
    captured_from: datetime | None = None  # capture start in [from, to), aware
    captured_to: datetime | None = None
    states: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    # "expiring": the retention sweep may delete it within this many days.
    expiring_within_days: int = 30
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


@dataclass
class SearchPage:
    items: list[dict[str, Any]] = field(default_factory=list)
    # Give it back as ``cursor`` for the next page; None on the last page.
    next_cursor: str | None = None


def time_range(
    date_from: str | None, date_to: str | None, zone: tzinfo
) -> tuple[datetime | None, datetime | None]:
    """``from``/``to`` as people type them, in the station's zone; ``to`` is exclusive
    (config.timetext.parse_range), its message kept for the user."""
    try:
        return parse_range(date_from, date_to, zone)
    except TimeTextError as exc:
        raise SearchError(
            str(exc),
            hint=_("times are in the station's zone unless they name an offset"),
        ) from exc


def search_recordings(
    session: Session,
    query: SearchQuery,
    *,
    zone: tzinfo,
    policy: RetentionSettings | None = None,
    scope: ColumnElement[bool] | None = None,
    now: datetime | None = None,
) -> SearchPage:
    """One page of the recordings ``query`` matches, within ``scope`` (an access
    policy's filter: what the person asking may see; None: everything)."""
    _check(query)
    retention = policy or RetentionSettings()
    when = now or utcnow()
    conditions = _conditions(session, query, retention, when)
    phase, after_time, after_id = _decode_cursor(query.cursor)
    limit = query.limit
    rows: list[Any] = []
    if phase == 0:
        timed = [*conditions, Recording.captured_at.is_not(None)]
        if after_time is not None:
            timed.append(tuple_(Recording.captured_at, Recording.id) < (after_time, after_id))
        parts = [
            and_(branch, term)
            for branch in _timed_branches(query, retention, when)
            for term in _or_terms(scope)
        ]
        rows = list(session.execute(_timed_page(timed, parts, limit + 1)))
    if scope is not None:
        conditions.append(scope)
    if len(rows) <= limit:
        untimed = _page([*conditions, Recording.captured_at.is_(None)], limit + 1 - len(rows))
        if phase == 1:
            untimed = untimed.where(Recording.id < after_id)
        rows += list(session.execute(untimed))
    page = SearchPage([_summary(row, zone) for row in rows[:limit]])
    if len(rows) > limit:
        page.next_cursor = _encode_cursor(rows[limit - 1])
    return page


def _or_terms(scope: ColumnElement[bool] | None) -> list[ColumnElement[bool]]:
    """The terms of an OR scope (nested ORs flattened), each searched on its own; a
    scope of one term, or none, is one part."""
    if scope is None:
        return [true()]
    if isinstance(scope, BooleanClauseList) and scope.operator is operators.or_:
        return [term for clause in scope.clauses for term in _or_terms(clause)]
    return [scope]


def _timed_branches(
    query: SearchQuery, policy: RetentionSettings, now: datetime
) -> list[ColumnElement[bool]]:
    """The recordings with a capture time, as parts each walked in page order and
    merged: one part, unless a flag's condition has a cheaper form for some of them.

    "expiring" (``since <= cutoff``): a probed recording's retention period runs from
    its capture or later, so its capture time is before the cutoff, a range PostgreSQL
    starts the walk at instead of reading every newer recording; a STORED one (capture
    time unchecked, counted from its receipt) is the other part, few in number."""
    if "expiring" not in query.flags:
        return [true()]
    cutoff = _expiry_cutoff(query, policy, now)
    stored = Recording.state == RecordingState.STORED
    return [and_(~stored, Recording.captured_at <= cutoff), stored]


def _expiry_cutoff(query: SearchQuery, policy: RetentionSettings, now: datetime) -> datetime:
    return now + timedelta(days=query.expiring_within_days - policy.unattached_days)


def _check(query: SearchQuery) -> None:
    if not 1 <= query.limit <= MAX_LIMIT:
        raise SearchError(
            _("limit {limit} is out of range").format(limit=query.limit),
            hint=_("give a limit from 1 to {most}").format(most=MAX_LIMIT),
        )
    unknown = [f for f in query.flags if f not in FLAGS]
    if unknown:
        raise SearchError(
            _("unknown flag {flag!r}").format(flag=unknown[0]),
            hint=_("flags are: {flags}").format(flags=", ".join(FLAGS)),
        )
    bad = [s for s in query.states if s.upper() not in STATES]
    if bad:
        raise SearchError(
            _("unknown state {state!r}").format(state=bad[0]),
            hint=_("states are: {states}").format(states=", ".join(STATES)),
        )


# What a result row shows and its cursor needs, as plain columns: a row's probe and time
# evidence (the tools' whole reports, kilobytes of JSON each) are the recording page's, not
# the list's, and rows are read as tuples, not loaded as Recording instances (the ORM's
# identity map and attribute state cost more CPU than the query on PostgreSQL: bench/api).
_ROW_COLUMNS: Final = (
    Recording.id,
    Recording.original_name,
    Recording.sha256,
    Recording.sm3,
    Recording.size,
    Recording.state,
    Recording.media_kind,
    Recording.duration_s,
    Recording.captured_at,
    Recording.capture_end,
    Recording.received_at,
    Recording.important,
    Recording.flags,
    Device.serial.label("device_serial"),
    Device.unit.label("device_unit"),
    Officer.number.label("officer_number"),
    Officer.unit.label("officer_unit"),
)
_PAGE_ORDER: Final = (Recording.captured_at.desc(), Recording.id.desc())
# The result rows' statement without its conditions, built once: a request adds its
# conditions and limit to a copy (a tenth of the time building it again takes).
_ROWS: Final = (
    select(*_ROW_COLUMNS)
    .outerjoin(Device, Device.id == Recording.device_id)
    .outerjoin(Officer, Officer.id == Recording.officer_id)
    .order_by(*_PAGE_ORDER)
)


def _page(conditions: Sequence[ColumnElement[bool]], limit: int) -> Select[Any]:
    """A page of result rows: the recordings matching every condition, in page order."""
    return _ROWS.where(*conditions).limit(limit)


def _timed_page(
    conditions: Sequence[ColumnElement[bool]], parts: Sequence[ColumnElement[bool]], limit: int
) -> Select[Any]:
    """The page of recordings with a capture time that match ``conditions`` and any of
    ``parts``, in one statement: each part walked on its own, newest first, for at most
    a page of ids (its own index, a short walk: see the module's docstring), their union
    (a recording matching two parts once) joined back for the rows and cut to a page.
    One round trip and one page of rows, not one of each per part."""
    if len(parts) == 1:
        return _page([*conditions, parts[0]], limit)
    walks = [
        select(Recording.id).where(*conditions, part).order_by(*_PAGE_ORDER).limit(limit)
        for part in parts
    ]
    # Each walk as a subquery: SQLite takes no ORDER BY or LIMIT on a UNION's own members.
    ids = union(*(select(walk.subquery().c.id) for walk in walks)).subquery("page_ids")
    return (
        select(*_ROW_COLUMNS)
        .join_from(ids, Recording, Recording.id == ids.c.id)
        .outerjoin(Device, Device.id == Recording.device_id)
        .outerjoin(Officer, Officer.id == Recording.officer_id)
        .order_by(*_PAGE_ORDER)
        .limit(limit)
    )


def _conditions(
    session: Session, query: SearchQuery, policy: RetentionSettings, now: datetime
) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    # 警号 and serials are unique: one id each, compared with "=" so that PostgreSQL
    # walks (officer_id | device_id, captured_at) in page order (migration 0007).
    if query.officer:
        officer = select(Officer.id).where(Officer.number == query.officer.strip())
        found.append(Recording.officer_id == officer.scalar_subquery())
    if query.device:
        device = select(Device.id).where(Device.serial == query.device.strip())
        found.append(Recording.device_id == device.scalar_subquery())
    if query.unit:
        found.append(_in_unit(query.unit.strip()))
    if query.case:
        case_id = get_case(session, query.case).id  # a near miss says which case was meant
        attached = select(CaseRecording.recording_id).where(
            CaseRecording.case_id == case_id, CaseRecording.detached_at.is_(None)
        )
        found.append(Recording.id.in_(attached))
    if query.captured_from is not None:
        found.append(Recording.captured_at >= query.captured_from)
    if query.captured_to is not None:
        found.append(Recording.captured_at < query.captured_to)
    if query.states:
        found.append(Recording.state.in_(sorted({s.upper() for s in query.states})))
    found += [_flag(f, query, policy, now) for f in query.flags]
    return found


def _in_unit(unit: str) -> ColumnElement[bool]:
    unit_devices = select(Device.id).where(Device.unit == unit)
    unitless_devices = select(Device.id).where(Device.unit == "")
    unit_officers = select(Officer.id).where(Officer.unit == unit)
    return or_(
        Recording.device_id.in_(unit_devices),
        and_(
            or_(Recording.device_id.is_(None), Recording.device_id.in_(unitless_devices)),
            Recording.officer_id.in_(unit_officers),
        ),
    )


def _attached() -> ColumnElement[bool]:
    return exists().where(
        CaseRecording.recording_id == Recording.id, CaseRecording.detached_at.is_(None)
    )


def _held() -> ColumnElement[bool]:
    return exists().where(LegalHold.recording_id == Recording.id, LegalHold.released_at.is_(None))


def _flag(
    name: str, query: SearchQuery, policy: RetentionSettings, now: datetime
) -> ColumnElement[bool]:
    if name in _JSON_FLAG:
        # The key as a SQL literal, not a bound parameter: PostgreSQL can then match a
        # partial index on the same expression (docs/api.md).
        key: ColumnElement[str] = literal_column(f"'{_JSON_FLAG[name]}'")
        return Recording.flags.op("->>")(key).is_not(None)
    if name == "unattached":
        return ~_attached()
    if name == "on_hold":
        return _held()
    # "expiring": what catalog.retention.due lists at now + N days (its rules 1-4),
    # live and not yet due now would be "expiring soon"; due now is included as well.
    cutoff = _expiry_cutoff(query, policy, now)
    return and_(
        Recording.state.in_(LIVE_STATES),
        _floor_since_sql() <= cutoff,
        ~_attached(),
        ~_held(),
        or_(Recording.important.is_(False), Recording.reviewed_at.is_not(None)),
    )


def _summary(row: Any, zone: tzinfo) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.original_name,
        "sha256": row.sha256,
        "sm3": row.sm3,
        "size": row.size,
        "state": row.state,
        "media_kind": row.media_kind,
        "duration_s": row.duration_s,
        "captured_at": iso_time(row.captured_at, zone),
        "capture_end": iso_time(row.capture_end, zone),
        "received_at": iso_time(row.received_at, zone),
        "device": row.device_serial,
        "officer": row.officer_number,
        "unit": row.device_unit or row.officer_unit or None,
        "important": row.important,
        "flags": sorted(row.flags or {}),
    }


# -- cursors -----------------------------------------------------------------------------

BAD_CURSOR: Final = N_("this cursor is not one a search gave")


def _encode_cursor(row: Any) -> str:
    """The cursor after a result row (its id and capture time)."""
    mark: dict[str, Any] = {"i": row.id}
    if row.captured_at is not None:
        mark["t"] = row.captured_at.isoformat()
    raw = json.dumps(mark, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[int, datetime | None, int]:
    """(phase, capture time, id) after which the page starts: phase 0 walks recordings
    with a capture time, phase 1 those without."""
    if not cursor:
        return 0, None, 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        mark = json.loads(raw)
        rec_id = int(mark["i"])
        when = datetime.fromisoformat(mark["t"]) if "t" in mark else None
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise SearchError(
            _(BAD_CURSOR), hint=_("start again without a cursor, and page with next_cursor")
        ) from exc
    if not 0 <= rec_id < 2**31 or (when is not None and when.tzinfo is None):
        raise SearchError(_(BAD_CURSOR), hint=_("start again without a cursor"))
    return (0 if when is not None else 1), when, rec_id
