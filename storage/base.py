"""The storage contract every object store implements (LocalStore, S3Store)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, runtime_checkable

from config.i18n import _
from storage.digest import READ_SIZE, Digest, digest_stream
from storage.errors import DamagedObject, StorageError

# Where a damaged object's bytes are kept when a good copy replaces it:
# ``damaged/<key>/<SHA-256 of the damaged bytes>``, beside the objects, never overwritten.
DAMAGED_PREFIX = "damaged/"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    # The SHA-256 recorded with the object when the store knows it.
    sha256: Digest | None = None
    last_modified: datetime | None = None
    retain_until: datetime | None = None
    legal_hold: bool = False


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class StoreReport:
    """What `liuhen store check` prints: every check, passed or not."""

    url: str
    checks: list[CheckResult] = field(default_factory=list)
    object_lock: bool = False

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


@runtime_checkable
class ObjectStore(Protocol):
    """A flat namespace of immutable objects under validated keys.

    ``put`` writes all of ``stream`` under ``key`` only if its SHA-256 equals
    ``expected``; otherwise it raises DigestMismatch and leaves nothing behind. A reader
    never sees half an object. Putting a key that exists with the same bytes succeeds and
    changes nothing (content addressing makes that the normal duplicate case).
    """

    url: str
    # Whether the store's server checks the SHA-256 of every upload itself (S3: the
    # signed payload digest, refused on mismatch). A directory store has no server: what
    # it links must have been verified, by it or by a caller's read-back.
    server_verifies_checksums: bool

    def put(
        self,
        key: str,
        stream: BinaryIO,
        *,
        expected: Digest,
        size: int | None = None,
        retain_until: datetime | None = None,
    ) -> ObjectInfo: ...

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
        """Store the finished local file ``source``, which must hash to ``expected``
        (DigestMismatch otherwise, nothing stored); ``size``, its length if known, lets a
        remote store plan the upload, as in :meth:`put`.

        A store may take the file itself (a hard link, when :meth:`can_link` says so):
        it is made read-only, and the caller must never write it again, only remove its
        own name for it. ``verified`` says the caller has just read this very file back
        and checked it against ``expected``, so a store that links it need not hash it
        again; a store that streams it hashes the bytes it sends in any case. Bytes the
        store already holds are never trusted: the held copy is compared with ``source``
        in full, and DamagedObject is raised when it differs.

        ``durable=False`` lets a store whose names become durable only by a sync of their
        folder (a directory store) leave that sync to :meth:`make_durable`, called once
        for a batch of keys: until it returns, a power cut may lose the object's name.
        A store whose writes are durable when they return ignores it.
        """
        ...

    def make_durable(self, keys: Sequence[str]) -> None:
        """Make the objects stored under ``keys`` by ``put_file(..., durable=False)``
        survive a power cut (a directory store: one fsync of each distinct folder, side
        by side); nothing to do for a store whose writes are durable when they return."""
        ...

    def can_link(self, folder: Path) -> bool:
        """Whether :meth:`put_file` takes a file from ``folder`` by link rather than by
        copy; the caller then makes the file durable itself before handing it over."""
        ...

    def local_file(
        self, key: str, expected: Digest, *, scratch: Path
    ) -> AbstractContextManager[Path]:
        """A local, read-only path holding the object's bytes, for a program that reads
        files (ffmpeg), valid inside the ``with`` block; never written through.

        A directory store gives the object's own file, after the key validation and the
        link check every method makes (its bytes are not re-hashed: the store's folder is
        as trusted as its files, and :meth:`verify` is the check at rest). A remote store
        downloads it into a temporary file in the folder ``scratch``, raises
        DigestMismatch unless it hashes to ``expected``, and removes it on leaving.
        Raises ObjectNotFound for a missing object.
        """
        ...

    def open(self, key: str) -> BinaryIO: ...

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of the object, as chunks of at most ``READ_SIZE`` bytes:
        what an HTTP range request streams without reading the rest of the object (a
        player seeking into an hour of video). ``end`` beyond the object's size reads to
        its end; ``start`` at or beyond it reads nothing. The object is opened before
        this returns, so a missing one raises ObjectNotFound here, not at the first
        chunk; ValueError for a negative ``start`` or an ``end`` before ``start``.
        Closing the iterator early (a client gone) releases the file or connection.
        """
        ...

    def head(self, key: str) -> ObjectInfo: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def verify(self, key: str, expected: Digest) -> ObjectInfo:
        """Re-read the object and raise DigestMismatch unless it hashes to ``expected``."""
        ...

    def delete(self, key: str) -> None:
        """Delete; raises RetentionRefused where retention or a legal hold forbids it."""
        ...

    def set_retention(self, key: str, until: datetime) -> None: ...

    def set_legal_hold(self, key: str, on: bool) -> None: ...

    def check(self) -> StoreReport: ...

    def create(self) -> Literal["created", "existed", "external"]:
        """Make the store's container if liuhen is the one to make it (a directory
        store's folder): ``created`` or ``existed``. ``external``: it is its
        administrator's to create (an S3 bucket, with Object Lock); :meth:`check` says
        whether it is there."""
        ...

    def remove_stale_temp_files(self, older_than_s: float = 3600.0) -> int:
        """Remove what puts killed midway left behind (temporary files, unfinished
        multipart uploads), none of it visible as an object; returns how many. Younger
        ones are left alone: they may belong to a put still running. Meant for a
        service's start."""
        ...

    def replace_damaged(
        self,
        key: str,
        source: Path,
        *,
        expected: Digest,
        found: Digest,
        retain_until: datetime | None = None,
    ) -> str:
        """Replace the damaged object under ``key`` (its bytes hash to ``found``) by the
        bytes of ``source``, which must hash to ``expected``; the damaged bytes are first
        kept under :func:`damaged_key`, which is returned. The new object is read back in
        full before this returns. Raises RepairRefused when the store forbids the overwrite.
        """
        ...


