"""A docking, end to end: scan → one read with copy and digests → store → catalog → safe.

File workers copy, hash and store files in parallel; one committer thread per station
registers the stored files in the catalog in batches (one transaction for up to 64
files), then marks them DONE in one journal transaction.

The Station holds what every docking shares (journal, pools, store, signer, committer);
each docking is an object of its own (:mod:`ingest.docking`) holding that docking's state,
and its outcome is a function of its files' states (:mod:`ingest.docking_outcome`).

State lives in the station journal first (durable without the catalog), then in the
catalog. Every step can be repeated: a station killed anywhere replays the journal and
ends with every file stored once and the custody chain whole. SAFE_TO_CLEAR is written
only after every file of the docking is stored, verified and registered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

import sm3engine
from catalog import Catalog, Signer, anchors
from catalog.dockings import (
    DockingInfo,
    DockingRef,
    OffloadedFile,
    Registered,
    display_name,
    docking_refs,
    ensure_docking,
    register_files,
)
from catalog.models import Docking
from catalog.retention import confirm_objects, lock_object_keys
from config import Settings
from config.errors import EXIT_USAGE
from config.i18n import _
from config.message import stored
from ingest import journal as J
from ingest.docking import (
    TRANSIENT,
    DockingResult,
    DockingWork,
    Progress,
    ProgressCallback,
    RecorderDocking,
    Stored,
    TransientHandler,
)
from ingest.identity import DeviceIdentity, NameParser, identify, several_recorders
from ingest.journal import Journal, JournalDocking, JournalFile
from ingest.metrics import ServiceMetrics
from ingest.offload import READ_BACK_CHECK, Copied, OffloadError, copy_and_hash, scan
from storage import ObjectStore, content_key, fsync_dir
from storage.base import damaged_key
from storage.digest import Digest, SharedLanes
from storage.errors import DamagedObject

log = logging.getLogger("liuhen.station")

# At most this many stored files are registered in one catalog transaction, gathered for
# at most this long while more are on their way (see _Committer).
COMMIT_BATCH_MAX = 64
COMMIT_WINDOW_S = 0.05

# While at least this many files are copied (each one's SM3 a stream of the station's
# shared engine), their chunks are hashed in its lanes; fewer, each on its own thread.
# Per core the engine's 16 lanes hash about 2.5 GB/s, a lane about a sixteenth of that,
# against 0.35 GB/s for one stream on its own: from three or four streams on, lanes beat
# a core each on a two-core station.
SHARED_SM3_FROM = 4

# At most this many staged files are journaled STAGED in one transaction (see _StagedGroup),
# as many as the committer registers in one.
STAGED_GROUP_MAX = 64

# The custody event ``verified`` of a file whose damaged held copy it replaced.
REPAIR_CHECK = (
    "damaged held copy replaced by the recorder's bytes (kept aside first) and "
    "read back in full (SHA-256)"
)


class SeveralRecorders(OffloadError):
    """A folder holding several recorders' folders: each is a docking of its own."""

    exit_code = EXIT_USAGE

    def __init__(self, root: Path, found: list[tuple[str, str]]) -> None:
        listed = ", ".join(f"{folder}/ ({serial})" for folder, serial in found)
        super().__init__(
            _("{root} holds several recorders: {listed}; it is not docked as one").format(
                root=root, listed=listed
            ),
            hint=_("dock each recorder folder on its own: {commands}").format(
                commands="; ".join(f"liuhen ingest {root / folder}" for folder, _s in found)
            ),
        )
        self.root = root
        self.folders = [root / folder for folder, _s in found]


# Re-exported: the names callers (the command line, tests) import from here.
__all__ = [
    "TRANSIENT",
    "DockingResult",
    "Progress",
    "ProgressCallback",
    "SeveralRecorders",
    "Station",
]


