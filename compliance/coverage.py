"""Coverage of enforcement actions: is each action recorded from start to finish?

For each action its window ``[start, end]`` is laid against the recordings of its
officers' devices (by the assignment at capture time, compliance.history). Per officer:
the covered share, each gap longer than ``gap_threshold_s``, how late the recording
started and how early it stopped. The action's status follows the rule (``each``: every
officer must record it whole; ``any``: together, at every moment one officer records):

- ``complete`` (完整): share ≥ ``complete_share`` and no gap over ``complete_max_gap_s``;
- ``partial`` (部分记录): something recorded, short of that;
- ``none`` (未记录): no recording of any officer touches the window;
- ``uncertain`` (存疑): a recording whose capture time is in doubt lies within
  ``doubt_margin_s`` of the window: it is never counted, and the reason is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, TypeAlias

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from catalog.errors import CatalogError
from catalog.models import ActionOfficer, Case, EnforcementAction, Officer
from compliance.history import History, load_history
from compliance.timeline import Gap, Layout, lay
from config.errors import EXIT_NOINPUT
from config.i18n import N_, _

COMPLETE: Final = "complete"
PARTIAL: Final = "partial"
NONE: Final = "none"
UNCERTAIN: Final = "uncertain"
STATUSES: Final = (COMPLETE, PARTIAL, NONE, UNCERTAIN)
STATUS_ZH: Final = {COMPLETE: "完整", PARTIAL: "部分记录", NONE: "未记录", UNCERTAIN: "存疑"}
# The statuses as shown to a person, in their language (the Chinese is STATUS_ZH's).
STATUS_TEXT: Final = {
    COMPLETE: N_("complete"),
    PARTIAL: N_("partly recorded"),
    NONE: N_("not recorded"),
    UNCERTAIN: N_("uncertain"),
}
RULES: Final = ("each", "any")


# Rows of (id, external_id, case number, unit, start, end, place): ActionRow's fields.
# Told (actions judged, actions in all) as a long coverage run goes.
Progress: TypeAlias = Callable[[int, int], None]
ActionSelect: TypeAlias = "Select[int, str, str, str, datetime, datetime, str]"


class ActionNotFound(CatalogError):
    exit_code = EXIT_NOINPUT


@dataclass(frozen=True)
class Rules:
    gap_threshold_s: float = 30.0
    rule: str = "each"
    complete_share: float = 0.95
    complete_max_gap_s: float = 60.0
    doubt_margin_s: float = 300.0

    @classmethod
    def of(cls, settings: Any) -> Rules:
        """From the ``[compliance]`` settings section (config.settings.ComplianceSettings)."""
        return cls(
            gap_threshold_s=settings.gap_threshold_s,
            rule=settings.rule,
            complete_share=settings.complete_share,
            complete_max_gap_s=settings.complete_max_gap_s,
            doubt_margin_s=settings.doubt_margin_s,
        )

    def complete(self, layout: Layout) -> bool:
        return (
            layout.share >= self.complete_share and layout.longest_gap_s <= self.complete_max_gap_s
        )

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ActionRow:
    id: int
    external_id: str
    case_number: str
    unit: str
    start: datetime
    end: datetime
    place: str


@dataclass(frozen=True)
class OfficerRow:
    id: int
    number: str
    name: str
    unit: str


@dataclass
class OfficerCoverage:
    officer: OfficerRow
    layout: Layout
    recordings: list[int]
    complete: bool
    doubts: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self, rules: Rules) -> dict[str, Any]:
        return {
            "officer": self.officer.number,
            "name": self.officer.name,
            "unit": self.officer.unit,
            "recordings": self.recordings,
            "covered_s": self.layout.covered_s,
            "share": self.layout.share,
            "gaps": [g.as_dict() for g in self.layout.gaps(rules.gap_threshold_s)],
            "longest_gap_s": self.layout.longest_gap_s,
            "started_late_s": self.layout.started_late_s,
            "stopped_early_s": self.layout.stopped_early_s,
            "complete": self.complete,
            "uncertain": [{"recording": r, "reason": why} for r, why in self.doubts],
        }


@dataclass
class ActionCoverage:
    action: ActionRow
    rules: Rules
    officers: list[OfficerCoverage]
    # Every officer's recordings, for laying them together when asked (rule "any", JSON).
    used: list[tuple[datetime, datetime]] = field(default_factory=list)
    _together: Layout | None = None

    @property
    def together(self) -> Layout:
        """All officers' recordings as one (laid once, on first use: a district summary
        under the rule "each" never needs it)."""
        if self._together is None:
            self._together = lay(self.action.start, self.action.end, self.used)
        return self._together

    @property
    def reasons(self) -> list[str]:
        return [
            _("recording {id} of officer {number}: capture time in doubt: {why}").format(
                id=rid, number=o.officer.number, why=why
            )
            for o in self.officers
            for rid, why in o.doubts
        ]

    @property
    def share(self) -> float:
        """The rule's share: together (any), or the least-recorded officer's (each)."""
        if self.rules.rule == "any" or not self.officers:
            return self.together.share
        return min(o.layout.share for o in self.officers)

    @property
    def longest_gap_s(self) -> float:
        if self.rules.rule == "any" or not self.officers:
            return self.together.longest_gap_s
        return max(o.layout.longest_gap_s for o in self.officers)

    @property
    def gaps(self) -> list[Gap]:
        if self.rules.rule == "any":
            return self.together.gaps(self.rules.gap_threshold_s)
        return [g for o in self.officers for g in o.layout.gaps(self.rules.gap_threshold_s)]

    @property
    def status(self) -> str:
        if self.reasons:
            return UNCERTAIN
        if not any(o.recordings for o in self.officers):
            return NONE
        if self.rules.rule == "any":
            return COMPLETE if self.rules.complete(self.together) else PARTIAL
        ok = bool(self.officers) and all(o.complete for o in self.officers)
        return COMPLETE if ok else PARTIAL

    def as_dict(self) -> dict[str, Any]:
        a = self.action
        return {
            "action": a.id,
            "external_id": a.external_id,
            "case": a.case_number,
            "unit": a.unit,
            "place": a.place,
            "start": a.start.isoformat(),
            "end": a.end.isoformat(),
            "window_s": self.together.window_s,
            "status": self.status,
            "share": self.share,
            "longest_gap_s": self.longest_gap_s,
            "gaps": [g.as_dict() for g in self.gaps],
            "uncertain_reasons": self.reasons,
            "together": {
                "share": self.together.share,
                "covered_s": self.together.covered_s,
                "longest_gap_s": self.together.longest_gap_s,
                "gaps": [g.as_dict() for g in self.together.gaps(self.rules.gap_threshold_s)],
            },
            "officers": [o.as_dict(self.rules) for o in self.officers],
            "rules": self.rules.as_dict(),
        }


def cover(
    action: ActionRow, officers: Sequence[OfficerRow], history: History, rules: Rules
) -> ActionCoverage:
    """One action's coverage from the officers' recordings (already loaded)."""
    margin = timedelta(seconds=rules.doubt_margin_s)
    near_lo, near_hi = action.start - margin, action.end + margin
    per: list[OfficerCoverage] = []
    everyone: list[tuple[datetime, datetime]] = []
    for o in officers:
        used: list[tuple[datetime, datetime]] = []
        ids: list[int] = []
        doubts: list[tuple[int, str]] = []
        for r in history.around(o.id, action.start, action.end, margin):
            if r.doubt is not None:
                if r.start <= near_hi and (r.end or r.start) >= near_lo:
                    doubts.append((r.id, r.doubt))
            elif r.end is not None and _overlaps(r.start, r.end, action):
                used.append((r.start, r.end))
                ids.append(r.id)
        layout = lay(action.start, action.end, used, o.number)
        per.append(OfficerCoverage(o, layout, ids, rules.complete(layout), doubts))
        everyone += used
    return ActionCoverage(action, rules, per, everyone)


def _overlaps(start: datetime, end: datetime, action: ActionRow) -> bool:
    """Shares time with the window (an instant window: contains it)."""
    if action.start == action.end:
        return start <= action.start <= end
    return start < action.end and end > action.start


def _action_query() -> ActionSelect:
    return select(
        EnforcementAction.id,
        EnforcementAction.external_id,
        Case.number,
        Case.unit,
        EnforcementAction.start,
        EnforcementAction.end,
        EnforcementAction.place,
    ).join(Case, Case.id == EnforcementAction.case_id)


def coverage_of(
    session: Session, query: ActionSelect, rules: Rules, progress: Progress | None = None
) -> list[ActionCoverage]:
    """Coverage of every action the query (built on :func:`action_select`) selects;
    ``progress(done, total)`` is told as actions are judged (a year is thousands)."""
    # Core, not the ORM session: these are plain rows, and the ORM's per-statement work
    # cost more than the query itself for one action.
    actions = [ActionRow(*row) for row in session.connection().execute(query)]
    if not actions:
        return []
    officers = _officers_of(session, [a.id for a in actions])
    ids = {o.id for group in officers.values() for o in group}
    margin = timedelta(seconds=rules.doubt_margin_s)
    history = load_history(
        session,
        ids,
        min(a.start for a in actions) - margin,
        max(a.end for a in actions) + margin,
    )
    found = []
    for done, a in enumerate(actions, 1):
        found.append(cover(a, officers.get(a.id, []), history, rules))
        if progress is not None and (done % 100 == 0 or done == len(actions)):
            progress(done, len(actions))
    return found


def action_select() -> ActionSelect:
    """Actions with their case, in window order: filter it, then pass it to coverage_of."""
    return _action_query().order_by(EnforcementAction.start, EnforcementAction.id)


def _officers_of(session: Session, action_ids: list[int]) -> dict[int, list[OfficerRow]]:
    out: dict[int, list[OfficerRow]] = {}
    q = (
        select(ActionOfficer.action_id, Officer.id, Officer.number, Officer.name, Officer.unit)
        .join(Officer, Officer.id == ActionOfficer.officer_id)
        .order_by(ActionOfficer.action_id, Officer.number)
    )
    # Chunked: an IN list per 5,000 actions stays well inside both databases' limits.
    for i in range(0, len(action_ids), 5000):
        chunk = action_ids[i : i + 5000]
        for action_id, oid, number, name, unit in session.connection().execute(
            q.where(ActionOfficer.action_id.in_(chunk))
        ):
            out.setdefault(action_id, []).append(OfficerRow(oid, number, name, unit))
    return out


def action_coverage(session: Session, ref: str, rules: Rules) -> ActionCoverage:
    """One action, named by its row id or by its external id (when that is unambiguous)."""
    q = action_select()
    if ref.isdigit() and len(ref) < 10:
        found = coverage_of(session, q.where(EnforcementAction.id == int(ref)), rules)
        if found:
            return found[0]
    matches = list(
        session.scalars(select(EnforcementAction.id).where(EnforcementAction.external_id == ref))
    )
    if len(matches) > 1:
        raise CatalogError(
            _("{n} actions have the id {ref!r} (in different cases)").format(
                n=len(matches), ref=ref
            ),
            hint=_("name it by its row id (liuhen coverage --case N lists them)"),
        )
    if not matches:
        raise ActionNotFound(
            _("no enforcement action {ref!r}").format(ref=ref),
            hint=_("give the action's row id or its id in the case-management system"),
        )
    return coverage_of(session, q.where(EnforcementAction.id == matches[0]), rules)[0]


def case_coverage(session: Session, number: str, rules: Rules) -> list[ActionCoverage]:
    from catalog.cases import get_case

    case = get_case(session, number)
    return coverage_of(session, action_select().where(EnforcementAction.case_id == case.id), rules)
