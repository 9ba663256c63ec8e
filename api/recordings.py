"""``/api/v1/recordings``: search, detail, custody history, holds, and the proxy, access
copy or original streamed with byte ranges."""

from __future__ import annotations

import functools
import mimetypes
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import event as orm_event
from sqlalchemy.orm import Session

from access import policy
from access.audit import OFFSET_KEY
from access.policy import AccessDenied
from access.roles import Permission
from api import services
from api.auth import Caller, caller
from api.errors import ApiError
from api.models import ERRORS, Hold, Playback, ReasonBody, SearchPage
from api.streaming import accel_redirect, byte_range, stream_object
from catalog.models import Derivative, Recording
from catalog.search import DEFAULT_LIMIT, FLAGS, MAX_LIMIT, STATES, SearchQuery, time_range
from catalog.search import search_recordings as run_search
from config.i18n import _
from storage import LocalStore

T = TypeVar("T")
router = APIRouter(prefix="/recordings", tags=["recordings"], responses=ERRORS)
RecordingId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The recording's id.")]
Who = Annotated[Caller, Depends(caller)]
MediaKind = Literal["proxy", "access", "audio", "poster", "thumbnail", "original"]
# Still images of a recording: fetching one is a view, never a playback.
STILLS = frozenset({"poster", "thumbnail"})
# What a derivative kind is when its own file name says nothing.
_MEDIA_TYPES = {
    "proxy": "video/mp4",
    "access": "video/mp4",
    "recovered": "video/mp4",
    "audio": "audio/mp4",
    "poster": "image/jpeg",
    "thumbnail": "image/jpeg",
}


