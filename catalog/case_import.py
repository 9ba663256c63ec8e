"""Import of cases and enforcement actions (CSV or JSON from a case-management system), and
of device assignments (CSV).

Good rows land and each bad row is reported with its line (CSV) or path (JSON) and every
reason it was refused. Importing the same file again changes nothing: cases are keyed
by number, actions by (case, action id). The work is batched (a few queries per 500
rows), so a 10,000-action file takes seconds, not minutes, on PostgreSQL too.

CSV columns (header names in English or Chinese; UTF-8, a BOM is fine), one row per
action; a row without an action id only declares its case:

    case_number 案件编号, title 案件名称, unit 办案单位, status 案件状态,
    retention 保管期限, security_class 密级, action_id 执法活动编号,
    officers 执法人员 (警号 separated by ; , 、 | or spaces), start 开始时间,
    end 结束时间, place 地点

Times are read by config.timetext, as people and case systems write them
(2026-12-01 08:55, 2026/12/01 8:55, 2026年12月1日 8时55分, full-width digits too); a time
without an offset is in the station's zone (``station.time_zone``, Asia/Shanghai).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from catalog.cases import (
    action_problems,
    case_problems,
    normalize_number,
    normalize_retention,
    number_key,
)
from catalog.custody import append_event
from catalog.devices import (
    DeviceError,
    DeviceNotFound,
    add_device,
    assign_device,
    device_problems,
    officer_problems,
)
from catalog.errors import CatalogError
from catalog.fields import shown
from catalog.models import ActionOfficer, Case, DeviceAssignment, EnforcementAction, Officer, utcnow
from catalog.signing import Signer
from config.errors import EXIT_NOINPUT
from config.i18n import N_, _
from config.settings import CHINA_STANDARD_TIME
from config.timetext import TimeTextError, parse_instant

CHUNK = 500
OFFICER_SPLIT = re.compile(r"[;,、|\s]+")

CASE_COLUMNS = {
    "case_number": ("case_number", "case", "number", "案件编号", "案号"),
    "title": ("title", "case_title", "案件名称", "题名"),
    "unit": ("unit", "case_unit", "办案单位"),
    "status": ("status", "案件状态"),
    "retention": ("retention", "保管期限"),
    "security_class": ("security_class", "密级"),
    "action_id": ("action_id", "action", "执法活动编号"),
    "officers": ("officers", "执法人员"),
    "start": ("start", "开始时间"),
    "end": ("end", "结束时间"),
    "place": ("place", "地点"),
}
DEVICE_COLUMNS = {
    "serial": ("serial", "设备编号"),
    "model": ("model", "型号"),
    "unit": ("unit", "device_unit", "单位"),
    "officer_number": ("officer_number", "officer", "警号"),
    "officer_name": ("officer_name", "姓名"),
    "officer_unit": ("officer_unit", "所属单位"),
    "start": ("start", "开始时间"),
    "end": ("end", "结束时间"),
}
STATUS_ALIASES = {
    "办理中": "open",
    "在办": "open",
    "已结案": "closed",
    "结案": "closed",
    "已归档": "archived",
    "归档": "archived",
}


class ImportFileError(CatalogError):
    exit_code = EXIT_NOINPUT


def source_name(path: Path) -> str:
    """The file's name as stored text (Case.source, notes): a name that is not UTF-8
    keeps its readable part, since neither database takes undecodable characters."""
    return path.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# Code that runs without settings reads times in China Standard Time; the commands pass
# the station's zone.
DEFAULT_ZONE: tzinfo = CHINA_STANDARD_TIME


def time_problem(column: str, text: str, zone: tzinfo) -> tuple[datetime | None, str | None]:
    """The instant ``text`` names (config.timetext, naive in ``zone``), or the problem
    that repeats it as written: a row's times are reported with its other problems."""
    try:
        return parse_instant(text, zone), None
    except TimeTextError:
        return None, _(
            "{column} {text!r} is not a time: write e.g. 2026-12-01 08:55, 2026/12/01 "
            "8:55 or 2026年12月1日 8时55分 (station time unless an offset such as +08:00 "
            "is given)"
        ).format(column=_(column), text=shown(text))


