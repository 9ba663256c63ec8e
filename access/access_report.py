"""The "chain of custody and access" report for one recording or one case: the report a
court asks for (issue 15, point 4).

It lists every access (view, playback with position and duration watched, download,
export, attach, detach, hold, release…) with who, from where, when (the station's zone,
with its offset) and the result, and the recording's chain of custody, each event
checked by the custody rule (catalog.chainrule: its hash and signature). Two forms:

* CSV (:meth:`AccessReport.to_csv`): UTF-8 with a byte-order mark and CRLF line ends, so
  Excel on Chinese Windows opens it with the Chinese intact;
* printable HTML (:meth:`AccessReport.to_html`), signed: it states the SHA-256 of its
  content and an Ed25519 signature of that by this host's signing key, which
  :func:`access.report_signature.check_report` (``liuhen audit verify-report``) checks.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access.audit import (
    POSITION_KEY,
    RESULT_KEY,
    SOURCE_KEY,
    WATCHED_KEY,
    AccessEvent,
    action_label,
    result_label,
)
from access.report_html import render_html
from catalog.cases import get_case
from catalog.chainrule import ChainChecker
from catalog.custody import ACCESS_NAMESPACE, catalog_keys
from catalog.errors import CatalogError
from catalog.models import (
    Case,
    CaseRecording,
    CustodyEvent,
    Derivative,
    Device,
    Docking,
    Officer,
    Recording,
)
from catalog.signing import Signer
from config.errors import EXIT_NOINPUT
from config.i18n import N_, _
from config.settings import CHINA_STANDARD_TIME
from config.timetext import show_time

# What a custody action is called in the report; others are shown as written.
CUSTODY_LABELS = {
    "docked": N_("docked"),
    "offloaded": N_("copied from the recorder"),
    "quarantined": N_("quarantined"),
    "safe-to-clear": N_("SAFE TO CLEAR"),
    "incomplete": N_("docking incomplete"),
    "cleared": N_("recorder cleared"),
    "stored": N_("stored"),
    "verified": N_("verified"),
    "probed": N_("probed"),
    "derived": N_("derivative made"),
    "attached": N_("attached to a case"),
    "detached": N_("detached from a case"),
    "legal-hold-placed": N_("legal hold placed"),
    "legal-hold-released": N_("legal hold released"),
    "marked-important": N_("marked important"),
    "reviewed": N_("reviewed"),
    "officer-resolved": N_("officer resolved"),
    "cleared-from-recorder": N_("cleared from the recorder"),
    "flagged-damaged": N_("flagged damaged"),
    "expiry-decided": N_("retention decided"),
    "expired-deleted": N_("deleted at the end of retention"),
    "expiry-undone": N_("retention decision undone"),
    "exported": N_("exported"),
    "case-created": N_("case created"),
    "case-updated": N_("case updated"),
    "case-closed": N_("case closed"),
    "case-reopened": N_("case reopened"),
    "action-recorded": N_("enforcement action recorded"),
}
# What the usual keys of an event's details are called; others are shown as written.
DETAIL_LABELS = {
    "case": N_("case number"),
    "reason": N_("reason"),
    "method": N_("method"),
    "error": N_("error"),
    "store": N_("store"),
    "path": N_("path"),
    "unit": N_("unit"),
    "station": N_("station"),
    "role": N_("role"),
    "officer": N_("officer"),
    "name": N_("name"),
    "kind": N_("kind"),
    "size": N_("size"),
    "bytes": N_("bytes"),
    "files": N_("files"),
    "docking": N_("docking"),
    "hold": N_("legal hold"),
    "keep_until": N_("keep until"),
    "copy": N_("copy"),
    "format": N_("format"),
    "export": N_("export"),
    "permission": N_("permission"),
    "user": N_("user"),
    "until": N_("until"),
    "change": N_("change"),
    "minutes": N_("minutes"),
    "serial": N_("serial number"),
    "slot": N_("dock slot"),
    "identity": N_("identity from"),
    "key": N_("object key"),
    "flags": N_("flags"),
}
CUSTODY, ACCESS = "custody", "access"


class ReportSubjectNotFound(CatalogError):
    exit_code = EXIT_NOINPUT


@dataclass(frozen=True)
class ReportRow:
    """One event of the report: an access or a custody event."""

    kind: str  # CUSTODY or ACCESS
    at: datetime  # UTC
    actor: str
    action: str
    object_label: str
    source: str
    result: str
    position_s: float | None
    duration_s: float | None
    details: dict[str, Any]
    station_id: str
    seq: int
    event_hash: str
    problems: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.kind == ACCESS:
            return action_label(self.action)
        known = CUSTODY_LABELS.get(self.action)
        return _(known) if known else self.action

    def details_text(self) -> str:
        """The details a person reads: ``key: value`` pairs, in the event's order."""
        return details_text(self.details)


