"""The access audit: who looked at, played, downloaded, exported or changed what, from
where, when, and with what result (issue 15, point 4).

One mechanism, not a second one: an access event is a custody event
(:func:`catalog.custody.append_event`) in this host's signed hash chain, its action in the
``access.`` namespace. So the verifier of the custody log (``liuhen custody verify``,
:func:`catalog.custody.verify_chain`) detects an access event edited, deleted, inserted or
reordered exactly as it detects a custody event so treated, and the signed chain heads
(anchors) vouch for access events too.

Access events are kept apart from where people read a recording's chain of custody
(``liuhen show``, ``verify FILE``, the custody excerpt of an exported bag): those leave
the ``access.`` namespace out (:func:`catalog.custody.not_access`). Access events are
read here (:func:`access_events`) and in the report of :mod:`access.access_report`.

Nothing deletes custody events, so access events are kept as long as the catalog; the
``[audit] keep_days`` setting (at least 180: GB/T 22239-2019 level 3 asks for six months)
is the floor any future pruning or archiving of the catalog must respect.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.canonical import format_time
from catalog.custody import ACCESS_NAMESPACE, append_event
from catalog.fields import actor_problems, limit_problems
from catalog.models import CustodyEvent, Recording
from catalog.signing import Signer
from config.errors import EXIT_USAGE, LiuhenError
from config.i18n import N_, _
from config.timetext import iso_time

# The actions of the audit (docs/security.md, "Audit"), each with what a person reads.
ACTION_LABELS: Mapping[str, str] = {
    "access.login": N_("login"),
    "access.login_failed": N_("failed login"),
    "access.logout": N_("logout"),
    "access.lock": N_("account locked"),
    "access.view": N_("view"),
    "access.play": N_("playback"),
    "access.download": N_("download"),
    "access.export": N_("export"),
    "access.attach": N_("attach"),
    "access.detach": N_("detach"),
    "access.hold": N_("legal hold"),
    "access.release": N_("hold released"),
    "access.unlock": N_("account unlocked"),
    "access.user_disable": N_("account disabled"),
    "access.user_enable": N_("account enabled"),
    "access.user_change": N_("account added"),
    "access.password_change": N_("password change"),
    "access.token_change": N_("API token change"),
    "access.role_change": N_("role change"),
    "access.grant_change": N_("grant change"),
    "access.denied": N_("access denied"),
    "access.report": N_("audit report"),
}
ACTIONS = tuple(ACTION_LABELS)
# The action recording each change of an account's state (access.accounts.STATE_CHANGES),
# whichever entry point (the command line, the HTTP API) made it.
STATE_ACTIONS: Mapping[str, str] = {
    "lock": "access.lock",
    "unlock": "access.unlock",
    "disable": "access.user_disable",
    "enable": "access.user_enable",
}
# Why an account locked (details["cause"] of access.lock).
LOCK_BY_HAND, LOCK_FAILED_LOGINS, LOCK_FAILED_PASSWORD_CHECKS = (
    "by_hand",
    "failed_logins",
    "failed_password_checks",
)
# The outcomes an access can have; ``result`` is free text beyond these.
RESULT_LABELS: Mapping[str, str] = {
    "ok": N_("ok"),
    "denied": N_("denied"),
    "failed": N_("failed"),
}
# Keys of ``details`` that record_access sets itself (a caller's are overwritten).
RESULT_KEY, SOURCE_KEY = "result", "source"
# Playback: where it started and how long was watched, in seconds (details keys).
POSITION_KEY, WATCHED_KEY = "position_s", "duration_s"
# A playback opened part-way into a copy: the byte it started at (details key).
OFFSET_KEY = "offset_bytes"
# How long after a playback starts a player's further range requests of the recording
# (seeks, buffering) are that playback rather than a new one.
PLAYBACK_WINDOW = timedelta(minutes=30)
# The longest source address kept (an IPv6 address with zone and port fits easily).
MAX_SOURCE = 200


class AuditError(LiuhenError):
    """An access event that cannot be recorded as given (a programming error of the
    caller, or a value the catalog cannot hold)."""

    exit_code = EXIT_USAGE


def action_label(action: str) -> str:
    """The translated name of an access action; the action itself when unknown."""
    label = ACTION_LABELS.get(action)
    return _(label) if label else action


def result_label(result: str) -> str:
    label = RESULT_LABELS.get(result)
    return _(label) if label else result


def record_access(
    session: Session,
    signer: Signer,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    result: str = "ok",
    source: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append one access event to this host's custody chain, in ``session``'s transaction.

    ``actor``: the principal's login; ``source``: where the request came from (an
    address, or ``cli`` for the command line). A recording is named by its SHA-256, as its
    custody events name it; a numeric ``object_id`` of a recording (its catalog id, as
    in an API path) is turned into that, keeping the id in ``details["recording_id"]``,
    so the access report finds every access by one identifier. Playback passes
    ``details={"position_s": ..., "duration_s": ...}`` (where it started, how long was
    watched)."""
    _check(actor, action, result, source)
    extra: dict[str, Any] = dict(details or {})
    if object_type == "recording":
        object_id, rec_id = _recording_key(session, object_id)
        if rec_id is not None:
            extra.setdefault("recording_id", rec_id)
    extra[RESULT_KEY] = result
    extra[SOURCE_KEY] = source or ""
    append_event(
        session,
        signer,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        details=extra,
    )