@dataclass(frozen=True)
class ActionRow:
    where: str  # "line 12" or "cases[3].actions[1]"
    case_number: str
    case: dict[str, str]  # title, unit, status, retention, security_class
    action_id: str
    officers: tuple[str, ...]
    start: datetime | None
    end: datetime | None
    place: str
    # What was wrong with the row as read (times that are not times), reported with the
    # reasons the checks of its values find: a person fixes every one at once.
    problems: tuple[str, ...] = ()
    # A start or end was given but is not a time: "start and end are required" would
    # only repeat that problem.
    unreadable_times: bool = False


@dataclass
class ImportReport:
    source: str
    rows: int = 0
    cases_created: int = 0
    cases_updated: int = 0
    actions_created: int = 0
    actions_updated: int = 0
    unchanged: int = 0
    attached: int = 0
    errors: list[str] = field(default_factory=list)
    new_action_ids: list[int] = field(default_factory=list)
    closed_case_ids: list[int] = field(default_factory=list)  # open → closed/archived now

    @property
    def changed(self) -> bool:
        return bool(
            self.cases_created or self.cases_updated or self.actions_created or self.actions_updated
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "cases_created": self.cases_created,
            "cases_updated": self.cases_updated,
            "actions_created": self.actions_created,
            "actions_updated": self.actions_updated,
            "unchanged": self.unchanged,
            "attached": self.attached,
            "errors": self.errors,
        }


# --- reading ------------------------------------------------------------------------------


def _header_map(
    header: Sequence[str], columns: dict[str, tuple[str, ...]], source: str
) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        key = name.strip().lower()
        for canonical, aliases in columns.items():
            if key not in aliases:
                continue
            if canonical in found:
                # Which of the two is meant cannot be guessed: taking either would land
                # values the case system never meant for that column.
                first = found[canonical]
                raise ImportFileError(
                    _(
                        "{source}: the header names the column {column} twice: column "
                        "{first} {first_name!r} and column {second} {second_name!r}"
                    ).format(
                        source=source,
                        column=canonical,
                        first=first + 1,
                        first_name=header[first].strip(),
                        second=index + 1,
                        second_name=name.strip(),
                    ),
                    hint=_("keep one of them and import again"),
                )
            found[canonical] = index
    return found


def _parse_csv(text: str, source: str) -> list[tuple[int, list[str]]]:
    """Every row with the line it starts on.

    The csv module refuses a field over its size limit with an error that leaves the
    rest of a quoted field to be read as rows of its own; the whole file is in memory,
    so the limit is lifted to its size for this parse and field lengths are checked
    per row instead (``catalog.fields``), where a long field is that row's error."""
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, len(text) + 1))
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        rows = []
        end = 0
        for values in reader:
            # reader.line_num is the row's last line: a quoted field may hold line
            # breaks, and a person looks for the line the row starts on.
            first, end = end + 1, reader.line_num
            rows.append((first, values))
        return rows
    except csv.Error as exc:
        raise ImportFileError(
            _("{source}: not a CSV file the import can read ({error})").format(
                source=source, error=exc
            ),
            hint=_("export the file as CSV again"),
        ) from exc
    finally:
        csv.field_size_limit(previous)


def _csv_rows(
    data: bytes, columns: dict[str, tuple[str, ...]], required: Iterable[str], source: str
) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            _("{source}: not UTF-8 text ({error})").format(source=source, error=exc),
            hint=_("export the file as UTF-8 CSV"),
        ) from exc
    rows = _parse_csv(text, source)
    if not rows:
        raise ImportFileError(
            _("{source}: the file is empty").format(source=source), hint=_("export it again")
        )
    index = _header_map(rows[0][1], columns, source)
    missing = [c for c in required if c not in index]
    if missing:
        raise ImportFileError(
            _("{source}: no column for {columns}").format(
                source=source, columns=", ".join(missing)
            ),
            hint=_("the header must name: {columns}").format(
                columns=", ".join(f"{c} ({'/'.join(columns[c][1:])})" for c in missing)
            ),
        )
    for first, values in rows[1:]:
        if not any(v.strip() for v in values):
            continue
        yield first, {k: (values[i].strip() if i < len(values) else "") for k, i in index.items()}


