"""`liuhen verify --store`: a fixity audit of the object store against the catalog.

Every original (and each of its derivatives) is read back from the store and re-hashed
with SHA-256 and SM3 in one pass; both digests and the size must equal the catalog's.
What is checked and what was found is recorded as it goes:

* a ``FixityRun`` row (scope, counts, ``cursor`` = the last recording id done, a report)
  and one ``FixityCheck`` row per object;
* ``Recording.verified_at`` for each original that verified;
* a custody event per failure (``fixity-failed``, naming the object) and one per run
  (``fixity-run``) — in the same transactions as the rows they describe.

A run works in batches, each committed with the cursor, so a killed run loses at most
one batch of work and resumes after the last committed recording (``--resume``, or
automatically when an unfinished run has the same scope). A mismatched or missing
object is reported, never deleted or repaired. An unreachable store stops the run (it
stays resumable) instead of marking every object failed.

Modes: ``all``; ``sample`` (N recordings drawn at random when the run starts, kept in
the run's scope so a resumed run checks the same ones); ``older-than`` (not verified
for N days; each verified recording leaves the selection, so a resumed run skips it).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from archive_export.msg import Msg, joined
from catalog.custody import append_event
from catalog.db import Catalog
from catalog.models import Derivative, FixityCheck, FixityRun, Recording
from catalog.signing import Signer
from catalog.states import RecordingState
from config.errors import EXIT_USAGE, LiuhenError
from config.i18n import N_
from storage import ObjectNotFound, ObjectStore, StorageError, StoreUnavailable, new_hasher

BATCH = 32
READ = 4 << 20
MAX_REPORTED = 1000  # failures kept in FixityRun.report (all are in FixityCheck rows)


class AuditUsageError(LiuhenError):
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Target:
    recording_id: int
    kind: str  # recording | derivative:<kind>
    sha256: str
    sm3: str
    size: int
    key: str


@dataclass
class Result:
    target: Target
    ok: bool
    detail: str
    nbytes: int


@dataclass
class AuditReport:
    run_uid: str
    run_id: int
    scope: dict[str, Any]
    resumed: bool = False
    checked: int = 0
    failed: int = 0
    bytes: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    state: str = "RUNNING"

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "run": self.run_uid,
            "scope": self.scope,
            "resumed": self.resumed,
            "state": self.state,
            "checked": self.checked,
            "failed": self.failed,
            "bytes": self.bytes,
            "failures": self.failures,
        }


def make_scope(
    mode: str,
    sample: int | None = None,
    older_than_days: float | None = None,
) -> dict[str, Any]:
    if mode == "all":
        return {"mode": "all"}
    if mode == "sample":
        if sample is None or sample < 1:
            raise AuditUsageError("--sample needs a positive number of recordings")
        return {"mode": "sample", "n": sample}
    if mode == "older-than":
        if older_than_days is None or older_than_days < 0:
            raise AuditUsageError("--older-than needs a number of days (0 or more)")
        return {"mode": "older-than", "days": older_than_days}
    raise AuditUsageError(f"unknown audit mode {mode!r}")


def audit_store(
    catalog: Catalog,
    store: ObjectStore,
    signer: Signer,
    *,
    scope: dict[str, Any],
    actor: str,
    resume: bool = False,
    workers: int = 2,
    batch: int = BATCH,
    on_result: Callable[[Result], None] | None = None,
    stop_after: int | None = None,
    on_total: Callable[[int], None] | None = None,
) -> AuditReport:
    """Run (or resume) a fixity audit; see the module docstring.

    ``stop_after`` ends the run, unfinished and resumable, after that many batches (tests
    use it to stand for a killed run).
    """
    run, resumed = _start_or_resume(catalog, signer, scope, actor, resume)
    report = AuditReport(
        run.uid,
        run.id,
        dict(run.scope),
        resumed=resumed,
        checked=run.checked,
        failed=run.failed,
        bytes=run.bytes,
        failures=list((run.report or {}).get("failures", [])),
    )
    if on_total is not None:
        on_total(_bytes_to_read(catalog, run))
    for batches, ids in enumerate(_batches(catalog, run, batch), 1):
        targets = _targets(catalog, ids)
        results = _check_all(store, targets, workers)
        _commit_batch(catalog, signer, run.id, ids[-1], results, actor, report)
        if on_result is not None:
            for r in results:
                on_result(r)
        if stop_after is not None and batches >= stop_after:
            return report
    _finish(catalog, signer, run.id, actor, report)
    return report


def _start_or_resume(
    catalog: Catalog, signer: Signer, scope: dict[str, Any], actor: str, resume: bool
) -> tuple[FixityRun, bool]:
    with catalog.transaction() as s:
        unfinished = s.scalars(
            select(FixityRun).where(FixityRun.state == "RUNNING").order_by(FixityRun.id.desc())
        ).all()
        for run in unfinished:
            same = {k: v for k, v in run.scope.items() if k != "ids"} == scope
            if resume or same:
                return run, True
        if scope["mode"] == "sample":
            ids = [r for r in s.scalars(_live_recordings())]
            picked = sorted(random.SystemRandom().sample(ids, min(scope["n"], len(ids))))
            scope = scope | {"ids": picked}
        run = FixityRun(
            uid=str(uuid.uuid4()), actor=actor, scope=scope, state="RUNNING", cursor=0, report={}
        )
        s.add(run)
        s.flush()
        return run, False


def _live_recordings() -> Any:
    # Not "has no tombstone": a recording restored after its expiry keeps its tombstone
    # and is live again.
    return (
        select(Recording.id)
        .where(Recording.object_key != "")
        .where(Recording.state != RecordingState.EXPIRED)
        .order_by(Recording.id)
    )


def _batches(catalog: Catalog, run: FixityRun, size: int) -> Iterator[list[int]]:
    cursor = run.cursor
    scope = run.scope
    while True:
        with catalog.session() as s:
            if scope["mode"] == "sample":
                ids = [i for i in scope.get("ids", []) if i > cursor][:size]
            else:
                q = _live_recordings().where(Recording.id > cursor)
                if scope["mode"] == "older-than":
                    limit = datetime.now(UTC) - timedelta(days=float(scope["days"]))
                    q = q.where((Recording.verified_at.is_(None)) | (Recording.verified_at < limit))
                ids = list(s.scalars(q.limit(size)))
        if not ids:
            return
        yield ids
        cursor = ids[-1]


def _bytes_to_read(catalog: Catalog, run: FixityRun) -> int:
    """What the rest of the run will read: its recordings' and their derivatives' sizes
    (one query per batch of ids, as the run itself goes)."""
    total = 0
    for ids in _batches(catalog, run, 5000):
        with catalog.session() as s:
            total += sum(
                n or 0 for n in s.scalars(select(Recording.size).where(Recording.id.in_(ids)))
            )
            sizes = s.scalars(select(Derivative.size).where(Derivative.recording_id.in_(ids)))
            total += sum(n or 0 for n in sizes)
    return total


def _targets(catalog: Catalog, ids: list[int]) -> list[Target]:
    out: list[Target] = []
    with catalog.session() as s:
        recs = {r.id: r for r in s.scalars(select(Recording).where(Recording.id.in_(ids)))}
        ders: dict[int, list[Derivative]] = {}
        for d in s.scalars(
            select(Derivative).where(Derivative.recording_id.in_(ids)).order_by(Derivative.id)
        ):
            ders.setdefault(d.recording_id, []).append(d)
        for rid in ids:
            r = recs.get(rid)
            if r is None:
                continue
            out.append(Target(rid, "recording", r.sha256, r.sm3, r.size, r.object_key))
            for d in ders.get(rid, []):
                out.append(
                    Target(rid, f"derivative:{d.kind}", d.sha256, d.sm3, d.size, d.object_key)
                )
    return out


def _check_all(store: ObjectStore, targets: list[Target], workers: int) -> list[Result]:
    if workers <= 1 or len(targets) <= 1:
        return [_check(store, t) for t in targets]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fixity") as pool:
        return list(pool.map(lambda t: _check(store, t), targets))


def _check(store: ObjectStore, t: Target) -> Result:
    sha, sm3 = new_hasher("sha256"), new_hasher("sm3")
    n = 0
    try:
        with store.open(t.key) as f:
            while chunk := f.read(READ):
                # Both digests over the same buffer; hashlib releases the GIL, so other
                # objects hash on the other threads meanwhile.
                sha.update(chunk)
                sm3.update(chunk)
                n += len(chunk)
    except ObjectNotFound:
        return Result(t, False, Msg(N_("missing: the object is not in the store")), 0)
    except StoreUnavailable:
        raise
    except StorageError as exc:
        return Result(t, False, Msg(N_("unreadable: {error}"), error=exc.message), n)
    except OSError as exc:
        return Result(t, False, Msg(N_("unreadable: {error}"), error=exc), n)
    problems: list[str] = []
    if n != t.size:
        problems.append(Msg(N_("size {size}, catalog says {expected}"), size=n, expected=t.size))
    for alg, got, want in (("sha256", sha.hexdigest(), t.sha256), ("sm3", sm3.hexdigest(), t.sm3)):
        if got != want:
            problems.append(
                Msg(N_("{alg} {got}, catalog says {expected}"), alg=alg, got=got, expected=want)
            )
    if problems:
        return Result(t, False, Msg(N_("mismatch: {problems}"), problems=joined(problems)), n)
    return Result(t, True, "", n)


def _commit_batch(
    catalog: Catalog,
    signer: Signer,
    run_id: int,
    last_id: int,
    results: list[Result],
    actor: str,
    report: AuditReport,
) -> None:
    now = datetime.now(UTC)
    with catalog.transaction() as s:
        run = s.get(FixityRun, run_id)
        assert run is not None
        done = set(
            s.scalars(
                select(FixityCheck.object_key).where(
                    FixityCheck.run_id == run_id,
                    FixityCheck.object_key.in_([r.target.key for r in results]),
                )
            )
        )
        ok_recordings: set[int] = set()
        for r in results:
            if r.target.key in done:  # an object shared by two rows: checked once per run
                continue
            done.add(r.target.key)
            s.add(
                FixityCheck(
                    run_id=run_id,
                    recording_id=r.target.recording_id,
                    object_key=r.target.key,
                    ok=r.ok,
                    detail=str(r.detail),  # stored in English, as every row
                    checked_at=now,
                )
            )
            report.checked += 1
            report.bytes += r.nbytes
            if r.ok:
                if r.target.kind == "recording":
                    ok_recordings.add(r.target.recording_id)
                continue
            report.failed += 1
            failure = {
                "recording_id": r.target.recording_id,
                "object": r.target.kind,
                "key": r.target.key,
                "sha256": r.target.sha256,
                "detail": str(r.detail),
            }
            if len(report.failures) < MAX_REPORTED:
                report.failures.append(failure)
            append_event(
                s,
                signer,
                actor=actor,
                action="fixity-failed",
                object_type="derivative" if r.target.kind != "recording" else "recording",
                object_id=r.target.sha256,
                details={
                    "run": run.uid,
                    "key": r.target.key,
                    "kind": r.target.kind,
                    "problem": str(r.detail),
                },
            )
        for rec in s.scalars(select(Recording).where(Recording.id.in_(ok_recordings))):
            rec.verified_at = now
        run.cursor = last_id
        _store_counts(run, report)


def _store_counts(run: FixityRun, report: AuditReport) -> None:
    run.checked, run.failed, run.bytes = report.checked, report.failed, report.bytes
    run.report = {"failures": report.failures}


def _finish(catalog: Catalog, signer: Signer, run_id: int, actor: str, report: AuditReport) -> None:
    with catalog.transaction() as s:
        run = s.get(FixityRun, run_id)
        assert run is not None
        run.state = "DONE"
        run.finished_at = datetime.now(UTC)
        _store_counts(run, report)
        scope = {k: v for k, v in run.scope.items() if k != "ids"}
        append_event(
            s,
            signer,
            actor=actor,
            action="fixity-run",
            object_type="fixity-run",
            object_id=run.uid,
            details={
                "scope": scope,
                "checked": report.checked,
                "failed": report.failed,
                "bytes": report.bytes,
                "resumed": report.resumed,
            },
        )
    report.state = "DONE"
