"""The dock watcher, on a real directory with real watchdog observers (no mocks).

Each behaviour runs with the native (inotify) observer and with the polling one. Event
tests set a rescan interval far beyond the test's length, so they prove the observer
path alone; the rescan has tests of its own.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from watchdog.observers.inotify import InotifyObserver
from watchdog.observers.polling import PollingObserver

from config.errors import ConfigError
from ingest.watcher import (
    DockEvent,
    DockWatcher,
    RecorderDocked,
    RecorderUndocked,
    filesystem_type,
    make_observer,
    needs_polling,
)

MODES = ("native", "poll")
POLL_S = 0.1
# How long to wait for what must happen: waits end as soon as it does, so this is only
# reached by a failing test; generous because the CI machine is loaded.
DEADLINE_S = 30.0
# Longer than any test: with it, only the start-up scan and the observer report.
EVENTS_ONLY = 600.0


class Inbox:
    """Collects what the watcher reports; read from the test thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[DockEvent] = []

    def __call__(self, event: DockEvent) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[DockEvent]:
        with self._lock:
            return list(self._events)

    def wait_until(
        self, done: Callable[[list[DockEvent]], bool], what: str, timeout: float = DEADLINE_S
    ) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.events):
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within {timeout} s; reported: {self.events}")
            time.sleep(0.01)

    def wait_for(self, event: DockEvent, timeout: float = DEADLINE_S) -> None:
        self.wait_until(lambda events: event in events, str(event), timeout)


Start = Callable[..., tuple[DockWatcher, Inbox]]


@pytest.fixture
def dock(tmp_path: Path) -> Path:
    root = tmp_path / "dock"
    root.mkdir()
    # Resolved, as the watcher reports paths under the resolved root.
    return root.resolve()


@pytest.fixture
def start(dock: Path) -> Iterator[Start]:
    """Starts watchers on the dock root; each is stopped after the test."""
    watchers: list[DockWatcher] = []

    def _start(
        mode: str,
        *,
        rescan_interval_s: float = EVENTS_ONLY,
        poll_interval_s: float = POLL_S,
        on_event: Callable[[DockEvent], None] | None = None,
    ) -> tuple[DockWatcher, Inbox]:
        inbox = Inbox()
        watcher = DockWatcher(
            dock,
            mode=mode,
            poll_interval_s=poll_interval_s,
            on_event=on_event or inbox,
            rescan_interval_s=rescan_interval_s,
        )
        watchers.append(watcher)
        watcher.start()
        return watcher, inbox

    yield _start
    for watcher in watchers:
        watcher.stop()


def docked(events: list[DockEvent]) -> list[Path]:
    return [e.path for e in events if isinstance(e, RecorderDocked)]


def undocked(events: list[DockEvent]) -> list[Path]:
    return [e.path for e in events if isinstance(e, RecorderUndocked)]


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("liuhen-dock-")]


@pytest.mark.parametrize("mode", MODES)
def test_startup_scan_reports_recorders_already_docked(mode: str, dock: Path, start: Start) -> None:
    for name in ("A123456", "B654321"):
        (dock / name).mkdir()
        (dock / name / "DEVICE.INF").write_text("serial=" + name)

    _, inbox = start(mode)

    inbox.wait_until(lambda ev: len(ev) >= 2, "two start-up reports")
    assert sorted(docked(inbox.events)) == [dock / "A123456", dock / "B654321"]
    assert undocked(inbox.events) == []


@pytest.mark.parametrize("mode", MODES)
def test_directory_created_after_start_is_docked(mode: str, dock: Path, start: Start) -> None:
    _, inbox = start(mode)

    (dock / "A123456").mkdir()

    inbox.wait_for(RecorderDocked(dock / "A123456"))
    assert inbox.events == [RecorderDocked(dock / "A123456")]


