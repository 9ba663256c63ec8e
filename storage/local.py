"""LocalStore: a directory of immutable, content-addressed objects.

Writes follow borgstore's posix backend: a temp file in the object's own directory,
fsync, then a no-replace link into place, fsync of the directory. Temp names start with
a dot, which no valid key segment does, so they never show in ``list()``. Objects are
made read-only before they become visible.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

from config.i18n import N_, _
from storage.base import (
    CheckResult,
    ObjectInfo,
    StoreReport,
    check_held_copy,
    check_range,
    damaged_key,
)
from storage.digest import READ_SIZE, Digest, digest_bytes, new_hasher
from storage.durable import fsync_dir
from storage.errors import (
    DigestMismatch,
    ObjectNotFound,
    RepairRefused,
    RetentionRefused,
    StorageError,
    StoreFull,
    StoreReadOnly,
    StoreUnavailable,
)
from storage.keys import validate_key, validate_prefix

TEMP_PREFIX = ".tmp-"
_HOLD_SUFFIX = ".hold"  # legal holds live beside the store, in a hidden folder
# A store that is full or read-only: writes wait for it (see LocalStore._write_error).
_WAITING_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class LocalStore:
    # No server between the caller and the disk: see ObjectStore.server_verifies_checksums.
    server_verifies_checksums = False

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()
        self.url = self.root.as_uri()
        # Folders below the root already seen to be real folders (not links): a docking
        # of thousands of small files asks for the same few folders again and again,
        # and resolving every key's full path cost ~0.7 ms of CPU per file.
        self._real_dirs: set[str] = set()
        # The root as text: the hot paths (a docking asks about every object two or three
        # times) join strings, which costs a fraction of building Path objects.
        self._root_s = str(self.root)

    # -- paths -------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return Path(self._checked(key))

    def _checked(self, key: str) -> str:
        """The object's path as text, once the key is valid and leads to no link out of
        the root (the checks of :meth:`_path`, without a Path object)."""
        validate_key(key)
        self._check_inside(key)
        return f"{self._root_s}/{key}"

    def _check_inside(self, key: str) -> None:
        """Defence in depth: the validator already forbids '..', but a symlink planted
        inside the root (a folder or the object itself) must not lead out of it either.

        Only the key's own components are examined, with one ``lstat`` each (none for a
        folder already known to be real); a link is followed and must stay in the root.
        """
        prefix = ""
        for part in key.split("/"):
            prefix = f"{prefix}/{part}" if prefix else part
            if prefix in self._real_dirs:
                continue
            try:
                st = os.lstat(f"{self._root_s}/{prefix}")
            except (FileNotFoundError, NotADirectoryError):
                return  # nothing below exists yet, so nothing below can be a link
            if stat.S_ISLNK(st.st_mode):
                target = (self.root / prefix).resolve(strict=False)
                if not target.is_relative_to(self.root.resolve()):
                    raise StorageError(
                        _(
                            "{store}: key {key} resolves outside the store "
                            "({prefix} is a link to {target})"
                        ).format(store=self.url, key=key, prefix=prefix, target=target),
                        hint=_("remove the link from the store folder; objects are never links"),
                    )
            elif stat.S_ISDIR(st.st_mode):
                self._real_dirs.add(prefix)

    def _holds_dir(self) -> Path:
        return self.root / ".holds"

    # -- writing -----------------------------------------------------------------------

    def put(
        self,
        key: str,
        stream: BinaryIO,
        *,
        expected: Digest,
        size: int | None = None,
        retain_until: datetime | None = None,
    ) -> ObjectInfo:
        path = self._path(key)
        if expected.algorithm != "sha256":
            raise ValueError("put verifies SHA-256")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno in _WAITING_ERRNOS:
                raise self._write_error(
                    key, exc, _("cannot create {path}").format(path=path.parent)
                ) from exc
            raise StoreUnavailable(
                _("{store}: cannot create {path}: {error}").format(
                    store=self.url, path=path.parent, error=exc.strerror
                )
            ) from exc
        tmp = _temp_path(path)
        try:
            self._write_temp(tmp, key, stream, expected, size)
            try:
                os.link(tmp, path)  # never replaces an existing object
            except FileExistsError:
                check_held_copy(self, key, tmp, expected)
            self._sync_chain(path.parent)
        except OSError as exc:
            raise self._write_error(key, exc, "write failed") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return self.head(key)

    def _write_temp(
        self, tmp: Path, key: str, stream: BinaryIO, expected: Digest, size: int | None
    ) -> None:
        """Write ``stream`` to the new file ``tmp``, fsynced and read-only, if it hashes to
        ``expected`` (and has ``size`` bytes); the caller removes ``tmp`` in every case."""
        hasher = new_hasher("sha256")
        written = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            while chunk := stream.read(READ_SIZE):
                hasher.update(chunk)
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                written += len(chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        actual = Digest("sha256", hasher.hexdigest())
        if actual != expected:
            raise DigestMismatch(f"{self.url}/{key}", expected, actual)
        if size is not None and written != size:
            raise StorageError(
                _("{where}: got {got} bytes, expected {size}").format(
                    where=f"{self.url}/{key}", got=written, size=size
                ),
                hint=_("the source changed while it was read; retry"),
            )
        os.chmod(tmp, 0o444)

    def _write_error(self, key: str, exc: OSError, what: str) -> StorageError:
        """The error a failed write means to the caller: a full or read-only store is a
        state to wait out (the station keeps the files staged), not a bad file."""
        where = f"{self.url}/{key}"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StoreFull(
                _("store full: free space or extend the volume ({where}: {what}: {error})").format(
                    where=where, what=what, error=exc.strerror
                ),
                hint=_(
                    "free space on the store's disk or extend the volume; waiting writes "
                    "resume by themselves"
                ),
            )
        if exc.errno == errno.EROFS:
            return StoreReadOnly(
                _("store read-only: remount it read-write ({where}: {what}: {error})").format(
                    where=where, what=what, error=exc.strerror
                ),
                hint=_(
                    "make the store's file system writable again; waiting writes resume "
                    "by themselves"
                ),
            )
        return StorageError(f"{where}: {what}: {exc.strerror}")

    def put_file(
        self,
        key: str,
        source: Path,
        *,
        expected: Digest,
        size: int | None = None,
        retain_until: datetime | None = None,
        verified: bool = False,
        durable: bool = True,
    ) -> ObjectInfo:
        """See :meth:`storage.base.ObjectStore.put_file`: by :meth:`adopt`. A directory
        has no retention lock (``retain_until`` is the catalog's to enforce, as in
        :meth:`put`), and the digest, not ``size``, is what is checked."""
        return self.adopt(key, source, expected=expected, read_back=verified, durable=durable)

    def make_durable(self, keys: Sequence[str]) -> None:
        """See :meth:`storage.base.ObjectStore.make_durable`: each distinct folder of
        ``keys`` fsynced, side by side. A folder's fsync waits for the device to flush
        its cache; the flushes of many folders asked for at once are merged, so a batch
        of 64 objects (64 folders, content keys spread them) costs about one flush,
        where one after the other it cost 64."""
        # Each folder, and the folders holding its name up to the store's root: a folder
        # made for this batch (content keys fan out) is only as durable as its entry in
        # its parent (POSIX; journaling filesystems happen to cover it). A folder with
        # nothing new syncs at almost no cost.
        folders = list(dict.fromkeys(f for key in keys for f in self._key_folders(key)))
        if not folders:
            return
        if len(folders) == 1:
            self._sync_folder(folders[0])
            return
        # As many tasks as the pool has threads, each syncing its share one after the
        # other: as many flushes in flight as one task per folder gave, without a task
        # hand-off per folder (about two per small file, each under the interpreter lock).
        shares = [folders[i::_SYNC_THREADS] for i in range(min(_SYNC_THREADS, len(folders)))]
        list(_sync_pool().map(self._sync_folders, shares))  # raises the first failure

    def _sync_folders(self, folders: Sequence[Path | str]) -> None:
        for folder in folders:
            self._sync_folder(folder)

    def _chain(self, folder: Path) -> list[Path]:
        """``folder`` and each folder above it, up to the store's root."""
        chain = [folder]
        while chain[-1] != self.root and self.root in chain[-1].parents:
            chain.append(chain[-1].parent)
        return chain

    def _key_folders(self, key: str) -> list[str]:
        """The folder of the object ``key`` and each folder above it up to the root, as
        :meth:`_chain` gives them but from the key's text (the key checked as by
        :meth:`_path`): no Path objects for every object of a batch."""
        self._checked(key)
        parts = key.split("/")[:-1]
        folders = [self._root_s + "/" + "/".join(parts[:i]) for i in range(len(parts), 0, -1)]
        folders.append(self._root_s)
        return folders

    def _sync_chain(self, folder: Path) -> None:
        """fsync ``folder`` and the folders holding its name, up to the root (see
        :meth:`make_durable`), the leaf first."""
        for each in self._chain(folder):
            fsync_dir(each)

    def _sync_folder(self, folder: Path | str) -> None:
        try:
            fsync_dir(folder)
        except OSError as exc:
            raise self._write_error(
                os.path.relpath(folder, self.root), exc, "cannot sync the folder"
            ) from exc

    def can_link(self, folder: Path) -> bool:
        return _same_filesystem(folder, self.root)

    def adopt(
        self,
        key: str,
        source: Path,
        *,
        expected: Digest,
        read_back: bool = False,
        durable: bool = True,
    ) -> ObjectInfo:
        """Take a finished, fsynced file on the same filesystem as the object, by link.

        The file is hashed again first (that re-read is the verification) unless the
        caller already read this very file back and checked it (``read_back``), then
        linked read-only into place; the caller removes its own name for it. Falls back
        to a copy through :meth:`put` across filesystems. ``durable=False``: the
        folder's fsync is left to :meth:`make_durable` (the caller's, for a batch).
        """
        path = self._checked(key)  # text: a docking of small files adopts thousands
        if not read_back:
            actual = _hash_path(source, expected.algorithm)
            if actual != expected:
                raise DigestMismatch(str(source), expected, actual)
        try:
            _make_folder(path.rpartition("/")[0])
            os.chmod(source, 0o444)
            try:
                os.link(source, path)
            except FileExistsError:
                check_held_copy(self, key, source, expected)
            if durable:
                self._sync_chain(Path(path).parent)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise self._write_error(key, exc, "cannot store") from exc
            with open(source, "rb") as f:
                return self.put(key, f, expected=expected)
        return self._head_at(key, path)

    def replace_damaged(
        self,
        key: str,
        source: Path,
        *,
        expected: Digest,
        found: Digest,
        retain_until: datetime | None = None,
    ) -> str:
        """See :meth:`storage.base.ObjectStore.replace_damaged`. The damaged file is kept
        by a second link to it (no copy), then the good copy, written and fsynced beside
        it, is renamed over the key: a reader sees the damaged or the good bytes, never
        neither."""
        path = self._path(key)
        aside_key = damaged_key(key, found)
        aside = self._path(aside_key)
        tmp = _temp_path(path)
        try:
            aside.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # kept by an earlier try
                os.link(path, aside)
            fsync_dir(aside.parent)
            with open(source, "rb") as stream:
                self._write_temp(tmp, key, stream, expected, None)
            os.rename(tmp, path)
            fsync_dir(path.parent)
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise RepairRefused(
                    _(
                        "{where}: the store refused to replace the damaged copy ({error}: {file})"
                    ).format(where=f"{self.url}/{key}", error=exc.strerror, file=exc.filename),
                    hint=_(
                        "the file or its folder is protected (immutable attribute, "
                        "permissions); lift the protection, then dock the recorder again"
                    ),
                ) from exc
            raise self._write_error(key, exc, _("cannot replace the damaged copy")) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self.verify(key, expected)
        return aside_key

    # -- reading -----------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(self.url, key) from exc

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """See :meth:`storage.base.ObjectStore.read_range`: a seek, then reads of at most
        ``READ_SIZE``; the file is open before this returns."""
        check_range(start, end)
        f = self.open(key)
        f.seek(start)
        return _chunks(f, end - start)

    def head(self, key: str) -> ObjectInfo:
        return self._head_at(key, self._checked(key))

    def _head_at(self, key: str, path: str) -> ObjectInfo:
        """:meth:`head` of ``key``, whose checked path is ``path``."""
        try:
            st = os.stat(path)
        except FileNotFoundError as exc:
            raise ObjectNotFound(self.url, key) from exc
        sha = None
        if key.startswith("sha256/"):
            with contextlib.suppress(ValueError):
                sha = Digest("sha256", key.rsplit("/", 1)[-1])
        return ObjectInfo(
            key=key,
            size=st.st_size,
            sha256=sha,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            legal_hold=os.path.exists(f"{self._root_s}/{self._hold_name(key)}"),
        )

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._checked(key))

    @contextlib.contextmanager
    def local_file(self, key: str, expected: Digest, *, scratch: Path) -> Iterator[Path]:
        """See :meth:`storage.base.ObjectStore.local_file`: the object's own file,
        read-only on disk, reached only through the validated, link-checked key."""
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(self.url, key)
        yield path

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        # Walk only the folder the prefix names whole ("anchors/" → anchors), not the
        # whole store: listing anchors after every docking must not grow with the store.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / folder if folder else self.root
        if not self.root.is_dir() or not start.is_dir():
            return
        parts = PurePosixPath(folder).parts if folder else ()
        if any((self.root.joinpath(*parts[: i + 1])).is_symlink() for i in range(len(parts))):
            return  # a linked folder is not an object's folder (nor walked from the root)
        for dirpath, dirnames, filenames in os.walk(start):
            # Hidden folders (.holds) and temp files are not objects.
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = os.path.relpath(dirpath, self.root)
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                key = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
                if key.startswith(prefix):
                    yield key

    def verify(self, key: str, expected: Digest) -> ObjectInfo:
        try:
            actual = _hash_path(self._path(key), expected.algorithm)
        except FileNotFoundError as exc:
            raise ObjectNotFound(self.url, key) from exc
        if actual != expected:
            raise DigestMismatch(f"{self.url}/{key}", expected, actual)
        return self.head(key)

    # -- retention ---------------------------------------------------------------------

    def _hold_path(self, key: str) -> Path:
        return self.root / self._hold_name(key)

    @staticmethod
    def _hold_name(key: str) -> str:
        """Where ``key``'s legal hold is marked, relative to the root."""
        return ".holds/" + key.replace("/", "_") + _HOLD_SUFFIX

    def delete(self, key: str) -> None:
        path = self._path(key)
        if self._hold_path(key).exists():
            raise RetentionRefused(
                _("{where}: object is under legal hold").format(where=f"{self.url}/{key}")
            )
        try:
            os.unlink(path)
        except FileNotFoundError as exc:
            raise ObjectNotFound(self.url, key) from exc
        fsync_dir(path.parent)

    def set_retention(self, key: str, until: datetime) -> None:
        # A directory has no retention lock of its own: the catalog's retention rules
        # decide; this only checks that the object exists.
        self.head(key)

    def set_legal_hold(self, key: str, on: bool) -> None:
        self.head(key)
        hold = self._hold_path(key)
        if on:
            hold.parent.mkdir(parents=True, exist_ok=True)
            hold.touch()
        else:
            with contextlib.suppress(FileNotFoundError):
                hold.unlink()

    # -- housekeeping ------------------------------------------------------------------

    def create(self) -> Literal["created", "existed", "external"]:
        if self.root.is_dir():
            return "existed"
        self.root.mkdir(parents=True)
        return "created"

    def remove_stale_temp_files(self, older_than_s: float = 3600.0) -> int:
        """Remove temp files left by a process killed mid-put. Returns how many."""
        removed = 0
        cutoff = time.time() - older_than_s
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(TEMP_PREFIX):
                    p = Path(dirpath) / name
                    with contextlib.suppress(FileNotFoundError):
                        if p.stat().st_mtime < cutoff:
                            p.unlink()
                            removed += 1
        return removed

    def check(self) -> StoreReport:
        checks: list[CheckResult] = []
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            checks.append(
                CheckResult(N_("reachable"), True, _("directory {path}").format(path=self.root))
            )
        except OSError as exc:
            checks.append(CheckResult(N_("reachable"), False, f"{self.root}: {exc.strerror}"))
            return StoreReport(self.url, checks)
        writable = os.access(self.root, os.W_OK)
        checks.append(CheckResult(N_("writable"), writable, _("write permission on the root")))
        if writable:
            checks.append(_round_trip(self))
        st = os.statvfs(self.root)
        free = st.f_bavail * st.f_frsize
        checks.append(
            CheckResult(
                N_("free space"),
                free > 1 << 30,
                _("{size} GB free").format(size=f"{free / 1e9:.1f}"),
            )
        )
        checks.append(
            CheckResult(
                N_("object lock"),
                True,
                _("not available on a directory store; retention is enforced by the catalog"),
            )
        )
        return StoreReport(self.url, checks, object_lock=False)