class _Committer:
    """One thread per station that registers stored files in batches (group commit).

    File workers store files in parallel and hand them here. Each batch is one catalog
    transaction and one journal transaction. Once a file has arrived, the thread waits up
    to ``window_s`` for more while more are on their way (files of a docking still being
    staged or stored, counted by :meth:`coming`), and takes up to ``max_batch``; with
    nothing more on its way, what has arrived is committed at once, so that a lone file
    (or a docking's last) never waits.
    """

    def __init__(
        self,
        commit: Callable[[list[Stored]], None],
        max_batch: int,
        window_s: float,
    ) -> None:
        self._commit = commit
        self._max = max_batch
        self._window = window_s
        self._cond = threading.Condition()
        self._items: deque[Stored] = deque()
        self._coming = 0  # files that will be submitted unless they fail on their way
        self._thread: threading.Thread | None = None
        self._closed = False

    def coming(self, n: int) -> None:
        """``n`` more files are on their way (negative: fewer, they will not come)."""
        with self._cond:
            self._coming = max(0, self._coming + n)
            if self._coming == 0:
                self._cond.notify()

    def submit(self, item: Stored, *, was_coming: bool) -> Future[Exception | None]:
        with self._cond:
            if self._closed:
                raise RuntimeError("the station is closed")
            if self._thread is None:
                # A daemon: every submitter waits for its files, so the thread holds no
                # work of its own when the process exits (and a kill is replayed anyway).
                self._thread = threading.Thread(target=self._run, name="committer", daemon=True)
                self._thread.start()
            self._items.append(item)
            if was_coming:
                self._coming = max(0, self._coming - 1)
            if len(self._items) in (1, self._max) or self._coming == 0:
                self._cond.notify()
        return item.done

    def close(self) -> None:
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    self._cond.wait()
                if not self._items:
                    return  # closed, and nothing left
                deadline = time.monotonic() + self._window
                while len(self._items) < self._max and self._coming and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch = [self._items.popleft() for _ in range(min(self._max, len(self._items)))]
            try:
                self._commit(batch)
            except BaseException as exc:  # the journal failed: each submitter sees it
                log.exception("registering %d stored files failed", len(batch))
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)


class _StagedGroup:
    """Group commit of staged files, on a thread of its own: the staging folders' fsync
    and the journal's STAGED moves of every file staged at about the same moment, done
    once for all of them, then what follows for each file.

    A worker whose file is staged (its ``.staged`` name in place) hands it over with
    :meth:`submit` and goes on to its next file; it does not wait for the disk. The
    group's thread flushes everything waiting (one fsync per staging folder, one journal
    transaction), then calls each file's ``then`` with the file's refusal or failure
    (None: STAGED is durable): the docking's worker used to wait for this itself,
    woken with every other waiting worker at the end of each flush (a hand-off of the
    interpreter lock each), and a second thread per copy slot kept the copies going
    meanwhile. No timer: a lone file is flushed at once, and files arriving during a
    flush go in the next. The order per file is unchanged (name durable in its folder,
    then STAGED in the journal, then ``then``: stored and registered), so a kill at any
    point leaves each file either PENDING (copied again) or STAGED with its staged copy
    in place.
    """

    def __init__(
        self, journal: Journal, max_group: int = STAGED_GROUP_MAX, after_workers: int = 16
    ) -> None:
        self._journal = journal
        self._max = max_group
        # What follows STAGED for each file (the store's put: a link on a directory store,
        # an upload on S3) runs on these threads, several files at once, so that neither a
        # slow put nor a store that is away holds up the next group's journal write.
        self._after = ThreadPoolExecutor(max(1, after_workers), thread_name_prefix="stored")
        self._cond = threading.Condition()
        self._waiting: list[_StagedSlot] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(
        self, folder: str, move: J.StagedMove, then: Callable[[BaseException | None], None]
    ) -> None:
        """Make ``move`` durable in the journal, then call ``then`` with its refusal or
        failure (None: done), on the group's thread. ``then`` settles whatever waits for
        the file; an error it raises is logged."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the station is closed")
            if self._thread is None:
                # A daemon, as the committer: whoever handed a file waits for its outcome.
                self._thread = threading.Thread(target=self._run, name="staged", daemon=True)
                self._thread.start()
            self._waiting.append(_StagedSlot(folder, move, then))
            if len(self._waiting) == 1:  # the thread sleeps only when nothing waits
                self._cond.notify()

    def staged(self, folder: str, move: J.StagedMove) -> None:
        """Return once ``move`` is durable in the journal; raise its refusal or failure."""
        settled = threading.Event()
        outcome: list[BaseException | None] = []

        def then(error: BaseException | None) -> None:
            outcome.append(error)
            settled.set()

        self.submit(folder, move, then)
        settled.wait()
        if outcome[0] is not None:
            raise outcome[0]

    def close(self) -> None:
        """Flush what is waiting, then stop the thread, once what follows is done."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join()
        self._after.shutdown(wait=True)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if not self._waiting:
                    return  # closed, and nothing left
                batch = self._waiting[: self._max]
                del self._waiting[: self._max]
            self._flush(batch)
            for slot in batch:
                self._after.submit(_then, slot)

    def _flush(self, batch: list[_StagedSlot]) -> None:
        try:
            for folder in dict.fromkeys(slot.folder for slot in batch):
                fsync_dir(folder)
            refused = self._journal.staged_many([slot.move for slot in batch])
            for slot in batch:
                slot.error = refused.get(slot.move.file_id)
        except BaseException as exc:  # each file of the batch sees it, as its own
            for slot in batch:
                slot.error = exc


