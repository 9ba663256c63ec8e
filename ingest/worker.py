"""`liuhen worker`: claims probe and derivative work from the catalog and does it.

Any number of workers on any host share the queue (SKIP LOCKED on PostgreSQL). A claim
is a lease, renewed while the work runs; a worker killed mid-transcode leaves only
scratch files (in its own work folder, cleared at start) and its lease lapses, so
another worker takes the item again. Outputs become objects only when complete and
checked; the catalog records each with its digests and a derivation event in one
transaction, so nothing half-done is ever visible.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import socket
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from queue import Full, Queue
from typing import Any

from sqlalchemy import select

from catalog import Catalog, CatalogUnavailable, Signer, anchors, queue
from catalog.attach import after_probe
from catalog.errors import RecordingBeingExpired
from catalog.media import (
    DERIVE,
    MEDIA_WORK_KINDS,
    PROBE,
    STEP_PREFIX,
    DerivedObject,
    ProbeOutcome,
    mark_derived,
    plan_derivatives,
    record_derivative,
    record_probe,
    set_flag,
    settle_derivation,
)
from catalog.media import record_damage as flag_damaged
from catalog.models import Derivative, Docking, DockingFile, Recording
from catalog.retention import (
    delete_unreferenced,
    lock_object_keys,
    lock_recording,
)
from catalog.states import LIVE_STATES, PROBE_STATES, PROBED_STATES, RecordingState
from config import Settings
from config.errors import EXIT_DATAERR, EXIT_TEMPFAIL, LiuhenError, UnavailableError
from config.message import stored
from ingest.identity import NameParser
from ingest.media import derive as D
from ingest.media import recover
from ingest.media.derive import Derivation
from ingest.media.probe import ProbeResult, probe
from ingest.media.structure import damage_reason
from ingest.media.timeevidence import TimeSources, derive_times
from ingest.metrics import ServiceMetrics, service_health, worker_details
from storage import Digest, ObjectStore, content_key
from storage.digest import READ_SIZE, new_hasher
from storage.errors import StorageError

log = logging.getLogger("liuhen.worker")


# How many healthy recordings are offered as the reference for a recovery (each is
# tested against the damaged data), and how many of the latest video recordings are
# looked through to find them.
REFERENCE_CANDIDATES = 6
REFERENCE_SCAN = 500


class LeaseLost(LiuhenError):
    """Our claim on a work item lapsed and another worker holds it now (not a failure:
    the worker that holds it finishes it)."""

    exit_code = EXIT_TEMPFAIL


class DamageFound(LiuhenError):
    """A check found the original damaged; ``reason`` names what is wrong. The recording
    is flagged damaged with a custody event and gets a recovery attempt: an outcome of
    its work item, not a failure."""

    exit_code = EXIT_DATAERR

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class WorkerStats:
    probed: int = 0
    derived: int = 0  # derivatives made
    failed: int = 0  # items that ended FAILED
    retrying: int = 0  # transient failures, queued to be tried again
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class NotMade:
    """A derivative step that ended without a derivative, and why (a flag for `show`)."""

    reason: str


@dataclass(frozen=True)
class DerivativePlan:
    """One derivative to make: its kind, the settings it is made with (recorded as the
    derivative's profile), and the call that makes it from the original into a scratch
    folder. ``note_flag`` names the recording flag that says why nothing was made."""

    kind: str
    profile: str
    make: Callable[[Path, Path], Derivation | NotMade]
    note_flag: str = ""


@dataclass(frozen=True)
class _Source:
    """What a derivative step needs to know of a recording (read in one short session)."""

    rec_id: int
    media_kind: str | None
    info: dict[str, Any]
    device_id: int | None
    at: datetime | None
    name: str


def derivatives_for(media_kind: str | None, flags: dict[str, Any], name: str) -> list[str]:
    """The derivative kinds a probed recording gets, one work item each."""
    if flags.get("unsupported"):
        return []  # this installation cannot decode it: any copy would fail, every time
    if flags.get("damaged"):
        # Recovery rebuilds a truncated MP4/QuickTime H.264 stream, nothing else.
        return ["recovered"] if _looks_like_mp4(name) else []
    if media_kind == "video":
        return ["access", "proxy", "poster"]
    if media_kind == "audio":
        return ["audio"]
    if media_kind == "image":
        return ["access", "thumbnail"]  # a JPEG of the photo, full size, and a small one
    return []


def probe_flags(result: ProbeResult, damage: str | None, name: str) -> dict[str, Any]:
    """The flags a probe raises: ``unsupported`` (this installation cannot decode it, the
    missing decoder named), ``damaged`` (its structure, or ffprobe, says what is wrong)
    or ``unreadable`` (ffprobe cannot read it, and it is no container known to break)."""
    if damage is not None:
        if not result.ok and result.error and result.unsupported is None:
            damage = f"{damage} (ffprobe: {result.error})"  # what ffprobe said, kept too
        return {"damaged": damage}
    if result.damaged is not None:
        return {"damaged": result.damaged}
    if result.unsupported is not None:
        return {"unsupported": result.unsupported}
    if result.ok:
        return {}
    reason = result.error or "ffprobe could not read the file"
    if _looks_like_mp4(name) or "moov" in reason:
        return {"damaged": f"ffprobe: {reason}"}
    return {"unreadable": f"ffprobe: {reason}"}


# ffmpeg killed by a signal (the kernel's OOM killer, an operator): not the input's fault.
_KILLED = re.compile(r"exited with status -\d+")


def classify_failure(exc: BaseException) -> str | None:
    """Whether a failed item would fail the same way again (DETERMINISTIC: the input or
    the output is at fault), or might not (TRANSIENT: a service was away, a time limit
    ran out, a process was killed, a tool is missing). None: not an error the worker
    expects at all (a bug), which is recorded and then raised."""
    if isinstance(exc, (D.DerivationTimeout, D.FfmpegMissingError)):
        return queue.TRANSIENT
    if isinstance(exc, D.DerivationError):
        return queue.TRANSIENT if _KILLED.search(exc.message) else queue.DETERMINISTIC
    # The store's errors too: an original missing or not matching its digest is not the
    # recording's fault, and a repair of the store makes the next try succeed.
    waits = (UnavailableError, StorageError, CatalogUnavailable, RecordingBeingExpired, OSError)
    if isinstance(exc, waits):
        return queue.TRANSIENT
    if isinstance(exc, LiuhenError):
        return queue.DETERMINISTIC
    return None


def _profile_text(profile: object) -> str:
    """A derivative's profile as recorded with it: its settings, ``name=value`` each."""
    assert dataclasses.is_dataclass(profile)
    return " ".join(f"{f.name}={getattr(profile, f.name)}" for f in dataclasses.fields(profile))


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog,
        store: ObjectStore,
        signer: Signer,
        owner: str | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.signer = signer
        self.metrics = metrics or ServiceMetrics()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.actor = f"worker:{signer.station_id}"
        self.lease = timedelta(seconds=settings.media.lease_s)
        self.parser = NameParser(
            settings.ingest.filename_patterns,
            settings.ingest.important_marker,
            zone=settings.station.time_zone,
        )
        self.scratch = settings.work_dir / self.owner.replace(":", "-")
        # Probe and derive events go on this host's custody chain: its head is anchored
        # in the store as the worker goes and when it stops (docs/custody.md).
        self._anchorer = anchors.Anchorer(
            catalog, signer, store, settings.station.anchor_interval_s
        )
        self._clear_old_scratch()
        # Derivatives are made durable by _keep only when the store will link the very
        # file (a directory store on the scratch's filesystem); an upload, or a copy
        # across filesystems, writes and syncs a new copy anyway.
        self._sync_before_store = store.can_link(self.scratch)

    def _clear_old_scratch(self) -> None:
        """Scratch left by killed workers of this host is garbage: nothing refers to it.

        A scratch folder is named ``<host>-<pid>-<hex>`` (the owner). Another host's
        folders are left alone (a data folder on shared storage: its pids mean nothing
        here); this host's are removed unless their process still runs. A name of no
        worker's form is not scratch of a live worker either, and goes.
        """
        base = self.settings.work_dir
        here = socket.gethostname().replace(":", "-")
        if base.is_dir():
            for child in base.iterdir():
                host, pid = _scratch_owner(child.name)
                if host is not None and (host != here or _pid_alive(pid)):
                    continue
                _remove_tree(child)
        self.scratch.mkdir(parents=True, exist_ok=True)

    # -- the loop -------------------------------------------------------------------------------

    def run(
        self, *, drain: bool = False, stop: threading.Event | None = None, idle_s: float = 2.0
    ) -> WorkerStats:
        # A heartbeat (and metrics endpoint, when configured) for as long as the loop runs.
        with service_health(
            self.catalog,
            self.settings,
            "worker",
            self.metrics,
            worker_details(self.catalog, self.metrics, self.owner),
        ):
            return self._run(drain=drain, stop=stop, idle_s=idle_s)

    def _run(self, *, drain: bool, stop: threading.Event | None, idle_s: float) -> WorkerStats:
        stop = stop or threading.Event()
        stats = WorkerStats()
        backoff = self.settings.ingest.retry_initial_s
        while not stop.is_set():
            try:
                with self.catalog.transaction() as s:
                    items = queue.claim(s, MEDIA_WORK_KINDS, self.owner, lease=self.lease)
                    claimed = [(i.id, i.kind, i.subject) for i in items]
                if not claimed and drain and not self._pending():
                    break
            except CatalogUnavailable as exc:
                # A district's catalog restarts or fails over now and then: wait for it
                # rather than exit (what this worker held goes back when its lease ends).
                log.warning("%s; retrying in %.0f s", exc.message, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.ingest.retry_max_s)
                continue
            backoff = self.settings.ingest.retry_initial_s
            if not claimed:
                self._anchorer.anchor(due_only=True)
                stop.wait(idle_s)
                continue
            for item_id, kind, subject in claimed:
                self._run_item(item_id, kind, int(subject), stats)
            self._anchorer.anchor(due_only=True)
        self._anchorer.anchor()  # the events of this run, vouched for before it ends
        shutil.rmtree(self.scratch, ignore_errors=True)
        return stats

    def _pending(self) -> bool:
        """Work left that this drain should wait for (claimed by others, or retrying after
        a transient failure; a deterministic one is FAILED at once and not waited for)."""
        from catalog.models import WorkItem

        with self.catalog.session() as s:
            left = s.scalars(
                select(WorkItem.id)
                .where(
                    WorkItem.kind.in_(MEDIA_WORK_KINDS),
                    WorkItem.state.in_([queue.PENDING, queue.CLAIMED]),
                )
                .limit(1)
            ).first()
        return left is not None

    def _run_item(self, item_id: int, kind: str, rec_id: int, stats: WorkerStats) -> None:
        done = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(item_id, done), daemon=True)
        renewer.start()
        started = time.monotonic()
        try:
            self._do_item(item_id, kind, rec_id, stats)
            self.metrics.work_items.inc(kind=kind, result="done")
            self.metrics.work_seconds.observe(time.monotonic() - started, kind=kind)
        except LeaseLost as exc:  # not a failure: the worker that holds it finishes it
            log.warning("%s", exc)
        except CatalogUnavailable as exc:
            # Not the recording's fault, and nothing can be recorded now: the item goes
            # back to the queue when its lease ends, and is done again from the start.
            log.warning("%s of recording %s interrupted: %s", kind, rec_id, exc.message)
        except Exception as exc:
            failure = classify_failure(exc)
            self._record_failure(item_id, kind, rec_id, exc, failure or queue.DETERMINISTIC, stats)
            if failure is None:
                raise  # a fault of ours, not of the input or a service: let it be seen
        finally:
            done.set()
            renewer.join()

    def _do_item(self, item_id: int, kind: str, rec_id: int, stats: WorkerStats) -> None:
        if kind == PROBE:
            self.probe_recording(rec_id, item_id=item_id)
            stats.probed += 1
        elif kind == DERIVE:
            self.plan_recording(rec_id, item_id=item_id)
        else:
            try:
                if self.derive_step(rec_id, kind.removeprefix(STEP_PREFIX), item_id=item_id):
                    stats.derived += 1
            except (DamageFound, D.DamagedSourceError) as exc:
                # Damage is an outcome, not a failure: flagged with its reason, and the
                # recording gets a recovery attempt instead of copies pretending to be
                # whole. A copy shorter than the streams (DamagedSourceError, a kind of
                # DerivationError) is caught here, before it could count as a failure.
                self.record_damage(rec_id, exc.reason, item_id=item_id)

    def _record_failure(
        self,
        item_id: int,
        kind: str,
        rec_id: int,
        exc: BaseException,
        failure: str,
        stats: WorkerStats,
    ) -> None:
        """Record why an item failed: FAILED at once when it would fail the same way again,
        back to the queue after a delay when it might not. Only the catalog being away is
        caught here: then the lease runs out and the item is taken again."""
        reason = f"{type(exc).__name__}: {exc}"
        try:
            with self.catalog.transaction() as s:
                item = queue.fail(s, item_id, self.owner, reason, failure=failure)
                final = item is not None and item.state == queue.FAILED
                retry_at = item.not_before if item is not None and not final else None
        except CatalogUnavailable as gone:
            log.warning("could not record the failure of work item %s: %s", item_id, gone.message)
            return
        self.metrics.work_items.inc(kind=kind, result="failed" if final else "retry")
        if final:
            log.error("%s of recording %s failed (%s): %s", kind, rec_id, failure, reason)
            stats.failed += 1
            stats.errors.append(f"{kind} recording {rec_id} ({failure}): {exc}")
        else:
            log.warning(
                "%s of recording %s failed, again at %s: %s", kind, rec_id, retry_at, reason
            )
            stats.retrying += 1

    def _renew(self, item_id: int, done: threading.Event) -> None:
        while not done.wait(self.lease.total_seconds() / 3):
            try:
                with self.catalog.transaction() as s:
                    queue.renew(s, item_id, self.owner, self.lease)
            except Exception:  # the catalog may be briefly away; the next try may work
                log.warning("could not renew the lease of work item %s", item_id)

    # -- probe ----------------------------------------------------------------------------------

    def probe_recording(self, rec_id: int, *, item_id: int | None = None) -> bool:
        """Probe one original. With ``item_id``, its work item is completed in the
        transaction that records the probe, and True is returned: a worker killed between
        two separate transactions would leave the item to be claimed and the recording
        probed a second time (found by the district simulation's checker)."""
        with self.catalog.session() as s:
            rec = s.get(Recording, rec_id)
            assert rec is not None, rec_id
            state = rec.state
            mtime = s.scalars(
                select(DockingFile.mtime)
                .where(DockingFile.recording_id == rec.id)
                .order_by(DockingFile.id)
            ).first()
            docking = s.get(Docking, rec.docking_id) if rec.docking_id else None
            offset = (docking.identity_raw or {}).get("clock_offset_s") if docking else None
            name = rec.original_name
            sha, received = rec.sha256, rec.received_at
        if state not in PROBE_STATES:
            self._complete(item_id)  # further along already (or expired): nothing to do
            return item_id is not None
        with self._original(rec_id) as path:
            result = probe(
                path, ffprobe=self.settings.ffmpeg.ffprobe, zone=self.settings.station.time_zone
            )
            damage = _structure_damage(path)
        fields = self.parser.parse(name)
        times = derive_times(
            TimeSources(
                file_name=fields.start,
                embedded=result.creation_time,
                file_mtime=mtime,
                received=received,
                clock_offset_s=_float(offset),
                duration_s=result.duration_s,
            ),
            threshold_s=self.settings.media.time_threshold_s,
        )
        flags = probe_flags(result, damage, name)
        if times.flags:
            # template + fields, English text beside them: shown in the reader's language
            flags["time"] = [stored(f) for f in times.flags]
        outcome = ProbeOutcome(
            probe=result.as_dict() | {"raw": result.raw},
            media_kind=result.kind,
            duration_s=result.duration_s,
            time_evidence=times.as_dict(),
            start=times.start,
            end=times.end,
            flags=flags,
            segment_seq=fields.seq,
        )
        with self.catalog.transaction() as s:
            # Locked (PostgreSQL): a sweep expiring this recording meanwhile is seen, not undone.
            rec = lock_recording(s, rec_id)
            assert rec is not None
            record_probe(s, self.signer, rec, outcome, self.actor)
            # With the capture time known: the recording's officer (device assignment at
            # capture), the important mark, and attachment to cases by rule.
            after_probe(
                s,
                self.signer,
                rec,
                name_officer=fields.officer,
                important=fields.important,
                policy=self.settings.retention,
                actor=self.actor,
                store=self.store,
            )
            self._complete_in(s, item_id)
        log.info("probed %s (%s): %s %s", sha[:12], name, result.kind, sorted(flags) or "ok")
        return item_id is not None

    def _complete(self, item_id: int | None) -> None:
        if item_id is not None:
            with self.catalog.transaction() as s:
                self._complete_in(s, item_id)

    def _complete_in(self, s: Any, item_id: int | None) -> None:
        """Complete our item in the caller's transaction; when another worker took it over
        (our lease lapsed), raise LeaseLost so that what this transaction did rolls back."""
        if item_id is not None and not queue.complete(s, item_id, self.owner):
            raise LeaseLost(f"work item {item_id} was taken over by another worker")

    # -- derivatives ----------------------------------------------------------------------------

    def plan_recording(self, rec_id: int, *, item_id: int | None = None) -> list[str]:
        """Queue one work item per derivative a probed recording should have, in the
        transaction that completes the planning item; returns their kinds. A recording
        that gets none (unreadable, a photo) is DERIVED here."""
        with self.catalog.transaction() as s:
            rec = lock_recording(s, rec_id)
            assert rec is not None, rec_id
            kinds: list[str] = []
            if rec.state == RecordingState.PROBED:
                kinds = derivatives_for(rec.media_kind, rec.flags or {}, rec.original_name)
                plan_derivatives(s, rec, kinds)
            derived, group_id = rec.state == RecordingState.DERIVED, rec.group_id
            self._complete_in(s, item_id)
        if derived:
            self._after_derived(group_id)
        return kinds

    def derive_recording(self, rec_id: int) -> None:
        """Make every derivative of a probed recording here and now, without the queue
        (for tools and benchmarks; the service runs one work item per derivative)."""
        with self.catalog.session() as s:
            rec = s.get(Recording, rec_id)
            assert rec is not None, rec_id
            if rec.state != RecordingState.PROBED:
                return
            kinds = derivatives_for(rec.media_kind, rec.flags or {}, rec.original_name)
        for kind in kinds:
            try:
                self.derive_step(rec_id, kind)
            except D.DamagedSourceError as exc:
                self.record_damage(rec_id, exc.reason)
                return
        with self.catalog.transaction() as s:
            rec = lock_recording(s, rec_id)
            assert rec is not None
            mark_derived(s, rec)
            group_id = rec.group_id
        self._after_derived(group_id)

    def derive_step(self, rec_id: int, kind: str, *, item_id: int | None = None) -> bool:
        """Make one derivative of a recording and record it (with ``item_id``, completing
        that item in the same transaction). True when a derivative was made."""
        with self.catalog.session() as s:
            rec = s.get(Recording, rec_id)
            assert rec is not None, rec_id
            made = s.scalars(
                select(Derivative.id).where(
                    Derivative.recording_id == rec_id, Derivative.kind == kind
                )
            ).first()
            flags = dict(rec.flags or {})
            # A damaged recording gets a recovery attempt only: never a copy pretending
            # to be whole (damage may be found after its other items were queued).
            skip = rec.state != RecordingState.PROBED or made is not None
            skip = skip or (bool(flags.get("damaged")) and kind != "recovered")
            source = _Source(
                rec_id=rec_id,
                media_kind=rec.media_kind,
                info=dict(rec.probe or {}),
                device_id=rec.device_id,
                at=rec.captured_at or rec.received_at,
                name=rec.original_name,
            )
        if skip:
            self._finish_step(rec_id, item_id)
            return False
        plan = self._plan(kind, source)
        out_dir = Path(tempfile.mkdtemp(prefix=f"rec{rec_id}-", dir=self.scratch))
        try:
            with self._original(rec_id) as src:
                result = plan.make(src, out_dir)
            if isinstance(result, NotMade):
                log.info("no %s of recording %s: %s", kind, rec_id, result.reason)
                self._finish_step(rec_id, item_id, note=(plan.note_flag, result.reason))
                return False
            self._keep(rec_id, result, profile=plan.profile, item_id=item_id)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        return True

    def _finish_step(
        self, rec_id: int, item_id: int | None, *, note: tuple[str, str] | None = None
    ) -> None:
        """Complete a derivative item that made nothing (with ``note``: a flag saying why)."""
        with self.catalog.transaction() as s:
            rec = lock_recording(s, rec_id)
            assert rec is not None
            if note is not None:
                set_flag(rec, *note)
            self._complete_in(s, item_id)
            derived = (
                item_id is not None
                and rec.state == RecordingState.PROBED
                and settle_derivation(s, rec)
            )
            group_id = rec.group_id
        if derived:
            self._after_derived(group_id)

    def record_damage(self, rec_id: int, reason: str, *, item_id: int | None = None) -> None:
        """Flag a recording damaged (``reason`` says what is wrong) with its custody event,
        and queue its recovery attempt; with ``item_id``, that item is completed, not
        failed: damage is what the file is, not a fault of the work."""
        with self.catalog.transaction() as s:
            rec = lock_recording(s, rec_id)
            assert rec is not None, rec_id
            flag_damaged(s, self.signer, rec, reason, self.actor)
            if rec.state == RecordingState.PROBED:
                kinds = derivatives_for(rec.media_kind, rec.flags or {}, rec.original_name)
                plan_derivatives(s, rec, kinds)
            self._complete_in(s, item_id)
            derived = rec.state == RecordingState.PROBED and settle_derivation(s, rec)
            group_id = rec.group_id
        log.warning("recording %s is damaged: %s", rec_id, reason)
        if derived:
            self._after_derived(group_id)

    def _after_derived(self, group_id: int | None) -> None:
        if self.settings.media.join_chapters and group_id is not None:
            self._join_chapters(group_id)

    def _join_chapters(self, group_id: int) -> None:
        """One joined access copy of a split recording, once all its segments are probed.

        It is kept as a derivative of the first segment; each segment stays its own
        original. Whichever worker finishes the last segment makes it.
        """
        with self.catalog.session() as s:
            members = list(
                s.scalars(
                    select(Recording)
                    .where(Recording.group_id == group_id)
                    .order_by(Recording.group_seq)
                )
            )
            if len(members) < 2 or any(m.state not in PROBED_STATES for m in members):
                return
            first = members[0].id
            ids = [m.id for m in members]
            done = s.scalars(
                select(Derivative.id).where(
                    Derivative.recording_id == first, Derivative.kind == "joined"
                )
            ).first()
        if done is not None:
            return
        out_dir = Path(tempfile.mkdtemp(prefix=f"group{group_id}-", dir=self.scratch))
        try:
            with contextlib.ExitStack() as stack:
                paths = [stack.enter_context(self._original(i)) for i in ids]
                joined = D.join_segments(
                    paths,
                    out_dir,
                    ffmpeg=self.settings.ffmpeg.ffmpeg,
                    ffprobe=self.settings.ffmpeg.ffprobe,
                    timeout_factor=self.settings.media.timeout_scale,
                    durable=False,
                )
                self._keep(first, joined)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)

    def _plan(self, kind: str, source: _Source) -> DerivativePlan:
        """How to make one derivative kind of ``source``, and the profile recorded with it."""
        m = self.settings.media
        ffmpeg = self.settings.ffmpeg.ffmpeg
        ffprobe = self.settings.ffmpeg.ffprobe
        info = source.info
        duration = info.get("duration_s")
        plan_info = {
            "video_codec": info.get("video_codec"),
            "pix_fmt": info.get("pixel_format"),
            "audio_codec": info.get("audio_codec"),
            "kind": source.media_kind,
        }
        progress = _progress_logger(source.rec_id)
        common: dict[str, Any] = {
            "ffmpeg": ffmpeg,
            "duration_s": duration,
            "ffprobe": ffprobe,
            "timeout_factor": m.timeout_scale,
            "durable": False,
        }
        if kind == "access":
            access = D.AccessProfile(crf=m.access_crf, preset=m.preset)
            return DerivativePlan(
                kind,
                _profile_text(access),
                lambda src, out: D.make_access_copy(
                    src, out, info=plan_info, profile=access, on_progress=progress(kind), **common
                ),
            )
        if kind == "proxy":
            proxy = D.ProxyProfile(max_height=m.proxy_max_height, crf=m.proxy_crf, preset=m.preset)
            return DerivativePlan(
                kind,
                _profile_text(proxy),
                lambda src, out: D.make_proxy(
                    src, out, info=plan_info, profile=proxy, on_progress=progress(kind), **common
                ),
            )
        if kind == "poster":
            poster = D.PosterProfile(offset_s=m.poster_at_s)
            return DerivativePlan(
                kind,
                _profile_text(poster),
                lambda src, out: D.make_poster(src, out, profile=poster, **common),
            )
        if kind == "audio":
            audio = D.AudioProfile()
            return DerivativePlan(
                kind,
                _profile_text(audio),
                lambda src, out: D.make_audio_access(
                    src, out, info=plan_info, profile=audio, **common
                ),
            )
        if kind == "thumbnail":
            photo = D.PhotoProfile()
            return DerivativePlan(
                kind,
                _profile_text(photo),
                lambda src, out: D.make_thumbnail(
                    src,
                    out,
                    profile=photo,
                    ffmpeg=ffmpeg,
                    ffprobe=ffprobe,
                    timeout_factor=m.timeout_scale,
                    durable=False,
                ),
            )
        if kind == "recovered":
            return DerivativePlan(
                kind, "", lambda src, out: self._recover(source, src, out), note_flag="recovery"
            )
        raise ValueError(f"the worker has no way to make a {kind!r} derivative")

    def _recover(self, source: _Source, src: Path, out_dir: Path) -> Derivation | NotMade:
        """Salvage a truncated recording with the codec settings of a healthy reference,
        chosen by :func:`ingest.media.recover.choose_reference` among a handful of healthy
        H.264 recordings (of the same device first): the one whose SPS/PPS fit the damaged
        data. With none that fits, nothing is made and the reason is the recovery flag."""
        candidates = self._reference_candidates(source)
        with contextlib.ExitStack() as stack:
            offered = [
                recover.ReferenceCandidate(
                    key=c.rec_id,
                    path=stack.enter_context(self._original(c.rec_id)),
                    same_device=source.device_id is not None and c.device_id == source.device_id,
                    seconds_apart=(
                        (c.at - source.at).total_seconds()
                        if c.at is not None and source.at is not None
                        else None
                    ),
                )
                for c in candidates
            ]
            choice = recover.choose_reference(src, offered)
            if choice.key is None:
                return NotMade(choice.reason)
            reference = next(o.path for o in offered if o.key == choice.key)
            recovered = D_recover(src, reference, out_dir, self.settings)
        if recovered is None:
            return NotMade(f"nothing could be salvaged with reference {choice.reason}")
        log.info("recording %s recovered with reference %s", source.rec_id, choice.reason)
        return recovered

    def _reference_candidates(self, source: _Source) -> list[_Source]:
        """Healthy H.264 MP4/QuickTime recordings that may lend a damaged one their codec
        settings: up to REFERENCE_CANDIDATES of the same device (the latest), then others
        (each candidate costs recover.choose_reference a read of its index)."""

        def healthy_h264(r: Recording) -> bool:
            info = r.probe or {}
            container = str(info.get("container") or "")
            flags = r.flags or {}
            return (
                info.get("video_codec") == "h264"
                and ("mp4" in container or "mov" in container)
                and not flags.get("damaged")
                and not flags.get("unsupported")
            )

        query = select(Recording).where(
            Recording.id != source.rec_id,
            Recording.media_kind == "video",
            Recording.state.in_(PROBED_STATES),
        )
        found: list[_Source] = []
        with self.catalog.session() as s:
            if source.device_id is not None:
                same = query.where(Recording.device_id == source.device_id)
                found += _sources(s, same, healthy_h264, REFERENCE_CANDIDATES)
            others = query.where(
                Recording.device_id.is_(None) | (Recording.device_id != source.device_id)
                if source.device_id is not None
                else Recording.id.is_not(None)
            )
            found += _sources(s, others, healthy_h264, REFERENCE_CANDIDATES - len(found))
        return found

    def _keep(
        self, rec_id: int, d: Derivation, *, profile: str = "", item_id: int | None = None
    ) -> None:
        """Store a finished derivative and record it, with its derivation event; with
        ``item_id``, complete that item in the same transaction (and mark the recording
        DERIVED when it was its last).

        The derivative was renamed into this worker's private scratch unsynced
        (``durable=False``): a crash before the store holds it loses only scratch, and
        the work item is taken again. Here it is made read-only, then hashed (SHA-256
        and SM3 on two threads) while its data is synced to disk on a third, and only
        then linked into the store. The store does not hash it again: the digest it
        would check is the one just computed from this same private, read-only file.
        """
        path = Path(d.path)
        os.chmod(path, 0o444)  # nothing writes it from here on; the store keeps it so
        digests, size = _digest_durably(path, sync=self._sync_before_store)
        sha = digests["sha256"]
        key = content_key(sha)
        self._store_derivative(key, path, sha, size)
        obj = DerivedObject(
            kind=d.kind,
            sha256=sha.hex,
            sm3=digests["sm3"].hex,
            size=size,
            object_key=key,
            method=d.method,
            command=list(d.command),
            tool_version=d.ffmpeg_version,
            duration_s=d.duration_s,
            profile=profile,
        )
        derived, group_id = False, None
        with self.catalog.transaction() as s:
            # The object's key lock first (the order every writer and the sweep keep): a
            # sweep deleting the same bytes for another, expired recording either sees this
            # reference or finished first, and then the object is stored again here.
            lock_object_keys(s, [key])
            # Locked: a retention sweep deleting this recording either lists this derivative
            # and deletes it too, or has decided first; then the copy is not kept (it would
            # outlive its expired original, with nothing left to expire it).
            rec = lock_recording(s, rec_id)
            assert rec is not None
            if rec.state not in LIVE_STATES:
                delete_unreferenced(s, self.store, key)
                log.info("dropped %s of recording %s: it is %s", d.kind, rec_id, rec.state)
                if item_id is not None:
                    queue.complete(s, item_id, self.owner)
                return
            if not self.store.exists(key):  # deleted since we stored it: store it again
                self._store_derivative(key, path, sha, size)
            record_derivative(s, self.signer, rec, obj, self.actor)
            if item_id is not None:
                # Recorded even when our lease lapsed meanwhile: the bytes are stored and
                # checked, and the holder of the item finds this derivative made.
                if not queue.complete(s, item_id, self.owner):
                    log.warning("work item %s was taken over by another worker", item_id)
                derived = rec.state == RecordingState.PROBED and settle_derivation(s, rec)
                group_id = rec.group_id
        self.metrics.derived_bytes.inc(obj.size)
        log.info("derived %s of recording %s (%s)", d.kind, rec_id, d.method)
        if derived:
            self._after_derived(group_id)

    def _store_derivative(self, key: str, path: Path, sha: Digest, size: int) -> None:
        # verified: the digest is the one _digest_durably just computed from this same
        # private, read-only file.
        self.store.put_file(key, path, expected=sha, size=size, verified=True)

    # -- inputs ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _original(self, rec_id: int) -> Iterator[Path]:
        """A local, read-only path of a stored original, checked against its SHA-256."""
        with self.catalog.session() as s:
            rec = s.get(Recording, rec_id)
            assert rec is not None
            key, sha = rec.object_key, Digest("sha256", rec.sha256)
        with self.store.local_file(key, sha, scratch=self.scratch) as path:
            yield path