def _round_trip(store: LocalStore) -> CheckResult:
    payload = f"liuhen store check {uuid.uuid4()}".encode()
    expected = digest_bytes(payload)
    key = f"liuhen-check/{uuid.uuid4().hex}"
    try:
        store.put(key, io.BytesIO(payload), expected=expected, size=len(payload))
        store.verify(key, expected)
        store.delete(key)
    except Exception as exc:  # reported, not raised: check lists every problem
        return CheckResult(
            N_("round trip"), False, _("write/read/verify failed: {error}").format(error=exc)
        )
    return CheckResult(
        N_("round trip"), True, _("write, read back, verify and delete a probe object")
    )


def _chunks(f: BinaryIO, length: int) -> Iterator[bytes]:
    """Up to ``length`` bytes of ``f`` from where it stands, then ``f`` closed (also when
    the consumer stops early and the generator is closed)."""
    with f:
        left = length
        while left > 0:
            chunk = f.read(min(READ_SIZE, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


# Folders fsynced side by side by make_durable: enough to merge a batch's device flushes.
_SYNC_THREADS = 16
_sync_executor: ThreadPoolExecutor | None = None
_sync_executor_lock = threading.Lock()


def _sync_pool() -> ThreadPoolExecutor:
    """One pool for every store of the process, made at its first use (its idle threads
    cost nothing; a pool per batch would start its threads again every time)."""
    global _sync_executor
    with _sync_executor_lock:
        if _sync_executor is None:
            _sync_executor = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="dir-sync")
        return _sync_executor


def _temp_path(path: Path) -> Path:
    return path.parent / f"{TEMP_PREFIX}{path.name}.{uuid.uuid4().hex}"


def _hash_path(path: Path, algorithm: str) -> Digest:
    hasher = new_hasher(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(READ_SIZE):
            hasher.update(chunk)
    return Digest(algorithm, hasher.hexdigest())


def _make_folder(folder: str) -> None:
    """``os.makedirs(folder, exist_ok=True)`` in one ``mkdir`` when the parent is there
    (the usual case: content keys fan out under folders made long ago), where makedirs
    first looks the parent up."""
    try:
        os.mkdir(folder)
    except FileExistsError:
        pass  # a file there instead fails the link that follows, as before
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)


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