def read_actions(
    path: Path, data: bytes | None = None, zone: tzinfo = DEFAULT_ZONE
) -> Iterator[ActionRow | str]:
    """The rows of a CSV or JSON export: ActionRow (its ``problems`` say what could not
    be read, e.g. a bad time text), or a problem text for a JSON entry that is not one.
    Times without an offset are in ``zone``."""
    data = path.read_bytes() if data is None else data
    if path.suffix.lower() == ".json":
        yield from _json_actions(data, path.name, zone)
        return
    for line, row in _csv_rows(data, CASE_COLUMNS, ("case_number",), path.name):
        yield _make_row(line_label(line), row, zone)


def line_label(line: int) -> str:
    """Where a CSV row is, as its problems name it: "line 12"."""
    return _("line {line}").format(line=line)


# Field labels of a row, as its problems name them.
_LABELS = {
    "case_number": N_("case number"),
    "title": N_("title"),
    "unit": N_("unit"),
    "status": N_("status"),
    "retention": N_("retention"),
    "security_class": N_("security class"),
    "action_id": N_("action id"),
    "start": N_("start"),
    "end": N_("end"),
    "place": N_("place"),
}
_JSON_KINDS = {
    bool: N_("true or false"),
    float: N_("a number"),
    list: N_("a list"),
    dict: N_("an object"),
}


def _untextual(row: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """``row`` with its values as text. A JSON export may hold a list, an object, true or
    a fraction where text belongs: a problem naming the field, never its Python repr
    landing as a case number ("['x']"). An integer is taken as its digits (an action id),
    except for officer numbers."""
    out = dict(row)
    for key, label in _LABELS.items():
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, str | int | type(None)):
            kind = _(_JSON_KINDS.get(type(value), N_("not text")))
            problems.append(_("{field} is not text ({kind})").format(field=_(label), kind=kind))
            out[key] = None
    # Officer numbers (警号) only as text: as a JSON number their leading zeros are gone,
    # and the action would name another officer.
    officers = row.get("officers")
    items = officers if isinstance(officers, list) else [officers]
    if not all(isinstance(o, str) for o in items) and officers is not None:
        kind = (
            N_("a list holding something other than text")
            if isinstance(officers, list)
            else N_("a number")
            if isinstance(officers, int) and not isinstance(officers, bool)
            else _JSON_KINDS.get(type(officers), N_("not text"))
        )
        problems.append(
            _(
                "officers is not a list of officer numbers ({kind}; write each "
                "as text, its leading zeros count)"
            ).format(kind=_(kind))
        )
        out["officers"] = None
    return out


def _make_row(where: str, row: dict[str, Any], zone: tzinfo) -> ActionRow | str:
    problems: list[str] = []
    row = _untextual(row, problems)
    times: dict[str, datetime | None] = {"start": None, "end": None}
    unreadable = False
    for key in times:
        text = str(row.get(key) or "").strip()
        if text:
            times[key], problem = time_problem(_LABELS[key], text, zone)
            if problem:
                problems.append(problem)
                unreadable = True
    officers = row.get("officers") or ""
    if isinstance(officers, str):
        officers = [o for o in OFFICER_SPLIT.split(officers) if o]
    status = str(row.get("status") or "open").strip()
    return ActionRow(
        where=where,
        case_number=normalize_number(str(row.get("case_number") or "")),
        case={
            "title": str(row.get("title") or "").strip(),
            "unit": str(row.get("unit") or "").strip(),
            "status": STATUS_ALIASES.get(status, status.lower()),
            "retention": normalize_retention(str(row.get("retention") or "永久")),
            "security_class": str(row.get("security_class") or "").strip(),
        },
        action_id=str(row.get("action_id") or "").strip(),
        officers=tuple(sorted({str(o).strip() for o in officers})),
        start=times["start"],
        end=times["end"],
        place=str(row.get("place") or "").strip(),
        problems=tuple(problems),
        unreadable_times=unreadable,
    )


