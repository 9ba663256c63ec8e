"""``/api/v1/recordings/{id}/markers``: a marker with a note at a time position of a
recording (添加标记), e.g. "the suspect hands over the licence" at 00:03:12.

A marker is a signed custody event of the recording (action ``recording.marker``) rather
than a row of a table of its own: it is evidence of what a reviewer noted and when, it
cannot be edited or removed without the chain showing it, and no migration is needed.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field
from sqlalchemy import select

from api import services
from api.auth import Caller, caller
from api.models import ERRORS
from catalog.custody import append_event
from catalog.models import CustodyEvent
from config.timetext import iso_time

router = APIRouter(prefix="/recordings", tags=["recordings"], responses=ERRORS)
Who = Annotated[Caller, Depends(caller)]
RecordingId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The recording's id.")]
MARKER_ACTION: Final = "recording.marker"


class MarkerBody(BaseModel):
    position_s: float = Field(ge=0, le=10**7, description="Where in the recording, seconds.")
    note: str = Field(min_length=1, max_length=2000, description="What happens there.")


class Marker(BaseModel):
    id: int = Field(description="The custody event's id.")
    position_s: float
    note: str
    actor: str
    at: str | None = Field(description="When it was added, ISO 8601 in the station's zone.")


@router.get("/{rec_id}/markers", response_model=list[Marker], summary="Markers")
def markers(who: Who, rec_id: RecordingId) -> list[dict[str, Any]]:
    """The recording's markers, in the order of their position."""
    who.authorize("recording.view", who.recording_target(rec_id))
    with who.ctx.catalog.session() as s:
        rec = services.get_recording(s, rec_id)
        events = s.scalars(
            select(CustodyEvent)
            .where(CustodyEvent.object_type == "recording", CustodyEvent.object_id == rec.sha256)
            .where(CustodyEvent.action == MARKER_ACTION)
            .order_by(CustodyEvent.id)
        )
        found = [_marker(e, who) for e in events]
    return sorted(found, key=lambda m: (m["position_s"], m["id"]))


@router.post("/{rec_id}/markers", response_model=Marker, status_code=201, summary="Add a marker")
def add_marker(who: Who, rec_id: RecordingId, body: MarkerBody) -> dict[str, Any]:
    """A note at a position, recorded in the custody log under the caller's name."""
    who.authorize("recording.mark", who.recording_target(rec_id))
    with who.ctx.catalog.transaction() as s:
        rec = services.get_recording(s, rec_id)
        event = append_event(
            s,
            who.ctx.signer,
            actor=who.actor,
            action=MARKER_ACTION,
            object_type="recording",
            object_id=rec.sha256,
            details={"recording": rec.id, "position_s": body.position_s, "note": body.note},
        )
        return _marker(event, who)


def _marker(e: CustodyEvent, who: Caller) -> dict[str, Any]:
    details = json.loads(e.details) if isinstance(e.details, str) else dict(e.details)
    return {
        "id": e.id,
        "position_s": float(details.get("position_s", 0)),
        "note": str(details.get("note", "")),
        "actor": e.actor,
        "at": iso_time(e.at, who.ctx.zone),
    }
