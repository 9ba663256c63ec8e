"""Errors of the object stores."""

from __future__ import annotations

from config.errors import (
    EXIT_DATAERR,
    EXIT_IOERR,
    EXIT_NOINPUT,
    EXIT_UNAVAILABLE,
    LiuhenError,
    UnavailableError,
)
from config.i18n import N_
from config.message import Msg
from storage.digest import Digest

# The texts of a store's refusal of a file, kept as English templates (config.message.Msg):
# a station keeps them in its journal as a quarantine reason, read back in the reader's
# language (ingest.docking.STORED_TEXTS).
NOT_FOUND = N_("{store}: object {key} not found")
MISMATCH = N_("{where}: {algorithm} mismatch: expected {expected}, got {actual}")
MISMATCH_HINT = N_(
    "the bytes changed in transit or at rest; nothing was written, keep the source and retry"
)
DAMAGED = N_("{where}: the stored copy is damaged: SHA-256 {found}, expected {expected}")
DAMAGED_HINT = N_(
    "the station replaces it from the recorder's good bytes and keeps the damaged "
    "copy aside; do not clear the recorder until the docking says SAFE TO CLEAR"
)
KEPT = (NOT_FOUND, MISMATCH, MISMATCH_HINT, DAMAGED, DAMAGED_HINT)


class StorageError(LiuhenError):
    exit_code = EXIT_IOERR


class InvalidKeyError(StorageError):
    """A key that is not a well-formed object key (``..``, absolute, NUL, too long ...)."""

    exit_code = EXIT_DATAERR


class ObjectNotFound(StorageError):
    exit_code = EXIT_NOINPUT

    def __init__(self, store: str, key: str) -> None:
        super().__init__(Msg(NOT_FOUND, store=store, key=key))
        self.key = key


class DigestMismatch(StorageError):
    """Bytes whose digest is not the one expected; carries both."""

    exit_code = EXIT_DATAERR

    def __init__(self, where: str, expected: Digest, actual: Digest) -> None:
        super().__init__(
            Msg(
                MISMATCH,
                where=where,
                algorithm=expected.algorithm,
                expected=expected.hex,
                actual=actual.hex,
            ),
            hint=Msg(MISMATCH_HINT),
        )
        self.where = where
        self.expected = expected
        self.actual = actual


class StoreUnavailable(StorageError, UnavailableError):
    exit_code = EXIT_UNAVAILABLE


class RetentionRefused(StorageError):
    """The store refused to delete or alter an object under retention or legal hold."""

    exit_code = EXIT_DATAERR


class StoreFull(StoreUnavailable):
    """The store has no space left: writes wait (nothing is quarantined) until it has."""


class StoreReadOnly(StoreUnavailable):
    """The store refuses every write (a read-only mount): writes wait until it is writable."""


class DamagedObject(StorageError):
    """A held object does not hold the bytes its key promises (found while storing the
    same bytes again); carries the digests expected and those of the bytes found."""

    exit_code = EXIT_DATAERR

    def __init__(
        self, where: str, key: str, expected: Digest, found: Digest, found_sm3: Digest | None = None
    ) -> None:
        super().__init__(
            Msg(DAMAGED, where=where, found=found.hex, expected=expected.hex),
            hint=Msg(DAMAGED_HINT),
        )
        self.key = key
        self.expected = expected
        self.found = found
        self.found_sm3 = found_sm3


class RepairRefused(StorageError):
    """The store refused to replace a damaged object (immutable file, Object Lock, a policy
    without the right to overwrite): the recorder holds the only good copy."""

    exit_code = EXIT_DATAERR