def _json_actions(data: bytes, source: str, zone: tzinfo) -> Iterator[ActionRow | str]:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # (nested too deep)
        raise ImportFileError(
            _("{source}: not valid UTF-8 JSON ({error})").format(source=source, error=exc),
            hint=_("export the cases again"),
        ) from exc
    cases = doc.get("cases") if isinstance(doc, dict) else doc
    if not isinstance(cases, list):
        raise ImportFileError(
            _("{source}: no list of cases").format(source=source),
            hint=_("expected {example}").format(
                example='{"cases": [{"number": ..., "actions": [...]}]}'
            ),
        )
    for i, case in enumerate(cases):
        where = f"cases[{i}]"
        if not isinstance(case, dict):
            yield _("{where}: not an object").format(where=where)
            continue
        base = {
            "case_number": case.get("number") or case.get("case_number"),
            **{k: case.get(k) for k in ("title", "unit", "status", "retention", "security_class")},
        }
        actions = case.get("actions") or []
        if not isinstance(actions, list):
            yield _("{where}: not a list").format(where=f"{where}.actions")
            continue
        if not actions:
            yield _make_row(where, base, zone)
        for j, action in enumerate(actions):
            if not isinstance(action, dict):
                yield _("{where}: not an object").format(where=f"{where}.actions[{j}]")
                continue
            yield _make_row(
                f"{where}.actions[{j}]",
                base
                | {
                    "action_id": action.get("id") or action.get("action_id"),
                    "officers": action.get("officers") or [],
                    "start": action.get("start"),
                    "end": action.get("end"),
                    "place": action.get("place"),
                },
                zone,
            )


# --- landing --------------------------------------------------------------------------------


Progress = Callable[[int, int], None]  # (rows done, rows in all): a long import's bar


def import_actions(
    session: Session,
    signer: Signer,
    path: Path,
    *,
    actor: str,
    data: bytes | None = None,
    zone: tzinfo = DEFAULT_ZONE,
    progress: Progress | None = None,
    may_change: Callable[[str, str], bool] | None = None,
) -> ImportReport:
    """Land the good rows of a case-management export; report the bad ones, each with
    every reason it was refused. Times without an offset are in ``zone``.

    ``may_change(case number, unit of a new case)``: whether the one importing may change
    that case; rows of cases it may not are refused (another unit's cases)."""
    data = path.read_bytes() if data is None else data
    report = ImportReport(source=source_name(path))
    good: list[ActionRow] = []
    seen_actions: dict[tuple[str, str], ActionRow] = {}
    case_values: dict[str, tuple[dict[str, str], str]] = {}
    rows = list(read_actions(path, data, zone))
    reach: dict[str, bool] = {}  # case number: may the importer change it
    for done, row in enumerate(rows, 1):
        if progress is not None:
            progress(done, len(rows))
        report.rows += 1
        if isinstance(row, str):
            report.errors.append(row)
            continue
        problems = _row_problems(row, case_values, seen_actions)
        if not problems and may_change is not None:
            if row.case_number not in reach:
                reach[row.case_number] = may_change(row.case_number, row.case["unit"])
            if not reach[row.case_number]:
                problems.append(
                    _("case {number} is outside your reach (another unit's case)").format(
                        number=row.case_number
                    )
                )
        if problems:
            report.errors.append(
                _("{where}: {problems}").format(where=row.where, problems=_("; ").join(problems))
            )
            continue
        case_values.setdefault(row.case_number, (row.case, row.where))
        key = (row.case_number, row.action_id)
        if row.action_id:
            if key in seen_actions:
                report.unchanged += 1
                continue
            seen_actions[key] = row
        good.append(row)
    _land(session, good, case_values, report)
    if report.changed:
        append_event(
            session,
            signer,
            actor=actor,
            action="cases-imported",
            object_type="import",
            object_id=hashlib.sha256(data).hexdigest(),
            details=report.as_dict() | {"errors": len(report.errors)},
        )
    return report


