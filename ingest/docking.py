"""One docking's work, holding its own state.

The :class:`~ingest.station.Station` holds what every docking shares (the journal, the
pools, the store, the signer, the committer); each docking is an object of its own that
holds what is its alone: its journal record, its recorder folder, its progress, its stop
event, whom to report to and whether to wait for services. :class:`DockingWork` stores
and registers a docking's staged files (also those a previous run left, with no recorder
present); :class:`RecorderDocking` takes the files from a recorder and ends the docking
with its outcome (:func:`ingest.docking_outcome.outcome`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy.orm import Session

from catalog import CatalogUnavailable
from catalog.dockings import (
    OffloadedFile,
    display_name,
    finish_docking,
    mark_cleared,
    record_problem_file,
)
from catalog.errors import RecordingBeingExpired
from config.errors import EXIT_NOINPUT, EXIT_PARTIAL, LiuhenError
from config.i18n import N_
from config.message import Msg, from_stored
from ingest import journal as J
from ingest.docking_outcome import outcome
from ingest.identity import foreign_device
from ingest.journal import DockingState, FileState, JournalDocking, JournalFile
from ingest.offload import KEPT as OFFLOAD_TEXTS
from ingest.offload import (
    Copied,
    DiskFull,
    SourceChanged,
    SourceFolders,
    SourceVanished,
    StagingReadBackMismatch,
    unlink_source,
)
from storage import StorageError, StoreUnavailable, content_key
from storage.errors import KEPT as STORE_TEXTS
from storage.errors import StoreFull, StoreReadOnly

if TYPE_CHECKING:
    from ingest.station import Station

log = logging.getLogger("liuhen.station")

# Why a file was not taken, as the journal and the catalog keep it: in English, whoever
# docked it; `ingest` and `station status` read the template and fields back out of it
# (config.message.recognised) and show it in the reader's language.
SYMLINK: Final = N_("symbolic link: not followed out of the recorder")
NOT_A_FILE: Final = N_("not a regular file (device, socket or pipe)")
ZERO_BYTES: Final = N_("zero-byte file: nothing to store")
FOREIGN_DEVICE: Final = N_(
    "its name names device {other}, not this recorder's {serial}: not filed under {serial}; "
    "dock it in a folder of its own (or correct the recorder's device file), then dock this "
    "recorder again"
)
VANISHED: Final = N_("vanished from the recorder before it was read")
CANNOT_OPEN: Final = N_("cannot open: {error}")
SHRANK: Final = N_("shrank from {before} to {after} bytes before it was read")
STILL_GROWING: Final = N_(
    "still growing after {seconds} s; dock the recorder again when it has finished writing"
)
KEPT_CHANGING: Final = N_("kept changing while it was read")
LARGER_THAN_DISK: Final = N_(
    "{size} bytes, larger than the whole staging disk {staging} ({capacity} bytes): give "
    "the station a larger data disk, then dock the recorder again"
)
UNEXPECTED: Final = N_("unexpected error: {kind}: {error}")
# A problem said with what to do about it (a store's refusal, a full staging disk).
WITH_HINT: Final = N_("{problem} (what to do: {hint})")
# What a docking waits for, as the journal keeps it (``waiting``).
WAITING: Final = N_("waiting: {problem}")
WAIT_STORE: Final = N_(
    "waiting for the object store, which is unreachable; the files wait on the staging disk"
)
WAIT_STORE_FULL: Final = N_(
    "waiting: store full: free space or extend the volume; waiting writes resume by themselves"
)
WAIT_STORE_READ_ONLY: Final = N_(
    "waiting: store read-only: make it writable again; waiting writes resume by themselves"
)
WAIT_CATALOG: Final = N_(
    "waiting for the catalog, which is unreachable; the files wait on the staging disk"
)
WAIT_EXPIRY: Final = N_(
    "waiting for the expiry of a recording of the same bytes to finish, to register the file again"
)
REASONS: Final = (
    SYMLINK,
    NOT_A_FILE,
    ZERO_BYTES,
    FOREIGN_DEVICE,
    VANISHED,
    CANNOT_OPEN,
    SHRANK,
    STILL_GROWING,
    KEPT_CHANGING,
    LARGER_THAN_DISK,
    UNEXPECTED,
)
# Every template of what the journal keeps as English text (a reason, what a docking
# waits for), for reading it back; config.message.recognised takes the first that fits.
# WITH_HINT first: a problem ending in a field ("… writing {path}") would otherwise take
# the hint into that field. WAITING last: "waiting: store full: …" is a template itself.
STORED_TEXTS: Final = (
    WITH_HINT,
    *REASONS,
    *OFFLOAD_TEXTS,
    *STORE_TEXTS,
    WAIT_STORE,
    WAIT_STORE_FULL,
    WAIT_STORE_READ_ONLY,
    WAIT_CATALOG,
    WAIT_EXPIRY,
    WAITING,
)


class _LeftStaged(Exception):
    """A staged file left for later: its docking is stopping."""


# Files of a docking copied and not yet registered, per copy slot (ingest.file_workers):
# 4 lets the committer fill its batches (64 files with the default 16 slots) while the
# store and catalog keep up, and bounds staging and a stop's backlog when they do not.
IN_FLIGHT_PER_SLOT = 4

# Problems with these services are waited out; the docking goes on staging meanwhile.
TRANSIENT = (StoreUnavailable, CatalogUnavailable, RecordingBeingExpired)


def kept_text(exc: LiuhenError) -> str:
    """An error as the journal keeps it: its English message (a Msg, see config.errors)
    with what to do; the message of the moment for an error not made of kept messages."""
    kept = getattr(exc, "kept", None)  # None too for an error whose __init__ is its own
    problem = kept or exc.message
    hint = getattr(exc, "kept_hint", None) if kept is not None else exc.hint
    return Msg(WITH_HINT, problem=problem, hint=hint) if hint else problem


def waiting_text(exc: LiuhenError) -> str:
    """What a docking waits for, as the journal keeps it: the service's own English
    message where it has one, else which service (its message of the moment is logged)."""
    if getattr(exc, "kept", None) is not None:
        return Msg(WAITING, problem=kept_text(exc))
    if isinstance(exc, CatalogUnavailable):
        return Msg(WAIT_CATALOG)
    if isinstance(exc, RecordingBeingExpired):
        return Msg(WAIT_EXPIRY)
    if isinstance(exc, StoreFull):
        return Msg(WAIT_STORE_FULL)
    if isinstance(exc, StoreReadOnly):
        return Msg(WAIT_STORE_READ_ONLY)
    return Msg(WAIT_STORE)


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
        return 0 if J.is_safe_to_clear(self.state) and not self.problems else EXIT_PARTIAL


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

    def rewind(self, to: int) -> None:
        """A copy given up: its bytes count again when it is tried again."""
        with self.lock:
            self.bytes_done = to


ProgressCallback = Callable[[Progress], None]
TransientHandler = Callable[[Any], None]  # called with a TRANSIENT error


@dataclass
class Stored:
    """A staged file whose object is stored and verified, on its way to the catalog."""

    f: JournalFile
    docking: DockingWork
    offloaded: OffloadedFile
    staged: str  # the staged copy's path
    started: float  # monotonic time its store began (the store_seconds metric)
    # What a transient refusal (catalog away, recording being expired) does for the file's
    # submitter; None: the submitter handles the error returned by ``done``.
    on_transient: TransientHandler | None
    # Settles once the file is DONE or quarantined (None), or left STAGED by a TRANSIENT
    # error (that error).
    done: Future[Exception | None] = field(default_factory=Future)


class DockingWork:
    """A docking whose staged files are stored and registered (no recorder needed: the
    staged copies are complete)."""

    def __init__(
        self,
        station: Station,
        jd: JournalDocking,
        *,
        stop: threading.Event,
        report: ProgressCallback,
        wait: bool,
    ) -> None:
        self.station = station
        self.journal = station.journal
        self.jd = jd
        self.uid = jd.uid
        self.progress = Progress(uid=jd.uid)
        self.stop = stop
        self.report = report
        self.wait = wait  # for services that are away; else give up at once (OFFLOADING)

    def drain_staged(self) -> None:
        """Store and register what is STAGED, waiting out the store and catalog (with
        backoff) when ``wait``; returns when nothing is STAGED, or when stopped."""
        backoff = self.station.ingest.retry_initial_s
        while not self.stop.is_set():
            staged = self.journal.files(self.uid, (J.STAGED,))
            if not staged:
                break
            try:
                self.store_and_commit(staged)
            except TRANSIENT as exc:
                self.waiting_for(exc)
                self.report(self.progress)
                if not self.wait:
                    return
                log.warning("%s; retrying in %.0f s", exc.message, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, self.station.ingest.retry_max_s)
                continue
        if self.progress.waiting:
            self.progress.waiting = None
            self.journal.waiting(self.uid, None)
        self.report(self.progress)

    def store_and_commit(self, files: list[JournalFile]) -> None:
        """Store staged files one after the other, the committer registering them behind;
        returns when every file handed over is settled, raising the first TRANSIENT error
        (of the store, or of the catalog for a file the committer had to leave STAGED)."""
        committer = self.station.committer
        commits: list[Future[Exception | None]] = []
        committer.coming(len(files))
        left = len(files)
        try:
            for f in files:
                try:
                    stored = self.station.store_file(self, f, None)
                except StorageError as exc:
                    if isinstance(exc, TRANSIENT):
                        raise
                    self.store_refused(f, exc)
                    left -= 1
                    committer.coming(-1)
                    continue
                left -= 1
                commits.append(committer.submit(stored, was_coming=True))
        finally:
            committer.coming(-left)  # those not stored (the store went away)
            wait_all(commits)  # nothing is handed over twice: the caller reads STAGED again
        for commit in commits:
            error = commit.result()
            if error is not None:
                raise error

    def waiting_for(self, exc: Any) -> None:
        """A service is away (a TRANSIENT error): the docking says what it waits for."""
        self.station.metrics.failures.inc(reason="unavailable")
        self._waiting(waiting_text(exc))

    def _waiting(self, text: str) -> None:
        """What the docking waits for, kept in English (a Msg) for readers of either
        language, or None: no longer waiting."""
        with self.progress.lock:  # files staged side by side set and clear it
            self.progress.waiting = text
            self.journal.waiting(self.uid, text)

    def _space_again(self) -> None:
        """A file was staged: if the docking waited for staging space, it no longer
        does (and only then: another file may meanwhile wait for something else)."""
        with self.progress.lock:
            if self.progress.waiting and self.progress.waiting.startswith("staging disk full"):
                self.progress.waiting = None
                self.journal.waiting(self.uid, None)

    def quarantine(self, f: JournalFile, reason: str) -> JournalFile:
        log.warning("%s: quarantined: %s", display_name(f.relpath), reason)
        self.station.metrics.failures.inc(reason="quarantined")
        self.journal.quarantined(f.id, reason)
        return replace(f, state=FileState.QUARANTINED, reason=reason)

    def quarantine_unexpected(self, f: JournalFile, exc: Exception) -> None:
        self.station.metrics.failures.inc(reason="quarantined")
        error = kept_text(exc) if isinstance(exc, LiuhenError) else str(exc)
        reason = Msg(UNEXPECTED, kind=type(exc).__name__, error=error)
        self.journal.quarantined(f.id, reason)

    def store_refused(self, f: JournalFile, exc: StorageError) -> None:
        """A store error that waiting will not cure (the staged copy no longer matches its
        digest, a damaged held copy the store will not let us replace): the staged copy
        is kept, the file quarantined with the store's reason and what to do."""
        self.quarantine(f, kept_text(exc))

    def refresh(self) -> list[JournalFile]:
        """The docking's files, and the progress figures they give."""
        files = self.journal.files(self.uid)
        progress = self.progress
        progress.files_total = len(files)
        progress.bytes_total = sum(f.size for f in files)
        progress.files_done = sum(1 for f in files if f.state.is_held)
        progress.bytes_done = sum(
            f.size for f in files if f.state.is_held or f.state == FileState.STAGED
        )
        return files


