"""District invariants: the catalog and the object store checked against each other.

`liuhen verify --district` and the district simulation (tests/district/) call
:func:`check_district`. It reads the whole catalog and lists the whole store, and reports
every violation it finds, each naming the object (docking uid, recording SHA-256, object
key, work item id, custody event), never only the first:

* every file of every docking is stored exactly once: each registered docking file points
  at a recording; each recording's object exists with its size, SHA-256 and SM3 (the
  bytes re-read from the store: all of them, or a deterministic sample at large size);
  one ``stored`` custody event per recording; object keys unique and content-derived;
* every docking is SAFE_TO_CLEAR/CLEARED with all its files registered, or visibly
  waiting: OFFLOADING updated recently (or its station's heartbeat is recent),
  INCOMPLETE with the reason listed;
* no work item claimed by a dead process stays stuck past its lease (plus a grace), none
  failed for good, and no media work was done twice to completion (one ``probed`` event
  per recording, one derivative and one ``derived`` event per recording and kind);
* the custody chain of every station verifies (:func:`catalog.verify_chain`), and holds
  every event its signed chain heads (anchors) in the store, and those the caller read
  elsewhere (the station journal), vouch for: no tail truncation, rollback or missing
  event (the same check as `custody verify` and `doctor`);
* store and catalog agree: every object is referenced by a recording or a derivative (no
  orphans), every referenced object exists;
* retention: an EXPIRED recording's objects are gone, unless something live still names
  them (shared bytes), and are not reported missing; an EXPIRING one's may be either way
  (the next sweep finishes it). A recording restored after its expiry was stored, probed
  and derived once more: one more of each per ``restored-after-expiry`` event;
* optionally, against ground truth: the SHA-256 of every file the recorders held equals
  the set of recordings reached through docking files.

It lives in ``archive_export`` rather than ``catalog`` because it lists and re-reads the
store, and ``catalog`` must not import ``storage``; like the bundle verifier, it is a
check an auditor runs over catalog and store together.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from archive_export.msg import Msg
from catalog import Catalog, verify_chain
from catalog.anchors import PREFIX, store_heads
from catalog.chainrule import ChainHead
from catalog.models import (
    CustodyEvent,
    Derivative,
    Docking,
    DockingFile,
    Heartbeat,
    Recording,
    WorkItem,
    utcnow,
)
from catalog.states import PROBED_STATES, DockingState, RecordingState
from config.i18n import N_
from storage import Digest, ObjectNotFound, ObjectStore, StorageError, content_key, digest_stream
from storage.base import DAMAGED_PREFIX

# Objects under these prefixes are not evidence: `store check` probes (kept when a bucket's
# default retention refuses their delete).
# Store check probes, and the damaged bytes a station kept aside when it replaced a
# damaged object from a recorder (evidence of the damage, named by a custody event).
IGNORED_PREFIXES = ("liuhen-check/", DAMAGED_PREFIX)
# Signed custody chain heads (catalog.anchors): evidence about the catalog, not objects it
# references.
ANCHORS_PREFIX = PREFIX
# The custody event of bytes stored again after their recording's expiry.
RESTORED = "restored-after-expiry"
# Docking-file states that mean "stored and verified" (CLEARED: also deleted from the
# recorder afterwards).
HELD_FILE_STATES = ("STORED", "DUPLICATE", "CLEARED")
SAFE_DOCKING_STATES = tuple(s.value for s in DockingState if s.is_safe_to_clear)


@dataclass(frozen=True)
class Violation:
    kind: str  # stable, for programs: object-missing, orphan-object, work-stuck, ...
    object: str  # what it is about: "docking <uid>", "recording <sha256>", "object <key>"
    detail: str

    def describe(self) -> Msg:
        """English as a ``str`` (programs), translated by ``msg.shown`` for people."""
        return Msg(
            N_("{kind}: {object}: {detail}"), kind=self.kind, object=self.object, detail=self.detail
        )


@dataclass
class DistrictReport:
    violations: list[Violation] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # what was looked at

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, kind: str, obj: str, detail: str) -> None:
        self.violations.append(Violation(kind, obj, detail))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": dict(self.counts),
            "violations": [
                v.__dict__ | {"detail": str(v.detail), "message": str(v.describe())}
                for v in self.violations
            ],
        }


@dataclass(frozen=True)
class CheckOptions:
    # Fraction of recordings and derivatives whose bytes are re-read and re-hashed (1.0:
    # all, 0: none, only sizes). Chosen by SHA-256, so the same objects every run.
    digest_sample: float = 1.0
    # Instead of a fraction: re-hash about this many objects (None: use digest_sample).
    digest_sample_count: int | None = None
    # An OFFLOADING docking counts as visibly waiting when updated (or its station seen)
    # this recently.
    stalled_after: timedelta = timedelta(minutes=10)
    # A CLAIMED work item may be this far past its lease before it counts as stuck (the
    # next worker's poll interval, clock skew between hosts).
    lease_grace: timedelta = timedelta(seconds=60)
    ignored_prefixes: tuple[str, ...] = IGNORED_PREFIXES
    # Station id -> key ids trusted from outside the catalog (see verify_chain).
    trusted: Mapping[str, Iterable[str]] | None = None
    # SHA-256 of every file the recorders held, when known (the simulation knows).
    expected_sha256: frozenset[str] | None = None
    # Signed chain heads read outside the catalog and the store (the station journal, an
    # auditor's bags); the store's own are always read.
    anchors: tuple[ChainHead, ...] = ()
    # An auditor's key ring was given: a station it does not name is untrusted.
    ring: bool = False


def check_district(
    catalog: Catalog,
    store: ObjectStore,
    options: CheckOptions | None = None,
    *,
    now: datetime | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> DistrictReport:
    """Check every invariant; return every violation found."""
    opts = options or CheckOptions()
    now = now or utcnow()
    say = on_progress or (lambda _m: None)
    report = DistrictReport()
    with catalog.session() as s:
        say("dockings")
        _check_dockings(s, report, opts, now)
        say("recordings and derivatives")
        referenced, missing, expired = _check_recordings(s, store, report, opts)
        say("work queue")
        _check_work(s, report, opts, now)
        say("custody chains")
        stored, unreadable = store_heads(store)
        custody = verify_chain(
            s, trusted=opts.trusted, ring=opts.ring, anchors=[*opts.anchors, *stored]
        )
        report.counts["custody_events"] = custody.events
        report.counts["custody_chains"] = len(custody.stations)
        report.counts["custody_chain_heads"] = len(opts.anchors) + len(stored)
        for p in custody.problems:
            report.add("custody", f"station {p.station_id}", p.describe())
        for i in unreadable:
            report.add("custody", "chain head", i.detail)
    say("store listing")
    _check_store(store, referenced, missing, expired, report, opts)
    return report


# -- dockings ---------------------------------------------------------------------------------


def _check_dockings(s: Any, report: DistrictReport, opts: CheckOptions, now: datetime) -> None:
    files_by_docking: dict[int, list[DockingFile]] = defaultdict(list)
    for f in s.scalars(select(DockingFile)):
        files_by_docking[f.docking_id].append(f)
    seen = {h.station_id: h.last_seen for h in s.scalars(select(Heartbeat)) if h.state == "running"}
    recording_ids = set(s.scalars(select(Recording.id)))
    dockings = list(s.scalars(select(Docking).order_by(Docking.id)))
    report.counts["dockings"] = len(dockings)
    report.counts["docking_files"] = sum(len(v) for v in files_by_docking.values())
    for d in dockings:
        name = f"docking {d.uid} (station {d.station_id}, slot {d.slot})"
        files = files_by_docking.get(d.id, [])
        for f in files:
            where = f"{name} file {f.relpath}"
            if f.state in HELD_FILE_STATES:
                if f.recording_id is None or f.recording_id not in recording_ids:
                    report.add(
                        "file-without-recording",
                        where,
                        Msg(
                            N_("state {state} but no recording row ({recording_id})"),
                            state=f.state,
                            recording_id=f.recording_id,
                        ),
                    )
            elif f.state == "QUARANTINED" and d.state in SAFE_DOCKING_STATES:
                report.add(
                    "docking-file-state",
                    where,
                    Msg(
                        N_("quarantined ({reason}) in a docking marked {state}"),
                        reason=f.reason,
                        state=d.state,
                    ),
                )
        if d.state in SAFE_DOCKING_STATES:
            # Every file the station found is registered: stored, duplicate or rejected.
            if len(files) != d.files_total:
                report.add(
                    "docking-files-missing",
                    name,
                    Msg(
                        N_(
                            "{state} with {files_total} files found on the recorder but {n_files} "
                            "registered in the catalog"
                        ),
                        state=d.state,
                        files_total=d.files_total,
                        n_files=len(files),
                    ),
                )
        elif d.state == "INCOMPLETE":
            if not d.problems:
                report.add(
                    "docking-incomplete-silent",
                    name,
                    Msg(N_("INCOMPLETE without any reason listed")),
                )
        elif d.state == "OFFLOADING":
            last = max(x for x in (d.updated_at, seen.get(d.station_id)) if x is not None)
            if now - last > opts.stalled_after:
                report.add(
                    "docking-stalled",
                    name,
                    Msg(
                        N_(
                            "OFFLOADING, no sign of life from it or its station since {since} "
                            "({seconds:.0f} s)"
                        ),
                        since=last.isoformat(),
                        seconds=(now - last).total_seconds(),
                    ),
                )
        else:
            report.add("docking-state", name, Msg(N_("unknown state {state!r}"), state=d.state))


# -- recordings, derivatives and their objects --------------------------------------------------


def _sampled(sha256: str, fraction: float) -> bool:
    if fraction >= 1.0:
        return True
    if fraction <= 0.0:
        return False
    return int(sha256[:8], 16) / 0x1_0000_0000 < fraction


def _check_object(
    store: ObjectStore,
    report: DistrictReport,
    what: str,
    key: str,
    size: int,
    sha256: str,
    sm3: str,
    rehash: bool,
    missing: set[str],
) -> None:
    try:
        info = store.head(key)
    except ObjectNotFound:
        report.add(
            "object-missing", what, Msg(N_("object {key} is not in {url}"), key=key, url=store.url)
        )
        missing.add(key)
        return
    if info.size != size:
        report.add(
            "object-size",
            what,
            Msg(
                N_("object {key} is {size} bytes, catalog says {expected}"),
                key=key,
                size=info.size,
                expected=size,
            ),
        )
        return
    if rehash:
        try:
            with store.open(key) as stream:
                got = digest_stream(stream, ("sha256", "sm3"))
        except StorageError as exc:
            report.add(
                "object-unreadable",
                what,
                Msg(N_("object {key}: {message}"), key=key, message=exc.message),
            )
            return
        for alg, want in (("sha256", sha256), ("sm3", sm3)):
            if got[alg] != Digest(alg, want):
                report.add(
                    "object-digest",
                    what,
                    Msg(
                        N_("object {key}: {alg} {hex}, catalog says {want}"),
                        key=key,
                        alg=alg,
                        hex=got[alg].hex,
                        want=want,
                    ),
                )
        report.counts["objects_rehashed"] = report.counts.get("objects_rehashed", 0) + 1


@dataclass
class _Objects:
    """What the recordings and derivatives check gathers about the store's objects."""

    fraction: float  # of the objects re-hashed (the sample)
    referenced: set[str] = field(default_factory=set)  # keys the catalog names (not EXPIRED)
    missing: set[str] = field(default_factory=set)  # of those, keys the store lacks
    expired: dict[str, str] = field(default_factory=dict)  # keys only expired ones name -> whose


