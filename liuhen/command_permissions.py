"""Which CLI command needs which permission: the one table, checked in one place.

Every command that reads or changes evidence (or administers people, devices or
stations) is listed in :data:`COMMANDS`. :func:`check_invocation` runs when any command
is invoked (liuhen/localized.py) and, for a listed command, finds who acts (the
logged-in account, an API token in ``LIUHEN_TOKEN``, or the local OS user while the
catalog has no accounts) and asks :func:`access.policy.authorize`: for the command as
a whole, and for each case, recording or unit its arguments name. Commands themselves
hold no permission logic.

Not listed, on purpose: the host's own operations, governed by the operating system's
permissions on the data directory and the signing key (``init``, ``db upgrade``,
``config show``, ``store check``, ``doctor``, ``ingest``, ``demo``, ``station watch``,
``worker``, ``custody anchor``), ``verify BUNDLE`` and ``four-properties BUNDLE`` (a bag
on disk, read without the catalog: a court's clerk checks a bag anywhere), and the
commands of one's own session (``login``, ``logout``, ``whoami``).

This module stays light (no SQLAlchemy) so that commands not listed here load nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from access.roles import Permission

if TYPE_CHECKING:
    from access.policy import Principal, Target

P = Permission
Params = Mapping[str, Any]


@dataclass(frozen=True)
class Rule:
    """What a command needs: one of ``permissions`` (any), checked on the command as a
    whole and on every case, recording and unit its arguments name."""

    permissions: tuple[Permission, ...]
    cases: tuple[str, ...] = ()  # parameters holding case numbers
    recordings: tuple[str, ...] = ()  # parameters holding recording references
    unit: str | None = None  # a parameter naming a unit; empty means the whole district
    # The permission counts only when this says so (``verify`` with the catalog).
    when: Callable[[Params], bool] | None = None
    # Self-service: with this parameter empty or naming the principal's own login, the
    # command needs no permission (``user passwd`` of one's own password).
    own: str | None = None
    # When this says so, the command takes every unit's evidence (``export --from/--to``
    # without --case): only a role reaching all units may run it.
    whole_district: Callable[[Params], bool] | None = None
    # A permission needed besides (``user add --role``: granting roles is the security
    # administrator's, the system administrator adds users without roles).
    extra: Callable[[Params], Permission | None] | None = None
    # Parameters naming an enforcement action (row id or external id), a review sample
    # or a review verdict: each is checked as the unit or case it belongs to.
    actions: tuple[str, ...] = ()
    samples: tuple[str, ...] = ()
    verdicts: tuple[str, ...] = ()


def rule(*permissions: Permission, **kw: Any) -> Rule:
    return Rule(tuple(permissions), **kw)


def _uses_catalog(params: Params) -> bool:
    return bool(params.get("store") or params.get("district") or params.get("as_file"))


COMMANDS: Mapping[str, Rule] = {
    # recordings
    "show": rule(P.RECORDING_VIEW, recordings=("recording",)),
    "retention explain": rule(P.RECORDING_VIEW, recordings=("recording",)),
    "retention review": rule(P.RECORDING_MARK, recordings=("recording",)),
    "retention hold": rule(P.HOLD_CHANGE, recordings=("recording",)),
    "retention release": rule(P.HOLD_CHANGE, recordings=("recording",)),
    "retention sweep": rule(P.RETENTION_CHANGE),
    # cases
    "case list": rule(P.CASE_VIEW),
    "case show": rule(P.CASE_VIEW, cases=("number",)),
    # A case of a unit (--unit): only that unit's roles, or one reaching all units.
    "case create": rule(P.CASE_CHANGE, unit="unit"),
    "case action": rule(P.CASE_CHANGE, cases=("number",)),
    "case import": rule(P.CASE_CHANGE),
    "case close": rule(P.CASE_CHANGE, cases=("number",)),
    "case reopen": rule(P.CASE_CHANGE, cases=("number",)),
    "case update": rule(P.CASE_CHANGE, cases=("number",)),
    "case attach": rule(P.CASE_ATTACH, cases=("number",), recordings=("recording",)),
    "case detach": rule(P.CASE_ATTACH, cases=("number",), recordings=("recording",)),
    # exports and checks
    "export": rule(P.EXPORT, cases=("cases",), whole_district=lambda p: not p.get("cases")),
    "export list": rule(P.EXPORT),
    "export show": rule(P.EXPORT),
    "four-properties": rule(P.VERIFY, when=lambda p: bool(p.get("with_catalog"))),
    "verify": rule(P.VERIFY, when=_uses_catalog),
    "custody verify": rule(P.CUSTODY_VIEW),
    # 全过程记录 and 案卷评查
    "coverage": rule(P.COMPLIANCE_VIEW, cases=("case",), actions=("action",)),
    "compliance summary": rule(P.COMPLIANCE_VIEW, unit="unit"),
    "compliance survey": rule(P.COMPLIANCE_VIEW, unit="unit"),
    "report self-inspection": rule(P.COMPLIANCE_VIEW, unit="unit"),
    "review sample": rule(P.REVIEW_RUN, unit="unit"),
    "review show": rule(P.COMPLIANCE_VIEW, samples=("sample_id",)),
    "review verdict": rule(P.REVIEW_RUN, samples=("sample_id",)),
    "review rectify": rule(P.REVIEW_RUN, verdicts=("verdict_id",)),
    # the system
    "device add": rule(P.DEVICE_ADMIN),
    "device assign": rule(P.DEVICE_ADMIN),
    "device import": rule(P.DEVICE_ADMIN),
    "device list": rule(P.DEVICE_ADMIN),
    "custody retire-key": rule(P.STATION_ADMIN),
    "worker retry": rule(P.STATION_ADMIN),
    "station status": rule(P.DISTRICT_STATUS),
    "district status": rule(P.DISTRICT_STATUS),
    # people
    "user add": rule(P.USER_ADMIN, extra=lambda p: P.ROLE_ADMIN if p.get("roles") else None),
    "user disable": rule(P.USER_ADMIN),
    "user enable": rule(P.USER_ADMIN),
    "user list": rule(P.USER_ADMIN, P.ROLE_ADMIN),
    "user passwd": rule(P.ROLE_ADMIN, own="login"),
    "user lock": rule(P.ROLE_ADMIN),
    "user unlock": rule(P.ROLE_ADMIN),
    "user logout": rule(P.SESSION_REVOKE),
    "user 2fa reset": rule(P.ROLE_ADMIN),
    "user role grant": rule(P.ROLE_ADMIN),
    "user role revoke": rule(P.ROLE_ADMIN),
    "user case grant": rule(P.ROLE_ADMIN, cases=("number",)),
    "user case revoke": rule(P.ROLE_ADMIN, cases=("number",)),
    "user case list": rule(P.ROLE_ADMIN),
    "token issue": rule(P.ROLE_ADMIN),
    "token list": rule(P.ROLE_ADMIN),
    "token revoke": rule(P.ROLE_ADMIN),
}

# Commands of one's own account: they need a logged-in principal but no permission (a
# principal with a one-time password or without its second factor may run them).
OWN_ACCOUNT = frozenset({"user 2fa enroll"})


def command_path(ctx: click.Context) -> str:
    """``case attach`` for ``liuhen case attach ...`` (whatever the program is called)."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


