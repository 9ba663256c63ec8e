"""``liuhen export``: cases or a date range to BagIt bags (directories or ``.tar`` files).

The flow of one export:

1. select the recordings (a case's attached recordings, or those captured in a date
   range) and give each a readable, safe path; split into numbered bags by a size limit
   and before any bag would pass what ``liuhen verify`` accepts (:mod:`bagsplit`);
2. record the export (``Export`` row RUNNING with its scope, an ``export-started``
   custody event) in one transaction, so even an export that dies is on record;
3. per bag: stream every original (and access copy) from the object store into the bag,
   hashing SHA-256, SHA-512 and SM3 while writing and checking SHA-256 and SM3 against
   the catalog; write the metadata files; run the four-properties check; write the
   manifests, tag manifests and the Ed25519 signature. Each bag is written under
   ``<name>.partial``;
4. when every bag is finished, record the export DONE with its ``ExportItem`` rows, one
   ``exported`` custody event per recording and an ``export-finished`` event, then
   rename the bags into place (and set ``finished_at``). Recording first means a bag
   visible at ``--out`` is always one the catalog knows as exported; every file and
   folder of the bags is synced before that commit, so a power cut after it finds
   them whole.

Any failure before the DONE commit (a corrupt object, the store or disk failing)
removes every ``.partial`` output of this export, records the export FAILED with the
error and an ``export-failed`` custody event naming the object, and raises; a rename
that fails after it takes the export back (bags out of sight, FAILED, items removed). A
process killed mid-export leaves ``<name>.partial`` and the export RUNNING, or (killed
between the DONE commit and the last rename) DONE with some bags still ``.partial``:
``reconcile_interrupted``, run by the next ``liuhen export`` on the same host, removes
the former (FAILED) and completes the latter, and says so. The connection lost at the
DONE commit itself leaves its outcome unknown: the ``.partial`` bags are kept, the
catalog asked again on a fresh connection, and an unreachable one leaves the export to
that same reconciliation (``_settle_unknown_commit``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, or_, select, text, update
from sqlalchemy.orm import Session

from archive_export import bagsplit, fourprops
from archive_export.bagview import DirBag, TarBag
from archive_export.bagwriter import (
    PARTIAL_SUFFIX,
    BagWriter,
    PayloadMismatch,
    human_size,
)
from archive_export.descriptor import package_xml
from archive_export.handover import handover_csv
from archive_export.paths import (
    CHINA_STANDARD_TIME,
    PathAllocator,
    date_folder,
    device_folder,
    escaped_text,
    safe_component,
    with_extension,
)
from archive_export.premis import events_xml
from archive_export.records import PayloadFile, RecordInfo
from catalog import anchors
from catalog.cases import get_case
from catalog.chainrule import ChainHead, check_heads
from catalog.custody import append_event, catalog_keys, not_access
from catalog.db import Catalog
from catalog.errors import CatalogError
from catalog.models import (
    ActionOfficer,
    Case,
    CaseRecording,
    CustodyEvent,
    Derivative,
    Device,
    Docking,
    EnforcementAction,
    Export,
    ExportItem,
    Officer,
    Recording,
    SigningKey,
    utcnow,
)
from catalog.signing import Signer
from catalog.states import LIVE_STATES
from config.errors import EXIT_NOINPUT, EXIT_UNAVAILABLE, EXIT_USAGE, LiuhenError
from storage import fsync_dir
from storage.base import ObjectStore
from storage.errors import StorageError

log = logging.getLogger(__name__)

# Access copies, in order of preference, when --with-access asks for them.
ACCESS_KINDS = ("access", "audio", "recovered", "joined")
_ACCESS_EXT = {"access": ".mp4", "audio": ".m4a", "recovered": ".mp4", "joined": ".mp4"}
_RETENTION_RANK = {"永久": 3, "30年": 2, "10年": 1}
_IN_CHUNK = 500


class ExportError(LiuhenError):
    exit_code = EXIT_USAGE


class NothingToExport(LiuhenError):
    exit_code = EXIT_NOINPUT


class ExportOutcomeUnknown(LiuhenError):
    """The catalog went away while recording the export DONE: whether it did is unknown,
    so the finished bags were kept as ``.partial`` for the next run to settle."""

    exit_code = EXIT_UNAVAILABLE


class _CommitOutcomeUnknown(Exception):
    """The DONE transaction failed at its COMMIT: the database may have committed it."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True)
class ExportRequest:
    out: Path  # a directory to create, or a file ending in .tar
    cases: tuple[str, ...] = ()
    date_from: datetime | None = None  # [from, to), aware
    date_to: datetime | None = None
    with_access: bool = False
    max_bag_bytes: int | None = None  # split into numbered bags above this payload size
    organization: str = ""
    fonds: str = ""  # 全宗号
    retention: str = ""  # 保管期限 when no case gives one
    security_class: str = ""  # 密级 when no case gives one
    actor: str = ""
    options: fourprops.Options = field(default_factory=fourprops.Options)


@dataclass
class BagResult:
    name: str
    path: Path
    files: int
    bytes: int
    recordings: int
    four_properties: dict[str, Any]
    # SHA-256 of tagmanifest-sha256.txt: the bytes the bag's detached signature signs.
    signed_digest: str = ""


@dataclass
class ExportResult:
    uid: str
    bags: list[BagResult]
    recordings: int

    @property
    def bytes(self) -> int:
        return sum(b.bytes for b in self.bags)


