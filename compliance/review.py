"""Sampling review (案卷评查): a reproducible random sample of a unit's enforcement actions,
a reviewer's verdict on each, and the rectification of what was found.

The draw is reproducible by anyone, without this software: the population is the unit's
actions starting in the period, each named by ``[case number, action id]``, sorted; its
hash is the SHA-256 of its canonical JSON (sorted keys, no spaces, UTF-8). Each member is
ranked by ``SHA-256(seed + "\\n" + canonical JSON of the member)`` (hex), and the ``count``
lowest ranks are the sample. The same seed and population give the same sample on any
database. The seed, the population and the sample are recorded in a signed custody event
(``review-sampled``); each verdict (``review-verdict``) and rectification
(``review-rectified``) is a signed event naming the reviewer.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.canonical import canonical_json
from catalog.custody import append_event
from catalog.errors import CatalogError
from catalog.models import Case, EnforcementAction
from catalog.signing import Signer
from compliance.models import ReviewSample, ReviewVerdict
from compliance.periods import CST, canonical_period, period
from config.errors import EXIT_FAILED_CHECK, EXIT_NOINPUT
from config.i18n import _
from config.timetext import show_time

VERDICTS: Final = ("完整", "不完整", "不规范")
CHECKLIST: Final = ("全程记录", "告知当事人正在录音录像", "画面清晰", "声音清晰", "按时上传")
_YES: Final = {"yes", "y", "true", "1", "ok", "是", "合格", "通过"}
_NO: Final = {"no", "n", "false", "0", "fail", "否", "不合格", "不通过"}

Key = list[str]  # [case number, action id in the case-management system]


class ReviewError(CatalogError):
    """A review request that cannot be taken as given."""


class PopulationChanged(CatalogError):
    """The same seed would draw from a different population than it did before."""

    exit_code = EXIT_FAILED_CHECK


class ReviewNotFound(CatalogError):
    exit_code = EXIT_NOINPUT


def population_of(session: Session, unit: str, period_text: str) -> list[tuple[Key, int]]:
    """The unit's actions starting in the period, as (key, row id), sorted by key."""
    start, end = period(period_text)
    rows = session.execute(
        select(Case.number, EnforcementAction.external_id, EnforcementAction.id)
        .join(Case, Case.id == EnforcementAction.case_id)
        .where(Case.unit == unit, EnforcementAction.start >= start, EnforcementAction.start < end)
    )
    return sorted(([number, ext], aid) for number, ext, aid in rows)


def population_hash(keys: list[Key]) -> str:
    return hashlib.sha256(canonical_json(keys).encode("utf-8")).hexdigest()


def draw(seed: str, keys: list[Key], count: int) -> list[Key]:
    """The ``count`` members with the lowest SHA-256(seed, member) ranks, in rank order."""
    ranked = sorted(
        keys,
        key=lambda k: (
            hashlib.sha256(f"{seed}\n{canonical_json(k)}".encode()).hexdigest(),
            canonical_json(k),
        ),
    )
    return ranked[:count]


@dataclass(frozen=True)
class Changes:
    added: list[Key]
    removed: list[Key]

    def describe(self) -> str:
        def names(keys: list[Key]) -> str:
            shown = ", ".join(f"{c} {a}" for c, a in keys[:10])
            more = len(keys) - 10
            return shown + (_(" and {n} more").format(n=more) if more > 0 else "")

        parts = []
        if self.added:
            parts.append(
                _("{n} added ({names})").format(n=len(self.added), names=names(self.added))
            )
        if self.removed:
            parts.append(
                _("{n} removed ({names})").format(n=len(self.removed), names=names(self.removed))
            )
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed}


def changes(before: list[Key], now: list[Key]) -> Changes:
    old = {canonical_json(k): k for k in before}
    new = {canonical_json(k): k for k in now}
    return Changes(
        added=[new[k] for k in sorted(new.keys() - old.keys())],
        removed=[old[k] for k in sorted(old.keys() - new.keys())],
    )


