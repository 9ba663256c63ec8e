"""What the bag says about each exported recording: one value object per record,
built by the exporter from the catalog and written by the descriptor and the event list."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PayloadFile:
    role: str  # original | access
    path: str  # bag path, data/...
    size: int
    sha256: str
    sm3: str
    object_key: str
    kind: str = ""  # derivative kind for access copies
    method: str = ""


@dataclass
class RecordInfo:
    """One recording in the bag, with the DA/T 63-style fields of its record."""

    seq: int
    recording_id: int
    sha256: str
    sm3: str
    size: int
    object_key: str
    original_name: str  # display text (escaped where not printable)
    original_name_hex: str  # the name's raw bytes on the recorder
    archival_code: str  # 档号
    title: str  # 题名
    start: str | None  # 时间 (ISO 8601, +08:00)
    end: str | None
    time_source: str | None
    place: str  # 地点
    people: list[dict[str, str]]  # 人物: officers of the matching actions
    recorder: dict[str, str]  # 摄录者: the officer carrying the recorder
    retention: str  # 保管期限
    security_class: str  # 密级
    case_numbers: list[str]
    media_kind: str | None
    technical: dict[str, Any]  # container, codecs, resolution, frame rate, ...
    device: dict[str, str]  # serial, model, make, unit
    flags: dict[str, Any]
    chapter: dict[str, Any] | None
    captured_at_iso: str | None  # UTC, for the capture event
    received_at_iso: str | None
    files: list[PayloadFile] = field(default_factory=list)

    @property
    def original(self) -> PayloadFile:
        return next(f for f in self.files if f.role == "original")

    @property
    def access(self) -> PayloadFile | None:
        return next((f for f in self.files if f.role == "access"), None)
