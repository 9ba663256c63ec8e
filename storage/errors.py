"""Errors of the object stores."""

from __future__ import annotations

from config.errors import (
    EXIT_DATAERR,
    EXIT_IOERR,
    EXIT_NOINPUT,
    EXIT_UNAVAILABLE,
    LiuhenError,
)
from storage.digest import Digest


class StorageError(LiuhenError):
    exit_code = EXIT_IOERR


class InvalidKeyError(StorageError):
    """A key that is not a well-formed object key (``..``, absolute, NUL, too long ...)."""

    exit_code = EXIT_DATAERR


class ObjectNotFound(StorageError):
    exit_code = EXIT_NOINPUT

    def __init__(self, store: str, key: str) -> None:
        super().__init__(f"{store}: object {key} not found")
        self.key = key


class DigestMismatch(StorageError):
    """Bytes whose digest is not the one expected; carries both."""

    exit_code = EXIT_DATAERR

    def __init__(self, where: str, expected: Digest, actual: Digest) -> None:
        super().__init__(
            f"{where}: {expected.algorithm} mismatch: expected {expected.hex}, got {actual.hex}",
            hint="the bytes changed in transit or at rest; nothing was written, "
            "keep the source and retry",
        )
        self.where = where
        self.expected = expected
        self.actual = actual


class StoreUnavailable(StorageError):
    exit_code = EXIT_UNAVAILABLE


class RetentionRefused(StorageError):
    """The store refused to delete or alter an object under retention or legal hold."""

    exit_code = EXIT_DATAERR