def _check_recordings(
    s: Any, store: ObjectStore, report: DistrictReport, opts: CheckOptions
) -> tuple[set[str], set[str], dict[str, str]]:
    """Check each recording and derivative; returns the object keys the catalog names (short
    of EXPIRED), those of them the store does not have, and the keys only expired
    recordings name (with whose they were)."""
    recs = list(s.scalars(select(Recording).order_by(Recording.id)))
    report.counts["recordings"] = len(recs)
    seen = _Objects(_digest_fraction(s, len(recs), opts))
    events, derived_events = _custody_counts(s)
    for r in recs:
        _check_recording(store, report, r, events, seen)
    by_sha = {r.id: r.sha256 for r in recs}
    per_kind = _check_derivatives(s, store, report, {r.id: r for r in recs}, by_sha, seen)
    for (rec_id, kind), n in sorted(per_kind.items()):
        if n > 1:
            report.add(
                "processed-twice",
                f"recording {by_sha.get(rec_id, rec_id)}",
                Msg(N_("{n} '{kind}' derivatives"), n=n, kind=kind),
            )
    for (source, kind), n in sorted(derived_events.items()):
        if n > 1 + events[RESTORED][source]:
            report.add(
                "processed-twice",
                f"recording {source}",
                Msg(N_("{n} 'derived' custody events for its {kind}"), n=n, kind=kind),
            )
    _check_shared(s, report, recs)
    if opts.expected_sha256 is not None:
        _check_expected(s, report, opts.expected_sha256)
    return seen.referenced, seen.missing, seen.expired