@dataclass(frozen=True)
class RecordingFacts:
    id: int
    name: str
    sha256: str
    sm3: str
    size: int
    device: str
    officer: str
    captured_at: datetime | None
    capture_end: datetime | None
    received_at: datetime | None
    state: str
    cases: tuple[str, ...]


@dataclass
class AccessReport:
    """The report for one recording (``subject_kind`` "recording") or one case ("case")."""

    subject_kind: str
    subject: str  # the recording's id or the case's number
    recordings: list[RecordingFacts]
    rows: list[ReportRow]
    case: dict[str, str] = field(default_factory=dict)  # number, title, unit, status
    zone: tzinfo = CHINA_STANDARD_TIME
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    generated_by: str = ""
    signer: Signer | None = None

    @property
    def access_rows(self) -> list[ReportRow]:
        return [r for r in self.rows if r.kind == ACCESS]

    @property
    def custody_rows(self) -> list[ReportRow]:
        return [r for r in self.rows if r.kind == CUSTODY]

    @property
    def problems(self) -> list[str]:
        return [f"{r.station_id} #{r.seq}: {p}" for r in self.rows for p in r.problems]

    @property
    def subject_ref(self) -> str:
        """What the signature names: ``recording:12`` or ``case:<number>``."""
        return f"{self.subject_kind}:{self.subject}"

    def when(self, at: datetime | None) -> str:
        return show_time(at, self.zone)

    def to_csv(self) -> bytes:
        """Every event as one table, oldest first: UTF-8 with BOM, CRLF (Excel)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow([_(h) for h in CSV_HEADERS])
        for r in self.rows:
            w.writerow([_cell(v) for v in _csv_values(self, r)])
        return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")

    def to_html(self, signer: Signer | None = None) -> str:
        """The printable report, signed by ``signer`` (default: the report's own)."""
        signer = signer or self.signer
        if signer is None:
            raise ValueError("an access report is signed: give the host's signer")
        return render_html(self, signer)


CSV_HEADERS = (
    N_("Kind"),
    N_("Time"),
    N_("Who"),
    N_("From"),
    N_("Action"),
    N_("Object"),
    N_("Result"),
    N_("Position"),
    N_("Watched"),
    N_("Details"),
    N_("Station"),
    N_("Event no."),
    N_("Event hash"),
    N_("Check"),
)


def _csv_values(report: AccessReport, r: ReportRow) -> list[str]:
    return [
        _("access") if r.kind == ACCESS else _("custody"),
        report.when(r.at),
        r.actor,
        r.source,
        r.label,
        r.object_label,
        result_label(r.result) if r.result else "",
        clock_text(r.position_s),
        clock_text(r.duration_s),
        r.details_text(),
        r.station_id,
        str(r.seq),
        r.event_hash,
        "; ".join(r.problems) if r.problems else _("verifies"),
    ]


LOG_HEADERS = (
    N_("Time"),
    N_("Who"),
    N_("From"),
    N_("Action"),
    N_("Object"),
    N_("Result"),
    N_("Position"),
    N_("Watched"),
    N_("Details"),
    N_("Station"),
    N_("Event no."),
    N_("Event hash"),
)


def events_csv(events: Iterable[AccessEvent], zone: tzinfo) -> bytes:
    """Access events (``liuhen audit log --csv``) as CSV for Excel: BOM, CRLF."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([_(h) for h in LOG_HEADERS])
    for e in events:
        details = dict(e.details)
        details.pop("recording_id", None)
        position = _seconds(details.pop(POSITION_KEY, None))
        watched = _seconds(details.pop(WATCHED_KEY, None))
        values = [
            show_time(e.at, zone),
            e.actor,
            e.source,
            action_label(e.action),
            e.object_text(),
            result_label(e.result),
            clock_text(position),
            clock_text(watched),
            details_text(details),
            e.station_id,
            str(e.seq),
            e.event_hash,
        ]
        w.writerow([_cell(v) for v in values])
    return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")


def _cell(value: str) -> str:
    """A CSV cell Excel shows as text: one starting like a formula is quoted with ' so
    that opening the report never runs what someone typed into a reason or a name."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def clock_text(seconds: float | None) -> str:
    """Seconds as ``H:MM:SS`` (with tenths when not whole); empty for none."""
    if seconds is None:
        return ""
    whole = int(seconds)
    tenths = round((seconds - whole) * 10)
    if tenths == 10:
        whole, tenths = whole + 1, 0
    text = f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return text + (f".{tenths}" if tenths else "")


def details_text(details: dict[str, Any]) -> str:
    """``key: value; …`` with the usual keys named in the reader's language."""
    return "; ".join(f"{_label(k)}: {_plain(v)}" for k, v in details.items())


def _label(key: str) -> str:
    known = DETAIL_LABELS.get(key)
    return _(known) if known else key


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


# -- gathering ------------------------------------------------------------------------------


def access_report(
    session: Session,
    *,
    recording_id: int | str | None = None,
    case_number: str | None = None,
    zone: tzinfo = CHINA_STANDARD_TIME,
    signer: Signer | None = None,
    generated_by: str = "",
) -> AccessReport:
    """The report for one recording (by catalog id) or one case (by number)."""
    if (recording_id is None) == (case_number is None):
        raise ValueError("give a recording id or a case number")
    case: Case | None = None
    if case_number is not None:
        case = get_case(session, case_number)
        recs = list(
            session.scalars(
                select(Recording)
                .join(CaseRecording, CaseRecording.recording_id == Recording.id)
                .where(CaseRecording.case_id == case.id)
                .order_by(Recording.captured_at, Recording.id)
            )
        )
    else:
        recs = [_recording(session, recording_id)]
    labels = _object_labels(session, recs)
    if case is not None:
        labels[case.number] = _("case {number}").format(number=case.number)
    rows = _rows(session, labels)
    report = AccessReport(
        subject_kind="case" if case is not None else "recording",
        subject=case.number if case is not None else str(recs[0].id),
        recordings=[_facts(session, r) for r in recs],
        rows=rows,
        zone=zone,
        signer=signer,
        generated_by=generated_by,
    )
    if case is not None:
        report.case = {
            "number": case.number,
            "title": case.title,
            "unit": case.unit,
            "status": case.status,
        }
    return report


def _recording(session: Session, ref: int | str | None) -> Recording:
    rec = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit() and len(ref) < 20):
        rec = session.get(Recording, int(ref))
    if rec is None:
        raise ReportSubjectNotFound(
            _("no recording with id {id}").format(id=ref),
            hint=_("liuhen show NAME prints a recording's id"),
        )
    return rec