def take_sample(
    session: Session,
    signer: Signer,
    *,
    unit: str,
    period_text: str,
    count: int,
    seed: str | None,
    actor: str,
    redraw: bool = False,
) -> tuple[ReviewSample, bool]:
    """Draw (and record) a sample; (sample, whether it is new).

    The same unit, period and seed on an unchanged population is the sample drawn before
    (nothing new is recorded). On a changed population the draw is refused, naming what
    changed, unless ``redraw``: then a new sample is recorded that names the earlier one.
    """
    # 2026/11/03 and 2026年11月3日 are the sample of 2026-11-03: one stored spelling.
    period_text = canonical_period(period_text)  # refuses a period that is not one
    members = population_of(session, unit, period_text)
    keys = [k for k, _ in members]
    digest = population_hash(keys)
    seed = seed if seed is not None else secrets.token_hex(8)
    earlier = session.scalars(
        select(ReviewSample)
        .where(
            ReviewSample.unit == unit,
            ReviewSample.period == period_text,
            ReviewSample.seed == seed,
        )
        .order_by(ReviewSample.id.desc())
    ).first()
    if earlier is not None and earlier.population_hash == digest and earlier.count == count:
        return earlier, False
    diff = changes(earlier.population, keys) if earlier is not None else None
    if earlier is not None and earlier.population_hash != digest and not redraw:
        assert diff is not None
        raise PopulationChanged(
            _(
                "the population of {unit} {period} changed since sample {sample} was "
                "drawn with seed {seed!r}: {changes}"
            ).format(
                unit=unit,
                period=period_text,
                sample=earlier.id,
                seed=seed,
                changes=diff.describe(),
            ),
            hint=_(
                "the earlier sample stands as drawn; to draw on today's population give "
                "--redraw (recorded with the changes) or a new --seed"
            ),
        )
    sample = ReviewSample(
        unit=unit,
        period=period_text,
        seed=seed,
        count=count,
        population_hash=digest,
        population=keys,
        sample=draw(seed, keys, count),
        actor=actor,
        supersedes=earlier.id if earlier is not None else None,
    )
    session.add(sample)
    session.flush()
    append_event(
        session,
        signer,
        actor=actor,
        action="review-sampled",
        object_type="review-sample",
        object_id=str(sample.id),
        details={
            "unit": unit,
            "period": period_text,
            "seed": seed,
            "count": count,
            "population_hash": digest,
            "population": keys,
            "sample": sample.sample,
            "rule": "sha256(seed + LF + canonical_json([case, action])), lowest first",
            "supersedes": sample.supersedes,
            "changes": diff.as_dict() if diff is not None else None,
        },
    )
    return sample, True


def get_sample(session: Session, sample_id: int) -> ReviewSample:
    sample = session.get(ReviewSample, sample_id)
    if sample is None:
        raise ReviewNotFound(
            _("no review sample {id}").format(id=sample_id),
            hint=_("draw one with 'liuhen review sample'"),
        )
    return sample


def recheck(session: Session, sample: ReviewSample) -> dict[str, Any]:
    """Redraw a recorded sample from its seed: does it still hold, and on what population?"""
    keys = [k for k, _ in population_of(session, sample.unit, sample.period)]
    same_draw = draw(sample.seed, sample.population, sample.count) == sample.sample
    diff = changes(sample.population, keys)
    return {
        "redraw_matches": same_draw,
        "population_hash_matches": population_hash(sample.population) == sample.population_hash,
        "population_changed": bool(diff.added or diff.removed),
        "changes": diff.as_dict(),
        "changes_text": diff.describe(),
    }


def parse_checklist(items: list[str]) -> dict[str, bool]:
    """``全程记录=是`` … as {item: passed}; every item named must be one of CHECKLIST."""
    out: dict[str, bool] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip().lower()
        if name not in CHECKLIST:
            raise ReviewError(
                _("unknown checklist item {name!r}").format(name=name),
                hint=_("items: {items}").format(items=", ".join(CHECKLIST)),
            )
        if not sep or value not in _YES | _NO:
            raise ReviewError(
                _("checklist item {item!r} needs =是 or =否 (yes/no)").format(item=item),
                hint=_("e.g. --check {name}=是").format(name=name),
            )
        out[name] = value in _YES
    return out


def _sampled_action(session: Session, sample: ReviewSample, ref: str) -> EnforcementAction:
    keys = {canonical_json(k) for k in sample.sample}
    q = (
        select(EnforcementAction, Case.number)
        .join(Case, Case.id == EnforcementAction.case_id)
        .where(Case.unit == sample.unit)
    )
    if ref.isdigit() and len(ref) < 10:
        q = q.where((EnforcementAction.id == int(ref)) | (EnforcementAction.external_id == ref))
    else:
        q = q.where(EnforcementAction.external_id == ref)
    for action, number in session.execute(q):
        if canonical_json([number, action.external_id]) in keys:
            return action
    raise ReviewError(
        _("action {ref!r} is not in review sample {sample}").format(ref=ref, sample=sample.id),
        hint=_("'liuhen review show {sample}' lists the sampled actions").format(sample=sample.id),
    )