def parse_day(text: str) -> datetime:
    """``YYYY-MM-DD`` (a day in China Standard Time) or an ISO 8601 time."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        return datetime(day.year, day.month, day.day, tzinfo=CHINA_STANDARD_TIME)
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ExportError(f"{text!r} is neither a date (YYYY-MM-DD) nor an ISO 8601 time") from exc
    return when if when.tzinfo else when.replace(tzinfo=CHINA_STANDARD_TIME)


# -- selection ----------------------------------------------------------------------------


@dataclass
class _Selected:
    rec: Recording
    cases: list[Case]
    access: Derivative | None


def _select(session: Session, req: ExportRequest) -> tuple[list[_Selected], list[Case]]:
    if req.cases:
        by_rec, cases = _select_cases(session, req.cases)
    else:
        assert req.date_from is not None and req.date_to is not None
        by_rec, cases = _select_range(session, req.date_from, req.date_to)
    gone = [s.rec for s in by_rec.values() if s.rec.state not in LIVE_STATES]
    if gone:
        raise NothingToExport(
            "the bytes of these recordings are not held: "
            + ", ".join(f"{r.id} ({r.original_name}, {r.state})" for r in gone[:20]),
            hint="they expired or were quarantined; see 'liuhen show ID'",
        )
    selected = sorted(
        by_rec.values(), key=lambda s: (s.rec.captured_at or s.rec.received_at, s.rec.id)
    )
    if not selected:
        scope = (
            f"case(s) {', '.join(req.cases)}" if req.cases else f"[{req.date_from}, {req.date_to})"
        )
        raise NothingToExport(
            f"no recordings to export for {scope}",
            hint="attach recordings to the case, or widen the date range",
        )
    if req.with_access:
        _choose_access(session, selected)
    return selected, cases


def _select_cases(
    session: Session, numbers: Sequence[str]
) -> tuple[dict[int, _Selected], list[Case]]:
    """The recordings attached to these cases (each once, with every case it is in)."""
    problems: list[str] = []
    cases: list[Case] = []
    by_rec: dict[int, _Selected] = {}
    for number in numbers:
        try:  # the number as people type it (brackets, full-width digits)
            case = get_case(session, number)
        except CatalogError as exc:
            problems.append(f"case {number!r} is not in the catalog ({exc.message})")
            continue
        cases.append(case)
    if problems:
        raise NothingToExport("; ".join(problems), hint="see 'liuhen case list'")
    for case in cases:
        rows = session.execute(
            select(Recording)
            .join(CaseRecording, CaseRecording.recording_id == Recording.id)
            .where(CaseRecording.case_id == case.id, CaseRecording.detached_at.is_(None))
            .order_by(Recording.id)
        ).scalars()
        for rec in rows:
            by_rec.setdefault(rec.id, _Selected(rec, [], None)).cases.append(case)
    return by_rec, cases


def _select_range(
    session: Session, lo: datetime, hi: datetime
) -> tuple[dict[int, _Selected], list[Case]]:
    """The recordings captured (or, with no capture time, received) in [lo, hi), with the
    cases they are attached to."""
    cases: list[Case] = []
    by_rec: dict[int, _Selected] = {}
    rows = session.scalars(
        select(Recording)
        .where(
            or_(
                and_(Recording.captured_at >= lo, Recording.captured_at < hi),
                and_(
                    Recording.captured_at.is_(None),
                    Recording.received_at >= lo,
                    Recording.received_at < hi,
                ),
            )
        )
        .order_by(Recording.id)
    )
    for rec in rows:
        by_rec[rec.id] = _Selected(rec, [], None)
    for chunk in _chunks(list(by_rec)):
        for cr, case in session.execute(
            select(CaseRecording, Case)
            .join(Case, Case.id == CaseRecording.case_id)
            .where(CaseRecording.recording_id.in_(chunk), CaseRecording.detached_at.is_(None))
        ):
            by_rec[cr.recording_id].cases.append(case)
            if case not in cases:
                cases.append(case)
    return by_rec, cases


def _choose_access(session: Session, selected: list[_Selected]) -> None:
    """Each recording's access copy, the preferred kind of those it has."""
    derivs: dict[int, list[Derivative]] = {}
    for chunk in _chunks([s.rec.id for s in selected]):
        for d in session.scalars(
            select(Derivative).where(
                Derivative.recording_id.in_(chunk), Derivative.kind.in_(ACCESS_KINDS)
            )
        ):
            derivs.setdefault(d.recording_id, []).append(d)
    for s in selected:
        options = sorted(derivs.get(s.rec.id, []), key=lambda d: ACCESS_KINDS.index(d.kind))
        s.access = options[0] if options else None


def _chunks(ids: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(ids), _IN_CHUNK):
        yield ids[i : i + _IN_CHUNK]


# -- records ------------------------------------------------------------------------------


def _iso_local(when: datetime | None) -> str | None:
    return when.astimezone(CHINA_STANDARD_TIME).isoformat() if when else None


def _iso_utc(when: datetime | None) -> str | None:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


def _build_records(
    session: Session, selected: list[_Selected], req: ExportRequest, today: str
) -> tuple[list[RecordInfo], list[tuple[str, str, str]]]:
    """Records with their bag paths, and the name map rows (path, name, hex)."""
    alloc = PathAllocator()
    name_map: list[tuple[str, str, str]] = []
    devices = {d.id: d for d in session.scalars(select(Device))} if selected else {}
    officer_ids = {s.rec.officer_id for s in selected if s.rec.officer_id}
    officers = (
        {o.id: o for o in session.scalars(select(Officer).where(Officer.id.in_(officer_ids)))}
        if officer_ids
        else {}
    )
    records: list[RecordInfo] = []
    for seq, s in enumerate(selected, 1):
        rec = s.rec
        raw = (rec.original_name_raw or rec.original_name.encode("utf-8")).rsplit(b"/", 1)[-1]
        safe = safe_component(raw)
        device = devices.get(rec.device_id) if rec.device_id else None
        probe = rec.probe or {}
        folder = (
            f"data/originals/{device_folder(device.serial if device else None)}/"
            f"{date_folder(rec.captured_at)}"
        )
        path, tagged = alloc.take(folder, safe.name, rec.sha256[:8])
        if safe.changed or tagged:
            name_map.append((path, escaped_text(raw), raw.hex()))
        files = [PayloadFile("original", path, rec.size, rec.sha256, rec.sm3, rec.object_key)]
        if s.access is not None:
            files.append(_access_file(alloc, s.access, path))
        case_numbers = [c.number for c in s.cases]
        first_case = s.cases[0] if s.cases else None
        retention = (
            max((c.retention for c in s.cases), key=lambda r: _RETENTION_RANK.get(r, 0), default="")
            or req.retention
        )
        security = (
            next((c.security_class for c in s.cases if c.security_class), "") or req.security_class
        )
        place, people = _actions(session, s.cases, rec)
        officer = officers.get(rec.officer_id) if rec.officer_id else None
        prefix = first_case.number if first_case else f"{req.fonds or 'LH'}-{today}"
        title_base = (first_case.title or first_case.number) if first_case else "执法记录"
        records.append(
            RecordInfo(
                seq=seq,
                recording_id=rec.id,
                sha256=rec.sha256,
                sm3=rec.sm3,
                size=rec.size,
                object_key=rec.object_key,
                original_name=escaped_text(raw),
                original_name_hex=raw.hex(),
                archival_code=f"{prefix}-{seq:04d}",
                title=f"{title_base}：{safe.name}",
                start=_iso_local(rec.captured_at),
                end=_iso_local(rec.capture_end),
                time_source=(rec.time_evidence or {}).get("source"),
                place=place,
                people=people,
                recorder={"number": officer.number, "name": officer.name} if officer else {},
                retention=retention,
                security_class=security,
                case_numbers=case_numbers,
                media_kind=rec.media_kind,
                technical=_technical(rec, probe),
                device=_device_fields(device, probe),
                flags=dict(rec.flags or {}),
                chapter={"group": rec.group_id, "seq": rec.group_seq}
                if rec.group_id is not None
                else None,
                captured_at_iso=_iso_utc(rec.captured_at),
                received_at_iso=_iso_utc(rec.received_at),
                files=files,
            )
        )
    return records, name_map


