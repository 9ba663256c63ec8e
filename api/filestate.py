"""Server state that every process of `liuhen serve --workers N` must read alike (the
export jobs, the custody check run from the audit page), kept as small JSON files in
the data directory, and the file locks that say whether the process doing the work is
still alive.

Files, not catalog rows: this state belongs to one server (its data directory holds the
bags the jobs write), while several servers may share one catalog. A file is written
whole or not at all (temporary file, fsync, rename), so a process killed mid-write
leaves the previous version. A worker holds an exclusive ``flock`` on a job's lock
file for as long as the job is its own: the kernel drops the lock when that process
dies, however it dies, so whoever looks next and can take the lock knows the job was
interrupted (``flock`` locks belong to the open file, so even a thread of the owning
process cannot take it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    """``data`` as ``path``, replacing any earlier version at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # One name per process and thread: two threads writing one record must not share it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)


def read_json(path: Path) -> Any | None:
    """What :func:`write_json` wrote, or None when there is no such file (or it is not
    JSON: never written by this code)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None


class Held:
    """An exclusive ``flock`` on a file, held until :meth:`release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self, *, remove: bool = False) -> None:
        """Let the lock go; ``remove``: delete the lock file first (whoever opened it
        before gets the lock on a file nobody names any more, and finds the state
        settled)."""
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def try_lock(path: Path, *, create: bool = True) -> Held | None:
    """The lock on ``path`` if nobody holds it now, else None. ``create=False``: None
    for a file that is not there either (see :func:`is_gone`)."""
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | (os.O_CREAT if create else 0) | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return Held(path, fd)


def hold(path: Path) -> Held:
    """The lock on ``path``, which must be free (a fresh, unique name)."""
    held = try_lock(path)
    if held is None:
        raise RuntimeError(f"{path} is locked by another process")
    return held


def owner_gone(path: Path) -> Held | bool:
    """Whether the process that held ``path``'s lock is gone: the lock (to settle the
    state under it) when it could be taken, True when the lock file is gone too (its
    owner removes it only after writing the final state), False while it is held."""
    held = try_lock(path, create=False)
    if held is not None:
        return held
    with contextlib.suppress(FileNotFoundError):
        os.stat(path)
        return False
    return True