def _check(actor: str, action: str, result: str, source: str | None) -> None:
    if not action.startswith(ACCESS_NAMESPACE) or action == ACCESS_NAMESPACE:
        raise AuditError(
            _("{action!r} is not an access action").format(action=action),
            hint=_("access actions start with 'access.', e.g. access.view"),
        )
    problems = actor_problems(actor) + limit_problems("the result", result, 64)
    if source:
        problems += limit_problems("the source address", source, MAX_SOURCE)
    if not actor.strip():
        problems.append("the actor is empty")
    if problems:
        raise AuditError(_("cannot record access: {problems}").format(problems="; ".join(problems)))


def _recording_key(session: Session, ref: str) -> tuple[str, int | None]:
    """(custody object id, catalog id) of a recording named by id or SHA-256."""
    if ref.isdigit() and len(ref) < 20:
        rec = session.get(Recording, int(ref))
        return (rec.sha256, rec.id) if rec is not None else (ref, None)
    rec_id = session.scalar(select(Recording.id).where(Recording.sha256 == ref))
    return ref, rec_id


@dataclass(frozen=True)
class AccessEvent:
    """One access event as the audit reads it back from the chain."""

    id: int  # the catalog row id: the key of keyset paging (after_id)
    station_id: str
    seq: int
    at: datetime  # UTC
    actor: str
    action: str
    object_type: str
    object_id: str
    result: str
    source: str
    details: dict[str, Any] = field(default_factory=dict)  # without result and source
    event_hash: str = ""

    @property
    def recording_id(self) -> int | None:
        value = self.details.get("recording_id")
        return value if isinstance(value, int) else None

    def object_text(self) -> str:
        """What a person calls the object: "recording #12", "case …", else its type and id."""
        if self.recording_id is not None:
            return _("recording #{id}").format(id=self.recording_id)
        if self.object_type == "case":
            return _("case {number}").format(number=self.object_id)
        ident = self.object_id if len(self.object_id) <= 24 else self.object_id[:16] + "…"
        return f"{self.object_type} {ident}"

    def as_json(self, zone: tzinfo) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": iso_time(self.at, zone),
            "actor": self.actor,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "result": self.result,
            "source": self.source,
            "details": self.details,
            "station_id": self.station_id,
            "seq": self.seq,
            "event_hash": self.event_hash,
        }


def event_of(ev: CustodyEvent) -> AccessEvent:
    """An access event from its custody row (details are canonical JSON text)."""
    try:
        details = json.loads(ev.details)
    except ValueError:  # an edited row: custody verify names it; show what is there
        details = {"unreadable": ev.details}
    if not isinstance(details, dict):
        details = {"value": details}
    result = str(details.pop(RESULT_KEY, ""))
    source = str(details.pop(SOURCE_KEY, "") or "")
    return AccessEvent(
        id=ev.id,
        station_id=ev.station_id,
        seq=ev.seq,
        at=datetime.fromisoformat(ev.at.replace("Z", "+00:00")),
        actor=ev.actor,
        action=ev.action,
        object_type=ev.object_type,
        object_id=ev.object_id,
        result=result,
        source=source,
        details=details,
        event_hash=ev.event_hash,
    )


def access_events(
    session: Session,
    *,
    actor: str | None = None,
    object_type: str | None = None,
    object_id: str | Collection[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    actions: Collection[str] | None = None,
    limit: int = 1000,
    after_id: int | None = None,
) -> list[AccessEvent]:
    """Access events, oldest first, filtered; at most ``limit``, from after the row
    ``after_id`` (keyset paging: pass the last event's ``id`` for the next page).

    ``since`` is inclusive and ``until`` exclusive (as ``--from``/``--to`` of
    :func:`config.timetext.parse_range`); ``object_id`` may be several ids (a recording's
    and its derivatives' digests)."""
    query = select(CustodyEvent).where(CustodyEvent.action.startswith(ACCESS_NAMESPACE))
    if actor is not None:
        query = query.where(CustodyEvent.actor == actor)
    if object_type is not None:
        query = query.where(CustodyEvent.object_type == object_type)
    if isinstance(object_id, str):
        query = query.where(CustodyEvent.object_id == object_id)
    elif object_id is not None:
        query = query.where(CustodyEvent.object_id.in_(sorted(object_id)))
    # Event times are fixed-width UTC text (catalog.canonical.format_time): compared
    # as text they order as times do.
    if since is not None:
        query = query.where(CustodyEvent.at >= format_time(since))
    if until is not None:
        query = query.where(CustodyEvent.at < format_time(until))
    if actions is not None:
        query = query.where(CustodyEvent.action.in_(sorted(actions)))
    if after_id is not None:
        query = query.where(CustodyEvent.id > after_id)
    query = query.order_by(CustodyEvent.id).limit(max(0, limit))
    return [event_of(ev) for ev in session.scalars(query)]


def playing_already(
    session: Session, actor: str, recording_id: int, *, now: datetime | None = None
) -> bool:
    """Whether ``actor`` started a playback of the recording within the last
    :data:`PLAYBACK_WINDOW`: a player's next range request (a seek, more buffer) is part
    of that playback, not a new one."""
    sha256 = session.scalar(select(Recording.sha256).where(Recording.id == recording_id))
    if sha256 is None:
        return False
    since = (now or datetime.now(UTC)) - PLAYBACK_WINDOW
    started = access_events(
        session,
        actor=actor,
        object_type="recording",
        object_id=sha256,
        since=since,
        actions=["access.play"],
        limit=1,
    )
    return bool(started)