def _row_problems(
    row: ActionRow,
    case_values: dict[str, tuple[dict[str, str], str]],
    seen_actions: dict[tuple[str, str], ActionRow],
) -> list[str]:
    """Every reason the row is refused (as read, its case, its action, and how it
    disagrees with earlier rows), so that a person fixes them all at once."""
    problems = list(row.problems)
    problems += case_problems(
        row.case_number,
        row.case["status"],
        row.case["retention"],
        title=row.case["title"],
        unit=row.case["unit"],
        security_class=row.case["security_class"],
    )
    if row.action_id or row.officers or row.start or row.end or row.unreadable_times:
        problems += action_problems(
            row.action_id,
            row.officers,
            row.start,
            row.end,
            place=row.place,
            times_required=not row.unreadable_times,
        )
    first = case_values.get(row.case_number)
    if first is not None and first[0] != row.case:
        problems.append(
            _("case {number} is described differently on {where}").format(
                number=row.case_number, where=first[1]
            )
        )
    key = (row.case_number, row.action_id)
    if row.action_id and key in seen_actions and _action_key(seen_actions[key]) != _action_key(row):
        problems.append(
            _("action {action} appears on {where} with other values").format(
                action=row.action_id, where=seen_actions[key].where
            )
        )
    return problems


def _action_key(row: ActionRow) -> tuple[Any, ...]:
    return (row.officers, row.start, row.end, row.place)


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def _land(
    session: Session,
    rows: list[ActionRow],
    case_values: dict[str, tuple[dict[str, str], str]],
    report: ImportReport,
) -> None:
    """Write the checked rows: cases, then officers, then actions with their crews."""
    now = utcnow()
    cases = _land_cases(session, case_values, report, now)
    officers = _land_officers(session, rows)
    action_rows = [r for r in rows if r.action_id]
    existing, crew = _existing_actions(
        session, sorted({cases[r.case_number].id for r in action_rows})
    )
    to_insert: list[ActionRow] = []
    changed_ids: list[int] = []
    for r in action_rows:
        old = existing.get((cases[r.case_number].id, r.action_id))
        if old is None:
            to_insert.append(r)
        elif _update_action(session, old, r, {officers[o] for o in r.officers}, crew):
            changed_ids.append(old.id)
            report.actions_updated += 1
        else:
            report.unchanged += 1
    for chunk in _chunks(to_insert):
        changed_ids += _insert_actions(session, chunk, cases, officers, now)
    report.actions_created = len(to_insert)
    report.new_action_ids = changed_ids
    session.flush()


def _cases_by_number(session: Session, numbers: Sequence[str]) -> dict[str, Case]:
    """The cases the numbers name: written exactly so, else the one case whose number has
    the same key (brackets, full-width digits: catalog.cases.number_key)."""
    found: dict[str, Case] = {}
    for chunk in _chunks(numbers):
        found.update(
            (c.number, c) for c in session.scalars(select(Case).where(Case.number.in_(chunk)))
        )
    missing = [n for n in numbers if n not in found]
    if missing:
        by_key: dict[str, list[int]] = {}
        for case_id, number in session.execute(select(Case.id, Case.number)):
            by_key.setdefault(number_key(number), []).append(case_id)
        for n in missing:
            ids = by_key.get(number_key(n), [])
            if len(ids) == 1:
                case = session.get(Case, ids[0])
                assert case is not None
                found[n] = case
    return found


def _land_cases(
    session: Session,
    case_values: dict[str, tuple[dict[str, str], str]],
    report: ImportReport,
    now: datetime,
) -> dict[str, Case]:
    """Create the new cases and update changed ones; returns every named case by number."""
    cases = _cases_by_number(session, list(case_values))
    new_cases = [
        {
            "number": n,
            **v,
            "source": report.source,
            "closed_at": now if v["status"] != "open" else None,
            "created_at": now,
            "updated_at": now,
        }
        for n, (v, _where) in case_values.items()
        if n not in cases
    ]
    for chunk in _chunks(new_cases):
        session.execute(insert(Case), list(chunk))
    report.cases_created = len(new_cases)
    for n, (v, _where) in case_values.items():
        case = cases.get(n)
        if case is None:
            continue
        current = {
            "title": case.title,
            "unit": case.unit,
            "status": case.status,
            "retention": case.retention,
            "security_class": case.security_class,
        }
        if current != v:
            if v["status"] != "open" and case.status == "open":
                case.closed_at = now
                report.closed_case_ids.append(case.id)
            for k, value in v.items():
                setattr(case, k, value)
            report.cases_updated += 1
    cases.update(_cases_by_number(session, [str(c["number"]) for c in new_cases]))
    return cases