def _structure_damage(path: Path) -> str | None:
    """What the container's structure, checked against the file itself, says is wrong
    (ffprobe reads what it can and is silent about what is missing). Bytes the check
    cannot make sense of are no finding either way: they leave ffprobe's word standing
    rather than stop the probe."""
    try:
        return damage_reason(path)
    except (ValueError, IndexError, struct.error) as exc:
        log.warning("structure check of %s gave no answer: %r", path.name, exc)
        return None


def _sources(s: Any, query: Any, keep: Callable[[Recording], bool], limit: int) -> list[_Source]:
    """Up to ``limit`` recordings of ``query`` (latest first) that ``keep`` accepts."""
    out: list[_Source] = []
    if limit <= 0:
        return out
    for r in s.scalars(query.order_by(Recording.id.desc()).limit(REFERENCE_SCAN)):
        if not keep(r):
            continue
        out.append(
            _Source(
                rec_id=r.id,
                media_kind=r.media_kind,
                info=dict(r.probe or {}),
                device_id=r.device_id,
                at=r.captured_at or r.received_at,
                name=r.original_name,
            )
        )
        if len(out) >= limit:
            break
    return out


def D_recover(src: Path, ref: Path, out_dir: Path, settings: Settings) -> Derivation | None:
    return recover.recover_truncated_mp4(
        src,
        ref,
        out_dir,
        ffmpeg=settings.ffmpeg.ffmpeg,
        ffprobe=settings.ffmpeg.ffprobe,
        durable=False,
    )