def _digest_fraction(s: Any, recordings: int, opts: CheckOptions) -> float:
    """The share of objects to re-hash: given, or from a count of objects."""
    if opts.digest_sample_count is None:
        return opts.digest_sample
    total = recordings + (s.scalar(select(func.count()).select_from(Derivative)) or 0)
    return min(1.0, opts.digest_sample_count / total) if total else 1.0


def _custody_counts(s: Any) -> tuple[dict[str, Counter[str]], Counter[tuple[str, str]]]:
    """Per action, how many custody events name each object; and the 'derived' events per
    (source, kind)."""
    events: dict[str, Counter[str]] = defaultdict(Counter)
    derived_events: Counter[tuple[str, str]] = Counter()
    for action, object_id, details in s.execute(
        select(CustodyEvent.action, CustodyEvent.object_id, CustodyEvent.details).where(
            CustodyEvent.action.in_(["stored", "probed", "derived", RESTORED])
        )
    ):
        events[action][object_id] += 1
        if action == "derived":
            d = json.loads(details)
            derived_events[(str(d.get("source")), str(d.get("kind")))] += 1
    return events, derived_events


def _check_recording(
    store: ObjectStore,
    report: DistrictReport,
    r: Recording,
    events: Mapping[str, Counter[str]],
    seen: _Objects,
) -> None:
    what = f"recording {r.sha256} ({r.original_name})"
    if r.object_key != content_key(Digest("sha256", r.sha256)):
        report.add(
            "object-key",
            what,
            Msg(N_("key {object_key} is not the content key"), object_key=r.object_key),
        )
    if r.state == RecordingState.EXPIRED:
        seen.expired.setdefault(r.object_key, f"expired recording {r.sha256}")
    elif r.state == RecordingState.EXPIRING:
        seen.referenced.add(r.object_key)  # its deletion is under way: either way is right
    else:
        seen.referenced.add(r.object_key)
        _check_object(
            store,
            report,
            what,
            r.object_key,
            r.size,
            r.sha256,
            r.sm3,
            _sampled(r.sha256, seen.fraction),
            seen.missing,
        )
    # Each restore after expiry stores, probes and derives the bytes once more.
    lives = 1 + events[RESTORED][r.sha256]
    stored = events["stored"][r.sha256]
    if stored != lives:
        report.add(
            "stored-count",
            what,
            Msg(
                N_(
                    "{stored} 'stored' custody events (want {lives}: {restored} restored after "
                    "expiry)"
                ),
                stored=stored,
                lives=lives,
                restored=lives - 1,
            ),
        )
    probed = events["probed"][r.sha256]
    if probed > lives:
        report.add(
            "processed-twice", what, Msg(N_("probed {probed} times to completion"), probed=probed)
        )
    if r.state in PROBED_STATES and probed == 0:
        report.add(
            "probe-unrecorded",
            what,
            Msg(N_("state {state} without a 'probed' event"), state=r.state),
        )


