"""The storage contract every object store implements (LocalStore, S3Store)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

from storage.digest import Digest


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

    def put(
        self,
        key: str,
        stream: BinaryIO,
        *,
        expected: Digest,
        size: int | None = None,
        retain_until: datetime | None = None,
    ) -> ObjectInfo: ...

    def open(self, key: str) -> BinaryIO: ...

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