def _object_labels(session: Session, recs: Sequence[Recording]) -> dict[str, str]:
    """Custody object id -> what the report calls it: each recording's digest, its
    derivatives' digests and its docking's uid."""
    labels: dict[str, str] = {}
    ids = [r.id for r in recs]
    for r in recs:
        labels[r.sha256] = _("recording #{id}").format(id=r.id)
    for chunk in _chunks(ids):
        for d in session.scalars(select(Derivative).where(Derivative.recording_id.in_(chunk))):
            labels.setdefault(
                d.sha256, _("{kind} of recording #{id}").format(kind=d.kind, id=d.recording_id)
            )
        for uid in session.scalars(
            select(Docking.uid)
            .join(Recording, Recording.docking_id == Docking.id)
            .where(Recording.id.in_(chunk))
        ):
            labels.setdefault(uid, _("docking {uid}").format(uid=uid))
    return labels


def _rows(session: Session, labels: dict[str, str]) -> list[ReportRow]:
    """Every event about the objects, custody and access, each checked by the custody
    rule; in time order."""
    events: dict[int, CustodyEvent] = {}
    for chunk in _chunks(sorted(labels)):
        for ev in session.scalars(select(CustodyEvent).where(CustodyEvent.object_id.in_(chunk))):
            events[ev.id] = ev
    # The one custody rule, on this excerpt in (station, seq) order: each event's hash
    # and signature (a whole chain is `liuhen custody verify`'s).
    checker = ChainChecker(catalog_keys(session), whole=False)
    found = {
        ev.id: [f"{i.kind}: {i.detail}" for i in checker.check(ev)]
        for ev in sorted(events.values(), key=lambda e: (e.station_id, e.seq))
    }
    rows = [_row(ev, labels, found[ev.id]) for ev in events.values()]
    return sorted(rows, key=lambda r: (r.at, r.station_id, r.seq))