def _check_derivatives(
    s: Any,
    store: ObjectStore,
    report: DistrictReport,
    by_id: Mapping[int, Recording],
    by_sha: Mapping[int, str],
    seen: _Objects,
) -> Counter[tuple[int, str]]:
    """Each derivative's key and object; returns how many of each kind a recording has."""
    derivs = list(s.scalars(select(Derivative).order_by(Derivative.id)))
    report.counts["derivatives"] = len(derivs)
    per_kind: Counter[tuple[int, str]] = Counter()
    for d in derivs:
        source = by_sha.get(d.recording_id, f"id {d.recording_id}")
        what = f"derivative {d.kind} {d.sha256} of recording {source}"
        per_kind[(d.recording_id, d.kind)] += 1
        if d.object_key != content_key(Digest("sha256", d.sha256)):
            report.add(
                "object-key",
                what,
                Msg(N_("key {object_key} is not the content key"), object_key=d.object_key),
            )
        state = by_id[d.recording_id].state if d.recording_id in by_id else None
        if state == RecordingState.EXPIRED:
            seen.expired.setdefault(d.object_key, f"{d.kind} of expired recording {source}")
            continue
        seen.referenced.add(d.object_key)
        if state != RecordingState.EXPIRING:
            _check_object(
                store,
                report,
                what,
                d.object_key,
                d.size,
                d.sha256,
                d.sm3,
                _sampled(d.sha256, seen.fraction),
                seen.missing,
            )
    return per_kind


