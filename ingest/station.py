"""A docking, end to end: scan → one read with copy and digests → store → catalog → safe.

File workers copy, hash and store files in parallel; one committer thread per station
registers the stored files in the catalog in batches (one transaction for up to 64
files), then marks them DONE in one journal transaction.

State lives in the station journal first (durable without the catalog), then in the
catalog. Every step can be repeated: a station killed anywhere replays the journal and
ends with every file stored once and the custody chain whole. SAFE_TO_CLEAR is written
only after every file of the docking is stored, verified and registered.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from catalog import Catalog, CatalogUnavailable, Signer, anchors
from catalog.dockings import (
    DockingInfo,
    DockingRef,
    OffloadedFile,
    Registered,
    display_name,
    docking_refs,
    ensure_docking,
    finish_docking,
    mark_cleared,
    record_problem_file,
    register_files,
)
from catalog.errors import RecordingBeingExpired
from catalog.models import Docking
from catalog.retention import confirm_objects, lock_object_keys
from config import Settings
from config.errors import EXIT_NOINPUT, EXIT_PARTIAL, EXIT_USAGE
from ingest import journal as J
from ingest.identity import (
    DeviceIdentity,
    NameParser,
    foreign_device,
    identify,
    several_recorders,
)
from ingest.journal import Journal, JournalDocking, JournalFile
from ingest.metrics import ServiceMetrics
from ingest.offload import (
    READ_BACK_CHECK,
    DiskFull,
    OffloadError,
    SourceChanged,
    SourceVanished,
    StagingReadBackMismatch,
    copy_and_hash,
    open_source,
    scan,
    unlink_source,
)
from storage import (
    Digest,
    ObjectStore,
    StorageError,
    StoreUnavailable,
    content_key,
    fsync_dir,
)
from storage.base import damaged_key
from storage.errors import DamagedObject

log = logging.getLogger("liuhen.station")

# Problems with these services are waited out; the docking goes on staging meanwhile.
TRANSIENT = (StoreUnavailable, CatalogUnavailable, RecordingBeingExpired)
# Catalog transactions that lost an insert race (see Station._in_catalog) run again.
CATALOG_RACE_ATTEMPTS = 5
# PostgreSQL's "deadlock detected" and "could not serialize": the transaction was rolled
# back whole and can run again like a lost insert race.
RETRYABLE_SQLSTATES = ("40P01", "40001")
# At most this many stored files are registered in one catalog transaction, gathered for
# at most this long while more are on their way (see _Committer).
COMMIT_BATCH_MAX = 64
COMMIT_WINDOW_S = 0.05

T = TypeVar("T")


@dataclass
class DockingResult:
    uid: str
    state: str
    files: int
    stored: int
    duplicates: int
    bytes: int
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (path, state, reason)
    identity_flags: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        if self.state == J.NO_FILES:
            return EXIT_NOINPUT  # nothing found: distinct from "some files were not taken"
        return (
            0 if self.state in (J.SAFE_TO_CLEAR, "CLEARED") and not self.problems else EXIT_PARTIAL
        )


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
            f"{root} holds several recorders: {listed}; it is not docked as one",
            hint="dock each recorder folder on its own: "
            + "; ".join(f"liuhen ingest {root / folder}" for folder, _s in found),
        )
        self.root = root
        self.folders = [root / folder for folder, _s in found]


@dataclass
class Progress:
    """Live figures of one docking, for progress bars and status."""

    uid: str = ""
    files_total: int = 0
    files_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    waiting: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_bytes(self, n: int) -> None:
        with self.lock:
            self.bytes_done += n


ProgressCallback = Callable[[Progress], None]
TransientHandler = Callable[[Any], None]  # called with a TRANSIENT error


@dataclass
class _Stored:
    """A staged file whose object is stored and verified, on its way to the catalog."""

    f: JournalFile
    jd: JournalDocking
    offloaded: OffloadedFile
    staged: Path
    progress: Progress
    report: ProgressCallback
    started: float  # monotonic time its store began (the store_seconds metric)
    # What a transient refusal (catalog away, recording being expired) does for the file's
    # submitter; None: the submitter handles the error returned by ``done``.
    on_transient: TransientHandler | None
    # Settles once the file is DONE or quarantined (None), or left STAGED by a TRANSIENT
    # error (that error).
    done: Future[Exception | None] = field(default_factory=Future)


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
        commit: Callable[[list[_Stored]], None],
        max_batch: int,
        window_s: float,
    ) -> None:
        self._commit = commit
        self._max = max_batch
        self._window = window_s
        self._cond = threading.Condition()
        self._items: deque[_Stored] = deque()
        self._coming = 0  # files that will be submitted unless they fail on their way
        self._thread: threading.Thread | None = None
        self._closed = False

    def coming(self, n: int) -> None:
        """``n`` more files are on their way (negative: fewer, they will not come)."""
        with self._cond:
            self._coming = max(0, self._coming + n)
            if self._coming == 0:
                self._cond.notify()

    def submit(self, item: _Stored, *, was_coming: bool) -> Future[Exception | None]:
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
        self.actor = f"station:{signer.station_id}"
        self.parser = NameParser(
            self.ingest.filename_patterns,
            self.ingest.important_marker,
            zone=settings.station.time_zone,
        )
        self.staging = settings.staging_dir
        self.staging.mkdir(parents=True, exist_ok=True)
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
        self._committer = _Committer(
            lambda batch: self._commit_batch(batch), COMMIT_BATCH_MAX, COMMIT_WINDOW_S
        )
        self._anchorer = anchors.Anchorer(
            self.catalog,
            self.signer,
            self.store,
            self.settings.station.anchor_interval_s,
            journal=self.journal,
        )

    def close(self) -> None:
        self._committer.close()
        self._sm3_pool.shutdown(wait=True)
        if self._verify_pool is not None:
            self._verify_pool.shutdown(wait=True)
        self.journal.close()

    def flush_journal(self, stop: threading.Event | None = None) -> None:
        """Store and register what a previous run staged but did not finish (no recorder
        needed: the staged copies are complete)."""
        stop = stop or threading.Event()
        for jd in self.journal.dockings((J.OFFLOADING, J.INCOMPLETE)):
            if self.journal.files(jd.uid, (J.STAGED,)):
                self._drain_staged(jd, Progress(uid=jd.uid), stop, lambda _p: None, True)

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
            raise OffloadError(f"{root}: not a folder", hint="name the recorder's folder or mount")
        entries = list(scan(root))
        if not entries:  # an empty folder, or a mount point with nothing mounted
            return self._no_files(root, slot or root.name)
        files = [e.relpath for e in entries if e.kind == "file"]
        found = several_recorders(root, files, self.parser, self.ingest.device_info_files)
        if found:
            raise SeveralRecorders(root, found)
        names = [os.fsdecode(rel.rsplit(b"/", 1)[-1]) for rel in files]
        ident = identify(root, names, self.parser, self.ingest.device_info_files)
        jd = self._open_docking(root, slot or root.name, ident)
        uid = jd.uid
        try:
            return self._run_opened(jd, root, entries, stop, on_progress, wait_for_services)
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

    def _run_opened(
        self,
        jd: JournalDocking,
        root: Path,
        entries: list[Any],
        stop: threading.Event,
        on_progress: ProgressCallback | None,
        wait_for_services: bool,
    ) -> DockingResult:
        uid = jd.uid
        log.info("docking %s of %s (%s)", uid, root, jd.serial or "unknown device")
        self.journal.add_files(
            uid, [(e.relpath, e.size, e.mtime_ns) for e in entries if e.kind == "file"]
        )
        self._reject_unusable(uid, entries)
        self._register_docking_early(jd)
        progress = Progress(uid=uid)
        files = self._refresh(progress)
        report = on_progress or (lambda _p: None)

        # Workers stage and store files; the committer registers them in batches.
        todo = [f for f in files if f.state in (J.PENDING, J.STAGED)]
        # The committer knows they are coming and gathers them in bigger batches; each
        # _take_file call settles its own one.
        self._committer.coming(len(todo))
        with ThreadPoolExecutor(self.ingest.file_workers, thread_name_prefix="offload") as pool:
            futures = [
                pool.submit(self._take_file, root, jd, f, progress, stop, report) for f in todo
            ]
        # Every worker has finished; their files' registrations are settled before
        # anything reads the journal again (even when a worker failed).
        commits = [
            c for fut in futures if fut.exception() is None and (c := fut.result()) is not None
        ]
        wait_all(commits)
        for fut in futures:
            fut.result()  # a worker's journal failure ends the docking here
        for commit in commits:
            commit.result()  # and so does one in the committer
        # What is still STAGED waits for the store or catalog; retry with backoff.
        self._drain_staged(jd, progress, stop, report, wait_for_services)
        result = self._finish(uid, root, progress, stop, report, wait_for_services)
        report(progress)
        return result

    def _open_docking(self, root: Path, slot: str, ident: DeviceIdentity) -> JournalDocking:
        with self._active_lock:
            jd = self._open_docking_unlocked(root, slot, ident)
            self._active.add(jd.uid)
            return jd

    def _open_docking_unlocked(
        self, root: Path, slot: str, ident: DeviceIdentity
    ) -> JournalDocking:
        previous = self.journal.resumable(str(root), ident.serial, exclude=self._active)
        if previous is not None:
            log.info("resuming docking %s (%s)", previous.uid, previous.state)
            self.journal.set_docking(
                previous.uid, state=J.OFFLOADING, source_path=str(root), slot=slot, message=None
            )
            # Docked again: what could not be taken last time gets another try.
            for f in self.journal.files(previous.uid, (J.QUARANTINED,)):
                self.journal.set_file(f.id, state=J.PENDING, reason=None)
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
                "flags": list(ident.flags),
            },
            state=J.OFFLOADING,
            started_at=now,
            updated_at=now,
            waiting=None,
            message=None,
        )
        self.journal.add_docking(jd)
        return jd

    def _register_docking_early(self, jd: JournalDocking) -> None:
        """Create the catalog docking before files commit in parallel (if reachable now)."""
        try:
            self._in_catalog(lambda s: self._catalog_docking(s, jd))
        except TRANSIENT as exc:
            log.warning("catalog not reachable yet (%s); staging goes on", exc.message)

    def _reject_unusable(self, uid: str, entries: list[Any]) -> None:
        odd = [e for e in entries if e.kind != "file"]
        if not odd:
            return
        self.journal.add_files(uid, [(e.relpath, 0, e.mtime_ns) for e in odd])
        by_path = {x.relpath: x for x in self.journal.files(uid)}
        for e in odd:
            reason = (
                "symbolic link: not followed out of the recorder"
                if e.kind == "symlink"
                else "not a regular file (device, socket or pipe)"
            )
            f = by_path[e.relpath]
            if f.state == J.PENDING:
                self.journal.set_file(f.id, state=J.REJECTED, reason=reason)

    # -- one file -----------------------------------------------------------------------------

    def _take_file(
        self,
        root: Path,
        jd: JournalDocking,
        f: JournalFile,
        progress: Progress,
        stop: threading.Event,
        report: ProgressCallback,
    ) -> Future[Exception | None] | None:
        """Stage and store one file and hand it to the committer (whose future it returns)."""
        name = display_name(f.relpath)

        def waiting(exc: Any) -> None:
            self.metrics.failures.inc(reason="unavailable")
            progress.waiting = str(exc.message)
            self.journal.set_docking(f.docking_uid, waiting=exc.message)

        handed = False
        try:
            other = foreign_device(name.rsplit("/", 1)[-1], self.parser, jd.serial)
            if other is not None and f.state in (J.PENDING, J.STAGED):
                # Never filed silently under another device than the one its name names.
                self._quarantine(
                    f,
                    f"its name names device {other}, not this recorder's {jd.serial}: "
                    f"not filed under {jd.serial}; dock it in a folder of its own (or "
                    "correct the recorder's device file), then dock this recorder again",
                )
                return None
            if f.state == J.PENDING:
                started = time.monotonic()
                f = self._stage(root, f, progress, stop, report)
                if f.state == J.STAGED:
                    self.metrics.stage_seconds.observe(time.monotonic() - started)
            if f.state == J.STAGED:
                stored = self._store_file(jd, f, progress, report, waiting)
                handed = True
                return self._committer.submit(stored, was_coming=True)
        except TRANSIENT as exc:
            waiting(exc)
        except StorageError as exc:  # the store refused this file, saying why
            self._store_refused(f, exc)
        except Exception as exc:  # one bad file never blocks the others
            log.exception("%s: unexpected error", name)
            self._quarantine_unexpected(f, exc)
        finally:
            if not handed:
                self._committer.coming(-1)  # it will not come: nothing to wait for
            report(progress)
        return None

    def _store_refused(self, f: JournalFile, exc: StorageError) -> None:
        """A store error that waiting will not cure (the staged copy no longer matches its
        digest, a damaged held copy the store will not let us replace): the staged copy
        is kept, the file quarantined with the store's reason and what to do."""
        self._quarantine(f, f"{exc.message}: {exc.hint}" if exc.hint else exc.message)

    def _quarantine_unexpected(self, f: JournalFile, exc: Exception) -> None:
        self.metrics.failures.inc(reason="quarantined")
        self.journal.set_file(
            f.id, state=J.QUARANTINED, reason=f"unexpected error: {type(exc).__name__}: {exc}"
        )

    def _stage(
        self,
        root: Path,
        f: JournalFile,
        progress: Progress,
        stop: threading.Event,
        report: ProgressCallback,
    ) -> JournalFile:
        name = display_name(f.relpath)
        deadline = time.monotonic() + self.ingest.growing_timeout_s
        backoff = self.ingest.retry_initial_s
        last_seen: tuple[int, int] | None = None
        seen_since = time.monotonic()
        while not stop.is_set():
            try:
                fd = open_source(root, f.relpath)
            except FileNotFoundError:
                return self._quarantine(f, "vanished from the recorder before it was read")
            except OSError as exc:
                return self._quarantine(f, f"cannot open: {exc.strerror}")
            try:
                st = os.fstat(fd)
                if st.st_size < f.size:
                    # Recordings grow while written; one that shrinks was damaged or
                    # rewritten on the recorder. Keep it for a person to look at.
                    return self._quarantine(
                        f, f"shrank from {f.size} to {st.st_size} bytes before it was read"
                    )
                if st.st_size != f.size or st.st_mtime_ns != f.mtime_ns:
                    self.journal.set_file(f.id, size=st.st_size, mtime_ns=st.st_mtime_ns)
                    f = replace(f, size=st.st_size, mtime_ns=st.st_mtime_ns)
                # Stable: unchanged for stable_s, judged by the mtime's age or, when the
                # recorder's clock is ahead of ours (mtime in the future), by watching it.
                seen = (st.st_size, st.st_mtime_ns)
                if seen != last_seen:
                    last_seen, seen_since = seen, time.monotonic()
                age = max(time.time() - st.st_mtime_ns / 1e9, time.monotonic() - seen_since)
                if age < self.ingest.stable_s:
                    if time.monotonic() > deadline:
                        return self._quarantine(
                            f,
                            f"still growing after {self.ingest.growing_timeout_s:.0f} s; "
                            "dock the recorder again when it has finished writing",
                        )
                    stop.wait(min(self.ingest.stable_s - age + 0.05, 1.0))
                    continue
                if st.st_size == 0:
                    reason = "zero-byte file: nothing to store"
                    self.journal.set_file(f.id, state=J.REJECTED, reason=reason)
                    return replace(f, state=J.REJECTED, reason=reason)
                part = self.staging / f.docking_uid / f"{f.id}.part"
                part.parent.mkdir(parents=True, exist_ok=True)
                before = progress.bytes_done
                try:
                    copied = copy_and_hash(
                        fd,
                        part,
                        expected_size=f.size,
                        expected_mtime_ns=f.mtime_ns,
                        chunk_size=self.ingest.chunk_mb << 20,
                        sm3_pool=self._sm3_pool,
                        verify_pool=self._verify_pool,
                        on_bytes=progress.add_bytes,
                    )
                except StagingReadBackMismatch as exc:
                    with progress.lock:
                        progress.bytes_done = before
                    part.unlink(missing_ok=True)
                    log.error("%s: %s", name, exc.message)
                    if time.monotonic() > deadline:
                        raise
                    stop.wait(backoff)
                    continue
                except SourceChanged:
                    with progress.lock:
                        progress.bytes_done = before
                    part.unlink(missing_ok=True)
                    if time.monotonic() > deadline:
                        return self._quarantine(f, "kept changing while it was read")
                    continue
                except SourceVanished as exc:
                    part.unlink(missing_ok=True)
                    return self._quarantine(f, exc.message)
                except DiskFull as exc:
                    part.unlink(missing_ok=True)
                    with progress.lock:
                        progress.bytes_done = before
                    capacity = _capacity(self.staging)
                    if f.size > capacity:  # freeing space cannot help: waiting never ends
                        return self._quarantine(
                            f,
                            f"{f.size} bytes, larger than the whole staging disk "
                            f"{self.staging} ({capacity} bytes): give the station a larger "
                            "data disk, then dock the recorder again",
                        )
                    progress.waiting = f"{exc.message}: {exc.hint}"
                    self.journal.set_docking(f.docking_uid, waiting=progress.waiting)
                    report(progress)
                    log.warning("%s: %s; retrying in %.0f s", name, exc.message, backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.ingest.retry_max_s)
                    continue
            finally:
                os.close(fd)
            staged = part.with_suffix(".staged")
            os.replace(part, staged)
            fsync_dir(staged.parent)
            staged_at = J.now_text()
            # (A repair noted for an earlier staged copy is judged again for this one.)
            self.journal.set_file(
                f.id,
                state=J.STAGED,
                sha256=copied.sha256,
                sm3=copied.sm3,
                staged_at=staged_at,
                repair=None,
            )
            if copied.read_back:
                self._read_back.add(f.id)
            if progress.waiting and progress.waiting.startswith("staging disk full"):
                progress.waiting = None
                self.journal.set_docking(f.docking_uid, waiting=None)
            # What the journal now holds for it, without reading it back.
            return replace(
                f,
                state=J.STAGED,
                sha256=copied.sha256,
                sm3=copied.sm3,
                staged_at=staged_at,
                repair=None,
            )
        return f

    def _quarantine(self, f: JournalFile, reason: str) -> JournalFile:
        log.warning("%s: quarantined: %s", display_name(f.relpath), reason)
        self.metrics.failures.inc(reason="quarantined")
        self.journal.set_file(f.id, state=J.QUARANTINED, reason=reason)
        return replace(f, state=J.QUARANTINED, reason=reason)

    def _staged_path(self, f: JournalFile) -> Path:
        return self.staging / f.docking_uid / f"{f.id}.staged"

    def _store_file(
        self,
        jd: JournalDocking,
        f: JournalFile,
        progress: Progress,
        report: ProgressCallback,
        on_transient: TransientHandler | None,
    ) -> _Stored:
        """Store and verify one staged file (in the calling worker, in parallel with the
        others); what it needs for its registration comes back, for the committer."""
        started = time.monotonic()
        assert f.sha256 and f.sm3 and f.staged_at
        digest = Digest("sha256", f.sha256)
        key = content_key(digest)
        staged = self._staged_path(f)
        # Storing is idempotent: bytes already held are compared with the held copy (see
        # _store), and register_files sees a duplicate by its SHA-256 in the same
        # transaction that records it.
        repaired: dict[str, str] | None = json.loads(f.repair) if f.repair else None
        if staged.exists():
            verified_by, now_repaired = self._store(f, key, staged, digest, f.id in self._read_back)
            repaired = now_repaired or repaired
            self._read_back.discard(f.id)
        else:
            # Killed after storing and before the journal said DONE: the object is there.
            self.store.verify(key, digest)
            verified_by = "re-read of the stored object (SHA-256)"
        fields = self.parser.parse(os.fsdecode(f.relpath.rsplit(b"/", 1)[-1]))
        offloaded = OffloadedFile(
            relpath_raw=f.relpath,
            size=f.size,
            mtime=datetime.fromtimestamp(f.mtime_ns / 1e9, UTC),
            sha256=f.sha256,
            sm3=f.sm3,
            object_key=key,
            captured_at=fields.start,
            staged_at=datetime.fromisoformat(f.staged_at),
            verified_by=verified_by,
            important=fields.important,
            repaired=repaired,
        )
        return _Stored(f, jd, offloaded, staged, progress, report, started, on_transient)

    def _commit_batch(self, batch: list[_Stored]) -> None:
        """Register stored files in one catalog transaction, drop their staged copies and
        mark them DONE in one journal transaction (the committer thread runs this).

        The order is that of a single file: object stored (done by the workers), catalog
        commit, staged copy unlinked, journal DONE. A file the catalog cannot take now
        stays STAGED without holding back the others; an unexpected error in the batch's
        transaction has each file tried alone, so that only the bad one is quarantined.
        """
        try:
            results = self._register_batch(batch)
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
        done = [item for item, r in zip(batch, results, strict=True) if r.error is None]
        # The staged copy goes before the journal says DONE: a station killed between the
        # two finds the file registered (held) on restart and needs the copy no more, while
        # the other order would leave the copy in staging for ever.
        for item in done:
            item.staged.unlink(missing_ok=True)
        self.journal.set_files([item.f.id for item in done], state=J.DONE)
        reports: dict[int, _Stored] = {}
        for item, r in zip(batch, results, strict=True):
            reports[id(item.progress)] = item
            if r.error is None:
                with item.progress.lock:
                    item.progress.files_done += 1
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
                self._quarantine_unexpected(item.f, r.error)
                item.done.set_result(None)
        for item in reports.values():
            item.report(item.progress)
        self.anchor_chain_head(due_only=True)  # and every few minutes while it works

    def _register_batch(self, batch: list[_Stored]) -> list[Registered]:
        """The catalog transaction of a batch (run again whole if it lost an insert race:
        the files another station registered meanwhile are then duplicates)."""
        dockings = {item.jd.uid: item.jd for item in batch}
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
                    refs[uid] = DockingRef.of(self._catalog_docking(s, jd))
            return register_files(
                s, self.signer, [(refs[item.jd.uid], item.offloaded) for item in batch], self.actor
            )

        results = self._in_catalog(work)
        # Kept only once committed (a rolled-back transaction may have made the docking).
        self._docking_refs.update(refs)
        return results

    def _in_catalog(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one catalog transaction, again if it lost an insert race.

        The catalog functions look a row up and insert it when missing (docking, device,
        officer, recording). On PostgreSQL another docking of this station or of another
        one can insert the same row in between; the unique constraint then refuses ours
        and the whole transaction, custody events included, is rolled back. Run again,
        the look-up finds the other's row (a duplicate recording, an existing docking).
        SQLite never gets here: its write transactions do not overlap. A deadlock or
        serialization failure that PostgreSQL resolved by rolling us back is run again too.
        """
        for attempt in range(1, CATALOG_RACE_ATTEMPTS + 1):
            try:
                with self.catalog.transaction() as s:
                    result = work(s)
                return result
            except (IntegrityError, OperationalError) as exc:
                if (
                    isinstance(exc, OperationalError)
                    and getattr(exc.orig, "sqlstate", None) not in RETRYABLE_SQLSTATES
                ):
                    raise
                if attempt == CATALOG_RACE_ATTEMPTS:
                    raise
                log.info(
                    "catalog transaction raced with another docking (%s); running it again",
                    type(exc.orig).__name__,
                )
        raise AssertionError("unreachable")

    def _store(
        self,
        f: JournalFile,
        key: str,
        staged: Path,
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
            self.store.put_file(
                key, staged, expected=digest, size=f.size, retain_until=retain, verified=read_back
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
        staged: Path,
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
        self.journal.set_file(f.id, repair=json.dumps(repair))
        self.store.replace_damaged(
            key, staged, expected=digest, found=damaged.found, retain_until=retain
        )
        return repair

    def _catalog_docking(self, s: Any, jd: JournalDocking) -> Docking:
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

    # -- waiting for services, and the end of a docking ------------------------------------------

    def _drain_staged(
        self,
        jd: JournalDocking,
        progress: Progress,
        stop: threading.Event,
        report: ProgressCallback,
        wait: bool,
    ) -> None:
        uid = jd.uid
        backoff = self.ingest.retry_initial_s
        while not stop.is_set():
            staged = self.journal.files(uid, (J.STAGED,))
            if not staged:
                break
            try:
                self._store_and_commit(jd, staged, progress, report)
            except TRANSIENT as exc:
                self.metrics.failures.inc(reason="unavailable")
                progress.waiting = f"waiting: {exc.message}"
                self.journal.set_docking(uid, waiting=progress.waiting)
                report(progress)
                if not wait:
                    return
                log.warning("%s; retrying in %.0f s", exc.message, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, self.ingest.retry_max_s)
                continue
        if progress.waiting:
            progress.waiting = None
            self.journal.set_docking(uid, waiting=None)
        report(progress)

    def _store_and_commit(
        self,
        jd: JournalDocking,
        files: list[JournalFile],
        progress: Progress,
        report: ProgressCallback,
    ) -> None:
        """Store staged files one after the other, the committer registering them behind;
        returns when every file handed over is settled, raising the first TRANSIENT error
        (of the store, or of the catalog for a file the committer had to leave STAGED)."""
        commits: list[Future[Exception | None]] = []
        self._committer.coming(len(files))
        left = len(files)
        try:
            for f in files:
                try:
                    stored = self._store_file(jd, f, progress, report, None)
                except StorageError as exc:
                    if isinstance(exc, TRANSIENT):
                        raise
                    self._store_refused(f, exc)
                    left -= 1
                    self._committer.coming(-1)
                    continue
                left -= 1
                commits.append(self._committer.submit(stored, was_coming=True))
        finally:
            self._committer.coming(-left)  # those not stored (the store went away)
            wait_all(commits)  # nothing is handed over twice: the caller reads STAGED again
        for commit in commits:
            error = commit.result()
            if error is not None:
                raise error

    def _finish(
        self,
        uid: str,
        root: Path,
        progress: Progress,
        stop: threading.Event,
        report: ProgressCallback,
        wait: bool,
    ) -> DockingResult:
        files = self.journal.files(uid)
        jd = self.journal.docking(uid)
        assert jd is not None
        open_work = [f for f in files if f.state in (J.PENDING, J.STAGED)]
        problems = [
            (display_name(f.relpath), f.state, f.reason or "")
            for f in files
            if f.state in (J.REJECTED, J.QUARANTINED)
        ]
        blocking = [f for f in files if f.state == J.QUARANTINED]
        recorder_gone = not root.is_dir()
        # Every file rejected (links, pipes): nothing was taken, so, as with an empty
        # folder, nothing vouches that the recorder's recordings are held.
        took_none = not any(f.state in (J.DONE, J.CLEARED) for f in files)
        if open_work or stop.is_set():
            state = J.OFFLOADING  # interrupted: the next run resumes it
        elif blocking or recorder_gone or took_none:
            state = J.INCOMPLETE
        else:
            state = J.SAFE_TO_CLEAR
        if state != J.OFFLOADING:
            self._record_outcome(jd, files, state, problems, stop, wait)
            if state == J.SAFE_TO_CLEAR and self.ingest.clear_recorder:
                state = self._clear(root, jd, files)
                files = self.journal.files(uid)  # now CLEARED
            self.journal.set_docking(
                uid,
                state=state,
                waiting=None,
                message="; ".join(f"{p}: {r}" for p, _s, r in problems) or None,
            )
            self.anchor_chain_head()  # signed chain head after every docking (custody.md)
        done = [f for f in files if f.state in (J.DONE, J.CLEARED)]
        return DockingResult(
            uid=uid,
            state=state,
            files=len(files),
            stored=len(done),
            duplicates=0,
            bytes=sum(f.size for f in done),
            problems=problems,
            identity_flags=tuple(jd.identity.get("flags", [])),
        )

    def _record_outcome(
        self,
        jd: JournalDocking,
        files: list[JournalFile],
        state: str,
        problems: list[tuple[str, str, str]],
        stop: threading.Event,
        wait: bool,
    ) -> None:
        def record(s: Session) -> None:
            docking = self._catalog_docking(s, jd)
            for f in files:
                if f.state in (J.REJECTED, J.QUARANTINED):
                    record_problem_file(
                        s,
                        self.signer,
                        docking,
                        f.relpath,
                        f.size,
                        f.state,
                        f.reason or "",
                        self.actor,
                    )
            finish_docking(
                s,
                self.signer,
                docking,
                state,
                files=len(files),
                size=sum(f.size for f in files),
                problems={p: r for p, _s, r in problems},
                actor=self.actor,
            )

        backoff = self.ingest.retry_initial_s
        while True:
            try:
                self._in_catalog(record)
                return
            except TRANSIENT:
                if not wait or stop.is_set():
                    raise
                stop.wait(backoff)
                backoff = min(backoff * 2, self.ingest.retry_max_s)

    def _clear(self, root: Path, jd: JournalDocking, files: list[JournalFile]) -> str:
        """Delete each stored file from the recorder after checking its stored copy again."""
        for f in files:
            if f.state != J.DONE or not f.sha256:
                continue
            digest = Digest("sha256", f.sha256)
            self.store.verify(content_key(digest), digest)
            unlink_source(root, f.relpath)
            with self.catalog.transaction() as s:
                mark_cleared(
                    s, self.signer, self._catalog_docking(s, jd), f.relpath, f.sha256, self.actor
                )
            self.journal.set_file(f.id, state=J.CLEARED)
        with self.catalog.transaction() as s:
            docking = self._catalog_docking(s, jd)
            finish_docking(
                s,
                self.signer,
                docking,
                "CLEARED",
                files=docking.files_total,
                size=docking.bytes_total,
                problems=docking.problems,
                actor=self.actor,
            )
        return "CLEARED"

    # -- signed chain heads (catalog.anchors; docs/custody.md) --------------------------------

    def anchor_chain_head(self, *, due_only: bool = False) -> None:
        """Sign this station's custody chain head and write it to the journal and the
        store (:class:`catalog.anchors.Anchorer`: never fails a docking)."""
        self._anchorer.anchor(due_only=due_only)

    def _refresh(self, progress: Progress) -> list[JournalFile]:
        files = self.journal.files(progress.uid)
        progress.files_total = len(files)
        progress.bytes_total = sum(f.size for f in files)
        done = [f for f in files if f.state in (J.DONE, J.CLEARED, J.STAGED)]
        progress.files_done = sum(1 for f in files if f.state in (J.DONE, J.CLEARED))
        progress.bytes_done = sum(f.size for f in done)
        return files


def _capacity(folder: Path) -> int:
    """The size of the file system holding ``folder``, in bytes."""
    st = os.statvfs(folder)
    return st.f_blocks * st.f_frsize
