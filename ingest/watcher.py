"""The dock watcher: which recorders are docked at this station, as they come and go.

Each recorder docked at the station shows up as a directory directly inside the dock
root: the recorder's mount point, or a drop folder the dock copies the recorder into.
:class:`DockWatcher` reports :class:`RecorderDocked` when such a directory appears and
:class:`RecorderUndocked` when it goes away.

The file system is the only truth. File events (watchdog) and a periodic rescan of the
root are both mere hints that say "look at this name again"; every look goes through one
reconcile step that compares what is on disk with the set of recorders already reported,
under one lock, and reports only transitions. So an appearance seen by both an event and
the rescan is reported once, and one the observer never reports is caught by the next
rescan.

A directory's identity is ``(st_dev, st_ino)`` of the entry (``lstat``), not its name: a
recorder mounted over an existing empty mount point, or a folder deleted and re-created
under the same name, is a new appearance (reported as undocked, then docked).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from config.errors import ConfigError, UnavailableError

logger = logging.getLogger("liuhen.watcher")

OBSERVER_MODES: Final = ("auto", "poll", "native")

# How many poll intervals pass between two rescans of the root. The rescan is the safety
# net for events the observer never sees (a mount over an existing directory gives no
# inotify event) or misses (queue overflow); it lists only the root's direct children, so
# it stays cheap, but there is no point running it as often as the poller itself.
RESCAN_FACTOR: Final = 5.0

# File systems where inotify does not see every change: on network and FUSE file systems
# changes made by another client or the server are never reported, and on 9p/virtiofs
# those made by the host. Removable recorder media (FAT, exFAT, NTFS, UDF) come and go
# under the watch, and several of their drivers are FUSE too. Polling is slower but sees
# what is on the disk.
_POLLING_FSTYPES: Final = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smbfs",
        "smb3",
        "ncpfs",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "davfs",
        "9p",
        "virtiofs",
        "fuse",
        "fuseblk",
        "vfat",
        "msdos",
        "exfat",
        "ntfs",
        "ntfs3",
        "udf",
        "iso9660",
        "hfs",
        "hfsplus",
    }
)

# The kernel writes space, tab, newline and backslash in mount points as octal escapes.
_OCTAL_ESCAPE: Final = re.compile(r"\\([0-7]{3})")

_MOUNT_TABLES: Final = ("/proc/self/mountinfo", "/proc/mounts")

# (st_dev, st_ino) of a directory entry, taken without following symlinks.
_Identity = tuple[int, int]


@dataclass(frozen=True)
class RecorderDocked:
    """A recorder directory appeared in the dock root (or was there at start-up)."""

    path: Path


@dataclass(frozen=True)
class RecorderUndocked:
    """A recorder directory reported docked is gone (deleted, moved away, unmounted)."""

    path: Path


DockEvent = RecorderDocked | RecorderUndocked


# --- choosing an observer -------------------------------------------------------------


def _unescape_mount_field(field: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def _contains(mount_point: str, path: str) -> bool:
    if mount_point == "/":
        return path.startswith("/")
    return path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


def filesystem_type(path: str | os.PathLike[str], mountinfo_text: str) -> str | None:
    """The type of the file system that holds ``path``, per a mount table's text.

    Takes ``/proc/self/mountinfo`` (``... mount_point ... - fstype source options``) or
    ``/proc/mounts`` (``source mount_point fstype ...``) text. ``path`` should be
    absolute and resolved: this function reads no file system. The mount with the
    longest mount point containing the path wins, and of equal mount points the last
    one listed, since a later mount on the same point hides the earlier one. None when
    no line covers the path.
    """
    target = os.fspath(path)
    best: tuple[int, str] | None = None
    for line in mountinfo_text.splitlines():
        fields = line.split()
        if len(fields) >= 10 and "-" in fields[6:]:
            # mountinfo: a variable number of optional fields ends at a lone "-".
            separator = fields.index("-", 6)
            if separator + 1 >= len(fields):
                continue
            mount_point, fstype = fields[4], fields[separator + 1]
        elif len(fields) >= 3:
            mount_point, fstype = fields[1], fields[2]
        else:
            continue
        mount_point = _unescape_mount_field(mount_point)
        if _contains(mount_point, target) and (best is None or len(mount_point) >= best[0]):
            best = (len(mount_point), fstype)
    return best[1] if best else None


def needs_polling(fstype: str | None) -> bool:
    """Whether native file events can be trusted on a file system of this type.

    An unknown type (None: no mount table, e.g. not Linux) is trusted: the platform's
    native observer is the right default everywhere else.
    """
    if fstype is None:
        return False
    return fstype in _POLLING_FSTYPES or fstype.startswith("fuse.")


def _read_mount_table() -> str | None:
    for table in _MOUNT_TABLES:
        try:
            with open(table, "rb") as f:
                # fsdecode, like paths: mount points are bytes in the file system encoding.
                return os.fsdecode(f.read())
        except OSError:
            continue
    return None


def _root_fstype(root: Path, mount_table: str | None) -> str | None:
    text = mount_table if mount_table is not None else _read_mount_table()
    if text is None:
        return None
    return filesystem_type(os.path.realpath(root), text)


def make_observer(
    root: Path, mode: str, poll_interval_s: float, *, mount_table: str | None = None
) -> BaseObserver:
    """A new, unscheduled observer for the dock root, per ``ingest.observer``.

    ``"native"``: the platform's own (inotify on Linux). ``"poll"``: a polling observer
    that takes a snapshot every ``poll_interval_s``. ``"auto"``: polling where the root
    is on a network, FUSE or removable-media file system (see :func:`needs_polling`),
    else native, and polling too when the native observer cannot be created (inotify
    instance limit). In ``"native"`` mode that failure raises
    :class:`~config.errors.UnavailableError`: the setting says never poll.

    ``mount_table`` is the text of a mount table to decide ``"auto"`` by; None reads
    ``/proc/self/mountinfo`` (or ``/proc/mounts``).
    """
    _check_mode(mode)
    _check_interval(poll_interval_s)
    if mode == "poll":
        return PollingObserver(timeout=poll_interval_s)
    if mode == "auto":
        fstype = _root_fstype(root, mount_table)
        if needs_polling(fstype):
            logger.info("dock root %s is on %s: polling every %g s", root, fstype, poll_interval_s)
            return PollingObserver(timeout=poll_interval_s)
    try:
        # InotifyObserver opens its inotify instance here, in the constructor.
        return Observer()
    except OSError as exc:
        if mode == "native":
            raise _native_unavailable(root, exc) from exc
        logger.warning(
            "native file events unavailable for dock root %s (%s); polling every %g s instead",
            root,
            exc,
            poll_interval_s,
        )
        return PollingObserver(timeout=poll_interval_s)


def _native_unavailable(root: Path, exc: OSError) -> UnavailableError:
    return UnavailableError(
        f"cannot watch dock root {root} with native file events: {exc}",
        hint="raise fs.inotify.max_user_watches / max_user_instances, "
        'or set ingest.observer = "poll" or "auto"',
    )


def _check_mode(mode: str) -> None:
    if mode not in OBSERVER_MODES:
        raise ConfigError(
            f"ingest.observer is {mode!r}",
            hint='use "auto", "poll" or "native"',
        )


def _check_interval(poll_interval_s: float) -> None:
    if not poll_interval_s > 0:
        raise ConfigError(
            f"ingest.poll_interval_s is {poll_interval_s!r}",
            hint="use a number of seconds above 0, such as 1.0",
        )


def _dispose(observer: BaseObserver) -> None:
    # An InotifyObserver holds a thread and an fd from its constructor on, started or not.
    observer.stop()
    with contextlib.suppress(RuntimeError):  # join() of a thread never started
        observer.join()


# --- the watcher ----------------------------------------------------------------------


class _Hints(FileSystemEventHandler):
    """Turns watchdog events into "look at these names again"; runs on watchdog's thread."""

    def __init__(self, watcher: DockWatcher) -> None:
        super().__init__()
        self._watcher = watcher

    def dispatch(self, event: FileSystemEvent) -> None:
        # Modified/attrib/open/close say nothing about which directories exist, and the
        # poller sends a "modified" for the root on every change: skip them.
        if event.event_type not in ("created", "deleted", "moved"):
            return
        paths = [os.fsdecode(event.src_path)]
        if event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        self._watcher._hint(paths)