def _check_shared(s: Any, report: DistrictReport, recs: list[Recording]) -> None:
    """Two recordings on one key would mean two catalog rows for one set of bytes."""
    rec_keys = Counter(r.object_key for r in recs)
    for key, n in rec_keys.items():
        if n > 1:
            report.add(
                "object-key-shared", f"object {key}", Msg(N_("named by {n} recordings"), n=n)
            )
    dup_sha = s.execute(
        select(Recording.sha256, func.count()).group_by(Recording.sha256).having(func.count() > 1)
    ).all()
    for sha, n in dup_sha:
        report.add("stored-twice", f"recording {sha}", Msg(N_("{n} recording rows"), n=n))


def _check_expected(s: Any, report: DistrictReport, expected: frozenset[str]) -> None:
    """Every file a recorder held reaches a recording through a docking, and no other."""
    reached = set(
        s.scalars(
            select(Recording.sha256)
            .join(DockingFile, DockingFile.recording_id == Recording.id)
            .where(DockingFile.state.in_(HELD_FILE_STATES))
        )
    )
    for sha in sorted(expected - reached):
        report.add(
            "file-not-stored",
            f"recorder file {sha}",
            Msg(N_("a recorder held it, no docking file reaches a recording of it")),
        )
    for sha in sorted(reached - expected):
        report.add(
            "file-unexpected",
            f"recording {sha}",
            Msg(N_("stored through a docking, but no recorder held it")),
        )


# -- the work queue ---------------------------------------------------------------------------


def _check_work(s: Any, report: DistrictReport, opts: CheckOptions, now: datetime) -> None:
    items = list(s.scalars(select(WorkItem).order_by(WorkItem.id)))
    report.counts["work_items"] = len(items)
    by_state = Counter(i.state for i in items)
    for state, n in by_state.items():
        report.counts[f"work_{state.lower()}"] = n
    probe_subjects = {i.subject for i in items if i.kind == "probe"}
    for i in items:
        what = f"work item {i.id} ({i.kind} of recording {i.subject})"
        if (
            i.state == "CLAIMED"
            and i.lease_expires_at is not None
            and now - i.lease_expires_at > opts.lease_grace
        ):
            report.add(
                "work-stuck",
                what,
                Msg(
                    N_(
                        "claimed by {lease_owner}, lease expired {total_seconds:.0f} s ago, not "
                        "taken over"
                    ),
                    lease_owner=i.lease_owner,
                    total_seconds=(now - i.lease_expires_at).total_seconds(),
                ),
            )
        elif i.state == "FAILED":
            report.add(
                "work-failed",
                what,
                Msg(
                    N_("failed for good after {attempts} attempts: {last_error}"),
                    attempts=i.attempts,
                    last_error=i.last_error,
                ),
            )
    # A probe is queued in the transaction that registers the recording.
    for rec_id, sha in s.execute(select(Recording.id, Recording.sha256)):
        if str(rec_id) not in probe_subjects:
            report.add("work-missing", f"recording {sha}", Msg(N_("no probe work item was queued")))


# -- the store ----------------------------------------------------------------------------------


def _check_store(
    store: ObjectStore,
    referenced: set[str],
    missing: set[str],
    expired: dict[str, str],
    report: DistrictReport,
    opts: CheckOptions,
) -> None:
    listed = 0
    present: set[str] = set()
    for key in store.list():
        if key.startswith(opts.ignored_prefixes) or key.startswith(ANCHORS_PREFIX):
            continue
        listed += 1
        present.add(key)
        if key in referenced:
            continue
        if key in expired:
            report.add(
                "orphan-object",
                f"object {key}",
                Msg(
                    N_(
                        "the {expired} (deleted at expiry, see its tombstone) is still in the "
                        "store, and nothing live names it"
                    ),
                    expired=expired[key],
                ),
            )
        else:
            report.add(
                "orphan-object",
                f"object {key}",
                Msg(N_("in the store, but no recording or derivative names it")),
            )
    report.counts["objects_listed"] = listed
    # Missing objects were already named one by one (head); the listing catches objects a
    # head reached through a cache or another replica but the bucket listing does not hold.
    for key in sorted(referenced - present - missing):
        report.add(
            "object-unlisted",
            f"object {key}",
            Msg(N_("named by the catalog, answers head, but is not in the store listing")),
        )