def group_runs_itself(ctx: click.Context) -> bool:
    """Whether a group is invoked as a command (``liuhen export --out ...``) rather than
    for one of its subcommands."""
    pending = getattr(ctx, "_protected_args", None)
    if pending is None:
        pending = getattr(ctx, "protected_args", [])
    return not pending and not ctx.args


def check_invocation(ctx: click.Context) -> None:
    """The permission check of a command, run just before its callback."""
    path = command_path(ctx)
    found = COMMANDS.get(path)
    if found is not None and found.when is not None and not found.when(ctx.params):
        found = None
    takes_actor = "actor" in ctx.params
    if found is None and not takes_actor and path not in OWN_ACCOUNT:
        return  # nothing to check: load nothing
    from liuhen import actor as who

    principal = who.current_principal(ctx)
    if takes_actor:
        ctx.params["actor"] = who.actor_for(ctx, principal, ctx.params["actor"])
    if path in OWN_ACCOUNT:
        who.require_account(principal)
    if found is not None:
        enforce(ctx, principal, found)


def _own(principal: Principal, value: Any) -> bool:
    return not value or value == principal.login


def enforce(ctx: click.Context, principal: Principal, found: Rule) -> None:
    from access.policy import AccessDenied, authorize, decide, denial
    from liuhen import actor as who

    if found.own is not None and _own(principal, ctx.params.get(found.own)):
        who.require_account(principal)
        return
    # The command as a whole: the first of its permissions the principal holds decides.
    chosen = next(
        (p for p in found.permissions if decide(principal, p).allowed), found.permissions[0]
    )
    also = found.extra(ctx.params) if found.extra is not None else None
    if principal.via == "local":
        # No accounts: the local user reaches everything it may do at all, so no target
        # is looked up (and a catalog not made yet is left to the command to report).
        for needed in (chosen, also):
            if needed is not None and not decide(principal, needed).allowed:
                raise denial(principal, needed, None)
        return
    app = who.app_of(ctx)
    refused: AccessDenied | None = None
    with app.ready_catalog().session() as session:
        try:
            authorize(session, principal, chosen)
            if also is not None:
                authorize(session, principal, also)
            for target in targets(session, found, ctx.params):
                authorize(session, principal, chosen, target)
        except AccessDenied as exc:
            refused = exc
    if refused is not None:  # recorded outside the read session, then raised
        who.note_denied(ctx, principal, chosen, refused)
        raise refused