def search(
    who: Who,
    officer: Annotated[str | None, Query(max_length=32, description="警号")] = None,
    device: Annotated[str | None, Query(max_length=64, description="Recorder serial.")] = None,
    unit: Annotated[str | None, Query(max_length=200)] = None,
    case: Annotated[str | None, Query(max_length=200, description="Case number.")] = None,
    date_from: Annotated[
        str | None,
        Query(alias="from", max_length=64, description="Capture start at or after (station time)."),
    ] = None,
    date_to: Annotated[
        str | None,
        Query(alias="to", max_length=64, description="Capture start before (exclusive)."),
    ] = None,
    state: Annotated[list[Literal[STATES]] | None, Query()] = None,  # type: ignore[valid-type]
    flag: Annotated[list[Literal[FLAGS]] | None, Query()] = None,  # type: ignore[valid-type]
    expiring_within_days: Annotated[int, Query(ge=0, le=36500)] = 30,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Recordings by officer, recorder, unit, case, capture time (in the station's zone;
    ``to`` is exclusive), state and flags, newest capture first, a page at a time: pass
    ``next_cursor`` back as ``cursor`` for the next page. Only recordings the caller may
    see are listed."""
    who.authorize("recording.view")
    if case:
        # Before the search looks the case up: its "did you mean" must not name another
        # unit's case to someone who may not see it.
        who.authorize("case.view", who.case_target(case))
    lo, hi = time_range(date_from, date_to, who.ctx.zone)
    query = SearchQuery(
        officer=officer,
        device=device,
        unit=unit,
        case=case,
        captured_from=lo,
        captured_to=hi,
        states=tuple(state or ()),
        flags=tuple(flag or ()),
        expiring_within_days=expiring_within_days,
        limit=limit,
        cursor=cursor,
    )
    with who.ctx.catalog.session() as s:
        page = run_search(
            s, query, zone=who.ctx.zone, policy=who.ctx.settings.retention, scope=who.scope()
        )
    return {"items": page.items, "next_cursor": page.next_cursor}


def _as_built(handler: Callable[..., dict[str, Any]]) -> Callable[..., JSONResponse]:
    """The route of ``handler`` (its parameters, name and docs), answering its dict as
    JSON as it is: not validated again against the ``response_model`` that documents it.
    ``search`` builds each of up to 500 items with exactly that model's fields (the web
    page calls it for the dict); checking them field by field cost more CPU than the
    query itself (docs/api.md, search figures of 2026-12-06 session 9)."""

    @functools.wraps(handler)
    def route(*args: Any, **kwargs: Any) -> JSONResponse:
        return JSONResponse(handler(*args, **kwargs))

    return route


router.get("", response_model=SearchPage, summary="Search recordings")(_as_built(search))


@router.get("/{rec_id}", summary="One recording")
def detail(who: Who, rec_id: RecordingId) -> dict[str, Any]:
    """What `liuhen show` prints: digests, probe, times and their sources, flags,
    derivatives, chapters, sightings, retention and holds. Audited as a view."""
    return view(who, rec_id)[0]


def view(
    who: Caller, rec_id: int, also: Callable[[Session], T] | None = None
) -> tuple[dict[str, Any], T | None]:
    """The recording's report for a caller the policy lets view it, audited as a view;
    ``also``: more the page shows (its cases), read once the view is allowed.

    One read session serves the policy's look-up, the report and ``also``: the rows the
    policy read (the recording, its recorder, its officer) are the report's too, and one
    connection is taken from the pool instead of one for each. A refusal is audited once
    that session is closed (:meth:`Caller.refuse`)."""
    refused: AccessDenied | None = None
    extra: T | None = None
    with who.ctx.catalog.session() as s:
        # The session's identity map holds its rows weakly: a row the policy read and
        # let go would be read again by the report. Held here until the session closes.
        held: list[object] = []
        orm_event.listen(s, "loaded_as_persistent", lambda _s, row: held.append(row))
        target = who.recording_target(rec_id, s)
        try:
            policy.authorize(s, who.principal, Permission.RECORDING_VIEW, target)
        except AccessDenied as exc:
            refused = exc
        else:
            report = services.recording(who.ctx, rec_id, s)
            if also is not None:
                extra = also(s)
    if refused is not None:
        who.refuse(refused, Permission.RECORDING_VIEW.value, target)
    hide_unseen_cases(who, report)
    who.audit("access.view", "recording", rec_id)
    return report, extra


def hide_unseen_cases(who: Caller, report: dict[str, Any]) -> None:
    """The retention decision names the cases that keep the recording; of a case the
    reader may not see (``case.view``), only that one keeps it: no number, no reason."""
    retention = report.get("retention")
    if not retention:
        return
    numbers = {str(c["case"]) for c in retention.get("cases") or [] if c.get("case")}
    hidden = {n for n in numbers if not who.allowed("case.view", who.case_target(n))}
    if not hidden:
        return
    retention["reasons"] = [
        _("attached to a case you may not see") if any(n in r for n in hidden) else r
        for r in retention.get("reasons") or []
    ]
    retention["cases"] = [c for c in retention.get("cases") or [] if c.get("case") not in hidden]


@router.get("/{rec_id}/custody", summary="Custody history")
def custody(
    who: Who,
    rec_id: RecordingId,
    after: Annotated[int, Query(ge=0, le=2**62, description="Events after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """The signed custody events of the recording and its derivatives, oldest first;
    for the auditors (who may read the audit) its access events too: who viewed,
    played or downloaded it. Page with ``next_after``."""
    return custody_page(who, rec_id, after=after, limit=limit)


def custody_page(
    who: Caller, rec_id: int, *, after: int, limit: int, report: dict[str, Any] | None = None
) -> dict[str, Any]:
    """:func:`custody`'s answer; ``report``: the recording's, as :func:`view` gave it this
    request (its digests name the custody events' objects: not looked up again)."""
    target = who.recording_target(rec_id)
    who.authorize("custody.view", target)
    with_access = who.allowed("audit.view")
    objects = (
        None
        if report is None
        else [report["sha256"], str(report["id"]), *(d["sha256"] for d in report["derivatives"])]
    )
    found = services.custody(
        who.ctx, rec_id, after=after, limit=limit, with_access=with_access, objects=objects
    )
    _redact_unseen_cases(who, found["events"])
    return found


def _redact_unseen_cases(who: Caller, events: list[dict[str, Any]]) -> None:
    """An attach or detach event names its case and why: of a case the reader may not
    see (``case.view``), the event says only that a case it may not see was named
    (``case_hidden``); the signed original is the auditors' to read."""
    seen: dict[str, bool] = {}
    for event in events:
        details = event.get("details")
        if not isinstance(details, dict) or not details.get("case"):
            continue
        number = details["case"]
        number = str(number)
        if number not in seen:
            seen[number] = who.allowed("case.view", who.case_target(number))
        if not seen[number]:
            event["details"] = {
                k: v for k, v in details.items() if k not in ("case", "reason", "rule")
            } | {"case_hidden": True}


@router.get("/{rec_id}/holds", response_model=list[Hold], summary="Legal holds")
def holds(who: Who, rec_id: RecordingId) -> list[dict[str, Any]]:
    who.authorize("recording.view", who.recording_target(rec_id))
    return services.holds(who.ctx, rec_id)


@router.post("/{rec_id}/holds", response_model=Hold, status_code=201, summary="Place a hold")
def place_hold(who: Who, rec_id: RecordingId, body: ReasonBody) -> dict[str, Any]:
    """A legal hold: the recording is never expired while it is in force."""
    who.authorize("hold.change", who.recording_target(rec_id))
    row = services.place_hold(who.ctx, rec_id, reason=body.reason, actor=who.actor)
    who.audit("access.hold", "recording", rec_id, hold=row["id"], reason=body.reason)
    return row


@router.post("/{rec_id}/holds/{hold_id}/release", response_model=Hold, summary="Release a hold")
def release_hold(
    who: Who,
    rec_id: RecordingId,
    hold_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: ReasonBody,
) -> dict[str, Any]:
    who.authorize("hold.change", who.recording_target(rec_id))
    row = services.release_hold(who.ctx, rec_id, hold_id, reason=body.reason, actor=who.actor)
    who.audit("access.release", "recording", rec_id, hold=hold_id, reason=body.reason)
    return row


@router.post("/{rec_id}/playback", status_code=204, summary="Report what was watched")
def playback(who: Who, rec_id: RecordingId, body: Playback) -> Response:
    """A player says where it started and how long it played (audited as a playback)."""
    who.authorize("recording.play", who.recording_target(rec_id))
    who.audit(
        "access.play",
        "recording",
        rec_id,
        kind=body.kind,
        position_s=body.position_s,
        duration_s=body.duration_s,
    )
    return Response(status_code=204)


@router.get(
    "/{rec_id}/media/{kind}",
    summary="Stream or download a copy",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The whole file.", "content": {"*/*": {}}},
        206: {"description": "The range asked for.", "content": {"*/*": {}}},
        416: {"description": "The range is not within the file.", **ERRORS[400]},
    },
)
def media(
    who: Who,
    rec_id: RecordingId,
    kind: MediaKind,
    download: Annotated[bool, Query(description="As a file to keep (audited).")] = False,
    range_: Annotated[str | None, Header(alias="Range", max_length=200)] = None,
    if_range: Annotated[str | None, Header(alias="If-Range", max_length=200)] = None,
) -> Response:
    """The proxy, access copy (or another derivative), with HTTP range requests (206,
    Content-Range; 416 for a range outside the file). Playing a proxy or access copy
    needs the play permission; downloading it, the download permission; the original
    is only ever a download, for the roles that may take one. The start of a playback
    (once per recording and caller in 30 minutes: seeks are not new playbacks), a
    poster's view and every download are audited."""
    target = who.recording_target(rec_id)
    is_download = download or kind == "original"
    permission = (
        "original.download"
        if kind == "original"
        else ("recording.download" if is_download else "recording.play")
    )
    who.authorize(permission, target)
    rec, derived = services.derivative(who.ctx, rec_id, kind)
    key, size, sha256, media_type = _object_of(rec, derived, kind)
    etag = f'"{sha256}"'
    rng = byte_range(range_, size, if_range=if_range, etag=etag)
    name = _file_name(rec, kind, derived) if is_download else None
    response: Response = (
        accel_redirect(who.ctx, key, media_type=media_type, etag=etag, filename=name)
        if who.ctx.accel_redirect and isinstance(who.ctx.store, LocalStore)
        else stream_object(
            who.ctx.store, key, size, rng, media_type=media_type, etag=etag, filename=name
        )
    )
    if is_download:
        # A resumed download's pieces are each a download, of the bytes they name.
        span = {"range": f"{rng.start}-{rng.end - 1}"} if rng.partial else {}
        who.audit("access.download", "recording", rec_id, kind=kind, sha256=sha256, **span)
    elif kind in STILLS:
        # A poster shown in a list or on a page is a look at the recording, not a playback.
        who.audit("access.view", "recording", rec_id, kind=kind)
    elif not who.playing(rec_id):
        # A playback starts, from the beginning or part-way (a player resumed at an
        # offset); the seeks and buffering of one already going are not new playbacks.
        where: dict[str, Any] = {"position_s": 0} if rng.start == 0 else {OFFSET_KEY: rng.start}
        who.audit("access.play", "recording", rec_id, kind=kind, **where)
    return response


