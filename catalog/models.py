"""SQLAlchemy 2 models of the catalog: the single source of truth and the work queue.

Times are stored as timezone-aware UTC. Custody events keep their canonical timestamp
and details as text, because their bytes are signed and must read back identically on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from catalog.states import RecordingState


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """DateTime that always comes back timezone-aware UTC (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog; use UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Station(Base):
    """A station or worker host: an actor that signs custody events with its own key."""

    __tablename__ = "stations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    unit: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16), default="station")  # station | worker
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    keys: Mapped[list[SigningKey]] = relationship(back_populates="station")


class SigningKey(Base):
    """A station's Ed25519 public key. Old keys stay valid for the events they signed."""

    __tablename__ = "signing_keys"

    # "ed25519:" + SHA-256 of the raw public key: the id commits to the key bytes.
    key_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"), index=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)

    station: Mapped[Station] = relationship(back_populates="keys")


class Officer(Base):
    __tablename__ = "officers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)  # 警号
    name: Mapped[str] = mapped_column(String(100), default="")
    unit: Mapped[str] = mapped_column(String(200), default="")


class Device(Base):
    """A recorder (执法记录仪), known by its serial."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    model: Mapped[str] = mapped_column(String(100), default="")
    unit: Mapped[str] = mapped_column(String(200), default="")
    # Seen at a dock but not registered: ingested anyway, and flagged.
    registered: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Docking(Base):
    """One recorder session at a station: OFFLOADING → SAFE_TO_CLEAR → CLEARED | INCOMPLETE."""

    __tablename__ = "dockings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The station journal's id for this docking: registering it again is a no-op.
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"), index=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), index=True)
    officer_id: Mapped[int | None] = mapped_column(ForeignKey("officers.id"))
    slot: Mapped[str] = mapped_column(String(255))
    source_path: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="OFFLOADING", index=True)
    # Where the identity came from (device-info, file-name, folder) and the raw values.
    identity_source: Mapped[str] = mapped_column(String(16), default="folder")
    identity_raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    files_total: Mapped[int] = mapped_column(Integer, default=0)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    problems: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DockingFile(Base):
    """One file seen on a docked recorder, and what became of it.

    Several files (in one docking or across dockings) may share one Recording when their
    bytes are the same.
    """

    __tablename__ = "docking_files"
    __table_args__ = (UniqueConstraint("docking_id", "path_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    docking_id: Mapped[int] = mapped_column(ForeignKey("dockings.id"), index=True)
    # SHA-256 of the raw path bytes: names need not be valid UTF-8.
    path_key: Mapped[str] = mapped_column(String(64))
    relpath: Mapped[str] = mapped_column(Text)
    relpath_raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[datetime | None] = mapped_column(default=None)
    # STORED | DUPLICATE | REJECTED | QUARANTINED | CLEARED
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    recording_id: Mapped[int | None] = mapped_column(ForeignKey("recordings.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Recording(Base):
    """One original file, stored once per distinct content (SHA-256)."""

    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    sm3: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    object_key: Mapped[str] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16), default=RecordingState.STORED, index=True)
    # The name on the recorder: display text, and the raw bytes when not valid UTF-8.
    original_name: Mapped[str] = mapped_column(Text)
    original_name_raw: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), index=True)
    officer_id: Mapped[int | None] = mapped_column(ForeignKey("officers.id"))
    docking_id: Mapped[int | None] = mapped_column(ForeignKey("dockings.id"), index=True)
    captured_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    capture_end: Mapped[datetime | None] = mapped_column(default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # What ffprobe said (or why it could not read the file), and every raw time with the
    # derived capture interval and its flags. Raw values are never overwritten.
    media_kind: Mapped[str | None] = mapped_column(String(16), default=None)
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    probe: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    time_evidence: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # Segments a recorder split from one recording share a group (chapters).
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("recording_groups.id"), index=True, default=None
    )
    group_seq: Mapped[int | None] = mapped_column(Integer, default=None)
    stored_at: Mapped[datetime | None] = mapped_column(default=None)
    verified_at: Mapped[datetime | None] = mapped_column(default=None)
    flags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Marked important on the device (or by a reviewer): kept until reviewed.
    important: Mapped[bool] = mapped_column(default=False)
    reviewed_at: Mapped[datetime | None] = mapped_column(default=None)
    # The retention date last pushed to the store (S3 Object Lock); None while undetermined.
    retain_until: Mapped[datetime | None] = mapped_column(default=None)


class RecordingGroup(Base):
    """One logical recording the device split into consecutive segments (chapters)."""

    __tablename__ = "recording_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), index=True)
    start: Mapped[datetime | None] = mapped_column(default=None)
    end: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Derivative(Base):
    """A file made from an original (access copy, proxy, poster): its own object and digests."""

    __tablename__ = "derivatives"
    __table_args__ = (UniqueConstraint("recording_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    sm3: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    object_key: Mapped[str] = mapped_column(String(512))
    profile: Mapped[str] = mapped_column(String(64), default="")
    # remux | reencode | extract | recovered | joined
    method: Mapped[str] = mapped_column(String(16), default="")
    tool_version: Mapped[str] = mapped_column(String(200), default="")
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    command: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CustodyEvent(Base):
    """One link of a station's append-only, hash-chained, signed custody log."""

    __tablename__ = "custody_events"
    __table_args__ = (
        UniqueConstraint("station_id", "seq"),
        Index("ix_custody_object", "object_type", "object_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[str] = mapped_column(String(40))  # canonical UTC timestamp text
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(200))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON text
    prev_hash: Mapped[str] = mapped_column(String(64))
    event_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[str] = mapped_column(String(80))
    signature: Mapped[str] = mapped_column(String(128))  # hex Ed25519 signature


class WorkItem(Base):
    """A unit of work in the catalog queue, claimed with a lease.

    On PostgreSQL claims use FOR UPDATE SKIP LOCKED so any number of workers on any host
    share the queue; on SQLite one writer at a time makes the same code safe.
    """

    __tablename__ = "work_items"
    __table_args__ = (
        UniqueConstraint("kind", "subject"),
        Index("ix_work_claimable", "kind", "state", "not_before"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default="PENDING")  # PENDING|CLAIMED|DONE|FAILED
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # deterministic | transient (catalog.queue), with last_error; None when not failed.
    failure: Mapped[str | None] = mapped_column(String(16), default=None)


# --- devices, cases, retention -------------------------------------------------------


class DeviceAssignment(Base):
    """Who carried a recorder when: [start, end), end None while current."""

    __tablename__ = "device_assignments"
    __table_args__ = (Index("ix_device_assignment_span", "device_id", "start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    officer_id: Mapped[int] = mapped_column(ForeignKey("officers.id"), index=True)
    start: Mapped[datetime] = mapped_column()
    end: Mapped[datetime | None] = mapped_column(default=None)
    actor: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Case(Base):
    """A case as the enforcement unit numbers it (e.g. 沪徐市监罚〔2026〕123号)."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(200), unique=True)  # the case ID / 档号 source
    title: Mapped[str] = mapped_column(Text, default="")  # 题名
    unit: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default="open")  # open|closed|archived
    retention: Mapped[str] = mapped_column(String(16), default="永久")  # 保管期限: 永久|30年|10年
    security_class: Mapped[str] = mapped_column(String(32), default="")  # 密级
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    source: Mapped[str] = mapped_column(Text, default="")  # import file or "manual"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EnforcementAction(Base):
    """One enforcement action of a case: who, when, where."""

    __tablename__ = "enforcement_actions"
    __table_args__ = (UniqueConstraint("case_id", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    # The case-management system's id of the action: importing it again is a no-op.
    external_id: Mapped[str] = mapped_column(String(200))
    start: Mapped[datetime] = mapped_column(index=True)
    end: Mapped[datetime] = mapped_column()
    place: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ActionOfficer(Base):
    __tablename__ = "action_officers"

    action_id: Mapped[int] = mapped_column(ForeignKey("enforcement_actions.id"), primary_key=True)
    officer_id: Mapped[int] = mapped_column(ForeignKey("officers.id"), primary_key=True, index=True)


class CaseRecording(Base):
    """A recording attached to a case, by rule or by hand. Detached rows stay, for history."""

    __tablename__ = "case_recordings"
    __table_args__ = (UniqueConstraint("case_id", "recording_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    method: Mapped[str] = mapped_column(String(16))  # rule | manual
    # For rule attachments: the action and margin that matched; for manual: empty.
    rule: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    attached_at: Mapped[datetime] = mapped_column(default=utcnow)
    detached_at: Mapped[datetime | None] = mapped_column(default=None)
    detached_by: Mapped[str | None] = mapped_column(String(200), default=None)
    detach_reason: Mapped[str | None] = mapped_column(Text, default=None)


class LegalHold(Base):
    """One legal hold on a recording, placed by a person for a reason of their own: the
    recording never expires while any hold is unreleased, and a release lifts one hold."""

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(200))
    placed_at: Mapped[datetime] = mapped_column(default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(default=None)
    released_by: Mapped[str | None] = mapped_column(String(200), default=None)
    release_reason: Mapped[str | None] = mapped_column(Text, default=None)


class Tombstone(Base):
    """What an expired, deleted original was: kept for ever. One per expiry: a recording
    restored after its expiry (its bytes docked again) may expire again."""

    __tablename__ = "tombstones"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    sm3: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    original_name: Mapped[str] = mapped_column(Text, default="")
    captured_at: Mapped[datetime | None] = mapped_column(default=None)
    received_at: Mapped[datetime | None] = mapped_column(default=None)
    expired_at: Mapped[datetime | None] = mapped_column(default=None)
    deleted_at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    # Object keys and digests of the original and its derivatives, as they were.
    objects: Mapped[dict[str, Any]] = mapped_column(default=dict)


# --- export and fixity ----------------------------------------------------------------


class Export(Base):
    """One archive export (one or more numbered bags)."""

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    actor: Mapped[str] = mapped_column(String(200))
    out_path: Mapped[str] = mapped_column(Text)
    scope: Mapped[dict[str, Any]] = mapped_column(default=dict)  # cases, date range
    state: Mapped[str] = mapped_column(String(16), default="RUNNING")  # RUNNING|DONE|FAILED
    bags: Mapped[dict[str, Any]] = mapped_column(default=dict)  # names, oxum, signature key
    files: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class ExportItem(Base):
    __tablename__ = "export_items"

    export_id: Mapped[int] = mapped_column(ForeignKey("exports.id"), primary_key=True)
    recording_id: Mapped[int] = mapped_column(
        ForeignKey("recordings.id"), primary_key=True, index=True
    )
    path: Mapped[str] = mapped_column(Text, default="")  # path inside the bag


class FixityRun(Base):
    """A fixity audit of the object store; resumable from `cursor`."""

    __tablename__ = "fixity_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    actor: Mapped[str] = mapped_column(String(200))
    scope: Mapped[dict[str, Any]] = mapped_column(default=dict)  # all | sample | older-than
    state: Mapped[str] = mapped_column(String(16), default="RUNNING")  # RUNNING|DONE
    cursor: Mapped[int] = mapped_column(Integer, default=0)  # last recording id checked
    checked: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class FixityCheck(Base):
    __tablename__ = "fixity_checks"
    __table_args__ = (UniqueConstraint("run_id", "object_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("fixity_runs.id"), index=True)
    recording_id: Mapped[int | None] = mapped_column(ForeignKey("recordings.id"), index=True)
    object_key: Mapped[str] = mapped_column(String(512))
    ok: Mapped[bool] = mapped_column()
    detail: Mapped[str] = mapped_column(Text, default="")
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- district health -------------------------------------------------------------------


class Heartbeat(Base):
    """A running station or worker process says it is alive, and what it is doing."""

    __tablename__ = "heartbeats"

    process_id: Mapped[str] = mapped_column(String(200), primary_key=True)  # host:pid:role
    role: Mapped[str] = mapped_column(String(16))  # station | worker
    station_id: Mapped[str] = mapped_column(String(64), index=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(40), default="")
    state: Mapped[str] = mapped_column(String(32), default="running")  # running|stopped
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


# The tables of people and their access (issue 15) join the same metadata; last, because
# that module builds on Base.
from catalog import access_models as _access_models  # noqa: E402, F401