@dataclass
class _Attempt:
    """Where the staging of one file stands across its tries."""

    deadline: float  # monotonic: give up on a file still growing or changing after this
    backoff: float
    last_seen: tuple[int, int] | None = None  # (size, mtime_ns) at the last look
    seen_since: float = field(default_factory=time.monotonic)


class RecorderDocking(DockingWork):
    """A docking of a recorder present at ``root``: every file taken, then its outcome."""

    def __init__(
        self,
        station: Station,
        jd: JournalDocking,
        root: Path,
        *,
        stop: threading.Event,
        report: ProgressCallback,
        wait: bool,
    ) -> None:
        super().__init__(station, jd, stop=stop, report=report, wait=wait)
        self.root = root
        # The recorder's folders, each walked once (with O_NOFOLLOW) and kept open while
        # the docking's files are taken.
        self._sources = SourceFolders(root)

    def run(self, entries: list[Any]) -> DockingResult:
        log.info("docking %s of %s (%s)", self.uid, self.root, self.jd.serial or "unknown device")
        self.journal.add_files(
            self.uid, [(e.relpath, e.size, e.mtime_ns) for e in entries if e.kind == "file"]
        )
        self.reject_unusable(entries)
        self.station.register_docking_early(self.jd)
        files = self.refresh()
        self.take_files([f for f in files if f.state.is_open])
        # What is still STAGED waits for the store or catalog; retry with backoff.
        self.drain_staged()
        result = self.finish()
        self.report(self.progress)
        return result

    def take_files(self, todo: list[JournalFile]) -> None:
        """Workers stage files and hand them on; the staging group stores them and the
        committer registers them, each in batches."""
        committer = self.station.committer
        # One worker per copy slot, each taking the next file until none is left (no task
        # and future per file): a worker waits for its own copy and fsync only, never for
        # its group's journal write (the staging group's thread does that).
        left = deque(todo)
        commits: list[Future[Exception | None]] = []
        failures: list[BaseException] = []
        # At most this many of the docking's files copied and not yet registered: with a
        # store slower than the copies, the recorder is not all copied into staging
        # first, and a stopped docking has only these few still to settle.
        room = threading.BoundedSemaphore(IN_FLIGHT_PER_SLOT * self.station.ingest.file_workers)

        def work() -> None:
            while True:
                try:
                    f = left.popleft()
                except IndexError:
                    return
                room.acquire()
                # The committer knows it is coming and gathers the files that hold room
                # in bigger batches (not those that wait for room: it would wait its
                # window out for them); each take_file call settles its own one.
                committer.coming(1)
                try:
                    commit = self.take_file(f)
                except BaseException as exc:  # a journal failure: the docking ends below
                    room.release()
                    failures.append(exc)
                    continue
                if commit is None:
                    room.release()
                else:
                    commit.add_done_callback(lambda _done: room.release())
                    commits.append(commit)

        workers = min(self.station.ingest.file_workers, len(todo))
        try:
            with ThreadPoolExecutor(max(1, workers), thread_name_prefix="offload") as pool:
                runs = [pool.submit(work) for _ in range(workers)]
        finally:
            self._sources.close()  # every worker is done with the recorder's folders
        # Every worker has finished; their files' registrations are settled before
        # anything reads the journal again (even when a worker failed).
        wait_all(commits)
        for run in runs:
            run.result()
        if failures:
            raise failures[0]  # a worker's journal failure ends the docking here
        for commit in commits:
            commit.result()  # and so does one in the committer

    def reject_unusable(self, entries: list[Any]) -> None:
        odd = [e for e in entries if e.kind != "file"]
        if not odd:
            return
        self.journal.add_files(self.uid, [(e.relpath, 0, e.mtime_ns) for e in odd])
        by_path = {x.relpath: x for x in self.journal.files(self.uid)}
        for e in odd:
            reason = SYMLINK if e.kind == "symlink" else NOT_A_FILE
            f = by_path[e.relpath]
            if f.state == FileState.PENDING:
                self.journal.rejected(f.id, reason)

    # -- one file -------------------------------------------------------------------------

    def take_file(self, f: JournalFile) -> Future[Exception | None] | None:
        """Stage and store one file and hand it to the committer: the future its
        registration settles, or None when it was not handed on (quarantined, rejected,
        stopped, a service away). A file this call copies is handed to the station's
        staging group and the call returns at once: the group's thread journals it
        STAGED, stores it and hands it to the committer (:meth:`_after_staged`)."""
        station = self.station
        name = display_name(f.relpath)
        waiting = self._waiting_handler()
        handed = False
        try:
            other = foreign_device(name.rsplit("/", 1)[-1], station.parser, self.jd.serial)
            if other is not None and f.state.is_open:
                # Never filed silently under another device than the one its name names.
                self.quarantine(
                    f,
                    Msg(FOREIGN_DEVICE, other=other, serial=self.jd.serial),
                )
                return None
            if f.state == FileState.PENDING:
                started = time.monotonic()
                staged = self.stage(f)
                if isinstance(staged, JournalFile):
                    f = staged  # quarantined, rejected, or PENDING when stopped
                else:
                    done = self._hand_staged(*staged, started, waiting)
                    handed = True
                    return done
            if f.state == FileState.STAGED:  # staged by an earlier run
                stored = station.store_file(self, f, waiting)
                handed = True
                return station.committer.submit(stored, was_coming=True)
        except TRANSIENT as exc:
            waiting(exc)
        except StorageError as exc:  # the store refused this file, saying why
            self.store_refused(f, exc)
        except Exception as exc:  # one bad file never blocks the others
            log.exception("%s: unexpected error", name)
            self.quarantine_unexpected(f, exc)
        finally:
            if not handed:
                station.committer.coming(-1)  # it will not come: nothing to wait for
            self.report(self.progress)
        return None

    def _waiting_handler(self) -> TransientHandler:
        station = self.station

        def waiting(exc: Any) -> None:
            station.metrics.failures.inc(reason="unavailable")
            self._waiting(waiting_text(exc))

        return waiting

    def stage(self, f: JournalFile) -> JournalFile | tuple[JournalFile, Copied]:
        """Copy a pending file into ``<id>.part`` once it is stable, hashing it in the same
        read: the file as the journal holds it and what was copied, or the file as it
        ended (QUARANTINED, REJECTED, or PENDING when stopped)."""
        ingest = self.station.ingest
        attempt = _Attempt(time.monotonic() + ingest.growing_timeout_s, ingest.retry_initial_s)
        while not self.stop.is_set():
            f, copied = self._try_copy(f, attempt)
            if isinstance(copied, JournalFile):
                return copied  # quarantined or rejected
            if copied is not None:
                return f, copied
        return f

    def _try_copy(
        self, f: JournalFile, attempt: _Attempt
    ) -> tuple[JournalFile, Copied | JournalFile | None]:
        """One look at the file and, once it is stable, one copy into ``<id>.part``: the
        file as the journal holds it now, and what was copied, or the file as it ended
        (quarantined, rejected), or None when it is to be looked at again."""
        try:
            fd = self._sources.open(f.relpath)
        except FileNotFoundError:
            return f, self.quarantine(f, VANISHED)
        except OSError as exc:
            return f, self.quarantine(f, Msg(CANNOT_OPEN, error=exc.strerror))
        try:
            st = os.fstat(fd)
            if st.st_size < f.size:
                # Recordings grow while written; one that shrinks was damaged or
                # rewritten on the recorder. Keep it for a person to look at.
                return f, self.quarantine(f, Msg(SHRANK, before=f.size, after=st.st_size))
            if st.st_size != f.size or st.st_mtime_ns != f.mtime_ns:
                self.journal.grew(f.id, size=st.st_size, mtime_ns=st.st_mtime_ns)
                f = replace(f, size=st.st_size, mtime_ns=st.st_mtime_ns)
            stable = self._stable(f, st, attempt)
            if isinstance(stable, JournalFile):
                return f, stable  # quarantined: still growing
            if not stable:
                return f, None  # looked at again after a little wait
            if st.st_size == 0:
                reason = ZERO_BYTES
                self.journal.rejected(f.id, reason)
                return f, replace(f, state=FileState.REJECTED, reason=reason)
            return f, self._copy(fd, f, attempt)
        finally:
            os.close(fd)

    def _stable(self, f: JournalFile, st: os.stat_result, attempt: _Attempt) -> bool | JournalFile:
        """Stable: unchanged for stable_s, judged by the mtime's age or, when the
        recorder's clock is ahead of ours (mtime in the future), by watching it. When it
        is not, waits a little (False: look again), or quarantines the file once it has
        grown for too long."""
        ingest = self.station.ingest
        seen = (st.st_size, st.st_mtime_ns)
        if seen != attempt.last_seen:
            attempt.last_seen, attempt.seen_since = seen, time.monotonic()
        age = max(time.time() - st.st_mtime_ns / 1e9, time.monotonic() - attempt.seen_since)
        if age >= ingest.stable_s:
            return True
        if time.monotonic() > attempt.deadline:
            seconds = f"{ingest.growing_timeout_s:.0f}"
            return self.quarantine(f, Msg(STILL_GROWING, seconds=seconds))
        self.stop.wait(min(ingest.stable_s - age + 0.05, 1.0))
        return False

    def _copy(self, fd: int, f: JournalFile, attempt: _Attempt) -> Copied | JournalFile | None:
        """One copy of an open, stable file into ``<id>.part``: what it copied, or the file
        quarantined, or None when it is to be tried again (after a wait)."""
        station, progress = self.station, self.progress
        name = display_name(f.relpath)
        folder = station.staging_of(f.docking_uid)
        if not os.path.isdir(folder):  # (mkdir of an existing folder raises inside: dearer)
            os.makedirs(folder, exist_ok=True)
        part = f"{folder}/{f.id}.part"
        before = progress.bytes_done
        try:
            return station.copy_to_staging(fd, part, f, progress.add_bytes)
        except StagingReadBackMismatch as exc:
            progress.rewind(before)
            _unlink_quiet(part)
            log.error("%s: %s", name, exc.message)
            if time.monotonic() > attempt.deadline:
                raise
            self.stop.wait(attempt.backoff)
            return None
        except SourceChanged:
            progress.rewind(before)
            _unlink_quiet(part)
            if time.monotonic() > attempt.deadline:
                return self.quarantine(f, KEPT_CHANGING)
            return None
        except SourceVanished as exc:
            _unlink_quiet(part)
            return self.quarantine(f, getattr(exc, "kept", None) or exc.message)
        except DiskFull as exc:
            _unlink_quiet(part)
            progress.rewind(before)
            return self._disk_full(f, exc, attempt)

    def _disk_full(self, f: JournalFile, exc: DiskFull, attempt: _Attempt) -> JournalFile | None:
        """Staging is full: wait for space (None: try again), unless the file is larger
        than the whole staging disk, when waiting never ends (quarantined)."""
        staging = self.station.staging
        capacity = _capacity(staging)
        if f.size > capacity:
            return self.quarantine(
                f, Msg(LARGER_THAN_DISK, size=f.size, staging=str(staging), capacity=capacity)
            )
        self._waiting(kept_text(exc))
        self.report(self.progress)
        log.warning(
            "%s: %s; retrying in %.0f s", display_name(f.relpath), exc.message, attempt.backoff
        )
        self.stop.wait(attempt.backoff)
        attempt.backoff = min(attempt.backoff * 2, self.station.ingest.retry_max_s)
        return None

    def _hand_staged(
        self, f: JournalFile, copied: Copied, started: float, waiting: TransientHandler
    ) -> Future[Exception | None]:
        """The complete copy renamed into place and handed to the station's staging
        group, which makes the name durable and journals the file STAGED (with the files
        staged at the same moment), then stores it and hands it to the committer: the
        future the file's registration settles."""
        folder = self.station.staging_of(f.docking_uid)
        os.replace(f"{folder}/{f.id}.part", f"{folder}/{f.id}.staged")
        staged_at = J.now_text()
        done: Future[Exception | None] = Future()

        def then(error: BaseException | None) -> None:
            try:
                self._after_staged(f, copied, staged_at, error, started, waiting, done)
            except BaseException as exc:  # a journal failure: it ends the docking
                if not done.done():
                    done.set_exception(exc)
                raise

        move = J.StagedMove(f.id, copied.digests, staged_at)
        self.station.staged_group.submit(folder, move, then)
        return done

    def _after_staged(
        self,
        f: JournalFile,
        copied: Copied,
        staged_at: str,
        error: BaseException | None,
        started: float,
        waiting: TransientHandler,
        done: Future[Exception | None],
    ) -> None:
        """A file the staging group has journaled STAGED (or refused, ``error``): stored
        and handed to the committer, on the group's thread; its errors are the file's
        own, as in :meth:`take_file`, and settle ``done`` when it is not handed on."""
        station = self.station
        handed = False
        try:
            if error is not None:
                raise error
            if self.stop.is_set():
                raise _LeftStaged
            station.metrics.stage_seconds.observe(time.monotonic() - started)
            if copied.read_back:
                station.read_back_done(f.id)
            self._space_again()
            # What the journal now holds for it, without reading it back.
            f = replace(
                f,
                state=FileState.STAGED,
                sha256=copied.digests.sha256.hex,
                sm3=copied.digests.sm3.hex,
                staged_at=staged_at,
                repair=None,
            )
            stored = station.store_file(self, f, waiting, staged_now=True, done=done)
            station.committer.submit(stored, was_coming=True)
            handed = True
        except _LeftStaged:
            # Stopping: the file is STAGED, durably, with its staged copy in place; the
            # recorder's next docking (or a restart) stores it. A stopped docking does
            # not first store everything it had copied.
            pass
        except TRANSIENT as exc:
            waiting(exc)
        except StorageError as exc:  # the store refused this file, saying why
            self.store_refused(f, exc)
        except Exception as exc:  # one bad file never blocks the others
            log.exception("%s: unexpected error", display_name(f.relpath))
            self.quarantine_unexpected(f, exc)
        finally:
            if not handed:
                station.committer.coming(-1)  # it will not come: nothing to wait for
        if not handed:
            done.set_result(None)
            self.report(self.progress)

    # -- the end of a docking ---------------------------------------------------------------

    def finish(self) -> DockingResult:
        """The docking's outcome from its files' states; unless it is to go on
        (OFFLOADING), recorded in the catalog and the journal, the recorder cleared first
        when the station is set to and it is safe to."""
        files = self.journal.files(self.uid)
        state = outcome(
            (f.state for f in files),
            recorder_present=self.root.is_dir(),
            stopped=self.stop.is_set(),
        )
        problems = [
            (display_name(f.relpath), f.state.value, f.reason or "")
            for f in files
            if f.state.is_problem
        ]
        if state != DockingState.OFFLOADING:
            self.record_outcome(files, state, problems)
            if state == DockingState.SAFE_TO_CLEAR and self.station.ingest.clear_recorder:
                state = self.clear(files)
                files = self.journal.files(self.uid)  # now CLEARED
            self.journal.finished(
                self.uid,
                state=state,
                message="; ".join(f"{p}: {r}" for p, _s, r in problems) or None,
            )
            self.station.anchor_chain_head()  # signed chain head after every docking
        done = [f for f in files if f.state.is_held]
        return DockingResult(
            uid=self.uid,
            state=state,
            files=len(files),
            stored=len(done),
            duplicates=0,
            bytes=sum(f.size for f in done),
            problems=problems,
            identity_flags=tuple(from_stored(f) for f in self.jd.identity.get("flags", [])),
        )

    def record_outcome(
        self, files: list[JournalFile], state: DockingState, problems: list[tuple[str, str, str]]
    ) -> None:
        """The docking's outcome and its problem files in the catalog, waiting for the
        catalog (with backoff) when ``wait``."""
        station = self.station

        def record(s: Session) -> None:
            docking = station.catalog_docking(s, self.jd)
            for f in files:
                if f.state.is_problem:
                    record_problem_file(
                        s,
                        station.signer,
                        docking,
                        f.relpath,
                        f.size,
                        f.state.value,
                        f.reason or "",
                        station.actor,
                    )
            finish_docking(
                s,
                station.signer,
                docking,
                state.value,
                files=len(files),
                size=sum(f.size for f in files),
                problems={p: r for p, _s, r in problems},
                actor=station.actor,
            )

        backoff = station.ingest.retry_initial_s
        while True:
            try:
                station.catalog.run_retrying(record)
                return
            except TRANSIENT:
                if not self.wait or self.stop.is_set():
                    raise
                self.stop.wait(backoff)
                backoff = min(backoff * 2, station.ingest.retry_max_s)

    def clear(self, files: list[JournalFile]) -> DockingState:
        """Delete each stored file from the recorder after checking its stored copy again."""
        station = self.station
        kept: list[str] = []
        for f in files:
            digests = f.digests
            if f.state != FileState.DONE or digests is None:
                continue
            station.store.verify(content_key(digests.sha256), digests.sha256)
            if not unlink_source(self.root, f.relpath, size=f.size, mtime_ns=f.mtime_ns):
                # Other bytes under the name now: never delete what was not stored.
                name = display_name(f.relpath)
                log.warning("%s changed on the recorder since it was stored: kept", name)
                kept.append(name)
                continue
            with station.catalog.transaction() as s:
                mark_cleared(
                    s,
                    station.signer,
                    station.catalog_docking(s, self.jd),
                    f.relpath,
                    digests.sha256.hex,
                    station.actor,
                )
            self.journal.cleared(f.id)
        # A file changed under its name while docked holds bytes nobody stored: the
        # recorder is not cleared of it, and the docking says so (dock again to take it).
        state = DockingState.INCOMPLETE if kept else DockingState.CLEARED
        with station.catalog.transaction() as s:
            docking = station.catalog_docking(s, self.jd)
            changed = {n: "changed on the recorder after it was stored: kept" for n in kept}
            finish_docking(
                s,
                station.signer,
                docking,
                state.value,
                files=docking.files_total,
                size=docking.bytes_total,
                problems=(docking.problems or {}) | changed,
                actor=station.actor,
            )
        return state


def _unlink_quiet(path: str) -> None:
    """Remove a partial copy if it is there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _capacity(folder: Path) -> int:
    """The size of the file system holding ``folder``, in bytes."""
    st = os.statvfs(folder)
    return st.f_blocks * st.f_frsize