def _row(ev: CustodyEvent, labels: dict[str, str], problems: Iterable[str]) -> ReportRow:
    try:
        details = json.loads(ev.details)
    except ValueError:
        details = {"unreadable": ev.details}
    if not isinstance(details, dict):
        details = {"value": details}
    access = ev.action.startswith(ACCESS_NAMESPACE)
    result = str(details.pop(RESULT_KEY, "")) if access else ""
    source = str(details.pop(SOURCE_KEY, "") or "") if access else ""
    details.pop("recording_id", None)  # the object column names the recording
    return ReportRow(
        kind=ACCESS if access else CUSTODY,
        at=datetime.fromisoformat(ev.at.replace("Z", "+00:00")),
        actor=ev.actor,
        action=ev.action,
        object_label=labels.get(ev.object_id, f"{ev.object_type} {ev.object_id}"),
        source=source,
        result=result,
        position_s=_seconds(details.pop(POSITION_KEY, None)) if access else None,
        duration_s=_seconds(details.pop(WATCHED_KEY, None)) if access else None,
        details=details,
        station_id=ev.station_id,
        seq=ev.seq,
        event_hash=ev.event_hash,
        problems=tuple(problems),
    )


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _facts(session: Session, rec: Recording) -> RecordingFacts:
    device = session.get(Device, rec.device_id) if rec.device_id else None
    officer = session.get(Officer, rec.officer_id) if rec.officer_id else None
    cases = session.scalars(
        select(Case.number)
        .join(CaseRecording, CaseRecording.case_id == Case.id)
        .where(CaseRecording.recording_id == rec.id, CaseRecording.detached_at.is_(None))
        .order_by(Case.number)
    )
    return RecordingFacts(
        id=rec.id,
        name=rec.original_name,
        sha256=rec.sha256,
        sm3=rec.sm3,
        size=rec.size,
        device=device.serial if device else "",
        officer=officer.number if officer else "",
        captured_at=rec.captured_at,
        capture_end=rec.capture_end,
        received_at=rec.received_at,
        state=str(rec.state),
        cases=tuple(cases),
    )


def _chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