def _object_of(rec: Recording, derived: Derivative | None, kind: str) -> tuple[str, int, str, str]:
    if kind == "original":
        if rec.state in ("EXPIRING", "EXPIRED"):
            raise ApiError(
                _("recording {id} is {state}: its original is gone").format(
                    id=rec.id, state=rec.state
                ),
                hint=_("its tombstone keeps its digests: see its custody history"),
                status=404,
            )
        guessed = mimetypes.guess_type(rec.original_name)[0]
        return rec.object_key, rec.size, rec.sha256, guessed or "application/octet-stream"
    if derived is None:
        raise ApiError(
            _("recording {id} has no {kind} copy").format(id=rec.id, kind=kind),
            hint=_("the worker makes it after the recording is probed; see its detail"),
            status=404,
        )
    return derived.object_key, derived.size, derived.sha256, _media_type(derived)


def _media_type(d: Derivative) -> str:
    argv = (d.command or {}).get("argv") or []
    guessed = mimetypes.guess_type(str(argv[-1]))[0] if argv else None
    return guessed or _MEDIA_TYPES.get(d.kind, "application/octet-stream")


def _file_name(rec: Recording, kind: str, derived: Derivative | None) -> str:
    if kind == "original" or derived is None:
        return rec.original_name
    stem = PurePosixPath(rec.original_name).stem
    ext = mimetypes.guess_extension(_media_type(derived)) or ".bin"
    return f"{stem}.{kind}{ext}"