def record_verdict(
    session: Session,
    signer: Signer,
    *,
    sample_id: int,
    action_ref: str,
    verdict: str,
    checklist: dict[str, bool],
    notes: str,
    reviewer: str,
) -> ReviewVerdict:
    if verdict not in VERDICTS:
        raise ReviewError(
            _("verdict {verdict!r} is not one of {verdicts}").format(
                verdict=verdict, verdicts=", ".join(VERDICTS)
            )
        )
    sample = get_sample(session, sample_id)
    action = _sampled_action(session, sample, action_ref)
    row = ReviewVerdict(
        sample_id=sample.id,
        action_id=action.id,
        verdict=verdict,
        checklist=checklist,
        notes=notes,
        reviewer=reviewer,
    )
    session.add(row)
    session.flush()
    append_event(
        session,
        signer,
        actor=reviewer,
        action="review-verdict",
        object_type="review-verdict",
        object_id=str(row.id),
        details={
            "sample": sample.id,
            "action": action.id,
            "external_id": action.external_id,
            "verdict": verdict,
            "checklist": checklist,
            "notes": notes,
        },
    )
    return row


def rectify(
    session: Session,
    signer: Signer,
    *,
    verdict_id: int,
    what: str,
    actor: str,
    zone: tzinfo = CST,
) -> ReviewVerdict:
    """Mark a finding (a verdict other than 完整) rectified, with what was done."""
    row = session.get(ReviewVerdict, verdict_id)
    if row is None:
        raise ReviewNotFound(_("no review verdict {id}").format(id=verdict_id))
    if row.verdict == "完整":
        raise ReviewError(
            _("verdict {id} is 完整: there is nothing to rectify").format(id=verdict_id)
        )
    if row.rectified_at is not None:
        raise ReviewError(
            _("verdict {id} was already marked rectified by {who} at {when}: {what}").format(
                id=verdict_id,
                who=row.rectified_by,
                when=show_time(row.rectified_at, zone),
                what=row.rectification,
            )
        )
    if not what.strip():
        raise ReviewError(_("say what was done to rectify it (--what)"))
    row.rectified_at, row.rectified_by, row.rectification = datetime.now(UTC), actor, what
    append_event(
        session,
        signer,
        actor=actor,
        action="review-rectified",
        object_type="review-verdict",
        object_id=str(row.id),
        details={"sample": row.sample_id, "action": row.action_id, "what": what},
    )
    return row


def sample_report(session: Session, sample: ReviewSample) -> dict[str, Any]:
    """A sample, its actions with their latest verdict, and the redraw check."""
    latest: dict[int, ReviewVerdict] = {}
    for v in session.scalars(
        select(ReviewVerdict).where(ReviewVerdict.sample_id == sample.id).order_by(ReviewVerdict.id)
    ):
        latest[v.action_id] = v
    members = dict(
        (canonical_json(k), aid) for k, aid in population_of(session, sample.unit, sample.period)
    )
    actions = []
    for key in sample.sample:
        aid = members.get(canonical_json(key))
        found = latest.get(aid) if aid is not None else None
        actions.append({"case": key[0], "external_id": key[1], "action": aid} | verdict_dict(found))
    return {
        "sample": sample.id,
        "unit": sample.unit,
        "period": sample.period,
        "seed": sample.seed,
        "count": sample.count,
        "population": len(sample.population),
        "population_hash": sample.population_hash,
        "drawn_by": sample.actor,
        "drawn_at": sample.created_at.isoformat(),
        "supersedes": sample.supersedes,
        "actions": actions,
        "check": recheck(session, sample),
    }


def verdict_dict(v: ReviewVerdict | None) -> dict[str, Any]:
    if v is None:
        return {"verdict": None}
    return {
        "verdict_id": v.id,
        "verdict": v.verdict,
        "checklist": v.checklist,
        "notes": v.notes,
        "reviewer": v.reviewer,
        "reviewed_at": v.created_at.isoformat(),
        "rectified_at": v.rectified_at.isoformat() if v.rectified_at else None,
        "rectified_by": v.rectified_by,
        "rectification": v.rectification,
    }