def check_range(start: int, end: int) -> None:
    """ValueError unless ``[start, end)`` is a well-formed byte range (see read_range)."""
    if start < 0 or end < start:
        raise ValueError(f"byte range [{start}, {end}) is not a range")


def damaged_key(key: str, found: Digest) -> str:
    """The key that keeps the damaged bytes (SHA-256 ``found``) once held under ``key``."""
    return f"{DAMAGED_PREFIX}{key}/{found.hex}"


def check_held_copy(store: ObjectStore, key: str, source: Path, expected: Digest) -> None:
    """Raise DamagedObject unless the object under ``key`` holds exactly the bytes of
    ``source``, a copy the caller knows hashes to ``expected``.

    Storing bytes the store already holds must not trust the held copy: one flipped byte
    keeps its size and its key. The two are compared byte for byte, in one read of each
    (as strong as re-hashing the held copy, since the source's digests are known, and far
    cheaper on a station's CPU than SHA-256 and SM3); only a difference costs another read
    of the held copy, to name the digests of what it holds.
    """
    with store.open(key) as held, open(source, "rb") as good:
        while True:
            mine = good.read(READ_SIZE)
            theirs = held.read(READ_SIZE)
            if mine != theirs:
                break
            if not mine:
                return
    with store.open(key) as held:
        found = digest_stream(held, ("sha256", "sm3"))
    if found["sha256"] == expected:
        # The held copy is right and the new copy is not: never replace good with bad.
        raise StorageError(
            _(
                "{source}: this copy of {key} differs from the held object, which hashes "
                "right; the copy is wrong, not the store"
            ).format(source=source, key=key),
            hint=_("check the station's data disk; the file is copied again at the next docking"),
        )
    raise DamagedObject(f"{store.url}/{key}", key, expected, found["sha256"], found["sm3"])