def _officer_ids(session: Session, numbers: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(numbers):
        found.update(
            (n, i)
            for n, i in session.execute(
                select(Officer.number, Officer.id).where(Officer.number.in_(chunk))
            )
        )
    return found


def _land_officers(session: Session, rows: list[ActionRow]) -> dict[str, int]:
    """Officers by 警号, created where new (names come from the device registry)."""
    numbers_needed = sorted({o for r in rows for o in r.officers})
    officers = _officer_ids(session, numbers_needed)
    missing = [{"number": n, "name": "", "unit": ""} for n in numbers_needed if n not in officers]
    for chunk in _chunks(missing):
        session.execute(insert(Officer), list(chunk))
    officers.update(_officer_ids(session, [m["number"] for m in missing]))
    return officers


def _existing_actions(
    session: Session, case_ids: list[int]
) -> tuple[dict[tuple[int, str], EnforcementAction], dict[int, set[int]]]:
    """The actions these cases already have, by (case id, external id), and their crews."""
    existing: dict[tuple[int, str], EnforcementAction] = {}
    for chunk in _chunks(case_ids):
        existing.update(
            ((a.case_id, a.external_id), a)
            for a in session.scalars(
                select(EnforcementAction).where(EnforcementAction.case_id.in_(chunk))
            )
        )
    crew: dict[int, set[int]] = {}
    for chunk in _chunks([a.id for a in existing.values()]):
        for action_id, officer_id in session.execute(
            select(ActionOfficer.action_id, ActionOfficer.officer_id).where(
                ActionOfficer.action_id.in_(chunk)
            )
        ):
            crew.setdefault(action_id, set()).add(officer_id)
    return existing, crew


def _update_action(
    session: Session,
    old: EnforcementAction,
    r: ActionRow,
    ids: set[int],
    crew: dict[int, set[int]],
) -> bool:
    """Bring an existing action to the row's window, place and crew; False if unchanged."""
    had = crew.get(old.id, set())
    if (old.start, old.end, old.place, had) == (r.start, r.end, r.place, ids):
        return False
    old.start, old.end, old.place = r.start, r.end, r.place  # type: ignore[assignment]
    for gone in had - ids:
        session.execute(
            delete(ActionOfficer).where(
                ActionOfficer.action_id == old.id, ActionOfficer.officer_id == gone
            )
        )
    added = ids - had
    if added:
        session.execute(
            insert(ActionOfficer), [{"action_id": old.id, "officer_id": o} for o in added]
        )
    return True


def _insert_actions(
    session: Session,
    chunk: Sequence[ActionRow],
    cases: dict[str, Case],
    officers: dict[str, int],
    now: datetime,
) -> list[int]:
    """Insert new actions and their crews; returns the new actions' ids."""
    values = [
        {
            "case_id": cases[r.case_number].id,
            "external_id": r.action_id,
            "start": r.start,
            "end": r.end,
            "place": r.place,
            "created_at": now,
        }
        for r in chunk
    ]
    session.execute(insert(EnforcementAction), values)
    keys = {(cases[r.case_number].id, r.action_id): r for r in chunk}
    got = session.execute(
        select(
            EnforcementAction.id, EnforcementAction.case_id, EnforcementAction.external_id
        ).where(
            EnforcementAction.case_id.in_({k[0] for k in keys}),
            EnforcementAction.external_id.in_({k[1] for k in keys}),
        )
    ).all()
    new_ids: list[int] = []
    links = []
    for action_id, case_id, external_id in got:
        row = keys.get((case_id, external_id))
        if row is None:
            continue
        new_ids.append(action_id)
        links += [{"action_id": action_id, "officer_id": officers[o]} for o in row.officers]
    session.execute(insert(ActionOfficer), links)
    return new_ids


# --- device assignments -------------------------------------------------------------------


@dataclass
class DeviceImportReport:
    source: str
    rows: int = 0
    devices: int = 0
    assignments: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)
    new_assignments: list[DeviceAssignment] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "devices": self.devices,
            "assignments": self.assignments,
            "unchanged": self.unchanged,
            "errors": self.errors,
        }