def _then(slot: _StagedSlot) -> None:
    try:
        slot.then(slot.error)
    except BaseException:  # then settles its file's waiters; never stop the pool here
        log.exception("after staging journal file %d", slot.move.file_id)


class _StagedSlot:
    __slots__ = ("error", "folder", "move", "then")

    def __init__(
        self, folder: str, move: J.StagedMove, then: Callable[[BaseException | None], None]
    ) -> None:
        self.folder = folder
        self.move = move
        self.then = then
        self.error: BaseException | None = None


class Station:
    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog,
        store: ObjectStore,
        signer: Signer,
        journal: Journal | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or ServiceMetrics()
        self.ingest = settings.ingest
        self.catalog = catalog
        self.store = store
        self.signer = signer
        self.journal = journal or Journal(settings.journal_path)
        self.staged_group = _StagedGroup(
            self.journal,
            after_workers=self.ingest.file_workers * max(1, self.ingest.docking_workers),
        )
        self.actor = f"station:{signer.station_id}"
        self.parser = NameParser(
            self.ingest.filename_patterns,
            self.ingest.important_marker,
            zone=settings.station.time_zone,
        )
        self.staging = settings.staging_dir
        self.staging.mkdir(parents=True, exist_ok=True)
        # A docking's staging folder as text: the per-file paths below it are joined as
        # strings (a Path built, joined and converted back cost several µs a file).
        self._staging_dirs: dict[str, str] = {}
        self._catalog_ids: dict[str, int] = {}  # journal uid -> catalog docking id
        # The same, with what registering files needs of the docking (the committer's;
        # none of it changes once the docking exists).
        self._docking_refs: dict[str, DockingRef] = {}
        # Dockings running in this process: never resumed twice at once.
        self._active: set[str] = set()
        self._active_lock = threading.Lock()
        self._sm3_pool = ThreadPoolExecutor(
            max_workers=self.ingest.file_workers * max(1, self.ingest.docking_workers),
            thread_name_prefix="sm3",
        )
        # One multi-stream SM3 engine for every file this station copies at once, of one
        # docking or several: each file is a stream, and the chunks waiting at a moment
        # are hashed side by side in the engine's SIMD lanes (16 with AVX-512), several
        # times faster per core than one file at a time. Without the engine (not built),
        # each file is hashed on its own thread by hashlib.
        self._sm3_engine = SharedLanes(SHARED_SM3_FROM) if sm3engine.AVAILABLE else None
        # Reads each staged file back behind its copy (not where the store's server
        # checks the SHA-256 itself on upload).
        self._verify_pool = (
            None
            if store.server_verifies_checksums
            else ThreadPoolExecutor(
                max_workers=self.ingest.file_workers * max(1, self.ingest.docking_workers),
                thread_name_prefix="read-back",
            )
        )
        # Journal ids of files staged and read back by this process: their commit links
        # the staged file without a second read. A file staged before a restart is read
        # again in full, since nothing vouches for it in between.
        self._read_back: set[int] = set()
        # (Looked up at each batch, not bound now: a profiler may wrap the method.)
        self.committer = _Committer(
            lambda batch: self._commit_batch(batch), COMMIT_BATCH_MAX, COMMIT_WINDOW_S
        )
        # The committer's batch of store folders fsynced beside its catalog transaction.
        self._durable_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable")
        # Each registered batch's staged copies dropped and journal DONE, in order, behind
        # the committer (see _commit_batch).
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finisher")
        self._anchorer = anchors.Anchorer(
            self.catalog,
            self.signer,
            self.store,
            self.settings.station.anchor_interval_s,
            journal=self.journal,
        )

    def close(self) -> None:
        self.staged_group.close()  # before the committer: it hands files to it
        self.committer.close()
        self._finisher.shutdown(wait=True)  # after the committer: it hands batches here
        self._durable_pool.shutdown(wait=True)
        self._sm3_pool.shutdown(wait=True)
        if self._sm3_engine is not None:
            self._sm3_engine.close()
        if self._verify_pool is not None:
            self._verify_pool.shutdown(wait=True)
        self.journal.close()

    def flush_journal(self, stop: threading.Event | None = None) -> None:
        """Store and register what a previous run staged but did not finish (no recorder
        needed: the staged copies are complete)."""
        stop = stop or threading.Event()
        for jd in self.journal.dockings(J.UNFINISHED):
            if self.journal.files(jd.uid, (J.STAGED,)):
                DockingWork(self, jd, stop=stop, report=lambda _p: None, wait=True).drain_staged()

    # -- the docking --------------------------------------------------------------------------

    def run_docking(
        self,
        root: Path,
        *,
        slot: str | None = None,
        stop: threading.Event | None = None,
        on_progress: ProgressCallback | None = None,
        wait_for_services: bool = True,
    ) -> DockingResult:
        stop = stop or threading.Event()
        root = root.absolute()
        if not root.is_dir():
            raise OffloadError(
                _("{root}: not a folder").format(root=root),
                hint=_("name the recorder's folder or mount"),
            )
        entries = list(scan(root))
        if not entries:  # an empty folder, or a mount point with nothing mounted
            return self._no_files(root, slot or root.name)
        files = [e.relpath for e in entries if e.kind == "file"]
        found = several_recorders(root, files, self.parser, self.ingest.device_info_files)
        if found:
            raise SeveralRecorders(root, found)
        names = [os.fsdecode(rel.rsplit(b"/", 1)[-1]) for rel in files]
        ident = identify(root, names, self.parser, self.ingest.device_info_files)
        jd = self._open_docking(root, slot or root.name, ident, entries)
        uid = jd.uid
        report = on_progress or (lambda _p: None)
        docking = RecorderDocking(self, jd, root, stop=stop, report=report, wait=wait_for_services)
        try:
            return docking.run(entries)
        finally:
            with self._active_lock:
                self._active.discard(uid)

    def _no_files(self, root: Path, slot: str) -> DockingResult:
        """A docking that found nothing: recorded (station status shows it), never safe to
        clear, and never resuming an earlier docking of the folder (whose files would then
        look vanished). Nothing goes to the catalog: there is nothing to account for."""
        log.info("%s: %s", root, J.NO_FILES_MESSAGE)
        now = J.now_text()
        jd = JournalDocking(
            uid=str(uuid.uuid4()),
            slot=slot,
            source_path=str(root),
            serial=None,
            identity={"source": "folder", "raw": {"folder": root.name}, "flags": []},
            state=J.NO_FILES,
            started_at=now,
            updated_at=now,
            waiting=None,
            message=J.NO_FILES_MESSAGE,
        )
        self.journal.add_docking(jd)
        return DockingResult(uid=jd.uid, state=J.NO_FILES, files=0, stored=0, duplicates=0, bytes=0)

    def _open_docking(
        self, root: Path, slot: str, ident: DeviceIdentity, entries: list[Any]
    ) -> JournalDocking:
        with self._active_lock:
            jd = self._open_docking_unlocked(root, slot, ident, entries)
            self._active.add(jd.uid)
            return jd

    def _changed_since(self, previous: JournalDocking, entries: list[Any]) -> list[str]:
        """Names the earlier docking holds (or cleared) whose file on the recorder now is
        another file: other size or modification time."""
        now = {e.relpath: (e.size, e.mtime_ns) for e in entries if e.kind == "file"}
        return [
            display_name(f.relpath)
            for f in self.journal.files(previous.uid)
            if (f.state.is_held or f.state == J.STAGED)
            and f.relpath in now
            and now[f.relpath] != (f.size, f.mtime_ns)
        ]

    def _open_docking_unlocked(
        self, root: Path, slot: str, ident: DeviceIdentity, entries: list[Any]
    ) -> JournalDocking:
        previous = self.journal.resumable(str(root), ident.serial, exclude=self._active)
        changed = self._changed_since(previous, entries) if previous is not None else []
        if previous is not None and changed:
            # The recorder wrote other bytes under a name the earlier docking holds: that
            # docking cannot take them (one row per name), so a new docking takes the
            # recorder and the earlier one is left as it is, never resumed again.
            log.warning(
                "docking %s not resumed: %s changed on the recorder since; a new docking takes it",
                previous.uid,
                ", ".join(changed[:3]),
            )
            self.journal.superseded(previous.uid, changed)
            previous = None
        if previous is not None:
            log.info("resuming docking %s (%s)", previous.uid, previous.state)
            self.journal.resumed(previous.uid, source_path=str(root), slot=slot)
            # Docked again: what could not be taken last time gets another try.
            self.journal.retry_quarantined(previous.uid)
            resumed = self.journal.docking(previous.uid)
            assert resumed is not None
            return resumed
        now = J.now_text()
        jd = JournalDocking(
            uid=str(uuid.uuid4()),
            slot=slot,
            source_path=str(root),
            serial=ident.serial,
            identity={
                "serial": ident.serial,
                "officer_number": ident.officer_number,
                "officer_name": ident.officer_name,
                "unit_number": ident.unit_number,
                "unit_name": ident.unit_name,
                "model": ident.model,
                "clock_offset_s": ident.clock_offset_s,
                "source": ident.source,
                "raw": ident.raw,
                "flags": [stored(f) for f in ident.flags],  # template + fields: shown later
            },
            state=J.OFFLOADING,
            started_at=now,
            updated_at=now,
            waiting=None,
            message=None,
        )
        self.journal.add_docking(jd)
        return jd

    def register_docking_early(self, jd: JournalDocking) -> None:
        """Create the catalog docking before files commit in parallel (if reachable now)."""
        try:
            self.catalog.run_retrying(lambda s: self.catalog_docking(s, jd))
        except TRANSIENT as exc:
            log.warning("catalog not reachable yet (%s); staging goes on", exc.message)

    def _staged_path(self, f: JournalFile) -> str:
        return f"{self.staging_of(f.docking_uid)}/{f.id}.staged"

    def staging_of(self, docking_uid: str) -> str:
        """A docking's staging folder, as text (its files' paths are joined to it)."""
        folder = self._staging_dirs.get(docking_uid)
        if folder is None:
            folder = self._staging_dirs[docking_uid] = os.path.join(self.staging, docking_uid)
        return folder

    def copy_to_staging(
        self, fd: int, part: str, f: JournalFile, on_bytes: Callable[[int], None]
    ) -> Copied:
        """Copy the open recorder file ``fd`` to ``part`` with both digests in the same
        read, on the station's hashing and read-back pools.

        Its SM3 is a stream of the station's shared engine: hashed in its lanes while at
        least :data:`SHARED_SM3_FROM` files are copied, and on a thread of its own while
        fewer are (decided chunk by chunk, so the first files of a docking join the lanes
        once the others start, and the last one leaves them)."""
        return copy_and_hash(
            fd,
            part,
            expected_size=f.size,
            expected_mtime_ns=f.mtime_ns,
            chunk_size=self.ingest.chunk_mb << 20,
            sm3_pool=self._sm3_pool,
            verify_pool=self._verify_pool,
            on_bytes=on_bytes,
            sm3_engine=self._sm3_engine,
        )

    def read_back_done(self, file_id: int) -> None:
        """The file's staged copy was read back as it was written (by this process)."""
        self._read_back.add(file_id)

    def store_file(
        self,
        docking: DockingWork,
        f: JournalFile,
        on_transient: TransientHandler | None,
        *,
        staged_now: bool = False,
        done: Future[Exception | None] | None = None,
    ) -> Stored:
        """Store and verify one staged file (in the calling thread: a worker, or the
        staging group's thread for a file just staged); what it needs for its
        registration comes back, for the committer. ``staged_now``: the caller has just
        staged it, so its staged copy is there (only the committer removes it, once the
        file is registered). ``done``: the future its registration settles (one the
        caller already handed out), else a new one."""
        started = time.monotonic()
        digests = f.digests
        assert digests is not None and f.staged_at
        key = content_key(digests.sha256)
        staged = self._staged_path(f)
        # Storing is idempotent: bytes already held are compared with the held copy (see
        # _store), and register_files sees a duplicate by its SHA-256 in the same
        # transaction that records it.
        repaired: dict[str, str] | None = json.loads(f.repair) if f.repair else None
        if staged_now or os.path.exists(staged):
            verified_by, now_repaired = self._store(
                f, key, staged, digests.sha256, f.id in self._read_back
            )
            repaired = now_repaired or repaired
            self._read_back.discard(f.id)
        else:
            # Killed after storing and before the journal said DONE: the object is there.
            self.store.verify(key, digests.sha256)
            verified_by = "re-read of the stored object (SHA-256)"
        fields = self.parser.parse(os.fsdecode(f.relpath.rsplit(b"/", 1)[-1]))
        offloaded = OffloadedFile(
            relpath_raw=f.relpath,
            size=f.size,
            mtime=datetime.fromtimestamp(f.mtime_ns / 1e9, UTC),
            digests=digests,
            object_key=key,
            captured_at=fields.start,
            staged_at=datetime.fromisoformat(f.staged_at),
            verified_by=verified_by,
            important=fields.important,
            repaired=repaired,
        )
        if done is None:
            return Stored(f, docking, offloaded, staged, started, on_transient)
        return Stored(f, docking, offloaded, staged, started, on_transient, done)

    def _commit_batch(self, batch: list[Stored]) -> None:
        """Register stored files in one catalog transaction (the committer thread runs
        this), then hand them to the finisher, which drops their staged copies and marks
        them DONE in one journal transaction (:meth:`_finish_batch`).

        The order is that of a single file: object linked into the store (done by the
        staging group's thread), the batch's store folders fsynced
        (:meth:`ObjectStore.make_durable`), catalog commit, staged copy unlinked, journal
        DONE. A file the catalog cannot take now
        stays STAGED without holding back the others; an unexpected error in the batch's
        transaction has each file tried alone, so that only the bad one is quarantined.
        """
        # The objects' names, linked by the workers without their folders' fsync, are made
        # durable for the whole batch at once, while its catalog transaction is built; the
        # transaction commits only once they are (see _register_batch).
        durable = self._durable_pool.submit(
            self.store.make_durable, [item.offloaded.object_key for item in batch]
        )
        try:
            results = self._register_batch(batch, durable)
        except TRANSIENT as exc:  # the catalog is away: every file waits
            results = [Registered(error=exc)] * len(batch)
        except Exception as exc:
            if len(batch) > 1:
                log.warning(
                    "registering %d files together failed (%s: %s); registering them one by one",
                    len(batch),
                    type(exc).__name__,
                    exc,
                )
                for item in batch:
                    self._commit_batch([item])
                return
            results = [Registered(error=exc)]
        # What follows the catalog commit is the finisher's, one batch after the other,
        # while this thread builds the next batch's transaction: the staged copies'
        # unlinks and the journal's DONE commit (each a system call that lets go of the
        # interpreter lock, and taking it back waits) left the committer, the docking's
        # slowest thread, about a tenth of its time.
        self._finisher.submit(self._finish_batch, batch, results)
        self.anchor_chain_head(due_only=True)  # and every few minutes while it works

    def _finish_batch(self, batch: list[Stored], results: list[Registered]) -> None:
        """After a batch's catalog transaction (the finisher thread runs this): its staged
        copies dropped and its files DONE in one journal transaction, each file's waiter
        settled. A failure here (the journal's) is each unsettled file's."""
        try:
            self._settle_batch(batch, results)
        except BaseException as exc:
            log.exception("finishing %d registered files failed", len(batch))
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(exc)

    def _settle_batch(self, batch: list[Stored], results: list[Registered]) -> None:
        done = [item for item, r in zip(batch, results, strict=True) if r.error is None]
        # The staged copy goes before the journal says DONE: a station killed between the
        # two finds the file registered (held) on restart and needs the copy no more, while
        # the other order would leave the copy in staging for ever.
        for item in done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(item.staged)
        self.journal.done(item.f.id for item in done)
        dockings: dict[int, DockingWork] = {}
        for item, r in zip(batch, results, strict=True):
            dockings[id(item.docking)] = item.docking
            if r.error is None:
                with item.docking.progress.lock:
                    item.docking.progress.files_done += 1
                self.metrics.files.inc(result="duplicate" if r.duplicate else "stored")
                self.metrics.bytes.inc(item.f.size)
                self.metrics.store_seconds.observe(time.monotonic() - item.started)
                item.done.set_result(None)
            elif isinstance(r.error, TRANSIENT):
                if item.on_transient is not None:
                    item.on_transient(r.error)
                item.done.set_result(r.error)
            else:  # one bad file never blocks the others
                log.error(
                    "%s: %s: %s", display_name(item.f.relpath), type(r.error).__name__, r.error
                )
                item.docking.quarantine_unexpected(item.f, r.error)
                item.done.set_result(None)
        for docking in dockings.values():
            docking.report(docking.progress)

    def _register_batch(self, batch: list[Stored], durable: Future[None]) -> list[Registered]:
        """The catalog transaction of a batch (run again whole if it lost an insert race:
        the files another station registered meanwhile are then duplicates), committed
        only once ``durable`` says the batch's objects are (raising its failure)."""
        dockings = {item.docking.uid: item.docking.jd for item in batch}
        refs: dict[str, DockingRef] = {}

        def work(s: Session) -> list[Registered]:
            # Retention: the objects' key locks first (the order the sweep keeps too), and
            # each new recording's object confirmed still stored before it commits.
            lock_object_keys(s, [item.offloaded.object_key for item in batch])
            results = register(s)
            confirm_objects(
                s,
                self.store,
                [
                    item.offloaded.object_key
                    for item, r in zip(batch, results, strict=True)
                    if r.error is None and not r.duplicate
                ],
            )
            durable.result()  # never a catalog row for an object a power cut could lose
            return results

        def register(s: Session) -> list[Registered]:
            refs.clear()
            refs.update(
                (uid, self._docking_refs[uid]) for uid in dockings if uid in self._docking_refs
            )
            if len(refs) < len(dockings):  # one look-up, for the first batch of a docking
                refs.update(docking_refs(s, [uid for uid in dockings if uid not in refs]))
            for uid, jd in dockings.items():
                if uid not in refs:  # the catalog was away when the docking began
                    refs[uid] = DockingRef.of(self.catalog_docking(s, jd))
            files = [(refs[item.docking.uid], item.offloaded) for item in batch]
            return register_files(s, self.signer, files, self.actor)

        results = self.catalog.run_retrying(work)
        # Kept only once committed (a rolled-back transaction may have made the docking).
        self._docking_refs.update(refs)
        return results

    def _store(
        self,
        f: JournalFile,
        key: str,
        staged: str,
        digest: Digest,
        read_back: bool,
    ) -> tuple[str, dict[str, str] | None]:
        """Store the staged copy; returns how it was verified and, when the store held a
        damaged copy of these bytes that this one replaced, what was found.

        Bytes the store already holds are never taken on trust: their held copy is
        compared with the staged one in full (inside ``put_file``, on every store).
        """
        retain = None
        if self.settings.store.object_lock_days:
            retain = datetime.now(UTC) + timedelta(days=self.settings.store.object_lock_days)
        try:
            # durable=False: the committer makes the batch's names durable together.
            self.store.put_file(
                key,
                Path(staged),
                expected=digest,
                size=f.size,
                retain_until=retain,
                verified=read_back,
                durable=False,
            )
            if self.store.server_verifies_checksums:
                return "SHA-256 checksum checked by the object store", None
            return (
                READ_BACK_CHECK if read_back else "re-read of the stored object (SHA-256)"
            ), None
        except DamagedObject as damaged:
            return REPAIR_CHECK, self._repair(f, key, staged, digest, damaged, retain)

    def _repair(
        self,
        f: JournalFile,
        key: str,
        staged: str,
        digest: Digest,
        damaged: DamagedObject,
        retain: datetime | None,
    ) -> dict[str, str]:
        """Replace a damaged held copy by the staged (recorder's) bytes, the damaged bytes
        kept aside. What was found is journaled first, so that a station killed after the
        replacement still records the custody event ``repaired`` at registration."""
        repair = {
            "sha256": damaged.found.hex,
            "sm3": damaged.found_sm3.hex if damaged.found_sm3 else "",
            "kept_at": damaged_key(key, damaged.found),
        }
        log.error("%s; replacing it from %s", damaged.message, display_name(f.relpath))
        self.journal.repair_noted(f.id, json.dumps(repair))
        self.store.replace_damaged(
            key, Path(staged), expected=digest, found=damaged.found, retain_until=retain
        )
        return repair

    def catalog_docking(self, s: Any, jd: JournalDocking) -> Docking:
        # Its catalog id, once known, is a primary-key read: the docking's identity
        # never changes, and this runs once per file.
        known = self._catalog_ids.get(jd.uid)
        if known is not None:
            row = s.get(Docking, known)
            if row is not None:
                return row  # type: ignore[no-any-return]
        docking = self._ensure_catalog_docking(s, jd)
        self._catalog_ids[jd.uid] = docking.id
        return docking

    def _ensure_catalog_docking(self, s: Any, jd: JournalDocking) -> Docking:
        ident = jd.identity
        info = DockingInfo(
            uid=jd.uid,
            slot=jd.slot,
            source_path=jd.source_path,
            serial=jd.serial,
            officer_number=ident.get("officer_number"),
            officer_name=ident.get("officer_name", ""),
            unit=ident.get("unit_name", ""),
            model=ident.get("model", ""),
            identity_source=ident.get("source", "folder"),
            identity_raw=ident,
            started_at=datetime.fromisoformat(jd.started_at),
        )
        return ensure_docking(s, self.signer, info, self.actor)

    # -- signed chain heads (catalog.anchors; docs/custody.md) --------------------------------

    def anchor_chain_head(self, *, due_only: bool = False) -> None:
        """Sign this station's custody chain head and write it to the journal and the
        store (:class:`catalog.anchors.Anchorer`: never fails a docking)."""
        self._anchorer.anchor(due_only=due_only)
