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
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from queue import Full, Queue
from typing import Any

from sqlalchemy import select

from catalog import Catalog, CatalogUnavailable, Signer, anchors, queue
from catalog.attach import after_probe
from catalog.media import (
    DERIVE,
    PROBE,
    DerivedObject,
    ProbeOutcome,
    mark_derived,
    record_derivative,
    record_probe,
)
from catalog.models import Derivative, Docking, DockingFile, Recording
from catalog.retention import (
    delete_unreferenced,
    lock_object_keys,
    lock_recording,
)
from catalog.states import LIVE_STATES, PROBE_STATES, PROBED_STATES, RecordingState
from config import Settings
from ingest.identity import NameParser
from ingest.media import derive as D
from ingest.media.probe import probe
from ingest.media.timeevidence import TimeSources, derive_times
from ingest.metrics import ServiceMetrics, service_health, worker_details
from storage import Digest, LocalStore, ObjectStore, content_key, digest_stream
from storage.digest import READ_SIZE, new_hasher

log = logging.getLogger("liuhen.worker")


class LeaseLost(Exception):
    """Our claim on a work item lapsed and another worker holds it now."""


@dataclass
class WorkerStats:
    probed: int = 0
    derived: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


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
            settings.ingest.filename_patterns, settings.ingest.important_marker
        )
        self.scratch = settings.work_dir / self.owner.replace(":", "-")
        # Probe and derive events go on this host's custody chain: its head is anchored
        # in the store as the worker goes and when it stops (docs/custody.md).
        self._anchorer = anchors.Anchorer(
            catalog, signer, store, settings.station.anchor_interval_s
        )
        self._clear_old_scratch()
        # Derivatives are made durable by _keep only when the store will link the very
        # file (a LocalStore on the scratch's filesystem); S3, or a copy across
        # filesystems, writes and syncs a new copy anyway.
        self._sync_before_store = isinstance(store, LocalStore) and _same_filesystem(
            self.scratch, store.root
        )

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
                    items = queue.claim(s, [PROBE, DERIVE], self.owner, lease=self.lease)
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
        """Work left that this drain should wait for (claimed by others, or retrying)."""
        from catalog.models import WorkItem

        with self.catalog.session() as s:
            left = s.scalars(
                select(WorkItem.id)
                .where(
                    WorkItem.kind.in_([PROBE, DERIVE]),
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
            completed = False
            if kind == PROBE:
                completed = self.probe_recording(rec_id, item_id=item_id)
                stats.probed += 1
            else:
                self.derive_recording(rec_id)
                stats.derived += 1
            if not completed:
                with self.catalog.transaction() as s:
                    if not queue.complete(s, item_id, self.owner):
                        log.warning("work item %s was taken over by another worker", item_id)
            self.metrics.work_items.inc(kind=kind, result="done")
            self.metrics.work_seconds.observe(time.monotonic() - started, kind=kind)
        except LeaseLost as exc:  # not a failure: the worker that holds it finishes it
            log.warning("%s", exc)
        except CatalogUnavailable as exc:
            # Not the recording's fault, and nothing can be recorded now: the item goes
            # back to the queue when its lease ends, and is done again from the start.
            log.warning("%s of recording %s interrupted: %s", kind, rec_id, exc.message)
        except Exception as exc:
            log.exception("%s of recording %s failed", kind, rec_id)
            self.metrics.work_items.inc(kind=kind, result="failed")
            stats.failed += 1
            stats.errors.append(f"{kind} recording {rec_id}: {exc}")
            try:
                with self.catalog.transaction() as s:
                    queue.fail(
                        s,
                        item_id,
                        self.owner,
                        f"{type(exc).__name__}: {exc}",
                        retry_after=timedelta(seconds=30),
                    )
            except CatalogUnavailable as gone:  # the lease runs out instead
                log.warning(
                    "could not record the failure of work item %s: %s", item_id, gone.message
                )
        finally:
            done.set()
            renewer.join()

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
            if rec.state not in PROBE_STATES:
                return False
            mtime = s.scalars(
                select(DockingFile.mtime)
                .where(DockingFile.recording_id == rec.id)
                .order_by(DockingFile.id)
            ).first()
            docking = s.get(Docking, rec.docking_id) if rec.docking_id else None
            offset = (docking.identity_raw or {}).get("clock_offset_s") if docking else None
            name = rec.original_name
            sha, received = rec.sha256, rec.received_at
        with self._original(rec_id) as path:
            result = probe(path, ffprobe=self.settings.ffmpeg.ffprobe)
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
        flags: dict[str, Any] = {}
        if not result.ok:
            reason = result.error or "ffprobe could not read the file"
            if _looks_like_mp4(name) or "moov" in reason:
                flags["damaged"] = f"ffprobe: {reason}"
            else:
                flags["unreadable"] = f"ffprobe: {reason}"
        if times.flags:
            flags["time"] = list(times.flags)
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
            if item_id is not None and not queue.complete(s, item_id, self.owner):
                # Another worker took the item over (our lease lapsed): roll this back.
                raise LeaseLost(f"work item {item_id} was taken over by another worker")
        log.info("probed %s (%s): %s", sha[:12], name, result.kind if result.ok else "unreadable")
        return item_id is not None

    # -- derivatives ----------------------------------------------------------------------------

    def derive_recording(self, rec_id: int) -> None:
        with self.catalog.session() as s:
            rec = s.get(Recording, rec_id)
            assert rec is not None, rec_id
            if rec.state != RecordingState.PROBED:
                return
            info = dict(rec.probe or {})
            flags = dict(rec.flags or {})
            kind = rec.media_kind
            device_id = rec.device_id
        out_dir = Path(tempfile.mkdtemp(prefix=f"rec{rec_id}-", dir=self.scratch))
        try:
            with self._original(rec_id) as src:
                for derivation in self._plan(src, rec_id, kind, info, flags, device_id, out_dir):
                    self._keep(rec_id, derivation)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        with self.catalog.transaction() as s:
            rec = s.get(Recording, rec_id)
            assert rec is not None
            mark_derived(s, rec)
            group_id = rec.group_id
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

    def _plan(
        self,
        src: Path,
        rec_id: int,
        kind: str | None,
        info: dict[str, Any],
        flags: dict[str, Any],
        device_id: int | None,
        out_dir: Path,
    ) -> Iterator[Any]:
        m = self.settings.media
        ffmpeg = self.settings.ffmpeg.ffmpeg
        ffprobe = self.settings.ffmpeg.ffprobe
        duration = info.get("duration_s")
        if flags.get("damaged"):
            reference = self._reference_for(rec_id, device_id)
            if reference is None:
                log.info("recording %s is damaged and no healthy reference exists", rec_id)
                return
            with self._original(reference) as ref:
                recovered = D_recover(src, ref, out_dir, self.settings)
            if recovered is not None:
                yield recovered
            return
        plan_info = {
            "video_codec": info.get("video_codec"),
            "pix_fmt": info.get("pixel_format"),
            "audio_codec": info.get("audio_codec"),
            "kind": kind,
        }
        progress = _progress_logger(rec_id)
        if kind == "video":
            yield D.make_access_copy(
                src,
                out_dir,
                info=plan_info,
                ffmpeg=ffmpeg,
                duration_s=duration,
                profile=D.AccessProfile(crf=m.access_crf, preset=m.preset),
                ffprobe=ffprobe,
                timeout_factor=m.timeout_scale,
                on_progress=progress("access"),
                durable=False,
            )
            yield D.make_proxy(
                src,
                out_dir,
                info=plan_info,
                ffmpeg=ffmpeg,
                duration_s=duration,
                profile=D.ProxyProfile(
                    max_height=m.proxy_max_height, crf=m.proxy_crf, preset=m.preset
                ),
                ffprobe=ffprobe,
                timeout_factor=m.timeout_scale,
                on_progress=progress("proxy"),
                durable=False,
            )
            yield D.make_poster(
                src,
                out_dir,
                ffmpeg=ffmpeg,
                duration_s=duration,
                profile=D.PosterProfile(offset_s=m.poster_at_s),
                ffprobe=ffprobe,
                timeout_factor=m.timeout_scale,
                durable=False,
            )
        elif kind == "audio":
            yield D.make_audio_access(
                src,
                out_dir,
                info=plan_info,
                ffmpeg=ffmpeg,
                duration_s=duration,
                ffprobe=ffprobe,
                timeout_factor=m.timeout_scale,
                durable=False,
            )

    def _reference_for(self, rec_id: int, device_id: int | None) -> int | None:
        """A healthy H.264 recording of the same device, to borrow codec settings from."""
        with self.catalog.session() as s:
            query = select(Recording).where(Recording.id != rec_id, Recording.media_kind == "video")
            if device_id is not None:
                query = query.where(Recording.device_id == device_id)
            for r in s.scalars(query.order_by(Recording.id)):
                if (r.probe or {}).get("video_codec") == "h264" and not (r.flags or {}).get(
                    "damaged"
                ):
                    return r.id
        return None

    def _keep(self, rec_id: int, d: Any) -> None:
        """Store a finished derivative and record it, with its derivation event.

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
            profile=getattr(d, "profile", "") or "",
        )
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
                return
            if not self.store.exists(key):  # deleted since we stored it: store it again
                self._store_derivative(key, path, sha, size)
            record_derivative(s, self.signer, rec, obj, self.actor)
        self.metrics.derived_bytes.inc(obj.size)
        log.info("derived %s of recording %s (%s)", d.kind, rec_id, d.method)

    def _store_derivative(self, key: str, path: Path, sha: Digest, size: int) -> None:
        if isinstance(self.store, LocalStore):
            self.store.adopt(key, path, expected=sha, read_back=True)
        else:
            with open(path, "rb") as f:
                self.store.put(key, f, expected=sha, size=size)

    # -- inputs ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _original(self, rec_id: int) -> Iterator[Path]:
        """A local, read-only path of a stored original, checked against its SHA-256."""
        with self.catalog.session() as s:
            rec = s.get(Recording, rec_id)
            assert rec is not None
            key, sha = rec.object_key, Digest("sha256", rec.sha256)
        if isinstance(self.store, LocalStore):
            # The object file itself: read-only on disk, and ffmpeg only reads it.
            yield self.store.root / key
            return
        fd, name = tempfile.mkstemp(prefix="orig-", dir=self.scratch)
        try:
            with os.fdopen(fd, "wb") as out, self.store.open(key) as src:
                shutil.copyfileobj(src, out, 1 << 20)
            with open(name, "rb") as f:
                got = digest_stream(f)["sha256"]
            if got != sha:
                from storage import DigestMismatch

                raise DigestMismatch(f"{self.store.url}/{key}", sha, got)
            yield Path(name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


def D_recover(src: Path, ref: Path, out_dir: Path, settings: Settings) -> Any:
    from ingest.media.recover import recover_truncated_mp4

    return recover_truncated_mp4(
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


def _same_filesystem(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` (or, not made yet, their nearest existing parents) share
    a filesystem. Unknown counts as the same: an extra fsync is only time."""
    try:
        return _existing(a).stat().st_dev == _existing(b).stat().st_dev
    except OSError:
        return True


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


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
