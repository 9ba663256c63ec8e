"""The request and response bodies of the API, as the OpenAPI description shows them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from api.errors import ErrorResponse

Reason = Field(min_length=1, max_length=4000, description="Why (recorded in the custody log).")

# The error answers every endpoint may give, described once.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "The request cannot be taken as given (the message says why)."),
        (401, "Not logged in, or the session or token has expired."),
        (403, "The caller's role or unit does not allow this (audited)."),
        (404, "No such recording, case, export or endpoint."),
        (409, "A case number that differs from an existing one only in its brackets."),
        (422, "The request does not match this description."),
        (503, "The catalog or the store cannot be reached now; try again."),
    )
}


class RecordingSummary(BaseModel):
    id: int
    name: str
    sha256: str
    sm3: str
    size: int
    state: str
    media_kind: str | None
    duration_s: float | None
    captured_at: str | None = Field(description="Capture start, ISO 8601 in the station's zone.")
    capture_end: str | None
    received_at: str | None
    device: str | None = Field(description="Recorder serial.")
    officer: str | None = Field(description="警号 of the officer the recording is resolved to.")
    unit: str | None
    important: bool
    flags: list[str]


class SearchPage(BaseModel):
    items: list[RecordingSummary]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null: last.")


class ReasonBody(BaseModel):
    reason: str = Reason


class Hold(BaseModel):
    id: int
    reason: str
    placed_by: str
    placed_at: str | None
    released_at: str | None
    released_by: str | None
    release_reason: str | None


class Playback(BaseModel):
    """What a player watched: sent when playback stops or every so often."""

    position_s: float = Field(ge=0, le=10**7, description="Where playback started, seconds.")
    duration_s: float = Field(ge=0, le=10**7, description="How long was watched, seconds.")
    kind: Literal["proxy", "access"] = "proxy"


class CaseCreate(BaseModel):
    number: str = Field(min_length=1, max_length=200)
    title: str = Field("", max_length=2000)
    unit: str = Field("", max_length=200)
    status: Literal["open", "closed", "archived"] = "open"
    retention: str = Field("永久", max_length=16, description="保管期限: 永久, 30年 or 10年.")
    security_class: str = Field("", max_length=32, description="密级.")
    allow_similar: bool = Field(
        False,
        description="Create it although an existing case's number differs only in its "
        "brackets or digit widths.",
    )


class CaseUpdate(BaseModel):
    title: str | None = Field(None, max_length=2000)
    unit: str | None = Field(None, max_length=200)
    retention: str | None = Field(None, max_length=16)
    security_class: str | None = Field(None, max_length=32)
    reason: str = Reason


class ActionCreate(BaseModel):
    id: str = Field(min_length=1, max_length=200, description="The action's id in the case system.")
    officers: list[str] = Field(min_length=1, max_length=100, description="警号 of each officer.")
    start: str = Field(description="e.g. 2026-12-01 07:00 (station time unless an offset is given)")
    end: str
    place: str = Field("", max_length=2000)


class CaseImport(BaseModel):
    name: str = Field(
        min_length=5, max_length=255, pattern=r"(?i)\.(csv|json)$", description="cases.csv or .json"
    )
    content: str = Field(max_length=50_000_000, description="The file's text (UTF-8).")


class AttachBody(BaseModel):
    recording: int = Field(ge=1, le=2**31 - 1)
    reason: str = Reason


class DetachBody(AttachBody):
    force_exported: bool = Field(False, description="Detach although already exported.")


class ExportStart(BaseModel):
    cases: list[str] = Field(default_factory=list, max_length=1000)
    date_from: str | None = Field(None, alias="from", description="First day or time.")
    date_to: str | None = Field(None, alias="to", description="Exclusive end.")
    with_access: bool = False

    model_config = {"populate_by_name": True}


class ExportJob(BaseModel):
    id: str
    state: Literal["queued", "running", "done", "failed"]
    scope: dict[str, Any]
    actor: str
    started_at: str | None
    finished_at: str | None
    bytes_written: int
    export: str | None = Field(description="The export's uid in the catalog, once done.")
    bags: list[dict[str, Any]]
    error: dict[str, Any] | None