def targets(session: Any, found: Rule, params: Params) -> list[Target]:
    """The cases, recordings and unit a command's arguments name, as the policy sees
    them; a reference that names nothing is left to the command to report."""
    from access.policy import Target, target_for_case, target_for_recording
    from catalog.attach import get_recording
    from catalog.cases import get_case
    from config.errors import LiuhenError

    result: list[Target] = []
    for name in found_values(found.cases, params):
        try:
            result.append(target_for_case(session, get_case(session, name).number))
        except LiuhenError:
            continue
    for ref in found_values(found.recordings, params):
        try:
            result.append(target_for_recording(session, get_recording(session, ref).id))
        except LiuhenError:
            continue
    for ref in found_values(found.actions, params):
        result += [target_for_case(session, n) for n in _cases_of_action(session, ref)]
    for sample in found_values(found.samples, params):
        result += _unit_targets(_sample_unit(session, int(sample)))
    for verdict in found_values(found.verdicts, params):
        result += _unit_targets(_verdict_unit(session, int(verdict)))
    if found.unit is not None:
        unit = params.get(found.unit)
        result.append(Target("unit", unit, unit=unit) if unit else Target("district"))
    if found.whole_district is not None and found.whole_district(params):
        result.append(Target("district"))
    return result


def found_values(names: tuple[str, ...], params: Params) -> list[str]:
    values: list[str] = []
    for name in names:
        value = params.get(name)
        if isinstance(value, (tuple, list)):
            values += [str(v) for v in value if v]
        elif value:
            values.append(str(value))
    return values


def _unit_targets(unit: str | None) -> list[Target]:
    from access.policy import Target

    return [Target("unit", unit, unit=unit)] if unit else []


def _cases_of_action(session: Any, ref: str) -> list[str]:
    """The case of an action named as ``liuhen coverage`` names it: its row id, or else
    its external id (every case holding that id, when it is ambiguous)."""
    from sqlalchemy import select

    from catalog.models import Case, EnforcementAction

    by_case = select(Case.number).join(EnforcementAction, EnforcementAction.case_id == Case.id)
    if ref.isdigit() and len(ref) < 10:
        found = session.scalar(by_case.where(EnforcementAction.id == int(ref)))
        if found is not None:
            return [found]
    return sorted(set(session.scalars(by_case.where(EnforcementAction.external_id == ref))))


def _sample_unit(session: Any, sample_id: int) -> str | None:
    from compliance.models import ReviewSample

    sample = session.get(ReviewSample, sample_id)
    return sample.unit if sample is not None else None


def _verdict_unit(session: Any, verdict_id: int) -> str | None:
    from compliance.models import ReviewVerdict

    verdict = session.get(ReviewVerdict, verdict_id)
    return _sample_unit(session, verdict.sample_id) if verdict is not None else None