@pytest.mark.parametrize("mode", MODES)
def test_directory_moved_in_is_docked_and_rename_is_reported(
    mode: str, dock: Path, tmp_path: Path, start: Start
) -> None:
    # A dock that copies the recorder elsewhere first and moves the folder in when done.
    staging = tmp_path / "staging" / "A123456"
    staging.mkdir(parents=True)
    (staging / "A123456_010203_20261126083000_0001.MP4").write_bytes(b"\0" * 1024)
    _, inbox = start(mode)

    os.rename(staging, dock / "A123456")
    inbox.wait_for(RecorderDocked(dock / "A123456"))

    os.rename(dock / "A123456", dock / "A123456-renamed")
    inbox.wait_for(RecorderDocked(dock / "A123456-renamed"))
    assert inbox.events == [
        RecorderDocked(dock / "A123456"),
        RecorderUndocked(dock / "A123456"),
        RecorderDocked(dock / "A123456-renamed"),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_removed_directory_is_undocked(mode: str, dock: Path, start: Start) -> None:
    recorder = dock / "A123456"
    (recorder / "DCIM" / "100RECORD").mkdir(parents=True)
    (recorder / "DCIM" / "100RECORD" / "clip.MP4").write_bytes(b"\0" * 4096)
    _, inbox = start(mode)
    inbox.wait_for(RecorderDocked(recorder))

    shutil.rmtree(recorder)

    inbox.wait_for(RecorderUndocked(recorder))
    assert inbox.events == [RecorderDocked(recorder), RecorderUndocked(recorder)]


@pytest.mark.parametrize("mode", MODES)
def test_files_hidden_dirs_and_symlinks_are_not_recorders(
    mode: str, dock: Path, tmp_path: Path, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def litter(tag: str) -> None:
        (dock / f"notes-{tag}.txt").write_text("not a recorder")
        (dock / f".partial-{tag}").mkdir()
        (dock / f"link-{tag}").symlink_to(elsewhere, target_is_directory=True)
        (dock / f"dangling-{tag}").symlink_to(tmp_path / "missing")

    caplog.set_level(logging.WARNING, logger="liuhen.watcher")
    litter("before")
    _, inbox = start(mode)
    litter("after")
    # Markers made after the litter: once both are reported, every event for the litter
    # has been handled (the second is made after the first batch was delivered).
    (dock / "marker-1").mkdir()
    inbox.wait_for(RecorderDocked(dock / "marker-1"))
    (dock / "marker-2").mkdir()
    inbox.wait_for(RecorderDocked(dock / "marker-2"))

    assert inbox.events == [RecorderDocked(dock / "marker-1"), RecorderDocked(dock / "marker-2")]
    assert any(
        "symlink" in r.getMessage() and "link-before" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize("mode", MODES)
def test_fifty_directories_are_each_reported_exactly_once(
    mode: str, dock: Path, start: Start
) -> None:
    # A short rescan races the observer on every directory: the reconcile step must
    # still report each appearance and disappearance once.
    _, inbox = start(mode, rescan_interval_s=0.05)
    names = [f"REC{i:04d}" for i in range(50)]
    for name in names:
        (dock / name).mkdir()

    inbox.wait_until(lambda ev: len(set(docked(ev))) == 50, "50 docked")
    for name in names:
        (dock / name).rmdir()
    inbox.wait_until(lambda ev: len(set(undocked(ev))) == 50, "50 undocked")
    # A duplicate would come from a late event or rescan: let a few rescans pass.
    time.sleep(0.3)

    events = inbox.events
    assert sorted(docked(events)) == [dock / n for n in names]
    assert sorted(undocked(events)) == [dock / n for n in names]
    for name in names:
        mine = [e for e in events if e.path == dock / name]
        assert mine == [RecorderDocked(dock / name), RecorderUndocked(dock / name)]


@pytest.mark.parametrize("mode", MODES)
def test_stop_is_clean_and_idempotent(mode: str, dock: Path) -> None:
    inbox = Inbox()
    watcher = DockWatcher(dock, mode=mode, poll_interval_s=POLL_S, on_event=inbox)
    watcher.stop()  # before start: nothing to do
    with pytest.raises(RuntimeError):
        watcher.start()  # a stopped watcher stays stopped

    with DockWatcher(dock, mode=mode, poll_interval_s=POLL_S, on_event=inbox) as watcher:
        assert len(watcher_threads()) == 2
        observer = watcher.observer
        assert observer is not None and observer.is_alive()
        (dock / "A123456").mkdir()
        inbox.wait_for(RecorderDocked(dock / "A123456"))
    watcher.stop()
    watcher.stop()

    assert watcher_threads() == []
    assert not observer.is_alive()
    (dock / "B654321").mkdir()
    time.sleep(3 * POLL_S)
    assert inbox.events == [RecorderDocked(dock / "A123456")]


def test_stop_delivers_what_was_seen_and_may_be_called_from_the_handler(dock: Path) -> None:
    seen: list[DockEvent] = []
    watcher: DockWatcher

    def on_event(event: DockEvent) -> None:
        seen.append(event)
        watcher.stop()

    for name in ("A", "B", "C"):
        (dock / name).mkdir()
    watcher = DockWatcher(dock, mode="poll", poll_interval_s=POLL_S, on_event=on_event)
    watcher.start()
    deadline = time.monotonic() + DEADLINE_S
    while watcher_threads() and time.monotonic() < deadline:
        time.sleep(0.01)

    assert watcher_threads() == []
    assert seen == [RecorderDocked(dock / n) for n in ("A", "B", "C")]


def test_handler_errors_are_logged_and_do_not_stop_delivery(
    dock: Path, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()

    def on_event(event: DockEvent) -> None:
        inbox(event)
        if event.path.name == "bad":
            raise ValueError("consumer bug")

    caplog.set_level(logging.ERROR, logger="liuhen.watcher")
    start("native", on_event=on_event)
    (dock / "bad").mkdir()
    inbox.wait_for(RecorderDocked(dock / "bad"))
    (dock / "good").mkdir()

    inbox.wait_for(RecorderDocked(dock / "good"))
    assert any(r.exc_info and "bad" in r.getMessage() for r in caplog.records)


def test_rescan_reports_what_the_observer_does_not_see(dock: Path, start: Start) -> None:
    # A poller that never polls within the test stands in for events that never come
    # (a recorder mounted over an existing mount point makes no inotify event).
    _, inbox = start("poll", poll_interval_s=300.0, rescan_interval_s=0.1)

    (dock / "A123456").mkdir()
    inbox.wait_for(RecorderDocked(dock / "A123456"))
    shutil.rmtree(dock / "A123456")
    inbox.wait_for(RecorderUndocked(dock / "A123456"))

    assert inbox.events == [RecorderDocked(dock / "A123456"), RecorderUndocked(dock / "A123456")]


@pytest.mark.parametrize("mode", MODES)
def test_root_removed_undocks_every_recorder(mode: str, dock: Path, start: Start) -> None:
    for name in ("A", "B"):
        (dock / name).mkdir()
    _, inbox = start(mode, rescan_interval_s=0.2)
    inbox.wait_until(lambda ev: len(ev) == 2, "start-up reports")

    shutil.rmtree(dock)

    inbox.wait_until(lambda ev: len(undocked(ev)) == 2, "both undocked")
    assert sorted(undocked(inbox.events)) == [dock / "A", dock / "B"]


def test_missing_root_is_a_config_error(tmp_path: Path) -> None:
    watcher = DockWatcher(tmp_path / "nowhere", on_event=Inbox())
    with pytest.raises(ConfigError, match="nowhere"):
        watcher.start()
    assert watcher_threads() == []


# --- choosing an observer -------------------------------------------------------------


def test_auto_picks_native_events_on_a_local_disk(dock: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("reads the Linux mount table")
    # tmp_path could in principle sit on a network home; only then is polling right.
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        if needs_polling(filesystem_type(dock, f.read())):
            pytest.skip("the test directory is not on a local disk")
    observer = make_observer(dock, "auto", POLL_S)
    try:
        assert isinstance(observer, InotifyObserver)
    finally:
        observer.stop()


# Run in a process of its own: with every descriptor below its limit taken, creating
# the inotify instance fails with EMFILE there, as it does at the inotify instance
# limit, and no thread of the test run can free a descriptor in between. The observer
# is started the way DockWatcher.start starts it, without the start-up scan that needs
# a descriptor of its own; the warning about falling back gives a few back, which the
# polling observer's first snapshot needs. (watchdog >= 7 opens inotify when the
# observer starts, once per process: a test in the pytest process would see the
# instance another test opened.)
_NO_INOTIFY_CHILD = textwrap.dedent(
    """
    import json, logging, os, resource, sys
    from pathlib import Path

    from config.errors import UnavailableError
    from ingest.watcher import DockWatcher

    held = []

    class GiveBack(logging.Handler):
        def emit(self, record):
            sys.stderr.write(record.getMessage() + "\\n")
            while held and "polling" in record.getMessage():
                os.close(held.pop())

    logging.getLogger("liuhen.watcher").addHandler(GiveBack(logging.WARNING))
    root = Path(sys.argv[1])
    auto = DockWatcher(root, mode="auto", poll_interval_s=0.25, on_event=print)
    native = DockWatcher(root, mode="native", poll_interval_s=0.25, on_event=print)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    observer = auto._start_observer()
    # Stopped first: its snapshots would take and give back descriptors meanwhile.
    observer.stop()
    observer.join()
    while True:  # all taken again for the native watcher
        try:
            held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            break
    try:
        native._start_observer()
        refusal = "started"
    except UnavailableError as exc:
        refusal = exc.message
    print(json.dumps({"auto": type(observer).__name__, "timeout": observer.timeout,
                      "native": refusal}), flush=True)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")
def test_auto_falls_back_to_polling_when_inotify_cannot_be_opened(dock: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _NO_INOTIFY_CHILD, str(dock)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["auto"], result["timeout"]) == ("PollingObserver", 0.25), result
    assert "native file events unavailable" in done.stderr and "polling" in done.stderr
    assert "native file events" in result["native"] and str(dock) in result["native"], result


def test_poll_mode_polls_at_the_configured_interval(dock: Path) -> None:
    observer = make_observer(dock, "poll", 0.25)
    assert isinstance(observer, PollingObserver)
    assert observer.timeout == 0.25


def test_unknown_observer_mode_is_a_config_error(dock: Path) -> None:
    with pytest.raises(ConfigError, match=r"ingest\.observer"):
        make_observer(dock, "inotify", POLL_S)
    with pytest.raises(ConfigError, match=r"ingest\.observer"):
        DockWatcher(dock, mode="fast", on_event=Inbox())


MOUNTINFO = "\n".join(
    [
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
        "30 27 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw",
        "41 27 8:17 / /media/dock rw,nosuid,nodev shared:1 master:2 - vfat /dev/sdb1 rw,fmask=0022",
        "42 27 0:50 / /srv/dock rw - nfs4 10.0.0.5:/dock rw,vers=4.2",
        r"43 27 0:51 / /mnt/dock\040station rw - cifs //nas/dock rw",
        "44 27 0:52 / /mnt/remote rw - fuse.sshfs user@host:/dock rw",
        # An ext4 mounted over /srv/dock later hides the NFS mount there.
        "45 27 8:33 / /srv/dock rw - ext4 /dev/sdc1 rw",
        "46 27 8:49 / /mnt/usb rw - fuseblk /dev/sdd1 rw",
    ]
)

PROC_MOUNTS = "\n".join(
    [
        "/dev/vda / ext4 rw,relatime 0 0",
        "//nas/dock /mnt/nas cifs rw 0 0",
    ]
)


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/var/lib/liuhen/dock", "ext4"),
        ("/dev/shm/dock", "tmpfs"),
        ("/media/dock", "vfat"),
        ("/media/dock/A123456", "vfat"),
        ("/media/dockyard", "ext4"),  # a prefix of the name is not a parent
        ("/mnt/dock station/A123456", "cifs"),
        ("/mnt/remote", "fuse.sshfs"),
        ("/srv/dock", "ext4"),
        ("/mnt/usb/x", "fuseblk"),
    ],
)
def test_filesystem_type_reads_mountinfo(path: str, fstype: str) -> None:
    assert filesystem_type(path, MOUNTINFO) == fstype


def test_filesystem_type_reads_proc_mounts_and_handles_no_match() -> None:
    assert filesystem_type("/mnt/nas/dock", PROC_MOUNTS) == "cifs"
    assert filesystem_type("/home/x", PROC_MOUNTS) == "ext4"
    assert filesystem_type("/x", "") is None


@pytest.mark.parametrize(
    ("fstype", "poll"),
    [
        ("nfs", True),
        ("nfs4", True),
        ("cifs", True),
        ("smb3", True),
        ("fuse.sshfs", True),
        ("fuseblk", True),
        ("vfat", True),
        ("exfat", True),
        ("ntfs3", True),
        ("9p", True),
        ("ext4", False),
        ("xfs", False),
        ("btrfs", False),
        ("tmpfs", False),
        ("overlay", False),
        (None, False),
    ],
)
def test_needs_polling(fstype: str | None, poll: bool) -> None:
    assert needs_polling(fstype) is poll


def test_auto_polls_when_the_mount_table_says_network_or_removable(dock: Path) -> None:
    # The root's own mount, as the mount table would list it were it on a share or a card.
    for fstype in ("nfs4", "vfat"):
        table = f"{MOUNTINFO}\n99 27 0:99 / {dock} rw - {fstype} somewhere rw"
        observer = make_observer(dock, "auto", 0.25, mount_table=table)
        assert isinstance(observer, PollingObserver)
        assert observer.timeout == 0.25
    local = f"{MOUNTINFO}\n99 27 0:99 / {dock} rw - ext4 /dev/sde1 rw"
    observer = make_observer(dock, "auto", 0.25, mount_table=local)
    try:
        assert not isinstance(observer, PollingObserver)
    finally:
        observer.stop()