def _access_file(alloc: PathAllocator, d: Derivative, original_path: str) -> PayloadFile:
    """The access copy's payload file, beside where its original lies under data/access/."""
    ext = _derivative_ext(d)
    apath = "data/access/" + with_extension(original_path.removeprefix("data/originals/"), ext)
    apath, _t = alloc.take(apath.rsplit("/", 1)[0], apath.rsplit("/", 1)[1], d.sha256[:8])
    return PayloadFile(
        "access", apath, d.size, d.sha256, d.sm3, d.object_key, kind=d.kind, method=d.method
    )


def _technical(rec: Recording, probe: dict[str, Any]) -> dict[str, Any]:
    """The descriptor's technical metadata of a recording, from its probe."""
    return {
        "container": probe.get("container"),
        "format": probe.get("format_long_name"),
        "duration-s": rec.duration_s,
        "size": rec.size,
        "bit-rate": probe.get("bit_rate"),
        "video-codec": probe.get("video_codec"),
        "width": probe.get("width"),
        "height": probe.get("height"),
        "frame-rate": probe.get("frame_rate"),
        "audio-codec": probe.get("audio_codec"),
        "sample-rate": probe.get("sample_rate"),
        "channels": probe.get("channels"),
        "probe-error": probe.get("error") if probe.get("ok") is False else None,
    }


def _device_fields(device: Device | None, probe: dict[str, Any]) -> dict[str, str]:
    """The recorder as the descriptor names it (fields left empty are left out)."""
    fields = {
        "serial": device.serial if device else "",
        "model": device.model if device else "",
        "make": probe.get("make") or "",
        "unit": device.unit if device else "",
    }
    return {k: v for k, v in fields.items() if v}


def _derivative_ext(d: Derivative) -> str:
    argv = (d.command or {}).get("argv") or []
    last = str(argv[-1]) if argv else ""
    tail = last.rsplit("/", 1)[-1]
    if "." in tail:
        ext = "." + tail.rsplit(".", 1)[1].lower()
        if ext.isascii() and 2 <= len(ext) <= 6:
            return ext
    return _ACCESS_EXT.get(d.kind, ".bin")


def _actions(
    session: Session, cases: list[Case], rec: Recording
) -> tuple[str, list[dict[str, str]]]:
    """Place and people: the enforcement actions of the cases around the capture time."""
    if not cases:
        return "", []
    start = rec.captured_at
    end = rec.capture_end or start
    query = select(EnforcementAction).where(EnforcementAction.case_id.in_([c.id for c in cases]))
    actions = list(session.scalars(query))
    if start is not None and end is not None:
        margin = timedelta(minutes=30)
        near = [a for a in actions if a.start - margin <= end and start <= a.end + margin]
        actions = near or actions
    places = sorted({a.place for a in actions if a.place})
    people: list[dict[str, str]] = []
    ids = [a.id for a in actions]
    if ids:
        for o in session.scalars(
            select(Officer)
            .join(ActionOfficer, ActionOfficer.officer_id == Officer.id)
            .where(ActionOfficer.action_id.in_(ids))
            .distinct()
        ):
            people.append({"number": o.number, "name": o.name, "role": "officer"})
    return "；".join(places), people


# -- custody excerpt ----------------------------------------------------------------------


def _object_ids(session: Session, records: Sequence[RecordInfo]) -> dict[int, frozenset[str]]:
    """Recording id -> the custody object ids of its history: the digests of its files
    and of all its derivatives, and its docking's uid."""
    ids: dict[int, set[str]] = {r.recording_id: {f.sha256 for f in r.files} for r in records}
    for chunk in _chunks(list(ids)):
        for rec_id, sha in session.execute(
            select(Derivative.recording_id, Derivative.sha256).where(
                Derivative.recording_id.in_(chunk)
            )
        ):
            ids[rec_id].add(sha)
        for rec_id, dock_uid in session.execute(
            select(Recording.id, Docking.uid)
            .join(Docking, Docking.id == Recording.docking_id)
            .where(Recording.id.in_(chunk))
        ):
            ids[rec_id].add(dock_uid)
    return {k: frozenset(v) for k, v in ids.items()}


def _events(session: Session, ids: Iterable[str]) -> Iterable[CustodyEvent]:
    for chunk in _chunks(sorted(ids)):
        # Access events (views, downloads) belong to the access report, not to the
        # evidence's chain of custody in the bag; the excerpt verifies without them.
        yield from session.scalars(
            select(CustodyEvent).where(CustodyEvent.object_id.in_(chunk), not_access())
        )


def _event_dict(ev: CustodyEvent) -> dict[str, Any]:
    return {
        "station_id": ev.station_id,
        "seq": ev.seq,
        "at": ev.at,
        "actor": ev.actor,
        "action": ev.action,
        "object_type": ev.object_type,
        "object_id": ev.object_id,
        "details": ev.details,
        "prev_hash": ev.prev_hash,
        "event_hash": ev.event_hash,
        "key_id": ev.key_id,
        "signature": ev.signature,
    }