class DockWatcher:
    """Reports recorders docking at and leaving the dock root, to one callback.

    ``on_event`` is called on a single dispatcher thread, in the order transitions were
    seen, so it need not be thread-safe; an exception it raises is logged and the next
    event is still delivered. Slow work in it delays later events, not the watching.

    Only directories directly inside the root count. Files, names starting with ``.``
    and symlinks are ignored (a symlink is never followed: it could point anywhere on the
    station; it is logged once). Reported paths are under the root with symlinks in the
    root's own path resolved (see :attr:`root`).
    """

    def __init__(
        self,
        root: Path,
        *,
        mode: str = "auto",
        poll_interval_s: float = 1.0,
        on_event: Callable[[DockEvent], None],
        rescan_interval_s: float | None = None,
    ) -> None:
        _check_mode(mode)
        _check_interval(poll_interval_s)
        if rescan_interval_s is not None and not rescan_interval_s > 0:
            raise ValueError(f"rescan_interval_s must be above 0, not {rescan_interval_s!r}")
        # Resolved once: watchdog watches a root that is a symlink as the link itself
        # (IN_DONT_FOLLOW), which reports nothing, and the resolved string is what both
        # events and rescans then name paths under.
        self._root = Path(os.path.realpath(root))
        self._mode = mode
        self._poll_interval_s = poll_interval_s
        self._rescan_interval_s = rescan_interval_s or poll_interval_s * RESCAN_FACTOR
        self._on_event = on_event

        # Guards _known and the queue puts: a transition and its report are one step, so
        # reports are in the order of transitions and never repeat one.
        self._lock = threading.Lock()
        self._known: dict[str, _Identity] = {}
        self._symlinks_logged: set[str] = set()
        self._root_identity: _Identity | None = None
        self._events: queue.SimpleQueue[DockEvent | None] = queue.SimpleQueue()

        self._state_lock = threading.Lock()
        self._state = "new"  # "new" -> "running" -> "stopped"
        self._stopping = threading.Event()
        self._observer: BaseObserver | None = None
        self._hints = _Hints(self)
        self._dispatcher: threading.Thread | None = None
        self._rescanner: threading.Thread | None = None

    @property
    def root(self) -> Path:
        """The dock root, resolved; every reported path is directly inside it."""
        return self._root

    @property
    def observer(self) -> BaseObserver | None:
        """The running observer (polling after a fallback), None before start."""
        return self._observer

    def start(self) -> None:
        """Scan the root, then watch it.

        The start-up scan reports every recorder directory already there: those that
        arrived while the service was down. Raises :class:`~config.errors.ConfigError`
        when the root is not a directory, and :class:`~config.errors.UnavailableError`
        when it cannot be watched.
        """
        with self._state_lock:
            if self._state != "new":
                raise RuntimeError(f"DockWatcher for {self._root} was already started")
            if not self._root.is_dir():
                raise ConfigError(
                    f"dock root {self._root} is not a directory",
                    hint="create it, or set ingest.dock_root to the folder recorders appear in",
                )
            self._root_identity = _stat_identity(self._root)
            # Reports wait in the queue until the dispatcher starts below, so a watcher
            # that fails to start has told the consumer nothing.
            self._rescan()
            self._observer = self._start_observer()
            # Directories that arrived between the scan and the first event are seen here;
            # the reconcile step drops any the observer also reports.
            self._rescan()
            self._dispatcher = threading.Thread(
                target=self._dispatch, name="liuhen-dock-dispatch", daemon=True
            )
            self._rescanner = threading.Thread(
                target=self._rescan_loop, name="liuhen-dock-rescan", daemon=True
            )
            self._dispatcher.start()
            self._rescanner.start()
            self._state = "running"

    def stop(self) -> None:
        """Stop watching; reports already seen are delivered before this returns.

        Idempotent, and safe to call from ``on_event`` (it then does not wait for the
        dispatcher, which is the calling thread).
        """
        with self._state_lock:
            if self._state != "running":
                self._state = "stopped"
                return
            self._state = "stopped"
        self._stopping.set()
        if self._rescanner is not None:
            self._rescanner.join()
        if self._observer is not None:
            _dispose(self._observer)
        # After the observer and the rescanner are gone nothing reports any more, so the
        # end marker is the last item and everything before it is delivered.
        self._events.put(None)
        if self._dispatcher is not None and self._dispatcher is not threading.current_thread():
            self._dispatcher.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- observer -------------------------------------------------------------------

    def _start_observer(self) -> BaseObserver:
        observer = make_observer(self._root, self._mode, self._poll_interval_s)
        try:
            self._schedule(observer)
            observer.start()
            return observer
        except OSError as exc:
            _dispose(observer)
            if isinstance(observer, PollingObserver):
                raise UnavailableError(
                    f"cannot watch dock root {self._root}: {exc}",
                    hint="check that the root is mounted and readable by the service",
                ) from exc
            if self._mode == "native":
                raise _native_unavailable(self._root, exc) from exc
            # Typically the inotify watch limit (ENOSPC), met when the watch is added.
            logger.warning(
                "native file events unavailable for dock root %s (%s); polling every %g s",
                self._root,
                exc,
                self._poll_interval_s,
            )
        observer = PollingObserver(timeout=self._poll_interval_s)
        try:
            self._schedule(observer)
            observer.start()
        except OSError as exc:
            _dispose(observer)
            raise UnavailableError(
                f"cannot watch dock root {self._root}: {exc}",
                hint="check that the root is mounted and readable by the service",
            ) from exc
        return observer

    def _schedule(self, observer: BaseObserver) -> None:
        observer.schedule(self._hints, str(self._root), recursive=False)

    def _rewatch_if_root_replaced(self) -> None:
        """Watch the root afresh when it was removed, re-created or remounted.

        An inotify watch dies with the inode it was on, and the poller stops when its
        root is gone; without this, only the rescan would see changes after a remount.
        """
        identity = _stat_identity(self._root)
        if identity == self._root_identity:
            return
        self._root_identity = identity
        if identity is None:
            logger.warning("dock root %s is gone; waiting for it to come back", self._root)
            return
        logger.warning("dock root %s was replaced or remounted; watching it again", self._root)
        observer = self._observer
        if observer is None:
            return
        observer.unschedule_all()
        try:
            self._schedule(observer)
        except OSError as exc:
            logger.warning(
                "cannot watch dock root %s again (%s); relying on the rescan every %g s",
                self._root,
                exc,
                self._rescan_interval_s,
            )

    # --- reconcile ------------------------------------------------------------------

    def _hint(self, paths: Iterable[str]) -> None:
        """Events name these paths: look at those directly in the root again."""
        root = str(self._root)
        names: list[str] = []
        for path in paths:
            if path == root:
                # The root itself was deleted or moved: every recorder may be gone.
                self._rescan()
                continue
            parent, name = os.path.split(path)
            if parent == root and name:
                names.append(name)
        if names:
            with self._lock:
                for name in names:
                    self._reconcile(name)

    def _rescan(self) -> None:
        """Compare every direct child of the root with the recorders reported."""
        with self._lock:
            try:
                present = os.listdir(self._root)
            except (FileNotFoundError, NotADirectoryError):
                # The root is gone (unmounted, deleted): so is every recorder in it.
                present = []
            except OSError as exc:
                # EIO, ESTALE, EACCES: the root may be fine in a moment, and reporting
                # every recorder undocked on a hiccup would restart their offloads.
                logger.warning("cannot list dock root %s: %s", self._root, exc)
                return
            for name in sorted(set(present) | set(self._known)):
                self._reconcile(name)

    def _reconcile(self, name: str) -> None:
        """Report the transition, if any, of one name; the caller holds ``_lock``."""
        current = self._probe(name)
        if isinstance(current, _Unreadable):
            return
        previous = self._known.get(name)
        if previous == current:
            return
        path = self._root / name
        if previous is not None:
            del self._known[name]
            self._events.put(RecorderUndocked(path))
        if current is not None:
            self._known[name] = current
            self._events.put(RecorderDocked(path))

    def _probe(self, name: str) -> _Identity | _Unreadable | None:
        """The identity of ``name`` if it is a recorder directory now, else None."""
        if name.startswith("."):
            # Hidden: the dock's own work folders, .Trash-1000, editors' temp folders.
            return None
        path = self._root / name
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            self._symlinks_logged.discard(name)
            return None
        except OSError as exc:
            logger.warning("cannot stat %s, will look again: %s", path, exc)
            return _UNREADABLE
        if stat.S_ISLNK(st.st_mode):
            if name not in self._symlinks_logged:
                self._symlinks_logged.add(name)
                logger.warning("ignoring symlink %s in the dock root: it is never followed", path)
            return None
        self._symlinks_logged.discard(name)
        if not stat.S_ISDIR(st.st_mode):
            return None
        return (st.st_dev, st.st_ino)

    # --- threads --------------------------------------------------------------------

    def _rescan_loop(self) -> None:
        while not self._stopping.wait(self._rescan_interval_s):
            # The safety net must outlive any single failure, or a transient error would
            # silently leave the station relying on events alone.
            try:
                self._rewatch_if_root_replaced()
                self._rescan()
            except Exception:
                logger.exception("rescan of dock root %s failed", self._root)

    def _dispatch(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            try:
                self._on_event(event)
            except Exception:
                logger.exception("dock event handler failed on %s", event)


class _Unreadable:
    """The type of :data:`_UNREADABLE`: an entry that could not be looked at this time."""


_UNREADABLE: Final = _Unreadable()


def _stat_identity(path: Path) -> _Identity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