def import_devices(
    session: Session,
    signer: Signer,
    path: Path,
    *,
    actor: str,
    zone: tzinfo = DEFAULT_ZONE,
    progress: Progress | None = None,
) -> DeviceImportReport:
    """Devices and assignments from CSV (serial, model, unit, officer_number,
    officer_name, officer_unit, start, end). Rows without an officer only register the
    device. Each row is its own savepoint: a bad row is reported and the rest land.
    Times without an offset are in ``zone``."""
    report = DeviceImportReport(source=source_name(path))
    rows = sorted(
        _csv_rows(path.read_bytes(), DEVICE_COLUMNS, ("serial",), report.source),
        key=lambda r: (r[1].get("start") or "", r[0]),
    )
    refused: list[tuple[int, str]] = []
    for done, (line, row) in enumerate(rows, 1):
        if progress is not None:
            progress(done, len(rows))
        report.rows += 1
        times, problems = _device_row_problems(row, zone)
        if not problems:
            problems = _land_device_row(session, signer, report, line, row, times, actor)
        if problems:
            refused.append(
                (line, _("{where}: {problems}").format(where=line_label(line), problems=problems))
            )
    # Rows are landed in time order (hand-overs in sequence); a person reads the errors
    # in file order.
    report.errors = [text for _line, text in sorted(refused)]
    return report


def _device_row_problems(
    row: dict[str, str], zone: tzinfo
) -> tuple[dict[str, datetime | None], str]:
    """The row's times, and every reason it is refused before the registry is asked
    (empty when none), joined for the report."""
    problems = device_problems(row["serial"], row.get("model", ""), row.get("unit", ""))
    if row.get("officer_number") or row.get("officer_name") or row.get("officer_unit"):
        problems += officer_problems(
            row.get("officer_number", ""),
            row.get("officer_name", ""),
            row.get("officer_unit", ""),
        )
    times: dict[str, datetime | None] = {}
    for key in ("start", "end"):
        text = row.get(key, "")
        times[key], problem = time_problem(_LABELS[key], text, zone) if text else (None, None)
        if problem:
            problems.append(problem)
    if row.get("officer_number") and times.get("start") is None and not row.get("start"):
        problems.append(_("an assignment needs a start time"))
    return times, _("; ").join(problems)


def _land_device_row(
    session: Session,
    signer: Signer,
    report: DeviceImportReport,
    line: int,
    row: dict[str, str],
    times: dict[str, datetime | None],
    actor: str,
) -> str:
    """Register the row's device and assignment in a savepoint; the registry's refusal
    (an assignment contradicting the history), or "" when it landed."""
    try:
        with session.begin_nested():
            _, changed = add_device(
                session,
                signer,
                serial=row["serial"],
                model=row.get("model", ""),
                unit=row.get("unit", ""),
                actor=actor,
            )
            report.devices += changed
            if row.get("officer_number"):
                start = times["start"]
                assert start is not None
                assignment, new = assign_device(
                    session,
                    signer,
                    serial=row["serial"],
                    officer_number=row["officer_number"],
                    officer_name=row.get("officer_name", ""),
                    officer_unit=row.get("officer_unit", ""),
                    start=start,
                    end=times["end"],
                    actor=actor,
                    # Stored in the catalog: the same words whatever the reader's language.
                    note=f"import {report.source} line {line}",
                )
                if new:
                    report.assignments += 1
                    report.new_assignments.append(assignment)
                else:
                    report.unchanged += 1
    except (DeviceError, DeviceNotFound) as exc:
        return exc.message
    return ""