def custody_line(event: dict[str, Any]) -> bytes:
    """One line of ``custody.jsonl``."""
    return (json.dumps(event, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def _custody(
    session: Session, records: Sequence[RecordInfo], case_numbers: Sequence[str], export_uid: str
) -> list[dict[str, Any]]:
    ids: set[str] = {export_uid, *case_numbers}
    for rec_ids in _object_ids(session, records).values():
        ids |= rec_ids
    events = {(ev.station_id, ev.seq): ev for ev in _events(session, ids)}
    return [_event_dict(ev) for _k, ev in sorted(events.items())]


def _custody_sizes(session: Session, ids: Iterable[str]) -> dict[str, tuple[int, int]]:
    """Object id -> (events, bytes) of its part of a custody excerpt: what a bag holding
    it must have room for (an event belongs to one object)."""
    sizes: dict[str, tuple[int, int]] = {}
    for ev in _events(session, ids):
        n, size = sizes.get(ev.object_id, (0, 0))
        sizes[ev.object_id] = (n + 1, size + len(custody_line(_event_dict(ev))))
    return sizes


def _chain_heads(
    session: Session, store: ObjectStore, signer: Signer, stations: set[str]
) -> list[ChainHead]:
    """Signed chain heads for the bag (docs/custody.md): this host's own, signed now, and
    the newest one in the store of every other station the excerpt names. An auditor who
    keeps the bag can later tell whether the catalog still holds those events."""
    heads: list[ChainHead] = []
    own = anchors.publish(session, signer, store=store)
    if own is not None:
        heads.append(own)
    try:
        stored, _bad = anchors.store_heads(store, newest=1)
    except StorageError as exc:  # the bag is still good evidence without them
        log.warning("chain heads of other stations not copied into the bag: %s", exc)
        stored = []
    others = [h for h in stored if h.station_id in stations - {signer.station_id}]
    # Only heads that verify: a forged one planted in the store would otherwise make every
    # later bag fail its check (custody verify and verify --district report it instead).
    good, bad = check_heads(others, catalog_keys(session))
    for issue in bad:
        log.warning("chain head not copied into the bag: %s", issue.detail)
    return heads + sorted(good, key=lambda h: h.station_id)


def _keys(session: Session, key_ids: Iterable[str]) -> list[dict[str, Any]]:
    rows = session.scalars(select(SigningKey).where(SigningKey.key_id.in_(sorted(set(key_ids)))))
    # Retirement as the custody rule knows it (the row, or its key-retired event if earlier):
    # the bag's excerpt rarely holds the key-retired event itself.
    rule = catalog_keys(session)
    return [
        {
            "key_id": k.key_id,
            "station_id": k.station_id,
            "public_key_hex": k.public_key.hex(),
            "created_at": _iso_utc(k.created_at),
            "retired_at": rule[k.key_id].retired_at if k.key_id in rule else None,
        }
        for k in sorted(rows, key=lambda k: k.key_id)
    ]


# -- splitting ------------------------------------------------------------------------------


def _plan(
    session: Session, records: Sequence[RecordInfo], req: ExportRequest, out: Path, uid: str
) -> list[list[RecordInfo]]:
    """Numbered bags by ``--max-bag-size`` and by what ``liuhen verify`` accepts in one
    bag (:mod:`archive_export.bagsplit`)."""
    objects = _object_ids(session, records)
    cases = {n for r in records for n in r.case_numbers}
    custody = _custody_sizes(session, set().union(*objects.values(), cases))
    # The export-started event is written after planning, into every bag's excerpt: room
    # for it naming as many bags as there are records (at most that many bags).
    started = (
        2048
        + len(str(out).encode()) * 2
        + sum(len(c.encode()) + 4 for c in req.cases)
        + len(records) * (len(out.name.encode()) + 12)
        + len(uid)
    )
    return bagsplit.plan(
        records,
        max_bytes=req.max_bag_bytes,
        objects=lambda r: objects[r.recording_id],
        custody=custody,
        reserve=(1, started),
    )


def _bag_paths(out: Path, count: int) -> list[Path]:
    tar = out.suffix.lower() == ".tar"
    if count == 1:
        return [out]
    stem = out.name[: -len(".tar")] if tar else out.name
    return [out.with_name(f"{stem}-{i:03d}{'.tar' if tar else ''}") for i in range(1, count + 1)]


VERIFY_TEXT = """How to verify this bag / 如何校验本档案包
==========================================

This is a BagIt 1.0 bag (RFC 8493) written by 留痕 (liuhen). Every file under data/ is
listed with its SHA-256, SHA-512 and SM3 in manifest-sha256.txt, manifest-sha512.txt
and manifest-sm3.txt; the tag files are listed in tagmanifest-*.txt, and
tagmanifest-sha256.txt is signed with the exporting station's Ed25519 key.

1. Check every payload file with standard tools (in this directory):

     sha256sum -c manifest-sha256.txt
     sha512sum -c manifest-sha512.txt
     sha256sum -c tagmanifest-sha256.txt

   (SM3: 'gmssl sm3' or 'openssl dgst -sm3' per file against manifest-sm3.txt.)

2. Check the signature over tagmanifest-sha256.txt (OpenSSL 3):

     openssl pkeyutl -verify -pubin -inkey signing-key.pem -rawin \\
       -in tagmanifest-sha256.txt -sigfile tagmanifest-sha256.txt.sig

   The key's id is bag-info.txt's Liuhen-Signing-Key-Id: "ed25519:" followed by the
   SHA-256 of the raw 32-byte public key. Compare it with the key the archives bureau
   holds for the exporting station.

3. With 留痕 installed: 'liuhen verify <bag>' checks all of the above, SM3, the custody
   excerpt (data/metadata/custody.jsonl, keys in data/metadata/keys.json) and the
   hand-over list; 'liuhen four-properties <bag>' runs the DA/T 70 four-properties check
   (the report made at export is data/metadata/four-properties.html).

A name that had to be made safe is listed in data/metadata/name-map.csv with the
original name's bytes.
"""


# -- the export ---------------------------------------------------------------------------


def export_bundle(
    catalog: Catalog, store: ObjectStore, signer: Signer, req: ExportRequest
) -> ExportResult:
    _check_request(req)
    out = req.out.absolute()
    if out.parent.exists() and not out.parent.is_dir():
        raise ExportError(f"{out.parent} is not a directory", hint="choose another --out")
    actor = req.actor or f"station:{signer.station_id}"
    now = utcnow()
    today = now.astimezone(CHINA_STANDARD_TIME).strftime("%Y%m%d")
    uid = str(uuid.uuid4())
    with catalog.session() as session:
        selected, cases = _select(session, req)
        records, name_map = _build_records(session, selected, req, today)
        bags = _plan(session, records, req, out, uid)
    paths = _bag_paths(out, len(bags))
    _check_paths_free(out, paths)
    export_id = _start_export(catalog, signer, req, uid, actor, out, paths, len(records))
    writers: list[BagWriter] = []
    results: list[BagResult] = []
    try:
        for index, (bag_records, path) in enumerate(zip(bags, paths, strict=True), 1):
            writer = BagWriter(path, tar=path.suffix.lower() == ".tar")
            writers.append(writer)
            results.append(
                _write_bag(
                    catalog,
                    store,
                    signer,
                    writer,
                    bag_records,
                    name_map,
                    cases,
                    req,
                    uid=uid,
                    actor=actor,
                    now=now,
                    index=index,
                    count=len(bags),
                )
            )
        _check_finals_free(writers)
        _record_done(catalog, signer, export_id, uid, actor, bags, results, len(records))
    except _CommitOutcomeUnknown as unknown:
        # Returns only when the catalog did record the export: its bags go in place.
        _settle_unknown_commit(catalog, signer, export_id, uid, actor, writers, unknown.cause)
    except BaseException as exc:
        for w in writers:
            w.abort()
        _record_failure(catalog, signer, export_id, uid, actor, exc)
        raise
    _place_bags(catalog, signer, export_id, uid, actor, writers)
    return ExportResult(uid, results, len(records))


def _check_request(req: ExportRequest) -> None:
    """Cases or a date range, not both; a range with both ends, in order; a positive
    bag size."""
    if bool(req.cases) == (req.date_from is not None or req.date_to is not None):
        raise ExportError("give either --case (one or more) or a date range (--from and --to)")
    if not req.cases and (req.date_from is None or req.date_to is None):
        raise ExportError("a date range needs both --from and --to")
    if req.date_from and req.date_to and req.date_from >= req.date_to:
        raise ExportError(f"--from {req.date_from} is not before --to {req.date_to}")
    if req.max_bag_bytes is not None and req.max_bag_bytes <= 0:
        raise ExportError("the bag size limit must be positive")


def _check_paths_free(out: Path, paths: list[Path]) -> None:
    """No bag path is taken, nor left half-written by an interrupted export; the folder
    that will hold them exists."""
    partial = [q for p in paths if (q := p.with_name(p.name + PARTIAL_SUFFIX)).exists()]
    if partial:
        raise ExportError(
            f"{', '.join(map(str, partial))}: left by an interrupted export",
            hint="it is incomplete: remove it, then export again",
        )
    taken = [p for p in paths if p.exists()]
    if taken:
        raise ExportError(
            f"{', '.join(map(str, taken))} already exist(s)",
            hint="choose another --out; an export never overwrites",
        )
    try:
        _make_folder(out.parent)
    except OSError as exc:
        raise ExportError(f"cannot create {out.parent}: {exc.strerror}") from exc


def _start_export(
    catalog: Catalog,
    signer: Signer,
    req: ExportRequest,
    uid: str,
    actor: str,
    out: Path,
    paths: list[Path],
    recordings: int,
) -> int:
    """The export's row (RUNNING) and its ``export-started`` event; the row's id."""
    scope: dict[str, Any] = (
        {"cases": list(req.cases)}
        if req.cases
        else {
            "from": req.date_from.isoformat() if req.date_from else None,
            "to": req.date_to.isoformat() if req.date_to else None,
        }
    )
    scope["with_access"] = req.with_access
    with catalog.transaction() as session:
        row = Export(
            uid=uid,
            actor=actor,
            out_path=str(out),
            scope=scope,
            state="RUNNING",
            bags={"planned": [p.name for p in paths], "process": _this_process()},
        )
        session.add(row)
        session.flush()
        export_id = row.id
        append_event(
            session,
            signer,
            actor=actor,
            action="export-started",
            object_type="export",
            object_id=uid,
            details={
                "scope": scope,
                "recordings": recordings,
                "bags": [p.name for p in paths],
                "out": str(out),
            },
        )
    return export_id


def _place_bags(
    catalog: Catalog,
    signer: Signer,
    export_id: int,
    uid: str,
    actor: str,
    writers: list[BagWriter],
) -> None:
    """The catalog now records the export DONE with its items and events; only now do its
    bags appear at --out, so a bag there is always one the catalog knows (and a case
    refuses to detach its recordings lightly). A kill from here on leaves the export
    DONE with some bags still <name>.partial: the next `liuhen export` finishes the
    renames (reconcile_interrupted)."""
    placed: list[BagWriter] = []
    try:
        for w in writers:
            w.commit()
            placed.append(w)
    except BaseException as exc:
        _take_back(catalog, signer, export_id, uid, actor, writers, placed, exc)
        raise
    _record_in_place(catalog, export_id)


def _make_folder(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each new one made durable in its own
    parent: the bags' entries in ``folder`` are synced before the export is recorded,
    which is worth nothing if a power cut can take the folder itself away."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        fsync_dir(new.parent)


def _check_finals_free(writers: Sequence[BagWriter]) -> None:
    """Refuse before the export is recorded DONE when a final path appeared meanwhile
    (another process made it): the rename would fail after the catalog said DONE."""
    taken = [w.final for w in writers if w.final.exists()]
    if taken:
        raise ExportError(
            f"{', '.join(map(str, taken))} appeared while exporting; it was "
            "left as it is and this export was not put in its place",
            hint="choose another --out and export again",
        )


def _record_done(
    catalog: Catalog,
    signer: Signer,
    export_id: int,
    uid: str,
    actor: str,
    bags: Sequence[Sequence[RecordInfo]],
    results: Sequence[BagResult],
    recordings: int,
) -> None:
    """DONE with the ``ExportItem`` rows and the ``exported`` / ``export-finished`` events,
    in one transaction. ``finished_at`` stays empty until the bags are in place.

    A failure once everything but the COMMIT has reached the database raises
    :class:`_CommitOutcomeUnknown`: the connection may have dropped after the database
    committed, and the bags must then not be removed."""
    pending = False
    try:
        with catalog.transaction() as session:
            _add_done(session, signer, export_id, uid, actor, bags, results, recordings)
            session.flush()
            pending = True  # all that is left is the COMMIT, as this block ends
    except BaseException as exc:
        if pending:
            raise _CommitOutcomeUnknown(exc) from exc
        raise


def _add_done(
    session: Session,
    signer: Signer,
    export_id: int,
    uid: str,
    actor: str,
    bags: Sequence[Sequence[RecordInfo]],
    results: Sequence[BagResult],
    recordings: int,
) -> None:
    row = session.get(Export, export_id)
    assert row is not None
    row.state = "DONE"
    row.files = sum(b.files for b in results)
    row.bytes = sum(b.bytes for b in results)
    row.bags = {
        "planned": list(row.bags.get("planned", [])),
        "process": row.bags.get("process"),
        "names": [b.name for b in results],
        "oxum": {b.name: f"{b.bytes}.{b.files}" for b in results},
        "key_id": signer.key_id,
        "four_properties": {b.name: b.four_properties["ok"] for b in results},
        "signed_digest": {b.name: b.signed_digest for b in results},
    }
    for b_index, bag_records in enumerate(bags):
        for r in bag_records:
            # Items only for an export whose bags are finished: "exported" means in a
            # bag (cases refuse to detach an exported recording lightly).
            session.add(
                ExportItem(export_id=export_id, recording_id=r.recording_id, path=r.original.path)
            )
            append_event(
                session,
                signer,
                actor=actor,
                action="exported",
                object_type="recording",
                object_id=r.sha256,
                details={
                    "export": uid,
                    "bag": results[b_index].name,
                    "path": r.original.path,
                    "access": r.access.path if r.access else None,
                },
            )
    append_event(
        session,
        signer,
        actor=actor,
        action="export-finished",
        object_type="export",
        object_id=uid,
        details={
            "bags": [
                {
                    "name": b.name,
                    "oxum": f"{b.bytes}.{b.files}",
                    "four_properties_ok": b.four_properties["ok"],
                    "signed_digest": b.signed_digest,
                }
                for b in results
            ],
            "recordings": recordings,
        },
    )


def _record_in_place(catalog: Catalog, export_id: int) -> None:
    """``finished_at``: every bag is in place. A failure here is left to the next run's
    reconciliation (the bags are in place and the catalog already says DONE)."""
    try:
        with catalog.transaction() as session:
            session.execute(
                update(Export).where(Export.id == export_id).values(finished_at=utcnow())
            )
    except Exception:  # reconcile_interrupted records it later
        pass


def _take_back(
    catalog: Catalog,
    signer: Signer,
    export_id: int,
    uid: str,
    actor: str,
    writers: Sequence[BagWriter],
    placed: Sequence[BagWriter],
    exc: BaseException,
) -> None:
    """A bag could not be renamed into place after the export was recorded DONE (or the
    renames were interrupted by Ctrl-C): the bags already in place go back out of sight
    first, then the catalog takes the export back (FAILED, no items, an ``export-failed``
    event after its ``exported`` ones), then the temporary bags are removed. Killed
    between those steps, the next run either completes the export (still DONE) or
    finds a FAILED one whose ``.partial`` the user is told to remove."""
    for w in placed:
        try:
            os.rename(w.final, w.temp)
        except OSError:
            w.remove_final()
    if not _record_failure(catalog, signer, export_id, uid, actor, exc, taken_back=True):
        return  # still DONE: the next run completes it instead
    for w in writers:
        w.abort()


# -- interrupted exports ------------------------------------------------------------------


def _this_process() -> dict[str, Any]:
    """Who runs an export: enough for a later run on the same host to tell that this
    process is gone (its pid, and the pid's start time against pid reuse)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_ticks(os.getpid())}


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) is in parentheses and may hold spaces.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _gone(process: Any) -> bool:
    """Whether the process recorded by ``_this_process`` on this host has ended."""
    if not isinstance(process, dict) or process.get("host") != socket.gethostname():
        return False  # another host's export (or one from before processes were recorded)
    pid = process.get("pid")
    if not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return True  # our own pid, reused (a container's pid 1): we are not that export
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    start = process.get("start")
    return start is not None and _start_ticks(pid) not in (None, start)


def reconcile_interrupted(catalog: Catalog, signer: Signer, *, actor: str) -> list[str]:
    """Settle the exports of this host whose process died: an export recorded DONE has
    its remaining ``.partial`` bags renamed into place (they were finished and signed
    before the catalog said DONE); one still RUNNING has its ``.partial`` output removed
    and is recorded FAILED. Returns one line per export saying what was done."""
    with catalog.session() as session:
        rows = [
            (e.id, e.uid, e.state, e.out_path, dict(e.bags or {}))
            for e in session.scalars(
                select(Export)
                .where(
                    or_(
                        Export.state == "RUNNING",
                        and_(Export.state == "DONE", Export.finished_at.is_(None)),
                    )
                )
                .order_by(Export.id)
            )
        ]
    notes: list[str] = []
    for export_id, uid, state, out_path, bags in rows:
        if not _gone(bags.get("process")):
            continue
        out = Path(out_path)
        paths = [out.with_name(name) for name in bags.get("planned", [])]
        if state == "DONE":
            notes.append(_complete(catalog, export_id, uid, paths, bags.get("oxum", {})))
        else:
            notes.append(
                _remove_interrupted(catalog, signer, export_id, uid, paths, bags["process"], actor)
            )
    return notes


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


def _dir_oxum(bag: Path) -> str | None:
    """Payload-Oxum (``bytes.files``) of a bag directory's ``data/``; None for a tar or
    a path that is not there (a tar is one file, synced whole before the DONE commit)."""
    if not bag.is_dir():
        return None
    sizes = [p.stat().st_size for p in (bag / "data").rglob("*") if p.is_file()]
    return f"{sum(sizes)}.{len(sizes)}"


def _complete(
    catalog: Catalog, export_id: int, uid: str, paths: Sequence[Path], oxum: dict[str, str]
) -> str:
    moved: list[str] = []
    problems: list[str] = []
    for path in paths:
        partial = _partial(path)
        found = _dir_oxum(partial)
        want = oxum.get(path.name.removesuffix(".tar"))
        if found is not None and found != want:
            # A power cut can lose files whose directory was never synced: such a bag
            # is not the one the catalog recorded, and is not put in place.
            problems.append(
                f"{partial} holds {found} (bytes.files) of payload, the "
                f"export recorded {want}: left as it is"
            )
        elif partial.exists() and not path.exists():
            try:
                os.rename(partial, path)
            except FileNotFoundError:
                pass  # another run completed it a moment ago
            else:
                fsync_dir(path.parent)
                moved.append(f"{partial.name} -> {path.name}")
        elif not path.exists():
            problems.append(
                f"{path} is missing (neither it nor {partial.name} is there: "
                "removed, or on a medium not mounted now)"
            )
        elif partial.exists():
            problems.append(f"both {path} and {partial} exist: left as they are")
    if problems:
        # Still recorded as exported (its items keep its recordings from being detached
        # lightly); said again on every run until someone looks.
        return f"export {uid} (DONE, interrupted while putting its bags in place): " + "; ".join(
            problems
        )
    _record_in_place(catalog, export_id)
    done = f"renamed {', '.join(moved)}" if moved else "its bags were already in place"
    where = f" in {paths[0].parent}" if paths else ""
    return (
        f"export {uid} (DONE, interrupted while putting its bags in place{where}): "
        f"completed, {done}"
    )


def _remove_interrupted(
    catalog: Catalog,
    signer: Signer,
    export_id: int,
    uid: str,
    paths: Sequence[Path],
    process: dict[str, Any],
    actor: str,
) -> str:
    removed = []
    for path in paths:
        partial = _partial(path)
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(str(partial))
        elif partial.exists():
            partial.unlink(missing_ok=True)
            removed.append(str(partial))
    error = (
        f"interrupted: its process ({process.get('pid')} on {process.get('host')}) "
        "ended before the export was recorded"
    )
    with catalog.transaction() as session:
        claimed = session.scalars(
            update(Export)
            .where(Export.id == export_id, Export.state == "RUNNING")
            .values(state="FAILED", error=error, finished_at=utcnow())
            .returning(Export.id)
        ).first()
        if claimed is not None:  # once, whoever reconciles first
            append_event(
                session,
                signer,
                actor=actor,
                action="export-failed",
                object_type="export",
                object_id=uid,
                details={"error": error, "removed": removed},
            )
    what = f"removed {', '.join(removed)}" if removed else "it had written nothing"
    return f"export {uid} (RUNNING, its process is gone): {what}; recorded FAILED"


def _record_failure(
    catalog: Catalog,
    signer: Signer,
    export_id: int,
    uid: str,
    actor: str,
    exc: BaseException,
    *,
    taken_back: bool = False,
) -> bool:
    """Record the export FAILED with an ``export-failed`` event; ``taken_back``: it had
    been recorded DONE, so its items go too. False when the catalog could not be told
    (the caller's error stands; the next run reconciles)."""
    message = str(exc) if isinstance(exc, LiuhenError) else f"{type(exc).__name__}: {exc}"
    details: dict[str, Any] = {"error": message[:2000]}
    if isinstance(exc, PayloadMismatch):
        details["object"] = exc.what
        details["problems"] = exc.problems
    if taken_back:
        details["taken_back"] = True
    try:
        with catalog.transaction() as session:
            row = session.get(Export, export_id)
            if row is not None:
                row.state = "FAILED"
                row.error = message
                row.finished_at = utcnow()
            if taken_back:
                session.execute(delete(ExportItem).where(ExportItem.export_id == export_id))
            append_event(
                session,
                signer,
                actor=actor,
                action="export-failed",
                object_type="export",
                object_id=uid,
                details=details,
            )
    except Exception:
        return False
    return True


def _settle_unknown_commit(
    catalog: Catalog,
    signer: Signer,
    export_id: int,
    uid: str,
    actor: str,
    writers: Sequence[BagWriter],
    cause: BaseException,
) -> None:
    """The DONE commit failed with its outcome unknown (the connection dropped while the
    database may have committed). Nothing is removed until the catalog says which: asked
    on a fresh connection, it either records the export DONE (this returns, and the
    caller puts the bags in place) or lets this process record it FAILED (the bags are
    removed and ``cause`` raised). Unreachable, or interrupted, everything is left for
    the next run's ``reconcile_interrupted``, which settles both cases."""
    partials = ", ".join(str(w.temp) for w in writers)
    if not isinstance(cause, Exception):  # Ctrl-C: stop now, settled by the next run
        raise cause
    try:
        state = _fail_unless_done(catalog, signer, export_id, uid, actor, cause)
    except Exception as exc:
        raise ExportOutcomeUnknown(
            f"catalog {catalog.display_url} stopped answering while export {uid} was being "
            f"recorded as finished, so whether it was recorded is not known; its finished "
            f"bags were kept as {partials}",
            hint="nothing was lost: when the catalog answers again, run 'liuhen export' "
            "again on this host; it first settles this export (puts its bags in place if "
            "the catalog recorded it, removes them if not) and says so",
        ) from exc
    if state == "DONE":
        return
    for w in writers:
        w.abort()
    raise cause


def _fail_unless_done(
    catalog: Catalog, signer: Signer, export_id: int, uid: str, actor: str, cause: BaseException
) -> str:
    """Record the export FAILED if it is still RUNNING (its DONE commit did not happen),
    in one statement that waits for that commit if the database is still making it.
    Returns the export's state afterwards."""
    message = f"{type(cause).__name__}: {cause}"
    with catalog.transaction() as session:
        if catalog.is_postgres:
            # A backend of the lost connection may still hold the row (until it notices
            # the connection is gone): wait a while for it, not for ever.
            session.execute(text("SET LOCAL lock_timeout = '60s'"))
        claimed = session.scalars(
            update(Export)
            .where(Export.id == export_id, Export.state == "RUNNING")
            .values(state="FAILED", error=message, finished_at=utcnow())
            .returning(Export.id)
        ).first()
        if claimed is not None:
            append_event(
                session,
                signer,
                actor=actor,
                action="export-failed",
                object_type="export",
                object_id=uid,
                details={"error": message[:2000], "commit_lost": True},
            )
            return "FAILED"
        state = session.scalars(select(Export.state).where(Export.id == export_id)).one()
    return str(state)


def _write_bag(
    catalog: Catalog,
    store: ObjectStore,
    signer: Signer,
    writer: BagWriter,
    records: list[RecordInfo],
    name_map: list[tuple[str, str, str]],
    cases: list[Case],
    req: ExportRequest,
    *,
    uid: str,
    actor: str,
    now: datetime,
    index: int,
    count: int,
) -> BagResult:
    _copy_payload(store, writer, records)
    case_numbers = sorted({n for r in records for n in r.case_numbers})
    bag_count = f"{index} of {count}"
    meta = {
        "uid": uid,
        "bag": writer.name,
        "bag_count": bag_count,
        "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "station": signer.station_id,
        "actor": actor,
        "organization": req.organization,
        "fonds": req.fonds,
        "key_id": signer.key_id,
        "scope": ",".join(req.cases)
        if req.cases
        else f"{req.date_from.isoformat() if req.date_from else ''}/"
        f"{req.date_to.isoformat() if req.date_to else ''}",
    }
    _write_custody(catalog, store, signer, writer, records, case_numbers, meta)
    _write_descriptors(
        writer, records, name_map, [c for c in cases if c.number in case_numbers], meta
    )
    report = _four_properties(catalog, writer, req)
    payload_bytes = sum(e.size for e in writer.entries)
    info: list[tuple[str, str]] = [
        ("Source-Organization", req.organization or signer.station_id),
        ("External-Identifier", ",".join(req.cases) if req.cases else uid),
        ("Bagging-Date", now.astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d")),
        ("Payload-Oxum", f"{payload_bytes}.{len(writer.entries)}"),
        ("Bag-Size", human_size(payload_bytes)),
    ]
    if count > 1:
        info += [("Bag-Group-Identifier", uid), ("Bag-Count", bag_count)]
    info += [("Liuhen-Export-Id", uid)]
    info += _liuhen_labels(records, case_numbers, req, signer)
    writer.finish(info, signer, VERIFY_TEXT)
    signed = next(e for e in writer.tag_entries if e.path == "tagmanifest-sha256.txt")
    return BagResult(
        writer.name,
        writer.final,
        len(writer.entries),
        payload_bytes,
        len(records),
        report,
        signed.digests["sha256"],
    )


def _copy_payload(store: ObjectStore, writer: BagWriter, records: list[RecordInfo]) -> None:
    """Every file of the records from the store into the bag, checked against the
    catalog's digests as it is written."""
    for r in records:
        for f in r.files:
            what = (
                f"object {f.object_key} ({f.role} of recording {r.recording_id}, "
                f"{r.original_name}, sha256 {r.sha256})"
            )
            with store.open(f.object_key) as stream:
                writer.add_stream(
                    f.path, stream, f.size, expect={"sha256": f.sha256, "sm3": f.sm3}, what=what
                )


def _write_custody(
    catalog: Catalog,
    store: ObjectStore,
    signer: Signer,
    writer: BagWriter,
    records: list[RecordInfo],
    case_numbers: list[str],
    meta: dict[str, str],
) -> None:
    """The custody excerpt, the keys that signed it, the stations' signed chain heads,
    and the PREMIS events."""
    with catalog.session() as session:
        custody = _custody(session, records, case_numbers, meta["uid"])
        heads = _chain_heads(session, store, signer, {e["station_id"] for e in custody})
        keys = _keys(
            session, [e["key_id"] for e in custody] + [signer.key_id] + [h.key_id for h in heads]
        )
    m = "data/metadata/"
    writer.add_bytes(m + "anchors.jsonl", "".join(h.to_line() + "\n" for h in heads).encode())
    writer.add_bytes(m + "events.xml", events_xml(records, custody, export=meta))
    writer.add_bytes(m + "custody.jsonl", b"".join(custody_line(e) for e in custody))
    writer.add_bytes(
        m + "keys.json", (json.dumps({"keys": keys}, ensure_ascii=False, indent=2) + "\n").encode()
    )


def _write_descriptors(
    writer: BagWriter,
    records: list[RecordInfo],
    name_map: list[tuple[str, str, str]],
    bag_cases: list[Case],
    meta: dict[str, str],
) -> None:
    """The name map, the package descriptor and the hand-over list."""
    m = "data/metadata/"
    bag_map = [row for row in name_map if any(row[0] == f.path for r in records for f in r.files)]
    if bag_map:
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "original_name", "original_name_hex"])
        w.writerows(bag_map)
        writer.add_bytes(m + "name-map.csv", buf.getvalue().encode("utf-8"))
    case_dicts = [
        {
            "number": c.number,
            "title": c.title,
            "unit": c.unit,
            "status": c.status,
            "retention": c.retention,
            "security_class": c.security_class,
            "closed_at": _iso_utc(c.closed_at),
        }
        for c in bag_cases
    ]
    writer.add_bytes(
        m + "package.xml",
        package_xml(export=meta, cases=case_dicts, records=records, files=list(writer.entries)),
    )
    writer.add_bytes(m + "handover.csv", handover_csv(list(writer.entries)))


def _four_properties(catalog: Catalog, writer: BagWriter, req: ExportRequest) -> dict[str, Any]:
    """Four-properties on the bag as written so far (all payload but the report itself),
    its report added to the bag."""
    writer.flush()
    view = TarBag(writer.temp) if writer.tar else DirBag(writer.temp, writer.name)
    view.name = writer.name
    known = {e.path: e.digests for e in writer.entries}
    report = fourprops.check_bag(
        view,
        in_progress=True,
        known_digests=known,
        catalog=catalog_lookup(catalog),
        options=req.options,
    )
    report["location"] = str(writer.final)
    writer.add_bytes(fourprops.REPORT_JSON, fourprops.report_json(report))
    writer.add_bytes(fourprops.REPORT_HTML, fourprops.report_html(report))
    return report


def _liuhen_labels(
    records: list[RecordInfo], case_numbers: list[str], req: ExportRequest, signer: Signer
) -> list[tuple[str, str]]:
    """bag-info.txt's Liuhen-* labels after the export id: fonds, the longest retention,
    the security classes, the cases and the signing key."""
    info: list[tuple[str, str]] = []
    if req.fonds:
        info.append(("Liuhen-Fonds", req.fonds))
    retentions = sorted(
        {r.retention for r in records if r.retention}, key=lambda v: -_RETENTION_RANK.get(v, 0)
    )
    if retentions:
        info.append(("Liuhen-Retention", retentions[0]))
    classes = sorted({r.security_class for r in records if r.security_class})
    if classes:
        info.append(("Liuhen-Security-Class", ",".join(classes)))
    info += [("Liuhen-Case-Id", n) for n in case_numbers]
    info.append(("Liuhen-Signing-Key-Id", signer.key_id))
    return info


def catalog_lookup(catalog: Catalog) -> fourprops.DigestLookup:
    """sha256 -> (sm3, size) from the catalog: recordings, then derivatives."""

    def lookup(sha256: str) -> tuple[str, int] | None:
        with catalog.session() as session:
            rec = session.scalars(select(Recording).where(Recording.sha256 == sha256)).first()
            if rec is not None:
                return rec.sm3, rec.size
            d = session.scalars(select(Derivative).where(Derivative.sha256 == sha256)).first()
            return (d.sm3, d.size) if d is not None else None

    return lookup