def _progress_logger(rec_id: int) -> Any:
    """ffmpeg progress, logged every 25 %, so a long transcode is visibly alive."""

    def for_kind(kind: str) -> Any:
        last = [-1]

        def report(fraction: float) -> None:
            step = int(fraction * 4)
            if step > last[0]:
                last[0] = step
                log.info("recording %s: %s %d%%", rec_id, kind, min(100, step * 25))

        return report

    return for_kind


def _looks_like_mp4(name: str) -> bool:
    return name.lower().endswith((".mp4", ".mov", ".m4a", ".3gp"))


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


# Chunks SM3 may lag behind the reader (which hashes SHA-256 as it reads): enough that
# SM3, the slowest step, never waits for a read or for the other thread's turn on a busy
# machine; few enough that memory stays a few MiB whatever the derivative's size.
_SM3_LAG = 8


def _digest_durably(path: Path, *, sync: bool) -> tuple[dict[str, Digest], int]:
    """SHA-256 and SM3 of a finished file, and its size; with ``sync``, its data on disk.

    One pass over the file (from the page cache: ffmpeg has just written it). The
    calling thread reads each chunk and hashes it with SHA-256; SM3 hashes the same
    chunk on a second thread, up to ``_SM3_LAG`` chunks behind; the fsync runs on a third
    meanwhile (the same pattern as the offload copy). hashlib and fsync release the GIL,
    so the step takes about as long as SM3 alone (the slowest of the three on a machine
    without SHA extensions) instead of the sum. Both digests are of the very same bytes,
    and a file bigger than the page cache is still read from disk once. ``fsync`` rather
    than ``fdatasync``: it also covers the read-only mode set just before, for the same
    cost on a file just written.
    """
    sha = new_hasher("sha256")
    sm3 = new_hasher("sm3")
    chunks: Queue[bytes | None] = Queue(maxsize=_SM3_LAG)

    def consume() -> None:
        while (chunk := chunks.get()) is not None:
            sm3.update(chunk)

    def feed(item: bytes | None) -> None:
        while True:
            try:
                chunks.put(item, timeout=1.0)
                return
            except Full:
                if sm3_done.done():  # SM3 failed: say why rather than wait forever
                    sm3_done.result()

    size = 0
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="keep") as pool:
        sm3_done = pool.submit(consume)
        fd = os.open(path, os.O_RDONLY)
        try:
            synced = pool.submit(os.fsync, fd) if sync else None
            try:
                while chunk := os.read(fd, READ_SIZE):
                    feed(chunk)
                    sha.update(chunk)
                    size += len(chunk)
            finally:
                feed(None)
            sm3_done.result()
            if synced is not None:
                synced.result()
        finally:
            os.close(fd)
    return {
        "sha256": Digest("sha256", sha.hexdigest()),
        "sm3": Digest("sm3", sm3.hexdigest()),
    }, size


def _scratch_owner(name: str) -> tuple[str | None, int]:
    """(host, pid) of a scratch folder named ``<host>-<pid>-<hex>``; (None, 0) otherwise."""
    host, sep, rest = name.rpartition("-")
    host, sep2, pid = host.rpartition("-")
    if not (sep and sep2 and host and pid.isdigit() and rest):
        return None, 0
    return host, int(pid)


def _remove_tree(path: Path) -> None:
    """Remove a scratch folder, or a stray file (which rmtree would leave)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)  # read-only files go too: it is the folder's
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
