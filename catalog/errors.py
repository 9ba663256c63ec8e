"""Errors of the catalog."""

from __future__ import annotations

from config.errors import (
    EXIT_CONFIG,
    EXIT_DATAERR,
    EXIT_TEMPFAIL,
    EXIT_UNAVAILABLE,
    LiuhenError,
    UnavailableError,
)


class CatalogError(LiuhenError):
    exit_code = EXIT_DATAERR


class CatalogUnavailable(CatalogError, UnavailableError):
    exit_code = EXIT_UNAVAILABLE


class RecordingBeingExpired(CatalogError):
    """The bytes just offloaded belong to a recording whose expiry is under way: its
    object may be deleted any moment, so the file cannot be registered yet."""

    exit_code = EXIT_TEMPFAIL


class DigestConflict(CatalogError):
    """Bytes with the SHA-256 of a recording already held, but another SM3 or size: not
    possible for honest bytes (a collision, or a catalog row that is wrong), so the file
    is refused, never linked to that recording."""


class SchemaOutOfDate(CatalogError):
    exit_code = EXIT_CONFIG


class KeyFileError(CatalogError):
    exit_code = EXIT_CONFIG
